//! COPY and ADD: sources (the build context, minus what the ignore file excludes, or another
//! stage's or image's root) -> a staging directory laid out as the layer (`staging/<dest>`),
//! plus the content digest of the sources that keys the cache; unchanged small files are
//! hard-linked from the layer the same COPY made last time ([`Reuse`]). Also the read-only
//! questions the builder asks of an image's layers (does a path exist, the metadata of a
//! directory). It does not store layers (the store's `layer_from_upper` does).

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context as _, Result};
use sha2::{Digest as _, Sha256};

use super::ignore::{self, Ignore};
use crate::state::Stamp;

/// Where COPY reads from.
pub struct Source<'a> {
    /// the directory (the context, or an image's root copied out)
    pub root: &'a Path,
    /// the ignore rules (the context only)
    pub ignore: Option<&'a Ignore>,
    /// shown in errors: "build context" or the stage's name
    pub what: String,
}

/// Owner and mode COPY gives what it writes.
#[derive(Debug, Clone, Copy, Default)]
pub struct Attrs {
    /// `--chown` (else 0:0)
    pub owner: (u32, u32),
    /// `--chmod`
    pub mode: Option<u32>,
}

/// The entries a source names (globs expanded), relative to the source's root.
pub fn resolve(src: &Source, pattern: &str) -> Result<Vec<PathBuf>> {
    if src.ignore.is_some() && escapes(pattern) {
        // Docker's words
        bail!("forbidden path outside the build context: {pattern}");
    }
    let comps = ignore::clean(pattern);
    let mut found = vec![PathBuf::new()];
    for c in &comps {
        let mut next = Vec::new();
        for base in &found {
            if ignore::is_pattern(c) {
                let dir = src.root.join(base);
                let Ok(rd) = fs::read_dir(&dir) else { continue };
                let mut names: Vec<String> = rd
                    .flatten()
                    .filter_map(|e| e.file_name().into_string().ok())
                    .filter(|n| ignore::glob(c, n))
                    .collect();
                names.sort();
                for n in names {
                    next.push(in_root(src.root, &base.join(n))?);
                }
            } else {
                next.push(in_root(src.root, &base.join(c))?);
            }
        }
        found = next;
    }
    found.retain(|rel| {
        fs::symlink_metadata(src.root.join(rel)).is_ok()
            && !src
                .ignore
                .is_some_and(|i| i.excludes(&rel.to_string_lossy()))
    });
    if found.is_empty() {
        bail!("no such file or directory: `{pattern}` in the {}", src.what);
    }
    Ok(found)
}

/// Whether `p` climbs above where it starts (`../x`, `a/../../x`).
fn escapes(p: &str) -> bool {
    let mut depth = 0i32;
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                depth -= 1;
                if depth < 0 {
                    return true;
                }
            }
            _ => depth += 1,
        }
    }
    false
}

/// `rel` with its symlinks resolved inside `root`, as if `root` were `/` (absolute targets
/// start from `root`, `..` stops there): what a source path names, and never a file outside
/// the context or the stage's root.
pub fn in_root(root: &Path, rel: &Path) -> Result<PathBuf> {
    resolve_links(rel, true, |cand| {
        let p = root.join(cand);
        match fs::symlink_metadata(&p) {
            Ok(m) if m.file_type().is_symlink() => fs::read_link(&p).ok(),
            _ => None,
        }
    })
}

/// `rel` with the symlinks of the image made of `layers` (top-most first) resolved inside
/// it: where COPY and WORKDIR write (`/lib` -> `usr/lib` in Debian stays a link). The last
/// component is followed with `follow_last` only.
pub fn in_image(layers: &[PathBuf], rel: &Path, follow_last: bool) -> Result<PathBuf> {
    resolve_links(rel, follow_last, |cand| match lookup_in(layers, cand) {
        Some((l, m)) if m.file_type().is_symlink() => fs::read_link(l.join(cand)).ok(),
        _ => None,
    })
}

/// Walks `rel`, replacing each component that `link` says is a symlink (its target) by
/// where it points, absolute targets from the top, `..` never above it.
fn resolve_links(
    rel: &Path,
    follow_last: bool,
    link: impl Fn(&Path) -> Option<PathBuf>,
) -> Result<PathBuf> {
    use std::collections::VecDeque;
    use std::path::Component;
    let comps = |p: &Path| -> VecDeque<std::ffi::OsString> {
        p.components()
            .filter_map(|c| match c {
                Component::Normal(n) => Some(n.to_os_string()),
                Component::ParentDir => Some("..".into()),
                _ => None,
            })
            .collect()
    };
    let mut todo = comps(rel);
    let mut out = PathBuf::new();
    let mut hops = 0;
    while let Some(c) = todo.pop_front() {
        if c == ".." {
            out.pop();
            continue;
        }
        let cand = out.join(&c);
        let target = if todo.is_empty() && !follow_last {
            None
        } else {
            link(&cand)
        };
        match target {
            Some(t) => {
                hops += 1;
                if hops > 40 {
                    bail!("too many levels of symbolic links in `{}`", rel.display());
                }
                if t.is_absolute() {
                    out = PathBuf::new();
                }
                let mut next = comps(&t);
                next.extend(todo.drain(..));
                todo = next;
            }
            None => out = cand,
        }
    }
    Ok(out)
}

/// Copies the source entry `rel` to `dest` (a path in the staging dir): a directory's
/// contents go into `dest`, a file becomes `dest`. Symlinks are copied as links.
/// `reuse`: an earlier layer of the same COPY whose unchanged files are linked, not copied.
pub fn copy_entry(
    src: &Source,
    rel: &Path,
    dest: &Path,
    attrs: Attrs,
    reuse: Option<&Reuse>,
) -> Result<()> {
    let from = src.root.join(rel);
    let md = fs::symlink_metadata(&from).with_context(|| format!("stat `{}`", from.display()))?;
    if md.is_dir() {
        make_dir(dest, &md, attrs)?;
        copy_tree(src, rel, dest, attrs, reuse)
    } else {
        copy_one(&from, &md, dest, attrs, reuse)
    }
}

fn copy_tree(
    src: &Source,
    rel: &Path,
    dest: &Path,
    attrs: Attrs,
    reuse: Option<&Reuse>,
) -> Result<()> {
    let dir = src.root.join(rel);
    let mut ents: Vec<_> = fs::read_dir(&dir)
        .with_context(|| format!("read `{}`", dir.display()))?
        .flatten()
        .collect();
    ents.sort_by_key(|e| e.file_name());
    for e in ents {
        super::jobs::check_interrupt()?;
        let r = rel.join(e.file_name());
        if src.ignore.is_some_and(|i| i.excludes(&r.to_string_lossy())) {
            continue;
        }
        let from = e.path();
        let md = fs::symlink_metadata(&from)?;
        let to = dest.join(e.file_name());
        if md.is_dir() {
            make_dir(&to, &md, attrs)?;
            copy_tree(src, &r, &to, attrs, reuse)?;
        } else {
            // `dest` was made here, owned as `attrs` says
            copy_into(&from, &md, &to, attrs, true, reuse)?;
        }
    }
    Ok(())
}

fn make_dir(dest: &Path, md: &fs::Metadata, attrs: Attrs) -> Result<()> {
    match fs::create_dir_all(dest) {
        Ok(()) => {}
        Err(e) => return Err(e).with_context(|| format!("create `{}`", dest.display())),
    }
    let mode = attrs.mode.unwrap_or(md.mode() & 0o7777);
    set_owner_mode(dest, attrs.owner, Some(mode))
}

fn copy_one(
    from: &Path,
    md: &fs::Metadata,
    to: &Path,
    attrs: Attrs,
    reuse: Option<&Reuse>,
) -> Result<()> {
    if let Some(p) = to.parent() {
        fs::create_dir_all(p).with_context(|| format!("create `{}`", p.display()))?;
    }
    copy_into(from, md, to, attrs, false, reuse)
}

/// [`copy_one`] where `to`'s parent exists (a tree's walk made it).
/// `parent_ours`: `to`'s directory was made by this COPY with the owner `attrs` says (so a
/// new file gets its group, not a setgid directory's of the image).
fn copy_into(
    from: &Path,
    md: &fs::Metadata,
    to: &Path,
    attrs: Attrs,
    parent_ours: bool,
    reuse: Option<&Reuse>,
) -> Result<()> {
    let ft = md.file_type();
    if ft.is_symlink() {
        let _ = remove_any(to);
        let t = fs::read_link(from)?;
        std::os::unix::fs::symlink(&t, to).with_context(|| format!("create `{}`", to.display()))?;
        return set_owner_mode(to, attrs.owner, None);
    }
    if !ft.is_file() {
        tracing::warn!(
            "skipping `{}`: not a regular file, directory or symlink",
            from.display()
        );
        return Ok(());
    }
    // One open of each side and the rest on the descriptors: a COPY of thousands of small
    // files spends its time in per-file system calls.
    let mut src = fs::File::open(from).with_context(|| format!("open `{}`", from.display()))?;
    let mode = attrs.mode.unwrap_or(md.mode() & 0o7777);
    // Created with its mode where the umask keeps it and there is no setuid, setgid or
    // sticky bit (which a chown clears): no fchmod. Created by the owner it is to have, in
    // a directory of that group: no fchown.
    let plain = mode & 0o7000 == 0 && mode & umask() == 0;
    let owned = parent_ours && attrs.owner == ids();
    // a small file is read first: unchanged since the earlier layer, it is linked from there
    let mut buf = [0u8; SMALL as usize];
    let small = md.len() <= SMALL;
    let mut n = 0;
    if small {
        // one read: io::copy would fstat both sides and call copy_file_range until it
        // returns 0, four system calls where a COPY of a source tree has thousands of small
        // files (the size the stat said is copied, as the layer's tar holds it)
        n = read_full(&mut src, &mut buf, md.len() as usize)
            .with_context(|| format!("read `{}`", from.display()))?;
        if reuse.is_some_and(|r| r.link(to, &buf[..n], mode, attrs.owner, md.mtime())) {
            return Ok(());
        }
    }
    let create = || {
        use std::os::unix::fs::OpenOptionsExt;
        fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(if plain { mode } else { 0o600 })
            .custom_flags(libc::O_NOFOLLOW)
            .open(to)
    };
    let mut dst = match create() {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            remove_any(to).with_context(|| format!("replace `{}`", to.display()))?;
            create()
        }
        r => r,
    }
    .with_context(|| format!("create `{}`", to.display()))?;
    if small {
        io::Write::write_all(&mut dst, &buf[..n])
            .with_context(|| format!("write `{}`", to.display()))?;
    } else {
        io::copy(&mut src, &mut dst).with_context(|| format!("copy `{}`", from.display()))?;
    }
    if !owned {
        let (uid, gid) = attrs.owner;
        std::os::unix::fs::fchown(&dst, Some(uid), Some(gid))
            .map_err(|e| owner_error(to, attrs.owner, e))?;
    }
    if !plain {
        // after the chown, which clears setuid bits
        dst.set_permissions(fs::Permissions::from_mode(mode))
            .with_context(|| format!("chmod `{}`", to.display()))?;
    }
    // whole seconds, all the layer's tar keeps: a file staged so is settled already and the
    // store does not set its times a second time (`Store::layer_from_staged`)
    let t = nix::sys::time::TimeSpec::new(md.mtime(), 0);
    let _ = nix::sys::stat::futimens(&dst, &t, &t);
    Ok(())
}

/// This process's umask (read once: setting it back and forth is not for threads, and the
/// builder's COPY runs on the main thread alone).
fn umask() -> u32 {
    static UMASK: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *UMASK.get_or_init(|| {
        let old = nix::sys::stat::umask(nix::sys::stat::Mode::empty());
        nix::sys::stat::umask(old);
        old.bits()
    })
}

/// This process's effective uid and gid (asked once: COPY asks for each file).
fn ids() -> (u32, u32) {
    static IDS: std::sync::OnceLock<(u32, u32)> = std::sync::OnceLock::new();
    *IDS.get_or_init(|| {
        (
            nix::unistd::geteuid().as_raw(),
            nix::unistd::getegid().as_raw(),
        )
    })
}

/// Files up to this size are copied through a buffer on the stack.
const SMALL: u64 = 16 * 1024;

/// The layer the same COPY made last time (the builder keeps which in a note), whose files
/// the staging links where one is exactly what the COPY would write: same content, mode,
/// owner and whole-second mtime, no xattrs. The layer's tar is the same bytes either way (the
/// tar walk writes a file whose other link is outside the staging as a plain file); what a
/// link saves is a new inode per unchanged file, the largest cost of a rebuild after one
/// source file changed on an ext4 without a journal, as here: each new inode is found by a
/// scan past every inode freed in the last minutes (`recently_deleted()` in
/// fs/ext4/ialloc.c), so file creation slows with what anyone deleted lately. Stored layers
/// are never written, so two may share a file; removing one leaves the other its link. Seen
/// from a container, such a file has a link count above 1 (overlay shows the lower's), where
/// Podman's layers have their own copies: the one visible difference.
/// Small files only ([`SMALL`]): they are compared in memory, and they are what there are
/// thousands of.
pub struct Reuse {
    /// the staging directory the COPY writes into
    staging: PathBuf,
    /// the earlier layer's root
    layer: std::os::fd::OwnedFd,
    /// `--timestamp`: every file's time in the new layer (else the source's)
    time: Option<i64>,
}

impl Reuse {
    /// `layer`: the earlier layer's directory; `time`: `--timestamp`, which the builder sets
    /// on every staged file afterwards (on a linked one: the time it has already). None when
    /// the layer cannot be opened.
    pub fn new(staging: &Path, layer: &Path, time: Option<i64>) -> Option<Reuse> {
        use nix::fcntl::OFlag;
        let layer = nix::fcntl::open(
            layer,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .ok()?;
        Some(Reuse {
            staging: staging.to_path_buf(),
            layer,
            time,
        })
    }

    /// Links the earlier layer's file at `to`'s place to `to` when that file holds `data`
    /// and has `mode`, `owner`, the modification time `mtime` (whole seconds; `--timestamp`'s
    /// where given) and no xattrs;
    /// false (nothing done) otherwise or when the link fails (another filesystem, `to`
    /// taken), and the caller writes `to` itself.
    fn link(&self, to: &Path, data: &[u8], mode: u32, owner: (u32, u32), mtime: i64) -> bool {
        use nix::fcntl::{OFlag, OpenHow, ResolveFlag};
        let Ok(rel) = to.strip_prefix(&self.staging) else {
            return false;
        };
        // no symlink on the way: a link in the layer must not lead to a file outside it,
        // which the store would then share with whoever owns it
        let how = OpenHow::new()
            .flags(
                OFlag::O_RDONLY
                    | OFlag::O_NOFOLLOW
                    | OFlag::O_NONBLOCK
                    | OFlag::O_NOCTTY
                    | OFlag::O_CLOEXEC,
            )
            .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS);
        let Ok(fd) = nix::fcntl::openat2(&self.layer, rel, how) else {
            return false;
        };
        let mut f = fs::File::from(fd);
        let same_meta = f.metadata().is_ok_and(|m| {
            m.is_file()
                && m.len() == data.len() as u64
                && m.mode() & 0o7777 == mode
                && (m.uid(), m.gid()) == owner
                && m.mtime() == self.time.unwrap_or(mtime)
                && m.mtime_nsec() == 0
        });
        if !same_meta || !rbox_storage::flistxattr(&f).is_ok_and(|x| x.is_empty()) {
            return false;
        }
        let mut old = [0u8; SMALL as usize];
        if !read_full(&mut f, &mut old, data.len()).is_ok_and(|n| old[..n] == *data) {
            return false;
        }
        nix::unistd::linkat(
            &self.layer,
            rel,
            nix::fcntl::AT_FDCWD,
            to,
            nix::fcntl::AtFlags::empty(),
        )
        .is_ok()
    }
}

/// Reads until `want` bytes are in `buf` (no read to see the end when the file has the size
/// its stat said), `buf` is full, or the end of the file.
fn read_full(f: &mut fs::File, buf: &mut [u8], want: usize) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() && (n < want || n == 0) {
        match f.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

fn remove_any(p: &Path) -> io::Result<()> {
    match fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(p),
        Ok(_) => fs::remove_file(p),
        Err(e) => Err(e),
    }
}

/// Gives `p` its owner (and mode, chown first: it clears setuid bits).
pub fn set_owner_mode(p: &Path, owner: (u32, u32), mode: Option<u32>) -> Result<()> {
    std::os::unix::fs::lchown(p, Some(owner.0), Some(owner.1))
        .map_err(|e| owner_error(p, owner, e))?;
    if let Some(m) = mode {
        fs::set_permissions(p, fs::Permissions::from_mode(m))
            .with_context(|| format!("chmod `{}`", p.display()))?;
    }
    Ok(())
}

fn owner_error(p: &Path, owner: (u32, u32), e: io::Error) -> anyhow::Error {
    let hint = if e.raw_os_error() == Some(libc::EINVAL) {
        ": the id is not mapped (without a subordinate id range in /etc/subuid only id 0 exists)"
    } else {
        ""
    };
    anyhow!(
        "chown `{}` to {}:{}: {e}{hint}",
        p.display(),
        owner.0,
        owner.1
    )
}

/// The content digest of the sources `rels` (paths, types, modes, link targets and file
/// contents, ignored entries left out): what keys a COPY step in the cache.
/// A regular file's content enters as its own sha256, which `cache` (when given) remembers
/// by the file's identity, so that a rebuild reads only the files changed since.
pub fn digest(src: &Source, rels: &[PathBuf], cache: Option<&FileDigests>) -> Result<String> {
    let mut h = Sha256::new();
    for r in rels {
        hash_entry(src, r, &mut h, cache)?;
    }
    Ok(hex::encode(h.finalize()))
}

/// The content digests of files read by earlier builds, by path, each valid while the file
/// keeps its identity: device, inode, size, mtime and ctime (any write, `touch`, chmod or
/// rename-over changes the ctime, which no one can set back: `touch -r` restores the mtime
/// only). A file changed within [`RACY_NS`] of being hashed is not remembered: the kernel
/// stamps files from a coarse clock (one tick: 1 to 10 ms), so a second write in the same
/// tick could leave the stamp unchanged (git's "racily clean" entries). Kept in the store (`build-cache/file-digests`); a lost or
/// damaged copy only means files are read again.
#[derive(Default)]
pub struct FileDigests {
    map: std::cell::RefCell<std::collections::HashMap<Vec<u8>, Known>>,
    /// entries added or confirmed by this build
    used: std::cell::RefCell<std::collections::HashSet<Vec<u8>>>,
    dirty: std::cell::Cell<bool>,
}

/// A file's stamp and the sha256 of its content then.
type Known = (Stamp, [u8; 32]);

/// The store note [`FileDigests`] are kept in.
pub const DIGESTS_NOTE: &str = "file-digests";

/// How recent a change must not be for its digest to be remembered (ns): several ticks.
const RACY_NS: i128 = 100_000_000;
/// Entries kept at most; past that only the ones this build used are written back.
const MAX_ENTRIES: usize = 200_000;
const ENTRY_FIXED: usize = 4 + 8 * 7 + 32;

impl FileDigests {
    /// Reads the form [`FileDigests::encode`] writes; what does not parse is dropped.
    pub fn decode(b: &[u8]) -> FileDigests {
        let d = FileDigests::default();
        let mut map = d.map.borrow_mut();
        let mut i = 0;
        let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        while i + ENTRY_FIXED <= b.len() {
            let n = u32::from_le_bytes(b[i..i + 4].try_into().expect("4 bytes")) as usize;
            if i + ENTRY_FIXED + n > b.len() {
                break;
            }
            let f = i + 4;
            let st = Stamp {
                dev: u64_at(f),
                ino: u64_at(f + 8),
                size: u64_at(f + 16),
                mtime: (u64_at(f + 24) as i64, u64_at(f + 32) as i64),
                ctime: (u64_at(f + 40) as i64, u64_at(f + 48) as i64),
            };
            let mut dg = [0u8; 32];
            dg.copy_from_slice(&b[f + 56..f + 88]);
            map.insert(b[f + 88..f + 88 + n].to_vec(), (st, dg));
            i = f + 88 + n;
        }
        drop(map);
        d
    }

    /// Entries as (path length, stamp, digest, path) records, little-endian.
    pub fn encode(&self) -> Vec<u8> {
        let map = self.map.borrow();
        let used = self.used.borrow();
        let mut out = Vec::new();
        let keep_all = map.len() <= MAX_ENTRIES;
        for (p, (st, dg)) in map.iter() {
            if !keep_all && !used.contains(p) {
                continue;
            }
            out.extend((p.len() as u32).to_le_bytes());
            for v in [
                st.dev,
                st.ino,
                st.size,
                st.mtime.0 as u64,
                st.mtime.1 as u64,
                st.ctime.0 as u64,
                st.ctime.1 as u64,
            ] {
                out.extend(v.to_le_bytes());
            }
            out.extend(dg);
            out.extend(p);
        }
        out
    }

    /// Whether entries were added since it was read.
    pub fn dirty(&self) -> bool {
        self.dirty.get()
    }

    /// After a write-back: nothing new since.
    pub fn mark_saved(&self) {
        self.dirty.set(false);
    }

    /// Entries of `other` that this one lacks (another build's, written meanwhile).
    pub fn merge_from(&self, other: FileDigests) {
        let mut map = self.map.borrow_mut();
        for (k, v) in other.map.into_inner() {
            map.entry(k).or_insert(v);
        }
    }

    /// The sha256 of the regular file `p` (whose metadata is `md`), from the cache when its
    /// stamp is unchanged, else read.
    pub fn file(&self, p: &Path, md: &fs::Metadata) -> Result<[u8; 32]> {
        let key = p.as_os_str().as_encoded_bytes().to_vec();
        let st = Stamp::of(md);
        if let Some((s, d)) = self.map.borrow().get(&key) {
            if *s == st {
                self.used.borrow_mut().insert(key);
                return Ok(*d);
            }
        }
        let d = file_sha256(p)?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |t| t.as_nanos() as i128);
        let ns = |(s, n): (i64, i64)| s as i128 * 1_000_000_000 + n as i128;
        let mut map = self.map.borrow_mut();
        if ns(st.ctime).max(ns(st.mtime)) + RACY_NS < now {
            map.insert(key.clone(), (st, d));
            self.used.borrow_mut().insert(key);
            self.dirty.set(true);
        } else if map.remove(&key).is_some() {
            self.dirty.set(true);
        }
        Ok(d)
    }
}

fn file_sha256(p: &Path) -> Result<[u8; 32]> {
    let mut f = fs::File::open(p).with_context(|| format!("open `{}`", p.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        // a large file is read in many pieces: Ctrl-C is seen within one in 256 (16 MiB)
        super::jobs::check_interrupt()?;
        let n = f
            .read(&mut buf)
            .with_context(|| format!("read `{}`", p.display()))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().into())
}

fn hash_entry(src: &Source, rel: &Path, h: &mut Sha256, cache: Option<&FileDigests>) -> Result<()> {
    super::jobs::check_interrupt()?;
    let p = src.root.join(rel);
    let md = fs::symlink_metadata(&p).with_context(|| format!("stat `{}`", p.display()))?;
    h.update(rel.as_os_str().as_encoded_bytes());
    h.update([0]);
    h.update(md.mode().to_le_bytes());
    let ft = md.file_type();
    if ft.is_symlink() {
        h.update(fs::read_link(&p)?.as_os_str().as_encoded_bytes());
    } else if ft.is_file() {
        h.update(md.len().to_le_bytes());
        let d = match cache {
            Some(c) => c.file(&p, &md)?,
            None => file_sha256(&p)?,
        };
        h.update(d);
    } else if ft.is_dir() {
        let mut names: Vec<_> = fs::read_dir(&p)?.flatten().map(|e| e.file_name()).collect();
        names.sort();
        for n in names {
            let r = rel.join(&n);
            if src.ignore.is_some_and(|i| i.excludes(&r.to_string_lossy())) {
                continue;
            }
            hash_entry(src, &r, h, cache)?;
        }
    }
    h.update([1]);
    Ok(())
}

// ---- questions about an image's layers (top-most first) ----

/// What a path is in an image made of `layers` (top-most first): the metadata of the top-most
/// entry, `None` when absent or whited out.
pub fn lookup(layers: &[PathBuf], rel: &Path) -> Option<fs::Metadata> {
    lookup_in(layers, rel).map(|(_, m)| m)
}

/// [`lookup`], with the layer directory that holds the entry.
fn lookup_in<'a>(layers: &'a [PathBuf], rel: &Path) -> Option<(&'a PathBuf, fs::Metadata)> {
    for l in layers {
        // a whiteout of the path or of a parent hides everything below
        let mut cur = l.clone();
        let mut hidden = false;
        for c in rel.components() {
            cur.push(c);
            if let Ok(m) = fs::symlink_metadata(&cur) {
                if m.file_type().is_char_device() && m.rdev() == 0 {
                    hidden = true;
                    break;
                }
            }
        }
        if hidden {
            return None;
        }
        if let Ok(m) = fs::symlink_metadata(l.join(rel)) {
            return Some((l, m));
        }
    }
    None
}

/// Creates the parents of `dest` (a path in `staging`, relative part `rel`) as the image has
/// them (owner, mode), or 0:0 0755 when it does not: a layer's directory entry replaces the
/// metadata of the directory below it.
pub fn make_parents(staging: &Path, rel: &Path, layers: &[PathBuf]) -> Result<()> {
    let mut acc = PathBuf::new();
    let comps: Vec<_> = rel.components().collect();
    for c in comps.iter().take(comps.len().saturating_sub(1)) {
        acc.push(c);
        let d = staging.join(&acc);
        if fs::symlink_metadata(&d).is_ok() {
            continue;
        }
        fs::create_dir(&d).with_context(|| format!("create `{}`", d.display()))?;
        match lookup(layers, &acc).filter(|m| m.is_dir()) {
            Some(m) => {
                set_owner_mode(&d, (m.uid(), m.gid()), Some(m.mode() & 0o7777))?;
                let t = nix::sys::time::TimeSpec::new(m.mtime(), m.mtime_nsec());
                let _ = nix::sys::stat::utimensat(
                    nix::fcntl::AT_FDCWD,
                    &d,
                    &t,
                    &t,
                    nix::sys::stat::UtimensatFlags::NoFollowSymlink,
                );
            }
            None => set_owner_mode(&d, (0, 0), Some(0o755))?,
        }
    }
    Ok(())
}

/// A user or group name (or number) -> its id, from the image's /etc/passwd or /etc/group.
pub fn resolve_id(layers: &[PathBuf], name: &str, file: &str) -> Result<u32> {
    if let Ok(n) = name.parse() {
        return Ok(n);
    }
    let rel = Path::new(file);
    let text = layers
        .iter()
        .find(|l| fs::symlink_metadata(l.join(rel)).is_ok())
        .and_then(|l| fs::read_to_string(l.join(rel)).ok())
        .unwrap_or_default();
    for line in text.lines() {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() > 2 && f[0] == name {
            if let Ok(n) = f[2].parse() {
                return Ok(n);
            }
        }
    }
    bail!(
        "unable to find {} {name} in the image's /{file}",
        if file.ends_with("passwd") {
            "user"
        } else {
            "group"
        }
    )
}

/// Whether `data` starts like a tar archive (plain, gzip or zstd).
pub fn looks_like_archive(path: &Path) -> bool {
    let mut head = [0u8; 512];
    let Ok(mut f) = fs::File::open(path) else {
        return false;
    };
    let n = f.read(&mut head).unwrap_or(0);
    if head[..n].starts_with(&[0x1f, 0x8b]) || head[..n].starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        return true;
    }
    n >= 262 && &head[257..262] == b"ustar"
}

/// Unpacks the archive at `path` into `dest` (ADD of a local tarball); owners from the
/// archive are replaced by `attrs.owner`.
pub fn extract(path: &Path, dest: &Path, attrs: Attrs) -> Result<()> {
    let f = fs::File::open(path).with_context(|| format!("open `{}`", path.display()))?;
    let (_, r) = rbox_storage::layer::decompress(io::BufReader::new(f))
        .with_context(|| format!("read `{}`", path.display()))?;
    fs::create_dir_all(dest).with_context(|| format!("create `{}`", dest.display()))?;
    let mut ar = tar::Archive::new(r);
    ar.set_preserve_permissions(true);
    ar.set_unpack_xattrs(false);
    for e in ar
        .entries()
        .with_context(|| format!("read `{}`", path.display()))?
    {
        let mut e = e.with_context(|| format!("read `{}`", path.display()))?;
        let ty = e.header().entry_type();
        if !(ty.is_file() || ty.is_dir() || ty.is_symlink() || ty.is_hard_link()) {
            continue;
        }
        let name = e.path()?.into_owned();
        if !e
            .unpack_in(dest)
            .with_context(|| format!("unpack `{}` from `{}`", name.display(), path.display()))?
        {
            continue;
        }
        let p = dest.join(ignore::clean(&name.to_string_lossy()).join("/"));
        let _ = std::os::unix::fs::lchown(&p, Some(attrs.owner.0), Some(attrs.owner.1));
    }
    Ok(())
}

/// Applies `layers` (unpacked layer directories, bottom first) onto `dest` keeping their
/// whiteouts (0/0 character devices) and opaque directories (`user.overlay.opaque=y`), so that
/// `dest` is one layer with the changes of them all (`--squash`). Hard links become copies.
pub fn squash(layers: &[PathBuf], dest: &Path) -> Result<()> {
    for l in layers {
        squash_dir(l, dest).with_context(|| format!("squash layer `{}`", l.display()))?;
    }
    Ok(())
}

fn squash_dir(src: &Path, dst: &Path) -> Result<()> {
    let mut ents: Vec<_> = fs::read_dir(src)?.flatten().collect();
    ents.sort_by_key(|e| e.file_name());
    for e in ents {
        let s = e.path();
        let d = dst.join(e.file_name());
        let m = fs::symlink_metadata(&s)?;
        let ft = m.file_type();
        if ft.is_char_device() && m.rdev() == 0 {
            let _ = remove_any(&d);
            nix::sys::stat::mknod(
                &d,
                nix::sys::stat::SFlag::S_IFCHR,
                nix::sys::stat::Mode::empty(),
                0,
            )
            .with_context(|| format!("create whiteout `{}`", d.display()))?;
        } else if ft.is_dir() {
            let opaque =
                rbox_storage::lgetxattr(&s, "user.overlay.opaque").is_some_and(|v| v == b"y");
            match fs::symlink_metadata(&d) {
                Ok(dm) if dm.is_dir() && !opaque => {}
                Ok(_) => {
                    remove_any(&d)?;
                    fs::create_dir(&d)?;
                }
                Err(_) => fs::create_dir(&d)?,
            }
            if opaque {
                let f = fs::File::open(&d)?;
                rbox_storage::fsetxattr(&f, "user.overlay.opaque", b"y")
                    .with_context(|| format!("mark `{}` opaque", d.display()))?;
            }
            squash_dir(&s, &d)?;
            set_owner_mode(&d, (m.uid(), m.gid()), Some(m.mode() & 0o7777))?;
        } else {
            copy_one(
                &s,
                &m,
                &d,
                Attrs {
                    owner: (m.uid(), m.gid()),
                    mode: None,
                },
                None,
            )?;
        }
    }
    Ok(())
}

/// The file name ADD gives a download: the last component of the URL's path.
pub fn url_file_name(url: &str) -> String {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    let after = path.split_once("://").map_or(path, |(_, r)| r);
    match after.split_once('/') {
        Some((_, p)) => p
            .rsplit('/')
            .find(|c| !c.is_empty())
            .unwrap_or("index.html"),
        None => "index.html",
    }
    .to_string()
}

/// Downloads `url` to `dest` (ADD of a URL), verifying TLS as pulls do.
pub fn download(url: &str, dest: &Path) -> Result<()> {
    let host = url
        .split_once("://")
        .map_or("", |(_, r)| r.split(['/', '?']).next().unwrap_or(""));
    let tls = rbox_registry::tls::tls_config(host, None, true)?;
    let agent: ureq::Agent = ureq::Agent::config_builder().tls_config(tls).build().into();
    let mut resp = agent
        .get(url)
        .call()
        .map_err(|e| anyhow!("download `{url}`: {e}"))?;
    let mut f =
        std::fs::File::create(dest).with_context(|| format!("create `{}`", dest.display()))?;
    std::io::copy(&mut resp.body_mut().as_reader(), &mut f)
        .map_err(|e| anyhow!("download `{url}`: {e}"))?;
    Ok(())
}

/// The copy driver's RUN: what differs between a container's full `rootfs` and the image of
/// `layers` (top-most first), written into `staging` as an upper directory would hold it
/// (changed and new entries, 0/0 character devices for what was removed).
pub fn diff_rootfs(rootfs: &Path, layers: &[PathBuf], staging: &Path) -> Result<()> {
    diff_dir(rootfs, layers, staging, Path::new(""))
}

fn diff_dir(rootfs: &Path, layers: &[PathBuf], staging: &Path, rel: &Path) -> Result<()> {
    let dir = rootfs.join(rel);
    let mut present = std::collections::BTreeSet::new();
    let mut ents: Vec<_> = fs::read_dir(&dir)
        .with_context(|| format!("read `{}`", dir.display()))?
        .flatten()
        .collect();
    ents.sort_by_key(|e| e.file_name());
    for e in ents {
        let r = rel.join(e.file_name());
        present.insert(e.file_name());
        let m = fs::symlink_metadata(rootfs.join(&r))?;
        let old = lookup(layers, &r);
        let changed = match &old {
            None => true,
            Some(o) => {
                o.file_type() != m.file_type()
                    || o.mode() != m.mode()
                    || o.uid() != m.uid()
                    || o.gid() != m.gid()
                    || (!m.is_dir()
                        && (o.len() != m.len()
                            || o.mtime() != m.mtime()
                            || o.mtime_nsec() != m.mtime_nsec()))
                    || (m.file_type().is_symlink()
                        && lookup_in(layers, &r).and_then(|(l, _)| fs::read_link(l.join(&r)).ok())
                            != fs::read_link(rootfs.join(&r)).ok())
            }
        };
        if changed {
            parents_like(rootfs, staging, &r)?;
            let to = staging.join(&r);
            if m.is_dir() {
                fs::create_dir_all(&to)?;
                set_owner_mode(&to, (m.uid(), m.gid()), Some(m.mode() & 0o7777))?;
            } else {
                copy_one(
                    &rootfs.join(&r),
                    &m,
                    &to,
                    Attrs {
                        owner: (m.uid(), m.gid()),
                        mode: None,
                    },
                    None,
                )?;
            }
        }
        if m.is_dir() {
            diff_dir(rootfs, layers, staging, &r)?;
        }
    }
    // what the image has here and the container no longer
    for name in image_names(layers, rel) {
        if !present.contains(&name) {
            let r = rel.join(&name);
            parents_like(rootfs, staging, &r)?;
            let to = staging.join(&r);
            let _ = remove_any(&to);
            nix::sys::stat::mknod(
                &to,
                nix::sys::stat::SFlag::S_IFCHR,
                nix::sys::stat::Mode::empty(),
                0,
            )
            .with_context(|| format!("create whiteout `{}`", to.display()))?;
        }
    }
    Ok(())
}

/// The parents of `rel` in `staging`, as the container's root has them.
fn parents_like(rootfs: &Path, staging: &Path, rel: &Path) -> Result<()> {
    let mut acc = PathBuf::new();
    let comps: Vec<_> = rel.components().collect();
    for c in comps.iter().take(comps.len().saturating_sub(1)) {
        acc.push(c);
        let d = staging.join(&acc);
        if fs::symlink_metadata(&d).is_ok() {
            continue;
        }
        fs::create_dir(&d).with_context(|| format!("create `{}`", d.display()))?;
        let m = fs::symlink_metadata(rootfs.join(&acc))?;
        set_owner_mode(&d, (m.uid(), m.gid()), Some(m.mode() & 0o7777))?;
    }
    Ok(())
}

/// The names in directory `rel` of the image made of `layers` (top-most first): the union of
/// the layers down to an opaque one, without whited-out names.
fn image_names(layers: &[PathBuf], rel: &Path) -> Vec<std::ffi::OsString> {
    let mut seen = std::collections::BTreeSet::new();
    let mut gone = std::collections::BTreeSet::new();
    for l in layers {
        let d = l.join(rel);
        let Ok(m) = fs::symlink_metadata(&d) else {
            continue;
        };
        if !m.is_dir() {
            break;
        }
        for e in fs::read_dir(&d).into_iter().flatten().flatten() {
            let n = e.file_name();
            let wh = e
                .metadata()
                .is_ok_and(|m| m.file_type().is_char_device() && m.rdev() == 0);
            if wh {
                gone.insert(n);
            } else if !gone.contains(&n) {
                seen.insert(n);
            }
        }
        if rbox_storage::lgetxattr(&d, "user.overlay.opaque").is_some_and(|v| v == b"y") {
            break;
        }
    }
    seen.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cache entry of `p` as it is now, claiming the digest `claimed`.
    fn entry(p: &Path, claimed: [u8; 32]) -> FileDigests {
        let d = FileDigests::default();
        let st = Stamp::of(&fs::symlink_metadata(p).unwrap());
        d.map
            .borrow_mut()
            .insert(p.as_os_str().as_encoded_bytes().to_vec(), (st, claimed));
        FileDigests::decode(&d.encode())
    }

    #[test]
    fn file_digests_hold_while_the_stamp_holds() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("f");
        fs::write(&f, "aaaa").unwrap();
        let real: [u8; 32] = Sha256::digest(b"aaaa").into();
        // an unchanged stamp: the remembered digest, the file not read
        let c = entry(&f, [7; 32]);
        assert_eq!(
            c.file(&f, &fs::symlink_metadata(&f).unwrap()).unwrap(),
            [7; 32]
        );
        // the same size and mtime set back (`touch -r`), other content: the ctime differs
        let md = fs::symlink_metadata(&f).unwrap();
        let c = entry(&f, real);
        let before = (md.ctime(), md.ctime_nsec());
        loop {
            fs::write(&f, "bbbb").unwrap();
            let t = nix::sys::time::TimeSpec::new(md.mtime(), md.mtime_nsec());
            nix::sys::stat::utimensat(
                nix::fcntl::AT_FDCWD,
                &f,
                &t,
                &t,
                nix::sys::stat::UtimensatFlags::NoFollowSymlink,
            )
            .unwrap();
            // the coarse clock may not have ticked yet: write again until the stamp moves
            let m = fs::symlink_metadata(&f).unwrap();
            if (m.ctime(), m.ctime_nsec()) != before {
                break;
            }
        }
        let now = fs::symlink_metadata(&f).unwrap();
        assert_eq!((now.len(), now.mtime_nsec()), (md.len(), md.mtime_nsec()));
        assert_eq!(
            c.file(&f, &now).unwrap(),
            <[u8; 32]>::from(Sha256::digest(b"bbbb"))
        );
        // a file changed a moment ago is not remembered (racily clean)
        assert!(!c.dirty() || c.encode().is_empty());
        // what does not parse is dropped, not an error
        assert!(FileDigests::decode(b"\x05\x00garbage")
            .map
            .borrow()
            .is_empty());
    }

    #[test]
    fn sources_resolve_inside_their_root() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        fs::create_dir_all(r.join("usr/lib")).unwrap();
        fs::write(r.join("usr/lib/f"), "x").unwrap();
        std::os::unix::fs::symlink("usr/lib", r.join("lib")).unwrap();
        std::os::unix::fs::symlink("/usr/lib/f", r.join("abs")).unwrap();
        std::os::unix::fs::symlink("../../../../etc/passwd", r.join("up")).unwrap();
        std::os::unix::fs::symlink("loop", r.join("loop")).unwrap();
        assert_eq!(
            in_root(r, Path::new("lib/f")).unwrap(),
            Path::new("usr/lib/f")
        );
        assert_eq!(
            in_root(r, Path::new("abs")).unwrap(),
            Path::new("usr/lib/f")
        );
        assert_eq!(
            in_root(r, Path::new("up")).unwrap(),
            Path::new("etc/passwd")
        );
        assert!(in_root(r, Path::new("loop")).is_err());
        // the same in an image's layers: the link in the lower one, the file in the upper
        let lower = d.path().join("l1");
        let upper = d.path().join("l2");
        fs::create_dir_all(lower.join("usr/lib")).unwrap();
        std::os::unix::fs::symlink("usr/lib", lower.join("lib")).unwrap();
        fs::create_dir_all(upper.join("usr/lib")).unwrap();
        let layers = [upper, lower];
        assert_eq!(
            in_image(&layers, Path::new("lib/x"), false).unwrap(),
            Path::new("usr/lib/x")
        );
        assert_eq!(
            in_image(&layers, Path::new("lib"), false).unwrap(),
            Path::new("lib")
        );
        assert_eq!(
            in_image(&layers, Path::new("lib"), true).unwrap(),
            Path::new("usr/lib")
        );
        assert!(escapes("../x") && escapes("a/../../x"));
        assert!(!escapes("a/../x") && !escapes("./x"));
    }
}
