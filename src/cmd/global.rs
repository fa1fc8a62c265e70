//! Podman's global options that rbox accepts only in part: `--runtime`, `--runtime-flag`,
//! `--events-backend`, `--cgroup-manager`, `--storage-driver`, `--storage-opt`, and
//! `--noout`. Each value is judged here by a pure function (the ones that mean something to
//! rbox pass, the others are refused in one line that says what to use instead), before
//! anything touches the store.
//! What the accepted ones decide goes into the [`crate::context::Context`].

use std::path::Path;

use anyhow::{bail, Result};

use crate::cli::{Command, GlobalArgs};

/// Refuse the global options rbox cannot honour.
pub fn check(g: &GlobalArgs) -> Result<()> {
    if let Some(r) = &g.runtime {
        check_runtime(r)?;
    }
    if let Some(f) = g.runtime_flag.first() {
        bail!(
            "unsupported runtime flag `{f}`: rbox is its own OCI runtime and takes no runtime \
             flags; drop --runtime-flag"
        );
    }
    if let Some(b) = &g.events_backend {
        events_backend(b)?;
        if b == "none" {
            crate::events::disable();
        }
    }
    if let Some(m) = &g.cgroup_manager {
        cgroup_manager(m)?;
    }
    for o in &g.storage_opt {
        storage_opt(o)?;
    }
    // refused by every command, as Podman refuses it before opening its store (it was
    // judged only when a container was made)
    if let Some(d) = &g.storage_driver {
        d.parse::<rbox_storage::Driver>()?;
    }
    Ok(())
}

/// `--runtime` (and `system migrate --new-runtime`): only rbox itself.
pub fn check_runtime(value: &str) -> Result<()> {
    runtime(value, std::env::current_exe().ok().as_deref())
}

/// `--runtime`: `rbox`, or a path that is this very binary.
fn runtime(value: &str, me: Option<&Path>) -> Result<()> {
    if value == "rbox" {
        return Ok(());
    }
    let same = |p: &Path| {
        let canon = |p: &Path| std::fs::canonicalize(p).ok();
        canon(p).is_some() && canon(p) == me.and_then(canon)
    };
    if value.contains('/') && same(Path::new(value)) {
        return Ok(());
    }
    bail!(
        "unsupported OCI runtime `{value}`: rbox is its own runtime and cannot run containers \
         with another; drop --runtime (or pass --runtime rbox)"
    )
}

/// `--events-backend`: file and none; journald refused; anything else in Podman's words.
fn events_backend(value: &str) -> Result<()> {
    match value {
        "file" | "none" => Ok(()),
        "journald" => bail!(
            "unsupported events backend `journald`: rbox writes no journal; use \
             --events-backend file or none"
        ),
        v => bail!("configuring runtime: {v:?} is not a valid events backend: invalid argument"),
    }
}

/// `--cgroup-manager`: cgroupfs; systemd refused; anything else in Podman's words.
fn cgroup_manager(value: &str) -> Result<()> {
    match value {
        "cgroupfs" => Ok(()),
        "systemd" => bail!(
            "unsupported cgroup manager `systemd`: rbox does not talk to systemd; use \
             --cgroup-manager cgroupfs"
        ),
        _ => bail!(
            "configuring runtime: cgroup manager must be one of cgroupfs and systemd: invalid argument"
        ),
    }
}

/// `--storage-opt`: "" (clear the configured options) and `overlay.mount_program=PATH` (rbox
/// chooses between kernel overlayfs and its own fallbacks itself, so the program only has to
/// exist).
fn storage_opt(value: &str) -> Result<()> {
    if value.is_empty() {
        return Ok(());
    }
    let (key, v) = value.split_once('=').unwrap_or((value, ""));
    match key {
        "overlay.mount_program" | ".mount_program" if Path::new(v).exists() => {
            tracing::info!(
                "--storage-opt {key}: rbox mounts its overlay itself (kernel overlayfs, else its FUSE overlay, else copy)"
            );
            Ok(())
        }
        "overlay.mount_program" | ".mount_program" => {
            bail!("--storage-opt {key}: `{v}` does not exist")
        }
        _ => bail!(
            "unsupported storage option `{key}`: rbox's drivers (overlay, fuse-overlay, vfs) take only \
             overlay.mount_program; drop --storage-opt"
        ),
    }
}

/// Whether `--noout` must leave stdout alone: a container attached to rbox writes its own
/// output there (as with Podman, whose `--noout run` still shows the container's output).
pub fn attaches_stdout(c: &Command) -> bool {
    match c {
        Command::Run(a) => !a.detach,
        Command::Start(a) => a.attach,
        Command::Exec(_) => true,
        Command::Container(a) => {
            use super::container::ContainerCommand as C;
            match &a.command {
                C::Run(a) => !a.detach,
                C::Start(a) => a.attach,
                C::Exec(_) => true,
                _ => false,
            }
        }
        _ => false,
    }
}

/// `--noout`: from now on this process's standard output is /dev/null.
pub fn silence_stdout() -> Result<()> {
    use std::os::fd::AsFd;
    let null = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/null")
        .map_err(|e| anyhow::anyhow!("open `/dev/null`: {e}"))?;
    nix::unistd::dup2_stdout(null.as_fd()).map_err(|e| anyhow::anyhow!("redirect stdout: {e}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_rbox_is_a_runtime() {
        assert!(runtime("rbox", None).is_ok());
        let e = runtime("crun", None).unwrap_err().to_string();
        assert!(
            e.starts_with("unsupported OCI runtime `crun`: rbox is its own"),
            "{e}"
        );
        let me = std::env::current_exe().unwrap();
        assert!(runtime(me.to_str().unwrap(), Some(&me)).is_ok());
        assert!(runtime("/bin/sh", Some(&me)).is_err());
    }

    #[test]
    fn events_and_cgroups() {
        assert!(events_backend("file").is_ok() && events_backend("none").is_ok());
        assert!(events_backend("journald")
            .unwrap_err()
            .to_string()
            .contains("rbox writes no journal"));
        assert_eq!(
            events_backend("bogus").unwrap_err().to_string(),
            "configuring runtime: \"bogus\" is not a valid events backend: invalid argument"
        );
        assert!(cgroup_manager("cgroupfs").is_ok());
        assert!(cgroup_manager("systemd")
            .unwrap_err()
            .to_string()
            .contains("rbox does not talk to systemd"));
        assert!(cgroup_manager("x")
            .unwrap_err()
            .to_string()
            .contains("must be one of"));
    }

    #[test]
    fn storage_options() {
        assert!(storage_opt("").is_ok());
        assert!(storage_opt("overlay.mount_program=/").is_ok());
        assert!(storage_opt("overlay.mount_program=/nonexistent").is_err());
        let e = storage_opt("overlay.size=10G").unwrap_err().to_string();
        assert!(
            e.starts_with("unsupported storage option `overlay.size`"),
            "{e}"
        );
    }
}
