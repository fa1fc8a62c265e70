//! From an image config and the `run` flags to the container's [`Spec`]: Docker's rules for
//! entrypoint and command, environment (image, `--env-file`, `-e`), working directory, user,
//! hostname, and the `-v`/`--tmpfs` mount specs. Pure functions; nothing here touches the host
//! beyond reading env files and checking that bind sources exist. The flags arrive as plain
//! [`Flags`]: the clap definition (`cmd::run::RunArgs`) belongs to the command layer.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::seccomp;
use crate::state::{MountKind, MountSpec, NetworkMode, Spec, UsernsMode, VolumeUse};

/// The parts of an image config that `run` uses (OCI `config` section).
#[derive(Debug, Clone, Default)]
pub struct ImageProcess {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub workdir: String,
    pub user: String,
    pub labels: BTreeMap<String, String>,
    pub stop_signal: Option<String>,
    /// ExposedPorts, as `80/tcp`
    pub exposed_ports: Vec<String>,
    /// Volumes: where the container gets anonymous volumes
    pub volumes: Vec<String>,
    /// HEALTHCHECK (a Docker extension of the image config, not in the OCI type)
    pub healthcheck: Option<ImageHealthcheck>,
}

/// An image config's `Healthcheck`, as Docker and Podman write it: `Test` (`["CMD", ...]`,
/// `["CMD-SHELL", cmd]` or `["NONE"]`), durations in nanoseconds, 0 for the default.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImageHealthcheck {
    #[serde(default)]
    pub test: Vec<String>,
    #[serde(default)]
    pub interval: u64,
    #[serde(default)]
    pub timeout: u64,
    #[serde(default)]
    pub start_period: u64,
    #[serde(default)]
    pub retries: u32,
}

impl ImageHealthcheck {
    /// The `config.Healthcheck` of a raw image config, if any (a malformed one is ignored, as
    /// Podman ignores fields it cannot read).
    pub fn from_config(raw: &[u8]) -> Option<ImageHealthcheck> {
        // only that field is built: the rest of the config is skipped, not made a JSON tree
        #[derive(serde::Deserialize)]
        struct Raw {
            config: Option<RawConfig>,
        }
        #[derive(serde::Deserialize)]
        struct RawConfig {
            #[serde(rename = "Healthcheck")]
            healthcheck: Option<ImageHealthcheck>,
        }
        serde_json::from_slice::<Raw>(raw).ok()?.config?.healthcheck
    }
}

impl ImageProcess {
    pub fn from_oci(cfg: &oci_spec::image::ImageConfiguration) -> Self {
        let Some(c) = cfg.config() else {
            return ImageProcess::default();
        };
        ImageProcess {
            entrypoint: c.entrypoint().clone().unwrap_or_default(),
            cmd: c.cmd().clone().unwrap_or_default(),
            env: c.env().clone().unwrap_or_default(),
            workdir: c.working_dir().clone().unwrap_or_default(),
            user: c.user().clone().unwrap_or_default(),
            labels: c
                .labels()
                .clone()
                .map(|l| l.into_iter().collect())
                .unwrap_or_default(),
            stop_signal: c.stop_signal().clone(),
            exposed_ports: c.exposed_ports().clone().unwrap_or_default(),
            volumes: c.volumes().clone().unwrap_or_default(),
            healthcheck: None,
        }
    }
}

pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// `--entrypoint` takes a JSON array (podman) or a single executable (docker).
fn parse_entrypoint(s: &str) -> Vec<String> {
    if s.trim_start().starts_with('[') {
        if let Ok(v) = serde_json::from_str::<Vec<String>>(s) {
            return v;
        }
    }
    if s.is_empty() {
        Vec::new()
    } else {
        vec![s.to_string()]
    }
}

/// Docker's rules: `--entrypoint` replaces the image's entrypoint and discards its CMD; a
/// trailing command replaces CMD; the process is entrypoint + cmd.
/// The caller's arguments stay `OsString`s: they need not be UTF-8.
pub fn command(
    img: &ImageProcess,
    entrypoint: Option<&str>,
    trailing: &[OsString],
) -> Result<Vec<OsString>> {
    let os = |v: Vec<String>| v.into_iter().map(OsString::from).collect::<Vec<_>>();
    let (ep, cmd) = match entrypoint {
        Some(e) => (os(parse_entrypoint(e)), trailing.to_vec()),
        None if trailing.is_empty() => (os(img.entrypoint.clone()), os(img.cmd.clone())),
        None => (os(img.entrypoint.clone()), trailing.to_vec()),
    };
    let args: Vec<OsString> = ep.into_iter().chain(cmd).collect();
    if args.is_empty() {
        bail!("no command specified: the image has no ENTRYPOINT or CMD; give one after the image name");
    }
    Ok(args)
}

/// The most an env file or a label file may hold. The environment of a process is limited by
/// execve(2) to a few MiB anyway; the cap keeps `--env-file /dev/zero` from eating memory.
pub const MAX_FLAG_FILE: u64 = 1 << 20;

/// Read a small text file named by a flag (`--env-file`, `--label-file`), refusing more than
/// [`MAX_FLAG_FILE`] bytes before reading them.
pub fn read_flag_file(path: &Path, what: &str) -> Result<String> {
    use std::io::Read;
    let f =
        std::fs::File::open(path).with_context(|| format!("read {what} `{}`", path.display()))?;
    let mut buf = Vec::new();
    f.take(MAX_FLAG_FILE + 1)
        .read_to_end(&mut buf)
        .with_context(|| format!("read {what} `{}`", path.display()))?;
    if buf.len() as u64 > MAX_FLAG_FILE {
        bail!(
            "{what} `{}` is larger than {} KiB: give a file of KEY=VALUE lines",
            path.display(),
            MAX_FLAG_FILE / 1024
        );
    }
    String::from_utf8(buf).map_err(|_| {
        anyhow::anyhow!(
            "{what} `{}` is not UTF-8 text: give a file of KEY=VALUE lines",
            path.display()
        )
    })
}

/// Parse a label file: KEY=VALUE lines (a bare KEY is an empty value), `#` comments, as
/// Podman reads `--label-file`.
pub fn parse_labels(text: &str, into: &mut BTreeMap<String, String>) -> Result<()> {
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        label_item(line, into).with_context(|| format!("line {}", n + 1))?;
    }
    Ok(())
}

/// One `--label` item: KEY=VALUE or KEY.
fn label_item(item: &str, into: &mut BTreeMap<String, String>) -> Result<()> {
    let (k, v) = item.split_once('=').unwrap_or((item, ""));
    if k.is_empty() || k.contains(char::is_whitespace) {
        bail!("invalid label `{item}`: expected KEY=VALUE");
    }
    into.insert(k.to_string(), v.to_string());
    Ok(())
}

/// Parse an env file: KEY=VALUE lines, bare KEY takes the caller's value, `#` comments.
pub fn parse_env_file(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        out.extend(env_item(line, lookup).with_context(|| format!("line {}", n + 1))?);
    }
    Ok(out)
}

/// One `-e` item: KEY=VALUE, or KEY (the caller's value; skipped when unset).
fn env_item(item: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<Option<String>> {
    let (k, v) = match item.split_once('=') {
        Some((k, v)) => (k, Some(v.to_string())),
        None => (item, None),
    };
    if k.is_empty() || k.contains(char::is_whitespace) {
        bail!("invalid environment variable `{item}`: expected KEY=VALUE or KEY");
    }
    Ok(match v {
        Some(v) => Some(format!("{k}={v}")),
        None => lookup(k).map(|v| format!("{k}={v}")),
    })
}

/// Merge KEY=VALUE lists; later entries win, order of first appearance kept.
pub fn merge_env(layers: &[&[String]]) -> Vec<String> {
    let mut keys: Vec<String> = Vec::new();
    let mut map: BTreeMap<String, String> = BTreeMap::new();
    for layer in layers {
        for e in layer.iter() {
            let (k, _) = e.split_once('=').unwrap_or((e, ""));
            if !map.contains_key(k) {
                keys.push(k.to_string());
            }
            map.insert(k.to_string(), e.clone());
        }
    }
    keys.into_iter().filter_map(|k| map.remove(&k)).collect()
}

/// Parse `-v SRC:DST[:OPTS]`, `-v NAME:DST[:OPTS]` or `-v DST[:OPTS]` as Podman does: a
/// source that is not a path (absolute or `./relative`) names a volume, and a lone
/// destination is an anonymous volume. Bind sources must exist. A volume's mount comes with
/// its [`VolumeUse`] and an empty source, which create fills with the volume's `_data`.
pub fn parse_volume(v: &str, cwd: &Path) -> Result<(MountSpec, Option<VolumeUse>)> {
    let parts: Vec<&str> = v.split(':').collect();
    let (src, dst, opts) = match parts.as_slice() {
        [d] if d.starts_with('/') => ("", *d, ""),
        [s, d] => (*s, *d, ""),
        [s, d, o] => (*s, *d, *o),
        _ => bail!("invalid volume `{v}`: expected SRC:DST[:OPTIONS]"),
    };
    if dst.is_empty() || (src.is_empty() && parts.len() > 1 && parts[0].is_empty()) {
        bail!("invalid volume `{v}`: expected SRC:DST[:OPTIONS]");
    }
    if !dst.starts_with('/') {
        // Podman's text (`-v /data:ro` is SRC:DST, not DST:OPTIONS)
        bail!("invalid container path {dst:?}, must be an absolute path");
    }
    if Path::new(dst).components().all(|c| {
        matches!(
            c,
            std::path::Component::RootDir | std::path::Component::CurDir
        )
    }) {
        bail!(
            "invalid volume `{v}`: the destination cannot be the container's root `/`: mount the \
             volume on a directory, e.g. `{src}:/data`"
        );
    }
    let is_path = src.starts_with('/') || src.starts_with('.');
    let mut options = Vec::new();
    let mut volume = VolumeUse {
        name: src.to_string(),
        destination: dst.to_string(),
        anonymous: src.is_empty(),
        nocopy: false,
        chown: false,
    };
    for o in opts.split(',').filter(|o| !o.is_empty()) {
        match o {
            "ro" | "rw" | "nosuid" | "nodev" | "noexec" | "suid" | "dev" | "exec" => {
                options.retain(|x| x != o);
                options.push(o.to_string())
            }
            "copy" | "nocopy" if !is_path => volume.nocopy = o == "nocopy",
            "U" if !is_path => volume.chown = true,
            // SELinux relabel and propagation flags: no SELinux here, mounts are private
            "z" | "Z" | "private" | "rprivate" | "slave" | "rslave" | "shared" | "rshared"
            | "bind" | "rbind" | "U" | "O" => {}
            _ => bail!(
                "invalid volume `{v}`: unknown option `{o}` (use ro, rw, nosuid, nodev, noexec{})",
                if is_path { "" } else { ", U, copy, nocopy" }
            ),
        }
    }
    if !is_path {
        if !src.is_empty() {
            // Podman's text
            rbox_storage::validate_volume_name(src).map_err(|e| {
                anyhow::anyhow!("creating named volume {src:?}: running volume create option: {e}")
            })?;
        }
        return Ok((volume_mount(dst, options), Some(volume)));
    }
    let src_path = if src.starts_with('/') {
        Path::new(src).to_path_buf()
    } else {
        cwd.join(src)
    };
    if let Err(e) = std::fs::metadata(&src_path) {
        bail!("invalid volume `{v}`: source `{}`: {e}", src_path.display());
    }
    Ok((
        MountSpec {
            kind: MountKind::Bind,
            source: src_path.to_string_lossy().into_owned(),
            destination: dst.to_string(),
            options,
        },
        None,
    ))
}

/// The mount of a volume at `dst`, its source left for create to fill: nosuid and nodev
/// unless `suid` or `dev` was asked for, as Podman mounts volumes.
fn volume_mount(dst: &str, mut options: Vec<String>) -> MountSpec {
    for (off, on) in [("nosuid", "suid"), ("nodev", "dev")] {
        if !options.iter().any(|o| o == off || o == on) {
            options.push(off.to_string());
        }
    }
    options.retain(|o| o != "suid" && o != "dev");
    MountSpec {
        kind: MountKind::Bind,
        source: String::new(),
        destination: dst.to_string(),
        options,
    }
}

/// Parse `--mount type=volume,...`: `src` names the volume (none: an anonymous one),
/// `target` where it goes; `ro`, `volume-nocopy`, `U` and the mount flags as for `-v`.
fn parse_volume_mount(m: &str) -> Result<(MountSpec, Option<VolumeUse>)> {
    let mut source = "";
    let mut target = "";
    let mut options: Vec<String> = Vec::new();
    let (mut nocopy, mut chown) = (false, false);
    for item in m.split(',').filter(|i| !i.is_empty()) {
        let (k, v) = match item.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (item, None),
        };
        match (k, v) {
            ("type", _) => {}
            ("source" | "src", Some(s)) => source = s,
            ("target" | "destination" | "dst", Some(t)) => target = t,
            ("ro" | "readonly" | "rw", v) => {
                let on = match v {
                    None | Some("true") => true,
                    Some("false") => false,
                    Some(v) => bail!(
                        "'readonly', 'ro', or 'rw' must be set to true or false, instead received {v:?}: must provide an argument for option"
                    ),
                };
                options.retain(|o| o != "ro");
                if on == (k != "rw") {
                    options.push("ro".into());
                }
            }
            ("volume-nocopy", None | Some("true")) => nocopy = true,
            ("volume-nocopy", Some("false")) => nocopy = false,
            ("U", None | Some("true")) => chown = true,
            ("U", Some("false")) => chown = false,
            ("nosuid" | "nodev" | "noexec" | "suid" | "dev" | "exec", None) => {
                options.push(k.to_string())
            }
            ("relabel", Some("shared" | "private")) | ("z" | "Z", None) => {}
            _ => bail!("{k}: invalid mount option"),
        }
    }
    if target.is_empty() {
        bail!("must set volume destination");
    }
    if !target.starts_with('/') {
        bail!("invalid container path {target:?}, must be an absolute path");
    }
    let clean: PathBuf = Path::new(target).components().collect();
    if clean == Path::new("/") {
        bail!("invalid --mount `{m}`: the destination cannot be the container's root `/`");
    }
    if !source.is_empty() {
        rbox_storage::validate_volume_name(source)
            .map_err(|e| anyhow::anyhow!("invalid --mount `{m}`: {e}"))?;
    }
    let volume = VolumeUse {
        name: source.to_string(),
        destination: target.to_string(),
        anonymous: source.is_empty(),
        nocopy,
        chown,
    };
    Ok((volume_mount(target, options), Some(volume)))
}

/// `--device HOST[:CONTAINER][:PERMISSIONS]`: a rootless container cannot create device
/// nodes, so the host's node (or a directory of them, such as /dev/dri) is bind-mounted, as
/// Podman does rootless; the permissions (`rwm`) are cgroup device rules, which rootless
/// Podman ignores too. Podman's texts for a missing path and for what is not a device.
pub fn parse_device(d: &str) -> Result<MountSpec> {
    use std::os::unix::fs::FileTypeExt;
    let parts: Vec<&str> = d.split(':').collect();
    let perms = |p: &str| !p.is_empty() && p.chars().all(|c| matches!(c, 'r' | 'w' | 'm'));
    let (src, dst) = match parts.as_slice() {
        [s] => (*s, *s),
        [s, p] if perms(p) => (*s, *s),
        [s, d] => (*s, *d),
        [s, d, p] if perms(p) => (*s, *d),
        _ => bail!("invalid device `{d}`: expected HOST[:CONTAINER][:PERMISSIONS]"),
    };
    if !src.starts_with('/') || !dst.starts_with('/') {
        bail!("invalid device `{d}`: both paths must be absolute");
    }
    let meta = std::fs::metadata(src).map_err(|e| {
        let e = if e.kind() == std::io::ErrorKind::NotFound {
            "no such file or directory".to_string()
        } else {
            e.to_string()
        };
        anyhow::anyhow!("stat {src}: {e}")
    })?;
    let ft = meta.file_type();
    if !(ft.is_char_device() || ft.is_block_device() || ft.is_dir()) {
        bail!("{src} is not a valid device: not a device node");
    }
    Ok(MountSpec {
        kind: MountKind::Bind,
        source: src.to_string(),
        destination: dst.to_string(),
        options: Vec::new(),
    })
}

/// The image's VOLUME entries: an anonymous volume on each destination no mount covers yet,
/// as Podman makes them.
pub fn image_volumes(dsts: &[String], mounts: &mut Vec<MountSpec>, volumes: &mut Vec<VolumeUse>) {
    let clean = |d: &str| Path::new(d).components().collect::<PathBuf>();
    for d in dsts {
        if !d.starts_with('/') || mounts.iter().any(|m| clean(&m.destination) == clean(d)) {
            continue;
        }
        mounts.push(volume_mount(d, Vec::new()));
        volumes.push(VolumeUse {
            name: String::new(),
            destination: d.clone(),
            anonymous: true,
            nocopy: false,
            chown: false,
        });
    }
}

/// Refuse two mounts on one destination (`-v A:/x -v B:/x`, `-v A:/x --tmpfs /x`): one would
/// hide the other. Destinations compare as cleaned paths (`/x/` and `/x/.` are `/x`); the text
/// is Podman's.
pub fn check_destinations(mounts: &[MountSpec]) -> Result<()> {
    let mut seen = std::collections::HashSet::new();
    for m in mounts {
        let clean: PathBuf = Path::new(&m.destination).components().collect();
        if seen.contains(&clean) {
            bail!("{}: duplicate mount destination", clean.display());
        }
        seen.insert(clean);
    }
    Ok(())
}

/// Parse `--tmpfs DST[:OPTS]`.
pub fn parse_tmpfs(t: &str) -> Result<MountSpec> {
    let (dst, opts) = t.split_once(':').unwrap_or((t, ""));
    if !dst.starts_with('/') {
        bail!("invalid tmpfs `{t}`: the destination must be an absolute path");
    }
    Ok(MountSpec {
        kind: MountKind::Tmpfs,
        source: "tmpfs".into(),
        destination: dst.to_string(),
        options: opts
            .split(',')
            .filter(|o| !o.is_empty())
            .map(String::from)
            .collect(),
    })
}

/// Podman's text for a `--mount` without `type=`.
const MOUNT_FORMAT: &str = "incorrect mount format: should be --mount \
     type=<bind|tmpfs|volume>,[src=<host-dir|volume-name>,]target=<ctr-dir>[,options]";

/// Parse `--mount type=bind|tmpfs|devpts,...` as Podman does (its keys, its defaults, its
/// error texts): binds are recursive unless `bind-nonrecursive`, a tmpfs is exec unless
/// `noexec` (unlike `--tmpfs`), a bind without `source` binds the target's own host path.
/// An image mount (`type=image,source=IMAGE`) names the image; create resolves it. `type=volume` goes to
/// [`parse_volume_mount`] (see [`parse_any_mount`]).
pub fn parse_mount(m: &str, cwd: &Path) -> Result<MountSpec> {
    let mut kind = None;
    let mut source: Option<&str> = None;
    let mut target: Option<&str> = None;
    let mut options: Vec<String> = Vec::new();
    let mut set = |o: &str, on: bool| {
        options.retain(|x| x != o);
        if on {
            options.push(o.to_string());
        }
    };
    let items: Vec<(&str, Option<&str>)> = m
        .split(',')
        .filter(|i| !i.is_empty())
        .map(|i| match i.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (i, None),
        })
        .collect();
    for (k, v) in &items {
        if *k == "type" {
            kind = Some(v.unwrap_or(""));
        }
    }
    let kind = match kind {
        None => bail!("{MOUNT_FORMAT}"),
        Some("bind") => MountKind::Bind,
        Some("tmpfs") => MountKind::Tmpfs,
        Some("devpts") => MountKind::Devpts,
        Some("volume") => {
            bail!("invalid --mount `{m}`: a volume is parsed by `parse_volume_mount`")
        }
        Some("image") => MountKind::Image,
        Some(t) => bail!("invalid filesystem type {t:?}"),
    };
    let bad = |k: &str| anyhow::anyhow!("{k}: invalid mount option");
    for (k, v) in items {
        let bind = kind == MountKind::Bind;
        let tmpfs = kind == MountKind::Tmpfs;
        let image = kind == MountKind::Image;
        match (k, v) {
            ("type", _) => {}
            // an image is read-only unless `rw` / `readwrite` (its changes go with the
            // container), as Podman's
            ("rw" | "readwrite", v) if image => {
                let on = match v {
                    None | Some("true") => true,
                    Some("false") => false,
                    Some(v) => bail!(
                        "'readwrite', 'ro', or 'rw' must be set to true or false, instead received {v:?}: must provide an argument for option"
                    ),
                };
                set("rw", on);
            }
            (_, _)
                if image && !matches!(k, "source" | "src" | "target" | "destination" | "dst") =>
            {
                return Err(bad(k))
            }
            ("source" | "src", Some(s)) if !tmpfs => source = Some(s),
            ("source" | "src", Some(_)) => bail!("source is not supported with tmpfs mounts"),
            ("target" | "destination" | "dst", Some(t)) => target = Some(t),
            ("ro" | "readonly" | "rw", v) => {
                let on = match v {
                    None | Some("true") => true,
                    Some("false") => false,
                    Some(v) => bail!(
                        "'readonly', 'ro', or 'rw' must be set to true or false, instead received {v:?}: must provide an argument for option"
                    ),
                };
                set("ro", on == (k != "rw"));
            }
            ("nosuid" | "nodev" | "noexec", None) if kind != MountKind::Devpts => set(k, true),
            ("suid" | "dev" | "exec", None) if kind != MountKind::Devpts => {
                set(&format!("no{k}"), false)
            }
            ("bind-propagation", Some("private" | "rprivate")) if bind => {}
            ("bind-propagation", Some(p @ ("shared" | "rshared" | "slave" | "rslave"))) if bind => {
                bail!(
                    "invalid --mount `{m}`: bind-propagation={p} is not supported: rbox's mounts are private (private, rprivate)"
                )
            }
            ("bind-propagation", Some(p)) if bind => bail!("invalid option type {p:?}"),
            ("bind-nonrecursive", None) if bind => set("bind", true),
            // SELinux relabelling: no SELinux here
            ("relabel", Some("shared" | "private")) | ("z" | "Z", None) if bind => {}
            ("tmpfs-size", Some(v)) if tmpfs => match rbox_storage::parse_size(v) {
                Some(n) if n > 0 => set(&format!("size={n}"), true),
                _ => bail!("invalid --mount `{m}`: tmpfs-size `{v}`: expected a size such as 64m"),
            },
            ("tmpfs-mode", Some(v)) if tmpfs => match u32::from_str_radix(v, 8) {
                Ok(n) if n <= 0o7777 => set(&format!("mode={v}"), true),
                _ => bail!(
                    "invalid --mount `{m}`: tmpfs-mode `{v}`: expected an octal mode such as 1777"
                ),
            },
            ("tmpcopyup" | "notmpcopyup", None) if tmpfs => {}
            ("uid" | "gid" | "mode" | "ptmxmode", Some(v)) if kind == MountKind::Devpts => {
                if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
                    bail!("invalid --mount `{m}`: {k}=`{v}`: expected a number");
                }
                set(&format!("{k}={v}"), true)
            }
            _ => return Err(bad(k)),
        }
    }
    let Some(dst) = target.filter(|t| !t.is_empty()) else {
        bail!("must set volume destination");
    };
    if !dst.starts_with('/') {
        bail!("invalid container path {dst:?}, must be an absolute path");
    }
    let clean: PathBuf = Path::new(dst).components().collect();
    if clean == Path::new("/") {
        bail!("invalid --mount `{m}`: the destination cannot be the container's root `/`");
    }
    let source = match kind {
        MountKind::Bind => {
            let src = cwd.join(source.unwrap_or(dst));
            if let Err(e) = std::fs::metadata(&src) {
                bail!("statfs {}: {}", src.display(), io_text(&e));
            }
            src.to_string_lossy().into_owned()
        }
        MountKind::Tmpfs => {
            // Podman's --mount tmpfs may run programs, unlike its --tmpfs
            if !options.iter().any(|o| o == "noexec") {
                options.push("exec".into());
            }
            "tmpfs".into()
        }
        MountKind::Devpts => "devpts".into(),
        // the image's name until create resolves it (`image_mount_layers`)
        MountKind::Image => match source.filter(|s| !s.is_empty()) {
            Some(s) => s.to_string(),
            None => bail!("invalid --mount `{m}`: an image mount needs source=IMAGE"),
        },
    };
    Ok(MountSpec {
        kind,
        source,
        destination: dst.to_string(),
        options,
    })
}

/// An image mount's options after create resolved it: `lower=DIR` per layer (top-most
/// first), `upper=DIR` and `work=DIR` when `rw` (made in the container's directory).
pub const IMAGE_LOWER: &str = "lower=";
pub const IMAGE_UPPER: &str = "upper=";
pub const IMAGE_WORK: &str = "work=";

/// The layer directories (top-most first), and the upper and work directories when
/// writable, of a resolved `--mount type=image`.
pub fn image_mount_layers(m: &MountSpec) -> (Vec<&str>, Option<(&str, &str)>) {
    let of = |p: &str| {
        m.options
            .iter()
            .filter_map(move |o| o.strip_prefix(p))
            .collect::<Vec<_>>()
    };
    let rw = of(IMAGE_UPPER)
        .first()
        .copied()
        .zip(of(IMAGE_WORK).first().copied());
    (of(IMAGE_LOWER), rw)
}

/// `--mount` of any type: a volume comes with its [`VolumeUse`].
pub fn parse_any_mount(m: &str, cwd: &Path) -> Result<(MountSpec, Option<VolumeUse>)> {
    if m.split(',').any(|i| i == "type=volume") {
        parse_volume_mount(m)
    } else {
        Ok((parse_mount(m, cwd)?, None))
    }
}

/// An I/O error as Go prints it: `no such file or directory`, without Rust's `(os error 2)`.
pub(crate) fn io_text(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(n) => nix::errno::Errno::from_raw(n).desc().to_lowercase(),
        None => e.to_string(),
    }
}

/// Parse `--security-opt` values: no_new_privs (off by default as in Podman and Docker, so
/// setuid programs such as su and ping work in the container) and the seccomp profile (read
/// and checked now, so a bad file fails before anything is created). AppArmor and SELinux are
/// not applied by rbox: their "off" values are accepted because Podman users type them.
pub fn security_opts(opts: &[String]) -> Result<(bool, seccomp::Mode)> {
    let mut no_new_privileges = false;
    let mut mode = seccomp::Mode::Default;
    for o in opts {
        // podman also takes the older KEY:VALUE spelling
        let (key, value) = match o.split_once('=').or_else(|| o.split_once(':')) {
            Some((k, v)) => (k, Some(v)),
            None => (o.as_str(), None),
        };
        match (key, value) {
            ("no-new-privileges", None | Some("true")) => no_new_privileges = true,
            ("no-new-privileges", Some("false")) => no_new_privileges = false,
            ("seccomp", Some("unconfined")) => mode = seccomp::Mode::Unconfined,
            ("seccomp", Some(path)) if !path.is_empty() => {
                mode = seccomp::Mode::Profile {
                    path: path.to_string(),
                    profile: seccomp::Profile::read(path)?,
                }
            }
            ("seccomp", _) => {
                bail!("invalid --security-opt `{o}`: give seccomp=unconfined or seccomp=PROFILE.json")
            }
            ("apparmor", Some("unconfined")) | ("label", Some("disable")) => {}
            // read by `fakeroot_opt`
            ("fakeroot", None | Some("true" | "false" | "auto")) => {}
            ("fakeroot", _) => bail!(
                "invalid --security-opt `{o}`: give fakeroot, fakeroot=true, fakeroot=false or fakeroot=auto"
            ),
            // read by `mask_opts`
            ("mask" | "unmask", Some(v)) if !v.is_empty() => {}
            ("apparmor", _) => bail!(
                "invalid --security-opt `{o}`: rbox does not apply AppArmor profiles; only apparmor=unconfined is accepted"
            ),
            ("label", _) => bail!(
                "invalid --security-opt `{o}`: rbox does not apply SELinux labels; only label=disable is accepted"
            ),
            _ => bail!(
                "invalid --security-opt `{o}`: rbox knows no-new-privileges, seccomp=unconfined, seccomp=PROFILE.json, fakeroot, mask=, unmask=, apparmor=unconfined and label=disable"
            ),
        }
    }
    Ok((no_new_privileges, mode))
}

/// `--security-opt fakeroot[=true|false|auto]` (rbox's own; the last one given wins): the
/// container's seccomp filter fakes the calls of a root user ([`seccomp::with_fakeroot`]),
/// always or (`auto`) only where its user namespace maps a single id.
pub fn fakeroot_opt(opts: &[String]) -> seccomp::Fakeroot {
    let mut f = seccomp::Fakeroot::Off;
    for o in opts {
        let (key, value) = match o.split_once('=').or_else(|| o.split_once(':')) {
            Some((k, v)) => (k, Some(v)),
            None => (o.as_str(), None),
        };
        f = match (key, value) {
            ("fakeroot", None | Some("true")) => seccomp::Fakeroot::On,
            ("fakeroot", Some("auto")) => seccomp::Fakeroot::Auto,
            ("fakeroot", Some(_)) => seccomp::Fakeroot::Off,
            _ => continue,
        };
    }
    f
}

/// `--security-opt mask=PATH[:PATH...]` and `unmask=PATH[:PATH...]|ALL`: paths masked in
/// addition to the defaults, and defaults (masked or read-only) left alone. Absolute paths.
pub fn mask_opts(opts: &[String]) -> Result<(Vec<String>, Vec<String>)> {
    let (mut mask, mut unmask) = (Vec::new(), Vec::new());
    for o in opts {
        let Some((key, value)) = o.split_once('=').or_else(|| o.split_once(':')) else {
            continue;
        };
        let into = match key {
            "mask" => &mut mask,
            "unmask" => &mut unmask,
            _ => continue,
        };
        for p in value.split(':') {
            if p != "ALL" && !p.starts_with('/') {
                bail!("invalid --security-opt `{o}`: `{p}` is not an absolute path");
            }
            into.push(p.to_string());
        }
    }
    Ok((mask, unmask))
}

/// The `run`/`create` flags that decide the spec, as given on the command line (the command
/// layer fills this from its clap struct; nothing is checked until [`build`]).
#[derive(Debug, Clone, Default)]
pub struct Flags {
    /// `--entrypoint`
    pub entrypoint: Option<String>,
    /// the command and arguments after the image
    pub command: Vec<OsString>,
    pub env: Vec<String>,
    pub env_file: Vec<PathBuf>,
    pub label: Vec<String>,
    pub label_file: Vec<PathBuf>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub hostname: Option<String>,
    pub volume: Vec<String>,
    pub tmpfs: Vec<String>,
    /// `--mount`, as given
    pub mount: Vec<String>,
    /// `--device`, as given
    pub device: Vec<String>,
    /// `--secret`, as given (create finds each secret and copies its data)
    pub secret: Vec<String>,
    /// `--volumes-from`, as given (create resolves it: it needs the other records)
    pub volumes_from: Vec<String>,
    /// `--image-volume`: what the image's VOLUMEs get (bind: anonymous volumes; tmpfs;
    /// ignore)
    pub image_volume: Option<String>,
    pub read_only: bool,
    pub init: bool,
    pub tty: bool,
    pub interactive: bool,
    pub network: String,
    /// `-p`, as given
    pub publish: Vec<String>,
    /// `-P`, and `--expose` as given
    pub publish_all: bool,
    pub expose: Vec<String>,
    /// `--dns`, `--dns-search`, `--dns-option`, `--add-host`, as given
    pub dns: Vec<String>,
    pub dns_search: Vec<String>,
    pub dns_option: Vec<String>,
    pub add_host: Vec<String>,
    /// `--no-hosts`
    pub no_hosts: bool,
    pub userns: String,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub privileged: bool,
    pub security_opt: Vec<String>,
    /// `--restart`, as given
    pub restart: Option<String>,
    /// `--health-*` and `--no-healthcheck`, as given
    pub health: HealthFlags,
    /// `--log-driver`, as given
    pub log_driver: Option<String>,
    /// `--log-opt`, as given
    pub log_opt: Vec<String>,
    /// the process and lifetime flags (issue 9), as given
    pub extra: ExtraFlags,
}

/// `--stop-signal`, `--stop-timeout`, `--timeout`, `--ulimit`, `--umask`, as given.
#[derive(Debug, Clone, Default)]
pub struct ExtraFlags {
    pub stop_signal: Option<String>,
    pub stop_timeout: Option<u64>,
    pub timeout: Option<u64>,
    pub ulimit: Vec<String>,
    pub umask: Option<String>,
    pub unsetenv: Vec<String>,
    pub unsetenv_all: bool,
    pub env_host: bool,
    pub http_proxy: bool,
    pub personality: Option<String>,
    pub seccomp_policy: Option<String>,
    /// `--systemd`, as given
    pub systemd: Option<String>,
    /// `--sdnotify`, as given
    pub sdnotify: Option<String>,
    /// `--requires`, as given (resolved to ids at create)
    pub requires: Vec<String>,
    pub cgroup_conf: Vec<String>,
    pub device_cgroup_rule: Vec<String>,
    pub chrootdirs: Vec<String>,
    pub device_read_bps: Vec<String>,
    pub device_write_bps: Vec<String>,
    pub device_read_iops: Vec<String>,
    pub device_write_iops: Vec<String>,
    pub blkio_weight_device: Vec<String>,
    pub env_merge: Vec<String>,
    pub annotation: Vec<String>,
    pub group_add: Vec<String>,
    pub shm_size: Option<String>,
    pub rmi: bool,
    pub pidfile: Option<PathBuf>,
    pub conmon_pidfile: Option<PathBuf>,
    pub pid_host: bool,
    pub uts_host: bool,
    pub cgroupns_host: bool,
    pub preserve_fds: u32,
    pub sysctl: Vec<String>,
    pub memory: Option<String>,
    pub memory_swap: Option<String>,
    pub memory_reservation: Option<String>,
    pub memory_swappiness: Option<i64>,
    pub oom_kill_disable: bool,
    pub cpus: Option<f64>,
    pub cpu_shares: Option<u64>,
    pub cpuset_cpus: Option<String>,
    pub cpuset_mems: Option<String>,
    pub cpu_quota: Option<i64>,
    pub cpu_period: Option<u64>,
    pub cpu_rt_period: Option<u64>,
    pub cpu_rt_runtime: Option<i64>,
    pub blkio_weight: Option<u16>,
    pub pids_limit: Option<i64>,
    /// `--cgroups`
    pub cgroups: Option<String>,
    /// `--tz`
    pub tz: Option<String>,
    /// `--oom-score-adj`
    pub oom_score_adj: Option<i32>,
    /// `--read-only-tmpfs=false`
    pub no_read_only_tmpfs: bool,
    /// `--uidmap`, `--gidmap` (CONTAINER:HOST:COUNT), `--subuidname`, `--subgidname`
    pub uidmap: Vec<String>,
    pub gidmap: Vec<String>,
    pub subuidname: Option<String>,
    pub subgidname: Option<String>,
    /// `--hostuser`, `--passwd=false`, `--passwd-entry`
    pub hostuser: Vec<String>,
    pub no_passwd: bool,
    pub passwd_entry: Option<String>,
    /// containers.conf's `env` (over rbox's defaults and the caller's, under the image's),
    /// `volumes` and `devices` (each left out where a flag's mount has its destination)
    pub conf_env: Vec<String>,
    pub conf_volumes: Vec<String>,
    pub conf_devices: Vec<String>,
    /// containers.conf's `default_sysctls` (its `net.*` left out where the container has
    /// no network namespace of its own, as Podman does)
    pub conf_sysctls: Vec<String>,
}

/// Go's `os.Expand` as Podman's `--env-merge` uses it: `${NAME}` and `$NAME` become the value
/// of NAME in `env` (KEY=VALUE items), or nothing when it has none.
fn expand(text: &str, env: &[String]) -> String {
    let value = |name: &str| {
        env.iter()
            .find_map(|e| e.strip_prefix(name)?.strip_prefix('='))
            .unwrap_or("")
            .to_string()
    };
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(braced) = after.strip_prefix('{') {
            if let Some(end) = braced.find('}') {
                out.push_str(&value(&braced[..end]));
                rest = &braced[end + 1..];
                continue;
            }
            // an unclosed brace: Go drops the `${` and what follows
            return out;
        }
        let len = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(after.len());
        if len == 0 {
            out.push('$');
        } else {
            out.push_str(&value(&after[..len]));
        }
        rest = &after[len..];
    }
    out.push_str(rest);
    out
}

/// The image label that carries a seccomp profile (its JSON text) for `--seccomp-policy=image`,
/// as containers/common names it.
const IMAGE_SECCOMP_LABEL: &str = "io.containers.seccomp.profile";

/// `--seccomp-policy`: `default` keeps what `--security-opt` chose; `image` takes the profile the
/// image carries in its label instead, and refuses an image without one, as Podman 4.3 does
/// (`seccomp=unconfined` stays unconfined).
fn seccomp_policy(
    policy: Option<&str>,
    mode: seccomp::Mode,
    labels: &BTreeMap<String, String>,
) -> Result<seccomp::Mode> {
    match policy {
        None | Some("default") => Ok(mode),
        Some("image") => {
            let Some(text) = labels.get(IMAGE_SECCOMP_LABEL).filter(|t| !t.is_empty()) else {
                // Podman's text
                bail!("no seccomp policy defined by image");
            };
            if mode == seccomp::Mode::Unconfined {
                return Ok(mode);
            }
            Ok(seccomp::Mode::Profile {
                // what inspect shows as the profile's origin
                path: format!("image:{IMAGE_SECCOMP_LABEL}"),
                profile: seccomp::Profile::parse(text).with_context(|| {
                    format!("the image's seccomp profile (label {IMAGE_SECCOMP_LABEL})")
                })?,
            })
        }
        // Podman's text
        Some(p) => {
            bail!("invalid seccomp policy {p:?}: valid policies are [\"default\" \"image\"]")
        }
    }
}

/// `--personality`: the execution domains the OCI spec names (linux.personality), spelled as
/// crun takes them; anything else is refused before the container is made (Podman leaves it to
/// crun, which fails at start with exit 126).
fn personality(p: &str) -> Result<String> {
    match p.parse::<oci_spec::runtime::LinuxPersonalityDomain>() {
        Ok(d) => Ok(d.to_string()),
        Err(_) => bail!("unknown persona specified `{p}`: LINUX or LINUX32"),
    }
}

/// The proxy variables `--http-proxy` (on by default, as in Podman) passes from the caller's
/// environment, in the spellings Podman looks for: a container behind the same proxy as its
/// host can reach the network without being told.
fn proxy_env(lookup: &dyn Fn(&str) -> Option<String>) -> Vec<String> {
    ["http_proxy", "https_proxy", "ftp_proxy", "no_proxy"]
        .iter()
        .flat_map(|k| [k.to_string(), k.to_uppercase()])
        .filter_map(|k| lookup(&k).map(|v| format!("{k}={v}")))
        .collect()
}

/// The default environment (rbox's own, the caller's with `--env-host`, the image's) after
/// `--unsetenv`, `--unsetenv-all` and `--env-merge`, as Podman 4.3 treats them: they touch only
/// these defaults, never `--env-file` or `-e`; `--env-merge KEY=VALUE` rewrites a variable the
/// defaults have (VALUE expanded with them: `PATH=/x:${PATH}`) and ignores any other.
fn default_env(defaults: Vec<String>, x: &ExtraFlags) -> Vec<String> {
    let key = |e: &String| {
        e.split_once('=')
            .map(|(k, _)| k.to_string())
            .unwrap_or_else(|| e.clone())
    };
    let mut env: Vec<String> = if x.unsetenv_all {
        Vec::new()
    } else {
        defaults
            .into_iter()
            .filter(|e| !x.unsetenv.contains(&key(e)))
            .collect()
    };
    for m in &x.env_merge {
        let Some((k, v)) = m.split_once('=') else {
            continue;
        };
        let merged = format!("{k}={}", expand(v, &env));
        if let Some(slot) = env.iter_mut().find(|e| key(e) == k) {
            *slot = merged;
        }
    }
    env
}

/// `--stop-signal`: a name (`TERM`, `SIGUSR1`, `RTMIN+3`) or a number 1 to 64, as Podman
/// takes it; returned as the signal's name where nix has one, else the number (37 for
/// SIGRTMIN+3).
pub fn parse_stop_signal(s: &str) -> Result<String> {
    if let Ok(n) = s.parse::<i64>() {
        if !(1..=64).contains(&n) {
            bail!("valid signals are 1 through 64");
        }
    }
    let Some(n) = super::control::parse_signal(s) else {
        bail!("invalid signal: {s}");
    };
    Ok(match nix::sys::signal::Signal::try_from(n) {
        Ok(sig) => sig.as_str().to_string(),
        Err(_) => n.to_string(),
    })
}

/// The resources `--ulimit` names, as Docker and Podman spell them.
pub const ULIMITS: &[&str] = &[
    "as",
    "core",
    "cpu",
    "data",
    "fsize",
    "locks",
    "memlock",
    "msgqueue",
    "nice",
    "nofile",
    "nproc",
    "rss",
    "rtprio",
    "rttime",
    "sigpending",
    "stack",
];

/// `--ulimit NAME=SOFT[:HARD]` (-1 for unlimited; no HARD: the same as SOFT), with Podman's
/// texts. Returns (name, soft, hard), unlimited as `u64::MAX`.
pub fn parse_ulimit(u: &str) -> Result<(String, u64, u64)> {
    ulimit_parts(u).map_err(|why| {
        anyhow::anyhow!("ulimit option \"{u}\" requires name=SOFT:HARD, failed to be parsed: {why}")
    })
}

/// [`parse_ulimit`]'s parts, or why not in Podman's words (which its containers.conf check
/// wraps in other words than `--ulimit`'s).
pub fn ulimit_parts(u: &str) -> std::result::Result<(String, u64, u64), String> {
    let Some((name, limits)) = u.split_once('=') else {
        return Err(format!("invalid ulimit argument: {u}"));
    };
    if !ULIMITS.contains(&name) {
        return Err(format!("invalid ulimit type: {name}"));
    }
    let num = |v: &str| -> std::result::Result<u64, String> {
        match v.parse::<i64>() {
            Ok(-1) => Ok(u64::MAX),
            Ok(n) if n >= 0 => Ok(n as u64),
            Ok(n) => Err(format!("ulimit value {n} must be -1 or greater")),
            Err(_) => Err(format!("strconv.ParseInt: parsing \"{v}\": invalid syntax")),
        }
    };
    let (soft, hard) = match limits.split_once(':') {
        Some((s, h)) => (num(s)?, num(h)?),
        None => {
            let n = num(limits)?;
            (n, n)
        }
    };
    if soft > hard {
        let show = |n: u64| {
            if n == u64::MAX {
                "-1".to_string()
            } else {
                n.to_string()
            }
        };
        return Err(format!(
            "ulimit soft limit must be less than or equal to hard limit: {} > {}",
            show(soft),
            show(hard)
        ));
    }
    Ok((name.to_string(), soft, hard))
}

/// `--umask`: octal, at most 0777 (`27` is 0027), as Podman takes it.
pub fn parse_umask(m: &str) -> Result<u32> {
    match u32::from_str_radix(m, 8) {
        Ok(n) if n <= 0o777 && !m.is_empty() => Ok(n),
        _ => bail!("invalid umask string {m}: invalid argument"),
    }
}

/// Where a secret's file goes when `--secret` names no target (and what a relative target is
/// relative to), as in Podman.
const SECRETS_DIR: &str = "/run/secrets";

/// `--secret NAME[,type=mount|env][,target=PATH|VAR][,uid=N][,gid=N][,mode=OCTAL]`, with
/// Podman's texts for what it refuses. The secret's id is found at create.
pub fn parse_secret(s: &str) -> Result<crate::state::SecretUse> {
    let mut items = s.split(',');
    let name = items.next().unwrap_or_default();
    if name.is_empty() {
        bail!("invalid --secret `{s}`: expected NAME[,OPTIONS]");
    }
    let (mut env, mut target) = (false, None);
    let (mut uid, mut gid, mut mode) = (None, None, None);
    for item in items {
        let (k, v) = item.split_once('=').unwrap_or((item, ""));
        match k {
            "type" => match v {
                "mount" => env = false,
                "env" => env = true,
                _ => bail!("type {v} is invalid: parsing secret"),
            },
            "target" => target = Some(v.to_string()),
            "uid" => {
                uid = Some(
                    v.parse::<u32>()
                        .map_err(|_| anyhow::anyhow!("UID {v} invalid: parsing secret"))?,
                )
            }
            "gid" => {
                gid = Some(
                    v.parse::<u32>()
                        .map_err(|_| anyhow::anyhow!("GID {v} invalid: parsing secret"))?,
                )
            }
            "mode" => {
                mode = Some(
                    u32::from_str_radix(v, 8)
                        .ok()
                        .filter(|m| *m <= 0o777)
                        .ok_or_else(|| anyhow::anyhow!("mode {v} invalid: parsing secret"))?,
                )
            }
            _ => bail!("option {item} invalid: parsing secret"),
        }
    }
    if env && (uid.is_some() || gid.is_some() || mode.is_some()) {
        bail!("UID, GID, Mode options cannot be set with secret type env: parsing secret");
    }
    let target = match target.filter(|t| !t.is_empty()) {
        Some(t) if env => t,
        None if env => name.to_string(),
        // relative to /run/secrets, `..` resolved within the path as Podman cleans it
        t => {
            let joined = Path::new(SECRETS_DIR).join(t.as_deref().unwrap_or(name));
            let mut clean = PathBuf::from("/");
            for c in joined.components() {
                match c {
                    std::path::Component::Normal(n) => clean.push(n),
                    std::path::Component::ParentDir => {
                        clean.pop();
                    }
                    _ => {}
                }
            }
            if clean == Path::new("/") {
                bail!("invalid --secret `{s}`: the target is the container's root");
            }
            clean.to_string_lossy().into_owned()
        }
    };
    Ok(crate::state::SecretUse {
        name: name.to_string(),
        id: String::new(),
        env,
        target,
        uid: uid.unwrap_or(0),
        gid: gid.unwrap_or(0),
        mode: mode.unwrap_or(0o444),
    })
}

/// `--tz`: the host's zone file for `tz` (under /usr/share/zoneinfo; `local`: the host's own
/// /etc/localtime), bind-mounted read-only on the container's /etc/localtime, which is how
/// Podman sets a container's zone (observed with 4.3.1: a file mounted there, no TZ
/// variable). A zone the host has no file for is refused in Podman's words.
fn timezone_mount(tz: &str) -> Result<MountSpec> {
    let given = if tz == "local" {
        PathBuf::from("/etc/localtime")
    } else {
        Path::new("/usr/share/zoneinfo").join(tz)
    };
    let file = match std::fs::canonicalize(&given) {
        Ok(f) if f.is_file() => f,
        Ok(_) => bail!("--tz {tz}: `{}` is not a zone file", given.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "running container create option: stat {}: no such file or directory",
            given.display()
        ),
        Err(e) => bail!("--tz {tz}: stat `{}`: {e}", given.display()),
    };
    Ok(MountSpec {
        kind: crate::state::MountKind::Bind,
        source: file.to_string_lossy().into_owned(),
        destination: "/etc/localtime".into(),
        options: vec!["ro".into()],
    })
}

/// A mount destination without `.`, doubled or trailing slashes, to compare.
fn clean_dest(d: &str) -> PathBuf {
    Path::new(d).components().collect()
}

/// `--cgroups MODE`: whether the container gets no cgroup of its own (`disabled`). `enabled`
/// and `no-conmon` (rbox has no conmon) are the default; `split` puts the container in the
/// caller's systemd unit, and rbox does not use systemd.
fn cgroups_disabled(mode: Option<&str>) -> Result<bool> {
    match mode {
        None | Some("enabled") | Some("no-conmon") => Ok(false),
        Some("disabled") => Ok(true),
        Some("split") => {
            bail!("--cgroups=split needs systemd, which rbox does not use: use enabled or disabled")
        }
        // Podman's text
        Some(m) => {
            bail!("running container create option: invalid cgroup mode \"{m}\": invalid argument")
        }
    }
}

/// The cgroup resource flags, checked (Podman's texts for bad sizes).
/// The resource limits `run`'s flags in `x` ask for, checked (also `rbox update`'s).
pub fn resource_flags(x: &ExtraFlags) -> Result<crate::state::Resources> {
    resources(x)
}

fn resources(x: &ExtraFlags) -> Result<crate::state::Resources> {
    let size = |v: &Option<String>, what: &str| -> Result<Option<i64>> {
        match v.as_deref() {
            None => Ok(None),
            Some("-1") if what == "memory-swap" => Ok(Some(-1)),
            Some(s) => match rbox_storage::parse_size(s) {
                Some(n) => Ok(Some(n as i64)),
                None => bail!("invalid value for {what}: invalid size: '{s}'"),
            },
        }
    };
    let nano_cpus = match x.cpus {
        Some(c) if !(0.0..=1e6).contains(&c) => {
            bail!("invalid --cpus {c}: give a number of CPUs such as 1.5")
        }
        Some(c) => Some((c * 1e9).round() as u64),
        None => None,
    };
    // Podman's texts: --cpus is a quota over a period of its own
    if nano_cpus.is_some() {
        if x.cpu_quota.is_some() {
            bail!("--cpu-quota and --cpus cannot be set together");
        }
        if x.cpu_period.is_some() {
            bail!("--cpu-period and --cpus cannot be set together");
        }
    }
    let memory_swappiness = match x.memory_swappiness {
        None | Some(-1) => None,
        Some(n @ 0..=100) => Some(n as u64),
        Some(n) => bail!("invalid --memory-swappiness {n}: give 0 to 100, or -1 for the host's"),
    };
    if let Some(w) = x.blkio_weight.filter(|w| !(10..=1000).contains(w)) {
        bail!("invalid --blkio-weight {w}: give a weight from 10 to 1000");
    }
    Ok(crate::state::Resources {
        memory: size(&x.memory, "memory")?,
        memory_swap: size(&x.memory_swap, "memory-swap")?,
        memory_reservation: size(&x.memory_reservation, "memory-reservation")?,
        memory_swappiness,
        oom_kill_disable: x.oom_kill_disable,
        nano_cpus,
        cpu_shares: x.cpu_shares,
        cpuset_cpus: x.cpuset_cpus.clone(),
        cpuset_mems: x.cpuset_mems.clone(),
        cpu_quota: x.cpu_quota,
        cpu_period: x.cpu_period,
        cpu_rt_period: x.cpu_rt_period,
        cpu_rt_runtime: x.cpu_rt_runtime,
        blkio_weight: x.blkio_weight,
        pids_limit: x.pids_limit,
        device_limits: device_limits(x)?,
        cgroup_conf: cgroup_conf(&x.cgroup_conf)?,
    })
}

/// The per-device block I/O flags, each `PATH:RATE` (bytes with an optional kb, mb or gb for
/// the bps flags, a count for the iops ones) or `PATH:WEIGHT` (10 to 1000), with PATH resolved
/// to its device numbers now, as Podman does (it takes any device node).
fn device_limits(x: &ExtraFlags) -> Result<Vec<crate::state::DeviceLimit>> {
    use crate::state::DeviceLimitKind as K;
    let flags = [
        (K::ReadBps, &x.device_read_bps),
        (K::WriteBps, &x.device_write_bps),
        (K::ReadIops, &x.device_read_iops),
        (K::WriteIops, &x.device_write_iops),
        (K::Weight, &x.blkio_weight_device),
    ];
    let mut out = Vec::new();
    for (kind, values) in flags {
        for v in values {
            let (path, rate) = v.rsplit_once(':').unwrap_or((v, ""));
            let value = match kind {
                K::ReadBps | K::WriteBps => rbox_storage::parse_size(rate),
                _ => rate.parse::<u64>().ok(),
            };
            let value = match (kind, value) {
                (K::Weight, Some(w @ 10..=1000)) => w,
                (K::Weight, _) => {
                    bail!("invalid --blkio-weight-device `{v}`: give DEVICE:WEIGHT, a weight from 10 to 1000")
                }
                (_, Some(n)) if n > 0 => n,
                // Podman's text
                _ => bail!("invalid rate for device: {v}. The correct format is <device-path>:<number>[<unit>]. Number must be a positive integer. Unit is optional and can be kb, mb, or gb"),
            };
            let st = nix::sys::stat::stat(path)
                // Podman's text
                .map_err(|e| {
                    anyhow::anyhow!(
                        "could not parse throttle device at {path}: {}",
                        e.desc().to_lowercase()
                    )
                })?;
            out.push(crate::state::DeviceLimit {
                kind,
                major: nix::sys::stat::major(st.st_rdev),
                minor: nix::sys::stat::minor(st.st_rdev),
                value,
            });
        }
    }
    Ok(out)
}

/// `--cgroup-conf KEY=VALUE`: Podman's text for a value without `=`; the key must name a file
/// of the container's own cgroup directory (no path), since it is written there.
fn cgroup_conf(values: &[String]) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for v in values {
        let Some((k, val)) = v.split_once('=') else {
            bail!("--cgroup-conf must be formatted KEY=VALUE");
        };
        if k.is_empty() || k.contains('/') || k.starts_with('.') {
            bail!("invalid --cgroup-conf key `{k}`: give a file of the container's cgroup, such as memory.high");
        }
        out.insert(k.to_string(), val.to_string());
    }
    Ok(out)
}

/// `--device-cgroup-rule TYPE MAJOR:MINOR ACCESS`, checked as Podman checks it (its texts):
/// three fields split on single spaces, type a, b or c, numbers or `*`, access of r, w, m.
pub fn device_cgroup_rule(rule: &str) -> Result<String> {
    let [typ, numbers, access] = rule.split(' ').collect::<Vec<_>>()[..] else {
        bail!("invalid device cgroup rule requires type, major:Minor, and access rules: {rule:?}");
    };
    if !["a", "b", "c"].contains(&typ) {
        bail!("invalid device type in device-access-add: {typ}");
    }
    for n in numbers.split(':').filter(|n| *n != "*") {
        if n.parse::<u64>().is_err() {
            // Go's text, which Podman passes on
            bail!("strconv.ParseUint: parsing {n:?}: invalid syntax");
        }
    }
    if let Some(c) = access.chars().find(|c| !"rwm".contains(*c)) {
        bail!("invalid device access in device-access-add: {c}");
    }
    Ok(rule.to_string())
}

/// `--systemd`: whether the container runs in systemd mode. `true` (the default, also
/// given empty) when the command is an init, `always`, `false`; any case, as Podman.
fn systemd_mode(flag: Option<&str>, args: &[OsString]) -> Result<bool> {
    let is_init = || {
        let Some(first) = args.first().and_then(|a| a.to_str()) else {
            return false;
        };
        ["/sbin/init", "/usr/sbin/init", "/usr/local/sbin/init"].contains(&first)
            || Path::new(first).file_name() == Some("systemd".as_ref())
    };
    match flag.map(str::to_ascii_lowercase).as_deref() {
        None | Some("" | "true") => Ok(is_init()),
        Some("always") => Ok(true),
        Some("false") => Ok(false),
        // Podman's text
        Some(_) => bail!("invalid config provided: --systemd values must be one of \"true, false, always\": invalid configuration"),
    }
}

/// The stop signal of a container in systemd mode when neither `--stop-signal` nor the image
/// gives one: SIGRTMIN+3, which makes systemd halt (systemd(1), "SIGRTMIN+3").
const SYSTEMD_STOP_SIGNAL: &str = "37";

/// `--sysctl NAME=VALUE`: only the kernel parameters a container's own namespaces hold
/// (Podman's list and texts); `net.*` not with the host's network.
pub fn parse_sysctls(values: &[String], network: NetworkMode) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for v in values {
        let Some((k, val)) = v.split_once('=').filter(|(k, _)| !k.is_empty()) else {
            bail!("{v} is invalid, sysctl values must be in the form of KEY=VALUE");
        };
        let namespaced = k.starts_with("net.")
            || k.starts_with("kernel.shm")
            || k.starts_with("kernel.msg")
            || k == "kernel.sem"
            || k.starts_with("fs.mqueue.");
        if !namespaced || k.contains('/') || k.split('.').any(|c| c.is_empty() || c == "..") {
            bail!("sysctl '{k}' is not allowed");
        }
        if k.starts_with("net.") && network == NetworkMode::Host {
            bail!("sysctl {v} can't be set since Network Namespace set to host: invalid argument");
        }
        out.insert(k.to_string(), val.to_string());
    }
    Ok(out)
}

/// containers.conf's `default_sysctls` that `--sysctl` (`given`) leaves: checked as
/// `--sysctl`, the `net.*` ones left out where the container has no network namespace of
/// its own (as Podman does).
fn conf_sysctls(
    values: &[String],
    given: &BTreeMap<String, String>,
    network: NetworkMode,
) -> Result<BTreeMap<String, String>> {
    let own_net = !matches!(
        network,
        NetworkMode::Host | NetworkMode::Container | NetworkMode::Ns
    );
    let values: Vec<String> = (values.iter())
        .filter(|v| own_net || !v.starts_with("net."))
        .cloned()
        .collect();
    let mut out = parse_sysctls(&values, network)?;
    out.retain(|k, _| !given.contains_key(k));
    Ok(out)
}

/// The spec's [`crate::state::RunOpts`] from the flags.
fn run_opts(x: &ExtraFlags) -> Result<crate::state::RunOpts> {
    let mut ulimits: Vec<(String, u64, u64)> = Vec::new();
    for u in &x.ulimit {
        // Podman's `--ulimit host`: the caller's own limits, which the container inherits
        if u == "host" {
            continue;
        }
        let l = parse_ulimit(u)?;
        // a later --ulimit for the same resource wins
        ulimits.retain(|(n, _, _)| *n != l.0);
        ulimits.push(l);
    }
    let mut annotations = BTreeMap::new();
    for a in &x.annotation {
        match a.split_once('=') {
            Some((k, v)) if !k.is_empty() => annotations.insert(k.to_string(), v.to_string()),
            _ => bail!("annotations must be formatted KEY=VALUE"),
        };
    }
    if x.group_add.len() > 1 && x.group_add.iter().any(|g| g == "keep-groups") {
        bail!("the '--group-add keep-groups' option is not allowed with any other --group-add options");
    }
    if let Some(g) = x
        .group_add
        .iter()
        .find(|g| g.is_empty() || g.contains([':', ',']))
    {
        bail!("invalid --group-add `{g}`: give a group name or number");
    }
    let shm_size = match &x.shm_size {
        Some(v) => Some(
            rbox_storage::parse_size(v)
                .filter(|n| *n >= 1024)
                .ok_or_else(|| {
                    anyhow::anyhow!("unable to translate --shm-size: invalid size: '{v}'")
                })?,
        ),
        None => None,
    };
    let cwd = std::env::current_dir().unwrap_or_else(|_| "/".into());
    Ok(crate::state::RunOpts {
        rmi: x.rmi,
        pidfile: x.pidfile.as_ref().map(|p| cwd.join(p)),
        // an empty path is no file, as Podman reads it
        conmon_pidfile: x
            .conmon_pidfile
            .as_ref()
            .filter(|p| !p.as_os_str().is_empty())
            .map(|p| cwd.join(p)),
        pid_host: x.pid_host,
        uts_host: x.uts_host,
        cgroupns_host: x.cgroupns_host,
        preserve_fds: x.preserve_fds,
        shm_size,
        annotations,
        group_add: x.group_add.clone(),
        stop_timeout: x.stop_timeout,
        timeout: x.timeout.filter(|t| *t > 0),
        ulimits,
        umask: x.umask.as_deref().map(parse_umask).transpose()?,
        resources: resources(x)?,
        cgroups_disabled: cgroups_disabled(x.cgroups.as_deref())?,
        timezone: x.tz.clone(),
        oom_score_adj: x.oom_score_adj,
        personality: x.personality.as_deref().map(personality).transpose()?,
        // decided in `build`, with the network mode and the user namespace
        sysctl: BTreeMap::new(),
        no_read_only_tmpfs: false,
        hostuser: x
            .hostuser
            .iter()
            .flat_map(|h| h.split(','))
            .filter(|h| !h.is_empty())
            .map(str::to_string)
            .collect(),
        no_passwd: x.no_passwd,
        passwd_entry: x.passwd_entry.clone(),
        sdnotify: x
            .sdnotify
            .as_deref()
            .map(super::sdnotify::parse)
            .transpose()?
            .flatten(),
        device_cgroup_rules: x
            .device_cgroup_rule
            .iter()
            .map(|r| device_cgroup_rule(r))
            .collect::<Result<_>>()?,
        chrootdirs: x
            .chrootdirs
            .iter()
            .filter(|d| !d.is_empty())
            .cloned()
            .collect(),
        ..Default::default()
    })
}

/// What `--userns`, `--uidmap`, `--gidmap`, `--subuidname` and `--subgidname` ask for.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct UsernsFlags {
    pub mode: UsernsMode,
    pub keep_id_uid: Option<u32>,
    pub keep_id_gid: Option<u32>,
    /// `auto:size=N`
    pub auto_size: Option<u32>,
    pub uid_map: Vec<(u32, u32, u32)>,
    pub gid_map: Vec<(u32, u32, u32)>,
}

/// Parse `--userns MODE[:OPTIONS]` and the id-map flags, with Podman's error texts.
pub fn userns_flags(flag: &str, x: &ExtraFlags) -> Result<UsernsFlags> {
    let (name, options) = match flag.split_once(':') {
        Some((n, o)) => (n, Some(o)),
        None => (flag, None),
    };
    let Some(mode) = UsernsMode::from_flag(name) else {
        bail!("unrecognized namespace mode {flag} passed");
    };
    let mut f = UsernsFlags {
        mode,
        ..Default::default()
    };
    let number = |k: &str, v: &str| -> Result<u32> {
        v.parse().map_err(|_| {
            anyhow::anyhow!("invalid value `{v}` for the --userns option {k}: expected a number")
        })
    };
    for o in options.into_iter().flat_map(|o| o.split(',')) {
        let (k, v) = o.split_once('=').unwrap_or((o, ""));
        match (mode, k) {
            (UsernsMode::KeepId, "uid") => f.keep_id_uid = Some(number(k, v)?),
            (UsernsMode::KeepId, "gid") => f.keep_id_gid = Some(number(k, v)?),
            (UsernsMode::Auto, "size") => f.auto_size = Some(number(k, v)?),
            (UsernsMode::Auto, "uidmapping" | "gidmapping") => {
                bail!("--userns=auto:{k} is not supported by rbox: give the whole map with --uidmap and --gidmap")
            }
            _ => bail!("unknown option specified: {k:?}"),
        }
    }
    if let (Some(n), super::userns::Mode::SubIds { uid, gid }) =
        (f.auto_size, super::userns::current_mode())
    {
        // a range of that size cannot be carved from yours (Podman's text)
        if n > uid.count.min(gid.count) {
            bail!("creating container storage: could not find enough available IDs");
        }
    }
    let parse_map = |flag: &str, items: &[String]| -> Result<Vec<(u32, u32, u32)>> {
        items
            .iter()
            .map(|m| {
                let n: Option<Vec<u32>> = m.split(':').map(|n| n.parse().ok()).collect();
                match n.as_deref() {
                    Some([c, h, count]) if *count > 0 => Ok((*c, *h, *count)),
                    _ => bail!(
                        "initializing ID mappings: {flag} setting is malformed expected [\"uint32:uint32:uint32\"]: [\"{m}\"]"
                    ),
                }
            })
            .collect()
    };
    f.uid_map = parse_map("UID", &x.uidmap)?;
    f.gid_map = parse_map("GID", &x.gidmap)?;
    let maps_given = !x.uidmap.is_empty()
        || !x.gidmap.is_empty()
        || x.subuidname.is_some()
        || x.subgidname.is_some();
    if maps_given && !flag.is_empty() {
        bail!("--userns and --uidmap/--gidmap/--subuidname/--subgidname are mutually exclusive");
    }
    if x.subuidname.is_some() || x.subgidname.is_some() {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        (f.uid_map, f.gid_map) = named_maps(
            x.subuidname.as_deref(),
            x.subgidname.as_deref(),
            [&read("/etc/subuid"), &read("/etc/subgid")],
            &super::userns::current_mode(),
        )?;
    }
    // as in Podman, one of the two maps stands for both
    if f.gid_map.is_empty() {
        f.gid_map = f.uid_map.clone();
    } else if f.uid_map.is_empty() {
        f.uid_map = f.gid_map.clone();
    }
    Ok(f)
}

/// One line of an id map: container id, id of rbox's user namespace, count.
type IdMapLine = (u32, u32, u32);

/// `--subuidname`/`--subgidname`: the container's maps from NAME's ranges in /etc/subuid and
/// /etc/subgid (`texts`), one name standing for both as in Podman, in ids of rbox's user
/// namespace under `mode`: the host's as root; rootless, a range must lie within your own
/// (the only ids newuidmap gave rbox), whose first id is rbox's id 1.
fn named_maps(
    uid_name: Option<&str>,
    gid_name: Option<&str>,
    texts: [&str; 2],
    mode: &super::userns::Mode,
) -> Result<(Vec<IdMapLine>, Vec<IdMapLine>)> {
    use super::userns::{parse_subid, Mode, SubRange};
    let one = |name: Option<&str>, i: usize| -> Result<IdMapLine> {
        let name = name.or(uid_name).or(gid_name).unwrap_or_default();
        let (kind, file) = [("subuid", "/etc/subuid"), ("subgid", "/etc/subgid")][i];
        let Some(r) = parse_subid(texts[i], Some(name), u32::MAX) else {
            bail!("no {kind} ranges found for user \"{name}\" in {file}");
        };
        let own: Option<SubRange> = match mode {
            Mode::Root => return Ok((0, r.start, r.count)),
            Mode::SubIds { uid, gid } => Some(if i == 0 { *uid } else { *gid }),
            Mode::Single => None,
        };
        let end = u64::from(r.start) + u64::from(r.count);
        match own {
            Some(o) if r.start >= o.start && end <= u64::from(o.start) + u64::from(o.count) => {
                Ok((0, 1 + (r.start - o.start), r.count))
            }
            _ => bail!(
                "--{kind}name {name}: the {kind} range {}-{} is not among your subordinate ids, \
                 the only ones newuidmap maps for you",
                r.start,
                end - 1
            ),
        }
    };
    Ok((vec![one(uid_name, 0)?], vec![one(gid_name, 1)?]))
}

/// `--log-driver` and `--log-opt KEY=VALUE` (max-size, path).
fn log_config(driver: Option<&str>, opts: &[String]) -> Result<crate::state::LogConfig> {
    let mut c = crate::state::LogConfig::default();
    match driver {
        None | Some("k8s-file") => {}
        Some(d @ ("none" | "passthrough")) => c.driver = d.to_string(),
        Some(d) => bail!("invalid log driver `{d}`: rbox supports k8s-file, none and passthrough"),
    }
    for o in opts {
        match o.split_once('=') {
            Some(("max-size", v)) => {
                let n = rbox_storage::parse_size(v)
                    .filter(|n| *n > 0)
                    .ok_or_else(|| anyhow::anyhow!("invalid size: `{v}`"))?;
                c.max_size = Some(n);
            }
            Some(("path", v)) if Path::new(v).is_absolute() => c.path = Some(PathBuf::from(v)),
            Some(("path", v)) => bail!("invalid --log-opt path `{v}`: give an absolute path"),
            _ => bail!("invalid --log-opt `{o}`: rbox takes max-size=SIZE and path=FILE"),
        }
    }
    Ok(c)
}

/// The healthcheck flags, as given.
#[derive(Debug, Clone, Default)]
pub struct HealthFlags {
    pub cmd: Option<String>,
    pub interval: Option<String>,
    pub timeout: Option<String>,
    pub start_period: Option<String>,
    pub retries: Option<u32>,
    pub on_failure: Option<String>,
    pub none: bool,
}

/// The container's healthcheck from its flags (Podman's rules and texts): `--health-cmd` takes
/// a shell command, or a JSON array for the exec form; `none` or `--no-healthcheck` for none.
/// The image's HEALTHCHECK fills what the flags leave unset (a flag wins field by field, as in
/// Podman); `--no-healthcheck` or `--health-cmd none` drops it.
fn healthcheck(
    h: &HealthFlags,
    image: Option<&ImageHealthcheck>,
) -> Result<Option<crate::state::Healthcheck>> {
    use std::time::Duration;
    let from_image = |ns: Option<u64>| ns.filter(|n| *n > 0).map(Duration::from_nanos);
    let dur = |v: &Option<String>, what: &str, default: Duration| -> Result<Duration> {
        let default = from_image(image.map(|i| match what {
            "interval" => i.interval,
            "timeout" => i.timeout,
            _ => i.start_period,
        }))
        .unwrap_or(default);
        match v.as_deref() {
            None => Ok(default),
            Some("disable") if what == "interval" => Ok(Duration::ZERO),
            Some(s) if s.starts_with('-') => {
                bail!("healthcheck-{what} must be 0 seconds or greater")
            }
            Some(s) => super::health::parse_duration(s).ok_or_else(|| {
                anyhow::anyhow!("invalid healthcheck-{what}: invalid duration `{s}`")
            }),
        }
    };
    let interval = dur(&h.interval, "interval", Duration::from_secs(30))?;
    let timeout = dur(&h.timeout, "timeout", Duration::from_secs(30))?;
    let start_period = dur(&h.start_period, "start-period", Duration::ZERO)?;
    if timeout < Duration::from_secs(1) {
        bail!("healthcheck-timeout must be at least 1 second");
    }
    if h.retries == Some(0) {
        bail!("healthcheck-retries must be greater than 0");
    }
    let on_failure = h.on_failure.clone().unwrap_or_else(|| "none".into());
    if !["none", "kill", "restart", "stop"].contains(&on_failure.as_str()) {
        bail!("invalid on-failure action `{on_failure}` for health check: supported actions are none,kill,restart,stop");
    }
    if h.none {
        return Ok(None);
    }
    let image_test = image.map(|i| i.test.clone()).filter(|t| !t.is_empty());
    let test = match (h.cmd.as_deref(), image_test) {
        (None, Some(test)) => test,
        (None, None) => return Ok(None),
        (Some(cmd), _) if cmd.trim_start().starts_with('[') => {
            let argv: Vec<String> = serde_json::from_str(cmd)
                .map_err(|e| anyhow::anyhow!("invalid --health-cmd `{cmd}`: {e}"))?;
            match argv.first().map(String::as_str) {
                Some("CMD" | "CMD-SHELL" | "NONE") => argv,
                _ => std::iter::once("CMD".to_string()).chain(argv).collect(),
            }
        }
        (Some(cmd), _) if cmd.eq_ignore_ascii_case("none") => return Ok(None),
        (Some(cmd), _) => vec!["CMD-SHELL".into(), cmd.to_string()],
    };
    if test.first().map(String::as_str) == Some("NONE") || test.len() < 2 {
        return Ok(None);
    }
    Ok(Some(crate::state::Healthcheck {
        test,
        interval,
        timeout,
        start_period,
        retries: h
            .retries
            .or(image.map(|i| i.retries).filter(|r| *r > 0))
            .unwrap_or(3),
        on_failure,
    }))
}

/// `--add-host HOST:IP` (the address may be IPv6: split at the first colon).
fn parse_add_host(h: &str) -> Result<(String, String)> {
    let bad = |why: &str| anyhow::anyhow!("invalid --add-host `{h}`: {why}");
    let (name, ip) = h.split_once(':').ok_or_else(|| bad("expected HOST:IP"))?;
    let ok_name = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._".contains(c));
    if !ok_name {
        return Err(bad(
            "the host name may hold only letters, digits, `-`, `.` and `_`",
        ));
    }
    let ip = ip.trim_start_matches('[').trim_end_matches(']');
    ip.parse::<std::net::IpAddr>()
        .map_err(|_| bad("expected an IP address after the colon"))?;
    Ok((name.to_string(), ip.to_string()))
}

/// The image's exposed ports and `--expose`'s (`PORT[-PORT][/PROTO]`), as `80/tcp`, once each.
fn exposed(image: &[String], flags: &[String]) -> Result<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    let mut add = |p: String| {
        if !out.contains(&p) {
            out.push(p);
        }
    };
    for e in image {
        add(if e.contains('/') {
            e.clone()
        } else {
            format!("{e}/tcp")
        });
    }
    for e in flags {
        let bad = || anyhow::anyhow!("invalid --expose `{e}`: expected PORT[-PORT][/tcp|udp]");
        let (ports, proto) = e.split_once('/').unwrap_or((e, "tcp"));
        if proto != "tcp" && proto != "udp" {
            return Err(bad());
        }
        let (lo, hi) = ports.split_once('-').unwrap_or((ports, ports));
        let (lo, hi): (u16, u16) = match (lo.parse(), hi.parse()) {
            (Ok(l), Ok(h)) if l > 0 && l <= h => (l, h),
            _ => return Err(bad()),
        };
        for p in lo..=hi {
            add(format!("{p}/{proto}"));
        }
    }
    Ok(out)
}

/// `-p` specs (and with `-P`, every exposed port `-p` did not publish) as the ports a
/// container publishes, host ports 0 (or omitted) given a free one now, as Podman does at
/// create. Publishing needs a bridge.
fn publish(
    specs: &[String],
    network: NetworkMode,
    all: bool,
    exposed: &[String],
) -> Result<Vec<crate::state::PortSpec>> {
    if specs.is_empty() && (exposed.is_empty() || !all) {
        return Ok(Vec::new());
    }
    if network == NetworkMode::Container {
        bail!("publishing ports needs --network=pasta or --network=slirp4netns, not `container`: publish them on the container whose network this one joins");
    }
    if !network.is_bridge() {
        bail!(
            "publishing ports needs --network=pasta or --network=slirp4netns, not `{}`",
            network
        );
    }
    let mut ports = Vec::new();
    for s in specs {
        ports.extend(rbox_netns::parse_publish(s)?);
    }
    if all {
        for e in exposed {
            // `exposed` holds what `exposed()` made: PORT/tcp or PORT/udp
            let (port, proto) = e.split_once('/').unwrap_or((e, "tcp"));
            let (Ok(container_port), proto) = (
                port.parse::<u16>(),
                if proto == "udp" {
                    rbox_netns::Proto::Udp
                } else {
                    rbox_netns::Proto::Tcp
                },
            ) else {
                bail!("invalid exposed port `{e}` in the image");
            };
            if !ports
                .iter()
                .any(|p| p.container_port == container_port && p.proto == proto)
            {
                ports.push(rbox_netns::PortMapping {
                    host_ip: None,
                    host_port: 0,
                    container_port,
                    proto,
                });
            }
        }
    }
    rbox_netns::pick_host_ports(&mut ports)?;
    Ok(ports
        .iter()
        .map(crate::state::PortSpec::from_mapping)
        .collect())
}

/// Build the container's spec from the image and the flags. A `seccomp=PROFILE` is compiled
/// here, so that what libseccomp refuses fails before anything is created; with
/// `seccomp_cache` the program is kept there and the container's start reads it back instead of
/// compiling it again.
pub fn build(
    img: &ImageProcess,
    a: &Flags,
    id: &str,
    seccomp_cache: Option<&Path>,
) -> Result<Spec> {
    let lookup = |k: &str| std::env::var(k).ok();
    let args = command(img, a.entrypoint.as_deref(), &a.command)?;
    let mut files = Vec::new();
    for f in &a.env_file {
        let text = read_flag_file(f, "env file")?;
        files.extend(
            parse_env_file(&text, &lookup)
                .with_context(|| format!("env file `{}`", f.display()))?,
        );
    }
    let mut cli = Vec::new();
    for e in &a.env {
        cli.extend(env_item(e, &lookup)?);
    }
    // TERM=xterm with or without -t, as Podman (and so in what `commit` carries)
    let base = vec![
        format!("PATH={DEFAULT_PATH}"),
        "TERM=xterm".into(),
        "container=rbox".into(),
    ];
    // --env-host: the caller's environment, under the image's (Podman's order)
    let host: Vec<String> = if a.extra.env_host {
        std::env::vars_os()
            .filter_map(|(k, v)| {
                Some(format!(
                    "{}={}",
                    k.into_string().ok()?,
                    v.into_string().ok()?
                ))
            })
            .collect()
    } else if a.extra.http_proxy {
        proxy_env(&lookup)
    } else {
        Vec::new()
    };
    // containers.conf's env: Podman skips an entry without `=` silently
    let conf: Vec<String> = a
        .extra
        .conf_env
        .iter()
        .filter(|e| e.contains('='))
        .cloned()
        .collect();
    let defaults = default_env(merge_env(&[&base, &host, &conf, &img.env]), &a.extra);
    let mut env = merge_env(&[&defaults, &files, &cli]);
    let systemd = systemd_mode(a.extra.systemd.as_deref(), &args)?;
    if systemd {
        // what systemd reads for the machine id of a container, as Podman sets it
        env = merge_env(&[
            &[format!("container_uuid={}", &id[..32.min(id.len())])],
            &env,
        ]);
    }
    let cwd = std::env::current_dir().unwrap_or_else(|_| "/".into());
    let mut mounts = Vec::new();
    let mut volumes = Vec::new();
    for v in &a.volume {
        let (m, vol) = parse_volume(v, &cwd)?;
        mounts.push(m);
        volumes.extend(vol);
    }
    for t in &a.tmpfs {
        mounts.push(parse_tmpfs(t)?);
    }
    for m in &a.mount {
        let (m, vol) = parse_any_mount(m, &cwd)?;
        mounts.push(m);
        volumes.extend(vol);
    }
    for d in &a.device {
        mounts.push(parse_device(d)?);
    }
    if let Some(tz) = &a.extra.tz {
        mounts.push(timezone_mount(tz)?);
    }
    check_destinations(&mounts)?;
    // containers.conf's, under the flags' (Podman's order): one at a destination a flag
    // already mounts is left out
    let given: Vec<PathBuf> = mounts.iter().map(|m| clean_dest(&m.destination)).collect();
    let mut conf = Vec::new();
    for v in &a.extra.conf_volumes {
        let (m, vol) = parse_volume(v, &cwd)?;
        if !given.contains(&clean_dest(&m.destination)) {
            conf.push(m);
            volumes.extend(vol);
        }
    }
    for d in &a.extra.conf_devices {
        conf.push(parse_device(d)?);
    }
    conf.retain(|m| !given.contains(&clean_dest(&m.destination)));
    mounts.extend(conf);
    check_destinations(&mounts)?;
    match a.image_volume.as_deref() {
        None | Some("bind" | "anonymous") => image_volumes(&img.volumes, &mut mounts, &mut volumes),
        Some("tmpfs") => {
            for d in &img.volumes {
                if d.starts_with('/')
                    && !mounts
                        .iter()
                        .any(|m| clean_dest(&m.destination) == clean_dest(d))
                {
                    mounts.push(parse_tmpfs(d)?);
                }
            }
        }
        Some("ignore") => {}
        // Podman's text
        Some(o) => bail!("invalid image volume mode {o:?} required value: bind, tmpfs, ignore"),
    }
    let secrets = a
        .secret
        .iter()
        .map(|s| parse_secret(s))
        .collect::<Result<Vec<_>>>()?;
    let workdir = a.workdir.clone().unwrap_or_else(|| img.workdir.clone());
    if !workdir.is_empty() && !workdir.starts_with('/') {
        bail!("invalid working directory `{workdir}`: it must be an absolute path");
    }
    let (no_new_privileges, seccomp) = security_opts(&a.security_opt)?;
    let seccomp = seccomp_policy(a.extra.seccomp_policy.as_deref(), seccomp, &img.labels)?;
    let (mask, unmask) = mask_opts(&a.security_opt)?;
    if a.no_hosts && !a.add_host.is_empty() {
        bail!("--no-hosts and --add-host cannot be set together");
    }
    // `--network` omitted: pasta when installed, else slirp4netns (as Podman 5); the
    // record keeps the mode this resolved to
    let default_network;
    // `private` and `default` name that default too, as in Podman
    let a_network = if matches!(a.network.as_str(), "" | "private" | "default") {
        default_network = rbox_netns::default_backend_name();
        default_network
    } else {
        a.network.as_str()
    };
    let Some((network, network_options)) = NetworkMode::from_flag(a_network) else {
        bail!("{}", unsupported_network(a_network));
    };
    if network == NetworkMode::Ns && !network_options.starts_with('/') {
        bail!(
            "invalid --network `{}`: ns: takes an absolute path",
            a.network
        );
    }
    if network == NetworkMode::Container {
        // the container uses the /etc/hosts and resolv.conf of the one it joins, as in Podman
        if !a.dns.is_empty() || !a.dns_search.is_empty() || !a.dns_option.is_empty() {
            bail!("--dns, --dns-search and --dns-option cannot be used with --network=container: the container shares the resolv.conf of the container it joins");
        }
        if !a.add_host.is_empty() {
            bail!("--add-host cannot be used with --network=container: the container shares the /etc/hosts of the container it joins");
        }
    }
    if network.is_bridge() {
        // the backend's own checks of its options, now rather than at every start
        a_network.parse::<rbox_netns::Backend>()?;
    }
    let exposed_ports = exposed(&img.exposed_ports, &a.expose)?;
    let ports = publish(&a.publish, network, a.publish_all, &exposed_ports)?;
    for d in &a.dns {
        if d.parse::<std::net::IpAddr>().is_err() {
            bail!("invalid --dns `{d}`: expected an IP address");
        }
    }
    let add_hosts = a
        .add_host
        .iter()
        .map(|h| parse_add_host(h))
        .collect::<Result<Vec<_>>>()?;
    let uf = userns_flags(&a.userns, &a.extra)?;
    let userns = uf.mode;
    for c in a.cap_add.iter().chain(&a.cap_drop) {
        super::caps::parse(c)?;
    }
    if let seccomp::Mode::Profile { path, .. } = &seccomp {
        // what libseccomp refuses (a rule it cannot express) fails now, not at every start
        let kept = super::caps::kept(
            &a.cap_add,
            &a.cap_drop,
            a.privileged,
            super::caps::last_cap(),
        )?;
        seccomp::program(&seccomp, a.privileged, kept, seccomp_cache)
            .with_context(|| format!("seccomp profile `{path}`"))?;
    }
    // The image's labels, then --label-file, then --label: later ones win, as in Podman.
    let mut labels = img.labels.clone();
    for f in &a.label_file {
        let text = read_flag_file(f, "label file")?;
        parse_labels(&text, &mut labels)
            .with_context(|| format!("label file `{}`", f.display()))?;
    }
    for l in &a.label {
        label_item(l, &mut labels)?;
    }
    let sysctl = parse_sysctls(&a.extra.sysctl, network)?;
    let mut spec = Spec {
        args: Vec::new(),
        args_bytes: Default::default(),
        env,
        workdir: if workdir.is_empty() {
            "/".into()
        } else {
            workdir
        },
        user: a.user.clone().unwrap_or_else(|| img.user.clone()),
        hostname: a.hostname.clone().unwrap_or_else(|| id[..12].to_string()),
        mounts,
        volumes,
        secrets,
        volumes_from: a.volumes_from.clone(),
        read_only: a.read_only,
        init: a.init,
        tty: a.tty,
        interactive: a.interactive,
        network,
        network_options,
        ports,
        userns,
        cap_add: a.cap_add.clone(),
        cap_drop: a.cap_drop.clone(),
        privileged: a.privileged,
        no_new_privileges,
        seccomp,
        // The container's own entrypoint and command, as Podman's inspect and commit show them.
        entrypoint: match a.entrypoint.as_deref() {
            Some(e) => parse_entrypoint(e),
            None => img.entrypoint.clone(),
        },
        cmd: {
            let ep = a
                .entrypoint
                .as_deref()
                .map_or(img.entrypoint.len(), |e| parse_entrypoint(e).len());
            args.iter()
                .skip(ep)
                .map(|s| s.to_string_lossy().into_owned())
                .collect()
        },
        labels,
        stop_signal: match &a.extra.stop_signal {
            Some(sig) => Some(parse_stop_signal(sig)?),
            None if systemd && img.stop_signal.is_none() => Some(SYSTEMD_STOP_SIGNAL.into()),
            None => img.stop_signal.clone(),
        },
        dns: a.dns.clone(),
        dns_search: a.dns_search.clone(),
        dns_options: a.dns_option.clone(),
        add_hosts,
        no_hosts: a.no_hosts,
        exposed_ports,
        healthcheck: healthcheck(&a.health, img.healthcheck.as_ref())?,
        log: log_config(a.log_driver.as_deref(), &a.log_opt)?,
        restart: match &a.restart {
            Some(r) => crate::state::RestartPolicy::parse(r)?,
            None => Default::default(),
        },
        opts: crate::state::RunOpts {
            conf_sysctl: conf_sysctls(&a.extra.conf_sysctls, &sysctl, network)?,
            sysctl,
            no_read_only_tmpfs: a.extra.no_read_only_tmpfs,
            publish_all: a.publish_all,
            ..run_opts(&a.extra)?
        },
    };
    spec.opts.mask = mask;
    spec.opts.unmask = unmask;
    spec.opts.fakeroot = fakeroot_opt(&a.security_opt);
    spec.opts.keep_id_uid = uf.keep_id_uid;
    spec.opts.keep_id_gid = uf.keep_id_gid;
    spec.opts.uid_map = uf.uid_map;
    spec.opts.gid_map = uf.gid_map;
    spec.opts.auto_size = uf.auto_size;
    spec.opts.systemd = systemd;
    spec.set_args(args);
    Ok(spec)
}

/// The error for a `--network` mode rbox does not have (also for containers.conf's netns).
pub fn unsupported_network(mode: &str) -> String {
    let name = mode.split_once(':').map_or(mode, |(m, _)| m);
    if matches!(name, "bridge" | "podman") {
        format!(
            "network mode `{mode}` is not supported: rbox has no bridge networks (each container has its own user-mode network; containers reach each other through published ports or share one with --network=container:NAME): use --network=pasta, slirp4netns, none, host, container:NAME or ns:PATH"
        )
    } else {
        format!(
            "network mode `{mode}` is not supported yet: use --network=pasta, slirp4netns, none, host, container:NAME or ns:PATH"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn systemd_mode_and_device_rules_as_podman_decides_them() {
        let args = |a: &[&str]| a.iter().map(OsString::from).collect::<Vec<_>>();
        for (flag, cmd, want) in [
            (None, &["/sbin/init"][..], true),
            (
                Some(""),
                &["/usr/lib/systemd/systemd", "--log-level=debug"],
                true,
            ),
            (Some("TRUE"), &["init"], false),
            (Some("always"), &["sh"], true),
            (Some("false"), &["/sbin/init"], false),
            (None, &["/usr/bin/systemd-run"], false),
        ] {
            assert_eq!(
                systemd_mode(flag, &args(cmd)).unwrap(),
                want,
                "{flag:?} {cmd:?}"
            );
        }
        assert!(systemd_mode(Some("1"), &args(&["sh"])).is_err());
        for ok in ["c 1:3 rwm", "b *:* m", "c 1 r", "a *:* rwm", "c 1:3 "] {
            assert_eq!(device_cgroup_rule(ok).unwrap(), ok);
        }
        for bad in ["c 1:3", "c  1:3 r", "d 1:3 r", "c 1:x r", "c 1:3 rwq"] {
            assert!(device_cgroup_rule(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn secret_flags_as_podman() {
        let s = parse_secret("pw").unwrap();
        assert_eq!(
            (s.env, s.target.as_str(), s.mode),
            (false, "/run/secrets/pw", 0o444)
        );
        let s = parse_secret("pw,target=../../etc/x,uid=5,gid=6,mode=0400").unwrap();
        assert_eq!(
            (s.target.as_str(), s.uid, s.gid, s.mode),
            ("/etc/x", 5, 6, 0o400)
        );
        assert_eq!(
            parse_secret("pw,target=k").unwrap().target,
            "/run/secrets/k"
        );
        let s = parse_secret("pw,type=env").unwrap();
        assert_eq!((s.env, s.target.as_str()), (true, "pw"));
        assert_eq!(parse_secret("pw,type=env,target=V").unwrap().target, "V");
        for (bad, text) in [
            ("pw,type=foo", "type foo is invalid: parsing secret"),
            ("pw,bogus=1", "option bogus=1 invalid: parsing secret"),
            ("pw,uid=x", "UID x invalid: parsing secret"),
            ("pw,mode=999", "mode 999 invalid: parsing secret"),
            (
                "pw,type=env,uid=1",
                "UID, GID, Mode options cannot be set with secret type env: parsing secret",
            ),
        ] {
            assert_eq!(parse_secret(bad).unwrap_err().to_string(), text, "{bad}");
        }
    }

    #[test]
    fn subid_names_give_maps_in_rbox_ids() {
        use crate::runtime::userns::{Mode, SubRange};
        let texts = ["me:100000:65536\nother:300000:1000\n", "me:200000:65536\n"];
        let r = |start, count| SubRange { start, count };
        let me = Mode::SubIds {
            uid: r(100000, 65536),
            gid: r(200000, 65536),
        };
        assert_eq!(
            named_maps(Some("me"), None, texts, &me).unwrap(),
            (vec![(0, 1, 65536)], vec![(0, 1, 65536)])
        );
        assert_eq!(
            named_maps(Some("me"), None, texts, &Mode::Root).unwrap(),
            (vec![(0, 100000, 65536)], vec![(0, 200000, 65536)])
        );
        let e = named_maps(Some("nosuch"), None, texts, &me).unwrap_err();
        assert_eq!(
            e.to_string(),
            "no subuid ranges found for user \"nosuch\" in /etc/subuid"
        );
        let e = named_maps(Some("me"), Some("other"), texts, &me).unwrap_err();
        assert_eq!(
            e.to_string(),
            "no subgid ranges found for user \"other\" in /etc/subgid"
        );
        let e = named_maps(Some("other"), Some("me"), texts, &me).unwrap_err();
        assert!(
            e.to_string()
                .contains("300000-300999 is not among your subordinate ids"),
            "{e}"
        );
        assert!(named_maps(Some("me"), None, texts, &Mode::Single).is_err());
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    fn o(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    fn img() -> ImageProcess {
        ImageProcess {
            entrypoint: s(&["/ep"]),
            cmd: s(&["c1", "c2"]),
            ..Default::default()
        }
    }

    #[test]
    fn entrypoint_and_cmd_rules() {
        assert_eq!(command(&img(), None, &[]).unwrap(), o(&["/ep", "c1", "c2"]));
        assert_eq!(command(&img(), None, &o(&["x"])).unwrap(), o(&["/ep", "x"]));
        // --entrypoint discards the image's CMD
        assert_eq!(
            command(&img(), Some("/bin/sh"), &[]).unwrap(),
            o(&["/bin/sh"])
        );
        assert_eq!(
            command(&img(), Some("/bin/sh"), &o(&["-c", "id"])).unwrap(),
            o(&["/bin/sh", "-c", "id"])
        );
        assert_eq!(
            command(&img(), Some(r#"["sh","-c"]"#), &o(&["id"])).unwrap(),
            o(&["sh", "-c", "id"])
        );
        // --entrypoint "" clears it
        assert_eq!(command(&img(), Some(""), &o(&["ls"])).unwrap(), o(&["ls"]));
        assert!(command(&ImageProcess::default(), None, &[]).is_err());
    }

    #[test]
    fn env_merge_and_files() {
        let look = |k: &str| (k == "HOSTVAR").then(|| "hv".to_string());
        let f = parse_env_file("# c\n\nA=1\nHOSTVAR\nUNSET\nB=x=y\n", &look).unwrap();
        assert_eq!(f, s(&["A=1", "HOSTVAR=hv", "B=x=y"]));
        let m = merge_env(&[&s(&["PATH=/a", "A=0"]), &f, &s(&["A=2"])]);
        assert_eq!(m, s(&["PATH=/a", "A=2", "HOSTVAR=hv", "B=x=y"]));
        assert!(parse_env_file("BAD KEY=1\n", &look).is_err());
    }

    #[test]
    fn volumes() {
        let cwd = Path::new("/");
        let (m, v) = parse_volume("/tmp:/data:ro", cwd).unwrap();
        assert!(v.is_none());
        assert_eq!(
            (m.source.as_str(), m.destination.as_str()),
            ("/tmp", "/data")
        );
        assert_eq!(m.options, s(&["ro"]));
        assert_eq!(m.kind, MountKind::Bind);
        assert!(parse_volume("/tmp:data", cwd).is_err());
        assert!(parse_volume("/nonexistent-rbox:/d", cwd).is_err());
        // a name is a volume, a lone destination an anonymous one
        let (m, v) = parse_volume("myvol:/d:ro,nocopy,U,z", cwd).unwrap();
        let v = v.unwrap();
        assert_eq!((v.name.as_str(), v.destination.as_str()), ("myvol", "/d"));
        assert!(v.nocopy && v.chown && !v.anonymous);
        assert_eq!(
            (m.source.as_str(), &m.options[..]),
            ("", &s(&["ro", "nosuid", "nodev"])[..])
        );
        let (_, v) = parse_volume("/anon", cwd).unwrap();
        let v = v.unwrap();
        assert!(v.anonymous && v.name.is_empty() && v.destination == "/anon");
        let e = parse_volume("/anon:ro", cwd).unwrap_err().to_string();
        assert_eq!(e, "invalid container path \"ro\", must be an absolute path");
        let e = parse_volume("bad name:/d", cwd).unwrap_err().to_string();
        assert_eq!(
            e,
            "creating named volume \"bad name\": running volume create option: names must match [a-zA-Z0-9][a-zA-Z0-9_.-]*: invalid argument"
        );
        assert!(parse_volume(":/d", cwd).is_err());
        assert!(parse_volume("/tmp:/d:nocopy", cwd).is_err());
        assert!(parse_volume("/tmp:/d:bogus", cwd).is_err());
        let t = parse_tmpfs("/run:size=1m,mode=700").unwrap();
        assert_eq!(t.options, s(&["size=1m", "mode=700"]));
        assert_eq!((t.kind, t.source.as_str()), (MountKind::Tmpfs, "tmpfs"));
        assert!(parse_tmpfs("run").is_err());
        let x = parse_volume("/tmp:/x", cwd).unwrap().0;
        let y = parse_volume("/tmp:/y", cwd).unwrap().0;
        assert!(check_destinations(&[x.clone(), y]).is_ok());
        let e = check_destinations(&[x.clone(), parse_tmpfs("/x/").unwrap()]).unwrap_err();
        assert_eq!(e.to_string(), "/x: duplicate mount destination");
        assert!(check_destinations(&[x.clone(), x]).is_err());
    }

    fn flags(network: &str, userns: &str) -> Flags {
        Flags {
            entrypoint: None,
            command: vec!["sh".into()],
            env: Vec::new(),
            env_file: Vec::new(),
            label: Vec::new(),
            label_file: Vec::new(),
            workdir: None,
            user: None,
            hostname: None,
            volume: Vec::new(),
            tmpfs: Vec::new(),
            mount: Vec::new(),
            device: Vec::new(),
            secret: Vec::new(),
            volumes_from: Vec::new(),
            image_volume: None,
            read_only: false,
            init: false,
            tty: false,
            interactive: false,
            network: network.into(),
            publish: Vec::new(),
            publish_all: false,
            expose: Vec::new(),
            dns: Vec::new(),
            dns_search: Vec::new(),
            dns_option: Vec::new(),
            add_host: Vec::new(),
            no_hosts: false,
            userns: userns.into(),
            cap_add: Vec::new(),
            cap_drop: Vec::new(),
            privileged: false,
            security_opt: Vec::new(),
            restart: None,
            health: Default::default(),
            log_driver: None,
            log_opt: Vec::new(),
            extra: ExtraFlags::default(),
        }
    }

    #[test]
    fn add_host_entries() {
        assert_eq!(
            parse_add_host("db:192.0.2.7").unwrap(),
            ("db".to_string(), "192.0.2.7".to_string())
        );
        // the address may be IPv6, bracketed or not
        assert_eq!(parse_add_host("v6:2001:db8::1").unwrap().1, "2001:db8::1");
        assert_eq!(parse_add_host("v6:[::1]").unwrap().1, "::1");
        for bad in ["db", ":1.2.3.4", "db:", "db:nope", "d b:1.2.3.4"] {
            let e = parse_add_host(bad).unwrap_err().to_string();
            assert!(e.starts_with(&format!("invalid --add-host `{bad}`")), "{e}");
        }
    }

    #[test]
    fn modes_are_parsed_once_at_build() {
        let img = ImageProcess::default();
        let id = "ab".repeat(32);
        let sp = build(&img, &flags("host", "keep-id"), &id, None).unwrap();
        assert_eq!(
            (sp.network, sp.userns),
            (NetworkMode::Host, UsernsMode::KeepId)
        );
        let sp = build(&img, &flags("none", ""), &id, None).unwrap();
        assert_eq!(
            (sp.network, sp.userns),
            (NetworkMode::None, UsernsMode::Default)
        );
        let e = build(&img, &flags("bridge", ""), &id, None).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("network mode `bridge` is not supported: rbox has no bridge networks"),
            "{e}"
        );
        let e = build(&img, &flags("macvlan", ""), &id, None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "network mode `macvlan` is not supported yet: use --network=pasta, slirp4netns, none, host, container:NAME or ns:PATH"
        );
        // Podman's names of the default mode
        for m in ["private", "default"] {
            let sp = build(&img, &flags(m, ""), &id, None).unwrap();
            assert_eq!(sp.network.as_str(), rbox_netns::default_backend_name());
        }
        let e = build(&img, &flags("none", "bogus"), &id, None).unwrap_err();
        assert_eq!(e.to_string(), "unrecognized namespace mode bogus passed");
        // no --network: the installed bridge, recorded as such
        let sp = build(&img, &flags("", ""), &id, None).unwrap();
        assert_eq!(sp.network.as_str(), rbox_netns::default_backend_name());
        let mut f = flags("none", "");
        f.no_hosts = true;
        assert!(build(&img, &f, &id, None).unwrap().no_hosts);
        f.add_host = vec!["db:192.0.2.7".into()];
        let e = build(&img, &f, &id, None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "--no-hosts and --add-host cannot be set together"
        );
    }

    #[test]
    fn mount_flag_as_podman() {
        let cwd = Path::new("/");
        let m = parse_mount("type=bind,src=tmp,dst=/x,ro,bind-nonrecursive,nosuid", cwd).unwrap();
        assert_eq!((m.kind, m.source.as_str()), (MountKind::Bind, "/tmp"));
        assert_eq!(m.options, ["ro", "bind", "nosuid"]);
        // no source: the target's host path, as Podman binds it
        assert_eq!(
            parse_mount("type=bind,target=/tmp", cwd).unwrap().source,
            "/tmp"
        );
        // ro then rw: the last wins
        assert!(parse_mount("type=bind,source=/tmp,target=/x,ro,rw", cwd)
            .unwrap()
            .options
            .is_empty());
        let t = parse_mount("type=tmpfs,target=/t,tmpfs-size=2k,tmpfs-mode=1777", cwd).unwrap();
        assert_eq!(t.options, ["size=2048", "mode=1777", "exec"]);
        let t = parse_mount("type=tmpfs,target=/t,exec,noexec", cwd).unwrap();
        assert_eq!(t.options, ["noexec"]);
        assert!(parse_mount("type=tmpfs,target=/t,tmpfs-mode=9", cwd).is_err());
        assert!(parse_mount("type=tmpfs,target=/t,tmpfs-size=x", cwd).is_err());
        assert!(parse_mount("type=tmpfs,target=/", cwd).is_err());
        assert!(parse_mount(
            "type=bind,source=/tmp,target=/x,bind-propagation=rslave",
            cwd
        )
        .is_err());
        let d = parse_mount("type=devpts,target=/dev/pts2,mode=620", cwd).unwrap();
        assert_eq!(
            (d.kind, d.options.as_slice()),
            (MountKind::Devpts, &s(&["mode=620"])[..])
        );
        assert!(parse_mount("type=devpts,target=/p,tmpfs-size=1", cwd).is_err());
        let (m, v) = parse_any_mount("type=volume,src=data,dst=/d,ro,volume-nocopy", cwd).unwrap();
        let v = v.unwrap();
        assert_eq!(
            (v.name.as_str(), v.nocopy, v.anonymous),
            ("data", true, false)
        );
        assert_eq!(
            (m.destination.as_str(), m.options.contains(&"ro".into())),
            ("/d", true)
        );
        assert!(
            parse_any_mount("type=volume,dst=/d", cwd)
                .unwrap()
                .1
                .unwrap()
                .anonymous
        );
        assert!(parse_any_mount("type=volume,src=data", cwd).is_err());
        assert!(parse_any_mount("type=volume,src=-x,dst=/d", cwd).is_err());
        assert!(parse_any_mount("type=volume,src=x,dst=/d,bogus", cwd).is_err());
    }

    #[test]
    fn image_volumes_skip_covered_destinations() {
        let (mut mounts, mut vols) = (vec![parse_tmpfs("/a").unwrap()], Vec::new());
        image_volumes(&s(&["/a/", "/b", "rel"]), &mut mounts, &mut vols);
        assert_eq!(vols.len(), 1);
        assert!(vols[0].anonymous && vols[0].destination == "/b");
        assert_eq!(mounts.len(), 2);
    }

    #[test]
    fn sysctls_namespaced_only() {
        let ok = parse_sysctls(
            &s(&["net.core.somaxconn=1024", "fs.mqueue.msg_max=20"]),
            NetworkMode::None,
        )
        .unwrap();
        assert_eq!(
            ok.get("net.core.somaxconn").map(String::as_str),
            Some("1024")
        );
        for bad in [
            "kernel.semx=1",
            "net./../../vm/x=1",
            "net..x=1",
            "net.a/b=1",
            "=1",
            "vm.x=1",
        ] {
            assert!(
                parse_sysctls(&s(&[bad]), NetworkMode::None).is_err(),
                "{bad}"
            );
        }
        assert!(parse_sysctls(&s(&["net.x=1"]), NetworkMode::Host).is_err());
        assert!(parse_sysctls(&s(&["kernel.shmmax=1"]), NetworkMode::Host).is_ok());
    }

    #[test]
    fn volume_on_the_root_is_refused() {
        for v in ["/tmp:/", "/tmp://", "/tmp:/.", "/tmp:/:ro"] {
            let e = parse_volume(v, Path::new("/")).unwrap_err().to_string();
            assert!(e.contains("cannot be the container's root"), "{v}: {e}");
        }
        assert!(parse_volume("/tmp:/data", Path::new("/")).is_ok());
    }

    #[test]
    fn flag_files_are_capped_and_labels_parsed() {
        let d = tempfile::tempdir().unwrap();
        let big = d.path().join("big");
        std::fs::write(&big, vec![b'A'; MAX_FLAG_FILE as usize + 1]).unwrap();
        let e = read_flag_file(&big, "env file").unwrap_err().to_string();
        assert!(e.contains("is larger than 1024 KiB"), "{e}");
        // /dev/zero never ends: the cap stops it
        let e = read_flag_file(Path::new("/dev/zero"), "env file")
            .unwrap_err()
            .to_string();
        assert!(e.contains("larger than"), "{e}");
        let mut l = BTreeMap::new();
        parse_labels("# c\n\na=1\nb\n c=x=y \n", &mut l).unwrap();
        assert_eq!(l["a"], "1");
        assert_eq!(l["b"], "");
        assert_eq!(l["c"], "x=y");
        assert!(parse_labels("bad key=1\n", &mut l).is_err());
    }

    #[test]
    fn security_options() {
        let parse = |v: &[&str]| security_opts(&s(v));
        let err = |v: &[&str]| format!("{:#}", parse(v).unwrap_err());
        assert_eq!(parse(&[]).unwrap(), (false, seccomp::Mode::Default));
        assert_eq!(
            parse(&["no-new-privileges", "seccomp=unconfined"]).unwrap(),
            (true, seccomp::Mode::Unconfined)
        );
        assert!(
            !parse(&["no-new-privileges:true", "no-new-privileges=false"])
                .unwrap()
                .0
        );
        // the "off" values of AppArmor and SELinux change nothing
        assert_eq!(
            parse(&["apparmor=unconfined", "label=disable", "seccomp:unconfined"]).unwrap(),
            (false, seccomp::Mode::Unconfined)
        );
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("p.json");
        std::fs::write(&f, r#"{"defaultAction": "SCMP_ACT_ALLOW"}"#).unwrap();
        let path = f.to_str().unwrap();
        match parse(&[&format!("seccomp={path}")]).unwrap().1 {
            seccomp::Mode::Profile { path: p, profile } => {
                assert_eq!(
                    (p.as_str(), profile.default_action.as_str()),
                    (path, "SCMP_ACT_ALLOW")
                )
            }
            m => panic!("{m:?}"),
        }
        std::fs::write(&f, r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": 3}"#).unwrap();
        assert!(
            err(&[&format!("seccomp={path}")]).starts_with(&format!("seccomp profile `{path}`: "))
        );
        assert!(err(&["seccomp=/nonexistent"]).starts_with("read seccomp profile `/nonexistent`: "));
        assert!(err(&["seccomp="]).contains("seccomp=unconfined or seccomp=PROFILE.json"));
        assert!(err(&["apparmor=docker-default"]).contains("AppArmor"));
        assert!(err(&["label=type:spc_t"]).contains("SELinux"));
        let unknown = err(&["bogus=1"]);
        assert!(unknown.contains("`bogus=1`") && unknown.contains("seccomp=unconfined"));
        assert!(!unknown.contains('\n'));
        // mask and unmask are read by mask_opts
        assert!(parse(&["mask=/proc/kcore", "unmask=ALL"]).is_ok());
        assert_eq!(
            mask_opts(&s(&["mask=/a:/b", "unmask=ALL", "no-new-privileges"])).unwrap(),
            (s(&["/a", "/b"]), s(&["ALL"]))
        );
        assert!(mask_opts(&s(&["mask=rel"])).is_err());
    }

    #[test]
    fn stop_signal_ulimit_and_umask_as_podman() {
        assert_eq!(parse_stop_signal("USR1").unwrap(), "SIGUSR1");
        assert_eq!(parse_stop_signal("sigterm").unwrap(), "SIGTERM");
        assert_eq!(parse_stop_signal("9").unwrap(), "SIGKILL");
        assert_eq!(parse_stop_signal("40").unwrap(), "40");
        let e = |r: Result<String>| r.unwrap_err().to_string();
        assert_eq!(e(parse_stop_signal("FOO")), "invalid signal: FOO");
        assert_eq!(e(parse_stop_signal("99")), "valid signals are 1 through 64");
        assert_eq!(e(parse_stop_signal("0")), "valid signals are 1 through 64");

        assert_eq!(
            parse_ulimit("nofile=100:200").unwrap(),
            ("nofile".into(), 100, 200)
        );
        assert_eq!(parse_ulimit("nproc=50").unwrap(), ("nproc".into(), 50, 50));
        assert_eq!(
            parse_ulimit("core=-1").unwrap(),
            ("core".into(), u64::MAX, u64::MAX)
        );
        assert_eq!(
            parse_ulimit("core=0:-1").unwrap(),
            ("core".into(), 0, u64::MAX)
        );
        let ue = |u: &str| parse_ulimit(u).unwrap_err().to_string();
        assert_eq!(
            ue("foo=1"),
            "ulimit option \"foo=1\" requires name=SOFT:HARD, failed to be parsed: invalid ulimit type: foo"
        );
        assert!(ue("nofile=200:100")
            .ends_with("ulimit soft limit must be less than or equal to hard limit: 200 > 100"));
        assert!(ue("nofile=-1:100").ends_with("-1 > 100"));
        assert!(ue("nofile=x").ends_with("strconv.ParseInt: parsing \"x\": invalid syntax"));
        assert!(ue("nofile").ends_with("invalid ulimit argument: nofile"));

        assert_eq!(parse_umask("0077").unwrap(), 0o077);
        assert_eq!(parse_umask("27").unwrap(), 0o027);
        assert_eq!(
            parse_umask("99").unwrap_err().to_string(),
            "invalid umask string 99: invalid argument"
        );
        assert!(parse_umask("1777").is_err() && parse_umask("").is_err());

        let x = ExtraFlags {
            ulimit: s(&["nofile=10", "nofile=20:30"]),
            timeout: Some(0),
            ..Default::default()
        };
        let o = run_opts(&x).unwrap();
        assert_eq!(o.ulimits, [("nofile".to_string(), 20, 30)]);
        assert_eq!(o.timeout, None);
    }

    #[test]
    fn unsetenv_and_env_merge_as_podman() {
        let defaults = s(&["PATH=/bin", "TERM=xterm", "container=rbox", "IMG=1"]);
        let x = |f: fn(&mut ExtraFlags)| {
            let mut e = ExtraFlags::default();
            f(&mut e);
            default_env(defaults.clone(), &e)
        };
        assert_eq!(x(|_| {}), defaults);
        assert_eq!(
            x(|e| e.unsetenv = s(&["PATH", "IMG"])),
            s(&["TERM=xterm", "container=rbox"])
        );
        assert!(x(|e| e.unsetenv_all = true).is_empty());
        assert_eq!(
            x(|e| e.env_merge = s(&[
                "PATH=/x:${PATH}",
                "NEW=a",
                "BAD",
                "TERM=${container}:$TERM:$"
            ])),
            s(&[
                "PATH=/x:/bin",
                "TERM=rbox:xterm:$",
                "container=rbox",
                "IMG=1"
            ])
        );
        assert_eq!(expand("a${NOPE}b$NOPE.c", &[]), "ab.c");
        assert_eq!(expand("x${PATH", &s(&["PATH=/bin"])), "x");

        let mut f = ExtraFlags {
            annotation: s(&["a=b", "k=v=w"]),
            ..Default::default()
        };
        let o = run_opts(&f).unwrap();
        assert_eq!(o.annotations["k"], "v=w");
        f.annotation = s(&["c"]);
        assert_eq!(
            run_opts(&f).unwrap_err().to_string(),
            "annotations must be formatted KEY=VALUE"
        );
    }

    #[test]
    fn the_images_healthcheck_fills_what_the_flags_leave() {
        use std::time::Duration;
        let raw = br#"{"config":{"Healthcheck":{"Test":["CMD-SHELL","test -e /ok"],
            "Interval":5000000000,"Timeout":2000000000,"Retries":7}}}"#;
        let image = ImageHealthcheck::from_config(raw).unwrap();
        let hc = healthcheck(&HealthFlags::default(), Some(&image))
            .unwrap()
            .unwrap();
        assert_eq!(hc.test, ["CMD-SHELL", "test -e /ok"]);
        assert_eq!(hc.interval, Duration::from_secs(5));
        assert_eq!(hc.timeout, Duration::from_secs(2));
        assert_eq!(hc.start_period, Duration::ZERO);
        assert_eq!(hc.retries, 7);
        // a flag wins field by field
        let flags = HealthFlags {
            cmd: Some("true".into()),
            interval: Some("9s".into()),
            ..Default::default()
        };
        let hc = healthcheck(&flags, Some(&image)).unwrap().unwrap();
        assert_eq!(hc.test, ["CMD-SHELL", "true"]);
        assert_eq!(hc.interval, Duration::from_secs(9));
        assert_eq!(hc.retries, 7);
        // --no-healthcheck, and an image that says NONE
        let none = HealthFlags {
            none: true,
            ..Default::default()
        };
        assert_eq!(healthcheck(&none, Some(&image)).unwrap(), None);
        let off = ImageHealthcheck::from_config(br#"{"config":{"Healthcheck":{"Test":["NONE"]}}}"#);
        assert_eq!(
            healthcheck(&HealthFlags::default(), off.as_ref()).unwrap(),
            None
        );
        assert_eq!(ImageHealthcheck::from_config(br#"{"config":{}}"#), None);
    }
}
