//! Events: what happened to containers, images and volumes, logged as Podman's `file` events
//! logger logs them (one JSON object per line: ID, Image, Name, Status, Time, Type,
//! Attributes) in `<runtime dir>/events/events.log`, and read back by `rbox events`. Each
//! event is one `write` to a file opened with O_APPEND, so the lines of concurrent rbox
//! processes never interleave; a failure to log is never the command's failure.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::context::Context;
use crate::state::ContainerRecord;

/// One event, with Podman's JSON keys.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Event {
    /// a `died` event's exit code
    #[serde(
        rename = "ContainerExitCode",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub exit_code: Option<i32>,
    #[serde(rename = "ID", default)]
    pub id: String,
    #[serde(rename = "Image", default, skip_serializing_if = "String::is_empty")]
    pub image: String,
    #[serde(rename = "Name", default)]
    pub name: String,
    #[serde(rename = "Status", default)]
    pub status: String,
    /// RFC 3339 with nanoseconds, trailing zeros cut (Go's RFC3339Nano)
    #[serde(rename = "Time", default)]
    pub time: String,
    #[serde(rename = "Type", default)]
    pub kind: String,
    #[serde(rename = "Attributes", default)]
    pub attributes: BTreeMap<String, String>,
}

/// `--events-backend=none`: nothing is logged by this process.
static OFF: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// No container events from this process (and the monitors it forks): `rbox build`.
static NO_CONTAINERS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Log nothing from now on (`--events-backend=none`).
pub fn disable() {
    OFF.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// Log no container event from now on: a build's step containers.
pub fn no_container_events() {
    NO_CONTAINERS.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// The log of the runtime directory `g` uses.
pub fn log_path(g: &Context) -> Option<PathBuf> {
    Some(g.runtime_dir().ok()?.join("events").join("events.log"))
}

/// Now as Go's RFC3339Nano prints it in UTC.
pub fn now_rfc3339() -> String {
    let s = humantime::format_rfc3339_nanos(std::time::SystemTime::now()).to_string();
    // `2026-11-26T01:27:18.325113510Z`: Go cuts the fraction's trailing zeros
    match s.strip_suffix('Z').and_then(|t| t.split_once('.')) {
        Some((whole, frac)) => {
            let frac = frac.trim_end_matches('0');
            if frac.is_empty() {
                format!("{whole}Z")
            } else {
                format!("{whole}.{frac}Z")
            }
        }
        None => s,
    }
}

/// Append `e` (its time set now) to the log.
pub fn log(g: &Context, e: Event) {
    log_all(g, vec![e]);
}

/// Append `events` (their time set now), in one write.
fn log_all(g: &Context, events: Vec<Event>) {
    if OFF.load(std::sync::atomic::Ordering::Relaxed) {
        return;
    }
    let Some(path) = log_path(g) else {
        return;
    };
    let Some(line) = lines(events) else {
        return;
    };
    match open_log(&path) {
        Ok(mut f) => {
            if let Err(err) = f.write_all(&line) {
                tracing::debug!("log event to `{}`: {err}", path.display());
            }
            // the runtime directory is often a tmpfs: the log is kept to two files of at
            // most MAX_LOG bytes, the older one renamed aside (appenders still holding it
            // finish their line there)
            if f.metadata().is_ok_and(|m| m.len() > MAX_LOG) {
                let _ = std::fs::rename(&path, rotated(&path));
            }
        }
        Err(err) => tracing::debug!("log event to `{}`: {err}", path.display()),
    }
}

/// `events` as the log's lines, their time set now; `None` when there is nothing to write
/// (every event a container's under [`no_container_events`]) or one does not serialise.
fn lines(events: Vec<Event>) -> Option<Vec<u8>> {
    let time = now_rfc3339();
    let mut line = Vec::new();
    let no_containers = NO_CONTAINERS.load(std::sync::atomic::Ordering::Relaxed);
    for mut e in events {
        if no_containers && e.kind == "container" {
            continue;
        }
        e.time = time.clone();
        serde_json::to_writer(&mut line, &e).ok()?;
        line.push(b'\n');
    }
    (!line.is_empty()).then_some(line)
}

/// The log at `path` opened for appending, created (with its directory) when missing.
fn open_log(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    let open = || {
        std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)
    };
    open().or_else(|_| {
        std::fs::create_dir_all(path.parent().expect("events/ has a parent"))?;
        open()
    })
}

/// Where the log goes once it is over [`MAX_LOG`] bytes (as Podman's
/// `events_logfile_max_size`, 1 MB by default).
const MAX_LOG: u64 = 1 << 20;

/// The previous log, read before the current one.
pub fn rotated(path: &std::path::Path) -> PathBuf {
    path.with_extension("log.1")
}

/// A container event: `status` (create, init, start, died, cleanup, remove, stop, kill,
/// pause, unpause, rename, restart...) of `rec`, its labels as the attributes (as Podman).
pub fn container(g: &Context, rec: &ContainerRecord, status: &str) {
    log(g, container_event(rec, status));
}

/// Several events of `rec` at once, in this order (`init` and `start`), in one write.
pub fn container_all(g: &Context, rec: &ContainerRecord, statuses: &[&str]) {
    log_all(
        g,
        statuses.iter().map(|s| container_event(rec, s)).collect(),
    );
}

/// A container's `died` event, with its exit code (left out when 0, as Podman's JSON does).
pub fn died(g: &Context, rec: &ContainerRecord, code: i32) {
    log(g, exited_event(rec, "died", code));
}

/// An event of something in `rec` that ended with `code` (`died`, an exec session's
/// `exec_died`), the code left out when 0 as Podman's JSON does.
fn exited_event(rec: &ContainerRecord, status: &str, code: i32) -> Event {
    let mut e = container_event(rec, status);
    e.exit_code = (code != 0).then_some(code);
    e
}

/// The log, opened now for an event logged later from where its path may not lead there
/// (`rbox exec` ends inside the container's mount namespace); `None` when nothing is to
/// be logged.
pub struct Later(Option<std::fs::File>);

impl Later {
    pub fn open(g: &Context) -> Later {
        if OFF.load(std::sync::atomic::Ordering::Relaxed) {
            return Later(None);
        }
        Later(log_path(g).and_then(|p| open_log(&p).ok()))
    }

    /// An event of something in `rec` that ended with `code` (an exec session's
    /// `exec_died`, as [`died`]'s), through the log opened before.
    pub fn exited(&self, rec: &ContainerRecord, status: &str, code: i32) {
        let (Some(mut f), Some(line)) = (
            self.0.as_ref(),
            lines(vec![exited_event(rec, status, code)]),
        ) else {
            return;
        };
        let _ = f.write_all(&line);
    }
}

fn container_event(rec: &ContainerRecord, status: &str) -> Event {
    Event {
        id: rec.id.clone(),
        image: rec.image_name.clone(),
        name: rec.name.clone(),
        status: status.to_string(),
        kind: "container".into(),
        attributes: rec.spec.labels.clone(),
        ..Default::default()
    }
}

/// An image event: `status` (pull, push, tag, untag, remove, load, save, import, build) of the
/// image `id` (may be empty) known as `name`.
pub fn image(g: &Context, status: &str, id: &str, name: &str) {
    log(
        g,
        Event {
            id: id.to_string(),
            name: name.to_string(),
            status: status.to_string(),
            kind: "image".into(),
            ..Default::default()
        },
    );
}

/// A volume event: `status` (create, remove, prune) of the volume `name`.
pub fn volume(g: &Context, status: &str, name: &str) {
    log(
        g,
        Event {
            name: name.to_string(),
            status: status.to_string(),
            kind: "volume".into(),
            ..Default::default()
        },
    );
}

/// The line `rbox events` prints for `e` by default, as Podman 4.3 prints it.
pub fn human_line(e: &Event) -> String {
    let time = crate::format::human::go_time_of(Some(&e.time));
    match e.kind.as_str() {
        "container" => {
            let mut attrs = vec![format!("image={}", e.image), format!("name={}", e.name)];
            for (k, v) in &e.attributes {
                if k != "image" && k != "name" {
                    attrs.push(format!("{k}={v}"));
                }
            }
            format!(
                "{time} container {} {} ({})",
                e.status,
                e.id,
                attrs.join(", ")
            )
        }
        "volume" => format!("{time} volume {} {}", e.status, e.name),
        kind => format!("{time} {kind} {} {} {}", e.status, e.id, e.name),
    }
}

/// The events of the log (the rotated one first), oldest first, and the current log's
/// length read (for a follower).
pub fn read_all(path: &std::path::Path) -> (Vec<Event>, u64) {
    let mut out = std::fs::read(rotated(path))
        .map(|d| parse_lines(&d))
        .unwrap_or_default();
    let Ok(data) = std::fs::read(path) else {
        return (out, 0);
    };
    out.extend(parse_lines(&data));
    (out, data.len() as u64)
}

/// The events in `data` (whole lines only; a line that does not parse is skipped).
pub fn parse_lines(data: &[u8]) -> Vec<Event> {
    data.split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .filter_map(|l| serde_json::from_slice(l).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rotated_log_is_read_first() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("events.log");
        let e = |status: &str| Event {
            status: status.into(),
            kind: "volume".into(),
            ..Default::default()
        };
        let line = |ev: &Event| serde_json::to_string(ev).unwrap() + "\n";
        std::fs::write(rotated(&p), line(&e("create"))).unwrap();
        std::fs::write(&p, line(&e("remove"))).unwrap();
        let (all, n) = read_all(&p);
        assert_eq!(all, [e("create"), e("remove")]);
        assert_eq!(n, line(&e("remove")).len() as u64);
    }

    #[test]
    fn lines_as_podman_prints_them() {
        let e = Event {
            exit_code: None,
            id: "abc".into(),
            image: "localhost/bb:latest".into(),
            name: "ev1".into(),
            status: "start".into(),
            time: "2026-11-26T01:27:18.56357309Z".into(),
            kind: "container".into(),
            attributes: BTreeMap::new(),
        };
        assert_eq!(
            human_line(&e),
            "2026-11-26 01:27:18.56357309 +0000 UTC container start abc (image=localhost/bb:latest, name=ev1)"
        );
        let i = Event {
            name: "localhost/bb".into(),
            status: "pull".into(),
            time: "2026-11-26T01:27:18Z".into(),
            kind: "image".into(),
            ..Default::default()
        };
        assert_eq!(
            human_line(&i),
            "2026-11-26 01:27:18 +0000 UTC image pull  localhost/bb"
        );
        let line = serde_json::to_string(&e).unwrap();
        assert_eq!(
            line,
            r#"{"ID":"abc","Image":"localhost/bb:latest","Name":"ev1","Status":"start","Time":"2026-11-26T01:27:18.56357309Z","Type":"container","Attributes":{}}"#
        );
        assert_eq!(parse_lines(format!("{line}\nnot json\n").as_bytes()), [e]);
        let t = now_rfc3339();
        assert!(t.ends_with('Z'), "{t}");
        let frac = t.trim_end_matches('Z').split_once('.').map(|(_, f)| f);
        assert!(frac.is_none_or(|f| !f.ends_with('0')), "{t}");
    }
}
