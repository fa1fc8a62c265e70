//! `rbox secret`: create, ls, inspect, rm and exists of secrets of the `file` driver, with
//! Podman 4.3's flags, JSON keys and texts. The secrets themselves (records, data, names) are
//! rbox-storage's (`storage/src/secret.rs`); what a container does with one is `run
//! --secret`'s (`runtime::secrets`). Nothing here ever prints a secret's data. Listing and
//! inspecting read the store without entering the user namespace.

use std::io::Read as _;
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context as _, Result};
use rbox_storage::{SecretRecord, Store};
use serde_json::{json, Value};

use crate::cli::complete;
use crate::context::Context;
use crate::exit;
use crate::format::{self, human, Row};
use crate::runtime;

#[derive(Debug, clap::Args)]
pub struct SecretArgs {
    #[command(subcommand)]
    pub command: SecretCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum SecretCommand {
    /// Create a secret from a file, from stdin (-) or from an environment variable (--env)
    Create(CreateArgs),
    /// List secrets
    #[command(visible_alias = "list")]
    Ls(LsArgs),
    /// Display the details of secrets (never their data)
    Inspect(InspectArgs),
    /// Remove secrets
    #[command(visible_alias = "remove")]
    Rm(RmArgs),
    /// Exit 0 when the secret exists, 1 when it does not
    Exists(ExistsArgs),
}

#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// Secret driver (only file)
    #[arg(short = 'd', long, value_name = "DRIVER", default_value = "file")]
    pub driver: String,
    /// FILE names an environment variable whose value is the secret's data
    #[arg(long)]
    pub env: bool,
    /// Set metadata on the secret (KEY=VALUE)
    #[arg(short = 'l', long = "label", value_name = "LABEL")]
    pub label: Vec<String>,
    /// Name of the secret: up to 64 of [a-zA-Z0-9_.-], starting and ending with a letter or digit
    #[arg(value_name = "NAME")]
    pub name: String,
    /// The file holding the data, - for stdin, or with --env the variable's name
    #[arg(value_name = "FILE|-")]
    pub file: String,
}

#[derive(Debug, clap::Args)]
pub struct LsArgs {
    /// Print only the ids
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Filter: name=NAME, id=ID (a regular expression's common forms: ^PREFIX, SUFFIX$)
    #[arg(short = 'f', long = "filter", value_name = "FILTER")]
    pub filter: Vec<String>,
    /// Output format: json, or a Go template such as '{{.Name}} {{.ID}}'
    #[arg(long, value_name = "FORMAT")]
    pub format: Option<String>,
    /// Do not print the header row
    #[arg(long)]
    pub noheading: bool,
}

#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    /// Output format: json, or a Go template such as '{{.Spec.Name}}'
    #[arg(short = 'f', long, value_name = "FORMAT")]
    pub format: Option<String>,
    /// Print the details as human-readable lines (over --format, as in Podman)
    #[arg(long)]
    pub pretty: bool,
    /// Secrets to inspect, by name or id
    #[arg(value_name = "SECRET", required = true, add = complete::secret_candidates())]
    pub names: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct RmArgs {
    /// Remove every secret
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Secrets to remove, by name or id
    #[arg(value_name = "SECRET", add = complete::secret_candidates())]
    pub names: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct ExistsArgs {
    /// The secret, by name or id
    #[arg(value_name = "SECRET", add = complete::secret_candidates())]
    pub name: String,
}

pub fn run(g: &Context, a: SecretArgs) -> Result<ExitCode> {
    match a.command {
        SecretCommand::Create(a) => create(g, a),
        SecretCommand::Ls(a) => ls(g, a),
        SecretCommand::Inspect(a) => inspect(g, a),
        SecretCommand::Rm(a) => rm(g, a),
        SecretCommand::Exists(a) => exists(g, a),
    }
}

/// The data `secret create` stores: the file, stdin (`-`) or, with `--env`, the variable.
fn read_data(a: &CreateArgs) -> Result<Vec<u8>> {
    if a.env {
        return match std::env::var_os(&a.file) {
            Some(v) => Ok(std::os::unix::ffi::OsStringExt::into_vec(v)),
            // Podman's text
            None => bail!(
                "cannot create store secret data: environment variable {} is not set",
                a.file
            ),
        };
    }
    let mut data = Vec::new();
    // one byte past the limit is enough to refuse: a huge file is never read whole
    let limit = rbox_storage::secret::MAX_DATA as u64;
    if a.file == "-" {
        std::io::stdin()
            .lock()
            .take(limit)
            .read_to_end(&mut data)
            .context("read the secret from stdin")?;
    } else {
        let f = std::fs::File::open(&a.file).map_err(|e| {
            // Podman's text
            anyhow!("open {}: {}", a.file, runtime::spec::io_text(&e))
        })?;
        f.take(limit)
            .read_to_end(&mut data)
            .map_err(|e| anyhow!("read {}: {}", a.file, runtime::spec::io_text(&e)))?;
    }
    Ok(data)
}

fn create(g: &Context, a: CreateArgs) -> Result<ExitCode> {
    if a.driver != rbox_storage::secret::FILE_DRIVER {
        // Podman's text
        bail!("invalid driver");
    }
    rbox_storage::validate_secret_name(&a.name)?;
    let mut rec = SecretRecord::new(&a.name)?;
    for l in &a.label {
        let (k, v) = l.split_once('=').unwrap_or((l.as_str(), ""));
        if k.is_empty() {
            bail!("invalid label `{l}`: expected KEY=VALUE");
        }
        rec.labels.insert(k.into(), v.into());
    }
    let data = read_data(&a)?;
    let store = runtime::open_store(g)?;
    store.create_secret(&rec, &data)?;
    println!("{}", rec.id);
    Ok(ExitCode::SUCCESS)
}

/// A secret as `secret inspect` prints it: Podman's keys, in its order (structs: serde_json's
/// maps would sort them).
#[derive(serde::Serialize)]
#[serde(rename_all = "PascalCase")]
struct SecretJson<'a> {
    #[serde(rename = "ID")]
    id: &'a str,
    created_at: &'a str,
    updated_at: &'a str,
    spec: SpecJson<'a>,
}

#[derive(serde::Serialize)]
#[serde(rename_all = "PascalCase")]
struct SpecJson<'a> {
    name: &'a str,
    driver: DriverJson<'a>,
    labels: &'a std::collections::BTreeMap<String, String>,
}

#[derive(serde::Serialize)]
#[serde(rename_all = "PascalCase")]
struct DriverJson<'a> {
    name: &'a str,
    options: std::collections::BTreeMap<&'static str, String>,
}

/// The object of `secret ls --format json`, in the order of `secret ls`'s columns.
#[derive(serde::Serialize)]
#[serde(rename_all = "PascalCase")]
struct ListJson<'a> {
    #[serde(rename = "ID")]
    id: &'a str,
    name: &'a str,
    driver: &'a str,
    created_at: &'a str,
    updated_at: &'a str,
}

fn inspect_json<'a>(store: &Store, s: &'a SecretRecord) -> SecretJson<'a> {
    let path = store.secrets_dir().to_string_lossy().into_owned();
    SecretJson {
        id: &s.id,
        created_at: &s.created,
        updated_at: &s.created,
        spec: SpecJson {
            name: &s.name,
            driver: DriverJson {
                name: &s.driver,
                options: [("path", path)].into(),
            },
            labels: &s.labels,
        },
    }
}

/// `secret inspect --pretty`: Podman's lines, labels sorted.
fn pretty(s: &SecretRecord) -> String {
    let mut out = format!("ID:              {}\nName:              {}\n", s.id, s.name);
    if !s.labels.is_empty() {
        out.push_str("Labels:\n");
        for (k, v) in &s.labels {
            out.push_str(&format!(" - {k}={v}\n"));
        }
    }
    let at = go_time(&s.created);
    out.push_str(&format!(
        "Driver:            {}\nCreated at:        {at}\nUpdated at:        {at}\n",
        s.driver
    ));
    out
}

/// An RFC 3339 UTC time with nanoseconds as Go's `time.Time` prints it:
/// `2026-11-25T18:25:59.812416070Z` -> `2026-11-25 18:25:59.81241607 +0000 UTC`.
fn go_time(rfc3339: &str) -> String {
    let t = rfc3339.trim_end_matches('Z').replacen('T', " ", 1);
    let t = match t.split_once('.') {
        Some((secs, frac)) => match frac.trim_end_matches('0') {
            "" => secs.to_string(),
            frac => format!("{secs}.{frac}"),
        },
        None => t,
    };
    format!("{t} +0000 UTC")
}

/// Whether `s` passes `filters` (key, value pairs): values of one key may any match, every
/// key must.
fn keep(s: &SecretRecord, filters: &[(String, String)]) -> bool {
    let keys: std::collections::BTreeSet<&str> = filters.iter().map(|(k, _)| k.as_str()).collect();
    keys.into_iter().all(|key| {
        filters
            .iter()
            .filter(|(k, _)| k == key)
            .any(|(_, want)| match key {
                "name" => super::ps::name_matches(&s.name, want),
                _ => super::ps::name_matches(&s.id, want),
            })
    })
}

fn ls(g: &Context, a: LsArgs) -> Result<ExitCode> {
    let mut filters = Vec::new();
    for f in &a.filter {
        let Some((k, v)) = f.split_once('=') else {
            // Podman's text
            bail!("filter input must be in the form of filter=value: {f} is invalid");
        };
        if !matches!(k, "name" | "id") {
            bail!("invalid filter {k:?}");
        }
        filters.push((k.to_string(), v.to_string()));
    }
    let store = super::common::read_store(g)?;
    let secrets: Vec<SecretRecord> = store
        .secrets()?
        .into_iter()
        .filter(|s| keep(s, &filters))
        .collect();
    if a.quiet {
        for s in &secrets {
            println!("{}", s.id);
        }
        return Ok(ExitCode::SUCCESS);
    }
    if a.format.as_deref().is_some_and(is_json) {
        let items: Vec<ListJson> = secrets
            .iter()
            .map(|s| ListJson {
                id: &s.id,
                name: &s.name,
                driver: &s.driver,
                created_at: &s.created,
                updated_at: &s.created,
            })
            .collect();
        println!("{}", format::pretty_json(&items));
        return Ok(ExitCode::SUCCESS);
    }
    let now = human::now();
    let rows: Vec<Row> = secrets
        .iter()
        .map(|s| {
            let ago = human::parse_rfc3339(&s.created)
                .map(|t| human::ago(t, now))
                .unwrap_or_default();
            Row {
                // `--format json` printed the list above, from structs in Podman's order
                json: Value::Null,
                view: json!({
                    "ID": s.id,
                    "Name": s.name,
                    "Driver": s.driver,
                    "CreatedAt": ago,
                    "UpdatedAt": ago,
                }),
            }
        })
        .collect();
    let default = r"table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.CreatedAt}}\t{{.UpdatedAt}}";
    let fmt = format::without_heading(a.format.as_deref(), default, a.noheading);
    print!(
        "{}",
        format::render_list(fmt.as_deref(), default, TITLES, &rows)?
    );
    Ok(ExitCode::SUCCESS)
}

/// Whether a `--format` asks for JSON (printed from structs, in Podman's key order).
fn is_json(f: &str) -> bool {
    f.trim().eq_ignore_ascii_case("json")
}

/// `secret ls` header titles Podman does not derive from the field name.
const TITLES: &[(&str, &str)] = &[("CreatedAt", "CREATED"), ("UpdatedAt", "UPDATED")];

fn inspect(g: &Context, a: InspectArgs) -> Result<ExitCode> {
    let store = super::common::read_store(g)?;
    // as Podman: what was found is printed, then what was not is the error
    let mut found = Vec::new();
    let mut missing = Vec::new();
    for n in &a.names {
        match store.secret(n) {
            Ok(s) => found.push(s),
            Err(e @ rbox_storage::Error::SecretNotFound(_)) => missing.push(e.to_string()),
            Err(e) => return Err(e.into()),
        }
    }
    let items: Vec<SecretJson> = found.iter().map(|s| inspect_json(&store, s)).collect();
    match a.format.as_deref() {
        _ if a.pretty => print!("{}", found.iter().map(pretty).collect::<String>()),
        Some(f) if !is_json(f) => {
            let values: Vec<Value> = items
                .iter()
                .map(|j| serde_json::to_value(j).expect("plain struct"))
                .collect();
            print!("{}", format::render_inspect(Some(f), &values)?);
        }
        _ => println!("{}", format::pretty_json(&items)),
    }
    // Podman's lines: the later ones first, then the first as the error
    if let Some((first, rest)) = missing.split_first() {
        for m in rest {
            eprintln!("error inspecting secret: {m}");
        }
        bail!("inspecting secret: {first}");
    }
    Ok(ExitCode::SUCCESS)
}

fn rm(g: &Context, a: RmArgs) -> Result<ExitCode> {
    if a.all != a.names.is_empty() {
        // Podman's text (it names no secret with --all either)
        bail!("`rbox secret rm` requires one argument, or the --all flag");
    }
    let store = runtime::open_store(g)?;
    let names: Vec<String> = if a.all {
        store.secrets()?.into_iter().map(|s| s.id).collect()
    } else {
        a.names.clone()
    };
    super::common::each_then_last_error(&names, |n| {
        println!("{}", store.remove_secret(n)?.id);
        Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

fn exists(g: &Context, a: ExistsArgs) -> Result<ExitCode> {
    let store = super::common::read_store(g)?;
    match store.secret(&a.name) {
        Ok(_) => Ok(ExitCode::SUCCESS),
        Err(rbox_storage::Error::SecretNotFound(_)) => Ok(ExitCode::from(exit::NOT_KNOWN)),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_print_as_go_does() {
        assert_eq!(
            go_time("2026-11-25T18:25:59.812416070Z"),
            "2026-11-25 18:25:59.81241607 +0000 UTC"
        );
        assert_eq!(
            go_time("2026-11-25T18:25:59.000000000Z"),
            "2026-11-25 18:25:59 +0000 UTC"
        );
    }
}
