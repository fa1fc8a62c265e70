//! The registry client against a real distribution server (Debian's docker-registry on
//! 127.0.0.1): push with chunked uploads and cross-repository mounts, pull back by tag and by
//! digest, skopeo reading what we pushed, Basic auth with login/logout, a tampered blob,
//! index platform choice, short names and mirrors from registries.conf, pull policies.

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

use common::{import, prerequisites, store, Registry};
use rbox_registry::client::{Client, ReqBody, UploadStart};
use rbox_registry::progress::Skip;
use rbox_registry::{
    Credentials, Digest, Error, Platform, Progress, PullOptions, PullPolicy, PushOptions,
    TransportOptions,
};

#[derive(Default)]
struct Count {
    started: AtomicUsize,
    done: AtomicUsize,
    exists: AtomicUsize,
    mounted: AtomicUsize,
    bytes: AtomicU64,
    notes: Mutex<Vec<String>>,
}

impl Progress for Count {
    fn note(&self, m: &str) {
        self.notes.lock().unwrap().push(m.to_string());
    }
    fn blob_start(&self, _: &Digest, _: u64) {
        self.started.fetch_add(1, Ordering::SeqCst);
    }
    fn blob_bytes(&self, _: &Digest, n: u64) {
        self.bytes.fetch_add(n, Ordering::SeqCst);
    }
    fn blob_done(&self, _: &Digest) {
        self.done.fetch_add(1, Ordering::SeqCst);
    }
    fn blob_skipped(&self, _: &Digest, why: &Skip) {
        match why {
            Skip::AlreadyExists => self.exists.fetch_add(1, Ordering::SeqCst),
            Skip::Mounted { .. } => self.mounted.fetch_add(1, Ordering::SeqCst),
        };
    }
}

fn insecure() -> TransportOptions {
    TransportOptions {
        tls_verify: Some(false),
        // Keep the machine's registries.conf out of these tests.
        registries_conf: Some("/dev/null".into()),
        ..Default::default()
    }
}

fn pull_opts(t: TransportOptions) -> PullOptions {
    PullOptions {
        transport: t,
        policy: PullPolicy::Always,
        ..Default::default()
    }
}

fn push_opts(t: TransportOptions, chunk: u64) -> PushOptions {
    PushOptions {
        transport: t,
        chunk_size: chunk,
        ..Default::default()
    }
}

#[test]
fn push_chunked_pull_back_and_mount() {
    if !prerequisites() {
        return;
    }
    let reg = Registry::start(None);
    let d = tempfile::tempdir().unwrap();
    let src = store(&d.path().join("src"));
    let img = import(&src, "src:1", "one", 300 << 10);
    let dest = reg.image("t/app:1");

    // 64 KiB chunks: the 300 KiB layer goes up in several PATCHes.
    let c = Count::default();
    let rep = rbox_registry::push(
        &src,
        "src:1",
        Some(&dest),
        &push_opts(insecure(), 64 << 10),
        &c,
    )
    .unwrap();
    assert_eq!(rep.destination, dest);
    assert_eq!(
        rep.digest, img.digest,
        "the manifest is pushed byte for byte"
    );
    assert_eq!(c.done.load(Ordering::SeqCst), 2, "layer and config");
    assert!(c.bytes.load(Ordering::SeqCst) >= 300 << 10);

    if common::have("skopeo") {
        let out = std::process::Command::new("skopeo")
            .args(["inspect", "--tls-verify=false", &format!("docker://{dest}")])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["Digest"], img.digest.to_string());
    }

    let dst = store(&d.path().join("dst"));
    let c = Count::default();
    let rec = rbox_registry::pull(&dst, &dest, &pull_opts(insecure()), &c).unwrap();
    assert_eq!(rec.id, img.id);
    assert_eq!(rec.digest, img.digest);
    assert_eq!(rec.names, vec![dest.clone()]);
    assert!(dst.has_layer(&rec.layers[0].diff_id));
    assert!(dst.has_blob(&rec.layers[0].blob));
    assert_eq!(c.done.load(Ordering::SeqCst), 1);

    // Again: nothing is downloaded.
    let c = Count::default();
    rbox_registry::pull(&dst, &dest, &pull_opts(insecure()), &c).unwrap();
    assert_eq!(c.started.load(Ordering::SeqCst), 0);
    assert_eq!(c.exists.load(Ordering::SeqCst), 1);

    // By digest: the image is there under a name of that repository, so no name is added
    // (as Podman: no stray `<none>` row, and `rmi ID` still works)
    let by_digest = format!("{}@{}", reg.image("t/app"), img.digest);
    let rec =
        rbox_registry::pull(&dst, &by_digest, &pull_opts(insecure()), &Count::default()).unwrap();
    assert_eq!(rec.id, img.id);
    assert_eq!(rec.names, vec![dest.clone()]);

    // Pushing the pulled image to another repository mounts its blobs from t/app.
    let other = reg.image("t/other:2");
    let c = Count::default();
    rbox_registry::push(
        &dst,
        &dest,
        Some(&other),
        &push_opts(insecure(), 1 << 20),
        &c,
    )
    .unwrap();
    assert_eq!(c.mounted.load(Ordering::SeqCst), 2);
    assert_eq!(c.started.load(Ordering::SeqCst), 0);
    // And once more: everything is there already.
    let c = Count::default();
    rbox_registry::push(
        &dst,
        &dest,
        Some(&other),
        &push_opts(insecure(), 1 << 20),
        &c,
    )
    .unwrap();
    assert_eq!(c.exists.load(Ordering::SeqCst), 2);

    // The manifest as served.
    let m = rbox_registry::inspect_remote(&other, &insecure()).unwrap();
    assert_eq!(m.digest, img.digest);
    assert_eq!(m.bytes, src.image_manifest(&img).unwrap());

    // Unknown tags and plain HTTP without --tls-verify=false are clean errors.
    let e = rbox_registry::pull(
        &dst,
        &reg.image("t/app:nope"),
        &pull_opts(insecure()),
        &Count::default(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("manifest unknown"), "{e}");
    let mut strict = insecure();
    strict.tls_verify = None;
    let e = rbox_registry::pull(&dst, &dest, &pull_opts(strict), &Count::default()).unwrap_err();
    assert!(e.to_string().contains("--tls-verify=false"), "{e}");
}

#[test]
fn basic_auth_login_logout() {
    if !prerequisites() || !common::require("htpasswd", common::have("htpasswd")) {
        return;
    }
    let reg = Registry::start(Some(("alice", "wonder:land")));
    let d = tempfile::tempdir().unwrap();
    let src = store(&d.path().join("src"));
    import(&src, "a:1", "auth", 4096);
    let dest = reg.image("priv/a:1");
    let authfile = d.path().join("auth/auth.json");
    let t = TransportOptions {
        authfile: Some(authfile.clone()),
        ..insecure()
    };

    let e = rbox_registry::push(
        &src,
        "a:1",
        Some(&dest),
        &push_opts(t.clone(), 1 << 20),
        &Count::default(),
    )
    .unwrap_err();
    assert!(matches!(e, Error::Unauthorized { .. }), "{e}");

    let e = rbox_registry::login(&reg.addr, &Credentials::new("alice", "wrong"), &t).unwrap_err();
    assert!(matches!(e, Error::Unauthorized { .. }), "{e}");
    assert!(!authfile.exists(), "nothing stored for bad credentials");

    let written =
        rbox_registry::login(&reg.addr, &Credentials::new("alice", "wonder:land"), &t).unwrap();
    assert_eq!(written, authfile);
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&authfile).unwrap()).unwrap();
    assert!(v["auths"][&reg.addr]["auth"].is_string(), "{v}");

    rbox_registry::push(
        &src,
        "a:1",
        Some(&dest),
        &push_opts(t.clone(), 1 << 20),
        &Count::default(),
    )
    .unwrap();
    let dst = store(&d.path().join("dst"));
    rbox_registry::pull(&dst, &dest, &pull_opts(t.clone()), &Count::default()).unwrap();

    // --creds style credentials override the file.
    let bad = TransportOptions {
        credentials: Some(Credentials::new("alice", "nope")),
        ..t.clone()
    };
    assert!(rbox_registry::pull(&dst, &dest, &pull_opts(bad), &Count::default()).is_err());

    rbox_registry::logout(Some(&reg.addr), false, &t).unwrap();
    let e = rbox_registry::pull(&dst, &dest, &pull_opts(t.clone()), &Count::default()).unwrap_err();
    assert!(e.to_string().contains("authentication required"), "{e}");
    assert!(
        rbox_registry::logout(Some(&reg.addr), false, &t).is_err(),
        "not logged in any more"
    );
}

#[test]
fn tampered_blob_is_refused_and_nothing_kept() {
    if !prerequisites() {
        return;
    }
    let reg = Registry::start(None);
    let d = tempfile::tempdir().unwrap();
    let src = store(&d.path().join("src"));
    import(&src, "x:1", "tamper", 64 << 10);
    let dest = reg.image("t/x:1");
    rbox_registry::push(
        &src,
        "x:1",
        Some(&dest),
        &push_opts(insecure(), 1 << 20),
        &Count::default(),
    )
    .unwrap();
    let victim = reg.blob_files().into_iter().next().unwrap();
    let hex = victim
        .parent()
        .unwrap()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let mut data = std::fs::read(&victim).unwrap();
    let mid = data.len() / 2;
    data[mid] ^= 0xff;
    std::fs::write(&victim, &data).unwrap();

    let dst = store(&d.path().join("dst"));
    let e =
        rbox_registry::pull(&dst, &dest, &pull_opts(insecure()), &Count::default()).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains(&hex), "the error names the blob: {msg}");
    assert!(
        msg.contains("expected") && msg.matches("sha256:").count() >= 2,
        "both digests: {msg}"
    );
    assert!(dst.images().unwrap().is_empty());
    assert!(!dst.has_blob(&Digest::parse(&format!("sha256:{hex}")).unwrap()));

    data[mid] ^= 0xff;
    std::fs::write(&victim, &data).unwrap();
    rbox_registry::pull(&dst, &dest, &pull_opts(insecure()), &Count::default()).unwrap();

    // A manifest changed in the registry's storage no longer matches its digest: refused,
    // by tag (against Docker-Content-Digest) and by digest.
    let img = dst.lookup_image(&dest).unwrap();
    let mpath = reg
        .storage
        .join("docker/registry/v2/blobs/sha256")
        .join(&img.digest.hex()[..2])
        .join(img.digest.hex())
        .join("data");
    let orig = std::fs::read(&mpath).unwrap();
    let mut bad = orig.clone();
    let at = bad.len() - 2;
    bad.insert(at, b' ');
    std::fs::write(&mpath, &bad).unwrap();
    let other = store(&d.path().join("other"));
    for r in [dest.clone(), format!("{}@{}", reg.image("t/x"), img.digest)] {
        let e =
            rbox_registry::pull(&other, &r, &pull_opts(insecure()), &Count::default()).unwrap_err();
        assert!(
            matches!(e, Error::DigestMismatch { .. })
                && e.to_string().contains(&img.digest.to_string()),
            "{r}: {e}"
        );
    }
    assert!(other.images().unwrap().is_empty());
    std::fs::write(&mpath, &orig).unwrap();
}

/// Upload `data` as a blob of `client`'s repository.
fn upload(client: &Client, data: &[u8]) -> Digest {
    let d = Digest::of(data);
    let UploadStart::Session(loc) = client.start_upload(None).unwrap() else {
        panic!("no session")
    };
    client
        .finish_upload(&loc, &d, ReqBody::Bytes(data))
        .unwrap();
    d
}

#[test]
fn index_picks_the_platform() {
    if !prerequisites() {
        return;
    }
    let reg = Registry::start(None);
    let d = tempfile::tempdir().unwrap();
    let src = store(&d.path().join("src"));
    let host = Platform::host();
    let img = import(&src, "m:1", "multi", 8192);
    rbox_registry::push(
        &src,
        "m:1",
        Some(&reg.image("t/multi:host")),
        &push_opts(insecure(), 1 << 20),
        &Count::default(),
    )
    .unwrap();

    // A second image for another architecture: same layer, another config.
    let other_arch = if host.architecture == "arm64" {
        "amd64"
    } else {
        "arm64"
    };
    let manifest = src.image_manifest(&img).unwrap();
    let mut config: serde_json::Value =
        serde_json::from_slice(&src.read_blob(&img.id).unwrap()).unwrap();
    config["architecture"] = other_arch.into();
    let config = serde_json::to_vec(&config).unwrap();
    let client = Client::connect(&reg.addr, "t/multi", true, true, &insecure()).unwrap();
    let config_digest = upload(&client, &config);
    let mut m2: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
    m2["config"]["digest"] = config_digest.to_string().into();
    m2["config"]["size"] = config.len().into();
    let m2 = serde_json::to_vec(&m2).unwrap();
    let m2_digest = client
        .put_manifest(&Digest::of(&m2).to_string(), &img.manifest_media_type, &m2)
        .unwrap();
    let entry = |digest: &Digest, size: usize, arch: &str| {
        serde_json::json!({"mediaType": img.manifest_media_type, "digest": digest.to_string(),
            "size": size, "platform": {"os": "linux", "architecture": arch}})
    };
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": img.manifest_media_type, "digest": m2_digest.to_string(), "size": 1,
             "platform": {"os": "unknown", "architecture": "unknown"}},
            entry(&m2_digest, m2.len(), other_arch),
            entry(&img.digest, manifest.len(), &host.architecture),
        ],
    }))
    .unwrap();
    client
        .put_manifest("1", "application/vnd.oci.image.index.v1+json", &index)
        .unwrap();

    let name = reg.image("t/multi:1");
    let a = store(&d.path().join("a"));
    let rec = rbox_registry::pull(&a, &name, &pull_opts(insecure()), &Count::default()).unwrap();
    assert_eq!(rec.id, img.id, "the host's platform");
    assert_eq!(rec.digest, img.digest);

    let b = store(&d.path().join("b"));
    let mut o = pull_opts(insecure());
    o.platform = Some(Platform::parse(&format!("linux/{other_arch}")).unwrap());
    let rec = rbox_registry::pull(&b, &name, &o, &Count::default()).unwrap();
    assert_eq!(rec.id, Digest::of(&config));
    assert_eq!(
        b.image_config(&rec).unwrap().architecture().to_string(),
        other_arch
    );

    o.platform = Some(Platform::parse("linux/s390x").unwrap());
    let e = rbox_registry::pull(&b, &name, &o, &Count::default()).unwrap_err();
    assert!(matches!(e, Error::NoMatchingPlatform { .. }), "{e}");
    assert!(e.to_string().contains(other_arch), "{e}");

    // manifest inspect shows the index itself.
    let m = rbox_registry::inspect_remote(&name, &insecure()).unwrap();
    assert_eq!(m.bytes, index);
}

fn write_conf(dir: &Path, text: &str) -> TransportOptions {
    let p = dir.join("registries.conf");
    std::fs::write(&p, text).unwrap();
    TransportOptions {
        registries_conf: Some(p),
        ..Default::default()
    }
}

#[test]
fn short_names_mirrors_and_blocks() {
    if !prerequisites() {
        return;
    }
    let reg = Registry::start(None);
    let d = tempfile::tempdir().unwrap();
    let src = store(&d.path().join("src"));
    import(&src, "s:1", "short", 4096);
    rbox_registry::push(
        &src,
        "s:1",
        Some(&reg.image("team/short:1")),
        &push_opts(insecure(), 1 << 20),
        &Count::default(),
    )
    .unwrap();

    let t = write_conf(
        d.path(),
        &format!(
            "unqualified-search-registries = [\"nothing-here.invalid\", \"{a}\"]\n\
             [[registry]]\nlocation = \"{a}\"\ninsecure = true\n\
             [[registry]]\nlocation = \"nothing-here.invalid\"\ninsecure = true\n\
             [[registry]]\nprefix = \"mirrored.invalid\"\nlocation = \"mirrored.invalid\"\n\
             [[registry.mirror]]\nlocation = \"{a}\"\ninsecure = true\n",
            a = reg.addr
        ),
    );
    let dst = store(&d.path().join("dst"));
    let rec = rbox_registry::pull(
        &dst,
        "team/short:1",
        &pull_opts(t.clone()),
        &Count::default(),
    )
    .unwrap();
    assert_eq!(rec.names, vec![reg.image("team/short:1")]);

    let rec = rbox_registry::pull(
        &dst,
        "mirrored.invalid/team/short:1",
        &pull_opts(t.clone()),
        &Count::default(),
    )
    .unwrap();
    assert!(
        rec.names
            .contains(&"mirrored.invalid/team/short:1".to_string()),
        "{:?}",
        rec.names
    );

    let t = write_conf(
        d.path(),
        &format!(
            "[[registry]]\nlocation = \"{}\"\nblocked = true\n",
            reg.addr
        ),
    );
    let e = rbox_registry::pull(
        &dst,
        &reg.image("team/short:1"),
        &pull_opts(t),
        &Count::default(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("blocked"), "{e}");
}

#[test]
fn pull_policies() {
    if !prerequisites() {
        return;
    }
    let reg = Registry::start(None);
    let d = tempfile::tempdir().unwrap();
    let src = store(&d.path().join("src"));
    import(&src, "p:1", "policy", 4096);
    let name = reg.image("t/p:1");
    rbox_registry::push(
        &src,
        "p:1",
        Some(&name),
        &push_opts(insecure(), 1 << 20),
        &Count::default(),
    )
    .unwrap();
    let dst = store(&d.path().join("dst"));
    let with = |policy| PullOptions {
        policy,
        ..pull_opts(insecure())
    };
    let e =
        rbox_registry::pull(&dst, &name, &with(PullPolicy::Never), &Count::default()).unwrap_err();
    assert!(matches!(e, Error::PullNever(_)), "{e}");
    let rec =
        rbox_registry::pull(&dst, &name, &with(PullPolicy::Missing), &Count::default()).unwrap();
    assert_eq!(
        rbox_registry::pull(&dst, &name, &with(PullPolicy::Never), &Count::default()).unwrap(),
        rec
    );
    // Local and unchanged: no transfer.
    let c = Count::default();
    rbox_registry::pull(&dst, &name, &with(PullPolicy::Newer), &c).unwrap();
    assert_eq!(
        c.started.load(Ordering::SeqCst) + c.exists.load(Ordering::SeqCst),
        0
    );
    // A registry that cannot be reached keeps the local image for missing and newer.
    drop(reg);
    rbox_registry::pull(&dst, &name, &with(PullPolicy::Missing), &Count::default()).unwrap();
    let c = Count::default();
    rbox_registry::pull(&dst, &name, &with(PullPolicy::Newer), &c).unwrap();
    assert_eq!(c.notes.lock().unwrap().len(), 1);
    assert!(
        rbox_registry::pull(&dst, &name, &with(PullPolicy::Always), &Count::default()).is_err()
    );
}
