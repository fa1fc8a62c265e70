//! The container's mount table as data: [`plan`] computes the list of [`Op`]s (root
//! filesystem, /proc, /dev, /sys, /etc files, volumes, pivot_root, masked and read-only paths)
//! from the spec, and [`apply`] executes them one by one in the container's mount namespace.
//! Destinations inside the image are resolved with [`secure_join`], so an image symlink such as
//! `/data -> /etc` can never redirect a mount outside the container's root.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context, Result};
use nix::mount::{mount, umount2, MntFlags, MsFlags};

pub use rbox_storage::Rootfs;

use super::sys;
#[cfg(test)]
use crate::state::MountKind;
use crate::state::{MountSpec, Spec};

/// One step of the mount setup. Paths in `Inside` are relative to the new root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// make every mount private, so nothing propagates back to the host
    PrivateAll,
    /// mount the root filesystem at the target, as its storage driver makes it
    Root(Rootfs),
    /// mount a pseudo or tmpfs filesystem at a path inside; `optional` failures are ignored
    Fs {
        fstype: String,
        inside: String,
        flags: u64,
        data: String,
        optional: bool,
    },
    /// `Fs` with the source name an OCI spec gives it (`shm` for a tmpfs on /dev/shm), which
    /// /proc/self/mountinfo shows (config.md, "mounts": source)
    FsNamed {
        source: String,
        fstype: String,
        inside: String,
        flags: u64,
        data: String,
        optional: bool,
    },
    /// bind a host path (file or directory) onto a path inside, created to match
    Bind {
        host: PathBuf,
        inside: String,
        recursive: bool,
        readonly: bool,
        flags: u64,
    },
    /// a symlink inside /dev
    Symlink { target: String, inside: String },
    /// pivot_root into the target and detach the old root
    Pivot,
    /// chroot into the target: `Pivot` for a container without a mount namespace of its own
    /// (the runtime's, or one joined by path), whose other processes keep their root
    Chroot,
    /// hide a path: /dev/null over a file, an empty read-only tmpfs over a directory
    Mask(String),
    /// make a path read-only (after pivot)
    ReadOnly(String),
    /// remount the root read-only (after pivot)
    RootReadOnly,
    /// an OCI mount's propagation option (`shared`, `rslave`, ...): `MS_*` flags applied to the
    /// mount just made at a path inside; it starts a peer group in the container's own mount
    /// namespace, which every mount was made private in first, so nothing reaches the host
    Propagation { inside: String, flags: u64 },
    /// an OCI `linux.devices` node the host has no match for: made with mknod(2) (`kind` is
    /// `S_IFCHR`, `S_IFBLK` or `S_IFIFO`), then given its mode and owner. Only root without a
    /// user namespace may make device nodes; a FIFO anyone may.
    Mknod {
        inside: String,
        kind: u32,
        major: u64,
        minor: u64,
        mode: u32,
        uid: Option<u32>,
        gid: Option<u32>,
    },
    /// `--sysctl`: write a value under /proc/sys (after pivot, before /proc/sys is made
    /// read-only); the key as `net.ipv4.ip_forward`
    Sysctl { key: String, value: String },
}

pub const MASKED: &[&str] = &[
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/fs/selinux",
    "/sys/dev/block",
    "/sys/devices/virtual/powercap",
];

pub const READONLY: &[&str] = &[
    "/proc/asound",
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// The host device nodes bound into the container's /dev.
pub const DEVICES: &[&str] = &["null", "zero", "full", "random", "urandom", "tty"];

/// Files rbox writes per container and binds into it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcFiles {
    pub hosts: PathBuf,
    pub hostname: PathBuf,
    pub resolv: PathBuf,
}

/// A mount after the fixed /proc, /dev and /sys set: rbox's /etc files, the scratch tmpfs of
/// a read-only root, and the user's mounts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Extra<'a> {
    /// bind `host` onto the /etc file `inside` (or a `--chrootdirs` directory's etc/ file)
    Etc(&'a Path, std::borrow::Cow<'static, str>),
    /// a writable tmpfs (mode 1777) for `--read-only` and for systemd mode
    Scratch(&'static str),
    User(&'a MountSpec),
}

/// The extra mounts in the order they are made, as Podman orders them: by the depth of the
/// destination, so a mount never hides a deeper one made before it (`-v a:/x/y -v b:/x`, and
/// a volume on /etc under rbox's /etc/hosts); at equal depth rbox's own first, then the user's
/// in the order given. A user mount on the very path of one of rbox's replaces it.
pub fn extras<'a>(spec: &'a Spec, etc: &'a EtcFiles) -> Vec<Extra<'a>> {
    let user_has = |p: &str| {
        spec.mounts
            .iter()
            .any(|m| Path::new(&m.destination) == Path::new(p))
    };
    let mut out = Vec::new();
    for (host, inside) in [
        (&etc.hosts, "/etc/hosts"),
        (&etc.hostname, "/etc/hostname"),
        (&etc.resolv, "/etc/resolv.conf"),
    ] {
        if (spec.no_hosts && inside == "/etc/hosts") || user_has(inside) {
            continue; // --no-hosts: the image's own
        }
        out.push(Extra::Etc(host.as_path(), inside.into()));
        // --chrootdirs: the network's files in each chroot's etc/ too, as Podman mounts them
        if inside != "/etc/hostname" {
            for d in &spec.opts.chrootdirs {
                let at = format!("{}{inside}", d.trim_end_matches('/'));
                if !user_has(&at) {
                    out.push(Extra::Etc(host.as_path(), at.into()));
                }
            }
        }
    }
    let mut scratch = Vec::new();
    if spec.read_only && !spec.opts.no_read_only_tmpfs {
        // as podman's read-only-tmpfs: a read-only root still gets writable scratch space
        scratch.extend(["/tmp", "/var/tmp", "/run"]);
    }
    if spec.opts.systemd {
        // what systemd expects writable and empty at boot, as Podman's systemd mode mounts
        scratch.extend(["/run", "/run/lock", "/tmp", "/var/log/journal"]);
    }
    for d in scratch {
        if !user_has(d) && !out.contains(&Extra::Scratch(d)) {
            out.push(Extra::Scratch(d));
        }
    }
    out.extend(spec.mounts.iter().map(Extra::User));
    let depth = |e: &Extra| {
        let p = match e {
            Extra::Etc(_, p) => p.as_ref(),
            Extra::Scratch(p) => p,
            Extra::User(m) => m.destination.as_str(),
        };
        Path::new(p).components().count()
    };
    // stable: equal depths keep rbox's first and the user's order
    out.sort_by_key(depth);
    out
}

/// Whether the container has its own network namespace, and whether gid 5 (tty) is mapped.
#[cfg(test)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Env {
    pub own_net: bool,
    pub tty_gid: bool,
}

#[cfg(test)]
fn f(flags: MsFlags) -> u64 {
    flags.bits()
}

/// The mount list rbox executed before the runtime ran from the OCI spec, computed from the
/// record directly: kept as the tests' reference that `oci::mount_ops(oci::build(..))` plans
/// exactly the same mounts.
#[cfg(test)]
pub fn plan(rootfs: Rootfs, spec: &Spec, etc: &EtcFiles, env: Env) -> Vec<Op> {
    let nsd = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    use Op::*;
    let mut ops = vec![PrivateAll, Root(rootfs)];
    ops.push(Fs {
        fstype: "proc".into(),
        inside: "/proc".into(),
        flags: f(nsd | MsFlags::MS_NOEXEC),
        data: String::new(),
        optional: false,
    });
    ops.push(Fs {
        fstype: "tmpfs".into(),
        inside: "/dev".into(),
        flags: f(MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME),
        data: "mode=755,size=65536k".into(),
        optional: false,
    });
    for d in DEVICES {
        ops.push(Bind {
            host: PathBuf::from(format!("/dev/{d}")),
            inside: format!("/dev/{d}"),
            recursive: false,
            readonly: false,
            flags: 0,
        });
    }
    let pts = if env.tty_gid {
        "newinstance,ptmxmode=0666,mode=0620,gid=5"
    } else {
        // gid 5 is not mapped with a single id: the option would fail with EINVAL
        "newinstance,ptmxmode=0666,mode=0620"
    };
    ops.push(Fs {
        fstype: "devpts".into(),
        inside: "/dev/pts".into(),
        flags: f(MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC),
        data: pts.into(),
        optional: false,
    });
    for (t, l) in [
        ("pts/ptmx", "/dev/ptmx"),
        ("/proc/self/fd", "/dev/fd"),
        ("/proc/self/fd/0", "/dev/stdin"),
        ("/proc/self/fd/1", "/dev/stdout"),
        ("/proc/self/fd/2", "/dev/stderr"),
        ("/proc/kcore", "/dev/core"),
    ] {
        ops.push(Symlink {
            target: t.into(),
            inside: l.into(),
        });
    }
    ops.push(Fs {
        fstype: "tmpfs".into(),
        inside: "/dev/shm".into(),
        flags: f(nsd | MsFlags::MS_NOEXEC),
        data: format!("mode=1777,{}", spec.opts.shm_option()),
        optional: false,
    });
    ops.push(Fs {
        fstype: "mqueue".into(),
        inside: "/dev/mqueue".into(),
        flags: f(nsd | MsFlags::MS_NOEXEC),
        data: String::new(),
        optional: true,
    });
    if env.own_net {
        ops.push(Fs {
            fstype: "sysfs".into(),
            inside: "/sys".into(),
            flags: f(nsd | MsFlags::MS_NOEXEC | MsFlags::MS_RDONLY),
            data: String::new(),
            optional: false,
        });
    } else {
        // sysfs can only be mounted by the owner of the network namespace: bind the host's
        ops.push(Bind {
            host: "/sys".into(),
            inside: "/sys".into(),
            recursive: true,
            readonly: true,
            flags: 0,
        });
    }
    ops.push(Fs {
        fstype: "cgroup2".into(),
        inside: "/sys/fs/cgroup".into(),
        flags: f(nsd | MsFlags::MS_NOEXEC | MsFlags::MS_RDONLY),
        data: String::new(),
        optional: true,
    });
    for e in extras(spec, etc) {
        let m = match e {
            Extra::Etc(host, inside) => {
                ops.push(Bind {
                    host: host.to_path_buf(),
                    inside: inside.into_owned(),
                    recursive: false,
                    readonly: false,
                    flags: 0,
                });
                continue;
            }
            Extra::Scratch(d) => {
                ops.push(Fs {
                    fstype: "tmpfs".into(),
                    inside: d.into(),
                    flags: f(nsd),
                    data: "mode=1777".into(),
                    optional: false,
                });
                continue;
            }
            Extra::User(m) => m,
        };
        let has = |o: &str| m.options.iter().any(|x| x == o);
        let mut fl = MsFlags::empty();
        if has("nosuid") {
            fl |= MsFlags::MS_NOSUID;
        }
        if has("nodev") {
            fl |= MsFlags::MS_NODEV;
        }
        if has("noexec") {
            fl |= MsFlags::MS_NOEXEC;
        }
        if m.kind == MountKind::Devpts {
            ops.push(Fs {
                fstype: "devpts".into(),
                inside: m.destination.clone(),
                flags: f(MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC),
                data: ["newinstance".to_string()]
                    .iter()
                    .chain(&m.options)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(","),
                optional: false,
            });
        } else if m.kind == MountKind::Tmpfs {
            let data: Vec<&str> = m
                .options
                .iter()
                .map(String::as_str)
                .filter(|o| {
                    !matches!(
                        *o,
                        "ro" | "rw" | "nosuid" | "nodev" | "noexec" | "exec" | "suid" | "dev"
                    )
                })
                .collect();
            let mut fl = if has("exec") {
                nsd
            } else {
                nsd | MsFlags::MS_NOEXEC
            };
            if has("ro") {
                fl |= MsFlags::MS_RDONLY;
            }
            ops.push(Fs {
                fstype: "tmpfs".into(),
                inside: m.destination.clone(),
                flags: f(fl),
                data: data.join(","),
                optional: false,
            });
        } else {
            ops.push(Bind {
                host: m.source.clone().into(),
                inside: m.destination.clone(),
                recursive: !has("bind"),
                readonly: has("ro"),
                flags: f(fl),
            });
        }
    }
    ops.push(Pivot);
    // containers.conf's first (the OCI spec leaves out those the id map cannot take, see
    // `oci::build`)
    ops.extend(
        (spec.opts.conf_sysctl.iter())
            .chain(&spec.opts.sysctl)
            .map(|(k, v)| Sysctl {
                key: k.clone(),
                value: v.clone(),
            }),
    );
    if !spec.privileged {
        ops.extend(MASKED.iter().map(|p| Mask(p.to_string())));
        ops.extend(READONLY.iter().map(|p| ReadOnly(p.to_string())));
    }
    if spec.read_only {
        ops.push(RootReadOnly);
    }
    ops
}

/// Join `inside` (absolute, from the image's point of view) onto `root`, resolving symlinks
/// as if `root` were `/`: `..` and absolute link targets can never leave `root`.
pub fn secure_join(root: &Path, inside: &str) -> Result<PathBuf> {
    Ok(Joiner::default().join(root, inside)?.0)
}

/// What the last component of a path [`Joiner::join`] resolved is, from the lookup the
/// resolution made anyway: `None` where nothing is there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Found {
    Dir,
    /// a regular file, a device or anything else that is not a directory
    Other,
}

/// [`secure_join`] for a run of mount operations: each component is looked up from a
/// descriptor of the root, opened once, instead of along the whole host path (the store's
/// six or more components again for each of the container's: 76 lookups in a busybox
/// start, the init's dearest system calls). A root that is replaced (its own mount, a
/// pivot) is opened again at its next use.
#[derive(Default)]
struct Joiner {
    dir: Option<(PathBuf, std::os::fd::OwnedFd)>,
}

impl Joiner {
    fn join(&mut self, root: &Path, inside: &str) -> Result<(PathBuf, Option<Found>)> {
        use nix::fcntl::{open, OFlag};
        use std::os::fd::AsFd;
        if self.dir.as_ref().is_none_or(|(p, _)| p != root) {
            let fd = open(
                root,
                OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                nix::sys::stat::Mode::empty(),
            )
            .with_context(|| format!("open `{}`", root.display()))?;
            self.dir = Some((root.to_path_buf(), fd));
        }
        let Some((_, dir)) = &self.dir else {
            unreachable!("opened above")
        };
        let (resolved, found) = resolve_in(dir.as_fd(), inside)?;
        Ok((root.join(resolved), found))
    }

    /// Forget the root's descriptor: something was mounted over it.
    fn reset(&mut self) {
        self.dir = None;
    }
}

/// `inside` resolved below `dir` as below `/` (see [`secure_join`]), relative to it, with
/// what its last component is.
fn resolve_in(dir: std::os::fd::BorrowedFd, inside: &str) -> Result<(PathBuf, Option<Found>)> {
    use nix::fcntl::readlinkat;
    use nix::sys::stat::{fstatat, SFlag};
    let mut resolved = PathBuf::new(); // relative to dir
    let mut pending: Vec<String> = components(inside);
    pending.reverse();
    let mut hops = 0;
    // what the last component looked up is (`None` after `.` and `..`: not known)
    let mut found = None;
    while let Some(c) = pending.pop() {
        match c.as_str() {
            "." | "" => {
                found = None;
                continue;
            }
            ".." => {
                resolved.pop();
                found = None;
                continue;
            }
            _ => {}
        }
        let cand = resolved.join(&c);
        let kind = fstatat(dir, &cand, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)
            .ok()
            .map(|st| SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT);
        let link = kind == Some(SFlag::S_IFLNK);
        found = kind.filter(|k| *k != SFlag::S_IFLNK).map(|k| {
            if k == SFlag::S_IFDIR {
                Found::Dir
            } else {
                Found::Other
            }
        });
        if link {
            hops += 1;
            if hops > 40 {
                bail!("resolve `{inside}` in the container: too many levels of symbolic links");
            }
            let target = readlinkat(dir, &cand)
                .with_context(|| format!("read link `{}`", cand.display()))?;
            let t = target.to_string_lossy().into_owned();
            if t.starts_with('/') {
                resolved = PathBuf::new();
            }
            let mut more = components(&t);
            more.reverse();
            pending.extend(more);
        } else {
            resolved = cand;
        }
    }
    Ok((resolved, found))
}

fn components(p: &str) -> Vec<String> {
    Path::new(p)
        .components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect()
}

fn mkdir_p(p: &Path) -> Result<()> {
    match fs::DirBuilder::new().recursive(true).mode(0o755).create(p) {
        // something else than a directory is there: the mount's own failure, as a bind onto
        // a file reports it (the path in the store would say nothing to the user)
        Err(_) if fs::symlink_metadata(p).is_ok_and(|m| !m.is_dir()) => {
            Err(nix::Error::ENOTDIR.into())
        }
        r => r.with_context(|| format!("create directory `{}`", p.display())),
    }
}

/// Create an empty file (or directory, for `dir`) to mount over, if nothing is there yet.
/// A file is created by one exclusive open, which leaves whatever is there (a symlink
/// included) alone; its directory is made only when the open says it is missing: a
/// container's start binds a dozen files, most into directories that exist.
fn mount_point(p: &Path, dir: bool) -> Result<()> {
    if dir {
        return mkdir_p(p);
    }
    let create = || {
        fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .custom_flags(libc::O_NOFOLLOW)
            .open(p)
            .map(drop)
    };
    let r = match create() {
        Err(e) if e.kind() == io::ErrorKind::NotFound => match p.parent() {
            Some(parent) => {
                mkdir_p(parent)?;
                create()
            }
            None => Err(e),
        },
        r => r,
    };
    match r {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        // a file on the way: the mount's own failure, as mkdir_p reports it
        Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => Err(nix::Error::ENOTDIR.into()),
        Err(e) => Err(e).with_context(|| format!("create mount point `{}`", p.display())),
    }
}

fn ms(bits: u64) -> MsFlags {
    MsFlags::from_bits_truncate(bits as _)
}

/// Flags the kernel locks on a mount made in an outer namespace: a read-only remount of a bind
/// must repeat them or it fails with EPERM.
fn locked_flags(p: &Path) -> MsFlags {
    let Ok(st) = nix::sys::statvfs::statvfs(p) else {
        return MsFlags::empty();
    };
    use nix::sys::statvfs::FsFlags;
    let mut fl = MsFlags::empty();
    for (a, b) in [
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
    ] {
        if st.flags().contains(a) {
            fl |= b;
        }
    }
    fl
}

fn remount_ro(p: &Path, extra: MsFlags) -> io::Result<()> {
    let fl = MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY | locked_flags(p) | extra;
    mount(None::<&str>, p, None::<&str>, fl, None::<&str>).map_err(io::Error::from)
}

/// What [`apply`] failed at, as the context of its error. `runtime`: an operation an OCI
/// runtime does (a volume, a tmpfs, pivot_root...), whose failure Podman reports as the
/// runtime's, with exit 126; else rbox's own preparation of the root (exit 125).
#[derive(Debug)]
pub struct Failed {
    pub what: String,
    pub runtime: bool,
}

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.what)
    }
}

/// Execute the plan with the new root at `target` (a directory in the store).
pub fn apply(ops: &[Op], target: &Path) -> Result<()> {
    let mut pivoted = false;
    let mut joiner = Joiner::default();
    for op in ops {
        let root: &Path = if pivoted { Path::new("/") } else { target };
        apply_one(op, root, target, &mut joiner).map_err(|e| {
            e.context(Failed {
                what: describe(op),
                runtime: !matches!(op, Op::Root(_) | Op::PrivateAll),
            })
        })?;
        if matches!(op, Op::Pivot | Op::Chroot) {
            pivoted = true;
        }
    }
    Ok(())
}

fn describe(op: &Op) -> String {
    match op {
        Op::PrivateAll => "make mounts private".into(),
        Op::Root(Rootfs::Overlay { .. }) => "mount overlay root filesystem".into(),
        Op::Root(Rootfs::Fuse { .. }) => "mount FUSE overlay root filesystem".into(),
        Op::Root(Rootfs::Dir(d)) => format!("bind root filesystem `{}`", d.display()),
        Op::Root(Rootfs::ImageFile { file, .. }) => {
            format!("mount image file `{}` as the root", file.display())
        }
        Op::Root(Rootfs::Host { dir, .. }) => {
            format!("overlay host directory `{}` as the root", dir.display())
        }
        Op::Fs { fstype, inside, .. } | Op::FsNamed { fstype, inside, .. } => {
            format!("mount {fstype} on `{inside}`")
        }
        Op::Bind { host, inside, .. } => format!("bind `{}` on `{inside}`", host.display()),
        Op::Symlink { inside, .. } => format!("create symlink `{inside}`"),
        Op::Pivot => "pivot_root".into(),
        Op::Chroot => "chroot into the root filesystem".into(),
        Op::Mask(p) => format!("mask `{p}`"),
        Op::ReadOnly(p) => format!("make `{p}` read-only"),
        Op::RootReadOnly => "remount root read-only".into(),
        Op::Sysctl { key, .. } => format!("set sysctl `{key}`"),
        Op::Propagation { inside, .. } => format!("set the propagation of `{inside}`"),
        Op::Mknod { inside, .. } => format!("create device `{inside}`"),
    }
}

fn apply_one(op: &Op, root: &Path, target: &Path, joiner: &mut Joiner) -> Result<()> {
    let mut secure_join_found = |root: &Path, inside: &str| -> Result<(PathBuf, Option<Found>)> {
        let (p, found) = joiner.join(root, inside)?;
        // a mount on the root itself hides what the descriptor opened
        if p == root {
            joiner.reset();
        }
        Ok((p, found))
    };
    match op {
        Op::Propagation { inside, flags } => {
            let (p, _) = secure_join_found(root, inside)?;
            mount(None::<&str>, &p, None::<&str>, ms(*flags), None::<&str>)?;
        }
        Op::Mknod {
            inside,
            kind,
            major,
            minor,
            mode,
            uid,
            gid,
        } => {
            use nix::sys::stat::{Mode, SFlag};
            let (p, _) = secure_join_found(root, inside)?;
            let kind = SFlag::from_bits_truncate(*kind);
            let dev = nix::sys::stat::makedev(*major, *minor);
            match nix::sys::stat::mknod(&p, kind, Mode::from_bits_truncate(*mode), dev) {
                Ok(()) => {}
                Err(nix::errno::Errno::EPERM) => bail!(
                    "the host has no such device to bind, and only root outside a user \
                     namespace may create device nodes"
                ),
                Err(e) => return Err(e.into()),
            }
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&p, fs::Permissions::from_mode(*mode))?;
            if uid.is_some() || gid.is_some() {
                std::os::unix::fs::chown(&p, *uid, *gid)?;
            }
        }
        Op::Sysctl { key, value } => {
            // keys were checked at create (no `/`), so this stays below /proc/sys
            let p = Path::new("/proc/sys").join(key.replace('.', "/"));
            std::fs::write(&p, value).with_context(|| format!("write `{}`", p.display()))?;
        }
        Op::PrivateAll => {
            mount(
                None::<&str>,
                "/",
                None::<&str>,
                MsFlags::MS_REC | MsFlags::MS_PRIVATE,
                None::<&str>,
            )?;
        }
        // the storage driver's part: overlay, or the copy driver's populated directory
        Op::Root(rootfs) => {
            joiner.reset();
            rootfs.mount(target)?
        }
        Op::Fs {
            fstype,
            inside,
            flags,
            data,
            optional,
        }
        | Op::FsNamed {
            fstype,
            inside,
            flags,
            data,
            optional,
            ..
        } => {
            let source = match op {
                Op::FsNamed { source, .. } => source,
                _ => fstype,
            };
            let (p, found) = secure_join_found(root, inside)?;
            // (a directory there already, as the image's /proc and /sys are, needs none)
            let made = match found {
                Some(Found::Dir) => Ok(()),
                _ => mount_point(&p, true),
            };
            let r = made.and_then(|_| {
                let data = (!data.is_empty()).then_some(data.as_str());
                mount(
                    Some(source.as_str()),
                    &p,
                    Some(fstype.as_str()),
                    ms(*flags),
                    data,
                )
                .map_err(anyhow::Error::from)
            });
            if let Err(e) = r {
                if !optional {
                    return Err(e);
                }
            }
        }
        Op::Bind {
            host,
            inside,
            recursive,
            readonly,
            flags,
        } => {
            let meta = fs::metadata(host).with_context(|| format!("stat `{}`", host.display()))?;
            let (p, found) = secure_join_found(root, inside)?;
            // (what is there already, of the source's kind, needs nothing made; one of the
            // other kind fails the mount as before)
            let ready = match found {
                Some(Found::Dir) => meta.is_dir(),
                Some(Found::Other) => !meta.is_dir(),
                None => false,
            };
            if !ready {
                mount_point(&p, meta.is_dir())?;
            }
            let mut fl = MsFlags::MS_BIND;
            if *recursive {
                fl |= MsFlags::MS_REC;
            }
            mount(Some(host.as_path()), &p, None::<&str>, fl, None::<&str>)?;
            let extra = ms(*flags);
            if *readonly && *recursive && extra.is_empty() {
                sys::mount_setattr_recursive(&p.to_string_lossy(), libc::MOUNT_ATTR_RDONLY)?;
            } else if *readonly {
                remount_ro(&p, extra)?;
            } else if !extra.is_empty() {
                let fl = MsFlags::MS_REMOUNT | MsFlags::MS_BIND | locked_flags(&p) | extra;
                let r = mount(None::<&str>, &p, None::<&str>, fl, None::<&str>);
                // Inside a user namespace the host mount's atime mode is locked (mount(2),
                // EPERM): keep it, as crun does, and apply the rest.
                let atime = MsFlags::MS_STRICTATIME
                    | MsFlags::MS_RELATIME
                    | MsFlags::MS_NOATIME
                    | MsFlags::MS_NODIRATIME;
                if r == Err(nix::errno::Errno::EPERM) && extra.intersects(atime) {
                    let fl =
                        MsFlags::MS_REMOUNT | MsFlags::MS_BIND | locked_flags(&p) | (extra - atime);
                    mount(None::<&str>, &p, None::<&str>, fl, None::<&str>)?;
                } else {
                    r?;
                }
            }
        }
        Op::Symlink { target: t, inside } => {
            let (p, _) = secure_join_found(root, inside)?;
            std::os::unix::fs::symlink(t, &p)?;
        }
        Op::Pivot => {
            joiner.reset();
            nix::unistd::chdir(target)?;
            sys::pivot_root(".", ".")?;
            umount2(".", MntFlags::MNT_DETACH)?;
            nix::unistd::chdir("/")?;
        }
        Op::Chroot => {
            joiner.reset();
            nix::unistd::chdir(target)?;
            nix::unistd::chroot(".")?;
            nix::unistd::chdir("/")?;
        }
        Op::Mask(p) => {
            let Ok(m) = fs::symlink_metadata(p) else {
                return Ok(());
            };
            if m.is_dir() {
                mount(
                    Some("tmpfs"),
                    p.as_str(),
                    Some("tmpfs"),
                    MsFlags::MS_RDONLY,
                    Some("size=0"),
                )?;
            } else {
                mount(
                    Some("/dev/null"),
                    p.as_str(),
                    None::<&str>,
                    MsFlags::MS_BIND,
                    None::<&str>,
                )?;
            }
        }
        Op::ReadOnly(p) => {
            if fs::symlink_metadata(p).is_err() {
                return Ok(());
            }
            mount(
                Some(p.as_str()),
                p.as_str(),
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )?;
            remount_ro(Path::new(p), MsFlags::empty())?;
        }
        Op::RootReadOnly => remount_ro(Path::new("/"), MsFlags::empty())?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::MountSpec;

    fn etc() -> EtcFiles {
        EtcFiles {
            hosts: "/h".into(),
            hostname: "/n".into(),
            resolv: "/r".into(),
        }
    }

    #[test]
    fn secure_join_stays_inside() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        fs::create_dir_all(r.join("real/sub")).unwrap();
        std::os::unix::fs::symlink("/etc", r.join("abs")).unwrap();
        std::os::unix::fs::symlink("../../../../etc", r.join("rel")).unwrap();
        std::os::unix::fs::symlink("real", r.join("ok")).unwrap();
        std::os::unix::fs::symlink("loop", r.join("loop")).unwrap();
        assert_eq!(secure_join(r, "/abs/passwd").unwrap(), r.join("etc/passwd"));
        assert_eq!(secure_join(r, "/rel/x").unwrap(), r.join("etc/x"));
        assert_eq!(secure_join(r, "/ok/sub").unwrap(), r.join("real/sub"));
        assert_eq!(secure_join(r, "/../../x").unwrap(), r.join("x"));
        assert!(secure_join(r, "/loop/x").is_err());
    }

    #[test]
    fn extras_go_by_depth_and_user_mounts_replace_rboxs_own() {
        let bind = |src: &str, dst: &str| MountSpec {
            kind: MountKind::Bind,
            source: src.into(),
            destination: dst.into(),
            options: Vec::new(),
        };
        let mut spec = Spec {
            read_only: true,
            ..Default::default()
        };
        spec.mounts = vec![
            bind("/a", "/x/y"),
            bind("/b", "/x"),
            bind("/c", "/etc"),
            bind("/d", "/etc/resolv.conf"),
            bind("/e", "/tmp"),
        ];
        let etc = etc();
        let order: Vec<String> = extras(&spec, &etc)
            .iter()
            .map(|e| match e {
                Extra::Etc(_, p) => format!("rbox {p}"),
                Extra::Scratch(p) => format!("tmpfs {p}"),
                Extra::User(m) => format!("{} {}", m.source, m.destination),
            })
            .collect();
        assert_eq!(
            order,
            [
                "tmpfs /run",
                "/b /x",
                "/c /etc",
                "/e /tmp",
                "rbox /etc/hosts",
                "rbox /etc/hostname",
                "tmpfs /var/tmp",
                "/a /x/y",
                "/d /etc/resolv.conf",
            ]
        );
    }

    #[test]
    fn systemd_mode_and_chroot_dirs_add_their_mounts_once() {
        let mut spec = Spec {
            read_only: true,
            ..Default::default()
        };
        spec.opts.systemd = true;
        spec.opts.chrootdirs = vec!["/srv/jail/".into()];
        spec.mounts = vec![MountSpec {
            kind: MountKind::Tmpfs,
            source: "tmpfs".into(),
            destination: "/var/log/journal".into(),
            options: Vec::new(),
        }];
        let etc = etc();
        let order: Vec<String> = extras(&spec, &etc)
            .iter()
            .map(|e| match e {
                Extra::Etc(_, p) => format!("rbox {p}"),
                Extra::Scratch(p) => format!("tmpfs {p}"),
                Extra::User(m) => format!("user {}", m.destination),
            })
            .collect();
        // /tmp and /run once for --read-only and systemd mode; the user's journal tmpfs wins;
        // the chroot gets the network's files, not /etc/hostname
        assert_eq!(
            order,
            [
                "tmpfs /tmp",
                "tmpfs /run",
                "rbox /etc/hosts",
                "rbox /etc/hostname",
                "rbox /etc/resolv.conf",
                "tmpfs /var/tmp",
                "tmpfs /run/lock",
                "user /var/log/journal",
                "rbox /srv/jail/etc/hosts",
                "rbox /srv/jail/etc/resolv.conf",
            ]
        );
    }

    #[test]
    fn plan_order_and_options() {
        let mut spec = Spec {
            read_only: true,
            ..Default::default()
        };
        spec.mounts.push(MountSpec {
            kind: MountKind::Bind,
            source: "/src".into(),
            destination: "/data".into(),
            options: vec!["ro".into()],
        });
        let ops = plan(
            Rootfs::Dir("/r".into()),
            &spec,
            &etc(),
            Env {
                own_net: true,
                tty_gid: false,
            },
        );
        assert_eq!(ops[0], Op::PrivateAll);
        let pivot = ops.iter().position(|o| *o == Op::Pivot).unwrap();
        let bind = ops
            .iter()
            .position(|o| matches!(o, Op::Bind { inside, readonly: true, .. } if inside == "/data"))
            .unwrap();
        assert!(bind < pivot, "volumes are mounted before pivot_root");
        assert!(ops[pivot..].contains(&Op::Mask("/proc/kcore".into())));
        assert_eq!(ops.last(), Some(&Op::RootReadOnly));
        assert!(ops.iter().any(|o| matches!(o, Op::Fs { fstype, data, .. } if fstype == "devpts" && !data.contains("gid=5"))));
        assert!(ops
            .iter()
            .any(|o| matches!(o, Op::Fs { fstype, .. } if fstype == "sysfs")));
        let host_net = plan(
            Rootfs::Dir("/r".into()),
            &Spec::default(),
            &etc(),
            Env {
                own_net: false,
                tty_gid: true,
            },
        );
        assert!(host_net
            .iter()
            .any(|o| matches!(o, Op::Bind { inside, readonly: true, .. } if inside == "/sys")));
        assert!(!host_net.contains(&Op::RootReadOnly));
    }

    #[test]
    fn privileged_has_no_masks() {
        let spec = Spec {
            privileged: true,
            ..Default::default()
        };
        let ops = plan(
            Rootfs::Dir("/r".into()),
            &spec,
            &etc(),
            Env {
                own_net: true,
                tty_gid: true,
            },
        );
        assert!(!ops
            .iter()
            .any(|o| matches!(o, Op::Mask(_) | Op::ReadOnly(_))));
    }
}
