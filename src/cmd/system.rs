//! `rbox system`: Podman's system group. `info` and `version` are the top-level commands;
//! `df` sums the store (images per name as Podman counts them, containers' writable layers,
//! volumes), `prune` removes stopped containers, with `--volumes` the volumes no container
//! uses, and dangling (with `-a`, unused) images, `reset` removes everything rbox keeps, and `migrate` has
//! nothing to do (rbox's store format has had one version). The prompts and reports are
//! Podman 4.3's, word for word, for scripts and hands that know them.

use std::io::{BufRead, Write};
use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context as _, Result};
use serde_json::{json, Value};

use super::common::{self, short_id};
use crate::context::Context;
use crate::format::{self, human};
use crate::runtime;
use crate::state::{self, ContainerRecord, Status};

#[derive(Debug, clap::Args)]
pub struct SystemArgs {
    #[command(subcommand)]
    pub command: SystemCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum SystemCommand {
    /// Display host, namespace and storage information (as `rbox info`)
    Info(super::info::InfoArgs),
    /// Show how much disk space images and containers use
    Df(DfArgs),
    /// Remove stopped containers and dangling (with -a, unused) images
    Prune(PruneArgs),
    /// Remove every container, image and the store itself
    Reset(ResetArgs),
    /// Migrate the store to this version of rbox (nothing to do: one store format so far)
    Migrate(MigrateArgs),
    /// Print version information (as `rbox version`)
    Version(VersionArgs),
    /// Show events (as `rbox events`)
    Events(super::events::EventsArgs),
}

#[derive(Debug, clap::Args)]
pub struct DfArgs {
    /// Show each image and container
    #[arg(short = 'v', long)]
    pub verbose: bool,
    /// Go template for each row, such as '{{.Type}} {{.Size}}'
    #[arg(long, value_name = "FORMAT")]
    pub format: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct PruneArgs {
    /// Remove every image no container uses, not only dangling ones
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Do not ask for confirmation
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Remove the volumes no container uses too
    #[arg(long)]
    pub volumes: bool,
    /// Remove only containers and images that match: label=KEY[=VALUE],
    /// label!=KEY[=VALUE], until=TIME (RFC 3339, Unix seconds, or a duration before now)
    #[arg(long, value_name = "FILTER")]
    pub filter: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct ResetArgs {
    /// Do not ask for confirmation
    #[arg(short = 'f', long)]
    pub force: bool,
}

#[derive(Debug, clap::Args)]
pub struct MigrateArgs {
    /// Accepted for compatibility: rbox has no runtime to switch to
    #[arg(long, value_name = "RUNTIME")]
    pub new_runtime: Option<String>,
}

#[derive(Debug, Clone, clap::Args)]
pub struct VersionArgs {
    /// Output format: json, or a Go template such as '{{.Client.Version}}'
    #[arg(short = 'f', long, value_name = "FORMAT")]
    pub format: Option<String>,
}

pub fn run(g: &Context, a: SystemArgs) -> Result<ExitCode> {
    match a.command {
        SystemCommand::Info(a) => super::info::run(g, a),
        SystemCommand::Df(a) => df(g, a),
        SystemCommand::Events(a) => super::events::run(g, a),
        SystemCommand::Prune(a) => prune(g, a),
        SystemCommand::Reset(a) => reset(g, a),
        SystemCommand::Migrate(a) => {
            if let Some(r) = &a.new_runtime {
                super::global::check_runtime(r)?;
            }
            tracing::info!("nothing to migrate: rbox's store has a single format");
            Ok(ExitCode::SUCCESS)
        }
        SystemCommand::Version(a) => version(a),
    }
}

/// `rbox version` (and `system version`): Podman's `Client:` block, and its JSON shape.
pub fn version(a: VersionArgs) -> Result<ExitCode> {
    let os_arch = format!("linux/{}", go_arch());
    let v = json!({ "Client": client_version() });
    match a.format.as_deref() {
        None => {
            println!("Client:       rbox");
            println!("Version:      {}", env!("CARGO_PKG_VERSION"));
            println!("OS/Arch:      {os_arch}");
        }
        // Podman prints the JSON on one line here
        Some(f) if f.trim().eq_ignore_ascii_case("json") => println!("{v}"),
        Some(f) => {
            let t = format::Template::parse(f)?;
            let mut out = t.render(&v)?;
            if !out.ends_with('\n') {
                out.push('\n');
            }
            print!("{out}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The `Client` of `version` and the `version` of `info`, with Podman's keys (no API
/// Version or Go Version: rbox has no API service and is not written in Go).
pub fn client_version() -> Value {
    json!({
        "Version": env!("CARGO_PKG_VERSION"),
        "OsArch": format!("linux/{}", go_arch()),
        "Os": "linux",
    })
}

/// The architecture as Go (and so Podman) names it.
pub fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// go-units `HumanSize`: decimal units, four significant digits, no space ("4.264MB", "48B",
/// "11.33kB"), as `podman system df` prints sizes.
pub(crate) fn df_size(bytes: u64) -> String {
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1000.0 && i < UNITS.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    format!("{}{}", sig4(v), UNITS[i])
}

/// `%.4g` of a value below 1000: four significant digits, trailing zeros dropped.
fn sig4(v: f64) -> String {
    let decimals = if v >= 100.0 {
        1
    } else if v >= 10.0 {
        2
    } else {
        3
    };
    let s = format!("{v:.decimals$}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// "48B (100%)"
fn reclaimable(reclaim: u64, total: u64) -> String {
    let pct = if total == 0 {
        0
    } else {
        (reclaim as f64 * 100.0 / total as f64).round() as u64
    };
    format!("{} ({pct}%)", df_size(reclaim))
}

/// Bytes under `dir` (files as stored, not followed), counting what can be read.
fn du(dir: &Path) -> u64 {
    let Ok(m) = std::fs::symlink_metadata(dir) else {
        return 0;
    };
    if !m.is_dir() {
        return m.len();
    }
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.flatten().map(|e| du(&e.path())).sum()
}

/// A container's own bytes: its writable layer (the whole copy for the vfs driver).
pub(crate) fn container_size(store: &rbox_storage::Store, rec: &ContainerRecord) -> u64 {
    match store.container_dir(&rec.id) {
        Ok(d) if d.upper.exists() => du(&d.upper),
        Ok(d) => du(&d.rootfs),
        Err(_) => 0,
    }
}

/// One image row of `df` as Podman counts them: one per name (a nameless image is one row).
struct ImageRow {
    repo: String,
    tag: String,
    id: String,
    created: i64,
    size: u64,
    containers: usize,
}

fn image_rows(
    store: &rbox_storage::Store,
    containers: &[ContainerRecord],
) -> Result<Vec<ImageRow>> {
    let mut rows = Vec::new();
    for rec in store.images()? {
        let users = containers
            .iter()
            .filter(|c| c.image_id.trim_start_matches("sha256:") == rec.id.hex())
            .count();
        let names = if rec.names.is_empty() {
            vec![String::new()]
        } else {
            rec.names.clone()
        };
        for n in names {
            let (repo, tag) = if n.is_empty() {
                ("<none>".to_string(), "<none>".to_string())
            } else {
                common::split_name(&n)
            };
            rows.push(ImageRow {
                repo,
                tag,
                id: rec.id.hex().to_string(),
                created: common::epoch(rec.created.as_deref()),
                size: rec.size,
                containers: users,
            });
        }
    }
    Ok(rows)
}

fn df(g: &Context, a: DfArgs) -> Result<ExitCode> {
    let store = common::read_store(g)?;
    let containers = state::list(g)?;
    let images = image_rows(&store, &containers)?;
    let sizes: Vec<u64> = containers
        .iter()
        .map(|c| container_size(&store, c))
        .collect();
    let volumes = volume_rows(&store, &containers)?;
    if a.verbose {
        return df_verbose(&a, &images, &containers, &sizes, &volumes);
    }
    let img_size: u64 = images.iter().map(|r| r.size).sum();
    let img_active = images.iter().filter(|r| r.containers > 0).count();
    let img_reclaim: u64 = images
        .iter()
        .filter(|r| r.containers == 0)
        .map(|r| r.size)
        .sum();
    let running = |c: &ContainerRecord| c.state.status == Status::Running;
    let ctr_size: u64 = sizes.iter().sum();
    let ctr_active = containers.iter().filter(|c| running(c)).count();
    let ctr_reclaim: u64 = containers
        .iter()
        .zip(&sizes)
        .filter(|(c, _)| !running(c))
        .map(|(_, s)| s)
        .sum();
    let summary = [
        ("Images", images.len(), img_active, img_size, img_reclaim),
        (
            "Containers",
            containers.len(),
            ctr_active,
            ctr_size,
            ctr_reclaim,
        ),
        (
            "Local Volumes",
            volumes.len(),
            volumes.iter().filter(|v| v.1 > 0).count(),
            volumes.iter().map(|v| v.2).sum(),
            volumes.iter().filter(|v| v.1 == 0).map(|v| v.2).sum(),
        ),
    ];
    let rows: Vec<format::Row> = summary
        .iter()
        .map(|&(kind, total, active, size, reclaim)| format::Row {
            json: json!({"Type": kind, "Total": total, "Active": active, "Size": size, "Reclaimable": reclaim}),
            view: json!({
                "Type": kind, "Total": total, "Active": active,
                "Size": df_size(size), "Reclaimable": reclaimable(reclaim, size),
            }),
        })
        .collect();
    // Podman 4.3 prints the word `json` for --format json (one line per row); `{{json .}}`
    // gives the numbers
    if a.format
        .as_deref()
        .is_some_and(|f| f.trim().eq_ignore_ascii_case("json"))
    {
        for _ in &rows {
            println!("json");
        }
        return Ok(ExitCode::SUCCESS);
    }
    const DEFAULT: &str = r"table {{.Type}}\t{{.Total}}\t{{.Active}}\t{{.Size}}\t{{.Reclaimable}}";
    let json_rows: Vec<format::Row>;
    let rows = match a.format.as_deref() {
        // `{{json .}}` sees the numbers, as Podman's
        Some(f) if f.contains("json") => {
            json_rows = rows
                .iter()
                .map(|r| format::Row {
                    json: r.json.clone(),
                    view: r.json.clone(),
                })
                .collect();
            &json_rows
        }
        _ => &rows,
    };
    print!(
        "{}",
        format::render_list(a.format.as_deref(), DEFAULT, &[], rows)?
    );
    Ok(ExitCode::SUCCESS)
}

/// Each volume with the number of containers that use it and its size.
fn volume_rows(
    store: &rbox_storage::Store,
    containers: &[ContainerRecord],
) -> Result<Vec<(String, usize, u64)>> {
    Ok(store
        .volumes()?
        .into_iter()
        .map(|v| {
            let links = containers
                .iter()
                .filter(|c| c.spec.volumes.iter().any(|u| u.name == v.name))
                .count();
            let size = store.volume_size(&v.name);
            (v.name, links, size)
        })
        .collect())
}

fn df_verbose(
    a: &DfArgs,
    images: &[ImageRow],
    containers: &[ContainerRecord],
    sizes: &[u64],
    volumes: &[(String, usize, u64)],
) -> Result<ExitCode> {
    let now = human::now();
    let irows: Vec<format::Row> = images
        .iter()
        .map(|r| {
            let v = json!({
                "Repository": r.repo, "Tag": r.tag, "ImageID": short_id(&r.id),
                "Created": human::duration(now - r.created), "Size": df_size(r.size),
                "SharedSize": df_size(0), "UniqueSize": df_size(r.size),
                "Containers": r.containers,
            });
            format::Row {
                json: v.clone(),
                view: v,
            }
        })
        .collect();
    let crows: Vec<format::Row> = containers
        .iter()
        .zip(sizes)
        .map(|(c, s)| {
            let v = json!({
                "ContainerID": short_id(&c.id), "Image": short_id(&c.image_id),
                "Command": c.spec.args.join(" "), "LocalVolumes": c.spec.volumes.len(), "Size": df_size(*s),
                "Created": human::duration(now - common::epoch(Some(&c.created))),
                "Status": c.state.status.as_str(), "Names": c.name,
            });
            format::Row {
                json: v.clone(),
                view: v,
            }
        })
        .collect();
    let titles = [
        ("ImageID", "IMAGE ID"),
        ("SharedSize", "SHARED SIZE"),
        ("UniqueSize", "UNIQUE SIZE"),
        ("ContainerID", "CONTAINER ID"),
        ("LocalVolumes", "LOCAL VOLUMES"),
        ("VolumeName", "VOLUME NAME"),
    ];
    let images_t = r"table {{.Repository}}\t{{.Tag}}\t{{.ImageID}}\t{{.Created}}\t{{.Size}}\t{{.SharedSize}}\t{{.UniqueSize}}\t{{.Containers}}";
    let ctrs_t = r"table {{.ContainerID}}\t{{.Image}}\t{{.Command}}\t{{.LocalVolumes}}\t{{.Size}}\t{{.Created}}\t{{.Status}}\t{{.Names}}";
    let vols_t = r"table {{.VolumeName}}\t{{.Links}}\t{{.Size}}";
    let fmt = a.format.as_deref();
    let pick = |d: &'static str| fmt.map(str::to_string).unwrap_or_else(|| d.to_string());
    let mut out = String::new();
    out.push_str("Images space usage:\n\n");
    out.push_str(&format::render_list(
        Some(&pick(images_t)),
        "",
        &titles,
        &irows,
    )?);
    out.push_str("\nContainers space usage:\n\n");
    out.push_str(&format::render_list(
        Some(&pick(ctrs_t)),
        "",
        &titles,
        &crows,
    )?);
    out.push_str("\nLocal Volumes space usage:\n\n");
    let vrows: Vec<format::Row> = volumes
        .iter()
        .map(|(name, links, size)| {
            let v = json!({"VolumeName": name, "Links": links, "Size": df_size(*size)});
            format::Row {
                json: v.clone(),
                view: v,
            }
        })
        .collect();
    out.push_str(&format::render_list(
        Some(&pick(vols_t)),
        "",
        &titles,
        &vrows,
    )?);
    print!("{out}");
    Ok(ExitCode::SUCCESS)
}

/// Ask Podman's question on stdout (after `warning`); yes when the answer starts with y or
/// Y, as Podman reads it ("yes", "yup"). End of input is Podman's `Error: EOF`. The prompt
/// of every prune and of reset.
pub(crate) fn confirm(warning: &str) -> Result<bool> {
    print!("{warning}Are you sure you want to continue? [y/N] ");
    std::io::stdout().flush().ok();
    let mut line = String::new();
    if std::io::stdin().lock().read_line(&mut line)? == 0 {
        bail!("EOF");
    }
    Ok(line.trim_start().starts_with(['y', 'Y']))
}

/// The warning `podman system prune` prints before asking.
fn prune_warning(all: bool, volumes: bool) -> String {
    let mut w = String::from(
        "WARNING! This command removes:\n\t- all stopped containers\n\t- all networks not used by at least one container\n",
    );
    if volumes {
        w.push_str("\t- all volumes not used by at least one container\n");
    }
    if all {
        w.push_str(
            "\t- all images without at least one container associated with them\n\t- all build cache\n",
        );
    } else {
        w.push_str("\t- all dangling images\n\t- all dangling build cache\n");
    }
    w.push('\n');
    w
}

fn prune(g: &Context, a: PruneArgs) -> Result<ExitCode> {
    // (its containers are pruned first: their refusal)
    let filters = super::prune::parse_filters(&a.filter, |k| format!("{k} is an invalid filter"))?;
    if !a.force && !confirm(&prune_warning(a.all, a.volumes))? {
        return Ok(ExitCode::SUCCESS);
    }
    let stopped: Vec<ContainerRecord> = state::list(g)?
        .into_iter()
        .filter(|c| c.state.status != Status::Running)
        .filter(|c| super::prune::container_matches(&filters, c))
        .collect();
    let store = runtime::open_store(g)?;
    let mut reclaimed = 0u64;
    let mut removed_ctrs = Vec::new();
    for c in &stopped {
        let size = container_size(&store, c);
        super::rm::prepare(g, c, false, 0)?;
        match store.remove_container_dir(&c.id) {
            Ok(()) | Err(rbox_storage::Error::ContainerNotFound(_)) => {}
            Err(e) => return Err(e).with_context(|| format!("remove container {}", c.name)),
        }
        reclaimed += size;
        removed_ctrs.push(c.id.clone());
    }
    let mut removed_vols = Vec::new();
    if a.volumes {
        let sizes: std::collections::HashMap<String, u64> = store
            .volumes()?
            .into_iter()
            .map(|v| {
                let size = store.volume_size(&v.name);
                (v.name, size)
            })
            .collect();
        removed_vols = super::volume::prune_volumes(g, &store, &[])?;
        reclaimed += removed_vols
            .iter()
            .filter_map(|n| sizes.get(n))
            .sum::<u64>();
    }
    let mut removed_imgs = Vec::new();
    for rec in store.images()? {
        let unused = store.containers_using(&rec.id).is_empty();
        if unused
            && (a.all || rec.names.is_empty())
            && rec.read_only_store.is_none()
            && super::prune::image_matches(&filters, &store, &rec)
        {
            store
                .remove_image(&rec.id, false)
                .with_context(|| format!("remove image {}", short_id(rec.id.hex())))?;
            // as Podman 4.3's system prune logs it: each name untagged, then a nameless remove
            for n in &rec.names {
                crate::events::image(g, "untag", rec.id.hex(), n);
            }
            crate::events::image(g, "remove", rec.id.hex(), "");
            reclaimed += rec.size;
            removed_imgs.push(rec.id.hex().to_string());
        }
    }
    if !removed_ctrs.is_empty() {
        println!("Deleted Containers");
        for id in &removed_ctrs {
            println!("{id}");
        }
    }
    if !removed_vols.is_empty() {
        println!("Deleted Volumes");
        for n in &removed_vols {
            println!("{n}");
        }
    }
    if !removed_imgs.is_empty() {
        println!("Deleted Images");
        for id in &removed_imgs {
            println!("{id}");
        }
    }
    println!("Total reclaimed space: {}", df_size(reclaimed));
    Ok(ExitCode::SUCCESS)
}

fn reset(g: &Context, a: ResetArgs) -> Result<ExitCode> {
    let root = g.storage_root()?;
    let run = g.runtime_dir()?;
    if !a.force {
        let warning = format!(
            "WARNING! This will remove:\n        - all containers\n        - all pods\n        - all images\n        - all networks\n        - all build cache\n        - all machines\n        - all volumes\n        - the graphRoot directory: {:?}\n        - the runRoot directory: {:?}\n",
            root.display().to_string(),
            run.display().to_string()
        );
        if !confirm(&warning)? {
            return Ok(ExitCode::SUCCESS);
        }
    }
    if !root.exists() {
        return Ok(ExitCode::SUCCESS);
    }
    // kill and forget every container, then remove the store from inside the user namespace
    // (its files belong to mapped ids)
    let containers = state::list(g)?;
    for c in &containers {
        super::rm::prepare(g, c, true, 0)?;
    }
    let store = runtime::open_store(g)?;
    drop(store);
    rbox_storage::remove_tree(&root).with_context(|| format!("remove `{}`", root.display()))?;
    // the runtime directory goes last: the pause process that holds the user namespace ends
    // once it is gone
    if run.exists() {
        rbox_storage::remove_tree(&run).with_context(|| format!("remove `{}`", run.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_as_podman_system_df() {
        // observed: 4264007 -> 4.264MB, 48 -> 48B, 11330 -> 11.33kB, 2133000 -> 2.133MB
        assert_eq!(df_size(4264007), "4.264MB");
        assert_eq!(df_size(48), "48B");
        assert_eq!(df_size(0), "0B");
        assert_eq!(df_size(11330), "11.33kB");
        assert_eq!(df_size(2_133_000), "2.133MB");
        assert_eq!(df_size(1000), "1kB");
        assert_eq!(df_size(123_456), "123.5kB");
        assert_eq!(reclaimable(48, 48), "48B (100%)");
        assert_eq!(reclaimable(12, 24), "12B (50%)");
        assert_eq!(reclaimable(0, 0), "0B (0%)");
    }

    #[test]
    fn prune_warnings_are_podmans() {
        assert_eq!(
            prune_warning(false, false),
            "WARNING! This command removes:\n\t- all stopped containers\n\t- all networks not used by at least one container\n\t- all dangling images\n\t- all dangling build cache\n\n"
        );
        assert!(prune_warning(true, true).contains(
            "\t- all volumes not used by at least one container\n\t- all images without at least one container associated with them\n\t- all build cache\n\n"
        ));
    }
}
