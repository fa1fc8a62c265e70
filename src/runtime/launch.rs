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
    /// the `CLONE_NEW*` flags of the namespaces the init is cloned in
    pub clone_flags: libc::c_int,
    /// namespaces joined by path (besides the network's), entered by the parent before the
    /// clone (a mount namespace by the init, first: the parent keeps the runtime's paths):
    /// opened files and their `CLONE_NEW*` types
    pub joins: Vec<(fs::File, libc::c_int)>,
    /// the user namespace's maps are not the caller's own ids: newuidmap/newgidmap write them
    pub map_helpers: bool,
    /// The OCI runtime's `create` (see `bundle`): the container waits for its start on this
    /// FIFO (an `O_PATH` descriptor, reopened for writing through /proc/self/fd) instead of
    /// on the channel, so that no rbox process needs to stay
    pub start_fifo: Option<RawFd>,
    /// the exit code of a mount of the plan that fails in the init: 126 for `rbox run`
    /// (Podman's code for its OCI runtime's failure), 125 for `rbox oci` (rbox's own)
    pub mount_failure_code: u8,
    /// the OCI runtime's container state directory (`O_PATH`), where the init reads the state
    /// its `startContainer` hooks get
    pub state_dir: Option<RawFd>,
    /// `startContainer` hooks: run in the container after its start, before the exec
    pub start_hooks: Vec<oci_spec::runtime::Hook>,
    /// `createContainer` hooks: run by the init in the container's namespaces once its mounts
    /// are made, before pivot_root (their paths are the host's)
    pub create_hooks: Vec<oci_spec::runtime::Hook>,
    /// the init takes uid and gid 0 of its new user namespace once the maps are written (an
    /// OCI bundle's namespace need not map the ids the init was cloned with)
    pub become_root: bool,
    /// where the FUSE overlay's server (forked by the container parent, outside the
    /// container) takes the seccomp listeners of `rbox exec`'s processes; `Some` for a
    /// [`Rootfs::Fuse`](rbox_storage::Rootfs::Fuse) root only
    pub fuse_socket: Option<PathBuf>,
    /// `--security-opt fakeroot` on a root whose owner supervisor takes the chown family
    /// (the FUSE overlay under a single-id map): a chown it cannot record is faked
    pub fakeroot_chown: bool,
    /// `--userns=nomap` and `auto`: the uid_map and gid_map (relative to rbox's namespace) of the user
    /// namespace the init enters once its mounts are made. The namespace does not map
    /// rbox's id 0, the owner of the store, so the mounts are made from rbox's namespace
    /// (the FUSE overlay's server, too, stays there) and the container gets the maps after.
    /// With them, the uid and gid of rbox's namespace that are that namespace's root.
    pub nested_maps: Option<((String, String), (u32, u32))>,
    /// a network namespace made ahead (see [`super::prenet`]), loopback up: the init joins it
    /// first thing instead of being cloned with a new one (`own_net` stays set)
    pub pre_net: Option<std::os::fd::OwnedFd>,
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
/// replaces the container's stdin, stdout and stderr (a detached container's log);
/// `notify`: the directory of the monitor's sd_notify socket for the container (`sdnotify`).
pub fn plan(
    g: &Context,
    store: &Store,
    rec: &ContainerRecord,
    stdio: Option<[i32; 3]>,
    notify: Option<&Path>,
) -> Result<Launch> {
    let dir = store.container_dir(&rec.id)?;
    super::mounted::refuse_start(g, rec)?;
    // the image's own working directory may be created at start; a `-w` one must exist
    let image_workdir = match (&rec.rootfs, &rec.image_file) {
        (Some(_), _) => None,
        // the config the file carries (a few ms of unsquashfs, at start only)
        (None, Some(f)) => rbox_storage::mount::squash::read_config(f)
            .ok()
            .flatten()
            .and_then(|raw| oci_spec::image::ImageConfiguration::from_reader(&raw[..]).ok())
            .and_then(|c| c.config().as_ref()?.working_dir().clone()),
        (None, None) => {
            // read at create by this process (a `run`), else from the store
            let recent = rbox_storage::Digest::parse(&rec.image_id)
                .ok()
                .and_then(|d| store.recent_image_config(&d));
            let config = match recent {
                Some(c) => Some(c),
                None => {
                    let image = store.lookup_image(&rec.image_id).with_context(|| {
                        format!("image {} of container {} is gone", &rec.image_id, rec.name)
                    })?;
                    store.image_config(&image).ok()
                }
            };
            config.and_then(|c| c.config().as_ref()?.working_dir().clone())
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
    let mut spec = config(
        store.root(),
        rec,
        target_net.as_ref().map(|n| n.path.as_path()),
    )?;
    if let Some(dir) = notify {
        oci::with_notify_socket(&mut spec, dir);
    }
    let rootfs = store
        .rootfs(rec.driver, &dir, rec.auto_remove)
        .context("create empty lower layer")?;
    let rootfs = with_mount_points(rootfs, store, !rec.spec.no_hosts)?;
    let rootfs = shifted_for_keep_id(rootfs, keep_id(&userns::current_mode(), &rec.spec).as_ref());
    let nomap = matches!(
        rec.spec.userns,
        state::UsernsMode::Nomap | state::UsernsMode::Auto
    );
    let rootfs = if nomap {
        shifted_for_nomap(rootfs, own_maps(&userns::current_mode(), &rec.spec)?)?
    } else {
        rootfs
    };
    // squashfuse, which serves an `--image-file` (rbox_storage::mount::squash), is forked by
    // the init while it mounts the root: with the command as PID 1 it would be the command's
    // child, and a PID 1 that waits for all its children (busybox tar does) would wait for
    // it forever. The `--init` reaper is PID 1 then, and squashfuse its child. The FUSE
    // overlay's server runs outside the container (container::create_with), so a
    // `fuse-overlay` root needs no reaper.
    let fuse_root = matches!(rootfs, rbox_storage::Rootfs::ImageFile { .. });
    let fuse_socket = matches!(rootfs, rbox_storage::Rootfs::Fuse { .. })
        .then(|| fuse_socket(store.root(), &rec.id));
    let hostname = oci::hostname(&spec);
    // `--uts=host` sets no hostname; /etc/hostname and /etc/hosts still name the container
    let etc_name = if rec.spec.opts.uts_host {
        rec.spec.hostname.clone()
    } else {
        hostname.clone()
    };
    write_etc(&dir.dir, rec, &etc_name)?;
    let mode = userns::current_mode();
    if needs_user_files(&mode, &rec.spec) {
        write_user_files(
            &dir.dir,
            &rootfs,
            keep_id(&mode, &rec.spec).as_ref(),
            &rec.spec,
        )
        .with_context(|| format!("creating temporary passwd file for container {}", rec.id))?;
    }
    let keep_id_root = keep_id_root(keep_id(&mode, &rec.spec).as_ref());
    if let Some(root) = keep_id_root {
        give_etc_to(&dir.dir, root)?;
    }
    let nested_root = if nomap {
        let (u, g) = own_maps(&mode, &rec.spec)?.unwrap_or_default();
        let root = |m: &str| rbox_storage::mount::fuse::shift::IdMap::parse(m)?.outside(0);
        let root = root(&u)
            .zip(root(&g))
            .context("--userns: the container's id maps have no root")?;
        give_etc_to(&dir.dir, root)?;
        Some(root)
    } else {
        None
    };
    let single_id = mode == userns::Mode::Single;
    let bad = |e: anyhow::Error| {
        let path = layout::oci_config(store.root(), &rec.id);
        e.context(format!("container {}: `{}`", rec.name, path.display()))
    };
    let mut ops = oci::mount_ops(&spec, rootfs).map_err(bad)?;
    let process = oci::process(&spec).map_err(bad)?;
    let mut ns = oci::namespaces(&spec).map_err(bad)?;
    let own_userns = ns.user_maps.is_some();
    let nested_maps = match (nomap, nested_root) {
        (true, Some(root)) => ns.user_maps.take().map(|m| (m, root)),
        _ => None,
    };
    if let Some(((uid_map, gid_map), _)) = &nested_maps {
        devpts_ids_outside(&mut ops, uid_map, gid_map);
    }
    if !ns.join.is_empty() {
        return Err(bad(anyhow::anyhow!(
            "a container's own spec joins namespaces by path only for its network"
        )));
    }
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
    // the hooks the init runs; the monitor writes the state they get into the container's
    // directory (see hooks::ForContainer)
    let hooks = spec.hooks().clone().unwrap_or_default();
    let start_hooks = hooks.start_container().clone().unwrap_or_default();
    let create_hooks = hooks.create_container().clone().unwrap_or_default();
    let state_dir = if start_hooks.is_empty() && create_hooks.is_empty() {
        None
    } else {
        use std::os::fd::IntoRawFd;
        let d = nix::fcntl::open(
            &dir.dir,
            nix::fcntl::OFlag::O_PATH
                | nix::fcntl::OFlag::O_DIRECTORY
                | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .with_context(|| format!("open `{}`", dir.dir.display()))?;
        Some(d.into_raw_fd())
    };
    Ok(Launch {
        command: command(
            process,
            rec,
            &etc_name,
            own_userns,
            image_workdir.as_deref(),
        ),
        hostname,
        init: rec.spec.init || fuse_root,
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
        clone_flags: ns.flags,
        joins: Vec::new(),
        map_helpers: false,
        start_fifo: None,
        mount_failure_code: crate::exit::CANNOT_INVOKE,
        state_dir,
        start_hooks,
        create_hooks,
        become_root: keep_id_root.is_some(),
        fakeroot_chown: fuse_socket.is_some()
            && rec.spec.opts.fakeroot.applies(single_id)
            && supervised_chown(rec, &mode),
        fuse_socket,
        nested_maps,
        pre_net: None,
    })
}

/// An image's overlay root (kernel or FUSE) with the store's mount points below its layers
/// ([`Store::mount_points_layer`]): the mounts of the start find their targets there instead
/// of making them in the container's upper directory.
fn with_mount_points(
    mut rootfs: rbox_storage::Rootfs,
    store: &Store,
    hosts: bool,
) -> Result<rbox_storage::Rootfs> {
    if let rbox_storage::Rootfs::Overlay { lowers, .. }
    | rbox_storage::Rootfs::Fuse { lowers, .. } = &mut rootfs
    {
        lowers.push(store.mount_points_layer(hosts)?);
    }
    Ok(rootfs)
}

/// The FUSE overlay server's socket of container `id` ([`Launch::fuse_socket`]), which
/// `rbox exec` connects to.
pub fn fuse_socket(store: &std::path::Path, id: &str) -> PathBuf {
    crate::layout::container_dir(store, id).join("fuse.sock")
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
    let just_written = WRITTEN.lock().ok().and_then(|mut w| w.take());
    if let Some((id, spec)) = just_written {
        if id == rec.id {
            return Ok(spec);
        }
    }
    if !path.exists() {
        write_config(root, rec, false, net)?;
        if let Some((_, spec)) = WRITTEN.lock().ok().and_then(|mut w| w.take()) {
            return Ok(spec);
        }
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
    let spec = build_config(root, rec, net)?;
    oci::save(&layout::oci_config(root, &rec.id), &spec, fresh)?;
    keep_written(rec, spec);
    Ok(())
}

/// [`write_config`] for a container created to start at once (`rbox run`): the spec is built
/// now and its text saved by [`save_staged_config`] once the command runs, as creating the
/// file (an inode on the store's file system, where a busy ext4 without a journal scans past
/// every recently deleted inode for a free one) has nothing to do with starting the command.
/// A spec with hooks is written now: they read it from the bundle (the container's directory)
/// before the command runs. Should rbox die before the save, [`config`] writes the file from
/// the record at the next start, as for containers older than the file.
pub fn stage_config(root: &Path, rec: &ContainerRecord, net: Option<&Path>) -> Result<()> {
    let spec = build_config(root, rec, net)?;
    if spec.hooks().is_some() {
        oci::save(&layout::oci_config(root, &rec.id), &spec, true)?;
    } else if let Ok(mut s) = STAGED.lock() {
        // its text too is made once the command runs: a copy costs less than the text
        *s = Some((
            rec.id.clone(),
            layout::oci_config(root, &rec.id),
            spec.clone(),
        ));
    }
    keep_written(rec, spec);
    Ok(())
}

/// Save the `config.json` [`stage_config`] held back for container `id`, if any: called once
/// its command runs (or failed to start), before the start is recorded as done, so that
/// whoever waits for that finds the file. A file there already was written meanwhile from
/// the same record (`rbox exec` writes a missing one); a failure is a warning, as the
/// container runs and [`config`] writes a missing file at its next start.
pub fn save_staged_config(id: &str) {
    let Ok(mut staged) = STAGED.lock() else {
        return;
    };
    if staged.as_ref().is_none_or(|(of, _, _)| of != id) {
        return;
    }
    let Some((_, path, spec)) = staged.take() else {
        return;
    };
    drop(staged);
    use std::io::Write;
    let written = serde_json::to_vec_pretty(&spec)
        .map_err(std::io::Error::from)
        .and_then(|text| {
            fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
                .and_then(|mut f| f.write_all(&text))
        });
    match written {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
            tracing::warn!("write `{}`: {e}", path.display());
        }
        _ => {}
    }
}

/// The spec [`stage_config`] built and did not save yet: (container id, its `config.json`,
/// the spec).
static STAGED: std::sync::Mutex<Option<(String, PathBuf, OciSpec)>> = std::sync::Mutex::new(None);

fn keep_written(rec: &ContainerRecord, spec: OciSpec) {
    if let Ok(mut w) = WRITTEN.lock() {
        *w = Some((rec.id.clone(), spec));
    }
}

/// The files the container's /etc/hosts, /etc/hostname and /etc/resolv.conf are bound from,
/// in that order: its own, but a container sharing another's network gets that one's hosts
/// and resolv.conf, as in Podman (the names and the resolver of the network it shares).
pub fn etc_sources(root: &Path, rec: &ContainerRecord) -> [PathBuf; 3] {
    let [mut hosts, hostname, mut resolv] =
        layout::etc_files(&layout::container_dir(root, &rec.id));
    if rec.spec.network == state::NetworkMode::Container {
        let [h, _, r] = layout::etc_files(&layout::container_dir(root, &rec.spec.network_options));
        (hosts, resolv) = (h, r);
    }
    [hosts, hostname, resolv]
}

/// The OCI runtime spec of `rec` (see [`write_config`]).
fn build_config(root: &Path, rec: &ContainerRecord, net: Option<&Path>) -> Result<OciSpec> {
    let mode = userns::current_mode();
    let dir = layout::container_dir(root, &rec.id);
    let [hosts, hostname, resolv] = etc_sources(root, rec);
    let etc = mounts::EtcFiles {
        hosts,
        hostname,
        resolv,
    };
    let s = &rec.spec;
    let last_cap = caps::last_cap();
    let kept = caps::kept(&s.cap_add, &s.cap_drop, s.privileged, last_cap)?;
    let id_maps = own_maps(&mode, s)?;
    // devpts's gid=5 needs gid 5 in the container's namespace
    let no_tty_gid = id_maps.as_ref().is_some_and(|(_, g)| {
        rbox_storage::mount::fuse::shift::IdMap::parse(g).is_none_or(|m| m.outside(5).is_none())
    });
    let mut filter =
        seccomp::filter(&s.seccomp, s.privileged, kept).context("build seccomp filter")?;
    if s.opts.fakeroot.applies(mode == userns::Mode::Single) {
        let supervised = supervised_chown(rec, &mode);
        filter = Some(seccomp::with_fakeroot(filter, supervised).context("build seccomp filter")?);
    }
    let host = oci::Host {
        single_id: mode == userns::Mode::Single || no_tty_gid,
        keep_id: keep_id(&mode, s),
        id_maps,
        last_cap,
        seccomp: filter,
        net_path: net.map(Path::to_path_buf),
    };
    let mut spec = oci::build(s, &etc, &host).context("build the OCI runtime spec")?;
    // CDI devices' and the hooks directories' hooks, matched at create
    if let Some(h) = super::cdi::oci_hooks(&s.opts.hooks)? {
        spec.set_hooks(Some(h));
    }
    if needs_user_files(&mode, s) {
        // the caller's passwd and group entries (as Podman adds them), written at each start
        let mut ms = spec.mounts().clone().unwrap_or_default();
        for (file, inside) in [("passwd", "/etc/passwd"), ("group", "/etc/group")] {
            ms.push(oci::mount(inside, "bind", dir.join(file), &["bind"]));
        }
        spec.set_mounts(Some(ms));
    }
    if s.opts.fakeroot.applies(mode == userns::Mode::Single) {
        fakeroot_apt(root, &mut spec)?;
    }
    if !s.secrets.is_empty() {
        // after every other mount: a secret's target may lie in a tmpfs or volume
        let mut ms = spec.mounts().clone().unwrap_or_default();
        ms.extend(super::secrets::mounts(&dir, s));
        spec.set_mounts(Some(ms));
        let vars = super::secrets::env(&dir, s)?;
        if let Some(p) = spec.process_mut() {
            let env = super::spec::merge_env(&[&p.env().clone().unwrap_or_default(), &vars]);
            p.set_env(Some(env));
        }
    }
    Ok(spec)
}

/// Whether the FUSE overlay's owner supervisor takes container `rec`'s chown family (see
/// rbox_storage::mount::fuse::supervisor): its root is on that driver under a single-id map.
fn supervised_chown(rec: &ContainerRecord, mode: &userns::Mode) -> bool {
    cfg!(target_arch = "x86_64")
        && rec.driver == rbox_storage::Driver::FuseOverlay
        && *mode == userns::Mode::Single
}

/// Where a fakeroot container's apt finds [`FAKEROOT_APT`] (a file of the /dev tmpfs, so no
/// layer, commit or diff ever holds it), named by `APT_CONFIG`.
const FAKEROOT_APT_INSIDE: &str = "/dev/.rbox-apt.conf";

/// apt's configuration in a fakeroot container: apt drops to its download sandbox user
/// (`_apt`) and checks that the switch took effect, which it cannot where the set*id calls
/// are faked (`Could not switch group`), so it stays root, as `-o APT::Sandbox::User=root`
/// would tell it.
const FAKEROOT_APT: &str =
    "// rbox --security-opt fakeroot: the set*id calls are faked, so apt downloads as root\n\
                            APT::Sandbox::User \"root\";\n";

/// Points the fakeroot container's apt at [`FAKEROOT_APT`] (bound read-only from the store's
/// copy, written once) through `APT_CONFIG`, which apt reads before its own files; a process
/// whose environment names its own `APT_CONFIG` keeps it.
fn fakeroot_apt(root: &Path, spec: &mut OciSpec) -> Result<()> {
    let Some(p) = spec.process_mut() else {
        return Ok(());
    };
    let mut env = p.env().clone().unwrap_or_default();
    if env.iter().any(|v| v.starts_with("APT_CONFIG=")) {
        return Ok(());
    }
    env.push(format!("APT_CONFIG={FAKEROOT_APT_INSIDE}"));
    p.set_env(Some(env));
    let source = root.join("fakeroot-apt.conf");
    if fs::read(&source).ok().as_deref() != Some(FAKEROOT_APT.as_bytes()) {
        let tmp = root.join(format!(".fakeroot-apt.conf.{}", std::process::id()));
        fs::write(&tmp, FAKEROOT_APT).context("write apt's fakeroot configuration")?;
        fs::rename(&tmp, &source).context("write apt's fakeroot configuration")?;
    }
    let mut ms = spec.mounts().clone().unwrap_or_default();
    ms.push(oci::mount(
        FAKEROOT_APT_INSIDE,
        "bind",
        source,
        &["bind", "ro"],
    ));
    spec.set_mounts(Some(ms));
    Ok(())
}

/// The spec this process has just written for a container (its id, the spec): the start that
/// follows in the same invocation (`rbox run`) takes it from here, once, instead of reading
/// config.json back and parsing it again.
static WRITTEN: std::sync::Mutex<Option<(String, OciSpec)>> = std::sync::Mutex::new(None);

/// Write /etc/hosts, /etc/hostname and /etc/resolv.conf for the container.
fn write_etc(dir: &Path, rec: &ContainerRecord, host: &str) -> Result<mounts::EtcFiles> {
    let [hosts, hostname, resolv] = layout::etc_files(dir);
    let files = mounts::EtcFiles {
        hosts,
        hostname,
        resolv,
    };
    let backend = rec.spec.backend()?;
    // the host's own file with the host's network (its stub is reachable there)
    let host_resolv = if rec.spec.network == state::NetworkMode::Host {
        fs::read_to_string("/etc/resolv.conf").unwrap_or_default()
    } else {
        rbox_netns::names::host_resolv_conf()
    };
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

/// `--userns=keep-id` for a non-root caller: run as the caller's own uid and gid inside (or
/// keep-id's `uid=`, `gid=`), the spec's user unless `-u` named one.
pub(super) fn keep_id(mode: &userns::Mode, spec: &state::Spec) -> Option<KeepId> {
    if spec.userns != state::UsernsMode::KeepId || *mode == userns::Mode::Root {
        return None;
    }
    // inside rbox's namespace we are root; the caller's host ids are what keep-id keeps
    let (huid, hgid) = userns::host_ids();
    let ids = mode.idmap();
    Some(KeepId {
        uid: spec.opts.keep_id_uid.unwrap_or(huid),
        gid: spec.opts.keep_id_gid.unwrap_or(hgid),
        uid_count: ids.uid_count,
        gid_count: ids.gid_count,
    })
}

/// keep-id on the FUSE overlay (the driver create chooses for it): the server replies the
/// image's owners as ids of keep-id's namespace, so `/etc` shows as 0 there, as on Podman's
/// chowned copy, and what the container creates is stored with the owners a chowned copy
/// would give it (see rbox_storage::mount::fuse::shift). Not for a single-id range: there
/// the image's root has no id in keep-id's namespace.
fn shifted_for_keep_id(rootfs: rbox_storage::Rootfs, k: Option<&KeepId>) -> rbox_storage::Rootfs {
    use rbox_storage::mount::fuse::shift::IdShift;
    match (rootfs, k) {
        (
            rbox_storage::Rootfs::Fuse {
                lowers,
                upper,
                work,
                shift: None,
            },
            Some(k),
        ) if k.uid_count > 1 && k.gid_count > 1 => rbox_storage::Rootfs::Fuse {
            lowers,
            upper,
            work,
            shift: IdShift::parse(
                &KeepId::map(k.uid, k.uid_count),
                &KeepId::map(k.gid, k.gid_count),
            ),
        },
        (r, _) => r,
    }
}

/// nomap's and auto's devpts is mounted from rbox's namespace (see init's `enter_nested`),
/// which reads its `uid=`/`gid=` options as its own ids: the container's (`gid=5`, tty)
/// become the ids of rbox's namespace that the nested maps show as them.
fn devpts_ids_outside(ops: &mut [mounts::Op], uid_map: &str, gid_map: &str) {
    use rbox_storage::mount::fuse::shift::IdMap;
    let (Some(u), Some(g)) = (IdMap::parse(uid_map), IdMap::parse(gid_map)) else {
        return;
    };
    for op in ops.iter_mut() {
        let (mounts::Op::Fs { fstype, data, .. } | mounts::Op::FsNamed { fstype, data, .. }) = op
        else {
            continue;
        };
        if fstype != "devpts" {
            continue;
        }
        let opts: Vec<String> = data
            .split(',')
            .map(|o| {
                let shifted = match o.split_once('=') {
                    Some(("uid", v)) => v
                        .parse()
                        .ok()
                        .and_then(|v| u.outside(v))
                        .map(|v| ("uid", v)),
                    Some(("gid", v)) => v
                        .parse()
                        .ok()
                        .and_then(|v| g.outside(v))
                        .map(|v| ("gid", v)),
                    _ => None,
                };
                shifted.map_or_else(|| o.to_string(), |(k, v)| format!("{k}={v}"))
            })
            .collect();
        *data = opts.join(",");
    }
}

/// nomap's root on the FUSE overlay, its server in rbox's namespace: the layers' owners
/// (ids of rbox's namespace) are replied as the ids the nested namespace (`maps`) shows as
/// the image's, and what the container creates is stored with the image's convention.
/// Other drivers are refused at create.
fn shifted_for_nomap(
    rootfs: rbox_storage::Rootfs,
    maps: Option<(String, String)>,
) -> Result<rbox_storage::Rootfs> {
    use rbox_storage::mount::fuse::shift::IdShift;
    let Some((uid_map, gid_map)) = maps else {
        anyhow::bail!("--userns=nomap: no id maps for the container's namespace");
    };
    match rootfs {
        rbox_storage::Rootfs::Fuse {
            lowers,
            upper,
            work,
            shift: None,
        } => Ok(rbox_storage::Rootfs::Fuse {
            lowers,
            upper,
            work,
            shift: IdShift::parse(&uid_map, &gid_map),
        }),
        _ => anyhow::bail!(
            "--userns=nomap and auto need the fuse-overlay storage driver (--storage-driver=fuse-overlay): the container's root cannot reach this driver's files"
        ),
    }
}

/// The uid and gid of rbox's namespace that are root in keep-id's namespace, when it has a
/// root (a subordinate range). The init becomes that root, so what it mounts (`/dev`'s
/// tmpfs) is root's as under Podman, not the caller's.
fn keep_id_root(k: Option<&KeepId>) -> Option<(u32, u32)> {
    let k = k.filter(|k| k.uid_count > 1 && k.gid_count > 1)?;
    let root = |id: u32, count: u32| {
        rbox_storage::mount::fuse::shift::IdMap::parse(&KeepId::map(id, count))?.outside(0)
    };
    Some((root(k.uid, k.uid_count)?, root(k.gid, k.gid_count)?))
}

/// The container's /etc files that rbox writes and binds (hosts, hostname, resolv.conf,
/// passwd, group) owned by keep-id's root, as they are by the container's root otherwise.
fn give_etc_to(dir: &Path, (uid, gid): (u32, u32)) -> Result<()> {
    let [hosts, hostname, resolv] = layout::etc_files(dir);
    for f in [
        hosts,
        hostname,
        resolv,
        dir.join("passwd"),
        dir.join("group"),
    ] {
        match std::os::unix::fs::lchown(&f, Some(uid), Some(gid)) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            r => r.with_context(|| format!("chown `{}`", f.display()))?,
        }
    }
    Ok(())
}

/// The uid_map and gid_map text of a container's own user namespace below rbox's, for
/// `--uidmap`/`--gidmap`, `--userns=nomap` and `auto` (the range create allocated); `None` when it runs in rbox's namespace (or keep-id's, see
/// [`keep_id`]). Ids are ids of rbox's namespace: 0 is the caller, 1.. the subordinate ids.
pub fn own_maps(mode: &userns::Mode, s: &state::Spec) -> Result<Option<(String, String)>> {
    let ids = mode.idmap();
    let text = |m: &[(u32, u32, u32)]| -> String {
        m.iter().map(|(c, h, n)| format!("{c} {h} {n}\n")).collect()
    };
    // The container's root filesystem and the store above it belong to id 0 of rbox's
    // namespace (0700): a namespace that does not map it cannot even mount it. Podman gives
    // such containers an id-mapped or chowned copy, which rbox does not make yet.
    const UNMAPPED_OWNER: &str = "a container whose user namespace does not map your own \
        uid (id 0 of rbox's) cannot reach its root filesystem without an id-mapped mount, \
        which rbox does not make yet";
    match s.userns {
        // Podman's text: root's ids are the host's, there is no namespace to keep one in
        state::UsernsMode::KeepId if *mode == userns::Mode::Root => {
            anyhow::bail!("keep-id is only supported in rootless mode")
        }
        state::UsernsMode::Nomap | state::UsernsMode::Auto => {
            // Podman's texts: root's `auto` takes its ranges from the `containers` entry
            let auto = s.userns == state::UsernsMode::Auto;
            const NO_IDS: &str = super::userns_auto::NO_IDS;
            if *mode == userns::Mode::Root {
                if !auto {
                    anyhow::bail!("nomap is only supported in rootless mode");
                }
                let user = super::userns_auto::root_user();
                if !userns::has_subid_range(&user) {
                    anyhow::bail!("{NO_IDS}: no /etc/subuid and /etc/subgid range for the user `{user}`, which --userns=auto takes its ids from as root");
                }
            } else if ids.uid_count < 2 || ids.gid_count < 2 {
                if auto {
                    anyhow::bail!(
                        "{NO_IDS}: --userns=auto takes its ids from your subordinate range: {}",
                        no_range_hint()
                    );
                }
                anyhow::bail!(
                    "nomap requires additional UIDs or GIDs defined in /etc/subuid and /etc/subgid to function correctly: {}",
                    no_range_hint()
                );
            }
            if auto {
                // the range create allocated (see create's `first_free`)
                if s.opts.uid_map.is_empty() || s.opts.gid_map.is_empty() {
                    anyhow::bail!("--userns=auto: the container has no id range (created by an older rbox): recreate it");
                }
                return Ok(Some((text(&s.opts.uid_map), text(&s.opts.gid_map))));
            }
            // Podman's nomap: the container's ids 0.. are the subordinate ids only (rbox's
            // 1..). The init enters this namespace after its mounts (see init's
            // `enter_nested`), and the FUSE overlay shows the layers' owners through it.
            Ok(Some((
                format!("0 1 {}\n", ids.uid_count - 1),
                format!("0 1 {}\n", ids.gid_count - 1),
            )))
        }
        _ if s.opts.uid_map.is_empty() => Ok(None),
        _ => {
            let maps_owner = |m: &[(u32, u32, u32)]| m.iter().any(|(_, h, _)| *h == 0);
            if !maps_owner(&s.opts.uid_map) || !maps_owner(&s.opts.gid_map) {
                anyhow::bail!(
                    "--uidmap and --gidmap (and --subuidname's ranges) must map host id 0 (you) to some container id: {UNMAPPED_OWNER}"
                );
            }
            for (flag, m, count) in [
                ("--uidmap", &s.opts.uid_map, ids.uid_count),
                ("--gidmap", &s.opts.gid_map, ids.gid_count),
            ] {
                for (c, h, n) in m {
                    if u64::from(*h) + u64::from(*n) > u64::from(count) {
                        anyhow::bail!(
                            "{flag} {c}:{h}:{n}: rbox's user namespace has only the ids 0-{} \
                             (0 is you, 1 and up your subordinate ids)",
                            count - 1
                        );
                    }
                }
            }
            Ok(Some((text(&s.opts.uid_map), text(&s.opts.gid_map))))
        }
    }
}

/// Why there are no subordinate ids, with the host change that gives some.
fn no_range_hint() -> String {
    let uid = userns::host_uid();
    let user = userns::user_name(uid).unwrap_or_else(|| uid.to_string());
    userns::Missing::SubuidRange.hint(&user)
}

/// The text of `inside` in the container's root as the image (and the container's own
/// changes) make it, read from the layers (topmost first) without mounting them; empty when
/// there is none (or a whiteout hides it).
fn image_file(rootfs: &rbox_storage::Rootfs, inside: &str) -> String {
    use rbox_storage::Rootfs as R;
    use std::os::unix::fs::FileTypeExt;
    let layers: Vec<&Path> = match rootfs {
        R::Overlay { lowers, upper, .. } | R::Fuse { lowers, upper, .. } => {
            std::iter::once(upper.as_path())
                .chain(lowers.iter().map(PathBuf::as_path))
                .collect()
        }
        R::Dir(d) => vec![d.as_path()],
        R::Host { dir, upper, .. } => vec![upper.as_path(), dir.as_path()],
        R::ImageFile { file, upper, .. } => {
            // the upper first, then the squashfs itself, read without mounting it
            if let Ok(p) = mounts::secure_join(upper, inside) {
                if let Ok(text) = fs::read_to_string(&p) {
                    return text;
                }
            }
            return rbox_storage::mount::squash::cat(file, inside)
                .ok()
                .flatten()
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default();
        }
    };
    for l in layers {
        let Ok(p) = mounts::secure_join(l, inside) else {
            return String::new();
        };
        match fs::symlink_metadata(&p) {
            Ok(m) if m.file_type().is_char_device() => return String::new(),
            Ok(m) if m.is_file() => return fs::read_to_string(&p).unwrap_or_default(),
            _ => continue,
        }
    }
    String::new()
}

/// Whether the container gets rbox's own /etc/passwd and /etc/group, bound over the image's
/// and written at each start: for keep-id, `--hostuser`, or a numeric `--user` (or group) the
/// image may lack (Podman's `--passwd`, on by default).
fn needs_user_files(mode: &userns::Mode, s: &state::Spec) -> bool {
    // (id 0 is root, which every image has: `-u 0` keeps the image's own files)
    let numeric = |x: &str| x.parse::<u32>().is_ok_and(|n| n != 0);
    let (user, group) = s.user.split_once(':').unwrap_or((&s.user, ""));
    !s.opts.hostuser.is_empty()
        || (!s.opts.no_passwd && (keep_id(mode, s).is_some() || numeric(user) || numeric(group)))
}

/// A host user's passwd entry, for `--hostuser`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct HostUser {
    name: String,
    uid: u32,
    gid: u32,
    gecos: String,
}

/// Look up `--hostuser`'s NAME (or uid) in the host's user database, with Go's texts as
/// Podman prints them.
fn host_user(who: &str) -> Result<HostUser> {
    let found = match who.parse::<u32>() {
        Ok(uid) => nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
            .ok()
            .flatten()
            .ok_or_else(|| anyhow::anyhow!("user: unknown userid {uid}"))?,
        Err(_) => nix::unistd::User::from_name(who)
            .ok()
            .flatten()
            .ok_or_else(|| anyhow::anyhow!("user: unknown user {who}"))?,
    };
    Ok(HostUser {
        name: found.name,
        uid: found.uid.as_raw(),
        gid: found.gid.as_raw(),
        gecos: found.gecos.to_string_lossy().into_owned(),
    })
}

/// The container's /etc/passwd and /etc/group: the image's, plus the entries of
/// [`user_entries`].
fn write_user_files(
    dir: &Path,
    rootfs: &rbox_storage::Rootfs,
    k: Option<&KeepId>,
    s: &state::Spec,
) -> Result<()> {
    let hosts = s
        .opts
        .hostuser
        .iter()
        .map(|h| host_user(h))
        .collect::<Result<Vec<_>>>()
        // Podman fails the start of such a container with 126
        .map_err(|e| crate::exit::CodedError::new(crate::exit::CANNOT_INVOKE, e.to_string()))?;
    let (passwd, group) = (
        image_file(rootfs, "/etc/passwd"),
        image_file(rootfs, "/etc/group"),
    );
    let (p, g) = user_entries(&passwd, &group, k, &hosts, s);
    fs::write(dir.join("passwd"), p).context("write passwd")?;
    fs::write(dir.join("group"), g).context("write group")?;
    Ok(())
}

/// One /etc/passwd line: Podman's (`NAME:*:UID:GID:GECOS:HOME:/bin/sh`), or `--passwd-entry`'s
/// template with `$USERNAME`, `$UID`, `$GID`, `$NAME` and `$HOME` replaced (other `$` words
/// stay as they are, as in Podman).
fn passwd_line(
    template: Option<&str>,
    name: &str,
    uid: u32,
    gid: u32,
    gecos: &str,
    home: &str,
) -> String {
    let mut line = match template {
        None => format!("{name}:*:{uid}:{gid}:{gecos}:{home}:/bin/sh"),
        Some(t) => t
            .replace("$USERNAME", name)
            .replace("$UID", &uid.to_string())
            .replace("$GID", &gid.to_string())
            .replace("$NAME", gecos)
            .replace("$HOME", home),
    };
    line.push('\n');
    line
}

/// [`write_user_files`]'s texts from the image's `passwd` and `group`, as Podman writes them:
/// each `--hostuser` the image lacks (by name or uid), then the user the command runs as when
/// the image lacks it: keep-id's (the login name, or the number for keep-id's `uid=`, home
/// `/`), or a numeric `--user` (`container user`, home the working directory, gid 0 unless
/// given); a group for a numeric group (or a numeric user's own number) the image lacks.
fn user_entries(
    passwd: &str,
    group: &str,
    k: Option<&KeepId>,
    hosts: &[HostUser],
    s: &state::Spec,
) -> (String, String) {
    let has = |text: &str, id: Option<u32>, n: &str| {
        text.lines().any(|l| {
            let f: Vec<&str> = l.split(':').collect();
            f.first() == Some(&n)
                || (id.is_some() && f.get(2).and_then(|x| x.parse::<u32>().ok()) == id)
        })
    };
    let add = |text: &mut String, line: String| {
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&line);
    };
    let template = s.opts.passwd_entry.as_deref();
    let home = if s.workdir.is_empty() {
        "/"
    } else {
        s.workdir.as_str()
    };
    let (mut p, mut g) = (passwd.to_string(), group.to_string());
    for h in hosts {
        if !has(&p, Some(h.uid), &h.name) {
            let line = passwd_line(template, &h.name, h.uid, h.gid, &h.gecos, home);
            add(&mut p, line);
        }
    }
    if s.opts.no_passwd {
        return (p, g);
    }
    if let Some(k) = k {
        let (name, gecos) = match s.opts.keep_id_uid {
            Some(u) => (u.to_string(), "container user"),
            None => (
                userns::user_name(userns::host_uid()).unwrap_or_else(|| k.uid.to_string()),
                "",
            ),
        };
        let group_name = match s.opts.keep_id_gid.or(s.opts.keep_id_uid) {
            Some(_) => k.gid.to_string(),
            None => name.clone(),
        };
        if !has(&p, Some(k.uid), &name) {
            let line = passwd_line(template, &name, k.uid, k.gid, gecos, "/");
            add(&mut p, line);
        }
        if !has(&g, Some(k.gid), &group_name) {
            add(&mut g, format!("{group_name}:x:{}:{name}\n", k.gid));
        }
        return (p, g);
    }
    let (user, grp) = s.user.split_once(':').unwrap_or((&s.user, ""));
    let uid = user.parse::<u32>().ok();
    let gid = grp.parse::<u32>().ok();
    if let Some(uid) = uid {
        if !has(&p, Some(uid), user) {
            let line = passwd_line(
                template,
                user,
                uid,
                gid.unwrap_or(0),
                "container user",
                home,
            );
            add(&mut p, line);
        }
    }
    // the group is checked apart from the user (Podman adds `-u 0:5678`'s group 5678), and a
    // numeric user without a group gets a group of its own number
    let group_id = match (grp.is_empty(), gid) {
        (_, Some(gid)) => Some(gid),
        (true, None) => uid,
        (false, None) => None,
    };
    if let Some(id) = group_id {
        if !has(&g, Some(id), &id.to_string()) {
            // Podman lists the user as a member (`1234:x:1234:1234`) but gives the process no
            // such supplementary group (it resolves groups before adding the line): rbox's
            // init reads the file it finds, so the user's own-number group lists no member
            let member = if grp.is_empty() { "" } else { user };
            add(&mut g, format!("{id}:x:{id}:{member}\n"));
        }
    }
    (p, g)
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
            image_file: None,
            create_command: Vec::new(),
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
            id_maps: None,
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
    fn keep_id_with_a_range_shifts_the_fuse_overlay_and_has_a_root() {
        use rbox_storage::Rootfs;
        let k = KeepId {
            uid: 1000,
            gid: 1001,
            uid_count: 65537,
            gid_count: 65537,
        };
        // keep-id's root is rbox's id 1 (the first subordinate id)
        assert_eq!(keep_id_root(Some(&k)), Some((1, 1)));
        let single = KeepId {
            uid_count: 1,
            gid_count: 1,
            ..k.clone()
        };
        assert_eq!(keep_id_root(Some(&single)), None);
        assert_eq!(keep_id_root(None), None);
        let fuse = Rootfs::Fuse {
            lowers: vec!["l".into()],
            upper: "u".into(),
            work: "w".into(),
            shift: None,
        };
        match shifted_for_keep_id(fuse.clone(), Some(&k)) {
            Rootfs::Fuse { shift: Some(s), .. } => {
                // rbox's 0 (the image's root) is keep-id's 1000: replied as 0
                assert_eq!(s.uid_to_view(1000), 0);
                assert_eq!(s.gid_to_view(1001), 0);
                assert_eq!(s.uid_to_disk(1000), Some(999));
            }
            r => panic!("not shifted: {r:?}"),
        }
        assert_eq!(shifted_for_keep_id(fuse.clone(), Some(&single)), fuse);
        assert_eq!(shifted_for_keep_id(fuse.clone(), None), fuse);
        let dir = Rootfs::Dir("d".into());
        assert_eq!(shifted_for_keep_id(dir.clone(), Some(&k)), dir);
        // root has no namespace to keep an id in: Podman's refusal
        let s = Spec {
            userns: state::UsernsMode::KeepId,
            ..Default::default()
        };
        let e = own_maps(&userns::Mode::Root, &s).unwrap_err();
        assert_eq!(e.to_string(), "keep-id is only supported in rootless mode");
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
    fn keep_id_adds_the_callers_entries_once() {
        let k = KeepId {
            uid: 1001,
            gid: 1001,
            uid_count: 65537,
            gid_count: 65537,
        };
        let passwd = "root:x:0:0:root:/root:/bin/sh";
        let group = "root:x:0:\n";
        let spec = Spec {
            opts: state::RunOpts {
                keep_id_uid: Some(200),
                keep_id_gid: Some(300),
                ..Default::default()
            },
            ..Default::default()
        };
        let k2 = KeepId {
            uid: 200,
            gid: 300,
            ..k.clone()
        };
        let (p, g) = user_entries(passwd, group, Some(&k2), &[], &spec);
        assert_eq!(
            p,
            "root:x:0:0:root:/root:/bin/sh\n200:*:200:300:container user:/:/bin/sh\n"
        );
        assert_eq!(g, "root:x:0:\n300:x:300:200\n");
        // an image that has the uid and gid already keeps its own entries
        let mine = "root:x:0:0::/:/bin/sh\nme:x:1001:1001::/home/me:/bin/sh\n";
        let (p, g) = user_entries(mine, "me:x:1001:\n", Some(&k), &[], &Spec::default());
        assert_eq!((p.as_str(), g.as_str()), (mine, "me:x:1001:\n"));
    }

    /// The lines Podman 4.3 writes for a numeric `--user`, `--hostuser` and `--passwd-entry`
    /// (observed with the same arguments on the same image).
    #[test]
    fn passwd_entries_as_podman_writes_them() {
        let passwd =
            "root:x:0:0:root:/root:/bin/sh\ntester:x:1000:1000:tester:/home/tester:/bin/sh\n";
        let group = "root:x:0:\ntester:x:1000:\n";
        let spec = |user: &str, workdir: &str, f: &dyn Fn(&mut state::RunOpts)| {
            let mut s = Spec {
                user: user.into(),
                workdir: workdir.into(),
                ..Default::default()
            };
            f(&mut s.opts);
            s
        };
        let added = |s: &Spec, hosts: &[HostUser]| {
            let (p, g) = user_entries(passwd, group, None, hosts, s);
            (
                p.strip_prefix(passwd).unwrap().to_string(),
                g.strip_prefix(group).unwrap().to_string(),
            )
        };
        let none = |_: &mut state::RunOpts| {};
        for (user, workdir, p, g) in [
            (
                "1234",
                "",
                "1234:*:1234:0:container user:/:/bin/sh\n",
                "1234:x:1234:\n",
            ),
            (
                "1234",
                "/tmp",
                "1234:*:1234:0:container user:/tmp:/bin/sh\n",
                "1234:x:1234:\n",
            ),
            ("1234:0", "", "1234:*:1234:0:container user:/:/bin/sh\n", ""),
            (
                "1234:5678",
                "",
                "1234:*:1234:5678:container user:/:/bin/sh\n",
                "5678:x:5678:1234\n",
            ),
            ("0:5678", "", "", "5678:x:5678:0\n"),
            ("tester:5678", "", "", "5678:x:5678:tester\n"),
            ("1000", "", "", ""),
            ("", "", "", ""),
        ] {
            let s = spec(user, workdir, &none);
            assert_eq!(
                added(&s, &[]),
                (p.to_string(), g.to_string()),
                "-u {user:?}"
            );
        }
        let template = |o: &mut state::RunOpts| {
            o.passwd_entry = Some("$USERNAME|$UID|$GID|$NAME|$HOME|$FOO|$$UID".into())
        };
        let s = spec("1234", "/tmp", &template);
        assert_eq!(
            added(&s, &[]).0,
            "1234|1234|0|container user|/tmp|$FOO|$1234\n"
        );
        let off = |o: &mut state::RunOpts| o.no_passwd = true;
        assert_eq!(
            added(&spec("1234", "", &off), &[]),
            (String::new(), String::new())
        );
        // --hostuser: before the user's own entry, never twice, root already there
        let me = HostUser {
            name: "rboxsub".into(),
            uid: 1001,
            gid: 1001,
            gecos: String::new(),
        };
        let root = HostUser {
            name: "root".into(),
            uid: 0,
            gid: 0,
            gecos: "root".into(),
        };
        let s = spec("1234", "", &none);
        assert_eq!(
            added(&s, &[me.clone(), root, me.clone()]).0,
            "rboxsub:*:1001:1001::/:/bin/sh\n1234:*:1234:0:container user:/:/bin/sh\n"
        );
        let both = |o: &mut state::RunOpts| o.passwd_entry = Some("a:b".into());
        assert_eq!(added(&spec("1234", "", &both), &[me]).0, "a:b\na:b\n");
    }

    #[test]
    fn user_files_only_where_podman_adds_entries() {
        let m = userns::Mode::Root;
        let with = |user: &str, f: &dyn Fn(&mut state::RunOpts)| {
            let mut s = Spec {
                user: user.into(),
                ..Default::default()
            };
            f(&mut s.opts);
            needs_user_files(&m, &s)
        };
        let none = |_: &mut state::RunOpts| {};
        assert!(!with("", &none) && !with("tester", &none) && !with("0:0", &none));
        assert!(with("1234", &none) && with("0:5678", &none));
        assert!(!with("1234", &|o| o.no_passwd = true));
        assert!(with("", &|o| o.hostuser = vec!["root".into()]));
    }

    #[test]
    fn own_maps_need_the_callers_id() {
        let mode = userns::Mode::SubIds {
            uid: userns::SubRange {
                start: 100000,
                count: 65536,
            },
            gid: userns::SubRange {
                start: 100000,
                count: 65536,
            },
        };
        let spec = |u: Vec<(u32, u32, u32)>| Spec {
            opts: state::RunOpts {
                gid_map: u.clone(),
                uid_map: u,
                ..Default::default()
            },
            ..Default::default()
        };
        assert_eq!(own_maps(&mode, &Spec::default()).unwrap(), None);
        let m = own_maps(&mode, &spec(vec![(500, 0, 1), (0, 1, 500)])).unwrap();
        let t = "500 0 1\n0 1 500\n".to_string();
        assert_eq!(m, Some((t.clone(), t)));
        let e = own_maps(&mode, &spec(vec![(0, 1, 10)])).unwrap_err();
        assert!(e.to_string().contains("must map host id 0"), "{e}");
        let e = own_maps(&mode, &spec(vec![(0, 0, 70000)])).unwrap_err();
        assert!(e.to_string().contains("only the ids 0-65536"), "{e}");
        let nomap = Spec {
            userns: state::UsernsMode::Nomap,
            ..Default::default()
        };
        assert!(own_maps(&userns::Mode::Single, &nomap)
            .unwrap_err()
            .to_string()
            .contains("nomap requires additional UIDs or GIDs defined in /etc/subuid"));
        assert!(own_maps(&userns::Mode::Root, &nomap)
            .unwrap_err()
            .to_string()
            .contains("only supported in rootless mode"));
        // with a range: the subordinate ids only, as Podman's `0 1 65536`
        let t = "0 1 65536\n".to_string();
        assert_eq!(own_maps(&mode, &nomap).unwrap(), Some((t.clone(), t)));
        // auto: the range create recorded
        let mut auto = spec(vec![(0, 1025, 500)]);
        auto.userns = state::UsernsMode::Auto;
        let t = "0 1025 500\n".to_string();
        assert_eq!(own_maps(&mode, &auto).unwrap(), Some((t.clone(), t)));
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
