//! rbox as an OCI runtime (`rbox oci`, or `rbox-runtime`): someone else's bundle (a directory
//! with `config.json` and a root filesystem) run through rbox's own launch flow. This file owns
//! the runtime's container states under its root directory (one directory per id: `state.json`,
//! a copy of the spec, `exec.fifo` while the container waits for its start), the launch plan
//! of a bundle, and the verbs' work; the command line is `cmd/oci.rs`.
//!
//! The lifecycle, as the runtime spec says: `create` clones the init (its namespaces, mounts,
//! pivot_root), which then waits on `exec.fifo` (as runc's does) so that no rbox process
//! stays; `start` opens the FIFO, which lets the init exec the user's process; `state` reads
//! the live status from the init's pid (the process start time guards against pid reuse);
//! `kill` signals it; `delete` removes the state and runs the `poststop` hooks.
//! The root is the bundle's `root.path`, bound onto itself (no overlay, no storage).

use std::fs;
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use oci_spec::runtime::Spec as OciSpec;
use serde::{Deserialize, Serialize};

use super::launch::Launch;
use super::mounts::Rootfs;
use super::{container, hooks, netshare, oci, process, sys, userns};
use crate::exit;

/// The runtime spec version rbox's state reports.
pub const OCI_VERSION: &str = "1.0.2";

/// The container state the runtime spec defines (`rbox oci state`), plus what runc also
/// prints (`rootfs`, `created`, `owner`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct State {
    pub oci_version: String,
    pub id: String,
    pub status: String,
    pub pid: i32,
    pub bundle: String,
    pub rootfs: String,
    pub created: String,
    pub owner: String,
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub annotations: std::collections::BTreeMap<String, String>,
    /// the init's start time (/proc/PID/stat field 22): a pid reused by another process
    /// does not make a stopped container look alive
    #[serde(default, skip_serializing)]
    pub start_time: u64,
}

/// The runtime's state root: `--root`, else /run/rbox-oci for root, else
/// $XDG_RUNTIME_DIR/rbox-oci, else /tmp/rbox-oci-UID.
pub fn default_root() -> PathBuf {
    if nix::unistd::geteuid().is_root() && std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        return PathBuf::from("/run/rbox-oci");
    }
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        Some(d) => PathBuf::from(d).join("rbox-oci"),
        None if nix::unistd::geteuid().is_root() => PathBuf::from("/run/rbox-oci"),
        None => PathBuf::from(format!("/tmp/rbox-oci-{}", nix::unistd::geteuid())),
    }
}

/// Container ids as runc accepts them: letters, digits, `_ + - .`, not `.` or `..`.
pub fn check_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id != "."
        && id != ".."
        && id.len() <= 1024
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_+-.".contains(c));
    if !ok {
        bail!("invalid container id `{id}`: use letters, digits and _ + - .");
    }
    Ok(())
}

/// The runtime's containers under one root directory.
pub struct Runtime {
    pub root: PathBuf,
}

/// What `create` and `run` take besides the id.
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    pub bundle: PathBuf,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    pub no_pivot: bool,
    pub preserve_fds: u32,
}

impl Runtime {
    pub fn new(root: Option<PathBuf>) -> Runtime {
        Runtime {
            root: root.unwrap_or_else(default_root),
        }
    }

    /// The state root, made private to the caller; one that another user owns is refused
    /// (the default under /tmp is a name anyone could take first).
    fn make_root(&self) -> Result<()> {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        let r = &self.root;
        match fs::DirBuilder::new().recursive(true).mode(0o700).create(r) {
            Ok(()) => {}
            Err(e) => bail!("create `{}`: {e}", r.display()),
        }
        let m = fs::symlink_metadata(r).with_context(|| format!("stat `{}`", r.display()))?;
        if !m.is_dir() || m.uid() != nix::unistd::geteuid().as_raw() {
            bail!(
                "`{}` is not a directory of yours: choose another state directory with --root",
                r.display()
            );
        }
        if m.permissions().mode() & 0o022 != 0 {
            bail!(
                "`{}` is writable by others: choose another state directory with --root",
                r.display()
            );
        }
        Ok(())
    }

    fn dir(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }

    /// The state of container `id` as it is now.
    pub fn state(&self, id: &str) -> Result<State> {
        check_id(id)?;
        let dir = self.dir(id);
        let text = match fs::read(dir.join("state.json")) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(exit::CodedError::new(
                    exit::NOT_KNOWN,
                    format!("container `{id}` does not exist"),
                )
                .into())
            }
            Err(e) => bail!("read state of container `{id}`: {e}"),
        };
        let mut st: State = serde_json::from_slice(&text)
            .with_context(|| format!("parse `{}`", dir.join("state.json").display()))?;
        st.status = if !alive(st.pid, st.start_time) {
            "stopped"
        } else if dir.join("exec.fifo").exists() {
            "created"
        } else if dir.join("paused").exists() {
            "paused"
        } else {
            "running"
        }
        .into();
        if st.status == "stopped" {
            st.pid = 0;
        }
        Ok(st)
    }

    /// Every container under the root, by id.
    pub fn list(&self) -> Result<Vec<State>> {
        let mut out = Vec::new();
        let entries = match fs::read_dir(&self.root) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => bail!("read `{}`: {e}", self.root.display()),
        };
        for e in entries.flatten() {
            let id = e.file_name().to_string_lossy().into_owned();
            if let Ok(s) = self.state(&id) {
                out.push(s);
            }
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    /// `create`: the container set up and waiting for `start`.
    pub fn create(&self, id: &str, o: &CreateOptions) -> Result<State> {
        let (st, _) = self.create_inner(id, o, None, true)?;
        Ok(st)
    }

    /// `spec`: the bundle's config.json, when the caller has read it already.
    fn create_inner(
        &self,
        id: &str,
        o: &CreateOptions,
        spec: Option<OciSpec>,
        fifo: bool,
    ) -> Result<(State, Option<container::Created>)> {
        check_id(id)?;
        let bundle = fs::canonicalize(&o.bundle)
            .with_context(|| format!("open bundle `{}`", o.bundle.display()))?;
        let mut spec = match spec {
            Some(s) => s,
            None => oci::load(&bundle.join("config.json"))?,
        };
        if !nix::unistd::geteuid().is_root() {
            let (uid, gid) = (
                nix::unistd::geteuid().as_raw(),
                nix::unistd::getegid().as_raw(),
            );
            add_rootless_userns(&mut spec, uid, gid, &userns::detect().0);
        }
        self.make_root()?;
        let dir = self.dir(id);
        if let Err(e) = fs::create_dir(&dir) {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                bail!("container `{id}` already exists");
            }
            bail!("create `{}`: {e}", dir.display());
        }
        let r = self.create_in(id, o, &bundle, &spec, &dir, fifo);
        if r.is_err() {
            remove_cgroup(&dir);
            release_mounts(&dir);
            let _ = fs::remove_dir_all(&dir);
        }
        r
    }

    fn create_in(
        &self,
        id: &str,
        o: &CreateOptions,
        bundle: &Path,
        spec: &OciSpec,
        dir: &Path,
        fifo: bool,
    ) -> Result<(State, Option<container::Created>)> {
        // the spec as created: `delete` runs its poststop hooks when the bundle may be gone
        oci::save(&dir.join("config.json"), spec, true)?;
        let fifo_fd = if fifo {
            let p = dir.join("exec.fifo");
            nix::unistd::mkfifo(&p, nix::sys::stat::Mode::from_bits_truncate(0o600))
                .with_context(|| format!("create `{}`", p.display()))?;
            // the init opens it as whoever it is in its user namespace (root's maps may make it
            // another host uid), through its descriptor
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&p, fs::Permissions::from_mode(0o622))
                .with_context(|| format!("chmod `{}`", p.display()))?;
            Some(open_path(&p)?)
        } else {
            None
        };
        let dir_fd = open_path(dir)?;
        let mut l = plan(spec, bundle, o)?;
        if l.clone_flags & libc::CLONE_NEWNS == 0
            && !l.joins.iter().any(|(_, t)| *t == libc::CLONE_NEWNS)
        {
            note_host_mounts(dir, &l.target)?;
        }
        l.start_fifo = fifo_fd.as_ref().map(|f| f.as_raw_fd());
        l.state_dir = Some(dir_fd.as_raw_fd());
        let root = oci_root(spec, bundle)?;
        let mut st = State {
            oci_version: OCI_VERSION.into(),
            id: id.into(),
            status: "creating".into(),
            pid: 0,
            bundle: bundle.to_string_lossy().into_owned(),
            rootfs: root.to_string_lossy().into_owned(),
            created: now_rfc3339(),
            owner: userns::user_name(nix::unistd::geteuid().as_raw()).unwrap_or_default(),
            annotations: spec
                .annotations()
                .clone()
                .unwrap_or_default()
                .into_iter()
                .collect(),
            start_time: 0,
        };
        let hooks = spec.hooks().clone().unwrap_or_default();
        let cgroup = cgroup_of(spec, id);
        let created = container::create_with(
            &l,
            |pid| {
                st.pid = pid.as_raw();
                st.start_time = start_time(st.pid).unwrap_or(0);
                if let Some((path, r)) = &cgroup {
                    place(dir, path, r, st.pid)?;
                }
                write_state(dir, &st)?;
                // the runtime spec's hooks see the container as created: its namespaces and
                // process exist, the user's program has not started
                let text = state_json(&State {
                    status: "created".into(),
                    ..st.clone()
                })?;
                hooks::run(
                    "prestart",
                    hooks.prestart().as_deref().unwrap_or_default(),
                    &text,
                )?;
                hooks::run(
                    "createRuntime",
                    hooks.create_runtime().as_deref().unwrap_or_default(),
                    &text,
                )
            },
            |_| Ok(()),
        )?;
        drop(l);
        if !fifo {
            st.status = "created".into();
            write_state(dir, &st)?;
            return Ok((st, Some(created)));
        }
        let pid = created.pid;
        let kill = |e: anyhow::Error| {
            let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
            e
        };
        let (_, pty) = created.ready()?;
        if let Some(pty) = pty {
            let Some(sock) = &o.console_socket else {
                return Err(kill(anyhow::anyhow!(
                    "the spec asks for a terminal: give --console-socket"
                )));
            };
            send_console(sock, pty).map_err(kill)?;
        }
        st.status = "created".into();
        write_state(dir, &st).map_err(kill)?;
        if let Some(p) = &o.pid_file {
            write_pid_file(p, st.pid).map_err(kill)?;
        }
        Ok((st, None))
    }

    /// `start`: let the created container exec its process; then the `poststart` hooks.
    pub fn start(&self, id: &str) -> Result<()> {
        let st = self.state(id)?;
        if st.status != "created" {
            bail!("container `{id}` is not created: it is {}", st.status);
        }
        let dir = self.dir(id);
        let fifo = dir.join("exec.fifo");
        // The pidfd first: once the FIFO is open the init may exec and its command end at
        // once (`nosuch`: 127), before a later pidfd_open could find it.
        let pidfd = match sys::pidfd_open(st.pid) {
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {
                bail!("start container `{id}`: its init exited before the start")
            }
            r => r.context("watch the container's init")?,
        };
        // Non-blocking: the init already waits to open the other end (or is gone: the pidfd
        // says so instead of a hang).
        let f = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(&fifo)
            .with_context(|| format!("open `{}`", fifo.display()))?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let mut b = [0u8; 1];
            match (&f).read(&mut b) {
                Ok(1) => break,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => bail!("read `{}`: {e}", fifo.display()),
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!("start container `{id}`: its init did not answer in 30s");
            }
            use nix::poll::{PollFd, PollFlags, PollTimeout};
            let mut fds = [
                PollFd::new(f.as_fd(), PollFlags::POLLIN),
                PollFd::new(pidfd.as_fd(), PollFlags::POLLIN),
            ];
            let ms = PollTimeout::try_from(left.as_millis().min(60_000) as i32)
                .unwrap_or(PollTimeout::MAX);
            let _ = nix::poll::poll(&mut fds, ms);
            let init_gone = fds[1]
                .revents()
                .is_some_and(|r| r.contains(PollFlags::POLLIN));
            let readable = fds[0]
                .revents()
                .is_some_and(|r| r.intersects(PollFlags::POLLIN));
            if init_gone && !readable {
                bail!("start container `{id}`: its init exited before the start");
            }
        }
        let _ = fs::remove_file(&fifo);
        let spec = oci::load(&dir.join("config.json"))?;
        if let Some(h) = spec.hooks().as_ref().and_then(|h| h.poststart().clone()) {
            // the state as started, with its pid, even if the process has exited since
            let st = State {
                status: "running".into(),
                ..st
            };
            if let Err(e) = hooks::run("poststart", &h, &state_json(&st)?) {
                tracing::warn!("{e:#}");
            }
        }
        Ok(())
    }

    /// `kill`: signal the init (`all`: every process in its pid namespace).
    pub fn kill(&self, id: &str, sig: libc::c_int, all: bool) -> Result<()> {
        let st = self.state(id)?;
        if st.status == "stopped" {
            bail!("container `{id}` is not running");
        }
        if all {
            for p in ns_pids(st.pid) {
                let _ = super::sys::kill(p, sig);
            }
        }
        super::sys::kill(st.pid, sig).with_context(|| format!("signal container `{id}`"))
    }

    /// `pause` (`resume`): stop (continue) every process of a running (paused) container,
    /// with SIGSTOP and SIGCONT: there is no cgroup freezer to use.
    pub fn pause(&self, id: &str, pause: bool) -> Result<()> {
        let st = self.state(id)?;
        let (from, sig) = if pause {
            ("running", Signal::SIGSTOP)
        } else {
            ("paused", Signal::SIGCONT)
        };
        if st.status != from {
            bail!("container `{id}` is not {from}: it is {}", st.status);
        }
        let marker = self.dir(id).join("paused");
        if pause {
            fs::write(&marker, "").with_context(|| format!("write `{}`", marker.display()))?;
        }
        let pids = ns_pids(st.pid);
        for p in &pids {
            let _ = nix::sys::signal::kill(Pid::from_raw(*p), sig);
        }
        if pause {
            // SIGSTOP takes effect when each process next runs: wait (a second at most) until
            // all have stopped, as runc and crun wait for a frozen cgroup, so that whatever
            // the caller does next finds them stopped.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
            while pids.iter().any(|p| !stopped(*p)) && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        }
        if !pause {
            fs::remove_file(&marker).with_context(|| format!("remove `{}`", marker.display()))?;
        }
        Ok(())
    }

    /// `update --resources`: new limits for a created or running container, in the cgroup
    /// rbox made for it at create.
    pub fn update(&self, id: &str, r: &oci_spec::runtime::LinuxResources) -> Result<()> {
        let st = self.state(id)?;
        if st.status == "stopped" {
            bail!("container `{id}` is not running");
        }
        let Ok(text) = fs::read_to_string(self.dir(id).join("cgroup")) else {
            if !super::cgroup::host_root() {
                tracing::warn!("{}", super::cgroup::rootless_warning());
                return Ok(());
            }
            bail!("container `{id}` has no cgroup of its own: its spec had no linux.cgroupsPath or linux.resources");
        };
        super::cgroup::Placement::from_text(&text).update(r)
    }

    /// `delete`: remove a stopped (or created) container; `force` kills a running one first.
    pub fn delete(&self, id: &str, force: bool) -> Result<()> {
        let st = match self.state(id) {
            Ok(s) => s,
            Err(e) if force && exit::code_of(&e) == exit::NOT_KNOWN => return Ok(()),
            Err(e) => return Err(e),
        };
        if (st.status == "running" || st.status == "paused") && !force {
            bail!(
                "cannot delete container `{id}` that is not stopped: it is {} (use --force)",
                st.status
            );
        }
        if st.status != "stopped" {
            kill_and_wait(&st)?;
        }
        let dir = self.dir(id);
        let hooks = oci::load(&dir.join("config.json"))
            .ok()
            .and_then(|s| s.hooks().as_ref().and_then(|h| h.poststop().clone()));
        remove_cgroup(&dir);
        release_mounts(&dir);
        fs::remove_dir_all(&dir).with_context(|| format!("remove `{}`", dir.display()))?;
        if let Some(h) = hooks {
            let st = State {
                status: "stopped".into(),
                pid: 0,
                ..st
            };
            if let Err(e) = hooks::run("poststop", &h, &state_json(&st)?) {
                tracing::warn!("{e:#}");
            }
        }
        Ok(())
    }

    /// `run`: create and start in one, attached: the container's exit code (128+n for signal
    /// n), and its state removed afterwards; `detach`: create and start, then return.
    pub fn run(&self, id: &str, o: &CreateOptions, detach: bool) -> Result<u8> {
        if detach {
            self.create(id, o)?;
            self.start(id)?;
            return Ok(0);
        }
        let spec = oci::load(&o.bundle.join("config.json"))?;
        if spec.process().as_ref().and_then(|p| p.terminal()) == Some(true) {
            bail!("the spec asks for a terminal: `rbox oci run` takes one only with --detach and --console-socket");
        }
        // read once: the hooks below are the spec's as created (the copy in the state dir)
        let hooks = spec.hooks().clone().unwrap_or_default();
        let (st, created) = self.create_inner(id, o, Some(spec), false)?;
        let created = created.context("run container: no init")?;
        let dir = self.dir(id);
        let started = created.start();
        let started = match started {
            Ok(s) => s,
            Err(e) => {
                remove_cgroup(&dir);
                release_mounts(&dir);
                let _ = fs::remove_dir_all(&dir);
                return Err(e);
            }
        };
        if let Some(p) = &o.pid_file {
            write_pid_file(p, st.pid)?;
        }
        if let Some(h) = hooks.poststart() {
            let st = State {
                status: "running".into(),
                ..st.clone()
            };
            if let Err(e) = hooks::run("poststart", h, &state_json(&st)?) {
                tracing::warn!("{e:#}");
            }
        }
        let code = wait_forwarding(started.pid);
        remove_cgroup(&dir);
        release_mounts(&dir);
        let _ = fs::remove_dir_all(&dir);
        if let Some(h) = hooks.poststop() {
            let st = State {
                status: "stopped".into(),
                pid: 0,
                ..st
            };
            if let Err(e) = hooks::run("poststop", h, &state_json(&st)?) {
                tracing::warn!("{e:#}");
            }
        }
        Ok(code)
    }

    /// `exec`: run a process in the running container `id`: the spec's process changed by
    /// `change`, or the whole `process` a caller gives (`--process`).
    pub fn exec(
        &self,
        id: &str,
        process: Option<oci_spec::runtime::Process>,
        change: &ExecChange,
        detach: bool,
        pid_file: Option<&Path>,
    ) -> Result<u8> {
        let st = self.state(id)?;
        if st.status != "running" {
            bail!("container `{id}` is not running: it is {}", st.status);
        }
        let mut spec = oci::load(&self.dir(id).join("config.json"))?;
        let mut p = match process {
            Some(p) => p,
            None => {
                let mut p = spec.process().clone().context("the spec has no process")?;
                if change.args.is_empty() {
                    bail!("exec needs a command to run (or --process)");
                }
                p.set_args(Some(change.args.clone()));
                let mut env = p.env().clone().unwrap_or_default();
                env.extend(change.env.iter().cloned());
                p.set_env(Some(env));
                if let Some(c) = &change.cwd {
                    p.set_cwd(c.into());
                }
                if let Some(u) = &change.user {
                    let (uid, gid) = match u.split_once(':') {
                        Some((u, g)) => (u.parse(), g.parse()),
                        None => (u.parse(), Ok(0)),
                    };
                    let (Ok(uid), Ok(gid)) = (uid, gid) else {
                        bail!("invalid --user `{u}`: expected UID[:GID] by number");
                    };
                    let mut user = p.user().clone();
                    user.set_uid(uid);
                    user.set_gid(gid);
                    user.set_additional_gids(None);
                    p.set_user(user);
                }
                p.set_terminal(Some(change.tty));
                p
            }
        };
        if p.cwd().as_os_str().is_empty() {
            p.set_cwd("/".into());
        }
        spec.set_process(Some(p));
        let mut process = oci::process(&spec)?;
        if let oci::User::Numeric { uid, gid, groups } = process.user {
            process.user = oci::User::Exact { uid, gid, groups };
        }
        let ns = oci::namespaces(&spec)?;
        let tty = process.terminal;
        let cmd = process::Command {
            argv: process.args.iter().map(Into::into).collect(),
            hostname: oci::hostname(&spec),
            own_userns: ns.user_maps.is_some(),
            missing_cwd: process::MissingCwd::Fail,
            preserve_fds: 0,
            process,
        };
        let seccomp = super::seccomp_program(&spec, None)?;
        let single_id = fs::read_to_string(format!("/proc/{}/setgroups", st.pid))
            .is_ok_and(|s| s.trim() == "deny");
        let how = super::exec::How {
            tty,
            interactive: true,
            single_id,
            detach,
            null_stdio: false,
            detach_keys: &[],
            watch: None,
        };
        // opened before joining the container's mount namespace, where the path is not ours
        let mut pid_out = pid_file
            .map(|f| {
                fs::File::create(f).with_context(|| format!("create pid file `{}`", f.display()))
            })
            .transpose()?;
        match super::exec::run_in(&format!("`{id}`"), st.pid, &cmd, seccomp.as_deref(), &how)? {
            super::exec::Ran::Exited(code) => Ok(code),
            super::exec::Ran::Detached(pid) => {
                if let Some(f) = &mut pid_out {
                    use std::io::Write;
                    f.write_all(pid.to_string().as_bytes())
                        .context("write the pid file")?;
                }
                Ok(0)
            }
        }
    }

    /// The host pids of the processes in container `id` (its init's pid namespace).
    pub fn pids(&self, id: &str) -> Result<Vec<i32>> {
        let st = self.state(id)?;
        if st.status == "stopped" {
            return Ok(Vec::new());
        }
        let mut p = ns_pids(st.pid);
        if !p.contains(&st.pid) {
            p.push(st.pid);
        }
        p.sort();
        Ok(p)
    }
}

/// What `exec` changes of the container's process when no `--process` is given.
#[derive(Debug, Clone, Default)]
pub struct ExecChange {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: Option<String>,
    /// `UID[:GID]`
    pub user: Option<String>,
    pub tty: bool,
}

/// The launch plan of a bundle's spec.
pub fn plan(spec: &OciSpec, bundle: &Path, o: &CreateOptions) -> Result<Launch> {
    if o.no_pivot {
        bail!("--no-pivot is not supported: rbox always uses pivot_root");
    }
    let root = oci_root(spec, bundle)?;
    if let Some(r) = spec.linux().as_ref().and_then(|l| l.resources().as_ref()) {
        let v = serde_json::to_value(r).unwrap_or_default();
        let asked: Vec<&String> = v
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(k, v)| *k != "devices" && !v.is_null())
            .map(|(k, _)| k)
            .collect();
        let applied = super::cgroup::host_root()
            || super::cgroup::delegated(&super::cgroup::v2_needed(r)).is_some();
        if !asked.is_empty() && !applied {
            tracing::warn!(
                "{} (linux.resources: {})",
                super::cgroup::rootless_warning(),
                asked
                    .iter()
                    .map(|k| k.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
    unsupported(spec)?;
    // bind sources relative to the bundle, as runc and crun read them
    let mut spec = spec.clone();
    if let Some(ms) = spec.mounts().clone() {
        let ms = ms
            .into_iter()
            .map(|mut m| {
                if let Some(s) = m.source().clone().filter(|s| s.is_relative()) {
                    let bind = m.typ().as_deref() == Some("bind")
                        || m.options()
                            .iter()
                            .flatten()
                            .any(|o| o == "bind" || o == "rbind");
                    if bind {
                        m.set_source(Some(bundle.join(s)));
                    }
                }
                m
            })
            .collect();
        spec.set_mounts(Some(ms));
    }
    let ops = oci::mount_ops(&spec, Rootfs::Dir(root.clone()))?;
    let mut process = oci::process(&spec)?;
    if let oci::User::Numeric { uid, gid, groups } = process.user {
        process.user = oci::User::Exact { uid, gid, groups };
    }
    let ns = oci::namespaces(&spec)?;
    let ops = if ns.own_mounts() {
        ops
    } else {
        // the runtime's mount namespace (or a joined one) stays as it is for its other
        // processes: no propagation change on `/`, and chroot where pivot_root would move
        // every process's root
        ops.into_iter()
            .filter(|o| *o != super::mounts::Op::PrivateAll)
            .map(|o| match o {
                super::mounts::Op::Pivot => super::mounts::Op::Chroot,
                o => o,
            })
            .collect()
    };
    let hostname = oci::hostname(&spec);
    // a uts namespace joined by path is the container's: its hostname is set there (runc's
    // and crun's reading); the runtime's own is never changed
    if !hostname.is_empty() && ns.flags & libc::CLONE_NEWUTS == 0 && !ns.joins(libc::CLONE_NEWUTS) {
        bail!("the spec sets a hostname but has no uts namespace of its own");
    }
    let root_user = nix::unistd::geteuid().is_root();
    if !root_user && !ns.own_mounts() {
        bail!(
            "the spec has no mount namespace of its own: as an unprivileged user, rbox mounts the \
             container's root only in one it creates"
        );
    }
    if !root_user && ns.user_maps.is_none() {
        bail!(
            "the spec has no user namespace: as an unprivileged user, add one with uidMappings and \
             gidMappings (`rbox oci spec --rootless` writes such a spec)"
        );
    }
    // Rootless, the kernel lets a process write only a map of its own ids (with setgroups
    // denied); anything else goes through newuidmap/newgidmap and /etc/subuid.
    let (uid, gid) = (
        nix::unistd::geteuid().as_raw(),
        nix::unistd::getegid().as_raw(),
    );
    let own_only = |map: &str, id: u32| {
        let lines: Vec<&str> = map.lines().collect();
        lines.len() == 1
            && lines[0]
                .split_whitespace()
                .nth(1)
                .and_then(|h| h.parse::<u32>().ok())
                == Some(id)
            && lines[0].split_whitespace().nth(2) == Some("1")
    };
    let (map_helpers, single_id) = match &ns.user_maps {
        Some((u, g)) if !root_user => {
            let own = own_only(u, uid) && own_only(g, gid);
            (!own, own)
        }
        Some(_) => (false, false),
        None => (
            false,
            fs::read_to_string("/proc/self/setgroups").is_ok_and(|s| s.trim() == "deny"),
        ),
    };
    let join_net = ns.join_net.as_deref().map(netshare::open).transpose()?;
    let joins = ns
        .join
        .iter()
        .map(|(p, t)| {
            fs::File::open(p)
                .map(|f| (f, *t))
                .with_context(|| format!("open namespace `{}`", p.display()))
        })
        .collect::<Result<Vec<_>>>()?;
    let seccomp = super::seccomp_program(&spec, None)?;
    let start_hooks = spec
        .hooks()
        .as_ref()
        .and_then(|h| h.start_container().clone())
        .unwrap_or_default();
    let create_hooks = spec
        .hooks()
        .as_ref()
        .and_then(|h| h.create_container().clone())
        .unwrap_or_default();
    let command = process::Command {
        argv: process.args.iter().map(Into::into).collect(),
        hostname: hostname.clone(),
        own_userns: ns.user_maps.is_some(),
        missing_cwd: process::MissingCwd::Create,
        preserve_fds: o.preserve_fds,
        process,
    };
    Ok(Launch {
        command,
        hostname,
        init: false,
        // the runtime's stdio is the container's, stdin included
        interactive: true,
        ops,
        target: root,
        single_id,
        own_net: ns.own_net,
        join_net,
        stdio: None,
        winsize: None,
        seccomp,
        clone_flags: ns.flags,
        joins,
        map_helpers,
        start_fifo: None,
        mount_failure_code: crate::exit::FAILED,
        state_dir: None,
        start_hooks,
        create_hooks,
        become_root: ns.user_maps.is_some(),
        user_maps: ns.user_maps,
        fuse_socket: None,
        fakeroot_chown: false,
        nested_maps: None,
        pre_net: None,
    })
}

/// A spec without a user namespace, run by an unprivileged user, gets one as crun gives it:
/// container root is the caller, and ids 1.. come from its /etc/subuid and /etc/subgid ranges
/// where it has them (else root is the only id).
fn add_rootless_userns(spec: &mut OciSpec, uid: u32, gid: u32, mode: &userns::Mode) {
    use oci_spec::runtime::{LinuxIdMappingBuilder, LinuxNamespaceBuilder, LinuxNamespaceType};
    let Some(mut linux) = spec.linux().clone() else {
        return;
    };
    let mut nss = linux.namespaces().clone().unwrap_or_default();
    if nss.iter().any(|n| n.typ() == LinuxNamespaceType::User) {
        return;
    }
    let map = |own: u32, range: Option<userns::SubRange>| {
        let one = |c: u32, h: u32, n: u32| {
            LinuxIdMappingBuilder::default()
                .container_id(c)
                .host_id(h)
                .size(n)
                .build()
                .expect("all fields set")
        };
        let mut m = vec![one(0, own, 1)];
        if let Some(r) = range {
            m.push(one(1, r.start, r.count));
        }
        m
    };
    let (ur, gr) = match mode {
        userns::Mode::SubIds { uid, gid } => (Some(*uid), Some(*gid)),
        _ => (None, None),
    };
    nss.push(
        LinuxNamespaceBuilder::default()
            .typ(LinuxNamespaceType::User)
            .build()
            .expect("type set"),
    );
    linux.set_namespaces(Some(nss));
    linux.set_uid_mappings(Some(map(uid, ur)));
    linux.set_gid_mappings(Some(map(gid, gr)));
    spec.set_linux(Some(linux));
}

/// Spec fields rbox does not apply: refused where ignoring them would break what the bundle
/// relies on (mount propagation back to the host), a warning where the container only loses
/// a restriction or a tuning the host may not offer anyway (LSM labels, as crun on a host
/// without that LSM).
/// The container's cgroup path and resources, where it gets a cgroup: as root when the spec
/// names a cgroup or asks for resources (the default path `/rbox/ID`); rootless when it asks
/// for limits and a cgroup v2 subtree is delegated (the path is then the child's name).
fn cgroup_of(spec: &OciSpec, id: &str) -> Option<(String, oci_spec::runtime::LinuxResources)> {
    let linux = spec.linux().as_ref()?;
    let mut r = linux.resources().clone().unwrap_or_default();
    // the spec's own device nodes stay usable (and may be made) under its device rules, as
    // runc and crun allow them
    if let Some(rules) = r.devices().clone().filter(|d| !d.is_empty()) {
        let mut rules = rules;
        use oci_spec::runtime::LinuxDeviceType as T;
        for d in linux.devices().iter().flatten() {
            // a FIFO is no device to the cgroup; `u` is a character device
            let typ = match d.typ() {
                T::B => T::B,
                T::C | T::U => T::C,
                _ => continue,
            };
            let mut rule = oci_spec::runtime::LinuxDeviceCgroup::default();
            rule.set_allow(true);
            rule.set_typ(Some(typ));
            rule.set_major(Some(d.major()));
            rule.set_minor(Some(d.minor()));
            rule.set_access(Some("rwm".into()));
            rules.push(rule);
        }
        r.set_devices(Some(rules));
    }
    if !super::cgroup::host_root() {
        return super::cgroup::asks_limits(&r).then(|| (format!("rbox-{id}"), r));
    }
    let path = match linux.cgroups_path() {
        Some(p) => {
            let p = p.to_string_lossy();
            // `--systemd-cgroup`'s `slice:prefix:name`, placed as its scope would be
            match p.split(':').collect::<Vec<_>>()[..] {
                [slice, prefix, name] => format!("/{slice}/{prefix}-{name}.scope"),
                _ => p.into_owned(),
            }
        }
        None if linux.resources().is_some() => format!("/rbox/{id}"),
        None => return None,
    };
    Some((path, r))
}

/// Put the init `pid` in its cgroup (see [`cgroup_of`]) and note the cgroup in the state
/// directory `dir` for `delete`.
fn place(dir: &Path, path: &str, r: &oci_spec::runtime::LinuxResources, pid: i32) -> Result<()> {
    let p = if super::cgroup::host_root() {
        super::cgroup::Placement::create(path, r, pid)?
    } else {
        match super::cgroup::delegated(&super::cgroup::v2_needed(r)) {
            Some(d) => super::cgroup::create_delegated(&d, path, r, pid)?,
            None => return Ok(()),
        }
    };
    let f = dir.join("cgroup");
    if let Err(e) = fs::write(&f, p.to_text()) {
        p.remove();
        bail!("write `{}`: {e}", f.display());
    }
    Ok(())
}

/// Remove the cgroup noted in the state directory `dir`, if any.
fn remove_cgroup(dir: &Path) {
    if let Ok(text) = fs::read_to_string(dir.join("cgroup")) {
        super::cgroup::Placement::from_text(&text).remove();
    }
}

/// A container in the runtime's own mount namespace (the spec has none) makes its mounts
/// there: the root's bind and everything under it. Note the mount at `root` before (its id,
/// `-` when none) in the state directory `dir`, for [`release_mounts`].
fn note_host_mounts(dir: &Path, root: &Path) -> Result<()> {
    let root = fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
    let before = top_mount_id(&root).map_or("-".to_string(), |id| id.to_string());
    let f = dir.join("host-mounts");
    fs::write(&f, format!("{}\n{before}\n", root.display()))
        .with_context(|| format!("write `{}`", f.display()))
}

/// Detach what a container without a mount namespace of its own mounted at its root (see
/// [`note_host_mounts`]), once: only when the mount there is not the one noted before.
fn release_mounts(dir: &Path) {
    let Ok(text) = fs::read_to_string(dir.join("host-mounts")) else {
        return;
    };
    let Some((root, before)) = text.trim_end_matches('\n').rsplit_once('\n') else {
        return;
    };
    let root = Path::new(root);
    let Some(now) = top_mount_id(root) else {
        return;
    };
    if now.to_string() != before {
        if let Err(e) = nix::mount::umount2(root, nix::mount::MntFlags::MNT_DETACH) {
            tracing::warn!("unmount `{}`: {e}", root.display());
        }
    }
}

/// The id of the topmost mount at `path` in this mount namespace, if `path` is a mount point.
fn top_mount_id(path: &Path) -> Option<u64> {
    // mountinfo writes space, tab, newline and backslash as octal escapes
    let mut want = String::new();
    for c in path.to_string_lossy().chars() {
        match c {
            ' ' | '\t' | '\n' | '\\' => want.push_str(&format!("\\{:03o}", c as u32)),
            c => want.push(c),
        }
    }
    let info = fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines()
        .rev()
        .filter(|l| l.split(' ').nth(4) == Some(want.as_str()))
        .find_map(|l| l.split(' ').next()?.parse().ok())
}

fn unsupported(spec: &OciSpec) -> Result<()> {
    oci_version(spec.version())?;
    let v = serde_json::to_value(spec).unwrap_or_default();
    // every mount is made private first, so a shared root is a peer group of the container's
    // own mount namespace: nothing propagates to or from the host
    match v["linux"]["rootfsPropagation"].as_str() {
        None | Some("") => {}
        Some(p) if oci::propagation_flags(p).is_some() => {}
        Some(p) => bail!("linux.rootfsPropagation `{p}` is not a mount propagation"),
    }
    let ignored = [
        ("process", "apparmorProfile"),
        ("process", "selinuxLabel"),
        ("process", "ioPriority"),
        ("process", "scheduler"),
        ("process", "execCPUAffinity"),
        ("linux", "mountLabel"),
        ("linux", "intelRdt"),
        ("linux", "timeOffsets"),
    ];
    for (section, field) in ignored {
        let f = &v[section][field];
        if !f.is_null() && f != "" {
            tracing::warn!("{section}.{field} is not applied by rbox");
        }
    }
    Ok(())
}

/// A spec's `ociVersion` (config.md: SemVer v2.0.0, the runtime spec's version the bundle
/// complies with): rbox runs those of major version 1; anything else is refused (config.md,
/// "valid values": an invalid value MUST be an error), as crun refuses it.
fn oci_version(v: &str) -> Result<()> {
    let core = v.split_once('+').map_or(v, |(c, _)| c);
    let (core, pre) = match core.split_once('-') {
        Some((c, p)) => (c, Some(p)),
        None => (core, None),
    };
    let number = |n: &str| {
        !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) && (n == "0" || !n.starts_with('0'))
    };
    let parts: Vec<&str> = core.split('.').collect();
    let semver = parts.len() == 3
        && parts.iter().all(|p| number(p))
        && pre.is_none_or(|p| {
            p.split('.')
                .all(|i| !i.is_empty() && i.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
        });
    if !semver {
        bail!("the spec's ociVersion `{v}` is not a SemVer version");
    }
    if parts[0] != "1" {
        bail!("the spec's ociVersion `{v}` is not supported: rbox runs specs of version 1.x");
    }
    Ok(())
}

/// The bundle's root filesystem (`root.path`, relative to the bundle).
fn oci_root(spec: &OciSpec, bundle: &Path) -> Result<PathBuf> {
    let root = spec
        .root()
        .as_ref()
        .context("the spec has no root filesystem")?;
    let p = bundle.join(root.path());
    fs::canonicalize(&p).with_context(|| format!("open root filesystem `{}`", p.display()))
}

fn open_path(p: &Path) -> Result<OwnedFd> {
    let f = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH)
        .open(p)
        .with_context(|| format!("open `{}`", p.display()))?;
    Ok(f.into())
}

fn state_json(st: &State) -> Result<Vec<u8>> {
    serde_json::to_vec(st).context("serialise the container state")
}

/// The state file, replaced atomically.
fn write_state(dir: &Path, st: &State) -> Result<()> {
    #[derive(Serialize)]
    struct Stored<'a> {
        #[serde(flatten)]
        st: &'a State,
        #[serde(rename = "startTime")]
        start_time: u64,
    }
    let text = serde_json::to_vec(&Stored {
        st,
        start_time: st.start_time,
    })?;
    let tmp = dir.join("state.json.tmp");
    fs::write(&tmp, text).with_context(|| format!("write `{}`", tmp.display()))?;
    fs::rename(&tmp, dir.join("state.json"))
        .with_context(|| format!("write `{}`", dir.join("state.json").display()))
}

fn write_pid_file(p: &Path, pid: i32) -> Result<()> {
    let tmp = p.with_extension("tmp-rbox");
    fs::write(&tmp, pid.to_string()).with_context(|| format!("write `{}`", tmp.display()))?;
    fs::rename(&tmp, p).with_context(|| format!("write pid file `{}`", p.display()))
}

fn start_time(pid: i32) -> Option<u64> {
    crate::state::proc_start_time(pid)
}

/// Whether `pid` is still the init started at `start` (not exited, not a reused pid).
fn alive(pid: i32, start: u64) -> bool {
    pid > 0 && matches!(start_time(pid), Some(s) if start == 0 || s == start)
}

/// Every process in the pid namespace whose init is `pid` (just `pid` when it shares its
/// pid namespace with rbox).
fn ns_pids(pid: i32) -> Vec<i32> {
    let ns = |p: &str| {
        fs::metadata(format!("/proc/{p}/ns/pid"))
            .ok()
            .map(|m| (m.dev(), m.ino()))
    };
    let theirs = ns(&pid.to_string());
    if theirs.is_none() || theirs == ns("self") {
        return vec![pid];
    }
    fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|p| ns(&p.to_string()) == theirs)
        .collect()
}

/// SIGKILL the container's processes and wait (up to 10 s) until its init is gone.
fn kill_and_wait(st: &State) -> Result<()> {
    let pidfd = sys::pidfd_open(st.pid);
    for p in ns_pids(st.pid) {
        let _ = nix::sys::signal::kill(Pid::from_raw(p), Signal::SIGKILL);
    }
    let _ = nix::sys::signal::kill(Pid::from_raw(st.pid), Signal::SIGKILL);
    if let Ok(fd) = pidfd {
        use nix::poll::{PollFd, PollFlags, PollTimeout};
        let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
        let _ = nix::poll::poll(&mut fds, PollTimeout::from(10_000u16));
    }
    Ok(())
}

/// Wait for the container's init (our child), forwarding the signals rbox blocked for it.
fn wait_forwarding(pid: Pid) -> u8 {
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    let set = container::forwarded();
    loop {
        match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => {}
            Ok(st) => return exit::from_wait(st),
            Err(_) => return exit::FAILED,
        }
        let Ok(sig) = super::sys::sigwait(&set) else {
            continue;
        };
        if sig != libc::SIGCHLD && sig != libc::SIGWINCH {
            let _ = super::sys::kill(pid.as_raw(), sig);
        }
    }
}

/// Hand the terminal master to whoever listens on `sock` (`--console-socket`), as runc and
/// crun do: one message with the descriptor.
fn send_console(sock: &Path, pty: OwnedFd) -> Result<()> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    let s = std::os::unix::net::UnixStream::connect(sock)
        .with_context(|| format!("connect to console socket `{}`", sock.display()))?;
    let fds = [pty.as_raw_fd()];
    let iov = [std::io::IoSlice::new(b"/dev/ptmx")];
    sendmsg::<()>(
        s.as_raw_fd(),
        &iov,
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .with_context(|| format!("send the terminal to `{}`", sock.display()))?;
    Ok(())
}

fn now_rfc3339() -> String {
    crate::state::now_rfc3339()
}

/// A runtime spec for `rbox oci spec`: `sh` in `rootfs`, as `crun spec` writes one;
/// `rootless` adds a user namespace mapping the caller's uid and gid to 0 and binds /sys
/// instead of mounting sysfs.
pub fn example_spec(rootless: bool) -> Result<OciSpec> {
    let (uid, gid) = (
        nix::unistd::geteuid().as_raw(),
        nix::unistd::getegid().as_raw(),
    );
    let ns = |t: &str| serde_json::json!({ "type": t });
    let mut namespaces = vec![
        ns("pid"),
        ns("network"),
        ns("ipc"),
        ns("uts"),
        ns("mount"),
        ns("cgroup"),
    ];
    let caps = serde_json::json!(["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]);
    let mut mounts = vec![
        serde_json::json!({"destination": "/proc", "type": "proc", "source": "proc"}),
        serde_json::json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
            "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        serde_json::json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts",
        "options": if rootless {
            serde_json::json!(["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"])
        } else {
            serde_json::json!(["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"])
        }}),
        serde_json::json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
            "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
        serde_json::json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
            "options": ["nosuid", "noexec", "nodev"]}),
    ];
    if rootless {
        mounts.push(
            serde_json::json!({"destination": "/sys", "type": "none", "source": "/sys",
            "options": ["rbind", "nosuid", "noexec", "nodev", "ro"]}),
        );
        namespaces.push(ns("user"));
    } else {
        mounts.push(
            serde_json::json!({"destination": "/sys", "type": "sysfs", "source": "sysfs",
            "options": ["nosuid", "noexec", "nodev", "ro"]}),
        );
    }
    mounts.push(
        serde_json::json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
        "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}),
    );
    let mut linux = serde_json::json!({
        "namespaces": namespaces,
        "maskedPaths": super::mounts::MASKED,
        "readonlyPaths": super::mounts::READONLY,
    });
    if rootless {
        linux["uidMappings"] = serde_json::json!([{"containerID": 0, "hostID": uid, "size": 1}]);
        linux["gidMappings"] = serde_json::json!([{"containerID": 0, "hostID": gid, "size": 1}]);
    }
    let spec = serde_json::json!({
        "ociVersion": OCI_VERSION,
        "process": {
            "terminal": true,
            "user": {"uid": 0, "gid": 0},
            "args": ["sh"],
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"],
            "cwd": "/",
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": true
        },
        "root": {"path": "rootfs", "readonly": true},
        "hostname": "rbox",
        "mounts": mounts,
        "linux": linux,
    });
    serde_json::from_value(spec).context("build the example spec")
}

/// Whether process `pid` is stopped (or gone): the state field of /proc/PID/stat.
fn stopped(pid: i32) -> bool {
    let Ok(s) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return true;
    };
    s.rfind(')')
        .and_then(|i| s[i + 1..].split_whitespace().next())
        .is_none_or(|state| state == "T" || state == "t")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_mount_id_names_mount_points_only() {
        assert!(top_mount_id(Path::new("/")).is_some());
        let d = tempfile::tempdir().unwrap();
        assert_eq!(top_mount_id(&d.path().join("not mounted")), None);
    }

    #[test]
    fn oci_version_is_semver_of_major_1() {
        for ok in ["1.0.0", "1.0.2-dev", "1.1.0", "1.2.1+build.5", "1.3.0-rc.1"] {
            oci_version(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in [
            "invalid", "", "1.0", "1.0.0.0", "01.0.0", "1.0.x", "1.0.0-", "2.0.0", "0.9.0",
        ] {
            let e = oci_version(bad).unwrap_err().to_string();
            assert!(e.contains(&format!("`{bad}`")), "{bad}: {e}");
        }
    }

    #[test]
    fn root_propagation_is_a_mount_propagation() {
        let mut spec = example_spec(false).unwrap();
        unsupported(&spec).unwrap();
        for (p, ok) in [
            ("rprivate", true),
            ("rslave", true),
            ("rshared", true),
            ("unbindable", true),
            ("sideways", false),
        ] {
            let mut l = spec.linux().clone().unwrap();
            l.set_rootfs_propagation(Some(p.into()));
            spec.set_linux(Some(l));
            assert_eq!(unsupported(&spec).is_ok(), ok, "{p}");
        }
    }

    #[test]
    fn ids_as_runc_takes_them() {
        for ok in ["a", "web-1", "x_y.z+1", "0123abc"] {
            check_id(ok).unwrap();
        }
        for bad in ["", ".", "..", "a/b", "a b", "é"] {
            assert!(check_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_example_spec_plans() {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir(d.path().join("rootfs")).unwrap();
        for rootless in [false, true] {
            let spec = example_spec(rootless).unwrap();
            let ns = oci::namespaces(&spec).unwrap();
            assert_eq!(ns.user_maps.is_some(), rootless);
            let ops = oci::mount_ops(&spec, Rootfs::Dir("/r".into())).unwrap();
            // the default devices are bound after /dev
            assert!(ops.iter().any(
                |o| matches!(o, super::super::mounts::Op::Bind { inside, .. } if inside == "/dev/null")
            ));
            oci::process(&spec).unwrap();
        }
    }

    #[test]
    fn a_live_process_is_alive_until_its_pid_is_reused() {
        let me = std::process::id() as i32;
        let start = start_time(me).unwrap();
        assert!(alive(me, start));
        assert!(!alive(me, start + 1));
        assert!(!alive(0, 0));
    }
}
