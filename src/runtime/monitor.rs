//! The monitor: the rbox process that holds a running container (rbox's conmon). It launches
//! the container as its parent, starts its network bridge (pasta or slirp4netns) and records
//! it as running before the command execs, waits for it
//! (relaying signals, the terminal and its sd_notify(3) readiness: `sdnotify`), records the
//! exit status, and removes the container
//! after `--rm`. The same code holds an attached container (`rbox run`, `rbox start -a`: the
//! monitor is the invocation itself) and a detached one (`run -d`, `start`: a forked process
//! in its own session that tells the caller on a channel once the container runs, and writes
//! its own log).

use std::fs;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context as _, Result};
use rbox_storage::Store;

use super::sync::{Channel, Msg};
use super::{attach, container, dnsrelay, launch, logfile, netshare, sdnotify, sys};
use crate::context::Context;
use crate::exit;
use crate::layout;
use crate::state::{self, ContainerRecord};

/// Start the container and stay attached until it exits; returns its exit code. `hidden`:
/// [stdout, stderr] not shown to the caller (`run -a`), only logged.
pub fn attached(
    g: &Context,
    store: &Store,
    mut rec: ContainerRecord,
    hidden: [bool; 2],
) -> Result<ExitCode> {
    // what was asked of an earlier run and never read (its monitor was killed) is void (a
    // container that never ran, as `run`'s, has none)
    if !rec.state.started_at.is_empty() {
        state::take_request(g, &rec.id);
    }
    // Without a terminal the container writes into pipes that rbox relays (as conmon does for
    // Podman), so that what it writes also goes to its log; stdin stays the caller's with
    // `-i`, else /dev/null. A `--rm` container keeps no log: it is gone when it exits.
    // `--log-driver=passthrough`: the container writes to rbox's own stdout and stderr
    let passthrough = rec.spec.log.driver() == "passthrough";
    let relay = if rec.spec.tty || passthrough {
        None
    } else {
        let out = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).context("create pipe")?;
        let err = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).context("create pipe")?;
        let stdin = if rec.spec.interactive {
            None
        } else {
            Some(fs::File::open("/dev/null").context("open /dev/null")?)
        };
        Some((out, err, stdin))
    };
    let stdio = relay.as_ref().map(|(out, err, stdin)| {
        [
            stdin.as_ref().map(|f| f.as_raw_fd()).unwrap_or(0),
            out.1.as_raw_fd(),
            err.1.as_raw_fd(),
        ]
    });
    let mut log = if rec.auto_remove || !rec.spec.log.keeps() {
        None
    } else {
        let path = rec.spec.log.file(store.root(), &rec.id);
        fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| tracing::warn!("open log `{}`: {e}", path.display()))
            .ok()
            .map(|f| logfile::Writer::new(f, rec.spec.log.max_size))
    };
    let run = start(g, store, &mut rec, stdio, None, false)?;
    // the container holds the write ends now: end-of-file comes when it is gone
    let output = attach::Output {
        pipes: relay.map(|(out, err, _)| [out.0, err.0]),
        log: log.as_mut(),
        log_only: false,
        hidden,
        console: None,
        keys: None,
    };
    let checker = checker(g, &rec);
    let timer = super::timeout::Timer::start(rec.spec.opts.timeout, run.pid.as_raw());
    let status = attach::relay(run.pid, run.pty, rec.spec.interactive, output)?;
    drop((checker, timer, run.notify));
    let code = exit::from_wait(status);
    stop_network(run.network);
    refresh_updates(g, &mut rec);
    // the container's outcome is shown already; a failure to record it is not the command's
    let _ = finish(g, store, &mut rec, code as i32, "", run.mnt);
    // A restart policy goes on without the terminal: a detached monitor takes the container
    // over (as Docker's and Podman's clients return while their daemon or conmon restarts
    // it). The caller gets the first exit's code.
    // (a `--rm` container has neither restart policy nor requests left: removed with it)
    let stopped = rec.auto_remove || state::take_request(g, &rec.id) == Some(state::Request::Stop);
    if !stopped
        && rec
            .spec
            .restart
            .restart_after(code as i32, rec.state.restart_count)
    {
        rec.state.restart_count += 1;
        if let Err(e) = start_detached(g, store, rec) {
            tracing::warn!("restart the container in the background: {e:#}");
        }
    }
    Ok(ExitCode::from(code))
}

/// End the container's port forwarder and network helper (its namespace is gone with the
/// container).
fn stop_network(network: Option<Network>) {
    if let Some(n) = network {
        if let Some(f) = n.forwarder {
            f.stop();
        }
        if let Some(d) = n.dns {
            d.stop();
        }
        // A helper's exit takes 20-30 ms (its tap device goes away): waited for only when
        // the helper holds published ports, which must be free once the container is
        // recorded as exited.
        let stopped = if n.helper.ports().is_empty() {
            n.helper.kill()
        } else {
            n.helper.stop()
        };
        if let Err(e) = stopped {
            tracing::warn!("stop the network helper: {e}");
        }
        let _ = fs::remove_dir(&n.dir);
    }
}

/// The helper bridging a container's network namespace, rbox's forwarder of its published
/// ports (a thread of this process), its relay of DNS over TCP (with pasta when pasta forwards
/// DNS), and the helper's directory.
struct Network {
    helper: rbox_netns::Helper,
    forwarder: Option<rbox_netns::Forwarder>,
    dns: Option<dnsrelay::DnsRelay>,
    dir: PathBuf,
}

/// A container as its monitor holds it while it runs.
struct Running {
    pid: nix::unistd::Pid,
    /// the terminal master, with `-t`
    pty: Option<std::os::fd::OwnedFd>,
    network: Option<Network>,
    /// The container's own network namespace, held: its command restarted (by the restart
    /// policy or `rbox restart`) runs in the same one, so that the helper, the published ports
    /// and the containers that joined it (`--network=container:`) stay attached.
    netns: Option<fs::File>,
    /// the FUSE overlay's server, reaped after the init
    fuse: Option<nix::unistd::Pid>,
    /// The container's mount namespace, held so that its init's exit only drops a
    /// reference: the last reference unmounts the whole tree (overlay, /proc, /dev, each
    /// waiting for RCU grace periods) inside the exit, before the parent's wait returns, and
    /// made `rbox run --rm` and `rbox stop` wait several milliseconds (30 at a load of 10)
    /// for mounts nobody needs. It goes in the child left behind after the exit is recorded
    /// (with a `--rm` container's files: [`delete_later`]).
    mnt: Option<fs::File>,
    /// the relay of the container's sd_notify(3) messages to the caller's service manager
    /// (a thread: dropped before a restart's clone)
    notify: Option<sdnotify::Relay>,
}

/// What a restart keeps from the run before it.
struct Kept {
    network: Option<Network>,
    netns: fs::File,
    /// the published ports, bound all along (clients queue meanwhile)
    ports: Option<rbox_netns::Bound>,
}

/// What `rec`'s network needs, computed before its init is cloned: the bridge (pasta or
/// slirp4netns), the published ports, the helper's directory. None without a bridge.
struct NetworkPlan {
    backend: rbox_netns::Backend,
    ports: Vec<rbox_netns::PortMapping>,
    dir: PathBuf,
}

fn plan_network(g: &Context, rec: &ContainerRecord) -> Result<Option<NetworkPlan>> {
    let s = &rec.spec;
    let Some(backend) = s.backend()? else {
        return Ok(None);
    };
    let ports = s
        .ports
        .iter()
        .map(state::PortSpec::to_mapping)
        .collect::<Result<Vec<_>>>()?;
    let dir = layout::network_dir(&g.runtime_dir()?, &rec.id);
    Ok(Some(NetworkPlan {
        backend,
        ports,
        dir,
    }))
}

/// A network on its way: its host ports bound, its helper started ([`spawn_network`]).
struct SpawnedNetwork {
    helper: rbox_netns::Starting,
    bound: Option<rbox_netns::Bound>,
    dir: PathBuf,
}

/// Bind the host ports of the plan (one in use fails before any helper starts) and start its
/// bridge for the namespace of `pid`, without waiting for it: pasta's own start-up runs while
/// the init's id maps are written and the init sets up.
fn spawn_network(plan: NetworkPlan, pid: i32) -> Result<SpawnedNetwork> {
    let NetworkPlan {
        backend,
        ports,
        dir,
    } = plan;
    let bound = if backend.forwards_ports() || ports.is_empty() {
        None
    } else {
        Some(rbox_netns::bind(&ports)?)
    };
    fs::create_dir_all(&dir).with_context(|| format!("create `{}`", dir.display()))?;
    match rbox_netns::spawn(pid, &backend, &ports, &dir) {
        Ok(helper) => Ok(SpawnedNetwork { helper, bound, dir }),
        Err(e) => {
            let _ = fs::remove_dir_all(&dir);
            Err(e.into())
        }
    }
}

/// Wait for the bridge of a spawned network to be ready, then start the forwarder of its
/// published ports (unless `slirp4netns:port_handler=slirp4netns` has slirp4netns forward
/// them) and its DNS relay (where pasta forwards DNS); returns once all are ready.
fn start_network(
    spawned: Option<SpawnedNetwork>,
    pid: i32,
    netns: Option<&fs::File>,
) -> Result<Option<Network>> {
    let Some(SpawnedNetwork { helper, bound, dir }) = spawned else {
        return Ok(None);
    };
    let helper = match helper.ready() {
        Ok(helper) => helper,
        Err(e) => {
            let _ = fs::remove_dir_all(&dir);
            return Err(e.into());
        }
    };
    for w in helper.warnings() {
        tracing::warn!("{w}");
    }
    let mut network = Network {
        helper,
        forwarder: None,
        dns: None,
        dir,
    };
    let ns_file = || {
        let ns = format!("/proc/{pid}/ns/net");
        match netns {
            Some(f) => f
                .try_clone()
                .context("duplicate the network namespace's descriptor"),
            None => fs::File::open(&ns).with_context(|| format!("open `{ns}`")),
        }
    };
    if let Some((addr, upstream)) = network.helper.dns_forward() {
        // DNS over TCP is an addition to the UDP pasta carries: without it, a warning
        let relay = ns_file().and_then(|f| {
            let l = rbox_netns::listen_dns(&f.into(), addr, upstream)?;
            dnsrelay::DnsRelay::start(l)
        });
        match relay {
            Ok(r) => network.dns = Some(r),
            Err(e) => tracing::warn!("{e:#}"),
        }
    }
    if let Some(bound) = bound {
        let started = ns_file().and_then(|f| Ok(bound.start(f.into())?));
        match started {
            Ok(f) => network.forwarder = Some(f),
            Err(e) => {
                stop_network(Some(network));
                return Err(e);
            }
        }
    }
    Ok(Some(network))
}

/// `-d`: fork a monitor that holds the container; print the container (as `shown`, else its
/// id) once it runs.
pub fn detached(
    g: &Context,
    store: &Store,
    rec: ContainerRecord,
    shown: Option<&str>,
) -> Result<ExitCode> {
    let id = rec.id.clone();
    start_detached(g, store, rec)?;
    println!("{}", shown.unwrap_or(&id));
    let _ = std::io::stdout().flush();
    Ok(ExitCode::SUCCESS)
}

/// `-d` without a word: fork a monitor that holds the container; returns once it runs.
pub fn start_detached(g: &Context, store: &Store, rec: ContainerRecord) -> Result<()> {
    start_detached_with(g, store, rec, None).map(drop)
}

/// An attached `rbox run` that may detach (`runtime::front`): fork the monitor `-d` forks,
/// with this process as its first attach client, connected before the container starts;
/// returns once it runs, with this process's end of the connection.
pub fn start_attached_client(
    g: &Context,
    store: &Store,
    rec: ContainerRecord,
) -> Result<std::os::unix::net::UnixStream> {
    let pair = std::os::unix::net::UnixStream::pair().context("create attach socket pair")?;
    let ours = start_detached_with(g, store, rec, Some(pair))?;
    Ok(ours.expect("the client's end"))
}

/// Fork the monitor; `client`: a socket pair whose second end is its first attach client,
/// whose first end is returned.
fn start_detached_with(
    g: &Context,
    store: &Store,
    mut rec: ContainerRecord,
    client: Option<(
        std::os::unix::net::UnixStream,
        std::os::unix::net::UnixStream,
    )>,
) -> Result<Option<std::os::unix::net::UnixStream>> {
    let (front, client) = match client {
        Some((f, c)) => (Some(f), Some(c)),
        None => (None, None),
    };
    // the container's directory must be there: its logs go into it
    store.container_dir(&rec.id)?;
    let logs = [
        rec.spec.log.file(store.root(), &rec.id),
        layout::monitor_log(store.root(), &rec.id),
    ];
    let (ours, theirs) = Channel::pair().context("create channel")?;
    match sys::fork().context("fork container monitor")? {
        nix::unistd::ForkResult::Child => {
            drop(ours);
            // the client's end stays the client's alone: its end-of-file is the client gone
            drop(front);
            let _ = nix::unistd::setsid();
            let code = hold(g, store, &mut rec, &logs, theirs, client);
            sys::exit_now(code);
        }
        nix::unistd::ForkResult::Parent { .. } => {
            drop(theirs);
            drop(client);
            match ours.recv().context("wait for container monitor")? {
                Some(Msg::Ready) => Ok(front),
                Some(Msg::Failed { code, msg }) => Err(exit::CodedError::new(code, msg).into()),
                None => bail!("container monitor exited before the container started"),
                Some(m) => bail!("unexpected message {m:?} from the container monitor"),
            }
        }
    }
}

/// Launch the container as its parent and start it, recording it as running while its init
/// sets up (so that no command ever runs in a container recorded as not running), with its
/// network bridge ready. `detached`: this process is a detached monitor. `kept`: a restart,
/// in the network namespace (with its helper and ports) of the run before. A failure is
/// recorded as the container's exit (or with `--rm`, the container removed) before it is
/// returned.
fn start(
    g: &Context,
    store: &Store,
    rec: &mut ContainerRecord,
    stdio: Option<[i32; 3]>,
    kept: Option<Kept>,
    detached: bool,
) -> Result<Running> {
    let root = g.storage_root()?;
    let (mut network, mut netns, mut ports) = match kept {
        Some(k) => (k.network, Some(k.netns), k.ports),
        None => (None, None, None),
    };
    let again = netns.is_some();
    if again {
        // a restart: with the limits an `rbox update` gave since
        state::take_updates(&root, rec);
    }
    let hooks = super::hooks::ForContainer::of(rec, &layout::container_dir(&root, &rec.id));
    let mut mnt = None;
    let sd_mode = rec.spec.opts.sdnotify.clone();
    // the service manager's wait for readiness is the caller's concern, not the container's:
    // without a socket the container runs and the caller is told so
    let notify = store
        .container_dir(&rec.id)
        .map_err(anyhow::Error::from)
        .and_then(|d| sdnotify::prepare(sd_mode.as_deref(), &d.dir))
        .unwrap_or_else(|e| {
            tracing::warn!("relay sd_notify messages of container {}: {e:#}", rec.name);
            None
        });
    let notify_dir = notify.as_ref().map(|n| n.dir.clone());
    let started = launch::plan(g, store, rec, stdio, notify_dir.as_deref())
        .and_then(|mut l| {
            if !detached {
                l.command.preserve_fds = rec.spec.opts.preserve_fds;
            }
            if let Some(ns) = &netns {
                l.own_net = false;
                let fd = ns
                    .try_clone()
                    .context("duplicate the network namespace's descriptor")?;
                l.join_net = Some(netshare::held(fd));
            }
            let own_net = l.own_net;
            // the bridge starts as soon as the init's namespaces exist, and is waited for
            // once they are configured
            let plan = if again { None } else { plan_network(g, rec)? };
            // the namespace made ahead, where it is the init's as made (see prenet): a
            // namespace of its own, no helper or OCI hook to find it by the init's pid
            // (before the init has joined it), no user namespace but rbox's
            if own_net
                && plan.is_none()
                && hooks.is_none()
                && l.user_maps.is_none()
                && l.nested_maps.is_none()
            {
                l.pre_net = super::prenet::take();
            } else {
                super::prenet::cancel();
            }
            let mut pre_net = match &l.pre_net {
                Some(f) => Some(
                    f.try_clone()
                        .context("duplicate the network namespace's descriptor")?,
                ),
                None => None,
            };
            let spawned = std::cell::RefCell::new(None);
            let early = |pid: nix::unistd::Pid| {
                if let Some(plan) = plan {
                    *spawned.borrow_mut() = Some(spawn_network(plan, pid.as_raw())?);
                }
                Ok(())
            };
            let configured = |pid: nix::unistd::Pid| match &hooks {
                // the OCI `prestart` and `createRuntime` hooks: the namespaces exist, the
                // init waits
                Some(h) => h
                    .run("prestart", pid.as_raw(), "created")
                    .and_then(|()| h.run("createRuntime", pid.as_raw(), "created")),
                None => Ok(()),
            };
            let created = container::create_with_early(&l, early, configured, |pid| {
                // the init's namespaces exist: the bridge attaches to them now, and is ready
                // before the command runs
                if again {
                    if let (Some(n), Some(p), Some(ns)) = (&mut network, ports.take(), &netns) {
                        let fd = ns
                            .try_clone()
                            .context("duplicate the network namespace's descriptor")?;
                        n.forwarder = Some(p.start(fd.into())?);
                    }
                } else {
                    if let Some(f) = pre_net.take() {
                        // (the init may not have joined it yet)
                        netns = Some(f.into());
                    } else if own_net {
                        let ns = format!("/proc/{pid}/ns/net");
                        netns = Some(fs::File::open(&ns).with_context(|| format!("open `{ns}`"))?);
                    }
                    network = start_network(spawned.take(), pid.as_raw(), netns.as_ref())?;
                }
                // see Running::mnt; without it the init's exit tears the mounts down
                mnt = fs::File::open(format!("/proc/{pid}/ns/mnt")).ok();
                super::create::place_in_cgroup(rec, pid.as_raw());
                state::mark_running(g, &root, rec, pid.as_raw(), detached)
            });
            // the init has its own copy of the state directory's descriptor
            if let Some(fd) = l.state_dir {
                let _ = nix::unistd::close(fd);
            }
            // a network spawned and never waited for (the container failed first): its
            // helper ends as it drops, its directory goes
            if let Some(n) = spawned.take() {
                drop(n.helper);
                let _ = fs::remove_dir_all(&n.dir);
            }
            created
        })
        .and_then(|created| created.start());
    launch::save_staged_config(&rec.id);
    if let (Ok(s), Some(h)) = (&started, &hooks) {
        // a poststart hook's failure is a warning (runtime spec)
        if let Err(e) = h.run("poststart", s.pid.as_raw(), "running") {
            tracing::warn!("{e:#}");
        }
    }
    match started {
        Ok(s) => {
            // the command runs: `restart` and `exec` wait for this
            if let Err(e) = state::set_started(g, rec) {
                tracing::debug!("{e:#}");
            }
            Ok(Running {
                pid: super::create::write_pidfile(rec, s.pid),
                pty: s.pty,
                network,
                netns,
                fuse: s.fuse,
                mnt,
                notify: sdnotify::started(sd_mode.as_deref(), notify, std::process::id()),
            })
        }
        Err(e) => {
            let code = exit::code_of(&e);
            stop_network(network);
            if let Err(e) = finish(g, store, rec, code as i32, &format!("{e:#}"), None) {
                tracing::error!("{e:#}");
            }
            Err(e)
        }
    }
}

/// A pipe for the stdin of a detached container with `-i` and no terminal (`rbox attach`
/// writes into it through the monitor): (read end, write end).
fn stdin_pipe_of(
    rec: &ContainerRecord,
) -> Result<Option<(std::os::fd::OwnedFd, std::os::fd::OwnedFd)>> {
    if !rec.spec.interactive || rec.spec.tty {
        return Ok(None);
    }
    Ok(Some(
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).context("create pipe")?,
    ))
}

/// Pipes for a detached container's stdout and stderr: (read end, write end) each.
fn output_pipes() -> Result<[(std::os::fd::OwnedFd, std::os::fd::OwnedFd); 2]> {
    let pipe = || nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).context("create pipe");
    Ok([pipe()?, pipe()?])
}

/// The thread that runs the container's healthcheck at its interval, if it has one; dropping it
/// ends the checks.
fn checker(g: &Context, rec: &ContainerRecord) -> Option<super::health::Checker> {
    let hc = rec.spec.healthcheck.as_ref()?;
    match super::health::Checker::start(g, &rec.id, hc) {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::warn!("start the healthchecks of container {}: {e:#}", rec.name);
            None
        }
    }
}

/// At the command's exit, before [`finish`]: what `rbox update` changed while it ran (the
/// restart policy the monitor follows next; limits given to a container started without
/// any, whose cgroup `finish` must then remove). Nothing to read for a `--rm` container
/// that had limits already: it has no restart policy, and its cgroup is removed anyway.
fn refresh_updates(g: &Context, rec: &mut ContainerRecord) {
    if rec.auto_remove && !rec.spec.opts.resources.is_default() {
        return;
    }
    if let Ok(root) = g.storage_root() {
        state::take_updates(&root, rec);
    }
}

/// The delay before the restart policy's first restart, doubled with each restart after it
/// up to [`RESTART_DELAY_MAX`], and back to the first once the command ran for
/// [`RESTART_RESET`] (Docker's rule: a command that fails at once is not restarted in a
/// tight loop).
const RESTART_DELAY: std::time::Duration = std::time::Duration::from_millis(100);
const RESTART_DELAY_MAX: std::time::Duration = std::time::Duration::from_secs(60);
const RESTART_RESET: std::time::Duration = std::time::Duration::from_secs(10);

/// The detached monitor's life: `logs` are the container's output (`ctr.log`) and the
/// monitor's own log (its tracing output on its stderr, and what it cannot report to anyone
/// once the caller has its answer). Returns the container's exit code.
fn hold(
    g: &Context,
    store: &Store,
    rec: &mut ContainerRecord,
    logs: &[PathBuf; 2],
    caller: Channel,
    client: Option<std::os::unix::net::UnixStream>,
) -> i32 {
    let mut files = Vec::with_capacity(2);
    for log in logs {
        match fs::OpenOptions::new().create(true).append(true).open(log) {
            Ok(f) => files.push(f),
            Err(e) => {
                let e = anyhow::anyhow!("open log `{}`: {e}", log.display());
                return tell_failure(&caller, &e);
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
    // The container writes into pipes (or its terminal) that this monitor reads and records
    // in the log, each line stamped with its time and stream (as conmon does).
    let mut log = logfile::Writer::new(out, rec.spec.log.max_size);
    let keeps = rec.spec.log.keeps();
    state::take_request(g, &rec.id);
    let pipes = match output_pipes() {
        Ok(p) => p,
        Err(e) => return tell_failure(&caller, &e),
    };
    // `rbox attach` connects here; with -i and no terminal, what it types goes to the
    // container's stdin through a pipe this monitor holds
    let mut console = match g.runtime_dir().and_then(|d| {
        Ok(super::console::Console::listen(
            &layout::attach_socket(&d, &rec.id),
            None,
        )?)
    }) {
        Ok(c) => Some(c),
        Err(e) => {
            // an attached `rbox run` has nothing to attach to without it
            if client.is_some() {
                return tell_failure(&caller, &e.context("listen for rbox attach"));
            }
            tracing::warn!("listen for rbox attach: {e:#}");
            None
        }
    };
    if let (Some(c), Some(sock)) = (&mut console, client) {
        if let Err(e) = c.add_pacing_client(sock) {
            return tell_failure(&caller, &anyhow::Error::from(e).context("attach rbox run"));
        }
    }
    let null_fd = stdin;
    let mut stdin_pipe = match stdin_pipe_of(rec) {
        Ok(p) => p,
        Err(e) => return tell_failure(&caller, &e),
    };
    let stdin = stdin_pipe
        .as_ref()
        .map(|p| p.0.as_raw_fd())
        .unwrap_or(stdin);
    let fds = [stdin, pipes[0].1.as_raw_fd(), pipes[1].1.as_raw_fd()];
    let mut run = match start(g, store, rec, Some(fds), None, true) {
        Ok(s) => s,
        Err(e) => return tell_failure(&caller, &e),
    };
    let _ = caller.send(&Msg::Ready);
    drop(caller);
    // The monitor's own stdio must not keep the caller's terminal or pipes open (stderr is
    // the monitor's log already).
    if let Ok(n) = &null {
        for fd in 0..2 {
            let _ = sys::dup2(n, fd);
        }
    }
    // Starting the container ran much of rbox; waiting for it runs little of it.
    sys::release_startup_pages();
    let mut delay = RESTART_DELAY;
    let mut pipes = Some(pipes);
    loop {
        let since = std::time::Instant::now();
        let health = checker(g, rec);
        let timer = super::timeout::Timer::start(rec.spec.opts.timeout, run.pid.as_raw());
        // the container holds the write ends now: end-of-file comes when it is gone
        let read_ends = pipes.take().map(|[o, e]| [o.0, e.0]);
        if let (Some(c), Some((r, w))) = (&mut console, stdin_pipe.take()) {
            drop(r); // the container has it
            c.set_stdin(Some(w));
        }
        let output = attach::Output {
            pipes: read_ends,
            log: keeps.then_some(&mut log),
            log_only: true,
            hidden: [false; 2],
            console: console.as_mut(),
            keys: None,
        };
        let waited = attach::relay(run.pid, run.pty.take(), false, output);
        if waited.is_ok() {
            container::reap_fuse(run.fuse.take());
        } else {
            container::end_fuse(run.fuse.take());
        }
        // (before a restart's clone: the monitor must be single-threaded then)
        drop((health, timer, run.notify.take()));
        let code = match waited {
            Ok(st) => exit::from_wait(st) as i32,
            Err(e) => {
                tracing::error!("wait for container {}: {e:#}", rec.name);
                exit::FAILED as i32
            }
        };
        tracing::debug!(code, "container exited");
        let asked = state::take_request(g, &rec.id);
        refresh_updates(g, rec);
        let again = match asked {
            Some(state::Request::Stop) => false,
            Some(state::Request::Restart) => true,
            None => rec
                .spec
                .restart
                .restart_after(code, rec.state.restart_count),
        };
        let Some(netns) = run.netns.take().filter(|_| again) else {
            stop_network(run.network);
            if let Err(e) = finish(g, store, rec, code, "", run.mnt.take()) {
                tracing::error!("{e:#}");
            }
            tell_exit(console.as_mut(), code);
            return code;
        };
        // Again, in the same network namespace: the forwarder's connections end with the
        // command they went to, its host ports stay bound.
        let mut network = run.network.take();
        let ports = network
            .as_mut()
            .and_then(|n| n.forwarder.take())
            .and_then(|f| f.pause());
        if asked.is_some() {
            tell_exit(console.as_mut(), code);
        } else {
            rec.state.restart_count += 1;
            if since.elapsed() >= RESTART_RESET {
                delay = RESTART_DELAY;
            }
            // exited meanwhile, as `ps` and `inspect` show it; `stop`, `rm` and `start` end
            // this wait by killing this process
            let root = g.storage_root();
            if let Err(e) = root.and_then(|r| state::mark_restarting(g, &r, rec, code)) {
                tracing::error!("record the exit of container {}: {e:#}", rec.name);
            }
            tracing::debug!(?delay, count = rec.state.restart_count, "restart policy");
            // an attached `rbox run` returns the first exit's code, as without a monitor
            tell_exit(console.as_mut(), code);
            std::thread::sleep(delay);
            delay = (delay * 2).min(RESTART_DELAY_MAX);
        }
        let kept = Kept {
            network,
            netns,
            ports,
        };
        let p = match output_pipes() {
            Ok(p) => p,
            Err(e) => {
                tracing::error!("restart container {}: {e:#}", rec.name);
                return code;
            }
        };
        stdin_pipe = match stdin_pipe_of(rec) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!("restart container {}: {e:#}", rec.name);
                return code;
            }
        };
        let stdin = stdin_pipe
            .as_ref()
            .map(|p| p.0.as_raw_fd())
            .unwrap_or(null_fd);
        let fds = [stdin, p[0].1.as_raw_fd(), p[1].1.as_raw_fd()];
        let started = start(g, store, rec, Some(fds), Some(kept), true);
        pipes = Some(p);
        run = match started {
            Ok(r) => r,
            Err(e) => {
                tracing::error!("restart container {}: {e:#}", rec.name);
                return code;
            }
        };
        // as after the first start
        sys::release_startup_pages();
    }
}

/// Tell the attached clients the container's exit code (it is recorded by now).
fn tell_exit(console: Option<&mut super::console::Console>, code: i32) {
    if let Some(c) = console {
        c.broadcast(super::console::EXIT, &code.to_le_bytes());
    }
}

/// Tell the caller waiting for a detached monitor why the container did not start; returns
/// the exit code the monitor ends with.
fn tell_failure(caller: &Channel, e: &anyhow::Error) -> i32 {
    let code = exit::code_of(e);
    let _ = caller.send(&Msg::Failed {
        code,
        msg: format!("{e:#}"),
    });
    code as i32
}

/// Record the exit, and with `--rm` remove every trace of the container. Every step is
/// tried; the first failure is returned. `mnt`: the container's mount namespace, held
/// ([`Running::mnt`]); it goes before the container's files do.
pub fn finish(
    g: &Context,
    store: &Store,
    rec: &mut ContainerRecord,
    code: i32,
    error: &str,
    mnt: Option<fs::File>,
) -> Result<()> {
    let root = g.storage_root()?;
    crate::events::died(g, rec, code);
    super::create::remove_cgroup(rec);
    // the OCI `poststop` hooks; a failure is a warning (runtime spec)
    if let Some(h) = super::hooks::ForContainer::of(rec, &layout::container_dir(&root, &rec.id)) {
        if let Err(e) = h.run("poststop", 0, "stopped") {
            tracing::warn!("{e:#}");
        }
    }
    if rec.auto_remove {
        // (Podman 4.3 logs no `cleanup` for a `--rm` container: died, then remove)
        let removed = state::remove_but_record(g, rec);
        // A node-local upper directory (a store on a network filesystem) is deleted by the
        // detach itself: its overlay must be unmounted first.
        let mut mnt = mnt;
        if mnt.is_some() && upper_placed(store, &rec.id) {
            mnt = None;
        }
        // The container is gone once its directory is renamed away (`ps -a` no longer lists
        // it); deleting its files can wait until after rbox has returned.
        let detached = store
            .detach_container_dir(&rec.id)
            .with_context(|| format!("remove the directory of container {}", rec.name))?;
        super::create::remove_image_after(store, rec);
        super::volumes::remove_anonymous(g, store, rec);
        if let Some(d) = detached {
            delete_later(store, vec![d], mnt);
        }
        return removed.with_context(|| format!("remove container {}", rec.name));
    }
    // `--rmi` without `--rm`: the container still uses the image (Podman says so too)
    super::create::remove_image_after(store, rec);
    rec.state.error = error.to_string();
    let marked = state::mark_exited(g, &root, rec, code)
        .with_context(|| format!("record the exit of container {}", rec.name));
    crate::events::container(g, rec, "cleanup");
    // the mounts go after the exit is recorded, while `rbox stop` (waiting for this
    // process) returns
    delete_later(store, Vec::new(), mnt);
    marked
}

/// Whether the container's upper directory lies outside its directory in the store (placed
/// on node-local storage: see rbox_storage's `placed_upper_root`).
fn upper_placed(store: &Store, id: &str) -> bool {
    store
        .container_dir(id)
        .map(|cd| !cd.upper.starts_with(&cd.dir))
        .unwrap_or(true)
}

/// Set by a command that returns right after the removals it hands to [`delete_later`]
/// (an attached `run --rm`, `rm`, `container cleanup`), with no restart to follow and no
/// child to wait for: the deleter may then be a child that starts at this process's exit
/// ([`sys::after_exit`]). Unset (a build, whose step containers go while it runs on), the
/// deleter is forked and starts at once.
static EXIT_FOLLOWS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// See [`EXIT_FOLLOWS`].
pub fn exit_follows_removal() {
    EXIT_FOLLOWS.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// Delete removed containers' files in a child left behind, so that rbox returns without
/// waiting for them; inline when the process has other threads (a child could not run
/// beside them) or cannot start one. Where this process exits next ([`EXIT_FOLLOWS`]),
/// the child shares its memory and starts once it has exited ([`sys::after_exit`]): it
/// takes over the teardown of the address space, and no fork copies it. Else it is
/// forked. Either way it holds nothing of its parent's: no stdio (a caller reading rbox's
/// output gets end-of-file when rbox exits), no other descriptor (no lock), its own session
/// (a terminal's ^C does not reach it). `mnt`, the container's mount namespace
/// ([`Running::mnt`]), goes first, in the child: the last reference to it unmounts the
/// overlay, which must be gone before its upper and work directories are.
pub fn delete_later(store: &Store, ds: Vec<rbox_storage::Detached>, mnt: Option<fs::File>) {
    if ds.is_empty() && mnt.is_none() {
        return;
    }
    let single = fs::read_dir("/proc/self/task")
        .map(|t| t.count() == 1)
        .unwrap_or(false);
    let remover = store.remover();
    let delete = move |ds: Vec<rbox_storage::Detached>, mnt: Option<fs::File>| {
        drop(mnt);
        for d in ds {
            let _ = remover.remove(d, true);
        }
    };
    if single && EXIT_FOLLOWS.load(std::sync::atomic::Ordering::Relaxed) {
        use std::os::fd::AsRawFd;
        let keep: Vec<_> = mnt.iter().map(|f| f.as_raw_fd()).collect();
        // (the job is the child's once it has started, this side's again if it did not)
        let job = std::sync::Arc::new(std::sync::Mutex::new(Some((ds, mnt))));
        let theirs = job.clone();
        let started = sys::after_exit(
            Box::new(move || {
                if let Some((ds, mnt)) = theirs.lock().ok().and_then(|mut j| j.take()) {
                    delete(ds, mnt);
                }
            }),
            &keep,
        );
        if let Err(e) = started {
            tracing::debug!("start the deleter: {e}");
            if let Some((ds, mnt)) = job.lock().ok().and_then(|mut j| j.take()) {
                inline(store, ds, mnt);
            }
        }
        return;
    }
    // The child's reference must be the last: it waits for the end-of-file of this gate,
    // which comes once the parent has dropped its own.
    // (above stdio's numbers: the child puts /dev/null there before it reads the gate)
    let gate = match &mnt {
        Some(_) if single => nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .ok()
            .and_then(|(r, w)| Some((sys::above_stdio(r).ok()?, sys::above_stdio(w).ok()?))),
        _ => None,
    };
    if single && (mnt.is_none() || gate.is_some()) {
        match sys::fork() {
            Ok(nix::unistd::ForkResult::Child) => {
                let _ = sys::stdio_to_null();
                let _ = nix::unistd::setsid();
                if let Some((r, w)) = gate {
                    drop(w);
                    let mut b = [0u8; 1];
                    while let Err(nix::errno::Errno::EINTR) = nix::unistd::read(&r, &mut b) {}
                }
                drop(mnt);
                // (`null` is closed by now: close_from must not close an owned descriptor)
                sys::close_from(3);
                delete(ds, None);
                sys::exit_now(0);
            }
            Ok(nix::unistd::ForkResult::Parent { .. }) => {
                drop(mnt);
                drop(gate);
                return;
            }
            Err(_) => {}
        }
    }
    inline(store, ds, mnt)
}

fn inline(store: &Store, ds: Vec<rbox_storage::Detached>, mnt: Option<fs::File>) {
    drop(mnt);
    for d in ds {
        if let Err(e) = store.remove_detached(d, false) {
            tracing::warn!("{e}");
        }
    }
}
