//! Joining a network namespace that exists (`--network=container:NAME|ID`, `--network=ns:PATH`)
//! instead of creating one: finding it (a container's is its init's, looked up again at each
//! start: a stored pid would go stale), checking that it is one, and having the container's
//! parent enter it before the clone of the init. The parent does the setns, not the init: with
//! `--userns=keep-id` the init is in a nested user namespace and has no privilege over the
//! namespace's owner. It does not own the namespace's life (the target's processes do) nor
//! any helper: a joining container starts none. A start also starts the containers a container
//! `--requires` ([`start_required`]), as the one whose network it joins.

use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};

use super::sys;
use crate::context::Context;
use crate::state::{self, ContainerRecord};

/// A network namespace to join, open.
#[derive(Debug)]
pub struct NetNs {
    pub path: PathBuf,
    fd: File,
}

/// Open the namespace file at `path`, refusing what is not a network namespace.
pub fn open(path: &Path) -> Result<NetNs> {
    let fd = File::open(path)
        .map_err(|e| anyhow::anyhow!("open network namespace `{}`: {e}", path.display()))?;
    match sys::ns_type(&fd) {
        Ok(t) if t == libc::CLONE_NEWNET => Ok(NetNs {
            path: path.to_path_buf(),
            fd,
        }),
        _ => bail!("`{}` is not a network namespace", path.display()),
    }
}

/// The container `name_or_id` whose network another joins (`container:`), in any state: as
/// Podman, a start of the joining container starts it first (see `start_owner`).
pub fn target(g: &Context, name_or_id: &str) -> Result<ContainerRecord> {
    state::lookup(g, name_or_id)
        .with_context(|| format!("look up container `{name_or_id}` to join its network"))
}

/// Start, detached, the containers `rec` depends on when they do not run (Podman starts a
/// container's dependencies with it): those it `--requires`, then the one whose network it
/// joins (`container:`).
pub fn start_owner(g: &Context, store: &rbox_storage::Store, rec: &ContainerRecord) -> Result<()> {
    start_required(g, store, &rec.spec.opts.requires)?;
    if rec.spec.network != state::NetworkMode::Container {
        return Ok(());
    }
    // gone: `of_container` says so
    match state::load(g, &rec.spec.network_options) {
        Ok(owner) => ensure_running(g, store, owner),
        Err(_) => Ok(()),
    }
}

/// Start, detached, each of the containers `ids` (`--requires`) that does not run, with its own
/// dependencies first; one removed since is refused in Podman's words.
pub fn start_required(g: &Context, store: &rbox_storage::Store, ids: &[String]) -> Result<()> {
    for id in ids {
        let Ok(dep) = state::load(g, id) else {
            bail!("container {id} is required but does not exist: no such container");
        };
        if state::is_running(&dep) {
            continue;
        }
        start_owner(g, store, &dep)?;
        let dep = super::create::users_start(g, dep)?;
        let name = dep.name.clone();
        super::monitor::start_detached(g, store, dep)
            .with_context(|| format!("start container {name}, which this one requires"))?;
    }
    Ok(())
}

/// Start container `owner` detached, unless it runs (and first the one whose network it joins
/// in turn), for a container that joins its network namespace.
pub fn ensure_running(
    g: &Context,
    store: &rbox_storage::Store,
    owner: ContainerRecord,
) -> Result<()> {
    if state::is_running(&owner) {
        return Ok(());
    }
    start_owner(g, store, &owner)?;
    let owner = super::create::users_start(g, owner)?;
    let name = owner.name.clone();
    super::monitor::start_detached(g, store, owner)
        .with_context(|| format!("start container {name}, whose network namespace this one joins"))
}

/// The network namespace of container `id` (`container:ID`), through its init as it runs now.
pub fn of_container(g: &Context, id: &str) -> Result<NetNs> {
    let rec = state::load(g, id)
        .with_context(|| format!("the container {id} whose network this one joins is gone"))?;
    let not_running = || {
        anyhow::anyhow!(
            "container {} is not running: start it before the containers that join its network",
            rec.name
        )
    };
    let (pid, _) = state::live_pids(g, &rec).ok_or_else(not_running)?;
    let start = state::proc_start_time(pid).ok_or_else(not_running)?;
    let ns = open(Path::new(&format!("/proc/{pid}/ns/net")))?;
    // the pid opened must still be the container's init (not a pid reused since)
    if state::proc_start_time(pid) != Some(start) {
        return Err(not_running());
    }
    Ok(ns)
}

/// A namespace held open by the caller (a monitor restarting its container in the namespace
/// of its first run).
pub fn held(fd: File) -> NetNs {
    NetNs {
        path: PathBuf::from("(the container's own network namespace)"),
        fd,
    }
}

impl NetNs {
    /// Move the calling thread into this namespace (setns is per thread; the parent is
    /// single-threaded at clone time).
    pub fn enter(&self) -> Result<()> {
        sys::setns(&self.fd, libc::CLONE_NEWNET).map_err(|e| {
            let hint = if e.raw_os_error() == Some(libc::EPERM) {
                ": it belongs to a user namespace rbox has no privilege over (join a namespace made by this user's rbox or a process in rbox's user namespace)"
            } else {
                ""
            };
            anyhow::anyhow!("join network namespace `{}`: {e}{hint}", self.path.display())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_network_namespaces_open() {
        assert!(open(Path::new("/proc/self/ns/net")).is_ok());
        let e = open(Path::new("/proc/self/ns/uts"))
            .unwrap_err()
            .to_string();
        assert_eq!(e, "`/proc/self/ns/uts` is not a network namespace");
        let e = open(Path::new("/etc/hostname")).unwrap_err().to_string();
        assert_eq!(e, "`/etc/hostname` is not a network namespace");
        let e = format!("{:#}", open(Path::new("/nonexistent/ns")).unwrap_err());
        assert!(
            e.starts_with("open network namespace `/nonexistent/ns`: "),
            "{e}"
        );
    }
}
