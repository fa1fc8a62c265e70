//! `rbox rm`: remove containers: their record and name (`state`), then their layer directory
//! (files owned by mapped ids, so from inside rbox's user namespace). `-f` kills a running one
//! first and waits for it to die through a pidfd, never by sleeping.

use std::os::fd::AsFd;
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context, Result};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use crate::cli::{complete, GlobalArgs};
use crate::runtime;
use crate::state::{self, ContainerRecord};

#[derive(Debug, Clone, clap::Args)]
pub struct RmArgs {
    /// Kill and remove running containers
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Remove all containers
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Remove anonymous volumes too (rbox makes none; accepted for compatibility)
    #[arg(short = 'v', long)]
    pub volumes: bool,
    /// Ignore containers that do not exist
    #[arg(short = 'i', long)]
    pub ignore: bool,
    /// Containers to remove (names or ids)
    #[arg(value_name = "CONTAINER", required_unless_present = "all", add = complete::container_candidates())]
    pub containers: Vec<String>,
}

pub fn run(g: &GlobalArgs, a: RmArgs) -> Result<ExitCode> {
    if a.all && !a.containers.is_empty() {
        bail!("--all and container names cannot be used together");
    }
    let mut errors = Vec::new();
    let mut targets: Vec<(String, ContainerRecord)> = Vec::new();
    if a.all {
        targets = state::list(g)?
            .into_iter()
            .map(|r| (r.id.clone(), r))
            .collect();
    } else {
        for name in &a.containers {
            match state::lookup(g, name) {
                Ok(r) => targets.push((name.clone(), r)),
                Err(_) if a.ignore => {}
                Err(e) => errors.push(format!("{e:#}")),
            }
        }
    }
    // Decide and kill outside the namespace; remove the storage inside it.
    let mut doomed = Vec::new();
    for (shown, rec) in targets {
        match prepare(g, &rec, a.force) {
            Ok(()) => doomed.push((shown, rec)),
            Err(e) => errors.push(format!("{e:#}")),
        }
    }
    if !doomed.is_empty() {
        let store = runtime::open_store(g)?;
        for (shown, rec) in doomed {
            match store.remove_container_dir(&rec.id) {
                Ok(()) | Err(rbox_storage::Error::ContainerNotFound(_)) => println!("{shown}"),
                Err(e) => errors.push(format!("remove storage of container {}: {e}", rec.name)),
            }
        }
    }
    match errors.len() {
        0 => Ok(ExitCode::SUCCESS),
        1 => Err(anyhow!(errors.remove(0))),
        _ => Err(anyhow!(errors.join("; "))),
    }
}

/// Refuse (or with `force`, kill) a running container, then forget its record and name.
/// Called before entering the user namespace: the record, the name and the live state belong
/// to the user, and the runtime directory is found by the real uid.
pub fn prepare(g: &GlobalArgs, rec: &ContainerRecord, force: bool) -> Result<()> {
    if state::is_running(rec) {
        if !force {
            bail!(
                "container {} is running: stop it first or remove it with rbox rm -f {}",
                rec.name,
                rec.name
            );
        }
        kill_and_wait(rec.state.pid).with_context(|| format!("kill container {}", rec.name))?;
    }
    state::remove(g, rec).with_context(|| format!("remove container {}", rec.name))
}

/// SIGKILL the container's init (which takes its whole pid namespace with it) through a pidfd
/// (so a recycled pid is never hit) and wait on that pidfd until it is gone.
fn kill_and_wait(pid: i32) -> Result<()> {
    let Some(p) = rustix::process::Pid::from_raw(pid) else {
        return Ok(());
    };
    let fd = match rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::SRCH) => return Ok(()),
        Err(e) => return Err(std::io::Error::from(e)).context("open a pidfd"),
    };
    match rustix::process::pidfd_send_signal(&fd, rustix::process::Signal::KILL) {
        Ok(()) | Err(rustix::io::Errno::SRCH) => {}
        Err(e) => {
            return Err(std::io::Error::from(e))
                .with_context(|| format!("send SIGKILL to pid {pid}"))
        }
    }
    let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
    loop {
        match poll(&mut fds, PollTimeout::from(10_000u16)) {
            Ok(0) => bail!("pid {pid} is still alive 10 seconds after SIGKILL"),
            Ok(_) => return Ok(()),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e).context("wait for the container to exit"),
        }
    }
}
