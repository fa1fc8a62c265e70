//! Container records: what `run`/`create` decided (durable, in the store next to the container's
//! upper layer) and whether the container is running (volatile, in the runtime directory,
//! stamped with the boot id so a reboot leaves no ghosts). Any later invocation reads them for
//! `ps`, `inspect`, `rm`, `start`. Names are reserved with an exclusive file create, so two
//! invocations can never take the same name; no lock serialises unrelated commands.

use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{bail, Context as _, Result};
use serde::{Deserialize, Serialize};

use crate::context::Context;
use crate::layout;
use crate::paths;

/// The lifecycle states, spelled as podman spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Created,
    Running,
    Exited,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Exited => "exited",
        }
    }
}

/// What a [`MountSpec`] mounts; recorded as "bind", "tmpfs", "devpts" or "image", the type
/// `inspect` shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MountKind {
    Bind,
    Tmpfs,
    /// `--mount type=devpts`: a new instance of devpts
    Devpts,
    /// `--mount type=image`: an image's layers, read-only unless `rw` (see
    /// `runtime::spec::image_mount_layers`)
    Image,
}

impl MountKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MountKind::Bind => "bind",
            MountKind::Tmpfs => "tmpfs",
            MountKind::Devpts => "devpts",
            MountKind::Image => "image",
        }
    }
}

impl std::fmt::Display for MountKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `--network`: the modes rbox has today, recorded as the flag spells them. The part after
/// `:` is kept beside it in [`Spec::network_options`]: a bridge's options, the id of the
/// container whose namespace `container:` joins, the path `ns:` joins.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    /// a network namespace of its own with only loopback
    #[default]
    None,
    /// the host's network namespace
    Host,
    /// a network namespace of its own bridged to the host by a pasta process
    Pasta,
    /// a network namespace of its own bridged to the host by a slirp4netns process
    Slirp4netns,
    /// the network namespace of another container (`container:NAME|ID`, recorded by id)
    Container,
    /// the network namespace at a path (`ns:PATH`)
    Ns,
}

impl NetworkMode {
    /// The mode a `--network` value names, and the options after `:` (bridges only); `None`
    /// for one rbox does not know.
    pub fn from_flag(s: &str) -> Option<(Self, String)> {
        let (mode, opts) = s.split_once(':').unwrap_or((s, ""));
        let m = match mode {
            "none" => NetworkMode::None,
            "host" => NetworkMode::Host,
            "pasta" => NetworkMode::Pasta,
            "slirp4netns" => NetworkMode::Slirp4netns,
            "container" => NetworkMode::Container,
            "ns" => NetworkMode::Ns,
            _ => return None,
        };
        let takes_opts = m.is_bridge() || m.joins();
        if (!opts.is_empty() && !takes_opts) || (opts.is_empty() && m.joins()) {
            return None;
        }
        Some((m, opts.to_string()))
    }

    pub fn as_str(self) -> &'static str {
        match self {
            NetworkMode::None => "none",
            NetworkMode::Host => "host",
            NetworkMode::Pasta => "pasta",
            NetworkMode::Slirp4netns => "slirp4netns",
            NetworkMode::Container => "container",
            NetworkMode::Ns => "ns",
        }
    }

    /// The container joins a network namespace that exists (another container's, or one at
    /// a path) instead of creating one: no helper of its own, no ports of its own.
    pub fn joins(self) -> bool {
        matches!(self, NetworkMode::Container | NetworkMode::Ns)
    }

    /// A helper process bridges the container's own namespace to the host.
    pub fn is_bridge(self) -> bool {
        matches!(self, NetworkMode::Pasta | NetworkMode::Slirp4netns)
    }
}

/// A published port (`-p`), host port chosen at create when it was 0 or omitted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortSpec {
    /// "" for every address
    pub host_ip: String,
    pub host_port: u16,
    pub container_port: u16,
    /// "tcp" or "udp"
    pub protocol: String,
}

impl PortSpec {
    /// The record's form of a mapping the network crate parsed.
    pub fn from_mapping(p: &rbox_netns::PortMapping) -> Self {
        PortSpec {
            host_ip: p.host_ip.map(|ip| ip.to_string()).unwrap_or_default(),
            host_port: p.host_port,
            container_port: p.container_port,
            protocol: p.proto.as_str().to_string(),
        }
    }

    /// The mapping the network crate publishes.
    pub fn to_mapping(&self) -> Result<rbox_netns::PortMapping> {
        Ok(rbox_netns::PortMapping {
            host_ip: match self.host_ip.as_str() {
                "" => None,
                ip => Some(ip.parse().with_context(|| format!("host address `{ip}`"))?),
            },
            host_port: self.host_port,
            container_port: self.container_port,
            proto: if self.protocol == "udp" {
                rbox_netns::Proto::Udp
            } else {
                rbox_netns::Proto::Tcp
            },
        })
    }

    /// The host side as `ps` and `port` show it: `0.0.0.0:8080` for every address.
    pub fn host_addr(&self) -> String {
        match self.host_ip.as_str() {
            "" => format!("0.0.0.0:{}", self.host_port),
            // an IPv6 address is bracketed before its port, as Podman and URLs write it
            ip if ip.contains(':') => format!("[{ip}]:{}", self.host_port),
            ip => format!("{ip}:{}", self.host_port),
        }
    }
}

impl std::fmt::Display for NetworkMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `--userns`, recorded as the flag spells it ("" when not given, as Podman's inspect shows).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum UsernsMode {
    /// container root is the caller (mapped over the subordinate range when there is one)
    #[default]
    #[serde(rename = "")]
    Default,
    #[serde(rename = "host")]
    Host,
    /// the caller's own uid and gid inside
    #[serde(rename = "keep-id")]
    KeepId,
    /// container ids come from the subordinate range only: the caller is not mapped
    #[serde(rename = "nomap")]
    Nomap,
    /// a range of the subordinate ids no other container uses
    #[serde(rename = "auto")]
    Auto,
}

impl UsernsMode {
    /// The mode a `--userns` value names; `None` for one rbox does not know.
    pub fn from_flag(s: &str) -> Option<Self> {
        match s {
            "" => Some(UsernsMode::Default),
            "host" => Some(UsernsMode::Host),
            "keep-id" => Some(UsernsMode::KeepId),
            "nomap" => Some(UsernsMode::Nomap),
            "auto" => Some(UsernsMode::Auto),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            UsernsMode::Default => "",
            UsernsMode::Host => "host",
            UsernsMode::KeepId => "keep-id",
            UsernsMode::Nomap => "nomap",
            UsernsMode::Auto => "auto",
        }
    }
}

impl std::fmt::Display for UsernsMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A bind mount or tmpfs as the container sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountSpec {
    pub kind: MountKind,
    pub source: String,
    pub destination: String,
    pub options: Vec<String>,
}

/// A named or anonymous volume a container mounts (`-v NAME:/dst`, `-v /dst`, `--mount
/// type=volume`, an image's VOLUME, `--volumes-from`); its mount is the [`MountSpec`] in
/// `Spec::mounts` with the same destination, a bind of the volume's `_data`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeUse {
    /// empty until create gives an anonymous volume its name
    pub name: String,
    pub destination: String,
    /// made for this container: `rm -v` and `run --rm` remove it
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub anonymous: bool,
    /// `nocopy` (`volume-nocopy`): a new volume is not filled from the image
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub nocopy: bool,
    /// `U`: the volume is chowned to the container's user
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub chown: bool,
}

/// A secret a container was given (`--secret`): its data was copied into the container's
/// directory at create (`containers/<id>/secrets/<n>`, `n` its index in `Spec::secrets`),
/// so a later `secret rm` does not keep the container from starting, as in Podman 4.3.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretUse {
    pub name: String,
    /// the secret's id, found at create
    pub id: String,
    /// `type=env`: the data is the value of the variable `target` (never in `Spec::env`, so
    /// `inspect` does not show it)
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub env: bool,
    /// the file's path in the container (absolute), or the variable's name
    pub target: String,
    /// owner and mode of the file, ids of the container's
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
}

/// Everything needed to start the container again (`rbox start`), resolved at create time.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Spec {
    /// argv[0] and arguments, after entrypoint/cmd rules; an argument that is not UTF-8 shows
    /// here with U+FFFD (as Podman shows it) and its exact bytes are in `args_bytes`
    pub args: Vec<String>,
    /// The exact bytes of the arguments that are not UTF-8, by index into `args`: a file name
    /// in Latin-1 must reach the command as the caller typed it.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub args_bytes: std::collections::BTreeMap<usize, Vec<u8>>,
    pub env: Vec<String>,
    pub workdir: String,
    /// user[:group] as given (or from the image); resolved inside the container
    pub user: String,
    pub hostname: String,
    pub mounts: Vec<MountSpec>,
    /// the volumes among `mounts`
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<VolumeUse>,
    /// `--secret`, in the order given
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<SecretUse>,
    /// `--volumes-from` as given (`CONTAINER[:OPTIONS]`), which `inspect` shows; what it
    /// brought in is in `mounts` already
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes_from: Vec<String>,
    pub read_only: bool,
    pub init: bool,
    pub tty: bool,
    pub interactive: bool,
    pub network: NetworkMode,
    /// the bridge's options as `--network=MODE:OPTIONS` gave them
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub network_options: String,
    /// `-p` (and `-P`): ports published on the host
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortSpec>,
    /// the image's ExposedPorts and `--expose`, as `80/tcp`
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exposed_ports: Vec<String>,
    pub userns: UsernsMode,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub privileged: bool,
    pub no_new_privileges: bool,
    /// `--security-opt seccomp=...`; records older than seccomp support read as the default
    #[serde(default)]
    pub seccomp: crate::runtime::seccomp::Mode,
    /// the image config's Entrypoint and Cmd, for inspect
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub labels: std::collections::BTreeMap<String, String>,
    pub stop_signal: Option<String>,
    /// `--dns`, `--dns-search`, `--dns-option`: what replaces the host's servers, search
    /// domains and options in the container's /etc/resolv.conf
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns_search: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns_options: Vec<String>,
    /// `--add-host`: (name, address) lines of the container's /etc/hosts
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub add_hosts: Vec<(String, String)>,
    /// `--no-hosts`: the image's /etc/hosts is left as it is
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_hosts: bool,
    /// `--restart`
    #[serde(default, skip_serializing_if = "RestartPolicy::is_unset")]
    pub restart: RestartPolicy,
    /// `--health-cmd` and its settings
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<Healthcheck>,
    /// `--log-driver` and `--log-opt`
    #[serde(default, skip_serializing_if = "LogConfig::is_default")]
    pub log: LogConfig,
    /// the process and lifetime flags of issue 9 (`--stop-timeout`, `--ulimit`, ...)
    #[serde(default, skip_serializing_if = "RunOpts::is_default")]
    pub opts: RunOpts,
}

/// `run` flags about the container's process and lifetime, as `spec::build` checked them;
/// every field is optional so that older records read as "not given".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RunOpts {
    /// `--security-opt mask=`: paths masked besides the defaults
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mask: Vec<String>,
    /// `--security-opt unmask=`: default masked or read-only paths left alone (`ALL`: all)
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unmask: Vec<String>,
    /// `--security-opt fakeroot[=auto]`: the seccomp filter fakes chown, set*id and mknod
    #[serde(skip_serializing_if = "crate::runtime::seccomp::Fakeroot::is_off")]
    pub fakeroot: crate::runtime::seccomp::Fakeroot,
    /// `--stop-timeout`: seconds `rbox stop` without `-t` waits before SIGKILL (10)
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_timeout: Option<u64>,
    /// `--timeout`: the monitor kills the container after this many seconds of each run
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u64>,
    /// `--ulimit`: (name as `nofile`, soft, hard), `u64::MAX` for unlimited
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ulimits: Vec<(String, u64, u64)>,
    /// `--umask` (Podman's default 0022 when not given)
    #[serde(skip_serializing_if = "Option::is_none")]
    pub umask: Option<u32>,
    /// `--annotation`: the OCI spec's annotations
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub annotations: std::collections::BTreeMap<String, String>,
    /// `--group-add`: supplementary groups, names resolved in the container at each start;
    /// `keep-groups` alone keeps the caller's own
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub group_add: Vec<String>,
    /// `--shm-size`: bytes of the /dev/shm tmpfs (64 MiB when not given)
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shm_size: Option<u64>,
    /// `--rmi`: the image goes too when the container is removed after its exit
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub rmi: bool,
    /// `--pidfile`: where the monitor writes the init's pid at each start (absolute)
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pidfile: Option<PathBuf>,
    /// `--conmon-pidfile`: where the monitor writes its own pid at each start (absolute)
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conmon_pidfile: Option<PathBuf>,
    /// `--cidfile`: where create wrote the id (absolute), for inspect's ContainerIDFile
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cidfile: Option<PathBuf>,
    /// `-P/--publish-all`: the exposed ports were published (they are in `ports`), for
    /// inspect's PublishAllPorts
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub publish_all: bool,
    /// `--preserve-fds`: the invocation's descriptors 3..3+N go to the command of the run
    /// that created it (never recorded: a later start has other descriptors)
    #[serde(skip)]
    pub preserve_fds: u32,
    /// `--sysctl`: namespaced kernel parameters set in the container at each start
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub sysctl: std::collections::BTreeMap<String, String>,
    /// containers.conf's `default_sysctls` that no `--sysctl` replaced, set at each start
    /// where the kernel takes them: `net.ipv4.ping_group_range = "0 0"` (the system file's)
    /// names a group a single-id map (`--userns=keep-id` without a range) lacks, and rbox
    /// runs there, where Podman does not
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub conf_sysctl: std::collections::BTreeMap<String, String>,
    /// `--read-only-tmpfs=false`: a `--read-only` root gets no tmpfs on /tmp, /var/tmp, /run
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub no_read_only_tmpfs: bool,
    /// `--oom-score-adj`: written to the command's /proc/self/oom_score_adj before exec
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oom_score_adj: Option<i32>,
    /// `--personality`: the execution domain (LINUX, LINUX32) set before exec
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub personality: Option<String>,
    /// `--tz`, as given (the zone file is one of the container's mounts)
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// `--pid=host`: the container's processes live in rbox's PID namespace (the host's), and
    /// its /proc is the host's, bound
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub pid_host: bool,
    /// `--uts=host`: no UTS namespace of its own (the host's hostname, which it cannot set)
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub uts_host: bool,
    /// `--cgroupns=host`: no cgroup namespace of its own
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub cgroupns_host: bool,
    /// `--cgroups=disabled`: no cgroup of the container's own, its limits not applied
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub cgroups_disabled: bool,
    /// `--memory`, `--cpus`, `--pids-limit`, ...: applied as root, and rootless where a
    /// cgroup v2 subtree is delegated to the user
    #[serde(skip_serializing_if = "Resources::is_default")]
    pub resources: Resources,
    /// `--userns=keep-id:uid=N,gid=N`: the ids the caller has inside
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_id_uid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_id_gid: Option<u32>,
    /// `--userns=auto:size=N`: the size asked for (create allocates the range below)
    #[serde(skip)]
    pub auto_size: Option<u32>,
    /// `--uidmap`/`--gidmap` (or the range `--userns=auto` was given at create): lines
    /// (container id, id in rbox's user namespace, count) of the container's own namespace
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub uid_map: Vec<(u32, u32, u32)>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub gid_map: Vec<(u32, u32, u32)>,
    /// OCI hooks injected at create: CDI devices' and the hooks directories' (see
    /// `runtime::cdi` and `runtime::ocihooks`), written into config.json
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hooks: Vec<HookEntry>,
    /// `--hostuser`: host users whose passwd entries the container's /etc/passwd gets
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hostuser: Vec<String>,
    /// `--passwd=false`: no passwd or group entries added for a user the image lacks
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub no_passwd: bool,
    /// `--passwd-entry`: the template of the passwd lines added
    #[serde(skip_serializing_if = "Option::is_none")]
    pub passwd_entry: Option<String>,
    /// `--systemd`: the container runs in systemd mode (tmpfs on /run, /run/lock, /tmp,
    /// /var/log/journal)
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub systemd: bool,
    /// `--sdnotify`: conmon or ignore (none: container, the default)
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sdnotify: Option<String>,
    /// `--requires`: ids of the containers started before this one
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub requires: Vec<String>,
    /// `--device-cgroup-rule`, as checked
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub device_cgroup_rules: Vec<String>,
    /// `--chrootdirs`: directories that get rbox's /etc files in their own etc/ too
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub chrootdirs: Vec<String>,
}

/// One OCI hook of a container and the stage it runs at (`prestart`, `createRuntime`,
/// `createContainer`, `startContainer`, `poststart`, `poststop`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct HookEntry {
    pub stage: String,
    pub path: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<i64>,
}

/// The cgroup resource flags, as Podman names them in inspect's HostConfig.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Resources {
    /// bytes (`--memory`)
    pub memory: Option<i64>,
    /// bytes of memory plus swap, -1 unlimited (`--memory-swap`)
    pub memory_swap: Option<i64>,
    /// bytes (`--memory-reservation`)
    pub memory_reservation: Option<i64>,
    /// 0 to 100 (`--memory-swappiness`; cgroup v1 only)
    pub memory_swappiness: Option<u64>,
    /// `--oom-kill-disable`
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub oom_kill_disable: bool,
    /// CPUs times 1e9 (`--cpus`)
    pub nano_cpus: Option<u64>,
    /// relative weight (`--cpu-shares`)
    pub cpu_shares: Option<u64>,
    /// `--cpuset-cpus`
    pub cpuset_cpus: Option<String>,
    /// `--cpuset-mems`
    pub cpuset_mems: Option<String>,
    /// microseconds per period, -1 unlimited (`--cpu-quota`)
    pub cpu_quota: Option<i64>,
    /// microseconds (`--cpu-period`)
    pub cpu_period: Option<u64>,
    /// microseconds (`--cpu-rt-period`; cgroup v1 only)
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_rt_period: Option<u64>,
    /// microseconds per real-time period (`--cpu-rt-runtime`; cgroup v1 only)
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_rt_runtime: Option<i64>,
    /// relative, 10 to 1000 (`--blkio-weight`)
    pub blkio_weight: Option<u16>,
    /// `--pids-limit` (-1 or 0: unlimited)
    pub pids_limit: Option<i64>,
    /// `--device-read-bps`, `--device-write-bps`, `--device-read-iops`, `--device-write-iops`,
    /// `--blkio-weight-device`: per-device limits, the device resolved to its numbers
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub device_limits: Vec<DeviceLimit>,
    /// `--cgroup-conf KEY=VALUE`: cgroup v2 files of the container's cgroup and their values
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub cgroup_conf: std::collections::BTreeMap<String, String>,
}

/// What a per-device block I/O limit limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceLimitKind {
    ReadBps,
    WriteBps,
    ReadIops,
    WriteIops,
    Weight,
}

/// One per-device block I/O limit: the device's major and minor, and the rate or weight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceLimit {
    pub kind: DeviceLimitKind,
    pub major: u64,
    pub minor: u64,
    pub value: u64,
}

impl Resources {
    pub fn is_default(&self) -> bool {
        *self == Resources::default()
    }
}

impl RunOpts {
    fn is_default(&self) -> bool {
        *self == RunOpts::default()
    }

    /// The size of the container's /dev/shm as tmpfs's `size=` option.
    pub fn shm_option(&self) -> String {
        format!("size={}k", self.shm_size.unwrap_or(64 << 20) / 1024)
    }

    /// How long `stop` waits before SIGKILL when not told: `--stop-timeout`, else 10 seconds.
    pub fn stop_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.stop_timeout.unwrap_or(10))
    }
}

/// Where a container's output is kept.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogConfig {
    /// `k8s-file` (empty: the default), `none` or `passthrough`
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub driver: String,
    /// `max-size`: the log is emptied when it would grow past this many bytes
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_size: Option<u64>,
    /// `path`: the log file instead of `ctr.log` in the container's directory
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
}

impl LogConfig {
    fn is_default(&self) -> bool {
        *self == LogConfig::default()
    }

    /// The driver's name as Podman shows it.
    pub fn driver(&self) -> &str {
        if self.driver.is_empty() {
            "k8s-file"
        } else {
            &self.driver
        }
    }

    /// Whether rbox keeps the output (k8s-file).
    pub fn keeps(&self) -> bool {
        self.driver() == "k8s-file"
    }

    /// The log file of container `id` in the store at `root`.
    pub fn file(&self, root: &Path, id: &str) -> PathBuf {
        self.path
            .clone()
            .unwrap_or_else(|| layout::container_log(root, id))
    }
}

/// A container's healthcheck, as Podman's flags set it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Healthcheck {
    /// `["CMD-SHELL", "cmd"]`, or `["CMD", argv...]`
    pub test: Vec<String>,
    pub interval: std::time::Duration,
    pub timeout: std::time::Duration,
    pub start_period: std::time::Duration,
    pub retries: u32,
    /// `--health-on-failure`: none, kill, restart, stop
    pub on_failure: String,
}

/// `--restart`: whether the monitor starts the container's command again when it exits. A
/// user's `rbox stop` (or `kill -9`, which ends the monitor) is never undone.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestartPolicy {
    /// as given: empty (none given), `no`, `on-failure`, `always`, `unless-stopped`
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// on-failure's limit of restarts; 0 for none
    #[serde(default, skip_serializing_if = "is_zero")]
    pub max_retries: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl RestartPolicy {
    /// `no`, `on-failure[:N]`, `always` or `unless-stopped`, refused as Podman refuses them.
    pub fn parse(s: &str) -> Result<Self> {
        let (name, count) = match s.split_once(':') {
            Some((n, c)) => (n, Some(c)),
            None => (s, None),
        };
        if !matches!(name, "" | "no" | "on-failure" | "always" | "unless-stopped") {
            bail!("`{name}` is not a valid restart policy: expected no, on-failure[:N], always or unless-stopped");
        }
        let max_retries = match count {
            None => 0,
            Some(_) if name != "on-failure" => {
                bail!("restart policy retries can only be specified with on-failure restart policy")
            }
            Some(c) => match c.parse::<i64>() {
                Ok(n) if n >= 0 => u32::try_from(n).unwrap_or(u32::MAX),
                Ok(_) => {
                    bail!("must specify restart policy retry count as a number greater than 0")
                }
                Err(_) => bail!("parsing restart policy retry count `{c}`: not a number"),
            },
        };
        Ok(RestartPolicy {
            name: name.to_string(),
            max_retries,
        })
    }

    pub fn is_unset(&self) -> bool {
        self.name.is_empty()
    }

    /// Whether the policy ever restarts (the ones `--rm` conflicts with).
    pub fn restarts(&self) -> bool {
        !matches!(self.name.as_str(), "" | "no")
    }

    /// Whether a command that exited with `code`, restarted `count` times so far, runs again.
    pub fn restart_after(&self, code: i32, count: u32) -> bool {
        match self.name.as_str() {
            "always" | "unless-stopped" => true,
            "on-failure" => code != 0 && (self.max_retries == 0 || count < self.max_retries),
            _ => false,
        }
    }
}

impl Spec {
    /// The bridge of the container's network with its options, as the network crate reads
    /// them (`None` for a network no helper bridges: none, host, container:, ns:).
    pub fn backend(&self) -> anyhow::Result<Option<rbox_netns::Backend>> {
        if !self.network.is_bridge() {
            return Ok(None);
        }
        let spelled = if self.network_options.is_empty() {
            self.network.to_string()
        } else {
            format!("{}:{}", self.network, self.network_options)
        };
        Ok(Some(spelled.parse()?))
    }

    /// Set the command from the caller's arguments, keeping the bytes of any that are not UTF-8.
    pub fn set_args(&mut self, args: Vec<std::ffi::OsString>) {
        use std::os::unix::ffi::OsStringExt;
        self.args_bytes.clear();
        self.args = args
            .into_iter()
            .enumerate()
            .map(|(i, a)| match a.into_string() {
                Ok(s) => s,
                Err(a) => {
                    let b = a.into_vec();
                    let shown = String::from_utf8_lossy(&b).into_owned();
                    self.args_bytes.insert(i, b);
                    shown
                }
            })
            .collect();
    }

    /// The command as the kernel gets it: each argument's exact bytes.
    pub fn argv(&self) -> Vec<std::ffi::OsString> {
        use std::os::unix::ffi::OsStringExt;
        self.args
            .iter()
            .enumerate()
            .map(|(i, a)| match self.args_bytes.get(&i) {
                Some(b) => std::ffi::OsString::from_vec(b.clone()),
                None => a.into(),
            })
            .collect()
    }
}

/// Lifecycle state. `pid`, `started_at` and `boot_id` are meaningful while running.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub status: Status,
    pub pid: i32,
    pub exit_code: Option<i32>,
    /// RFC 3339, empty when never started
    pub started_at: String,
    pub finished_at: String,
    /// the error that kept the container from starting, if any
    pub error: String,
    /// The runtime directory that holds the live state of this start (absolute). Readers go
    /// there, not to their own runtime directory: `su`, `ssh` and batch job steps give one user
    /// different `$XDG_RUNTIME_DIR`s, and a container must look the same from all of them.
    /// Empty in records written before it existed, and then the caller's directory is used.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub live_dir: String,
    /// how many times the restart policy started the command again since the user's last
    /// start
    #[serde(default, skip_serializing_if = "is_zero")]
    pub restart_count: u32,
}

impl State {
    /// The state of a container that was created and never started.
    pub fn created() -> Self {
        State {
            status: Status::Created,
            pid: 0,
            exit_code: None,
            started_at: String::new(),
            finished_at: String::new(),
            error: String::new(),
            live_dir: String::new(),
            restart_count: 0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerRecord {
    /// 64 hex digits
    pub id: String,
    pub name: String,
    /// the image as the user named it, and its resolved full name and id
    pub image: String,
    pub image_name: String,
    pub image_id: String,
    /// the image's manifest digest (`sha256:...`); empty in records made before it was kept,
    /// which then write back unchanged
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub image_digest: String,
    /// RFC 3339
    pub created: String,
    /// the storage driver that made the root filesystem, written `overlay` or `vfs`
    pub driver: rbox_storage::Driver,
    pub auto_remove: bool,
    pub spec: Spec,
    pub state: State,
    /// `--rootfs`: the host directory that is the container's root (overlaid, never
    /// written); `image` names it too, and there is no image
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rootfs: Option<PathBuf>,
    /// `--image-file`: the squashfs image that is the container's root (mounted, never
    /// unpacked or written); `image` and `image_name` name it, and no image of the store is used
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_file: Option<PathBuf>,
    /// The command line that made the container (`rbox run ...`, `rbox create ...`), as
    /// Podman's inspect shows it in `Config.CreateCommand`; empty in records made before it
    /// was kept
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub create_command: Vec<String>,
}

/// Volatile state of a running container, in the runtime directory.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Live {
    pid: i32,
    /// field 22 of /proc/PID/stat: tells a reused pid from ours
    start_time: u64,
    boot_id: String,
    /// pid of the rbox process attached to it
    monitor: i32,
    /// the monitor is a detached one (`run -d`, `start`), which can restart the container in
    /// place (an attached `rbox run` cannot)
    #[serde(default)]
    detached: bool,
    /// The monitor's start time, which tells a reused pid from it (0 in live states written
    /// before it was recorded for a running container as well as for a restart wait).
    #[serde(default)]
    monitor_start_time: u64,
    /// `rbox pause` stopped its processes (volatile: gone with the processes themselves)
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    paused: bool,
    /// The init runs the command (it has exec'd it): false while it still sets up (the live
    /// state names it from its clone on), None in live states of monitors that did not
    /// record it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    started: Option<bool>,
}

pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_nanos(SystemTime::now()).to_string()
}

/// The runtime directory of `rec`'s current start (its live state, its network helper's
/// files): the one named in the record (when that is still a private directory of ours:
/// after a reboot another user may have made it), else, for older records, the caller's.
pub fn live_runtime_dir(g: &Context, rec: &ContainerRecord) -> Option<PathBuf> {
    if rec.state.live_dir.is_empty() {
        return g.runtime_dir().ok();
    }
    let dir = Path::new(&rec.state.live_dir);
    // this invocation's own, checked when it was decided
    if g.decided_runtime_dir() == Some(dir) {
        return Some(dir.to_path_buf());
    }
    paths::is_private_dir(dir).then(|| dir.to_path_buf())
}

/// Where the live state of `rec`'s current start is.
fn live_path(g: &Context, rec: &ContainerRecord) -> Option<PathBuf> {
    live_runtime_dir(g, rec).map(|d| layout::live_state(&d, &rec.id))
}

/// The exit code recorded for a container whose end nobody saw (its monitor, or the
/// `rbox run` attached to it, was killed; the host rebooted): its init was killed by its
/// parent-death signal, SIGKILL, so 128 + 9, as podman reports it.
pub const UNOBSERVED_EXIT: i32 = 128 + libc::SIGKILL;

/// A new random container id (64 hex digits).
pub fn new_id() -> Result<String> {
    let mut b = [0u8; 32];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .context("read /dev/urandom")?;
    Ok(hex::encode(b))
}

/// Valid names as podman takes them: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`.
pub fn validate_name(name: &str) -> Result<()> {
    let mut chars = name.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if !ok || name.len() > 128 {
        bail!("invalid container name `{name}`: names match [a-zA-Z0-9][a-zA-Z0-9_.-]*");
    }
    Ok(())
}

/// A generated name like podman's: adjective_surname.
pub fn generate_name(id: &str) -> String {
    const ADJ: &[&str] = &[
        "brave", "calm", "eager", "fancy", "gentle", "happy", "jolly", "keen", "lucid", "merry",
        "nifty", "quirky", "rapid", "sharp", "tender", "upbeat", "vivid", "witty", "zealous",
        "bold", "clever", "daring", "elegant", "focused",
    ];
    const NOUN: &[&str] = &[
        "turing",
        "hopper",
        "lovelace",
        "ritchie",
        "thompson",
        "torvalds",
        "knuth",
        "dijkstra",
        "liskov",
        "hamilton",
        "shannon",
        "noether",
        "curie",
        "babbage",
        "kernighan",
        "pike",
        "wozniak",
        "goldberg",
        "allen",
        "perlman",
        "engelbart",
        "lamport",
        "cerf",
        "mccarthy",
    ];
    let n = u64::from_str_radix(&id[..12.min(id.len())], 16).unwrap_or(0);
    format!(
        "{}_{}",
        ADJ[(n % ADJ.len() as u64) as usize],
        NOUN[((n / 31) % NOUN.len() as u64) as usize]
    )
}

/// Reserve `name` for `id`; fails if another container holds it.
pub fn reserve_name(root: &Path, name: &str, id: &str) -> Result<()> {
    match try_reserve_name(root, name, id)? {
        None => Ok(()),
        // Podman's words, which scripts match
        Some(other) => bail!(
            "creating container storage: the container name \"{name}\" is already in use by \
             {other}. You have to remove that container to be able to reuse that name: that \
             name is already in use"
        ),
    }
}

/// Reserve a generated name for `id` and return it: adjective_surname from the id's first
/// digits, as Podman makes them. There are only 576 of those, so parallel runs meet (8 at
/// once: one time in twenty); a taken one is followed by names from the id's later digits,
/// then by one with the id's first 12 digits appended, which no other container can hold.
pub fn reserve_generated_name(root: &Path, id: &str) -> Result<String> {
    for k in 0..4 {
        let digits = id.get(12 * k..).unwrap_or(id);
        let name = generate_name(digits);
        if try_reserve_name(root, &name, id)?.is_none() {
            return Ok(name);
        }
    }
    let name = format!("{}_{}", generate_name(id), &id[..12.min(id.len())]);
    reserve_name(root, &name, id)?;
    Ok(name)
}

/// Reserve `name` for `id`: `None` when it is ours now, else the id that holds it.
fn try_reserve_name(root: &Path, name: &str, id: &str) -> Result<Option<String>> {
    validate_name(name)?;
    let dir = layout::container_names_dir(root);
    fs::create_dir_all(&dir).with_context(|| format!("create `{}`", dir.display()))?;
    let p = dir.join(name);
    match fs::OpenOptions::new().write(true).create_new(true).open(&p) {
        Ok(mut f) => {
            // the id, then who is creating it: until its record exists, the reservation is
            // stale only once that process is gone
            let me = std::process::id() as i32;
            let stamp = format!("{id}\n{me} {}\n", rbox_storage::own_start_time());
            f.write_all(stamp.as_bytes())
                .with_context(|| format!("write `{}`", p.display()))?;
            Ok(None)
        }
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {
            let text = fs::read_to_string(&p).unwrap_or_default();
            let other = reserved_id(&text);
            if !other.is_empty() && other != id && reservation_is_stale(root, &text) {
                fs::remove_file(&p).ok();
                return try_reserve_name(root, name, id);
            }
            Ok(Some(other.to_string()))
        }
        Err(e) => bail!("reserve container name `{name}`: {e}"),
    }
}

/// The container id a name file holds (its first line).
fn reserved_id(text: &str) -> &str {
    text.lines().next().unwrap_or("").trim()
}

/// A reservation without a container record is stale when the process that made it is gone
/// (an interrupted create). One whose creator still runs is a create in progress: taking it
/// over gave two parallel `create`s the same generated name.
fn reservation_is_stale(root: &Path, text: &str) -> bool {
    if layout::container_record(root, reserved_id(text)).exists() {
        return false;
    }
    let creator = text.lines().nth(1).and_then(|l| {
        let (pid, start) = l.trim().split_once(' ')?;
        Some((pid.parse::<i32>().ok()?, start.parse::<u64>().ok()?))
    });
    match creator {
        Some((pid, start)) => proc_start_time(pid).is_none_or(|t| t != start),
        // written by an older rbox, which stamped no creator
        None => true,
    }
}

pub fn release_name(root: &Path, name: &str, id: &str) {
    let p = layout::container_name(root, name);
    if fs::read_to_string(&p)
        .map(|s| reserved_id(&s) == id)
        .unwrap_or(false)
    {
        fs::remove_file(p).ok();
    }
}

/// Write the durable record atomically. The name is the one on disk: `rbox rename` may have
/// changed it while a monitor held an older copy of the record.
pub fn save(root: &Path, rec: &ContainerRecord) -> Result<()> {
    let _lock = lock_record(root, &rec.id);
    match load_raw(root, &rec.id) {
        // the name, the limits and the restart policy are `rename`'s and `update`'s: a copy
        // read before them must not undo them
        Ok(cur)
            if cur.name != rec.name
                || cur.spec.opts.resources != rec.spec.opts.resources
                || cur.spec.restart != rec.spec.restart =>
        {
            let mut rec = rec.clone();
            rec.name = cur.name;
            rec.spec.opts.resources = cur.spec.opts.resources;
            rec.spec.restart = cur.spec.restart;
            write_record(root, &rec, "json.tmp")
        }
        _ => write_record(root, rec, "json.tmp"),
    }
}

/// Give container `rec` the name `new`: reserve it (an error names the container holding it),
/// rewrite the record, then release the old name.
pub fn rename(g: &Context, rec: &ContainerRecord, new: &str) -> Result<()> {
    if rec.name == new {
        return Ok(());
    }
    let root = g.storage_root()?;
    reserve_name(&root, new, &rec.id)?;
    // a temporary file of its own: a monitor may be saving the record at the same time
    let written = change(&root, &rec.id, "json.rename", |cur| {
        cur.name = new.to_string()
    });
    if let Err(e) = written {
        release_name(&root, new, &rec.id);
        return Err(e);
    }
    release_name(&root, &rec.name, &rec.id);
    let mut renamed = rec.clone();
    renamed.name = new.to_string();
    crate::events::container(g, &renamed, "rename");
    Ok(())
}

/// What `rbox update` may have changed in `rec`'s record since `rec` was read (a long-lived
/// monitor's copy): its resource limits and restart policy, taken from the record now. Left
/// as they are when the record cannot be read.
pub fn take_updates(root: &Path, rec: &mut ContainerRecord) {
    if unchanged_since_written(root, &rec.id) {
        return;
    }
    if let Ok(cur) = load_raw(root, &rec.id) {
        rec.spec.opts.resources = cur.spec.opts.resources;
        rec.spec.restart = cur.spec.restart;
    }
}

/// Change `rec`'s record as `f` does (`rbox update`): read back and written whole, with a
/// temporary file of its own, as `rename` writes a name.
pub fn update(
    g: &Context,
    rec: &ContainerRecord,
    f: impl FnOnce(&mut ContainerRecord),
) -> Result<()> {
    change(&g.storage_root()?, &rec.id, "json.update", f)
}

/// The record of container `id` read, changed by `f` and written through `tmp_ext`.
fn change(
    root: &Path,
    id: &str,
    tmp_ext: &str,
    f: impl FnOnce(&mut ContainerRecord),
) -> Result<()> {
    let _lock = lock_record(root, id);
    let mut cur = load_raw(root, id)?;
    f(&mut cur);
    write_record(root, &cur, tmp_ext)
}

/// An exclusive flock of container `id`'s directory, held while its record is read and
/// written back ([`save`], [`change`]): a monitor saving its copy and an `rbox update` or
/// `rename` at the same moment would otherwise each write back the record it read, losing
/// the other's change. None when the directory cannot be opened (the write goes on).
fn lock_record(root: &Path, id: &str) -> Option<nix::fcntl::Flock<fs::File>> {
    let f = fs::File::open(layout::container_dir(root, id)).ok()?;
    nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive).ok()
}

fn write_record(root: &Path, rec: &ContainerRecord, tmp_ext: &str) -> Result<()> {
    let p = layout::container_record(root, &rec.id);
    let tmp = p.with_extension(tmp_ext);
    let data = serde_json::to_vec_pretty(rec).context("encode container record")?;
    fs::write(&tmp, data).with_context(|| format!("write `{}`", tmp.display()))?;
    let stamp = fs::symlink_metadata(&tmp).ok().map(|m| Stamp::of(&m));
    fs::rename(&tmp, &p).with_context(|| format!("rename `{}`", p.display()))?;
    if let Ok(mut w) = WRITTEN.lock() {
        *w = stamp.map(|s| (p, s));
    }
    Ok(())
}

/// The record this process wrote last, and what its file was: a record is only ever replaced
/// whole (a new file renamed over it), so while the file is that one, no other process
/// (`rbox update`, `rename`) has changed it since.
static WRITTEN: std::sync::Mutex<Option<(PathBuf, Stamp)>> = std::sync::Mutex::new(None);

/// What identifies a file's content without reading it: its identity and last change (a
/// build's copy of unchanged files, a record this process wrote).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Stamp {
    pub(crate) dev: u64,
    pub(crate) ino: u64,
    pub(crate) size: u64,
    pub(crate) mtime: (i64, i64),
    pub(crate) ctime: (i64, i64),
}

impl Stamp {
    pub fn of(md: &fs::Metadata) -> Stamp {
        use std::os::unix::fs::MetadataExt;
        Stamp {
            dev: md.dev(),
            ino: md.ino(),
            size: md.size(),
            mtime: (md.mtime(), md.mtime_nsec()),
            ctime: (md.ctime(), md.ctime_nsec()),
        }
    }
}

/// Whether container `id`'s record is still the file this process wrote last (one stat
/// instead of a read and parse of the record).
fn unchanged_since_written(root: &Path, id: &str) -> bool {
    let p = layout::container_record(root, id);
    let Some(stamp) = WRITTEN
        .lock()
        .ok()
        .and_then(|w| w.as_ref().filter(|(q, _)| *q == p).map(|(_, s)| *s))
    else {
        return false;
    };
    fs::symlink_metadata(&p).is_ok_and(|m| Stamp::of(&m) == stamp)
}

fn load_raw(root: &Path, id: &str) -> Result<ContainerRecord> {
    let p = layout::container_record(root, id);
    let data = fs::read(&p).with_context(|| format!("read `{}`", p.display()))?;
    serde_json::from_slice(&data).with_context(|| format!("parse `{}`", p.display()))
}

/// Field 22 (start time) of /proc/PID/stat, for a process that has not exited. A zombie
/// waiting for its monitor, or a process in its exit path (PF_EXITING: a namespace's init
/// stays there while the kernel tears its namespaces down), counts as gone.
pub fn proc_start_time(pid: i32) -> Option<u64> {
    const PF_EXITING: u64 = 0x4;
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // comm may contain spaces and parens: fields start after the last ')'
    let fields: Vec<&str> = s[s.rfind(')')? + 2..].split(' ').collect();
    // fields[0] is field 3 (state), fields[6] field 9 (flags), fields[19] field 22
    if matches!(fields.first(), Some(&"Z") | Some(&"X")) {
        return None;
    }
    let flags: u64 = fields.get(6)?.parse().ok()?;
    if flags & PF_EXITING != 0 {
        return None;
    }
    fields.get(19)?.parse().ok()
}

/// Record that `pid` runs the container, for other invocations to see.
/// `detached`: this process is a detached monitor. The restart count is kept.
pub fn mark_running(
    g: &Context,
    root: &Path,
    rec: &mut ContainerRecord,
    pid: i32,
    detached: bool,
) -> Result<()> {
    let live = Live {
        pid,
        start_time: proc_start_time(pid).unwrap_or(0),
        boot_id: paths::boot_id(),
        monitor: std::process::id() as i32,
        detached,
        monitor_start_time: rbox_storage::own_start_time(),
        paused: false,
        started: Some(false),
    };
    let dir = g.runtime_dir()?;
    let _lock = lock_live(&dir, &rec.id);
    write_live(&dir, &rec.id, &live)?;
    if detached {
        write_monitor_pid(&dir, &rec.id)?;
    }
    rec.state = State {
        status: Status::Running,
        pid,
        exit_code: None,
        started_at: now_rfc3339(),
        finished_at: String::new(),
        error: String::new(),
        live_dir: dir.to_string_lossy().into_owned(),
        restart_count: rec.state.restart_count,
    };
    save(root, rec)?;
    // attached in this process (`run`, `start -a`): Podman's `attach` after them, in the
    // same write (a monitor's client logs its own)
    let events: &[&str] = if detached {
        &["init", "start"]
    } else {
        &["init", "start", "attach"]
    };
    crate::events::container_all(g, rec, events);
    Ok(())
}

/// The pid file of a detached monitor (this process), for a service manager.
fn write_monitor_pid(dir: &Path, id: &str) -> Result<()> {
    let p = layout::monitor_pid(dir, id);
    fs::write(&p, format!("{}\n", std::process::id()))
        .with_context(|| format!("write `{}`", p.display()))
}

/// An exclusive flock of the directory that holds live state `id` of runtime directory
/// `dir`, released on drop: every writer of a live state holds it (see `update_live`).
/// `None` before the directory exists (nothing to race with yet).
fn lock_live(dir: &Path, id: &str) -> Option<nix::fcntl::Flock<fs::File>> {
    let p = layout::live_state(dir, id);
    let f = fs::File::open(p.parent().expect("has parent")).ok()?;
    nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive).ok()
}

fn write_live(dir: &Path, id: &str, live: &Live) -> Result<()> {
    let p = layout::live_state(dir, id);
    fs::create_dir_all(p.parent().expect("has parent"))
        .with_context(|| format!("create `{}`", p.display()))?;
    let tmp = p.with_extension("json.tmp");
    fs::write(&tmp, serde_json::to_vec(live).expect("plain struct"))
        .with_context(|| format!("write `{}`", tmp.display()))?;
    fs::rename(&tmp, &p).with_context(|| format!("rename `{}`", p.display()))
}

/// Record the exit of a container whose monitor (this process) restarts it after a delay:
/// exited, with the live state naming the monitor alone, so that `stop`, `rm` and `start`
/// find it and end the wait.
pub fn mark_restarting(
    g: &Context,
    root: &Path,
    rec: &mut ContainerRecord,
    code: i32,
) -> Result<()> {
    let me = std::process::id() as i32;
    // the record, then the live state replaced in one rename: no moment without either
    record_exit(root, rec, code)?;
    let live = Live {
        pid: 0,
        start_time: 0,
        boot_id: paths::boot_id(),
        monitor: me,
        detached: true,
        monitor_start_time: rbox_storage::own_start_time(),
        paused: false,
        started: None,
    };
    let dir = g.runtime_dir()?;
    let _lock = lock_live(&dir, &rec.id);
    write_live(&dir, &rec.id, &live)?;
    write_monitor_pid(&dir, &rec.id)
}

/// What a user asked of a running container, besides a signal: its monitor reads it when the
/// container's command exits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// `rbox stop`: no restart policy starts it again
    Stop,
    /// `rbox restart`: start it again at once, in the same network namespace
    Restart,
}

impl Request {
    fn suffix(self) -> &'static str {
        match self {
            Request::Stop => "stop",
            Request::Restart => "restart",
        }
    }
}

/// Leave `what` for the monitor of running container `rec`.
pub fn request(g: &Context, rec: &ContainerRecord, what: Request) -> Result<()> {
    let Some(dir) = live_runtime_dir(g, rec) else {
        return Ok(());
    };
    let p = layout::request(&dir, &rec.id, what.suffix());
    fs::write(&p, b"").with_context(|| format!("write `{}`", p.display()))
}

/// Remove what was asked of `rec`'s monitor and never read (it is gone: killed, or stopped
/// with SIGKILL).
pub fn clear_requests(g: &Context, rec: &ContainerRecord) {
    if let Some(dir) = live_runtime_dir(g, rec) {
        for what in [Request::Stop, Request::Restart] {
            fs::remove_file(layout::request(&dir, &rec.id, what.suffix())).ok();
        }
    }
}

/// The monitor's side: what was asked of container `id` since its start, taken (a stop
/// wins over a restart).
pub fn take_request(g: &Context, id: &str) -> Option<Request> {
    let dir = g.runtime_dir().ok()?;
    let mut got = None;
    for what in [Request::Restart, Request::Stop] {
        if fs::remove_file(layout::request(&dir, id, what.suffix())).is_ok() {
            got = Some(what);
        }
    }
    got
}

/// The monitor of an exited container that waits to restart it (its restart policy said so).
pub fn restarting_monitor(g: &Context, rec: &ContainerRecord) -> Option<i32> {
    if rec.state.status == Status::Running {
        return None;
    }
    read_live(g, rec)
        .filter(|l| l.pid == 0)
        .and_then(|l| alive_monitor(&l))
}

/// Whether the container runs under a detached monitor (which restarts it in place).
pub fn has_detached_monitor(g: &Context, rec: &ContainerRecord) -> bool {
    live(g, rec).is_some_and(|l| l.detached && l.monitor > 0)
}

/// Record the container's exit.
pub fn mark_exited(g: &Context, root: &Path, rec: &mut ContainerRecord, code: i32) -> Result<()> {
    // the record first: a reader in between sees it exited (with a live state that no longer
    // counts), never running without a live state (which would read as killed)
    let dir = live_runtime_dir(g, rec);
    record_exit(root, rec, code)?;
    if let Some(dir) = dir {
        fs::remove_file(layout::live_state(&dir, &rec.id)).ok();
        fs::remove_file(layout::monitor_pid(&dir, &rec.id)).ok();
        remove_exec_sessions(&dir, &rec.id);
    }
    Ok(())
}

/// Forget the `exec -d` sessions of a start that ended (see [`layout::exec_sessions`]).
fn remove_exec_sessions(dir: &Path, id: &str) {
    fs::remove_dir_all(layout::exec_sessions(dir, id)).ok();
}

/// The ids of the `exec -d` sessions of `rec`'s current start, newest first.
pub fn exec_session_ids(g: &Context, rec: &ContainerRecord) -> Vec<String> {
    let Some(dir) = live_runtime_dir(g, rec) else {
        return Vec::new();
    };
    let Ok(entries) = fs::read_dir(layout::exec_sessions(&dir, &rec.id)) else {
        return Vec::new();
    };
    let mut ids: Vec<(std::time::SystemTime, String)> = entries
        .flatten()
        .filter_map(|e| {
            let t = e.metadata().and_then(|m| m.modified()).ok()?;
            Some((t, e.file_name().to_str()?.to_string()))
        })
        .collect();
    ids.sort_by(|a, b| b.cmp(a));
    ids.into_iter().map(|(_, id)| id).collect()
}

/// Forget the session `id` of `rec` (its command could not start).
pub fn forget_exec_session(g: &Context, rec: &ContainerRecord, id: &str) {
    if let Some(dir) = live_runtime_dir(g, rec) {
        fs::remove_file(layout::exec_sessions(&dir, &rec.id).join(id)).ok();
    }
}

/// Record a new `exec -d` session of `rec`'s current start; returns its id (64 hex digits,
/// as Podman prints it).
pub fn new_exec_session(g: &Context, rec: &ContainerRecord) -> Result<String> {
    let id = new_id()?;
    if let Some(dir) = live_runtime_dir(g, rec) {
        let d = layout::exec_sessions(&dir, &rec.id);
        fs::create_dir_all(&d)
            .and_then(|()| fs::File::create(d.join(&id)))
            .with_context(|| format!("record exec session in `{}`", d.display()))?;
    }
    Ok(id)
}

fn record_exit(root: &Path, rec: &mut ContainerRecord, code: i32) -> Result<()> {
    rec.state.status = Status::Exited;
    rec.state.pid = 0;
    rec.state.exit_code = Some(code);
    rec.state.finished_at = now_rfc3339();
    save(root, rec)
}

/// Remove the live state of `rec`'s last start (its monitor is gone).
pub fn remove_live(g: &Context, rec: &ContainerRecord) {
    if let Some(dir) = live_runtime_dir(g, rec) {
        fs::remove_file(layout::live_state(&dir, &rec.id)).ok();
        fs::remove_file(layout::monitor_pid(&dir, &rec.id)).ok();
        fs::remove_file(layout::attach_socket(&dir, &rec.id)).ok();
        remove_exec_sessions(&dir, &rec.id);
    }
}

/// Correct a record that says running when its process is gone (killed monitor, reboot).
/// While the monitor of that start still runs, it is recording the exit (it stops the
/// network, runs the poststop hooks, then writes the record): its record is waited for, a
/// while, rather than the exit guessed. Returns false when the container was removed
/// meanwhile (`--rm`).
fn refresh(g: &Context, rec: &mut ContainerRecord) -> bool {
    if rec.state.status != Status::Running || live(g, rec).is_some() {
        return true;
    }
    match recorded_by_monitor(g, rec) {
        Recorded::Removed => return false,
        Recorded::Now(newer) => *rec = *newer,
        Recorded::Unreadable => {}
    }
    if rec.state.status == Status::Running && live(g, rec).is_none() {
        rec.state.status = Status::Exited;
        rec.state.pid = 0;
        rec.state.exit_code.get_or_insert(UNOBSERVED_EXIT);
        if rec.state.finished_at.is_empty() {
            rec.state.finished_at = rec.state.started_at.clone();
        }
    }
    true
}

/// How long a reader waits for a live monitor to record the exit of its container (a few
/// milliseconds as a rule: stopping the network helper takes 20-30).
const RECORD_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// What the monitor of a container whose init is gone has recorded.
enum Recorded {
    /// the record cannot be read again: the exit is guessed
    Unreadable,
    /// the record as it is now: exited, started again, or still running when the monitor
    /// took longer than [`RECORD_WAIT`]
    Now(Box<ContainerRecord>),
    /// the record is gone (`--rm`)
    Removed,
}

/// Wait, at most [`RECORD_WAIT`], for the monitor of `rec`'s start, while it runs, to record
/// the exit of its container; `rec` says running and its init is gone.
fn recorded_by_monitor(g: &Context, rec: &ContainerRecord) -> Recorded {
    let Ok(root) = g.storage_root() else {
        return Recorded::Unreadable;
    };
    let deadline = std::time::Instant::now() + RECORD_WAIT;
    loop {
        // the live state of this start, naming a monitor that runs; mark_exited writes the
        // record before it removes the live state, so a record read after that look is final
        let monitor = read_live(g, rec)
            .filter(|l| l.pid == rec.state.pid)
            .and_then(|l| alive_monitor(&l));
        let cur = match load_raw(&root, &rec.id) {
            Ok(cur) => cur,
            Err(_) if !layout::container_record(&root, &rec.id).exists() => {
                return Recorded::Removed
            }
            Err(_) => return Recorded::Unreadable,
        };
        let same_start = cur.state.status == Status::Running && cur.state.pid == rec.state.pid;
        if !same_start {
            return Recorded::Now(Box::new(cur));
        }
        if monitor.is_none() || std::time::Instant::now() >= deadline {
            return Recorded::Now(Box::new(cur));
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}

/// Every container, with its running state checked against the live processes.
pub fn list(g: &Context) -> Result<Vec<ContainerRecord>> {
    let root = g.storage_root()?;
    let mut out = Vec::new();
    let rd = match fs::read_dir(layout::containers_dir(&root)) {
        Ok(rd) => rd,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(out),
        Err(e) => bail!("read `{}`: {e}", layout::containers_dir(&root).display()),
    };
    for ent in rd.flatten() {
        let id = ent.file_name().to_string_lossy().into_owned();
        if id.len() != 64 {
            continue;
        }
        // A directory without a record is a create in progress or an interrupted one.
        if let Ok(mut rec) = load_raw(&root, &id) {
            if refresh(g, &mut rec) {
                out.push(rec);
            }
        }
    }
    out.sort_by(|a, b| b.created.cmp(&a.created));
    Ok(out)
}

/// The record of container `id` as written, without checking its process.
pub fn load(g: &Context, id: &str) -> Result<ContainerRecord> {
    load_raw(&g.storage_root()?, id)
}

/// No container has this name or id prefix; Podman's words, which scripts match.
#[derive(Debug, thiserror::Error)]
#[error("no container with name or ID \"{0}\" found: no such container")]
pub struct NoSuchContainer(pub String);

/// The container created last (`--latest`), or Podman's words when there is none.
pub fn latest(g: &Context) -> Result<ContainerRecord> {
    match list(g)?.into_iter().next() {
        Some(rec) => Ok(rec),
        None => bail!("no such container"),
    }
}

/// Find a container by full id, unique id prefix, or name.
pub fn lookup(g: &Context, name_or_id: &str) -> Result<ContainerRecord> {
    let root = g.storage_root()?;
    if let Ok(text) = fs::read_to_string(layout::container_name(&root, name_or_id)) {
        if let Ok(mut rec) = load_raw(&root, reserved_id(&text)) {
            if refresh(g, &mut rec) {
                return Ok(rec);
            }
        }
    }
    let all = list(g)?;
    let hits: Vec<_> =
        if name_or_id.chars().all(|c| c.is_ascii_hexdigit()) && !name_or_id.is_empty() {
            all.into_iter()
                .filter(|r| r.id.starts_with(name_or_id))
                .collect()
        } else {
            Vec::new()
        };
    match hits.len() {
        1 => Ok(hits.into_iter().next().expect("one")),
        0 => Err(NoSuchContainer(name_or_id.to_string()).into()),
        _ => bail!("container id prefix `{name_or_id}` is ambiguous: give more digits"),
    }
}

/// The live state of `rec`, when its init runs now: same boot, same pid and start time (a
/// pid reused by another process is not ours to signal).
fn live(g: &Context, rec: &ContainerRecord) -> Option<Live> {
    let l = read_live(g, rec)?;
    let alive = l.boot_id == paths::boot_id()
        && l.pid > 0
        && proc_start_time(l.pid).is_some_and(|t| t == l.start_time || l.start_time == 0);
    alive.then_some(l)
}

/// The pids of a running container's init and of the rbox process attached to it.
pub fn live_pids(g: &Context, rec: &ContainerRecord) -> Option<(i32, i32)> {
    live(g, rec).map(|l| (l.pid, l.monitor))
}

/// The monitor named in `rec`'s live state while it runs, whatever its container does: it
/// may be starting the command again, or recording its exit (`rbox wait` waits for it).
pub fn live_monitor(g: &Context, rec: &ContainerRecord) -> Option<i32> {
    read_live(g, rec).and_then(|l| alive_monitor(&l))
}

/// The live state of `rec`'s last start as written, whatever runs now.
fn read_live(g: &Context, rec: &ContainerRecord) -> Option<Live> {
    let p = live_path(g, rec)?;
    serde_json::from_slice(&fs::read(p).ok()?).ok()
}

/// The monitor `l` names, while it runs (this boot, its start time when recorded: a reused
/// pid is not it). A restart wait records the start time; a running container's live
/// state, older ones, may not.
fn alive_monitor(l: &Live) -> Option<i32> {
    let same = |t: u64| l.monitor_start_time == 0 || t == l.monitor_start_time;
    let alive = l.monitor > 0
        && l.boot_id == paths::boot_id()
        && proc_start_time(l.monitor).is_some_and(same);
    alive.then_some(l.monitor)
}

/// Whether `rbox pause` froze the running container `rec`.
pub fn is_paused(g: &Context, rec: &ContainerRecord) -> bool {
    is_running(rec) && live(g, rec).is_some_and(|l| l.paused)
}

/// Record that the running container `rec` is paused or not (its live state, in the runtime
/// directory its start used).
pub fn set_paused(g: &Context, rec: &ContainerRecord, paused: bool) -> Result<()> {
    update_live(g, rec, true, |l| l.paused = paused)
}

/// Record that the running container `rec`'s init runs the command (see `Live::started`).
/// Written by the monitor as written by `mark_running`, whether the command is still there
/// (it may have exited already).
pub fn set_started(g: &Context, rec: &ContainerRecord) -> Result<()> {
    update_live(g, rec, false, |l| l.started = Some(true))
}

/// Change one field of `rec`'s live state (`alive`: only while its init runs), read and
/// written back under an exclusive flock of the live-state directory: a `pause` and the
/// monitor's start marker at the same moment would otherwise each write back the state it
/// read, losing the other's change.
fn update_live(
    g: &Context,
    rec: &ContainerRecord,
    alive: bool,
    change: impl FnOnce(&mut Live),
) -> Result<()> {
    let Some(dir) = live_runtime_dir(g, rec) else {
        bail!("container {} has no live state", rec.name);
    };
    let _lock = lock_live(&dir, &rec.id);
    let found = if alive {
        live(g, rec)
    } else {
        read_live(g, rec)
    };
    let Some(mut l) = found else {
        if alive {
            bail!("container {} is not running", rec.name);
        }
        bail!("container {} has no live state", rec.name);
    };
    change(&mut l);
    write_live(&dir, &rec.id, &l)
}

/// Whether running container `rec`'s init runs the command, not still setting up: an
/// `exec` then would join namespaces it is still changing (a pivot_root moves the exec's
/// root along). True where the monitor did not record it, or nothing runs.
pub fn command_started(g: &Context, rec: &ContainerRecord) -> bool {
    live(g, rec).is_none_or(|l| l.started != Some(false))
}

/// Whether the container's process is running now.
pub fn is_running(rec: &ContainerRecord) -> bool {
    rec.state.status == Status::Running
}

/// Forget a container: its record, live state, name and `--userns=auto` reservation (its ids
/// are free for the next container at once). The caller removes its storage directory (which
/// holds files owned by mapped ids) from inside the user namespace.
pub fn remove(g: &Context, rec: &ContainerRecord) -> Result<()> {
    remove_but_record(g, rec)?;
    fs::remove_file(layout::container_record(&g.storage_root()?, &rec.id)).ok();
    Ok(())
}

/// [`remove`] for a caller whose next step renames the container's directory away
/// (`Store::detach_container_dir`), which takes the record in it along: one file fewer to
/// unlink on an attached `run --rm`'s way out.
pub fn remove_but_record(g: &Context, rec: &ContainerRecord) -> Result<()> {
    let root = g.storage_root()?;
    crate::events::container(g, rec, "remove");
    remove_live(g, rec);
    clear_requests(g, rec);
    release_name(&root, &rec.name, &rec.id);
    crate::runtime::userns_auto::release(&root, &rec.id);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_addresses_show_as_podman_writes_them() {
        let p = |ip: &str| PortSpec {
            host_ip: ip.into(),
            host_port: 8080,
            container_port: 80,
            protocol: "tcp".into(),
        };
        assert_eq!(p("").host_addr(), "0.0.0.0:8080");
        assert_eq!(p("127.0.0.1").host_addr(), "127.0.0.1:8080");
        assert_eq!(p("::1").host_addr(), "[::1]:8080");
    }

    #[test]
    fn names() {
        assert!(validate_name("web-1.a_b").is_ok());
        assert!(validate_name("-x").is_err());
        assert!(validate_name("a/b").is_err());
        assert!(validate_name("").is_err());
        let n = generate_name(&"ab".repeat(32));
        assert!(validate_name(&n).is_ok(), "{n}");
    }

    #[test]
    fn reservation_is_exclusive() {
        let d = tempfile::tempdir().unwrap();
        // "1111" has no record yet and its creator (this process) runs: a create in progress
        reserve_name(d.path(), "web", "1111").unwrap();
        let e = reserve_name(d.path(), "web", "3333").unwrap_err();
        assert!(e.to_string().contains("already in use by 1111"), "{e}");
        // its creator gone (a child that exited and was reaped): stale, taken over
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        fs::write(
            layout::container_name(d.path(), "web"),
            format!("1111\n{dead} 12345\n"),
        )
        .unwrap();
        reserve_name(d.path(), "web", "3333").unwrap();
        // a reservation of an older rbox (no creator line) without a record is stale too
        fs::write(layout::container_name(d.path(), "old"), "4444").unwrap();
        reserve_name(d.path(), "old", "3333").unwrap();
        // one with a record is never stale
        fs::create_dir_all(layout::container_dir(d.path(), "2222")).unwrap();
        fs::write(layout::container_record(d.path(), "2222"), "{}").unwrap();
        reserve_name(d.path(), "db", "2222").unwrap();
        let e = reserve_name(d.path(), "db", "3333").unwrap_err();
        assert!(e.to_string().contains("already in use"), "{e}");
    }

    #[test]
    fn start_time_of_self() {
        assert!(proc_start_time(std::process::id() as i32).is_some());
    }

    #[test]
    fn generated_names_move_on_when_taken() {
        let d = tempfile::tempdir().unwrap();
        // an existing container "other" holds names (a holder without a record is stale)
        fs::create_dir_all(layout::container_dir(d.path(), "other")).unwrap();
        fs::write(layout::container_record(d.path(), "other"), "{}").unwrap();
        let id = "1a2b3c4d5e6fa1b2c3d4e5f60f1e2d3c4b5affeeddccbbaa9876543210fedcba";
        let windows: Vec<String> = (0..4).map(|k| generate_name(&id[12 * k..])).collect();
        assert_ne!(
            windows[0], windows[1],
            "the test needs two different window names"
        );
        // the first choice is taken: the name from the id's next digits
        reserve_name(d.path(), &windows[0], "other").unwrap();
        assert_eq!(reserve_generated_name(d.path(), id).unwrap(), windows[1]);
        // every window's name is taken: the id's digits make one nobody else can hold
        for n in &windows {
            let _ = try_reserve_name(d.path(), n, "other");
        }
        fs::remove_file(layout::container_name(d.path(), &windows[1])).unwrap();
        reserve_name(d.path(), &windows[1], "other").unwrap();
        let got = reserve_generated_name(d.path(), id).unwrap();
        assert_eq!(got, format!("{}_{}", windows[0], &id[..12]));
        assert!(validate_name(&got).is_ok(), "{got}");
    }

    /// A record as the build before the typed modes wrote it (`to_vec_pretty`), with the
    /// mode strings put in by the test.
    fn old_record(network: &str, userns: &str) -> String {
        format!(
            r#"{{
  "id": "{id}",
  "name": "web",
  "image": "alpine",
  "image_name": "localhost/alpine:latest",
  "image_id": "{id}",
  "created": "2024-01-01T00:00:00.000000000Z",
  "driver": "overlay",
  "auto_remove": false,
  "spec": {{
    "args": [
      "sh"
    ],
    "env": [],
    "workdir": "/",
    "user": "",
    "hostname": "web",
    "mounts": [
      {{
        "kind": "bind",
        "source": "/src",
        "destination": "/data",
        "options": [
          "ro"
        ]
      }},
      {{
        "kind": "tmpfs",
        "source": "tmpfs",
        "destination": "/tmp",
        "options": []
      }}
    ],
    "read_only": false,
    "init": false,
    "tty": false,
    "interactive": false,
    "network": "{network}",
    "userns": "{userns}",
    "cap_add": [],
    "cap_drop": [],
    "privileged": false,
    "no_new_privileges": false,
    "seccomp": "default",
    "entrypoint": [],
    "cmd": [],
    "labels": {{}},
    "stop_signal": null
  }},
  "state": {{
    "status": "created",
    "pid": 0,
    "exit_code": null,
    "started_at": "",
    "finished_at": "",
    "error": ""
  }}
}}"#,
            id = "ab".repeat(32)
        )
    }

    #[test]
    fn old_mode_strings_load_and_write_back_the_same() {
        for (net, userns, want_net, want_userns) in [
            ("none", "", NetworkMode::None, UsernsMode::Default),
            ("host", "keep-id", NetworkMode::Host, UsernsMode::KeepId),
            ("none", "host", NetworkMode::None, UsernsMode::Host),
        ] {
            let text = old_record(net, userns);
            let rec: ContainerRecord = serde_json::from_str(&text).unwrap();
            assert_eq!((rec.spec.network, rec.spec.userns), (want_net, want_userns));
            let kinds: Vec<_> = rec.spec.mounts.iter().map(|m| m.kind).collect();
            assert_eq!(kinds, [MountKind::Bind, MountKind::Tmpfs]);
            let back = serde_json::to_vec_pretty(&rec).unwrap();
            assert_eq!(String::from_utf8(back).unwrap(), text);
            // inspect and ps show the modes as the flags spell them
            assert_eq!(
                (rec.spec.network.to_string(), rec.spec.userns.to_string()),
                (net.to_string(), userns.to_string())
            );
        }
    }

    #[test]
    fn unknown_mode_strings_do_not_load() {
        let text = old_record("bridge", "");
        assert!(serde_json::from_str::<ContainerRecord>(&text).is_err());
        let text = old_record("none", "bogus");
        assert!(serde_json::from_str::<ContainerRecord>(&text).is_err());
    }

    #[test]
    fn modes_from_flags() {
        let mode = |s: &str| NetworkMode::from_flag(s);
        assert_eq!(mode("none"), Some((NetworkMode::None, String::new())));
        assert_eq!(mode("host"), Some((NetworkMode::Host, String::new())));
        assert_eq!(mode("pasta"), Some((NetworkMode::Pasta, String::new())));
        assert_eq!(
            mode("slirp4netns:allow_host_loopback=true,mtu=1500"),
            Some((
                NetworkMode::Slirp4netns,
                "allow_host_loopback=true,mtu=1500".into()
            ))
        );
        assert_eq!(mode(""), None);
        assert_eq!(mode("bridge"), None);
        assert_eq!(mode("host:x"), None, "only bridges take options");
        assert_eq!(
            mode("container:web"),
            Some((NetworkMode::Container, "web".into()))
        );
        assert_eq!(
            mode("ns:/proc/1/ns/net"),
            Some((NetworkMode::Ns, "/proc/1/ns/net".into()))
        );
        assert_eq!(mode("container"), None, "container: names its container");
        assert_eq!(mode("ns:"), None, "ns: names its path");
        assert!(NetworkMode::Container.joins() && !NetworkMode::Container.is_bridge());
        assert!(NetworkMode::Pasta.is_bridge() && !NetworkMode::Host.is_bridge());
        assert_eq!(UsernsMode::from_flag(""), Some(UsernsMode::Default));
        assert_eq!(UsernsMode::from_flag("host"), Some(UsernsMode::Host));
        assert_eq!(UsernsMode::from_flag("keep-id"), Some(UsernsMode::KeepId));
        assert_eq!(UsernsMode::from_flag("auto"), Some(UsernsMode::Auto));
        assert_eq!(UsernsMode::from_flag("nomap"), Some(UsernsMode::Nomap));
        assert_eq!(UsernsMode::from_flag("keep-id:uid=1"), None);
        assert_eq!(UsernsMode::from_flag("Keep-Id"), None);
        for m in [
            NetworkMode::None,
            NetworkMode::Host,
            NetworkMode::Pasta,
            NetworkMode::Slirp4netns,
        ] {
            assert_eq!(NetworkMode::from_flag(m.as_str()), Some((m, String::new())));
        }
        for m in [UsernsMode::Default, UsernsMode::Host, UsernsMode::KeepId] {
            assert_eq!(UsernsMode::from_flag(m.as_str()), Some(m));
        }
    }
}
