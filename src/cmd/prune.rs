//! `rbox container prune` and `rbox image prune`: remove every container that is not running,
//! or every dangling image (no name; with `-a` every image no container uses), after asking on
//! the terminal as Podman asks (`-f` does not ask). Prints the full id of each one removed.
//! The removal itself is `rm`'s and `rmi`'s: their checks (a container that runs, an image a
//! container uses) hold here too.

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::{bail, Result};

use crate::context::Context;
use crate::state;

#[derive(Debug, Clone, clap::Args)]
pub struct ContainerPruneArgs {
    /// Do not prompt for confirmation
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Remove only containers that match: label=KEY[=VALUE], label!=KEY[=VALUE],
    /// until=TIME (RFC 3339, Unix seconds, or a duration such as 24h before now)
    #[arg(long, value_name = "FILTER")]
    pub filter: Vec<String>,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ImagePruneArgs {
    /// Remove every image no container uses, not only dangling ones
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Do not prompt for confirmation
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Remove images even when other tools' containers use them (rbox knows of none:
    /// accepted for compatibility)
    #[arg(long)]
    pub external: bool,
    /// Remove only images that match: label=KEY[=VALUE], label!=KEY[=VALUE], until=TIME
    #[arg(long, value_name = "FILTER")]
    pub filter: Vec<String>,
}

/// One `--filter`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Filter {
    /// `label=KEY[=VALUE]` (`negate`: `label!=`)
    Label {
        key: String,
        value: Option<String>,
        negate: bool,
    },
    /// `until=TIME`: created before this many seconds since the epoch
    Until(i64),
}

impl Filter {
    fn parse(f: &str, now: i64) -> Result<Filter> {
        let label = |kv: &str, negate: bool| {
            let (key, value) = match kv.split_once('=') {
                Some((k, v)) => (k.to_string(), Some(v.to_string())),
                None => (kv.to_string(), None),
            };
            Filter::Label { key, value, negate }
        };
        if let Some(kv) = f.strip_prefix("label!=") {
            return Ok(label(kv, true));
        }
        if let Some(kv) = f.strip_prefix("label=") {
            return Ok(label(kv, false));
        }
        if let Some(t) = f.strip_prefix("until=") {
            if let Ok(secs) = t.parse::<i64>() {
                return Ok(Filter::Until(secs));
            }
            if let Some(secs) = crate::format::human::parse_rfc3339(t) {
                return Ok(Filter::Until(secs));
            }
            if let Ok(d) = humantime::parse_duration(t) {
                return Ok(Filter::Until(now - d.as_secs() as i64));
            }
            // Podman's words
            bail!("failed to parse value as time or duration: \"{t}\"");
        }
        bail!("invalid filter `{f}`: use label=KEY[=VALUE], label!=KEY[=VALUE] or until=TIME")
    }

    fn matches(&self, labels: &BTreeMap<String, String>, created: i64) -> bool {
        match self {
            Filter::Label { key, value, negate } => {
                let has = labels
                    .get(key)
                    .is_some_and(|v| value.as_ref().is_none_or(|want| want == v));
                has != *negate
            }
            Filter::Until(t) => created < *t,
        }
    }
}

/// Whether container `r` matches every filter.
pub(crate) fn container_matches(filters: &[Filter], r: &state::ContainerRecord) -> bool {
    let created = super::common::epoch(Some(&r.created));
    filters.iter().all(|f| f.matches(&r.spec.labels, created))
}

/// Whether image `rec` matches every filter.
pub(crate) fn image_matches(
    filters: &[Filter],
    store: &rbox_storage::Store,
    rec: &rbox_storage::ImageRecord,
) -> bool {
    let labels = super::images::labels(store, rec);
    let created = super::common::epoch(rec.created.as_deref());
    filters.iter().all(|f| f.matches(&labels, created))
}

/// The `--filter` values of a prune (`label=`, `label!=`, `until=`). `unknown`: Podman's refusal of a key it does not take, which `container prune` and `image
/// prune` word differently.
pub(crate) fn parse_filters(
    filters: &[String],
    unknown: fn(&str) -> String,
) -> Result<Vec<Filter>> {
    for f in filters {
        match f.split_once('=') {
            // Podman's words
            None => bail!("filter input must be in the form of filter=value: {f} is invalid"),
            Some((k, _)) if !["label", "label!", "until"].contains(&k) => bail!("{}", unknown(k)),
            Some(_) => {}
        }
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    filters.iter().map(|f| Filter::parse(f, now)).collect()
}

/// Ask on the terminal, as Podman asks (on stdout); whether the answer was yes.
fn confirm(warning: &str) -> Result<bool> {
    super::system::confirm(&format!("WARNING! {warning}\n"))
}

pub fn containers(g: &Context, a: ContainerPruneArgs) -> Result<ExitCode> {
    let filters = parse_filters(&a.filter, |k| format!("{k} is an invalid filter"))?;
    if !a.force && !confirm("This will remove all non running containers.")? {
        return Ok(ExitCode::SUCCESS);
    }
    // not running, and no monitor waiting to run it again (its restart policy)
    let ids: Vec<String> = state::list(g)?
        .into_iter()
        .filter(|r| !state::is_running(r) && state::restarting_monitor(g, r).is_none())
        .filter(|r| container_matches(&filters, r))
        .map(|r| r.id)
        .collect();
    if ids.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    // `rm` by full id: it prints each id as it goes
    super::rm::run(
        g,
        super::rm::RmArgs {
            force: false,
            all: false,
            latest: Default::default(),
            volumes: false,
            time: 0,
            ignore: true,
            depend: false,
            filter: Vec::new(),
            cidfile: Vec::new(),
            containers: ids,
        },
    )
}

pub fn images(g: &Context, a: ImagePruneArgs) -> Result<ExitCode> {
    let filters = parse_filters(&a.filter, |k| format!("unsupported image filter \"{k}\""))?;
    let warning = if a.all {
        "This command removes all images without at least one container associated with them."
    } else {
        "This command removes all dangling images."
    };
    if !a.force && !confirm(warning)? {
        return Ok(ExitCode::SUCCESS);
    }
    let store = crate::runtime::open_store(g)?;
    let mut errors = Vec::new();
    for rec in store.images()? {
        let unused = store.containers_using(&rec.id).is_empty();
        // an additional store's images are not ours to prune
        if !unused || !(a.all || rec.names.is_empty()) || rec.read_only_store.is_some() {
            continue;
        }
        if !image_matches(&filters, &store, &rec) {
            continue;
        }
        match super::rmi::remove_quietly(g, &store, &rec, false) {
            Ok(()) => println!("{}", rec.id.hex()),
            Err(e) => errors.push(format!("{e:#}")),
        }
    }
    match errors.len() {
        0 => Ok(ExitCode::SUCCESS),
        _ => bail!("{}", errors.join("; ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_parse_and_match() {
        let l: BTreeMap<String, String> = [("a".to_string(), "b".to_string())].into();
        let f = |s: &str| Filter::parse(s, 1000).unwrap();
        assert!(f("label=a").matches(&l, 0));
        assert!(f("label=a=b").matches(&l, 0));
        assert!(!f("label=a=c").matches(&l, 0));
        assert!(!f("label!=a").matches(&l, 0));
        assert!(f("label!=x").matches(&l, 0));
        assert_eq!(f("until=10m"), Filter::Until(400));
        assert_eq!(f("until=500"), Filter::Until(500));
        assert_eq!(f("until=1970-01-01T00:01:00Z"), Filter::Until(60));
        assert!(f("until=500").matches(&l, 499) && !f("until=500").matches(&l, 500));
        assert!(Filter::parse("status=exited", 0).is_err());
        assert!(Filter::parse("until=soon", 0).is_err());
    }
}
