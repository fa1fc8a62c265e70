//! `rbox run` and `rbox create`: the flags they share (as Podman shares them) and their handlers.
//! The fork/exec flow itself is in `runtime/`, which gets the flags as plain
//! [`RunOptions`] and pulls a missing image through [`ShowPull`], the display `rbox pull` uses.

use std::path::PathBuf;
use std::process::ExitCode;

use rbox_registry::PullOptions;
use rbox_storage::{ImageRecord, Store};

use crate::context::Context;
use crate::runtime::{self, spec::Flags, RunOptions};

#[derive(Debug, Clone, clap::Args)]
#[command(trailing_var_arg = true, disable_help_flag = true)]
pub struct RunArgs {
    /// Print help (`-h` is --hostname, as in podman)
    #[arg(long, action = clap::ArgAction::Help)]
    pub help: Option<bool>,
    /// Assign a name to the container
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Write the container's id to FILE (which must not exist yet)
    #[arg(long, value_name = "FILE")]
    pub cidfile: Option<PathBuf>,
    /// Keep STDIN open even if not attached
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Allocate a pseudo-TTY for the container
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Run the container in the background and print its ID
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// Streams of the container to show (stdin, stdout, stderr; repeatable or comma-separated;
    /// default: all): the others still go to its log. stdin follows -i, as in Podman
    #[arg(
        short = 'a',
        long = "attach",
        value_name = "STREAM",
        value_delimiter = ','
    )]
    pub attach: Vec<String>,
    /// Remove the container when it exits
    #[arg(long)]
    pub rm: bool,
    /// Keys that detach from the container and leave it running (with -i): single
    /// characters and ctrl-<value> (a-z, @, [, \, ], ^, _), comma-separated (default
    /// ctrl-p,ctrl-q; empty: none)
    #[arg(long = "detach-keys", value_name = "KEYS")]
    pub detach_keys: Option<String>,
    /// Pass the signals rbox receives on to the container (true); false: they end rbox and
    /// the container goes on
    #[arg(long = "sig-proxy", value_name = "BOOL", num_args = 0..=1,
          default_missing_value = "true", action = clap::ArgAction::Set)]
    pub sig_proxy: Option<bool>,
    /// Set environment variables (KEY=VALUE, or KEY to pass the caller's value)
    #[arg(short = 'e', long = "env", value_name = "ENV")]
    pub env: Vec<String>,
    /// Read environment variables from a file of KEY=VALUE lines
    #[arg(long = "env-file", value_name = "FILE")]
    pub env_file: Vec<PathBuf>,
    /// Set metadata on the container (KEY=VALUE)
    #[arg(short = 'l', long = "label", value_name = "LABEL")]
    pub label: Vec<String>,
    /// Read labels from a file of KEY=VALUE lines
    #[arg(long = "label-file", value_name = "FILE")]
    pub label_file: Vec<PathBuf>,
    /// Overwrite the image's ENTRYPOINT
    #[arg(long, value_name = "CMD")]
    pub entrypoint: Option<String>,
    /// Working directory inside the container
    #[arg(short = 'w', long = "workdir", value_name = "DIR")]
    pub workdir: Option<String>,
    /// Username or UID, with an optional group (user[:group])
    #[arg(short = 'u', long = "user", value_name = "USER[:GROUP]")]
    pub user: Option<String>,
    /// Container host name
    #[arg(short = 'h', long = "hostname", value_name = "NAME")]
    pub hostname: Option<String>,
    /// Mount a host path (SRC:DST), a named volume (NAME:DST, created on first use) or an
    /// anonymous volume (DST), with options ro, rw, nosuid, nodev, noexec, and for volumes
    /// U (chown to the container's user), copy, nocopy (do not fill a new volume from the
    /// image)
    #[arg(short = 'v', long = "volume", value_name = "SRC:DST[:OPTS]")]
    pub volume: Vec<String>,
    /// Give the container a secret (see `rbox secret create`): a read-only file at
    /// /run/secrets/NAME or TARGET (type=mount, the default; uid, gid and mode set its owner
    /// and mode, 0444 root's by default), or the variable NAME or TARGET (type=env). The data
    /// is copied at create: removing the secret later does not change the container
    #[arg(
        long = "secret",
        value_name = "NAME[,type=mount|env][,target=T][,uid=N][,gid=N][,mode=M]",
        add = crate::cli::complete::secret_candidates()
    )]
    pub secret: Vec<String>,
    /// Mount the volumes and bind mounts of CONTAINER, read-only or read-write as there
    /// unless :ro or :rw is given
    #[arg(long = "volumes-from", value_name = "CONTAINER[:ro|rw]")]
    pub volumes_from: Vec<String>,
    /// What the image's VOLUME entries get: bind (anonymous volumes, filled from the image;
    /// the default), tmpfs, or ignore (nothing: the image's directories as they are)
    #[arg(long = "image-volume", value_name = "MODE")]
    pub image_volume: Option<String>,
    /// Mount a tmpfs (DST[:OPTIONS])
    #[arg(long = "tmpfs", value_name = "DST[:OPTS]")]
    pub tmpfs: Vec<String>,
    /// Attach a filesystem mount: type=bind,source=SRC,target=DST[,ro][,bind-propagation=
    /// private][,bind-nonrecursive], type=volume[,source=NAME],target=DST[,ro][,volume-nocopy]
    /// [,U], type=tmpfs,target=DST[,tmpfs-size=SIZE][,tmpfs-mode=MODE], type=devpts,target=DST
    /// or type=image,source=IMAGE,target=DST[,rw=true] (a local image's files, read-only
    /// unless rw, the writes then kept with the container)
    #[arg(long = "mount", value_name = "type=TYPE,TYPE-OPTS")]
    pub mount: Vec<String>,
    /// A host device for the container: HOST[:CONTAINER][:PERMISSIONS]; bind-mounted, as a
    /// rootless container cannot create device nodes (a directory such as /dev/dri takes its
    /// devices along). Or a CDI device, vendor.com/class=NAME (or =all), from the CDI specs
    /// in /etc/cdi and /var/run/cdi (containers.conf's cdi_spec_dirs)
    #[arg(long = "device", value_name = "HOST[:CONTAINER][:PERMISSIONS]")]
    pub device: Vec<String>,
    /// GPUs for the container: all, a count, or device=ID[,ID...]; the CDI devices
    /// nvidia.com/gpu=... (a CDI spec of them must exist, e.g. from `nvidia-ctk cdi generate`)
    #[arg(long = "gpus", value_name = "GPUS")]
    pub gpus: Option<String>,
    /// Bind the host's NVIDIA driver (libraries found by `ldconfig -p`, nvidia-smi and other
    /// tools, /dev/nvidia* nodes) into the container, with its library directory in
    /// LD_LIBRARY_PATH, as Apptainer's --nv; for hosts without a CDI spec
    #[arg(long = "nv")]
    pub nv: bool,
    /// Mount the container's root filesystem read-only
    #[arg(long = "read-only")]
    pub read_only: bool,
    /// Run a small init as PID 1 that forwards signals and reaps processes
    #[arg(long)]
    pub init: bool,
    /// Network mode: none (loopback only), host, pasta[:OPTIONS] or slirp4netns[:OPTIONS]
    /// (a user-mode bridge to the host's network; the default: pasta when installed, else
    /// slirp4netns), container:NAME|ID (share a running container's network) or ns:PATH (join
    /// the network namespace at PATH)
    #[arg(long = "network", alias = "net", value_name = "MODE")]
    pub network: Option<String>,
    /// Network-scoped alias: refused, as Podman refuses it outside bridge networks, which
    /// rbox does not make
    #[arg(long = "network-alias", value_name = "ALIAS")]
    pub network_alias: Vec<String>,
    /// DNS server for the container's /etc/resolv.conf (replaces the host's)
    #[arg(long = "dns", value_name = "IP")]
    pub dns: Vec<String>,
    /// DNS search domain for /etc/resolv.conf ("." for none)
    #[arg(long = "dns-search", value_name = "DOMAIN")]
    pub dns_search: Vec<String>,
    /// DNS resolver option for /etc/resolv.conf (such as ndots:2)
    #[arg(long = "dns-option", value_name = "OPTION")]
    pub dns_option: Vec<String>,
    /// Add a line to the container's /etc/hosts (HOST:IP)
    #[arg(long = "add-host", value_name = "HOST:IP")]
    pub add_host: Vec<String>,
    /// Leave the image's /etc/hosts as it is (no container name, host.containers.internal or
    /// --add-host lines; false: write them even where containers.conf says no_hosts)
    #[arg(long = "no-hosts", value_name = "BOOL", num_args = 0..=1, require_equals = true,
          default_missing_value = "true")]
    pub no_hosts: Option<bool>,
    /// Publish a container's port on the host ([IP:][HOST_PORT:]CONTAINER_PORT[/PROTO]; needs
    /// --network=pasta or slirp4netns)
    #[arg(short = 'p', long = "publish", value_name = "SPEC")]
    pub publish: Vec<String>,
    /// Publish every exposed port (the image's and --expose's) on a free host port
    #[arg(short = 'P', long = "publish-all")]
    pub publish_all: bool,
    /// Expose a port or a range (PORT[-PORT][/PROTO]), for -P
    #[arg(long = "expose", value_name = "PORT")]
    pub expose: Vec<String>,
    /// User namespace mode: "" (container root is you), host (the same), keep-id[:uid=N,gid=N]
    /// (your own uid inside), nomap (only subordinate ids inside) or auto[:size=N] (a range of
    /// subordinate ids no other container uses)
    #[arg(long = "userns", value_name = "MODE", default_value = "")]
    pub userns: String,
    /// Map container ids to ids of rbox's user namespace (CONTAINER_ID:HOST_ID:AMOUNT; 0 is
    /// you, 1 the first subordinate id); the only map when --gidmap is not given
    #[arg(long = "uidmap", value_name = "MAP")]
    pub uidmap: Vec<String>,
    /// Map container gids, as --uidmap maps uids
    #[arg(long = "gidmap", value_name = "MAP")]
    pub gidmap: Vec<String>,
    /// Map container uids 0.. to NAME's range in /etc/subuid (rootless: one of your own
    /// ranges); the gid map too when --subgidname is not given
    #[arg(long = "subuidname", value_name = "NAME")]
    pub subuidname: Option<String>,
    /// Map container gids 0.. to NAME's range in /etc/subgid, as --subuidname maps uids
    #[arg(long = "subgidname", value_name = "NAME")]
    pub subgidname: Option<String>,
    /// Add the host user NAME's (or uid's) entry to the container's /etc/passwd, unless the
    /// image has one of that name or uid (repeatable, or NAME,NAME)
    #[arg(long = "hostuser", value_name = "NAME")]
    pub hostuser: Vec<String>,
    /// Add entries to /etc/passwd and /etc/group for a user the image lacks (a numeric --user,
    /// --userns=keep-id) (true)
    #[arg(long = "passwd", value_name = "BOOL", num_args = 0..=1,
          default_value_t = true, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub passwd: bool,
    /// The /etc/passwd line added for a user the image lacks (and for each --hostuser), with
    /// $USERNAME, $UID, $GID, $NAME (the comment field) and $HOME replaced
    #[arg(long = "passwd-entry", value_name = "TEMPLATE")]
    pub passwd_entry: Option<String>,
    /// Add Linux capabilities
    #[arg(long = "cap-add", value_name = "CAP")]
    pub cap_add: Vec<String>,
    /// Drop Linux capabilities
    #[arg(long = "cap-drop", value_name = "CAP")]
    pub cap_drop: Vec<String>,
    /// Give the container every capability, no masked paths and no seccomp filter (unless one
    /// is given with --security-opt seccomp=PROFILE.json)
    #[arg(long)]
    pub privileged: bool,
    /// Security options: no-new-privileges[=true|false] (off by default, as in podman);
    /// seccomp=unconfined or seccomp=PROFILE.json (a profile in containers-common's format;
    /// the default is podman's default profile); fakeroot[=true|false|auto] (rbox's own: the
    /// seccomp filter makes chown, fchown, lchown, fchownat, the set*id calls, setgroups and
    /// mknod of character and block devices succeed without doing anything, so that package
    /// managers work where your user has no /etc/subuid range, where the root is the FUSE
    /// overlay and a chown of a file on it is recorded; no device node is made; apt is told to
    /// download as root through APT_CONFIG; auto fakes only on such a single-id map, as rbox
    /// build's RUN steps do); apparmor=unconfined and
    /// label=disable are accepted and change nothing (rbox applies no AppArmor or SELinux
    /// profile)
    #[arg(long = "security-opt", value_name = "OPT")]
    pub security_opt: Vec<String>,
    /// Restart policy when the command exits: no, on-failure[:MAX_RETRIES], always,
    /// unless-stopped (detached containers are restarted by their monitor; an attached run
    /// that is restarted goes on detached)
    #[arg(long, value_name = "POLICY")]
    pub restart: Option<String>,
    /// Command that tells whether the container is healthy: a shell command, or a JSON array
    /// (exec form); none for none. The monitor of a detached container runs it at its interval
    #[arg(long = "health-cmd", value_name = "COMMAND")]
    pub health_cmd: Option<String>,
    /// Time between two checks (30s; disable: only `rbox healthcheck run`)
    #[arg(long = "health-interval", value_name = "DURATION")]
    pub health_interval: Option<String>,
    /// Time a check may take before it counts as failed (30s)
    #[arg(long = "health-timeout", value_name = "DURATION")]
    pub health_timeout: Option<String>,
    /// Time after the start when failed checks do not count (0s)
    #[arg(long = "health-start-period", value_name = "DURATION")]
    pub health_start_period: Option<String>,
    /// Failed checks in a row that make the container unhealthy (3)
    #[arg(long = "health-retries", value_name = "N")]
    pub health_retries: Option<u32>,
    /// What happens to a container that turns unhealthy: none, kill, restart, stop
    #[arg(long = "health-on-failure", value_name = "ACTION")]
    pub health_on_failure: Option<String>,
    /// No healthcheck, not even the image's
    #[arg(long = "no-healthcheck")]
    pub no_healthcheck: bool,
    /// Where the container's output goes: k8s-file (kept for `rbox logs`, with times and
    /// streams), none, passthrough (straight to rbox's own stdout and stderr, attached runs)
    #[arg(long = "log-driver", value_name = "DRIVER")]
    pub log_driver: Option<String>,
    /// Log option: max-size=SIZE (the log is emptied when it would grow past it), path=FILE
    #[arg(long = "log-opt", value_name = "KEY=VALUE")]
    pub log_opt: Vec<String>,
    /// The first argument is a directory of the host to use as the root filesystem instead
    /// of an image (`--rootfs /`: the host's own); overlaid, so it is never written
    #[arg(long)]
    pub rootfs: bool,
    /// Run a squashfs image file (`rbox save --format squashfs`) instead of an image of the
    /// store: mounted read-only without unpacking (squashfuse), changes go to the container;
    /// every argument is then the command
    #[arg(long = "image-file", value_name = "FILE", value_hint = clap::ValueHint::FilePath,
          conflicts_with = "rootfs")]
    pub image_file: Option<PathBuf>,
    /// Signal that stops the container (`rbox stop`), instead of the image's or SIGTERM: a
    /// name (TERM, SIGUSR1, RTMIN+3) or a number
    #[arg(long = "stop-signal", value_name = "SIGNAL")]
    pub stop_signal: Option<String>,
    /// Seconds `rbox stop` waits for the stop signal to work before SIGKILL (10), when it
    /// is not given -t
    #[arg(long = "stop-timeout", value_name = "SECONDS")]
    pub stop_timeout: Option<u64>,
    /// Kill the container (SIGKILL) once it has run this many seconds (0: never)
    #[arg(long = "timeout", value_name = "SECONDS")]
    pub timeout: Option<u64>,
    /// Resource limit of the container's process: NAME=SOFT[:HARD] (nofile, nproc, core,
    /// stack, memlock, ...; -1 for unlimited)
    #[arg(long = "ulimit", value_name = "NAME=SOFT[:HARD]")]
    pub ulimit: Vec<String>,
    /// File mode creation mask of the container's process, in octal (0022)
    #[arg(long = "umask", value_name = "MASK")]
    pub umask: Option<String>,
    /// Remove a variable from the default environment (rbox's, the image's, --env-host's)
    #[arg(long = "unsetenv", value_name = "NAME")]
    pub unsetenv: Vec<String>,
    /// Remove every variable of the default environment (-e and --env-file still apply)
    #[arg(long = "unsetenv-all")]
    pub unsetenv_all: bool,
    /// Pass the caller's whole environment to the container (under the image's)
    #[arg(long = "env-host")]
    pub env_host: bool,
    /// Pass the caller's proxy variables (http_proxy, https_proxy, ftp_proxy, no_proxy, in
    /// either case) to the container, under the image's (false: do not; the default is
    /// true unless containers.conf says http_proxy = false)
    #[arg(long = "http-proxy", value_name = "BOOL", num_args = 0..=1, require_equals = true,
          default_missing_value = "true")]
    pub http_proxy: Option<bool>,
    /// Execution domain of the container's processes (personality(2)): LINUX or LINUX32
    /// (uname -m then shows a 32-bit machine)
    #[arg(long = "personality", value_name = "DOMAIN")]
    pub personality: Option<String>,
    /// Where the seccomp profile comes from: default (--security-opt's, else rbox's built-in
    /// one) or image (the image's io.containers.seccomp.profile label)
    #[arg(long = "seccomp-policy", value_name = "POLICY")]
    pub seccomp_policy: Option<String>,
    /// Refused: rbox's --init is built in (rbox's own process stays PID 1 and reaps), it runs
    /// no init binary
    #[arg(long = "init-path", value_name = "PATH", value_hint = clap::ValueHint::FilePath)]
    pub init_path: Option<PathBuf>,
    /// Systemd mode: true (when the command is an init: /sbin/init, /usr/sbin/init,
    /// /usr/local/sbin/init or any .../systemd), always, or false. In systemd mode the
    /// container gets tmpfs mounts on /run, /run/lock, /tmp and /var/log/journal,
    /// container_uuid in its environment and SIGRTMIN+3 as stop signal unless one is given
    #[arg(long = "systemd", value_name = "true|false|always")]
    pub systemd: Option<String>,
    /// What the container and rbox tell the service manager whose $NOTIFY_SOCKET the caller
    /// has (sd_notify(3)): container (the container gets a socket of its own in
    /// $NOTIFY_SOCKET, its READY=1 and WATCHDOG=1 are passed on, rbox says MAINPID, the
    /// default), conmon (rbox says MAINPID and READY=1 once the command runs) or ignore
    #[arg(long = "sdnotify", value_name = "container|conmon|ignore")]
    pub sdnotify: Option<String>,
    /// Containers to start before this one (at each start), by name or id (repeatable, or
    /// comma-separated)
    #[arg(long = "requires", value_name = "CONTAINER", value_delimiter = ',')]
    pub requires: Vec<String>,
    /// A cgroup v2 file of the container's cgroup and its value (KEY=VALUE, e.g.
    /// memory.high=1g): written where limits are applied (as root, or a delegated v2 subtree)
    #[arg(long = "cgroup-conf", value_name = "KEY=VALUE")]
    pub cgroup_conf: Vec<String>,
    /// A rule for the container's cgroup device list, TYPE MAJOR:MINOR ACCESS (`c 1:3 rwm`,
    /// `*` for any number): checked and recorded; rbox gives devices by --device's bind
    /// mounts, which no rule can widen
    #[arg(long = "device-cgroup-rule", value_name = "RULE")]
    pub device_cgroup_rule: Vec<String>,
    /// A directory inside the container that is a chroot of its own: rbox's /etc/hosts and
    /// /etc/resolv.conf are mounted in DIR/etc too, made where missing (repeatable, or
    /// comma-separated)
    #[arg(long = "chrootdirs", value_name = "DIR", value_delimiter = ',')]
    pub chrootdirs: Vec<String>,
    /// Make the container an init container of a pod (always, once): refused, as Podman
    /// refuses it without --pod; rbox has no pods
    #[arg(long = "init-ctr", value_name = "TYPE")]
    pub init_ctr: Option<String>,
    /// Rewrite a variable of the default environment, expanding the defaults in the value:
    /// PATH=/opt/bin:${PATH}
    #[arg(long = "env-merge", value_name = "KEY=VALUE")]
    pub env_merge: Vec<String>,
    /// Add an annotation to the container's OCI spec (KEY=VALUE)
    #[arg(long = "annotation", value_name = "KEY=VALUE")]
    pub annotation: Vec<String>,
    /// Add a supplementary group (a name of the container's /etc/group, or a number);
    /// keep-groups keeps the caller's own groups
    #[arg(long = "group-add", value_name = "GROUP")]
    pub group_add: Vec<String>,
    /// Size of /dev/shm (a number of bytes with an optional unit: 64m, 1g)
    #[arg(long = "shm-size", value_name = "SIZE")]
    pub shm_size: Option<String>,
    /// Remove the image after the container exits (with --rm: once the container is gone)
    #[arg(long)]
    pub rmi: bool,
    /// Remove a container of the same --name first, running or not (as `rm -f`)
    #[arg(long)]
    pub replace: bool,
    /// Write the pid of the container's init to FILE at each start
    #[arg(long, value_name = "FILE")]
    pub pidfile: Option<PathBuf>,
    /// Write the pid of the container's monitor (rbox's conmon: the process that holds the
    /// container, its parent) to FILE at each start (empty: none, as in Podman)
    #[arg(long = "conmon-pidfile", value_name = "FILE",
          value_parser = clap::value_parser!(std::ffi::OsString))]
    pub conmon_pidfile: Option<std::ffi::OsString>,
    /// Pass the descriptors 3 to 3+N-1 of rbox on to the container's process (attached runs)
    #[arg(long = "preserve-fds", value_name = "N", default_value_t = 0)]
    pub preserve_fds: u32,
    /// Set a namespaced kernel parameter in the container (NAME=VALUE: net.*, kernel.shm*,
    /// kernel.msg*, kernel.sem, fs.mqueue.*)
    #[arg(long = "sysctl", value_name = "NAME=VALUE")]
    pub sysctl: Vec<String>,
    /// With --read-only, mount a tmpfs on /tmp, /var/tmp and /run (true)
    #[arg(long = "read-only-tmpfs", value_name = "BOOL", num_args = 0..=1,
          default_value_t = true, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub read_only_tmpfs: bool,
    /// The resource limits (`update` takes them too)
    #[command(flatten)]
    pub limits: LimitFlags,
    /// Keep the kernel's OOM killer from killing the container's processes at its memory
    /// limit (they wait for memory instead); cgroup v1 (`memory.oom_control`), on v2 the
    /// container is not killed as a group
    #[arg(long = "oom-kill-disable")]
    pub oom_kill_disable: bool,
    /// Adjust the container's OOM score, -1000 to 1000 (rootless: not below the caller's)
    #[arg(
        long = "oom-score-adj",
        value_name = "N",
        allow_negative_numbers = true
    )]
    pub oom_score_adj: Option<i32>,
    /// PID namespace: private (the container's own) or host (rbox's, the host's: the
    /// container sees and may signal the caller's processes)
    #[arg(long = "pid", value_name = "MODE")]
    pub pid: Option<String>,
    /// IPC namespace: private or shareable (every rbox container has its own)
    #[arg(long = "ipc", value_name = "MODE")]
    pub ipc: Option<String>,
    /// UTS namespace (hostname): private (the container's own) or host (the host's hostname,
    /// not with --hostname)
    #[arg(long = "uts", value_name = "MODE")]
    pub uts: Option<String>,
    /// Cgroup namespace: private (the container's own) or host
    #[arg(long = "cgroupns", value_name = "MODE")]
    pub cgroupns: Option<String>,
    /// Time zone of the container: an area/city name from the host's zone files (Asia/Tokyo,
    /// UTC), or local (the host's)
    #[arg(long = "tz", value_name = "TIMEZONE")]
    pub tz: Option<String>,
    /// Cgroup mode: enabled (the default; no-conmon is the same, rbox has no conmon) or
    /// disabled (no cgroup of the container's own: limits are not applied); split needs
    /// systemd
    #[arg(long = "cgroups", value_name = "MODE")]
    pub cgroups: Option<String>,
    /// Pull policy: missing, always, never, newer
    #[arg(long, value_name = "POLICY", default_value = "missing")]
    pub pull: String,
    #[command(flatten)]
    pub platform: super::pull::PlatformFlags,
    /// Require HTTPS and verify certificates when pulling
    #[arg(long = "tls-verify", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub tls_verify: Option<bool>,
    /// Credentials file for pulling the image [default: $REGISTRY_AUTH_FILE, else
    /// $XDG_RUNTIME_DIR/containers/auth.json]
    #[arg(long, value_name = "FILE", value_hint = clap::ValueHint::FilePath)]
    pub authfile: Option<PathBuf>,
    /// Does nothing: a Docker option Podman accepts as a no-op, as rbox does
    #[arg(long = "disable-content-trust")]
    pub disable_content_trust: bool,
    /// Suppress pull progress output
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Share one container among the tasks that give the same KEY (default: the Slurm job
    /// step, $SLURM_JOB_ID.$SLURM_STEP_ID): the first creates it, each runs its command in it,
    /// the last removes it
    #[arg(long, value_name = "KEY", num_args = 0..=1, require_equals = true,
          default_missing_value = "")]
    pub join: Option<String>,
    /// Image to run
    #[arg(value_name = "IMAGE", required_unless_present = "image_file")]
    pub image: Option<String>,
    /// Command and arguments (override the image's CMD)
    #[arg(
        value_name = "COMMAND",
        allow_hyphen_values = true,
        value_parser = clap::value_parser!(std::ffi::OsString)
    )]
    pub command: Vec<std::ffi::OsString>,
}

/// `run`'s and `create`'s resource limit flags, which `update` takes as well.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct LimitFlags {
    /// Memory limit (a size: 512m, 1g); applied as root, and rootless where a cgroup v2
    /// subtree is delegated to you
    #[arg(short = 'm', long = "memory", value_name = "SIZE")]
    pub memory: Option<String>,
    /// Memory plus swap limit (a size, -1 for unlimited)
    #[arg(long = "memory-swap", value_name = "SIZE")]
    pub memory_swap: Option<String>,
    /// Memory soft limit (a size)
    #[arg(long = "memory-reservation", value_name = "SIZE")]
    pub memory_reservation: Option<String>,
    /// How readily the kernel swaps the container's memory, 0 to 100 (-1: the host's); cgroup
    /// v1 only (v2 has no such knob)
    #[arg(
        long = "memory-swappiness",
        value_name = "N",
        allow_negative_numbers = true
    )]
    pub memory_swappiness: Option<i64>,
    /// Number of CPUs (1.5)
    #[arg(long = "cpus", value_name = "N")]
    pub cpus: Option<f64>,
    /// CPU shares (relative weight)
    // (no `-c`, which Podman has: clap would take a command's own `-c` after the image,
    // as in `rbox run IMAGE sh -c ...`, for it)
    #[arg(long = "cpu-shares", value_name = "SHARES")]
    pub cpu_shares: Option<u64>,
    /// CPUs the container may run on (0-3, 0,1)
    #[arg(long = "cpuset-cpus", value_name = "CPUS")]
    pub cpuset_cpus: Option<String>,
    /// Memory nodes the container may use (0-3, 0,1)
    #[arg(long = "cpuset-mems", value_name = "NODES")]
    pub cpuset_mems: Option<String>,
    /// CPU time the container may use in each --cpu-period, in microseconds
    #[arg(
        long = "cpu-quota",
        value_name = "MICROSECONDS",
        allow_negative_numbers = true
    )]
    pub cpu_quota: Option<i64>,
    /// The period --cpu-quota counts in, in microseconds (100000)
    #[arg(long = "cpu-period", value_name = "MICROSECONDS")]
    pub cpu_period: Option<u64>,
    /// Limit the CPU real-time period in microseconds (cgroup v1)
    #[arg(long = "cpu-rt-period", value_name = "MICROSECONDS")]
    pub cpu_rt_period: Option<u64>,
    /// Limit the CPU real-time runtime in microseconds per period (cgroup v1)
    #[arg(
        long = "cpu-rt-runtime",
        value_name = "MICROSECONDS",
        allow_negative_numbers = true
    )]
    pub cpu_rt_runtime: Option<i64>,
    /// Block IO weight, 10 to 1000 (relative)
    #[arg(long = "blkio-weight", value_name = "WEIGHT")]
    pub blkio_weight: Option<u16>,
    /// Block IO weight of one device, DEVICE:WEIGHT (10 to 1000)
    #[arg(long = "blkio-weight-device", value_name = "DEVICE:WEIGHT")]
    pub blkio_weight_device: Vec<String>,
    /// Limit the read rate from a device, DEVICE:RATE (bytes per second; kb, mb, gb)
    #[arg(long = "device-read-bps", value_name = "DEVICE:RATE")]
    pub device_read_bps: Vec<String>,
    /// Limit the write rate to a device, DEVICE:RATE (bytes per second; kb, mb, gb)
    #[arg(long = "device-write-bps", value_name = "DEVICE:RATE")]
    pub device_write_bps: Vec<String>,
    /// Limit the read rate from a device, DEVICE:RATE (IO per second)
    #[arg(long = "device-read-iops", value_name = "DEVICE:RATE")]
    pub device_read_iops: Vec<String>,
    /// Limit the write rate to a device, DEVICE:RATE (IO per second)
    #[arg(long = "device-write-iops", value_name = "DEVICE:RATE")]
    pub device_write_iops: Vec<String>,
    /// Limit of the container's processes (-1 for unlimited)
    #[arg(long = "pids-limit", value_name = "N", allow_negative_numbers = true)]
    pub pids_limit: Option<i64>,
}

impl LimitFlags {
    /// These flags in `ExtraFlags`, the rest of it empty: what `run` fills in further and
    /// what `update` checks on its own.
    pub fn extra(self) -> crate::runtime::spec::ExtraFlags {
        crate::runtime::spec::ExtraFlags {
            memory: self.memory,
            memory_swap: self.memory_swap,
            memory_reservation: self.memory_reservation,
            memory_swappiness: self.memory_swappiness,
            cpus: self.cpus,
            cpu_shares: self.cpu_shares,
            cpuset_cpus: self.cpuset_cpus,
            cpuset_mems: self.cpuset_mems,
            cpu_quota: self.cpu_quota,
            cpu_period: self.cpu_period,
            cpu_rt_period: self.cpu_rt_period,
            cpu_rt_runtime: self.cpu_rt_runtime,
            blkio_weight: self.blkio_weight,
            blkio_weight_device: self.blkio_weight_device,
            device_read_bps: self.device_read_bps,
            device_write_bps: self.device_write_bps,
            device_read_iops: self.device_read_iops,
            device_write_iops: self.device_write_iops,
            pids_limit: self.pids_limit,
            ..Default::default()
        }
    }
}

pub fn run(g: &Context, mut a: RunArgs) -> anyhow::Result<ExitCode> {
    // create's alone, as in Podman (its text for a flag it does not know)
    if a.init_ctr.is_some() {
        anyhow::bail!("unknown flag: --init-ctr");
    }
    if let Some(key) = a.join.take() {
        return super::join::run(g, a, &key);
    }
    // read once: the run's defaults and the device directories both come from it
    let mut conf = crate::config::containers()?;
    with_containers_conf(&mut a, &mut conf)?;
    check_preserved_fds(a.preserve_fds)?;
    check_namespace_modes(&a)?;
    let hidden = hidden_streams(&a.attach)?;
    platform_from_parts(&mut a)?;
    let keys = runtime::front::keys_or_conf(a.detach_keys.as_deref(), conf.detach_keys.as_deref())?;
    let sig_proxy = a.sig_proxy.unwrap_or(true);
    replace(g, &a)?;
    let puller = ShowPull { quiet: a.quiet };
    let mut o = with_conf_rest(g, a.into(), conf);
    o.detach_keys = keys;
    o.sig_proxy = sig_proxy;
    o.hidden_streams = hidden;
    // an attached `--rm` run returns once its container is gone (--rm allows no restart
    // policy, and a health check restarts detached containers only)
    if o.rm && !o.detach {
        runtime::monitor::exit_follows_removal();
    }
    runtime::run(g, o, &puller, true)
}

/// The rest of containers.conf (`c`): where CDI specs, OCI hooks and `--nv`'s driver files
/// are looked for (the command line's, else the file's), and its `env`, `volumes`,
/// `devices` and `default_sysctls`, which go under the command line's (see `runtime::spec`).
fn with_conf_rest(g: &Context, mut o: RunOptions, c: crate::config::Containers) -> RunOptions {
    o.flags.extra.conf_env = c.env.unwrap_or_default();
    o.flags.extra.conf_volumes = c.volumes.unwrap_or_default();
    o.flags.extra.conf_devices = c.devices.unwrap_or_default();
    o.flags.extra.conf_sysctls = c.default_sysctls.unwrap_or_default();
    let paths = |v: Option<Vec<String>>| -> Vec<std::path::PathBuf> {
        v.unwrap_or_default().into_iter().map(Into::into).collect()
    };
    o.devices.spec_dirs = paths(c.cdi_spec_dirs);
    o.devices.hooks_dirs = if !g.hooks_dirs().is_empty() {
        g.hooks_dirs().to_vec()
    } else if c.hooks_dir.is_some() {
        paths(c.hooks_dir)
    } else {
        crate::runtime::ocihooks::DEFAULT_DIRS
            .iter()
            .map(Into::into)
            .collect()
    };
    o.devices.nv_conf = crate::runtime::nvidia::Conf {
        libraries: c.nv_libraries,
        library_dirs: c.nv_library_dirs,
        binaries: c.nv_binaries,
        devices: c.nv_devices,
    };
    o
}

/// containers.conf's defaults (`c`, whose keys used here are taken) for what the command
/// line left unsaid.
fn with_containers_conf(a: &mut RunArgs, c: &mut crate::config::Containers) -> anyhow::Result<()> {
    if a.dns.is_empty() {
        a.dns = c.dns_servers.take().unwrap_or_default();
    }
    if a.dns_search.is_empty() {
        a.dns_search = c.dns_searches.take().unwrap_or_default();
    }
    if a.dns_option.is_empty() {
        a.dns_option = c.dns_options.take().unwrap_or_default();
    }
    if a.log_driver.is_none() {
        a.log_driver = c.log_driver.take();
    }
    if let Some(n) = c.log_size_max.filter(|n| *n > 0) {
        if !a.log_opt.iter().any(|o| o.starts_with("max-size=")) {
            a.log_opt.push(format!("max-size={n}"));
        }
    }
    if a.http_proxy.is_none() {
        a.http_proxy = c.http_proxy;
    }
    if a.no_hosts.is_none() {
        a.no_hosts = c.no_hosts;
    }
    // Podman checks these when it reads the file, in its words
    let bad = |why: String| anyhow::anyhow!("validating containers config: {why}");
    if let Some(tz) = c.tz.take() {
        let found = tz == "local"
            || ["/usr/share/zoneinfo", "/etc/zoneinfo"]
                .iter()
                .any(|d| std::path::Path::new(d).join(&tz).is_file());
        if !found {
            return Err(bad(format!(
                "find timezone {tz} in paths: /usr/share/zoneinfo, /etc/zoneinfo"
            )));
        }
        a.tz.get_or_insert(tz);
    }
    if let Some(m) = c.umask.take() {
        crate::runtime::spec::parse_umask(&m).map_err(|_| bad(format!("not a valid umask {m}")))?;
        a.umask.get_or_insert(m);
    }
    if let Some(v) = c.shm_size.take() {
        // decimal units here (70m is 70000000 bytes), binary ones in --shm-size: Podman's
        let n = decimal_size(&v)
            .ok_or_else(|| bad(format!("invalid --shm-size {v}, \"invalid size: '{v}'\"")))?;
        a.shm_size.get_or_insert(n.to_string());
    }
    if let Some(mut u) = c.default_ulimits.take() {
        for l in &u {
            crate::runtime::spec::ulimit_parts(l)
                .map_err(|why| bad(format!("unrecognized ulimit {l}: {why}")))?;
        }
        // a --ulimit of the same resource, later, wins; `--ulimit host` keeps the caller's
        // limits, none of the file's
        if !a.ulimit.iter().any(|l| l == "host") {
            u.append(&mut a.ulimit);
            a.ulimit = u;
        }
    }
    if let Some(mut n) = c.annotations.take() {
        // Podman skips an entry without `=` silently
        n.retain(|e| e.contains('='));
        n.append(&mut a.annotation);
        a.annotation = n;
    }
    for (mode, key) in [
        (&mut a.pid, c.pidns.take()),
        (&mut a.uts, c.utsns.take()),
        (&mut a.ipc, c.ipcns.take()),
        (&mut a.cgroupns, c.cgroupns.take()),
    ] {
        if mode.is_none() {
            *mode = key;
        }
    }
    if a.userns.is_empty() {
        a.userns = c.userns.take().unwrap_or_default();
    }
    if a.network.is_none() {
        // `private` is the default mode: default_rootless_network_cmd's
        a.network = c.netns.take().filter(|m| m != "private");
        if let Some(m) = &a.network {
            if m != "default" && crate::state::NetworkMode::from_flag(m).is_none() {
                anyhow::bail!(
                    "containers.conf sets netns = {m:?}: {}",
                    crate::runtime::spec::unsupported_network(m)
                );
            }
        }
    }
    if a.network.is_none() {
        a.network = c.network_cmd.take();
    }
    if let Some(set) = c.default_capabilities.take() {
        for n in &set {
            crate::runtime::caps::parse(n).map_err(|_| {
                let up = n.to_ascii_uppercase();
                let full = if up.starts_with("CAP_") {
                    up
                } else {
                    format!("CAP_{up}")
                };
                anyhow::anyhow!("{full:?}: unknown capability")
            })?;
        }
        // kept as the adds and drops that turn rbox's default set into the file's, which
        // the flags' own change further: a --cap-add of a capability the file's set lacks
        // adds it (drops win over adds), a --cap-drop=all leaves none of the file's, and
        // --privileged keeps every capability whatever the file says
        use crate::runtime::caps;
        let (add, drop) = if a.privileged {
            Default::default()
        } else {
            caps::from_default(&set)
        };
        let all = |c: &String| c.eq_ignore_ascii_case("all");
        let added = |d: &String| a.cap_add.iter().any(|c| all(c) || caps::same(c, d));
        let drop: Vec<String> = drop.into_iter().filter(|d| !added(d)).collect();
        a.cap_drop.extend(drop);
        if !a.cap_drop.iter().any(all) {
            a.cap_add.splice(0..0, add);
        }
    }
    // Podman leaves the file's limit out rootless on cgroup v1, where no limit applies,
    // instead of warning at every run as for --pids-limit
    let limits = crate::runtime::cgroup::host_root() || crate::runtime::cgroup::unified_only();
    if let Some(n) = c.pids_limit.filter(|n| *n > 0 && limits) {
        a.limits.pids_limit.get_or_insert(n);
    }
    if let Some(p) = c.seccomp_profile.take().filter(|p| !p.is_empty()) {
        if !a.security_opt.iter().any(|o| o.starts_with("seccomp=")) {
            a.security_opt.push(format!("seccomp={p}"));
        }
    }
    if let Some(f) = c.fakeroot.take() {
        let given = |o: &String| {
            o == "fakeroot" || o.starts_with("fakeroot=") || o.starts_with("fakeroot:")
        };
        if !a.security_opt.iter().any(given) {
            a.security_opt.push(f.security_opt()?);
        }
    }
    Ok(())
}

/// A size as containers.conf's `shm_size` takes it (go-units' `FromHumanSize`): a number,
/// maybe with a fraction, and an optional unit k, m, g, t or p in powers of 1000 (an `i` or
/// `b` after it changes nothing), in any case.
fn decimal_size(s: &str) -> Option<u64> {
    let end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let n: f64 = s[..end].parse().ok()?;
    let unit = s[end..]
        .strip_prefix(' ')
        .unwrap_or(&s[end..])
        .to_ascii_lowercase();
    let unit = unit.strip_suffix('b').unwrap_or(&unit);
    let unit = unit.strip_suffix('i').unwrap_or(unit);
    let power = ["", "k", "m", "g", "t", "p"]
        .iter()
        .position(|u| *u == unit)?;
    Some((n * 1000f64.powi(power as i32)) as u64)
}

pub fn create(g: &Context, mut a: RunArgs) -> anyhow::Result<ExitCode> {
    if a.join.is_some() {
        anyhow::bail!("--join is for rbox run: it runs a command in the shared container");
    }
    // run's alone, as in Podman (the same text as its for a flag it does not know)
    if a.detach_keys.is_some() {
        anyhow::bail!("unknown flag: --detach-keys");
    }
    if a.sig_proxy.is_some() {
        anyhow::bail!("unknown flag: --sig-proxy");
    }
    // Podman's text: an init container belongs to a pod, and rbox has no --pod
    if a.init_ctr.is_some() {
        anyhow::bail!("must specify pod value with init-ctr");
    }
    let mut conf = crate::config::containers()?;
    with_containers_conf(&mut a, &mut conf)?;
    check_preserved_fds(a.preserve_fds)?;
    check_namespace_modes(&a)?;
    // checked, not kept: Podman's `start -a` shows every stream whatever `create -a` said
    hidden_streams(&a.attach)?;
    platform_from_parts(&mut a)?;
    replace(g, &a)?;
    let puller = ShowPull { quiet: a.quiet };
    runtime::run(g, with_conf_rest(g, a.into(), conf), &puller, false)
}

/// `--platform`, `--arch`, `--os`, `--variant` as `pull` takes them, folded into the one
/// platform `create` records.
fn platform_from_parts(a: &mut RunArgs) -> anyhow::Result<()> {
    a.platform.platform = a.platform.chosen()?.map(|p| p.to_string());
    Ok(())
}

/// `--init-path` and `--network-alias` are refused (no init binary, no bridge networks). `--pid`, `--ipc`, `--uts`, `--cgroupns`: `private` (and `shareable` for IPC) is rbox's
/// default, a namespace of the container's own; `host` (not for IPC) shares rbox's, which is
/// the host's, as Podman does rootless. Podman's other modes (container:ID, ns:PATH; none for
/// IPC) are refused, and a mode Podman does not know in its words.
fn check_namespace_modes(a: &RunArgs) -> anyhow::Result<()> {
    for (flag, mode, own) in [
        ("pid", &a.pid, &["private", "host"][..]),
        ("ipc", &a.ipc, &["private", "shareable"][..]),
        ("uts", &a.uts, &["private", "host"][..]),
        ("cgroupns", &a.cgroupns, &["private", "host"][..]),
    ] {
        let Some(m) = mode.as_deref() else { continue };
        if own.contains(&m) {
            continue;
        }
        let kind = m.split(':').next().unwrap_or(m);
        if ["host", "container", "ns", "none", "private", "shareable"].contains(&kind) {
            anyhow::bail!(
                "--{flag}={m} is not supported: rbox gives every container {} of its own or shares the host's (--{flag}={})",
                match flag {
                    "pid" => "a PID namespace",
                    "ipc" => "an IPC namespace",
                    "uts" => "a UTS namespace",
                    _ => "a cgroup namespace",
                },
                own.join(" or ")
            );
        }
        // Podman's text
        anyhow::bail!("unrecognized namespace mode {m} passed");
    }
    if let Some(p) = &a.init_path {
        anyhow::bail!(
            "--init-path `{}` is not supported: rbox's --init is built in and runs no init binary",
            p.display()
        );
    }
    if !a.network_alias.is_empty() {
        // Podman's text: rootless Podman refuses it with slirp4netns, pasta, host and none
        anyhow::bail!(
            "--network-alias can only be set when the network mode is bridge: rbox has no bridge networks"
        );
    }
    if a.uts.as_deref() == Some("host") && a.hostname.is_some() {
        // Podman's text
        anyhow::bail!("invalid config provided: cannot set hostname when running in the host UTS namespace: invalid configuration");
    }
    Ok(())
}

/// `-a/--attach`: [stdout, stderr], each true when streams are named and it is not one of
/// them (stdin follows `-i`, as in Podman 4.3). Names in any case; an empty or unknown one is
/// refused in Podman's words.
fn hidden_streams(names: &[String]) -> anyhow::Result<[bool; 2]> {
    let mut shown = [names.is_empty(); 2];
    for n in names {
        match n.to_ascii_lowercase().as_str() {
            "" => anyhow::bail!("must provide at least one stream to attach to: invalid argument"),
            "stdin" => {}
            "stdout" => shown[0] = true,
            "stderr" => shown[1] = true,
            _ => anyhow::bail!(
                "invalid stream \"{n}\" for --attach - must be one of stdin, stdout, or stderr: invalid argument"
            ),
        }
    }
    Ok(shown.map(|s| !s))
}

/// `--preserve-fds N`: descriptors 3..3+N must be open now (Podman's check and text).
fn check_preserved_fds(n: u32) -> anyhow::Result<()> {
    if let Some(fd) = (3..3 + n).find(|fd| !runtime::sys::fd_is_open(*fd as i32)) {
        anyhow::bail!(
            "file descriptor {fd} is not available - the preserve-fds option requires that file descriptors must be passed"
        );
    }
    Ok(())
}

/// `--replace`: a container named as `--name` goes first, as `rm -f` removes it.
fn replace(g: &Context, a: &RunArgs) -> anyhow::Result<()> {
    if !a.replace {
        return Ok(());
    }
    let Some(name) = &a.name else {
        anyhow::bail!("cannot replace container without --name being set");
    };
    let Ok(rec) = crate::state::lookup(g, name) else {
        return Ok(());
    };
    // only a container of that very name, never one whose id starts with it
    if rec.name != *name {
        return Ok(());
    }
    let time = rec.spec.opts.stop_timeout().as_secs();
    super::rm::prepare(g, &rec, true, time)?;
    let store = runtime::open_store(g)?;
    match store.remove_container_dir(&rec.id) {
        Ok(()) | Err(rbox_storage::Error::ContainerNotFound(_)) => Ok(()),
        Err(e) => Err(anyhow::anyhow!(
            "remove storage of container {}: {e}",
            rec.name
        )),
    }
}

/// Pulls a missing image as `rbox pull` does, with its progress display (nothing with `-q`).
struct ShowPull {
    quiet: bool,
}

impl runtime::Puller for ShowPull {
    fn pull(&self, store: &Store, image: &str, opts: &PullOptions) -> anyhow::Result<ImageRecord> {
        super::pull::pull_image(store, image, opts, self.quiet)
    }
}

impl From<RunArgs> for RunOptions {
    fn from(mut a: RunArgs) -> RunOptions {
        // with --image-file there is no IMAGE: what clap took for it is the command's first word
        let image = match &a.image_file {
            Some(f) => {
                if let Some(first) = a.image.take() {
                    a.command.insert(0, first.into());
                }
                f.display().to_string()
            }
            None => a.image.take().unwrap_or_default(),
        };
        // CDI names (`vendor.com/class=name`) are resolved at create; paths go to the spec
        let (cdi_names, device): (Vec<String>, Vec<String>) = std::mem::take(&mut a.device)
            .into_iter()
            .partition(|d| crate::runtime::cdi::is_name(d));
        RunOptions {
            devices: crate::runtime::cdi::Devices {
                names: cdi_names,
                gpus: a.gpus,
                nv: a.nv,
                ..Default::default()
            },
            name: a.name,
            cidfile: a.cidfile,
            detach: a.detach,
            rm: a.rm,
            image,
            image_file: a.image_file,
            pull: a.pull,
            platform: a.platform.platform,
            tls_verify: a.tls_verify,
            authfile: a.authfile,
            rootfs: a.rootfs,
            // set by `run` once checked
            detach_keys: Vec::new(),
            sig_proxy: true,
            hidden_streams: [false; 2],
            flags: Flags {
                entrypoint: a.entrypoint,
                command: a.command,
                env: a.env,
                env_file: a.env_file,
                label: a.label,
                label_file: a.label_file,
                workdir: a.workdir,
                user: a.user,
                hostname: a.hostname,
                volume: a.volume,
                tmpfs: a.tmpfs,
                mount: a.mount,
                device,
                secret: a.secret,
                volumes_from: a.volumes_from,
                image_volume: a.image_volume,
                read_only: a.read_only,
                init: a.init,
                tty: a.tty,
                interactive: a.interactive,
                network: a.network.unwrap_or_default(),
                dns: a.dns,
                dns_search: a.dns_search,
                dns_option: a.dns_option,
                add_host: a.add_host,
                no_hosts: a.no_hosts.unwrap_or(false),
                publish: a.publish,
                publish_all: a.publish_all,
                expose: a.expose,
                userns: a.userns,
                cap_add: a.cap_add,
                cap_drop: a.cap_drop,
                privileged: a.privileged,
                security_opt: a.security_opt,
                restart: a.restart,
                log_driver: a.log_driver,
                log_opt: a.log_opt,
                extra: crate::runtime::spec::ExtraFlags {
                    stop_signal: a.stop_signal,
                    stop_timeout: a.stop_timeout,
                    timeout: a.timeout,
                    ulimit: a.ulimit,
                    umask: a.umask,
                    unsetenv: a.unsetenv,
                    unsetenv_all: a.unsetenv_all,
                    env_host: a.env_host,
                    http_proxy: a.http_proxy.unwrap_or(true),
                    personality: a.personality,
                    seccomp_policy: a.seccomp_policy,
                    systemd: a.systemd,
                    sdnotify: a.sdnotify,
                    requires: a.requires,
                    cgroup_conf: a.cgroup_conf,
                    device_cgroup_rule: a.device_cgroup_rule,
                    chrootdirs: a.chrootdirs,
                    env_merge: a.env_merge,
                    annotation: a.annotation,
                    group_add: a.group_add,
                    shm_size: a.shm_size,
                    rmi: a.rmi,
                    pidfile: a.pidfile,
                    conmon_pidfile: a.conmon_pidfile.map(PathBuf::from),
                    pid_host: a.pid.as_deref() == Some("host"),
                    uts_host: a.uts.as_deref() == Some("host"),
                    cgroupns_host: a.cgroupns.as_deref() == Some("host"),
                    preserve_fds: a.preserve_fds,
                    sysctl: a.sysctl,
                    oom_kill_disable: a.oom_kill_disable,
                    cgroups: a.cgroups,
                    tz: a.tz,
                    oom_score_adj: a.oom_score_adj,
                    no_read_only_tmpfs: !a.read_only_tmpfs,
                    uidmap: a.uidmap,
                    gidmap: a.gidmap,
                    subuidname: a.subuidname,
                    subgidname: a.subgidname,
                    hostuser: a.hostuser,
                    no_passwd: !a.passwd,
                    passwd_entry: a.passwd_entry,
                    // containers.conf's, from `with_conf_rest`
                    conf_env: Vec::new(),
                    conf_volumes: Vec::new(),
                    conf_devices: Vec::new(),
                    conf_sysctls: Vec::new(),
                    ..a.limits.extra()
                },
                health: crate::runtime::spec::HealthFlags {
                    cmd: a.health_cmd,
                    interval: a.health_interval,
                    timeout: a.health_timeout,
                    start_period: a.health_start_period,
                    retries: a.health_retries,
                    on_failure: a.health_on_failure,
                    none: a.no_healthcheck,
                },
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    #[test]
    fn shm_size_of_containers_conf_counts_in_thousands() {
        assert_eq!(decimal_size("70m"), Some(70_000_000));
        assert_eq!(decimal_size("65536k"), Some(65_536_000));
        assert_eq!(decimal_size("1.5G"), Some(1_500_000_000));
        assert_eq!(decimal_size("2 KiB"), Some(2_000));
        assert_eq!(decimal_size("4096"), Some(4096));
        assert_eq!(decimal_size("x"), None);
        assert_eq!(decimal_size("1q"), None);
    }

    #[test]
    fn run_args_become_plain_options() {
        let cli = Cli::try_parse_from([
            "rbox",
            "run",
            "--name",
            "web",
            "-e",
            "A=1",
            "--pull",
            "never",
            "-q",
            "--rm",
            "-t",
            "--cap-add",
            "NET_ADMIN",
            "img",
            "sh",
            "-c",
            "x",
        ])
        .unwrap();
        let Command::Run(a) = cli.command else {
            panic!("not run");
        };
        let o = RunOptions::from(a);
        assert_eq!(o.name.as_deref(), Some("web"));
        assert_eq!((o.image.as_str(), o.pull.as_str()), ("img", "never"));
        assert!(o.rm && !o.detach);
        assert_eq!(o.flags.env, ["A=1"]);
        assert_eq!(o.flags.command, ["sh", "-c", "x"]);
        assert!(o.flags.tty && !o.flags.interactive);
        assert_eq!(o.flags.cap_add, ["NET_ADMIN"]);
        assert_eq!(
            (o.flags.network.as_str(), o.flags.userns.as_str()),
            ("", "")
        );
    }
}
