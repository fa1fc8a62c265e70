//! `rbox images` (and `rbox image ls`): list the images in local storage, one row per name, as
//! Podman prints them (REPOSITORY TAG IMAGE ID CREATED SIZE). Reads the store without entering
//! the user namespace and without a lock.

use std::collections::{BTreeMap, BTreeSet};
use std::process::ExitCode;

use anyhow::{bail, Result};
use rbox_storage::{ImageRecord, Store};
use serde_json::{json, Value};

use super::common::{epoch, read_store, short_id, split_name};
use crate::cli::complete;
use crate::context::Context;
use crate::format::{self, human, Format, Row};

#[derive(Debug, Clone, clap::Args)]
pub struct ImagesArgs {
    /// Show all images, the intermediate ones (untagged build steps another image was built
    /// on) too
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Print only image IDs
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Output format: json, or a Go template such as 'table {{.Repository}}:{{.Tag}}\t{{.ID}}'
    #[arg(long, value_name = "FORMAT")]
    pub format: Option<String>,
    /// Do not truncate image IDs
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
    /// Show image digests
    #[arg(long)]
    pub digests: bool,
    /// Add a HISTORY column: the image's names, most recent first (the default table only)
    #[arg(long)]
    pub history: bool,
    /// Do not print the header row
    #[arg(short = 'n', long = "noheading")]
    pub noheading: bool,
    /// Filter: dangling=true|false, reference=PATTERN (`*` wildcards, e.g. 'localhost/*'),
    /// label=KEY[=VALUE], label!=KEY[=VALUE], id=ID, before=IMAGE, since=IMAGE,
    /// readonly=true|false, intermediate=true|false
    #[arg(short = 'f', long = "filter", value_name = "KEY=VALUE")]
    pub filter: Vec<String>,
    /// Sort by created, id, repository, size or tag
    #[arg(long, value_name = "KEY", default_value = "created")]
    pub sort: String,
    /// Only list this image (a name or id)
    #[arg(value_name = "IMAGE", add = complete::image_candidates())]
    pub image: Option<String>,
}

/// Header titles Podman uses where they differ from the field name.
pub const TITLES: &[(&str, &str)] = &[
    ("ID", "IMAGE ID"),
    ("CreatedSince", "CREATED"),
    ("CreatedAt", "CREATED AT"),
    ("Repository", "REPOSITORY"),
    ("ReadOnly", "R/O"),
];

pub fn run(g: &Context, a: ImagesArgs) -> Result<ExitCode> {
    let store = read_store(g)?;
    let mut images = match &a.image {
        Some(name) => match store.lookup_image(name) {
            Ok(rec) => vec![rec],
            Err(rbox_storage::Error::ImageNotFound(_)) => Vec::new(),
            Err(e) => return Err(e.into()),
        },
        None => store.images()?,
    };
    const SORT_KEYS: &[&str] = &["created", "id", "repository", "size", "tag"];
    if !SORT_KEYS.contains(&a.sort.as_str()) {
        // Podman's words, which scripts match
        bail!(
            "\"{}\" is not a valid field for sorting. Choose from: {}",
            a.sort,
            SORT_KEYS.join(", ")
        );
    }
    let filters = a
        .filter
        .iter()
        .map(|f| Filter::parse(f, &store))
        .collect::<Result<Vec<_>>>()?;
    // Podman's default: no intermediate images
    if !a.all
        && !filters
            .iter()
            .any(|f| matches!(f, Filter::Intermediate(..)))
    {
        let hidden = intermediate_ids(&store);
        images.retain(|rec| !hidden.contains(rec.id.hex()));
    }
    if !filters.is_empty() {
        images.retain(|rec| {
            let labels = labels(&store, rec);
            filters.iter().all(|f| f.matches(rec, &labels))
        });
    }
    images.sort_by(|x, y| {
        epoch(y.created.as_deref())
            .cmp(&epoch(x.created.as_deref()))
            .then(x.names.cmp(&y.names))
    });
    match a.sort.as_str() {
        "id" => images.sort_by(|x, y| x.id.hex().cmp(y.id.hex())),
        "size" => images.sort_by_key(|i| i.size),
        _ => {}
    }
    let now = human::now();

    if a.quiet {
        for rec in &images {
            println!(
                "{}",
                if a.no_trunc {
                    rec.id.to_string()
                } else {
                    short_id(rec.id.hex())
                }
            );
        }
        return Ok(ExitCode::SUCCESS);
    }

    let json_out = matches!(
        a.format.as_deref().map(Format::parse).transpose()?,
        Some(Format::Json)
    );
    let mut rows = Vec::new();
    for rec in &images {
        let labels = labels(&store, rec);
        let j = image_json(rec, &labels, &store);
        if json_out {
            rows.push(Row {
                json: j,
                view: Value::Null,
            });
            continue;
        }
        let containers = j["Containers"].as_u64().unwrap_or(0);
        for v in view_rows(rec, &labels, containers, now, a.no_trunc) {
            rows.push(Row {
                json: j.clone(),
                view: v,
            });
        }
    }
    // repository and tag order the rows (one per name), the others the images
    let key = |r: &Row, k: &str| {
        r.view
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    match a.sort.as_str() {
        "repository" => rows.sort_by_key(|r| key(r, "Repository")),
        "tag" => rows.sort_by_key(|r| key(r, "Tag")),
        _ => {}
    }
    let default = match (a.digests, a.history) {
        (false, false) => r"table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}",
        (true, false) => {
            r"table {{.Repository}}\t{{.Tag}}\t{{.Digest}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
        }
        (false, true) => {
            r"table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}\t{{.History}}"
        }
        (true, true) => {
            r"table {{.Repository}}\t{{.Tag}}\t{{.Digest}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}\t{{.History}}"
        }
    };
    let fmt = format::without_heading(a.format.as_deref(), default, a.noheading);
    print!(
        "{}",
        format::render_list(fmt.as_deref(), default, TITLES, &rows)?
    );
    Ok(ExitCode::SUCCESS)
}

/// One `--filter` of `rbox images`, as podman spells them.
#[derive(Debug, PartialEq)]
enum Filter {
    Dangling(bool),
    Reference(String),
    /// `label=` (true) or `label!=` (false): whether the image has the label
    Label(String, Option<String>, bool),
    /// the full id (Podman matches no prefix)
    Id(String),
    /// created before / after this time (the named image's), Unix seconds
    Before(i64),
    Since(i64),
    /// rbox has no read-only image stores: every image is writable
    ReadOnly(bool),
    /// intermediate images (untagged build steps another image was built on), or not; with
    /// the intermediate images' ids
    Intermediate(bool, BTreeSet<String>),
}

impl Filter {
    fn parse(f: &str, store: &Store) -> Result<Filter> {
        let Some((k, v)) = f.split_once('=') else {
            bail!("invalid image filter {f:?}: must be in the format \"filter=value or filter!=value\"");
        };
        let boolean = |v: &str| match v {
            "true" | "1" => Ok(true),
            "false" | "0" => Ok(false),
            _ => bail!("invalid filter `{f}`: {k} takes true or false"),
        };
        let created = |v: &str| -> Result<i64> {
            match store.lookup_image(v) {
                Ok(rec) => Ok(epoch(rec.created.as_deref())),
                // Podman's words
                Err(rbox_storage::Error::ImageNotFound(_)) => bail!(
                    "could not find local image for filter filter \"{k}\"=\"{v}\": {v}: image not known"
                ),
                Err(e) => Err(e.into()),
            }
        };
        Ok(match k {
            "dangling" => Filter::Dangling(boolean(v)?),
            "before" => Filter::Before(created(v)?),
            "since" => Filter::Since(created(v)?),
            "readonly" => Filter::ReadOnly(boolean(v)?),
            "intermediate" => Filter::Intermediate(boolean(v)?, intermediate_ids(store)),
            "reference" => Filter::Reference(v.to_string()),
            "label" | "label!" => {
                let has = k == "label";
                match v.split_once('=') {
                    Some((lk, lv)) => Filter::Label(lk.to_string(), Some(lv.to_string()), has),
                    None => Filter::Label(v.to_string(), None, has),
                }
            }
            "id" => Filter::Id(v.trim_start_matches("sha256:").to_string()),
            _ => bail!("unsupported image filter {k:?}"),
        })
    }

    fn matches(&self, rec: &ImageRecord, labels: &BTreeMap<String, String>) -> bool {
        match self {
            Filter::Dangling(d) => rec.names.is_empty() == *d,
            // Podman matches the full name and the familiar one (`busybox` for localhost/busybox).
            Filter::Reference(p) => rec.names.iter().any(|n| {
                let (repo, _) = split_name(n);
                let mut forms = vec![n.clone(), repo.clone()];
                for f in complete::familiar(n) {
                    forms.push(f);
                }
                for f in complete::familiar(&format!("{repo}:latest")) {
                    forms.push(f);
                }
                forms.iter().any(|f| glob(p, f))
            }),
            Filter::Label(k, v, has) => {
                let found = match (labels.get(k), v) {
                    (Some(_), None) => true,
                    (Some(have), Some(want)) => have == want,
                    (None, _) => false,
                };
                found == *has
            }
            Filter::Id(id) => rec.id.hex() == id,
            Filter::Before(t) => epoch(rec.created.as_deref()) < *t,
            Filter::Since(t) => epoch(rec.created.as_deref()) > *t,
            Filter::ReadOnly(ro) => rec.read_only_store.is_some() == *ro,
            Filter::Intermediate(i, ids) => ids.contains(rec.id.hex()) == *i,
        }
    }
}

/// The untagged images another image was built on (`rbox build`'s steps): Podman's
/// intermediate images.
fn intermediate_ids(store: &Store) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let Ok(all) = store.images() else {
        return out;
    };
    if !all.iter().any(|r| r.names.is_empty()) {
        return out;
    }
    for rec in &all {
        if let Some(u) = built_on(store, rec, &all) {
            out.insert(u.id.hex().to_string());
        }
    }
    out
}

/// The untagged image of `all` that `rec` was built on by a build step. A step's config
/// names its parent in the comment of its last history entry (`FROM <12 hex digits>`, as
/// Podman writes it).
pub(crate) fn built_on<'a>(
    store: &Store,
    rec: &ImageRecord,
    all: &'a [ImageRecord],
) -> Option<&'a ImageRecord> {
    let cfg = store.image_config(rec).ok()?;
    let comment = cfg
        .history()
        .as_ref()
        .and_then(|h| h.last())
        .and_then(|h| h.comment().clone())?;
    let parent = comment.strip_prefix("FROM ")?;
    if parent.len() != 12 || !parent.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    all.iter()
        .find(|u| u.names.is_empty() && u.id != rec.id && u.id.hex().starts_with(parent))
}

/// Shell-style matching with `*` only (what people type in `reference=` filters).
fn glob(pattern: &str, s: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == s;
    }
    let mut rest = s;
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            match rest.strip_prefix(part) {
                Some(r) => rest = r,
                None => return false,
            }
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            match rest.find(part) {
                Some(at) => rest = &rest[at + part.len()..],
                None => return false,
            }
        }
    }
    true
}

pub fn labels(store: &Store, rec: &ImageRecord) -> BTreeMap<String, String> {
    store
        .image_config(rec)
        .ok()
        .and_then(|c| c.config().as_ref().and_then(|c| c.labels().clone()))
        .map(|l| l.into_iter().collect())
        .unwrap_or_default()
}

/// `name@digest` for each repository the image is known under.
pub fn repo_digests(rec: &ImageRecord) -> Vec<String> {
    let mut out: Vec<String> = rec
        .names
        .iter()
        .map(|n| format!("{}@{}", split_name(n).0, rec.digest))
        .collect();
    out.dedup();
    out
}

/// The `--format json` object, shaped like Podman's.
fn image_json(rec: &ImageRecord, labels: &BTreeMap<String, String>, store: &Store) -> Value {
    let created = epoch(rec.created.as_deref());
    let mut v = json!({
        "Id": rec.id.hex(),
        "ParentId": "",
        // podman 4.3 prints null here (its names are under Names)
        "RepoTags": Value::Null,
        "RepoDigests": repo_digests(rec),
        "Size": rec.size,
        "SharedSize": 0,
        "VirtualSize": rec.size,
        "Labels": if labels.is_empty() { Value::Null } else { json!(labels) },
        "Containers": store.containers_using(&rec.id).len(),
        "Names": rec.names,
        "Digest": rec.digest.to_string(),
        "History": names_history(rec),
        "Created": created,
        "CreatedAt": human::rfc3339(created),
    });
    // Podman leaves the field out for an image of the user's own store
    if rec.read_only_store.is_some() {
        v["ReadOnly"] = json!(true);
    }
    // ... and this one for an image with a name
    if rec.names.is_empty() {
        v["Dangling"] = json!(true);
    }
    v
}

/// The image's names as Podman's `NamesHistory` lists them: the most recent first.
pub fn names_history(rec: &ImageRecord) -> Vec<String> {
    rec.names.iter().rev().cloned().collect()
}

/// What templates see: one object per name (or one `<none>` row for an untagged image).
/// Sizes are numbers except `.Size`, and `.CreatedAt` has whole seconds, as in Podman's
/// image reporter (its `Created` is Unix seconds).
fn view_rows(
    rec: &ImageRecord,
    labels: &BTreeMap<String, String>,
    containers: u64,
    now: i64,
    no_trunc: bool,
) -> Vec<Value> {
    let created = epoch(rec.created.as_deref());
    let id = if no_trunc {
        rec.id.to_string()
    } else {
        short_id(rec.id.hex())
    };
    let names: Vec<Option<&String>> = if rec.names.is_empty() {
        vec![None]
    } else {
        rec.names.iter().map(Some).collect()
    };
    names
        .into_iter()
        .map(|n| {
            let (repo, tag) = match n {
                Some(n) => split_name(n),
                None => ("<none>".to_string(), "<none>".to_string()),
            };
            json!({
                "Repository": repo,
                "Tag": tag,
                "ID": id,
                "Id": rec.id.hex(),
                "Digest": rec.digest.to_string(),
                "Created": human::ago(created, now),
                "CreatedSince": human::ago(created, now),
                "CreatedAt": human::go_time(created),
                "CreatedTime": human::rfc3339(created),
                "Size": human::size(rec.size),
                "VirtualSize": rec.size,
                "SharedSize": 0,
                "Containers": containers,
                "ParentId": "",
                "Labels": labels,
                "Names": rec.names,
                "RepoTags": rec.names,
                "RepoDigests": repo_digests(rec),
                "ReadOnly": rec.read_only_store.is_some(),
                "IsReadOnly": rec.read_only_store.is_some(),
                "Dangling": rec.names.is_empty(),
                "History": names_history(rec).join(", "),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob("localhost/*", "localhost/busybox:latest"));
        assert!(glob("*box*", "localhost/busybox:latest"));
        assert!(glob("busybox", "busybox"));
        assert!(!glob("busybox", "busybox:latest"));
        assert!(!glob("quay.io/*", "localhost/busybox"));
        assert!(glob("a*c", "abc") && !glob("a*c", "abd"));
    }

    #[test]
    fn filters_parse() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::open(
            d.path(),
            rbox_storage::IdMap {
                uid_count: 1,
                gid_count: 1,
            },
        )
        .unwrap();
        assert_eq!(
            Filter::parse("dangling=true", &store).unwrap(),
            Filter::Dangling(true)
        );
        assert_eq!(
            Filter::parse("label=a=b", &store).unwrap(),
            Filter::Label("a".into(), Some("b".into()), true)
        );
        assert_eq!(
            Filter::parse("label=a", &store).unwrap(),
            Filter::Label("a".into(), None, true)
        );
        assert!(Filter::parse("dangling=maybe", &store).is_err());
        assert!(Filter::parse("since=x", &store).is_err());
        assert!(Filter::parse("bogus=x", &store).is_err());
        assert!(Filter::parse("nokey", &store).is_err());
    }
}
