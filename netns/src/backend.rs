//! Which user-mode network helper bridges a namespace, with its options as Podman spells them
//! (`--network=slirp4netns:mtu=1500,...`, `--network=pasta:-T,8080`), and which helpers are
//! installed. Only parsing and discovery live here; running a helper is in `slirp4netns.rs`
//! and `pasta.rs`.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::str::FromStr;

use crate::{Error, Result};

/// A helper with its options. Parse with [`str::parse`]: `pasta`, `pasta:OPT,OPT...`,
/// `slirp4netns`, `slirp4netns:key=value,...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    Pasta(PastaOptions),
    Slirp4netns(Slirp4netnsOptions),
}

/// pasta's options are passed through verbatim, one argument per comma-separated item, as
/// Podman does (`pasta:-T,8080` -> `-T 8080`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PastaOptions {
    pub args: Vec<String>,
}

/// Who forwards published ports for slirp4netns (`port_handler=`, Podman's names).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PortHandler {
    /// slirp4netns itself, through `add_hostfwd` on its API socket: the container sees every
    /// client as 10.0.2.2.
    Slirp4netns,
    /// The caller's forwarder (Podman's rootlessport; rbox's own, [`crate::Forwarder`]), which
    /// keeps the client's address. The default, as in Podman.
    #[default]
    Rootlesskit,
}

/// slirp4netns options, Podman's names and defaults (see podman-run(1), `--network`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slirp4netnsOptions {
    /// `allow_host_loopback=true`: the container reaches the host's 127.0.0.1 at 10.0.2.2.
    pub allow_host_loopback: bool,
    /// `cidr=10.0.2.0/24`: the guest network (slirp4netns `--cidr`).
    pub cidr: Option<String>,
    /// `enable_ipv6=true`.
    pub enable_ipv6: bool,
    /// `mtu=N` (default 65520).
    pub mtu: u32,
    /// `outbound_addr=IP` and `outbound_addr6=IP`: the host address for outgoing traffic.
    pub outbound_addr: Option<String>,
    pub outbound_addr6: Option<String>,
    pub port_handler: PortHandler,
}

impl Default for Slirp4netnsOptions {
    fn default() -> Self {
        Slirp4netnsOptions {
            allow_host_loopback: false,
            cidr: None,
            enable_ipv6: false,
            mtu: 65520,
            outbound_addr: None,
            outbound_addr6: None,
            port_handler: PortHandler::default(),
        }
    }
}

impl Backend {
    /// The helper's program name: `pasta` or `slirp4netns`.
    pub fn name(&self) -> &'static str {
        match self {
            Backend::Pasta(_) => "pasta",
            Backend::Slirp4netns(_) => "slirp4netns",
        }
    }

    /// Whether the helper itself forwards the published ports (`slirp4netns:port_handler=
    /// slirp4netns`); otherwise they are the caller's forwarder's. pasta's own forwarding is
    /// not used: it cannot keep a loopback client's address, and its ports die with it.
    pub fn forwards_ports(&self) -> bool {
        matches!(self, Backend::Slirp4netns(o) if o.port_handler == PortHandler::Slirp4netns)
    }

    /// pasta when installed, else slirp4netns (Podman 5's rule), with default options.
    pub fn default_for(installed: &Installed) -> Backend {
        if installed.pasta.is_some() {
            Backend::Pasta(PastaOptions::default())
        } else {
            Backend::Slirp4netns(Slirp4netnsOptions::default())
        }
    }
}

impl FromStr for Backend {
    type Err = Error;

    fn from_str(spec: &str) -> Result<Backend> {
        let bad = |reason: String| Error::InvalidNetwork {
            spec: spec.to_string(),
            reason,
        };
        let (name, opts) = match spec.split_once(':') {
            Some((n, o)) => (n, Some(o)),
            None => (spec, None),
        };
        let items = || opts.into_iter().flat_map(|o| o.split(','));
        match name {
            "pasta" => {
                let args: Vec<String> = items().map(str::to_string).collect();
                if args.iter().any(String::is_empty) {
                    return Err(bad("empty pasta option".to_string()));
                }
                Ok(Backend::Pasta(PastaOptions { args }))
            }
            "slirp4netns" => {
                let mut o = Slirp4netnsOptions::default();
                for item in items() {
                    let (key, value) = item
                        .split_once('=')
                        .ok_or_else(|| bad(format!("`{item}` is not key=value")))?;
                    let flag = |v: &str| match v {
                        "true" => Ok(true),
                        "false" => Ok(false),
                        _ => Err(bad(format!("{key} must be true or false, not `{v}`"))),
                    };
                    let ip = |v: &str| {
                        v.parse::<IpAddr>()
                            .map(|_| v.to_string())
                            .map_err(|_| bad(format!("{key}: `{v}` is not an IP address")))
                    };
                    match key {
                        "allow_host_loopback" => o.allow_host_loopback = flag(value)?,
                        "enable_ipv6" => o.enable_ipv6 = flag(value)?,
                        "cidr" => {
                            let ok = value.split_once('/').is_some_and(|(a, n)| {
                                a.parse::<std::net::Ipv4Addr>().is_ok()
                                    && n.parse::<u8>().is_ok_and(|n| n <= 32)
                            });
                            if !ok {
                                return Err(bad(format!("cidr: `{value}` is not an IPv4 CIDR")));
                            }
                            o.cidr = Some(value.to_string());
                        }
                        "mtu" => {
                            o.mtu = value
                                .parse()
                                .ok()
                                .filter(|m| (68..=65521).contains(m))
                                .ok_or_else(|| {
                                    bad(format!("mtu: `{value}` is not a number in 68-65521"))
                                })?
                        }
                        "outbound_addr" => o.outbound_addr = Some(ip(value)?),
                        "outbound_addr6" => o.outbound_addr6 = Some(ip(value)?),
                        "port_handler" => {
                            o.port_handler = match value {
                                "slirp4netns" => PortHandler::Slirp4netns,
                                "rootlesskit" => PortHandler::Rootlesskit,
                                _ => {
                                    let why = "must be slirp4netns or rootlesskit";
                                    return Err(bad(format!("port_handler {why}, not `{value}`")));
                                }
                            }
                        }
                        _ => return Err(bad(format!("unknown slirp4netns option `{key}`"))),
                    }
                }
                Ok(Backend::Slirp4netns(o))
            }
            _ => Err(bad(
                "expected pasta[:OPTIONS] or slirp4netns[:OPTIONS]".to_string()
            )),
        }
    }
}

/// One installed helper, for `rbox info`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tool {
    pub path: PathBuf,
    /// The first line of `--version` (for pasta builds that say "unknown version", the Debian
    /// package version when dpkg knows it).
    pub version: String,
}

/// Which helpers are installed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Installed {
    pub pasta: Option<Tool>,
    pub slirp4netns: Option<Tool>,
}

impl Installed {
    pub fn get(&self, name: &str) -> Option<&Tool> {
        match name {
            "pasta" => self.pasta.as_ref(),
            "slirp4netns" => self.slirp4netns.as_ref(),
            _ => None,
        }
    }
}

/// Look for pasta and slirp4netns on `$PATH` and in Podman's helper directories, and ask
/// each its version (one short process each).
pub fn installed() -> Installed {
    let tool = |name: &str| {
        let path = find_helper(name)?;
        let version = version_of(&path, name);
        Some(Tool { path, version })
    };
    Installed {
        pasta: tool("pasta"),
        slirp4netns: tool("slirp4netns"),
    }
}

/// The helper a container gets without `--network`: `pasta` when installed, else
/// `slirp4netns` (which then says how to install it if it is missing too). Looks only for
/// the programs, unlike [`installed`], which also asks their versions.
pub fn default_backend_name() -> &'static str {
    if find_helper("pasta").is_some() {
        "pasta"
    } else {
        "slirp4netns"
    }
}

/// Podman's default `helper_binaries_dir` (containers.conf(5)), searched after `$PATH`.
const HELPER_DIRS: &[&str] = &[
    "/usr/local/libexec/podman",
    "/usr/local/lib/podman",
    "/usr/libexec/podman",
    "/usr/lib/podman",
];

pub(crate) fn find_helper(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(HELPER_DIRS.iter().map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

pub(crate) fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn version_of(path: &Path, name: &str) -> String {
    let first_line = |cmd: &mut Command| {
        cmd.stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .next()
                    .map(|l| l.trim().to_string())
            })
            .filter(|l| !l.is_empty())
    };
    let line = first_line(Command::new(path).arg("--version")).unwrap_or_default();
    if name == "pasta" && (line.is_empty() || line.contains("unknown version")) {
        // Debian builds of passt print "pasta unknown version"; the package knows better.
        if let Some(v) =
            first_line(Command::new("dpkg-query").args(["-W", "-f=${Version}", "passt"]))
        {
            return format!("pasta {v}");
        }
    }
    if line.is_empty() {
        "unknown version".to_string()
    } else {
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_backends() {
        assert_eq!(
            "pasta".parse::<Backend>().unwrap(),
            Backend::Pasta(PastaOptions::default())
        );
        assert_eq!(
            "pasta:-T,8080,--ipv4-only".parse::<Backend>().unwrap(),
            Backend::Pasta(PastaOptions {
                args: vec!["-T".into(), "8080".into(), "--ipv4-only".into()]
            })
        );
        assert_eq!(
            "slirp4netns".parse::<Backend>().unwrap(),
            Backend::Slirp4netns(Slirp4netnsOptions::default())
        );
        let b: Backend = "slirp4netns:allow_host_loopback=true,mtu=1500,cidr=10.0.3.0/24,port_handler=rootlesskit,enable_ipv6=true,outbound_addr=192.0.2.1"
            .parse()
            .unwrap();
        assert_eq!(
            b,
            Backend::Slirp4netns(Slirp4netnsOptions {
                allow_host_loopback: true,
                cidr: Some("10.0.3.0/24".into()),
                enable_ipv6: true,
                mtu: 1500,
                outbound_addr: Some("192.0.2.1".into()),
                outbound_addr6: None,
                port_handler: PortHandler::Rootlesskit,
            })
        );
        assert_eq!(b.name(), "slirp4netns");
    }

    #[test]
    fn refuse_bad_backends() {
        for (spec, reason) in [
            (
                "bridge",
                "expected pasta[:OPTIONS] or slirp4netns[:OPTIONS]",
            ),
            ("slirp4netns:mtu", "`mtu` is not key=value"),
            ("slirp4netns:mtu=big", "mtu: `big` is not a number"),
            (
                "slirp4netns:allow_host_loopback=yes",
                "must be true or false",
            ),
            ("slirp4netns:cidr=10.0.2.0", "not an IPv4 CIDR"),
            ("slirp4netns:port_handler=x", "port_handler must be"),
            (
                "slirp4netns:color=blue",
                "unknown slirp4netns option `color`",
            ),
            ("pasta:-T,,8080", "empty pasta option"),
        ] {
            let err = spec.parse::<Backend>().unwrap_err().to_string();
            assert!(
                err.starts_with(&format!("invalid network `{spec}`: ")) && err.contains(reason),
                "{spec}: {err}"
            );
        }
    }

    #[test]
    fn default_prefers_pasta() {
        let tool = Tool {
            path: "/usr/bin/x".into(),
            version: "1".into(),
        };
        let both = Installed {
            pasta: Some(tool.clone()),
            slirp4netns: Some(tool.clone()),
        };
        assert_eq!(Backend::default_for(&both).name(), "pasta");
        let slirp_only = Installed {
            pasta: None,
            slirp4netns: Some(tool),
        };
        assert_eq!(Backend::default_for(&slirp_only).name(), "slirp4netns");
        assert_eq!(
            Backend::default_for(&Installed::default()).name(),
            "slirp4netns"
        );
    }
}
