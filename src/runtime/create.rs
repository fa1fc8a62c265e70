//! Create: what `rbox run` and `rbox create` were asked for, and the image (found in the
//! store, or pulled through the command layer's [`Puller`]) -> the container's storage and its
//! record. Runs in the invocation itself; `run` and `start` then hand the container to its
//! monitor (`monitor.rs`).

use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context as _, Result};
use rbox_storage::{Driver, ImageRecord, Store};

use super::{launch, monitor, netshare, open_store, probe, spec};
use crate::context::Context;
use crate::layout;
use crate::state::{self, ContainerRecord, State};

/// What `rbox run` and `rbox create` were asked for, as plain values (the command layer fills
/// this from its clap struct).
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// `--name`
    pub name: Option<String>,
    /// `--cidfile`: where the id goes
    pub cidfile: Option<std::path::PathBuf>,
    /// `-d`: start in the background and print the id
    pub detach: bool,
    /// `--rm`
    pub rm: bool,
    /// the image as named
    pub image: String,
    /// `--pull` as given: missing, always, never, newer
    pub pull: String,
    /// `--platform` as given
    pub platform: Option<String>,
    /// `--tls-verify`
    pub tls_verify: Option<bool>,
    /// `--authfile`: the credentials for a pull
    pub authfile: Option<std::path::PathBuf>,
    /// `--rootfs`: `image` is a host directory to use as the root
    pub rootfs: bool,
    /// `--image-file`: a squashfs image file to use as the root, mounted without unpacking
    /// (then `image` is unused)
    pub image_file: Option<std::path::PathBuf>,
    /// what decides the spec
    pub flags: spec::Flags,
    /// CDI devices, `--gpus`, `--nv`, and the OCI hooks directories
    pub devices: super::cdi::Devices,
    /// `--detach-keys` of an attached run, parsed (empty: none)
    pub detach_keys: Vec<u8>,
    /// `--sig-proxy`: an attached run passes the signals it gets on to the container
    pub sig_proxy: bool,
    /// `-a/--attach`: [stdout, stderr] an attached run does not show (still logged)
    pub hidden_streams: [bool; 2],
}

/// How the runtime gets an image it does not have: the command layer pulls it and renders the
/// progress as `rbox pull` does, so the runtime needs no display of its own.
pub trait Puller {
    /// Pull `image` into `store` with `opts`; the error carries its context.
    fn pull(
        &self,
        store: &Store,
        image: &str,
        opts: &rbox_registry::PullOptions,
    ) -> Result<ImageRecord>;
}

/// Find the image locally, or pull it according to `--pull` (missing, always, never, newer).
fn resolve_image(store: &Store, a: &RunOptions, puller: &dyn Puller) -> Result<ImageRecord> {
    let policy: rbox_registry::PullPolicy = a.pull.parse().map_err(anyhow::Error::msg)?;
    if policy == rbox_registry::PullPolicy::Missing {
        // the common case answers from the store alone, without touching the registry code
        match store.lookup_image(&a.image) {
            Ok(i) => return Ok(i),
            Err(rbox_storage::Error::ImageNotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let platform = match &a.platform {
        Some(p) => Some(rbox_registry::Platform::parse(p)?),
        None => None,
    };
    let opts = rbox_registry::PullOptions {
        platform,
        transport: rbox_registry::TransportOptions {
            tls_verify: a.tls_verify,
            authfile: a.authfile.clone(),
            ..Default::default()
        },
        policy,
        ..Default::default()
    };
    puller.pull(store, &a.image, &opts)
}

/// Which storage driver makes the root filesystem: `--storage-driver`, where overlay (the
/// default) falls back to the FUSE overlay when the probe finds that kernel overlay cannot
/// be mounted, and to copy when /dev/fuse cannot be opened either. An explicit
/// `fuse-overlay` without a usable /dev/fuse is an error that says what to change.
fn choose_driver(g: &Context, store: &Store) -> Result<Driver> {
    let wanted = match g.storage_driver() {
        Some(d) => d.parse::<Driver>()?,
        None => Driver::Overlay,
    };
    Ok(match wanted {
        Driver::Overlay if !probe::overlay_works(store) => fuse_or(Driver::Copy),
        Driver::FuseOverlay => {
            if let Err(why) = rbox_storage::mount::fuse::available() {
                bail!("use storage driver fuse-overlay: {why}");
            }
            Driver::FuseOverlay
        }
        d => d,
    })
}

/// `--mount type=image,source=IMAGE`: each image looked up (Podman's text when it is not
/// there: it is not pulled), recorded as the container's (`rmi` refuses it meanwhile, where
/// Podman 4.3 removes it and breaks the container), and its mount given the image's layer
/// directories, and an upper and work directory in the container's directory when `rw` (see
/// `spec::image_mount_layers`); the source stays the name given, as inspect shows it.
fn image_mounts(
    store: &Store,
    id: &str,
    dir: &Path,
    mounts: &mut [state::MountSpec],
) -> Result<()> {
    use super::spec::{IMAGE_LOWER, IMAGE_UPPER, IMAGE_WORK};
    for (i, m) in mounts
        .iter_mut()
        .enumerate()
        .filter(|(_, m)| m.kind == state::MountKind::Image)
    {
        // Podman's text ("NAME: image not known" is the store's error)
        let rec = store.lookup_image(&m.source).map_err(|e| {
            anyhow::anyhow!(
                "creating image volume {:?}:{:?}: {e}",
                m.source,
                m.destination
            )
        })?;
        let layers = store.mount_image(id, &rec.id)?;
        if layers.is_empty() {
            bail!(
                "creating image volume {:?}:{:?}: the image has no layers",
                m.source,
                m.destination
            );
        }
        let rw = m.options.iter().any(|o| o == "rw");
        m.options = layers
            .iter()
            .map(|l| format!("{IMAGE_LOWER}{}", l.display()))
            .collect();
        if rw {
            let d = dir.join("image-mounts").join(i.to_string());
            let (upper, work) = (d.join("upper"), d.join("work"));
            for p in [&upper, &work] {
                std::fs::create_dir_all(p).with_context(|| format!("create `{}`", p.display()))?;
            }
            m.options.push("rw".into());
            m.options.push(format!("{IMAGE_UPPER}{}", upper.display()));
            m.options.push(format!("{IMAGE_WORK}{}", work.display()));
        }
    }
    Ok(())
}

/// The FUSE overlay where /dev/fuse can be used, else `otherwise`.
fn fuse_or(otherwise: Driver) -> Driver {
    match rbox_storage::mount::fuse::available() {
        Ok(()) => Driver::FuseOverlay,
        Err(why) => {
            tracing::debug!("fuse-overlay not usable: {why}");
            otherwise
        }
    }
}

/// Kernel overlay copies a lower file up with its owner, and a file whose owner has no id in
/// this user namespace (an additional image store made by another user, or by root with real
/// owners) cannot be copied up: the first write into such a directory (even the
/// `/etc/hosts` mount point) fails with EACCES. The FUSE overlay copies up as this user, so
/// a container of such an image uses it (else copy), unless the driver was chosen otherwise.
fn driver_for_foreign_lowers(driver: Driver, image: &ImageRecord) -> Driver {
    let Some(store) = &image.read_only_store else {
        return driver;
    };
    let overflow = std::fs::read_to_string("/proc/sys/kernel/overflowuid")
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .unwrap_or(65534);
    if driver != Driver::Overlay || !owner_is(store, overflow) {
        return driver;
    }
    // The FUSE overlay shows the files with the owner it sees, the overflow id; where that id
    // has no mapping either (a single-id namespace) the kernel refuses every write under
    // them, so the root is a copy, owned by this user.
    if !id_mapped(overflow) {
        return Driver::Copy;
    }
    fuse_or(Driver::Copy)
}

/// Whether a single-id map gets the FUSE overlay by itself for an image with folded owners
/// ([`driver_for_folded_owners`]). Nearly every image has files of other owners (busybox's
/// /home/tester, Debian's shadow group), so this moves nearly every container of a user
/// without subordinate ids onto the FUSE overlay: its server runs outside the container
/// (PID 1 is the command, the process list is the container's own), `rbox exec` sees the
/// owners too; `rbox mount` refuses such a container and files are slower than on kernel
/// overlay. `--storage-driver=overlay` (or storage.conf) keeps kernel overlay.
const FUSE_FOR_FOLDED_OWNERS: bool = true;

/// Under a single-id map the unpacker keeps an image's other owners in the FUSE overlay's
/// override xattr, which only that driver shows (with its owner supervisor, see
/// rbox_storage::mount::fuse::supervisor): a container of such an image gets it where
/// kernel overlay would be the default, so `ls -l` shows the image's owners and chown works.
fn driver_for_folded_owners(driver: Driver, store: &Store, image: &ImageRecord) -> Driver {
    if !FUSE_FOR_FOLDED_OWNERS
        || driver != Driver::Overlay
        || !rbox_storage::mount::fuse::supervisor::single_id()
        || !image
            .layers
            .iter()
            .any(|l| store.layer_has_foreign_owners(&l.diff_id))
    {
        return driver;
    }
    fuse_or(driver)
}

/// `--security-opt fakeroot` (and `rbox build`'s RUN steps) under a single-id map: on the
/// FUSE overlay the owner supervisor records a chown as the owner the file shows, a commit
/// or a build layer keeps it (on kernel overlay it can only be faked, and the file keeps the
/// caller's id), so such a container gets that driver where kernel overlay would be the
/// default.
fn driver_for_fakeroot(driver: Driver, spec: &state::Spec) -> Driver {
    if driver != Driver::Overlay
        || !cfg!(target_arch = "x86_64")
        || !rbox_storage::mount::fuse::supervisor::single_id()
        || !spec.opts.fakeroot.applies(true)
    {
        return driver;
    }
    fuse_or(driver)
}

/// Whether keep-id's `-u` names an id the container has: without a subordinate range
/// (single-id mode) the caller's own uid and gid are the only ids inside, so `-u 0` or
/// `-u root` could never be set (it failed at start with `set gid 0: EINVAL`).
fn keep_id_user_exists(spec: &state::Spec) -> bool {
    if spec.userns != state::UsernsMode::KeepId
        || spec.user.is_empty()
        || super::userns::current_mode() != super::userns::Mode::Single
    {
        return true;
    }
    let (huid, hgid) = super::userns::host_ids();
    let uid = spec.opts.keep_id_uid.unwrap_or(huid);
    let gid = spec.opts.keep_id_gid.unwrap_or(hgid);
    let (u, g) = match spec.user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec.user.as_str(), None),
    };
    let user_ok = match u.parse::<u32>() {
        Ok(n) => n == uid,
        Err(_) => super::userns::user_name(huid).as_deref() == Some(u),
    };
    user_ok && g.is_none_or(|g| g.parse::<u32>().map_or(true, |n| n == gid))
}

/// `--userns=keep-id` (and `nomap`, whose namespace does not map the layers' owner at all)
/// with a subordinate range runs in a namespace below rbox's where the
/// image's root (rbox's id 0) is the caller's uid: kernel overlay would show `/etc` as the
/// caller's. The FUSE overlay shows the image's owners there with no chowned copy (see
/// launch's `shifted_for_keep_id`), so it is the default for such containers where
/// /dev/fuse opens.
fn driver_for_keep_id(driver: Driver, spec: &state::Spec) -> Driver {
    if driver != Driver::Overlay
        || !matches!(
            spec.userns,
            state::UsernsMode::KeepId | state::UsernsMode::Nomap | state::UsernsMode::Auto
        )
        || !(matches!(
            super::userns::current_mode(),
            super::userns::Mode::SubIds { .. }
        ) || spec.userns == state::UsernsMode::Auto)
    {
        return driver;
    }
    fuse_or(driver)
}

/// `--userns=auto`: the range the container gets (see [`super::userns_auto`]), recorded as
/// its maps. Root without a `containers` range and a user without a subordinate range get
/// no maps here, and Podman's refusals from launch's `own_maps`.
fn allocate_auto(
    g: &Context,
    store: &Store,
    image: &Source,
    user: &str,
    id: &str,
    spec: &mut state::Spec,
) -> Result<()> {
    use super::userns_auto as auto;
    let Some(pool) = auto::pool(&super::userns::current_mode(), &auto::root_user()) else {
        return Ok(());
    };
    let size = match spec.opts.auto_size {
        Some(n) => n,
        None => {
            let (min, max) = auto::size_limits();
            let needs = match image {
                Source::Image(i) => {
                    let lowers: Vec<_> = i
                        .layers
                        .iter()
                        .map(|l| store.layer_path(&l.diff_id))
                        .collect();
                    // as recorded at unpack; a walk for layers without the record
                    let owner = i
                        .layers
                        .iter()
                        .zip(&lowers)
                        .filter_map(|(l, p)| {
                            store
                                .layer_highest_owner(&l.diff_id)
                                .or_else(|| auto::highest_owner(p))
                        })
                        .max();
                    auto::image_needs(&lowers, user, owner)
                }
                // not the host's owners (`--rootfs /` would walk the whole host): its passwd
                Source::Host(d) => auto::image_needs(std::slice::from_ref(d), user, None),
                Source::File { .. } => auto::Needs::default(),
            };
            needs.size(min, max)
        }
    };
    let (u, g) = auto::allocate(g, pool, size, id)?;
    spec.opts.uid_map = vec![u];
    spec.opts.gid_map = vec![g];
    Ok(())
}

/// Whether the owner of `dir`'s `layers/` is `uid` as seen here.
fn owner_is(dir: &Path, uid: u32) -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(dir.join("layers")).is_ok_and(|m| m.uid() == uid)
}

/// Whether `uid` is mapped in this process's user namespace (`/proc/self/uid_map`).
fn id_mapped(uid: u32) -> bool {
    let (map, _) = rbox_storage::own_id_maps();
    map.lines().any(|l| {
        let f: Vec<u64> = l
            .split_whitespace()
            .filter_map(|v| v.parse().ok())
            .collect();
        f.len() == 3 && (f[0]..f[0] + f[2]).contains(&u64::from(uid))
    })
}

/// `rbox run` (start = true) and `rbox create` (start = false).
pub fn run(g: &Context, a: RunOptions, puller: &dyn Puller, start_now: bool) -> Result<ExitCode> {
    // taken first, as Podman does: a second run with the same file creates nothing
    let mut cidfile = match &a.cidfile {
        Some(p) => Some((p.as_path(), open_cidfile(p)?)),
        None => None,
    };
    let res = create_and_start(g, &a, puller, start_now, &mut cidfile);
    if let (Err(_), Some((p, _))) = (&res, &cidfile) {
        let _ = std::fs::remove_file(p);
    }
    res
}

/// The `--cidfile` file, created here (never one that exists: another container may be
/// using it).
fn open_cidfile(p: &Path) -> Result<std::fs::File> {
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(p)
    {
        Ok(f) => Ok(f),
        // Podman's text
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => bail!(
            "container id file exists. Ensure another container is not using it or delete {}",
            p.display()
        ),
        Err(e) => bail!("create container id file `{}`: {e}", p.display()),
    }
}

fn create_and_start(
    g: &Context,
    a: &RunOptions,
    puller: &dyn Puller,
    start_now: bool,
    cidfile: &mut Option<(&Path, std::fs::File)>,
) -> Result<ExitCode> {
    let store = open_store(g)?;
    let root = g.storage_root()?;
    // `--rootfs DIR`: the host directory instead of an image (no image config: the command
    // is the user's)
    let (image, process) = if let Some(file) = &a.image_file {
        image_file_source(file)?
    } else if a.rootfs {
        let dir = std::fs::canonicalize(&a.image)
            .ok()
            .filter(|d| d.is_dir())
            .ok_or_else(|| anyhow::anyhow!("--rootfs `{}`: not a directory", a.image))?;
        (Source::Host(dir), spec::ImageProcess::default())
    } else {
        let image = resolve_image(&store, a, puller)?;
        let (cfg, raw) = store
            .image_config_and_raw(&image)
            .context("read image config")?;
        let mut process = spec::ImageProcess::from_oci(&cfg);
        process.healthcheck = spec::ImageHealthcheck::from_config(&raw);
        (Source::Image(image), process)
    };
    let id = state::new_id()?;
    let mut spec = spec::build(&process, &a.flags, &id, Some(&layout::seccomp_cache(&root)))?;
    // Made beside the checks and the container's files, and joined by its init (see prenet);
    // a fork on the way (the driver's probe, a dependency's start) joins the thread first.
    if start_now && !a.detach && net_ahead(&spec, a.detach_keys.is_empty(), a.sig_proxy) {
        super::prenet::begin();
    }
    spec.opts.requires = required(g, &a.flags.extra.requires)?;
    // (relative to where create ran, as the file was written)
    spec.opts.cidfile = a.cidfile.as_ref().map(|p| {
        std::env::current_dir()
            .unwrap_or_else(|_| "/".into())
            .join(p)
    });
    super::cdi::apply(&mut spec, &a.devices)?;
    super::ocihooks::apply(&mut spec, &a.devices.hooks_dirs)?;
    super::secrets::resolve(&store, &mut spec)?;
    let can_apply = super::cgroup::host_root()
        || super::cgroup::delegated(&super::cgroup::needed(&spec.opts.resources)).is_some();
    if can_apply && !spec.opts.cgroups_disabled {
        discard_missing_weights(&mut spec.opts.resources);
    }
    let r = &spec.opts.resources;
    if !r.is_default() && !can_apply {
        tracing::warn!("{}", super::cgroup::rootless_warning());
    } else if !r.is_default() && spec.opts.cgroups_disabled {
        tracing::warn!("resource limits are not applied with --cgroups=disabled");
    } else if (r.cpu_rt_period.is_some() || r.cpu_rt_runtime.is_some())
        && super::cgroup::unified_only()
    {
        tracing::warn!("--cpu-rt-period and --cpu-rt-runtime are not applied: cgroup v2 has no real-time CPU limits");
    } else if !r.cgroup_conf.is_empty() && !super::cgroup::unified_only() {
        tracing::warn!("--cgroup-conf is not applied: it names cgroup v2 files, and this host's controllers are cgroup v1");
    }
    if a.rm && spec.restart.restarts() {
        bail!(
            "the --rm option conflicts with --restart, when the restartPolicy is not \"\" and \"no\""
        );
    }
    // The container joined must exist now (as Podman checks; it is started with this one when
    // it does not run); `container:` is recorded by id, and its namespace looked up again at
    // each start. A namespace path must be there now.
    if start_now {
        netshare::start_required(g, &store, &spec.opts.requires)?;
    }
    let net = match spec.network {
        state::NetworkMode::Container => {
            let target = netshare::target(g, &spec.network_options)?;
            spec.network_options = target.id.clone();
            if start_now {
                netshare::ensure_running(g, &store, target.clone())?;
            }
            // a created one's namespace is looked up when this one starts
            (start_now || state::is_running(&target))
                .then(|| netshare::of_container(g, &target.id))
                .transpose()?
        }
        state::NetworkMode::Ns => Some(netshare::open(Path::new(&spec.network_options))?),
        _ => None,
    };
    let mut driver = choose_driver(g, &store)?;
    if let Source::Image(i) = &image {
        driver = driver_for_foreign_lowers(driver, i);
        if g.storage_driver().is_none() {
            driver = driver_for_folded_owners(driver, &store, i);
            driver = driver_for_fakeroot(driver, &spec);
            driver = driver_for_keep_id(driver, &spec);
        }
    }
    if spec.userns == state::UsernsMode::Auto {
        allocate_auto(g, &store, &image, &process.user, &id, &mut spec)?;
    }
    if !keep_id_user_exists(&spec) {
        // Podman's words (Podman refuses keep-id for such a user whatever the user)
        bail!("keep-id requires additional UIDs or GIDs defined in /etc/subuid and /etc/subgid to function correctly");
    }
    // (root and a user without a range get Podman's refusals from the spec's maps)
    if matches!(
        spec.userns,
        state::UsernsMode::Nomap | state::UsernsMode::Auto
    ) && driver != Driver::FuseOverlay
        && (matches!(
            super::userns::current_mode(),
            super::userns::Mode::SubIds { .. }
        ) || !spec.opts.uid_map.is_empty())
    {
        bail!("--userns={} needs the fuse-overlay storage driver (--storage-driver=fuse-overlay): the container's root cannot reach the {driver} driver's files", spec.userns);
    }
    if matches!(image, Source::File { .. }) && driver == Driver::Copy {
        bail!("--image-file needs the overlay or fuse-overlay storage driver: the file is never unpacked");
    }
    tracing::debug!("storage driver: {driver}");
    let lowers: Vec<std::path::PathBuf> = match &image {
        Source::Image(i) => i
            .layers
            .iter()
            .map(|l| store.layer_path(&l.diff_id))
            .collect(),
        Source::Host(d) => vec![d.clone()],
        Source::File { .. } => Vec::new(),
    };
    let new_volumes =
        super::volumes::prepare(g, &store, &mut spec, &a.flags.volumes_from, &lowers)?;
    let name = match &a.name {
        Some(n) => state::reserve_name(&root, n, &id).map(|()| n.clone()),
        None => state::reserve_generated_name(&root, &id),
    }
    .inspect_err(|_| super::volumes::remove_created(&store, &new_volumes))?;
    let net_path = net.as_ref().map(|n| n.path.as_path());
    let created = create(
        &store, &root, a, &image, &id, &name, driver, spec, start_now, net_path,
    )
    .and_then(|rec| {
        // the full id without a newline, as Podman writes it
        if let Some((p, mut f)) = cidfile.as_ref().map(|(p, f)| (p, f)) {
            use std::io::Write;
            f.write_all(rec.id.as_bytes())
                .with_context(|| format!("write container id file `{}`", p.display()))?;
        }
        Ok(rec)
    });
    let rec = match created {
        Ok(r) => r,
        Err(e) => {
            let _ = store.remove_container_dir(&id);
            state::release_name(&root, &name, &id);
            super::volumes::remove_created(&store, &new_volumes);
            return Err(e);
        }
    };
    // from here on the container exists: its id file stays
    *cidfile = None;
    crate::events::container(g, &rec, "create");
    if !start_now {
        println!("{}", rec.id);
        return Ok(ExitCode::SUCCESS);
    }
    if a.detach {
        return monitor::detached(g, &store, rec, None);
    }
    let o = super::front::Options {
        keys: a.detach_keys.clone(),
        sig_proxy: a.sig_proxy,
        hidden: a.hidden_streams,
    };
    run_attached(g, &store, rec, &o)
}

/// Start `rec` and stay attached: in this process, or, when the caller may detach (`-i`
/// with detach keys) or must not pass signals on, through a detached monitor (`front`).
/// Piped stdin too: Podman detaches there when reads bring the keys one by one (a program
/// typing into the pipe), and ends the container's stdin. Not with `--log-driver=passthrough`
/// or `--preserve-fds`, which give the container rbox's own descriptors.
fn run_attached(
    g: &Context,
    store: &Store,
    rec: ContainerRecord,
    o: &super::front::Options,
) -> Result<ExitCode> {
    if !through_monitor(&rec.spec, o.keys.is_empty(), o.sig_proxy) {
        return monitor::attached(g, store, rec, o.hidden);
    }
    let sock = monitor::start_attached_client(g, store, rec.clone())?;
    super::front::run(g, &rec, sock, o.clone())
}

/// Whether an attached start of `s` goes through a detached monitor (see [`run_attached`]).
fn through_monitor(s: &state::Spec, no_keys: bool, sig_proxy: bool) -> bool {
    ((s.interactive && !no_keys) || !sig_proxy)
        && s.log.driver() != "passthrough"
        && s.opts.preserve_fds == 0
}

/// Whether the init of an attached start of `s` in this process can join a network
/// namespace made ahead ([`super::prenet`]): one of its own with no helper (`--network=none`),
/// cloned in rbox's user namespace (no nested one), and no monitor forked on the way (a
/// fork must not meet the thread that makes it). The monitor's start checks again.
fn net_ahead(s: &state::Spec, no_keys: bool, sig_proxy: bool) -> bool {
    s.network == state::NetworkMode::None
        && s.userns == state::UsernsMode::Default
        && s.opts.uid_map.is_empty()
        && s.opts.gid_map.is_empty()
        && !through_monitor(s, no_keys, sig_proxy)
}

/// Block I/O weights the host's v1 blkio hierarchy has no file for are dropped with Podman's
/// warnings (its words), the container's other limits kept: written, they would fail the
/// whole placement.
fn discard_missing_weights(r: &mut crate::state::Resources) {
    use crate::state::DeviceLimitKind;
    let device_weights = r
        .device_limits
        .iter()
        .any(|d| d.kind == DeviceLimitKind::Weight);
    // the host's hierarchies are read only for a create that asks for a weight
    if r.blkio_weight.is_none() && !device_weights {
        return;
    }
    let Some((weight, weight_device)) = super::cgroup::v1_blkio_weights() else {
        return;
    };
    if r.blkio_weight.is_some() && !weight {
        tracing::warn!(
            "Your kernel does not support Block I/O weight or the cgroup is not mounted. Weight discarded."
        );
        r.blkio_weight = None;
    }
    if device_weights && !weight_device {
        tracing::warn!("Your kernel does not support Block I/O weight_device or the cgroup is not mounted. Weight-device discarded.");
        r.device_limits
            .retain(|d| d.kind != DeviceLimitKind::Weight);
    }
}

/// The resource limits, where a cgroup v2 subtree is delegated (a warning said so at create
/// otherwise); a failure is a warning, the container runs without them.
pub(super) fn place_in_cgroup(rec: &ContainerRecord, pid: i32) {
    let r = &rec.spec.opts.resources;
    if r.is_default() || rec.spec.opts.cgroups_disabled {
        return;
    }
    if super::cgroup::host_root() {
        let path = format!("/rbox/{}", rec.id);
        if let Err(e) = super::cgroup::Placement::create(&path, &super::cgroup::to_oci(r), pid) {
            tracing::warn!("apply resource limits: {e:#}: the container runs without them");
        }
        return;
    }
    if let Some(dir) = super::cgroup::delegated(&super::cgroup::needed(r)) {
        if let Err(e) = super::cgroup::apply(&dir, &rec.id, r, pid) {
            tracing::warn!("apply resource limits: {e:#}");
        }
    }
}

/// Remove the cgroup [`place_in_cgroup`] made, once the container's processes are gone.
pub fn remove_cgroup(rec: &ContainerRecord) {
    if rec.spec.opts.resources.is_default() || rec.spec.opts.cgroups_disabled {
        return;
    }
    if super::cgroup::host_root() {
        super::cgroup::Placement::of(&format!("/rbox/{}", rec.id)).remove();
    } else if let Some(dir) = super::cgroup::delegated(&[]) {
        super::cgroup::Placement {
            dirs: vec![dir.join(format!("rbox-{}", rec.id))],
            made: Vec::new(),
        }
        .remove();
    }
}

/// `--pidfile`: the init's pid (as the host sees it), and `--conmon-pidfile`: the pid of the
/// monitor calling this, the init's parent (conmon's role); without a newline as Podman
/// writes them, at each start. A failure is a warning, the container runs on. Returns `pid`.
pub(super) fn write_pidfile(rec: &ContainerRecord, pid: nix::unistd::Pid) -> nix::unistd::Pid {
    let files = [
        (&rec.spec.opts.pidfile, pid.as_raw() as u32),
        (&rec.spec.opts.conmon_pidfile, std::process::id()),
    ];
    for (file, pid) in files {
        if let Some(p) = file {
            if let Err(e) = std::fs::write(p, pid.to_string()) {
                tracing::warn!("write pid file `{}`: {e}", p.display());
            }
        }
    }
    pid
}

/// `--rmi`: remove the image the container was created from, once it exited (see
/// [`remove_image_of`]). Failures are reported, never the run's: its exit code stays the
/// container's.
pub(super) fn remove_image_after(store: &Store, rec: &ContainerRecord) {
    if !rec.spec.opts.rmi {
        return;
    }
    if let Err(e) = remove_image_of(store, rec) {
        tracing::error!("remove image {}: {e:#}", rec.image);
    }
}

/// Remove the image `rec` was created from (`run --rmi`, `container cleanup --rmi`): the name
/// it was run by only, when the image has other names (as `rbox rmi NAME` untags); refused,
/// in Podman's words, while a container uses it. Nothing for a root that is no store image
/// (`--rootfs`, `--image-file`).
pub fn remove_image_of(store: &Store, rec: &ContainerRecord) -> Result<()> {
    if rec.rootfs.is_some() || rec.image_file.is_some() {
        return Ok(());
    }
    let image = store.lookup_image(&rec.image_id)?;
    if image.names.len() > 1 && image.names.contains(&rec.image_name) {
        store.untag_image(&rec.image_name)?;
        return Ok(());
    }
    if let Some(c) = store.containers_using(&image.id).first() {
        bail!(
            "image used by {c}: image is in use by a container: consider listing external \
             containers and force-removing image"
        );
    }
    store.remove_image(&image.id, false)?;
    Ok(())
}

/// What a container's root is made of.
enum Source {
    Image(ImageRecord),
    /// `--rootfs`: a host directory (absolute)
    Host(std::path::PathBuf),
    /// `--image-file`: a squashfs image (absolute), and the id of the image config it carries
    /// (empty for a squashfs without one)
    File {
        path: std::path::PathBuf,
        config_id: String,
    },
}

/// `--image-file FILE`: the file (absolute) and the image defaults it carries. A missing,
/// unreadable or non-squashfs file, or a host without squashfuse or a usable /dev/fuse, is
/// refused here, in one line, before anything is created.
fn image_file_source(file: &Path) -> Result<(Source, spec::ImageProcess)> {
    use rbox_storage::mount::{fuse, squash};
    let shown = file.display();
    squash::check_file(file).map_err(|why| anyhow::anyhow!("--image-file `{shown}`: {why}"))?;
    let path = std::fs::canonicalize(file)
        .with_context(|| format!("--image-file `{shown}`: resolve the path"))?;
    squash::squashfuse()?;
    fuse::available().map_err(|why| anyhow::anyhow!("--image-file `{shown}`: {why}"))?;
    let raw = squash::read_config(&path)?;
    let Some(raw) = raw else {
        let source = Source::File {
            path,
            config_id: String::new(),
        };
        return Ok((source, spec::ImageProcess::default()));
    };
    let cfg = oci_spec::image::ImageConfiguration::from_reader(&raw[..]).map_err(|e| {
        anyhow::anyhow!(
            "--image-file `{shown}`: read `/{}`: {e}",
            squash::CONFIG_PATH
        )
    })?;
    let mut process = spec::ImageProcess::from_oci(&cfg);
    process.healthcheck = spec::ImageHealthcheck::from_config(&raw);
    let config_id = rbox_storage::Digest::of(&raw).to_string();
    Ok((Source::File { path, config_id }, process))
}

#[allow(clippy::too_many_arguments)]
fn create(
    store: &Store,
    root: &Path,
    a: &RunOptions,
    image: &Source,
    id: &str,
    name: &str,
    driver: Driver,
    mut spec: state::Spec,
    start_now: bool,
    net_path: Option<&Path>,
) -> Result<ContainerRecord> {
    let cdir = match image {
        Source::Image(i) => store.create_container_dir(id, &i.id),
        Source::Host(d) => {
            if driver == Driver::Copy {
                bail!("--rootfs needs the overlay storage driver: the directory is never copied or written");
            }
            store.create_host_container_dir(id, d)
        }
        Source::File { path, .. } => store.create_file_container_dir(id, path),
    }
    .context("create container storage")?;
    store
        .prepare_rootfs(driver, &cdir)
        .context("copy image layers")?;
    image_mounts(store, id, &cdir.dir, &mut spec.mounts)?;
    super::secrets::copy_in(store, &layout::container_dir(root, id), &spec)?;
    let (image_name, image_id, image_digest, rootfs) = match image {
        Source::Image(i) => (
            // As Podman: the name the user typed, resolved; by id, the image's first name.
            rbox_storage::meant_name(&a.image, &i.names)
                .or_else(|| i.names.first().cloned())
                .unwrap_or_default(),
            i.id.to_string(),
            i.digest.to_string(),
            None,
        ),
        Source::Host(d) => (String::new(), String::new(), String::new(), Some(d.clone())),
        // `ps` and `inspect` name the file as the image
        Source::File { path, config_id } => (
            path.display().to_string(),
            config_id.clone(),
            String::new(),
            None,
        ),
    };
    let image_file = match image {
        Source::File { path, .. } => Some(path.clone()),
        _ => None,
    };
    let rec = ContainerRecord {
        id: id.to_string(),
        name: name.to_string(),
        image: a.image.clone(),
        image_name,
        image_id,
        image_digest,
        created: state::now_rfc3339(),
        driver,
        auto_remove: a.rm,
        spec,
        state: State::created(),
        rootfs,
        image_file,
        // lossy: an argument that is not UTF-8 reaches the command exactly, and is only shown
        create_command: std::env::args_os()
            .map(|a| a.to_string_lossy().into_owned())
            .collect(),
    };
    // the OCI runtime spec the runtime starts the container from (saved once the command
    // runs when it starts now), then the record
    if start_now {
        launch::stage_config(root, &rec, net_path)?;
    } else if net_path.is_some() || rec.spec.network != state::NetworkMode::Container {
        launch::write_config(root, &rec, true, net_path)?;
    }
    // (a joiner of a container that does not run: its spec is made at its first start, once
    // the namespace it joins is there)
    // An attached run records the container once, as running (or, failing that, as
    // exited): every inode a start creates costs on a busy ext4 store. A create in
    // progress is a directory without a record, and its name is reserved meanwhile.
    if !start_now || a.detach {
        state::save(root, &rec)?;
    }
    Ok(rec)
}

/// `--requires`: the ids of the containers named, each once, in Podman's words for an unknown
/// one.
fn required(g: &Context, names: &[String]) -> Result<Vec<String>> {
    let mut ids: Vec<String> = Vec::new();
    for n in names.iter().filter(|n| !n.is_empty()) {
        let Ok(rec) = state::lookup(g, n) else {
            bail!("{n:?} is not a valid container, cannot be used as a dependency: no container with name or ID {n:?} found: no such container");
        };
        if !ids.contains(&rec.id) {
            ids.push(rec.id);
        }
    }
    Ok(ids)
}

/// `rbox start`: start a created (or exited) container, attached or detached.
pub fn start(g: &Context, name_or_id: &str, attach: bool) -> Result<ExitCode> {
    let o = super::front::Options {
        keys: super::front::parse_keys(super::front::DEFAULT_KEYS)?,
        sig_proxy: true,
        hidden: [false; 2],
    };
    start_with(g, name_or_id, attach.then_some(&o))
}

/// [`start`]; attached (`-a`) when `attach` says how.
pub fn start_with(
    g: &Context,
    name_or_id: &str,
    attach: Option<&super::front::Options>,
) -> Result<ExitCode> {
    let store = open_store(g)?;
    let rec = state::lookup(g, name_or_id)?;
    if state::is_running(&rec) {
        if attach.is_some() {
            bail!("container {} is already running", rec.name);
        }
        println!("{name_or_id}");
        return Ok(ExitCode::SUCCESS);
    }
    let rec = users_start(g, rec)?;
    netshare::start_owner(g, &store, &rec)?;
    if let Some(o) = attach {
        run_attached(g, &store, rec, o)
    } else {
        // podman prints the container as the user named it
        monitor::detached(g, &store, rec, Some(name_or_id))
    }
}

/// Container `rec`, not running, made ready for a start the user asked for (not the restart
/// policy's): a monitor waiting to restart it is ended, and its restarts count from 0.
pub(super) fn users_start(g: &Context, mut rec: ContainerRecord) -> Result<ContainerRecord> {
    if super::control::end_restart_wait(g, &rec) {
        rec = state::load(g, &rec.id)?;
    }
    rec.state.restart_count = 0;
    Ok(rec)
}

/// `rbox restart`: stop the container if it runs (its stop signal, SIGKILL after `timeout`),
/// then start it detached. A detached container's monitor does that itself, in the same
/// network namespace; an attached one (`rbox run` in a terminal) ends, and a new detached
/// monitor binds its published ports again once the old one let them go.
pub fn restart(g: &Context, rec: &ContainerRecord, timeout: std::time::Duration) -> Result<()> {
    // Podman's refusal, before anything is stopped: a restart starts no dependency
    let stopped: Vec<&str> = rec
        .spec
        .opts
        .requires
        .iter()
        .filter(|id| !state::load(g, id).is_ok_and(|d| state::is_running(&d)))
        .map(String::as_str)
        .collect();
    if !stopped.is_empty() {
        bail!(
            "some dependencies of container {} are not started: {}: container state improper",
            rec.id,
            stopped.join(",")
        );
    }
    let store = open_store(g)?;
    if state::is_running(rec) && state::has_detached_monitor(g, rec) {
        return super::control::restart_in_place(g, rec, timeout);
    }
    if state::is_running(rec) {
        super::stop_container(g, rec, timeout)?;
    } else {
        super::control::end_restart_wait(g, rec);
    }
    // the record as the stop left it (exited, or removed with --rm)
    let rec = state::load(g, &rec.id)
        .with_context(|| format!("container {} is gone after its stop", rec.name))?;
    monitor::start_detached(g, &store, rec)
}
