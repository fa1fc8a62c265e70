//! The kernel overlay driver: mounting overlayfs, and the probe that tells whether it can be
//! mounted here.
//!
//! Mounts through the new mount API (`fsopen` + one `lowerdir+` per layer, no option-length
//! limit; kernel >= 6.8), falling back to mount(2)'s option string on older kernels. Always
//! with `userxattr`: layers carry `user.overlay.opaque`, so the same store works inside a
//! user namespace and as root.
//!
//! The probe's parts live here: its memo (`overlay-probe` in the store root: the kernel
//! release and the answer) and its scratch directory (a `tmp/` entry, so a probe killed
//! midway leaves nothing that the next write's sweep does not remove). Forking the probe's
//! child, which needs a mount namespace of its own (and, for `rbox info`, to enter rbox's user
//! namespace), is the binary's part.

use std::fs;
use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use nix::mount::{mount as mount2, MsFlags};

use crate::store::{Store, TmpPath};
use crate::{bt, sys, Error, IoContext, Result};

/// Mounts an overlay of `lowers` (topmost first) with `upper`/`work` at `target`.
pub fn mount(
    lowers: &[PathBuf],
    upper: &Path,
    work: &Path,
    volatile: bool,
    target: &Path,
) -> Result<()> {
    match mount_fsopen(lowers, upper, work, volatile, target) {
        Ok(()) => Ok(()),
        // EINVAL on "lowerdir+" means a kernel before 6.8; ENOSYS, no new mount API
        Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL) | Some(libc::ENOSYS)) => {
            mount_legacy(lowers, upper, work, volatile, target)
        }
        Err(e) => Err(Error::io(format!("mount overlay at {}", bt(target)), e)),
    }
}

fn mount_fsopen(
    lowers: &[PathBuf],
    upper: &Path,
    work: &Path,
    volatile: bool,
    target: &Path,
) -> io::Result<()> {
    let fs = sys::fsopen("overlay")?;
    let fd = fs.as_fd();
    sys::fsconfig_string(fd, "source", "overlay")?;
    for l in lowers {
        sys::fsconfig_string(fd, "lowerdir+", &l.to_string_lossy())?;
    }
    sys::fsconfig_string(fd, "upperdir", &upper.to_string_lossy())?;
    sys::fsconfig_string(fd, "workdir", &work.to_string_lossy())?;
    sys::fsconfig_flag(fd, "userxattr")?;
    if volatile {
        sys::fsconfig_flag(fd, "volatile")?;
    }
    sys::fsconfig_create(fd)?;
    let mnt = sys::fsmount(fd, 0)?;
    sys::move_mount_to(mnt.as_fd(), target)
}

fn mount_legacy(
    lowers: &[PathBuf],
    upper: &Path,
    work: &Path,
    volatile: bool,
    target: &Path,
) -> Result<()> {
    let data = legacy_options(lowers, upper, work, volatile);
    mount2(
        Some("overlay"),
        target,
        Some("overlay"),
        MsFlags::empty(),
        Some(data.as_str()),
    )
    .map_err(|e| {
        Error::io(
            format!("mount overlay at {} ({} layers)", bt(target), lowers.len()),
            io::Error::other(e),
        )
    })
}

/// mount(2)'s option string (at most a page: many layers with long paths do not fit).
fn legacy_options(lowers: &[PathBuf], upper: &Path, work: &Path, volatile: bool) -> String {
    let lower: Vec<String> = lowers
        .iter()
        .map(|l| escape(&l.to_string_lossy()))
        .collect();
    let mut data = format!(
        "lowerdir={},upperdir={},workdir={},userxattr",
        lower.join(":"),
        escape(&upper.to_string_lossy()),
        escape(&work.to_string_lossy())
    );
    if volatile {
        data.push_str(",volatile");
    }
    data
}

/// overlayfs splits its options on ',' and ':' unless escaped with '\'.
fn escape(p: &str) -> String {
    p.replace('\\', "\\\\")
        .replace(':', "\\:")
        .replace(',', "\\,")
}

// ---- the probe ----

/// The kernel release the memo is keyed by: a new kernel is probed again.
pub fn kernel_release() -> String {
    fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// The memo's answer for `kernel`: `Some(works)` when it was probed on that kernel.
pub fn parse_memo(text: &str, kernel: &str) -> Option<bool> {
    let (k, v) = text.trim().split_once(' ')?;
    (k == kernel).then_some(v == "ok")
}

/// The memo's text: `<kernel release> ok|no`.
pub fn memo_text(kernel: &str, works: bool) -> String {
    format!("{kernel} {}\n", if works { "ok" } else { "no" })
}

/// The directories of one overlay probe, under a `tmp/` entry of the store: `l`, `u`, `w`
/// (lower, upper, work) and `m` (the mount point). Removed on drop; a probe that dies
/// before (killed, or a crash) leaves an entry of a dead process, which the next write to
/// the store sweeps away. A forked child must leave with `_exit`, never dropping its copy.
pub struct ProbeScratch {
    tmp: TmpPath,
}

impl ProbeScratch {
    pub fn dir(&self) -> &Path {
        &self.tmp.path
    }

    /// Mounts a one-layer volatile overlay of the scratch directories, in the calling
    /// process's mount namespace: exactly what a container's root needs, at toy size.
    pub fn mount(&self) -> Result<()> {
        let d = self.dir();
        mount(
            &[d.join("l")],
            &d.join("u"),
            &d.join("w"),
            true,
            &d.join("m"),
        )
    }
}

impl Store {
    /// Where the overlay probe's answer is remembered (see [`parse_memo`]).
    pub fn overlay_probe_memo(&self) -> PathBuf {
        self.root().join("overlay-probe")
    }

    /// The remembered answer of the overlay probe on the running kernel, if any.
    pub fn overlay_probe_answer(&self) -> Option<bool> {
        let text = fs::read_to_string(self.overlay_probe_memo()).ok()?;
        parse_memo(&text, &kernel_release())
    }

    /// Remembers the overlay probe's answer for the running kernel.
    pub fn record_overlay_probe(&self, works: bool) -> Result<()> {
        self.write_atomic(
            &self.overlay_probe_memo(),
            memo_text(&kernel_release(), works).as_bytes(),
        )
    }

    /// Fresh scratch directories for one overlay probe (see [`ProbeScratch`]).
    pub fn overlay_probe_scratch(&self) -> Result<ProbeScratch> {
        let tmp = self.tmp_path("overlay-probe");
        for sub in ["", "l", "u", "w", "m"] {
            let p = tmp.path.join(sub);
            fs::create_dir(&p).ctx(|| format!("create {}", bt(&p)))?;
        }
        Ok(ProbeScratch { tmp })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_separators() {
        assert_eq!(escape("/a:b,c"), "/a\\:b\\,c");
    }

    #[test]
    fn legacy_options_list_every_layer() {
        let o = legacy_options(
            &["/l/2".into(), "/l,1".into()],
            Path::new("/u"),
            Path::new("/w"),
            true,
        );
        assert_eq!(
            o,
            "lowerdir=/l/2:/l\\,1,upperdir=/u,workdir=/w,userxattr,volatile"
        );
    }

    #[test]
    fn memo_is_per_kernel() {
        let t = memo_text("6.18.0", true);
        assert_eq!(t, "6.18.0 ok\n");
        assert_eq!(parse_memo(&t, "6.18.0"), Some(true));
        assert_eq!(parse_memo(&t, "6.19.0"), None);
        assert_eq!(
            parse_memo(&memo_text("6.18.0", false), "6.18.0"),
            Some(false)
        );
        assert_eq!(parse_memo("", "6.18.0"), None);
        assert_eq!(parse_memo("garbage", "6.18.0"), None);
    }

    fn store() -> (tempfile::TempDir, Store) {
        let t = tempfile::tempdir().unwrap();
        let s = Store::open(&t.path().join("root"), crate::IdMap::full()).unwrap();
        (t, s)
    }

    #[test]
    fn memo_round_trips_in_the_store() {
        let (_t, s) = store();
        assert_eq!(s.overlay_probe_answer(), None);
        s.record_overlay_probe(false).unwrap();
        assert_eq!(s.overlay_probe_answer(), Some(false));
        s.record_overlay_probe(true).unwrap();
        assert_eq!(s.overlay_probe_answer(), Some(true));
        assert_eq!(s.overlay_probe_memo(), s.root().join("overlay-probe"));
        // another kernel's answer is not this one's
        fs::write(s.overlay_probe_memo(), memo_text("0.0-other", true)).unwrap();
        assert_eq!(s.overlay_probe_answer(), None);
    }

    #[test]
    fn scratch_goes_away_with_its_handle() {
        let (_t, s) = store();
        let scratch = s.overlay_probe_scratch().unwrap();
        let dir = scratch.dir().to_path_buf();
        assert!(dir.starts_with(s.root().join("tmp")));
        for sub in ["l", "u", "w", "m"] {
            assert!(dir.join(sub).is_dir());
        }
        // the kernel leaves a mode-0 work/work behind: removal must cope
        let ww = dir.join("w/work");
        fs::create_dir(&ww).unwrap();
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&ww, fs::Permissions::from_mode(0o000)).unwrap();
        drop(scratch);
        assert!(!dir.exists());
    }
}
