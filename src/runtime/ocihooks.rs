//! OCI hooks directories (oci-hooks(5), format 1.0.0): JSON files that say which program
//! (`hook`) to run at which `stages` of the containers whose spec matches `when` (`always`,
//! `annotations` as key and value regular expressions, `commands` as regular expressions on
//! the command's path, `hasBindMounts`; every condition given must hold, and a `when` without
//! any matches nothing). A hook whose program does not exist is left out. The directories
//! are `--hooks-dir` (repeatable), else containers.conf's `[engine] hooks_dir`, else
//! `/usr/share/containers/oci/hooks.d` and `/etc/containers/oci/hooks.d`; a later directory's
//! file masks an earlier one's of the same name, and hooks are added in file-name order, as
//! Podman does. Matched at create; the hooks are recorded with the container and run by the
//! runtime (`hooks`). A directory that does not exist has no hooks; a file that does not
//! parse is an error.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, Context as _, Result};
use serde::Deserialize;

use crate::state::{self, HookEntry, MountKind};

/// The directories when neither the command line nor containers.conf names any.
pub const DEFAULT_DIRS: [&str; 2] = [
    "/usr/share/containers/oci/hooks.d",
    "/etc/containers/oci/hooks.d",
];

#[derive(Debug, Deserialize)]
struct HookFile {
    version: String,
    hook: HookDef,
    when: When,
    stages: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct HookDef {
    path: String,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: Vec<String>,
    timeout: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct When {
    always: Option<bool>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    #[serde(default)]
    commands: Vec<String>,
    has_bind_mounts: Option<bool>,
}

/// A regular expression of a hook file.
fn regex(file: &str, re: &str) -> Result<regex::Regex> {
    regex::Regex::new(re)
        .with_context(|| format!("hook `{file}`: invalid regular expression {re:?}"))
}

impl When {
    /// Whether `spec` matches every condition given.
    fn matches(&self, file: &str, spec: &state::Spec) -> Result<bool> {
        let mut given = false;
        if let Some(a) = self.always {
            given = true;
            if !a {
                return Ok(false);
            }
        }
        for (k, v) in &self.annotations {
            given = true;
            let (k, v) = (regex(file, k)?, regex(file, v)?);
            if !spec
                .opts
                .annotations
                .iter()
                .any(|(ak, av)| k.is_match(ak) && v.is_match(av))
            {
                return Ok(false);
            }
        }
        if !self.commands.is_empty() {
            given = true;
            let cmd = spec.args.first().map(String::as_str).unwrap_or("");
            let mut any = false;
            for c in &self.commands {
                any |= regex(file, c)?.is_match(cmd);
            }
            if !any {
                return Ok(false);
            }
        }
        if let Some(b) = self.has_bind_mounts {
            given = true;
            let has = spec.mounts.iter().any(|m| m.kind == MountKind::Bind);
            if has != b {
                return Ok(false);
            }
        }
        // no condition: nothing matches (as Podman has it)
        Ok(given)
    }
}

/// The hook files of `dirs` (lowest precedence first), by file name: a later directory's
/// file masks an earlier one's.
fn files(dirs: &[PathBuf]) -> BTreeMap<String, PathBuf> {
    let mut out = BTreeMap::new();
    for d in dirs {
        let Ok(rd) = std::fs::read_dir(d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "json") {
                if let Ok(name) = e.file_name().into_string() {
                    out.insert(name, p);
                }
            }
        }
    }
    out
}

/// Add the hooks of `dirs` that match `spec` to its recorded hooks (the command layer
/// passes [`DEFAULT_DIRS`] when nothing names others; `rbox build`'s steps pass none).
pub fn apply(spec: &mut state::Spec, dirs: &[PathBuf]) -> Result<()> {
    let mut add = Vec::new();
    for path in files(dirs).values() {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).with_context(|| format!("read hook `{shown}`"))?;
        add.extend(hooks_of(&shown, &text, spec)?);
    }
    spec.opts.hooks.extend(add);
    Ok(())
}

/// The hooks one file's `text` adds to `spec` (none when `when` does not match).
fn hooks_of(file: &str, text: &str, spec: &state::Spec) -> Result<Vec<HookEntry>> {
    // Podman's text
    let h: HookFile = serde_json::from_str(text)
        .with_context(|| format!("setting up OCI Hooks: parsing hook {file:?}"))?;
    if h.version != "1.0.0" {
        bail!(
            "hook `{file}`: version {:?} is not supported (1.0.0)",
            h.version
        );
    }
    if !h.hook.path.starts_with('/') {
        bail!("hook `{file}`: the path `{}` must be absolute", h.hook.path);
    }
    if h.stages.is_empty() {
        bail!("hook `{file}`: no stages");
    }
    for s in &h.stages {
        if !super::cdi::STAGES.contains(&s.as_str()) {
            bail!("hook `{file}`: unknown stage {s:?}");
        }
    }
    if !h.when.matches(file, spec)? {
        return Ok(Vec::new());
    }
    // a hook whose program is not installed is left out, as Podman leaves it out
    if !std::path::Path::new(&h.hook.path).exists() {
        tracing::debug!("hook `{file}`: `{}` does not exist: left out", h.hook.path);
        return Ok(Vec::new());
    }
    Ok(h.stages
        .iter()
        .map(|s| HookEntry {
            stage: s.clone(),
            path: h.hook.path.clone(),
            args: h.hook.args.clone(),
            env: h.hook.env.clone(),
            timeout: h.hook.timeout,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(cmd: &str, annotations: &[(&str, &str)], bind: bool) -> state::Spec {
        let mut s = state::Spec {
            args: vec![cmd.to_string()],
            ..Default::default()
        };
        for (k, v) in annotations {
            s.opts.annotations.insert(k.to_string(), v.to_string());
        }
        if bind {
            s.mounts.push(state::MountSpec {
                kind: MountKind::Bind,
                source: "/tmp".into(),
                destination: "/x".into(),
                options: Vec::new(),
            });
        }
        s
    }

    fn file(when: &str) -> String {
        format!(
            r#"{{"version":"1.0.0","hook":{{"path":"/bin/true","args":["true","a"]}},"when":{when},"stages":["prestart","poststop"]}}"#
        )
    }

    #[test]
    fn always_adds_the_hook_at_each_stage() {
        let h = hooks_of(
            "a.json",
            &file(r#"{"always":true}"#),
            &spec("sh", &[], false),
        )
        .unwrap();
        let stages: Vec<&str> = h.iter().map(|h| h.stage.as_str()).collect();
        assert_eq!(stages, ["prestart", "poststop"]);
        assert_eq!(h[0].args, ["true", "a"]);
    }

    #[test]
    fn every_condition_given_must_hold() {
        let f = file(r#"{"annotations":{"^rbox\\.test$":"^y"},"commands":["/tru.$"]}"#);
        let yes = spec("/bin/true", &[("rbox.test", "yes")], false);
        assert_eq!(hooks_of("b.json", &f, &yes).unwrap().len(), 2);
        let other_cmd = spec("/bin/sh", &[("rbox.test", "yes")], false);
        assert!(hooks_of("b.json", &f, &other_cmd).unwrap().is_empty());
        let no = spec("/bin/true", &[("rbox.test", "no")], false);
        assert!(hooks_of("b.json", &f, &no).unwrap().is_empty());
        let f = file(r#"{"hasBindMounts":true}"#);
        assert!(hooks_of("c.json", &f, &spec("sh", &[], false))
            .unwrap()
            .is_empty());
        assert_eq!(
            hooks_of("c.json", &f, &spec("sh", &[], true))
                .unwrap()
                .len(),
            2
        );
    }

    #[test]
    fn bad_files_are_errors() {
        let s = spec("sh", &[], false);
        assert!(hooks_of("d.json", "{", &s).is_err());
        assert!(hooks_of("d.json", &file("{}"), &s).unwrap().is_empty());
        let bad_stage = r#"{"version":"1.0.0","hook":{"path":"/bin/true"},"when":{"always":true},"stages":["later"]}"#;
        assert!(hooks_of("d.json", bad_stage, &s).is_err());
        let old = r#"{"version":"0.1.0","hook":{"path":"/bin/true"},"when":{"always":true},"stages":["prestart"]}"#;
        assert!(hooks_of("d.json", old, &s).is_err());
    }
}
