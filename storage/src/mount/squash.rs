//! A single-file squashfs image (`rbox run --image-file FILE`) as a container's read-only
//! lower layer, mounted without unpacking: `squashfuse` (Debian package squashfuse) serves
//! the file on FUSE, and kernel overlay (or rbox's FUSE overlay) puts the container's
//! `upper/` and `work/` above it, so the file itself is never written and many containers,
//! of many users and nodes, can use one file at once.
//!
//! The mount is made here, not by squashfuse: this process (root in the container's user
//! namespace) opens /dev/fuse, mounts it with `fd=N` and hands the descriptor to
//! `squashfuse -f FILE /dev/fd/3` (libfuse takes a `/dev/fd/N` mount point as an already
//! mounted connection). So no fusermount is needed, the mount exists before squashfuse runs,
//! and readiness needs no polling: the first `stat` of the mount's root waits for
//! squashfuse's answer to the kernel's INIT, or fails with ENOTCONN when it died (a file it
//! cannot read).
//!
//! Lifetime, as for the FUSE overlay's server ([`super::fuse`]): squashfuse is a child of the
//! process that mounts the root (the container's init during its setup), so it is a member of
//! the container's pid namespace and dies with its PID 1; the mount goes with the last
//! process of the container's mount namespace. PR_SET_PDEATHSIG ties it to its parent too.
//! Nothing is left on the host after `--rm`, `rm -f` or a killed rbox.
//!
//! Where the image's config lives: `/.rbox/image.json` inside the squashfs (the OCI image
//! config blob as the store held it), read with `unsquashfs -cat` ([`read_config`]). See
//! [`CONFIG_PATH`].

use std::ffi::CString;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nix::fcntl::{open, OFlag};
use nix::mount::{mount, MsFlags};
use nix::sys::stat::Mode;
use nix::unistd::ForkResult;

use crate::{bt, sys, Error, Result};

/// Where a squashfs image written by `rbox save --format squashfs` keeps the image's OCI
/// config (entrypoint, cmd, env, workdir, user, labels...), relative to its root. A file
/// inside the image rather than xattrs or a trailer: any squashfs tool reads it
/// (`unsquashfs -cat FILE .rbox/image.json`), it survives copies and re-packing, and
/// Apptainer keeps its own metadata the same way (`/.singularity.d/`).
pub const CONFIG_PATH: &str = ".rbox/image.json";

/// The first four bytes of every squashfs image.
const MAGIC: &[u8; 4] = b"hsqs";

/// Finds `prog` in `$PATH` (or the usual system directories).
pub fn find_program(prog: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into());
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/bin", "/sbin", "/bin"].map(PathBuf::from))
        .map(|d| d.join(prog))
        .find(|p| p.is_file())
}

/// `squashfuse`, or an error that says which package brings it.
pub fn squashfuse() -> Result<PathBuf> {
    find_program("squashfuse").ok_or_else(|| {
        Error::io(
            "find `squashfuse`",
            std::io::Error::other("not installed (Debian package squashfuse)"),
        )
    })
}

/// Checks that `file` can be opened and is a squashfs image: the one-line reason otherwise
/// (without the path: the caller names it).
pub fn check_file(file: &Path) -> std::result::Result<(), String> {
    let mut f = std::fs::File::open(file).map_err(|e| {
        let s = e.to_string();
        s.split(" (os error").next().unwrap_or(&s).to_lowercase()
    })?;
    if f.metadata().map(|m| m.is_dir()).unwrap_or(false) {
        return Err("is a directory, not a squashfs image".into());
    }
    // the superblock (squashfs 4.0): magic, major version at 28, bytes used at 40
    let mut sb = [0u8; 96];
    if f.read_exact(&mut sb).is_err() || &sb[..4] != MAGIC {
        return Err("not a squashfs image".into());
    }
    let major = u16::from_le_bytes([sb[28], sb[29]]);
    if major != 4 {
        return Err(format!("squashfs version {major}, not 4"));
    }
    let used = u64::from_le_bytes(sb[40..48].try_into().expect("8 bytes"));
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    if used > len {
        return Err(format!("truncated squashfs image ({len} of {used} bytes)"));
    }
    Ok(())
}

/// The raw image config kept at [`CONFIG_PATH`] in `file`; `None` for a squashfs made by
/// another tool (no config: the container runs the command given).
pub fn read_config(file: &Path) -> Result<Option<Vec<u8>>> {
    cat(file, CONFIG_PATH)
}

/// The content of regular file `inside` (relative to the root) of squashfs image `file`,
/// read with `unsquashfs -cat` without mounting; `None` when it has no such file.
pub fn cat(file: &Path, inside: &str) -> Result<Option<Vec<u8>>> {
    let prog = find_program("unsquashfs").ok_or_else(|| {
        Error::io(
            "find `unsquashfs`",
            std::io::Error::other("not installed (Debian package squashfs-tools)"),
        )
    })?;
    let out = Command::new(prog)
        .arg("-cat")
        .arg(file)
        .arg(inside.trim_start_matches('/'))
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::io(format!("run unsquashfs on {}", bt(file)), e))?;
    if out.status.success() && !out.stdout.is_empty() {
        Ok(Some(out.stdout))
    } else {
        Ok(None)
    }
}

/// Mounts squashfs image `file` read-only at `at`, served by a forked `squashfuse` that lives
/// as long as its parent (see the module doc). Returns once the mount answers. Call
/// single-threaded.
pub fn mount_file(file: &Path, at: &Path) -> Result<()> {
    let prog = squashfuse()?;
    let ctx = || format!("mount squashfs image {} at {}", bt(file), bt(at));
    // the file may have gone or changed since the container was created
    check_file(file).map_err(|why| Error::io(ctx(), std::io::Error::other(why)))?;
    // everything the child needs is made before the fork
    let prog_c = CString::new(prog.as_os_str().as_bytes()).expect("path has no NUL");
    let mut argv = vec![c"squashfuse".to_owned(), c"-f".to_owned()];
    // On a single-id map every owner but one is unmapped: squashfuse's files would show the
    // overflow id, which kernel overlay cannot copy up (EOVERFLOW on any change below such a
    // directory). libfuse's `uid=`/`gid=` options give every file the one mapped id instead,
    // as a single-id store's unpacked layers give theirs.
    if let Some((uid, gid)) = single_mapped_ids() {
        argv.push(c"-o".to_owned());
        argv.push(CString::new(format!("uid={uid},gid={gid}")).expect("digits"));
    }
    argv.push(
        CString::new(file.as_os_str().as_bytes())
            .map_err(|_| Error::io(ctx(), std::io::Error::other("path has a NUL byte")))?,
    );
    argv.push(c"/dev/fd/3".to_owned());
    let fuse = open("/dev/fuse", OFlag::O_RDWR | OFlag::O_CLOEXEC, Mode::empty()).map_err(|e| {
        Error::io(
            ctx(),
            std::io::Error::other(format!(
                "open `/dev/fuse`: {e} (make it mode 0666 on the host: chmod 0666 /dev/fuse)"
            )),
        )
    })?;
    let opts = format!(
        "fd={},rootmode=40000,user_id=0,group_id=0,allow_other,default_permissions",
        fuse.as_raw_fd()
    );
    mount(
        Some("squashfuse"),
        at,
        Some("fuse.squashfuse"),
        MsFlags::MS_RDONLY | MsFlags::MS_NODEV,
        Some(opts.as_str()),
    )
    .map_err(|e| Error::io(ctx(), e.into()))?;
    // an exec failure comes back over this pipe; end-of-file means squashfuse runs
    let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC)
        .map_err(|e| Error::io("create pipe", std::io::Error::from(e)))?;
    match sys::fork().map_err(|e| Error::io("fork squashfuse", std::io::Error::from(e)))? {
        ForkResult::Child => {
            drop(r);
            let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL);
            super::fuse::close_others(&[w.as_raw_fd(), fuse.as_raw_fd()]);
            // the connection on fd 3 (inherited: without close-on-exec)
            let moved = if fuse.as_raw_fd() == 3 {
                nix::fcntl::fcntl(
                    &fuse,
                    nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
                )
                .map(drop)
                .map_err(std::io::Error::from)
            } else {
                sys::dup2_raw(fuse.as_raw_fd(), 3)
            };
            if moved.is_err() {
                sys::exit_now(127);
            }
            let e = nix::unistd::execv(&prog_c, &argv).unwrap_err();
            let _ = nix::unistd::write(&w, format!("exec squashfuse: {e}").as_bytes());
            sys::exit_now(127)
        }
        ForkResult::Parent { .. } => {
            drop(w);
            // only squashfuse holds the connection now: when it dies, the mount fails
            drop(fuse);
            let mut msg = String::new();
            let _ = std::fs::File::from(r).read_to_string(&mut msg);
            if !msg.is_empty() {
                let _ = nix::mount::umount2(at, nix::mount::MntFlags::MNT_DETACH);
                return Err(Error::io(ctx(), std::io::Error::other(msg)));
            }
            // waits for squashfuse's answer to INIT (ENOTCONN when it exited)
            std::fs::metadata(at).map_err(|e| {
                let _ = nix::mount::umount2(at, nix::mount::MntFlags::MNT_DETACH);
                if e.raw_os_error() == Some(libc::ENOTCONN) {
                    return Error::io(
                        ctx(),
                        std::io::Error::other(
                            "squashfuse exited: the file is not a valid squashfs image",
                        ),
                    );
                }
                Error::io(ctx(), e)
            })?;
            Ok(())
        }
    }
}

/// The ids this process's user namespace maps, when it maps one uid and one gid only (a
/// single-id map): `(uid, gid)` as seen inside. `None` for ranges and the initial namespace.
fn single_mapped_ids() -> Option<(u32, u32)> {
    use super::fuse::shift::IdMap;
    let (uid_map, gid_map) = crate::own_id_maps();
    Some((
        IdMap::parse(&uid_map)?.single()?,
        IdMap::parse(&gid_map)?.single()?,
    ))
}

/// Writes `image` as one squashfs file at `out` (which must not exist): its layers applied in
/// order (whiteouts and opaque directories honoured) as one tree streamed as a tar into
/// `sqfstar`, which keeps the tar's owners (call it in the store's user namespace, where the
/// layer files show the image's own ids), plus the image config at [`CONFIG_PATH`].
pub fn write_image(store: &crate::Store, image: &crate::ImageRecord, out: &Path) -> Result<()> {
    let prog = find_program("sqfstar").ok_or_else(|| {
        Error::io(
            "find `sqfstar`",
            std::io::Error::other("not installed (Debian package squashfs-tools)"),
        )
    })?;
    let config = store.read_blob(&image.id)?;
    let lowers: Vec<PathBuf> = image
        .layers
        .iter()
        .rev()
        .map(|l| store.layer_path(&l.diff_id))
        .collect();
    let dirs: Vec<&Path> = lowers.iter().map(PathBuf::as_path).collect();
    let mut child = Command::new(prog)
        .args(["-quiet", "-no-progress", "-exit-on-error"])
        .arg(out)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::io("run sqfstar", e))?;
    let stdin = child.stdin.take().expect("piped stdin");
    let written = crate::changes::write_union_tar_with(
        &dirs,
        &[],
        &[(CONFIG_PATH, &config[..])],
        std::io::BufWriter::with_capacity(256 * 1024, stdin),
    );
    let done = child
        .wait_with_output()
        .map_err(|e| Error::io("run sqfstar", e))?;
    if !done.status.success() {
        let msg = String::from_utf8_lossy(&done.stderr);
        let line = msg
            .lines()
            .map(str::trim)
            .rfind(|l| !l.is_empty())
            .unwrap_or("exited with an error")
            .to_string();
        return Err(Error::io(
            format!("write squashfs image {}", bt(out)),
            std::io::Error::other(format!("sqfstar: {line}")),
        ));
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    fn superblock(major: u16, used: u64, len: usize) -> Vec<u8> {
        let mut b = vec![0u8; len];
        b[..4].copy_from_slice(MAGIC);
        b[28..30].copy_from_slice(&major.to_le_bytes());
        b[40..48].copy_from_slice(&used.to_le_bytes());
        b
    }

    #[test]
    fn checks_the_superblock() {
        let d = tempfile::tempdir().unwrap();
        let case = |name: &str, data: &[u8]| {
            let p = d.path().join(name);
            std::fs::write(&p, data).unwrap();
            check_file(&p)
        };
        assert_eq!(case("ok", &superblock(4, 4096, 4096)), Ok(()));
        assert_eq!(
            case(
                "text",
                b"just some text, long enough to hold a superblock's 96 bytes, or nearly so.."
            ),
            Err("not a squashfs image".into())
        );
        assert_eq!(case("short", b"hsqs"), Err("not a squashfs image".into()));
        assert_eq!(
            case("v3", &superblock(3, 4096, 4096)),
            Err("squashfs version 3, not 4".into())
        );
        assert_eq!(
            case("cut", &superblock(4, 8192, 4096)),
            Err("truncated squashfs image (4096 of 8192 bytes)".into())
        );
        assert_eq!(
            check_file(&d.path().join("missing")),
            Err("no such file or directory".into())
        );
        assert_eq!(
            check_file(d.path()),
            Err("is a directory, not a squashfs image".into())
        );
    }
}
