//! `rbox logs`: what containers wrote, from their `ctr.log` (Podman's k8s-file format: kept
//! by the monitor of a detached container, and by `rbox run`/`start --attach` as they relay an
//! attached one's output). Stdout records go to stdout and stderr records to stderr, as
//! Podman prints them. `-f` follows until the container exits.

use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::num::IntErrorKind;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use anyhow::{anyhow, bail, Context as _, Result};

use crate::cli::complete;
use crate::context::Context;
use crate::runtime::logfile::{self, Record, Stream};
use crate::state::{self, ContainerRecord};

#[derive(Debug, Clone, clap::Args)]
pub struct LogsArgs {
    /// Keep printing as the container writes, until it exits
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Only the last N lines of each container (-1: all)
    #[arg(
        long,
        value_name = "N",
        allow_negative_numbers = true,
        default_value = "-1"
    )]
    pub tail: String,
    /// Only what was written since this time (RFC 3339, a Unix time, or a duration before
    /// now such as 10m)
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Only what was written before this time (as --since)
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    /// Put the time each line was written before it
    #[arg(short = 't', long)]
    pub timestamps: bool,
    /// Put the container's name before each line (with several containers; else their
    /// short ids)
    #[arg(short = 'n', long)]
    pub names: bool,
    /// Print each container's lines in a colour of its own
    #[arg(long)]
    pub color: bool,
    /// The container created last
    #[arg(short = 'l', long)]
    pub latest: bool,
    /// Containers (names or ids)
    #[arg(value_name = "CONTAINER", required_unless_present = "latest", add = complete::container_candidates())]
    pub containers: Vec<String>,
}

/// A time as `--since`/`--until` take it, relative to `now` for a duration.
pub(crate) fn parse_time(flag: &str, s: &str, now: SystemTime) -> Result<SystemTime> {
    let bad = || anyhow::anyhow!("parsing {flag} `{s}`: unable to interpret time value");
    if let Ok(t) = humantime::parse_rfc3339_weak(s) {
        return Ok(t);
    }
    if let Ok(t) = humantime::parse_rfc3339(s) {
        return Ok(t);
    }
    if let Ok(secs) = s.parse::<f64>() {
        if secs >= 0.0 {
            return Ok(SystemTime::UNIX_EPOCH + Duration::from_secs_f64(secs));
        }
    }
    // a date alone (2020-01-01), as Podman takes it
    if s.len() == 10 {
        if let Ok(t) = humantime::parse_rfc3339_weak(&format!("{s} 00:00:00")) {
            return Ok(t);
        }
    }
    let d = crate::runtime::health::parse_duration(s).ok_or_else(bad)?;
    now.checked_sub(d).ok_or_else(bad)
}

/// Which records pass `--since`/`--until` (a record without a time, from an older log, always
/// does).
struct Window {
    since: Option<SystemTime>,
    until: Option<SystemTime>,
}

impl Window {
    fn passes(&self, r: &Record) -> bool {
        let Some(t) = r.time else {
            return true;
        };
        self.since.is_none_or(|s| t >= s) && self.until.is_none_or(|u| t <= u)
    }
}

pub fn run(g: &Context, a: LogsArgs) -> Result<ExitCode> {
    let now = SystemTime::now();
    let window = Window {
        since: a
            .since
            .as_deref()
            .map(|s| parse_time("--since", s, now))
            .transpose()?,
        until: a
            .until
            .as_deref()
            .map(|s| parse_time("--until", s, now))
            .transpose()?,
    };
    // parsed here rather than by clap, to refuse it in Podman's words (Go's strconv's)
    let tail: i64 = a.tail.parse().map_err(|e: std::num::ParseIntError| {
        let why = match e.kind() {
            IntErrorKind::PosOverflow | IntErrorKind::NegOverflow => "value out of range",
            _ => "invalid syntax",
        };
        anyhow!(
            "invalid argument \"{t}\" for \"--tail\" flag: strconv.ParseInt: parsing \"{t}\": {why}",
            t = a.tail
        )
    })?;
    let mut recs: Vec<ContainerRecord> = Vec::new();
    for c in super::targets::with_latest(g, a.latest, &a.containers, "containers")? {
        recs.push(state::lookup(g, &c)?);
    }
    if a.follow && recs.len() > 1 {
        bail!("-f follows one container: give one");
    }
    let root = g.storage_root()?;
    let mut out = Printer {
        name: None,
        color: None,
        timestamps: a.timestamps,
        stdout: std::io::stdout().lock(),
        stderr: std::io::stderr().lock(),
    };
    for (i, rec) in recs.iter().enumerate() {
        // Podman marks each line with its container when it shows more than one: the name
        // with -n, else the short id
        out.name = (recs.len() > 1).then(|| match a.names {
            true => rec.name.clone(),
            false => rec.id.chars().take(12).collect(),
        });
        out.color = a.color.then(|| COLORS[i % COLORS.len()]);
        if !rec.spec.log.keeps() {
            bail!(
                "this container is using the '{}' log driver, cannot read logs: this container is not logging output",
                rec.spec.log.driver()
            );
        }
        let path = rec.spec.log.file(&root, &rec.id);
        let all = logfile::read(&path).with_context(|| format!("read `{}`", path.display()))?;
        let mut shown: Vec<&Record> = all.iter().filter(|r| window.passes(r)).collect();
        if tail >= 0 {
            let keep = lines_from_end(&shown, tail as usize);
            shown.drain(..keep);
        }
        for r in shown {
            out.print(r)?;
        }
        if a.follow {
            follow(g, rec, &path, &window, &mut out)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The index of the first record of the last `n` lines (a line may span partial records).
fn lines_from_end(records: &[&Record], n: usize) -> usize {
    let mut lines = 0;
    for (i, r) in records.iter().enumerate().rev() {
        if r.full {
            if lines == n {
                return i + 1;
            }
            lines += 1;
        }
    }
    0
}

/// The colours of `--color`, one per container in turn (Podman 4.3.1's, observed with eight
/// containers: white, red, yellow, blue, magenta, cyan, green, then white again).
const COLORS: &[&str] = &[
    "\x1b[37m", "\x1b[31m", "\x1b[33m", "\x1b[34m", "\x1b[35m", "\x1b[36m", "\x1b[32m",
];

struct Printer<'a> {
    name: Option<String>,
    /// `--color`: the container's colour, around each line (its end of line outside)
    color: Option<&'static str>,
    timestamps: bool,
    stdout: std::io::StdoutLock<'a>,
    stderr: std::io::StderrLock<'a>,
}

impl Printer<'_> {
    fn print(&mut self, r: &Record) -> Result<()> {
        let w: &mut dyn Write = match r.stream {
            Stream::Stdout => &mut self.stdout,
            Stream::Stderr => &mut self.stderr,
        };
        if let Some(c) = self.color {
            w.write_all(c.as_bytes())?;
        }
        if let Some(n) = &self.name {
            write!(w, "{n} ")?;
        }
        if self.timestamps && !r.time_text.is_empty() {
            write!(w, "{} ", r.time_text)?;
        }
        w.write_all(&r.text)?;
        if self.color.is_some() {
            w.write_all(b"\x1b[0m")?;
        }
        if r.full {
            w.write_all(b"\n")?;
        }
        Ok(())
    }
}

/// `-f`: print records as they are added (woken by inotify), until the container is no longer
/// running.
fn follow(
    g: &Context,
    rec: &ContainerRecord,
    path: &std::path::Path,
    window: &Window,
    out: &mut Printer,
) -> Result<()> {
    let mut pos = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    loop {
        let running = state::lookup(g, &rec.id)
            .map(|r| state::is_running(&r) || state::restarting_monitor(g, &r).is_some())
            .unwrap_or(false);
        if let Ok(mut f) = File::open(path) {
            let len = f.metadata().map(|m| m.len()).unwrap_or(0);
            if len < pos {
                pos = 0; // emptied by max-size
            }
            f.seek(SeekFrom::Start(pos)).context("seek log")?;
            let mut r = BufReader::new(f);
            let mut line = Vec::new();
            // whole lines only: a record being written is read on the next turn
            while r.read_until(b'\n', &mut line).context("read log")? > 0 {
                if line.last() != Some(&b'\n') {
                    break;
                }
                pos += line.len() as u64;
                let rec = logfile::parse(&line[..line.len() - 1]);
                if window.passes(&rec) {
                    out.print(&rec)?;
                }
                line.clear();
            }
            out.stdout.flush().ok();
        }
        if !running {
            return Ok(());
        }
        crate::runtime::sys::wait_modified(path, Duration::from_secs(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_as_podman_takes_them() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let t = |s| parse_time("--since", s, now).unwrap();
        assert_eq!(t("10m"), now - Duration::from_secs(600));
        assert_eq!(
            t("1700000000"),
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
        );
        assert_eq!(
            t("2020-01-01T00:00:00Z"),
            humantime::parse_rfc3339("2020-01-01T00:00:00Z").unwrap()
        );
        assert_eq!(
            t("2020-01-01"),
            humantime::parse_rfc3339("2020-01-01T00:00:00Z").unwrap()
        );
        assert!(parse_time("--since", "bogus", now).is_err());
    }

    #[test]
    fn tail_counts_lines_not_records() {
        let r = |text: &str, full| Record {
            time: None,
            time_text: String::new(),
            stream: Stream::Stdout,
            full,
            text: text.as_bytes().to_vec(),
        };
        let recs = [r("a", true), r("b", false), r("c", true), r("d", true)];
        let refs: Vec<&Record> = recs.iter().collect();
        assert_eq!(lines_from_end(&refs, 1), 3);
        assert_eq!(lines_from_end(&refs, 2), 1);
        assert_eq!(lines_from_end(&refs, 0), 4);
        assert_eq!(lines_from_end(&refs, 9), 0);
    }
}
