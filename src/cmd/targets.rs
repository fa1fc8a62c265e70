//! The containers a verb acts on, and how it reports on them: `kill`, `stop` and `rm` take names
//! or ids and `--all`, act on each target in turn, print each one done (as the user named it,
//! the id with `--all`), go on after a failure, and fail at the end (exit 125) with every error
//! in one line, as Podman does. What each verb does to a target stays in the verb's file.

use std::process::ExitCode;

use anyhow::{anyhow, bail, Result};

use crate::context::Context;
use crate::exit::{self, CodedError};
use crate::state::{self, ContainerRecord};

/// What `--all` selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum All {
    /// `--all` not given: only the named containers
    No,
    /// every running container (`kill`, `stop`)
    Running,
    /// every container (`rm`)
    Every,
}

/// The targets still in play, each with the name it is printed under, and the errors so far.
#[derive(Debug)]
pub struct Targets<T = ContainerRecord> {
    items: Vec<(String, T)>,
    errors: Vec<String>,
    /// How many of `errors` are names no container has.
    unknown: usize,
    /// The exit codes the steps' failures that carry one ([`CodedError`]) asked for, kept
    /// only for a verb that exits with them (`rm`; see [`Targets::step_codes_exit`]).
    coded: Option<Vec<u8>>,
    /// Whether the first lookup error is a name no container has (for [`Targets::all_found`]).
    first_unknown: bool,
}

impl Targets {
    /// The containers `--all` selects (first), then each of `names`; a name that is not found
    /// is an error for the end, or with `ignore` (`--ignore`) nothing. Fails at once only when
    /// the list of containers cannot be read.
    pub fn gather(g: &Context, all: All, names: &[String], ignore: bool) -> Result<Self> {
        let listed = match all {
            All::No => Vec::new(),
            All::Running => state::list(g)?
                .into_iter()
                .filter(state::is_running)
                .collect(),
            All::Every => state::list(g)?,
        };
        Ok(Self::select(
            listed,
            |r| r.id.clone(),
            names,
            ignore,
            |n| state::lookup(g, n),
        ))
    }
}

/// `-l/--latest`: the container created last (in any state), as Podman's verbs take it.
#[derive(Debug, Clone, Copy, Default, clap::Args)]
pub struct Latest {
    /// Act on the latest container created (in any state)
    #[arg(short = 'l', long)]
    pub latest: bool,
}

impl Latest {
    /// The names a verb acts on: `names`, or with `--latest` the latest container's full id
    /// (the name Podman prints it under). Refused with Podman's words: `--latest` or `--all`
    /// (`all`) beside names, each other or `--cidfile` (`cidfile`), and nothing chosen.
    pub fn names(
        self,
        g: &Context,
        names: &[String],
        all: bool,
        cidfile: bool,
    ) -> Result<Vec<String>> {
        if cidfile && (all || self.latest) {
            bail!("--all, --latest, and --cidfile cannot be used together");
        }
        if all && self.latest {
            bail!("--all and --latest cannot be used together");
        }
        if all && !names.is_empty() {
            bail!("no arguments are needed with --all");
        }
        if !self.latest {
            if !all && !cidfile && names.is_empty() {
                bail!("you must provide at least one name or id");
            }
            return Ok(names.to_vec());
        }
        with_latest(g, true, names, "containers")
    }

    /// [`Latest::names`], or with `--filter`s (`filters`) the containers that pass them all (as
    /// `ps` filters), newest first and by full id as Podman gives them; refused beside names.
    pub fn names_or_filtered(
        self,
        g: &Context,
        names: &[String],
        all: bool,
        cidfile: bool,
        filters: &[String],
    ) -> Result<Vec<String>> {
        if filters.is_empty() {
            return self.names(g, names, all, cidfile);
        }
        if !names.is_empty() {
            // Podman's words
            bail!("--filter takes no arguments");
        }
        let f = super::ps::Filters::parse(g, filters)?;
        Ok(state::list(g)?
            .into_iter()
            .filter(|r| f.matches(g, r))
            .map(|r| r.id)
            .collect())
    }
}

/// How pause, unpause, restart and stop choose containers besides names and `--all`:
/// `-l/--latest`, `--cidfile` and `-f/--filter`, declared once (rm spells its filter without
/// `-f`, which is its `--force`).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Selection {
    #[command(flatten)]
    pub latest: Latest,
    /// Read the id of a container from FILE (as `run --cidfile` writes it)
    #[arg(long, value_name = "FILE")]
    pub cidfile: Vec<std::path::PathBuf>,
    /// Act on the containers that pass these filters (KEY=VALUE, as `ps --filter` takes them)
    #[arg(short = 'f', long = "filter", value_name = "KEY=VALUE", add = crate::cli::complete::ps_filter_candidates())]
    pub filter: Vec<String>,
}

impl Selection {
    /// [`Latest::names_or_filtered`] of `names` (with `all` for `--all`), then the ids in
    /// the `--cidfile` files.
    pub fn names(&self, g: &Context, names: &[String], all: bool) -> Result<Vec<String>> {
        let chosen =
            self.latest
                .names_or_filtered(g, names, all, !self.cidfile.is_empty(), &self.filter)?;
        with_cidfiles(&chosen, &self.cidfile)
    }
}

/// The containers a verb with `--latest` acts on: with it, the id of the container created
/// last alone; names as well are refused in Podman's words ("--latest and `what` cannot be
/// used together": containers, or inspect's arguments).
pub fn with_latest(g: &Context, latest: bool, names: &[String], what: &str) -> Result<Vec<String>> {
    if !latest {
        return Ok(names.to_vec());
    }
    if !names.is_empty() {
        return Err(anyhow!("--latest and {what} cannot be used together"));
    }
    Ok(vec![state::latest(g)?.id])
}

/// The container ids in `--cidfile` files (as `run --cidfile` writes them), after `names`.
pub fn with_cidfiles(names: &[String], files: &[std::path::PathBuf]) -> Result<Vec<String>> {
    let mut out = names.to_vec();
    for f in files {
        let id = std::fs::read_to_string(f)
            .map_err(|e| anyhow!("read container id file `{}`: {e}", f.display()))?;
        out.push(id.trim().to_string());
    }
    Ok(out)
}

impl<T> Targets<T> {
    fn select(
        listed: Vec<T>,
        id: impl Fn(&T) -> String,
        names: &[String],
        ignore: bool,
        mut lookup: impl FnMut(&str) -> Result<T>,
    ) -> Self {
        let mut t = Targets {
            items: listed.into_iter().map(|r| (id(&r), r)).collect(),
            errors: Vec::new(),
            unknown: 0,
            coded: None,
            first_unknown: false,
        };
        for name in names {
            match lookup(name) {
                Ok(r) => t.items.push((name.clone(), r)),
                Err(_) if ignore => {}
                Err(e) => {
                    if e.is::<state::NoSuchContainer>() {
                        t.first_unknown |= t.errors.is_empty();
                        t.unknown += 1;
                    }
                    t.errors.push(format!("{e:#}"))
                }
            }
        }
        t
    }

    /// Podman's kill, stop, pause, unpause, restart and rm look every name up before acting on
    /// any: a name not found fails the whole command with that lookup's error alone, and no
    /// container is touched (exit `unknown_code` for a name no container has, else 125).
    pub fn all_found(self, unknown_code: u8) -> Result<Self> {
        match self.errors.first() {
            None => Ok(self),
            Some(e) if self.first_unknown => Err(CodedError::new(unknown_code, e.clone()).into()),
            Some(e) => Err(anyhow!("{e}")),
        }
    }

    /// Exit with the code a step's failure carries when every failure has one (or is an
    /// unknown name), as Podman's rm exits 2 for a running container.
    pub fn step_codes_exit(&mut self) {
        self.coded = Some(Vec::new());
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// A step before the last: run `step` on each target in turn and keep those it succeeds
    /// on; the others' errors are kept for the end.
    pub fn keep(&mut self, step: impl FnMut(&T) -> Result<()>) {
        self.each(step, |_| {});
    }

    /// The last step: run `step` on each target in turn and print the name of each it succeeds
    /// on at once; then fail with every error, lookups' first, if there was any.
    pub fn finish(mut self, step: impl FnMut(&T) -> Result<()>) -> Result<ExitCode> {
        self.each(step, |shown| println!("{shown}"));
        self.outcome()
    }

    fn each(&mut self, mut step: impl FnMut(&T) -> Result<()>, mut done: impl FnMut(&str)) {
        for (shown, t) in std::mem::take(&mut self.items) {
            match step(&t) {
                Ok(()) => {
                    done(&shown);
                    self.items.push((shown, t));
                }
                Err(e) => {
                    if let (Some(v), Some(c)) = (&mut self.coded, e.downcast_ref::<CodedError>()) {
                        v.push(c.code);
                    }
                    self.errors.push(format!("{e:#}"))
                }
            }
        }
    }

    fn outcome(&self) -> Result<ExitCode> {
        if self.errors.is_empty() {
            Ok(ExitCode::SUCCESS)
        } else if self.unknown + self.coded.as_ref().map_or(0, Vec::len) == self.errors.len() {
            // every failure has its code: the last step's, as Podman's rm sets it
            let code = self
                .coded
                .as_ref()
                .and_then(|v| v.last().copied())
                .unwrap_or(exit::FAILED);
            Err(CodedError::new(code, self.errors.join("; ")).into())
        } else {
            Err(anyhow!(self.errors.join("; ")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::{bail, Context as _};

    fn names(n: &[&str]) -> Vec<String> {
        n.iter().map(|s| s.to_string()).collect()
    }

    /// Containers `a` and `b` exist (ids `id-a`, `id-b`); anything else is not found.
    fn lookup(n: &str) -> Result<String> {
        match n {
            "a" | "b" | "id-a" | "id-b" => Ok(format!("id-{}", n.trim_start_matches("id-"))),
            _ => bail!("no container with name or id `{n}`"),
        }
    }

    fn select(listed: &[&str], n: &[&str], ignore: bool) -> Targets<String> {
        Targets::select(names(listed), |r| r.clone(), &names(n), ignore, lookup)
    }

    fn shown(t: &Targets<String>) -> Vec<&str> {
        t.items.iter().map(|(s, _)| s.as_str()).collect()
    }

    #[test]
    fn listed_first_under_their_ids_then_names_as_given() {
        let t = select(&["id-b"], &["a", "id-b"], false);
        assert_eq!(shown(&t), ["id-b", "a", "id-b"]);
        let recs: Vec<&str> = t.items.iter().map(|(_, r)| r.as_str()).collect();
        assert_eq!(recs, ["id-b", "id-a", "id-b"]);
        assert!(t.errors.is_empty());
    }

    #[test]
    fn missing_names_are_errors_for_the_end_unless_ignored() {
        let t = select(&[], &["x", "a", "y"], false);
        assert_eq!(shown(&t), ["a"]);
        assert_eq!(
            t.errors,
            [
                "no container with name or id `x`",
                "no container with name or id `y`"
            ]
        );
        let t = select(&[], &["x", "a"], true);
        assert_eq!(shown(&t), ["a"]);
        assert!(t.errors.is_empty());
        assert!(t.outcome().is_ok());
        assert!(select(&[], &["x"], true).is_empty());
    }

    #[test]
    fn a_failed_target_does_not_stop_the_others_and_fails_at_the_end() {
        let mut t = select(&[], &["x", "a", "b"], false);
        let mut seen = Vec::new();
        t.keep(|r| {
            seen.push(r.clone());
            if r == "id-a" {
                return Err(anyhow!("refused")).context("stop container a");
            }
            Ok(())
        });
        assert_eq!(seen, ["id-a", "id-b"]);
        assert_eq!(shown(&t), ["b"]);
        let mut printed = Vec::new();
        t.each(|_| bail!("gone"), |s| printed.push(s.to_string()));
        assert!(printed.is_empty() && t.is_empty());
        // lookups' errors first, then each step's, in order, with their context, on one line
        let e = t.outcome().unwrap_err();
        assert_eq!(
            format!("{e:#}"),
            "no container with name or id `x`; stop container a: refused; gone"
        );
    }

    #[test]
    fn done_is_told_each_success_in_order() {
        let mut t = select(&["id-a"], &["b"], false);
        let mut printed = Vec::new();
        t.each(|_| Ok(()), |s| printed.push(s.to_string()));
        assert_eq!(printed, ["id-a", "b"]);
        assert!(t.outcome().is_ok());
    }
}
