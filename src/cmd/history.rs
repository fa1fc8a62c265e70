//! `rbox history` (and `rbox image history`): the steps that built an image, newest first
//! (ID CREATED CREATED BY SIZE COMMENT), from its config's history. Read-only.

use std::process::ExitCode;

use anyhow::Result;
use serde_json::{json, Value};

use super::common::{epoch, read_store, short_id};
use crate::cli::complete;
use crate::context::Context;
use crate::format::{self, human, Format, Row};

#[derive(Debug, Clone, clap::Args)]
pub struct HistoryArgs {
    /// Print only the ids
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Do not truncate the output
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
    /// Print sizes and dates in human readable form
    // A flag that takes `=BOOL` only (as Podman's bool flags): `-qH IMAGE` names the image.
    #[arg(short = 'H', long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1,
          require_equals = true, default_missing_value = "true", value_name = "BOOL")]
    pub human: bool,
    /// Output format: json, or a Go template such as '{{.CreatedBy}}'
    #[arg(long, value_name = "FORMAT")]
    pub format: Option<String>,
    /// The image (name or id)
    #[arg(value_name = "IMAGE", add = complete::image_candidates())]
    pub image: String,
}

const DEFAULT: &str = r"table {{.ID}}\t{{.Created}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}";

const TITLES: &[(&str, &str)] = &[
    ("ID", "ID"),
    ("CreatedBy", "CREATED BY"),
    ("CreatedAt", "CREATED AT"),
];

/// One step of `history --format json`, with the names and the order of Podman 4.3's
/// (its reporter's JSON: `CreatedBy` and `Created` capitalised, no tags), on one line.
#[derive(serde::Serialize)]
struct JsonStep {
    id: String,
    created: Option<String>,
    #[serde(rename = "CreatedBy")]
    created_by: String,
    size: u64,
    comment: String,
    /// `created` in whole seconds
    #[serde(rename = "Created")]
    created_secs: String,
}

pub fn run(g: &Context, a: HistoryArgs) -> Result<ExitCode> {
    let store = read_store(g)?;
    let rec = store.lookup_image(&a.image)?;
    let mut steps = store.history(&rec)?;
    steps.reverse();
    let now = human::now();
    let mut rows = Vec::new();
    let mut json_steps = Vec::new();
    for (i, h) in steps.iter().enumerate() {
        // Like Podman: the top step carries the image id, the others have none of their own.
        let id_full = if i == 0 {
            rec.id.hex().to_string()
        } else {
            "<missing>".to_string()
        };
        let id = if i == 0 && !a.no_trunc {
            short_id(&id_full)
        } else {
            id_full.clone()
        };
        let created = epoch(h.created.as_deref());
        let mut by = h.created_by.clone().unwrap_or_default();
        if !a.no_trunc && by.chars().count() > 45 {
            by = by.chars().take(42).collect::<String>() + "...";
        }
        let comment = h.comment.clone().unwrap_or_default();
        json_steps.push(JsonStep {
            id: id_full,
            created: h.created.clone(),
            created_by: h.created_by.clone().unwrap_or_default(),
            size: h.size,
            comment: comment.clone(),
            created_secs: human::rfc3339(created),
        });
        // Podman's -H=false changes only CREATED: SIZE stays human, CreatedAt has whole
        // seconds
        let view = json!({
            "ID": id,
            "Created": if !a.human { human::rfc3339(created) } else if h.created.is_none() { String::new() } else { human::ago(created, now) },
            "CreatedAt": human::go_time(created),
            "CreatedSince": human::ago(created, now),
            "CreatedBy": by,
            "Size": human::size(h.size),
            "Comment": comment,
            // podman 4.3 prints [] for every step
            "Tags": [],
        });
        rows.push(Row {
            json: Value::Null,
            view,
        });
    }
    if a.quiet {
        for r in &rows {
            println!("{}", format::to_text(&r.view["ID"]));
        }
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(Format::Json) = a.format.as_deref().map(Format::parse).transpose()? {
        println!("{}", serde_json::to_string(&json_steps)?);
        return Ok(ExitCode::SUCCESS);
    }
    print!(
        "{}",
        format::render_list(a.format.as_deref(), DEFAULT, TITLES, &rows)?
    );
    Ok(ExitCode::SUCCESS)
}
