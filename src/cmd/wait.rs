//! `rbox wait` (and `container wait`): block until each container reaches one of the
//! conditions (by default: it has stopped) and print its exit code, one line per container,
//! in the order given. Like Podman, every name is looked up before any wait starts; a
//! condition other than stopped/exited prints -1 (no exit code to tell).
//!
//! The wait costs no CPU: while a monitor runs the container (or waits to restart it under its
//! restart policy) this blocks on a pidfd of the monitor, waking at `--interval` to look at the
//! record again; with no process to watch it reads the record at each interval. A container
//! between restarts has not stopped: as in Podman (`--restart=on-failure:2` returns after the
//! last attempt), the code printed is that of the last run.

use std::os::fd::{AsFd, OwnedFd};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Result};

use crate::cli::complete;
use crate::context::Context;
use crate::runtime::sys;
use crate::state::{self, ContainerRecord, Status};

#[derive(Debug, Clone, clap::Args)]
pub struct WaitArgs {
    /// Condition to wait on: stopped (the default; also exited), running, created; paused,
    /// removing and unknown are accepted and never met
    #[arg(long, value_name = "STATE", value_delimiter = ',')]
    pub condition: Vec<String>,
    /// How often to look at a container's state when there is no process to watch: a
    /// duration such as 250ms or 2s, or a number of milliseconds
    #[arg(short = 'i', long, value_name = "DURATION", default_value = "250ms")]
    pub interval: String,
    /// Print -1 for a container that does not exist instead of failing
    #[arg(long)]
    pub ignore: bool,
    /// Wait for the container created last
    #[arg(short = 'l', long)]
    pub latest: bool,
    /// Containers to wait for (names or ids)
    #[arg(value_name = "CONTAINER", add = complete::container_candidates())]
    pub containers: Vec<String>,
}

/// What a container is waited for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Condition {
    /// stopped, exited: not running, and no monitor left that would run it again
    Stopped,
    Running,
    Created,
    /// paused, removing, unknown: states Podman names that an rbox container never shows
    Never,
}

fn parse_condition(s: &str) -> Result<Condition> {
    Ok(match s {
        "stopped" | "exited" => Condition::Stopped,
        "running" => Condition::Running,
        "created" => Condition::Created,
        "paused" | "removing" | "unknown" => Condition::Never,
        // Podman's words
        _ => bail!("unknown container state: {s}: invalid argument"),
    })
}

/// `250ms`, `2s`, `1m`; a bare number is milliseconds.
fn parse_interval(s: &str) -> Result<Duration> {
    let d = match s.parse::<u64>() {
        Ok(ms) => Duration::from_millis(ms),
        Err(_) => match humantime::parse_duration(s) {
            Ok(d) => d,
            Err(_) => bail!("invalid interval `{s}`: use a duration such as 250ms or 2s"),
        },
    };
    // a zero interval would spin
    Ok(d.max(Duration::from_millis(1)))
}

pub fn run(g: &Context, a: WaitArgs) -> Result<ExitCode> {
    let mut conditions = a
        .condition
        .iter()
        .map(|c| parse_condition(c))
        .collect::<Result<Vec<_>>>()?;
    if conditions.is_empty() {
        conditions.push(Condition::Stopped);
    }
    if a.containers.is_empty() && !a.latest {
        bail!(
            "\"{}\" requires a name, id, or the \"--latest\" flag",
            crate::cli::typed_path()
        );
    }
    let interval = parse_interval(&a.interval)?;
    // every container first, as Podman does: a wrong name fails before any wait
    let mut ids: Vec<Option<String>> = Vec::new();
    for name in &super::targets::with_latest(g, a.latest, &a.containers, "containers")? {
        match state::lookup(g, name) {
            Ok(r) => ids.push(Some(r.id)),
            Err(_) if a.ignore => ids.push(None),
            Err(e) => return Err(e),
        }
    }
    for id in ids {
        let code = match id {
            Some(id) => wait_one(g, &id, &conditions, interval)?,
            None => -1,
        };
        println!("{code}");
    }
    Ok(ExitCode::SUCCESS)
}

/// Block until container `id` meets one of `conditions`; its exit code, or -1 when the
/// condition met says nothing of one.
fn wait_one(g: &Context, id: &str, conditions: &[Condition], interval: Duration) -> Result<i32> {
    // the monitor last seen, kept open: a record that says exited while it still runs is
    // between two runs of a restart policy
    let mut watched: Option<(i32, Option<OwnedFd>)> = None;
    // whether the last look found no monitor where the record says one should be
    let mut doubted = false;
    loop {
        // the record as its monitor wrote it: until the monitor has recorded the exit it says
        // running, even when the command has just ended
        let Ok(raw) = state::load(g, id) else {
            bail!("container {} was removed while waited for", short(id));
        };
        let monitor = state::live_monitor(g, &raw);
        if let Some(m) = monitor {
            if watched.as_ref().is_none_or(|(p, _)| *p != m) {
                watched = Some((m, sys::pidfd_open(m).ok()));
            }
        }
        let mut settled =
            monitor.is_none() && watched.as_ref().is_none_or(|(_, fd)| gone(fd.as_ref()));
        // No monitor seen yet, and a record that says one runs (running, or exited with its
        // restart policy to run it again): a monitor between its record and its live state
        // (they are two files), or one that was killed. A second look an interval later
        // tells which.
        let expects_monitor = match raw.state.status {
            Status::Running => true,
            Status::Exited => raw
                .spec
                .restart
                .restart_after(raw.state.exit_code.unwrap_or(0), raw.state.restart_count),
            Status::Created => false,
        };
        if settled && watched.is_none() && expects_monitor && !doubted {
            doubted = true;
            settled = false;
        } else {
            doubted = false;
        }
        // with no monitor left, as every reader sees it (a killed monitor's container is
        // recorded as killed)
        let rec = match settled {
            true => state::lookup(g, id).unwrap_or(raw),
            false => raw,
        };
        // a state asked for by name before stopped: a created container is both (podman
        // prints -1 for `--condition=exited --condition=created` on one)
        let named = conditions.iter().filter(|c| **c != Condition::Stopped);
        let stopped = conditions.iter().filter(|c| **c == Condition::Stopped);
        for c in named.chain(stopped) {
            if let Some(code) = met(&rec, *c, settled) {
                return Ok(code);
            }
        }
        match watched.as_ref() {
            Some((_, Some(fd))) if !gone(Some(fd)) => {
                poll(fd, interval);
            }
            _ => std::thread::sleep(interval),
        }
    }
}

/// Whether `rec` meets `c`, and the code to print then. `settled`: no monitor runs it or
/// will run it again.
fn met(rec: &ContainerRecord, c: Condition, settled: bool) -> Option<i32> {
    match (c, rec.state.status) {
        // a created container has stopped too (as in Podman, whose wait prints 0 for one)
        (Condition::Stopped, Status::Exited | Status::Created) if settled => {
            Some(rec.state.exit_code.unwrap_or(0))
        }
        (Condition::Running, Status::Running) | (Condition::Created, Status::Created) => Some(-1),
        _ => None,
    }
}

/// Whether the process behind pidfd `fd` has exited (no pidfd: it could not be opened, so
/// it was already gone).
fn gone(fd: Option<&OwnedFd>) -> bool {
    fd.is_none_or(|fd| poll(fd, Duration::ZERO))
}

/// Wait up to `timeout` for the process behind pidfd `fd` to exit; whether it has.
fn poll(fd: &OwnedFd, timeout: Duration) -> bool {
    use nix::poll::{PollFd, PollFlags, PollTimeout};
    let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    let t = PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX);
    matches!(nix::poll::poll(&mut fds, t), Ok(n) if n > 0)
}

fn short(id: &str) -> &str {
    &id[..12.min(id.len())]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_and_intervals_parse_as_podman_takes_them() {
        assert_eq!(parse_condition("exited").unwrap(), Condition::Stopped);
        assert_eq!(parse_condition("stopped").unwrap(), Condition::Stopped);
        assert_eq!(parse_condition("paused").unwrap(), Condition::Never);
        let e = parse_condition("bogus").unwrap_err().to_string();
        assert!(e.starts_with("unknown container state: bogus"), "{e}");
        assert_eq!(parse_interval("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_interval("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_interval("100").unwrap(), Duration::from_millis(100));
        assert_eq!(parse_interval("0").unwrap(), Duration::from_millis(1));
        assert!(parse_interval("bogus").is_err());
    }
}
