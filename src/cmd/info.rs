//! `rbox info`: what this host lets rbox do, and what to change where it falls short: kernel,
//! whether unprivileged user namespaces are allowed, the user's subordinate id ranges,
//! newuidmap/newgidmap, the id-mapping mode in use, whether overlayfs mounts in a user
//! namespace (probed for real in a throwaway child), /dev/fuse, /dev/net/tun, cgroups, and the
//! storage and runtime directories. Every problem comes with the host change that fixes it.
//!
//! Checks are plain functions over file contents where they can be (unit-tested); the probe
//! and the file reads are the thin outer layer. rbox itself never enters the namespace here:
//! only the forked probe child does.

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;
use serde_json::{json, Map, Value};

use crate::context::Context;
use crate::format;
use rbox_storage::Driver;

use crate::runtime::{self, userns};

#[derive(Debug, Clone, clap::Args)]
pub struct InfoArgs {
    /// Output format: json, or a Go template such as '{{.Host.Kernel}}'
    #[arg(short = 'f', long, value_name = "FORMAT")]
    pub format: Option<String>,
}

pub fn run(g: &Context, a: InfoArgs) -> Result<ExitCode> {
    let info = gather(g)?;
    match a.format.as_deref() {
        None => print!("{}", yaml(&info, 0)),
        Some(f) if f.trim().eq_ignore_ascii_case("json") => {
            println!("{}", format::pretty_json(&info))
        }
        Some(f) => {
            // Go templates see Podman's Go field names; where one is more than the JSON key
            // in another case, the view has it too
            let mut view = info.clone();
            view["host"]["CgroupsVersion"] = info["host"]["cgroupVersion"].clone();
            let rows = [format::Row { json: info, view }];
            print!("{}", format::render_list(Some(f), "", &[], &rows)?);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn read(p: &str) -> Option<String> {
    fs::read_to_string(p).ok().map(|s| s.trim().to_string())
}

fn gather(g: &Context) -> Result<Value> {
    let mut problems: Vec<String> = Vec::new();
    let uid = nix::unistd::geteuid().as_raw();
    let root_user = uid == 0;
    let user = userns::user_name(uid).unwrap_or_else(|| uid.to_string());

    // ---- kernel and user namespaces
    let uts = nix::sys::utsname::uname().ok();
    let kernel = uts
        .as_ref()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    let os_release = read("/etc/os-release").unwrap_or_default();
    let userns_check = UsernsSysctls {
        max_user_namespaces: read("/proc/sys/user/max_user_namespaces")
            .and_then(|s| s.parse().ok()),
        unprivileged_userns_clone: read("/proc/sys/kernel/unprivileged_userns_clone")
            .and_then(|s| s.parse().ok()),
        apparmor_restrict: read("/proc/sys/kernel/apparmor_restrict_unprivileged_userns")
            .and_then(|s| s.parse().ok()),
    };
    let userns_problems = if root_user {
        Vec::new()
    } else {
        userns_check.problems()
    };
    let userns_allowed = userns_problems.is_empty();
    problems.extend(userns_problems);

    // ---- subordinate ids and helpers
    let subuid_text = fs::read_to_string("/etc/subuid").unwrap_or_default();
    let subgid_text = fs::read_to_string("/etc/subgid").unwrap_or_default();
    let subuid = userns::parse_subid(&subuid_text, Some(&user), uid);
    let subgid = userns::parse_subid(&subgid_text, Some(&user), uid);
    let range_text = |r: Option<userns::SubRange>| match r {
        Some(r) => json!({"start": r.start, "count": r.count}),
        None => Value::Null,
    };
    let mut helpers = Map::new();
    for name in ["newuidmap", "newgidmap"] {
        let path = userns::find_helper(name);
        let how = path.as_deref().map(helper_privilege);
        if !root_user {
            match (&path, &how) {
                (None, _) => {}
                (Some(p), Some(Privilege::None)) => problems.push(format!(
                    "{} is neither setuid root nor has file capabilities, so it cannot map your \
                     subordinate ids: run `chmod u+s {0}` (or `setcap cap_setuid,cap_setgid+ep {0}`) as root",
                    p.display()
                )),
                _ => {}
            }
        }
        helpers.insert(
            name.into(),
            json!({
                "path": path.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
                "privilege": how.map(|h| h.as_str()).unwrap_or("missing"),
            }),
        );
    }
    let have_helpers = helpers.values().all(|h| h["privilege"] != "missing");
    let (mode, missing) = userns::detect();
    let mode_text = match &mode {
        userns::Mode::Root => "root".to_string(),
        userns::Mode::SubIds { uid, .. } => format!("subuid range {}", uid.count),
        userns::Mode::Single => {
            if subuid.is_none() || subgid.is_none() {
                "single id (no /etc/subuid entry)".to_string()
            } else {
                "single id (newuidmap/newgidmap missing)".to_string()
            }
        }
    };
    if !root_user {
        problems.extend(subid_problems(
            &user,
            subuid.is_some(),
            subgid.is_some(),
            have_helpers,
            userns::suggest_range(&[&subuid_text, &subgid_text]),
        ));
    }

    // ---- storage, overlay, fuse, tun, cgroups
    let root = g.storage_root()?;
    let runroot = g.runtime_dir()?;
    // the same probe as `run`'s, always for real here; its answer refreshes run's memo
    let overlay = super::common::read_store(g)
        .map_err(|e| format!("{e:#}"))
        .and_then(|store| runtime::probe::probe_and_record(&store, &mode));
    if let Err(e) = &overlay {
        problems.push(format!(
            "overlayfs cannot be mounted in a user namespace on `{}` ({e}): containers use the \
             slower FUSE overlay (or the copy driver without /dev/fuse); use a kernel >= 5.11 and keep the store on a local filesystem \
             such as ext4 or xfs (not NFS), e.g. with --root",
            root.display()
        ));
    }
    let fuse = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/fuse");
    if let Err(e) = &fuse {
        problems.push(format!(
            "/dev/fuse is not usable ({e}): fuse-overlayfs cannot be used; load the module \
             (`modprobe fuse`) and make /dev/fuse mode 0666"
        ));
    }
    // the driver `run` would choose, and why (the same rule as runtime::create's)
    let (driver, driver_reason) = match g.storage_driver().map(|d| d.parse::<Driver>()) {
        Some(Ok(d)) => (d, "set by --storage-driver or storage.conf".to_string()),
        _ => match (&overlay, &fuse) {
            // a single-id map: the unpacker folds other owners, which only the FUSE overlay
            // shows (runtime::create's driver_for_folded_owners)
            (Ok(()), Ok(_)) if mode == userns::Mode::Single => (
                Driver::Overlay,
                "kernel overlayfs mounts in the user namespace; a container of an image with \
                 files of other owners uses fuse-overlay (a single-id map: no /etc/subuid range)"
                    .to_string(),
            ),
            (Ok(()), _) => (
                Driver::Overlay,
                "kernel overlayfs mounts in the user namespace".to_string(),
            ),
            (Err(e), Ok(_)) => (
                Driver::FuseOverlay,
                format!("kernel overlayfs cannot be mounted ({e}); /dev/fuse opens"),
            ),
            (Err(e), Err(f)) => (
                Driver::Copy,
                format!(
                    "kernel overlayfs cannot be mounted ({e}) and /dev/fuse does not open ({f})"
                ),
            ),
        },
    };
    let tun = tun_mode(Path::new("/dev/net/tun"));
    if tun.is_none() {
        problems.push(
            "/dev/net/tun is missing: slirp4netns and pasta need it for container networking; \
             load the module (`modprobe tun`)"
                .into(),
        );
    }
    let cg = cgroup_info(root_user);
    if let Some(p) = &cg.problem {
        problems.push(p.clone());
    }

    // ---- counts
    let images = super::common::read_store(g)
        .and_then(|s| Ok(s.images()?.len()))
        .unwrap_or(0);
    let all = crate::state::list(g).unwrap_or_default();
    let containers = all.len();
    let running = all
        .iter()
        .filter(|c| c.state.status == crate::state::Status::Running)
        .count();
    let paused = all.iter().filter(|c| crate::state::is_paused(g, c)).count();
    let upper = crate::runtime::upper_placement(&root);
    let additional: Vec<Value> = g
        .additional_image_stores()
        .iter()
        .map(|d| {
            let usable = rbox_storage::Store::open_read_only(d);
            json!({
                "path": d.display().to_string(),
                "readOnly": true,
                "usable": usable.is_ok(),
                "problem": usable.err().map(|e| e.to_string()).unwrap_or_default(),
            })
        })
        .collect();

    Ok(json!({
        "host": {
            "kernel": kernel,
            // Podman's: Go's names, the distribution apart
            "os": "linux",
            "arch": super::system::go_arch(),
            "distribution": distribution(&os_release),
            "cpus": std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
            "memTotal": runtime::procs::mem_total(),
            "memFree": meminfo("MemAvailable"),
            "swapTotal": meminfo("SwapTotal"),
            "swapFree": meminfo("SwapFree"),
            "uptime": uptime(read("/proc/uptime").as_deref().unwrap_or("")),
            "logDriver": "k8s-file",
            "user": user,
            "uid": uid,
            "userNamespaces": {
                "allowed": userns_allowed,
                "maxUserNamespaces": userns_check.max_user_namespaces,
                "unprivilegedUsernsClone": userns_check.unprivileged_userns_clone,
                "apparmorRestrictUnprivilegedUserns": userns_check.apparmor_restrict,
            },
            "idMappings": {
                // Podman's: the user's own namespace
                "uidmap": podman_idmap(&mode, uid, |m| match m { userns::Mode::SubIds { uid, .. } => Some(*uid), _ => None }),
                "gidmap": podman_idmap(&mode, nix::unistd::getegid().as_raw(), |m| match m { userns::Mode::SubIds { gid, .. } => Some(*gid), _ => None }),
                "mode": mode_text,
                "detail": mode.describe(),
                "why": missing.map(|m| m.hint(&user)).unwrap_or_default(),
                "subuid": range_text(subuid),
                "subgid": range_text(subgid),
                "helpers": helpers,
            },
            "overlayInUserns": overlay.is_ok(),
            "fuse": {"usable": fuse.is_ok(), "fuseOverlayfs": userns::find_helper("fuse-overlayfs").map(|p| p.display().to_string()).unwrap_or_default()},
            "tun": tun.unwrap_or_else(|| "missing".into()),
            "cgroups": {"version": cg.version, "controllers": cg.controllers, "limitsEnforceable": cg.enforceable},
            "network": network_info(),
            // Podman's key for the same tool
            "slirp4netns": network_info()["slirp4netns"].clone(),
            // Podman's keys ({{.Host.OCIRuntime.Path}}, {{.Host.Security.Rootless}}, ...):
            // rbox is its own OCI runtime and has no remote socket
            "ociRuntime": {
                "name": "rbox",
                "path": std::env::current_exe().map(|p| p.display().to_string()).unwrap_or_default(),
                "version": format!("rbox version {}", env!("CARGO_PKG_VERSION")),
            },
            "security": {"rootless": !root_user, "seccompEnabled": true, "apparmorEnabled": false, "selinuxEnabled": false},
            "remoteSocket": {"exists": false, "path": ""},
            "serviceIsRemote": false,
            "cgroupManager": "cgroupfs",
            "cgroupVersion": cg.version,
            "eventLogger": "file",
            "hostname": uts.as_ref().map(|u| u.nodename().to_string_lossy().into_owned()).unwrap_or_default(),
        },
        "store": {
            "graphRoot": root.display().to_string(),
            "runRoot": runroot.display().to_string(),
            "driver": driver.as_str(),
            "driverReason": driver_reason,
            "images": images,
            "containers": containers,
            // read-only stores searched after graphRoot, each with whether it can be read here
            "additionalImageStores": additional,
            // where containers' upper and work directories go (the store unless said here)
            "upperDir": upper.as_ref().map(|p| p.dir.display().to_string()).unwrap_or_default(),
            "upperDirReason": upper.map(|p| p.reason).unwrap_or_default(),
            // Podman's keys for the same things
            "graphDriverName": driver.as_str(),
            "imageStore": {"number": images},
            "containerStore": {"number": containers, "running": running, "paused": paused, "stopped": containers - running},
            "configFile": crate::config::storage_conf_file().display().to_string(),
            "volumePath": rbox_storage::volume::volumes_dir_in(&root).display().to_string(),
            "imageCopyTmpDir": std::env::var("TMPDIR").unwrap_or_else(|_| "/var/tmp".into()),
        },
        "registries": {},
        "version": super::system::client_version(),
        "problems": problems,
    }))
}

/// The network bridges rbox can start, with their versions, and the mode a container gets
/// without `--network`.
fn network_info() -> Value {
    let installed = rbox_netns::installed();
    let tool = |t: Option<&rbox_netns::Tool>| match t {
        Some(t) => json!({"executable": t.path.display().to_string(), "version": t.version}),
        None => json!({"executable": "", "version": ""}),
    };
    json!({
        "default": rbox_netns::Backend::default_for(&installed).name(),
        "pasta": tool(installed.pasta.as_ref()),
        "slirp4netns": tool(installed.slirp4netns.as_ref()),
    })
}

/// Podman's `distribution`: os-release's ID, VERSION_ID and VERSION_CODENAME.
fn distribution(os_release: &str) -> Value {
    let get = |key: &str| {
        os_release
            .lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .map(|v| v.trim_matches('"').to_string())
            .unwrap_or_default()
    };
    json!({
        "distribution": get("ID"),
        "version": get("VERSION_ID"),
        "codename": get("VERSION_CODENAME"),
    })
}

/// One /proc/meminfo value in bytes.
fn meminfo(key: &str) -> u64 {
    read("/proc/meminfo")
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        })
        .map_or(0, |kib| kib * 1024)
}

/// /proc/uptime's first number as Podman prints it: `0h 11m 50.00s`.
fn uptime(proc_uptime: &str) -> String {
    let secs = proc_uptime
        .split_whitespace()
        .next()
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or(0.0) as u64;
    format!("{}h {}m {}.00s", secs / 3600, secs % 3600 / 60, secs % 60)
}

/// Podman's `idMappings.uidmap`/`gidmap` of a user: the user's own id as 0, the subordinate
/// range from 1; none for root, who has no user namespace (Podman's JSON has null there, its
/// templates print `[]`, as this does).
fn podman_idmap(
    mode: &userns::Mode,
    own: u32,
    range: impl Fn(&userns::Mode) -> Option<userns::SubRange>,
) -> Value {
    if *mode == userns::Mode::Root {
        return json!([]);
    }
    let mut map = vec![json!({"container_id": 0, "host_id": own, "size": 1})];
    if let Some(r) = range(mode) {
        map.push(json!({"container_id": 1, "host_id": r.start, "size": r.count}));
    }
    Value::Array(map)
}

/// The sysctls that decide whether an unprivileged user may create a user namespace.
#[derive(Debug, Default)]
struct UsernsSysctls {
    max_user_namespaces: Option<u64>,
    /// Debian/Ubuntu's kernel.unprivileged_userns_clone
    unprivileged_userns_clone: Option<u64>,
    /// Ubuntu 23.10+'s AppArmor restriction
    apparmor_restrict: Option<u64>,
}

impl UsernsSysctls {
    fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.max_user_namespaces == Some(0) {
            out.push(
                "user namespaces are disabled (user.max_user_namespaces = 0): run \
                 `sysctl -w user.max_user_namespaces=15000` as root (persist it in /etc/sysctl.d/)"
                    .into(),
            );
        }
        if self.unprivileged_userns_clone == Some(0) {
            out.push(
                "unprivileged user namespaces are disabled (kernel.unprivileged_userns_clone = 0): \
                 run `sysctl -w kernel.unprivileged_userns_clone=1` as root"
                    .into(),
            );
        }
        if self.apparmor_restrict == Some(1) {
            out.push(
                "AppArmor restricts unprivileged user namespaces \
                 (kernel.apparmor_restrict_unprivileged_userns = 1): run \
                 `sysctl -w kernel.apparmor_restrict_unprivileged_userns=0` as root, or give rbox \
                 an AppArmor profile with `userns,`"
                    .into(),
            );
        }
        out
    }
}

fn subid_problems(
    user: &str,
    has_uid: bool,
    has_gid: bool,
    helpers: bool,
    free: Option<userns::SubRange>,
) -> Vec<String> {
    let mut out = Vec::new();
    let fix = userns::range_fix(user, free);
    match (has_uid, has_gid) {
        (false, false) => out.push(format!(
            "no /etc/subuid or /etc/subgid entry for {user}: containers have only one uid and gid \
             (an image's other owners show through the FUSE overlay; chown, setuid and apt-get \
             need `--security-opt fakeroot`, which rbox build's RUN steps get); {fix}"
        )),
        (false, true) => out.push(format!("no /etc/subuid entry for {user}: {fix}")),
        (true, false) => out.push(format!("no /etc/subgid entry for {user}: {fix}")),
        (true, true) => {}
    }
    if !helpers {
        out.push(
            "newuidmap/newgidmap are missing, so subordinate ids cannot be mapped: install them \
             (apt-get install uidmap, dnf install shadow-utils)"
                .into(),
        );
    }
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Privilege {
    SetuidRoot,
    FileCaps,
    None,
}

impl Privilege {
    fn as_str(self) -> &'static str {
        match self {
            Privilege::SetuidRoot => "setuid root",
            Privilege::FileCaps => "file capabilities",
            Privilege::None => "none",
        }
    }
}

fn helper_privilege(p: &Path) -> Privilege {
    match fs::metadata(p) {
        Ok(m) if m.uid() == 0 && m.permissions().mode() & 0o4000 != 0 => Privilege::SetuidRoot,
        Ok(_) if rbox_storage::lgetxattr(p, "security.capability").is_some() => Privilege::FileCaps,
        _ => Privilege::None,
    }
}

fn tun_mode(p: &Path) -> Option<String> {
    let m = fs::metadata(p).ok()?;
    if !m.file_type().is_char_device() {
        return Some("not a character device".into());
    }
    Some(mode_string(m.permissions().mode()))
}

/// `crw-rw-rw-` for a character device of mode 0666.
fn mode_string(mode: u32) -> String {
    let mut s = String::from("c");
    for shift in [6, 3, 0] {
        let bits = (mode >> shift) & 7;
        s.push(if bits & 4 != 0 { 'r' } else { '-' });
        s.push(if bits & 2 != 0 { 'w' } else { '-' });
        s.push(if bits & 1 != 0 { 'x' } else { '-' });
    }
    s
}

struct Cgroups {
    version: String,
    controllers: Vec<String>,
    enforceable: bool,
    problem: Option<String>,
}

/// The cgroup version, and whether limits could be enforced: on v2 the cgroup we are in must
/// be writable by us (delegated) with the memory, cpu and pids controllers available.
fn cgroup_info(root_user: bool) -> Cgroups {
    let v2 = Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    if !v2 {
        return Cgroups {
            version: "v1".into(),
            controllers: Vec::new(),
            enforceable: root_user,
            problem: (!root_user).then(|| {
                "cgroup v1: resource limits cannot be delegated to unprivileged users; boot with \
                 `systemd.unified_cgroup_hierarchy=1` to use cgroup v2"
                    .into()
            }),
        };
    }
    let own = read("/proc/self/cgroup")
        .and_then(|s| own_cgroup(&s))
        .unwrap_or_else(|| "/".into());
    let dir = PathBuf::from("/sys/fs/cgroup").join(own.trim_start_matches('/'));
    let controllers: Vec<String> = read(&dir.join("cgroup.controllers").to_string_lossy())
        .map(|s| s.split_whitespace().map(String::from).collect())
        .unwrap_or_default();
    let writable = nix::unistd::access(&dir, nix::unistd::AccessFlags::W_OK).is_ok();
    let needed = ["memory", "cpu", "pids"];
    let missing: Vec<&str> = needed
        .iter()
        .copied()
        .filter(|c| !controllers.iter().any(|h| h == c))
        .collect();
    let enforceable = writable && missing.is_empty();
    let problem = if enforceable {
        None
    } else if !writable {
        Some(format!(
            "your cgroup `{}` is not delegated to you, so resource limits cannot be enforced: log in \
             through systemd (a user session) or run rbox under `systemd-run --user --scope -p Delegate=yes`",
            dir.display()
        ))
    } else {
        Some(format!(
            "cgroup controllers {} are not delegated to your cgroup: add them with \
             `Delegate=memory pids cpu cpuset io` in /etc/systemd/system/user@.service.d/delegate.conf",
            missing.join(", ")
        ))
    };
    Cgroups {
        version: "v2".into(),
        controllers,
        enforceable,
        problem,
    }
}

/// The v2 path from /proc/self/cgroup (`0::/user.slice/...`).
fn own_cgroup(text: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(String::from)
}

/// A small YAML rendering of the info object, as `podman info` prints YAML.
fn yaml(v: &Value, indent: usize) -> String {
    let pad = " ".repeat(indent);
    let mut out = String::new();
    match v {
        Value::Object(m) => {
            for (k, val) in m {
                match val {
                    Value::Object(o) if !o.is_empty() => {
                        out.push_str(&format!("{pad}{k}:\n{}", yaml(val, indent + 2)));
                    }
                    Value::Array(a) if !a.is_empty() => {
                        out.push_str(&format!("{pad}{k}:\n"));
                        for item in a {
                            out.push_str(&format!("{pad}- {}\n", scalar(item)));
                        }
                    }
                    _ => out.push_str(&format!("{pad}{k}: {}\n", scalar(val))),
                }
            }
        }
        other => out.push_str(&format!("{pad}{}\n", scalar(other))),
    }
    out
}

fn scalar(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::String(s) if s.is_empty() => "\"\"".into(),
        Value::String(s) => s.clone(),
        Value::Array(a) if a.is_empty() => "[]".into(),
        Value::Object(o) if o.is_empty() => "{}".into(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userns_sysctls() {
        let ok = UsernsSysctls {
            max_user_namespaces: Some(15000),
            unprivileged_userns_clone: Some(1),
            apparmor_restrict: Some(0),
        };
        assert!(ok.problems().is_empty());
        let bad = UsernsSysctls {
            max_user_namespaces: Some(0),
            unprivileged_userns_clone: Some(0),
            apparmor_restrict: Some(1),
        };
        let p = bad.problems();
        assert_eq!(p.len(), 3);
        assert!(p[0].contains("sysctl -w user.max_user_namespaces="));
        assert!(p[2].contains("apparmor_restrict_unprivileged_userns=0"));
        assert!(UsernsSysctls::default().problems().is_empty());
    }

    #[test]
    fn subid_hints_name_the_fix() {
        let free = userns::suggest_range(&["bob:100000:65536\n", ""]);
        let p = subid_problems("alice", false, false, true, free);
        assert_eq!(p.len(), 1);
        assert!(
            p[0].contains("add `alice:165536:65536` to /etc/subuid and /etc/subgid"),
            "{}",
            p[0]
        );
        assert!(
            p[0].contains("usermod --add-subuids 165536-231071"),
            "{}",
            p[0]
        );
        assert!(subid_problems("bob", true, true, true, free).is_empty());
        assert!(
            subid_problems("bob", true, true, false, free)[0].contains("apt-get install uidmap")
        );
        assert!(subid_problems("bob", true, false, true, free)[0]
            .starts_with("no /etc/subgid entry for bob"));
    }

    #[test]
    fn small_parsers() {
        assert_eq!(
            distribution("ID=debian\nVERSION_ID=\"12\"\nVERSION_CODENAME=bookworm\n"),
            json!({"distribution": "debian", "version": "12", "codename": "bookworm"})
        );
        // the ID line, not VERSION_ID's tail
        assert_eq!(distribution("VERSION_ID=1\n")["distribution"], "");
        assert_eq!(uptime("1490.73 2800.11\n"), "0h 24m 50.00s");
        assert_eq!(
            own_cgroup("0::/user.slice/user-1000.slice\n").as_deref(),
            Some("/user.slice/user-1000.slice")
        );
        assert_eq!(own_cgroup("12:pids:/x\n"), None);
        assert_eq!(mode_string(0o666), "crw-rw-rw-");
        assert_eq!(mode_string(0o600), "crw-------");
    }

    #[test]
    fn yaml_rendering() {
        let v = json!({"host": {"kernel": "6.1", "empty": "", "list": ["a", "b"]}, "problems": []});
        assert_eq!(
            yaml(&v, 0),
            "host:\n  empty: \"\"\n  kernel: 6.1\n  list:\n  - a\n  - b\nproblems: []\n"
        );
    }
}
