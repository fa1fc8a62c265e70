//! The container process after its mounts: resolving `-u` through the image's /etc/passwd and
//! /etc/group, the working directory, the terminal, capabilities, no_new_privs, and exec.
//! Runs in the container's init process after pivot_root; errors carry the exit code that
//! `rbox run` must return (125 setup, 126 cannot invoke, 127 not found).

use std::ffi::{CString, OsStr, OsString};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use nix::unistd::{Gid, Uid};

use super::oci;
use super::{caps, sys};
use crate::exit;

/// A setup failure with the exit code it must produce.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub msg: String,
}

impl Failure {
    pub fn setup(msg: impl Into<String>) -> Self {
        Failure {
            code: exit::FAILED,
            msg: msg.into(),
        }
    }
}

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure::setup(format!("{e:#}"))
    }
}

/// The resolved identity of the container process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ident {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    pub home: String,
}

/// Resolve `user[:group]` against passwd/group file contents, as Docker does: names must
/// exist; numeric ids need not; a numeric uid found in passwd takes its primary group.
pub fn resolve_user(spec: &str, passwd: &str, group: &str) -> Result<Ident, String> {
    let (u, g) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let pw: Vec<Vec<&str>> = passwd
        .lines()
        .map(|l| l.split(':').collect())
        .filter(|f: &Vec<&str>| f.len() >= 7)
        .collect();
    let gr: Vec<Vec<&str>> = group
        .lines()
        .map(|l| l.split(':').collect())
        .filter(|f: &Vec<&str>| f.len() >= 3)
        .collect();
    let u = if u.is_empty() { "0" } else { u };
    let entry = pw
        .iter()
        .find(|f| f[0] == u || (u.parse::<u32>().is_ok() && f[2] == u));
    let (uid, mut gid, home, name) = match (entry, u.parse::<u32>()) {
        (Some(f), _) => (
            f[2].parse::<u32>()
                .map_err(|_| format!("bad uid in /etc/passwd for `{u}`"))?,
            f[3].parse::<u32>().unwrap_or(0),
            f[5].to_string(),
            Some(f[0]),
        ),
        (None, Ok(n)) => (n, 0, "/".to_string(), None),
        (None, Err(_)) => {
            return Err(format!(
                "unable to find user {u}: no matching entries in passwd file"
            ))
        }
    };
    if let Some(g) = g {
        gid = match gr.iter().find(|f| f[0] == g) {
            Some(f) => f[2]
                .parse()
                .map_err(|_| format!("bad gid in /etc/group for `{g}`"))?,
            None => g.parse().map_err(|_| {
                format!("unable to find group {g}: no matching entries in group file")
            })?,
        };
    }
    let mut groups = vec![gid];
    if let Some(name) = name {
        for f in &gr {
            let members = f.get(3).copied().unwrap_or("");
            if members.split(',').any(|m| m == name) {
                if let Ok(n) = f[2].parse::<u32>() {
                    if !groups.contains(&n) {
                        groups.push(n);
                    }
                }
            }
        }
    }
    Ok(Ident {
        uid,
        gid,
        groups,
        home,
    })
}

/// A `--group-add` group: a name of the container's /etc/group (`group` its contents), or a
/// number, as Podman resolves it.
pub fn lookup_group(g: &str, group: &str) -> Result<u32, String> {
    let found = group
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() >= 3 && f[0] == g)
        .and_then(|f| f[2].parse().ok());
    found
        .or_else(|| g.parse().ok())
        .ok_or_else(|| format!("Unable to find group {g}: no matching entries in group file"))
}

/// Find the executable for argv[0] along the container's PATH.
pub fn find_executable(arg0: &OsStr, path: &str) -> Result<OsString, Failure> {
    if arg0.as_bytes().contains(&b'/') {
        return Ok(arg0.to_os_string());
    }
    let mut found_non_exec = None;
    for dir in path.split(':').filter(|d| !d.is_empty()) {
        let cand = Path::new(dir).join(arg0);
        if let Ok(m) = fs::metadata(&cand) {
            if m.is_file() && m.permissions().mode() & 0o111 != 0 {
                return Ok(cand.into_os_string());
            }
            found_non_exec.get_or_insert(cand);
        }
    }
    if found_non_exec.is_some() {
        return Err(Failure {
            code: exit::CANNOT_INVOKE,
            msg: PERMISSION_DENIED.to_string(),
        });
    }
    Err(Failure {
        code: exit::NOT_FOUND,
        msg: not_found_text(&arg0.to_string_lossy()),
    })
}

// Podman's words (as crun and podman 4.3 print them, less crun's own `crun: ` prefix): scripts
// match "permission denied" and "not found in $PATH" in them.
const PERMISSION_DENIED: &str = "open executable: Permission denied: OCI permission denied";

fn not_found_text(cmd: &str) -> String {
    format!(
        "executable file `{cmd}` not found in $PATH: No such file or directory: \
         OCI runtime attempted to invoke a command that was not found"
    )
}

/// `None` when `id` is mapped in this user namespace (the text of /proc/self/uid_map or
/// gid_map), else the ranges that are, for the error ("0-65536"). An unmapped id makes
/// setresuid fail with a bare EINVAL.
fn unmapped(map: &str, id: u32) -> Option<String> {
    let mut ranges: Vec<(u64, u64)> = Vec::new();
    for line in map.lines() {
        let f: Vec<u64> = line
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        let [inside, _, count] = f[..] else {
            continue;
        };
        if (inside..inside + count).contains(&u64::from(id)) {
            return None;
        }
        ranges.push((inside, inside + count));
    }
    // adjacent ranges read as one: "0-65536", not "0-0, 1-65536"
    ranges.sort();
    let mut merged: Vec<(u64, u64)> = Vec::new();
    for (a, b) in ranges {
        match merged.last_mut() {
            Some(last) if last.1 == a => last.1 = b,
            _ => merged.push((a, b)),
        }
    }
    let text: Vec<String> = merged
        .iter()
        .map(|(a, b)| format!("{a}-{}", b - 1))
        .collect();
    Some(text.join(", "))
}

fn env_value<'a>(env: &'a [String], key: &str) -> Option<&'a str> {
    env.iter()
        .rev()
        .find_map(|e| e.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
}

/// What the process step runs: the process of the container's OCI spec, with what the spec
/// cannot say.
#[derive(Debug, Clone)]
pub struct Command {
    pub process: oci::Process,
    /// the arguments as the kernel gets them: the spec's, or their exact bytes where the
    /// record holds arguments that are not UTF-8
    pub argv: Vec<OsString>,
    /// the container's hostname, for `HOSTNAME` when the environment has none
    pub hostname: String,
    /// the command runs in a user namespace of its own (`--userns=keep-id`), where the ids
    /// of the process are mapped even without a subordinate range
    pub own_userns: bool,
    /// what a missing working directory means
    pub missing_cwd: MissingCwd,
    /// `--preserve-fds N`: descriptors 3..3+N reach the command (an attached run's own)
    pub preserve_fds: u32,
}

/// What happens when the working directory does not exist in the container (Podman 4.3's
/// behaviour).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MissingCwd {
    /// the image's own WorkingDir: created, owned by the process's user
    Create,
    /// `run -w` of the container with this id: refused, exit 126
    Refuse(String),
    /// `exec -w`: the chdir fails, exit 127
    Fail,
}

/// Everything between pivot_root and exec. Never returns on success. `seccomp` is the
/// container's filter, compiled before the fork.
pub fn exec(cmd: &Command, single_id: bool, seccomp: Option<&[libc::sock_filter]>) -> Failure {
    match prepare_and_exec(cmd, single_id, seccomp) {
        Ok(never) => match never {},
        Err(f) => f,
    }
}

enum Never {}

fn prepare_and_exec(
    cmd: &Command,
    single_id: bool,
    seccomp: Option<&[libc::sock_filter]>,
) -> Result<Never, Failure> {
    let p = &cmd.process;
    let passwd = fs::read_to_string("/etc/passwd").unwrap_or_default();
    let group = fs::read_to_string("/etc/group").unwrap_or_default();
    let mut id = p.user.resolve(&passwd, &group).map_err(Failure::setup)?;
    for g in &p.group_add {
        let n = lookup_group(g, &group).map_err(|msg| Failure {
            code: exit::CANNOT_INVOKE,
            msg: format!("look up supplemental groups: {msg}"),
        })?;
        if single_id && n != 0 && !cmd.own_userns {
            return Err(Failure {
                code: exit::CANNOT_INVOKE,
                msg: format!(
                    "--group-add {g}: gid {n} does not exist in this user namespace: only id 0 is \
                     mapped because you have no /etc/subuid and /etc/subgid range"
                ),
            });
        }
        if !id.groups.contains(&n) {
            id.groups.push(n);
        }
    }
    if single_id && (id.uid != 0 || id.gid != 0) && !cmd.own_userns {
        return Err(Failure::setup(format!(
            "user `{}` (uid {} gid {}) does not exist in this user namespace: only uid 0 is mapped \
             because you have no /etc/subuid and /etc/subgid range (`rbox info` prints the command \
             an admin runs to add a free one)",
            p.user, id.uid, id.gid
        )));
    }
    if !single_id {
        // the parent's, read before the clone, unless the init has a user namespace of its own
        let (uid_map, gid_map) = rbox_storage::own_id_maps();
        for (what, n, map) in [("uid", id.uid, &uid_map), ("gid", id.gid, &gid_map)] {
            if let Some(ids) = unmapped(map, n) {
                return Err(Failure::setup(format!(
                    "user `{}`: {what} {n} is outside the container's ids ({what}s {ids} exist): \
                     choose an id in that range",
                    p.user
                )));
            }
        }
    }
    let mut env = p.env.clone();
    if env_value(&env, "HOME").is_none() {
        env.push(format!(
            "HOME={}",
            if id.home.is_empty() { "/" } else { &id.home }
        ));
    }
    if env_value(&env, "HOSTNAME").is_none() {
        env.push(format!("HOSTNAME={}", cmd.hostname));
    }
    // A missing working directory is created only when the image names it (Podman).
    let wd = if p.cwd.is_empty() { "/" } else { &p.cwd };
    if fs::metadata(wd).is_err() {
        match &cmd.missing_cwd {
            MissingCwd::Create => {
                fs::create_dir_all(wd)
                    .map_err(|e| Failure::setup(format!("create working directory `{wd}`: {e}")))?;
                let _ = nix::unistd::chown(
                    wd,
                    Some(Uid::from_raw(id.uid)),
                    Some(Gid::from_raw(id.gid)),
                );
            }
            MissingCwd::Refuse(container) => {
                return Err(Failure {
                    code: exit::CANNOT_INVOKE,
                    msg: format!("workdir \"{wd}\" does not exist on container {container}"),
                })
            }
            MissingCwd::Fail => {}
        }
    }
    nix::unistd::chdir(wd).map_err(|e| Failure {
        code: if e == nix::errno::Errno::ENOENT {
            exit::NOT_FOUND
        } else {
            exit::CANNOT_INVOKE
        },
        msg: format!("change to working directory `{wd}`: {e}"),
    })?;
    set_rlimits(&p.rlimits)?;
    if let Some(adj) = p.oom_score_adj {
        // lowering it needs CAP_SYS_RESOURCE in the host's namespace, as crun reports
        fs::write("/proc/self/oom_score_adj", adj.to_string())
            .map_err(|e| Failure::setup(format!("set oom_score_adj {adj}: {e}")))?;
    }
    if let Some(mask) = p.umask {
        nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(mask));
    }
    // No PATH (`--unsetenv PATH`, an OCI spec without one) finds no bare command, as crun and
    // runc look it up (podman 4.3: 127 "executable file `true` not found in $PATH"); the spec
    // says execvp(3), whose own default path would be the runtime's, not the container's.
    let path = env_value(&env, "PATH").unwrap_or_default().to_string();
    let argv_os = &cmd.argv;
    if argv_os.is_empty() {
        return Err(Failure::setup("the container's process has no command"));
    }
    let exe = find_executable(&argv_os[0], &path)?;
    if p.terminal {
        // The terminal belongs to the container user; fd 0 is its slave side.
        let _ = sys::fchown(sys::stdio(0), id.uid, None);
    }
    // The filter goes on while we still hold CAP_SYS_ADMIN in the namespace: without
    // no_new_privs (off by default, so setuid programs work) the kernel requires it. What runs
    // from here to execve (prctl, setgroups, setres[ug]id, capset, close_range, rt_sigaction,
    // execve) is therefore filtered too; Podman's default allows all of it, as runc does.
    // Before the filter: a spec's profile may predate close_range(2) and refuse it (the
    // runtime-tools suite's does); marking descriptors close-on-exec closes nothing yet.
    sys::cloexec_from(3 + cmd.preserve_fds)
        .map_err(|e| Failure::setup(format!("close inherited descriptors: {e}")))?;
    if single_id {
        // the FUSE overlay's owner supervisor (rbox_storage::mount::fuse::supervisor); before
        // the profile, which may not allow seccomp(2) itself
        rbox_storage::mount::fuse::supervisor::hand_over()
            .map_err(|e| Failure::setup(format!("start the owner supervisor: {e}")))?;
    }
    // (before the filter, which a spec's profile may make refuse the read)
    let masks = sys::status_masks();
    if let Some(prog) = seccomp {
        sys::seccomp_install(prog)
            .map_err(|e| Failure::setup(format!("install seccomp filter: {e}")))?;
    }
    // Capabilities: bounding set first (needs CAP_SETPCAP, still held), then ids, then capset.
    // Only what the bounding set still holds can be granted: root on a host whose own
    // bounding set lacks a capability (CAP_SYS_RESOURCE on some machines) gets the rest,
    // as crun grants it, instead of failing `--privileged` or `--cap-add all`.
    let last = caps::last_cap();
    let bounding = match masks {
        Some((_, bnd)) => bnd & caps::mask_all(last),
        None => (0..=last)
            .filter(|c| sys::capbset_read(*c).unwrap_or(false))
            .fold(0u64, |m, c| m | 1 << c),
    };
    let kept = p.caps & bounding;
    for c in 0..=last {
        if kept & (1 << c) == 0 {
            sys::capbset_drop(c)
                .map_err(|e| Failure::setup(format!("drop capability {c}: {e}")))?;
        }
    }
    if !single_id && !p.keep_groups {
        let gids: Vec<Gid> = id.groups.iter().map(|g| Gid::from_raw(*g)).collect();
        nix::unistd::setgroups(&gids).map_err(|e| Failure::setup(format!("set groups: {e}")))?;
    }
    // an OCI runtime's container outlives the `create` that made it: armed only if it was
    let armed = sys::pdeathsig().unwrap_or(libc::SIGKILL) != 0;
    if p.cap_sets.is_some() && id.uid != 0 {
        // a non-root user keeps the sets the spec gives it
        sys::set_keepcaps().map_err(|e| Failure::setup(format!("keep capabilities: {e}")))?;
    }
    nix::unistd::setresgid(
        Gid::from_raw(id.gid),
        Gid::from_raw(id.gid),
        Gid::from_raw(id.gid),
    )
    .map_err(|e| Failure::setup(format!("set gid {}: {e}", id.gid)))?;
    nix::unistd::setresuid(
        Uid::from_raw(id.uid),
        Uid::from_raw(id.uid),
        Uid::from_raw(id.uid),
    )
    .map_err(|e| Failure::setup(format!("set uid {}: {e}", id.uid)))?;
    // The kernel clears the parent-death signal on any change of credentials: arm it again,
    // or a container running as another user would outlive a killed rbox (prctl(2)).
    if armed {
        sys::set_pdeathsig(libc::SIGKILL)
            .map_err(|e| Failure::setup(format!("set parent death signal: {e}")))?;
    }
    if let Some(c) = p.cap_sets {
        sys::capset(
            c.effective & bounding,
            c.permitted & bounding,
            c.inheritable,
        )
        .map_err(|e| Failure::setup(format!("set capabilities: {e}")))?;
        // The kernel raises an ambient capability only when it is permitted and inheritable
        // (prctl(2), PR_CAP_AMBIENT_RAISE): the others are skipped, as crun and runc do
        // (`crun spec --rootless` asks for ambient caps with an empty inheritable set).
        let raisable = c.ambient & bounding & c.permitted & c.inheritable;
        for cap in (0..=last).filter(|n| raisable & (1 << n) != 0) {
            sys::ambient_raise(cap)
                .map_err(|e| Failure::setup(format!("raise ambient capability {cap}: {e}")))?;
        }
    } else if id.uid == 0 {
        sys::capset(kept, kept, 0).map_err(|e| Failure::setup(format!("set capabilities: {e}")))?;
    }
    if let Some(persona) = p.personality {
        sys::personality(persona)
            .map_err(|e| Failure::setup(format!("set personality {persona:#x}: {e}")))?;
    }
    if p.no_new_privileges {
        sys::set_no_new_privs().map_err(|e| Failure::setup(format!("set no_new_privs: {e}")))?;
    }
    let cstr = |s: &OsStr| {
        CString::new(s.as_bytes()).map_err(|_| {
            Failure::setup(format!(
                "argument `{}` contains a NUL byte",
                s.to_string_lossy()
            ))
        })
    };
    let argv = argv_os
        .iter()
        .map(|a| cstr(a))
        .collect::<Result<Vec<_>, _>>()?;
    let envp = env
        .iter()
        .map(|a| cstr(a.as_ref()))
        .collect::<Result<Vec<_>, _>>()?;
    let path_c = cstr(&exe)?;
    sys::reset_signals(masks.map(|(ignored, _)| ignored));
    let err = sys::execve(&path_c, &argv, &envp);
    let shown = exe.to_string_lossy();
    let (code, msg) = match err.raw_os_error() {
        Some(libc::ENOENT) | Some(libc::ENOTDIR) => (exit::NOT_FOUND, not_found_text(&shown)),
        Some(libc::EACCES) => (exit::CANNOT_INVOKE, PERMISSION_DENIED.to_string()),
        Some(libc::EPERM) => (
            exit::CANNOT_INVOKE,
            "open executable: Operation not permitted: OCI permission denied".to_string(),
        ),
        _ => (exit::CANNOT_INVOKE, format!("exec `{shown}`: {err}")),
    };
    Err(Failure { code, msg })
}

/// `--ulimit`: each limit, by its OCI name (`RLIMIT_NOFILE`). Raising a hard limit needs
/// CAP_SYS_RESOURCE in the host's user namespace, which a rootless container never has: that
/// fails with exit 126 and the text Podman (crun) gives.
fn set_rlimits(limits: &[(String, u64, u64)]) -> Result<(), Failure> {
    use nix::sys::resource::{setrlimit, Resource};
    for (name, soft, hard) in limits {
        let res = match name.as_str() {
            "RLIMIT_AS" => Resource::RLIMIT_AS,
            "RLIMIT_CORE" => Resource::RLIMIT_CORE,
            "RLIMIT_CPU" => Resource::RLIMIT_CPU,
            "RLIMIT_DATA" => Resource::RLIMIT_DATA,
            "RLIMIT_FSIZE" => Resource::RLIMIT_FSIZE,
            "RLIMIT_LOCKS" => Resource::RLIMIT_LOCKS,
            "RLIMIT_MEMLOCK" => Resource::RLIMIT_MEMLOCK,
            "RLIMIT_MSGQUEUE" => Resource::RLIMIT_MSGQUEUE,
            "RLIMIT_NICE" => Resource::RLIMIT_NICE,
            "RLIMIT_NOFILE" => Resource::RLIMIT_NOFILE,
            "RLIMIT_NPROC" => Resource::RLIMIT_NPROC,
            "RLIMIT_RSS" => Resource::RLIMIT_RSS,
            "RLIMIT_RTPRIO" => Resource::RLIMIT_RTPRIO,
            "RLIMIT_RTTIME" => Resource::RLIMIT_RTTIME,
            "RLIMIT_SIGPENDING" => Resource::RLIMIT_SIGPENDING,
            "RLIMIT_STACK" => Resource::RLIMIT_STACK,
            _ => return Err(Failure::setup(format!("unknown rlimit `{name}`"))),
        };
        setrlimit(res, *soft, *hard).map_err(|e| Failure {
            code: exit::CANNOT_INVOKE,
            msg: format!("setrlimit `{name}`: {}: OCI permission denied", e.desc()),
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PW: &str = "root:x:0:0:root:/root:/bin/sh\ntester:x:1000:1000::/home/tester:/bin/sh\n";
    const GR: &str = "root:x:0:\ntester:x:1000:\nwheel:x:10:tester,bob\n";

    #[test]
    fn users() {
        let r = resolve_user("", PW, GR).unwrap();
        assert_eq!((r.uid, r.gid, r.home.as_str()), (0, 0, "/root"));
        let t = resolve_user("tester", PW, GR).unwrap();
        assert_eq!((t.uid, t.gid), (1000, 1000));
        assert_eq!(t.groups, vec![1000, 10]);
        let n = resolve_user("1000:wheel", PW, GR).unwrap();
        assert_eq!((n.uid, n.gid), (1000, 10));
        let x = resolve_user("4242:4343", PW, GR).unwrap();
        assert_eq!((x.uid, x.gid, x.home.as_str()), (4242, 4343, "/"));
        assert!(resolve_user("nobody", PW, GR)
            .unwrap_err()
            .contains("unable to find user"));
        assert!(resolve_user("tester:nogroup", PW, GR).is_err());
    }

    #[test]
    fn path_lookup() {
        let d = tempfile::tempdir().unwrap();
        let exe = d.path().join("tool");
        fs::write(&exe, "#!/bin/sh\n").unwrap();
        fs::set_permissions(&exe, fs::Permissions::from_mode(0o755)).unwrap();
        let noexec = d.path().join("data");
        fs::write(&noexec, "x").unwrap();
        let path = format!("/nonexistent:{}", d.path().display());
        assert_eq!(
            find_executable("tool".as_ref(), &path).unwrap(),
            exe.into_os_string()
        );
        assert_eq!(
            find_executable("data".as_ref(), &path).unwrap_err().code,
            126
        );
        assert_eq!(
            find_executable("nope".as_ref(), &path).unwrap_err().code,
            127
        );
        assert_eq!(find_executable("/abs/x".as_ref(), &path).unwrap(), "/abs/x");
    }

    #[test]
    fn ids_outside_the_map_are_named_with_the_range() {
        let map = "         0       1000          1\n         1     231072      65536\n";
        assert_eq!(unmapped(map, 0), None);
        assert_eq!(unmapped(map, 65536), None);
        assert_eq!(unmapped(map, 65537).as_deref(), Some("0-65536"));
        assert_eq!(unmapped(map, 70000).as_deref(), Some("0-65536"));
    }
}
