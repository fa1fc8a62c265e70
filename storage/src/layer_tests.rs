//! Unit tests of layer unpacking: formats, overlay forms, metadata, and every hostile case
//! (refused, nothing outside the layer touched, nothing committed, tmp/ left empty).

use std::fs;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

use super::*;
use crate::IdMap;

pub(crate) const SINGLE: IdMap = IdMap {
    uid_count: 1,
    gid_count: 1,
};

pub(crate) fn store_in(d: &Path) -> Store {
    Store::open(&d.join("store"), SINGLE).unwrap()
}

/// Builds tar archives entry by entry, including entries the tar crate's path checks refuse
/// (the name bytes are written into the raw header).
pub(crate) struct TarBuilder {
    b: tar::Builder<Vec<u8>>,
}

impl TarBuilder {
    pub fn new() -> Self {
        TarBuilder {
            b: tar::Builder::new(Vec::new()),
        }
    }

    fn header(name: &str, kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut h = tar::Header::new_old();
        let bytes = name.as_bytes();
        assert!(bytes.len() < 100, "test names stay short");
        h.as_old_mut().name[..bytes.len()].copy_from_slice(bytes);
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_mtime(1_600_000_000);
        h.set_uid(0);
        h.set_gid(0);
        h
    }

    fn push(&mut self, mut h: tar::Header, data: &[u8]) -> &mut Self {
        h.set_cksum();
        self.b.append(&h, data).unwrap();
        self
    }

    pub fn file(&mut self, name: &str, data: &[u8]) -> &mut Self {
        self.file_with(name, data, 0o644, 0, 0, 1_600_000_000)
    }

    pub fn file_with(
        &mut self,
        name: &str,
        data: &[u8],
        mode: u32,
        uid: u64,
        gid: u64,
        mtime: u64,
    ) -> &mut Self {
        let mut h = Self::header(name, tar::EntryType::Regular, mode, data.len() as u64);
        h.set_uid(uid);
        h.set_gid(gid);
        h.set_mtime(mtime);
        self.push(h, data)
    }

    pub fn dir(&mut self, name: &str, mode: u32) -> &mut Self {
        let h = Self::header(name, tar::EntryType::Directory, mode, 0);
        self.push(h, &[])
    }

    pub fn dir_mtime(&mut self, name: &str, mode: u32, mtime: u64) -> &mut Self {
        let mut h = Self::header(name, tar::EntryType::Directory, mode, 0);
        h.set_mtime(mtime);
        self.push(h, &[])
    }

    fn link(&mut self, name: &str, target: &str, kind: tar::EntryType) -> &mut Self {
        let mut h = Self::header(name, kind, 0o777, 0);
        let t = target.as_bytes();
        h.as_old_mut().linkname[..t.len()].copy_from_slice(t);
        self.push(h, &[])
    }

    pub fn symlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.link(name, target, tar::EntryType::Symlink)
    }

    pub fn hardlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.link(name, target, tar::EntryType::Link)
    }

    pub fn device(
        &mut self,
        name: &str,
        kind: tar::EntryType,
        major: u32,
        minor: u32,
    ) -> &mut Self {
        let mut h = tar::Header::new_ustar();
        h.set_path(name).unwrap();
        h.set_entry_type(kind);
        h.set_mode(0o666);
        h.set_size(0);
        h.set_device_major(major).unwrap();
        h.set_device_minor(minor).unwrap();
        self.push(h, &[])
    }

    pub fn fifo(&mut self, name: &str) -> &mut Self {
        let h = Self::header(name, tar::EntryType::Fifo, 0o640, 0);
        self.push(h, &[])
    }

    /// A file preceded by a PAX header carrying xattrs.
    pub fn file_xattrs(&mut self, name: &str, data: &[u8], xattrs: &[(&str, &[u8])]) -> &mut Self {
        let exts: Vec<(String, &[u8])> = xattrs
            .iter()
            .map(|(k, v)| (format!("SCHILY.xattr.{k}"), *v))
            .collect();
        self.b
            .append_pax_extensions(exts.iter().map(|(k, v)| (k.as_str(), *v)))
            .unwrap();
        self.file(name, data)
    }

    pub fn finish(&mut self) -> Vec<u8> {
        let b = std::mem::replace(&mut self.b, tar::Builder::new(Vec::new()));
        b.into_inner().unwrap()
    }
}

pub(crate) fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn tmp_is_empty(s: &Store) -> bool {
    fs::read_dir(s.tmp_root()).unwrap().next().is_none()
}

fn layers_count(s: &Store) -> usize {
    fs::read_dir(s.layers_dir()).unwrap().count()
}

#[test]
fn unpacks_files_dirs_links_modes_and_mtimes() {
    let d = tempfile::tempdir().unwrap();
    let s = store_in(d.path());
    let tar = TarBuilder::new()
        .dir_mtime("etc/", 0o755, 1_000_000)
        .file_with(
            "etc/passwd",
            b"root:x:0:0::/root:/bin/sh\n",
            0o644,
            0,
            0,
            1_100_000,
        )
        .dir_mtime("ro/", 0o555, 1_200_000)
        .file("ro/inside", b"x")
        .dir("tmp/", 0o1777)
        .file_with("bin/su", b"#!", 0o4755, 0, 0, 1_300_000)
        .file_with("bin/sg", b"#!", 0o2755, 0, 0, 1_300_000)
        .symlink("bin/sh", "/bin/busybox")
        .symlink("etc/abs", "/etc/shadow")
        .hardlink("etc/passwd-", "etc/passwd")
        .hardlink("etc/passwd2", "/etc/passwd")
        .fifo("run/fifo")
        .finish();
    let info = s.apply_layer(&tar[..], None).unwrap();
    assert_eq!(info.diff_id, Digest::of(&tar));
    assert_eq!(info.size, tar.len() as u64);
    assert!(info.warnings.is_empty(), "{:?}", info.warnings);
    assert!(s.has_layer(&info.diff_id));
    assert!(tmp_is_empty(&s));
    let root = s.layer_path(&info.diff_id);

    assert_eq!(
        fs::read(root.join("etc/passwd")).unwrap(),
        b"root:x:0:0::/root:/bin/sh\n"
    );
    let md = |p: &str| fs::symlink_metadata(root.join(p)).unwrap();
    assert_eq!(
        md("etc").mtime(),
        1_000_000,
        "dir mtime set after its contents"
    );
    assert_eq!(md("etc/passwd").mtime(), 1_100_000);
    assert_eq!(md("ro").mode() & 0o7777, 0o555);
    assert_eq!(md("ro").mtime(), 1_200_000);
    assert_eq!(md("tmp").mode() & 0o7777, 0o1777);
    assert_eq!(md("bin/su").mode() & 0o7777, 0o4755);
    if nix::unistd::geteuid().is_root() {
        assert_eq!(md("bin/sg").mode() & 0o7777, 0o2755);
    }
    assert!(md("bin/sh").file_type().is_symlink());
    assert_eq!(
        fs::read_link(root.join("bin/sh")).unwrap(),
        Path::new("/bin/busybox")
    );
    assert_eq!(
        fs::read_link(root.join("etc/abs")).unwrap(),
        Path::new("/etc/shadow")
    );
    assert_eq!(md("etc/passwd-").ino(), md("etc/passwd").ino());
    assert_eq!(md("etc/passwd2").ino(), md("etc/passwd").ino());
    assert!(md("run/fifo").file_type().is_fifo());
    assert_eq!(md("run/fifo").mode() & 0o777, 0o640);
    // The same layer again is found, not unpacked twice.
    let again = s.apply_layer(&tar[..], Some(&info.diff_id)).unwrap();
    assert_eq!(again.diff_id, info.diff_id);
    assert_eq!(layers_count(&s), 1);
}

#[test]
fn gzip_zstd_and_plain_give_the_same_diff_id() {
    let d = tempfile::tempdir().unwrap();
    let tar = TarBuilder::new()
        .file("a", b"hello")
        .dir("d/", 0o700)
        .finish();
    let diff = Digest::of(&tar);
    let z = zstd::encode_all(&tar[..], 3).unwrap();
    for (i, data) in [tar.clone(), gzip(&tar), z].into_iter().enumerate() {
        let s = Store::open(&d.path().join(format!("s{i}")), SINGLE).unwrap();
        let info = s.apply_layer(&data[..], Some(&diff)).unwrap();
        assert_eq!(info.diff_id, diff);
        assert_eq!(fs::read(s.layer_path(&diff).join("a")).unwrap(), b"hello");
    }
}

#[test]
fn whiteouts_and_opaque_dirs_take_overlay_form() {
    let d = tempfile::tempdir().unwrap();
    let s = store_in(d.path());
    let tar = TarBuilder::new()
        .dir("etc/", 0o755)
        .file("etc/.wh.motd", b"")
        .dir("var/cache/", 0o755)
        .file("var/cache/.wh..wh..opq", b"")
        .file(".wh.top", b"")
        .finish();
    let info = s.apply_layer(&tar[..], None).unwrap();
    let root = s.layer_path(&info.diff_id);
    for p in ["etc/motd", "top"] {
        let md = fs::symlink_metadata(root.join(p)).unwrap();
        assert!(md.file_type().is_char_device(), "{p}");
        assert_eq!(md.rdev(), 0, "{p}");
    }
    assert!(!root.join("etc/.wh.motd").exists());
    assert!(!root.join("var/cache/.wh..wh..opq").exists());
    let dir = File::open(root.join("var/cache")).unwrap();
    assert_eq!(
        sys::fgetxattr(&dir, "user.overlay.opaque")
            .unwrap()
            .as_deref(),
        Some(&b"y"[..])
    );
    let etc = File::open(root.join("etc")).unwrap();
    assert_eq!(sys::fgetxattr(&etc, "user.overlay.opaque").unwrap(), None);
}

#[test]
fn image_xattrs_are_filtered() {
    let d = tempfile::tempdir().unwrap();
    let s = store_in(d.path());
    let tar = TarBuilder::new()
        .file_xattrs(
            "f",
            b"x",
            &[
                ("user.keep", b"1"),
                ("user.overlay.opaque", b"y"),
                ("user.overlay.redirect", b"/etc"),
                ("trusted.overlay.opaque", b"y"),
            ],
        )
        .finish();
    let info = s.apply_layer(&tar[..], None).unwrap();
    let f = File::open(s.layer_path(&info.diff_id).join("f")).unwrap();
    assert_eq!(
        sys::fgetxattr(&f, "user.keep").unwrap().as_deref(),
        Some(&b"1"[..])
    );
    assert_eq!(sys::fgetxattr(&f, "user.overlay.opaque").unwrap(), None);
    assert_eq!(sys::fgetxattr(&f, "user.overlay.redirect").unwrap(), None);
    if nix::unistd::geteuid().is_root() {
        assert_eq!(sys::fgetxattr(&f, "trusted.overlay.opaque").unwrap(), None);
    }
}

#[test]
fn owners_outside_the_map_fold_to_zero() {
    let d = tempfile::tempdir().unwrap();
    let tar = TarBuilder::new()
        .file_with("inside", b"", 0o644, 500, 600, 0)
        .file_with("outside", b"", 0o644, 100_000, 4_000_000_000, 0)
        .finish();
    // A single mapped id, as a user without subuid: everything is ours and nothing fails.
    let s = store_in(d.path());
    let info = s.apply_layer(&tar[..], None).unwrap();
    // the owners the image gives, folded or not, for `--userns=auto` without a walk
    assert_eq!(s.layer_highest_owner(&info.diff_id), Some(4_000_000_000));
    let me = nix::unistd::geteuid().as_raw();
    for f in ["inside", "outside"] {
        let md = fs::metadata(s.layer_path(&info.diff_id).join(f)).unwrap();
        assert_eq!(md.uid(), if me == 0 { 0 } else { me }, "{f}");
    }
    // With a range (root here stands for a namespace with 1000 ids), in-range ids are kept.
    if me == 0 {
        let s = Store::open(
            &d.path().join("ranged"),
            IdMap {
                uid_count: 1000,
                gid_count: 1000,
            },
        )
        .unwrap();
        let info = s.apply_layer(&tar[..], None).unwrap();
        let md = fs::metadata(s.layer_path(&info.diff_id).join("inside")).unwrap();
        assert_eq!((md.uid(), md.gid()), (500, 600));
        let md = fs::metadata(s.layer_path(&info.diff_id).join("outside")).unwrap();
        assert_eq!((md.uid(), md.gid()), (0, 0));
    }
}

#[test]
fn device_nodes_are_skipped_with_a_warning() {
    let d = tempfile::tempdir().unwrap();
    let mut s = store_in(d.path());
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let sink = seen.clone();
    s.set_warning_sink(std::sync::Arc::new(move |m: &str| {
        sink.lock().unwrap().push(m.to_string())
    }));
    let tar = TarBuilder::new()
        .dir("dev/", 0o755)
        .device("dev/null", tar::EntryType::Char, 1, 3)
        .device("dev/sda", tar::EntryType::Block, 8, 0)
        .device("dev/wh", tar::EntryType::Char, 0, 0)
        .file("etc/hostname", b"x")
        .finish();
    let info = s.apply_layer(&tar[..], None).unwrap();
    let root = s.layer_path(&info.diff_id);
    assert!(!root.join("dev/null").exists());
    assert!(!root.join("dev/sda").exists());
    assert!(fs::symlink_metadata(root.join("dev/wh"))
        .unwrap()
        .file_type()
        .is_char_device());
    assert_eq!(info.warnings.len(), 2, "{:?}", info.warnings);
    assert!(info.warnings[0].contains("dev/null"), "{:?}", info.warnings);
    assert!(root.join("etc/hostname").exists());
    // The sink heard each warning as it happened; the library printed nothing itself.
    assert_eq!(*seen.lock().unwrap(), info.warnings);
}

#[test]
fn later_entries_replace_earlier_ones() {
    let d = tempfile::tempdir().unwrap();
    let s = store_in(d.path());
    let tar = TarBuilder::new()
        .file("a", b"one")
        .file("a", b"two")
        .dir("b/", 0o755)
        .file("b/x", b"")
        .file("b", b"now a file")
        .symlink("c", "/etc")
        .dir("c/", 0o700)
        .file("c/inside", b"real dir")
        .finish();
    let info = s.apply_layer(&tar[..], None).unwrap();
    let root = s.layer_path(&info.diff_id);
    assert_eq!(fs::read(root.join("a")).unwrap(), b"two");
    assert_eq!(fs::read(root.join("b")).unwrap(), b"now a file");
    assert!(fs::symlink_metadata(root.join("c")).unwrap().is_dir());
    assert_eq!(fs::read(root.join("c/inside")).unwrap(), b"real dir");
}

#[test]
fn absolute_paths_are_made_relative() {
    let d = tempfile::tempdir().unwrap();
    let s = store_in(d.path());
    let outside = d.path().join("abs-target");
    let name = format!("{}/f", outside.display());
    let tar = TarBuilder::new()
        .file(&name, b"x")
        .file("/etc/issue", b"y")
        .finish();
    let info = s.apply_layer(&tar[..], None).unwrap();
    let root = s.layer_path(&info.diff_id);
    assert!(!outside.exists());
    assert_eq!(fs::read(root.join("etc/issue")).unwrap(), b"y");
    assert!(root.join(name.trim_start_matches('/')).exists());
}

/// Applies a hostile layer and checks it is refused cleanly.
fn refused(build: impl FnOnce(&Path, &mut TarBuilder), what: &str) {
    let d = tempfile::tempdir().unwrap();
    let s = store_in(d.path());
    let outside = d.path().join("outside");
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("victim"), b"original").unwrap();
    let mut tb = TarBuilder::new();
    build(&outside, &mut tb);
    let tar = tb.finish();
    let err = match s.apply_layer(&tar[..], None) {
        Err(e) => e,
        Ok(info) => panic!("{what}: accepted as {info:?}"),
    };
    assert!(matches!(err, Error::HostileEntry { .. }), "{what}: {err}");
    assert!(
        err.to_string().starts_with("refusing layer entry `"),
        "{err}"
    );
    assert_eq!(layers_count(&s), 0, "{what}: layer committed");
    assert!(tmp_is_empty(&s), "{what}: tmp not cleaned");
    let left: Vec<_> = fs::read_dir(&outside)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(left, vec!["victim"], "{what}: outside touched");
    assert_eq!(
        fs::read(outside.join("victim")).unwrap(),
        b"original",
        "{what}"
    );
    let top: Vec<_> = fs::read_dir(d.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(top.len(), 2, "{what}: {top:?}");
}

#[test]
fn dotdot_escape_is_refused() {
    refused(
        |_, t| {
            t.file("../outside/pwned", b"x");
        },
        "leading ..",
    );
    refused(
        |_, t| {
            t.dir("a/", 0o755).file("a/../../outside/pwned", b"x");
        },
        "inner ..",
    );
    refused(
        |_, t| {
            t.file("ok", b"").hardlink("x", "../outside/victim");
        },
        "hardlink ..",
    );
    refused(
        |_, t| {
            t.file("../../../../../../../../tmp/pwned-rbox", b"x");
        },
        "deep ..",
    );
}

#[test]
fn symlink_parent_tricks_are_refused() {
    refused(
        |o, t| {
            t.symlink("link", &o.display().to_string())
                .file("link/pwned", b"x");
        },
        "absolute symlink parent",
    );
    refused(
        |_, t| {
            t.symlink("up", "..").file("up/outside/pwned", b"x");
        },
        "relative symlink parent",
    );
    refused(
        |o, t| {
            t.dir("d/", 0o755)
                .symlink("d/l", &o.display().to_string())
                .dir("d/l/sub/", 0o755);
        },
        "dir through symlink",
    );
    refused(
        |o, t| {
            t.symlink("link", &o.display().to_string())
                .file("link/.wh.victim", b"");
        },
        "whiteout through symlink",
    );
    refused(
        |o, t| {
            t.symlink("link", &o.display().to_string())
                .file("link/.wh..wh..opq", b"");
        },
        "opaque through symlink",
    );
    refused(
        |o, t| {
            t.symlink("link", &o.display().to_string())
                .hardlink("stolen", "link/victim");
        },
        "hardlink target through symlink",
    );
    refused(
        |o, t| {
            t.file("f", b"")
                .symlink("link", &o.display().to_string())
                .hardlink("link/new", "f");
        },
        "hardlink created through symlink",
    );
}

#[test]
fn hardlink_to_missing_or_outside_target_is_refused() {
    refused(
        |o, t| {
            t.hardlink("h", &format!("{}/victim", o.display()));
        },
        "hardlink to absolute host path",
    );
    refused(
        |_, t| {
            t.hardlink("h", "nope");
        },
        "hardlink to missing file",
    );
}

#[test]
fn hardlinks_to_symlinks_link_the_symlink_itself() {
    let d = tempfile::tempdir().unwrap();
    let s = store_in(d.path());
    let tar = TarBuilder::new()
        .symlink("l", "/etc/shadow")
        .hardlink("h", "l")
        .finish();
    let info = s.apply_layer(&tar[..], None).unwrap();
    let root = s.layer_path(&info.diff_id);
    assert!(fs::symlink_metadata(root.join("h"))
        .unwrap()
        .file_type()
        .is_symlink());
}

#[test]
fn diff_id_mismatch_keeps_nothing() {
    let d = tempfile::tempdir().unwrap();
    let s = store_in(d.path());
    let tar = TarBuilder::new().file("a", b"x").finish();
    let wrong = Digest::of(b"something else");
    let err = s.apply_layer(&tar[..], Some(&wrong)).unwrap_err();
    assert!(matches!(err, Error::DigestMismatch { .. }), "{err}");
    assert_eq!(layers_count(&s), 0);
    assert!(tmp_is_empty(&s));
}

#[test]
fn garbage_is_an_invalid_layer() {
    let d = tempfile::tempdir().unwrap();
    let s = store_in(d.path());
    let err = s.apply_layer(&[7u8; 1024][..], None).unwrap_err();
    assert!(matches!(err, Error::InvalidLayer(_)), "{err}");
    let mut bad_gz = gzip(&TarBuilder::new().file("a", &[1u8; 5000]).finish());
    let n = bad_gz.len();
    bad_gz[n / 2] ^= 0xff;
    assert!(s.apply_layer(&bad_gz[..], None).is_err());
    assert_eq!(layers_count(&s), 0);
    assert!(tmp_is_empty(&s));
}

#[test]
fn pull_layer_stores_blob_and_layer_in_one_pass() {
    let d = tempfile::tempdir().unwrap();
    let s = store_in(d.path());
    let tar = TarBuilder::new().file("a", b"payload").finish();
    let gz = gzip(&tar);
    let blob = Digest::of(&gz);
    let diff = Digest::of(&tar);

    // Wrong blob digest: nothing kept.
    let wrong = Digest::of(b"nope");
    let err = s
        .pull_layer(&gz[..], &wrong, None, Some(&diff))
        .unwrap_err();
    assert!(matches!(err, Error::DigestMismatch { .. }), "{err}");
    assert!(!s.has_layer(&diff) && !s.has_blob(&blob) && tmp_is_empty(&s));
    // Wrong size: nothing kept.
    let err = s
        .pull_layer(&gz[..], &blob, Some(gz.len() as u64 + 1), Some(&diff))
        .unwrap_err();
    assert!(matches!(err, Error::SizeMismatch { .. }), "{err}");
    assert!(!s.has_layer(&diff) && !s.has_blob(&blob) && tmp_is_empty(&s));

    let info = s
        .pull_layer(&gz[..], &blob, Some(gz.len() as u64), Some(&diff))
        .unwrap();
    assert_eq!(info.diff_id, diff);
    assert_eq!(info.blob.as_ref(), Some(&blob));
    assert_eq!(s.read_blob(&blob).unwrap(), gz);
    assert_eq!(fs::read(s.layer_path(&diff).join("a")).unwrap(), b"payload");
    assert!(tmp_is_empty(&s));
}

#[test]
fn concurrent_apply_of_the_same_layer() {
    let d = tempfile::tempdir().unwrap();
    let s = store_in(d.path());
    let mut tb = TarBuilder::new();
    for i in 0..200 {
        tb.file(&format!("dir{}/file{i}", i % 7), &vec![b'x'; 3000]);
    }
    let tar = gzip(&tb.finish());
    let results: Vec<_> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..2)
            .map(|i| {
                let (s, tar) = (&s, &tar);
                // One with the expected diff id (locks first), one without (locks at commit).
                sc.spawn(move || {
                    if i == 0 {
                        let diff = Digest::of(&flate2_decode(tar));
                        s.apply_layer(&tar[..], Some(&diff))
                    } else {
                        s.apply_layer(&tar[..], None)
                    }
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let a = results[0].as_ref().unwrap();
    let b = results[1].as_ref().unwrap();
    assert_eq!(a.diff_id, b.diff_id);
    assert_eq!(layers_count(&s), 1);
    assert_eq!(fs::read_dir(s.layer_path(&a.diff_id)).unwrap().count(), 7);
    assert!(tmp_is_empty(&s));
}

fn flate2_decode(gz: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(gz)
        .read_to_end(&mut out)
        .unwrap();
    out
}

#[test]
fn clean_path_rules() {
    let c = |s: &str| clean_path(s.as_bytes()).map(|v| show(&v));
    assert_eq!(c("./a/b/").unwrap(), "a/b");
    assert_eq!(c("/a//./b").unwrap(), "a/b");
    assert_eq!(c("a/../b").unwrap(), "b");
    assert_eq!(c(".").unwrap(), "");
    assert!(c("..").is_err());
    assert!(c("a/../../b").is_err());
    assert!(xattr_allowed("user.mime_type"));
    assert!(xattr_allowed("security.capability"));
    assert!(!xattr_allowed("user.overlay.opaque"));
    assert!(!xattr_allowed("trusted.overlay.redirect"));
    assert!(!xattr_allowed("security.selinux"));
}

#[test]
fn read_only_dirs_in_layers_can_be_removed() {
    let d = tempfile::tempdir().unwrap();
    let s = store_in(d.path());
    let tar = TarBuilder::new()
        .dir("ro/", 0o555)
        .dir("ro/sub/", 0o500)
        .file("ro/sub/f", b"")
        .finish();
    let info = s.apply_layer(&tar[..], None).unwrap();
    let p = s.layer_dir(&info.diff_id);
    let perm = fs::metadata(s.layer_path(&info.diff_id).join("ro"))
        .unwrap()
        .permissions();
    assert_eq!(perm.mode() & 0o777, 0o555);
    s.remove_dir_atomic(&p).unwrap();
    assert!(!p.exists());
    assert!(tmp_is_empty(&s));
}

#[test]
fn escapes_hidden_in_pax_and_gnu_long_names_are_refused() {
    refused(
        |_, t| {
            // A benign header name overridden by a PAX `path` record.
            t.b.append_pax_extensions([("path", &b"../outside/pwned"[..])])
                .unwrap();
            t.file("innocent", b"x");
        },
        "pax path",
    );
    refused(
        |_, t| {
            t.file("target", b"x");
            t.b.append_pax_extensions([("linkpath", &b"../../outside/victim"[..])])
                .unwrap();
            t.hardlink("h", "target");
        },
        "pax linkpath",
    );
    refused(
        |_, t| {
            // A GNU long name ('L' entry) carrying the real path.
            let long = format!("{}/../../outside/pwned", "d".repeat(120));
            let mut data = long.into_bytes();
            data.push(0);
            // The tar crate honours 'L' only in GNU headers, as GNU tar writes them.
            let mut h = tar::Header::new_gnu();
            h.as_gnu_mut().unwrap().name[..13].copy_from_slice(b"././@LongLink");
            h.set_entry_type(tar::EntryType::GNULongName);
            h.set_mode(0o644);
            h.set_size(data.len() as u64);
            h.set_cksum();
            t.b.append(&h, &data[..]).unwrap();
            t.file("short", b"x");
        },
        "gnu long name",
    );
}

/// A source that delivers `data` up to `cut` bytes and then fails like a dropped connection.
struct Dropping<'a> {
    data: &'a [u8],
    cut: usize,
    pos: usize,
    kind: io::ErrorKind,
}

#[derive(Debug)]
struct NetError;
impl std::fmt::Display for NetError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("peer disconnected")
    }
}
impl std::error::Error for NetError {}

impl Read for Dropping<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.cut {
            return Err(io::Error::new(self.kind, NetError));
        }
        let n = buf.len().min(self.cut - self.pos).min(1000);
        buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[test]
fn a_dropped_source_is_reported_as_its_own_io_error() {
    let d = tempfile::tempdir().unwrap();
    let s = store_in(d.path());
    let mut tb = TarBuilder::new();
    for i in 0..50 {
        tb.file(&format!("f{i}"), &[i as u8; 4000]);
    }
    let tar = tb.finish();
    let gz = gzip(&tar);
    let (blob, diff) = (Digest::of(&gz), Digest::of(&tar));
    // `Other` is what the tar parser uses for malformed headers too, and UnexpectedEof what
    // a truncated gzip gives: the source's error must win over both.
    for (data, kind) in [
        (&gz, io::ErrorKind::Other),
        (&gz, io::ErrorKind::UnexpectedEof),
        (&tar, io::ErrorKind::Other),
    ] {
        let src = Dropping {
            data,
            cut: data.len() / 2,
            pos: 0,
            kind,
        };
        let err = s.pull_layer(src, &blob, None, Some(&diff)).unwrap_err();
        match &err {
            Error::Io { error: source, .. } => {
                assert_eq!(source.kind(), kind);
                assert!(source.get_ref().unwrap().is::<NetError>(), "{err}");
            }
            e => panic!("expected the source's io error, got {e}"),
        }
        assert!(!s.has_layer(&diff) && !s.has_blob(&blob) && tmp_is_empty(&s));
    }
    // The layer already unpacked, only its blob missing: the same holds.
    s.apply_layer(&tar[..], Some(&diff)).unwrap();
    let src = Dropping {
        data: &gz,
        cut: gz.len() / 2,
        pos: 0,
        kind: io::ErrorKind::Other,
    };
    match s.pull_layer(src, &blob, None, Some(&diff)).unwrap_err() {
        Error::Io { error: source, .. } => assert!(source.get_ref().unwrap().is::<NetError>()),
        e => panic!("expected the source's io error, got {e}"),
    }
    assert!(!s.has_blob(&blob) && tmp_is_empty(&s));
    let info = s.pull_layer(&gz[..], &blob, None, Some(&diff)).unwrap();
    assert_eq!(info.blob, Some(blob.clone()));
    assert!(s.has_blob(&blob));
}

#[test]
fn a_file_entry_never_writes_through_an_earlier_symlink() {
    let d = tempfile::tempdir().unwrap();
    let s = store_in(d.path());
    let victim = d.path().join("victim");
    fs::write(&victim, b"original").unwrap();
    let target = victim.display().to_string();
    let tar = TarBuilder::new()
        .symlink("f", &target)
        .file("f", b"overwritten?")
        .symlink("g", &target)
        .hardlink("h", "g")
        .file("h", b"through the hard link to the symlink?")
        .finish();
    let info = s.apply_layer(&tar[..], None).unwrap();
    assert_eq!(fs::read(&victim).unwrap(), b"original");
    let root = s.layer_path(&info.diff_id);
    assert_eq!(fs::read(root.join("f")).unwrap(), b"overwritten?");
    assert!(fs::symlink_metadata(root.join("g"))
        .unwrap()
        .file_type()
        .is_symlink());
}

/// A sparse file made the usual way (`truncate`, then a few bytes written at offsets) and put
/// in a tar by GNU tar with `--sparse` (old GNU format: 'S' entries with a sparse map).
fn gnu_sparse_tar(dir: &Path, size: u64, data: &[(u64, &[u8])]) -> Vec<u8> {
    use std::os::unix::fs::FileExt;
    let src = dir.join("src");
    fs::create_dir_all(&src).unwrap();
    let f = fs::File::create(src.join("big")).unwrap();
    f.set_len(size).unwrap();
    for (off, bytes) in data {
        f.write_all_at(bytes, *off).unwrap();
    }
    drop(f);
    let out = dir.join("sparse.tar");
    let st = std::process::Command::new("tar")
        .args(["--sparse", "--format=gnu", "-C"])
        .arg(&src)
        .arg("-cf")
        .arg(&out)
        .arg("big")
        .status()
        .expect("GNU tar runs");
    assert!(st.success());
    fs::read(out).unwrap()
}

#[test]
fn sparse_entries_keep_their_holes() {
    let d = tempfile::tempdir().unwrap();
    let s = store_in(d.path());
    let size = 8u64 << 30;
    let data: &[(u64, &[u8])] = &[
        (0, b"HEAD"),
        (3_000_000_000, b"MIDDLE"),
        (size - 4, b"TAIL"),
    ];
    let tar = gnu_sparse_tar(d.path(), size, data);
    assert!(tar.len() < 1 << 20, "GNU tar wrote {} bytes", tar.len());
    assert_eq!(tar[156], b'S', "not a GNU sparse entry");
    let info = s.apply_layer(&tar[..], None).unwrap();
    let f = fs::File::open(s.layer_path(&info.diff_id).join("big")).unwrap();
    let md = f.metadata().unwrap();
    assert_eq!(md.len(), size);
    // A few blocks for the data, not 8 GiB.
    assert!(
        md.blocks() * 512 < 1 << 20,
        "{} blocks allocated",
        md.blocks()
    );
    use std::os::unix::fs::FileExt;
    for (off, bytes) in data {
        let mut got = vec![0u8; bytes.len()];
        f.read_exact_at(&mut got, *off).unwrap();
        assert_eq!(&got, bytes);
    }
    let mut around = vec![1u8; 8192];
    f.read_exact_at(&mut around, 3_000_000_000 - 8192).unwrap();
    assert!(around.iter().all(|b| *b == 0));
    assert!(tmp_is_empty(&s));
}

#[test]
fn zero_runs_of_plain_entries_become_holes() {
    let d = tempfile::tempdir().unwrap();
    let s = store_in(d.path());
    let mut body = vec![0u8; 64 << 20];
    body[..5].copy_from_slice(b"start");
    body[10 << 20] = 7;
    let info = s
        .apply_layer(
            &TarBuilder::new()
                .file("zeros", &body)
                .file("small", b"x")
                .file("empty", b"")
                .file("allzero", &[0u8; 5000])
                .finish()[..],
            None,
        )
        .unwrap();
    let p = s.layer_path(&info.diff_id);
    assert_eq!(fs::read(p.join("zeros")).unwrap(), body);
    assert!(fs::metadata(p.join("zeros")).unwrap().blocks() * 512 < 1 << 20);
    assert_eq!(fs::read(p.join("small")).unwrap(), b"x");
    assert_eq!(fs::read(p.join("empty")).unwrap(), b"");
    assert_eq!(fs::read(p.join("allzero")).unwrap(), vec![0u8; 5000]);
}

#[test]
fn a_layer_over_the_size_limit_is_refused_and_nothing_kept() {
    let d = tempfile::tempdir().unwrap();
    let mut s = store_in(d.path());
    s.set_max_layer_size(Some(1 << 20));
    let tar = TarBuilder::new()
        .file("a", &[1u8; 600 << 10])
        .file("b", &[2u8; 600 << 10])
        .finish();
    let diff = Digest::of(&tar);
    let err = s.apply_layer(&tar[..], Some(&diff)).unwrap_err();
    assert!(
        matches!(&err, Error::LayerTooLarge { limit, entry, .. } if *limit == 1 << 20 && entry == "b"),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        format!(
            "layer {diff} unpacks to more than 1 MiB (at `b`): raise the limit with \
             RBOX_MAX_LAYER_SIZE (0 for none)"
        )
    );
    // A sparse file counts with its holes: refused from its header, before any data.
    let sparse = gnu_sparse_tar(d.path(), 4 << 30, &[(0, b"x")]);
    let err = s.apply_layer(&sparse[..], None).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("layer unpacks to more than 1 MiB (at `big`)"),
        "{err}"
    );
    assert_eq!(layers_count(&s), 0);
    assert!(tmp_is_empty(&s));
    // Within the limit, or with none, the same layer goes in.
    s.set_max_layer_size(Some(2 << 20));
    s.apply_layer(&tar[..], Some(&diff)).unwrap();
    s.set_max_layer_size(None);
    s.apply_layer(&sparse[..], None).unwrap();
    assert_eq!(layers_count(&s), 2);
}

#[test]
fn sizes_parse_with_binary_units() {
    use crate::store::parse_size;
    assert_eq!(parse_size("0"), Some(0));
    assert_eq!(parse_size("1234"), Some(1234));
    assert_eq!(parse_size("10G"), Some(10 << 30));
    assert_eq!(parse_size("512m"), Some(512 << 20));
    assert_eq!(parse_size("2KiB"), Some(2048));
    assert_eq!(parse_size("1TB"), Some(1 << 40));
    for bad in ["", "G", "1.5G", "10X", "-1", "99999999999999999999T"] {
        assert_eq!(parse_size(bad), None, "{bad}");
    }
    assert_eq!(crate::human_size(64 << 30), "64 GiB");
    assert_eq!(crate::human_size(1000), "1000 bytes");
}

#[test]
fn single_id_map_keeps_folded_owners_in_the_override_xattr() {
    use crate::mount::fuse::fs::{parse_override, OVERRIDE_STAT};
    let d = tempfile::tempdir().unwrap();
    let s = store_in(d.path());
    let mut t = TarBuilder::new();
    t.dir("home/", 0o755)
        .file_with("home/f", b"x", 0o4750, 100, 101, 1_600_000_000)
        .file_with("etc", b"y", 0o644, 0, 0, 1_600_000_000);
    let mut h = TarBuilder::header("home/u/", tar::EntryType::Directory, 0o2770, 0);
    h.set_uid(1000);
    h.set_gid(1000);
    let tar = t.push(h, &[]).finish();
    let info = s.apply_layer(&tar[..], None).unwrap();
    // the layer is still the tar's: same digest, its own files
    assert_eq!(info.diff_id, Digest::of(&tar));
    let root = s.layer_path(&info.diff_id);
    let over =
        |p: &str| crate::lgetxattr(&root.join(p), OVERRIDE_STAT).and_then(|v| parse_override(&v));
    assert_eq!(over("home/f"), Some((100, 101, 0o4750)));
    assert_eq!(over("home/u"), Some((1000, 1000, 0o2770)));
    // owned by the one id there is: nothing recorded
    assert_eq!(over("etc"), None);
    assert_eq!(over("home"), None);

    // with a range that has the ids, the kernel keeps the owners and nothing is recorded
    if nix::unistd::geteuid().is_root() {
        let s = Store::open(&d.path().join("full"), IdMap::full()).unwrap();
        let info = s.apply_layer(&tar[..], None).unwrap();
        let root = s.layer_path(&info.diff_id);
        assert!(crate::lgetxattr(&root.join("home/f"), OVERRIDE_STAT).is_none());
        assert_eq!(fs::metadata(root.join("home/f")).unwrap().uid(), 100);
    }
}

#[test]
fn an_image_cannot_bring_its_own_owner_override() {
    assert!(!xattr_allowed(crate::mount::fuse::fs::OVERRIDE_STAT));
    assert!(xattr_allowed("user.other"));
}
