//! Unit tests of archives: docker-archive and oci-archive made here, save -> load round
//! trips, import with changes, hostile archives.

use std::fs;
use std::io::Write as _;
use std::path::PathBuf;

use serde_json::json;

use super::*;
use crate::images::tests::make_image;
use crate::layer::tests::{gzip, store_in, TarBuilder};

/// An archive written entry by entry.
fn archive(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, name, *data).unwrap();
    }
    b.into_inner().unwrap()
}

fn write(dir: &Path, name: &str, data: &[u8]) -> PathBuf {
    let p = dir.join(name);
    fs::write(&p, data).unwrap();
    p
}

fn config_for(diff_ids: &[&Digest]) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "architecture": "amd64",
        "os": "linux",
        "created": "2024-05-01T10:00:00Z",
        "config": { "Cmd": ["sh"] },
        "rootfs": { "type": "layers", "diff_ids": diff_ids.iter().map(|d| d.to_string()).collect::<Vec<_>>() },
    }))
    .unwrap()
}

/// A docker-archive as `docker save` writes it: one gzip and one plain layer, and an
/// old-style `<id>/layer.tar` reached through a symlink.
fn docker_archive() -> (Vec<u8>, Digest, Vec<Digest>) {
    let l1 = TarBuilder::new()
        .dir("bin/", 0o755)
        .file("bin/sh", b"shell")
        .finish();
    let l2 = TarBuilder::new()
        .file("etc/.wh.gone", b"")
        .file("etc/os-release", b"test")
        .finish();
    let (d1, d2) = (Digest::of(&l1), Digest::of(&l2));
    let config = config_for(&[&d1, &d2]);
    let id = Digest::of(&config);
    let manifest = serde_json::to_vec(&json!([{
        "Config": format!("{}.json", id.hex()),
        "RepoTags": ["busybox:latest", "example.com/team/busybox:1"],
        "Layers": ["aaa/layer.tar", "bbb/layer.tar"],
    }]))
    .unwrap();
    let mut b = tar::Builder::new(Vec::new());
    let gz1 = gzip(&l1);
    let cfg_name = format!("{}.json", id.hex());
    for (name, data) in [
        ("aaa/layer.tar", &gz1[..]),
        ("real/layer.tar", &l2[..]),
        (cfg_name.as_str(), &config[..]),
        ("manifest.json", &manifest[..]),
        ("repositories", b"{}"),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, name, data).unwrap();
    }
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    b.append_link(&mut h, "bbb/layer.tar", "../real/layer.tar")
        .unwrap();
    (b.into_inner().unwrap(), id, vec![d1, d2])
}

#[test]
fn loads_a_docker_archive() {
    let d = tempfile::tempdir().unwrap();
    let s = store_in(d.path());
    let (ar, id, diffs) = docker_archive();
    for (i, bytes) in [ar.clone(), gzip(&ar)].iter().enumerate() {
        let p = write(d.path(), &format!("img{i}.tar"), bytes);
        let imgs = s.load_archive(&p).unwrap();
        assert_eq!(imgs.len(), 1);
        let img = &imgs[0];
        assert_eq!(img.id, id);
        assert_eq!(
            img.names,
            vec![
                "docker.io/library/busybox:latest",
                "example.com/team/busybox:1"
            ]
        );
        assert_eq!(img.manifest_media_type, DOCKER_MANIFEST);
        assert_eq!(
            img.layers
                .iter()
                .map(|l| l.diff_id.clone())
                .collect::<Vec<_>>(),
            diffs
        );
        assert_eq!(
            img.layers[0].media_type,
            "application/vnd.docker.image.rootfs.diff.tar.gzip"
        );
        assert_eq!(
            img.layers[1].media_type,
            "application/vnd.docker.image.rootfs.diff.tar"
        );
        assert_eq!(
            fs::read(s.layer_path(&diffs[0]).join("bin/sh")).unwrap(),
            b"shell"
        );
        assert!(s.layer_path(&diffs[1]).join("etc/gone").exists());
        assert_eq!(s.lookup_image("busybox").unwrap().id, id);
        assert_eq!(img.created.as_deref(), Some("2024-05-01T10:00:00Z"));
    }
    assert!(fs::read_dir(s.tmp_root()).unwrap().next().is_none());
}

fn oci_archive(name: &str, tamper: bool) -> (Vec<u8>, Digest) {
    let l1 = TarBuilder::new().file("hello", b"world").finish();
    let gz = gzip(&l1);
    let d1 = Digest::of(&l1);
    let config = config_for(&[&d1]);
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": { "mediaType": OCI_CONFIG, "digest": Digest::of(&config).to_string(), "size": config.len() },
        "layers": [{ "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": Digest::of(&gz).to_string(), "size": gz.len() }],
    }))
    .unwrap();
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": OCI_MANIFEST,
            "digest": Digest::of(&manifest).to_string(),
            "size": manifest.len(),
            "annotations": { REF_NAME: name },
        }],
    }))
    .unwrap();
    // Tampered: the same tar compressed differently, so the content still unpacks and only
    // the blob digest tells.
    let layer_blob = if tamper {
        let mut e = flate2::GzBuilder::new()
            .mtime(12345)
            .write(Vec::new(), flate2::Compression::best());
        e.write_all(&l1).unwrap();
        e.finish().unwrap()
    } else {
        gz.clone()
    };
    let names = [
        format!("blobs/sha256/{}", Digest::of(&gz).hex()),
        format!("blobs/sha256/{}", Digest::of(&config).hex()),
        format!("blobs/sha256/{}", Digest::of(&manifest).hex()),
    ];
    let ar = archive(&[
        ("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#),
        (&names[0], &layer_blob),
        (&names[1], &config),
        (&names[2], &manifest),
        ("index.json", &index),
    ]);
    (ar, Digest::of(&config))
}

#[test]
fn loads_an_oci_archive() {
    let d = tempfile::tempdir().unwrap();
    let s = store_in(d.path());
    let (ar, id) = oci_archive("localhost/hello:1", false);
    let p = write(d.path(), "oci.tar", &ar);
    let imgs = s.load_archive(&p).unwrap();
    assert_eq!(imgs.len(), 1);
    assert_eq!(imgs[0].id, id);
    assert_eq!(imgs[0].names, vec!["localhost/hello:1"]);
    assert_eq!(imgs[0].manifest_media_type, OCI_MANIFEST);
    assert_eq!(s.lookup_image("hello:1").unwrap().id, id);
    let img = &imgs[0];
    assert_eq!(
        fs::read(s.layer_path(&img.layers[0].diff_id).join("hello")).unwrap(),
        b"world"
    );
    assert!(s.has_blob(&img.layers[0].blob));
}

#[test]
fn tampered_oci_blob_is_refused_and_nothing_kept() {
    let d = tempfile::tempdir().unwrap();
    let s = store_in(d.path());
    let (ar, _) = oci_archive("localhost/hello:1", true);
    let p = write(d.path(), "oci.tar", &ar);
    let err = s.load_archive(&p).unwrap_err();
    // The manifest's blob digest (and size) no longer match what the archive holds.
    let want = Digest::of(&gzip(&TarBuilder::new().file("hello", b"world").finish()));
    match err {
        Error::DigestMismatch { expected, .. } => assert_eq!(expected, want),
        Error::SizeMismatch { digest, .. } => assert_eq!(digest, want),
        e => panic!("expected a digest or size mismatch, got {e}"),
    }
    assert!(s.images().unwrap().is_empty());
    assert_eq!(fs::read_dir(s.layers_dir()).unwrap().count(), 0);
    assert!(fs::read_dir(s.tmp_root()).unwrap().next().is_none());
}

#[test]
fn hostile_and_unknown_archives_are_refused() {
    let d = tempfile::tempdir().unwrap();
    let s = store_in(d.path());
    // An entry climbing out of the archive (written raw; the tar crate refuses `..`).
    let mut h = tar::Header::new_old();
    h.as_old_mut().name[..14].copy_from_slice(b"../escape.json");
    h.set_size(2);
    h.set_mode(0o644);
    h.set_cksum();
    let mut b = tar::Builder::new(Vec::new());
    b.append(&h, &b"{}"[..]).unwrap();
    let p = write(d.path(), "evil.tar", &b.into_inner().unwrap());
    let err = s.load_archive(&p).unwrap_err();
    assert!(matches!(err, Error::InvalidArchive(_)), "{err}");
    assert!(!d.path().join("store/escape.json").exists());
    let p = write(d.path(), "empty.tar", &archive(&[("README", b"hi")]));
    assert!(matches!(s.load_archive(&p), Err(Error::NotAnArchive)));
    // A manifest.json naming a layer file through `..`.
    let cfg = config_for(&[&Digest::of(b"x")]);
    let m = serde_json::to_vec(
        &json!([{ "Config": "c.json", "RepoTags": [], "Layers": ["../../etc/passwd"] }]),
    )
    .unwrap();
    let p = write(
        d.path(),
        "evil2.tar",
        &archive(&[("c.json", &cfg), ("manifest.json", &m)]),
    );
    assert!(matches!(s.load_archive(&p), Err(Error::InvalidArchive(_))));
    assert!(fs::read_dir(s.tmp_root()).unwrap().next().is_none());
}

#[test]
fn a_file_that_is_no_tar_is_named_not_quoted() {
    let d = tempfile::tempdir().unwrap();
    let s = store_in(d.path());
    let text =
        b"root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n"
            .repeat(20);
    let p = write(d.path(), "passwd", &text);
    for err in [
        s.load_archive(&p).unwrap_err(),
        s.load_archive_from(&text[..]).unwrap_err(),
    ] {
        assert!(matches!(err, Error::NotAnArchive), "{err}");
        let msg = err.to_string();
        assert!(
            msg.contains("expected a tar") && msg.contains("manifest.json"),
            "{msg}"
        );
        assert!(!msg.contains("root") && !msg.contains('\n'), "{msg}");
    }
    let err = s.import_rootfs(&text[..], None, &[]).unwrap_err();
    let msg = err.to_string();
    assert_eq!(
        msg,
        "invalid layer: not a tar archive (plain, gzip or zstd compressed)"
    );
    // A damaged header further in is reported without its bytes either.
    let mut ar = archive(&[("a", b"x")]);
    ar.truncate(1024);
    ar.extend_from_slice(&text[..512]);
    let err = s.load_archive_from(&ar[..]).unwrap_err();
    assert!(matches!(err, Error::InvalidArchive(_)), "{err}");
    assert!(!err.to_string().contains("root"), "{err}");
    assert!(fs::read_dir(s.tmp_root()).unwrap().next().is_none());
    assert!(s.images().unwrap().is_empty());
}

#[test]
fn oversized_json_in_an_archive_is_refused_before_reading() {
    let d = tempfile::tempdir().unwrap();
    let s = store_in(d.path());
    // Valid JSON, one byte over the limit: the size alone refuses it.
    let mut big = b"[".to_vec();
    big.resize(MANIFEST_LIMIT as usize, b' ');
    big.push(b']');
    for name in ["manifest.json", "index.json"] {
        let p = write(d.path(), "big.tar", &archive(&[(name, &big)]));
        let err = s.load_archive(&p).unwrap_err();
        assert!(
            matches!(err, Error::TooLarge { size, limit: MANIFEST_LIMIT, .. } if size == MANIFEST_LIMIT + 1),
            "{err}"
        );
        assert_eq!(
            err.to_string(),
            format!("`{name}` in the archive is too large: 4194305 bytes, at most 4 MiB allowed")
        );
    }
    // A config over its own limit, named by a small manifest.json.
    let mut cfg = b"{".to_vec();
    cfg.resize(CONFIG_LIMIT as usize + 10, b' ');
    cfg.push(b'}');
    let m = serde_json::to_vec(&json!([{ "Config": "c.json", "Layers": [] }])).unwrap();
    let p = write(
        d.path(),
        "big.tar",
        &archive(&[("c.json", &cfg), ("manifest.json", &m)]),
    );
    let err = s.load_archive(&p).unwrap_err();
    assert!(
        matches!(
            err,
            Error::TooLarge {
                limit: CONFIG_LIMIT,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("at most 32 MiB"), "{err}");
    assert!(fs::read_dir(s.tmp_root()).unwrap().next().is_none());
    assert!(s.images().unwrap().is_empty());
}

#[test]
fn save_then_load_round_trips_in_both_formats() {
    let d = tempfile::tempdir().unwrap();
    let src = store_in(d.path());
    let shared: &[(&str, &[u8])] = &[("base", b"shared")];
    let a = make_image(
        &src,
        &[shared, &[("a", b"only a")]],
        &["quay.io/x/a:1", "localhost/a:latest"],
        "2024-01-01T00:00:00Z",
    );
    let b = make_image(&src, &[shared], &["b"], "2024-01-02T00:00:00Z");
    for (i, fmt) in [Format::DockerArchive, Format::OciArchive]
        .into_iter()
        .enumerate()
    {
        let mut out = Vec::new();
        src.save_archive(&[a.clone(), b.clone()], &mut out, fmt, SaveLayers::AsStored)
            .unwrap();
        let p = write(d.path(), &format!("saved{i}.tar"), &out);
        let dst = Store::open(&d.path().join(format!("dst{i}")), src.ids()).unwrap();
        let imgs = dst.load_archive(&p).unwrap();
        assert_eq!(imgs.len(), 2, "{fmt:?}");
        let la = dst.lookup_image("quay.io/x/a:1").unwrap();
        assert_eq!(la.id, a.id, "{fmt:?}");
        assert_eq!(la.names, a.names, "{fmt:?}");
        assert_eq!(dst.lookup_image("b").unwrap().id, b.id);
        assert_eq!(
            fs::read(dst.layer_path(&la.layers[1].diff_id).join("a")).unwrap(),
            b"only a"
        );
        assert_eq!(
            dst.image_config(&la).unwrap(),
            src.image_config(&a).unwrap()
        );
        // The saved archive can be saved again from the new store.
        let mut again = Vec::new();
        dst.save_archive(&[la], &mut again, fmt, SaveLayers::AsStored)
            .unwrap();
    }
}

#[test]
fn saved_docker_archive_has_the_expected_shape() {
    let d = tempfile::tempdir().unwrap();
    let s = store_in(d.path());
    let a = make_image(&s, &[&[("f", b"x")]], &["shape"], "2024-01-01T00:00:00Z");
    let mut out = Vec::new();
    s.save_archive(
        std::slice::from_ref(&a),
        &mut out,
        Format::DockerArchive,
        SaveLayers::AsStored,
    )
    .unwrap();
    let mut ar = tar::Archive::new(&out[..]);
    let mut files = BTreeMap::new();
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().display().to_string();
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        files.insert(name, data);
    }
    let m: Value = serde_json::from_slice(&files["manifest.json"]).unwrap();
    assert_eq!(m[0]["Config"], json!(format!("{}.json", a.id.hex())));
    assert_eq!(m[0]["RepoTags"], json!(["localhost/shape:latest"]));
    let layer = format!("{}.tar", a.layers[0].diff_id.hex());
    assert_eq!(m[0]["Layers"], json!([layer]));
    // Layers are uncompressed diff tars named by their diff id.
    assert_eq!(Digest::of(&files[&layer]), a.layers[0].diff_id);
    assert_eq!(Digest::of(&files[&format!("{}.json", a.id.hex())]), a.id);
}

#[test]
fn import_rootfs_with_changes() {
    let d = tempfile::tempdir().unwrap();
    let s = store_in(d.path());
    let tar = TarBuilder::new()
        .dir("bin/", 0o755)
        .file_with("bin/busybox", b"ELF", 0o755, 0, 0, 0)
        .symlink("bin/sh", "busybox")
        .finish();
    let changes = vec![
        "CMD [\"/bin/sh\"]".to_string(),
        "ENV PATH=/bin".to_string(),
        "ENV=FOO bar".to_string(),
        "WORKDIR /tmp".to_string(),
        "ENTRYPOINT /bin/sh -c".to_string(),
        "LABEL a=b".to_string(),
        "EXPOSE 80 53/udp".to_string(),
        "USER 1000:1000".to_string(),
    ];
    let img = s
        .import_rootfs(&gzip(&tar)[..], Some("busybox"), &changes)
        .unwrap();
    assert_eq!(img.names, vec!["localhost/busybox:latest"]);
    assert_eq!(img.layers.len(), 1);
    assert_eq!(img.layers[0].diff_id, Digest::of(&tar));
    assert_eq!(
        img.layers[0].media_type,
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
    let cfg = s.image_config(&img).unwrap();
    assert_eq!(cfg.architecture().to_string(), host_arch());
    assert_eq!(cfg.os().to_string(), "linux");
    let c = cfg.config().as_ref().unwrap();
    assert_eq!(c.cmd().as_ref().unwrap(), &vec!["/bin/sh".to_string()]);
    assert_eq!(
        c.entrypoint().as_ref().unwrap(),
        &vec!["/bin/sh".to_string(), "-c".into(), "/bin/sh -c".into()]
    );
    assert_eq!(
        c.env().as_ref().unwrap(),
        &vec!["PATH=/bin".to_string(), "FOO=bar".into()]
    );
    assert_eq!(c.working_dir().as_deref(), Some("/tmp"));
    assert_eq!(c.user().as_deref(), Some("1000:1000"));
    let hist = cfg.history().as_ref().unwrap();
    assert_eq!(hist[0].comment().as_deref(), Some("imported from tarball"));
    assert_eq!(s.lookup_image("busybox").unwrap().id, img.id);
    assert!(
        fs::symlink_metadata(s.layer_path(&img.layers[0].diff_id).join("bin/sh"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    // Unnamed import; plain tar.
    let plain = s.import_rootfs(&tar[..], None, &[]).unwrap();
    assert!(plain.names.is_empty());
    assert_eq!(
        plain.layers[0].media_type,
        "application/vnd.oci.image.layer.v1.tar"
    );
    assert!(matches!(
        s.import_rootfs(&tar[..], None, &["BOGUS x".into()]),
        Err(Error::InvalidChange(_))
    ));
    assert!(matches!(
        s.import_rootfs(&tar[..], Some("Bad Name"), &[]),
        Err(Error::Reference(_))
    ));
}

#[test]
fn two_loads_of_the_same_archive_at_once() {
    let d = tempfile::tempdir().unwrap();
    let s = store_in(d.path());
    let (ar, id, _) = docker_archive();
    let p = write(d.path(), "img.tar", &ar);
    let res: Vec<_> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..3).map(|_| sc.spawn(|| s.load_archive(&p))).collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for r in res {
        assert_eq!(r.unwrap()[0].id, id);
    }
    assert_eq!(s.images().unwrap().len(), 1);
    assert!(fs::read_dir(s.tmp_root()).unwrap().next().is_none());
}

#[test]
fn rfc3339_formatting() {
    assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
    assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
    assert!(rfc3339_now().starts_with("20"));
}

#[test]
fn a_nested_index_loads_the_host_platform() {
    let d = tempfile::tempdir().unwrap();
    let s = store_in(d.path());
    let l1 = TarBuilder::new()
        .file("arch", host_arch().as_bytes())
        .finish();
    let gz = gzip(&l1);
    let config = config_for(&[&Digest::of(&l1)]);
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": { "mediaType": OCI_CONFIG, "digest": Digest::of(&config).to_string(), "size": config.len() },
        "layers": [{ "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": Digest::of(&gz).to_string(), "size": gz.len() }],
    }))
    .unwrap();
    let other = if host_arch() == "arm64" {
        "amd64"
    } else {
        "arm64"
    };
    // The foreign manifest's blobs are absent: it must not even be read.
    let foreign = Digest::of(b"a manifest for another machine");
    let nested = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            { "mediaType": OCI_MANIFEST, "digest": foreign.to_string(), "size": 30,
              "platform": { "architecture": other, "os": "linux" } },
            { "mediaType": OCI_MANIFEST, "digest": Digest::of(&manifest).to_string(), "size": manifest.len(),
              "platform": { "architecture": host_arch(), "os": "linux" } },
        ],
    }))
    .unwrap();
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": OCI_INDEX,
            "digest": Digest::of(&nested).to_string(),
            "size": nested.len(),
            "annotations": { REF_NAME: "example.com/multi:2" },
        }],
    }))
    .unwrap();
    let blob = |data: &[u8]| format!("blobs/sha256/{}", Digest::of(data).hex());
    let ar = archive(&[
        ("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#),
        (&blob(&gz), &gz),
        (&blob(&config), &config),
        (&blob(&manifest), &manifest),
        (&blob(&nested), &nested),
        ("index.json", &index),
    ]);
    let p = write(d.path(), "multi.tar", &ar);
    let imgs = s.load_archive(&p).unwrap();
    assert_eq!(imgs.len(), 1);
    assert_eq!(imgs[0].id, Digest::of(&config));
    assert_eq!(imgs[0].names, vec!["example.com/multi:2"]);
    let layer = s.layer_path(&imgs[0].layers[0].diff_id);
    assert_eq!(
        fs::read(layer.join("arch")).unwrap(),
        host_arch().as_bytes()
    );
}
