//! The overlay against a real FUSE mount: each test re-runs itself under `unshare -Urm` (root
//! of a user namespace of its own, with its own mount namespace), where the inner run mounts
//! two layers and an upper directory on a temporary directory with fuser's own session
//! threads, then works on the mount with plain file calls and checks the layer directories.

use std::fs;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use super::fs::{format_override, parse_override, Overlay, OPAQUE, OVERRIDE_STAT};
use crate::sys;

const INNER: &str = "RBOX_FUSE_TEST_INNER";

/// Runs test `name` again inside `unshare -Urm`; true when this is the inner run.
fn inner_or_rerun(name: &str) -> bool {
    if std::env::var_os(INNER).is_some() {
        return true;
    }
    if fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/fuse")
        .is_err()
        || Command::new("unshare").arg("--help").output().is_err()
    {
        assert!(
            std::env::var_os("CI").is_none(),
            "/dev/fuse or unshare(1) is missing"
        );
        eprintln!("skipped: /dev/fuse or unshare(1) is not usable here");
        return false;
    }
    let out = Command::new("unshare")
        .args(["-Urm", "--"])
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(INNER, "1")
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "inner run failed:\n{text}");
    assert!(text.contains("1 passed"), "inner run ran nothing:\n{text}");
    false
}

struct Mounted {
    _tmp: tempfile::TempDir,
    lower2: PathBuf,
    upper: PathBuf,
    mnt: PathBuf,
    session: Option<fuser::BackgroundSession>,
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.mnt, nix::mount::MntFlags::MNT_DETACH);
        drop(self.session.take());
    }
}

fn dirfd(p: &Path) -> OwnedFd {
    nix::fcntl::open(
        p,
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_DIRECTORY,
        nix::sys::stat::Mode::empty(),
    )
    .unwrap()
}

fn whiteout(p: &Path) {
    nix::sys::stat::mknod(
        p,
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::empty(),
        0,
    )
    .unwrap();
}

fn is_whiteout(p: &Path) -> bool {
    fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_char_device() && m.rdev() == 0)
}

/// lower2 (bottom): a/, a/old, a/keep, big, d/x, link1+link2 (hard links), gone, owned
/// (an override xattr: 7:8, mode 4750), owned0 (0:0, 0640)
/// lower1 (top): a/new, gone as a whiteout, o/ opaque over lower2's o/hidden
fn setup() -> Mounted {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let (lower1, lower2, upper, work, mnt) = (
        t.join("l1"),
        t.join("l2"),
        t.join("upper"),
        t.join("work"),
        t.join("mnt"),
    );
    for d in [&lower1, &lower2, &upper, &work, &mnt] {
        fs::create_dir(d).unwrap();
    }
    fs::create_dir_all(lower2.join("a")).unwrap();
    fs::write(lower2.join("a/old"), "old").unwrap();
    fs::write(lower2.join("a/keep"), "keep").unwrap();
    let big: Vec<u8> = (0..(24u32 << 20)).map(|i| (i % 251) as u8).collect();
    fs::write(lower2.join("big"), &big).unwrap();
    fs::create_dir(lower2.join("d")).unwrap();
    fs::write(lower2.join("d/x"), "x").unwrap();
    fs::write(lower2.join("link1"), "linked").unwrap();
    fs::hard_link(lower2.join("link1"), lower2.join("link2")).unwrap();
    fs::write(lower2.join("gone"), "gone").unwrap();
    fs::create_dir(lower2.join("o")).unwrap();
    fs::write(lower2.join("o/hidden"), "h").unwrap();
    fs::create_dir(lower1.join("a")).unwrap();
    fs::write(lower1.join("a/new"), "new").unwrap();
    whiteout(&lower1.join("gone"));
    fs::create_dir(lower1.join("o")).unwrap();
    fs::write(lower1.join("o/shown"), "s").unwrap();
    sys::fsetxattr(dirfd(&lower1.join("o")), OPAQUE, b"y").unwrap();
    fs::write(lower2.join("owned"), "o").unwrap();
    let f = fs::File::open(lower2.join("owned")).unwrap();
    sys::fsetxattr(&f, OVERRIDE_STAT, b"7:8:04750").unwrap();
    fs::write(lower2.join("owned0"), "o").unwrap();
    let f = fs::File::open(lower2.join("owned0")).unwrap();
    sys::fsetxattr(&f, OVERRIDE_STAT, b"0:0:0640").unwrap();
    let fs_ = Overlay::new(
        dirfd(&upper),
        dirfd(&work),
        vec![dirfd(&lower1), dirfd(&lower2)],
    );
    let mut cfg = fuser::Config::default();
    cfg.mount_options = vec![
        fuser::MountOption::FSName("rbox-fuse-test".into()),
        fuser::MountOption::DefaultPermissions,
    ];
    cfg.acl = fuser::SessionACL::All;
    cfg.n_threads = Some(2);
    let session = fuser::Session::new(fs_, &mnt, &cfg)
        .unwrap()
        .spawn()
        .unwrap();
    Mounted {
        _tmp: tmp,
        lower2,
        upper,
        mnt,
        session: Some(session),
    }
}

fn names(p: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(p)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn lookup_merges_layers_whiteouts_and_opaque_dirs() {
    if !inner_or_rerun("mount::fuse::tests::lookup_merges_layers_whiteouts_and_opaque_dirs") {
        return;
    }
    let m = setup();
    assert_eq!(names(&m.mnt.join("a")), ["keep", "new", "old"]);
    assert_eq!(fs::read_to_string(m.mnt.join("a/new")).unwrap(), "new");
    assert!(
        !m.mnt.join("gone").exists(),
        "a lower whiteout hides the file"
    );
    assert_eq!(
        names(&m.mnt.join("o")),
        ["shown"],
        "an opaque dir hides lower entries"
    );
    assert!(!names(&m.mnt).contains(&"gone".to_string()));
}

#[test]
fn copy_up_once_and_whiteouts_on_unlink() {
    if !inner_or_rerun("mount::fuse::tests::copy_up_once_and_whiteouts_on_unlink") {
        return;
    }
    let m = setup();
    // a large lower file: appended to through one handle, copied up whole first
    {
        use std::io::Write;
        let mut f = fs::OpenOptions::new()
            .append(true)
            .open(m.mnt.join("big"))
            .unwrap();
        for _ in 0..64 {
            f.write_all(b"0123456789").unwrap();
        }
    }
    let orig = fs::read(m.lower2.join("big")).unwrap();
    let merged = fs::read(m.mnt.join("big")).unwrap();
    assert_eq!(merged.len(), orig.len() + 640);
    assert_eq!(
        &merged[..orig.len()],
        &orig[..],
        "the copy-up kept the lower bytes"
    );
    assert_eq!(fs::read(m.upper.join("big")).unwrap(), merged);
    assert_eq!(
        fs::read(m.lower2.join("big")).unwrap().len(),
        orig.len(),
        "lower untouched"
    );
    // O_TRUNC on a lower file: copied up empty, then written
    fs::write(m.mnt.join("a/new"), "n2").unwrap();
    assert_eq!(fs::read_to_string(m.mnt.join("a/new")).unwrap(), "n2");
    assert_eq!(fs::read_to_string(m.upper.join("a/new")).unwrap(), "n2");
    // unlink of a lower file: a 0/0 character device in the upper layer
    fs::remove_file(m.mnt.join("a/old")).unwrap();
    assert!(is_whiteout(&m.upper.join("a/old")));
    assert!(!m.mnt.join("a/old").exists());
    assert_eq!(names(&m.mnt.join("a")), ["keep", "new"]);
    // a file of the upper layer only: simply removed
    fs::write(m.mnt.join("a/tmp"), "t").unwrap();
    fs::remove_file(m.mnt.join("a/tmp")).unwrap();
    assert!(!m.upper.join("a/tmp").exists());
    // metadata change copies up
    fs::set_permissions(m.mnt.join("a/keep"), fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(
        fs::metadata(m.upper.join("a/keep")).unwrap().mode() & 0o7777,
        0o600
    );
    assert_eq!(
        fs::metadata(m.mnt.join("a/keep")).unwrap().mode() & 0o7777,
        0o600
    );
    assert_eq!(fs::read_to_string(m.mnt.join("a/keep")).unwrap(), "keep");
}

#[test]
fn rename_over_whiteout_and_opaque_after_rmdir_mkdir() {
    if !inner_or_rerun("mount::fuse::tests::rename_over_whiteout_and_opaque_after_rmdir_mkdir") {
        return;
    }
    let m = setup();
    fs::remove_file(m.mnt.join("a/old")).unwrap();
    fs::write(m.mnt.join("a/fresh"), "fresh").unwrap();
    fs::rename(m.mnt.join("a/fresh"), m.mnt.join("a/old")).unwrap();
    assert_eq!(fs::read_to_string(m.mnt.join("a/old")).unwrap(), "fresh");
    assert!(!m.mnt.join("a/fresh").exists());
    // a lower file renamed: copied up, and its old name whited out
    fs::rename(m.mnt.join("a/keep"), m.mnt.join("moved")).unwrap();
    assert_eq!(fs::read_to_string(m.mnt.join("moved")).unwrap(), "keep");
    assert!(is_whiteout(&m.upper.join("a/keep")));
    // a lower directory: EXDEV, as kernel overlay without redirect_dir
    let e = fs::rename(m.mnt.join("d"), m.mnt.join("d2")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EXDEV));
    // rmdir + mkdir: the new directory is opaque and empty
    fs::remove_file(m.mnt.join("d/x")).unwrap();
    fs::remove_dir(m.mnt.join("d")).unwrap();
    assert!(is_whiteout(&m.upper.join("d")));
    fs::create_dir(m.mnt.join("d")).unwrap();
    assert!(names(&m.mnt.join("d")).is_empty());
    assert_eq!(
        sys::fgetxattr(dirfd(&m.upper.join("d")), OPAQUE).unwrap(),
        Some(b"y".to_vec())
    );
    // RENAME_NOREPLACE and RENAME_EXCHANGE
    fs::write(m.mnt.join("p"), "p").unwrap();
    fs::write(m.mnt.join("q"), "q").unwrap();
    let e = nix::fcntl::renameat2(
        nix::fcntl::AT_FDCWD,
        &m.mnt.join("p"),
        nix::fcntl::AT_FDCWD,
        &m.mnt.join("q"),
        nix::fcntl::RenameFlags::RENAME_NOREPLACE,
    )
    .unwrap_err();
    assert_eq!(e, nix::Error::EEXIST);
    nix::fcntl::renameat2(
        nix::fcntl::AT_FDCWD,
        &m.mnt.join("p"),
        nix::fcntl::AT_FDCWD,
        &m.mnt.join("q"),
        nix::fcntl::RenameFlags::RENAME_EXCHANGE,
    )
    .unwrap();
    assert_eq!(fs::read_to_string(m.mnt.join("p")).unwrap(), "q");
    assert_eq!(fs::read_to_string(m.mnt.join("q")).unwrap(), "p");
}

#[test]
fn hard_links_symlinks_and_xattrs() {
    if !inner_or_rerun("mount::fuse::tests::hard_links_symlinks_and_xattrs") {
        return;
    }
    let m = setup();
    // names of one lower file are one inode
    assert_eq!(
        fs::metadata(m.mnt.join("link1")).unwrap().ino(),
        fs::metadata(m.mnt.join("link2")).unwrap().ino()
    );
    // a new link to a lower file: the file is copied up and linked in the upper layer
    fs::hard_link(m.mnt.join("link1"), m.mnt.join("link3")).unwrap();
    fs::write(m.mnt.join("link3"), "changed").unwrap();
    assert_eq!(fs::read_to_string(m.mnt.join("link1")).unwrap(), "changed");
    assert_eq!(fs::metadata(m.mnt.join("link1")).unwrap().nlink(), 2);
    std::os::unix::fs::symlink("a/new", m.mnt.join("sl")).unwrap();
    assert_eq!(fs::read_link(m.mnt.join("sl")).unwrap(), Path::new("a/new"));
    assert_eq!(fs::read_to_string(m.mnt.join("sl")).unwrap(), "new");
    // user xattrs: set through the mount (copy-up), read back; the overlay's own are hidden
    let f = nix::fcntl::open(
        &m.mnt.join("a/new"),
        nix::fcntl::OFlag::O_RDONLY,
        nix::sys::stat::Mode::empty(),
    )
    .unwrap();
    sys::fsetxattr(&f, "user.test", b"v").unwrap();
    assert_eq!(
        sys::fgetxattr(&f, "user.test").unwrap(),
        Some(b"v".to_vec())
    );
    let list = sys::flistxattr(&f).unwrap();
    assert!(list.split(|&b| b == 0).any(|n| n == b"user.test"));
    assert!(sys::fsetxattr(&f, OPAQUE, b"y").is_err());
    sys::fremovexattr(&f, b"user.test").unwrap();
    assert_eq!(sys::fgetxattr(&f, "user.test").unwrap(), None);
    let o = dirfd(&m.mnt.join("o"));
    assert!(!sys::flistxattr(&o)
        .unwrap()
        .split(|&b| b == 0)
        .any(|n| n.starts_with(b"user.overlay.")));
    // an override xattr in a layer wins for owner and mode
    // (a kernel fact, checked here: ids the single-id map of this namespace cannot express
    // show as the overflow id, whatever the server replies)
    let overflow: u32 = fs::read_to_string("/proc/sys/kernel/overflowuid")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let md = fs::metadata(m.mnt.join("owned")).unwrap();
    assert_eq!(
        (md.uid(), md.gid(), md.mode() & 0o7777),
        (overflow, overflow, 0o4750)
    );
    // chmod of such a file changes the override (a real chown may be impossible)
    // (on `owned` itself the kernel refuses it: EOVERFLOW for an owner it cannot map)
    assert_eq!(
        fs::metadata(m.mnt.join("owned0")).unwrap().mode() & 0o7777,
        0o640
    );
    fs::set_permissions(m.mnt.join("owned0"), fs::Permissions::from_mode(0o700)).unwrap();
    let md = fs::metadata(m.mnt.join("owned0")).unwrap();
    assert_eq!(md.mode() & 0o7777, 0o700);
    let f = nix::fcntl::open(
        &m.upper.join("owned0"),
        nix::fcntl::OFlag::O_RDONLY,
        nix::sys::stat::Mode::empty(),
    )
    .unwrap();
    assert_eq!(
        sys::fgetxattr(&f, OVERRIDE_STAT).unwrap(),
        Some(b"0:0:0700".to_vec())
    );
    // statfs answers
    assert!(nix::sys::statvfs::statvfs(&m.mnt).unwrap().blocks() > 0);
}

/// O_TMPFILE (FUSE_TMPFILE, through the vendored fuser's `tmpfile`): an unnamed file in a
/// lower directory (copied up) is written and read back, then named with linkat both ways
/// programs do it, also over a deleted lower name (the whiteout goes); one never linked, and
/// one opened O_EXCL (which no link may name), leave nothing in the upper layer.
#[test]
fn tmpfile_is_written_linked_or_left_nowhere() {
    use nix::fcntl::{openat, AtFlags, OFlag};
    use nix::sys::stat::{fstat, Mode};
    use nix::unistd::linkat;
    use std::os::unix::fs::FileExt;
    if !inner_or_rerun("mount::fuse::tests::tmpfile_is_written_linked_or_left_nowhere") {
        return;
    }
    let m = setup();
    let tmpfile = |dir: &OwnedFd, flags: OFlag| {
        openat(
            dir,
            ".",
            OFlag::O_TMPFILE | OFlag::O_RDWR | OFlag::O_CLOEXEC | flags,
            Mode::from_bits_truncate(0o640),
        )
        .map(fs::File::from)
    };
    // `d` is only in lower2: the tmpfile copies it up
    let d = dirfd(&m.mnt.join("d"));
    let f = tmpfile(&d, OFlag::empty()).unwrap();
    assert!(m.upper.join("d").is_dir());
    f.write_all_at(b"unnamed data", 0).unwrap();
    let mut buf = [0u8; 12];
    f.read_exact_at(&mut buf, 0).unwrap();
    assert_eq!(&buf, b"unnamed data");
    let st = fstat(&f).unwrap();
    assert_eq!(
        (st.st_nlink, st.st_uid, st.st_gid, st.st_mode & 0o7777),
        (0, 0, 0, 0o640)
    );
    assert_eq!(names(&m.upper.join("d")), Vec::<String>::new());
    // opened again through /proc/self/fd (no name to open it by), for reading and, from a
    // file opened write-only, for writing
    let again = format!("/proc/self/fd/{}", f.as_raw_fd());
    assert_eq!(fs::read_to_string(&again).unwrap(), "unnamed data");
    let wo = openat(
        &d,
        ".",
        OFlag::O_TMPFILE | OFlag::O_WRONLY | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o600),
    )
    .map(fs::File::from)
    .unwrap();
    fs::write(format!("/proc/self/fd/{}", wo.as_raw_fd()), "via proc").unwrap();
    assert_eq!(
        fs::read_to_string(format!("/proc/self/fd/{}", wo.as_raw_fd())).unwrap(),
        "via proc"
    );
    drop(wo);
    // a chmod and an xattr before it has a name (what programs do before linking it into
    // place)
    nix::sys::stat::fchmod(&f, Mode::from_bits_truncate(0o604)).unwrap();
    assert_eq!(fstat(&f).unwrap().st_mode & 0o7777, 0o604);
    sys::fsetxattr(&f, "user.rbox-test", b"unnamed").unwrap();
    assert_eq!(
        sys::fgetxattr(&f, "user.rbox-test").unwrap(),
        Some(b"unnamed".to_vec())
    );
    // flink(2) as glibc spells it: AT_EMPTY_PATH on the fd
    linkat(&f, "", &d, "named", AtFlags::AT_EMPTY_PATH).unwrap();
    assert_eq!(
        fs::read_to_string(m.mnt.join("d/named")).unwrap(),
        "unnamed data"
    );
    assert_eq!(
        fs::read_to_string(m.upper.join("d/named")).unwrap(),
        "unnamed data"
    );
    let named = fs::File::open(m.upper.join("d/named")).unwrap();
    assert_eq!(
        sys::fgetxattr(&named, "user.rbox-test").unwrap(),
        Some(b"unnamed".to_vec())
    );
    let md = fs::metadata(m.mnt.join("d/named")).unwrap();
    assert_eq!(
        (md.uid(), md.gid(), md.mode() & 0o7777, md.nlink()),
        (0, 0, 0o604, 1)
    );
    // the open fd and the name are one file
    f.write_all_at(b"!", 12).unwrap();
    assert_eq!(
        fs::read_to_string(m.mnt.join("d/named")).unwrap(),
        "unnamed data!"
    );
    assert_eq!(fstat(&f).unwrap().st_nlink, 1);
    drop(f);
    // the other spelling, through /proc/self/fd, onto a deleted lower name: the whiteout
    // goes and the new file shows
    fs::remove_file(m.mnt.join("a/old")).unwrap();
    assert!(is_whiteout(&m.upper.join("a/old")));
    let a = dirfd(&m.mnt.join("a"));
    let f = tmpfile(&a, OFlag::empty()).unwrap();
    f.write_all_at(b"replaced", 0).unwrap();
    let proc_path = format!("/proc/self/fd/{}", f.as_raw_fd());
    linkat(
        nix::fcntl::AT_FDCWD,
        proc_path.as_str(),
        &a,
        "old",
        AtFlags::AT_SYMLINK_FOLLOW,
    )
    .unwrap();
    drop(f);
    assert!(!is_whiteout(&m.upper.join("a/old")));
    assert_eq!(fs::read_to_string(m.mnt.join("a/old")).unwrap(), "replaced");
    assert_eq!(names(&m.mnt.join("a")), ["keep", "new", "old"]);
    // a name that is taken stays taken
    let f = tmpfile(&a, OFlag::empty()).unwrap();
    let e = linkat(&f, "", &a, "keep", AtFlags::AT_EMPTY_PATH).unwrap_err();
    assert_eq!(e, nix::Error::EEXIST);
    drop(f);
    // a named file deleted while open is reached the same way
    fs::write(m.mnt.join("a/doomed"), "doomed").unwrap();
    let f = fs::File::open(m.mnt.join("a/doomed")).unwrap();
    fs::remove_file(m.mnt.join("a/doomed")).unwrap();
    assert_eq!(
        fs::read_to_string(format!("/proc/self/fd/{}", f.as_raw_fd())).unwrap(),
        "doomed"
    );
    drop(f);
    // never linked, or O_EXCL (no link may name it): gone with the fd, nothing in upper
    let before = (names(&m.upper), names(&m.upper.join("a")));
    let root = dirfd(&m.mnt);
    let f = tmpfile(&root, OFlag::empty()).unwrap();
    f.write_all_at(&[1u8; 1 << 16], 0).unwrap();
    drop(f);
    let f = tmpfile(&root, OFlag::O_EXCL).unwrap();
    f.write_all_at(b"x", 0).unwrap();
    let e = linkat(&f, "", &root, "excl", AtFlags::AT_EMPTY_PATH).unwrap_err();
    assert_eq!(e, nix::Error::ENOENT);
    drop(f);
    assert!(fs::symlink_metadata(m.mnt.join("excl")).is_err());
    assert_eq!((names(&m.upper), names(&m.upper.join("a"))), before);
}

/// pjdfstest makes its character devices as 0/0, which in the upper layer is a whiteout: the
/// mknod must fail as on kernel overlay (EPERM), not leave a whiteout that hides the name.
#[test]
fn mknod_of_a_whiteout_device_is_refused() {
    if !inner_or_rerun("mount::fuse::tests::mknod_of_a_whiteout_device_is_refused") {
        return;
    }
    let m = setup();
    let e = nix::sys::stat::mknod(
        &m.mnt.join("a/dev0"),
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::from_bits_truncate(0o644),
        0,
    )
    .unwrap_err();
    assert_eq!(e, nix::Error::EPERM);
    assert!(fs::symlink_metadata(m.upper.join("a/dev0")).is_err());
    assert!(!names(&m.mnt.join("a")).contains(&"dev0".to_string()));
    // a fifo is made as asked
    nix::unistd::mkfifo(
        &m.mnt.join("a/fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o644),
    )
    .unwrap();
    assert!(fs::symlink_metadata(m.upper.join("a/fifo"))
        .unwrap()
        .file_type()
        .is_fifo());
}

/// Lookups of missing names are answered as negative entries the kernel caches: every way a
/// name appears through the mount (create, mkdir, symlink, link, rename, a lower file shown
/// again) must still show it at once, and a removed one must be gone at once.
#[test]
fn missing_names_are_cached_and_still_appear() {
    if !inner_or_rerun("mount::fuse::tests::missing_names_are_cached_and_still_appear") {
        return;
    }
    let m = setup();
    let p = |n: &str| m.mnt.join(n);
    for n in ["f", "dir", "sym", "hard", "moved", "a/gone-then-back"] {
        assert!(fs::symlink_metadata(p(n)).is_err(), "{n}");
        assert!(fs::symlink_metadata(p(n)).is_err(), "{n} again (cached)");
    }
    fs::write(p("f"), "f").unwrap();
    fs::create_dir(p("dir")).unwrap();
    std::os::unix::fs::symlink("f", p("sym")).unwrap();
    fs::hard_link(p("f"), p("hard")).unwrap();
    fs::write(p("dir/x"), "x").unwrap();
    fs::rename(p("dir/x"), p("moved")).unwrap();
    assert_eq!(fs::read_to_string(p("f")).unwrap(), "f");
    assert!(p("dir").is_dir());
    assert_eq!(fs::read_to_string(p("sym")).unwrap(), "f");
    assert_eq!(fs::read_to_string(p("hard")).unwrap(), "f");
    assert_eq!(fs::read_to_string(p("moved")).unwrap(), "x");
    assert!(fs::symlink_metadata(p("dir/x")).is_err());
    // a lower file deleted (whiteout), looked up as missing, then made again
    fs::remove_file(p("a/old")).unwrap();
    assert!(fs::symlink_metadata(p("a/old")).is_err());
    fs::write(p("a/old"), "again").unwrap();
    assert_eq!(fs::read_to_string(p("a/old")).unwrap(), "again");
    // a new file in a lower directory (the parent copied up) and its owner: the server's own
    fs::write(p("d/new"), "n").unwrap();
    let md = fs::metadata(p("d/new")).unwrap();
    assert_eq!((md.uid(), md.gid()), (0, 0));
    assert!(m.upper.join("d/new").is_file());
    // a set-gid parent hands its group down
    fs::create_dir(p("sg")).unwrap();
    fs::set_permissions(p("sg"), fs::Permissions::from_mode(0o2775)).unwrap();
    fs::write(p("sg/f"), "").unwrap();
    assert_eq!(fs::metadata(p("sg/f")).unwrap().gid(), 0);
    // a new name of a file with an override shows the override's owner and mode
    fs::hard_link(p("owned0"), p("owned0-link")).unwrap();
    for n in ["owned0-link", "owned0"] {
        assert_eq!(fs::metadata(p(n)).unwrap().mode() & 0o7777, 0o640, "{n}");
    }
    // files written and closed (no FLUSH is sent) read back whole from the layer
    fs::write(p("dir/big"), vec![7u8; 3 << 20]).unwrap();
    assert_eq!(fs::read(m.upper.join("dir/big")).unwrap().len(), 3 << 20);
}

#[test]
fn override_values_round_trip() {
    assert_eq!(parse_override(b"0:0:0755"), Some((0, 0, 0o755)));
    assert_eq!(
        parse_override(b"1000:100:04755:file"),
        Some((1000, 100, 0o4755))
    );
    assert_eq!(parse_override(b"x:0:0755"), None);
    assert_eq!(parse_override(b"1:2"), None);
    assert_eq!(format_override((5, 6, 0o2755)), "5:6:02755");
    assert_eq!(
        parse_override(format_override((5, 6, 0o644)).as_bytes()),
        Some((5, 6, 0o644))
    );
}

#[test]
fn server_threads_from_the_environment_else_per_cpu() {
    use super::server_threads;
    let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
    let default = cpus.clamp(2, 8);
    assert_eq!(server_threads(None), default);
    assert_eq!(server_threads(Some("1")), 1);
    assert_eq!(server_threads(Some("4")), 4);
    assert_eq!(server_threads(Some(" 2\n")), 2);
    // out of range or not a number: the default, never a session fuser refuses
    for bad in ["0", "9", "-1", "two", ""] {
        assert_eq!(server_threads(Some(bad)), default, "{bad:?}");
    }
}

/// A listing names an entry alone (node id 0) where the kernel holds its node with the entry
/// and attributes this server sent, unchanged since (see `readdirplus`): what a stat shows
/// after a second listing must still be the file as it is, after every change the kernel and
/// the server see (writes, truncation, mode, links, renames, xattrs, removal), and the
/// listing's inode numbers must be the ones stat shows.
#[test]
fn listings_after_changes_show_the_files_as_they_are() {
    if !inner_or_rerun("mount::fuse::tests::listings_after_changes_show_the_files_as_they_are") {
        return;
    }
    use std::io::Write;
    let m = setup();
    let d = m.mnt.join("l");
    fs::create_dir(&d).unwrap();
    for i in 0..8 {
        fs::write(d.join(format!("f{i}")), "12345").unwrap();
    }
    let listed = |dir: &Path| -> Vec<(String, u64)> {
        let mut v: Vec<(String, u64)> = fs::read_dir(dir)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (e.file_name().to_string_lossy().into_owned(), e.ino())
            })
            .collect();
        v.sort();
        v
    };
    use std::os::unix::fs::DirEntryExt;
    // listed twice while fresh: the entries the creates made go by their names alone
    let alone = || super::fs::NAMED_ALONE.load(std::sync::atomic::Ordering::Relaxed);
    let before = alone();
    for _ in 0..2 {
        for (n, ino) in listed(&d) {
            let md = fs::symlink_metadata(d.join(&n)).unwrap();
            assert_eq!((md.ino(), md.len()), (ino, 5), "{n}");
        }
    }
    assert!(alone() >= before + 8, "{} named alone", alone() - before);
    fs::OpenOptions::new()
        .append(true)
        .open(d.join("f0"))
        .unwrap()
        .write_all(b"678")
        .unwrap();
    fs::OpenOptions::new()
        .write(true)
        .open(d.join("f1"))
        .unwrap()
        .set_len(2)
        .unwrap();
    fs::set_permissions(d.join("f2"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::hard_link(d.join("f3"), d.join("f3-link")).unwrap();
    fs::rename(d.join("f4"), d.join("f4-moved")).unwrap();
    let f5 = fs::File::open(d.join("f5")).unwrap();
    sys::fsetxattr(&f5, "user.note", b"x").unwrap();
    fs::remove_file(d.join("f6")).unwrap();
    fs::write(d.join("f7"), "longer than before").unwrap();
    let now = listed(&d);
    let names: Vec<&str> = now.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["f0", "f1", "f2", "f3", "f3-link", "f4-moved", "f5", "f7"]
    );
    for (n, ino) in &now {
        let md = fs::symlink_metadata(d.join(n)).unwrap();
        assert_eq!(md.ino(), *ino, "{n}");
        let want = match n.as_str() {
            "f0" => (8, 0o644, 1),
            "f1" => (2, 0o644, 1),
            "f2" => (5, 0o600, 1),
            "f3" | "f3-link" => (5, 0o644, 2),
            "f7" => (18, 0o644, 1),
            _ => (5, 0o644, 1),
        };
        assert_eq!(
            (md.len(), md.mode() & 0o7777, md.nlink()),
            want,
            "{n} after the change"
        );
    }
    // and the layer agrees
    assert_eq!(fs::read(m.upper.join("l/f0")).unwrap(), b"12345678");
}
