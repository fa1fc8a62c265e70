//! Unit tests of image records: commit, names, lookup rules, tag/untag, removal and GC.

use std::fs;

use serde_json::json;

use super::*;
use crate::layer::tests::{gzip, store_in, TarBuilder};

/// Stores one gzip layer per `files` entry and commits an OCI image with those layers.
pub(crate) fn make_image(
    s: &Store,
    files: &[&[(&str, &[u8])]],
    names: &[&str],
    created: &str,
) -> ImageRecord {
    try_make_image(s, files, names, created).unwrap()
}

fn try_make_image(
    s: &Store,
    files: &[&[(&str, &[u8])]],
    names: &[&str],
    created: &str,
) -> Result<ImageRecord> {
    let mut diff_ids = Vec::new();
    let mut descs = Vec::new();
    for layer in files {
        let mut tb = TarBuilder::new();
        for (n, data) in *layer {
            tb.file(n, data);
        }
        let tar = tb.finish();
        let gz = gzip(&tar);
        let blob = Digest::of(&gz);
        let info = s.pull_layer(
            &gz[..],
            &blob,
            Some(gz.len() as u64),
            Some(&Digest::of(&tar)),
        )?;
        diff_ids.push(info.diff_id.to_string());
        descs.push(json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": blob.to_string(),
            "size": gz.len(),
        }));
    }
    let config = serde_json::to_vec(&json!({
        "created": created,
        "architecture": "amd64",
        "os": "linux",
        "config": { "Cmd": ["/bin/sh"], "Env": ["PATH=/bin"] },
        "rootfs": { "type": "layers", "diff_ids": diff_ids },
        "history": [
            { "created": created, "created_by": "/bin/sh -c #(nop) ADD file", "comment": "first" },
            { "created": created, "created_by": "/bin/sh -c #(nop) CMD [\"sh\"]", "empty_layer": true },
        ],
    }))
    .unwrap();
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": Digest::of(&config).to_string(),
            "size": config.len(),
        },
        "layers": descs,
    }))
    .unwrap();
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    s.commit_image(&manifest, &config, &names)
}

#[test]
fn name_normalisation() {
    assert_eq!(
        normalize_name("busybox").unwrap(),
        "localhost/busybox:latest"
    );
    assert_eq!(
        normalize_name("busybox:1.36").unwrap(),
        "localhost/busybox:1.36"
    );
    assert_eq!(
        normalize_name("foo/bar").unwrap(),
        "localhost/foo/bar:latest"
    );
    assert_eq!(normalize_name("quay.io/a/b:c").unwrap(), "quay.io/a/b:c");
    assert_eq!(
        normalize_name("localhost:5000/x").unwrap(),
        "localhost:5000/x:latest"
    );
    assert_eq!(
        normalize_docker_name("alpine:3.19").unwrap(),
        "docker.io/library/alpine:3.19"
    );
    assert_eq!(
        normalize_docker_name("me/app").unwrap(),
        "docker.io/me/app:latest"
    );
    let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    assert_eq!(
        normalize_name(&format!("x@{d}")).unwrap(),
        format!("localhost/x@{d}")
    );
    for bad in ["", "Upper", "a b", "x:", "x:-bad", "a//b", "x@sha256:1"] {
        assert!(normalize_name(bad).is_err(), "{bad:?} accepted");
    }
    assert_eq!(
        split_name("localhost:5000/a:b"),
        ("localhost:5000/a", Some("b"), None)
    );
    assert_eq!(
        split_name("localhost:5000/a"),
        ("localhost:5000/a", None, None)
    );
    assert_eq!(encode_name("a/b%c"), "a%2Fb%25c");
    assert_eq!(decode_name(&encode_name("a/b%2Fc")), "a/b%2Fc");
}

#[test]
fn commit_and_lookup_rules() {
    let d = tempfile::tempdir().unwrap();
    let s = store_in(d.path());
    let a = make_image(&s, &[&[("a", b"1")]], &["busybox"], "2024-01-01T00:00:00Z");
    let b = make_image(
        &s,
        &[&[("b", b"2")]],
        &["docker.io/library/alpine:3.19"],
        "2024-01-02T00:00:00Z",
    );
    let c = make_image(
        &s,
        &[&[("c", b"3")]],
        &["quay.io/org/tool:v1"],
        "2024-01-03T00:00:00Z",
    );
    assert_eq!(a.names, vec!["localhost/busybox:latest"]);
    assert_eq!(a.manifest_media_type, OCI_MANIFEST);
    assert!(a.size > 0);

    let id = |q: &str| s.lookup_image(q).map(|r| r.id);
    assert_eq!(id("localhost/busybox:latest").unwrap(), a.id);
    assert_eq!(id("busybox").unwrap(), a.id);
    assert_eq!(id("busybox:latest").unwrap(), a.id);
    assert_eq!(id("alpine:3.19").unwrap(), b.id);
    assert_eq!(id("library/alpine:3.19").unwrap(), b.id);
    assert_eq!(id("docker.io/library/alpine:3.19").unwrap(), b.id);
    assert!(
        matches!(id("alpine"), Err(Error::ImageNotFound(_))),
        "tag defaults to latest"
    );
    assert_eq!(id("org/tool:v1").unwrap(), c.id);
    assert_eq!(id(&a.id.to_string()).unwrap(), a.id);
    assert_eq!(id(a.id.hex()).unwrap(), a.id);
    assert_eq!(id(&a.id.hex()[..12]).unwrap(), a.id);
    assert_eq!(id(&format!("sha256:{}", &a.id.hex()[..5])).unwrap(), a.id);
    assert!(
        matches!(id(&a.id.hex()[..2]), Err(Error::ImageNotFound(_))),
        "prefix < 3"
    );
    assert_eq!(id(&format!("busybox@{}", a.digest)).unwrap(), a.id);
    assert!(matches!(id("nothere"), Err(Error::ImageNotFound(_))));
    assert!(matches!(id(""), Err(Error::ImageNotFound(_))));
    assert!(matches!(
        id("../../etc/passwd"),
        Err(Error::ImageNotFound(_))
    ));

    let all = s.images().unwrap();
    assert_eq!(
        all.iter().map(|r| r.id.clone()).collect::<Vec<_>>(),
        vec![c.id.clone(), b.id.clone(), a.id.clone()]
    );
    assert_eq!(
        list_image_names_fast(s.root()),
        vec![
            "docker.io/library/alpine:3.19",
            "localhost/busybox:latest",
            "quay.io/org/tool:v1"
        ]
    );
}

#[test]
fn short_name_preference_and_ambiguity() {
    let d = tempfile::tempdir().unwrap();
    let s = store_in(d.path());
    let q = make_image(
        &s,
        &[&[("q", b"q")]],
        &["quay.io/app:latest"],
        "2024-01-01T00:00:00Z",
    );
    let r = make_image(
        &s,
        &[&[("r", b"r")]],
        &["registry.example.com/app:latest"],
        "2024-01-01T00:00:00Z",
    );
    match s.lookup_image("app") {
        Err(Error::AmbiguousImage { candidates, .. }) => assert_eq!(candidates.len(), 2),
        other => panic!("expected ambiguity, got {other:?}"),
    }
    let h = make_image(
        &s,
        &[&[("h", b"h")]],
        &["docker.io/library/app:latest"],
        "2024-01-01T00:00:00Z",
    );
    assert_eq!(s.lookup_image("app").unwrap().id, h.id);
    let l = make_image(&s, &[&[("l", b"l")]], &["app"], "2024-01-01T00:00:00Z");
    assert_eq!(s.lookup_image("app").unwrap().id, l.id);
    let _ = (q, r);
}

#[test]
fn commit_refuses_bad_input() {
    let d = tempfile::tempdir().unwrap();
    let s = store_in(d.path());
    let img = make_image(&s, &[&[("a", b"1")]], &[], "2024-01-01T00:00:00Z");
    let manifest = s.read_blob(&img.digest).unwrap();
    let config = s.read_blob(&img.id).unwrap();
    // A config that does not match the manifest's digest.
    let mut other = config.clone();
    other.push(b' ');
    assert!(matches!(
        s.commit_image(&manifest, &other, &[]),
        Err(Error::DigestMismatch { .. })
    ));
    // A layer that is not in the store.
    let mut v: serde_json::Value = serde_json::from_slice(&config).unwrap();
    v["rootfs"]["diff_ids"][0] = json!(Digest::of(b"nope").to_string());
    let cfg2 = serde_json::to_vec(&v).unwrap();
    let mut m: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
    m["config"]["digest"] = json!(Digest::of(&cfg2).to_string());
    m["config"]["size"] = json!(cfg2.len());
    let m2 = serde_json::to_vec(&m).unwrap();
    assert!(matches!(
        s.commit_image(&m2, &cfg2, &[]),
        Err(Error::LayerNotFound(_))
    ));
    // Not a manifest.
    assert!(s.commit_image(b"{}", &config, &[]).is_err());
    assert!(matches!(
        s.commit_image(&manifest, &config, &["Bad Name".into()]),
        Err(Error::Reference(_))
    ));
}

#[test]
fn tag_untag_and_moving_names() {
    let d = tempfile::tempdir().unwrap();
    let s = store_in(d.path());
    let a = make_image(&s, &[&[("a", b"1")]], &["one"], "2024-01-01T00:00:00Z");
    let b = make_image(&s, &[&[("b", b"2")]], &["two"], "2024-01-01T00:00:00Z");
    let a2 = s.tag_image("one", "extra:v2").unwrap();
    assert_eq!(a2.names, vec!["localhost/one:latest", "localhost/extra:v2"]);
    assert_eq!(s.lookup_image("extra:v2").unwrap().id, a.id);
    // Tagging a name held by another image moves it.
    s.tag_image(&b.id.to_string(), "extra:v2").unwrap();
    assert_eq!(s.lookup_image("extra:v2").unwrap().id, b.id);
    assert_eq!(
        s.lookup_image("one").unwrap().names,
        vec!["localhost/one:latest"]
    );
    // Re-committing the same image merges names.
    let again = make_image(&s, &[&[("a", b"1")]], &["three"], "2024-01-01T00:00:00Z");
    assert_eq!(again.id, a.id);
    assert_eq!(
        again.names,
        vec!["localhost/one:latest", "localhost/three:latest"]
    );
    let after = s.untag_image("one").unwrap();
    assert_eq!(after.names, vec!["localhost/three:latest"]);
    assert!(matches!(
        s.lookup_image("one"),
        Err(Error::ImageNotFound(_))
    ));
    assert!(matches!(s.untag_image("one"), Err(Error::ImageNotFound(_))));
    assert_eq!(s.lookup_image("three").unwrap().id, a.id);
}

#[test]
fn remove_image_collects_unshared_layers_and_respects_containers() {
    let d = tempfile::tempdir().unwrap();
    let s = store_in(d.path());
    let shared: &[(&str, &[u8])] = &[("base", b"shared")];
    let a = make_image(
        &s,
        &[shared, &[("a", b"only a")]],
        &["a"],
        "2024-01-01T00:00:00Z",
    );
    let b = make_image(
        &s,
        &[shared, &[("b", b"only b")]],
        &["b"],
        "2024-01-01T00:00:00Z",
    );
    let base = a.layers[0].diff_id.clone();
    assert_eq!(base, b.layers[0].diff_id);

    let cd = s.create_container_dir("c1", &a.id).unwrap();
    // only what the driver uses: overlay its upper and work directories, copy its rootfs
    assert!(!cd.upper.exists() && !cd.work.exists() && !cd.rootfs.exists());
    s.prepare_rootfs(crate::Driver::Overlay, &cd).unwrap();
    assert!(cd.upper.is_dir() && cd.work.is_dir() && !cd.rootfs.exists());
    assert_eq!(
        cd.lower_dirs,
        vec![s.layer_path(&a.layers[1].diff_id), s.layer_path(&base)]
    );
    assert_eq!(s.containers_using(&a.id), vec!["c1"]);
    assert!(matches!(
        s.create_container_dir("c1", &a.id),
        Err(Error::ContainerExists(_))
    ));
    match s.remove_image(&a.id, false) {
        Err(Error::ImageInUse { containers, .. }) => assert_eq!(containers, vec!["c1"]),
        other => panic!("expected in use, got {other:?}"),
    }
    s.remove_container_dir("c1").unwrap();
    assert!(s.containers_using(&a.id).is_empty());
    s.remove_container_dir("c1").unwrap();

    s.remove_image(&a.id, false).unwrap();
    assert!(matches!(s.lookup_image("a"), Err(Error::ImageNotFound(_))));
    assert!(s.has_layer(&base), "shared layer kept");
    assert!(!s.has_layer(&a.layers[1].diff_id), "unshared layer removed");
    assert!(!s.has_blob(&a.layers[1].blob));
    assert!(!s.has_blob(&a.id) && !s.has_blob(&a.digest));
    assert!(s.has_blob(&b.layers[0].blob));
    assert_eq!(s.lookup_image("b").unwrap().id, b.id);

    // Forced removal while a container uses it.
    s.create_container_dir("c2", &b.id).unwrap();
    s.remove_image(&b.id, true).unwrap();
    assert!(!s.has_layer(&base));
    assert!(s.images().unwrap().is_empty());
    assert!(list_image_names_fast(s.root()).is_empty());
    assert!(matches!(
        s.remove_image(&b.id, false),
        Err(Error::ImageNotFound(_))
    ));
    assert!(fs::read_dir(s.tmp_root()).unwrap().next().is_none());
}

#[test]
fn history_maps_layers() {
    let d = tempfile::tempdir().unwrap();
    let s = store_in(d.path());
    let a = make_image(&s, &[&[("a", b"1")]], &["h"], "2024-01-01T00:00:00Z");
    let h = s.history(&a).unwrap();
    assert_eq!(h.len(), 2);
    assert_eq!(h[0].layer.as_ref(), Some(&a.layers[0].diff_id));
    assert!(h[0].size > 0);
    assert_eq!(h[0].comment.as_deref(), Some("first"));
    assert!(h[1].empty_layer && h[1].layer.is_none() && h[1].size == 0);
    let cfg = s.image_config(&a).unwrap();
    assert_eq!(
        cfg.config().as_ref().unwrap().cmd().as_ref().unwrap(),
        &vec!["/bin/sh".to_string()]
    );
}

#[test]
fn concurrent_commits_and_removals_stay_consistent() {
    let d = tempfile::tempdir().unwrap();
    let shared: &[(&str, &[u8])] = &[("base", b"shared")];
    std::thread::scope(|sc| {
        for t in 0..4 {
            let root = d.path();
            sc.spawn(move || {
                // One handle per thread, as separate rbox processes have.
                let s = store_in(root);
                for i in 0..5 {
                    let own = format!("own-{t}-{i}");
                    // The shared layer is pinned between its unpack and the commit, so a
                    // concurrent removal never collects it from under us.
                    let img = make_image(
                        &s,
                        &[shared, &[(own.as_str(), b"x")]],
                        &[own.as_str()],
                        "2024-01-01T00:00:00Z",
                    );
                    if i % 2 == 0 {
                        s.remove_image(&img.id, false).unwrap();
                    }
                }
            });
        }
    });
    let s = store_in(d.path());
    let imgs = s.images().unwrap();
    assert_eq!(imgs.len(), 8);
    for img in &imgs {
        for l in &img.layers {
            assert!(s.has_layer(&l.diff_id));
        }
    }
}

#[test]
fn an_uncommitted_layer_survives_a_concurrent_removal() {
    let d = tempfile::tempdir().unwrap();
    let remover = store_in(d.path());
    let old = make_image(
        &remover,
        &[&[("base", b"shared")]],
        &["old"],
        "2024-01-01T00:00:00Z",
    );
    // Another process pulls the same layer for a new image but has not committed yet.
    let puller = store_in(d.path());
    let tar = TarBuilder::new().file("base", b"shared").finish();
    let gz = gzip(&tar);
    puller
        .pull_layer(&gz[..], &Digest::of(&gz), None, Some(&Digest::of(&tar)))
        .unwrap();
    remover.remove_image(&old.id, false).unwrap();
    assert!(
        remover.has_layer(&old.layers[0].diff_id),
        "pinned layer kept"
    );
    // Once the puller is gone, nothing references the layer; the next removal collects it.
    let again = make_image(
        &remover,
        &[&[("base", b"shared")]],
        &["again"],
        "2024-01-01T00:00:00Z",
    );
    drop(puller);
    remover.remove_image(&again.id, false).unwrap();
    assert!(!remover.has_layer(&old.layers[0].diff_id));
}

#[test]
fn the_name_a_query_meant() {
    let names: Vec<String> = [
        "localhost/bb:latest",
        "localhost/other:latest",
        "docker.io/library/alpine:3",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(
        meant_name("other", &names).as_deref(),
        Some("localhost/other:latest")
    );
    assert_eq!(
        meant_name("localhost/other", &names).as_deref(),
        Some("localhost/other:latest")
    );
    assert_eq!(
        meant_name("bb:latest", &names).as_deref(),
        Some("localhost/bb:latest")
    );
    assert_eq!(
        meant_name("alpine:3", &names).as_deref(),
        Some("docker.io/library/alpine:3")
    );
    assert_eq!(
        meant_name("library/alpine:3", &names).as_deref(),
        Some("docker.io/library/alpine:3")
    );
    // ids and digests name no name: the caller shows the first
    assert_eq!(meant_name("0123456789ab", &names), None);
    assert_eq!(
        meant_name(&format!("bb@sha256:{}", "a".repeat(64)), &names),
        None
    );
    assert_eq!(meant_name("alpine", &names), None);
}

#[test]
fn additional_read_only_stores_are_searched_and_never_changed() {
    let shared_dir = tempfile::tempdir().unwrap();
    let shared_root = shared_dir.path().join("shared");
    let maker = Store::open(&shared_root, crate::IdMap::full()).unwrap();
    let rec = make_image(
        &maker,
        &[&[("etc/shared", b"s")]],
        &["localhost/shared:1"],
        "2024-01-01T00:00:00Z",
    );
    drop(maker);
    let listing = |root: &std::path::Path| {
        let mut v: Vec<String> = walkdir(root);
        v.sort();
        v
    };
    let before = listing(&shared_root);

    let mine = tempfile::tempdir().unwrap();
    let mut s = Store::open(&mine.path().join("own"), crate::IdMap::full()).unwrap();
    s.add_read_only_store(Store::open_read_only(&shared_root).unwrap());
    let own = make_image(
        &s,
        &[&[("etc/own", b"o")]],
        &["localhost/own:1"],
        "2025-01-01T00:00:00Z",
    );
    // lookups fall through, by name, short name and id, marked read-only
    for q in [
        "localhost/shared:1",
        "shared:1",
        &rec.id.to_string()[..],
        &rec.id.hex()[..8],
    ] {
        let found = s.lookup_image(q).unwrap();
        assert_eq!(found.id, rec.id, "{q}");
        assert_eq!(
            found.read_only_store.as_deref(),
            Some(shared_root.as_path())
        );
    }
    assert_eq!(s.lookup_image("own:1").unwrap().read_only_store, None);
    // listings hold both; the layer is used in place; config blobs are read there
    let all = s.images().unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[1].id, rec.id);
    assert!(all[1].read_only_store.is_some() && all[0].read_only_store.is_none());
    let diff = &rec.layers[0].diff_id;
    assert!(s.layer_path(diff).starts_with(&shared_root));
    assert!(s.has_layer_anywhere(diff) && !s.has_layer(diff));
    s.image_config(&rec).unwrap();
    // a container of it: its directory in the own store only
    s.create_container_dir("c1", &rec.id).unwrap();
    // changes are refused
    for e in [
        s.remove_image(&rec.id, true).unwrap_err(),
        s.tag_image("shared:1", "x").unwrap_err(),
        s.untag_image("localhost/shared:1").unwrap_err(),
    ] {
        assert!(matches!(e, Error::ReadOnlyImage { .. }), "{e}");
    }
    s.remove_container_dir("c1").unwrap();
    s.remove_image(&own.id, false).unwrap();
    assert_eq!(listing(&shared_root), before);
    // not a store: refused on open
    assert!(matches!(
        Store::open_read_only(mine.path()),
        Err(Error::NotAStore(_))
    ));
}

/// Every path below `root` with its mtime, relative.
fn walkdir(root: &std::path::Path) -> Vec<String> {
    use std::os::unix::fs::MetadataExt;
    let mut out = Vec::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in fs::read_dir(&d).unwrap().flatten() {
            let m = e.metadata().unwrap();
            out.push(format!(
                "{} {} {}",
                e.path().strip_prefix(root).unwrap().display(),
                m.mtime(),
                m.mtime_nsec()
            ));
            if m.is_dir() {
                todo.push(e.path());
            }
        }
    }
    out
}
