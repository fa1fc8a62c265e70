//! `rbox run --join[=KEY]`: one container per KEY, shared by every task that names it, as
//! enroot+pyxis, Charliecloud and podman-hpc give the tasks of a Slurm job step on one node.
//! The first task creates the container (`rbox run -d --init IMAGE sleep infinity`, the same
//! flags otherwise); every task, the first included, then runs its own command in it as
//! `rbox exec` does, so they share its mount, pid, ipc, uts and network namespaces; the last
//! task to end removes it. Without a value, KEY is the Slurm step (`$SLURM_JOB_ID.$SLURM_STEP_ID`).
//!
//! Membership is a shared flock on `join/KEY.members` in the runtime directory, held by each
//! task for as long as it runs: the kernel drops it however the task ends, SIGKILL included.
//! Joining, leaving and removing happen under an exclusive flock on `join/KEY.lock`, which
//! also guards `join/KEY.count`, the tasks that joined and did not leave: the task that
//! brings it to 0 removes the container before it exits. A watcher
//! (`rbox __join-watch`), started with the container, blocks on an exclusive flock on the
//! members file, which it gets once no task holds it; so a container whose tasks were all
//! killed is removed as well, and none is kept forever by a crash.
//!
//! What this module does not do: create or exec itself (the `run` and `exec` paths do).

use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use anyhow::{bail, Context as _, Result};
use nix::fcntl::{Flock, FlockArg};

use super::run::RunArgs;
use crate::context::Context;
use crate::state;

/// The key `--join` names: the value given, else the Slurm job step of the caller.
pub fn resolve_key(given: &str, env: impl Fn(&str) -> Option<String>) -> Result<String> {
    let key = if given.is_empty() {
        match (env("SLURM_JOB_ID"), env("SLURM_STEP_ID")) {
            (Some(j), Some(s)) if !j.is_empty() && !s.is_empty() => format!("{j}.{s}"),
            _ => bail!(
                "--join without a key takes the Slurm job step ($SLURM_JOB_ID.$SLURM_STEP_ID), \
                 which is not set here: give one with --join=KEY"
            ),
        }
    } else {
        given.to_string()
    };
    let ok = key.len() <= 200
        && key
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if !ok {
        bail!(
            "invalid --join key `{key}`: use letters, digits and _ . - (a letter or digit first)"
        );
    }
    Ok(key)
}

/// The name of KEY's container.
pub fn container_name(key: &str) -> String {
    format!("join-{key}")
}

/// The command line that creates KEY's container: the caller's own (`argv`, whose last
/// `command_len` words are the command after IMAGE) without `--join`, detached, named, with
/// an init that keeps it alive until it is removed.
pub fn holder_argv(
    argv: &[OsString],
    command_len: usize,
    image: &str,
    name: &str,
    init: bool,
) -> Result<Vec<OsString>> {
    let image_at = argv
        .len()
        .checked_sub(command_len + 1)
        .filter(|&i| i > 0 && argv[i] == *image)
        .context("find the image in rbox's command line")?;
    let mut out: Vec<OsString> = argv[1..image_at]
        .iter()
        .filter(|w| *w != "--join" && !w.to_string_lossy().starts_with("--join="))
        .cloned()
        .collect();
    out.extend(["-d", "--name", name].map(OsString::from));
    if !init {
        out.push("--init".into());
    }
    out.extend([image, "sleep", "infinity"].map(OsString::from));
    Ok(out)
}

/// `rbox run --join[=KEY] ...`.
pub fn run(g: &Context, a: RunArgs, given: &str) -> Result<ExitCode> {
    let key = resolve_key(given, |k| std::env::var(k).ok())?;
    if a.name.is_some() {
        bail!("--join names the container itself: leave out --name");
    }
    if a.detach {
        bail!("--join runs the command attached: leave out --detach");
    }
    if a.command.is_empty() {
        bail!("--join needs a command to run in the shared container");
    }
    let Some(image) = a.image.clone().filter(|_| a.image_file.is_none()) else {
        bail!("--join runs an image of the store: --image-file is not supported with it");
    };
    let dir = g.runtime_dir()?.join("join");
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .with_context(|| format!("create `{}`", dir.display()))?;
    let name = container_name(&key);
    let files = Files::new(&dir, &key);
    let (member, rec) = {
        let _lock = files.lock()?;
        let mut found = state::lookup(g, &name).ok();
        if let Some(rec) = found.as_ref().filter(|r| live_pid(g, r).is_none()) {
            // a container left by tasks that all died before the watcher saw them go
            remove(g, &rec.name)?;
            found = None;
        }
        let created = found.is_none();
        // membership and the watcher come before the container: a task killed while it is
        // being made must not leave it without a watcher
        let member = files.member()?;
        if created {
            spawn_watcher(g, &key, "")?;
            let argv: Vec<OsString> = std::env::args_os().collect();
            let args = holder_argv(&argv, a.command.len(), &image, &name, a.init)?;
            let out = Command::new(self_exe()?)
                .args(&args)
                .stdin(Stdio::null())
                .stderr(Stdio::inherit())
                .output()
                .context("run rbox to create the shared container")?;
            if !out.status.success() {
                let code = out.status.code().unwrap_or(125);
                return Ok(ExitCode::from(u8::try_from(code).unwrap_or(125)));
            }
            found = Some(state::lookup(g, &name)?);
        }
        let rec = found.context("no shared container")?;
        if live_pid(g, &rec).is_none() {
            bail!("container {name} of --join={key} is not running");
        }
        // a new container starts the count again (one left by killed tasks had its own)
        files.count((!created).then_some(()), 1)?;
        (member, rec)
    };
    // The command runs from a child `rbox exec`: joining the container's namespaces in this
    // process would leave it unable to reach the lock files and rbox when it leaves.
    let mut cmd = Command::new(self_exe()?);
    for (flag, path) in g.explicit_dirs() {
        cmd.arg(flag).arg(path);
    }
    cmd.arg("exec");
    for (flag, on) in [
        ("-t", a.tty),
        ("-i", a.interactive),
        ("--privileged", a.privileged),
    ] {
        if on {
            cmd.arg(flag);
        }
    }
    // each task sees its own Slurm variables (rank, local id), as pyxis passes them
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("SLURM_") {
            cmd.arg("-e").arg(k);
        }
    }
    cmd.arg(&rec.name).args(&a.command);
    let r = exec_forwarding(cmd);
    leave(g, &files, member, &rec);
    r
}

/// Run `cmd` to its end, passing on the signals rbox forwards; its exit code.
fn exec_forwarding(mut cmd: Command) -> Result<ExitCode> {
    use crate::runtime::container::forwarded;
    forwarded().thread_block().context("block signals")?;
    // (the child starts with an empty signal mask: std resets it before exec)
    let child = cmd.spawn().context("run rbox exec")?;
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let status = crate::runtime::attach::wait(pid, None, false)?;
    Ok(ExitCode::from(crate::exit::from_wait(status)))
}

/// The container's init pid while it runs.
fn live_pid(g: &Context, rec: &state::ContainerRecord) -> Option<i32> {
    state::live_pids(g, rec)
        .filter(|_| state::is_running(rec))
        .map(|(p, _)| p)
}

/// Give up membership; the last member removes the container. (The count, not the members
/// flock, says who is last: the watcher may hold that flock for a moment just then.)
fn leave(g: &Context, files: &Files, member: Flock<fs::File>, rec: &state::ContainerRecord) {
    let Ok(_lock) = files.lock() else { return };
    drop(member);
    let last = files.count(Some(()), -1).is_ok_and(|n| n == 0);
    if last && state::lookup(g, &rec.name).is_ok_and(|r| r.id == rec.id) {
        if let Err(e) = remove(g, &rec.name) {
            tracing::warn!("{e:#}");
        }
    }
}

/// `rbox __join-watch KEY ID`: wait until no task of KEY is left, then remove container ID
/// if it is still KEY's (an empty ID: KEY's container, whichever it is).
pub fn watch(g: &Context, key: &str, id: &str) -> Result<ExitCode> {
    let name = container_name(key);
    let files = Files::new(&g.runtime_dir()?.join("join"), key);
    loop {
        // wakes once no member holds the file; let go at once, so that a member leaving
        // (which tests for the same under the lock) is not misled for long
        drop(files.wait_sole()?);
        let _lock = files.lock()?;
        let current = state::lookup(g, &name)
            .ok()
            .filter(|r| id.is_empty() || r.id == id);
        let Some(rec) = current else {
            return Ok(ExitCode::SUCCESS);
        };
        if files.try_sole().is_some() {
            remove(g, &rec.name)?;
            return Ok(ExitCode::SUCCESS);
        }
    }
}

/// Start the watcher of container `id`, in its own process group, with nothing attached.
fn spawn_watcher(g: &Context, key: &str, id: &str) -> Result<()> {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(self_exe()?);
    for (flag, path) in g.explicit_dirs() {
        cmd.arg(flag).arg(path);
    }
    cmd.args(["__join-watch", key, id])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .context("start the watcher of the shared container")?;
    Ok(())
}

/// `rbox rm -f NAME` in a process of its own (it enters rbox's user namespace, which the
/// task that execs into the container must not).
fn remove(g: &Context, name: &str) -> Result<()> {
    let mut cmd = Command::new(self_exe()?);
    for (flag, path) in g.explicit_dirs() {
        cmd.arg(flag).arg(path);
    }
    let out = cmd
        .args(["rm", "-f", "-i", name])
        .stdin(Stdio::null())
        .output()
        .context("run rbox rm")?;
    if !out.status.success() {
        bail!(
            "remove the shared container {name}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

fn self_exe() -> Result<PathBuf> {
    std::env::current_exe().context("find rbox's own executable")
}

/// KEY's lock, members and count files.
struct Files {
    lock: PathBuf,
    members: PathBuf,
    count: PathBuf,
}

impl Files {
    fn new(dir: &Path, key: &str) -> Files {
        Files {
            lock: dir.join(format!("{key}.lock")),
            members: dir.join(format!("{key}.members")),
            count: dir.join(format!("{key}.count")),
        }
    }

    /// Add `delta` to the count of members that joined and have not left (under the lock),
    /// starting from what the file says (`Some(_)`) or from 0 (`None`); the new count.
    fn count(&self, from_file: Option<()>, delta: i64) -> Result<i64> {
        let old = match from_file {
            Some(()) => fs::read_to_string(&self.count)
                .ok()
                .and_then(|t| t.trim().parse::<i64>().ok())
                .unwrap_or(0),
            None => 0,
        };
        let n = (old + delta).max(0);
        fs::write(&self.count, format!("{n}\n"))
            .with_context(|| format!("write `{}`", self.count.display()))?;
        Ok(n)
    }

    fn open(p: &Path) -> Result<fs::File> {
        fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC)
            .open(p)
            .with_context(|| format!("open `{}`", p.display()))
    }

    fn flock(p: &Path, how: FlockArg) -> Result<Flock<fs::File>> {
        Flock::lock(Self::open(p)?, how)
            .map_err(|(_, e)| anyhow::anyhow!("lock `{}`: {e}", p.display()))
    }

    /// The exclusive lock every join, leave and removal takes.
    fn lock(&self) -> Result<Flock<fs::File>> {
        Self::flock(&self.lock, FlockArg::LockExclusive)
    }

    /// Membership: a shared lock on the members file, for the task's life.
    fn member(&self) -> Result<Flock<fs::File>> {
        Self::flock(&self.members, FlockArg::LockShared)
    }

    /// The members file locked exclusively when no member is left, else `None`.
    fn try_sole(&self) -> Option<Flock<fs::File>> {
        Self::flock(&self.members, FlockArg::LockExclusiveNonblock).ok()
    }

    /// Block until no member is left.
    fn wait_sole(&self) -> Result<Flock<fs::File>> {
        Self::flock(&self.members, FlockArg::LockExclusive)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn key_defaults_to_the_slurm_step() {
        let env = |k: &str| match k {
            "SLURM_JOB_ID" => Some("42".to_string()),
            "SLURM_STEP_ID" => Some("0".to_string()),
            _ => None,
        };
        assert_eq!(resolve_key("", env).unwrap(), "42.0");
        assert_eq!(resolve_key("mine", env).unwrap(), "mine");
        let err = resolve_key("", |_| None).unwrap_err().to_string();
        assert!(err.contains("--join=KEY"), "{err}");
        assert!(resolve_key("../x", env).is_err());
        assert!(resolve_key(".x", env).is_err());
    }

    #[test]
    fn holder_is_the_same_run_detached_without_join() {
        let argv = os(&[
            "rbox", "--root", "/r", "run", "--join=k", "-e", "A=1", "img", "sh", "-c", "x",
        ]);
        let h = holder_argv(&argv, 3, "img", "join-k", false).unwrap();
        assert_eq!(
            h,
            os(&[
                "--root", "/r", "run", "-e", "A=1", "-d", "--name", "join-k", "--init", "img",
                "sleep", "infinity"
            ])
        );
        let argv = os(&["rbox", "run", "--init", "--join", "img", "true"]);
        let h = holder_argv(&argv, 1, "img", "join-x", true).unwrap();
        assert_eq!(
            h,
            os(&["run", "--init", "-d", "--name", "join-x", "img", "sleep", "infinity"])
        );
        assert!(holder_argv(&argv, 1, "other", "n", true).is_err());
    }
}
