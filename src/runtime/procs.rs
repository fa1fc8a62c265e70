//! The processes of a running container, read from /proc (`top`, `stats`, `pause`): every
//! process in the pid namespace of the container's init, with what `ps` would show of it, its
//! pids and ids as the container sees them. It reads; it never signals (see `control`).
//!
//! Many of these files (`ns/pid`, `root`, `io`) need ptrace access to the process: the caller
//! enters rbox's user namespace first, where it is root over every container's processes.

use std::collections::BTreeMap;
use std::fs;

use anyhow::{bail, Result};

/// `uid_map` or `gid_map` lines: (inside, outside, count).
pub type IdMapLines = Vec<(u32, u32, u32)>;

/// One process of a container, as /proc shows it to the caller.
#[derive(Debug, Clone, Default)]
pub struct Proc {
    /// the pid in the caller's namespace (for signals and further reads)
    pub host_pid: i32,
    /// the pid inside the container (last NSpid)
    pub pid: i32,
    /// the parent's pid inside the container, 0 when the parent is outside it
    pub ppid: i32,
    /// the process group inside the container (last NSpgid)
    pub pgid: i32,
    pub comm: String,
    /// the command line, each argument followed by a space (Podman's COMMAND column)
    pub args: String,
    /// the state letter of /proc/PID/stat (`S`, `R`, `T`)
    pub state: char,
    /// real, effective uid and gid, in the caller's user namespace
    pub ruid: u32,
    pub euid: u32,
    pub rgid: u32,
    pub egid: u32,
    pub nice: i64,
    pub tty_nr: u64,
    /// user + system time, in clock ticks
    pub cpu_ticks: u64,
    /// start time in clock ticks after boot
    pub start_ticks: u64,
    /// KiB
    pub vsz: u64,
    pub rss: u64,
    pub cap_eff: u64,
    pub cap_bnd: u64,
    /// 0 disabled, 1 strict, 2 filter
    pub seccomp: u8,
}

/// The host pids of every process in the pid namespace of `init` (the container's), `init`
/// first. A container in the caller's pid namespace (`--pid=host`) has no namespace to tell
/// its processes by: its processes are `init` and its descendants then. Fails when the init's
/// namespace cannot be read (it is gone, or not ours).
pub fn pids(init: i32) -> Result<Vec<i32>> {
    let ns = |pid: &str| fs::read_link(format!("/proc/{pid}/ns/pid")).ok();
    let Some(theirs) = ns(&init.to_string()) else {
        bail!("read the pid namespace of process {init}: it is gone or not accessible");
    };
    let shared = ns("self").as_ref() == Some(&theirs);
    // every other process of the namespace, with its parent
    let mut others = Vec::new();
    let rd = fs::read_dir("/proc").map_err(|e| anyhow::anyhow!("read `/proc`: {e}"))?;
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if pid == init || ns(&pid.to_string()).as_ref() != Some(&theirs) {
            continue;
        }
        let ppid = if shared {
            match fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| parse_stat(&s))
            {
                Some(p) => p.ppid,
                None => continue,
            }
        } else {
            0
        };
        others.push((pid, ppid));
    }
    let mut out = vec![init];
    if !shared {
        out.extend(others.into_iter().map(|(pid, _)| pid));
        return Ok(out);
    }
    // descendants, generation by generation
    let mut i = 0;
    while i < out.len() {
        let parent = out[i];
        out.extend(
            others
                .iter()
                .filter(|(_, pp)| *pp == parent)
                .map(|(p, _)| *p),
        );
        i += 1;
    }
    Ok(out)
}

/// Read every process of the container whose init is `init`, sorted by pid inside it. A
/// process that exits while it is read is left out.
pub fn list(init: i32) -> Result<Vec<Proc>> {
    let mut procs: Vec<Proc> = pids(init)?.into_iter().filter_map(read).collect();
    // ppid as the container sees it: the parent's inner pid when the parent is in it
    let inner: BTreeMap<i32, i32> = procs.iter().map(|p| (p.host_pid, p.pid)).collect();
    for p in &mut procs {
        p.ppid = inner.get(&p.ppid).copied().unwrap_or(0);
    }
    procs.sort_by_key(|p| p.pid);
    Ok(procs)
}

/// One process's /proc/PID/{stat,status,cmdline}; `None` when it is gone.
pub fn read(pid: i32) -> Option<Proc> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let mut p = parse_stat(&stat)?;
    p.host_pid = pid;
    parse_status(&status, &mut p);
    p.args = args_text(&cmdline, &p.comm);
    Some(p)
}

/// Fields of /proc/PID/stat (proc(5)); the host ppid is kept in `ppid` for [`list`].
fn parse_stat(s: &str) -> Option<Proc> {
    let open = s.find('(')?;
    let close = s.rfind(')')?;
    let comm = s.get(open + 1..close)?.to_string();
    // f[0] is field 3 (state)
    let f: Vec<&str> = s.get(close + 2..)?.split(' ').collect();
    let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    Some(Proc {
        comm,
        state: f.first()?.chars().next()?,
        ppid: f.get(1)?.parse().ok()?,
        tty_nr: num(4),
        cpu_ticks: num(11) + num(12),
        nice: f.get(16).and_then(|v| v.parse().ok()).unwrap_or(0),
        start_ticks: num(19),
        ..Proc::default()
    })
}

fn parse_status(s: &str, p: &mut Proc) {
    for line in s.lines() {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let nums: Vec<u64> = v
            .split_whitespace()
            .filter_map(|n| n.parse().ok())
            .collect();
        let last = nums.last().copied().unwrap_or(0);
        let hex = || u64::from_str_radix(v.trim(), 16).unwrap_or(0);
        match k {
            "Uid" if nums.len() >= 2 => (p.ruid, p.euid) = (nums[0] as u32, nums[1] as u32),
            "Gid" if nums.len() >= 2 => (p.rgid, p.egid) = (nums[0] as u32, nums[1] as u32),
            "NSpid" => p.pid = last as i32,
            "NSpgid" => p.pgid = last as i32,
            "VmSize" => p.vsz = nums.first().copied().unwrap_or(0),
            "VmRSS" => p.rss = nums.first().copied().unwrap_or(0),
            "CapEff" => p.cap_eff = hex(),
            "CapBnd" => p.cap_bnd = hex(),
            "Seccomp" => p.seccomp = last as u8,
            _ => {}
        }
    }
}

/// The command line with each argument followed by a space, as Podman shows it; `[comm]` for
/// a process without one (a kernel thread, a zombie).
fn args_text(cmdline: &[u8], comm: &str) -> String {
    if cmdline.is_empty() {
        return format!("[{comm}]");
    }
    let mut s = String::new();
    for a in cmdline.split(|b| *b == 0) {
        if !a.is_empty() {
            s.push_str(&String::from_utf8_lossy(a));
            s.push(' ');
        }
    }
    s
}

/// `/proc/PID/io`'s bytes read from and written to storage.
pub fn io_bytes(pid: i32) -> (u64, u64) {
    let text = fs::read_to_string(format!("/proc/{pid}/io")).unwrap_or_default();
    let get = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    (get("read_bytes:"), get("write_bytes:"))
}

/// Bytes received and sent on every interface but loopback of `pid`'s network namespace
/// (`/proc/PID/net/dev`).
pub fn net_bytes(pid: i32) -> (u64, u64) {
    let text = fs::read_to_string(format!("/proc/{pid}/net/dev")).unwrap_or_default();
    parse_net_dev(&text)
}

fn parse_net_dev(text: &str) -> (u64, u64) {
    let (mut rx, mut tx) = (0, 0);
    for line in text.lines().skip(2) {
        let Some((name, rest)) = line.split_once(':') else {
            continue;
        };
        if name.trim() == "lo" {
            continue;
        }
        let f: Vec<u64> = rest
            .split_whitespace()
            .map(|n| n.parse().unwrap_or(0))
            .collect();
        rx += f.first().copied().unwrap_or(0);
        tx += f.get(8).copied().unwrap_or(0);
    }
    (rx, tx)
}

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`, 100 almost everywhere).
pub fn ticks_per_second() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .filter(|t| *t > 0)
        .map(|t| t as u64)
        .unwrap_or(100)
}

/// Seconds since boot (`/proc/uptime`).
pub fn uptime() -> f64 {
    fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|t| t.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

/// The boot time in seconds since the epoch (`btime` of /proc/stat).
pub fn boot_time() -> i64 {
    fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("btime "))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// The host's memory in bytes (`MemTotal` of /proc/meminfo).
pub fn mem_total() -> u64 {
    fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        })
        .map(|kib| kib * 1024)
        .unwrap_or(0)
}

/// The `uid_map`/`gid_map` lines through which ids of the caller's user namespace become the
/// ids of the container's, when the container has a user namespace below the caller's;
/// `None` when it shares the caller's.
pub fn nested_maps(init: i32) -> Option<(IdMapLines, IdMapLines)> {
    let ns = |p: &str| fs::read_link(p).ok();
    if ns(&format!("/proc/{init}/ns/user")) == ns("/proc/self/ns/user") {
        return None;
    }
    let read = |f: &str| {
        super::userns::parse_map(
            &fs::read_to_string(format!("/proc/{init}/{f}")).unwrap_or_default(),
        )
    };
    Some((read("uid_map"), read("gid_map")))
}

/// This process's own `uid_map` and `gid_map` lines: its ids -> the host's.
pub fn own_maps() -> (IdMapLines, IdMapLines) {
    let (u, g) = rbox_storage::own_id_maps();
    (super::userns::parse_map(&u), super::userns::parse_map(&g))
}

/// `id` (outside) as seen inside through `map` lines (inside, outside, count); `None` when
/// unmapped.
pub fn map_in(map: &[(u32, u32, u32)], id: u32) -> Option<u32> {
    map.iter()
        .find(|(_, out, n)| id >= *out && id - out < *n)
        .map(|(inside, out, _)| inside + (id - out))
}

/// `id` (inside) as seen outside through `map` lines (inside, outside, count).
pub fn map_out(map: &[(u32, u32, u32)], id: u32) -> Option<u32> {
    map.iter()
        .find(|(inside, _, n)| id >= *inside && id - inside < *n)
        .map(|(inside, out, _)| out + (id - inside))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_spaces_and_parens_in_comm() {
        let s = "42 (a (b) c) S 7 42 42 34816 42 4194560 100 0 0 0 15 5 0 0 20 5 1 0 9876 \
                 2322432 345 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
        let p = parse_stat(s).unwrap();
        assert_eq!(p.comm, "a (b) c");
        assert_eq!((p.state, p.ppid, p.tty_nr), ('S', 7, 34816));
        assert_eq!((p.cpu_ticks, p.nice, p.start_ticks), (20, 5, 9876));
    }

    #[test]
    fn status_fields_take_the_innermost_pid() {
        let mut p = Proc::default();
        parse_status(
            "Name:\tsleep\nUid:\t1000\t1001\t1001\t1001\nGid:\t5\t6\t6\t6\n\
             NSpid:\t4242\t7\nNSpgid:\t4242\t1\nVmSize:\t    2268 kB\nVmRSS:\t    1380 kB\n\
             CapEff:\t00000000a80425fb\nCapBnd:\t000001ffffffffff\nSeccomp:\t2\n",
            &mut p,
        );
        assert_eq!((p.pid, p.pgid), (7, 1));
        assert_eq!((p.ruid, p.euid, p.rgid, p.egid), (1000, 1001, 5, 6));
        assert_eq!((p.vsz, p.rss, p.seccomp), (2268, 1380, 2));
        assert_eq!(p.cap_eff, 0xa80425fb);
    }

    #[test]
    fn args_as_podman_shows_them() {
        assert_eq!(args_text(b"sleep\x001000\x00", "sleep"), "sleep 1000 ");
        assert_eq!(args_text(b"", "kworker"), "[kworker]");
    }

    #[test]
    fn net_dev_without_loopback() {
        let t = "Inter-|   Receive |  Transmit\n face |bytes packets errs drop fifo frame compressed multicast|bytes\n\
                 lo: 100 1 0 0 0 0 0 0 100 1 0 0 0 0 0 0\n\
                 eth0: 2000 3 0 0 0 0 0 0 500 2 0 0 0 0 0 0\n";
        assert_eq!(parse_net_dev(t), (2000, 500));
    }

    #[test]
    fn id_maps_both_ways() {
        let m = [(0, 1000, 1), (1, 100000, 65536)];
        assert_eq!(map_in(&m, 1000), Some(0));
        assert_eq!(map_in(&m, 100999), Some(1000));
        assert_eq!(map_in(&m, 5), None);
        assert_eq!(map_out(&m, 1000), Some(100999));
        assert_eq!(map_out(&m, 0), Some(1000));
    }

    #[test]
    fn our_own_processes() {
        let me = std::process::id() as i32;
        let p = read(me).unwrap();
        assert_eq!(p.host_pid, me);
        assert!(p.pid > 0 && p.rss > 0);
        assert!(pids(me).unwrap().contains(&me));
    }
}
