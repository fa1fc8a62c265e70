//! `rbox ps`: list containers (CONTAINER ID IMAGE COMMAND CREATED STATUS PORTS NAMES) as
//! Podman prints them, from the container records (`state`), with no namespace and no lock.

use std::process::ExitCode;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use anyhow::{bail, Result};
use serde_json::{json, Value};

use super::common::{epoch, read_store};
use crate::cli::complete;
use crate::context::Context;
use crate::format::{self, human, Row};
use crate::state::{self, ContainerRecord, NetworkMode, Status};

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
    /// Filter: id=ID, name=REGEX, status=STATE, ancestor=IMAGE, exited=CODE, label=KEY[=VALUE],
    /// before=CONTAINER, since=CONTAINER, volume=PATH, health=STATE, restart-policy=POLICY,
    /// network=MODE, pod=POD; several of one key match any, different keys all
    #[arg(short = 'f', long = "filter", value_name = "KEY=VALUE", add = complete::ps_filter_candidates())]
    pub filter: Vec<String>,
    /// Sort by command, created (the default), id, image, names, runningfor, size or status
    #[arg(long, value_name = "KEY")]
    pub sort: Option<String>,
    /// Show the size of each container's writable layer (and of its whole root filesystem)
    #[arg(short = 's', long)]
    pub size: bool,
    /// Show the namespaces of each container (rbox keeps no namespace paths: only PIDs)
    #[arg(long)]
    pub ns: bool,
    /// Include containers made by other tools (accepted: rbox sees only its own store)
    #[arg(long)]
    pub external: bool,
    /// Redraw the list every SECONDS seconds until interrupted (0: once; not with -q or
    /// --format json, which print once, as Podman's)
    #[arg(short = 'w', long, value_name = "SECONDS")]
    pub watch: Option<u64>,
    /// Sync the state with the runtime (accepted: rbox's ps always reads each container's
    /// live state from its process, there is no separate runtime record to sync)
    #[arg(long)]
    pub sync: bool,
}

/// `--sort` keys, as Podman lists them.
pub const SORT_KEYS: [&str; 8] = [
    "command",
    "created",
    "id",
    "image",
    "names",
    "runningfor",
    "size",
    "status",
];

pub const TITLES: &[(&str, &str)] = &[
    ("ID", "CONTAINER ID"),
    ("CreatedHuman", "CREATED"),
    ("CreatedAt", "CREATED AT"),
    ("ImageID", "IMAGE ID"),
    ("RunningFor", "RUNNING FOR"),
    ("StartedAt", "STARTED AT"),
    ("ExitCode", "EXIT CODE"),
    ("CgroupNS", "CGROUPNS"),
    ("UserNS", "USERNS"),
];

const DEFAULT: &str = r"table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.CreatedHuman}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}";

const NS_DEFAULT: &str = r"table {{.ID}}\t{{.Names}}\t{{.Pid}}\t{{.CgroupNS}}\t{{.IPC}}\t{{.MNT}}\t{{.NET}}\t{{.PIDNS}}\t{{.UserNS}}\t{{.UTS}}";

/// `--ns` columns: the kind in /proc/PID/ns, the field name of the column.
const NS_KINDS: [(&str, &str); 7] = [
    ("cgroup", "CgroupNS"),
    ("ipc", "IPC"),
    ("mnt", "MNT"),
    ("net", "NET"),
    ("pid", "PIDNS"),
    ("user", "UserNS"),
    ("uts", "UTS"),
];

pub fn run(g: &Context, a: PsArgs) -> Result<ExitCode> {
    let every = a.watch.filter(|n| *n > 0);
    if every.is_some() && a.latest {
        // Podman's words
        bail!("the watch and latest flags cannot be used together");
    }
    let Some(every) = every.filter(|_| !a.quiet && a.format.as_deref() != Some("json")) else {
        print!("{}", list(g, &a)?);
        return Ok(ExitCode::SUCCESS);
    };
    let tty = std::io::IsTerminal::is_terminal(&std::io::stdout());
    loop {
        let text = list(g, &a)?;
        if tty {
            // the list in place of the last one, as Podman clears the screen
            print!("\x1b[2J\x1b[1;1H");
        }
        print!("{text}");
        use std::io::Write as _;
        let _ = std::io::stdout().flush();
        std::thread::sleep(std::time::Duration::from_secs(every));
    }
}

/// One listing of `ps` as `a` asks it.
fn list(g: &Context, a: &PsArgs) -> Result<String> {
    if let Some(key) = a.sort.as_deref().filter(|k| !SORT_KEYS.contains(k)) {
        // Podman's words (and exit code 125), which scripts match
        bail!(
            "invalid argument \"{key}\" for \"--sort\" flag: \"{key}\" is not a valid value.  Choose from: \"{}\"",
            SORT_KEYS.join(", ")
        );
    }
    let mut all = state::list(g)?; // newest first
    let filters = Filters::parse(g, &a.filter)?;
    all.retain(|r| filters.matches(g, r));
    let every_state = a.all || a.latest || a.last.is_some() || filters.implies_all();
    if !every_state {
        all.retain(|r| r.state.status == Status::Running);
    }
    if a.latest {
        all.truncate(1);
    } else if let Some(n) = a.last {
        all.truncate(n);
    }
    let sizes = if a.size || a.sort.as_deref() == Some("size") {
        Some(sizes(g, &all))
    } else {
        None
    };
    // Podman's default order is by creation, oldest first (after -l/-n took the newest)
    sort(
        &mut all,
        a.sort.as_deref().unwrap_or("created"),
        sizes.as_ref(),
    );
    if a.quiet {
        let mut out = String::new();
        for r in &all {
            let id: String = if a.no_trunc {
                r.id.clone()
            } else {
                r.id.chars().take(12).collect()
            };
            out.push_str(&id);
            out.push('\n');
        }
        return Ok(out);
    }
    let now = human::now();
    let mut rows: Vec<Row> = all
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
    for (row, r) in rows.iter_mut().zip(&all) {
        for (kind, field) in NS_KINDS {
            row.view[field] = json!(namespace(r, kind));
        }
    }
    // a running container's health, after its status, as Podman shows it: "Up 3 seconds
    // (healthy)"
    for (row, r) in rows.iter_mut().zip(&all) {
        if r.spec.healthcheck.is_none() || r.state.status != Status::Running {
            continue;
        }
        let h = filters.health(r);
        for v in [&mut row.json, &mut row.view] {
            if let Some(st) = v.get("Status").and_then(Value::as_str) {
                let st = format!("{st} ({h})");
                v["Status"] = json!(st);
            }
        }
    }
    if let Some(sizes) = &sizes {
        for (row, r) in rows.iter_mut().zip(&all) {
            let (rw, rootfs) = sizes.get(&r.id).copied().unwrap_or((0, 0));
            row.json["Size"] = json!({ "rootFsSize": rootfs, "rwSize": rw });
            row.view["Size"] = json!(format!(
                "{} (virtual {})",
                human::size(rw).replace(' ', ""),
                human::size(rootfs).replace(' ', "")
            ));
        }
    }
    let default = if a.ns {
        NS_DEFAULT.to_string()
    } else if a.size {
        format!(r"{DEFAULT}\t{{{{.Size}}}}")
    } else {
        DEFAULT.to_string()
    };
    let fmt = format::without_heading(a.format.as_deref(), &default, a.noheading);
    format::render_list(fmt.as_deref(), &default, TITLES, &rows)
}

/// The inode number of a running container's namespace of `kind` ("" when it does not run or
/// /proc does not say), as `ps --ns` shows it.
fn namespace(r: &ContainerRecord, kind: &str) -> String {
    if r.state.status != Status::Running || r.state.pid <= 0 {
        return String::new();
    }
    std::fs::read_link(format!("/proc/{}/ns/{kind}", r.state.pid))
        .ok()
        .and_then(|l| {
            let l = l.to_string_lossy().into_owned();
            let n = l.split_once('[')?.1.trim_end_matches(']').to_string();
            Some(n)
        })
        .unwrap_or_default()
}

/// Each container's writable layer and whole root filesystem (its image plus that layer), in
/// bytes, by id.
fn sizes(g: &Context, all: &[ContainerRecord]) -> HashMap<String, (u64, u64)> {
    let Ok(store) = read_store(g) else {
        return HashMap::new();
    };
    all.iter()
        .map(|r| (r.id.clone(), container_sizes(&store, r)))
        .collect()
}

/// Bytes of `r`'s writable layer, and of its whole root (that plus its image's layers), as
/// `ps -s` and `inspect -s` show them.
pub fn container_sizes(store: &rbox_storage::Store, r: &ContainerRecord) -> (u64, u64) {
    let rw = super::system::container_size(store, r);
    let image = store.lookup_image(&r.image_id).map(|i| i.size).unwrap_or(0);
    (rw, image + rw)
}

/// `--sort KEY`, as Podman orders: oldest first for `created`, by text for the others.
fn sort(all: &mut [ContainerRecord], key: &str, sizes: Option<&HashMap<String, (u64, u64)>>) {
    match key {
        "command" => all.sort_by_key(|r| r.spec.args.join(" ")),
        "created" => all.sort_by(|x, y| x.created.cmp(&y.created)),
        // running for longest first
        "runningfor" => all.sort_by(|x, y| x.created.cmp(&y.created)),
        "id" => all.sort_by(|x, y| x.id.cmp(&y.id)),
        "image" => all.sort_by(|x, y| x.image_name.cmp(&y.image_name)),
        "names" => all.sort_by(|x, y| x.name.cmp(&y.name)),
        "size" => {
            let of = |r: &ContainerRecord| sizes.and_then(|s| s.get(&r.id)).map(|s| s.0);
            all.sort_by_key(|r| of(r).unwrap_or(0));
        }
        "status" => {
            let now = human::now();
            all.sort_by_key(|r| status_text(r, now));
        }
        _ => {}
    }
}

/// The `--filter`s of the containers (`ps`, `start --all`): several values of one key match
/// any of them, different keys must all match, as Podman combines them (labels: all).
pub struct Filters {
    keys: BTreeMap<String, Vec<String>>,
    root: PathBuf,
    /// `since=`/`before=`: the named containers' creation times
    since: Vec<String>,
    before: Vec<String>,
}

impl Filters {
    const KEYS: &'static [&'static str] = &[
        "id",
        "name",
        "status",
        "ancestor",
        "exited",
        "label",
        "before",
        "since",
        "volume",
        "health",
        "restart-policy",
        "network",
        "pod",
    ];

    /// Parse `KEY=VALUE` filters, with Podman's words for what it refuses.
    pub fn parse(g: &Context, given: &[String]) -> Result<Filters> {
        let mut f = Filters {
            keys: BTreeMap::new(),
            root: g.storage_root()?,
            since: Vec::new(),
            before: Vec::new(),
        };
        for s in given {
            let Some((k, v)) = s.split_once('=') else {
                bail!(
                    "invalid filter `{s}`: use KEY=VALUE ({})",
                    Self::KEYS.join(", ")
                );
            };
            if !Self::KEYS.contains(&k) {
                bail!("{k} is an invalid filter");
            }
            match k {
                "status" if !STATES.contains(&v) => {
                    bail!("unknown container state: {v}: invalid argument")
                }
                "restart-policy"
                    if !["", "no", "always", "on-failure", "unless-stopped"].contains(&v) =>
                {
                    bail!("{v} invalid restart policy")
                }
                "exited" if v.parse::<i32>().is_err() => {
                    bail!("exited code out of range \"{v}\"")
                }
                "since" => f.since.push(state::lookup(g, v)?.created),
                "before" => f.before.push(state::lookup(g, v)?.created),
                _ => {}
            }
            f.keys.entry(k.to_string()).or_default().push(v.to_string());
        }
        Ok(f)
    }

    /// Filters of a container's state list stopped containers without `--all`.
    pub fn implies_all(&self) -> bool {
        self.keys.contains_key("status") || self.keys.contains_key("exited")
    }

    /// Whether container `r` passes every filter.
    pub fn matches(&self, g: &Context, r: &ContainerRecord) -> bool {
        self.keys.iter().all(|(k, vs)| match k.as_str() {
            "label" => vs.iter().all(|v| label_matches(r, v)),
            "since" => self.since.iter().any(|t| r.created > *t),
            "before" => self.before.iter().any(|t| r.created < *t),
            _ => vs.iter().any(|v| self.one(g, r, k, v)),
        })
    }

    fn one(&self, g: &Context, r: &ContainerRecord, k: &str, v: &str) -> bool {
        match k {
            "id" => r.id.starts_with(v),
            "name" => name_matches(&r.name, v),
            // paused is live state, which the record alone does not tell
            "status" if state::is_paused(g, r) => v == "paused",
            "status" => r.state.status.as_str() == v,
            "restart-policy" => {
                r.spec.restart.name == v || (v == "no" && !r.spec.restart.restarts())
            }
            "ancestor" => ancestor_matches(r, v),
            "exited" => {
                r.state.status == Status::Exited
                    && r.state.exit_code.map(|c| c.to_string()).as_deref() == Some(v)
            }
            "volume" => {
                r.spec
                    .mounts
                    .iter()
                    .any(|m| m.destination == v || m.source == v)
                    || r.spec.volumes.iter().any(|x| x.name == v)
            }
            "health" => r.spec.healthcheck.is_some() && self.health(r) == v,
            // rbox's networks are modes (pasta, slirp4netns, host); none is no network
            "network" => r.spec.network != NetworkMode::None && r.spec.network.as_str() == v,
            // rbox has no pods: no container is in one
            "pod" => false,
            _ => false,
        }
    }

    /// A container's health as its last check left it ("starting" before the first).
    pub fn health(&self, r: &ContainerRecord) -> String {
        crate::runtime::health::load(&self.root, &r.id)
            .map(|h| h.status)
            .unwrap_or_else(|| "starting".into())
    }
}

/// The states `status=` takes: Podman's; rbox's containers are never stopped or unknown.
const STATES: &[&str] = &[
    "created", "running", "paused", "stopped", "exited", "unknown",
];

fn label_matches(r: &ContainerRecord, v: &str) -> bool {
    match v.split_once('=') {
        Some((k, want)) => r.spec.labels.get(k).is_some_and(|have| have == want),
        None => r.spec.labels.contains_key(v),
    }
}

/// `name=`: a regular expression in Podman; rbox takes its common forms: `^` and `$` anchors
/// around a plain substring.
pub(crate) fn name_matches(name: &str, pattern: &str) -> bool {
    let (start, p) = match pattern.strip_prefix('^') {
        Some(p) => (true, p),
        None => (false, pattern),
    };
    let (end, p) = match p.strip_suffix('$') {
        Some(p) => (true, p),
        None => (false, p),
    };
    match (start, end) {
        (true, true) => name == p,
        (true, false) => name.starts_with(p),
        (false, true) => name.ends_with(p),
        (false, false) => name.contains(p),
    }
}

fn ancestor_matches(r: &ContainerRecord, v: &str) -> bool {
    r.image == v
        || r.image_name == v
        || r.image_name.starts_with(&format!("{v}:"))
        || r.image_name.ends_with(&format!("/{v}"))
        || r.image_name.contains(&format!("/{v}:"))
        || r.image_id
            .trim_start_matches("sha256:")
            .starts_with(v.trim_start_matches("sha256:"))
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

/// Go's zero time as Unix seconds: what Podman prints for a time that never happened.
const ZERO_TIME: i64 = -62135596800;

fn epoch_or_zero(t: &str) -> i64 {
    if t.is_empty() {
        ZERO_TIME
    } else {
        epoch(Some(t))
    }
}

/// The `--format json` object, with Podman's keys (its `CreatedAt` is the human text).
fn ps_json(r: &ContainerRecord) -> Value {
    let st = &r.state;
    let now = human::now();
    let ports: Vec<Value> = r
        .spec
        .ports
        .iter()
        .map(|p| {
            json!({
                "host_ip": p.host_ip,
                "container_port": p.container_port,
                "host_port": p.host_port,
                "range": 1,
                "protocol": p.protocol,
            })
        })
        .collect();
    json!({
        "AutoRemove": r.auto_remove,
        "Command": r.spec.args,
        "CreatedAt": human::ago(epoch(Some(&r.created)), now),
        "Exited": st.status == Status::Exited,
        "ExitedAt": if st.status == Status::Exited { epoch_or_zero(&st.finished_at) } else { ZERO_TIME },
        "ExitCode": st.exit_code.unwrap_or(0),
        "Id": r.id,
        "Image": r.image_name,
        "ImageID": r.image_id.trim_start_matches("sha256:"),
        "IsInfra": false,
        "Labels": if r.spec.labels.is_empty() { Value::Null } else { json!(r.spec.labels) },
        "Mounts": r.spec.mounts.iter().map(|m| m.destination.clone()).collect::<Vec<_>>(),
        "Names": [r.name],
        "Namespaces": {},
        "Networks": networks(r),
        "Pid": if st.status == Status::Running { st.pid } else { 0 },
        "Pod": "",
        "PodName": "",
        "Ports": if ports.is_empty() { Value::Null } else { json!(ports) },
        "Size": Value::Null,
        "StartedAt": if st.status == Status::Created { ZERO_TIME } else { epoch_or_zero(&st.started_at) },
        "State": st.status.as_str(),
        "Status": status_text(r, now),
        "Created": epoch(Some(&r.created)),
    })
}

/// The networks a container is on, by name: rbox's bridges are modes, not named networks,
/// so a container is on none (Podman lists none for `--network=none`, pasta, slirp4netns).
fn networks(_r: &ContainerRecord) -> Vec<String> {
    Vec::new()
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
    let image_id = r.image_id.trim_start_matches("sha256:");
    o.insert(
        "ImageID".into(),
        json!(if no_trunc {
            image_id
        } else {
            &image_id[..image_id.len().min(12)]
        }),
    );
    o.insert("Names".into(), json!(r.name));
    o.insert("CreatedHuman".into(), json!(human::ago(created, now)));
    o.insert("RunningFor".into(), json!(human::ago(created, now)));
    // .Created and .CreatedAt: Go's time, as Podman prints a time.Time
    let go_created = human::go_time_of(Some(&r.created));
    o.insert("Created".into(), json!(go_created));
    o.insert("CreatedAt".into(), json!(go_created));
    o.insert("Status".into(), json!(status_text(r, now)));
    // as podman ps shows them: 0.0.0.0:8080->80/tcp, ...
    let ports: Vec<String> = r
        .spec
        .ports
        .iter()
        .map(|p| format!("{}->{}/{}", p.host_addr(), p.container_port, p.protocol))
        .collect();
    o.insert("Ports".into(), json!(ports.join(", ")));
    // Podman prints the list as Go does: `[/data /cache]`
    o.insert(
        "Mounts".into(),
        json!(r
            .spec
            .mounts
            .iter()
            .map(|m| m.destination.clone())
            .collect::<Vec<_>>()),
    );
    o.insert("Labels".into(), json!(r.spec.labels));
    o.insert("Size".into(), json!(""));
    o.insert("Networks".into(), json!(""));
    o.insert("Restarts".into(), json!(r.state.restart_count));
    o.insert(
        "StartedAt".into(),
        json!(if r.state.status == Status::Created {
            ZERO_TIME
        } else {
            epoch_or_zero(&r.state.started_at)
        }),
    );
    v
}
