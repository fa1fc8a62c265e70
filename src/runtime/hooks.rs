//! OCI runtime hooks (`hooks` in a bundle's config.json): each one a program run with the
//! container's state JSON on its stdin, its own `args` (the first is argv[0]) and `env`, killed
//! after its `timeout` seconds. Which process runs which kind, as the runtime spec says:
//! `prestart`, `createRuntime` and `poststart`, `poststop` by `rbox oci` (`bundle`);
//! `createContainer` by the container's init in its namespaces, its mounts made and before
//! pivot_root; `startContainer` by the init after its start, before the exec.

use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use oci_spec::runtime::Hook;

use super::sys;

/// Run `hooks` of `kind` one after another with `state` on stdin; the first that fails (exits
/// non-zero, is killed, or outlives its timeout) stops the rest with the reason.
pub fn run(kind: &str, hooks: &[Hook], state: &[u8]) -> Result<()> {
    for h in hooks {
        one(h, state).with_context(|| format!("run {kind} hook `{}`", h.path().display()))?;
    }
    Ok(())
}

fn one(h: &Hook, state: &[u8]) -> Result<()> {
    let mut c = Command::new(h.path());
    if let Some(args) = h.args() {
        if let Some((first, rest)) = args.split_first() {
            c.arg0(first).args(rest);
        }
    }
    c.env_clear();
    for e in h.env().iter().flatten() {
        if let Some((k, v)) = e.split_once('=') {
            c.env(k, v);
        }
    }
    c.stdin(Stdio::piped());
    let mut child = c.spawn().context("start it")?;
    if let Some(mut stdin) = child.stdin.take() {
        // a hook that does not read its state is fine
        let _ = stdin.write_all(state);
    }
    let timeout = h.timeout().map(|t| Duration::from_secs(t.max(1) as u64));
    let status = match timeout {
        None => child.wait().context("wait for it")?,
        Some(t) => {
            let deadline = Instant::now() + t;
            let pidfd = sys::pidfd_open(child.id() as i32).context("watch it")?;
            loop {
                if let Some(s) = child.try_wait().context("wait for it")? {
                    break s;
                }
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    let _ = child.kill();
                    let _ = child.wait();
                    bail!("it ran longer than its timeout of {}s", t.as_secs());
                }
                let ms = left.as_millis().min(i32::MAX as u128) as i32;
                let mut fds = [nix::poll::PollFd::new(
                    pidfd.as_fd(),
                    nix::poll::PollFlags::POLLIN,
                )];
                let _ = nix::poll::poll(
                    &mut fds,
                    nix::poll::PollTimeout::try_from(ms).unwrap_or(nix::poll::PollTimeout::MAX),
                );
            }
        }
    };
    if !status.success() {
        bail!("it exited with {status}");
    }
    Ok(())
}

/// The OCI hooks of a container that `rbox run`/`start` starts (CDI devices' and the hooks
/// directories', recorded at create), with what their state says: `bundle` is the container's
/// directory, where the state is also written (`state.json`) for the hooks its init runs.
pub struct ForContainer {
    hooks: oci_spec::runtime::Hooks,
    id: String,
    dir: std::path::PathBuf,
    annotations: std::collections::BTreeMap<String, String>,
}

impl ForContainer {
    /// `None` when the container has no hooks.
    pub fn of(rec: &crate::state::ContainerRecord, dir: &std::path::Path) -> Option<ForContainer> {
        let hooks = super::cdi::oci_hooks(&rec.spec.opts.hooks).ok()??;
        Some(ForContainer {
            hooks,
            id: rec.id.clone(),
            dir: dir.to_path_buf(),
            annotations: rec.spec.opts.annotations.clone(),
        })
    }

    /// Run the hooks of `stage` with the state (`pid`, `status`) on their stdin.
    pub fn run(&self, stage: &str, pid: i32, status: &str) -> Result<()> {
        let h = &self.hooks;
        #[allow(deprecated)]
        let list = match stage {
            "prestart" => h.prestart(),
            "createRuntime" => h.create_runtime(),
            "createContainer" => h.create_container(),
            "startContainer" => h.start_container(),
            "poststart" => h.poststart(),
            "poststop" => h.poststop(),
            _ => &None,
        };
        let Some(list) = list.as_deref().filter(|l| !l.is_empty()) else {
            return Ok(());
        };
        let state = self.state(pid, status)?;
        run(stage, list, &state)
    }

    /// The runtime spec's state of the container, also written to `state.json` in its
    /// directory (the init's hooks read it there).
    pub fn state(&self, pid: i32, status: &str) -> Result<Vec<u8>> {
        let st = serde_json::json!({
            "ociVersion": "1.0.2",
            "id": self.id,
            "status": status,
            "pid": pid,
            "bundle": self.dir,
            "annotations": self.annotations,
        });
        let text = serde_json::to_vec(&st).context("serialise the container state")?;
        let path = self.dir.join("state.json");
        std::fs::write(&path, &text).with_context(|| format!("write `{}`", path.display()))?;
        Ok(text)
    }
}
