//! `rbox events` (and `system events`): the event log (`crate::events`) as Podman prints it,
//! filtered, then followed as it grows until interrupted (`--stream=false`, or an `--until`
//! time reached, ends it).

use std::io::{Read as _, Seek as _, Write as _};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use anyhow::{bail, Result};
use serde_json::json;

use crate::context::Context;
use crate::events::{self, Event};

#[derive(Debug, Clone, clap::Args)]
pub struct EventsArgs {
    /// Filter: container=, event= (or status=), image=, label=KEY[=VALUE], type=, volume=;
    /// a key given twice matches either value, different keys must all match
    #[arg(short = 'f', long = "filter", value_name = "FILTER")]
    pub filter: Vec<String>,
    /// Output format: json (one object per line), or a Go template such as
    /// '{{.Time}} {{.Status}} {{.Name}}'
    #[arg(long, value_name = "FORMAT")]
    pub format: Option<String>,
    /// Show whole ids (--no-trunc=false: 12 digits)
    #[arg(long = "no-trunc", value_name = "BOOL", num_args = 0..=1, default_value_t = true,
          default_missing_value = "true", action = clap::ArgAction::Set)]
    pub no_trunc: bool,
    /// Only events since this time (RFC 3339, a Unix time, or a duration before now: 10m)
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Only events until this time (as --since); following ends there
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    /// Follow the log for new events (false: print what is there and exit)
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_value_t = true,
          default_missing_value = "true", action = clap::ArgAction::Set)]
    pub stream: bool,
}

struct Filters(Vec<(String, String)>);

impl Filters {
    fn parse(given: &[String]) -> Result<Filters> {
        let mut v = Vec::new();
        for f in given {
            let Some((k, val)) = f.split_once('=') else {
                // Podman's text
                bail!("malformed filter {f:?}: it must be in the form key=value");
            };
            let k = match k {
                "status" => "event",
                "container" | "event" | "image" | "label" | "type" | "volume" => k,
                // Podman's text
                _ => bail!("{k} is an invalid filter"),
            };
            v.push((k.to_string(), val.to_string()));
        }
        Ok(Filters(v))
    }

    fn one(key: &str, val: &str, e: &Event) -> bool {
        let id = |want: &str| !want.is_empty() && e.id.starts_with(want);
        match key {
            "container" => e.kind == "container" && (e.name == val || id(val)),
            "event" => e.status == val,
            "image" => match e.kind.as_str() {
                "image" => e.name == val || id(val) || e.name.rsplit('/').next() == Some(val),
                _ => {
                    e.image == val
                        || e.image.rsplit('/').next() == Some(val)
                        || e.image.split(':').next() == Some(val)
                }
            },
            "label" => match val.split_once('=') {
                Some((k, v)) => e.attributes.get(k).is_some_and(|x| x == v),
                None => e.attributes.contains_key(val),
            },
            "type" => e.kind == val,
            "volume" => e.kind == "volume" && e.name == val,
            _ => false,
        }
    }

    fn keep(&self, e: &Event) -> bool {
        let mut keys: Vec<&str> = self.0.iter().map(|(k, _)| k.as_str()).collect();
        keys.dedup();
        keys.iter().all(|key| {
            self.0
                .iter()
                .filter(|(k, _)| k == key)
                .any(|(k, v)| Filters::one(k, v, e))
        })
    }
}

fn time_of(e: &Event) -> Option<SystemTime> {
    humantime::parse_rfc3339(&e.time).ok()
}

pub fn run(g: &Context, a: EventsArgs) -> Result<ExitCode> {
    let filters = Filters::parse(&a.filter)?;
    let now = SystemTime::now();
    let since = a
        .since
        .as_deref()
        .map(|s| super::logs::parse_time("--since", s, now))
        .transpose()?;
    let until = a
        .until
        .as_deref()
        .map(|s| super::logs::parse_time("--until", s, now))
        .transpose()?;
    let template = match a.format.as_deref().map(str::trim) {
        None | Some("") => None,
        Some("json") => Some(crate::format::Format::Json),
        Some(f) => Some(crate::format::Format::parse(f)?),
    };
    let show = |e: &Event, out: &mut dyn std::io::Write| -> Result<()> {
        if !filters.keep(e) {
            return Ok(());
        }
        let t = time_of(e);
        if since.is_some_and(|s| t.is_some_and(|t| t < s))
            || until.is_some_and(|u| t.is_some_and(|t| t > u))
        {
            return Ok(());
        }
        let mut e = e.clone();
        if !a.no_trunc && e.id.len() > 12 {
            e.id.truncate(12);
        }
        let line = match &template {
            None => events::human_line(&e),
            Some(crate::format::Format::Json) => serde_json::to_string(&e)?,
            Some(crate::format::Format::Template(t)) => {
                let view = json!({
                    // 0 where the log has none, as Podman's template prints it
                    "ContainerExitCode": e.exit_code.unwrap_or(0),
                    "ID": e.id,
                    "Image": e.image,
                    "Name": e.name,
                    "Status": e.status,
                    "Time": crate::format::human::go_time_of(Some(&e.time)),
                    "TimeNano": e.time,
                    "Type": e.kind,
                    "Attributes": e.attributes,
                });
                t.render(&view)?.trim_end_matches('\n').to_string()
            }
        };
        writeln!(out, "{line}")?;
        Ok(())
    };
    let Some(path) = events::log_path(g) else {
        return Ok(ExitCode::SUCCESS);
    };
    let stdout = std::io::stdout();
    let (old, mut read) = events::read_all(&path);
    {
        let mut out = stdout.lock();
        for e in &old {
            show(e, &mut out)?;
        }
        out.flush()?;
    }
    if !a.stream || until.is_some_and(|u| u <= now) {
        return Ok(ExitCode::SUCCESS);
    }
    // follow: what is appended, in whole lines, until interrupted or past --until
    let mut partial: Vec<u8> = Vec::new();
    loop {
        std::thread::sleep(Duration::from_millis(100));
        // past --until: this last look at the log, then the end
        let last = until.is_some_and(|u| SystemTime::now() > u);
        if last {
            read_new(&path, &mut read, &mut partial, &mut |e| {
                show(e, &mut stdout.lock())
            })?;
            return Ok(ExitCode::SUCCESS);
        }
        read_new(&path, &mut read, &mut partial, &mut |e| {
            show(e, &mut stdout.lock())
        })?;
        stdout.lock().flush()?;
    }
}

/// The whole lines appended to the log at `path` since `read` bytes, each event to `each`.
fn read_new(
    path: &std::path::Path,
    read: &mut u64,
    partial: &mut Vec<u8>,
    each: &mut dyn FnMut(&Event) -> Result<()>,
) -> Result<()> {
    {
        let Ok(mut f) = std::fs::File::open(path) else {
            return Ok(());
        };
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        if len < *read {
            // the log was rotated: the new one from its start
            *read = 0;
            partial.clear();
        }
        if len == *read {
            return Ok(());
        }
        f.seek(std::io::SeekFrom::Start(*read))?;
        let mut buf = Vec::new();
        f.take(len - *read).read_to_end(&mut buf)?;
        *read += buf.len() as u64;
        partial.extend_from_slice(&buf);
    }
    let Some(end) = partial.iter().rposition(|b| *b == b'\n') else {
        return Ok(());
    };
    let whole: Vec<u8> = partial.drain(..=end).collect();
    for e in events::parse_lines(&whole) {
        each(&e)?;
    }
    Ok(())
}
