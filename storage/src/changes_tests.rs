//! Unit tests of the layer writer: the OCI forms of whiteouts and opaque directories, hard
//! links, symlinks, xattrs, determinism, and the stored layer that comes back.

use std::fs;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

use nix::sys::stat::{mknod, Mode, SFlag};

use super::*;
use crate::layer::tests::store_in;

fn setx(p: &Path, k: &str, v: &[u8]) {
    let f = File::open(p).unwrap();
    sys::fsetxattr(&f, k, v).unwrap();
}

/// An upper as overlay leaves it: a new file with an xattr and a second hard link, a symlink,
/// a fifo, a whiteout, an opaque directory with one new file, a changed file in a subdir.
fn sample_upper(root: &Path) -> std::path::PathBuf {
    let up = root.join("upper");
    fs::create_dir_all(up.join("etc")).unwrap();
    fs::create_dir_all(up.join("opq")).unwrap();
    fs::write(up.join("etc/passwd"), "root:x:0:0\n").unwrap();
    fs::write(up.join("new"), "hello").unwrap();
    fs::set_permissions(up.join("new"), fs::Permissions::from_mode(0o4751)).unwrap();
    setx(&up.join("new"), "user.note", b"kept");
    setx(&up.join("new"), "user.overlay.origin", b"dropped");
    fs::hard_link(up.join("new"), up.join("new2")).unwrap();
    std::os::unix::fs::symlink("new", up.join("link")).unwrap();
    nix::unistd::mkfifo(&up.join("pipe"), Mode::from_bits_truncate(0o640)).unwrap();
    mknod(&up.join("gone"), SFlag::S_IFCHR, Mode::empty(), 0).unwrap();
    mknod(&up.join("etc/shadow"), SFlag::S_IFCHR, Mode::empty(), 0).unwrap();
    setx(&up.join("opq"), "user.overlay.opaque", b"y");
    fs::write(up.join("opq/only"), "x").unwrap();
    // a mount point a runtime left behind
    fs::write(up.join("etc/hosts"), "").unwrap();
    let t = nix::sys::time::TimeSpec::new(1_700_000_000, 0);
    for p in ["new", "etc/passwd", "opq/only", "etc", "opq"] {
        nix::sys::stat::utimensat(
            nix::fcntl::AT_FDCWD,
            &up.join(p),
            &t,
            &t,
            nix::sys::stat::UtimensatFlags::NoFollowSymlink,
        )
        .unwrap();
    }
    up
}

struct Ent {
    path: String,
    kind: tar::EntryType,
    link: Option<String>,
    mode: u32,
    mtime: u64,
    xattrs: Vec<(String, Vec<u8>)>,
    data: Vec<u8>,
}

fn entries(tar_bytes: &[u8]) -> Vec<Ent> {
    let mut ar = tar::Archive::new(tar_bytes);
    let mut out = Vec::new();
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let mut xattrs = Vec::new();
        if let Some(exts) = e.pax_extensions().unwrap() {
            for x in exts {
                let x = x.unwrap();
                if let Some(k) = x.key().unwrap().strip_prefix("SCHILY.xattr.") {
                    xattrs.push((k.to_string(), x.value_bytes().to_vec()));
                }
            }
        }
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        out.push(Ent {
            path: e.path().unwrap().to_string_lossy().into_owned(),
            kind: e.header().entry_type(),
            link: e
                .link_name()
                .unwrap()
                .map(|l| l.to_string_lossy().into_owned()),
            mode: e.header().mode().unwrap(),
            mtime: e.header().mtime().unwrap(),
            xattrs,
            data,
        });
    }
    out
}

#[test]
fn upper_becomes_an_oci_layer_tar() {
    let d = tempfile::tempdir().unwrap();
    let up = sample_upper(d.path());
    let mut buf = Vec::new();
    write_layer_tar(&up, &["etc/hosts"], &mut buf).unwrap();
    let ents = entries(&buf);
    let paths: Vec<&str> = ents.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "etc/",
            "etc/passwd",
            "etc/.wh.shadow",
            ".wh.gone",
            "link",
            "new",
            "new2",
            "opq/",
            "opq/.wh..wh..opq",
            "opq/only",
            "pipe",
        ]
    );
    let by = |p: &str| ents.iter().find(|e| e.path == p).unwrap();
    assert_eq!(by(".wh.gone").kind, tar::EntryType::Regular);
    assert!(by(".wh.gone").data.is_empty());
    assert_eq!(by("opq/.wh..wh..opq").kind, tar::EntryType::Regular);
    let new = by("new");
    assert_eq!(new.data, b"hello");
    assert_eq!(new.mode, 0o4751);
    assert_eq!(new.mtime, 1_700_000_000);
    assert_eq!(new.xattrs, [("user.note".to_string(), b"kept".to_vec())]);
    assert_eq!(by("new2").kind, tar::EntryType::Link);
    assert_eq!(by("new2").link.as_deref(), Some("new"));
    assert_eq!(by("link").kind, tar::EntryType::Symlink);
    assert_eq!(by("link").link.as_deref(), Some("new"));
    assert_eq!(by("pipe").kind, tar::EntryType::Fifo);
    assert_eq!(by("pipe").mode, 0o640);
    // overlay's own xattr is never carried, not even on the opaque directory
    assert!(by("opq/").xattrs.is_empty());
    assert_eq!(by("opq/").mtime, 1_700_000_000);

    // the same changes give the same bytes
    let mut again = Vec::new();
    write_layer_tar(&up, &["etc/hosts"], &mut again).unwrap();
    assert_eq!(buf, again);
    // not skipped, the mount point is a file like any other
    let mut all = Vec::new();
    write_layer_tar(&up, &[], &mut all).unwrap();
    assert!(entries(&all).iter().any(|e| e.path == "etc/hosts"));
}

#[test]
fn stored_layer_has_the_overlay_form_again() {
    let d = tempfile::tempdir().unwrap();
    let s = store_in(d.path());
    let up = sample_upper(d.path());
    let gz = s.layer_from_upper(&up, Compression::Gzip).unwrap();
    assert_eq!(gz.compression, Compression::Gzip);
    let blob = gz.blob.clone().unwrap();
    assert!(s.has_blob(&blob));
    let mut head = [0u8; 2];
    s.open_blob(&blob).unwrap().read_exact(&mut head).unwrap();
    assert_eq!(head, [0x1f, 0x8b]);
    let l = s.layer_path(&gz.diff_id);
    let wh = fs::symlink_metadata(l.join("gone")).unwrap();
    assert!(wh.file_type().is_char_device() && wh.rdev() == 0);
    assert_eq!(
        crate::lgetxattr(&l.join("opq"), "user.overlay.opaque").as_deref(),
        Some(&b"y"[..])
    );
    let a = fs::metadata(l.join("new")).unwrap();
    let b = fs::metadata(l.join("new2")).unwrap();
    assert_eq!(a.ino(), b.ino());
    assert_eq!(fs::read_link(l.join("link")).unwrap(), Path::new("new"));
    assert_eq!(
        crate::lgetxattr(&l.join("new"), "user.note").as_deref(),
        Some(&b"kept"[..])
    );

    // zstd and plain: other blobs, the same diff id
    let zs = s.layer_from_upper(&up, Compression::Zstd).unwrap();
    assert_eq!(zs.diff_id, gz.diff_id);
    let plain = s.layer_from_upper(&up, Compression::None).unwrap();
    assert_eq!(plain.diff_id, gz.diff_id);
    assert!(fs::read_dir(s.root().join("tmp")).unwrap().next().is_none());
}

#[test]
fn a_plain_staging_directory_is_a_layer_too() {
    let d = tempfile::tempdir().unwrap();
    let s = store_in(d.path());
    let st = d.path().join("stage");
    fs::create_dir_all(st.join("app/bin")).unwrap();
    fs::write(st.join("app/bin/run"), "#!/bin/sh\n").unwrap();
    let info = s
        .layer_from_upper_skipping(&st, Compression::Gzip, &[])
        .unwrap();
    assert_eq!(
        fs::read(s.layer_path(&info.diff_id).join("app/bin/run")).unwrap(),
        b"#!/bin/sh\n"
    );
    let mut buf = Vec::new();
    write_layer_tar(&st, &[], &mut buf).unwrap();
    assert_eq!(info.diff_id, Digest::of(&buf));
    assert_eq!(info.size, buf.len() as u64);
}

/// Every entry under `root`: path, type, mode, owner, mtime (s, ns), size, link target.
fn tree(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let m = fs::symlink_metadata(&p).unwrap();
            if m.is_dir() {
                todo.push(p.clone());
            }
            let link = fs::read_link(&p).ok();
            let mut xattrs: Vec<String> = sys::llistxattr(&p)
                .unwrap()
                .split(|b| *b == 0)
                .filter(|n| !n.is_empty())
                .map(|n| {
                    let n = String::from_utf8_lossy(n).into_owned();
                    let v = crate::lgetxattr(&p, &n).unwrap_or_default();
                    format!("{n}={}", String::from_utf8_lossy(&v))
                })
                .collect();
            xattrs.sort();
            let is_wh = m.file_type().is_char_device();
            out.push(format!(
                "{} {:o} {}:{} {}.{} {} {:?} {xattrs:?}",
                p.strip_prefix(root).unwrap().display(),
                m.mode(),
                m.uid(),
                m.gid(),
                if is_wh { 0 } else { m.mtime() },
                if is_wh { 0 } else { m.mtime_nsec() },
                if m.is_file() { m.len() } else { 0 },
                link
            ));
        }
    }
    out.sort();
    out
}

/// The layer `info` of store `s` as store `other` unpacks it from its blob (another host's
/// pull): the same diff id and size, its directory returned.
fn unpacked_from_blob(s: &Store, info: &LayerInfo, other: &Store) -> std::path::PathBuf {
    let blob = s.open_blob(info.blob.as_ref().unwrap()).unwrap();
    let theirs = other
        .store_layer(
            io::BufReader::new(blob),
            info.blob.as_ref(),
            info.blob_size,
            None,
            false,
        )
        .unwrap();
    assert_eq!(theirs.diff_id, info.diff_id);
    assert_eq!(theirs.size, info.size);
    other.layer_path(&theirs.diff_id)
}

#[test]
fn a_staged_directory_moves_in_as_the_layer_its_blob_unpacks_to() {
    let d = tempfile::tempdir().unwrap();
    let s = store_in(&d.path().join("a"));
    let other = store_in(&d.path().join("b"));
    let st = s.scratch_dir("stage").unwrap();
    let p = st.path().to_path_buf();
    fs::create_dir_all(p.join("app/bin")).unwrap();
    fs::write(p.join("app/bin/run"), "#!/bin/sh\n").unwrap();
    fs::set_permissions(p.join("app/bin/run"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(p.join("app/data"), vec![7u8; 100_000]).unwrap();
    std::os::unix::fs::symlink("bin/run", p.join("app/start")).unwrap();
    let t = nix::sys::time::TimeSpec::new(1_700_000_000, 123_456_789);
    nix::sys::stat::utimensat(
        nix::fcntl::AT_FDCWD,
        &p.join("app/data"),
        &t,
        &t,
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    )
    .unwrap();
    let info = s.layer_from_staged(&p, Compression::Gzip, &[]).unwrap();
    assert!(!p.exists(), "the staged directory is moved, not copied");
    let mine = s.layer_path(&info.diff_id);

    let theirs = unpacked_from_blob(&s, &info, &other);
    assert_eq!(tree(&mine), tree(&theirs));
    assert!(tree(&mine)
        .iter()
        .any(|l| l.starts_with("app/data 100644") && l.contains(" 1700000000.0 ")));
    assert_eq!(
        fs::metadata(&mine).unwrap().mode() & 0o7777,
        fs::metadata(&theirs).unwrap().mode() & 0o7777
    );
    drop(st);

    // the same content again: the stored layer is reused, the second staging dir discarded
    let st = s.scratch_dir("stage").unwrap();
    fs::create_dir_all(st.path().join("app/bin")).unwrap();
    fs::write(st.path().join("app/bin/run"), "#!/bin/sh\n").unwrap();
    let again = s
        .layer_from_staged(st.path(), Compression::Gzip, &[])
        .unwrap();
    assert!(s.has_layer(&again.diff_id));
    drop(st);
    assert!(fs::read_dir(s.root().join("tmp")).unwrap().next().is_none());
}

/// A COPY's staging directory (directories and single-link files, no xattrs): settled from
/// what the tar walk saw, directories' fractional times cut, files' whole-second times kept,
/// and the result the same tree its blob unpacks to.
#[test]
fn a_plain_staged_tree_settles_from_its_tar_walk() {
    let d = tempfile::tempdir().unwrap();
    let s = store_in(&d.path().join("a"));
    let other = store_in(&d.path().join("b"));
    let st = s.scratch_dir("stage").unwrap();
    let p = st.path().to_path_buf();
    let at = |rel: &str, sec: i64, nsec: i64| {
        let t = nix::sys::time::TimeSpec::new(sec, nsec);
        nix::sys::stat::utimensat(
            nix::fcntl::AT_FDCWD,
            &p.join(rel),
            &t,
            &t,
            nix::sys::stat::UtimensatFlags::NoFollowSymlink,
        )
        .unwrap();
    };
    for m in ["m0", "m1", "m1/deep"] {
        fs::create_dir_all(p.join("src").join(m)).unwrap();
        for f in ["a.c", "b.c"] {
            fs::write(p.join("src").join(m).join(f), format!("{m}/{f}\n")).unwrap();
        }
    }
    at("src/m0/a.c", 1_700_000_000, 0);
    at("src/m1/deep/b.c", 1_700_000_001, 999_999_999);
    at("src/m1/deep", 1_700_000_002, 5);
    let info = s.layer_from_staged(&p, Compression::Gzip, &[]).unwrap();
    assert!(!p.exists(), "the staged directory is moved, not copied");
    let mine = s.layer_path(&info.diff_id);
    let theirs = unpacked_from_blob(&s, &info, &other);
    assert_eq!(tree(&mine), tree(&theirs));
    let times = tree(&mine);
    for (rel, time) in [
        ("src/m0/a.c ", " 1700000000.0 "),
        ("src/m1/deep/b.c ", " 1700000001.0 "),
        ("src/m1/deep ", " 1700000002.0 "),
    ] {
        assert!(
            times.iter().any(|l| l.starts_with(rel) && l.contains(time)),
            "{rel}: {times:?}"
        );
    }
    assert!(times.iter().all(|l| l.contains(".0 ")), "{times:?}");
}

/// A regular file whose name the layer format reads as a whiteout is no plain staged file:
/// the layer comes from its blob, as another host gets it.
#[test]
fn a_staged_wh_name_is_unpacked_from_its_blob() {
    let d = tempfile::tempdir().unwrap();
    let s = store_in(d.path());
    let st = s.scratch_dir("stage").unwrap();
    fs::create_dir(st.path().join("dir")).unwrap();
    fs::write(st.path().join("dir/.wh.gone"), "").unwrap();
    fs::write(st.path().join("kept"), "x").unwrap();
    let info = s
        .layer_from_staged(st.path(), Compression::None, &[])
        .unwrap();
    assert!(st.path().exists(), "left to its owner, not moved in");
    let l = s.layer_path(&info.diff_id);
    assert!(l.join("kept").exists());
    assert!(!l.join("dir/.wh.gone").exists());
}

/// A finished build step's upper: whiteouts, an opaque directory, overlay's bookkeeping
/// xattrs, an image xattr, a runtime's mount point; moved in as what its blob unpacks to.
#[test]
fn an_upper_moves_in_as_the_layer_its_blob_unpacks_to() {
    let d = tempfile::tempdir().unwrap();
    let s = store_in(&d.path().join("a"));
    let other = store_in(&d.path().join("b"));
    let st = s.scratch_dir("upper").unwrap();
    let up = st.path().to_path_buf();
    fs::create_dir_all(up.join("etc")).unwrap();
    fs::create_dir_all(up.join("opq")).unwrap();
    fs::write(up.join("etc/passwd"), "root:x:0:0\n").unwrap();
    fs::write(up.join("etc/hosts"), "").unwrap();
    fs::write(up.join("new"), "hello").unwrap();
    setx(&up.join("new"), "user.note", b"kept");
    setx(&up.join("new"), "user.overlay.origin", b"dropped");
    setx(&up.join("etc"), "user.overlay.impure", b"y");
    mknod(&up.join("gone"), SFlag::S_IFCHR, Mode::empty(), 0).unwrap();
    setx(&up.join("opq"), "user.overlay.opaque", b"y");
    fs::write(up.join("opq/only"), "x").unwrap();
    let info = s
        .layer_from_staged(&up, Compression::Gzip, &["etc/hosts"])
        .unwrap();
    assert!(!up.exists(), "the upper is moved, not copied");
    let mine = s.layer_path(&info.diff_id);
    let theirs = unpacked_from_blob(&s, &info, &other);
    assert_eq!(tree(&mine), tree(&theirs));
    assert!(!mine.join("etc/hosts").exists());
    assert!(fs::symlink_metadata(mine.join("gone"))
        .unwrap()
        .file_type()
        .is_char_device());
    assert_eq!(
        crate::lgetxattr(&mine.join("opq"), "user.overlay.opaque").as_deref(),
        Some(&b"y"[..])
    );
    assert_eq!(
        crate::lgetxattr(&mine.join("new"), "user.overlay.origin"),
        None
    );
}

/// An ADDed archive may leave hard links or `.wh.` names: the layer then comes from its blob.
#[test]
fn a_staged_directory_with_hard_links_is_unpacked_from_its_blob() {
    let d = tempfile::tempdir().unwrap();
    let s = store_in(d.path());
    let st = s.scratch_dir("stage").unwrap();
    fs::write(st.path().join("a"), "x").unwrap();
    fs::hard_link(st.path().join("a"), st.path().join("b")).unwrap();
    let info = s
        .layer_from_staged(st.path(), Compression::None, &[])
        .unwrap();
    let l = s.layer_path(&info.diff_id);
    assert_eq!(
        fs::metadata(l.join("a")).unwrap().ino(),
        fs::metadata(l.join("b")).unwrap().ino()
    );
}

/// A file whose other link is outside the staging directory (a build's COPY links unchanged
/// files from its earlier layer) is written as a plain file, and the directory still becomes
/// the layer by rename, keeping the link: the layer another host unpacks from the blob.
#[test]
fn a_staged_file_linked_from_outside_is_a_plain_file_and_kept() {
    let d = tempfile::tempdir().unwrap();
    let s = store_in(d.path());
    let st = s.scratch_dir("stage").unwrap();
    let outside = d.path().join("outside");
    fs::write(&outside, "x").unwrap();
    fs::hard_link(&outside, st.path().join("a")).unwrap();
    let t = nix::sys::time::TimeSpec::new(1_700_000_000, 0);
    nix::sys::stat::utimensat(
        nix::fcntl::AT_FDCWD,
        &outside,
        &t,
        &t,
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    )
    .unwrap();
    let staged = st.path().to_path_buf();
    let info = s
        .layer_from_staged(&staged, Compression::Gzip, &[])
        .unwrap();
    assert!(!staged.exists(), "the staging is moved, not unpacked");
    let mine = s.layer_path(&info.diff_id);
    assert_eq!(
        fs::metadata(mine.join("a")).unwrap().ino(),
        fs::metadata(&outside).unwrap().ino()
    );
    let other = store_in(&d.path().join("b"));
    assert_eq!(tree(&mine), tree(&unpacked_from_blob(&s, &info, &other)));
}

#[test]
fn a_missing_upper_is_an_error_naming_it() {
    let d = tempfile::tempdir().unwrap();
    let s = store_in(d.path());
    let e = s
        .layer_from_upper(&d.path().join("nope"), Compression::Gzip)
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("open `") && e.contains("nope`"), "{e}");
}

#[test]
fn union_applies_whiteouts_and_opaque_dirs() {
    let d = tempfile::tempdir().unwrap();
    let (low, up) = (d.path().join("low"), d.path().join("up"));
    for p in ["d", "o", "f"] {
        fs::create_dir_all(low.join(p)).unwrap();
    }
    for p in ["a", "b", "d/x", "d/y", "o/p", "f/g"] {
        fs::write(low.join(p), p).unwrap();
    }
    fs::hard_link(low.join("a"), low.join("a2")).unwrap();
    fs::create_dir_all(up.join("d")).unwrap();
    fs::create_dir_all(up.join("o")).unwrap();
    fs::write(up.join("d/z"), "new").unwrap();
    fs::write(up.join("f"), "a file over a directory").unwrap();
    mknod(&up.join("b"), SFlag::S_IFCHR, Mode::empty(), 0).unwrap();
    mknod(&up.join("d/x"), SFlag::S_IFCHR, Mode::empty(), 0).unwrap();
    setx(&up.join("o"), "user.overlay.opaque", b"y");
    fs::write(up.join("o/q"), "q").unwrap();
    let mut buf = Vec::new();
    write_union_tar(&[up.as_path(), low.as_path()], &[], &mut buf).unwrap();
    let ents = entries(&buf);
    let paths: Vec<&str> = ents.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(paths, ["a", "a2", "d/", "d/y", "d/z", "f", "o/", "o/q"]);
    let by = |p: &str| ents.iter().find(|e| e.path == p).unwrap();
    assert_eq!(by("d/z").data, b"new");
    assert_eq!(by("d/y").data, b"d/y");
    assert_eq!(by("a2").kind, tar::EntryType::Link);
    assert!(by("o/").xattrs.is_empty());
}

#[test]
fn derived_image_stacks_the_new_layer_on_its_base() {
    let d = tempfile::tempdir().unwrap();
    let s = store_in(d.path());
    let st = d.path().join("stage");
    fs::create_dir_all(&st).unwrap();
    fs::write(st.join("one"), "1").unwrap();
    let l1 = s.layer_from_upper(&st, Compression::Gzip).unwrap();
    let cfg = serde_json::json!({"architecture": "amd64", "os": "linux", "config": {}});
    let base = s
        .commit_derived(
            None,
            Some(&l1),
            cfg.clone(),
            ManifestFormat::Oci,
            &["base".into()],
        )
        .unwrap();
    fs::write(st.join("two"), "2").unwrap();
    let l2 = s.layer_from_upper(&st, Compression::Zstd).unwrap();
    let top = s
        .commit_derived(Some(&base), Some(&l2), cfg, ManifestFormat::Docker, &[])
        .unwrap();
    let ids: Vec<_> = top.layers.iter().map(|l| l.diff_id.clone()).collect();
    assert_eq!(ids, [l1.diff_id.clone(), l2.diff_id.clone()]);
    assert_eq!(
        top.manifest_media_type,
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    assert_eq!(
        top.layers[0].media_type,
        "application/vnd.docker.image.rootfs.diff.tar.gzip"
    );
    let c = s.image_config(&top).unwrap();
    assert_eq!(c.rootfs().diff_ids().len(), 2);
}

#[test]
fn a_copy_root_gives_only_its_changes() {
    let d = tempfile::tempdir().unwrap();
    let s = store_in(d.path());
    let low = d.path().join("low");
    fs::create_dir_all(low.join("etc")).unwrap();
    fs::create_dir_all(low.join("bin")).unwrap();
    for p in ["etc/keep", "etc/edit", "bin/gone"] {
        fs::write(low.join(p), p).unwrap();
    }
    let root = d.path().join("root");
    crate::mount::copy::copy_layers(std::slice::from_ref(&low), &root).unwrap();
    fs::write(root.join("etc/edit"), "edited, longer").unwrap();
    fs::remove_file(root.join("bin/gone")).unwrap();
    fs::write(root.join("new"), "n").unwrap();
    let info = s
        .layer_from_copy(&root, std::slice::from_ref(&low), Compression::Gzip, &[])
        .unwrap();
    let l = s.layer_path(&info.diff_id);
    let mut got = Vec::new();
    for e in ["etc/keep", "etc/edit", "bin/gone", "new"] {
        if let Ok(m) = fs::symlink_metadata(l.join(e)) {
            got.push(if m.file_type().is_char_device() {
                format!("wh {e}")
            } else {
                e.to_string()
            });
        }
    }
    assert_eq!(got, ["etc/edit", "wh bin/gone", "new"]);
    assert_eq!(fs::read(l.join("etc/edit")).unwrap(), b"edited, longer");
}

#[test]
fn the_fuse_overlays_owner_override_becomes_the_entrys_owner_and_mode() {
    use crate::mount::fuse::fs::OVERRIDE_STAT;
    let d = tempfile::tempdir().unwrap();
    let up = d.path().join("upper");
    fs::create_dir_all(up.join("home/u")).unwrap();
    fs::write(up.join("home/u/f"), "x").unwrap();
    fs::write(up.join("plain"), "y").unwrap();
    fs::set_permissions(up.join("plain"), fs::Permissions::from_mode(0o644)).unwrap();
    setx(&up.join("home/u/f"), OVERRIDE_STAT, b"200:300:0750");
    setx(&up.join("home/u"), OVERRIDE_STAT, b"7:8:02770");
    setx(&up.join("home/u/f"), "user.note", b"kept");
    let mut buf = Vec::new();
    write_layer_tar(&up, &[], &mut buf).unwrap();
    let mut ar = tar::Archive::new(&buf[..]);
    let mut seen = Vec::new();
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let h = e.header();
        let row = format!(
            "{} {}:{}:{:o}",
            e.path().unwrap().display(),
            h.uid().unwrap(),
            h.gid().unwrap(),
            h.mode().unwrap()
        );
        let keys: Vec<String> = e
            .pax_extensions()
            .unwrap()
            .map(|x| x.map(|x| x.unwrap().key().unwrap().to_string()).collect())
            .unwrap_or_default();
        assert!(
            !keys.iter().any(|k| k.ends_with(OVERRIDE_STAT)),
            "the override is no xattr of the layer: {keys:?}"
        );
        seen.push(row);
    }
    let me = format!("{}:{}", nix::unistd::geteuid(), nix::unistd::getegid());
    assert!(seen.contains(&"home/u/ 7:8:2770".to_string()), "{seen:?}");
    assert!(
        seen.contains(&"home/u/f 200:300:750".to_string()),
        "{seen:?}"
    );
    assert!(seen.contains(&format!("plain {me}:644")), "{seen:?}");
}
