//! `rbox stats`: resource use of running containers, in Podman's columns (ID NAME CPU % MEM
//! USAGE / LIMIT MEM % NET IO BLOCK IO PIDS CPU TIME AVG CPU %). rbox gives a container no
//! cgroup of its own, so the figures come from /proc of its processes (`runtime::procs`), read
//! from inside rbox's user namespace: CPU from two samples, memory as the sum of their RSS
//! against the host's memory, network from the init's namespace without loopback, block I/O
//! from each process's `io`. A process that exited takes its share with it.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use serde_json::{json, Value};

use super::targets::Latest;
use crate::cli::complete;
use crate::context::Context;
use crate::format::{self, Row};
use crate::runtime::procs;
use crate::state::{self, ContainerRecord};

#[derive(Debug, Clone, clap::Args)]
pub struct StatsArgs {
    /// Show all containers (only the running ones have figures)
    #[arg(short = 'a', long)]
    pub all: bool,
    #[command(flatten)]
    pub latest: Latest,
    /// Print the figures once instead of refreshing them every --interval
    #[arg(long = "no-stream")]
    pub no_stream: bool,
    /// Seconds between two tables (Podman's default, 5)
    #[arg(short = 'i', long, value_name = "SECONDS", default_value_t = 5)]
    pub interval: u64,
    /// Print each table after the last instead of in its place on a terminal
    #[arg(long = "no-reset")]
    pub no_reset: bool,
    /// Do not truncate ids
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
    /// Output format: json, or a Go template such as 'table {{.Name}}\t{{.MemUsage}}'
    #[arg(long, value_name = "FORMAT")]
    pub format: Option<String>,
    /// Containers to show (names or ids; default: every running container)
    #[arg(value_name = "CONTAINER", add = complete::container_candidates())]
    pub containers: Vec<String>,
}

// the table Podman 4.3 prints: `.UpTime` is the CPU time, `.AVGCPU` the average CPU as a
// percent (podman-stats(1) lists the fields)
const DEFAULT: &str = r"table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t{{.NetIO}}\t{{.BlockIO}}\t{{.PIDS}}\t{{.UpTime}}\t{{.AVGCPU}}";

const TITLES: &[(&str, &str)] = &[
    ("ID", "ID"),
    ("CPUPerc", "CPU %"),
    ("MemUsage", "MEM USAGE / LIMIT"),
    ("MemUsageBytes", "MEM USAGE / LIMIT"),
    ("MemPerc", "MEM %"),
    ("NetIO", "NET IO"),
    ("BlockIO", "BLOCK IO"),
    ("PIDS", "PIDS"),
    ("PIDs", "PIDS"),
    ("UpTime", "CPU TIME"),
    ("AVGCPU", "AVG CPU %"),
];

/// How long `--no-stream` watches the CPU between its two samples.
const SAMPLE: Duration = Duration::from_millis(250);

pub fn run(g: &Context, a: StatsArgs) -> Result<ExitCode> {
    // the processes run as mapped ids: their io, ns and net need ptrace access
    if a.interval == 0 {
        // Podman's words
        bail!("invalid interval, must be a positive number greater zero");
    }
    crate::runtime::userns::enter(g)?;
    // none named: every running container
    let names = match a.latest.latest {
        true => a.latest.names(g, &a.containers, a.all, false)?,
        false => a.containers.clone(),
    };
    let mut before = sample_all(g, &names, true)?;
    let mut at = Instant::now();
    loop {
        let wait = if a.no_stream {
            SAMPLE
        } else {
            Duration::from_secs(a.interval)
        };
        std::thread::sleep(wait.saturating_sub(at.elapsed()));
        let now = sample_all(g, &names, false)?;
        let rows: Vec<Row> = now
            .iter()
            .map(|s| row(s, before.iter().find(|b| b.id == s.id), a.no_trunc))
            .collect();
        let text = format::render_list(a.format.as_deref(), DEFAULT, TITLES, &rows)?;
        if !a.no_stream && !a.no_reset && std::io::IsTerminal::is_terminal(&std::io::stdout()) {
            // the table in place of the last one
            print!("\x1b[2J\x1b[H");
        }
        print!("{text}");
        use std::io::Write as _;
        let _ = std::io::stdout().flush();
        if a.no_stream {
            return Ok(ExitCode::SUCCESS);
        }
        // the containers named, or every one, have all exited
        if now.is_empty() {
            return Ok(ExitCode::SUCCESS);
        }
        before = now;
        at = Instant::now();
    }
}

/// What one look at a running container's processes found.
#[derive(Debug, Clone)]
struct Sample {
    id: String,
    name: String,
    /// seconds since boot when taken
    when: f64,
    /// CPU seconds of every process
    cpu: f64,
    /// seconds since the container's init started
    up: f64,
    rss: u64,
    net: (u64, u64),
    block: (u64, u64),
    pids: usize,
}

/// A sample of each container asked for (every running one when none is named); at the
/// `first` look, a named one that does not run is an error, as is one that is not found.
fn sample_all(g: &Context, names: &[String], first: bool) -> Result<Vec<Sample>> {
    let recs: Vec<ContainerRecord> = if names.is_empty() {
        state::list(g)?
            .into_iter()
            .filter(state::is_running)
            .collect()
    } else {
        names
            .iter()
            .map(|n| state::lookup(g, n))
            .collect::<Result<_>>()?
    };
    let mut out = Vec::new();
    for rec in &recs {
        match sample(g, rec) {
            Some(s) => out.push(s),
            // a named one must run at the start; one that exits later leaves the table
            None if first && !names.is_empty() => {
                bail!("container {} is not running", rec.name)
            }
            None => {}
        }
    }
    Ok(out)
}

fn sample(g: &Context, rec: &ContainerRecord) -> Option<Sample> {
    let (init, _) = state::live_pids(g, rec).filter(|_| state::is_running(rec))?;
    let list = procs::list(init).ok()?;
    let tps = procs::ticks_per_second() as f64;
    let when = procs::uptime();
    let init_start = list
        .iter()
        .find(|p| p.host_pid == init)
        .map_or(0, |p| p.start_ticks);
    let mut block = (0, 0);
    for p in &list {
        let (r, w) = procs::io_bytes(p.host_pid);
        block = (block.0 + r, block.1 + w);
    }
    Some(Sample {
        id: rec.id.clone(),
        name: rec.name.clone(),
        when,
        cpu: list.iter().map(|p| p.cpu_ticks).sum::<u64>() as f64 / tps,
        up: (when - init_start as f64 / tps).max(0.0),
        rss: list.iter().map(|p| p.rss * 1024).sum(),
        net: procs::net_bytes(init),
        block,
        pids: list.len(),
    })
}

fn row(s: &Sample, before: Option<&Sample>, no_trunc: bool) -> Row {
    let limit = procs::mem_total();
    let cpu_pct = match before {
        Some(b) if s.when > b.when => (s.cpu - b.cpu).max(0.0) / (s.when - b.when) * 100.0,
        _ => 0.0,
    };
    let avg = if s.up > 0.0 {
        s.cpu / s.up * 100.0
    } else {
        0.0
    };
    let mem_pct = if limit > 0 {
        s.rss as f64 / limit as f64 * 100.0
    } else {
        0.0
    };
    let id = if no_trunc {
        s.id.clone()
    } else {
        s.id.chars().take(12).collect()
    };
    let cpu_time = super::top::go_duration(s.cpu);
    let nanos = (s.cpu * 1e9).round() as u64;
    let view = json!({
        "ID": id,
        "ContainerID": s.id,
        "Name": s.name,
        "CPUPerc": percent(cpu_pct),
        "CPU": cpu_pct,
        "AVGCPU": percent(avg),
        "AvgCPU": avg,
        "CPUNano": nanos,
        "Duration": nanos,
        "UpTime": cpu_time,
        "Up": cpu_time,
        "MemUsage": pair(s.rss, limit),
        "MemUsageBytes": format!("{} / {}", size(s.rss, Units::Iec), size(limit, Units::Iec)),
        "MemLimit": limit,
        "MemPerc": percent(mem_pct),
        "NetIO": pair(s.net.0, s.net.1),
        "NetInput": s.net.0,
        "NetOutput": s.net.1,
        "BlockIO": pair(s.block.0, s.block.1),
        "BlockInput": s.block.0,
        "BlockOutput": s.block.1,
        "PIDS": pids(s.pids),
        "PIDs": s.pids,
    });
    let json: Value = json!({
        "id": id,
        "name": s.name,
        "cpu_time": cpu_time,
        "cpu_percent": percent(cpu_pct),
        "avg_cpu": percent(avg),
        "mem_usage": pair(s.rss, limit),
        "mem_percent": percent(mem_pct),
        "net_io": pair(s.net.0, s.net.1),
        "block_io": pair(s.block.0, s.block.1),
        "pids": pids(s.pids),
    });
    Row { json, view }
}

/// `0.25%`; `--` for nothing at all, as Podman shows an idle container.
fn percent(p: f64) -> String {
    if p == 0.0 || !p.is_finite() {
        "--".into()
    } else {
        format!("{p:.2}%")
    }
}

fn pids(n: usize) -> String {
    if n == 0 {
        "--".into()
    } else {
        n.to_string()
    }
}

/// `1.384MB / 33.61GB`; `-- / --` when both are 0.
fn pair(a: u64, b: u64) -> String {
    if a == 0 && b == 0 {
        return "-- / --".into();
    }
    format!("{} / {}", size(a, Units::Si), size(b, Units::Si))
}

#[derive(Clone, Copy)]
enum Units {
    /// go-units `HumanSize`: 1000s, `kB`, `MB`
    Si,
    /// go-units `BytesSize`: 1024s, `KiB`, `MiB`
    Iec,
}

/// A size as go-units prints it: four significant digits and the unit, no space (`1.384MB`,
/// `0B`, `1.914MiB`).
fn size(bytes: u64, units: Units) -> String {
    let (base, names) = match units {
        Units::Si => (
            1000.0,
            ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"],
        ),
        Units::Iec => (
            1024.0,
            ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"],
        ),
    };
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= base && i < names.len() - 1 {
        v /= base;
        i += 1;
    }
    let digits = if v >= 1.0 {
        v.log10().floor() as i32 + 1
    } else {
        1
    };
    let decimals = (4 - digits).max(0) as usize;
    let mut s = format!("{v:.decimals$}");
    if s.contains('.') {
        s = s.trim_end_matches('0').trim_end_matches('.').to_string();
    }
    format!("{s}{}", names[i])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_as_go_units_prints_them() {
        let si = |b| size(b, Units::Si);
        assert_eq!(si(0), "0B");
        assert_eq!(si(999), "999B");
        assert_eq!(si(1_384_448), "1.384MB");
        assert_eq!(si(33_612_000_000), "33.61GB");
        assert_eq!(si(1000), "1kB");
        assert_eq!(size(2 * 1024 * 1024, Units::Iec), "2MiB");
        assert_eq!(pair(0, 0), "-- / --");
        assert_eq!(pair(1_500, 0), "1.5kB / 0B");
    }

    #[test]
    fn percents() {
        assert_eq!(percent(0.0), "--");
        assert_eq!(percent(12.3456), "12.35%");
    }
}
