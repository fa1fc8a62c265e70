//! `rbox top`: the processes of a running container, with Podman's AIX-style descriptors
//! (`user pid ppid pcpu etime tty time args` by default), read from /proc (`runtime::procs`)
//! from inside rbox's user namespace. Pids, users and groups are shown as the container sees
//! them (its /etc/passwd and /etc/group, read through the init's root), `huser` and `hgroup`
//! as the host does. Arguments that are no descriptors are `ps` options, as Podman takes them:
//! `ps` runs in the container with them.

use std::collections::BTreeMap;
use std::process::ExitCode;

use std::io::{Read as _, Seek as _};

use anyhow::{anyhow, bail, Context as _, Result};

use super::targets::Latest;
use crate::cli::complete;
use crate::context::Context;
use crate::runtime::procs::{self, Proc};
use crate::state;

#[derive(Debug, Clone, clap::Args)]
#[command(trailing_var_arg = true)]
pub struct TopArgs {
    #[command(flatten)]
    pub latest: Latest,
    /// Container to list the processes of (name or id); with `--latest`, the first DESCRIPTOR
    #[arg(value_name = "CONTAINER", add = complete::container_candidates())]
    pub container: Option<String>,
    /// Descriptors (user, pid, ppid, pcpu, etime, tty, time, args, comm, group, huser, hgroup,
    /// ruser, rgroup, nice, pgid, vsz, rss, stime, state, label, capeff, capbnd, seccomp),
    /// separated by spaces or commas; anything else is passed to ps(1) in the container
    #[arg(value_name = "DESCRIPTOR", allow_hyphen_values = true)]
    pub descriptors: Vec<String>,
}

/// Every descriptor and its header, as Podman prints them.
const DESCRIPTORS: &[(&str, &str)] = &[
    ("args", "COMMAND"),
    ("capbnd", "BOUNDING CAPS"),
    ("capeff", "EFFECTIVE CAPS"),
    ("comm", "COMMAND"),
    ("etime", "ELAPSED"),
    ("group", "GROUP"),
    ("hgroup", "HGROUP"),
    ("huser", "HUSER"),
    ("label", "LABEL"),
    ("nice", "NI"),
    ("pcpu", "%CPU"),
    ("pgid", "PGID"),
    ("pid", "PID"),
    ("ppid", "PPID"),
    ("rgroup", "RGROUP"),
    ("rss", "RSS"),
    ("ruser", "RUSER"),
    ("seccomp", "SECCOMP"),
    ("state", "STATE"),
    ("stime", "STIME"),
    ("time", "TIME"),
    ("tty", "TTY"),
    ("user", "USER"),
    ("vsz", "VSZ"),
];

const DEFAULT: &[&str] = &[
    "user", "pid", "ppid", "pcpu", "etime", "tty", "time", "args",
];

/// The descriptors asked for (commas separate them too); `Err` with the first argument that is
/// none.
fn descriptors(args: &[String]) -> std::result::Result<Vec<&str>, String> {
    if args.is_empty() {
        return Ok(DEFAULT.to_vec());
    }
    let mut out = Vec::new();
    for a in args {
        for d in a.split(',').filter(|d| !d.is_empty()) {
            match DESCRIPTORS.iter().find(|(n, _)| *n == d) {
                Some((n, _)) => out.push(*n),
                None => return Err(d.to_string()),
            }
        }
    }
    if out.is_empty() {
        return Err(String::new());
    }
    Ok(out)
}

pub fn run(g: &Context, a: TopArgs) -> Result<ExitCode> {
    // as Podman: with --latest, every argument is a descriptor
    let (rec, args) = match a.container {
        _ if a.latest.latest => (
            state::latest(g),
            a.container.into_iter().chain(a.descriptors).collect(),
        ),
        Some(name) => (state::lookup(g, &name), a.descriptors),
        None => bail!("you must provide the name or id of a running container"),
    };
    let rec = rec.map_err(|e| anyhow!("unable to look up requested container: {e:#}"))?;
    let Some((init, _)) = state::live_pids(g, &rec).filter(|_| state::is_running(&rec)) else {
        bail!("top can only be used on running containers");
    };
    let wanted = match descriptors(&args) {
        Ok(d) => d,
        Err(bad) => return ps_in_container(g, &rec, init, &args, &bad),
    };
    // ns/pid, root and the ids of processes that run as mapped ids need ptrace access
    crate::runtime::userns::enter(g)?;
    let procs = procs::list(init)?;
    let names = Names::read(init);
    let clock = Clock::now();
    let mut out = String::new();
    let header: Vec<&str> = wanted
        .iter()
        .map(|d| DESCRIPTORS.iter().find(|(n, _)| n == d).map_or("", |t| t.1))
        .collect();
    out.push_str(&header.join("\t"));
    out.push('\n');
    for p in &procs {
        let cells: Vec<String> = wanted.iter().map(|d| cell(d, p, &names, &clock)).collect();
        out.push_str(&cells.join("\t"));
        out.push('\n');
    }
    print!("{}", crate::format::align(&out));
    Ok(ExitCode::SUCCESS)
}

/// Arguments that are not descriptors: `ps` with them, in the container, as Podman does; the
/// descriptor error when the container has no `ps`.
fn ps_in_container(
    g: &Context,
    rec: &state::ContainerRecord,
    init: i32,
    args: &[String],
    bad: &str,
) -> Result<ExitCode> {
    // the init runs as the caller unless `-u` was given: its root is readable without entering
    // (where it is not, as for a user without a range, ps and sh are taken to be there)
    let root = format!("/proc/{init}/root/");
    let unreadable = std::fs::read_dir(&root).is_err();
    let has = |p: &str| unreadable || std::path::Path::new(&format!("{root}{p}")).exists();
    if !has("bin/ps") && !has("usr/bin/ps") {
        bail!("unknown descriptor: {bad}");
    }
    if !has("bin/sh") {
        let mut argv: Vec<std::ffi::OsString> = vec!["ps".into()];
        argv.extend(args.iter().map(Into::into));
        let opts = crate::runtime::exec::ExecOptions {
            args: argv,
            store: g.storage_root()?,
            ..Default::default()
        };
        return crate::runtime::exec::exec(rec, init, &opts, &|_| {});
    }
    // Podman lists the container's processes without the ps it ran: a shell prints its pid,
    // which the ps it becomes keeps, and that row is left out. Output to a memory file (a
    // pipe could fill before ps ends).
    let exe = std::env::current_exe().context("find the rbox executable")?;
    let mut out = std::fs::File::from(
        nix::sys::memfd::memfd_create(c"rbox-top", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)
            .context("create the output file of ps")?,
    );
    let status = crate::runtime::health::rbox_command(&exe, &g.storage_root()?, &g.runtime_dir()?)
        .args(["exec", &rec.id, "sh", "-c", PS_SCRIPT, "ps"])
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(out.try_clone().context("duplicate a descriptor")?)
        .status()
        .context("run ps in the container")?;
    let mut text = String::new();
    out.rewind().context("read the output of ps")?;
    out.read_to_string(&mut text)
        .context("read the output of ps")?;
    let own = std::iter::once("ps")
        .chain(args.iter().map(String::as_str))
        .collect::<Vec<_>>()
        .join(" ");
    print!("{}", without_own_row(&text, &own));
    Ok(ExitCode::from(
        status.code().map_or(crate::exit::FAILED, |c| c as u8),
    ))
}

/// The shell that prints its pid and becomes `ps "$@"`.
const PS_SCRIPT: &str = "echo $$; exec ps \"$@\"";

/// `ps`'s output after the line with its own pid (as the shell printed it), without the row of
/// that pid (found under the PID header); with no such column, without the row that shows
/// its command line (`own_cmd`, or the shell's where ps is a busybox applet run in place).
fn without_own_row(out: &str, own_cmd: &str) -> String {
    let mut lines = out.lines();
    let own = lines.next().unwrap_or_default().trim();
    let mut kept = String::new();
    let Some(header) = lines.next() else {
        return kept;
    };
    let col = header.split_whitespace().position(|h| h == "PID");
    for l in std::iter::once(header).chain(lines) {
        let mine = match col {
            Some(c) => l.split_whitespace().nth(c) == Some(own),
            None => l.trim_end() == own_cmd || l.contains(PS_SCRIPT),
        };
        if mine {
            continue;
        }
        kept.push_str(l);
        kept.push('\n');
    }
    kept
}

/// User and group names of the container (its /etc/passwd and /etc/group) and the id maps
/// between the caller's namespace, the container's and the host.
struct Names {
    users: BTreeMap<u32, String>,
    groups: BTreeMap<u32, String>,
    /// caller's ids -> container's, when the container has a user namespace of its own
    nested: Option<(procs::IdMapLines, procs::IdMapLines)>,
    /// caller's ids -> host's
    host_uid: procs::IdMapLines,
    host_gid: procs::IdMapLines,
}

impl Names {
    fn read(init: i32) -> Names {
        let table = |f: &str| -> BTreeMap<u32, String> {
            let text =
                std::fs::read_to_string(format!("/proc/{init}/root/etc/{f}")).unwrap_or_default();
            let mut m = BTreeMap::new();
            for l in text.lines() {
                let f: Vec<&str> = l.split(':').collect();
                if let (Some(name), Some(Ok(id))) = (f.first(), f.get(2).map(|s| s.parse())) {
                    m.entry(id).or_insert_with(|| name.to_string());
                }
            }
            m
        };
        let (host_uid, host_gid) = procs::own_maps();
        Names {
            users: table("passwd"),
            groups: table("group"),
            nested: procs::nested_maps(init),
            host_uid,
            host_gid,
        }
    }

    fn user(&self, uid: u32) -> String {
        let inner = match &self.nested {
            Some((u, _)) => procs::map_in(u, uid),
            None => Some(uid),
        };
        name_of(&self.users, inner)
    }

    fn group(&self, gid: u32) -> String {
        let inner = match &self.nested {
            Some((_, g)) => procs::map_in(g, gid),
            None => Some(gid),
        };
        name_of(&self.groups, inner)
    }
}

/// The name of `id` in `table`, else the number; `nobody`'s 65534 for an unmapped id.
fn name_of(table: &BTreeMap<u32, String>, id: Option<u32>) -> String {
    let id = id.unwrap_or(65534);
    table.get(&id).cloned().unwrap_or_else(|| id.to_string())
}

/// Now, and what converts /proc's clock ticks.
struct Clock {
    uptime: f64,
    boot: i64,
    tps: u64,
}

impl Clock {
    fn now() -> Clock {
        Clock {
            uptime: procs::uptime(),
            boot: procs::boot_time(),
            tps: procs::ticks_per_second(),
        }
    }

    /// Seconds since `p` started.
    fn elapsed(&self, p: &Proc) -> f64 {
        (self.uptime - p.start_ticks as f64 / self.tps as f64).max(0.0)
    }
}

fn cell(d: &str, p: &Proc, n: &Names, c: &Clock) -> String {
    let cpu = p.cpu_ticks as f64 / c.tps as f64;
    match d {
        "args" => p.args.clone(),
        "comm" => p.comm.clone(),
        "etime" => go_duration(c.elapsed(p)),
        "group" => n.group(p.egid),
        "rgroup" => n.group(p.rgid),
        "user" => n.user(p.euid),
        "ruser" => n.user(p.ruid),
        "huser" => procs::map_out(&n.host_uid, p.euid).map_or("?".into(), |u| u.to_string()),
        "hgroup" => procs::map_out(&n.host_gid, p.egid).map_or("?".into(), |g| g.to_string()),
        "label" => std::fs::read_to_string(format!("/proc/{}/attr/current", p.host_pid))
            .map(|s| s.trim_end_matches(['\n', '\0']).to_string())
            .ok()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "?".into()),
        "nice" => p.nice.to_string(),
        "pcpu" => {
            let e = c.elapsed(p);
            let pct = if e > 0.0 { cpu / e * 100.0 } else { 0.0 };
            format!("{pct:.3}")
        }
        "pgid" => p.pgid.to_string(),
        "pid" => p.pid.to_string(),
        "ppid" => p.ppid.to_string(),
        "time" => go_duration(cpu),
        "tty" => tty_name(p.tty_nr),
        "vsz" => p.vsz.to_string(),
        "rss" => p.rss.to_string(),
        "stime" => crate::format::human::go_time(c.boot + (p.start_ticks / c.tps.max(1)) as i64),
        "state" => p.state.to_string(),
        "capeff" => cap_names(p.cap_eff),
        "capbnd" => cap_names(p.cap_bnd),
        "seccomp" => match p.seccomp {
            1 => "strict",
            2 => "filter",
            _ => "disabled",
        }
        .into(),
        _ => String::new(),
    }
}

/// `pts/N` or `ttyN` from stat's tty_nr, `?` for none.
fn tty_name(nr: u64) -> String {
    let major = (nr >> 8) & 0xfff;
    let minor = (nr & 0xff) | ((nr >> 12) & 0xfff00);
    match major {
        0 => "?".into(),
        136..=143 => format!("pts/{}", (major - 136) * 256 + minor),
        4 => format!("tty{minor}"),
        _ => "?".into(),
    }
}

/// A capability set as names, sorted, without `CAP_`: `full` for every capability the kernel
/// has, `none` for none.
fn cap_names(set: u64) -> String {
    let last = crate::runtime::caps::last_cap();
    let all = crate::runtime::caps::mask_all(last);
    if set == 0 {
        return "none".into();
    }
    if set & all == all {
        return "full".into();
    }
    let names = crate::runtime::caps::NAMES;
    let mut v: Vec<&str> = (0..64)
        .filter(|b| set & (1u64 << b) != 0)
        .filter_map(|b| names.get(b as usize).copied())
        .collect();
    v.sort_unstable();
    v.join(",")
}

/// Seconds as Go's `time.Duration` prints them: `0s`, `260.095609ms`, `8.5s`, `2m3.5s`,
/// `1h0m0s`.
pub fn go_duration(secs: f64) -> String {
    let ns = (secs.max(0.0) * 1e9).round() as u128;
    if ns == 0 {
        return "0s".into();
    }
    let frac = |v: u128, digits: u32| -> String {
        let scale = 10u128.pow(digits);
        let (int, rest) = (v / scale, v % scale);
        if rest == 0 {
            return int.to_string();
        }
        let f = format!("{rest:0width$}", width = digits as usize);
        format!("{int}.{}", f.trim_end_matches('0'))
    };
    if ns < 1_000 {
        return format!("{ns}ns");
    }
    if ns < 1_000_000 {
        return format!("{}µs", frac(ns, 3));
    }
    if ns < 1_000_000_000 {
        return format!("{}ms", frac(ns, 6));
    }
    let total_s = ns / 1_000_000_000;
    let (h, m) = (total_s / 3600, total_s / 60 % 60);
    let s = frac(ns % 60_000_000_000, 9);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, m) => format!("{m}m{s}s"),
        (h, m) => format!("{h}h{m}m{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_as_go_prints_them() {
        assert_eq!(go_duration(0.0), "0s");
        assert_eq!(go_duration(0.260095609), "260.095609ms");
        assert_eq!(go_duration(8.456881918), "8.456881918s");
        assert_eq!(go_duration(0.01), "10ms");
        assert_eq!(go_duration(123.5), "2m3.5s");
        assert_eq!(go_duration(3600.0), "1h0m0s");
    }

    #[test]
    fn descriptors_by_space_or_comma_and_the_first_unknown() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(descriptors(&[]).unwrap(), DEFAULT);
        assert_eq!(
            descriptors(&s(&["pid,user", "args"])).unwrap(),
            ["pid", "user", "args"]
        );
        assert_eq!(descriptors(&s(&["pid", "bogus"])).unwrap_err(), "bogus");
        assert_eq!(descriptors(&s(&["-ef"])).unwrap_err(), "-ef");
    }

    #[test]
    fn ps_loses_its_own_row_only() {
        let out = "7\n  PID USER     COMMAND\n    1 root     sleep 1000\n    7 root     ps -o pid,user,args\n   17 root     sh\n";
        let own = "ps -o pid,user,args";
        assert_eq!(
            without_own_row(out, own),
            "  PID USER     COMMAND\n    1 root     sleep 1000\n   17 root     sh\n"
        );
        // no PID column: by its command line, its own or the shell's (busybox)
        let out =
            "7\nCOMMAND\nsleep 1\nps -o args\n{ps} sh -c echo $$; exec ps \"$@\" ps -o args\n";
        assert_eq!(without_own_row(out, "ps -o args"), "COMMAND\nsleep 1\n");
        assert_eq!(without_own_row("", own), "");
    }

    #[test]
    fn ttys_and_caps() {
        assert_eq!(tty_name(0), "?");
        assert_eq!(tty_name(136 << 8 | 3), "pts/3");
        assert_eq!(cap_names(0), "none");
        assert_eq!(cap_names(0b100001), "CHOWN,KILL");
    }
}
