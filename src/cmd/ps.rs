//! `rbox ps`: list containers (CONTAINER ID IMAGE COMMAND CREATED STATUS PORTS NAMES) as
//! Podman prints them, from the container records (`state`), with no namespace and no lock.

use std::process::ExitCode;

use anyhow::{bail, Result};
use serde_json::{json, Value};

use super::common::epoch;
use crate::cli::complete;
use crate::context::Context;
use crate::format::{self, human, Row};
use crate::state::{self, ContainerRecord, Status};

#[derive(Debug, Clone, clap::Args)]
pub struct PsArgs {
    /// Show all containers (default: only running ones)
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Print only container IDs
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Do not truncate IDs and commands
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
    /// Output format: json, or a Go template such as 'table {{.ID}}\t{{.Names}}'
    #[arg(long, value_name = "FORMAT")]
    pub format: Option<String>,
    /// Show only the latest created container (all states)
    #[arg(short = 'l', long)]
    pub latest: bool,
    /// Show the N last created containers (all states)
    #[arg(short = 'n', long = "last", value_name = "N")]
    pub last: Option<usize>,
    /// Do not print the header row
    #[arg(long = "noheading")]
    pub noheading: bool,
    /// Filter: id=ID, name=NAME, status=created|running|exited, ancestor=IMAGE, exited=CODE
    #[arg(short = 'f', long = "filter", value_name = "KEY=VALUE", add = complete::ps_filter_candidates())]
    pub filter: Vec<String>,
}

pub const TITLES: &[(&str, &str)] = &[
    ("ID", "CONTAINER ID"),
    ("CreatedHuman", "CREATED"),
    ("CreatedAt", "CREATED AT"),
    ("RunningFor", "CREATED"),
    ("ImageID", "IMAGE ID"),
];

const DEFAULT: &str = r"table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.CreatedHuman}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}";

pub fn run(g: &Context, a: PsArgs) -> Result<ExitCode> {
    let mut all = state::list(g)?; // newest first
    let filters = a
        .filter
        .iter()
        .map(|f| parse_filter(f))
        .collect::<Result<Vec<_>>>()?;
    all.retain(|r| filters.iter().all(|(k, v)| matches(r, k, v)));
    let every_state = a.all
        || a.latest
        || a.last.is_some()
        || filters.iter().any(|(k, _)| k == "status" || k == "exited");
    if !every_state {
        all.retain(|r| r.state.status == Status::Running);
    }
    if a.latest {
        all.truncate(1);
    } else if let Some(n) = a.last {
        all.truncate(n);
    }
    if a.quiet {
        for r in &all {
            println!(
                "{}",
                if a.no_trunc {
                    r.id.clone()
                } else {
                    r.id.chars().take(12).collect()
                }
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let now = human::now();
    let rows: Vec<Row> = all
        .iter()
        .map(|r| {
            let mut row = Row {
                json: ps_json(r),
                view: ps_view(r, now, a.no_trunc),
            };
            // paused is live state, which the record alone does not tell
            if state::is_paused(g, r) {
                for v in [&mut row.json, &mut row.view] {
                    v["State"] = "paused".into();
                    v["Status"] = "Paused".into();
                }
            }
            row
        })
        .collect();
    // a running container's health, after its status, as Podman shows it: "Up 3 seconds
    // (healthy)"
    let root = g.storage_root()?;
    let mut rows = rows;
    for (row, r) in rows.iter_mut().zip(&all) {
        if r.spec.healthcheck.is_none() || r.state.status != Status::Running {
            continue;
        }
        let h = crate::runtime::health::load(&root, &r.id)
            .map(|h| h.status)
            .unwrap_or_else(|| "starting".into());
        for v in [&mut row.json, &mut row.view] {
            if let Some(st) = v.get("Status").and_then(Value::as_str) {
                let st = format!("{st} ({h})");
                v["Status"] = json!(st);
            }
        }
    }
    let fmt = format::without_heading(a.format.as_deref(), DEFAULT, a.noheading);
    print!(
        "{}",
        format::render_list(fmt.as_deref(), DEFAULT, TITLES, &rows)?
    );
    Ok(ExitCode::SUCCESS)
}

/// A `--filter KEY=VALUE` of the containers (`ps`, `start --all`).
pub fn parse_filter(f: &str) -> Result<(String, String)> {
    const KEYS: &[&str] = &[
        "id",
        "name",
        "status",
        "ancestor",
        "exited",
        "restart-policy",
    ];
    let Some((k, v)) = f.split_once('=') else {
        bail!("invalid filter `{f}`: use KEY=VALUE ({})", KEYS.join(", "));
    };
    if !KEYS.contains(&k) {
        bail!("{k} is an invalid filter: use {}", KEYS.join(", "));
    }
    Ok((k.to_string(), v.to_string()))
}

/// Whether container `r` passes filter `k`=`v`.
pub fn matches(r: &ContainerRecord, k: &str, v: &str) -> bool {
    match k {
        "id" => r.id.starts_with(v),
        "name" => r.name.contains(v),
        "status" => r.state.status.as_str() == v,
        "restart-policy" => r.spec.restart.name == v || (v == "no" && !r.spec.restart.restarts()),
        "ancestor" => {
            r.image == v
                || r.image_name == v
                || r.image_name.starts_with(&format!("{v}:"))
                || r.image_name.ends_with(&format!("/{v}"))
                || r.image_name.contains(&format!("/{v}:"))
                || r.image_id
                    .trim_start_matches("sha256:")
                    .starts_with(v.trim_start_matches("sha256:"))
        }
        "exited" => {
            r.state.status == Status::Exited
                && r.state.exit_code.map(|c| c.to_string()).as_deref() == Some(v)
        }
        _ => false,
    }
}

/// "Up 3 seconds", "Exited (0) 2 minutes ago", "Created", as Podman words it.
pub fn status_text(r: &ContainerRecord, now: i64) -> String {
    match r.state.status {
        Status::Created => "Created".into(),
        Status::Running => format!(
            "Up {}",
            human::duration(now - epoch(Some(&r.state.started_at)))
        ),
        Status::Exited => {
            let code = r.state.exit_code.unwrap_or(0);
            let at = epoch(Some(&r.state.finished_at));
            if at == 0 {
                format!("Exited ({code})")
            } else {
                format!("Exited ({code}) {}", human::ago(at, now))
            }
        }
    }
}

fn ps_json(r: &ContainerRecord) -> Value {
    let st = &r.state;
    json!({
        "Id": r.id,
        "Image": r.image_name,
        "ImageID": r.image_id.trim_start_matches("sha256:"),
        "Command": r.spec.args,
        "Created": epoch(Some(&r.created)),
        "CreatedAt": r.created,
        "State": st.status.as_str(),
        "Status": status_text(r, human::now()),
        "Names": [r.name],
        "Pid": if st.status == Status::Running { st.pid } else { 0 },
        "ExitCode": st.exit_code.unwrap_or(0),
        "Exited": st.status == Status::Exited,
        "ExitedAt": epoch(Some(&st.finished_at)),
        "StartedAt": epoch(Some(&st.started_at)),
        "Labels": r.spec.labels,
        "Mounts": r.spec.mounts.iter().map(|m| m.destination.clone()).collect::<Vec<_>>(),
        "Ports": r.spec.ports.iter().map(|p| json!({
            "host_ip": p.host_ip,
            "container_port": p.container_port,
            "host_port": p.host_port,
            "range": 1,
            "protocol": p.protocol,
        })).collect::<Vec<_>>(),
        "AutoRemove": r.auto_remove,
    })
}

fn ps_view(r: &ContainerRecord, now: i64, no_trunc: bool) -> Value {
    let mut cmd = r.spec.args.join(" ");
    // Podman cuts the command at 17 characters.
    if !no_trunc && cmd.chars().count() > 17 {
        cmd = cmd.chars().take(17).collect::<String>() + "...";
    }
    let created = epoch(Some(&r.created));
    let id = if no_trunc {
        r.id.clone()
    } else {
        r.id.chars().take(12).collect()
    };
    let mut v = ps_json(r);
    let o = v.as_object_mut().expect("object");
    o.insert("ID".into(), json!(id));
    o.insert("Command".into(), json!(cmd));
    o.insert("Names".into(), json!(r.name));
    o.insert("CreatedHuman".into(), json!(human::ago(created, now)));
    o.insert("RunningFor".into(), json!(human::ago(created, now)));
    o.insert("Created".into(), json!(human::ago(created, now)));
    o.insert(
        "CreatedAt".into(),
        json!(human::go_time_of(Some(&r.created))),
    );
    o.insert("Status".into(), json!(status_text(r, now)));
    // as podman ps shows them: 0.0.0.0:8080->80/tcp, ...
    let ports: Vec<String> = r
        .spec
        .ports
        .iter()
        .map(|p| format!("{}->{}/{}", p.host_addr(), p.container_port, p.protocol))
        .collect();
    o.insert("Ports".into(), json!(ports.join(", ")));
    o.insert(
        "Mounts".into(),
        json!(r
            .spec
            .mounts
            .iter()
            .map(|m| m.destination.clone())
            .collect::<Vec<_>>()
            .join(",")),
    );
    o.insert("Labels".into(), json!(r.spec.labels));
    o.insert("Size".into(), json!(""));
    v
}
