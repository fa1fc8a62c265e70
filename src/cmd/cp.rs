//! `rbox cp` (and `container cp`): copy files between a container and the host, or a tar
//! stream (`-`) in or out, with Podman's (and docker's) rules for where a copy lands: into an
//! existing directory under its own name, else as the destination's name; `SRC/.` copies a
//! directory's contents; a destination ending in `/` must be an existing directory.
//!
//! Both sides speak tar through a pipe: the container side runs in a child chrooted into the
//! container's root (`runtime::inroot`), so every path there resolves inside the container;
//! the host side runs in the invocation. Where a copy lands is decided by [`plan`] (pure),
//! once both sides' kinds are known.

use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{anyhow, bail, Result};

use crate::cli::complete;
use crate::context::Context;
use crate::runtime::{self, inroot};
use crate::state;

#[derive(Debug, Clone, clap::Args)]
pub struct CpArgs {
    /// Chown copied files to the primary uid/gid of the destination container (as Podman,
    /// true by default; --archive=false keeps the owners the source gives)
    #[arg(short = 'a', long, num_args = 0..=1, default_missing_value = "true",
          default_value = "true", require_equals = true, value_name = "BOOL",
          action = clap::ArgAction::Set)]
    pub archive: bool,
    /// Follow a symbolic link named as the source
    #[arg(short = 'L', long)]
    pub follow_link: bool,
    /// Allow to overwrite directories with non-directories and vice versa (accepted)
    #[arg(long)]
    pub overwrite: bool,
    /// Print nothing but errors (rbox prints nothing else anyway)
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// [CONTAINER:]SRC_PATH, or - for a tar stream on standard input
    #[arg(value_name = "SRC", add = complete::container_candidates())]
    pub src: String,
    /// [CONTAINER:]DEST_PATH, or - for a tar stream on standard output
    #[arg(value_name = "DEST")]
    pub dest: String,
}

/// One side of a copy as written on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Side {
    Stream,
    Host(String),
    Container { name: String, path: String },
}

/// Podman's reading of an argument: `-` is a stream; a path that starts with `/` or `.` is the
/// host's; `NAME:PATH` names a container; anything else is a host path.
pub fn parse_side(arg: &str) -> Side {
    if arg == "-" {
        return Side::Stream;
    }
    if arg.starts_with('/') || arg.starts_with('.') {
        return Side::Host(arg.into());
    }
    match arg.split_once(':') {
        Some((name, path)) => Side::Container {
            name: name.into(),
            path: if path.is_empty() {
                "/".into()
            } else {
                path.into()
            },
        },
        None => Side::Host(arg.into()),
    }
}

/// What a destination path is now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DestKind {
    Dir,
    /// anything not a directory
    File,
    /// missing, its parent exists
    Missing,
    /// missing, and so is its parent
    NoParent,
}

/// Where a copy lands: extract into `dir`, renaming the stream's top entry to `name` (or,
/// for a directory's contents, putting them under `name`); `None` keeps the stream's names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub dir: String,
    pub name: Option<String>,
}

/// Why a copy cannot land: the error text without the side's words (see [`PlanError::text`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlanError {
    NotFound,
    NotDir,
    DirOntoFile,
}

impl PlanError {
    /// Podman's text; `place` is `on container NAME` or `on the host`.
    pub fn text(&self, dest: &str, place: &str) -> String {
        match self {
            PlanError::NotFound => {
                format!("\"{dest}\" could not be found {place}: no such file or directory")
            }
            PlanError::NotDir => format!("\"{dest}\" could not be found {place}: not a directory"),
            PlanError::DirOntoFile => {
                "destination must be a directory when copying a directory".into()
            }
        }
    }
}

/// Docker's and Podman's rules: an existing directory receives the source under its own
/// name; otherwise the source becomes `dest` (whose parent must exist); a trailing `/` says
/// `dest` must be an existing directory.
pub fn plan(src_is_dir: bool, dest: &str, kind: DestKind) -> Result<Target, PlanError> {
    let slash = dest.ends_with('/');
    match kind {
        DestKind::Dir => Ok(Target {
            dir: dest.into(),
            name: None,
        }),
        DestKind::File if slash => Err(PlanError::NotDir),
        DestKind::File if src_is_dir => Err(PlanError::DirOntoFile),
        DestKind::Missing | DestKind::File if !slash => {
            let p = Path::new(dest);
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .ok_or(PlanError::NotFound)?;
            let dir = match p.parent().map(|d| d.to_string_lossy().into_owned()) {
                Some(d) if !d.is_empty() => d,
                _ => ".".into(),
            };
            Ok(Target {
                dir,
                name: Some(name),
            })
        }
        _ => Err(PlanError::NotFound),
    }
}

/// What `path` is now (`symlink_metadata` of the path, following a trailing link as the
/// kernel does for `dir/`).
pub fn dest_kind(path: &str) -> DestKind {
    match fs::metadata(path) {
        Ok(m) if m.is_dir() => DestKind::Dir,
        Ok(_) => DestKind::File,
        Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => DestKind::File,
        Err(_) => {
            let parent = Path::new(path.trim_end_matches('/')).parent().map(|p| {
                if p.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    p
                }
            });
            match parent.map(fs::metadata) {
                Some(Ok(m)) if m.is_dir() => DestKind::Missing,
                _ => DestKind::NoParent,
            }
        }
    }
}

/// A source as the producer walks it: the path, whether to follow it if it is a link, and
/// whether only a directory's contents go (`SRC/.`).
#[derive(Debug, Clone)]
struct Source {
    path: String,
    follow: bool,
    contents: bool,
}

impl Source {
    fn new(path: &str, follow_link: bool) -> Source {
        let contents = path == "." || path.ends_with("/.");
        Source {
            path: path.into(),
            follow: follow_link || contents || path.ends_with('/'),
            contents,
        }
    }

    fn metadata(&self) -> io::Result<fs::Metadata> {
        if self.follow {
            fs::metadata(&self.path)
        } else {
            fs::symlink_metadata(&self.path)
        }
    }

    /// The stream's top entry name: the source's base name (`/` has none: its contents go).
    fn top(&self) -> Option<String> {
        if self.contents {
            return None;
        }
        Path::new(self.path.trim_end_matches('/'))
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
    }
}

/// Write `src` as a tar stream: its top entry named by [`Source::top`] (or, for contents,
/// its entries at the top), nothing followed below it.
fn produce(src: &Source, out: impl Write) -> io::Result<()> {
    let mut b = tar::Builder::new(out);
    b.follow_symlinks(false);
    // the tar crate takes a file that reports no blocks for fully sparse and writes zeros:
    // FUSE filesystems such as squashfuse (an `--image-file` root) report none for data kept
    // in fragments, so every byte is read as it is
    b.sparse(false);
    let md = src.metadata()?;
    let root = PathBuf::from(&src.path);
    match src.top() {
        Some(top) if !md.is_dir() => {
            if src.follow {
                b.follow_symlinks(true);
                b.append_path_with_name(&root, &top)?;
                b.follow_symlinks(false);
            } else {
                b.append_path_with_name(&root, &top)?;
            }
        }
        Some(top) => {
            b.append_path_with_name(&root, &top)?;
            walk(&mut b, &root, &top)?;
        }
        None => walk(&mut b, &root, "")?,
    }
    b.into_inner()?.flush()
}

fn walk<W: Write>(b: &mut tar::Builder<W>, dir: &Path, prefix: &str) -> io::Result<()> {
    let mut names: Vec<_> = fs::read_dir(dir)?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<io::Result<_>>()?;
    names.sort();
    for n in names {
        let path = dir.join(&n);
        let name = if prefix.is_empty() {
            n.to_string_lossy().into_owned()
        } else {
            format!("{prefix}/{}", n.to_string_lossy())
        };
        let md = fs::symlink_metadata(&path)?;
        if md.file_type().is_socket() {
            continue;
        }
        b.append_path_with_name(&path, &name)?;
        if md.is_dir() {
            walk(b, &path, &name)?;
        }
    }
    Ok(())
}

/// Extract a stream into `t.dir`, renaming its top entry (or putting a contents stream under
/// `t.name`); `owner` chowns every entry (a link itself, never its target).
fn consume(
    input: impl Read,
    t: &Target,
    contents: bool,
    owner: Option<(u32, u32)>,
) -> io::Result<()> {
    let dir = Path::new(&t.dir);
    let mut ar = tar::Archive::new(input);
    ar.set_preserve_permissions(true);
    ar.set_preserve_mtime(true);
    ar.set_unpack_xattrs(false);
    ar.set_overwrite(true);
    if let (Some(name), true) = (&t.name, contents) {
        let top = dir.join(name);
        if !top.is_dir() {
            fs::create_dir(&top)?;
        }
    }
    for entry in ar.entries()? {
        let mut entry = entry?;
        let path = entry.path()?.into_owned();
        let rel: PathBuf = match (&t.name, contents) {
            (None, _) => path,
            (Some(n), true) => Path::new(n).join(path),
            (Some(n), false) => {
                let mut comps = path.components();
                comps.next();
                match comps.as_path() {
                    rest if rest.as_os_str().is_empty() => PathBuf::from(n),
                    rest => Path::new(n).join(rest),
                }
            }
        };
        if rel.as_os_str().is_empty() {
            continue;
        }
        entry.set_preserve_permissions(true);
        if !entry.unpack_in_raw(dir, &rel)? {
            continue;
        }
        if let Some((uid, gid)) = owner {
            // a single-id namespace has no other owner: the file stays root's there
            let _ = std::os::unix::fs::lchown(dir.join(&rel), Some(uid), Some(gid));
        }
    }
    // the archive ends at its first zero block; a writer such as tar(1) pads to its record
    // size after it, and would die of EPIPE if nobody read the rest
    io::copy(&mut ar.into_inner(), &mut io::sink())?;
    Ok(())
}

/// Unpacking under a name of our choosing: `tar::Entry::unpack_in` takes the entry's own
/// path, so set it first.
trait UnpackAs {
    fn unpack_in_raw(&mut self, dir: &Path, rel: &Path) -> io::Result<bool>;
}

impl<R: Read> UnpackAs for tar::Entry<'_, R> {
    fn unpack_in_raw(&mut self, dir: &Path, rel: &Path) -> io::Result<bool> {
        // refuse what would leave `dir`, as unpack_in does for an entry's own path
        if rel
            .components()
            .any(|c| !matches!(c, std::path::Component::Normal(_)))
        {
            return Ok(false);
        }
        if let Some(parent) = rel.parent().filter(|p| !p.as_os_str().is_empty()) {
            let p = dir.join(parent);
            fs::create_dir_all(&p)?;
            // a link among the parents would lead the write elsewhere
            let canon = p.canonicalize()?;
            if !canon.starts_with(dir.canonicalize()?) {
                return Err(io::Error::other(format!(
                    "`{}` leads outside the destination",
                    rel.display()
                )));
            }
        }
        self.unpack(dir.join(rel)).map(|_| true)
    }
}

pub fn run(g: &Context, a: CpArgs) -> Result<ExitCode> {
    let (src, dest) = (parse_side(&a.src), parse_side(&a.dest));
    match (src, dest) {
        (Side::Container { name, path }, d @ (Side::Host(_) | Side::Stream)) => {
            copy_out(g, &a, &name, &path, d)
        }
        (s @ (Side::Host(_) | Side::Stream), Side::Container { name, path }) => {
            copy_in(g, &a, s, &name, &path)
        }
        (
            Side::Container { name, path },
            Side::Container {
                name: to,
                path: dest,
            },
        ) => copy_between(g, &a, (&name, &path), (&to, &dest)),
        _ => bail!("name or ID cannot be empty"),
    }?;
    Ok(ExitCode::SUCCESS)
}

fn lookup(g: &Context, name: &str) -> Result<state::ContainerRecord> {
    state::lookup(g, name).map_err(|e| match e.downcast_ref::<state::NoSuchContainer>() {
        Some(_) => anyhow!("container \"{name}\" does not exist"),
        None => e,
    })
}

/// The status line a child sends before and after its stream: `ok ARG` or `err TEXT`.
fn send(w: &mut impl Write, res: std::result::Result<String, String>) {
    let line = match res {
        Ok(s) => format!("ok {s}\n"),
        Err(e) => format!("err {}\n", e.replace('\n', " ")),
    };
    let _ = w.write_all(line.as_bytes());
    let _ = w.flush();
}

fn recv(r: &mut impl BufRead) -> Result<String> {
    let mut line = String::new();
    r.read_line(&mut line)?;
    let line = line.trim_end_matches('\n');
    if let Some(ok) = line.strip_prefix("ok ") {
        return Ok(ok.to_string());
    }
    match line.strip_prefix("err ") {
        Some(e) => Err(anyhow!("{e}")),
        None => Err(anyhow!(
            "copy in the container: the copying process ended early"
        )),
    }
}

/// The source side of a copy out of a container, run in a child inside its root: says on
/// `status` whether `src` is a directory or a file (or why it cannot be read, in Podman's
/// words, with `shown` and `place`), writes the tar stream to `data`, then says how it ended.
fn send_source(
    src: &Source,
    shown: &str,
    place: &str,
    status: OwnedFd,
    data: OwnedFd,
) -> std::result::Result<(), ()> {
    let mut st = fs::File::from(status);
    let md = match src.metadata() {
        Ok(m) => m,
        Err(e) => {
            let why = if e.kind() == io::ErrorKind::NotFound {
                PlanError::NotFound.text(shown, place)
            } else {
                format!("\"{shown}\" could not be found {place}: {e}")
            };
            send(&mut st, Err(why));
            return Err(());
        }
    };
    send(&mut st, Ok(if md.is_dir() { "dir" } else { "file" }.into()));
    let res = produce(src, io::BufWriter::new(fs::File::from(data)));
    send(
        &mut st,
        res.map(|_| "done".into())
            .map_err(|e| format!("read {shown}: {e}")),
    );
    Ok(())
}

fn copy_out(g: &Context, a: &CpArgs, name: &str, path: &str, dest: Side) -> Result<()> {
    let rec = lookup(g, name)?;
    // the host side is decided before entering the namespace changes nothing about it
    let store = runtime::open_store(g)?;
    let root = inroot::root_of(g, &store, &rec)?;
    let (status_r, status_w) = nix::unistd::pipe()?;
    let (data_r, data_w) = nix::unistd::pipe()?;
    let src = Source::new(path, a.follow_link);
    let place = format!("on container {name}");
    let shown = path.to_string();
    let child = inroot::spawn(&root, &[status_r.as_fd(), data_r.as_fd()], move || {
        send_source(&src, &shown, &place, status_w, data_w)
    })?;
    let mut st = BufReader::new(fs::File::from(status_r));
    let data = fs::File::from(data_r);
    let res = (|| -> Result<()> {
        let kind = recv(&mut st)?;
        let src = Source::new(path, a.follow_link);
        match &dest {
            Side::Stream => {
                let mut out = io::stdout().lock();
                io::copy(&mut { data }, &mut out)?;
                out.flush()?;
            }
            Side::Host(d) => {
                let t = plan(kind == "dir", d, dest_kind(d))
                    .map_err(|e| anyhow!(e.text(d, "on the host")))?;
                consume(data, &t, src.contents, None).map_err(|e| anyhow!("copy to `{d}`: {e}"))?;
            }
            Side::Container { .. } => unreachable!("checked by run"),
        }
        recv(&mut st).map(|_| ())
    })();
    let ok = inroot::wait(child)?;
    res?;
    if !ok {
        bail!("copy from container {name}: the copying process failed");
    }
    Ok(())
}

/// `rbox cp A:SRC B:DEST`, as Podman copies between containers: a child in A's root writes
/// the tar stream straight into a child in B's root, which lands it by the same rules as a
/// copy from the host (and `--archive`'s owner of B).
fn copy_between(
    g: &Context,
    a: &CpArgs,
    (from, path): (&str, &str),
    (to, dest): (&str, &str),
) -> Result<()> {
    let (srec, drec) = (lookup(g, from)?, lookup(g, to)?);
    let owner = a.archive.then(|| archive_owner(&drec));
    let store = runtime::open_store(g)?;
    let sroot = inroot::root_of(g, &store, &srec)?;
    let droot = inroot::root_of(g, &store, &drec)?;
    let (s_status_r, s_status_w) = nix::unistd::pipe()?;
    let (d_status_r, d_status_w) = nix::unistd::pipe()?;
    let (data_r, data_w) = nix::unistd::pipe()?;
    let src = Source::new(path, a.follow_link);
    let contents = src.contents;
    let (shown, place) = (path.to_string(), format!("on container {from}"));
    // the source's child also closes the reading end, so that it sees EPIPE, not a full
    // pipe forever, when the destination gives up
    let schild = inroot::spawn(&sroot, &[s_status_r.as_fd(), data_r.as_fd()], move || {
        send_source(&src, &shown, &place, s_status_w, data_w)
    })?;
    let mut sst = BufReader::new(fs::File::from(s_status_r));
    let kind = match recv(&mut sst) {
        Ok(k) => k,
        Err(e) => {
            let _ = inroot::wait(schild);
            return Err(e);
        }
    };
    let (dest_s, place) = (dest.to_string(), format!("on container {to}"));
    let dchild = inroot::spawn(
        &droot,
        &[sst.get_ref().as_fd(), d_status_r.as_fd()],
        move || {
            let mut st = fs::File::from(d_status_w);
            let t = match plan(kind == "dir", &dest_s, dest_kind(&dest_s)) {
                Ok(t) => t,
                Err(e) => {
                    send(&mut st, Err(e.text(&dest_s, &place)));
                    return Err(());
                }
            };
            send(&mut st, Ok("ready".into()));
            let res = consume(fs::File::from(data_r), &t, contents, owner);
            send(
                &mut st,
                res.map(|_| "done".into())
                    .map_err(|e| format!("copy to {dest_s}: {e}")),
            );
            Ok(())
        },
    );
    let dchild = match dchild {
        Ok(c) => c,
        Err(e) => {
            let _ = nix::sys::signal::kill(schild, nix::sys::signal::Signal::SIGKILL);
            let _ = inroot::wait(schild);
            return Err(e);
        }
    };
    let mut dst = BufReader::new(fs::File::from(d_status_r));
    // the destination's word first: when it gives up, the source's is only a broken pipe
    let res = recv(&mut dst)
        .and_then(|_| recv(&mut dst))
        .and_then(|_| recv(&mut sst))
        .map(|_| ());
    if res.is_err() {
        let _ = nix::sys::signal::kill(schild, nix::sys::signal::Signal::SIGKILL);
    }
    let (s_ok, d_ok) = (inroot::wait(schild)?, inroot::wait(dchild)?);
    res?;
    if !(s_ok && d_ok) {
        bail!("copy from container {from} to container {to}: a copying process failed");
    }
    Ok(())
}

/// The owner a copy into `rec` gets with --archive: its user's numeric uid and gid, else
/// root (a name is resolved only when it is numeric).
fn archive_owner(rec: &state::ContainerRecord) -> (u32, u32) {
    let user = rec.spec.user.as_str();
    // keep-id's user is the caller's ids (or its uid=, gid=), as Podman's copy gets them
    if user.is_empty()
        && rec.spec.userns == state::UsernsMode::KeepId
        && runtime::userns::current_mode() != runtime::userns::Mode::Root
    {
        let (uid, gid) = runtime::userns::host_ids();
        let o = &rec.spec.opts;
        return (o.keep_id_uid.unwrap_or(uid), o.keep_id_gid.unwrap_or(gid));
    }
    let (u, gr) = user.split_once(':').unwrap_or((user, ""));
    let uid = u.parse().unwrap_or(0);
    let gid = gr.parse().unwrap_or(if gr.is_empty() { uid } else { 0 });
    (uid, gid)
}

fn copy_in(g: &Context, a: &CpArgs, src: Side, name: &str, path: &str) -> Result<()> {
    let rec = lookup(g, name)?;
    let host = match &src {
        Side::Host(p) => {
            let s = Source::new(p, a.follow_link);
            let md = s.metadata().map_err(|e| {
                let why = if e.kind() == io::ErrorKind::NotFound {
                    "no such file or directory".to_string()
                } else {
                    e.to_string()
                };
                anyhow!("\"{p}\" could not be found on the host: {why}")
            })?;
            Some((s, md.is_dir()))
        }
        _ => None,
    };
    let owner = a.archive.then(|| archive_owner(&rec));
    let store = runtime::open_store(g)?;
    let root = inroot::root_of(g, &store, &rec)?;
    let (status_r, status_w) = nix::unistd::pipe()?;
    let (data_r, data_w) = nix::unistd::pipe()?;
    let place = format!("on container {name}");
    let dest = path.to_string();
    let from_stream = host.is_none();
    let src_is_dir = host.as_ref().is_some_and(|h| h.1);
    let contents = host.as_ref().is_some_and(|h| h.0.contents);
    let child = inroot::spawn(&root, &[status_r.as_fd(), data_w.as_fd()], move || {
        let mut st = fs::File::from(status_w);
        let kind = dest_kind(&dest);
        let t = if from_stream {
            if kind != DestKind::Dir {
                send(
                    &mut st,
                    Err("destination must be a directory when copying from stdin".into()),
                );
                return Err(());
            }
            Target {
                dir: dest.clone(),
                name: None,
            }
        } else {
            match plan(src_is_dir, &dest, kind) {
                Ok(t) => t,
                Err(e) => {
                    send(&mut st, Err(e.text(&dest, &place)));
                    return Err(());
                }
            }
        };
        send(&mut st, Ok("ready".into()));
        let res = consume(fs::File::from(data_r), &t, contents, owner);
        send(
            &mut st,
            res.map(|_| "done".into())
                .map_err(|e| format!("copy to {dest}: {e}")),
        );
        Ok(())
    })?;
    let mut st = BufReader::new(fs::File::from(status_r));
    let res = (|| -> Result<()> {
        recv(&mut st)?;
        let out = io::BufWriter::new(fs::File::from(data_w));
        match &host {
            Some((s, _)) => produce(s, out).map_err(|e| anyhow!("read `{}`: {e}", s.path))?,
            None => {
                let mut out = out;
                copy_archive(io::stdin().lock(), &mut out)?;
                out.flush()?;
            }
        }
        recv(&mut st).map(|_| ())
    })();
    let ok = inroot::wait(child)?;
    res?;
    if !ok {
        bail!("copy into container {name}: the copying process failed");
    }
    Ok(())
}

/// Copy a tar stream, gzip- or zstd-compressed or plain, to `out` as plain tar; refused in
/// Podman's words when its first block is not a tar header (empty input, text), before
/// anything is written.
fn copy_archive(input: impl Read, out: &mut impl Write) -> Result<()> {
    let (_, mut plain) = rbox_storage::layer::decompress(BufReader::new(input))?;
    let mut head = Vec::with_capacity(512);
    (&mut plain).take(512).read_to_end(&mut head)?;
    if !is_tar_header(&head) {
        bail!("source must be a (compressed) tar archive when copying from stdin");
    }
    out.write_all(&head)?;
    io::copy(&mut plain, out)?;
    Ok(())
}

/// Whether `block` is a whole tar header block with a right checksum (an archive's end, a zero
/// block, is none: an archive with no entry has nothing to copy).
fn is_tar_header(block: &[u8]) -> bool {
    if block.len() != 512 || block.iter().all(|&b| b == 0) {
        return false;
    }
    let h = tar::Header::from_byte_slice(block);
    // the checksum sums the block with its own field read as spaces
    let sum: u32 = block
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                u32::from(b' ')
            } else {
                u32::from(b)
            }
        })
        .sum();
    h.cksum().is_ok_and(|c| c == sum)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sides() {
        assert_eq!(parse_side("-"), Side::Stream);
        assert_eq!(parse_side("./a:b"), Side::Host("./a:b".into()));
        assert_eq!(parse_side("/x:y"), Side::Host("/x:y".into()));
        assert_eq!(parse_side("file"), Side::Host("file".into()));
        assert_eq!(
            parse_side("c:/etc"),
            Side::Container {
                name: "c".into(),
                path: "/etc".into()
            }
        );
        assert_eq!(
            parse_side("c:"),
            Side::Container {
                name: "c".into(),
                path: "/".into()
            }
        );
    }

    #[test]
    fn landing_follows_podmans_rules() {
        let t = |d: &str, n: Option<&str>| {
            Ok(Target {
                dir: d.into(),
                name: n.map(String::from),
            })
        };
        // into an existing directory, under the source's own name
        assert_eq!(plan(false, "/tmp/", DestKind::Dir), t("/tmp/", None));
        assert_eq!(plan(true, "/tmp", DestKind::Dir), t("/tmp", None));
        // a new name: the parent receives it
        assert_eq!(
            plan(false, "/tmp/new", DestKind::Missing),
            t("/tmp", Some("new"))
        );
        assert_eq!(plan(true, "dd", DestKind::Missing), t(".", Some("dd")));
        // a file over a file
        assert_eq!(plan(false, "/etc/x", DestKind::File), t("/etc", Some("x")));
        // errors
        assert_eq!(
            plan(false, "/no/x", DestKind::NoParent),
            Err(PlanError::NotFound)
        );
        assert_eq!(
            plan(true, "/tmp/ff/", DestKind::Missing),
            Err(PlanError::NotFound)
        );
        assert_eq!(plan(false, "h/f/", DestKind::File), Err(PlanError::NotDir));
        assert_eq!(
            plan(true, "/cd/cf", DestKind::File),
            Err(PlanError::DirOntoFile)
        );
        assert_eq!(
            PlanError::NotFound.text("/nodir/x", "on container c"),
            "\"/nodir/x\" could not be found on container c: no such file or directory"
        );
    }

    #[test]
    fn stdin_must_start_with_a_tar_header() {
        let mut h = tar::Header::new_gnu();
        h.set_path("f").unwrap();
        h.set_size(0);
        h.set_cksum();
        assert!(is_tar_header(h.as_bytes()));
        let mut bad = *h.as_bytes();
        bad[0] = b'g';
        assert!(!is_tar_header(&bad));
        assert!(!is_tar_header(&[0; 512]));
        assert!(!is_tar_header(b"hello\n"));
        let mut out = Vec::new();
        let e = copy_archive(&b""[..], &mut out).unwrap_err();
        assert_eq!(
            e.to_string(),
            "source must be a (compressed) tar archive when copying from stdin"
        );
        assert!(out.is_empty());
        copy_archive(h.as_bytes().as_slice(), &mut out).unwrap();
        assert_eq!(out, h.as_bytes());
    }
}
