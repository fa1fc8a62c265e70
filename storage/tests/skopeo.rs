//! Interop with skopeo, the containers/image implementation podman uses: what rbox-storage
//! saves, skopeo copies (verifying every blob) into the other archive format, and rbox-storage
//! loads skopeo's output back to the same image. Runs unprivileged; skipped loudly when skopeo
//! is missing, and failing then under `CI=true` (.ci/run installs it).

use std::path::Path;
use std::process::Command;

use rbox_storage::{Format, IdMap, Store};

fn skopeo() -> bool {
    match Command::new("skopeo").arg("--version").output() {
        Ok(o) if o.status.success() => true,
        _ => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "skopeo is missing under CI=true"
            );
            eprintln!(
                "SKIP: skopeo not found; install it (apt-get install skopeo) to run this test"
            );
            false
        }
    }
}

fn rootfs_tar() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |name: &str, data: &[u8], mode: u32| {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(mode);
        h.set_mtime(1_700_000_000);
        b.append_data(&mut h, name, data).unwrap();
    };
    add("bin/tool", b"#!/bin/sh\necho tool\n", 0o755);
    add("etc/motd", b"hello from rbox\n", 0o644);
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    h.set_mode(0o777);
    b.append_link(&mut h, "bin/sh", "tool").unwrap();
    b.into_inner().unwrap()
}

fn skopeo_copy(from: &str, to: &str) {
    let out = Command::new("skopeo")
        .args(["copy", "-q", from, to])
        .output()
        .expect("run skopeo");
    assert!(
        out.status.success(),
        "skopeo copy {from} {to}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn ids() -> IdMap {
    IdMap {
        uid_count: 1,
        gid_count: 1,
    }
}

#[test]
fn skopeo_reads_what_we_save_and_we_load_what_it_writes() {
    if !skopeo() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let src = Store::open(&d.path().join("src"), ids()).unwrap();
    let img = src
        .import_rootfs(
            &rootfs_tar()[..],
            Some("interop:1"),
            &["CMD [\"/bin/sh\"]".into()],
        )
        .unwrap();
    let p = |n: &str| d.path().join(n).display().to_string();

    for (fmt, ours, theirs_ref, theirs) in [
        (
            Format::DockerArchive,
            "ours-docker.tar",
            "oci-archive",
            "theirs-oci.tar",
        ),
        (
            Format::OciArchive,
            "ours-oci.tar",
            "docker-archive",
            "theirs-docker.tar",
        ),
    ] {
        let f = std::fs::File::create(p(ours)).unwrap();
        src.save_archive(
            std::slice::from_ref(&img),
            f,
            fmt,
            rbox_storage::SaveLayers::AsStored,
        )
        .unwrap();
        let ours_ref = match fmt {
            Format::DockerArchive => "docker-archive",
            Format::OciArchive => "oci-archive",
        };
        // skopeo verifies every blob digest while copying.
        skopeo_copy(
            &format!("{ours_ref}:{}", p(ours)),
            &format!("{theirs_ref}:{}:localhost/interop:1", p(theirs)),
        );
        let dst = Store::open(&d.path().join(format!("dst-{ours}")), ids()).unwrap();
        let loaded = dst.load_archive(Path::new(&p(theirs))).unwrap();
        assert_eq!(loaded.len(), 1);
        // Converting between formats, skopeo may re-serialise the config (a new id), but the
        // layers and the config's content stay.
        let diffs = |r: &rbox_storage::ImageRecord| {
            r.layers
                .iter()
                .map(|l| l.diff_id.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(diffs(&loaded[0]), diffs(&img), "{ours} -> {theirs}");
        assert_eq!(
            dst.image_config(&loaded[0]).unwrap().rootfs(),
            src.image_config(&img).unwrap().rootfs()
        );
        assert_eq!(loaded[0].names, vec!["localhost/interop:1"], "{theirs}");
        let layer = dst.layer_path(&loaded[0].layers[0].diff_id);
        assert_eq!(
            std::fs::read(layer.join("etc/motd")).unwrap(),
            b"hello from rbox\n"
        );
        assert_eq!(
            std::fs::read_link(layer.join("bin/sh")).unwrap(),
            Path::new("tool")
        );
        let cfg = dst.image_config(&loaded[0]).unwrap();
        assert_eq!(
            cfg.config().as_ref().unwrap().cmd().as_ref().unwrap(),
            &vec!["/bin/sh".to_string()]
        );
    }
}
