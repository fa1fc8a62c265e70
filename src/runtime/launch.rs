//! Launch: a container's OCI runtime spec (`config.json`, written at create) and rbox's record
//! -> what its processes need ([`Launch`]): the mount plan, the command, the id maps of
//! keep-id, the seccomp program, the /etc files. Runs in the process that will be
//! the container's parent (`rbox run`, `rbox start`, or the monitor of `run -d`), before any
//! clone; besides writing the container's /etc files it only reads.

use std::fs;
use std::os::fd::RawFd;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use rbox_storage::Store;

use oci_spec::runtime::Spec as OciSpec;

use super::mounts::{self, Op};
use super::{caps, netshare, oci, process, seccomp, terminal, userns};
use crate::context::Context;
use crate::layout;
use crate::state::{self, ContainerRecord};

/// Everything the container's init needs, computed before the clone.
pub struct Launch {
    /// the command, as the spec's process says
    pub command: process::Command,
    pub hostname: String,
    /// `--init`: PID 1 is rbox's reaper and the command its child
    pub init: bool,
    /// stdin stays attached (`-i`)
    pub interactive: bool,
    pub ops: Vec<Op>,
    /// where the new root is assembled before pivot_root
    pub target: PathBuf,
    /// only uid/gid 0 exist in the user namespace
    pub single_id: bool,
    pub own_net: bool,
    /// the network namespace the init is cloned in (`container:`, `ns:`), entered by the
    /// parent around the clone
    pub join_net: Option<netshare::NetNs>,
    /// stdin/stdout/stderr for the container when there is no terminal (detached: a log file)
    pub stdio: Option<[RawFd; 3]>,
    /// a nested user namespace (`--userns=keep-id`) with this uid_map and gid_map text,
    /// written by the parent at the first sync point
    pub user_maps: Option<(String, String)>,
    /// With `-t`, the caller's window size, set on the container's terminal before exec
    /// (the command may ask for it at once, before rbox relays anything)
    pub winsize: Option<libc::winsize>,
    /// the seccomp program the command runs under (compiled here, installed by the child)
    pub seccomp: Option<Vec<libc::sock_filter>>,
}

/// The id maps of a keep-id container: the caller's own uid/gid inside map to rbox's
/// namespace root (the caller outside); every other id keeps a place from the range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeepId {
    pub uid: u32,
    pub gid: u32,
    pub uid_count: u32,
    pub gid_count: u32,
}

impl KeepId {
    /// uid_map/gid_map text for `id` with `count` ids available in rbox's namespace.
    pub fn map(id: u32, count: u32) -> String {
        let mut m = String::new();
        if count > 1 {
            // inside 0..id come from outside 1..=id (when the range is big enough)
            let n = id.min(count - 1);
            if n > 0 {
                m.push_str(&format!("0 1 {n}\n"));
            }
        }
        m.push_str(&format!("{id} 0 1\n"));
        if count > id + 1 {
            m.push_str(&format!("{} {} {}\n", id + 1, id + 1, count - id - 1));
        }
        m
    }
}

/// The launch plan of `rec`, from its stored OCI runtime spec (`config.json`); `stdio`
/// replaces the container's stdin, stdout and stderr (a detached container's log).
pub fn plan(
    g: &Context,
    store: &Store,
    rec: &ContainerRecord,
    stdio: Option<[i32; 3]>,
) -> Result<Launch> {
    let dir = store.container_dir(&rec.id)?;
    // the image's own working directory may be created at start; a `-w` one must exist
    let image_workdir = match rec.rootfs {
        Some(_) => None,
        None => {
            let image = store.lookup_image(&rec.image_id).with_context(|| {
                format!("image {} of container {} is gone", &rec.image_id, rec.name)
            })?;
            store
                .image_config(&image)
                .ok()
                .and_then(|c| c.config().as_ref()?.working_dir().clone())
        }
    };
    // `container:`'s namespace is the target's as it runs now: the path in config.json names
    // the pid it had at create
    let target_net = match rec.spec.network {
        state::NetworkMode::Container => {
            Some(netshare::of_container(g, &rec.spec.network_options)?)
        }
        _ => None,
    };
    let spec = config(
        store.root(),
        rec,
        target_net.as_ref().map(|n| n.path.as_path()),
    )?;
    let rootfs = store
        .rootfs(rec.driver, &dir, rec.auto_remove)
        .context("create empty lower layer")?;
    let hostname = oci::hostname(&spec);
    write_etc(&dir.dir, rec, &hostname)?;
    let single_id = userns::current_mode() == userns::Mode::Single;
    let bad = |e: anyhow::Error| {
        let path = layout::oci_config(store.root(), &rec.id);
        e.context(format!("container {}: `{}`", rec.name, path.display()))
    };
    let ops = oci::mount_ops(&spec, rootfs).map_err(bad)?;
    let process = oci::process(&spec).map_err(bad)?;
    let ns = oci::namespaces(&spec).map_err(bad)?;
    let join_net = match (target_net, &ns.join_net) {
        (Some(n), _) => Some(n),
        (None, Some(p)) => Some(netshare::open(p)?),
        (None, None) => None,
    };
    // Every container assembles its root on this one directory, each in its own mount
    // namespace. A per-container mount point would have to be removed after exit, and
    // removing a directory that is still a mount point in a dying namespace waits for the
    // kernel's namespace teardown (tens of milliseconds).
    let target = layout::mount_point(store.root());
    fs::create_dir_all(&target).with_context(|| format!("create `{}`", target.display()))?;
    let seccomp =
        seccomp_program(&spec, Some(&layout::seccomp_cache(store.root()))).map_err(bad)?;
    let winsize = if process.terminal {
        terminal::caller_winsize()
    } else {
        None
    };
    Ok(Launch {
        command: command(
            process,
            rec,
            &hostname,
            ns.user_maps.is_some(),
            image_workdir.as_deref(),
        ),
        hostname,
        init: rec.spec.init,
        interactive: rec.spec.interactive,
        ops,
        target,
        single_id,
        own_net: ns.own_net,
        join_net,
        stdio,
        user_maps: ns.user_maps,
        winsize,
        seccomp,
    })
}

/// The command of `process`, with the exact bytes of arguments that are not UTF-8 (JSON holds
/// only text: the record keeps them) while the spec's arguments are the ones recorded. Its
/// working directory is created when missing only if it is the image's (`image_workdir`).
pub fn command(
    process: oci::Process,
    rec: &ContainerRecord,
    hostname: &str,
    own_userns: bool,
    image_workdir: Option<&str>,
) -> process::Command {
    let clean = |p: &str| Path::new(p).components().collect::<PathBuf>();
    let missing_cwd = match image_workdir {
        Some(w) if !w.is_empty() && clean(w) == clean(&process.cwd) => process::MissingCwd::Create,
        _ => process::MissingCwd::Refuse(rec.id.clone()),
    };
    let argv = if process.args == rec.spec.args {
        rec.spec.argv()
    } else {
        process.args.iter().map(Into::into).collect()
    };
    process::Command {
        process,
        argv,
        hostname: hostname.to_string(),
        own_userns,
        missing_cwd,
        preserve_fds: 0,
    }
}

/// The container's OCI runtime spec: its `config.json`, written at create. A container
/// created before rbox wrote one gets it now, from its record.
pub fn config(root: &Path, rec: &ContainerRecord, net: Option<&Path>) -> Result<OciSpec> {
    let path = layout::oci_config(root, &rec.id);
    if !path.exists() {
        write_config(root, rec, false, net)?;
    }
    oci::load(&path)
}

/// Write the container's `config.json` from its record, for this caller's id mapping;
/// `fresh` for a container being created (see [`oci::save`]); `net` is the network namespace
/// it joins (`container:`, `ns:`).
pub fn write_config(
    root: &Path,
    rec: &ContainerRecord,
    fresh: bool,
    net: Option<&Path>,
) -> Result<()> {
    let mode = userns::current_mode();
    let dir = layout::container_dir(root, &rec.id);
    let [mut hosts, hostname, mut resolv] = layout::etc_files(&dir);
    if rec.spec.network == state::NetworkMode::Container {
        // as in Podman: the names and the resolver of the container whose network it shares
        let [h, _, r] = layout::etc_files(&layout::container_dir(root, &rec.spec.network_options));
        (hosts, resolv) = (h, r);
    }
    let etc = mounts::EtcFiles {
        hosts,
        hostname,
        resolv,
    };
    let s = &rec.spec;
    let last_cap = caps::last_cap();
    let kept = caps::kept(&s.cap_add, &s.cap_drop, s.privileged, last_cap)?;
    let host = oci::Host {
        single_id: mode == userns::Mode::Single,
        keep_id: keep_id(&mode, s),
        last_cap,
        seccomp: seccomp::filter(&s.seccomp, s.privileged, kept).context("build seccomp filter")?,
        net_path: net.map(Path::to_path_buf),
    };
    let spec = oci::build(s, &etc, &host).context("build the OCI runtime spec")?;
    oci::save(&layout::oci_config(root, &rec.id), &spec, fresh)
}

/// Write /etc/hosts, /etc/hostname and /etc/resolv.conf for the container.
fn write_etc(dir: &Path, rec: &ContainerRecord, host: &str) -> Result<mounts::EtcFiles> {
    let [hosts, hostname, resolv] = layout::etc_files(dir);
    let files = mounts::EtcFiles {
        hosts,
        hostname,
        resolv,
    };
    let backend = rec.spec.backend()?;
    let host_resolv = fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    if !rec.spec.no_hosts {
        let host_address = backend.as_ref().and_then(|b| {
            let route = fs::read_to_string("/proc/net/route").unwrap_or_default();
            rbox_netns::names::host_address(b, rbox_netns::names::default_gateway(&route))
        });
        let text = hosts_text(&rec.spec, &rec.name, host, host_address);
        fs::write(&files.hosts, text).context("write hosts")?;
    }
    fs::write(&files.hostname, format!("{host}\n")).context("write hostname")?;
    let resolv = resolv_text(&rec.spec, backend.as_ref(), &host_resolv);
    fs::write(&files.resolv, resolv).context("write resolv.conf")?;
    Ok(files)
}

/// The container's /etc/hosts: localhost, `--add-host`'s lines, `host.containers.internal`
/// and `host.docker.internal` at `host_address` (an address that reaches the host, when the
/// network has one), and the container's own hostname and name.
fn hosts_text(
    s: &state::Spec,
    name: &str,
    hostname: &str,
    host_address: Option<std::net::IpAddr>,
) -> String {
    let mut hosts = String::from(
        "127.0.0.1\tlocalhost localhost.localdomain\n::1\tlocalhost localhost.localdomain\n",
    );
    for (name, ip) in &s.add_hosts {
        hosts.push_str(&format!("{ip}\t{name}\n"));
    }
    // --add-host's own line for either name wins (the first match is the one resolvers use)
    if let Some(ip) = host_address {
        hosts.push_str(&format!(
            "{ip}\thost.containers.internal host.docker.internal\n"
        ));
    }
    hosts.push_str(&format!("127.0.1.1\t{hostname} {name}\n"));
    hosts
}

/// The container's resolv.conf from the host's: the host's own with `--network=host`;
/// slirp4netns's forwarder (10.0.2.3) with slirp4netns; otherwise the host's nameservers the
/// container can reach (never a loopback one: it is another network namespace's), after
/// pasta's forwarding address when pasta forwards (the host names only loopback resolvers,
/// or `pasta:--dns-forward,ADDR`). The host's search and options lines are kept; the
/// `--dns*` flags replace their kind of line.
fn resolv_text(
    s: &state::Spec,
    backend: Option<&rbox_netns::Backend>,
    host_resolv: &str,
) -> String {
    let resolv = if s.network == state::NetworkMode::Host {
        host_resolv.to_string()
    } else {
        let mut r = String::new();
        let forwarder = match backend {
            Some(rbox_netns::Backend::Slirp4netns(_)) => Some("10.0.2.3".parse().unwrap()),
            Some(rbox_netns::Backend::Pasta(o)) => {
                rbox_netns::names::pasta_dns_forward(o, host_resolv)
            }
            None => None,
        };
        if let Some(a) = forwarder {
            r.push_str(&format!("nameserver {a}\n"));
        }
        let slirp = matches!(backend, Some(rbox_netns::Backend::Slirp4netns(_)));
        for l in host_resolv.lines() {
            let server = rbox_netns::names::nameservers(l);
            let unreachable = server.iter().any(|a| a.is_loopback());
            let is_server = l.split_whitespace().next() == Some("nameserver");
            if (is_server && slirp) || unreachable {
                continue;
            }
            r.push_str(l);
            r.push('\n');
        }
        r
    };
    with_dns_flags(&resolv, s)
}

/// `resolv` with what `--dns`, `--dns-search` and `--dns-option` replace (each replaces
/// the lines of its kind; a search of "." means none).
fn with_dns_flags(resolv: &str, s: &state::Spec) -> String {
    let mut out = String::new();
    for l in resolv.lines() {
        let kind = l.split_whitespace().next().unwrap_or("");
        let replaced = match kind {
            "nameserver" => !s.dns.is_empty(),
            "search" | "domain" => !s.dns_search.is_empty(),
            "options" => !s.dns_options.is_empty(),
            _ => false,
        };
        if !replaced {
            out.push_str(l);
            out.push('\n');
        }
    }
    let search: Vec<&str> = s
        .dns_search
        .iter()
        .map(String::as_str)
        .filter(|d| *d != ".")
        .collect();
    if !search.is_empty() {
        out.push_str(&format!("search {}\n", search.join(" ")));
    }
    for d in &s.dns {
        out.push_str(&format!("nameserver {d}\n"));
    }
    if !s.dns_options.is_empty() {
        out.push_str(&format!("options {}\n", s.dns_options.join(" ")));
    }
    out
}

/// The seccomp program of a container's processes (its own command and `exec`): the filter
/// in its spec, compiled in rbox before any fork (or read from `cache`); `None` when it runs
/// unconfined.
pub fn seccomp_program(
    spec: &OciSpec,
    cache: Option<&Path>,
) -> Result<Option<Vec<libc::sock_filter>>> {
    let Some(s) = spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) else {
        return Ok(None);
    };
    let filter = seccomp::Filter::from_oci(s)?;
    seccomp::compiled(&filter, cache)
        .map(Some)
        .context("build seccomp filter")
}

/// `--userns=keep-id` for a non-root caller: run as the caller's own uid and gid inside (the
/// spec's user, unless `-u` named one).
fn keep_id(mode: &userns::Mode, spec: &state::Spec) -> Option<KeepId> {
    if spec.userns != state::UsernsMode::KeepId || *mode == userns::Mode::Root {
        return None;
    }
    // inside rbox's namespace we are root; the caller's host ids are what keep-id keeps
    let (huid, hgid) = userns::host_ids();
    let ids = mode.idmap();
    Some(KeepId {
        uid: huid,
        gid: hgid,
        uid_count: ids.uid_count,
        gid_count: ids.gid_count,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{ContainerRecord, Spec, State};

    fn record(spec: Spec) -> ContainerRecord {
        ContainerRecord {
            id: "0".repeat(64),
            name: "c".into(),
            image: "busybox".into(),
            image_name: "localhost/busybox:latest".into(),
            image_id: "1".repeat(64),
            rootfs: None,
            image_digest: format!("sha256:{}", "2".repeat(64)),
            created: String::new(),
            driver: rbox_storage::Driver::Overlay,
            auto_remove: false,
            spec,
            state: State::created(),
        }
    }

    fn spec_of(rec: &ContainerRecord) -> OciSpec {
        let etc = mounts::EtcFiles {
            hosts: "/c/hosts".into(),
            hostname: "/c/hostname".into(),
            resolv: "/c/resolv.conf".into(),
        };
        let host = oci::Host {
            single_id: false,
            keep_id: None,
            last_cap: 40,
            seccomp: None,
            net_path: None,
        };
        oci::build(&rec.spec, &etc, &host).unwrap()
    }

    /// The command comes from the spec's process; a non-UTF-8 argument keeps its exact bytes
    /// from the record as long as the spec's arguments are the recorded ones.
    #[test]
    fn the_command_is_the_specs_with_the_records_exact_bytes() {
        use std::os::unix::ffi::OsStrExt;
        let mut spec = Spec {
            hostname: "box".into(),
            env: vec!["A=1".into()],
            ..Default::default()
        };
        spec.set_args(vec![
            "ls".into(),
            std::ffi::OsStr::from_bytes(b"caf\xe9").to_os_string(),
        ]);
        let rec = record(spec);
        let oci = spec_of(&rec);
        let p = oci::process(&oci).unwrap();
        let c = command(p.clone(), &rec, &oci::hostname(&oci), false, None);
        assert_eq!(c.argv[1].as_bytes(), b"caf\xe9");
        assert_eq!(c.hostname, "box");
        assert_eq!(c.process.env, ["A=1"]);
        assert!(!c.own_userns);

        // a spec whose command was changed runs that command, as text
        let mut edited = p;
        edited.args = vec!["echo".into(), "caf\u{e9}".into()];
        let c = command(edited, &rec, "box", false, None);
        assert_eq!(c.argv, ["echo", "caf\u{e9}"]);
    }

    #[test]
    fn keep_id_maps() {
        assert_eq!(
            KeepId::map(1000, 65537),
            "0 1 1000\n1000 0 1\n1001 1001 64536\n"
        );
        assert_eq!(KeepId::map(1000, 1), "1000 0 1\n");
        // a range smaller than the uid: what exists below it is mapped, nothing above
        assert_eq!(KeepId::map(1000, 501), "0 1 500\n1000 0 1\n");
    }

    #[test]
    fn resolv_names_only_servers_the_container_reaches() {
        let stub = "nameserver 127.0.0.53\noptions edns0 trust-ad\nsearch lan\n";
        let real = "nameserver 10.1.1.1\nnameserver 127.0.0.1\nsearch lan\n";
        let pasta: rbox_netns::Backend = "pasta".parse().unwrap();
        let slirp: rbox_netns::Backend = "slirp4netns".parse().unwrap();
        let spec = |network| Spec {
            network,
            ..Default::default()
        };
        let p = spec(state::NetworkMode::Pasta);
        assert_eq!(
            resolv_text(&p, Some(&pasta), stub),
            "nameserver 169.254.1.1\noptions edns0 trust-ad\nsearch lan\n"
        );
        assert_eq!(
            resolv_text(&p, Some(&pasta), real),
            "nameserver 10.1.1.1\nsearch lan\n"
        );
        let s = spec(state::NetworkMode::Slirp4netns);
        assert_eq!(
            resolv_text(&s, Some(&slirp), stub),
            "nameserver 10.0.2.3\noptions edns0 trust-ad\nsearch lan\n"
        );
        let n = spec(state::NetworkMode::None);
        assert_eq!(
            resolv_text(&n, None, real),
            "nameserver 10.1.1.1\nsearch lan\n"
        );
        let h = spec(state::NetworkMode::Host);
        assert_eq!(resolv_text(&h, None, stub), stub);
        // --dns wins over the forwarder
        let flagged = Spec {
            dns: vec!["192.0.2.53".into()],
            ..spec(state::NetworkMode::Pasta)
        };
        assert_eq!(
            resolv_text(&flagged, Some(&pasta), stub),
            "options edns0 trust-ad\nsearch lan\nnameserver 192.0.2.53\n"
        );
    }

    #[test]
    fn hosts_name_the_host_and_the_container() {
        let s = Spec {
            add_hosts: vec![("db".into(), "192.0.2.7".into())],
            ..Default::default()
        };
        assert_eq!(
            hosts_text(&s, "web", "abc123", Some("192.0.2.1".parse().unwrap())),
            "127.0.0.1\tlocalhost localhost.localdomain\n::1\tlocalhost localhost.localdomain\n\
             192.0.2.7\tdb\n192.0.2.1\thost.containers.internal host.docker.internal\n\
             127.0.1.1\tabc123 web\n"
        );
        assert!(!hosts_text(&s, "web", "abc123", None).contains("host.containers.internal"));
    }

    #[test]
    fn dns_flags_replace_their_kind_of_line() {
        let host = "search corp.example\nnameserver 10.1.1.1\noptions edns0\n# kept\n";
        let none = Spec::default();
        assert_eq!(with_dns_flags(host, &none), host);
        let s = Spec {
            dns: vec!["192.0.2.1".into(), "2001:db8::1".into()],
            dns_search: vec!["a.example".into(), "b.example".into()],
            dns_options: vec!["ndots:2".into()],
            ..Default::default()
        };
        assert_eq!(
            with_dns_flags(host, &s),
            "# kept\nsearch a.example b.example\nnameserver 192.0.2.1\nnameserver 2001:db8::1\noptions ndots:2\n"
        );
        let only_no_search = Spec {
            dns_search: vec![".".into()],
            ..Default::default()
        };
        assert_eq!(
            with_dns_flags(host, &only_no_search),
            "nameserver 10.1.1.1\noptions edns0\n# kept\n"
        );
    }
}
