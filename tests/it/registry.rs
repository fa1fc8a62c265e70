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

pub const REGISTRY_BIN: &str = "/usr/bin/docker-registry";

#[derive(Default, Clone)]
pub struct Options {
    /// Serve HTTPS with a certificate from a CA made for this registry.
    pub tls: bool,
    /// Require Basic auth with this user and password (htpasswd, bcrypt).
    pub basic_auth: Option<(String, String)>,
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
        let mut c = env.cmd("skopeo");
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

fn prerequisites() -> bool {
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
fn push_helper(reg: &Registry, env: &Env, repo: &str) -> String {
    let archive = env.copy_in(&fixtures::helper_docker_archive(), "helper.tar");
    reg.skopeo_push(
        env,
        &format!("docker-archive:{}", archive.display()),
        &format!("{repo}:1"),
        false,
    );
    reg.image(&format!("{repo}:1"))
}

fn rbox_pull(env: &Env, reg: &Registry, image: &str) -> Cmd {
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
        let mut c = env.rbox();
        c.arg("pull")
            .args(reg.tls_flags())
            .args(["--platform", &format!("linux/{other}"), &image]);
        c.output().success();
        let out = env
            .rbox()
            .args(["image", "inspect", "--format", "{{.Architecture}}", &image])
            .output()
            .success();
        assert_eq!(out.text(), other);
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
            .cmd("skopeo")
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
            let conf = env.write(
                "containers.conf",
                "[containers]\ndefault_ulimits = [\"nofile=20000:20000\"]\n[engine]\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n",
            );
            let podman = |args: &[&str]| {
                let mut c = env.cmd("podman");
                c.env("CONTAINERS_CONF", &conf)
                    .arg("--root")
                    .arg(env.path("podman-store"))
                    .arg("--runroot")
                    .arg(env.path("podman-run"))
                    .args(["--storage-driver", "vfs"])
                    .args(args);
                c.output()
            };
            podman(&["pull", "--tls-verify=false", &copy]).success();
            let out =
                podman(&["run", "--rm", "--network=none", &copy, "args", "via-podman"]).success();
            assert_eq!(out.text(), "via-podman");
            podman(&["pull", "--tls-verify=false", &dest]).success();
        }
    });
}
