//! A real OCI distribution registry for the tests: Debian's `docker-registry` (distribution
//! v2) on 127.0.0.1, plain HTTP, optionally with htpasswd Basic auth. [`Registry::start`] picks
//! a free port, waits for the server's "listening on" log line (no sleeps) and the server is
//! killed on drop. Missing prerequisites skip loudly, and fail under `CI=true`.
//!
//! The same recipe serves the binary's integration tests (tests/it/registry.rs).

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use rbox_storage::{IdMap, ImageRecord, Store};

pub const REGISTRY_BIN: &str = "/usr/bin/docker-registry";

/// True when `prog` can be run; otherwise says why (and panics under CI=true).
pub fn require(what: &str, ok: bool) -> bool {
    if !ok {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{what} is missing under CI=true"
        );
        eprintln!("SKIP: {what} is not installed");
    }
    ok
}

pub fn have(prog: &str) -> bool {
    Command::new(prog)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

pub fn prerequisites() -> bool {
    require("docker-registry", Path::new(REGISTRY_BIN).exists())
}

pub struct Registry {
    /// `127.0.0.1:PORT`
    pub addr: String,
    /// The registry's storage root (to tamper with blobs).
    pub storage: PathBuf,
    child: Child,
    pub dir: tempfile::TempDir,
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

/// A CA (`ca.crt`) and a server certificate for 127.0.0.1 signed by it, in `dir`.
pub fn make_certs(dir: &Path) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let openssl = || {
        let mut c = Command::new("openssl");
        c.current_dir(dir);
        c
    };
    run_ok(openssl().args(["req", "-x509"]).args(ec).args([
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=rbox registry test CA",
    ]));
    run_ok(openssl().arg("req").args(ec).args([
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]));
    std::fs::write(dir.join("ext.cnf"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    run_ok(openssl().args([
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
    /// Start a registry; with `basic_auth`, an htpasswd file requires those credentials.
    pub fn start(basic_auth: Option<(&str, &str)>) -> Registry {
        Registry::start_with(basic_auth, false)
    }

    /// Like [`Registry::start`]; with `tls`, HTTPS with a certificate from a CA made for it
    /// (its certificate is `dir/certs/ca.crt`).
    pub fn start_with(basic_auth: Option<(&str, &str)>, tls: bool) -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let storage = dir.path().join("data");
        std::fs::create_dir(&storage).unwrap();
        let mut extra = String::new();
        if tls {
            let certs = dir.path().join("certs");
            std::fs::create_dir(&certs).unwrap();
            make_certs(&certs);
            extra = format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                certs.join("server.crt").display(),
                certs.join("server.key").display()
            );
        }
        let mut auth = String::new();
        if let Some((u, p)) = basic_auth {
            let out = Command::new("htpasswd")
                .args(["-Bbn", u, p])
                .output()
                .expect("run htpasswd");
            assert!(out.status.success(), "htpasswd failed");
            let f = dir.path().join("htpasswd");
            std::fs::write(&f, out.stdout).unwrap();
            auth = format!(
                "auth:\n  htpasswd:\n    realm: test\n    path: {}\n",
                f.display()
            );
        }
        let mut last = String::new();
        for _ in 0..5 {
            let addr = format!("127.0.0.1:{}", free_port());
            let conf = dir.path().join("config.yml");
            std::fs::write(
                &conf,
                format!(
                    "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: true\n\
                     storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
                     http:\n  addr: {addr}\n{extra}{auth}",
                    storage.display()
                ),
            )
            .unwrap();
            let mut child = Command::new(REGISTRY_BIN)
                .arg("serve")
                .arg(&conf)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start docker-registry");
            let stderr = child.stderr.take().unwrap();
            let (tx, rx) = mpsc::channel();
            std::thread::spawn(move || {
                let mut log = String::new();
                let mut told = false;
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if !told && line.contains("listening on") {
                        told = true;
                        let _ = tx.send(Ok(()));
                    } else if !told {
                        log.push_str(&line);
                        log.push('\n');
                    }
                }
                if !told {
                    let _ = tx.send(Err(log));
                }
            });
            match rx.recv_timeout(Duration::from_secs(30)) {
                Ok(Ok(())) => {
                    return Registry {
                        addr,
                        storage,
                        child,
                        dir,
                    }
                }
                Ok(Err(log)) => last = log,
                Err(_) => last = "no \"listening on\" within 30 s".into(),
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("docker-registry did not start: {last}");
    }

    pub fn image(&self, repo: &str) -> String {
        format!("{}/{repo}", self.addr)
    }

    /// Every blob data file in the registry's storage, largest first.
    pub fn blob_files(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let mut stack = vec![self.storage.clone()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap().flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.ends_with("data") && p.to_string_lossy().contains("/blobs/sha256/") {
                    out.push((std::fs::metadata(&p).unwrap().len(), p));
                }
            }
        }
        out.sort_by_key(|e| std::cmp::Reverse(e.0));
        out.into_iter().map(|(_, p)| p).collect()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A store usable by any user (ids folded to 0).
pub fn store(dir: &Path) -> Store {
    Store::open(
        dir,
        IdMap {
            uid_count: 1,
            gid_count: 1,
        },
    )
    .unwrap()
}

/// A small root filesystem tar with `size` bytes of pseudo-random payload (incompressible, so
/// the blob really is that large).
pub fn rootfs_tar(tag: &str, size: usize) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |name: &str, data: &[u8], mode: u32| {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(mode);
        h.set_mtime(1_700_000_000);
        b.append_data(&mut h, name, data).unwrap();
    };
    add("etc/tag", tag.as_bytes(), 0o644);
    let mut x: u64 = 0x9e3779b97f4a7c15 ^ tag.len() as u64;
    let payload: Vec<u8> = (0..size)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    add("data/blob", &payload, 0o644);
    b.into_inner().unwrap()
}

/// Import a rootfs as `name` into `store`.
pub fn import(store: &Store, name: &str, tag: &str, size: usize) -> ImageRecord {
    store
        .import_rootfs(&rootfs_tar(tag, size)[..], Some(name), &[])
        .unwrap()
}
