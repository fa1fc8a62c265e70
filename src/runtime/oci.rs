//! rbox's container spec as an OCI runtime spec (`config.json`), and back. [`build`] turns the
//! record's [`state::Spec`] plus the facts of the starting host ([`Host`]) into an
//! [`oci_spec::runtime::Spec`]; [`mount_ops`] and [`process`] read such a spec back into what
//! the executor needs: the mount plan (`mounts::Op`s) and the command's [`Process`]. For every
//! spec `build` makes, `mount_ops` equals `mounts::plan` and `process` agrees with the record,
//! so moving the runtime onto the OCI spec changes no behaviour. Pure functions: nothing here
//! touches the host; executing the plan and the process is `mounts` and `process`.
//!
//! What the OCI spec says and how rbox reads it:
//! - user: a numeric `uid:gid` goes in `user.uid`/`user.gid`. Anything that needs the image's
//!   /etc/passwd (a name, `name:group`, a bare uid whose group comes from passwd, or nothing,
//!   written as `` (root without supplementary groups, as Podman) or `0` for nomap) goes in `user.username` with uid/gid 0 and is resolved inside the
//!   container at each start, as rbox always did (Podman also re-resolves the user per start,
//!   and so sees a passwd changed by the container). A numeric user is resolved the same way,
//!   for `HOME` and the supplementary groups of its passwd entry ([`User::resolve`]).
//! - env: as recorded; `HOME` and `HOSTNAME` are still added when missing at exec, since
//!   `HOME` depends on that resolution.
//! - capabilities: bounding = effective = permitted = what `caps::kept` keeps (a spec with other
//!   sets gets them as it says, see [`CapSets`]); inheritable and
//!   ambient empty.
//! - rlimits: `--ulimit`'s, as `RLIMIT_NOFILE` with soft and hard (`u64::MAX` unlimited);
//!   umask: `--umask`, else Podman's 0022.
//! - mounts: spelled as Podman's config.json spells them; `mqueue` and `cgroup` are mounted
//!   best-effort (some hosts refuse them in a user namespace), and `cgroup` means cgroup2, the
//!   only hierarchy rbox mounts. The /dev symlinks (ptmx, fd, std*, core) are the runtime's,
//!   as the OCI spec requires: they are made after /dev/pts.
//! - seccomp: the filter resolved at create (profile, architecture, kernel, capabilities) in
//!   OCI form; the runtime compiles it (cached by its content) at each start.
//!   Hooks: none in rbox's own specs; a bundle's run by `bundle`, `init` and `hooks`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use nix::mount::MsFlags;
use oci_spec::runtime::{
    Capabilities, LinuxCapabilities, LinuxCapabilitiesBuilder, LinuxIdMapping,
    LinuxIdMappingBuilder, LinuxNamespace, LinuxNamespaceType, Mount, Root, Spec as OciSpec,
};

use super::launch::KeepId;
use super::mounts::{self, EtcFiles, Op, Rootfs};
use super::process::{self as proc, Ident};
use super::{caps, seccomp};
use crate::state::{self, MountKind, NetworkMode};

/// The facts of the starting host that shape the spec besides the record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// only uid and gid 0 are mapped in rbox's user namespace (no subordinate range): gid 5
    /// does not exist, so devpts gets no `gid=5`
    pub single_id: bool,
    /// `--userns=keep-id` for a non-root caller: the maps of the nested user namespace
    pub keep_id: Option<KeepId>,
    /// `--userns=nomap`, `auto`, `--uidmap`/`--gidmap`: the uid_map and gid_map text of the
    /// container's own user namespace, in ids of rbox's (see `launch::own_maps`)
    pub id_maps: Option<(String, String)>,
    /// the highest capability the kernel knows (`caps::last_cap`): `--privileged` and
    /// `--cap-add ALL` keep everything up to it
    pub last_cap: u32,
    /// the container's seccomp filter, resolved for this kernel, architecture and the
    /// container's capabilities (`seccomp::filter`); `None` runs it unconfined
    pub seccomp: Option<seccomp::Filter>,
    /// the network namespace the container joins (`container:`, `ns:`)
    pub net_path: Option<PathBuf>,
}

/// Who the command runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum User {
    /// `uid:gid` by number, with extra groups from the spec's `additionalGids`
    Numeric {
        uid: u32,
        gid: u32,
        groups: Vec<u32>,
    },
    /// `user[:group]` to resolve in the container's /etc/passwd and /etc/group
    Name(String),
    /// `uid:gid` with exactly these supplementary groups, none taken from /etc/group (an OCI
    /// bundle's `process.user`, as the runtime spec says)
    Exact {
        uid: u32,
        gid: u32,
        groups: Vec<u32>,
    },
    /// `rbox exec`'s user: the inner one, whose supplementary groups are only those
    /// /etc/group lists it in (Podman's exec: `-u 0` has none, `-u 1000` not its own group)
    Exec(Box<User>),
}

impl User {
    /// The identity inside the container, from its passwd and group files: a name must exist
    /// there; a numeric uid found there takes its home and supplementary groups.
    pub fn resolve(&self, passwd: &str, group: &str) -> Result<Ident, String> {
        match self {
            // no user given: root, without supplementary groups (see `oci_user`)
            User::Name(n) if n.is_empty() => Ok(Ident {
                groups: Vec::new(),
                ..proc::resolve_user("0", passwd, group)?
            }),
            User::Name(n) => proc::resolve_user(n, passwd, group),
            User::Numeric { uid, gid, groups } => {
                let mut id = proc::resolve_user(&format!("{uid}:{gid}"), passwd, group)?;
                for g in groups {
                    if !id.groups.contains(g) {
                        id.groups.push(*g);
                    }
                }
                Ok(id)
            }
            User::Exact { uid, gid, groups } => {
                let id = proc::resolve_user(&format!("{uid}:{gid}"), passwd, group)?;
                Ok(Ident {
                    groups: groups.clone(),
                    ..id
                })
            }
            User::Exec(u) => {
                let mut id = u.resolve(passwd, group)?;
                // resolve_user puts the primary group first; memberships follow
                if id.groups.first() == Some(&id.gid) {
                    id.groups.remove(0);
                }
                Ok(id)
            }
        }
    }
}

impl std::fmt::Display for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            User::Numeric { uid, gid, .. } | User::Exact { uid, gid, .. } => {
                write!(f, "{uid}:{gid}")
            }
            User::Name(n) => f.write_str(n),
            User::Exec(u) => u.fmt(f),
        }
    }
}

/// personality(2) personas of the OCI spec's domains (`<linux/personality.h>`; not in libc).
const PER_LINUX: libc::c_ulong = 0;
const PER_LINUX32: libc::c_ulong = 0x0008;

/// What the container's process needs to run its command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Process {
    pub args: Vec<String>,
    pub env: Vec<String>,
    /// absolute; created at start when missing
    pub cwd: String,
    pub user: User,
    /// the bounding, effective and permitted set, as `caps::kept` returns it
    pub caps: u64,
    /// a spec whose sets differ (an OCI bundle's): the effective, permitted, inheritable and
    /// ambient sets, with `caps` the bounding set
    pub cap_sets: Option<CapSets>,
    pub no_new_privileges: bool,
    pub terminal: bool,
    /// (OCI type as `RLIMIT_NOFILE`, soft, hard), set before exec
    pub rlimits: Vec<(String, u64, u64)>,
    pub umask: Option<u32>,
    /// `--group-add`: names or numbers
    pub group_add: Vec<String>,
    /// `--group-add keep-groups`: no setgroups, the caller's groups stay
    pub keep_groups: bool,
    /// `oomScoreAdj`, written to /proc/self/oom_score_adj before exec
    pub oom_score_adj: Option<i32>,
    /// `linux.personality`: the personality(2) persona set before exec
    pub personality: Option<libc::c_ulong>,
}

/// The capability sets besides the bounding one, as masks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CapSets {
    pub effective: u64,
    pub permitted: u64,
    pub inheritable: u64,
    pub ambient: u64,
}

/// The annotation that keeps the caller's supplementary groups (`--group-add keep-groups`),
/// crun's name for it.
pub const KEEP_GROUPS: &str = "run.oci.keep_original_groups";
/// rbox's annotation for `--group-add` by name, resolved in the container's /etc/group at
/// each start (the OCI spec's `additionalGids` holds only numbers): a comma-separated list.
pub const GROUP_ADD: &str = "io.rbox.group-add";

/// Podman's umask for a container's process when `--umask` is not given.
pub const DEFAULT_UMASK: u32 = 0o022;

/// The OCI runtime spec of a container.
pub fn build(spec: &state::Spec, etc: &EtcFiles, host: &Host) -> Result<OciSpec> {
    let mut oci = OciSpec::default();
    oci.set_version(oci_spec::runtime::VERSION.to_string());
    let mut root = Root::default();
    root.set_path(PathBuf::from("rootfs"));
    root.set_readonly(Some(spec.read_only));
    oci.set_root(Some(root));
    // in the host's UTS namespace the hostname stays the host's (/etc/hostname still names
    // the container, as under Podman)
    oci.set_hostname((!spec.opts.uts_host).then(|| spec.hostname.clone()));
    oci.set_domainname(None);
    let mut annotations: std::collections::HashMap<String, String> =
        spec.opts.annotations.clone().into_iter().collect();
    match spec.opts.group_add.as_slice() {
        [] => {}
        [k] if k == "keep-groups" => {
            annotations.insert(KEEP_GROUPS.into(), "1".into());
        }
        groups => {
            annotations.insert(GROUP_ADD.into(), groups.join(","));
        }
    }
    oci.set_annotations((!annotations.is_empty()).then_some(annotations));
    oci.set_hooks(None);
    oci.set_process(Some(build_process(spec, host)?));
    oci.set_mounts(Some(build_mounts(spec, etc, host)));
    oci.set_linux(Some(build_linux(spec, host)?));
    Ok(oci)
}

fn build_process(spec: &state::Spec, host: &Host) -> Result<oci_spec::runtime::Process> {
    let mut p = oci_spec::runtime::Process::default();
    p.set_terminal(Some(spec.tty));
    p.set_console_size(None);
    p.set_args(Some(spec.args.clone()));
    p.set_command_line(None);
    p.set_env(Some(spec.env.clone()));
    p.set_cwd(PathBuf::from(if spec.workdir.is_empty() {
        "/"
    } else {
        spec.workdir.as_str()
    }));
    p.set_user(oci_user(spec, host));
    let kept = caps::kept(
        &spec.cap_add,
        &spec.cap_drop,
        spec.privileged,
        host.last_cap,
    )?;
    let set = cap_set(kept);
    let c = LinuxCapabilitiesBuilder::default()
        .bounding(set.clone())
        .effective(set.clone())
        .permitted(set)
        .inheritable(Capabilities::new())
        .ambient(Capabilities::new())
        .build()
        .context("build capabilities")?;
    p.set_capabilities(Some(c));
    let mut rlimits = Vec::new();
    for (name, soft, hard) in &spec.opts.ulimits {
        let typ = format!("RLIMIT_{}", name.to_ascii_uppercase())
            .parse::<oci_spec::runtime::PosixRlimitType>()
            .map_err(|_| anyhow::anyhow!("unknown ulimit `{name}`"))?;
        rlimits.push(
            oci_spec::runtime::PosixRlimitBuilder::default()
                .typ(typ)
                .soft(*soft)
                .hard(*hard)
                .build()
                .context("build rlimit")?,
        );
    }
    p.set_rlimits((!rlimits.is_empty()).then_some(rlimits));
    p.set_no_new_privileges(Some(spec.no_new_privileges));
    p.set_apparmor_profile(None);
    p.set_oom_score_adj(spec.opts.oom_score_adj);
    p.set_selinux_label(None);
    p.set_io_priority(None);
    p.set_scheduler(None);
    p.set_exec_cpu_affinity(None);
    Ok(p)
}

/// `uid:gid` by number when both are numbers; otherwise the text to resolve at start.
fn oci_user(spec: &state::Spec, host: &Host) -> oci_spec::runtime::User {
    let text = match (&host.keep_id, spec.user.is_empty()) {
        // keep-id runs as the caller's own ids unless -u says otherwise
        (Some(k), true) => format!("{}:{}", k.uid, k.gid),
        // nomap's user is root (Podman: `groups=0(root)`)
        (None, true) if spec.userns == state::UsernsMode::Nomap => "0".to_string(),
        // no user: root, with root's passwd entry and, as Podman, no supplementary groups
        // (`-u 0` has root's)
        (None, true) => String::new(),
        _ => spec.user.clone(),
    };
    let mut u = oci_spec::runtime::User::default();
    u.set_umask(Some(spec.opts.umask.unwrap_or(DEFAULT_UMASK)));
    let numeric = text
        .split_once(':')
        .and_then(|(a, b)| Some((a.parse::<u32>().ok()?, b.parse::<u32>().ok()?)));
    match numeric {
        Some((uid, gid)) => {
            u.set_uid(uid);
            u.set_gid(gid);
        }
        None => {
            u.set_username(Some(text));
        }
    }
    u
}

/// The capabilities of a mask, by the names `caps` knows (a newer kernel's extra ones have
/// no OCI spelling yet).
fn cap_set(mask: u64) -> Capabilities {
    caps::NAMES
        .iter()
        .enumerate()
        .filter(|(i, _)| mask & (1u64 << i) != 0)
        .filter_map(|(_, n)| serde_json::from_value(format!("CAP_{n}").into()).ok())
        .collect()
}

fn cap_mask(set: &Option<Capabilities>) -> Result<u64> {
    let mut mask = 0u64;
    for c in set.iter().flatten() {
        let name = serde_json::to_value(c)?;
        let name = name.as_str().unwrap_or_default();
        match caps::parse(name)? {
            Some(n) => mask |= 1 << n,
            None => bail!("unknown capability `{name}`"),
        }
    }
    Ok(mask)
}

/// An OCI mount of `source` (of type `typ`) at `destination` with `options`.
pub fn mount(destination: &str, typ: &str, source: impl AsRef<Path>, options: &[&str]) -> Mount {
    let mut m = Mount::default();
    m.set_destination(PathBuf::from(destination));
    m.set_typ(Some(typ.to_string()));
    m.set_source(Some(source.as_ref().to_path_buf()));
    m.set_options(Some(options.iter().map(|o| o.to_string()).collect()));
    m
}

/// `spec` for this start of a container whose monitor relays sd_notify(3) messages
/// (`--sdnotify=container`): the directory `dir` of the monitor's socket bound on
/// [`sdnotify::INSIDE_DIR`] after every other mount, and `$NOTIFY_SOCKET` naming it. Not kept
/// in `config.json`: whether there is a socket depends on who starts the container.
pub fn with_notify_socket(spec: &mut OciSpec, dir: &Path) {
    let inside = super::sdnotify::INSIDE_DIR;
    let mut mounts = spec.mounts().clone().unwrap_or_default();
    mounts.push(mount(inside, "bind", dir, &["bind"]));
    spec.set_mounts(Some(mounts));
    if let Some(p) = spec.process_mut() {
        let var = super::sdnotify::container_env();
        let mut env = p.env().clone().unwrap_or_default();
        env.retain(|e| !e.starts_with("NOTIFY_SOCKET="));
        env.push(var);
        p.set_env(Some(env));
    }
}

/// Everything `mounts::plan` mounts, in its order.
fn build_mounts(spec: &state::Spec, etc: &EtcFiles, host: &Host) -> Vec<Mount> {
    let proc = if spec.opts.pid_host {
        // a procfs can only be mounted by the user namespace owning its PID namespace, which
        // rootless rbox's is not: the host's /proc is bound (crun does the same)
        mount(
            "/proc",
            "bind",
            "/proc",
            &["rbind", "nosuid", "noexec", "nodev"],
        )
    } else {
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"])
    };
    let mut ms = vec![
        proc,
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
    ];
    for d in mounts::DEVICES {
        let p = format!("/dev/{d}");
        ms.push(mount(&p, "bind", &p, &["bind"]));
    }
    let mut pts = vec![
        "nosuid",
        "noexec",
        "newinstance",
        "ptmxmode=0666",
        "mode=0620",
    ];
    if !host.single_id {
        // gid 5 is not mapped with a single id: the option would fail with EINVAL
        pts.push("gid=5");
    }
    ms.push(mount("/dev/pts", "devpts", "devpts", &pts));
    let shm = spec.opts.shm_option();
    ms.push(mount(
        "/dev/shm",
        "tmpfs",
        "shm",
        &["nosuid", "noexec", "nodev", "mode=1777", &shm],
    ));
    ms.push(mount(
        "/dev/mqueue",
        "mqueue",
        "mqueue",
        &["nosuid", "noexec", "nodev"],
    ));
    if spec.network == NetworkMode::Host
        || (spec.network.joins()
            && (spec.userns == state::UsernsMode::KeepId || host.id_maps.is_some()))
    {
        // sysfs can only be mounted by the owner of the network namespace: bind the host's
        // (a joined namespace is owned by rbox's user namespace, not keep-id's nested one)
        ms.push(mount("/sys", "bind", "/sys", &["rbind", "ro"]));
    } else {
        ms.push(mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", "ro"],
        ));
    }
    ms.push(mount(
        "/sys/fs/cgroup",
        "cgroup",
        "cgroup",
        &["nosuid", "noexec", "nodev", "ro"],
    ));
    for e in mounts::extras(spec, etc) {
        let m = match e {
            mounts::Extra::Etc(host_path, inside) => {
                ms.push(mount(&inside, "bind", host_path, &["bind"]));
                continue;
            }
            mounts::Extra::Scratch(d) => {
                ms.push(mount(
                    d,
                    "tmpfs",
                    "tmpfs",
                    &["nosuid", "nodev", "mode=1777"],
                ));
                continue;
            }
            mounts::Extra::User(m) => m,
        };
        let has = |o: &str| m.options.iter().any(|x| x == o);
        let mut opts: Vec<&str> = Vec::new();
        match m.kind {
            MountKind::Tmpfs => {
                opts.extend(["nosuid", "nodev"]);
                if !has("exec") {
                    opts.push("noexec");
                }
                if has("ro") {
                    opts.push("ro");
                }
                // the rest is tmpfs's own (size=, mode=, ...), in the order given
                opts.extend(m.options.iter().map(String::as_str).filter(|o| {
                    !matches!(
                        *o,
                        "ro" | "rw" | "nosuid" | "nodev" | "noexec" | "exec" | "suid" | "dev"
                    )
                }));
                ms.push(mount(&m.destination, "tmpfs", &m.source, &opts));
            }
            MountKind::Devpts => {
                opts.extend(["nosuid", "noexec", "newinstance"]);
                opts.extend(m.options.iter().map(String::as_str));
                ms.push(mount(&m.destination, "devpts", &m.source, &opts));
            }
            MountKind::Bind => {
                // `bind` in the record: --mount's bind-nonrecursive
                opts.push(if has("bind") { "bind" } else { "rbind" });
                for o in ["ro", "nosuid", "nodev", "noexec"] {
                    if has(o) {
                        opts.push(o);
                    }
                }
                ms.push(mount(&m.destination, "bind", &m.source, &opts));
            }
            MountKind::Image => ms.push(image_mount(m)),
        }
    }
    ms
}

/// `--mount type=image`, resolved (`spec::image_mount_layers`): a read-only bind of a single
/// layer, else kernel overlay of the layers (lower only and read-only, or with the
/// container's own upper when `rw`).
fn image_mount(m: &state::MountSpec) -> Mount {
    let (lowers, rw) = super::spec::image_mount_layers(m);
    if let ([one], None) = (lowers.as_slice(), rw) {
        return mount(&m.destination, "bind", one, &["rbind", "ro"]);
    }
    let mut opts = vec![format!("lowerdir={}", lowers.join(":")), "userxattr".into()];
    match rw {
        Some((upper, work)) => {
            opts.extend([format!("upperdir={upper}"), format!("workdir={work}")])
        }
        None => opts.push("ro".into()),
    }
    let opts: Vec<&str> = opts.iter().map(String::as_str).collect();
    mount(&m.destination, "overlay", "overlay", &opts)
}

fn namespace(typ: LinuxNamespaceType) -> LinuxNamespace {
    let mut ns = LinuxNamespace::default();
    ns.set_typ(typ);
    ns
}

/// The lines of a `uid_map` text as OCI id mappings.
/// Whether the container's user namespace maps `gid` (an id inside it).
fn gid_mapped(host: &Host, gid: u32) -> bool {
    let in_map = |map: &str| {
        map.lines().any(|l| {
            let n: Vec<u32> = l
                .split_whitespace()
                .filter_map(|w| w.parse().ok())
                .collect();
            matches!(n[..], [inside, _, count] if gid >= inside && gid - inside < count)
        })
    };
    match (&host.id_maps, &host.keep_id) {
        (Some((_, gid_map)), _) => in_map(gid_map),
        (None, Some(k)) => in_map(&super::launch::KeepId::map(k.gid, k.gid_count)),
        // rbox's own namespace: only the caller where there is no range
        (None, None) => !host.single_id || gid == 0,
    }
}

fn id_mappings(map: &str) -> Result<Vec<LinuxIdMapping>> {
    map.lines()
        .map(|l| {
            let f: Vec<u32> = l
                .split_whitespace()
                .map(str::parse)
                .collect::<Result<_, _>>()
                .with_context(|| format!("id map line `{l}`"))?;
            let [inside, outside, size] = f[..] else {
                bail!("id map line `{l}`: expected three numbers");
            };
            LinuxIdMappingBuilder::default()
                .container_id(inside)
                .host_id(outside)
                .size(size)
                .build()
                .context("build id mapping")
        })
        .collect()
}

fn build_linux(spec: &state::Spec, host: &Host) -> Result<oci_spec::runtime::Linux> {
    let mut l = oci_spec::runtime::Linux::default();
    use LinuxNamespaceType as T;
    let mut nss = Vec::new();
    if !spec.opts.pid_host {
        nss.push(namespace(T::Pid));
    }
    if spec.network.joins() {
        let Some(p) = &host.net_path else {
            bail!("the network namespace container:/ns: joins is not known");
        };
        let mut n = namespace(T::Network);
        n.set_path(Some(p.clone()));
        nss.push(n);
    } else if spec.network != NetworkMode::Host {
        nss.push(namespace(T::Network));
    }
    nss.push(namespace(T::Ipc));
    if !spec.opts.uts_host {
        nss.push(namespace(T::Uts));
    }
    nss.push(namespace(T::Mount));
    if !spec.opts.cgroupns_host {
        nss.push(namespace(T::Cgroup));
    }
    // Only keep-id gets a user namespace of its own, below rbox's: its maps are relative to
    // rbox's namespace, where the caller is root.
    match &host.keep_id {
        Some(k) => {
            nss.push(namespace(T::User));
            l.set_uid_mappings(Some(id_mappings(&KeepId::map(k.uid, k.uid_count))?));
            l.set_gid_mappings(Some(id_mappings(&KeepId::map(k.gid, k.gid_count))?));
        }
        None => match &host.id_maps {
            Some((u, g)) => {
                nss.push(namespace(T::User));
                l.set_uid_mappings(Some(id_mappings(u)?));
                l.set_gid_mappings(Some(id_mappings(g)?));
            }
            None => {
                l.set_uid_mappings(None);
                l.set_gid_mappings(None);
            }
        },
    }
    l.set_namespaces(Some(nss));
    l.set_resources(None);
    // containers.conf's under --sysctl's; of the file's, a ping_group_range naming a group
    // the container's namespace does not map is left out, as the kernel refuses it (the
    // system file's "0 0" with --userns=keep-id on a single-id map; Podman never runs there)
    let conf = spec.opts.conf_sysctl.iter().filter(|(k, v)| {
        *k != "net.ipv4.ping_group_range"
            || v.split_whitespace()
                .all(|g| g.parse().is_ok_and(|g| gid_mapped(host, g)))
    });
    let sysctl: std::collections::HashMap<String, String> = conf
        .chain(&spec.opts.sysctl)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    l.set_sysctl((!sysctl.is_empty()).then_some(sysctl));
    l.set_devices(None);
    l.set_personality(match spec.opts.personality.as_deref() {
        Some(p) => Some(
            oci_spec::runtime::LinuxPersonalityBuilder::default()
                .domain(p.parse::<oci_spec::runtime::LinuxPersonalityDomain>()?)
                .build()
                .context("build personality")?,
        ),
        None => None,
    });
    l.set_rootfs_propagation(None);
    l.set_mount_label(None);
    l.set_seccomp(host.seccomp.as_ref().map(|f| f.to_oci()).transpose()?);
    let (masked, readonly) = if spec.privileged {
        (Vec::new(), Vec::new())
    } else {
        // `--security-opt unmask=` takes defaults away (ALL: every one), `mask=` adds
        let unmask = &spec.opts.unmask;
        let own = |v: &[&str]| {
            v.iter()
                .filter(|p| !unmask.iter().any(|u| u == "ALL" || u == *p))
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
        };
        let mut masked = own(mounts::MASKED);
        masked.extend(
            spec.opts
                .mask
                .iter()
                .filter(|m| !masked.contains(m))
                .cloned()
                .collect::<Vec<_>>(),
        );
        (masked, own(mounts::READONLY))
    };
    l.set_masked_paths(Some(masked));
    l.set_readonly_paths(Some(readonly));
    Ok(l)
}

/// The filesystem types rbox mounts itself (anything else in a spec is refused).
const FS_TYPES: &[&str] = &[
    "proc", "tmpfs", "devpts", "mqueue", "sysfs", "cgroup", "cgroup2", "overlay",
];

/// The /dev symlinks every container gets, made after /dev/pts is mounted.
const DEV_SYMLINKS: &[(&str, &str)] = &[
    ("pts/ptmx", "/dev/ptmx"),
    ("/proc/self/fd", "/dev/fd"),
    ("/proc/self/fd/0", "/dev/stdin"),
    ("/proc/self/fd/1", "/dev/stdout"),
    ("/proc/self/fd/2", "/dev/stderr"),
    ("/proc/kcore", "/dev/core"),
];

/// The mount plan of a spec, with the root filesystem that its storage driver makes.
pub fn mount_ops(spec: &OciSpec, rootfs: Rootfs) -> Result<Vec<Op>> {
    let root = spec
        .root()
        .as_ref()
        .context("the spec has no root filesystem")?;
    let mut ops = vec![Op::PrivateAll, Op::Root(rootfs)];
    let mut linked = false;
    let mounted: HashSet<&std::path::Path> = spec
        .mounts()
        .iter()
        .flatten()
        .map(|m| m.destination().as_path())
        .collect();
    for m in spec.mounts().iter().flatten() {
        let op = mount_op(m)?;
        let fs_at = |at: &str| matches!(&op, Op::Fs { inside, .. } | Op::FsNamed { inside, .. } if inside == at);
        let (pts, dev) = (fs_at("/dev/pts"), fs_at("/dev"));
        // an optional mount may be missing: no propagation step for it
        let optional = matches!(
            &op,
            Op::Fs { optional: true, .. } | Op::FsNamed { optional: true, .. }
        );
        ops.push(op);
        ops.extend(propagation(m).filter(|_| !optional));
        if dev {
            ops.extend(devices(spec, &mounted)?);
        }
        if pts && !linked {
            ops.extend(dev_symlinks());
            linked = true;
        }
    }
    if !linked {
        ops.extend(dev_symlinks());
    }
    ops.push(Op::Pivot);
    if let Some(l) = spec.linux() {
        for (key, value) in l.sysctl().iter().flatten() {
            if key.contains('/') || key.split('.').any(|c| c.is_empty() || c == "..") {
                bail!("sysctl `{key}`: not a sysctl name");
            }
            ops.push(Op::Sysctl {
                key: key.clone(),
                value: value.clone(),
            });
        }
        ops.extend(l.masked_paths().iter().flatten().cloned().map(Op::Mask));
        ops.extend(
            l.readonly_paths()
                .iter()
                .flatten()
                .cloned()
                .map(Op::ReadOnly),
        );
    }
    if root.readonly() == Some(true) {
        ops.push(Op::RootReadOnly);
    }
    // linux.rootfsPropagation, on the new root and every mount under it; last, as masks
    // bind /dev/null, which an unbindable mount refuses
    if let Some(f) = spec
        .linux()
        .as_ref()
        .and_then(|l| l.rootfs_propagation().as_deref())
        .and_then(propagation_flags)
        .filter(|f| !f.contains(MsFlags::MS_PRIVATE))
    {
        ops.push(Op::Propagation {
            inside: "/".into(),
            flags: (f | MsFlags::MS_REC).bits(),
        });
    }
    Ok(ops)
}

/// The device nodes of a fresh /dev: the ones every container gets (the OCI spec's default
/// devices) that the spec does not mount itself, and `linux.devices`. Each is the host's node
/// bound in, as rootless runtimes do (a user namespace cannot mknod devices); the type and
/// numbers the spec gives must match the host's node.
fn devices(spec: &OciSpec, mounted: &HashSet<&std::path::Path>) -> Result<Vec<Op>> {
    use std::os::unix::fs::FileTypeExt;
    let bind = |p: &str| Op::Bind {
        host: PathBuf::from(p),
        inside: p.to_string(),
        recursive: false,
        readonly: false,
        flags: 0,
    };
    let listed: Vec<&oci_spec::runtime::LinuxDevice> = spec
        .linux()
        .iter()
        .flat_map(|l| l.devices().iter().flatten())
        .collect();
    let mut ops = Vec::new();
    for d in mounts::DEVICES {
        let p = format!("/dev/{d}");
        if !mounted.contains(std::path::Path::new(&p))
            && !listed.iter().any(|l| l.path() == std::path::Path::new(&p))
        {
            ops.push(bind(&p));
        }
    }
    for d in listed {
        let Some(p) = d.path().to_str().filter(|p| p.starts_with("/dev/")) else {
            bail!(
                "device `{}`: rbox makes devices under /dev only",
                d.path().display()
            );
        };
        let kind = match d.typ() {
            oci_spec::runtime::LinuxDeviceType::C | oci_spec::runtime::LinuxDeviceType::U => {
                libc::S_IFCHR
            }
            oci_spec::runtime::LinuxDeviceType::B => libc::S_IFBLK,
            oci_spec::runtime::LinuxDeviceType::P => libc::S_IFIFO,
            _ => 0,
        };
        let host_matches = std::fs::metadata(p).is_ok_and(|m| {
            use std::os::unix::fs::MetadataExt;
            m.mode() & libc::S_IFMT == kind
                && (kind == libc::S_IFIFO
                    || (libc::major(m.rdev()) as i64, libc::minor(m.rdev()) as i64)
                        == (d.major(), d.minor()))
        });
        // A node the host lacks is made (as crun makes it) where mknod is allowed: a FIFO
        // always, a device as root outside a user namespace; elsewhere the step says why not.
        if kind != 0 && (kind == libc::S_IFIFO || !host_matches) {
            ops.push(Op::Mknod {
                inside: p.to_string(),
                kind,
                major: d.major().max(0) as u64,
                minor: d.minor().max(0) as u64,
                mode: d.file_mode().unwrap_or(0o666) & 0o7777,
                uid: d.uid(),
                gid: d.gid(),
            });
            continue;
        }
        if let Ok(m) = std::fs::metadata(p) {
            use std::os::unix::fs::MetadataExt;
            let (major, minor) = (libc::major(m.rdev()) as i64, libc::minor(m.rdev()) as i64);
            let kind_ok = match d.typ() {
                oci_spec::runtime::LinuxDeviceType::C | oci_spec::runtime::LinuxDeviceType::U => {
                    m.file_type().is_char_device()
                }
                oci_spec::runtime::LinuxDeviceType::B => m.file_type().is_block_device(),
                oci_spec::runtime::LinuxDeviceType::P => m.file_type().is_fifo(),
                _ => true,
            };
            if !kind_ok
                || (d.typ() != oci_spec::runtime::LinuxDeviceType::P
                    && (major, minor) != (d.major(), d.minor()))
            {
                bail!(
                    "device `{p}` ({:?} {}:{}): the host's `{p}` is another device (rbox binds the host's node)",
                    d.typ(),
                    d.major(),
                    d.minor()
                );
            }
        } else {
            bail!("device `{p}`: the host has no `{p}` to bind (rbox binds the host's node)");
        }
        ops.push(bind(p));
    }
    Ok(ops)
}

fn dev_symlinks() -> impl Iterator<Item = Op> {
    DEV_SYMLINKS.iter().map(|(t, l)| Op::Symlink {
        target: t.to_string(),
        inside: l.to_string(),
    })
}

/// One spec mount as a plan step: a bind (type `bind`, or a `bind`/`rbind` option) or a
/// filesystem of a type rbox knows; options that are not mount flags are the filesystem's
/// own data (as runc and crun pass them), except on binds, which have none.
fn mount_op(m: &Mount) -> Result<Op> {
    let dest = m.destination();
    let Some(inside) = dest.to_str().filter(|d| d.starts_with('/')) else {
        bail!(
            "mount `{}`: the destination must be an absolute UTF-8 path",
            dest.display()
        );
    };
    let typ = m.typ().as_deref().unwrap_or("");
    let opts = m.options().as_deref().unwrap_or(&[]);
    let bind = typ == "bind" || opts.iter().any(|o| o == "bind" || o == "rbind");
    if !bind && !FS_TYPES.contains(&typ) {
        bail!(
            "mount `{inside}`: unsupported filesystem type `{typ}` (rbox mounts {} and binds)",
            FS_TYPES.join(", ")
        );
    }
    let mut flags = MsFlags::empty();
    let mut data: Vec<&str> = Vec::new();
    let mut recursive = false;
    for o in opts {
        let o = o.as_str();
        match o {
            "bind" if bind => {}
            "rbind" if bind => recursive = true,
            // a step of its own after the mount (see `propagation`)
            _ if propagation_flags(o).is_some() => {}
            _ => match flag(o) {
                Some((f, true)) => flags |= f,
                Some((f, false)) => flags &= !f,
                // a bind has no filesystem data: runc and crun ignore such options there
                None if bind && o.contains('=') => {}
                None if bind => bail!("mount `{inside}`: unsupported bind mount option `{o}`"),
                None => data.push(o),
            },
        }
    }
    if bind {
        let Some(source) = m.source() else {
            bail!("mount `{inside}`: a bind mount needs a source");
        };
        let readonly = flags.contains(MsFlags::MS_RDONLY);
        let rest = flags & !MsFlags::MS_RDONLY;
        let allowed = MsFlags::MS_NOSUID
            | MsFlags::MS_NODEV
            | MsFlags::MS_NOEXEC
            | MsFlags::MS_RELATIME
            | MsFlags::MS_NOATIME
            | MsFlags::MS_NODIRATIME
            | MsFlags::MS_STRICTATIME;
        if !allowed.contains(rest) {
            bail!("mount `{inside}`: unsupported bind mount options {opts:?}");
        }
        return Ok(Op::Bind {
            host: source.clone(),
            inside: inside.to_string(),
            recursive,
            readonly,
            flags: rest.bits(),
        });
    }
    let fs = Op::Fs {
        // `cgroup` is the spec's word for the container's cgroup tree; rbox mounts v2 only
        fstype: if typ == "cgroup" { "cgroup2" } else { typ }.to_string(),
        inside: inside.to_string(),
        flags: flags.bits(),
        data: data.join(","),
        // refused by some hosts inside a user namespace; the container runs without them
        optional: matches!(typ, "mqueue" | "cgroup" | "cgroup2"),
    };
    // the spec's source name where it is not the type (`shm`), as mountinfo then shows it
    match (m.source().as_deref().and_then(|s| s.to_str()), fs) {
        (
            Some(source),
            Op::Fs {
                fstype,
                inside,
                flags,
                data,
                optional,
            },
        ) if !source.is_empty() && source != typ => Ok(Op::FsNamed {
            source: source.to_string(),
            fstype,
            inside,
            flags,
            data,
            optional,
        }),
        (_, fs) => Ok(fs),
    }
}

/// The `MS_*` propagation flags of a mount option (`rshared`: shared, recursively).
pub fn propagation_flags(o: &str) -> Option<MsFlags> {
    let (rec, base) = match o.strip_prefix('r') {
        Some(b @ ("shared" | "slave" | "private" | "unbindable")) => (MsFlags::MS_REC, b),
        _ => (MsFlags::empty(), o),
    };
    let f = match base {
        "shared" => MsFlags::MS_SHARED,
        "slave" => MsFlags::MS_SLAVE,
        "private" => MsFlags::MS_PRIVATE,
        "unbindable" => MsFlags::MS_UNBINDABLE,
        _ => return None,
    };
    Some(f | rec)
}

/// The propagation step of a spec mount, when its options name one other than private (the
/// last one wins; every mount is private already).
fn propagation(m: &Mount) -> Option<Op> {
    let flags = m
        .options()
        .iter()
        .flatten()
        .filter_map(|o| propagation_flags(o))
        .next_back()
        .filter(|f| !f.contains(MsFlags::MS_PRIVATE))?;
    Some(Op::Propagation {
        inside: m.destination().to_str()?.to_string(),
        flags: flags.bits(),
    })
}

/// A mount flag option: the flag, and whether the option sets (or clears) it.
fn flag(o: &str) -> Option<(MsFlags, bool)> {
    Some(match o {
        "ro" => (MsFlags::MS_RDONLY, true),
        "rw" => (MsFlags::MS_RDONLY, false),
        "nosuid" => (MsFlags::MS_NOSUID, true),
        "suid" => (MsFlags::MS_NOSUID, false),
        "nodev" => (MsFlags::MS_NODEV, true),
        "dev" => (MsFlags::MS_NODEV, false),
        "noexec" => (MsFlags::MS_NOEXEC, true),
        "exec" => (MsFlags::MS_NOEXEC, false),
        "strictatime" => (MsFlags::MS_STRICTATIME, true),
        "relatime" => (MsFlags::MS_RELATIME, true),
        "norelatime" => (MsFlags::MS_RELATIME, false),
        "noatime" => (MsFlags::MS_NOATIME, true),
        "atime" => (MsFlags::MS_NOATIME, false),
        "nodiratime" => (MsFlags::MS_NODIRATIME, true),
        "diratime" => (MsFlags::MS_NODIRATIME, false),
        "sync" => (MsFlags::MS_SYNCHRONOUS, true),
        "async" => (MsFlags::MS_SYNCHRONOUS, false),
        "dirsync" => (MsFlags::MS_DIRSYNC, true),
        _ => return None,
    })
}

/// The container's process as the executor runs it.
pub fn process(spec: &OciSpec) -> Result<Process> {
    let p = spec.process().as_ref().context("the spec has no process")?;
    let args = p.args().clone().unwrap_or_default();
    if args.is_empty() {
        bail!("the spec's process has no args");
    }
    let annotation = |k: &str| spec.annotations().as_ref().and_then(|a| a.get(k)).cloned();
    let rlimits = p
        .rlimits()
        .iter()
        .flatten()
        .map(|r| (r.typ().to_string(), r.soft(), r.hard()))
        .collect();
    let Some(cwd) = p.cwd().to_str().filter(|c| c.starts_with('/')) else {
        bail!(
            "the spec's process cwd `{}` must be an absolute UTF-8 path",
            p.cwd().display()
        );
    };
    let u = p.user();
    let user = match u.username() {
        Some(n) => User::Name(n.clone()),
        None => User::Numeric {
            uid: u.uid(),
            gid: u.gid(),
            groups: u.additional_gids().clone().unwrap_or_default(),
        },
    };
    let (caps, cap_sets) = match p.capabilities() {
        Some(c) => cap_sets(c)?,
        None => (0, None),
    };
    Ok(Process {
        args,
        env: p.env().clone().unwrap_or_default(),
        cwd: cwd.to_string(),
        user,
        caps,
        cap_sets,
        no_new_privileges: p.no_new_privileges().unwrap_or(false),
        terminal: p.terminal().unwrap_or(false),
        rlimits,
        umask: u.umask(),
        group_add: annotation(GROUP_ADD)
            .map(|g| g.split(',').map(String::from).collect())
            .unwrap_or_default(),
        keep_groups: annotation(KEEP_GROUPS).is_some_and(|v| v == "1"),
        oom_score_adj: p.oom_score_adj(),
        personality: spec
            .linux()
            .as_ref()
            .and_then(|l| l.personality().as_ref())
            .map(|p| match p.domain() {
                oci_spec::runtime::LinuxPersonalityDomain::PerLinux => PER_LINUX,
                oci_spec::runtime::LinuxPersonalityDomain::PerLinux32 => PER_LINUX32,
            }),
    })
}

/// The namespaces the container gets besides rbox's own user namespace, as the runtime
/// creates them: the clone flags of those it creates, those it joins by path (entered by the
/// parent before the clone), and the `uid_map` and `gid_map` texts of a nested user namespace
/// (`--userns=keep-id`, or a bundle's `uidMappings`). A user namespace cannot be joined by
/// path. Without a mount namespace of its own (none in the spec, or one joined by path) the
/// container's mounts are made in the runtime's (or the joined) one and it is chrooted, not
/// pivoted, into its root: see [`Namespaces::own_mounts`].
pub fn namespaces(spec: &OciSpec) -> Result<Namespaces> {
    use LinuxNamespaceType as T;
    let linux = spec
        .linux()
        .as_ref()
        .context("the spec has no linux section")?;
    let mut own_net = false;
    let mut join_net = None;
    let mut user = false;
    let mut flags = 0;
    let mut join = Vec::new();
    for n in linux.namespaces().as_deref().unwrap_or_default() {
        if let (T::Network, Some(p)) = (n.typ(), n.path()) {
            // joined by the parent around the clone (see `netshare`)
            join_net = Some(p.clone());
            continue;
        }
        let flag = match n.typ() {
            T::Network => libc::CLONE_NEWNET,
            T::User => libc::CLONE_NEWUSER,
            T::Mount => libc::CLONE_NEWNS,
            T::Pid => libc::CLONE_NEWPID,
            T::Uts => libc::CLONE_NEWUTS,
            T::Ipc => libc::CLONE_NEWIPC,
            T::Cgroup => libc::CLONE_NEWCGROUP,
            t => bail!("the spec asks for a {t:?} namespace, which rbox does not create"),
        };
        if let Some(p) = n.path() {
            if n.typ() == T::User {
                bail!(
                    "the spec joins the {:?} namespace at `{}`: rbox does not join user namespaces by path",
                    n.typ(),
                    p.display()
                );
            }
            join.push((p.clone(), flag));
            continue;
        }
        match n.typ() {
            T::Network => own_net = true,
            T::User => user = true,
            _ => {}
        }
        flags |= flag;
    }
    let text = |m: &Option<Vec<LinuxIdMapping>>| -> String {
        m.as_deref()
            .unwrap_or_default()
            .iter()
            .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
            .collect()
    };
    let user_maps = if user {
        let (u, g) = (text(linux.uid_mappings()), text(linux.gid_mappings()));
        if u.is_empty() || g.is_empty() {
            bail!("the spec asks for a user namespace without uidMappings and gidMappings");
        }
        Some((u, g))
    } else {
        None
    };
    Ok(Namespaces {
        own_net,
        join_net,
        user_maps,
        flags,
        join,
    })
}

impl Namespaces {
    /// Whether the container gets a mount namespace of its own (else it uses the runtime's,
    /// or one it joins by path).
    pub fn own_mounts(&self) -> bool {
        self.flags & libc::CLONE_NEWNS != 0
    }

    /// Whether the spec joins a namespace of type `typ` (`CLONE_NEW*`) by path.
    pub fn joins(&self, typ: libc::c_int) -> bool {
        self.join.iter().any(|(_, t)| *t == typ)
    }
}

/// See [`namespaces`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespaces {
    pub own_net: bool,
    /// the network namespace to join (a `path` on the network namespace)
    pub join_net: Option<PathBuf>,
    /// uid_map and gid_map text of a nested user namespace
    pub user_maps: Option<(String, String)>,
    /// the `CLONE_NEW*` flags of the namespaces the container creates
    pub flags: libc::c_int,
    /// namespaces other than the network's joined by path, with their `CLONE_NEW*` type
    pub join: Vec<(PathBuf, libc::c_int)>,
}

/// The container's hostname ("" when the spec sets none: the runtime then keeps the one the
/// new UTS namespace starts with).
pub fn hostname(spec: &OciSpec) -> String {
    spec.hostname().clone().unwrap_or_default()
}

/// The largest config.json rbox reads (a spec with thousands of mounts stays far below).
const MAX_CONFIG: u64 = 4 << 20;

/// Read a spec from `path`.
pub fn load(path: &std::path::Path) -> Result<OciSpec> {
    use std::io::Read;
    let f = std::fs::File::open(path).with_context(|| format!("open `{}`", path.display()))?;
    let mut text = Vec::new();
    f.take(MAX_CONFIG + 1)
        .read_to_end(&mut text)
        .with_context(|| format!("read `{}`", path.display()))?;
    if text.len() as u64 > MAX_CONFIG {
        bail!("read `{}`: larger than {MAX_CONFIG} bytes", path.display());
    }
    serde_json::from_slice(&text).with_context(|| format!("parse `{}`", path.display()))
}

/// Write `spec` to `path`: a new file when `fresh` (a container being created, which nothing
/// reads yet), else replacing the file atomically (through `path` + `.tmp`).
pub fn save(path: &std::path::Path, spec: &OciSpec, fresh: bool) -> Result<()> {
    use std::io::Write;
    let text = serde_json::to_vec_pretty(spec).context("serialise the OCI spec")?;
    if fresh {
        return std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .and_then(|mut f| f.write_all(&text))
            .with_context(|| format!("write `{}`", path.display()));
    }
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, text).with_context(|| format!("write `{}`", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("write `{}`", path.display()))
}

/// The bounding set, and the other sets when they are not all the same as it (rbox's own
/// specs give the command one set: bounding = effective = permitted, nothing inherited).
fn cap_sets(c: &LinuxCapabilities) -> Result<(u64, Option<CapSets>)> {
    let bounding = cap_mask(c.bounding())?;
    let sets = CapSets {
        effective: cap_mask(c.effective())?,
        permitted: cap_mask(c.permitted())?,
        inheritable: cap_mask(c.inheritable())?,
        ambient: cap_mask(c.ambient())?,
    };
    let one = CapSets {
        effective: bounding,
        permitted: bounding,
        inheritable: 0,
        ambient: 0,
    };
    Ok((bounding, (sets != one).then_some(sets)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{MountSpec, Spec, UsernsMode};
    use oci_spec::runtime::Capability;

    fn etc() -> EtcFiles {
        EtcFiles {
            hosts: "/run/c/hosts".into(),
            hostname: "/run/c/hostname".into(),
            resolv: "/run/c/resolv.conf".into(),
        }
    }

    fn host() -> Host {
        Host {
            single_id: false,
            keep_id: None,
            id_maps: None,
            last_cap: 40,
            seccomp: None,
            net_path: None,
        }
    }

    fn plain() -> Spec {
        Spec {
            args: vec!["/bin/sh".into(), "-c".into(), "echo hi".into()],
            env: vec!["PATH=/usr/bin:/bin".into(), "TERM=xterm".into()],
            workdir: "/srv".into(),
            hostname: "box".into(),
            ..Default::default()
        }
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    /// Today's plan for `spec` on `host`, as `runtime::launch` computes it.
    /// A spec's mounts keep their source names (`shm`, as Podman's /dev/shm shows it);
    /// rbox's own plan names each filesystem by its type: compare them without the names.
    fn unnamed(ops: Vec<Op>) -> Vec<Op> {
        ops.into_iter()
            .map(|o| match o {
                Op::FsNamed {
                    fstype,
                    inside,
                    flags,
                    data,
                    optional,
                    ..
                } => Op::Fs {
                    fstype,
                    inside,
                    flags,
                    data,
                    optional,
                },
                o => o,
            })
            .collect()
    }

    fn today(spec: &Spec, host: &Host) -> Vec<Op> {
        mounts::plan(
            Rootfs::Dir("/r".into()),
            spec,
            &etc(),
            mounts::Env {
                own_net: spec.network != NetworkMode::Host,
                tty_gid: !host.single_id,
            },
        )
    }

    /// The spec's plan equals today's, and its process agrees with the record.
    fn check(spec: &Spec, host: &Host) -> OciSpec {
        let oci = build(spec, &etc(), host).unwrap();
        assert_eq!(
            unnamed(mount_ops(&oci, Rootfs::Dir("/r".into())).unwrap()),
            today(spec, host)
        );
        let p = process(&oci).unwrap();
        assert_eq!(p.args, spec.args);
        assert_eq!(p.env, spec.env);
        let wd = if spec.workdir.is_empty() {
            "/"
        } else {
            &spec.workdir
        };
        assert_eq!(p.cwd, wd);
        assert_eq!(p.terminal, spec.tty);
        assert_eq!(p.no_new_privileges, spec.no_new_privileges);
        assert_eq!(
            p.caps,
            caps::kept(
                &spec.cap_add,
                &spec.cap_drop,
                spec.privileged,
                host.last_cap
            )
            .unwrap()
        );
        oci
    }

    fn mask(names: &[&str]) -> u64 {
        names
            .iter()
            .map(|n| 1u64 << caps::parse(n).unwrap().unwrap())
            .sum()
    }

    #[test]
    fn plain_spec_field_by_field() {
        let spec = plain();
        let oci = check(&spec, &host());
        assert_eq!(oci.version(), oci_spec::runtime::VERSION);
        assert_eq!(oci.hostname().as_deref(), Some("box"));
        let root = oci.root().as_ref().unwrap();
        assert_eq!(root.path(), &PathBuf::from("rootfs"));
        assert_eq!(root.readonly(), Some(false));
        let p = oci.process().as_ref().unwrap();
        assert_eq!(p.terminal(), Some(false));
        assert_eq!(p.args().as_deref(), Some(&spec.args[..]));
        assert_eq!(p.env().as_deref(), Some(&spec.env[..]));
        assert_eq!(p.cwd(), &PathBuf::from("/srv"));
        assert_eq!(p.user().username().as_deref(), Some(""));
        assert_eq!((p.user().uid(), p.user().gid()), (0, 0));
        assert_eq!(p.rlimits(), &None);
        assert_eq!(p.no_new_privileges(), Some(false));
        let c = p.capabilities().as_ref().unwrap();
        assert_eq!(cap_mask(c.bounding()).unwrap(), mask(caps::DEFAULT));
        assert_eq!(cap_mask(c.effective()).unwrap(), mask(caps::DEFAULT));
        assert_eq!(cap_mask(c.permitted()).unwrap(), mask(caps::DEFAULT));
        assert_eq!(c.inheritable().as_ref().map(|s| s.len()), Some(0));
        assert_eq!(c.ambient().as_ref().map(|s| s.len()), Some(0));
        let l = oci.linux().as_ref().unwrap();
        let nss: Vec<_> = l.namespaces().iter().flatten().map(|n| n.typ()).collect();
        use LinuxNamespaceType as T;
        assert_eq!(
            nss,
            [T::Pid, T::Network, T::Ipc, T::Uts, T::Mount, T::Cgroup]
        );
        assert!(l.namespaces().iter().flatten().all(|n| n.path().is_none()));
        assert_eq!(l.uid_mappings(), &None);
        assert_eq!(l.seccomp(), &None);
        assert_eq!(l.resources(), &None);
        assert_eq!(l.masked_paths().as_deref(), Some(&s(mounts::MASKED)[..]));
        assert_eq!(
            l.readonly_paths().as_deref(),
            Some(&s(mounts::READONLY)[..])
        );
        assert_eq!(oci.hooks(), &None);
        // the mounts as Podman spells them
        let ms = oci.mounts().as_ref().unwrap();
        let find = |d: &str| {
            ms.iter()
                .find(|m| m.destination() == &PathBuf::from(d))
                .unwrap()
        };
        let spelled = |d: &str| {
            let m = find(d);
            (
                m.typ().clone().unwrap(),
                m.source().clone().unwrap().to_string_lossy().into_owned(),
                m.options().clone().unwrap(),
            )
        };
        assert_eq!(
            spelled("/proc"),
            (
                "proc".into(),
                "proc".into(),
                s(&["nosuid", "noexec", "nodev"])
            )
        );
        assert_eq!(
            spelled("/dev/pts"),
            (
                "devpts".into(),
                "devpts".into(),
                s(&[
                    "nosuid",
                    "noexec",
                    "newinstance",
                    "ptmxmode=0666",
                    "mode=0620",
                    "gid=5"
                ])
            )
        );
        assert_eq!(
            spelled("/dev/null"),
            ("bind".into(), "/dev/null".into(), s(&["bind"]))
        );
        assert_eq!(spelled("/sys").0, "sysfs");
        assert_eq!(spelled("/sys/fs/cgroup").0, "cgroup");
        assert_eq!(
            spelled("/etc/resolv.conf"),
            ("bind".into(), "/run/c/resolv.conf".into(), s(&["bind"]))
        );
        // an empty workdir is the root
        let p = process(&build(&Spec::default(), &etc(), &host()).unwrap());
        assert!(p.is_err(), "a spec without args is refused");
        let mut spec = plain();
        spec.workdir.clear();
        check(&spec, &host());
    }

    #[test]
    fn user_forms() {
        let user = |u: &str, h: &Host| {
            let spec = Spec {
                user: u.into(),
                ..plain()
            };
            process(&check(&spec, h)).unwrap().user
        };
        let h = host();
        assert_eq!(
            user("1000:100", &h),
            User::Numeric {
                uid: 1000,
                gid: 100,
                groups: vec![]
            }
        );
        assert_eq!(user("tester", &h), User::Name("tester".into()));
        assert_eq!(user("tester:wheel", &h), User::Name("tester:wheel".into()));
        // a bare uid takes its group from passwd, at start
        assert_eq!(user("1000", &h), User::Name("1000".into()));
        // no user: root without supplementary groups, as Podman
        assert_eq!(user("", &h), User::Name(String::new()));
        // resolving gives what process.rs resolves from the record's text today
        const PW: &str = "root:x:0:0:root:/root:/bin/sh\ntester:x:1000:1000::/home/t:/bin/sh\n";
        const GR: &str = "root:x:0:\ntester:x:1000:\nwheel:x:10:tester\n";
        let none = User::Name(String::new()).resolve(PW, GR).unwrap();
        assert_eq!((none.uid, none.gid, &none.groups[..]), (0, 0, &[][..]));
        assert_eq!(none.home, "/root");
        for u in ["1000", "1000:100", "tester", "tester:wheel", "4242:4343"] {
            let spec = Spec {
                user: u.into(),
                ..plain()
            };
            let p = process(&build(&spec, &etc(), &h).unwrap()).unwrap();
            assert_eq!(
                p.user.resolve(PW, GR),
                proc::resolve_user(u, PW, GR),
                "user `{u}`"
            );
        }
        // additional gids from someone else's bundle are added
        let n = User::Numeric {
            uid: 1000,
            gid: 1000,
            groups: vec![10, 44],
        };
        assert_eq!(n.resolve(PW, GR).unwrap().groups, vec![1000, 10, 44]);
        // exec: memberships only, as Podman's exec
        let e = |u: User| User::Exec(Box::new(u)).resolve(PW, GR).unwrap().groups;
        assert_eq!(e(User::Name("tester".into())), vec![10]);
        assert_eq!(e(User::Name("0".into())), Vec::<u32>::new());
        assert_eq!(e(User::Name(String::new())), Vec::<u32>::new());
        assert_eq!(n.to_string(), "1000:1000");
    }

    #[test]
    fn capabilities() {
        let h = host();
        let spec = Spec {
            cap_add: s(&["NET_ADMIN", "cap_sys_ptrace"]),
            cap_drop: s(&["CHOWN"]),
            ..plain()
        };
        let oci = check(&spec, &h);
        let set = oci
            .process()
            .as_ref()
            .unwrap()
            .capabilities()
            .as_ref()
            .unwrap()
            .bounding()
            .clone()
            .unwrap();
        assert!(set.contains(&Capability::NetAdmin) && set.contains(&Capability::SysPtrace));
        assert!(!set.contains(&Capability::Chown));
        // spelled CAP_X in config.json
        let json = serde_json::to_string(&oci).unwrap();
        assert!(json.contains("\"CAP_NET_ADMIN\""), "{json}");
        let all = Spec {
            privileged: true,
            cap_drop: s(&["KILL"]),
            ..plain()
        };
        let oci = check(&all, &h);
        let p = process(&oci).unwrap();
        assert_eq!(p.caps, ((1u64 << 41) - 1) & !(1 << 5));
        // privileged: nothing masked
        let l = oci.linux().as_ref().unwrap();
        assert_eq!(l.masked_paths().as_deref(), Some(&[][..]));
        assert_eq!(l.readonly_paths().as_deref(), Some(&[][..]));
        check(
            &Spec {
                cap_drop: s(&["ALL"]),
                ..plain()
            },
            &h,
        );
        check(
            &Spec {
                cap_add: s(&["ALL"]),
                ..plain()
            },
            &Host { last_cap: 37, ..h },
        );
    }

    #[test]
    fn keep_id_maps_and_user() {
        let h = Host {
            single_id: true,
            keep_id: Some(KeepId {
                uid: 1000,
                gid: 1000,
                uid_count: 65537,
                gid_count: 65537,
            }),
            id_maps: None,
            last_cap: 40,
            seccomp: None,
            net_path: None,
        };
        let spec = Spec {
            userns: UsernsMode::KeepId,
            ..plain()
        };
        let oci = check(&spec, &h);
        let l = oci.linux().as_ref().unwrap();
        assert_eq!(
            l.namespaces().iter().flatten().last().map(|n| n.typ()),
            Some(LinuxNamespaceType::User)
        );
        let m = |c: u32, h: u32, n: u32| {
            LinuxIdMappingBuilder::default()
                .container_id(c)
                .host_id(h)
                .size(n)
                .build()
                .unwrap()
        };
        let want = vec![m(0, 1, 1000), m(1000, 0, 1), m(1001, 1001, 64536)];
        assert_eq!(l.uid_mappings().as_ref(), Some(&want));
        assert_eq!(l.gid_mappings().as_ref(), Some(&want));
        // single id: devpts without gid=5 (checked against plan by `check`)
        let pts = oci
            .mounts()
            .iter()
            .flatten()
            .find(|m| m.destination() == &PathBuf::from("/dev/pts"))
            .unwrap();
        assert!(!pts.options().iter().flatten().any(|o| o == "gid=5"));
        // keep-id runs as the caller's ids unless -u is given
        assert_eq!(
            process(&oci).unwrap().user,
            User::Numeric {
                uid: 1000,
                gid: 1000,
                groups: vec![]
            }
        );
        let named = Spec {
            user: "tester".into(),
            ..spec
        };
        assert_eq!(
            process(&check(&named, &h)).unwrap().user,
            User::Name("tester".into())
        );
    }

    #[test]
    fn host_network() {
        let spec = Spec {
            network: NetworkMode::Host,
            ..plain()
        };
        let oci = check(&spec, &host());
        let nss: Vec<_> = oci
            .linux()
            .as_ref()
            .unwrap()
            .namespaces()
            .iter()
            .flatten()
            .map(|n| n.typ())
            .collect();
        assert!(!nss.contains(&LinuxNamespaceType::Network));
        let sys = oci
            .mounts()
            .iter()
            .flatten()
            .find(|m| m.destination() == &PathBuf::from("/sys"))
            .unwrap();
        assert_eq!(sys.typ().as_deref(), Some("bind"));
        assert_eq!(sys.options().as_deref(), Some(&s(&["rbind", "ro"])[..]));
    }

    #[test]
    fn read_only_and_tty() {
        let spec = Spec {
            read_only: true,
            tty: true,
            no_new_privileges: true,
            ..plain()
        };
        let oci = check(&spec, &host());
        assert_eq!(oci.root().as_ref().unwrap().readonly(), Some(true));
        let ops = mount_ops(&oci, Rootfs::Dir("/r".into())).unwrap();
        assert_eq!(ops.last(), Some(&Op::RootReadOnly));
        let p = process(&oci).unwrap();
        assert!(p.terminal && p.no_new_privileges);
    }

    fn with_volumes() -> Spec {
        let mut spec = plain();
        // with sysctls, set after pivot_root, before /proc/sys is made read-only
        spec.opts.sysctl = [("net.ipv4.ip_forward".to_string(), "1".to_string())].into();
        spec.mounts = vec![
            MountSpec {
                kind: MountKind::Bind,
                source: "/home/u/data".into(),
                destination: "/data".into(),
                options: s(&["ro", "nosuid"]),
            },
            MountSpec {
                kind: MountKind::Bind,
                source: "/home/u/rw".into(),
                destination: "/rw".into(),
                options: s(&["rw", "noexec", "nodev"]),
            },
            MountSpec {
                kind: MountKind::Tmpfs,
                source: "tmpfs".into(),
                destination: "/scratch".into(),
                options: s(&["size=1m", "mode=700", "exec"]),
            },
            MountSpec {
                kind: MountKind::Tmpfs,
                source: "tmpfs".into(),
                destination: "/ro".into(),
                options: s(&["ro", "nr_inodes=100"]),
            },
            // --mount's bind-nonrecursive and devpts
            MountSpec {
                kind: MountKind::Bind,
                source: "/home/u/flat".into(),
                destination: "/flat".into(),
                options: s(&["bind", "ro"]),
            },
            MountSpec {
                kind: MountKind::Devpts,
                source: "devpts".into(),
                destination: "/dev/pts2".into(),
                options: s(&["mode=620"]),
            },
        ];
        spec
    }

    #[test]
    fn volumes() {
        let oci = check(&with_volumes(), &host());
        let ms = oci.mounts().as_ref().unwrap();
        let opts = |d: &str| {
            ms.iter()
                .find(|m| m.destination() == &PathBuf::from(d))
                .unwrap()
                .options()
                .clone()
                .unwrap()
        };
        assert_eq!(opts("/data"), s(&["rbind", "ro", "nosuid"]));
        assert_eq!(opts("/rw"), s(&["rbind", "nodev", "noexec"]));
        assert_eq!(
            opts("/scratch"),
            s(&["nosuid", "nodev", "size=1m", "mode=700"])
        );
        assert_eq!(
            opts("/ro"),
            s(&["nosuid", "nodev", "noexec", "ro", "nr_inodes=100"])
        );
        // read-only root with volumes, single id, host network: all still the same plan
        let spec = Spec {
            read_only: true,
            network: NetworkMode::Host,
            ..with_volumes()
        };
        check(
            &spec,
            &Host {
                single_id: true,
                ..host()
            },
        );
    }

    #[test]
    fn saved_and_loaded_gives_the_same_plan() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("config.json");
        for spec in [
            plain(),
            with_volumes(),
            Spec {
                read_only: true,
                privileged: true,
                network: NetworkMode::Host,
                user: "1000:1000".into(),
                ..with_volumes()
            },
        ] {
            let oci = build(&spec, &etc(), &host()).unwrap();
            oci.save(&path).unwrap();
            let back = OciSpec::load(&path).unwrap();
            assert_eq!(back, oci);
            assert_eq!(
                unnamed(mount_ops(&back, Rootfs::Dir("/r".into())).unwrap()),
                today(&spec, &host())
            );
            assert_eq!(process(&back).unwrap(), process(&oci).unwrap());
        }
    }

    #[test]
    fn foreign_specs_are_refused_clearly() {
        let mut oci = build(&plain(), &etc(), &host()).unwrap();
        let mut ms = oci.mounts().clone().unwrap();
        ms.push(mount("/x", "nfs", "server:/x", &[]));
        oci.set_mounts(Some(ms.clone()));
        let e = mount_ops(&oci, Rootfs::Dir("/r".into())).unwrap_err();
        assert!(
            e.to_string().contains("unsupported filesystem type `nfs`"),
            "{e}"
        );
        ms.pop();
        ms.push(mount("/y", "bind", "/y", &["rbind", "z"]));
        oci.set_mounts(Some(ms.clone()));
        let e = mount_ops(&oci, Rootfs::Dir("/r".into())).unwrap_err();
        assert!(
            e.to_string().contains("unsupported bind mount option `z`"),
            "{e}"
        );
        ms.pop();
        // a propagation option is a step after its mount; a bind ignores filesystem data
        ms.push(mount("/y", "bind", "/y", &["rbind", "rshared", "mode=755"]));
        oci.set_mounts(Some(ms.clone()));
        let ops = mount_ops(&oci, Rootfs::Dir("/r".into())).unwrap();
        let at = ops
            .iter()
            .position(|o| matches!(o, Op::Bind { inside, .. } if inside == "/y"))
            .unwrap();
        assert_eq!(
            ops[at + 1],
            Op::Propagation {
                inside: "/y".into(),
                flags: (MsFlags::MS_SHARED | MsFlags::MS_REC).bits()
            }
        );
        ms.pop();
        ms.push(mount("rel", "tmpfs", "tmpfs", &[]));
        oci.set_mounts(Some(ms));
        assert!(mount_ops(&oci, Rootfs::Dir("/r".into())).is_err());
        // propagation words in Podman's spelling are accepted
        let mut ok = build(&plain(), &etc(), &host()).unwrap();
        let mut ms = ok.mounts().clone().unwrap();
        ms.push(mount("/z", "bind", "/z", &["rbind", "rprivate", "rw"]));
        ok.set_mounts(Some(ms));
        assert!(mount_ops(&ok, Rootfs::Dir("/r".into())).is_ok());
        // one capability set in rbox's own specs; the others when a spec sets them
        assert_eq!(process(&ok).unwrap().cap_sets, None);
        let mut p = ok.process().clone().unwrap();
        let mut c = p.capabilities().clone().unwrap();
        c.set_ambient(Some([Capability::Kill].into()));
        p.set_capabilities(Some(c));
        ok.set_process(Some(p));
        let sets = process(&ok).unwrap().cap_sets.unwrap();
        assert_eq!(sets.ambient, 1 << 5);
    }

    #[test]
    fn namespaces_read_back() {
        let plain_ns = namespaces(&check(&plain(), &host())).unwrap();
        assert_eq!(
            plain_ns,
            Namespaces {
                own_net: true,
                join_net: None,
                user_maps: None,
                flags: libc::CLONE_NEWPID
                    | libc::CLONE_NEWNET
                    | libc::CLONE_NEWIPC
                    | libc::CLONE_NEWUTS
                    | libc::CLONE_NEWNS
                    | libc::CLONE_NEWCGROUP,
                join: Vec::new(),
            }
        );
        let host_net = Spec {
            network: NetworkMode::Host,
            ..plain()
        };
        assert!(!namespaces(&check(&host_net, &host())).unwrap().own_net);
        let k = KeepId {
            uid: 1000,
            gid: 1001,
            uid_count: 65537,
            gid_count: 65537,
        };
        let h = Host {
            keep_id: Some(k.clone()),
            ..host()
        };
        let keep = Spec {
            userns: UsernsMode::KeepId,
            ..plain()
        };
        let ns = namespaces(&check(&keep, &h)).unwrap();
        assert_eq!(
            ns.user_maps,
            Some((KeepId::map(1000, 65537), KeepId::map(1001, 65537)))
        );

        // a pid namespace with a path is joined, not created
        let mut joined = check(&plain(), &host());
        let mut l = joined.linux().clone().unwrap();
        let mut nss = l.namespaces().clone().unwrap();
        nss[0].set_path(Some("/proc/1/ns/pid".into()));
        l.set_namespaces(Some(nss.clone()));
        joined.set_linux(Some(l.clone()));
        let ns = namespaces(&joined).unwrap();
        assert_eq!(ns.join, [("/proc/1/ns/pid".into(), libc::CLONE_NEWPID)]);
        assert_eq!(ns.flags & libc::CLONE_NEWPID, 0);
        // a mount namespace too: the container then has none of its own
        let mount = nss
            .iter_mut()
            .find(|n| n.typ() == LinuxNamespaceType::Mount)
            .unwrap();
        mount.set_path(Some("/proc/1/ns/mnt".into()));
        l.set_namespaces(Some(nss.clone()));
        joined.set_linux(Some(l.clone()));
        let ns = namespaces(&joined).unwrap();
        assert!(ns.joins(libc::CLONE_NEWNS) && !ns.own_mounts());
        // what rbox cannot do is refused with the reason, not ignored
        nss.retain(|n| n.typ() != LinuxNamespaceType::User);
        nss.push(
            oci_spec::runtime::LinuxNamespaceBuilder::default()
                .typ(LinuxNamespaceType::User)
                .path("/proc/1/ns/user")
                .build()
                .unwrap(),
        );
        l.set_namespaces(Some(nss));
        joined.set_linux(Some(l.clone()));
        let e = namespaces(&joined).unwrap_err().to_string();
        assert!(e.contains("`/proc/1/ns/user`"), "{e}");
        let mut no_maps = check(&keep, &h);
        l = no_maps.linux().clone().unwrap();
        l.set_uid_mappings(None);
        no_maps.set_linux(Some(l));
        let e = namespaces(&no_maps).unwrap_err().to_string();
        assert!(e.contains("uidMappings"), "{e}");
    }

    #[test]
    fn joined_network_is_a_path() {
        let h = Host {
            net_path: Some("/proc/42/ns/net".into()),
            ..host()
        };
        for network in [NetworkMode::Container, NetworkMode::Ns] {
            let spec = Spec { network, ..plain() };
            let oci = build(&spec, &etc(), &h).unwrap();
            let ns = namespaces(&oci).unwrap();
            assert!(!ns.own_net);
            assert_eq!(ns.join_net, Some(PathBuf::from("/proc/42/ns/net")));
            // the init is in rbox's user namespace, which owns the namespace: sysfs mounts
            let ops = mount_ops(&oci, Rootfs::Dir("/r".into())).unwrap();
            assert!(ops
                .iter()
                .any(|o| matches!(o, Op::Fs { fstype, .. } if fstype == "sysfs")));
            // keep-id's nested namespace does not own it: the host's /sys is bound instead
            let keep = Spec {
                userns: UsernsMode::KeepId,
                ..spec.clone()
            };
            let oci = build(&keep, &etc(), &h).unwrap();
            let ops = mount_ops(&oci, Rootfs::Dir("/r".into())).unwrap();
            assert!(!ops
                .iter()
                .any(|o| matches!(o, Op::Fs { fstype, .. } if fstype == "sysfs")));
            let e = build(&spec, &etc(), &host()).unwrap_err().to_string();
            assert!(e.contains("not known"), "{e}");
        }
    }

    #[test]
    fn load_refuses_what_is_not_a_spec() {
        let dir = std::env::temp_dir().join(format!("rbox-oci-load-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("config.json");
        std::fs::write(&p, "{not json").unwrap();
        let e = format!("{:#}", load(&p).unwrap_err());
        assert!(e.starts_with(&format!("parse `{}`", p.display())), "{e}");
        let spec = check(&plain(), &host());
        save(&p, &spec, false).unwrap();
        assert_eq!(load(&p).unwrap(), spec);
        assert!(!p.with_extension("json.tmp").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The container's seccomp filter travels in the spec: written as `linux.seccomp`, saved,
    /// loaded and read back, it is the same filter (so the same compiled program and cache
    /// entry), and compact (consecutive rules with one action share an entry).
    #[test]
    fn seccomp_filter_round_trips_through_the_spec() {
        let kept = caps::kept(&[], &[], false, 40).unwrap();
        let filter = seccomp::filter(&seccomp::Mode::Default, false, kept)
            .unwrap()
            .unwrap();
        let h = Host {
            seccomp: Some(filter.clone()),
            ..host()
        };
        let oci = build(&plain(), &etc(), &h).unwrap();
        let text = serde_json::to_string(&oci).unwrap();
        let back: OciSpec = serde_json::from_str(&text).unwrap();
        let s = back.linux().as_ref().unwrap().seccomp().as_ref().unwrap();
        assert_eq!(seccomp::Filter::from_oci(s).unwrap(), filter);
        assert!(
            s.syscalls().as_ref().unwrap().len() < filter.rules.len() / 4,
            "{} entries for {} rules",
            s.syscalls().as_ref().unwrap().len(),
            filter.rules.len()
        );
        assert_eq!(
            serde_json::to_value(s).unwrap()["defaultAction"],
            "SCMP_ACT_ERRNO"
        );
        // unconfined: no section at all
        let oci = build(&plain(), &etc(), &host()).unwrap();
        assert_eq!(oci.linux().as_ref().unwrap().seccomp(), &None);
        // what rbox cannot honour is refused, not ignored
        let mut v = serde_json::to_value(s).unwrap();
        v["listenerPath"] = "/run/agent.sock".into();
        let with_listener: oci_spec::runtime::LinuxSeccomp = serde_json::from_value(v).unwrap();
        assert!(seccomp::Filter::from_oci(&with_listener).is_err());
    }
}
