//! rbox's user namespace: which ids a user may map (/etc/subuid, /etc/subgid), and entering a
//! new user namespace with that mapping for the rest of this invocation.
//!
//! Every command that writes the store or runs a container enters the namespace once, at its
//! start, before any thread exists: inside it the process is root over the mapped range, so it
//! can chown layer files to mapped ids, mount overlayfs and create the container's other
//! namespaces. Each invocation maps the same range, so files agree across invocations. Root
//! (euid 0) needs no namespace and skips all of this. Read-only commands never come here.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use nix::sched::CloneFlags;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{ForkResult, Uid};

use super::pause;
use rbox_storage::IdMap;

/// A subordinate id range from /etc/subuid or /etc/subgid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubRange {
    pub start: u32,
    pub count: u32,
}

/// How this user's ids are mapped into containers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Real root: no user namespace at all.
    Root,
    /// Container root is the user; 1..=count come from the subordinate ranges.
    SubIds { uid: SubRange, gid: SubRange },
    /// Container root is the user and no other id exists (no /etc/subuid entry, or no
    /// newuidmap): files of other owners are folded to root when layers are unpacked.
    Single,
}

impl Mode {
    pub fn idmap(&self) -> IdMap {
        match self {
            Mode::Root => IdMap::full(),
            // container ids 0..=count: 0 is the user, 1..=count the range
            Mode::SubIds { uid, gid } => IdMap {
                uid_count: uid.count.saturating_add(1),
                gid_count: gid.count.saturating_add(1),
            },
            Mode::Single => IdMap {
                uid_count: 1,
                gid_count: 1,
            },
        }
    }

    /// One line for `rbox info` and error messages.
    pub fn describe(&self) -> String {
        match self {
            Mode::Root => "root (no user namespace)".into(),
            Mode::SubIds { uid, gid } => format!(
                "subordinate ids: uids {}-{} and gids {}-{} mapped to 1-{} in containers",
                uid.start,
                uid.start as u64 + uid.count as u64 - 1,
                gid.start,
                gid.start as u64 + gid.count as u64 - 1,
                uid.count.min(gid.count)
            ),
            Mode::Single => "single id: container root is your own uid; no other id exists".into(),
        }
    }
}

/// What a user lacks for subordinate ids, so that it gets the single-id mode; `rbox info`
/// prints it with the host change that fixes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Missing {
    SubuidRange,
    SubgidRange,
    Newuidmap,
}

impl Missing {
    /// The host change that fixes it, for `user`.
    pub fn hint(&self, user: &str) -> String {
        match self {
            Missing::SubuidRange | Missing::SubgidRange => format!(
                "no /etc/subuid or /etc/subgid range for {user}: only your own uid exists in containers; \
                 an admin can {}",
                range_fix(user, suggest_range_on_host())
            ),
            Missing::Newuidmap => "newuidmap/newgidmap are missing: install them (apt-get install uidmap)".into(),
        }
    }
}

/// Find the range for `name`/`uid` in a subuid/subgid file's text. Lines may name the user or
/// the numeric uid; the first matching line with a non-zero count wins.
pub fn parse_subid(text: &str, name: Option<&str>, uid: u32) -> Option<SubRange> {
    let uid_s = uid.to_string();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut parts = line.split(':');
        let (Some(who), Some(start), Some(count)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if who != uid_s && Some(who) != name {
            continue;
        }
        let (Ok(start), Ok(count)) = (start.trim().parse::<u32>(), count.trim().parse::<u32>())
        else {
            continue;
        };
        if count > 0 {
            return Some(SubRange { start, count });
        }
    }
    None
}

/// How many ids a suggested range holds: 65536, as useradd allocates and as images expect
/// (nobody is 65534).
pub const SUGGESTED_COUNT: u32 = 65536;

/// Where useradd starts allocating (SUB_UID_MIN in login.defs).
const SUGGESTED_MIN: u64 = 100_000;

/// The first range of [`SUGGESTED_COUNT`] ids that starts after every range in the given
/// subuid and subgid texts, so that following the suggestion never gives two accounts the same
/// host ids. `None` when no such range fits below 2^32.
pub fn suggest_range(texts: &[&str]) -> Option<SubRange> {
    let mut end = SUGGESTED_MIN;
    for line in texts.iter().flat_map(|t| t.lines()) {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut parts = line.split(':').skip(1);
        let (Some(Ok(start)), Some(Ok(count))) = (
            parts.next().map(|s| s.trim().parse::<u64>()),
            parts.next().map(|s| s.trim().parse::<u64>()),
        ) else {
            continue;
        };
        end = end.max(start + count);
    }
    // a range must stay below 2^32 - 1, the "no id" value
    let start = u32::try_from(end).ok()?;
    start.checked_add(SUGGESTED_COUNT)?;
    Some(SubRange {
        start,
        count: SUGGESTED_COUNT,
    })
}

/// Whether /etc/subuid and /etc/subgid both give `name` a range (by name only).
pub fn has_subid_range(name: &str) -> bool {
    let read = |p: &str| fs::read_to_string(p).unwrap_or_default();
    ["/etc/subuid", "/etc/subgid"]
        .iter()
        .all(|f| parse_subid(&read(f), Some(name), u32::MAX).is_some())
}

/// [`suggest_range`] for this host's /etc/subuid and /etc/subgid.
pub fn suggest_range_on_host() -> Option<SubRange> {
    let read = |p: &str| fs::read_to_string(p).unwrap_or_default();
    suggest_range(&[&read("/etc/subuid"), &read("/etc/subgid")])
}

/// The command an admin runs to give `user` the range `r`.
pub fn usermod_command(user: &str, r: SubRange) -> String {
    let last = r.start as u64 + r.count as u64 - 1;
    format!(
        "usermod --add-subuids {s}-{last} --add-subgids {s}-{last} {user}",
        s = r.start
    )
}

/// How an admin gives `user` a range: the command for the first free one, or what to do when
/// none is left.
pub fn range_fix(user: &str, free: Option<SubRange>) -> String {
    match free {
        Some(r) => format!(
            "add `{user}:{}:{}` to /etc/subuid and /etc/subgid (`{}`)",
            r.start,
            r.count,
            usermod_command(user, r)
        ),
        None => format!(
            "add a free range of {SUGGESTED_COUNT} ids for {user} to /etc/subuid and /etc/subgid \
             (none is left below 2^32 after the existing ranges)"
        ),
    }
}

/// The current user's login name, from /etc/passwd (or $USER when the entry is missing).
pub fn user_name(uid: u32) -> Option<String> {
    nix::unistd::User::from_uid(Uid::from_raw(uid))
        .ok()
        .flatten()
        .map(|u| u.name)
        .or_else(|| std::env::var("USER").ok())
}

/// Find a helper program (newuidmap, newgidmap) on PATH or in the usual places.
pub fn find_helper(name: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/bin", "/bin", "/usr/sbin", "/sbin"])
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file());
    found
}

/// One line of /proc/PID/uid_map or gid_map: inside, outside, count.
pub(super) fn parse_map(text: &str) -> Vec<(u32, u32, u32)> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace().map(|n| n.parse::<u32>().ok());
            Some((it.next()??, it.next()??, it.next()??))
        })
        .collect()
}

/// The mode of the namespace this process is in now, read from its own id maps: after
/// [`enter`], or in a child rbox started by `rbox unshare`.
pub fn current_mode() -> Mode {
    let (u, g) = rbox_storage::own_id_maps();
    let (u, g) = (parse_map(&u), parse_map(&g));
    if u.first().is_some_and(|l| *l == (0, 0, u32::MAX)) {
        return if nix::unistd::geteuid().is_root() {
            Mode::Root
        } else {
            detect().0
        };
    }
    mode_of_maps(&u, &g)
}

/// The mode a namespace with these id maps (as parsed by [`parse_map`]) was made in, where it
/// is not the initial one: subordinate ranges where both maps have the line of container id 1.
pub(super) fn mode_of_maps(u: &[(u32, u32, u32)], g: &[(u32, u32, u32)]) -> Mode {
    let range = |m: &[(u32, u32, u32)]| {
        m.iter().find(|l| l.0 == 1).map(|l| SubRange {
            start: l.1,
            count: l.2,
        })
    };
    match (range(u), range(g)) {
        (Some(uid), Some(gid)) => Mode::SubIds { uid, gid },
        _ => Mode::Single,
    }
}

/// What the mapping [`detect`] decides rests on, in one word for the pause process's record:
/// the identity of /etc/subuid and /etc/subgid (inode, size, change time; `-` for a missing
/// file). While it is unchanged, a pause process made with it maps what [`detect`] would
/// decide now, and joining it needs neither the user database nor those files read.
pub(super) fn subid_stamp() -> String {
    use std::os::unix::fs::MetadataExt;
    ["/etc/subuid", "/etc/subgid"]
        .map(|p| match fs::metadata(p) {
            Ok(m) => format!("{}.{}.{}.{}", m.ino(), m.size(), m.ctime(), m.ctime_nsec()),
            Err(_) => "-".into(),
        })
        .join(",")
}

/// The caller's uid outside every rbox namespace (what keys its runtime directory).
pub fn host_uid() -> u32 {
    host_ids().0
}

/// The caller's uid and gid outside every rbox namespace: what container root maps to, read
/// from our own id maps (our own ids when no namespace was entered). The same before and
/// after entering rbox's namespace, so read once per process (a start asks several times).
pub fn host_ids() -> (u32, u32) {
    static IDS: std::sync::OnceLock<(u32, u32)> = std::sync::OnceLock::new();
    *IDS.get_or_init(read_host_ids)
}

fn read_host_ids() -> (u32, u32) {
    let outside = |map: &str| {
        parse_map(map)
            .iter()
            .find(|l| l.0 == 0 && l.2 != u32::MAX)
            .map(|l| l.1)
    };
    let (u, g) = rbox_storage::own_id_maps();
    (
        outside(&u).unwrap_or_else(|| nix::unistd::geteuid().as_raw()),
        outside(&g).unwrap_or_else(|| nix::unistd::getegid().as_raw()),
    )
}

/// Decide the mapping mode for the calling user without changing anything. Call it outside
/// rbox's namespace; inside, use [`current_mode`].
pub fn detect() -> (Mode, Option<Missing>) {
    let uid = nix::unistd::geteuid().as_raw();
    if uid == 0 {
        return (Mode::Root, None);
    }
    let name = user_name(uid);
    let read = |p: &str| fs::read_to_string(p).unwrap_or_default();
    let Some(sub_u) = parse_subid(&read("/etc/subuid"), name.as_deref(), uid) else {
        return (Mode::Single, Some(Missing::SubuidRange));
    };
    let Some(sub_g) = parse_subid(&read("/etc/subgid"), name.as_deref(), uid) else {
        return (Mode::Single, Some(Missing::SubgidRange));
    };
    if find_helper("newuidmap").is_none() || find_helper("newgidmap").is_none() {
        return (Mode::Single, Some(Missing::Newuidmap));
    }
    (
        Mode::SubIds {
            uid: sub_u,
            gid: sub_g,
        },
        None,
    )
}

/// The argv of newuidmap/newgidmap for `pid`: container 0 is the user, 1..=count the range.
pub fn helper_args(pid: u32, own: u32, range: SubRange) -> Vec<String> {
    vec![
        pid.to_string(),
        "0".into(),
        own.to_string(),
        "1".into(),
        "1".into(),
        range.start.to_string(),
        range.count.to_string(),
    ]
}

/// Enter rbox's user namespace (unless root) and return the id map in force.
/// Must be called while the process is single-threaded.
pub fn enter(g: &crate::context::Context) -> Result<IdMap> {
    if already_inside() {
        tracing::debug!("already inside rbox's user namespace");
        return Ok(current_mode().idmap());
    }
    let stamp = (!nix::unistd::geteuid().is_root()).then(subid_stamp);
    if let Some(stamp) = &stamp {
        // the common case first: the pause process made from the same /etc/subuid and
        // /etc/subgid is there (no user lookup, no files parsed)
        let pidfile = crate::layout::pause_pid(&g.runtime_dir()?);
        if let Some(mode) = pause::join_unchanged(&pidfile, stamp) {
            tracing::debug!("joined the pause process named in `{}`", pidfile.display());
            std::env::set_var("_RBOX_IN_USERNS", "1");
            return Ok(mode.idmap());
        }
    }
    let (mode, _) = detect();
    tracing::debug!("user namespace: {}", mode.describe());
    let uid = nix::unistd::getuid().as_raw();
    let gid = nix::unistd::getgid().as_raw();
    let maps = match &mode {
        Mode::Root => None,
        Mode::SubIds { uid: su, gid: sg } => Some((expected_map(uid, *su), expected_map(gid, *sg))),
        Mode::Single => Some((vec![(0, uid, 1)], vec![(0, gid, 1)])),
    };
    if let Some((uid_map, gid_map)) = maps {
        // One namespace for all of a user's invocations, kept by a pause process as Podman
        // does: it saves the setuid helpers a fork and two execs each time, and it owns every
        // container's namespaces, so one invocation may enter another's container.
        let pidfile = crate::layout::pause_pid(&g.runtime_dir()?);
        let joined = || {
            let ok = pause::join(&pidfile, &uid_map, &gid_map);
            if ok {
                tracing::debug!("joined the pause process named in `{}`", pidfile.display());
                // /etc/subuid or /etc/subgid changed but not this user's ranges: the next
                // invocation joins without reading them
                if let Some(stamp) = &stamp {
                    pause::restamp(&pidfile, stamp);
                }
                std::env::set_var("_RBOX_IN_USERNS", "1");
            }
            ok
        };
        if joined() {
            return Ok(mode.idmap());
        }
        // Invocations that start at once must all end up in one namespace: containers made
        // in a namespace whose pause process lost the race could not be entered by later
        // invocations (a sibling namespace gives no capability over them). The first to take
        // the lock makes the namespace and its pause process; the others then join it.
        let _lock = pause::lock(&pidfile);
        if joined() {
            return Ok(mode.idmap());
        }
        tracing::debug!("no pause process to join: entering a new user namespace");
        enter_mode(&mode)?;
        pause::start(&pidfile, stamp.as_deref().unwrap_or("-"));
        return Ok(mode.idmap());
    }
    enter_mode(&mode)?;
    Ok(mode.idmap())
}

/// The uid_map/gid_map text the kernel shows for a namespace made with these ranges, as read
/// from the initial namespace.
pub(super) fn expected_map(own: u32, r: SubRange) -> Vec<(u32, u32, u32)> {
    vec![(0, own, 1), (1, r.start, r.count)]
}

/// Whether this process runs inside rbox's user namespace already (`rbox unshare`'s command
/// and what it starts).
pub fn inside_rbox() -> bool {
    already_inside()
}

/// Whether this process already runs inside a user namespace made by rbox (re-entry is a no-op).
fn already_inside() -> bool {
    std::env::var_os("_RBOX_IN_USERNS").is_some()
        && parse_map(&rbox_storage::own_id_maps().0)
            .first()
            .is_some_and(|l| *l != (0, 0, u32::MAX))
}

pub fn enter_mode(mode: &Mode) -> Result<()> {
    if *mode == Mode::Root || already_inside() {
        return Ok(());
    }
    let uid = nix::unistd::getuid().as_raw();
    let gid = nix::unistd::getgid().as_raw();
    match mode {
        Mode::Root => {}
        Mode::Single => {
            unshare_user()?;
            write_own_maps(uid, gid)?;
        }
        Mode::SubIds { uid: su, gid: sg } => enter_with_helpers(uid, gid, *su, *sg)?,
    }
    // Children (rbox unshare, nested invocations) know they are inside already.
    std::env::set_var("_RBOX_IN_USERNS", "1");
    Ok(())
}

fn unshare_user() -> Result<()> {
    let r = nix::sched::unshare(CloneFlags::CLONE_NEWUSER);
    rbox_storage::id_maps_changed();
    r.map_err(|e| {
        let hint = match e {
            nix::errno::Errno::EPERM | nix::errno::Errno::ENOSPC => {
                ": unprivileged user namespaces are disabled on this host; enable them with \
                 `sysctl -w user.max_user_namespaces=15000` (and \
                 `kernel.apparmor_restrict_unprivileged_userns=0` where AppArmor restricts them)"
            }
            nix::errno::Errno::EINVAL => ": the process is multithreaded (a bug in rbox)",
            _ => "",
        };
        anyhow::anyhow!("create user namespace: {e}{hint}")
    })
}

/// Without subordinate ids, a process may map only its own ids, and must deny setgroups first.
fn write_own_maps(uid: u32, gid: u32) -> Result<()> {
    fs::write("/proc/self/uid_map", format!("0 {uid} 1\n")).context("write uid map")?;
    fs::write("/proc/self/setgroups", "deny\n").context("deny setgroups")?;
    fs::write("/proc/self/gid_map", format!("0 {gid} 1\n")).context("write gid map")?;
    Ok(())
}

/// newuidmap/newgidmap are setuid programs that must run outside the new namespace, so a
/// child forked before the unshare runs them (both at once: each costs a few ms) against us.
fn enter_with_helpers(uid: u32, gid: u32, su: SubRange, sg: SubRange) -> Result<()> {
    let newuidmap = find_helper("newuidmap").context("find newuidmap")?;
    let newgidmap = find_helper("newgidmap").context("find newgidmap")?;
    let me = std::process::id();
    let (go_r, go_w) = nix::unistd::pipe().context("create pipe")?;
    let (err_r, err_w) = nix::unistd::pipe().context("create pipe")?;
    let child = match crate::runtime::sys::fork().context("fork id-map helper")? {
        ForkResult::Child => {
            drop(go_w);
            drop(err_r);
            let mut f = fs::File::from(go_r);
            let mut b = [0u8; 1];
            if f.read(&mut b).unwrap_or(0) != 1 {
                crate::runtime::sys::exit_now(1);
            }
            let run = |prog: &Path, range: SubRange, own: u32| {
                Command::new(prog)
                    .args(helper_args(me, own, range))
                    .stdin(std::process::Stdio::null())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
            };
            let mut errf = fs::File::from(err_w);
            let res = (|| -> std::io::Result<String> {
                let u = run(&newuidmap, su, uid)?;
                let g = run(&newgidmap, sg, gid)?;
                let mut msg = String::new();
                for (name, c) in [("newuidmap", u), ("newgidmap", g)] {
                    let out = c.wait_with_output()?;
                    if !out.status.success() {
                        let e = String::from_utf8_lossy(&out.stderr)
                            .trim()
                            .replace('\n', " ");
                        msg = format!("{name} {me}: {e}");
                    }
                }
                Ok(msg)
            })();
            let msg = match res {
                Ok(m) => m,
                Err(e) => format!("run newuidmap: {e}"),
            };
            let _ = errf.write_all(msg.as_bytes());
            crate::runtime::sys::exit_now(if msg.is_empty() { 0 } else { 1 });
        }
        ForkResult::Parent { child } => child,
    };
    drop(go_r);
    drop(err_w);
    let unshared = unshare_user();
    let mut go = fs::File::from(go_w);
    if unshared.is_ok() {
        let _ = go.write_all(b"1");
    }
    drop(go);
    let mut msg = String::new();
    let _ = fs::File::from(err_r).read_to_string(&mut msg);
    let status = waitpid(child, None).context("wait for id-map helper")?;
    unshared?;
    if !msg.is_empty() || !matches!(status, WaitStatus::Exited(_, 0)) {
        bail!(
            "map subordinate ids: {msg}; check the ranges in /etc/subuid and /etc/subgid and that \
             newuidmap and newgidmap are setuid root (apt-get install uidmap)"
        );
    }
    // Drop the host's supplementary groups: they are unmapped (nobody) in here.
    let _ = nix::unistd::setgroups(&[]);
    Ok(())
}

/// Write the uid_map and gid_map text `maps` of process `pid`'s user namespace with the setuid
/// helpers newuidmap and newgidmap (both at once), whose checks against /etc/subuid and
/// /etc/subgid allow more than the caller's own ids.
pub fn write_maps_with_helpers(pid: i32, (uid_map, gid_map): &(String, String)) -> Result<()> {
    let run = |name: &str, map: &str| -> Result<std::process::Child> {
        let prog = find_helper(name).with_context(|| format!("find {name}"))?;
        let mut c = Command::new(prog);
        c.arg(pid.to_string());
        c.args(map.split_whitespace());
        c.stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .with_context(|| format!("run {name}"))
    };
    let u = run("newuidmap", uid_map)?;
    let g = run("newgidmap", gid_map)?;
    for (name, c) in [("newuidmap", u), ("newgidmap", g)] {
        let out = c
            .wait_with_output()
            .with_context(|| format!("wait for {name}"))?;
        if !out.status.success() {
            anyhow::bail!(
                "{name} {pid}: {}",
                String::from_utf8_lossy(&out.stderr)
                    .trim()
                    .replace('\n', " ")
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subid_by_name_or_uid() {
        let t = "# c\nbob:100000:65536\n1001:300000:1000\nzero:5:0\n";
        assert_eq!(
            parse_subid(t, Some("bob"), 1000),
            Some(SubRange {
                start: 100000,
                count: 65536
            })
        );
        assert_eq!(
            parse_subid(t, Some("carol"), 1001),
            Some(SubRange {
                start: 300000,
                count: 1000
            })
        );
        assert_eq!(parse_subid(t, Some("zero"), 7), None);
        assert_eq!(parse_subid(t, Some("dave"), 1002), None);
    }

    #[test]
    fn maps() {
        assert_eq!(
            parse_map("         0       1000          1\n         1     200000      65536\n"),
            vec![(0, 1000, 1), (1, 200000, 65536)]
        );
        assert_eq!(parse_map("0 0 4294967295"), vec![(0, 0, u32::MAX)]);
    }

    #[test]
    fn helper_argv() {
        let a = helper_args(
            42,
            1000,
            SubRange {
                start: 100000,
                count: 65536,
            },
        );
        assert_eq!(a, ["42", "0", "1000", "1", "1", "100000", "65536"]);
    }

    #[test]
    fn idmap_counts() {
        let m = Mode::SubIds {
            uid: SubRange {
                start: 1,
                count: 65536,
            },
            gid: SubRange {
                start: 1,
                count: 1000,
            },
        };
        let i = m.idmap();
        assert_eq!((i.uid_count, i.gid_count), (65537, 1001));
        assert_eq!(Mode::Single.idmap().uid_count, 1);
    }

    #[test]
    fn suggested_range_starts_after_every_range_in_both_files() {
        // empty files: useradd's own first range
        let r = suggest_range(&["", ""]).unwrap();
        assert_eq!((r.start, r.count), (100_000, 65536));
        // Debian's useradd allocated 100000-165535 and 165536-231071; a hand-made range in
        // /etc/subgid only sits further up; comments and bad lines are ignored
        let uid = "alice:100000:65536\nbob:165536:65536\n# x:9999999:1\nbad:line\n";
        let gid = "alice:100000:65536\n1003:300000:1000\n";
        let r = suggest_range(&[uid, gid]).unwrap();
        assert_eq!((r.start, r.count), (301_000, 65536));
        assert_eq!(
            range_fix("carol", Some(r)),
            "add `carol:301000:65536` to /etc/subuid and /etc/subgid \
             (`usermod --add-subuids 301000-366535 --add-subgids 301000-366535 carol`)"
        );
        // no room below 2^32
        assert!(suggest_range(&["full:4294900000:60000\n"]).is_none());
        assert!(range_fix("carol", None).contains("none is left"));
    }
}
