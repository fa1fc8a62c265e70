//! Healthchecks (`--health-cmd` and its settings): `rbox healthcheck run` runs the check once
//! in the running container, through `rbox exec` (so it joins the container exactly as exec
//! does), records the result beside the container's record, and takes the container's
//! `--health-on-failure` action when it turns unhealthy. The monitor of a detached container
//! runs it at the interval from a thread of its own ([`Checker`]); there is no systemd timer
//! and no daemon.

use std::fs;
use std::io::{Read, Seek};
use std::path::Path;
use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use serde::{Deserialize, Serialize};

use super::sys;
use crate::context::Context;
use crate::layout;
use crate::state::{self, ContainerRecord, Healthcheck};

/// The results kept (Docker's and Podman's number), and the bytes of output kept of each.
const KEEP: usize = 5;
const OUTPUT_MAX: usize = 4096;

/// A container's health, as `inspect` shows it (`State.Health`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Health {
    /// starting, healthy or unhealthy
    pub status: String,
    pub failing_streak: u32,
    pub log: Vec<Probe>,
}

/// One run of the check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Probe {
    pub start: String,
    pub end: String,
    pub exit_code: i32,
    pub output: String,
}

impl Health {
    fn starting() -> Health {
        Health {
            status: "starting".into(),
            failing_streak: 0,
            log: Vec::new(),
        }
    }
}

/// The health recorded for container `id` in the store at `root` (none before its first start
/// with a healthcheck).
pub fn load(root: &Path, id: &str) -> Option<Health> {
    serde_json::from_slice(&fs::read(layout::health(root, id)).ok()?).ok()
}

fn save(root: &Path, id: &str, h: &Health) -> Result<()> {
    let p = layout::health(root, id);
    // one temporary per writer: the monitor's timer and a user's `healthcheck run` may save
    // at the same moment
    let tmp = p.with_extension(format!("json.{}.tmp", std::process::id()));
    fs::write(&tmp, serde_json::to_vec(h).expect("plain struct"))
        .with_context(|| format!("write `{}`", tmp.display()))?;
    fs::rename(&tmp, &p).with_context(|| format!("rename `{}`", p.display()))
}

/// Holds an exclusive flock on `health.json.lock` beside the health file until dropped; none
/// when the lock file cannot be opened (the update is then unserialised, as before).
fn lock(root: &Path, id: &str) -> Option<nix::fcntl::Flock<fs::File>> {
    super::exclusive_lock(&layout::health(root, id).with_extension("json.lock"))
}

/// The health of a start: starting, no results.
pub fn reset(root: &Path, id: &str) -> Result<()> {
    save(root, id, &Health::starting())
}

/// The outcome of `rbox healthcheck run`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Healthy,
    Unhealthy,
}

/// Run `rec`'s check once (it must be running), record it and act on it.
pub fn run_once(g: &Context, rec: &ContainerRecord) -> Result<Outcome> {
    let Some(hc) = &rec.spec.healthcheck else {
        bail!("container {} has no defined healthcheck", rec.id);
    };
    if !state::is_running(rec) {
        bail!("container {} is not running", rec.name);
    }
    let root = g.storage_root()?;
    let start = state::now_rfc3339();
    let (exit_code, output) = probe(g, rec, hc)?;
    let probe = Probe {
        start,
        end: state::now_rfc3339(),
        exit_code,
        output,
    };
    // read, update and write under one lock, so two concurrent runs both count
    let lock = lock(&root, &rec.id);
    let mut h = load(&root, &rec.id).unwrap_or_else(Health::starting);
    let in_start_period = started_for(rec) < hc.start_period;
    let was = h.status.clone();
    if exit_code == 0 {
        h.status = "healthy".into();
        h.failing_streak = 0;
    } else if !in_start_period {
        h.failing_streak += 1;
        if h.failing_streak >= hc.retries.max(1) {
            h.status = "unhealthy".into();
        }
    }
    h.log.push(probe);
    if h.log.len() > KEEP {
        h.log.drain(..h.log.len() - KEEP);
    }
    save(&root, &rec.id, &h)?;
    drop(lock);
    if h.status == "unhealthy" && was != "unhealthy" {
        on_failure(g, rec, &hc.on_failure)?;
    }
    Ok(if exit_code == 0 {
        Outcome::Healthy
    } else {
        Outcome::Unhealthy
    })
}

/// How long the container's current run has lasted.
fn started_for(rec: &ContainerRecord) -> Duration {
    humantime::parse_rfc3339_weak(&rec.state.started_at)
        .ok()
        .and_then(|t| std::time::SystemTime::now().duration_since(t).ok())
        .unwrap_or_default()
}

/// Run the check's command in the container with `rbox exec` and its timeout: its exit code
/// (a timeout counts as a failure, as in Podman) and the start of its output.
fn probe(g: &Context, rec: &ContainerRecord, hc: &Healthcheck) -> Result<(i32, String)> {
    let argv: Vec<String> = match hc.test.first().map(String::as_str) {
        Some("CMD-SHELL") => vec!["/bin/sh".into(), "-c".into(), hc.test[1..].join(" ")],
        Some("CMD") => hc.test[1..].to_vec(),
        _ => hc.test.clone(),
    };
    if argv.is_empty() {
        bail!("container {} has an empty healthcheck command", rec.name);
    }
    let exe = std::env::current_exe().context("find the rbox executable")?;
    // output to a memory file: a pipe could fill and stall the check
    let mut out = fs::File::from(
        nix::sys::memfd::memfd_create(c"rbox-health", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)
            .context("create the healthcheck's output file")?,
    );
    let mut cmd = rbox_command(&exe, &g.storage_root()?, &g.runtime_dir()?);
    cmd.args(["exec", &rec.id])
        .args(&argv)
        .stdin(std::process::Stdio::null())
        .stdout(out.try_clone().context("duplicate a descriptor")?)
        .stderr(out.try_clone().context("duplicate a descriptor")?);
    let mut child = cmd.spawn().context("start the healthcheck")?;
    let pidfd = sys::pidfd_open(child.id() as i32).ok();
    let done = match &pidfd {
        Some(fd) => super::control::wait_fd(fd, hc.timeout),
        None => true,
    };
    let code = if done {
        child
            .wait()
            .ok()
            .and_then(|s| s.code())
            .unwrap_or(crate::exit::FAILED as i32)
    } else {
        // its process in the container dies with it (parent-death signal)
        let _ = child.kill();
        let _ = child.wait();
        -1
    };
    let mut text = Vec::new();
    let _ = out.rewind();
    let _ = out.take(OUTPUT_MAX as u64).read_to_end(&mut text);
    let mut output = String::from_utf8_lossy(&text).into_owned();
    if code == -1 {
        output = format!("healthcheck command exceeded timeout of {:?}", hc.timeout);
    }
    Ok((code, output))
}

/// This rbox, run on the store at `root` with the runtime directory `runroot` (a check, or
/// its `exec`, must find the container where the monitor keeps it).
pub fn rbox_command(exe: &Path, root: &Path, runroot: &Path) -> Command {
    let mut c = Command::new(exe);
    c.arg("--root").arg(root).arg("--runroot").arg(runroot);
    c
}

/// `--health-on-failure`: what happens to a container that turned unhealthy.
fn on_failure(g: &Context, rec: &ContainerRecord, action: &str) -> Result<()> {
    match action {
        "kill" => super::signal_container(g, rec, libc::SIGKILL),
        "stop" => super::stop_container(g, rec, rec.spec.opts.stop_timeout()),
        "restart" if state::has_detached_monitor(g, rec) => {
            super::control::restart_in_place(g, rec, rec.spec.opts.stop_timeout())
        }
        _ => Ok(()),
    }
}

/// The monitor's thread that runs the check at its interval while the container runs.
pub struct Checker {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Checker {
    /// Start checking container `id` (of `g`'s store and runtime directory) every
    /// `hc.interval`, the first check one interval after the start. The checks run as
    /// `rbox healthcheck run` processes, so this process (the monitor) stays small.
    pub fn start(g: &Context, id: &str, hc: &Healthcheck) -> Result<Checker> {
        let root = g.storage_root()?;
        reset(&root, id)?;
        let runroot = g.runtime_dir()?;
        let exe = std::env::current_exe().context("find the rbox executable")?;
        let (tx, rx) = mpsc::channel::<()>();
        // `--health-interval=disable`: checks only when the user runs them
        let interval = if hc.interval.is_zero() {
            Duration::MAX
        } else {
            hc.interval
        };
        let id = id.to_string();
        let thread = std::thread::Builder::new()
            .name("rbox-health".into())
            .stack_size(128 << 10)
            .spawn(move || {
                let mut running: Option<std::process::Child> = None;
                loop {
                    let stopped = !matches!(
                        rx.recv_timeout(interval),
                        Err(mpsc::RecvTimeoutError::Timeout)
                    );
                    // one check at a time: one still running skips this turn
                    if let Some(c) = &mut running {
                        if stopped {
                            // the container is gone; so is what the check waited for
                            let _ = c.kill();
                        }
                        if stopped || !matches!(c.try_wait(), Ok(None)) {
                            let _ = c.wait();
                            running = None;
                        }
                    }
                    if stopped {
                        return;
                    }
                    if running.is_some() {
                        continue;
                    }
                    let spawned = rbox_command(&exe, &root, &runroot)
                        .args(["healthcheck", "run", &id])
                        .stdin(std::process::Stdio::null())
                        .stdout(std::process::Stdio::null())
                        .spawn();
                    match spawned {
                        Ok(c) => running = Some(c),
                        Err(e) => tracing::warn!("run the healthcheck: {e}"),
                    }
                }
            })
            .context("start the healthcheck thread")?;
        Ok(Checker {
            stop: Some(tx),
            thread: Some(thread),
        })
    }

    fn shutdown(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Dropping a checker ends the checks (one running now is killed); its thread is gone then.
impl Drop for Checker {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// A Go duration as Podman's flags take them (`30s`, `1m30s`, `500ms`, `2h`); a bare number is
/// seconds.
pub fn parse_duration(s: &str) -> Option<Duration> {
    if let Ok(n) = s.parse::<u64>() {
        return Some(Duration::from_secs(n));
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(rest.len());
        let (num, tail) = rest.split_at(digits);
        let num: f64 = num.parse().ok()?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let secs = match unit {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
        total += Duration::from_secs_f64(num * secs);
        rest = tail;
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(parse_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("2h"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_duration("7"), Some(Duration::from_secs(7)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration(""), None);
        assert_eq!(parse_duration("5x"), None);
        assert_eq!(parse_duration("s"), None);
    }
}
