//! Images the tests make offline (STYLE habit 10): a busybox rootfs from the host's
//! busybox-static, the static C helper (`tests/fixtures/helper.c`) as its own image, a
//! multi-layer image with files owned by many ids plus whiteouts and an opaque directory, hostile
//! archives that `rbox load` must refuse, and a Debian root made by debootstrap when the mirror
//! answers.
//!
//! Each fixture is built once and cached under `target/tmp/rbox-fixtures/`, in a directory named
//! by a hash of its inputs; building goes to a temp dir that is renamed into place, so parallel
//! test processes (nextest runs one per test) never see half a fixture. Nothing here runs rbox.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

/// Bump when a generator below changes, so stale caches are not reused.
const GENERATION: &str = "fixtures-v1";

/// Where a buggy unpacker would write hostile entries: nothing may ever appear here.
pub const CANARY_PREFIX: &str = "/tmp/rbox-it-canary";

pub const BUSYBOX: &str = "/bin/busybox";
pub const HELPER_SRC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/helper.c");

/// Fixed mtime for every entry: archives are byte-for-byte reproducible.
const MTIME: u64 = 1_700_000_000;

pub const IMAGE_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

fn cache_root() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("rbox-fixtures")
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// The cached directory for `name` keyed by `inputs`, built by `build` when missing.
fn cached(name: &str, inputs: &[&[u8]], build: impl FnOnce(&Path)) -> PathBuf {
    let mut h = Sha256::new();
    h.update(GENERATION.as_bytes());
    for i in inputs {
        h.update((i.len() as u64).to_le_bytes());
        h.update(i);
    }
    let key = &hex::encode(h.finalize())[..16];
    let root = cache_root();
    let done = root.join(format!("{name}-{key}"));
    if done.exists() {
        return done;
    }
    std::fs::create_dir_all(&root).unwrap();
    // Test users read fixtures (the rbox binary runs as them): keep the cache world-readable.
    let _ = std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755));
    let tmp = root.join(format!(".tmp-{name}-{}", crate::util::unique()));
    std::fs::create_dir(&tmp).unwrap();
    build(&tmp);
    let status = Command::new("chmod")
        .arg("-R")
        .arg("a+rX")
        .arg(&tmp)
        .status()
        .unwrap();
    assert!(status.success());
    if std::fs::rename(&tmp, &done).is_err() {
        // Another test process won the race; its copy is identical.
        let _ = std::fs::remove_dir_all(&tmp);
        assert!(
            done.exists(),
            "fixture `{}` missing after rename",
            done.display()
        );
    }
    done
}

// ---------------------------------------------------------------------------------------------
// Layer tars

/// Builds one uncompressed layer tar in memory.
pub struct Layer {
    b: tar::Builder<Vec<u8>>,
}

impl Default for Layer {
    fn default() -> Self {
        Self::new()
    }
}

impl Layer {
    pub fn new() -> Layer {
        let mut b = tar::Builder::new(Vec::new());
        b.mode(tar::HeaderMode::Deterministic);
        Layer { b }
    }

    fn header(kind: tar::EntryType, mode: u32, uid: u64, gid: u64, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(uid);
        h.set_gid(gid);
        h.set_mtime(MTIME);
        h.set_size(size);
        h
    }

    pub fn dir(&mut self, path: &str, mode: u32, uid: u64, gid: u64) -> &mut Self {
        let mut h = Self::header(tar::EntryType::Directory, mode, uid, gid, 0);
        self.b.append_data(&mut h, path, std::io::empty()).unwrap();
        self
    }

    pub fn file(&mut self, path: &str, data: &[u8], mode: u32, uid: u64, gid: u64) -> &mut Self {
        let mut h = Self::header(tar::EntryType::Regular, mode, uid, gid, data.len() as u64);
        self.b.append_data(&mut h, path, data).unwrap();
        self
    }

    pub fn symlink(&mut self, path: &str, target: &str) -> &mut Self {
        let mut h = Self::header(tar::EntryType::Symlink, 0o777, 0, 0, 0);
        self.b.append_link(&mut h, path, target).unwrap();
        self
    }

    pub fn hardlink(&mut self, path: &str, target: &str) -> &mut Self {
        let mut h = Self::header(tar::EntryType::Link, 0o644, 0, 0, 0);
        self.b.append_link(&mut h, path, target).unwrap();
        self
    }

    /// An entry written byte for byte, bypassing the tar crate's path checks (which refuse
    /// `..` and absolute names): how hostile layers are made.
    pub fn raw(
        &mut self,
        kind: tar::EntryType,
        name: &str,
        link: &str,
        data: &[u8],
        mode: u32,
    ) -> &mut Self {
        let mut h = Self::header(kind, mode, 0, 0, data.len() as u64);
        assert!(
            name.len() < 100 && link.len() < 100,
            "raw names must fit the old header"
        );
        let old = h.as_old_mut();
        old.name[..name.len()].copy_from_slice(name.as_bytes());
        old.linkname[..link.len()].copy_from_slice(link.as_bytes());
        h.set_cksum();
        self.b.append(&h, data).unwrap();
        self
    }

    /// A device node entry.
    pub fn device(
        &mut self,
        name: &str,
        kind: tar::EntryType,
        major: u32,
        minor: u32,
    ) -> &mut Self {
        let mut h = Self::header(kind, 0o666, 0, 0, 0);
        h.set_device_major(major).unwrap();
        h.set_device_minor(minor).unwrap();
        self.b.append_data(&mut h, name, std::io::empty()).unwrap();
        self
    }

    pub fn finish(self) -> Vec<u8> {
        self.b.into_inner().unwrap()
    }
}

pub const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
tester:x:1000:1000:tester:/home/tester:/bin/sh\n\
nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n";
pub const GROUP: &str = "root:x:0:\ntester:x:1000:\nextra:x:2000:tester\nnogroup:x:65534:\n";

/// The busybox root filesystem as one layer: /bin/busybox, a symlink per applet,
/// /etc/passwd and /etc/group with `tester` (1000) and `nobody`, the usual directories.
pub fn busybox_layer() -> Vec<u8> {
    static LAYER: OnceLock<Vec<u8>> = OnceLock::new();
    LAYER
        .get_or_init(|| {
            let bin = std::fs::read(BUSYBOX).unwrap_or_else(|e| {
                panic!("read `{BUSYBOX}` (apt-get install busybox-static): {e}")
            });
            let list = Command::new(BUSYBOX).arg("--list-full").output().unwrap();
            assert!(list.status.success());
            let mut applets: Vec<String> = String::from_utf8(list.stdout)
                .unwrap()
                .lines()
                .map(str::to_string)
                .filter(|l| !l.is_empty() && l != "bin/busybox")
                .collect();
            applets.sort();
            let mut l = Layer::new();
            for d in [
                "bin", "sbin", "usr", "usr/bin", "usr/sbin", "etc", "dev", "proc", "sys", "run",
            ] {
                l.dir(d, 0o755, 0, 0);
            }
            l.dir("tmp", 0o1777, 0, 0);
            l.dir("root", 0o700, 0, 0);
            l.dir("home", 0o755, 0, 0);
            l.dir("home/tester", 0o755, 1000, 1000);
            l.file("bin/busybox", &bin, 0o755, 0, 0);
            for a in &applets {
                l.symlink(a, "/bin/busybox");
            }
            l.file("etc/passwd", PASSWD.as_bytes(), 0o644, 0, 0);
            l.file("etc/group", GROUP.as_bytes(), 0o644, 0, 0);
            l.file("etc/hostname", b"busybox\n", 0o644, 0, 0);
            l.finish()
        })
        .clone()
}

/// A flat rootfs tarball of busybox, for `rbox import` (and `podman import`).
pub fn busybox_rootfs_tar() -> PathBuf {
    let layer = busybox_layer();
    cached("busybox-rootfs", &[&layer], |dir| {
        std::fs::write(dir.join("busybox.tar"), &layer).unwrap();
    })
    .join("busybox.tar")
}

/// The static helper binary compiled from `tests/fixtures/helper.c`.
pub fn helper_bin() -> PathBuf {
    let src = std::fs::read(HELPER_SRC).unwrap();
    cached("helper-bin", &[&src], |dir| {
        let out = Command::new("cc")
            .args(["-static", "-O2", "-o"])
            .arg(dir.join("helper"))
            .arg(HELPER_SRC)
            .output()
            .expect("run cc (apt-get install gcc libc6-dev)");
        assert!(
            out.status.success(),
            "cc -static helper.c: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    })
    .join("helper")
}

fn helper_layer() -> Vec<u8> {
    let bin = std::fs::read(helper_bin()).unwrap();
    let mut l = Layer::new();
    l.file("helper", &bin, 0o755, 0, 0);
    l.dir("srv", 0o755, 0, 0);
    l.file("srv/in-workdir", b"workdir file\n", 0o644, 0, 0);
    l.file("etc/not-executable", b"#!/bin/sh\necho no\n", 0o644, 0, 0);
    l.finish()
}

// ---------------------------------------------------------------------------------------------
// Image archives

pub fn oci_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

fn compress(data: &[u8], c: Compression) -> Vec<u8> {
    match c {
        Compression::None => data.to_vec(),
        Compression::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        Compression::Zstd => {
            let mut child = Command::new("zstd")
                .args(["-q", "-c", "-3"])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .expect("run zstd (apt-get install zstd)");
            let mut stdin = child.stdin.take().unwrap();
            let input = data.to_vec();
            let w = std::thread::spawn(move || stdin.write_all(&input));
            let out = child.wait_with_output().unwrap();
            w.join().unwrap().unwrap();
            assert!(out.status.success());
            out.stdout
        }
    }
}

/// The image config document for `layers` with the given `config` section.
pub fn config_json(layers: &[Vec<u8>], config: &Value) -> Vec<u8> {
    let diff_ids: Vec<String> = layers
        .iter()
        .map(|l| format!("sha256:{}", sha256_hex(l)))
        .collect();
    let history: Vec<Value> = layers
        .iter()
        .enumerate()
        .map(|(i, _)| json!({"created": "2023-11-14T22:13:20Z", "created_by": format!("rbox tests: layer {i}")}))
        .collect();
    serde_json::to_vec(&json!({
        "architecture": oci_arch(),
        "os": "linux",
        "created": "2023-11-14T22:13:20Z",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": history,
    }))
    .unwrap()
}

fn tar_of(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut l = Layer::new();
    for (name, data) in files {
        l.file(name, data, 0o644, 0, 0);
    }
    l.finish()
}

/// A docker-archive (what `docker save` / `podman save` write) of one image.
pub fn docker_archive(name: &str, layers: &[Vec<u8>], config: &[u8]) -> Vec<u8> {
    let config_hex = sha256_hex(config);
    let mut files = vec![(format!("{config_hex}.json"), config.to_vec())];
    let mut layer_names = Vec::new();
    for l in layers {
        let n = format!("{}.tar", sha256_hex(l));
        layer_names.push(n.clone());
        files.push((n, l.clone()));
    }
    let manifest = json!([{
        "Config": format!("{config_hex}.json"),
        "RepoTags": [name],
        "Layers": layer_names,
    }]);
    files.push((
        "manifest.json".into(),
        serde_json::to_vec(&manifest).unwrap(),
    ));
    tar_of(&files)
}

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";

pub fn oci_layer_media_type(c: Compression) -> &'static str {
    match c {
        Compression::None => "application/vnd.oci.image.layer.v1.tar",
        Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
        Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
    }
}

/// The blobs of an OCI image: (manifest bytes, [(digest hex, bytes)] of config and layers).
/// `tamper` may edit the manifest JSON before it is serialized.
pub fn oci_blobs(
    layers: &[(Vec<u8>, Compression)],
    config: &[u8],
    tamper: impl FnOnce(&mut Value),
) -> (Vec<u8>, Vec<(String, Vec<u8>)>) {
    let mut blobs = vec![(sha256_hex(config), config.to_vec())];
    let mut descs = Vec::new();
    for (l, c) in layers {
        let blob = compress(l, *c);
        let hex = sha256_hex(&blob);
        descs.push(json!({
            "mediaType": oci_layer_media_type(*c),
            "digest": format!("sha256:{hex}"),
            "size": blob.len(),
        }));
        blobs.push((hex, blob));
    }
    let mut manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": format!("sha256:{}", sha256_hex(config)), "size": config.len()},
        "layers": descs,
    });
    tamper(&mut manifest);
    (serde_json::to_vec(&manifest).unwrap(), blobs)
}

/// An oci-archive (a tar of an OCI image layout) of one image named `name`.
pub fn oci_archive(
    name: &str,
    layers: &[(Vec<u8>, Compression)],
    config: &[u8],
    tamper: impl FnOnce(&mut Value),
) -> Vec<u8> {
    let (manifest, mut blobs) = oci_blobs(layers, config, tamper);
    let mhex = sha256_hex(&manifest);
    let index = json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": OCI_MANIFEST,
            "digest": format!("sha256:{mhex}"),
            "size": manifest.len(),
            "annotations": {"org.opencontainers.image.ref.name": name},
        }],
    });
    blobs.push((mhex, manifest));
    let mut l = Layer::new();
    l.file(
        "oci-layout",
        br#"{"imageLayoutVersion":"1.0.0"}"#,
        0o644,
        0,
        0,
    );
    l.file(
        "index.json",
        &serde_json::to_vec(&index).unwrap(),
        0o644,
        0,
        0,
    );
    l.dir("blobs", 0o755, 0, 0);
    l.dir("blobs/sha256", 0o755, 0, 0);
    let mut seen = std::collections::HashSet::new();
    for (hex, data) in blobs {
        if seen.insert(hex.clone()) {
            l.file(&format!("blobs/sha256/{hex}"), &data, 0o644, 0, 0);
        }
    }
    l.finish()
}

/// The helper image's config: Entrypoint `/helper`, Cmd `args from-cmd`, WorkingDir `/srv`,
/// and two variables the tests override.
pub fn helper_config_section() -> Value {
    json!({
        "Env": [format!("PATH={IMAGE_PATH}"), "FROM_IMAGE=yes", "OVERRIDE=image"],
        "Entrypoint": ["/helper"],
        "Cmd": ["args", "from-cmd"],
        "WorkingDir": "/srv",
    })
}

/// `localhost/helper:latest` as a docker-archive: busybox plus the helper.
pub fn helper_docker_archive() -> PathBuf {
    let layers = vec![busybox_layer(), helper_layer()];
    let config = config_json(&layers, &helper_config_section());
    cached("helper-docker", &[&layers[0], &layers[1], &config], |dir| {
        let a = docker_archive("localhost/helper:latest", &layers, &config);
        std::fs::write(dir.join("helper.docker.tar"), a).unwrap();
    })
    .join("helper.docker.tar")
}

/// `localhost/exposing:latest` as a docker-archive: busybox whose config exposes 80/tcp and
/// 53/udp (for `-P`).
pub fn exposing_docker_archive() -> PathBuf {
    let layers = vec![busybox_layer()];
    let section = json!({
        "Env": [format!("PATH={IMAGE_PATH}")],
        "ExposedPorts": {"80/tcp": {}, "53/udp": {}},
    });
    let config = config_json(&layers, &section);
    cached("exposing-docker", &[&layers[0], &config], |dir| {
        let a = docker_archive("localhost/exposing:latest", &layers, &config);
        std::fs::write(dir.join("exposing.docker.tar"), a).unwrap();
    })
    .join("exposing.docker.tar")
}

/// `localhost/helper-oci:latest` as an oci-archive with gzip layers.
pub fn helper_oci_archive() -> PathBuf {
    let layers = vec![busybox_layer(), helper_layer()];
    let config = config_json(&layers, &helper_config_section());
    cached("helper-oci", &[&layers[0], &layers[1], &config], |dir| {
        let l: Vec<_> = layers
            .iter()
            .map(|l| (l.clone(), Compression::Gzip))
            .collect();
        let a = oci_archive("localhost/helper-oci:latest", &l, &config, |_| {});
        std::fs::write(dir.join("helper.oci.tar"), a).unwrap();
    })
    .join("helper.oci.tar")
}

/// The ids the multi-id layer uses; 100000 is above any 65536-id range and must fold to 0.
pub const HIGH_ID: u64 = 100_000;

fn multiid_layers() -> Vec<Vec<u8>> {
    let mut a = Layer::new();
    a.dir("data", 0o755, 0, 0);
    a.file("data/root-file", b"root\n", 0o644, 0, 0);
    a.file("data/tester-file", b"tester\n", 0o640, 1000, 1000);
    a.file("data/nobody-file", b"nobody\n", 0o600, 65534, 65534);
    a.file("data/high-file", b"high\n", 0o644, HIGH_ID, HIGH_ID);
    a.file("data/setuid-file", b"suid\n", 0o4755, 0, 0);
    a.file("data/gone", b"removed by the next layer\n", 0o644, 0, 0);
    a.dir("data/opq", 0o755, 0, 0);
    a.file("data/opq/a", b"a\n", 0o644, 0, 0);
    a.file("data/opq/b", b"b\n", 0o644, 0, 0);
    a.dir("data/tester-dir", 0o750, 1000, 2000);
    a.hardlink("data/hardlink", "data/root-file");
    a.symlink("data/symlink", "root-file");
    let mut b = Layer::new();
    b.dir("data", 0o755, 0, 0);
    b.file("data/.wh.gone", b"", 0o644, 0, 0);
    b.dir("data/opq", 0o755, 0, 0);
    b.file("data/opq/.wh..wh..opq", b"", 0o644, 0, 0);
    b.file("data/opq/c", b"c\n", 0o644, 0, 0);
    b.file("data/new-file", b"new\n", 0o644, 1000, 1000);
    vec![busybox_layer(), a.finish(), b.finish()]
}

/// `localhost/multiid:latest` as an oci-archive: busybox (gzip), a layer of files owned by
/// 0, 1000, 65534 and 100000 (zstd), then whiteouts and an opaque dir (uncompressed).
pub fn multiid_oci_archive() -> PathBuf {
    let layers = multiid_layers();
    let config = config_json(
        &layers,
        &json!({"Env": [format!("PATH={IMAGE_PATH}")], "Cmd": ["sh"]}),
    );
    cached(
        "multiid-oci",
        &[&layers[0], &layers[1], &layers[2], &config],
        |dir| {
            let comps = [Compression::Gzip, Compression::Zstd, Compression::None];
            let l: Vec<_> = layers.iter().cloned().zip(comps).collect();
            let a = oci_archive("localhost/multiid:latest", &l, &config, |_| {});
            std::fs::write(dir.join("multiid.oci.tar"), a).unwrap();
        },
    )
    .join("multiid.oci.tar")
}

/// `localhost/multiid-docker:latest`: the same layers as a docker-archive.
pub fn multiid_docker_archive() -> PathBuf {
    let layers = multiid_layers();
    let config = config_json(
        &layers,
        &json!({"Env": [format!("PATH={IMAGE_PATH}")], "Cmd": ["sh"]}),
    );
    cached(
        "multiid-docker",
        &[&layers[0], &layers[1], &layers[2], &config],
        |dir| {
            let a = docker_archive("localhost/multiid-docker:latest", &layers, &config);
            std::fs::write(dir.join("multiid.docker.tar"), a).unwrap();
        },
    )
    .join("multiid.docker.tar")
}

// ---------------------------------------------------------------------------------------------
// Hostile archives

/// One kind of hostile archive. Each must be refused by `rbox load` with exit 125, writing
/// nothing outside the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hostile {
    /// `../../../.../tmp/rbox-it-canary-dotdot`
    DotDot,
    /// `/tmp/rbox-it-canary-absolute`
    Absolute,
    /// `escape -> /tmp/rbox-it-canary-dir`, then `escape/pwned`
    SymlinkAbsoluteEscape,
    /// `escape -> ../../../.../tmp/rbox-it-canary-dir`, then `escape/pwned`
    SymlinkRelativeEscape,
    /// a hard link to `/etc/passwd`
    HardlinkPasswd,
    /// a hard link to a world-writable canary file, then a regular file of the same name
    HardlinkWriteThrough,
    /// char device 1:1 (`/dev/mem`) and block device 8:0
    DeviceNode,
    /// docker-archive whose config lists a diff id the layer does not have
    BadDiffId,
    /// oci-archive whose manifest names a layer digest its blob does not have
    BadLayerDigest,
    /// oci-archive whose manifest names a config digest the config does not have
    BadConfigDigest,
}

impl Hostile {
    pub fn slug(self) -> &'static str {
        match self {
            Hostile::DotDot => "dotdot",
            Hostile::Absolute => "absolute",
            Hostile::SymlinkAbsoluteEscape => "symlink-abs",
            Hostile::SymlinkRelativeEscape => "symlink-rel",
            Hostile::HardlinkPasswd => "hardlink-passwd",
            Hostile::HardlinkWriteThrough => "hardlink-write",
            Hostile::DeviceNode => "device",
            Hostile::BadDiffId => "bad-diffid",
            Hostile::BadLayerDigest => "bad-layer-digest",
            Hostile::BadConfigDigest => "bad-config-digest",
        }
    }

    /// The path outside the store this archive aims at.
    pub fn canary(self) -> PathBuf {
        PathBuf::from(format!("{CANARY_PREFIX}-{}", self.slug()))
    }
}

const DOTS: &str = "../../../../../../../../../../../../../../../..";

fn hostile_layer(kind: Hostile) -> Vec<u8> {
    use tar::EntryType::{Link, Regular, Symlink};
    let canary = kind.canary();
    let canary = canary.to_str().unwrap();
    let rel = format!("{DOTS}{canary}");
    let mut l = Layer::new();
    l.dir("etc", 0o755, 0, 0);
    l.file("etc/innocent", b"first entry is fine\n", 0o644, 0, 0);
    match kind {
        Hostile::DotDot => {
            l.raw(Regular, &rel, "", b"pwned\n", 0o644);
        }
        Hostile::Absolute => {
            l.raw(Regular, canary, "", b"pwned\n", 0o644);
        }
        Hostile::SymlinkAbsoluteEscape => {
            l.raw(Symlink, "escape", canary, b"", 0o777);
            l.raw(Regular, "escape/pwned", "", b"pwned\n", 0o644);
        }
        Hostile::SymlinkRelativeEscape => {
            l.raw(Symlink, "escape", &rel, b"", 0o777);
            l.raw(Regular, "escape/pwned", "", b"pwned\n", 0o644);
        }
        Hostile::HardlinkPasswd => {
            l.raw(Link, "etc/passwd", "/etc/passwd", b"", 0o644);
            l.raw(
                Link,
                "etc/passwd2",
                &format!("{DOTS}/etc/passwd"),
                b"",
                0o644,
            );
        }
        Hostile::HardlinkWriteThrough => {
            l.raw(Link, "hl", canary, b"", 0o644);
            l.raw(Regular, "hl", "", b"pwned\n", 0o644);
        }
        Hostile::DeviceNode => {
            l.device("mem", tar::EntryType::Char, 1, 1);
            l.device("disk", tar::EntryType::Block, 8, 0);
        }
        Hostile::BadDiffId | Hostile::BadLayerDigest | Hostile::BadConfigDigest => {
            l.file("etc/ordinary", b"an ordinary layer\n", 0o644, 0, 0);
        }
    }
    l.finish()
}

/// The archive for one hostile kind.
pub fn hostile_archive(kind: Hostile) -> PathBuf {
    let layer = hostile_layer(kind);
    let name = format!("localhost/hostile-{}:latest", kind.slug());
    let section = json!({"Cmd": ["/bin/sh"]});
    cached(
        &format!("hostile-{}", kind.slug()),
        &[&layer, name.as_bytes()],
        |dir| {
            let layers = vec![layer.clone()];
            let archive = match kind {
                Hostile::BadDiffId => {
                    let bogus = vec![b"not the layer".to_vec()];
                    let config = config_json(&bogus, &section);
                    docker_archive(&name, &layers, &config)
                }
                Hostile::BadLayerDigest => {
                    let config = config_json(&layers, &section);
                    let l = vec![(layer.clone(), Compression::None)];
                    let wrong = format!("sha256:{}", sha256_hex(b"some other layer"));
                    let (manifest, mut blobs) = oci_blobs(&l, &config, |m| {
                        m["layers"][0]["digest"] = json!(wrong.clone());
                    });
                    // Store the real layer bytes under the claimed (wrong) name.
                    blobs[1].0 = wrong.trim_start_matches("sha256:").to_string();
                    oci_archive_from_parts(&name, manifest, blobs)
                }
                Hostile::BadConfigDigest => {
                    let config = config_json(&layers, &section);
                    let l = vec![(layer.clone(), Compression::None)];
                    let wrong = format!("sha256:{}", sha256_hex(b"some other config"));
                    let (manifest, mut blobs) = oci_blobs(&l, &config, |m| {
                        m["config"]["digest"] = json!(wrong.clone());
                    });
                    blobs[0].0 = wrong.trim_start_matches("sha256:").to_string();
                    oci_archive_from_parts(&name, manifest, blobs)
                }
                _ => {
                    let config = config_json(&layers, &section);
                    docker_archive(&name, &layers, &config)
                }
            };
            std::fs::write(dir.join("hostile.tar"), archive).unwrap();
        },
    )
    .join("hostile.tar")
}

fn oci_archive_from_parts(
    name: &str,
    manifest: Vec<u8>,
    mut blobs: Vec<(String, Vec<u8>)>,
) -> Vec<u8> {
    let mhex = sha256_hex(&manifest);
    let index = json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": OCI_MANIFEST,
            "digest": format!("sha256:{mhex}"),
            "size": manifest.len(),
            "annotations": {"org.opencontainers.image.ref.name": name},
        }],
    });
    blobs.push((mhex, manifest));
    let mut l = Layer::new();
    l.file(
        "oci-layout",
        br#"{"imageLayoutVersion":"1.0.0"}"#,
        0o644,
        0,
        0,
    );
    l.file(
        "index.json",
        &serde_json::to_vec(&index).unwrap(),
        0o644,
        0,
        0,
    );
    for (hex, data) in blobs {
        l.file(&format!("blobs/sha256/{hex}"), &data, 0o644, 0, 0);
    }
    l.finish()
}

// ---------------------------------------------------------------------------------------------
// Debian

/// Whether the Debian mirror answers (a HEAD request with a short timeout).
pub fn debian_mirror_reachable() -> bool {
    Command::new("curl")
        .args([
            "-fsI",
            "--max-time",
            "10",
            "http://deb.debian.org/debian/dists/bookworm/Release",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// A Debian bookworm minbase root as a flat tarball (for `rbox import`), made by debootstrap
/// once and cached. `None` (with the reason printed, or a failure under CI) when it cannot be
/// made here: not root, no debootstrap, or the mirror does not answer.
pub fn debian_rootfs_tar() -> Option<PathBuf> {
    use crate::util::require;
    if !require(crate::util::is_root(), "debootstrap needs root") {
        return None;
    }
    if !require(
        crate::util::have("debootstrap"),
        "debootstrap is not installed",
    ) {
        return None;
    }
    let root = cache_root();
    std::fs::create_dir_all(&root).unwrap();
    let done = root.join("debian-bookworm-minbase-v2.tar");
    // One debootstrap at a time, whatever the number of test processes.
    let lock = std::fs::File::create(root.join(".debian.lock")).unwrap();
    let _guard = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive).unwrap();
    if done.exists() {
        return Some(done);
    }
    if !debian_mirror_reachable() {
        // Only an unreachable mirror excuses a skip, even under CI: it is outside our control.
        eprintln!("SKIP: deb.debian.org is not reachable; the Debian image tests need it");
        return None;
    }
    let tmp = root.join(format!(".tmp-debian-{}", crate::util::unique()));
    let out = Command::new("debootstrap")
        .args(["--variant=minbase", "bookworm"])
        .arg(&tmp)
        .arg("http://deb.debian.org/debian")
        .output()
        .expect("run debootstrap");
    assert!(
        out.status.success(),
        "debootstrap failed although the mirror answers:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let tar_tmp = root.join(format!(".tmp-debian-{}.tar", crate::util::unique()));
    let status = Command::new("tar")
        .args(["--numeric-owner", "--xattrs", "-C"])
        .arg(&tmp)
        .arg("-cf")
        .arg(&tar_tmp)
        .args([
            "--exclude=./dev/*",
            "--exclude=./proc/*",
            "--exclude=./sys/*",
            // The downloaded packages are not part of the system (and would triple the size).
            "--exclude=./var/cache/apt/archives/*.deb",
            "--exclude=./var/lib/apt/lists/*",
            ".",
        ])
        .status()
        .unwrap();
    assert!(status.success(), "tar the debootstrap root");
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::set_permissions(&tar_tmp, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::rename(&tar_tmp, &done).unwrap();
    Some(done)
}

/// The layer of files of several owners that the id-map tests share (userns_nomap,
/// userns_shift, owners): `home/u` (1000:1000, setgid, `home_mode`), `home/u/f` ("hello\n",
/// 100:101, setuid 4750), `srv` (0:0, 755) and `srv/root-owned` ("r\n", 0:0, 600). A test
/// adds its own entries to it.
pub fn owners_layer(home_mode: u32) -> Layer {
    let mut l = Layer::new();
    l.dir("home/u", home_mode, 1000, 1000)
        .file("home/u/f", b"hello\n", 0o4750, 100, 101)
        .dir("srv", 0o755, 0, 0)
        .file("srv/root-owned", b"r\n", 0o600, 0, 0);
    l
}

/// A docker-archive named `name`: busybox, then `top` (e.g. [`owners_layer`]), with PATH set
/// and `sh` as the command.
pub fn busybox_and(name: &str, top: Layer) -> Vec<u8> {
    let layers = vec![busybox_layer(), top.finish()];
    let config = config_json(
        &layers,
        &json!({"Env": [format!("PATH={IMAGE_PATH}")], "Cmd": ["sh"]}),
    );
    docker_archive(name, &layers, &config)
}
