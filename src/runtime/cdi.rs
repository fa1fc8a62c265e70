//! Devices injected at create, beyond `--device HOST[:CONTAINER]` (which `spec` parses):
//! Container Device Interface names (`--device vendor.com/class=name`, `=all`), `--gpus`
//! (the CDI devices `nvidia.com/gpu=...`) and `--nv` (see [`nvidia`](super::nvidia)). Each
//! becomes [`Edits`] (environment, device nodes, mounts, hooks) applied to the container's
//! spec before it is recorded; device nodes are the host's nodes bound in, as `--device`
//! binds them (a user namespace cannot mknod devices), so `type`, `major`, `minor` and
//! `permissions` of a spec's node only describe it.
//!
//! CDI specs (<https://github.com/cncf-tags/container-device-interface/blob/main/SPEC.md>,
//! versions 0.3.0 to 0.6.0) are the `*.json`, `*.yaml` and `*.yml` files of the spec
//! directories (containers.conf `[engine] cdi_spec_dirs`, else `/etc/cdi` and
//! `/var/run/cdi`), a later directory's spec over an earlier one's for the same device. A
//! spec that does not parse is skipped with a warning, as Podman's CDI registry skips it.
//! This module does not run hooks (`hooks` does) nor read the OCI hooks directories
//! (`ocihooks`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use serde::Deserialize;

use crate::state::{self, HookEntry, MountKind, MountSpec};

/// The spec directories when containers.conf names none.
pub const DEFAULT_SPEC_DIRS: [&str; 2] = ["/etc/cdi", "/var/run/cdi"];

/// The CDI kind `--gpus` asks for.
pub const GPU_KIND: &str = "nvidia.com/gpu";

/// What a run asks for, and where to look (the command layer fills it from the flags and
/// containers.conf).
#[derive(Debug, Clone, Default)]
pub struct Devices {
    /// `--device` values that are CDI names, in order
    pub names: Vec<String>,
    /// `--gpus` as given
    pub gpus: Option<String>,
    /// `--nv`
    pub nv: bool,
    /// the CDI spec directories, lowest precedence first (empty: [`DEFAULT_SPEC_DIRS`])
    pub spec_dirs: Vec<PathBuf>,
    /// the OCI hooks directories, lowest precedence first (empty: none)
    pub hooks_dirs: Vec<PathBuf>,
    /// what `--nv` looks for
    pub nv_conf: super::nvidia::Conf,
}

/// Whether a `--device` value is a CDI name (`vendor.com/class=name`) rather than a path.
pub fn is_name(d: &str) -> bool {
    parse_name(d).is_some()
}

/// `vendor.com/class=name` -> (`vendor.com/class`, `name`).
fn parse_name(d: &str) -> Option<(&str, &str)> {
    let (kind, name) = d.split_once('=')?;
    let (vendor, class) = kind.split_once('/')?;
    let ok = |s: &str, extra: &[char]| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || extra.contains(&c))
    };
    (ok(vendor, &['.', '-', '_']) && ok(class, &['-', '_']) && ok(name, &['.', '-', '_', ':']))
        .then_some((kind, name))
}

/// What a device (or a spec, for all of its devices) adds to a container.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Edits {
    pub env: Vec<String>,
    pub device_nodes: Vec<DeviceNode>,
    pub mounts: Vec<Mount>,
    pub hooks: Vec<Hook>,
    /// supplementary groups of the container's process (CDI 0.5)
    #[serde(rename = "additionalGIDs")]
    pub additional_gids: Vec<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct DeviceNode {
    /// in the container
    pub path: String,
    /// on the host (`path` when absent)
    pub host_path: Option<String>,
    #[serde(rename = "type")]
    pub typ: Option<String>,
    pub major: Option<i64>,
    pub minor: Option<i64>,
    pub permissions: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Mount {
    pub host_path: String,
    pub container_path: String,
    pub options: Vec<String>,
    #[serde(rename = "type")]
    pub typ: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Hook {
    pub hook_name: String,
    pub path: String,
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub timeout: Option<i64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct Spec {
    cdi_version: String,
    kind: String,
    devices: Vec<Device>,
    container_edits: Edits,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct Device {
    name: String,
    container_edits: Edits,
}

/// The OCI hook stages a CDI or hooks-directory hook may name.
pub const STAGES: [&str; 6] = [
    "prestart",
    "createRuntime",
    "createContainer",
    "startContainer",
    "poststart",
    "poststop",
];

/// Parse one spec file's text (`yaml`: YAML, else JSON); checks its version and kind.
fn parse_spec(text: &str, yaml: bool) -> Result<Spec> {
    let spec: Spec = if yaml {
        serde_norway::from_str(text)?
    } else {
        serde_json::from_str(text)?
    };
    let v: Vec<u32> = spec
        .cdi_version
        .split('.')
        .map(|p| p.parse().unwrap_or(u32::MAX))
        .collect();
    if !matches!(v[..], [0, 3..=6, _]) {
        bail!(
            "CDI version {:?} is not supported (0.3.0 to 0.6.0)",
            spec.cdi_version
        );
    }
    if parse_name(&format!("{}=x", spec.kind)).is_none() {
        bail!("invalid kind {:?}: expected vendor.com/class", spec.kind);
    }
    Ok(spec)
}

/// Every readable spec of `dirs`, lowest precedence first (directories in order, files by
/// name); unreadable ones are warned about and skipped.
fn load_specs(dirs: &[PathBuf]) -> Vec<(PathBuf, Spec)> {
    let mut out = Vec::new();
    for dir in dirs {
        let Ok(rd) = std::fs::read_dir(dir) else {
            continue;
        };
        let mut files: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
        files.sort();
        for f in files {
            let yaml = match f.extension().and_then(|e| e.to_str()) {
                Some("yaml" | "yml") => true,
                Some("json") => false,
                _ => continue,
            };
            let parsed = std::fs::read_to_string(&f)
                .map_err(anyhow::Error::from)
                .and_then(|t| parse_spec(&t, yaml));
            match parsed {
                Ok(s) => out.push((f, s)),
                Err(e) => tracing::warn!("skip CDI spec `{}`: {e:#}", f.display()),
            }
        }
    }
    out
}

/// The edits for CDI device `names` from `specs` (lowest precedence first): each device's,
/// and each spec's own once for the devices it gave. Unknown names fail with Podman's text.
fn resolve(specs: &[(PathBuf, Spec)], names: &[String]) -> Result<Vec<Edits>> {
    let mut out = Vec::new();
    let mut used_specs: Vec<usize> = Vec::new();
    let mut unresolved = Vec::new();
    let mut seen: Vec<(String, String)> = Vec::new();
    for n in names {
        let Some((kind, name)) = parse_name(n) else {
            unresolved.push(n.clone());
            continue;
        };
        // (spec index, device index) in precedence order, highest first
        let mut hits: Vec<(usize, usize)> = Vec::new();
        for (si, (_, s)) in specs.iter().enumerate().rev() {
            if s.kind != kind {
                continue;
            }
            for (di, d) in s.devices.iter().enumerate() {
                if name == "all" || d.name == name {
                    hits.push((si, di));
                }
            }
        }
        // one definition per device name: the highest precedence one
        let mut names_done: Vec<&str> = Vec::new();
        hits.retain(|&(si, di)| {
            let dn = specs[si].1.devices[di].name.as_str();
            if names_done.contains(&dn) {
                return false;
            }
            names_done.push(dn);
            true
        });
        if hits.is_empty() {
            unresolved.push(n.clone());
            continue;
        }
        for (si, di) in hits {
            let key = (kind.to_string(), specs[si].1.devices[di].name.clone());
            if seen.contains(&key) {
                continue;
            }
            seen.push(key);
            if !used_specs.contains(&si) {
                used_specs.push(si);
                out.push(specs[si].1.container_edits.clone());
            }
            out.push(specs[si].1.devices[di].container_edits.clone());
        }
    }
    if !unresolved.is_empty() {
        // Podman's text
        bail!(
            "setting up CDI devices: unresolvable CDI devices {}",
            unresolved.join(", ")
        );
    }
    Ok(out)
}

/// `--gpus all|N|device=A,B` -> the CDI names of `nvidia.com/gpu` it stands for.
pub fn gpu_names(gpus: &str) -> Result<Vec<String>> {
    let g = gpus.trim_matches('"');
    if g == "all" || g == "-1" {
        return Ok(vec![format!("{GPU_KIND}=all")]);
    }
    if let Ok(n) = g.parse::<u32>() {
        return Ok((0..n).map(|i| format!("{GPU_KIND}={i}")).collect());
    }
    if let Some(list) = g.strip_prefix("device=") {
        let names: Vec<String> = list
            .split(',')
            .filter(|d| !d.is_empty())
            .map(|d| format!("{GPU_KIND}={d}"))
            .collect();
        if !names.is_empty() {
            return Ok(names);
        }
    }
    bail!("invalid --gpus `{gpus}`: give all, a count, or device=ID[,ID...]")
}

/// Apply what `d` asks for to `spec`: the CDI devices (`--device` names and `--gpus`), then
/// `--nv`'s host driver files.
pub fn apply(spec: &mut state::Spec, d: &Devices) -> Result<()> {
    let mut names = d.names.clone();
    if let Some(g) = &d.gpus {
        names.extend(gpu_names(g)?);
    }
    let mut edits = Vec::new();
    if !names.is_empty() {
        let dirs: Vec<PathBuf> = if d.spec_dirs.is_empty() {
            DEFAULT_SPEC_DIRS.iter().map(PathBuf::from).collect()
        } else {
            d.spec_dirs.clone()
        };
        let specs = load_specs(&dirs);
        if d.gpus.is_some() && !specs.iter().any(|(_, s)| s.kind == GPU_KIND) {
            let shown: Vec<String> = dirs.iter().map(|p| format!("`{}`", p.display())).collect();
            bail!(
                "--gpus: no CDI spec of {GPU_KIND} in {}: generate one with `nvidia-ctk cdi generate --output=/etc/cdi/nvidia.yaml`, or use --nv",
                shown.join(", ")
            );
        }
        edits = resolve(&specs, &names)?;
    }
    for e in &edits {
        apply_edits(spec, e)?;
    }
    if d.nv {
        let (e, libs) = super::nvidia::edits(&d.nv_conf)?;
        apply_edits(spec, &e)?;
        if libs {
            super::nvidia::with_lib_dir(&mut spec.env);
        }
    }
    Ok(())
}

/// Apply one set of edits: environment entries replace the same variable's; device nodes
/// and mounts are binds (the first at a destination wins); hooks are recorded by stage.
pub fn apply_edits(spec: &mut state::Spec, e: &Edits) -> Result<()> {
    spec.env = super::spec::merge_env(&[&spec.env, &e.env]);
    let clean = |p: &str| Path::new(p).components().collect::<PathBuf>();
    let taken = |spec: &state::Spec, dst: &str| {
        spec.mounts
            .iter()
            .any(|m| clean(&m.destination) == clean(dst))
    };
    for n in &e.device_nodes {
        if !n.path.starts_with('/') {
            bail!("CDI device node `{}`: the path must be absolute", n.path);
        }
        let host = n.host_path.as_deref().unwrap_or(&n.path);
        if let Err(err) = std::fs::metadata(host) {
            bail!("CDI device node `{}`: stat `{host}`: {err}", n.path);
        }
        if taken(spec, &n.path) {
            continue;
        }
        spec.mounts.push(MountSpec {
            kind: MountKind::Bind,
            source: host.to_string(),
            destination: n.path.clone(),
            options: Vec::new(),
        });
    }
    for m in &e.mounts {
        if !m.host_path.starts_with('/') || !m.container_path.starts_with('/') {
            bail!(
                "CDI mount `{}` -> `{}`: both paths must be absolute",
                m.host_path,
                m.container_path
            );
        }
        if let Some(t) = m.typ.as_deref().filter(|t| *t != "bind") {
            bail!(
                "CDI mount at `{}`: type {t:?} is not supported (only bind)",
                m.container_path
            );
        }
        if taken(spec, &m.container_path) {
            continue;
        }
        // the bind's own flags; `rbind` is rbox's default
        let options = m
            .options
            .iter()
            .filter(|o| matches!(o.as_str(), "ro" | "nosuid" | "nodev" | "noexec" | "bind"))
            .cloned()
            .collect();
        spec.mounts.push(MountSpec {
            kind: MountKind::Bind,
            source: m.host_path.clone(),
            destination: m.container_path.clone(),
            options,
        });
    }
    for gid in &e.additional_gids {
        let g = gid.to_string();
        if spec.opts.group_add == ["keep-groups"] {
            tracing::warn!("CDI additionalGIDs {g}: not added to --group-add keep-groups");
        } else if !spec.opts.group_add.contains(&g) {
            spec.opts.group_add.push(g);
        }
    }
    for h in &e.hooks {
        if !STAGES.contains(&h.hook_name.as_str()) {
            bail!("CDI hook `{}`: unknown hookName {:?}", h.path, h.hook_name);
        }
        spec.opts.hooks.push(HookEntry {
            stage: h.hook_name.clone(),
            path: h.path.clone(),
            args: h.args.clone(),
            env: h.env.clone(),
            timeout: h.timeout,
        });
    }
    Ok(())
}

/// The OCI runtime spec's hooks of `entries`, by stage in order.
pub fn oci_hooks(entries: &[HookEntry]) -> Result<Option<oci_spec::runtime::Hooks>> {
    if entries.is_empty() {
        return Ok(None);
    }
    let mut by: BTreeMap<&str, Vec<oci_spec::runtime::Hook>> = BTreeMap::new();
    for e in entries {
        let mut b = oci_spec::runtime::HookBuilder::default().path(&e.path);
        if !e.args.is_empty() {
            b = b.args(e.args.clone());
        }
        if !e.env.is_empty() {
            b = b.env(e.env.clone());
        }
        if let Some(t) = e.timeout {
            b = b.timeout(t);
        }
        by.entry(e.stage.as_str()).or_default().push(b.build()?);
    }
    let mut h = oci_spec::runtime::Hooks::default();
    let mut take = |s: &str| by.remove(s);
    #[allow(deprecated)]
    h.set_prestart(take("prestart"));
    h.set_create_runtime(take("createRuntime"));
    h.set_create_container(take("createContainer"));
    h.set_start_container(take("startContainer"));
    h.set_poststart(take("poststart"));
    h.set_poststop(take("poststop"));
    Ok(Some(h))
}

#[cfg(test)]
mod tests {
    use super::*;

    const YAML: &str = r#"
cdiVersion: "0.5.0"
kind: rbox-test.example/synthetic
containerEdits:
  env: [SYNTH_ALL=1]
devices:
- name: dev0
  containerEdits:
    env: [SYNTH0=yes]
    deviceNodes:
    - path: /dev/synthetic0
      hostPath: /dev/null
      type: c
    mounts:
    - hostPath: /tmp
      containerPath: /synthetic
      options: [ro, nosuid, bind]
    hooks:
    - hookName: createRuntime
      path: /bin/true
      args: [true, x]
    additionalGIDs: [44]
- name: dev1
  containerEdits:
    deviceNodes:
    - path: /dev/null
"#;

    fn specs() -> Vec<(PathBuf, Spec)> {
        vec![("a.yaml".into(), parse_spec(YAML, true).unwrap())]
    }

    #[test]
    fn names_are_told_from_paths() {
        assert!(is_name("nvidia.com/gpu=all"));
        assert!(is_name("rbox-test.example/synthetic=dev0"));
        assert!(!is_name("/dev/fuse"));
        assert!(!is_name("/dev/a=b"));
        assert!(!is_name("vendor.com/class="));
    }

    #[test]
    fn a_device_brings_its_specs_edits_once() {
        let e = resolve(
            &specs(),
            &[
                "rbox-test.example/synthetic=dev0".into(),
                "rbox-test.example/synthetic=dev1".into(),
            ],
        )
        .unwrap();
        assert_eq!(e.len(), 3);
        assert_eq!(e[0].env, ["SYNTH_ALL=1"]);
        assert_eq!(e[1].device_nodes[0].host_path.as_deref(), Some("/dev/null"));
        assert_eq!(e[1].hooks[0].hook_name, "createRuntime");
        let all = resolve(&specs(), &["rbox-test.example/synthetic=all".into()]).unwrap();
        assert_eq!(all, e);
    }

    #[test]
    fn unknown_devices_fail_with_podmans_text() {
        let e = resolve(&specs(), &["rbox-test.example/synthetic=nope".into()]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "setting up CDI devices: unresolvable CDI devices rbox-test.example/synthetic=nope"
        );
    }

    #[test]
    fn a_later_directory_wins() {
        let json = r#"{"cdiVersion":"0.3.0","kind":"rbox-test.example/synthetic",
            "devices":[{"name":"dev1","containerEdits":{"env":["LATER=1"]}}]}"#;
        let mut s = specs();
        s.push(("b.json".into(), parse_spec(json, false).unwrap()));
        let e = resolve(&s, &["rbox-test.example/synthetic=dev1".into()]).unwrap();
        assert_eq!(e.len(), 2);
        assert_eq!(e[1].env, ["LATER=1"]);
    }

    #[test]
    fn versions_outside_the_supported_ones_are_refused() {
        let t = "cdiVersion: \"0.9.0\"\nkind: a.b/c\ndevices: []\n";
        assert!(parse_spec(t, true).is_err());
        let t = "cdiVersion: \"0.6.0\"\nkind: a.b/c\ndevices: []\n";
        assert!(parse_spec(t, true).is_ok());
    }

    #[test]
    fn gpus_map_to_nvidia_gpu_names() {
        assert_eq!(gpu_names("all").unwrap(), ["nvidia.com/gpu=all"]);
        assert_eq!(
            gpu_names("2").unwrap(),
            ["nvidia.com/gpu=0", "nvidia.com/gpu=1"]
        );
        assert_eq!(
            gpu_names("device=1,3").unwrap(),
            ["nvidia.com/gpu=1", "nvidia.com/gpu=3"]
        );
        assert!(gpu_names("lots").is_err());
    }

    #[test]
    fn edits_become_env_binds_and_hooks() {
        let mut s = state::Spec {
            env: vec!["SYNTH0=no".into(), "PATH=/bin".into()],
            ..Default::default()
        };
        for e in resolve(&specs(), &["rbox-test.example/synthetic=dev0".into()]).unwrap() {
            apply_edits(&mut s, &e).unwrap();
        }
        assert_eq!(s.env, ["SYNTH0=yes", "PATH=/bin", "SYNTH_ALL=1"]);
        assert_eq!(s.mounts.len(), 2);
        assert_eq!(
            (
                s.mounts[0].source.as_str(),
                s.mounts[0].destination.as_str()
            ),
            ("/dev/null", "/dev/synthetic0")
        );
        assert_eq!(s.mounts[1].options, ["ro", "nosuid", "bind"]);
        assert_eq!(s.opts.hooks[0].stage, "createRuntime");
        assert_eq!(s.opts.group_add, ["44"]);
        let h = oci_hooks(&s.opts.hooks).unwrap().unwrap();
        assert_eq!(h.create_runtime().as_ref().unwrap().len(), 1);
    }
}
