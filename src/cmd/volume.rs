//! `rbox volume`: create, ls, inspect, rm, prune, exists, export and import of volumes of the
//! `local` driver, with Podman's flags, JSON keys and texts. The volumes themselves are
//! rbox-storage's (`storage/src/volume.rs`); which containers use one comes from their records
//! (`runtime::volumes::users`). Listing and inspecting read the store without entering the user
//! namespace; what writes files owned by mapped ids (create with `uid=`, rm, import) enters it.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context as _, Result};
use rbox_storage::{Store, VolumeRecord};
use serde_json::Value;

use crate::cli::complete;
use crate::context::Context;
use crate::exit::{self, CodedError};
use crate::format::{self, Row};
use crate::runtime;
use crate::state;

#[derive(Debug, clap::Args)]
pub struct VolumeArgs {
    #[command(subcommand)]
    pub command: VolumeCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum VolumeCommand {
    /// Create a volume (a random name when none is given)
    Create(CreateArgs),
    /// List volumes
    #[command(visible_alias = "list")]
    Ls(LsArgs),
    /// Display the configuration of volumes
    Inspect(InspectArgs),
    /// Remove volumes
    #[command(visible_alias = "remove")]
    Rm(RmArgs),
    /// Remove every volume no container uses
    Prune(PruneArgs),
    /// Exit 0 when the volume exists, 1 when it does not
    Exists(ExistsArgs),
    /// Write the content of a volume as a tar
    Export(ExportArgs),
    /// Unpack a tar into a volume
    Import(ImportArgs),
}

#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// Volume driver (only local)
    #[arg(short = 'd', long, value_name = "DRIVER", default_value = "local")]
    pub driver: String,
    /// Set metadata on the volume (KEY=VALUE)
    #[arg(short = 'l', long = "label", value_name = "LABEL")]
    pub label: Vec<String>,
    /// Driver option: o=uid=N,gid=N (the owner of the volume's root directory)
    #[arg(short = 'o', long = "opt", value_name = "OPT")]
    pub opt: Vec<String>,
    /// Succeed without changes when the volume exists
    #[arg(long)]
    pub ignore: bool,
    /// Name of the volume: [a-zA-Z0-9][a-zA-Z0-9_.-]*
    #[arg(value_name = "NAME")]
    pub name: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct LsArgs {
    /// Print only the names
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Filter: name=NAME, label=KEY[=VALUE], dangling=true|false, driver=local
    #[arg(short = 'f', long = "filter", value_name = "FILTER")]
    pub filter: Vec<String>,
    /// Output format: json, or a Go template such as '{{.Name}} {{.Mountpoint}}'
    #[arg(long, value_name = "FORMAT")]
    pub format: Option<String>,
    /// Do not print the header row
    #[arg(short = 'n', long)]
    pub noheading: bool,
}

#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    /// Inspect every volume
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Output format: json, or a Go template such as '{{.Mountpoint}}'
    #[arg(short = 'f', long, value_name = "FORMAT")]
    pub format: Option<String>,
    /// Volumes to inspect
    #[arg(value_name = "VOLUME", required_unless_present = "all", add = complete::volume_candidates())]
    pub names: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct RmArgs {
    /// Remove every volume
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Remove the containers that use the volumes too (running ones are killed)
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Volumes to remove
    #[arg(value_name = "VOLUME", add = complete::volume_candidates())]
    pub names: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct PruneArgs {
    /// Do not ask for confirmation
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Only volumes that match: label=KEY[=VALUE], label!=KEY[=VALUE]
    #[arg(long = "filter", value_name = "FILTER")]
    pub filter: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct ExistsArgs {
    /// The volume
    #[arg(value_name = "VOLUME", add = complete::volume_candidates())]
    pub name: String,
}

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// Write to FILE instead of stdout
    #[arg(short = 'o', long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// The volume
    #[arg(value_name = "VOLUME", add = complete::volume_candidates())]
    pub name: String,
}

#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// The volume
    #[arg(value_name = "VOLUME", add = complete::volume_candidates())]
    pub name: String,
    /// A tar file, or - for stdin
    #[arg(value_name = "FILE")]
    pub file: String,
}

pub fn run(g: &Context, a: VolumeArgs) -> Result<ExitCode> {
    match a.command {
        VolumeCommand::Create(a) => create(g, a),
        VolumeCommand::Ls(a) => ls(g, a),
        VolumeCommand::Inspect(a) => inspect(g, a),
        VolumeCommand::Rm(a) => rm(g, a),
        VolumeCommand::Prune(a) => prune(g, a),
        VolumeCommand::Exists(a) => exists(g, a),
        VolumeCommand::Export(a) => export(g, a),
        VolumeCommand::Import(a) => import(g, a),
    }
}

/// The `-o` options of `volume create` into `rec`: `o=uid=N,gid=N` is what a rootless bind
/// of a directory can honour; mount types and devices need a mount of their own.
fn apply_options(rec: &mut VolumeRecord, opts: &[String]) -> Result<()> {
    for o in opts {
        let (k, v) = o.split_once('=').unwrap_or((o.as_str(), ""));
        match k {
            "o" => {
                for item in v.split(',').filter(|i| !i.is_empty()) {
                    let (ik, iv) = item.split_once('=').unwrap_or((item, ""));
                    let n = || {
                        iv.parse::<u32>().map_err(|_| {
                            anyhow!("invalid volume option `{item}`: expected a number")
                        })
                    };
                    match ik {
                        "uid" => {
                            rec.uid = Some(n()?);
                            rec.options.insert("UID".into(), iv.into());
                        }
                        "gid" => {
                            rec.gid = Some(n()?);
                            rec.options.insert("GID".into(), iv.into());
                        }
                        _ => bail!(
                            "volume option `o={item}` is not supported: a rootless volume is a directory, whose owner uid= and gid= can set"
                        ),
                    }
                }
                rec.options.insert("o".into(), v.into());
            }
            "type" | "device" => bail!(
                "volume option `{o}` is not supported: a rootless volume is a directory of the store (for a tmpfs use --tmpfs or --mount type=tmpfs)"
            ),
            // Podman's text
            _ => bail!("invalid mount option {k} for driver 'local': invalid argument"),
        }
    }
    Ok(())
}

fn create(g: &Context, a: CreateArgs) -> Result<ExitCode> {
    if a.driver != rbox_storage::volume::LOCAL_DRIVER {
        bail!(
            "volume driver `{}` is not supported: rbox has the local driver only",
            a.driver
        );
    }
    let name = match a.name {
        Some(n) => n,
        None => state::new_id()?,
    };
    rbox_storage::validate_volume_name(&name)
        .map_err(|e| anyhow!("running volume create option: {e}"))?;
    let mut rec = VolumeRecord::new(&name);
    for l in &a.label {
        let (k, v) = l.split_once('=').unwrap_or((l.as_str(), ""));
        if k.is_empty() {
            bail!("invalid label `{l}`: expected KEY=VALUE");
        }
        rec.labels.insert(k.into(), v.into());
    }
    apply_options(&mut rec, &a.opt)?;
    let store = runtime::open_store(g)?;
    let ids = store.ids();
    for (what, id, count) in [
        ("uid", rec.uid, ids.uid_count),
        ("gid", rec.gid, ids.gid_count),
    ] {
        if let Some(id) = id.filter(|&i| i >= count) {
            bail!(
                "volume option `{what}={id}`: id {id} is not mapped in rbox's user namespace: only ids below {count} are (add a range for your user to /etc/subuid and /etc/subgid for more)"
            );
        }
    }
    match store.create_volume(&rec) {
        Ok(()) => crate::events::volume(g, "create", &name),
        Err(rbox_storage::Error::VolumeExists(_)) if a.ignore => {}
        Err(e) => return Err(e.into()),
    }
    println!("{name}");
    Ok(ExitCode::SUCCESS)
}

/// The object `volume inspect` and `volume ls --format json` print: Podman's keys, in its
/// order (a struct: serde_json's maps would sort them).
#[derive(serde::Serialize)]
#[serde(rename_all = "PascalCase")]
struct VolumeJson<'a> {
    name: &'a str,
    driver: &'a str,
    mountpoint: String,
    created_at: &'a str,
    labels: &'a BTreeMap<String, String>,
    scope: &'static str,
    options: &'a BTreeMap<String, String>,
    #[serde(rename = "UID", skip_serializing_if = "Option::is_none")]
    uid: Option<u32>,
    #[serde(rename = "GID", skip_serializing_if = "Option::is_none")]
    gid: Option<u32>,
    mount_count: usize,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    needs_copy_up: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    needs_chown: bool,
}

fn volume_json<'a>(store: &Store, v: &'a VolumeRecord, mount_count: usize) -> VolumeJson<'a> {
    VolumeJson {
        name: &v.name,
        driver: &v.driver,
        mountpoint: store.volume_data(&v.name).to_string_lossy().into_owned(),
        created_at: &v.created,
        labels: &v.labels,
        scope: "local",
        options: &v.options,
        uid: v.uid,
        gid: v.gid,
        mount_count,
        needs_copy_up: v.needs_copy_up,
        // a new volume takes the owner of the image's directory at its first mount
        needs_chown: v.needs_copy_up && v.uid.is_none() && v.gid.is_none(),
    }
}

/// Volume `name` as `rbox inspect` shows it, or None when there is no such volume.
pub fn inspect_value(g: &Context, store: &Store, name: &str) -> Result<Option<Value>> {
    let v = match store.volume(name) {
        Ok(v) => v,
        Err(rbox_storage::Error::VolumeNotFound(_)) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let running = usage(g)?.get(name).map_or(0, |u| u.1);
    Ok(Some(
        serde_json::to_value(volume_json(store, &v, running)).expect("plain struct"),
    ))
}

/// Which containers use which volume: name -> (containers, running ones).
fn usage(g: &Context) -> Result<BTreeMap<String, (Vec<state::ContainerRecord>, usize)>> {
    let mut out: BTreeMap<String, (Vec<state::ContainerRecord>, usize)> = BTreeMap::new();
    for c in state::list(g)? {
        let running = state::is_running(&c);
        for v in &c.spec.volumes {
            let e = out.entry(v.name.clone()).or_default();
            if !e.0.iter().any(|x| x.id == c.id) {
                e.0.push(c.clone());
                e.1 += usize::from(running);
            }
        }
    }
    Ok(out)
}

/// `label=KEY[=VALUE]`: whether `labels` has it.
fn has_label(labels: &BTreeMap<String, String>, want: &str) -> bool {
    match want.split_once('=') {
        Some((k, v)) => labels.get(k).is_some_and(|x| x == v),
        None => labels.contains_key(want),
    }
}

fn ls(g: &Context, a: LsArgs) -> Result<ExitCode> {
    let store = super::common::read_store(g)?;
    let used = usage(g)?;
    let mut filters: Vec<(String, String)> = Vec::new();
    for f in &a.filter {
        let Some((k, v)) = f.split_once('=') else {
            bail!("invalid filter {f:?}: must be in the format \"filter=value\"");
        };
        match k {
            "name" | "label" | "driver" | "scope" => {}
            "dangling" if matches!(v, "true" | "false" | "1" | "0") => {}
            "dangling" => bail!("invalid dangling filter value \"{v}\""),
            _ => bail!("{k} is an invalid filter"),
        }
        filters.push((k.to_string(), v.to_string()));
    }
    let keep = |v: &VolumeRecord| {
        // filters of one key: any may match; of different keys: all must
        let keys: std::collections::BTreeSet<&str> =
            filters.iter().map(|(k, _)| k.as_str()).collect();
        keys.into_iter().all(|key| {
            filters
                .iter()
                .filter(|(k, _)| k == key)
                .any(|(_, val)| match key {
                    "name" => v.name.contains(val.as_str()),
                    "label" => has_label(&v.labels, val),
                    "driver" => v.driver == *val,
                    "scope" => val == "local",
                    _ => {
                        let dangling = !used.contains_key(&v.name);
                        dangling == matches!(val.as_str(), "true" | "1")
                    }
                })
        })
    };
    let vols: Vec<VolumeRecord> = store.volumes()?.into_iter().filter(keep).collect();
    if a.quiet {
        for v in &vols {
            println!("{}", v.name);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let items: Vec<VolumeJson> = vols
        .iter()
        .map(|v| volume_json(&store, v, used.get(&v.name).map_or(0, |u| u.1)))
        .collect();
    if a.format
        .as_deref()
        .is_some_and(|f| f.trim().eq_ignore_ascii_case("json"))
    {
        // Podman 4.3 indents this one with two spaces
        println!("{}", indented(&items, b"  "));
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Row> = items
        .iter()
        .map(|j| {
            let v = serde_json::to_value(j).expect("plain struct");
            Row {
                json: v.clone(),
                view: v,
            }
        })
        .collect();
    let default = r"table {{.Driver}}\t{{.Name}}";
    let fmt = format::without_heading(a.format.as_deref(), default, a.noheading);
    print!(
        "{}",
        format::render_list(fmt.as_deref(), default, TITLES, &rows)?
    );
    Ok(ExitCode::SUCCESS)
}

/// `volume ls` header titles Podman does not derive from the field name.
const TITLES: &[(&str, &str)] = &[("Name", "VOLUME NAME"), ("Mountpoint", "MOUNTPOINT")];

/// JSON indented by `indent`: Podman 4.3's `volume inspect` indents with five spaces, its
/// `volume ls --format json` with two.
fn indented<T: serde::Serialize>(items: &[T], indent: &[u8]) -> String {
    use serde::Serialize;
    let mut buf = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(indent);
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
    if items.serialize(&mut ser).is_err() {
        return "null".into();
    }
    String::from_utf8(buf).unwrap_or_default()
}

fn inspect(g: &Context, a: InspectArgs) -> Result<ExitCode> {
    let store = super::common::read_store(g)?;
    let used = usage(g)?;
    // as Podman: what was found is printed, then what was not is the error
    let mut missing = Vec::new();
    let vols = if a.all {
        store.volumes()?
    } else {
        let mut found = Vec::new();
        for n in &a.names {
            match store.volume(n) {
                Ok(v) => found.push(v),
                Err(rbox_storage::Error::VolumeNotFound(_)) => missing.push(n.as_str()),
                Err(e) => return Err(e.into()),
            }
        }
        found
    };
    let items: Vec<VolumeJson> = vols
        .iter()
        .map(|v| volume_json(&store, v, used.get(&v.name).map_or(0, |u| u.1)))
        .collect();
    match a.format.as_deref() {
        Some(f) if !f.trim().eq_ignore_ascii_case("json") => {
            let values: Vec<Value> = items
                .iter()
                .map(|j| serde_json::to_value(j).expect("plain struct"))
                .collect();
            print!("{}", format::render_inspect(Some(f), &values)?)
        }
        // an empty list when nothing was found, as Podman 4.3.1 prints it
        _ => println!("{}", indented(&items, b"     ")),
    }
    if !missing.is_empty() {
        // Podman's text
        let each: Vec<String> = missing
            .iter()
            .map(|n| format!("no such volume {n}"))
            .collect();
        bail!("inspecting object: {}", each.join("; "));
    }
    Ok(ExitCode::SUCCESS)
}

/// Removes volume `name`: refused while containers use it (Podman's text and exit code 2),
/// unless `force`, which removes those containers first.
fn remove_one(g: &Context, store: &Store, name: &str, force: bool) -> Result<()> {
    store.volume(name).map_err(|e| match e {
        rbox_storage::Error::VolumeNotFound(_) => {
            anyhow::Error::new(CodedError::new(exit::NOT_KNOWN, e.to_string()))
        }
        e => e.into(),
    })?;
    let users = runtime::volumes::users(g, name)?;
    if !users.is_empty() && !force {
        let ids: Vec<&str> = users.iter().map(|c| c.id.as_str()).collect();
        return Err(CodedError::new(
            exit::IN_USE,
            format!(
                "volume {name} is being used by the following container(s): {}: volume is being used",
                ids.join(", ")
            ),
        )
        .into());
    }
    for c in &users {
        super::rm::prepare(g, c, true, 0)?;
        match store.remove_container_dir(&c.id) {
            Ok(()) | Err(rbox_storage::Error::ContainerNotFound(_)) => {}
            Err(e) => return Err(anyhow!("remove storage of container {}: {e}", c.name)),
        }
    }
    store
        .remove_volume(name)
        .with_context(|| format!("remove volume {name}"))?;
    Ok(())
}

fn rm(g: &Context, a: RmArgs) -> Result<ExitCode> {
    if a.all != a.names.is_empty() {
        bail!("choose either one or more volumes or all");
    }
    let store = runtime::open_store(g)?;
    let names: Vec<String> = if a.all {
        store.volumes()?.into_iter().map(|v| v.name).collect()
    } else {
        a.names.clone()
    };
    super::common::each_then_last_error(&names, |n| {
        remove_one(g, &store, n, a.force)?;
        crate::events::volume(g, "remove", n);
        println!("{n}");
        Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

fn prune(g: &Context, a: PruneArgs) -> Result<ExitCode> {
    let mut filters: Vec<(bool, String)> = Vec::new();
    for f in &a.filter {
        if let Some(v) = f.strip_prefix("label!=") {
            filters.push((false, v.to_string()));
        } else if let Some(v) = f.strip_prefix("label=") {
            filters.push((true, v.to_string()));
        } else {
            bail!(
                "invalid filter {f:?}: volume prune takes label=KEY[=VALUE] and label!=KEY[=VALUE]"
            );
        }
    }
    if !a.force {
        use std::io::Write;
        // Podman's prompt, word for word
        println!("WARNING! This will remove all volumes not used by at least one container. The following volumes will be removed:");
        let store = super::common::read_store(g)?;
        let names = unused(g, &store, &filters)?;
        if names.is_empty() {
            println!("No dangling volumes found");
            return Ok(ExitCode::SUCCESS);
        }
        for n in names {
            println!("{n}");
        }
        print!("Are you sure you want to continue? [y/N] ");
        let _ = std::io::stdout().flush();
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).ok();
        if !line.trim().eq_ignore_ascii_case("y") {
            return Ok(ExitCode::SUCCESS);
        }
    }
    let store = runtime::open_store(g)?;
    for n in prune_volumes(g, &store, &filters)? {
        println!("{n}");
    }
    Ok(ExitCode::SUCCESS)
}

/// The volumes no container uses that pass `filters` ((wanted, label) pairs).
fn unused(g: &Context, store: &Store, filters: &[(bool, String)]) -> Result<Vec<String>> {
    let used = usage(g)?;
    Ok(store
        .volumes()?
        .into_iter()
        .filter(|v| !used.contains_key(&v.name))
        .filter(|v| {
            filters
                .iter()
                .all(|(want, l)| has_label(&v.labels, l) == *want)
        })
        .map(|v| v.name)
        .collect())
}

/// Removes the volumes no container uses (`volume prune -f`, `system prune --volumes`);
/// returns their names. Each is logged as Podman 4.3 logs a prune: its removal, then the prune.
pub fn prune_volumes(
    g: &Context,
    store: &Store,
    filters: &[(bool, String)],
) -> Result<Vec<String>> {
    let mut removed = Vec::new();
    for n in unused(g, store, filters)? {
        match store.remove_volume(&n) {
            Ok(()) => {
                crate::events::volume(g, "remove", &n);
                crate::events::volume(g, "prune", &n);
                removed.push(n)
            }
            Err(rbox_storage::Error::VolumeNotFound(_)) => {}
            Err(e) => return Err(e).with_context(|| format!("remove volume {n}")),
        }
    }
    Ok(removed)
}

fn exists(g: &Context, a: ExistsArgs) -> Result<ExitCode> {
    let store = super::common::read_store(g)?;
    match store.volume(&a.name) {
        Ok(_) => Ok(ExitCode::SUCCESS),
        Err(rbox_storage::Error::VolumeNotFound(_)) => Ok(ExitCode::from(exit::NOT_KNOWN)),
        Err(e) => Err(e.into()),
    }
}

fn export(g: &Context, a: ExportArgs) -> Result<ExitCode> {
    let store = runtime::open_store(g)?;
    match &a.output {
        Some(p) => {
            let f =
                std::fs::File::create(p).with_context(|| format!("create `{}`", p.display()))?;
            let mut w = std::io::BufWriter::new(f);
            store.export_volume(&a.name, &mut w)?;
            use std::io::Write;
            w.flush()
                .with_context(|| format!("write `{}`", p.display()))?;
        }
        None => {
            if std::io::stdout().is_terminal() {
                // Podman's text
                bail!(
                    "cannot write to terminal, use command-line redirection or the --output flag"
                );
            }
            let out = std::io::stdout().lock();
            let mut w = std::io::BufWriter::new(out);
            store.export_volume(&a.name, &mut w)?;
            use std::io::Write;
            w.flush().context("write to stdout")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn import(g: &Context, a: ImportArgs) -> Result<ExitCode> {
    let store = runtime::open_store(g)?;
    if a.file == "-" {
        store.import_volume(&a.name, std::io::stdin().lock())?;
    } else {
        let f = std::fs::File::open(&a.file).with_context(|| format!("open `{}`", a.file))?;
        store.import_volume(&a.name, std::io::BufReader::new(f))?;
    }
    Ok(ExitCode::SUCCESS)
}
