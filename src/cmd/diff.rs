//! `rbox diff` (and `container diff`): what a container changed, read from its overlay upper
//! directory (a copy-driver root is compared with the image's layers), or what an image's top layer changes over its parent; `A`, `C` and `D` lines as
//! Podman prints them, or `--format json` (`changed`, `added`, `deleted`). With two names
//! (containers or images), the changes of the first's root over the second's.
//!
//! In an upper (or a layer) a 0/0 character device is a whiteout (`D` when the path exists
//! below), a directory marked `user.overlay.opaque` hides everything below it (each such
//! path is `D` unless the directory has it again), any other entry is `C` when the layers
//! below have the path and `A` when not. Directories on the way to a change are themselves
//! in the upper, so they show as `C` as in Podman.

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{anyhow, bail, Result};
use rbox_storage::changes::visible;
use serde::Serialize;

use crate::cli::complete;
use crate::context::Context;
use crate::runtime;
use crate::state;

#[derive(Debug, Clone, clap::Args)]
pub struct DiffArgs {
    /// Change the output format (json)
    #[arg(long, value_name = "FORMAT")]
    pub format: Option<String>,
    /// The container created last
    #[arg(short = 'l', long)]
    pub latest: bool,
    /// Container or image (name or id)
    #[arg(value_name = "CONTAINER|IMAGE", required_unless_present = "latest", add = complete::object_candidates())]
    pub name: Option<String>,
    /// A second container or image: the changes of the first over it
    #[arg(value_name = "CONTAINER|IMAGE", add = complete::object_candidates())]
    pub other: Option<String>,
}

/// One change, as Podman names its kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Added,
    Changed,
    Deleted,
}

impl Kind {
    fn letter(self) -> char {
        match self {
            Kind::Added => 'A',
            Kind::Changed => 'C',
            Kind::Deleted => 'D',
        }
    }
}

/// Whether `rel` (relative, no leading `/`) exists in the union of `lowers` (top-most
/// first), honouring whiteouts and opaque directories there.
pub fn lower_exists(lowers: &[PathBuf], rel: &Path) -> bool {
    for l in lowers {
        // a whiteout or opaque directory on the way hides every layer below this one
        let mut hidden = false;
        let mut p = l.clone();
        let comps: Vec<_> = rel.components().collect();
        for (i, c) in comps.iter().enumerate() {
            p.push(c);
            match fs::symlink_metadata(&p) {
                Err(_) => break,
                Ok(m) if is_whiteout(&m) => {
                    hidden = true;
                    break;
                }
                Ok(_) if i + 1 == comps.len() => return true,
                Ok(m) if !m.is_dir() => {
                    hidden = true;
                    break;
                }
                Ok(_) => {
                    if is_opaque(&p) {
                        // the opaque directory itself exists; what is below it only here
                        let rest: PathBuf = comps[i + 1..].iter().collect();
                        return fs::symlink_metadata(p.join(rest)).is_ok_and(|m| !is_whiteout(&m));
                    }
                }
            }
        }
        if hidden {
            return false;
        }
    }
    false
}

fn is_whiteout(m: &fs::Metadata) -> bool {
    m.file_type().is_char_device() && m.rdev() == 0
}

fn is_opaque(p: &Path) -> bool {
    rbox_storage::lgetxattr(p, "user.overlay.opaque").is_some_and(|v| v == b"y")
}

/// The names directly in `rel` of the union of `lowers`.
fn lower_names(lowers: &[PathBuf], rel: &Path) -> Vec<String> {
    let mut out = std::collections::BTreeSet::new();
    for l in lowers {
        let Ok(rd) = fs::read_dir(l.join(rel)) else {
            continue;
        };
        for e in rd.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if lower_exists(lowers, &rel.join(&n)) {
                out.insert(n);
            }
        }
    }
    out.into_iter().collect()
}

/// The changes `upper` makes over `lowers`, parents before their children, names sorted.
pub fn changes(upper: &Path, lowers: &[PathBuf]) -> std::io::Result<Vec<(Kind, String)>> {
    let mut out = Vec::new();
    walk(upper, Path::new(""), lowers, &mut out)?;
    Ok(out)
}

fn walk(
    upper: &Path,
    rel: &Path,
    lowers: &[PathBuf],
    out: &mut Vec<(Kind, String)>,
) -> std::io::Result<()> {
    let mut names: Vec<String> = fs::read_dir(upper.join(rel))?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for n in names {
        let r = rel.join(&n);
        let shown = format!("/{}", r.display());
        let p = upper.join(&r);
        let m = fs::symlink_metadata(&p)?;
        let below = lower_exists(lowers, &r);
        if is_whiteout(&m) {
            if below {
                out.push((Kind::Deleted, shown));
            }
            continue;
        }
        if m.is_file() && m.len() == 0 && !below && MOUNT_POINTS.contains(&shown.as_str()) {
            continue;
        }
        let at = out.len();
        out.push((
            if below { Kind::Changed } else { Kind::Added },
            shown.clone(),
        ));
        if m.is_dir() {
            let opaque = is_opaque(&p);
            if opaque && below {
                // everything the layers had here is gone, unless upper has it again
                for gone in lower_names(lowers, &r) {
                    if fs::symlink_metadata(p.join(&gone)).is_err() {
                        out.push((Kind::Deleted, format!("{shown}/{gone}")));
                    }
                }
            }
            walk(upper, &r, lowers, out)?;
            // a directory that is in the upper only for rbox's mount points is no change
            let only_mount_points = fs::read_dir(&p)?.flatten().all(|e| {
                MOUNT_POINTS
                    .contains(&format!("{shown}/{}", e.file_name().to_string_lossy()).as_str())
            });
            if below && out.len() == at + 1 && only_mount_points {
                out.pop();
            }
        }
    }
    Ok(())
}

/// What a container's diff never shows, whatever happened there (observed with podman 4.3.1:
/// a container that made /dev, /proc, /run and /sys as mount points, and touched /etc/mtab
/// and /etc/hostname, shows none of them): the runtime makes or mounts these in every
/// container. Paths below them (`/run/x`) are shown.
const CONTAINER_OWN: &[&str] = &[
    "/dev",
    "/etc/hostname",
    "/etc/hosts",
    "/etc/mtab",
    "/etc/resolv.conf",
    "/proc",
    "/run",
    "/run/.containerenv",
    "/sys",
];

/// The empty files rbox leaves in a container's upper as targets of its own bind mounts:
/// not changes the container made (Podman's diff does not show them either).
pub const MOUNT_POINTS: &[&str] = &[
    "/etc/hosts",
    "/etc/resolv.conf",
    "/etc/hostname",
    "/run/.containerenv",
];

#[derive(Serialize)]
struct Json<'a> {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    changed: Vec<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    added: Vec<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    deleted: Vec<&'a str>,
}

/// Drops from `changes` what rbox made for the container's `--secret` files where the image
/// had nothing: the mount point and the directories made for it, unless something else
/// changed below them (Podman 4.3's diff shows neither).
fn hide_secret_mount_points(changes: &mut Vec<(Kind, String)>, spec: &state::Spec) {
    for s in spec.secrets.iter().filter(|s| !s.env) {
        changes.retain(|(k, p)| !(*k == Kind::Added && *p == s.target));
        // its parents, deepest first
        for dir in Path::new(&s.target).ancestors().skip(1) {
            let dir = dir.to_string_lossy();
            let below = format!("{dir}/");
            if changes.iter().any(|(_, p)| p.starts_with(&below)) {
                break;
            }
            changes.retain(|(k, p)| !(*k == Kind::Added && *p == dir));
        }
    }
}

fn print(changes: &[(Kind, String)], format: Option<&str>) -> Result<()> {
    match format {
        None | Some("") => {
            for (k, p) in changes {
                println!("{} {p}", k.letter());
            }
        }
        Some("json") => {
            let of = |kind| {
                changes
                    .iter()
                    .filter(|(k, _)| *k == kind)
                    .map(|(_, p)| p.as_str())
                    .collect::<Vec<_>>()
            };
            let j = Json {
                changed: of(Kind::Changed),
                added: of(Kind::Added),
                deleted: of(Kind::Deleted),
            };
            // Podman indents its json by five spaces
            let mut buf = Vec::new();
            let fmt = serde_json::ser::PrettyFormatter::with_indent(b"     ");
            let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
            j.serialize(&mut ser)?;
            println!("{}", String::from_utf8_lossy(&buf));
        }
        Some(f) => bail!("unknown --format `{f}`: rbox diff prints json or its A/C/D lines"),
    }
    Ok(())
}

pub fn run(g: &Context, a: DiffArgs) -> Result<ExitCode> {
    if let Some(f) = a
        .format
        .as_deref()
        .filter(|f| !f.is_empty() && *f != "json")
    {
        bail!("unknown --format `{f}`: rbox diff prints json or its A/C/D lines");
    }
    let names = super::targets::with_latest(g, a.latest, a.name.as_slice(), "containers")?;
    let [name] = &names[..] else {
        bail!("diff takes a container or image, and perhaps a second one");
    };
    if let Some(other) = &a.other {
        let store = runtime::open_store(g)?;
        let (one, two) = (trees(g, &store, name)?, trees(g, &store, other)?);
        let changes =
            compare(&one, &two).map_err(|e| anyhow!("compare {name} with {other}: {e}"))?;
        print(&changes, a.format.as_deref())?;
        return Ok(ExitCode::SUCCESS);
    }
    let rec = state::lookup(g, name).ok();
    let store = runtime::open_store(g)?;
    let changes = match rec {
        Some(rec) => {
            let dir = store.container_dir(&rec.id)?;
            if rec.driver == rbox_storage::Driver::Copy {
                // a copy keeps no record of changes: compare it with the image's layers
                let root = std::slice::from_ref(&dir.rootfs);
                let mut changes = compare(root, &dir.lower_dirs)
                    .map_err(|e| anyhow!("read `{}`: {e}", dir.rootfs.display()))?;
                changes.retain(|(_, p)| !CONTAINER_OWN.contains(&p.as_str()));
                hide_secret_mount_points(&mut changes, &rec.spec);
                print(&changes, a.format.as_deref())?;
                return Ok(ExitCode::SUCCESS);
            }
            let lowers = match &dir.host_root {
                Some(h) => vec![h.clone()],
                None => dir.lower_dirs.clone(),
            };
            let mut changes = changes(&dir.upper, &lowers)
                .map_err(|e| anyhow!("read `{}`: {e}", dir.upper.display()))?;
            changes.retain(|(_, p)| !CONTAINER_OWN.contains(&p.as_str()));
            hide_secret_mount_points(&mut changes, &rec.spec);
            changes
        }
        None => {
            let img = store
                .lookup_image(name)
                .map_err(|_| anyhow!("{name} not found: layer not known"))?;
            let mut dirs: Vec<PathBuf> = img
                .layers
                .iter()
                .rev()
                .map(|l| store.layer_path(&l.diff_id))
                .collect();
            if dirs.is_empty() {
                Vec::new()
            } else {
                let top = dirs.remove(0);
                changes(&top, &dirs).map_err(|e| anyhow!("read `{}`: {e}", top.display()))?
            }
        }
    };
    print(&changes, a.format.as_deref())?;
    Ok(ExitCode::SUCCESS)
}

/// The directories whose union is the root of a container (its upper and the image's
/// layers, or its copy) or of an image (its layers), top-most first.
fn trees(g: &Context, store: &rbox_storage::Store, name: &str) -> Result<Vec<PathBuf>> {
    if let Ok(rec) = state::lookup(g, name) {
        let dir = store.container_dir(&rec.id)?;
        if rec.driver == rbox_storage::Driver::Copy {
            return Ok(vec![dir.rootfs]);
        }
        let mut v = vec![dir.upper.clone()];
        match dir.host_root {
            Some(h) => v.push(h),
            None => v.extend(dir.lower_dirs),
        }
        return Ok(v);
    }
    let img = store
        .lookup_image(name)
        .map_err(|_| anyhow!("{name} not found: layer not known"))?;
    Ok(img
        .layers
        .iter()
        .rev()
        .map(|l| store.layer_path(&l.diff_id))
        .collect())
}

/// The changes of the union of `one` over the union of `two` (both top-most first), parents
/// before children, names sorted: `A` for what only `one` has (and all below it), `D` for
/// what only `two` has, `C` for what both have but differently; rbox's empty mount-point
/// files are left out.
pub fn compare(one: &[PathBuf], two: &[PathBuf]) -> std::io::Result<Vec<(Kind, String)>> {
    let mut out = Vec::new();
    compare_at(one, two, Path::new(""), &mut out)?;
    Ok(out)
}

fn union_names(dirs: &[PathBuf], rel: &Path) -> std::collections::BTreeSet<std::ffi::OsString> {
    let mut out = std::collections::BTreeSet::new();
    for d in dirs {
        let Ok(rd) = fs::read_dir(d.join(rel)) else {
            continue;
        };
        for e in rd.flatten() {
            let n = e.file_name();
            if !out.contains(&n) && visible(dirs, &rel.join(&n)).is_some() {
                out.insert(n);
            }
        }
    }
    out
}

fn compare_at(
    one: &[PathBuf],
    two: &[PathBuf],
    rel: &Path,
    out: &mut Vec<(Kind, String)>,
) -> std::io::Result<()> {
    let mut names = union_names(one, rel);
    names.extend(union_names(two, rel));
    for n in names {
        let r = rel.join(&n);
        let shown = format!("/{}", r.display());
        let (a, b) = (visible(one, &r), visible(two, &r));
        let mount_point = |e: &Option<(PathBuf, fs::Metadata)>| {
            e.as_ref().is_some_and(|(_, m)| m.is_file() && m.len() == 0)
        };
        if MOUNT_POINTS.contains(&shown.as_str()) && (mount_point(&a) || mount_point(&b)) {
            continue;
        }
        match (a, b) {
            (Some((_, m)), None) => {
                out.push((Kind::Added, shown));
                if m.is_dir() {
                    compare_at(one, two, &r, out)?;
                }
            }
            (None, Some(_)) => out.push((Kind::Deleted, shown)),
            (Some((pa, ma)), Some(low)) => {
                if rbox_storage::changes::differs(&ma, &pa, &low, false) {
                    out.push((Kind::Changed, shown));
                }
                if ma.is_dir() {
                    compare_at(one, two, &r, out)?;
                }
            }
            (None, None) => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upper_over_layers() {
        let t = tempfile::tempdir().unwrap();
        let (low, up) = (t.path().join("low"), t.path().join("up"));
        for d in ["etc", "bin", "usr/sbin"] {
            fs::create_dir_all(low.join(d)).unwrap();
        }
        for f in ["etc/passwd", "bin/ls", "bin/sh", "usr/sbin/a", "usr/sbin/b"] {
            fs::write(low.join(f), "x").unwrap();
        }
        for d in ["etc", "bin", "usr/sbin", "a/b"] {
            fs::create_dir_all(up.join(d)).unwrap();
        }
        fs::write(up.join("etc/passwd"), "y").unwrap();
        fs::write(up.join("etc/new"), "y").unwrap();
        fs::write(up.join("usr/sbin/b"), "y").unwrap();
        // an upper made by overlay: whiteouts are 0/0 character devices
        nix::sys::stat::mknod(
            &up.join("bin/ls"),
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::empty(),
            0,
        )
        .unwrap();
        let got = changes(&up, std::slice::from_ref(&low)).unwrap();
        let lines: Vec<String> = got
            .iter()
            .map(|(k, p)| format!("{} {p}", k.letter()))
            .collect();
        let want = [
            "A /a",
            "A /a/b",
            "C /bin",
            "D /bin/ls",
            "C /etc",
            "A /etc/new",
            "C /etc/passwd",
            "C /usr",
            "C /usr/sbin",
            "C /usr/sbin/b",
        ];
        assert_eq!(lines, want);
    }
}
