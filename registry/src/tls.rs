//! TLS trust for one registry host, as containers-certs.d(5) describes it: the system CA
//! bundle plus every `*.crt` in the host's certs.d directory (`--cert-dir` replaces those
//! directories), and a client certificate from a `*.cert` / `*.key` pair there.
//!
//! Directories searched for host `H` (with its port, e.g. `127.0.0.1:5000`):
//! `$XDG_CONFIG_HOME/containers/certs.d/H`, `/etc/containers/certs.d/H`,
//! `/etc/docker/certs.d/H`. The system bundle is `$SSL_CERT_FILE` or
//! `/etc/ssl/certs/ca-certificates.crt`; without one, Mozilla's roots compiled into the binary.
//! This module only builds the configuration; connections are the client's.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ureq::tls::{parse_pem, Certificate, ClientCert, PemItem, PrivateKey, RootCerts, TlsConfig};

use crate::{Error, Result};

/// The certs.d directories for `host`, in order.
pub fn cert_dirs(host: &str, cert_dir: Option<&Path>) -> Vec<PathBuf> {
    if let Some(d) = cert_dir {
        return vec![d.to_path_buf()];
    }
    let mut v = Vec::new();
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".config"))
        });
    if let Some(c) = config {
        v.push(c.join("containers/certs.d").join(host));
    }
    v.push(Path::new("/etc/containers/certs.d").join(host));
    v.push(Path::new("/etc/docker/certs.d").join(host));
    v
}

fn system_roots() -> &'static Option<Vec<Certificate<'static>>> {
    static ROOTS: OnceLock<Option<Vec<Certificate<'static>>>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let file = std::env::var_os("SSL_CERT_FILE")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/etc/ssl/certs/ca-certificates.crt"));
        let data = std::fs::read(file).ok()?;
        let certs: Vec<Certificate<'static>> = parse_pem(&data)
            .filter_map(|i| match i {
                Ok(PemItem::Certificate(c)) => Some(c),
                _ => None,
            })
            .collect();
        (!certs.is_empty()).then_some(certs)
    })
}

/// What the certs.d directories hold for one host.
#[derive(Default)]
pub struct HostCerts {
    pub cas: Vec<Certificate<'static>>,
    pub client: Option<ClientCert>,
    /// The files read, for messages.
    pub files: Vec<PathBuf>,
}

/// Read `*.crt` CAs and the first `*.cert`/`*.key` pair from `dirs` (missing dirs are fine).
pub fn read_host_certs(dirs: &[PathBuf]) -> Result<HostCerts> {
    let mut out = HostCerts::default();
    for d in dirs {
        let rd = match std::fs::read_dir(d) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io(format!("read `{}`", d.display()), e)),
        };
        let mut files: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
        files.sort();
        for f in files {
            let ext = f.extension().and_then(|e| e.to_str()).unwrap_or("");
            match ext {
                "crt" => {
                    let certs = read_pem_certs(&f)?;
                    out.cas.extend(certs);
                    out.files.push(f);
                }
                "cert" if out.client.is_none() => {
                    let key = f.with_extension("key");
                    if !key.exists() {
                        return Err(Error::Certificates {
                            path: f.clone(),
                            message: format!("missing key `{}`", key.display()),
                        });
                    }
                    let chain = read_pem_certs(&f)?;
                    let key_pem = std::fs::read(&key)
                        .map_err(|e| Error::io(format!("read `{}`", key.display()), e))?;
                    let key_der =
                        PrivateKey::from_pem(&key_pem).map_err(|e| Error::Certificates {
                            path: key.clone(),
                            message: e.to_string(),
                        })?;
                    out.client = Some(ClientCert::new_with_certs(&chain, key_der));
                    out.files.push(f);
                    out.files.push(key);
                }
                _ => {}
            }
        }
    }
    Ok(out)
}

fn read_pem_certs(f: &Path) -> Result<Vec<Certificate<'static>>> {
    let data = std::fs::read(f).map_err(|e| Error::io(format!("read `{}`", f.display()), e))?;
    let mut certs = Vec::new();
    for item in parse_pem(&data) {
        match item {
            Ok(PemItem::Certificate(c)) => certs.push(c),
            Ok(_) => {}
            Err(e) => {
                return Err(Error::Certificates {
                    path: f.to_path_buf(),
                    message: e.to_string(),
                })
            }
        }
    }
    if certs.is_empty() {
        return Err(Error::Certificates {
            path: f.to_path_buf(),
            message: "no PEM certificate in the file".into(),
        });
    }
    Ok(certs)
}

/// The TLS configuration for `host`. `verify = false` accepts any certificate.
pub fn tls_config(host: &str, cert_dir: Option<&Path>, verify: bool) -> Result<TlsConfig> {
    let host_certs = read_host_certs(&cert_dirs(host, cert_dir))?;
    let roots = match (system_roots(), host_certs.cas.is_empty()) {
        (None, true) => RootCerts::WebPki,
        (sys, _) => {
            let mut all: Vec<Certificate<'static>> = sys.clone().unwrap_or_default();
            all.extend(host_certs.cas);
            RootCerts::new_with_certs(&all)
        }
    };
    Ok(TlsConfig::builder()
        .root_certs(roots)
        .client_cert(host_certs.client)
        .disable_verification(!verify)
        .build())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dirs_for_host() {
        let d = cert_dirs("127.0.0.1:5000", None);
        assert!(d.contains(&PathBuf::from("/etc/containers/certs.d/127.0.0.1:5000")));
        assert!(d.contains(&PathBuf::from("/etc/docker/certs.d/127.0.0.1:5000")));
        let own = PathBuf::from("/my/certs");
        assert_eq!(cert_dirs("x", Some(&own)), vec![own]);
    }

    #[test]
    fn bad_certificate_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.crt"), "not a certificate\n").unwrap();
        let e = read_host_certs(&[dir.path().to_path_buf()]).err().unwrap();
        assert!(e.to_string().contains("ca.crt"), "{e}");
        std::fs::remove_file(dir.path().join("ca.crt")).unwrap();
        std::fs::write(dir.path().join("client.cert"), "x").unwrap();
        let e = read_host_certs(&[dir.path().to_path_buf()]).err().unwrap();
        assert!(e.to_string().contains("client.key"), "{e}");
        // Missing directories are simply empty.
        let none = read_host_certs(&[dir.path().join("nope")]).unwrap();
        assert!(none.cas.is_empty() && none.client.is_none());
    }
}
