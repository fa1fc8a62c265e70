//! A real registry for the pull/push tests: Debian's `docker-registry` (the distribution v2
//! server) on 127.0.0.1 with a generated config, plain HTTP, TLS from a CA made by openssl for
//! the test, or htpasswd Basic auth. [`Registry`] starts it on a free port, waits for its
//! "listening on" log line (no sleeps) and stops it on drop. Images are pushed with skopeo from
//! the test fixtures, then pulled and pushed by rbox, and read back by skopeo and podman.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::json;

use crate::fixtures::{self, Compression, Layer};
use crate::util::{for_each_user, have, require, Cmd, Env, Who};

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

pub const REGISTRY_BIN: &str = "/usr/bin/docker-registry";

#[derive(Default, Clone)]
pub struct Options {
    /// Serve HTTPS with a certificate from a CA made for this registry.
    pub tls: bool,
    /// Require Basic auth with this user and password (htpasswd, bcrypt).
    pub basic_auth: Option<(String, String)>,
    /// Require Bearer tokens from this token server.
    pub token: Option<TokenServerInfo>,
}

pub struct Registry {
    /// `127.0.0.1:PORT`
    pub addr: String,
    /// The registry's storage root (to tamper with blobs).
    pub storage: PathBuf,
    /// A directory holding `ca.crt` (for `--cert-dir`), when TLS is on.
    pub cert_dir: Option<PathBuf>,
    pub opts: Options,
    child: Child,
    _dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn run_ok(c: &mut Command) {
    let out = c.output().unwrap_or_else(|e| panic!("run {c:?}: {e}"));
    assert!(
        out.status.success(),
        "{c:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA and a server certificate for 127.0.0.1 and localhost, in `dir`.
fn make_certs(dir: &Path) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    run_ok(
        Command::new("openssl")
            .current_dir(dir)
            .args(["req", "-x509"])
            .args(ec)
            .args([
                "-keyout",
                "ca.key",
                "-out",
                "ca.crt",
                "-days",
                "2",
                "-subj",
                "/CN=rbox test CA",
            ]),
    );
    run_ok(
        Command::new("openssl")
            .current_dir(dir)
            .arg("req")
            .args(ec)
            .args([
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                "/CN=127.0.0.1",
            ]),
    );
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .unwrap();
    run_ok(Command::new("openssl").current_dir(dir).args([
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]));
}

impl Registry {
    pub fn start(opts: Options) -> Registry {
        let dir = tempfile::Builder::new()
            .prefix("rbox-it-registry-")
            .tempdir_in("/tmp")
            .unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let storage = dir.path().join("data");
        std::fs::create_dir(&storage).unwrap();
        let mut cert_dir = None;
        let mut extra = String::new();
        if opts.tls {
            let certs = dir.path().join("certs");
            std::fs::create_dir(&certs).unwrap();
            make_certs(&certs);
            // Only the CA goes into the directory handed to clients.
            let client = dir.path().join("client-certs");
            std::fs::create_dir(&client).unwrap();
            std::fs::copy(certs.join("ca.crt"), client.join("ca.crt")).unwrap();
            for p in [&client, &client.join("ca.crt")] {
                let mode = if p.is_dir() { 0o755 } else { 0o644 };
                std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
            }
            extra += &format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                certs.join("server.crt").display(),
                certs.join("server.key").display()
            );
            cert_dir = Some(client);
        }
        let mut auth = String::new();
        if let Some(t) = &opts.token {
            auth = format!(
                "auth:\n  token:\n    realm: {}\n    service: {}\n    issuer: {}\n    rootcertbundle: {}\n",
                t.realm,
                TOKEN_SERVICE,
                TOKEN_ISSUER,
                t.cert.display()
            );
        }
        if let Some((user, pass)) = &opts.basic_auth {
            let out = Command::new("htpasswd")
                .args(["-Bbn", user, pass])
                .output()
                .unwrap();
            assert!(out.status.success(), "htpasswd");
            let htpasswd = dir.path().join("htpasswd");
            std::fs::write(&htpasswd, out.stdout).unwrap();
            auth = format!(
                "auth:\n  htpasswd:\n    realm: rbox-test\n    path: {}\n",
                htpasswd.display()
            );
        }
        let mut last_err = String::new();
        for _ in 0..5 {
            let port = free_port();
            let addr = format!("127.0.0.1:{port}");
            let config = format!(
                "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: true\n\
                 storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
                 http:\n  addr: {addr}\n{extra}{auth}",
                storage.display()
            );
            let conf = dir.path().join("config.yml");
            std::fs::write(&conf, config).unwrap();
            let mut child = Command::new(REGISTRY_BIN)
                .arg("serve")
                .arg(&conf)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap_or_else(|e| panic!("start {REGISTRY_BIN}: {e}"));
            // The registry logs "listening on ADDR" once its socket is bound; relay its stderr
            // from a thread so the wait has a deadline and the pipe never fills up.
            let (tx, rx) = mpsc::channel::<Result<(), String>>();
            let stderr = child.stderr.take().unwrap();
            std::thread::spawn(move || {
                let mut seen = String::new();
                let mut told = false;
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if !told && line.contains("listening on") {
                        let _ = tx.send(Ok(()));
                        told = true;
                    } else if !told {
                        seen.push_str(&line);
                        seen.push('\n');
                    }
                }
                if !told {
                    let _ = tx.send(Err(seen));
                }
            });
            match rx.recv_timeout(Duration::from_secs(30)) {
                Ok(Ok(())) => {
                    return Registry {
                        addr,
                        storage,
                        cert_dir,
                        opts,
                        child,
                        _dir: dir,
                    };
                }
                Ok(Err(log)) => last_err = log,
                Err(_) => last_err = "no \"listening on\" line within 30s".into(),
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("docker-registry did not start:\n{last_err}");
    }

    /// `127.0.0.1:PORT/REPO`
    pub fn image(&self, repo: &str) -> String {
        format!("{}/{repo}", self.addr)
    }

    /// Push `src` (a containers-transport name like `docker-archive:/x.tar`) with skopeo.
    pub fn skopeo_push(&self, env: &Env, src: &str, repo: &str, all: bool) {
        let mut c = env.skopeo();
        c.arg("copy");
        if all {
            c.arg("--all");
        }
        self.skopeo_dest_flags(&mut c);
        c.arg(src)
            .arg(format!("docker://{}", self.image(repo)))
            .output()
            .success();
    }

    fn skopeo_dest_flags(&self, c: &mut Cmd) {
        match &self.cert_dir {
            Some(d) => c.arg("--dest-cert-dir").arg(d),
            None => c.arg("--dest-tls-verify=false"),
        };
        if let Some((u, p)) = &self.opts.basic_auth {
            c.arg("--dest-creds").arg(format!("{u}:{p}"));
        } else if let Some(t) = &self.opts.token {
            c.arg("--dest-creds")
                .arg(format!("{}:{}", t.user, t.password));
        }
    }

    /// The TLS flags rbox (and podman) take for this registry.
    pub fn tls_flags(&self) -> Vec<String> {
        match &self.cert_dir {
            Some(d) => vec!["--cert-dir".into(), d.display().to_string()],
            None => vec!["--tls-verify=false".into()],
        }
    }

    /// Every blob file in the registry's storage, largest first.
    pub fn blob_files(&self) -> Vec<PathBuf> {
        let mut v: Vec<(u64, PathBuf)> = crate::util::tree(&self.storage)
            .into_iter()
            .map(|rel| self.storage.join(rel))
            .filter(|p| p.ends_with("data") && p.to_string_lossy().contains("/blobs/sha256/"))
            .map(|p| (std::fs::metadata(&p).unwrap().len(), p))
            .collect();
        v.sort_by_key(|e| std::cmp::Reverse(e.0));
        v.into_iter().map(|(_, p)| p).collect()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn prerequisites() -> bool {
    require(
        Path::new(REGISTRY_BIN).exists(),
        "docker-registry is not installed (apt-get install docker-registry)",
    ) && require(
        have("skopeo"),
        "skopeo is not installed (apt-get install skopeo)",
    ) && require(have("openssl"), "openssl is not installed")
        && require(
            have("htpasswd"),
            "htpasswd is not installed (apt-get install apache2-utils)",
        )
}

/// Push the helper image (docker-archive fixture) as `REPO:1`.
pub(crate) fn push_helper(reg: &Registry, env: &Env, repo: &str) -> String {
    let archive = env.copy_in(&fixtures::helper_docker_archive(), "helper.tar");
    reg.skopeo_push(
        env,
        &format!("docker-archive:{}", archive.display()),
        &format!("{repo}:1"),
        false,
    );
    reg.image(&format!("{repo}:1"))
}

pub(crate) fn rbox_pull(env: &Env, reg: &Registry, image: &str) -> Cmd {
    let mut c = env.rbox();
    c.arg("pull").args(reg.tls_flags()).arg(image);
    c
}

#[test]
fn pull_and_run_over_plain_http() {
    if !prerequisites() {
        return;
    }
    let reg = Registry::start(Options::default());
    for_each_user("pull_http", |env| {
        let image = push_helper(&reg, env, "test/helper");
        rbox_pull(env, &reg, &image).output().success();
        let out = env.rbox().args(["run", "--rm", &image]).output().success();
        assert_eq!(out.text(), "from-cmd");
        // Pulling again fetches nothing new and succeeds.
        rbox_pull(env, &reg, &image).output().success();
        let out = env
            .rbox()
            .args(["images", "--format", "{{.Repository}}:{{.Tag}}"])
            .output()
            .success();
        assert_eq!(out.text(), image);
        // By digest.
        let digest = env
            .rbox()
            .args(["image", "inspect", "--format", "{{.Digest}}", &image])
            .output()
            .success()
            .text();
        assert!(digest.starts_with("sha256:"), "{digest}");
        rbox_pull(env, &reg, &format!("{}@{digest}", reg.image("test/helper")))
            .output()
            .success();
        // Without --tls-verify=false a plain-HTTP registry is refused.
        env.rbox().args(["pull", &image]).output().rbox_error();
        // An unknown tag is a clean error.
        rbox_pull(env, &reg, &reg.image("test/helper:no-such-tag"))
            .output()
            .rbox_error();
    });
}

#[test]
fn run_pulls_a_missing_image() {
    if !prerequisites() {
        return;
    }
    let reg = Registry::start(Options::default());
    for_each_user("run_pulls", |env| {
        let image = push_helper(&reg, env, "test/run-pull");
        env.rbox()
            .args(["run", "--rm", "--pull=never", &image])
            .output()
            .rbox_error();
        let out = env
            .rbox()
            .args([
                "run",
                "--rm",
                "--tls-verify=false",
                &image,
                "args",
                "pulled",
            ])
            .output()
            .success();
        assert_eq!(out.text(), "pulled");
        // create pulls too: remove the image, create from the registry, start attached.
        env.rbox().args(["rmi", &image]).output().success();
        let out = env
            .rbox()
            .args(["create", "--tls-verify=false", "--name", "made", &image])
            .args(["args", "created"])
            .output()
            .success();
        assert_eq!(
            out.lines().last().map(|l| l.len()),
            Some(64),
            "create prints the id:\n{out}"
        );
        let out = env.rbox().args(["start", "-a", "made"]).output().success();
        assert_eq!(out.text(), "created");
        env.rbox().args(["rm", "made"]).output().success();
    });
}

#[test]
fn pull_over_tls_with_a_private_ca() {
    if !prerequisites() {
        return;
    }
    let reg = Registry::start(Options {
        tls: true,
        ..Default::default()
    });
    for_each_user("pull_tls", |env| {
        let image = push_helper(&reg, env, "test/tls");
        // The CA is unknown to the system: verification fails without --cert-dir.
        env.rbox().args(["pull", &image]).output().rbox_error();
        rbox_pull(env, &reg, &image).output().success();
        env.rbox()
            .args(["run", "--rm", &image, "args", "tls"])
            .output()
            .success();
    });
}

#[test]
fn pull_with_basic_auth_and_login() {
    if !prerequisites() {
        return;
    }
    let reg = Registry::start(Options {
        basic_auth: Some(("tester".into(), "s3cret".into())),
        ..Default::default()
    });
    for_each_user("pull_auth", |env| {
        let image = push_helper(&reg, env, "test/auth");
        rbox_pull(env, &reg, &image).output().rbox_error();
        env.rbox()
            .args([
                "login",
                "--tls-verify=false",
                "-u",
                "tester",
                "-p",
                "wrong",
                &reg.addr,
            ])
            .output()
            .rbox_error();
        env.rbox()
            .args([
                "login",
                "--tls-verify=false",
                "-u",
                "tester",
                "--password-stdin",
                &reg.addr,
            ])
            .stdin("s3cret\n")
            .output()
            .success();
        rbox_pull(env, &reg, &image).output().success();
        env.rbox().args(["logout", &reg.addr]).output().success();
        env.rbox().args(["rmi", &image]).output().success();
        rbox_pull(env, &reg, &image).output().rbox_error();
        // Credentials podman or docker stored are used too.
        let auth = format!(
            "{{\"auths\":{{\"{}\":{{\"auth\":\"dGVzdGVyOnMzY3JldA==\"}}}}}}",
            reg.addr
        );
        env.write("home/.docker/config.json", auth);
        env.give_to_user(&env.path("home/.docker"));
        rbox_pull(env, &reg, &image).output().success();
    });
}

#[test]
fn tampered_blob_is_refused() {
    if !prerequisites() {
        return;
    }
    let reg = Registry::start(Options::default());
    for_each_user("tampered", |env| {
        let image = push_helper(&reg, env, &format!("test/tampered-{}", env.user.name));
        // The largest blob is the busybox layer: flip a byte in its middle.
        let victim = reg.blob_files().into_iter().next().unwrap();
        let mut data = std::fs::read(&victim).unwrap();
        let mid = data.len() / 2;
        data[mid] ^= 0xff;
        std::fs::write(&victim, &data).unwrap();
        let out = rbox_pull(env, &reg, &image).output().rbox_error();
        let hex = victim
            .parent()
            .unwrap()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        assert!(
            out.stderr.contains(&hex[..12]),
            "the error names the digest:\n{out}"
        );
        assert_eq!(
            env.rbox().args(["images", "-q"]).output().success().text(),
            "",
            "nothing kept"
        );
        data[mid] ^= 0xff;
        std::fs::write(&victim, &data).unwrap();
        rbox_pull(env, &reg, &image).output().success();
    });
}

#[test]
fn concurrent_pulls_of_one_image() {
    if !prerequisites() {
        return;
    }
    let reg = Registry::start(Options::default());
    for_each_user("concurrent_pull", |env| {
        let image = push_helper(&reg, env, "test/concurrent");
        let outs: Vec<_> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..3)
                .map(|_| s.spawn(|| rbox_pull(env, &reg, &image).output()))
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for o in outs {
            o.success();
        }
        let out = env.rbox().args(["images", "-q"]).output().success();
        assert_eq!(out.lines().len(), 1, "{out}");
        env.rbox()
            .args(["run", "--rm", &image, "args", "ok"])
            .output()
            .success();
    });
}

#[test]
fn short_names_and_mirrors_from_registries_conf() {
    if !prerequisites() {
        return;
    }
    let reg = Registry::start(Options::default());
    for_each_user("short_names", |env| {
        push_helper(&reg, env, "test/short");
        let conf = format!(
            "unqualified-search-registries = [\"{addr}\"]\n\n\
             [[registry]]\nlocation = \"{addr}\"\ninsecure = true\n\n\
             [[registry]]\nprefix = \"mirrored.invalid\"\nlocation = \"mirrored.invalid\"\n\
             [[registry.mirror]]\nlocation = \"{addr}\"\ninsecure = true\n",
            addr = reg.addr
        );
        env.write("config/containers/registries.conf", conf);
        env.give_to_user(&env.path("config/containers"));
        env.rbox().args(["pull", "test/short:1"]).output().success();
        let out = env
            .rbox()
            .args(["images", "--format", "{{.Repository}}:{{.Tag}}"])
            .output()
            .success();
        assert_eq!(
            out.text(),
            reg.image("test/short:1"),
            "the short name resolved through the search list"
        );
        env.rbox()
            .args(["pull", "mirrored.invalid/test/short:1"])
            .output()
            .success();
        let out = env
            .rbox()
            .args([
                "run",
                "--rm",
                "mirrored.invalid/test/short:1",
                "args",
                "mirror",
            ])
            .output();
        assert_eq!(out.success().text(), "mirror");
    });
}

/// An OCI layout with an image index of two platforms: the host's (busybox plus `/arch`
/// saying so) and one other (`/arch` only).
fn multiarch_layout(dir: &Path) {
    let host = fixtures::oci_arch();
    let other = if host == "arm64" { "amd64" } else { "arm64" };
    let mut blobs: Vec<(String, Vec<u8>)> = Vec::new();
    let mut manifests = Vec::new();
    for arch in [host, other] {
        let mut marker = Layer::new();
        marker.file("arch", format!("{arch}\n").as_bytes(), 0o644, 0, 0);
        let mut layers = vec![marker.finish()];
        if arch == host {
            layers.insert(0, fixtures::busybox_layer());
        }
        let mut config: serde_json::Value = serde_json::from_slice(&fixtures::config_json(
            &layers,
            &json!({"Env": [format!("PATH={}", fixtures::IMAGE_PATH)], "Cmd": ["cat", "/arch"]}),
        ))
        .unwrap();
        config["architecture"] = json!(arch);
        let config = serde_json::to_vec(&config).unwrap();
        let l: Vec<_> = layers.into_iter().map(|l| (l, Compression::Gzip)).collect();
        let (manifest, bs) = fixtures::oci_blobs(&l, &config, |_| {});
        manifests.push(json!({
            "mediaType": fixtures::OCI_MANIFEST,
            "digest": format!("sha256:{}", fixtures::sha256_hex(&manifest)),
            "size": manifest.len(),
            "platform": {"architecture": arch, "os": "linux"},
        }));
        blobs.extend(bs);
        blobs.push((fixtures::sha256_hex(&manifest), manifest));
    }
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": manifests,
    }))
    .unwrap();
    let top = json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": format!("sha256:{}", fixtures::sha256_hex(&index)),
            "size": index.len(),
            "annotations": {"org.opencontainers.image.ref.name": "multi"},
        }],
    });
    blobs.push((fixtures::sha256_hex(&index), index));
    std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&top).unwrap()).unwrap();
    for (hex, data) in blobs {
        std::fs::write(dir.join("blobs/sha256").join(hex), data).unwrap();
    }
}

#[test]
fn multi_arch_index_picks_the_platform() {
    if !prerequisites() {
        return;
    }
    let reg = Registry::start(Options::default());
    for_each_user("multiarch", |env| {
        let layout = env.path("multi-layout");
        multiarch_layout(&layout);
        env.give_to_user(&layout);
        reg.skopeo_push(
            env,
            &format!("oci:{}:multi", layout.display()),
            "test/multi:1",
            true,
        );
        let image = reg.image("test/multi:1");
        rbox_pull(env, &reg, &image).output().success();
        let out = env.rbox().args(["run", "--rm", &image]).output().success();
        assert_eq!(
            out.text(),
            fixtures::oci_arch(),
            "the host's platform is chosen"
        );
        let other = if fixtures::oci_arch() == "arm64" {
            "amd64"
        } else {
            "arm64"
        };
        let arch = || {
            env.rbox()
                .args(["image", "inspect", "--format", "{{.Architecture}}", &image])
                .output()
                .success()
                .text()
        };
        // `create --arch` pulls the other platform, as `pull --platform` does
        let mut c = env.rbox();
        c.arg("create").args(reg.tls_flags()).args([
            "--pull=always",
            "--arch",
            other,
            "--name",
            "other",
            &image,
        ]);
        c.output().success();
        assert_eq!(arch(), other);
        env.rbox().args(["rm", "other"]).output().success();
        rbox_pull(env, &reg, &image).output().success();
        assert_eq!(arch(), fixtures::oci_arch());
        let mut c = env.rbox();
        c.arg("pull")
            .args(reg.tls_flags())
            .args(["--platform", &format!("linux/{other}"), &image]);
        c.output().success();
        assert_eq!(arch(), other);
    });
}

#[test]
fn push_then_pull_back_with_podman_and_skopeo() {
    if !prerequisites() {
        return;
    }
    let reg = Registry::start(Options::default());
    for_each_user("push", |env| {
        // An image that never saw a registry: imported here, pushed by rbox.
        env.import_busybox("busybox");
        let dest = reg.image(&format!("pushed/{}:1", env.user.name));
        env.rbox()
            .args(["tag", "busybox", &dest])
            .output()
            .success();
        env.rbox()
            .args(["push", "--tls-verify=false", &dest])
            .output()
            .success();
        let out = env
            .skopeo()
            .args(["inspect", "--tls-verify=false", &format!("docker://{dest}")])
            .output()
            .success();
        assert!(out.stdout.contains("\"Layers\""), "{out}");
        // Pull -> tag -> push to another repository (a cross-repository mount may serve it).
        let image = push_helper(&reg, env, &format!("test/push-src-{}", env.user.name));
        rbox_pull(env, &reg, &image).output().success();
        let copy = reg.image(&format!("test/push-copy-{}:2", env.user.name));
        env.rbox().args(["tag", &image, &copy]).output().success();
        env.rbox()
            .args(["push", "--tls-verify=false", &copy])
            .output()
            .success();
        if matches!(env.user.who, Who::Root | Who::Sub) && have("podman") {
            let p = crate::podman::Podman::new(env);
            let podman = |args: &[&str]| {
                let mut c = p.cmd();
                c.args(args);
                c.output()
            };
            podman(&["pull", "--tls-verify=false", &copy]).success();
            let out = p.run(&copy, &["args", "via-podman"]).output().success();
            assert_eq!(out.text(), "via-podman");
            podman(&["pull", "--tls-verify=false", &dest]).success();
        }
    });
}

// ---------------------------------------------------------------------------------------------
// A Bearer token server: the distribution token flow (WWW-Authenticate challenge -> GET realm
// with service and scope -> a JWT the registry verifies against our certificate). Tokens are
// RS256 JWTs with the signing certificate in `x5c`, signed by `openssl dgst`. Any request with
// the right Basic credentials gets the actions it asks for; anonymous requests get `pull` on
// `public/...` repositories only.

pub const TOKEN_SERVICE: &str = "rbox-test-registry";
pub const TOKEN_ISSUER: &str = "rbox-test-issuer";

/// What the registry config and the clients need to know about a [`TokenServer`].
#[derive(Clone)]
pub struct TokenServerInfo {
    pub realm: String,
    pub cert: PathBuf,
    pub user: String,
    pub password: String,
}

pub struct TokenServer {
    pub info: TokenServerInfo,
    /// How many tokens were issued (to see that the Bearer flow really ran).
    pub issued: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    addr: std::net::SocketAddr,
    _dir: tempfile::TempDir,
}

fn b64(data: &[u8], url: bool) -> String {
    let table: &[u8; 64] = if url {
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    } else {
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    };
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..=chunk.len() {
            out.push(table[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
        if !url {
            for _ in chunk.len()..3 {
                out.push('=');
            }
        }
    }
    out
}

fn b64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => (c - b'A') as u32,
            b'a'..=b'z' => (c - b'a' + 26) as u32,
            b'0'..=b'9' => (c - b'0' + 52) as u32,
            b'+' | b'-' => 62,
            _ => 63,
        }
    };
    let clean: Vec<u8> = s
        .bytes()
        .filter(|&c| c != b'=' && !c.is_ascii_whitespace())
        .collect();
    let mut out = Vec::new();
    for chunk in clean.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= val(c) << (18 - 6 * i);
        }
        for i in 0..chunk.len().saturating_sub(1) {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    out
}

fn url_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let h = std::str::from_utf8(&b[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match h {
                    Some(v) => {
                        out.push(v);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

struct Signer {
    key: PathBuf,
    cert_der_b64: String,
}

impl Signer {
    fn sign(&self, claims: &serde_json::Value) -> String {
        let header = json!({"alg": "RS256", "typ": "JWT", "x5c": [self.cert_der_b64]});
        let input = format!(
            "{}.{}",
            b64(&serde_json::to_vec(&header).unwrap(), true),
            b64(&serde_json::to_vec(claims).unwrap(), true)
        );
        let mut child = Command::new("openssl")
            .args(["dgst", "-sha256", "-sign"])
            .arg(&self.key)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("run openssl dgst");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "openssl dgst -sign");
        format!("{input}.{}", b64(&out.stdout, true))
    }
}

impl TokenServer {
    pub fn start(user: &str, password: &str) -> TokenServer {
        let dir = tempfile::Builder::new()
            .prefix("rbox-it-token-")
            .tempdir_in("/tmp")
            .unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        run_ok(Command::new("openssl").current_dir(dir.path()).args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "token.key",
            "-out",
            "token.crt",
            "-days",
            "2",
            "-subj",
            "/CN=rbox test token issuer",
        ]));
        let der = Command::new("openssl")
            .current_dir(dir.path())
            .args(["x509", "-in", "token.crt", "-outform", "DER"])
            .output()
            .unwrap();
        assert!(der.status.success());
        let signer = Signer {
            key: dir.path().join("token.key"),
            cert_der_b64: b64(&der.stdout, false),
        };
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let info = TokenServerInfo {
            realm: format!("http://{addr}/token"),
            cert: dir.path().join("token.crt"),
            user: user.into(),
            password: password.into(),
        };
        let issued = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (i2, s2, creds) = (issued.clone(), stop.clone(), format!("{user}:{password}"));
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let _ = serve_token(conn, &signer, &creds, &i2);
            }
        });
        TokenServer {
            info,
            issued,
            stop,
            addr,
            _dir: dir,
        }
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}

/// Answer one HTTP request (Connection: close) of the token endpoint.
fn serve_token(
    mut conn: TcpStream,
    signer: &Signer,
    creds: &str,
    issued: &AtomicUsize,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut request = String::new();
    reader.read_line(&mut request)?;
    let mut authorized = None;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.eq_ignore_ascii_case("authorization") {
                let v = v.trim();
                if let Some(basic) = v
                    .strip_prefix("Basic ")
                    .or_else(|| v.strip_prefix("basic "))
                {
                    authorized = Some(String::from_utf8_lossy(&b64_decode(basic)) == creds);
                }
            }
        }
    }
    let target = request.split_whitespace().nth(1).unwrap_or("/");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut scopes = Vec::new();
    let mut service = String::new();
    for kv in query.split('&') {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        match k {
            "scope" => scopes.push(url_decode(v)),
            "service" => service = url_decode(v),
            _ => {}
        }
    }
    let reply = |conn: &mut TcpStream, status: &str, body: &str| {
        let r = format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        conn.write_all(r.as_bytes())
    };
    if path != "/token" || service != TOKEN_SERVICE {
        return reply(&mut conn, "404 Not Found", "{}");
    }
    if authorized == Some(false) {
        return reply(
            &mut conn,
            "401 Unauthorized",
            r#"{"errors":[{"code":"UNAUTHORIZED"}]}"#,
        );
    }
    let mut access = Vec::new();
    for scope in scopes.iter().flat_map(|s| s.split(' ')) {
        // repository:NAME:ACTIONS (NAME may hold a port-less path; actions comma-separated)
        let mut parts = scope.splitn(2, ':');
        let kind = parts.next().unwrap_or("");
        let rest = parts.next().unwrap_or("");
        let Some((name, actions)) = rest.rsplit_once(':') else {
            continue;
        };
        let actions: Vec<&str> = actions
            .split(',')
            .filter(|a| authorized == Some(true) || (*a == "pull" && name.starts_with("public/")))
            .collect();
        access.push(json!({"type": kind, "name": name, "actions": actions}));
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let n = issued.fetch_add(1, Ordering::SeqCst);
    let claims = json!({
        "iss": TOKEN_ISSUER,
        "sub": if authorized == Some(true) { creds.split(':').next().unwrap() } else { "" },
        "aud": TOKEN_SERVICE,
        "exp": now + 300,
        "nbf": now - 10,
        "iat": now,
        "jti": format!("rbox-test-{n}"),
        "access": access,
    });
    let token = signer.sign(&claims);
    let body = json!({"token": token, "access_token": token, "expires_in": 300}).to_string();
    reply(&mut conn, "200 OK", &body)
}

#[test]
fn pull_and_push_with_bearer_tokens() {
    if !prerequisites() {
        return;
    }
    let tokens = TokenServer::start("tester", "t0ken-pass");
    let reg = Registry::start(Options {
        token: Some(tokens.info.clone()),
        ..Default::default()
    });
    for_each_user("bearer", |env| {
        let private = push_helper(&reg, env, "private/helper");
        let public = push_helper(&reg, env, "public/helper");
        let before = tokens.issued.load(Ordering::SeqCst);
        // Anonymous: a token for public repositories only.
        rbox_pull(env, &reg, &public).output().success();
        assert!(
            tokens.issued.load(Ordering::SeqCst) > before,
            "rbox did not ask the token server"
        );
        let out = rbox_pull(env, &reg, &private).output().rbox_error();
        assert!(
            out.stderr.to_lowercase().contains("auth")
                || out.stderr.contains("401")
                || out.stderr.contains("denied"),
            "the error says access was refused:\n{out}"
        );
        env.rbox()
            .args([
                "login",
                "--tls-verify=false",
                "-u",
                "tester",
                "--password-stdin",
                &reg.addr,
            ])
            .stdin("t0ken-pass\n")
            .output()
            .success();
        rbox_pull(env, &reg, &private).output().success();
        let out = env
            .rbox()
            .args(["run", "--rm", &private, "args", "bearer"])
            .output()
            .success();
        assert_eq!(out.text(), "bearer");
        let dest = reg.image(&format!("private/pushed-{}:1", env.user.name));
        env.rbox().args(["tag", &private, &dest]).output().success();
        env.rbox()
            .args(["push", "--tls-verify=false", &dest])
            .output()
            .success();
        env.skopeo()
            .args([
                "inspect",
                "--tls-verify=false",
                "--creds",
                "tester:t0ken-pass",
                &format!("docker://{dest}"),
            ])
            .output()
            .success();
    });
}

// ---------------------------------------------------------------------------------------------
// A TCP proxy in front of the registry that misbehaves on purpose, deterministically: it relays
// both ways, and once a connection has sent `limit` bytes towards the client it either cuts that
// connection (once) or stalls every connection (until dropped), telling the test when it did.

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Close the first connection that passes the limit; later connections are relayed whole.
    CutOnce,
    /// Stop relaying once the limit is passed, and report it.
    Stall,
}

pub struct FaultyProxy {
    pub addr: String,
    /// Receives `()` when the fault happened.
    pub fired: mpsc::Receiver<()>,
    stop: Arc<AtomicBool>,
}

impl FaultyProxy {
    pub fn start(upstream: &str, limit: u64, fault: Fault) -> FaultyProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (tx, fired) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let used = Arc::new(AtomicBool::new(false));
        let upstream = upstream.to_string();
        let (stop2, addr2) = (stop.clone(), addr.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(&upstream) else {
                    continue;
                };
                let (tx, used, stop3) = (tx.clone(), used.clone(), stop2.clone());
                // client -> server: plain relay.
                let (mut c_read, mut s_write) =
                    (client.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut c_read, &mut s_write);
                    let _ = s_write.shutdown(Shutdown::Write);
                });
                // server -> client: count, then misbehave.
                std::thread::spawn(move || {
                    let (mut s_read, mut c_write) = (server, client);
                    let mut sent = 0u64;
                    let mut buf = [0u8; 16384];
                    loop {
                        let n = match s_read.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        let armed = match fault {
                            Fault::CutOnce => !used.load(Ordering::SeqCst),
                            Fault::Stall => true,
                        };
                        if armed && sent + n as u64 > limit {
                            let keep = (limit - sent) as usize;
                            let _ = c_write.write_all(&buf[..keep]);
                            match fault {
                                Fault::CutOnce => {
                                    if !used.swap(true, Ordering::SeqCst) {
                                        let _ = c_write.shutdown(Shutdown::Both);
                                        let _ = s_read.shutdown(Shutdown::Both);
                                        let _ = tx.send(());
                                        return;
                                    }
                                }
                                Fault::Stall => {
                                    let _ = tx.send(());
                                    // Hold the connection open, relaying nothing, until the
                                    // proxy is dropped (the client is killed by then).
                                    let _ = s_read.set_read_timeout(None);
                                    while !stop3.load(Ordering::SeqCst) {
                                        if s_read.read(&mut buf).map(|n| n == 0).unwrap_or(true) {
                                            break;
                                        }
                                    }
                                    return;
                                }
                            }
                        }
                        if c_write.write_all(&buf[..n]).is_err() {
                            break;
                        }
                        sent += n as u64;
                    }
                    let _ = c_write.shutdown(Shutdown::Write);
                });
            }
            drop(addr2);
        });
        FaultyProxy { addr, fired, stop }
    }
}

impl Drop for FaultyProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(&self.addr);
    }
}

#[test]
fn pull_survives_a_connection_cut_mid_layer() {
    if !prerequisites() {
        return;
    }
    let reg = Registry::start(Options::default());
    for_each_user("cut_mid_layer", |env| {
        push_helper(&reg, env, "test/cut");
        // The busybox layer is about 1 MiB compressed: cut its transfer half-way, once.
        let proxy = FaultyProxy::start(&reg.addr, 512 * 1024, Fault::CutOnce);
        let image = format!("{}/test/cut:1", proxy.addr);
        rbox_pull(env, &reg, &image).output().success();
        proxy
            .fired
            .try_recv()
            .expect("the proxy never cut a connection: is the layer smaller than 512 KiB?");
        env.rbox()
            .args(["run", "--rm", &image, "args", "after-cut"])
            .output()
            .success();
    });
}

#[test]
fn pull_killed_mid_way_then_repeated() {
    if !prerequisites() {
        return;
    }
    let reg = Registry::start(Options::default());
    for_each_user("killed_pull", |env| {
        push_helper(&reg, env, "test/killed");
        let proxy = FaultyProxy::start(&reg.addr, 512 * 1024, Fault::Stall);
        let image = format!("{}/test/killed:1", proxy.addr);
        let mut c = env.rbox();
        c.arg("pull").args(reg.tls_flags()).arg(&image);
        let r = c.spawn();
        // The proxy says when the pull is stuck half-way through a layer: kill rbox there.
        proxy
            .fired
            .recv_timeout(Duration::from_secs(60))
            .expect("the pull never reached the stall");
        r.signal(nix::sys::signal::Signal::SIGKILL);
        let out = r.wait();
        assert_eq!(out.code, 128 + 9, "{out}");
        drop(proxy);
        // The store is consistent: no image, and the same pull (direct this time) completes.
        assert_eq!(
            env.rbox().args(["images", "-q"]).output().success().text(),
            ""
        );
        let direct = reg.image("test/killed:1");
        rbox_pull(env, &reg, &direct).output().success();
        env.rbox()
            .args(["run", "--rm", &direct, "args", "after-kill"])
            .output()
            .success();
    });
}

#[test]
fn pull_all_tags_pulls_every_tag_of_the_repository() {
    if !prerequisites() {
        return;
    }
    let reg = Registry::start(Options::default());
    for_each_user("pull_all_tags", |env| {
        let repo = format!("test/all-{}", env.user.name);
        push_helper(&reg, env, &repo);
        let helper = env.copy_in(&fixtures::helper_docker_archive(), "helper.tar");
        reg.skopeo_push(
            env,
            &format!("docker-archive:{}", helper.display()),
            &format!("{repo}:2"),
            false,
        );
        let exposing = env.copy_in(&fixtures::exposing_docker_archive(), "exposing.tar");
        reg.skopeo_push(
            env,
            &format!("docker-archive:{}", exposing.display()),
            &format!("{repo}:x"),
            false,
        );
        // As Podman 4.3: the tag given is ignored, every tag is pulled, one id line per tag
        // in the registry's order, progress on stderr.
        let out = rbox_pull(env, &reg, &reg.image(&format!("{repo}:1")))
            .arg("--all-tags")
            .output()
            .success();
        let listed = env
            .skopeo()
            .args(["list-tags", "--tls-verify=false"])
            .arg(format!("docker://{}", reg.image(&repo)))
            .output()
            .success();
        let listed: serde_json::Value = serde_json::from_str(&listed.stdout).unwrap();
        let tags: Vec<&str> = listed["Tags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap())
            .collect();
        assert_eq!(tags.len(), 3, "{listed}");
        let ids: Vec<String> = tags
            .iter()
            .map(|t| {
                let name = reg.image(&format!("{repo}:{t}"));
                env.inspect(&name, "{{.Id}}")
            })
            .collect();
        assert_eq!(out.lines(), ids, "{out}");
        let distinct: std::collections::BTreeSet<&String> = ids.iter().collect();
        assert_eq!(distinct.len(), 2, "tags 1 and 2 are one image: {ids:?}");
        for t in &tags {
            let trying = format!("Trying to pull {}...", reg.image(&format!("{repo}:{t}")));
            assert!(out.stderr.contains(&trying), "{out}");
        }
        // -a with -q: the ids only.
        let out = rbox_pull(env, &reg, &reg.image(&repo))
            .args(["-a", "-q"])
            .output()
            .success();
        assert_eq!(out.lines(), ids, "{out}");
        assert_eq!(out.stderr, "", "{out}");
        // A repository the registry does not have: one line, exit 125.
        let out = rbox_pull(env, &reg, &reg.image("test/no-such-repo"))
            .arg("-a")
            .output()
            .rbox_error();
        assert!(out.stderr.contains("repository unknown"), "{out}");
    });
}

#[test]
fn push_writes_the_manifest_format_and_compression_asked_for() {
    if !prerequisites() {
        return;
    }
    let reg = Registry::start(Options::default());
    for_each_user("push_format", |env| {
        env.import_busybox("busybox");
        let id = env.inspect("busybox", "{{.Id}}");
        let raw = |dest: &str| -> serde_json::Value {
            let out = env
                .skopeo()
                .args(["inspect", "--raw", "--tls-verify=false"])
                .arg(format!("docker://{dest}"))
                .output()
                .success();
            serde_json::from_str(&out.stdout).unwrap()
        };
        let push = |args: &[&str], dest: &str| {
            let mut c = env.rbox();
            c.args(["push", "--tls-verify=false"])
                .args(args)
                .args(["busybox", dest]);
            c.output()
        };
        let user = &env.user.name;
        let layer_types = |m: &serde_json::Value| -> Vec<String> {
            m["layers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| l["mediaType"].as_str().unwrap().to_string())
                .collect()
        };

        // -f v2s2: Docker schema 2 media types, the same config (so the same image id).
        let v2s2 = reg.image(&format!("fmt/{user}:v2s2"));
        push(&["-f", "v2s2"], &v2s2).success();
        let m = raw(&v2s2);
        assert_eq!(
            m["mediaType"],
            "application/vnd.docker.distribution.manifest.v2+json"
        );
        assert_eq!(
            m["config"]["mediaType"],
            "application/vnd.docker.container.image.v1+json"
        );
        assert_eq!(m["config"]["digest"], format!("sha256:{id}"));
        for t in layer_types(&m) {
            assert!(
                t.starts_with("application/vnd.docker.image.rootfs.diff.tar"),
                "{m}"
            );
        }

        // --format oci, and the flags Podman accepts with nothing to do: the stored manifest
        // goes up byte for byte, so the registry's digest is the local one.
        let oci = reg.image(&format!("fmt/{user}:oci"));
        push(
            &[
                "--format",
                "oci",
                "--compress",
                "--remove-signatures",
                "--disable-content-trust",
            ],
            &oci,
        )
        .success();
        let m = raw(&oci);
        assert_eq!(
            m["config"]["mediaType"],
            "application/vnd.oci.image.config.v1+json"
        );
        let local = env.inspect("busybox", "{{.Digest}}");
        let remote = env
            .skopeo()
            .args(["inspect", "--tls-verify=false", "--format", "{{.Digest}}"])
            .arg(format!("docker://{oci}"))
            .output()
            .success()
            .text();
        assert_eq!(remote, local);

        // --compression-format zstd: layers compressed anew; pulled back, it is the same image.
        let zstd = reg.image(&format!("fmt/{user}:zstd"));
        push(&["--compression-format", "zstd"], &zstd).success();
        let m = raw(&zstd);
        assert_eq!(
            layer_types(&m),
            vec!["application/vnd.oci.image.layer.v1.tar+zstd".to_string()]
        );
        env.rbox().args(["rmi", "busybox"]).output().success();
        rbox_pull(env, &reg, &zstd)
            .arg("--disable-content-trust")
            .output()
            .success();
        assert_eq!(env.inspect(&zstd, "{{.Id}}"), id);
        let out = env
            .rbox()
            .args(["run", "--rm", &zstd, "echo", "from-zstd"])
            .output()
            .success();
        assert_eq!(out.text(), "from-zstd");
        env.rbox()
            .args(["tag", &zstd, "busybox"])
            .output()
            .success();
        // zstd layers in a v2s2 manifest cannot be described: refused before any manifest.
        let out = push(
            &["--format", "v2s2"],
            &reg.image(&format!("fmt/{user}:bad")),
        )
        .rbox_error();
        assert!(out.stderr.contains("zstd"), "{out}");

        // Refusals, one line each.
        let dest = reg.image(&format!("fmt/{user}:refused"));
        for (args, words) in [
            (&["-f", "bogus"][..], "unknown format \"bogus\""),
            (&["-f", "v2s1"][..], "v2s1"),
            (
                &["--compression-format", "lz4"][..],
                "cannot find compressor for \"lz4\"",
            ),
            (
                &["--sign-by", "me@example.org"][..],
                "rbox does not sign images",
            ),
            (
                &["--sign-by-sigstore-private-key", "/nonexistent"][..],
                "rbox does not sign images",
            ),
        ] {
            let out = push(args, &dest).rbox_error();
            assert!(out.stderr.contains(words), "{args:?}:\n{out}");
        }
    });
}

/// `rbox search` against a v2 registry (its catalog: no v1 search API there), with
/// `--list-tags`, filters, `--limit`, `--compatible` and the formats, printing what Podman 4.3
/// prints for the same arguments (run side by side where Podman runs: root and the user with a
/// range); nothing at all when nothing matches, one line and 125 for a registry that does not
/// answer or a bad filter.
#[test]
fn search_finds_repositories_and_tags_as_podman() {
    if !prerequisites() {
        return;
    }
    let reg = Registry::start(Options::default());
    for_each_user("search", |env| {
        let u = &env.user.name;
        let first = format!("find/alpha-{u}");
        push_helper(&reg, env, &first);
        let archive = env.copy_in(&fixtures::helper_docker_archive(), "helper.tar");
        reg.skopeo_push(
            env,
            &format!("docker-archive:{}", archive.display()),
            &format!("{first}:2"),
            false,
        );
        push_helper(&reg, env, &format!("other/alpha-{u}-extra"));
        push_helper(&reg, env, &format!("web/zeta-{u}"));
        let term = |t: &str| format!("{}/{t}", reg.addr);
        let search = |args: &[String]| {
            env.rbox()
                .arg("search")
                .arg("--tls-verify=false")
                .args(args)
                .output()
        };
        let alpha = term(&format!("alpha-{u}"));
        let out = search(std::slice::from_ref(&alpha)).success();
        let lines = out.lines();
        let names: Vec<&str> = lines
            .iter()
            .map(|l| l.split_whitespace().next().unwrap_or(""))
            .collect();
        let want_first = reg.image(&first);
        let want_extra = reg.image(&format!("other/alpha-{u}-extra"));
        assert_eq!(
            names,
            ["NAME", want_first.as_str(), want_extra.as_str()],
            "{out}"
        );
        let out = search(&["--list-tags".into(), reg.image(&first)]).success();
        assert_eq!(out.lines().len(), 3, "{out}");
        let json = search(&[
            "--list-tags".into(),
            "--format=json".into(),
            reg.image(&first),
        ])
        .success();
        let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
        assert_eq!(v[0]["Name"], want_first.as_str());
        let mut tags: Vec<&str> = v[0]["Tags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap())
            .collect();
        tags.sort();
        assert_eq!(tags, ["1", "2"]);
        // nothing found: no output at all, not even the header
        let none = search(&[term("nosuch-repo")]).success();
        assert_eq!(none.stdout, "", "{none}");
        let none = search(&["--filter=stars=1".into(), alpha.clone()]).success();
        assert_eq!(none.stdout, "", "{none}");
        let bad = search(&["--filter=bogus=1".into(), alpha.clone()]).rbox_error();
        assert!(
            bad.stderr.contains("invalid filter type \"bogus=1\""),
            "{bad}"
        );
        let gone = search(&["127.0.0.1:1/x".into()]).rbox_error();
        assert!(
            gone.stderr
                .contains("couldn't search registry \"127.0.0.1:1\""),
            "{gone}"
        );

        // the same output as Podman's, argument for argument
        if !crate::podman::prerequisites() || !crate::podman::podman_users(env) {
            return;
        }
        let podman = crate::podman::Podman::new(env);
        for args in [
            vec![alpha.clone()],
            vec!["--compatible".into(), alpha.clone()],
            vec!["--limit=1".into(), alpha.clone()],
            vec!["--format=json".into(), alpha.clone()],
            vec![
                "--format={{.Name}}|{{.Index}}|{{.Stars}}|{{.Official}}|{{.Description}}".into(),
                term(&format!("zeta-{u}")),
            ],
            vec!["--filter=is-official=false".into(), alpha.clone()],
            vec!["--list-tags".into(), reg.image(&first)],
            vec!["--list-tags".into(), "--limit=1".into(), reg.image(&first)],
            vec![term("nosuch-repo")],
        ] {
            let theirs = podman
                .cmd()
                .arg("search")
                .arg("--tls-verify=false")
                .args(&args)
                .output()
                .success();
            let ours = search(&args).success();
            assert_eq!(ours.stdout, theirs.stdout, "{args:?}:\n{ours}\n{theirs}");
        }
    });
}
