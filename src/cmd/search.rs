//! `rbox search`: find images in registries, as Podman's `search` does: `REGISTRY/TERM`
//! searches that registry, a bare `TERM` every unqualified-search registry of
//! registries.conf. A registry answers through Docker Hub's search API where it has it, else
//! through its catalog (`/v2/_catalog`, repositories whose names contain the term).
//! `--list-tags` lists the tags of one repository instead. The registry work is
//! `rbox_registry::search` and `list_tags`; this file parses flags and renders.

use std::process::ExitCode;

use anyhow::{bail, Context as _, Result};
use rbox_registry::client::SearchResult;
use rbox_registry::config::RegistriesConf;
use serde_json::json;

use crate::context::Context;
use crate::format::{self, Row};

#[derive(Debug, clap::Args)]
pub struct SearchArgs {
    /// List stars, official and automated columns (Docker compatibility)
    #[arg(long)]
    pub compatible: bool,
    /// Filter the results: stars=N, is-official[=BOOL], is-automated[=BOOL]
    #[arg(short = 'f', long = "filter", value_name = "FILTER")]
    pub filter: Vec<String>,
    /// Output format: json, or a Go template such as '{{.Name}} {{.Stars}}'
    #[arg(long, value_name = "FORMAT")]
    pub format: Option<String>,
    /// At most this many results per registry (25 when not given), or tags with --list-tags
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// List the tags of the repository TERM names
    #[arg(long = "list-tags")]
    pub list_tags: bool,
    /// Do not truncate descriptions
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
    #[command(flatten)]
    pub registry: super::pull::RegistryFlags,
    /// What to look for: REGISTRY/TERM, or a TERM searched in every unqualified-search registry
    #[arg(value_name = "TERM")]
    pub term: String,
}

/// Podman's default number of results per registry.
const DEFAULT_LIMIT: usize = 25;
/// Descriptions are cut to this many characters without --no-trunc, as Podman cuts them.
const DESCRIPTION_WIDTH: usize = 44;

struct Filters {
    stars: u64,
    official: Option<bool>,
    automated: Option<bool>,
}

fn filters(given: &[String]) -> Result<Filters> {
    let mut f = Filters {
        stars: 0,
        official: None,
        automated: None,
    };
    let flag = |v: Option<&str>, what: &str| -> Result<bool> {
        match v {
            None => Ok(true),
            Some(v) => v.parse::<bool>().map_err(|_| {
                // Podman's text
                anyhow::anyhow!("incorrect value type for {what} filter: strconv.ParseBool: parsing {v:?}: invalid syntax")
            }),
        }
    };
    for g in given {
        let (k, v) = match g.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (g.as_str(), None),
        };
        match k {
            "stars" => {
                let v = v.unwrap_or("");
                f.stars = v.parse().map_err(|_| {
                    anyhow::anyhow!("incorrect value type for stars filter: strconv.Atoi: parsing {v:?}: invalid syntax")
                })?;
            }
            "is-official" => f.official = Some(flag(v, "is-official")?),
            "is-automated" => f.automated = Some(flag(v, "is-automated")?),
            // Podman's text
            _ => bail!("invalid filter type {g:?}"),
        }
    }
    Ok(f)
}

impl Filters {
    fn keep(&self, r: &SearchResult) -> bool {
        r.stars >= self.stars
            && self.official.is_none_or(|o| o == r.official)
            && self.automated.is_none_or(|a| a == r.automated)
    }
}

/// The registries `term` is searched in, and the term itself (without its registry).
fn split_term(term: &str) -> Result<(Vec<String>, String)> {
    // a registry named as in an image reference
    let (registry, rest, short) = rbox_storage::reference::split_registry(term);
    if !short {
        return Ok((vec![registry.to_string()], rest.to_string()));
    }
    let conf = RegistriesConf::load(None)?;
    if conf.unqualified_search_registries.is_empty() {
        bail!(
            "no registry given in `{term}` and no unqualified-search-registries in registries.conf: search REGISTRY/{term}"
        );
    }
    Ok((conf.unqualified_search_registries.clone(), term.to_string()))
}

pub fn run(_g: &Context, a: SearchArgs) -> Result<ExitCode> {
    let transport = a.registry.transport()?;
    if a.list_tags {
        return list_tags(&a, &transport);
    }
    let f = filters(&a.filter)?;
    let (registries, term) = split_term(&a.term)?;
    let limit = a.limit.filter(|n| *n > 0).unwrap_or(DEFAULT_LIMIT);
    let mut found: Vec<(String, SearchResult)> = Vec::new();
    for reg in &registries {
        let results = rbox_registry::search(reg, &term, limit, &transport)
            .with_context(|| format!("couldn't search registry {reg:?}"))?;
        found.extend(
            results
                .into_iter()
                .filter(|r| f.keep(r))
                .map(|r| (reg.clone(), r)),
        );
    }
    // nothing found prints nothing, not even the header (Podman)
    if found.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    #[derive(serde::Serialize)]
    #[serde(rename_all = "PascalCase")]
    struct Json<'a> {
        index: &'a str,
        name: String,
        description: &'a str,
        stars: u64,
        official: &'a str,
        automated: &'a str,
        tag: &'a str,
    }
    let mark = |b: bool| if b { "[OK]" } else { "" };
    if a.format.as_deref().is_some_and(|f| f.trim() == "json") {
        let items: Vec<Json> = found
            .iter()
            .map(|(reg, r)| Json {
                index: reg,
                name: format!("{reg}/{}", r.name),
                description: &r.description,
                stars: r.stars,
                official: mark(r.official),
                automated: mark(r.automated),
                tag: "",
            })
            .collect();
        println!("{}", format::pretty_json(&items));
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Row> = found
        .iter()
        .map(|(reg, r)| {
            let mut d = r.description.replace('\n', " ");
            if !a.no_trunc && d.chars().count() > DESCRIPTION_WIDTH {
                d = d.chars().take(DESCRIPTION_WIDTH - 3).collect::<String>() + "...";
            }
            Row {
                json: serde_json::Value::Null,
                view: json!({
                    "Index": reg,
                    "Name": format!("{reg}/{}", r.name),
                    "Description": d,
                    "Stars": r.stars,
                    "Official": mark(r.official),
                    "Automated": mark(r.automated),
                    "Tag": "",
                }),
            }
        })
        .collect();
    let default = if a.compatible {
        r"table {{.Name}}\t{{.Description}}\t{{.Stars}}\t{{.Official}}\t{{.Automated}}"
    } else {
        r"table {{.Name}}\t{{.Description}}"
    };
    print!(
        "{}",
        format::render_list(a.format.as_deref(), default, &[], &rows)?
    );
    Ok(ExitCode::SUCCESS)
}

/// `--list-tags`: the tags of the one repository the term names, in the registry's order.
fn list_tags(a: &SearchArgs, transport: &rbox_registry::TransportOptions) -> Result<ExitCode> {
    if !a.filter.is_empty() {
        // Podman's text
        bail!("filters are not applicable to list tags result");
    }
    let tags = rbox_registry::list_tags(&a.term, transport)
        .with_context(|| format!("list the tags of `{}`", a.term))?;
    let tags: Vec<_> = match a.limit.filter(|n| *n > 0) {
        Some(n) => tags.into_iter().take(n).collect(),
        None => tags,
    };
    let Some(first) = tags.first() else {
        return Ok(ExitCode::SUCCESS);
    };
    let name = first.name();
    let tag_of = |r: &rbox_registry::Reference| r.tag().unwrap_or_default().to_string();
    if a.format.as_deref().is_some_and(|f| f.trim() == "json") {
        #[derive(serde::Serialize)]
        #[serde(rename_all = "PascalCase")]
        struct Json<'a> {
            name: &'a str,
            tags: Vec<String>,
        }
        let items = [Json {
            name: &name,
            tags: tags.iter().map(tag_of).collect(),
        }];
        println!("{}", format::pretty_json(&items));
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Row> = tags
        .iter()
        .map(|r| Row {
            json: serde_json::Value::Null,
            view: json!({"Name": name, "Tag": tag_of(r)}),
        })
        .collect();
    print!(
        "{}",
        format::render_list(
            a.format.as_deref(),
            r"table {{.Name}}\t{{.Tag}}",
            &[],
            &rows
        )?
    );
    Ok(ExitCode::SUCCESS)
}
