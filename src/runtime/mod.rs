//! The fork/exec flow of `rbox run`, `create` and `start`: enter the user namespace, resolve
//! (or pull) the image, decide the spec, create the container's storage and record, clone the
//! container and wait for it. One file per concern:
//! `userns` (id maps), `spec` (Docker's rules), `mounts` (the mount plan), `probe` (overlay),
//! `container` (the cloned init), `process` (user, caps, exec), `terminal` (the pty, for run and
//! exec), `attach` (signals, terminal relay), `caps`, and `sys` (the only unsafe code).
//!
//! The command layer (`cmd/`) owns the command line: it hands down a [`Context`] (the global
//! options), plain [`RunOptions`], and a [`Puller`] that pulls a missing image with its own
//! progress display. Nothing here imports `cli` or `cmd` (`.ci/run` checks).

pub mod attach;
pub mod caps;
pub mod container;
pub mod exec;
pub mod mounts;
pub mod oci;
pub mod probe;
pub mod process;
pub mod seccomp;
pub mod spec;
pub mod sys;
pub mod terminal;
pub mod userns;

use std::fs;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context as _, Result};
use rbox_storage::{Driver, ImageRecord, Store};

use crate::context::Context;
use crate::exit;
use crate::layout;
use crate::state::{self, ContainerRecord, State, Status};

/// Open the store, entering the user namespace first.
pub fn open_store(g: &Context) -> Result<Store> {
    // The runtime directory is decided (and checked) before anything is created or started.
    g.runtime_dir()?;
    let ids = userns::enter(g)?;
    let root = g.storage_root()?;
    let mut store =
        Store::open(&root, ids).with_context(|| format!("open storage at `{}`", root.display()))?;
    store.set_max_layer_size(max_layer_size()?);
    // What unpacking skipped (device nodes, unsupported entries), shown as it happens.
    store.set_warning_sink(std::sync::Arc::new(|msg: &str| tracing::warn!("{msg}")));
    Ok(store)
}

/// The layer size limit from `RBOX_MAX_LAYER_SIZE` (`64G`, `0` for none), else the store's
/// default.
fn max_layer_size() -> Result<Option<u64>> {
    let Some(v) = std::env::var_os("RBOX_MAX_LAYER_SIZE") else {
        return Ok(Some(rbox_storage::DEFAULT_MAX_LAYER_SIZE));
    };
    match v.to_str().and_then(rbox_storage::parse_size) {
        Some(0) => Ok(None),
        Some(n) => Ok(Some(n)),
        None => anyhow::bail!(
            "invalid RBOX_MAX_LAYER_SIZE `{}`: expected a size such as 64G or 512M, or 0 for no limit",
            v.to_string_lossy()
        ),
    }
}

/// What `rbox run` and `rbox create` were asked for, as plain values (the command layer fills
/// this from its clap struct).
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// `--name`
    pub name: Option<String>,
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
    /// what decides the spec
    pub flags: spec::Flags,
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
            ..Default::default()
        },
        policy,
        ..Default::default()
    };
    puller.pull(store, &a.image, &opts)
}

/// Which storage driver makes the root filesystem: `--storage-driver`, where overlay (the
/// default) falls back to copy when the probe finds that it cannot be mounted.
fn choose_driver(g: &Context, store: &Store) -> Result<Driver> {
    let wanted = match g.storage_driver() {
        Some(d) => d.parse::<Driver>()?,
        None => Driver::Overlay,
    };
    Ok(match wanted {
        Driver::Overlay if !probe::overlay_works(store) => Driver::Copy,
        d => d,
    })
}

/// `rbox run` (start = true) and `rbox create` (start = false).
pub fn run(g: &Context, a: RunOptions, puller: &dyn Puller, start_now: bool) -> Result<ExitCode> {
    let store = open_store(g)?;
    let root = g.storage_root()?;
    let image = resolve_image(&store, &a, puller)?;
    let cfg = store.image_config(&image).context("read image config")?;
    let id = state::new_id()?;
    let spec = spec::build(
        &spec::ImageProcess::from_oci(&cfg),
        &a.flags,
        &id,
        Some(&layout::seccomp_cache(&root)),
    )?;
    let driver = choose_driver(g, &store)?;
    tracing::debug!("storage driver: {driver}");
    let name = match &a.name {
        Some(n) => {
            state::reserve_name(&root, n, &id)?;
            n.clone()
        }
        None => state::reserve_generated_name(&root, &id)?,
    };
    let rec = match create(&store, &root, &a, &image, &id, &name, driver, spec) {
        Ok(r) => r,
        Err(e) => {
            let _ = store.remove_container_dir(&id);
            state::release_name(&root, &name, &id);
            return Err(e);
        }
    };
    if !start_now {
        println!("{}", rec.id);
        return Ok(ExitCode::SUCCESS);
    }
    if a.detach {
        return start_detached(g, &store, rec, None);
    }
    start_attached(g, &store, rec)
}

#[allow(clippy::too_many_arguments)]
fn create(
    store: &Store,
    root: &Path,
    a: &RunOptions,
    image: &ImageRecord,
    id: &str,
    name: &str,
    driver: Driver,
    spec: state::Spec,
) -> Result<ContainerRecord> {
    let cdir = store
        .create_container_dir(id, &image.id)
        .context("create container storage")?;
    store
        .prepare_rootfs(driver, &cdir)
        .context("copy image layers")?;
    let rec = ContainerRecord {
        id: id.to_string(),
        name: name.to_string(),
        image: a.image.clone(),
        image_name: image.names.first().cloned().unwrap_or_default(),
        image_id: image.id.to_string(),
        created: state::now_rfc3339(),
        driver,
        auto_remove: a.rm,
        spec,
        state: State {
            status: Status::Created,
            pid: 0,
            exit_code: None,
            started_at: String::new(),
            finished_at: String::new(),
            error: String::new(),
            live_dir: String::new(),
        },
    };
    state::save(root, &rec)?;
    Ok(rec)
}

/// Write /etc/hosts, /etc/hostname and /etc/resolv.conf for the container.
fn write_etc(dir: &Path, rec: &ContainerRecord) -> Result<mounts::EtcFiles> {
    let host = &rec.spec.hostname;
    let [hosts, hostname, resolv] = layout::etc_files(dir);
    let files = mounts::EtcFiles {
        hosts,
        hostname,
        resolv,
    };
    let hosts = format!(
        "127.0.0.1\tlocalhost localhost.localdomain\n::1\tlocalhost localhost.localdomain\n127.0.1.1\t{host} {}\n",
        rec.name
    );
    fs::write(&files.hosts, hosts).context("write hosts")?;
    fs::write(&files.hostname, format!("{host}\n")).context("write hostname")?;
    let host_resolv = fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let resolv: String = if rec.spec.network == state::NetworkMode::Host {
        host_resolv
    } else {
        // loopback resolvers of the host are unreachable from another network namespace
        host_resolv
            .lines()
            .filter(|l| {
                !(l.trim_start().starts_with("nameserver")
                    && (l.contains(" 127.") || l.contains(" ::1")))
            })
            .map(|l| format!("{l}\n"))
            .collect()
    };
    fs::write(&files.resolv, resolv).context("write resolv.conf")?;
    Ok(files)
}

fn launch(
    store: &Store,
    rec: &ContainerRecord,
    stdio: Option<[i32; 3]>,
) -> Result<container::Launch> {
    let dir = store.container_dir(&rec.id)?;
    store
        .lookup_image(&rec.image_id)
        .with_context(|| format!("image {} of container {} is gone", &rec.image_id, rec.name))?;
    let rootfs = store
        .rootfs(rec.driver, &dir, rec.auto_remove)
        .context("create empty lower layer")?;
    let etc = write_etc(&dir.dir, rec)?;
    let mode = userns::current_mode();
    let single_id = mode == userns::Mode::Single;
    let own_net = rec.spec.network != state::NetworkMode::Host;
    let ops = mounts::plan(
        rootfs,
        &rec.spec,
        &etc,
        mounts::Env {
            own_net,
            tty_gid: !single_id,
        },
    );
    // Every container assembles its root on this one directory, each in its own mount
    // namespace. A per-container mount point would have to be removed after exit, and
    // removing a directory that is still a mount point in a dying namespace waits for the
    // kernel's namespace teardown (tens of milliseconds).
    let target = layout::mount_point(store.root());
    fs::create_dir_all(&target).with_context(|| format!("create `{}`", target.display()))?;
    let mut spec = rec.spec.clone();
    let spec_tty = spec.tty;
    let keep_id = keep_id(&mode, &mut spec);
    let seccomp = seccomp_program(&spec, Some(&layout::seccomp_cache(store.root())))?;
    Ok(container::Launch {
        seccomp,
        spec,
        ops,
        target,
        single_id,
        own_net,
        stdio,
        keep_id,
        winsize: if spec_tty {
            terminal::caller_winsize()
        } else {
            None
        },
    })
}

/// The seccomp program for a container's processes (its own command and `exec`), compiled
/// in rbox before any fork; `None` when it runs unconfined.
pub fn seccomp_program(
    spec: &state::Spec,
    cache: Option<&Path>,
) -> Result<Option<Vec<libc::sock_filter>>> {
    let kept = caps::kept(
        &spec.cap_add,
        &spec.cap_drop,
        spec.privileged,
        caps::last_cap(),
    )?;
    seccomp::program(&spec.seccomp, spec.privileged, kept, cache).context("build seccomp filter")
}

/// `--userns=keep-id` for a non-root caller: run as the caller's own uid and gid inside.
fn keep_id(mode: &userns::Mode, spec: &mut state::Spec) -> Option<container::KeepId> {
    if spec.userns != state::UsernsMode::KeepId || *mode == userns::Mode::Root {
        return None;
    }
    // inside rbox's namespace we are root; the caller's host ids are what keep-id keeps
    let (huid, hgid) = userns::host_ids();
    let ids = mode.idmap();
    if spec.user.is_empty() {
        spec.user = format!("{huid}:{hgid}");
    }
    Some(container::KeepId {
        uid: huid,
        gid: hgid,
        uid_count: ids.uid_count,
        gid_count: ids.gid_count,
    })
}

/// Start the container and stay attached until it exits; returns its exit code.
fn start_attached(g: &Context, store: &Store, mut rec: ContainerRecord) -> Result<ExitCode> {
    let root = g.storage_root()?;
    let l = launch(store, &rec, None)?;
    let started = match container::start(&l) {
        Ok(s) => s,
        Err(e) => {
            let _ = finish(g, store, &mut rec, exit::FAILED as i32, &format!("{e:#}"));
            return Err(e);
        }
    };
    state::mark_running(g, &root, &mut rec, started.pid.as_raw())?;
    let status = attach::wait(started.pid, started.pty, rec.spec.interactive)?;
    let code = exit::from_wait(status);
    let _ = finish(g, store, &mut rec, code as i32, "");
    Ok(ExitCode::from(code))
}

/// Record the exit, and with `--rm` remove every trace of the container. Every step is
/// tried; the first failure is returned, for the monitor's log (an attached run has already
/// shown the container's outcome, and ignores it as it always has).
fn finish(
    g: &Context,
    store: &Store,
    rec: &mut ContainerRecord,
    code: i32,
    error: &str,
) -> Result<()> {
    let root = g.storage_root()?;
    if rec.auto_remove {
        let removed = state::remove(g, rec);
        store
            .remove_container_dir(&rec.id)
            .with_context(|| format!("remove the directory of container {}", rec.name))?;
        return removed.with_context(|| format!("remove container {}", rec.name));
    }
    rec.state.error = error.to_string();
    state::mark_exited(g, &root, rec, code)
        .with_context(|| format!("record the exit of container {}", rec.name))
}

/// `-d`: a monitor process (rbox's conmon) holds the container; we print its id once it runs.
fn start_detached(
    g: &Context,
    store: &Store,
    mut rec: ContainerRecord,
    shown: Option<&str>,
) -> Result<ExitCode> {
    let root = g.storage_root()?;
    // the container's directory must be there: its logs go into it
    store.container_dir(&rec.id)?;
    let logs = [
        layout::container_log(store.root(), &rec.id),
        layout::monitor_log(store.root(), &rec.id),
    ];
    let (ready_r, ready_w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).context("create pipe")?;
    match sys::fork().context("fork container monitor")? {
        nix::unistd::ForkResult::Child => {
            drop(ready_r);
            let _ = nix::unistd::setsid();
            let code = monitor(g, store, &mut rec, &root, &logs, ready_w);
            sys::exit_now(code);
        }
        nix::unistd::ForkResult::Parent { .. } => {
            drop(ready_w);
            let mut msg = String::new();
            use std::io::Read;
            fs::File::from(ready_r)
                .read_to_string(&mut msg)
                .context("wait for container monitor")?;
            match msg.strip_prefix("ok") {
                Some(_) => {
                    println!("{}", shown.unwrap_or(&rec.id));
                    let _ = std::io::stdout().flush();
                    Ok(ExitCode::SUCCESS)
                }
                None if msg.is_empty() => {
                    bail!("container monitor exited before the container started")
                }
                None => {
                    let (code, text) = msg.split_once(' ').unwrap_or(("125", &msg));
                    Err(exit::CodedError::new(code.parse().unwrap_or(exit::FAILED), text).into())
                }
            }
        }
    }
}

/// The monitor of a detached container; `logs` are the container's output (`ctr.log`) and
/// the monitor's own log (its tracing output on its stderr, and what it cannot report to
/// anyone once the caller has its answer).
fn monitor(
    g: &Context,
    store: &Store,
    rec: &mut ContainerRecord,
    root: &Path,
    logs: &[PathBuf; 2],
    ready: std::os::fd::OwnedFd,
) -> i32 {
    let mut ready = fs::File::from(ready);
    let mut files = Vec::with_capacity(2);
    for log in logs {
        match fs::OpenOptions::new().create(true).append(true).open(log) {
            Ok(f) => files.push(f),
            Err(e) => {
                let _ = write!(ready, "125 open log `{}`: {e}", log.display());
                return 125;
            }
        }
    }
    let (own, out) = (
        files.pop().expect("two logs"),
        files.pop().expect("two logs"),
    );
    if sys::dup2(&own, 2).is_ok() {
        crate::logging::to_file();
    }
    drop(own);
    tracing::debug!(container = %rec.id, "monitor started");
    let null = fs::File::open("/dev/null");
    let stdin = null.as_ref().map(|f| f.as_raw_fd()).unwrap_or(0);
    let fds = [stdin, out.as_raw_fd(), out.as_raw_fd()];
    let started = launch(store, rec, Some(fds)).and_then(|l| container::start(&l));
    let started = match started {
        Ok(s) => s,
        Err(e) => {
            let code = e
                .downcast_ref::<exit::CodedError>()
                .map(|c| c.code)
                .unwrap_or(exit::FAILED);
            let _ = write!(ready, "{code} {e:#}");
            if let Err(e) = finish(g, store, rec, code as i32, &format!("{e:#}")) {
                tracing::error!("{e:#}");
            }
            return code as i32;
        }
    };
    if let Err(e) = state::mark_running(g, root, rec, started.pid.as_raw()) {
        let _ = write!(ready, "125 {e:#}");
    } else {
        let _ = ready.write_all(b"ok");
    }
    drop(ready);
    // The monitor's own stdio must not keep the caller's terminal or pipes open (stderr is
    // the monitor's log already).
    if let Ok(n) = &null {
        for fd in 0..2 {
            let _ = sys::dup2(n, fd);
        }
    }
    let code = match attach::wait(started.pid, None, false) {
        Ok(st) => exit::from_wait(st) as i32,
        Err(e) => {
            tracing::error!("wait for container {}: {e:#}", rec.name);
            exit::FAILED as i32
        }
    };
    tracing::debug!(code, "container exited");
    if let Err(e) = finish(g, store, rec, code, "") {
        tracing::error!("{e:#}");
    }
    code
}

/// `rbox start`: start a created (or exited) container, attached or detached.
pub fn start(g: &Context, name_or_id: &str, attach: bool) -> Result<ExitCode> {
    let store = open_store(g)?;
    let rec = state::lookup(g, name_or_id)?;
    if state::is_running(&rec) {
        if attach {
            bail!("container {} is already running", rec.name);
        }
        println!("{name_or_id}");
        return Ok(ExitCode::SUCCESS);
    }
    if attach {
        start_attached(g, &store, rec)
    } else {
        // podman prints the container as the user named it
        start_detached(g, &store, rec, Some(name_or_id))
    }
}

/// Send `sig` to a running container. It goes to the rbox process attached to the container
/// (its monitor), which forwards it: the container's processes may run as mapped ids that this
/// invocation, in a namespace of its own, may not signal. SIGKILL kills the monitor, and the
/// container with it (its init has PDEATHSIG set, and a pid namespace dies with its init); the
/// exit status 137 is then recorded here, since the monitor cannot.
pub fn signal_container(
    g: &Context,
    rec: &ContainerRecord,
    sig: nix::sys::signal::Signal,
) -> Result<()> {
    use nix::sys::signal::{kill, Signal};
    let Some((pid, monitor)) = state::live_pids(g, rec) else {
        bail!("container {} is not running", rec.name);
    };
    let target = if monitor > 0 { monitor } else { pid };
    let pidfd = sys::pidfd_open(pid).ok();
    match kill(nix::unistd::Pid::from_raw(target), sig) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
        Err(e) => bail!("signal container {}: {e}", rec.name),
    }
    if sig == Signal::SIGKILL {
        // the init too, where we may (it runs as the caller's own id unless -u was given)
        let _ = kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
        if !wait_gone(pid, pidfd.as_ref(), std::time::Duration::from_secs(10)) {
            bail!(
                "container {} did not stop: its init (pid {pid}) still runs",
                rec.name
            );
        }
        // The record as written, not as `lookup` corrects it: whether the monitor got to
        // record an exit of its own before it died.
        let root = g.storage_root()?;
        if let Ok(mut cur) = state::load(g, &rec.id) {
            if cur.state.status == Status::Running {
                state::mark_exited(g, &root, &mut cur, 128 + Signal::SIGKILL as i32)?;
            }
        }
    }
    Ok(())
}

/// Stop a running container: its stop signal (SIGTERM by default), then SIGKILL after
/// `timeout`. Returns once the container's init is gone.
pub fn stop_container(
    g: &Context,
    rec: &ContainerRecord,
    timeout: std::time::Duration,
) -> Result<()> {
    let Some((pid, _)) = state::live_pids(g, rec) else {
        return Ok(());
    };
    let sig = rec
        .spec
        .stop_signal
        .as_deref()
        .and_then(parse_signal)
        .unwrap_or(nix::sys::signal::Signal::SIGTERM);
    let pidfd = sys::pidfd_open(pid).ok();
    signal_container(g, rec, sig)?;
    if !wait_gone(pid, pidfd.as_ref(), timeout) {
        match signal_container(g, rec, nix::sys::signal::Signal::SIGKILL) {
            Ok(()) => {}
            // the stop signal did it after all, between the timeout and the SIGKILL (with
            // `rm -f`'s timeout of 0 that is the common case)
            Err(_) if state::live_pids(g, rec).is_none() => {}
            Err(e) => return Err(e),
        }
        wait_gone(pid, pidfd.as_ref(), std::time::Duration::from_secs(10));
    }
    Ok(())
}

/// Wait until `pid` exits (its pidfd becomes readable) or `timeout` passes.
fn wait_gone(pid: i32, pidfd: Option<&std::os::fd::OwnedFd>, timeout: std::time::Duration) -> bool {
    use std::os::fd::AsFd;
    let Some(fd) = pidfd else {
        return nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_err();
    };
    let mut fds = [nix::poll::PollFd::new(
        fd.as_fd(),
        nix::poll::PollFlags::POLLIN,
    )];
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    matches!(nix::poll::poll(&mut fds, nix::poll::PollTimeout::try_from(ms).unwrap_or(nix::poll::PollTimeout::MAX)), Ok(n) if n > 0)
}

/// A signal from "TERM", "SIGTERM" or "15".
pub fn parse_signal(s: &str) -> Option<nix::sys::signal::Signal> {
    if let Ok(n) = s.parse::<i32>() {
        return nix::sys::signal::Signal::try_from(n).ok();
    }
    let up = s.to_ascii_uppercase();
    let name = if up.starts_with("SIG") {
        up
    } else {
        format!("SIG{up}")
    };
    name.parse().ok()
}
