//! Launch: a container's record -> what its processes need ([`Launch`]): the mount plan, the
//! id maps of keep-id, the seccomp program, the /etc files. Runs in the process that will be
//! the container's parent (`rbox run`, `rbox start`, or the monitor of `run -d`), before any
//! clone; besides writing the container's /etc files it only reads.

use std::fs;
use std::os::fd::RawFd;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use rbox_storage::Store;

use super::mounts::{self, Op};
use super::{caps, seccomp, terminal, userns};
use crate::layout;
use crate::state::{self, ContainerRecord, Spec};

/// Everything the child needs, computed before the clone.
pub struct Launch {
    pub spec: Spec,
    pub ops: Vec<Op>,
    /// where the new root is assembled before pivot_root
    pub target: PathBuf,
    /// only uid/gid 0 exist in the user namespace
    pub single_id: bool,
    pub own_net: bool,
    /// stdin/stdout/stderr for the container when there is no terminal (detached: a log file)
    pub stdio: Option<[RawFd; 3]>,
    /// `--userns=keep-id`: a nested user namespace with these maps (written by the parent)
    pub keep_id: Option<KeepId>,
    /// With `-t`, the caller's window size, set on the container's terminal before exec
    /// (the command may ask for it at once, before rbox relays anything)
    pub winsize: Option<libc::winsize>,
    /// the seccomp program the command runs under (compiled here, installed by the child)
    pub seccomp: Option<Vec<libc::sock_filter>>,
}

/// The id maps of a keep-id container: the caller's own uid/gid inside map to rbox's
/// namespace root (the caller outside); every other id keeps a place from the range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeepId {
    pub uid: u32,
    pub gid: u32,
    pub uid_count: u32,
    pub gid_count: u32,
}

impl KeepId {
    /// uid_map/gid_map text for `id` with `count` ids available in rbox's namespace.
    pub fn map(id: u32, count: u32) -> String {
        let mut m = String::new();
        if count > 1 {
            // inside 0..id come from outside 1..=id (when the range is big enough)
            let n = id.min(count - 1);
            if n > 0 {
                m.push_str(&format!("0 1 {n}\n"));
            }
        }
        m.push_str(&format!("{id} 0 1\n"));
        if count > id + 1 {
            m.push_str(&format!("{} {} {}\n", id + 1, id + 1, count - id - 1));
        }
        m
    }
}

/// The launch plan of `rec`; `stdio` replaces the container's stdin, stdout and stderr
/// (a detached container's log).
pub fn plan(store: &Store, rec: &ContainerRecord, stdio: Option<[i32; 3]>) -> Result<Launch> {
    let dir = store.container_dir(&rec.id)?;
    store
        .lookup_image(&rec.image_id)
        .with_context(|| format!("image {} of container {} is gone", &rec.image_id, rec.name))?;
    let rootfs = store
        .rootfs(rec.driver, &dir, rec.auto_remove)
        .context("create empty lower layer")?;
    let etc = write_etc(&dir.dir, rec)?;
    let mode = userns::current_mode();
    let single_id = mode == userns::Mode::Single;
    let own_net = rec.spec.network != state::NetworkMode::Host;
    let ops = mounts::plan(
        rootfs,
        &rec.spec,
        &etc,
        mounts::Env {
            own_net,
            tty_gid: !single_id,
        },
    );
    // Every container assembles its root on this one directory, each in its own mount
    // namespace. A per-container mount point would have to be removed after exit, and
    // removing a directory that is still a mount point in a dying namespace waits for the
    // kernel's namespace teardown (tens of milliseconds).
    let target = layout::mount_point(store.root());
    fs::create_dir_all(&target).with_context(|| format!("create `{}`", target.display()))?;
    let mut spec = rec.spec.clone();
    let spec_tty = spec.tty;
    let keep_id = keep_id(&mode, &mut spec);
    let seccomp = seccomp_program(&spec, Some(&layout::seccomp_cache(store.root())))?;
    Ok(Launch {
        seccomp,
        spec,
        ops,
        target,
        single_id,
        own_net,
        stdio,
        keep_id,
        winsize: if spec_tty {
            terminal::caller_winsize()
        } else {
            None
        },
    })
}

/// Write /etc/hosts, /etc/hostname and /etc/resolv.conf for the container.
fn write_etc(dir: &Path, rec: &ContainerRecord) -> Result<mounts::EtcFiles> {
    let host = &rec.spec.hostname;
    let [hosts, hostname, resolv] = layout::etc_files(dir);
    let files = mounts::EtcFiles {
        hosts,
        hostname,
        resolv,
    };
    let hosts = format!(
        "127.0.0.1\tlocalhost localhost.localdomain\n::1\tlocalhost localhost.localdomain\n127.0.1.1\t{host} {}\n",
        rec.name
    );
    fs::write(&files.hosts, hosts).context("write hosts")?;
    fs::write(&files.hostname, format!("{host}\n")).context("write hostname")?;
    let host_resolv = fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let resolv: String = if rec.spec.network == state::NetworkMode::Host {
        host_resolv
    } else {
        // loopback resolvers of the host are unreachable from another network namespace
        host_resolv
            .lines()
            .filter(|l| {
                !(l.trim_start().starts_with("nameserver")
                    && (l.contains(" 127.") || l.contains(" ::1")))
            })
            .map(|l| format!("{l}\n"))
            .collect()
    };
    fs::write(&files.resolv, resolv).context("write resolv.conf")?;
    Ok(files)
}

/// The seccomp program for a container's processes (its own command and `exec`), compiled
/// in rbox before any fork; `None` when it runs unconfined.
pub fn seccomp_program(
    spec: &state::Spec,
    cache: Option<&Path>,
) -> Result<Option<Vec<libc::sock_filter>>> {
    let kept = caps::kept(
        &spec.cap_add,
        &spec.cap_drop,
        spec.privileged,
        caps::last_cap(),
    )?;
    seccomp::program(&spec.seccomp, spec.privileged, kept, cache).context("build seccomp filter")
}

/// `--userns=keep-id` for a non-root caller: run as the caller's own uid and gid inside.
fn keep_id(mode: &userns::Mode, spec: &mut state::Spec) -> Option<KeepId> {
    if spec.userns != state::UsernsMode::KeepId || *mode == userns::Mode::Root {
        return None;
    }
    // inside rbox's namespace we are root; the caller's host ids are what keep-id keeps
    let (huid, hgid) = userns::host_ids();
    let ids = mode.idmap();
    if spec.user.is_empty() {
        spec.user = format!("{huid}:{hgid}");
    }
    Some(KeepId {
        uid: huid,
        gid: hgid,
        uid_count: ids.uid_count,
        gid_count: ids.gid_count,
    })
}

#[cfg(test)]
mod tests {
    use super::KeepId;

    #[test]
    fn keep_id_maps() {
        assert_eq!(
            KeepId::map(1000, 65537),
            "0 1 1000\n1000 0 1\n1001 1001 64536\n"
        );
        assert_eq!(KeepId::map(1000, 1), "1000 0 1\n");
        // a range smaller than the uid: what exists below it is mapped, nothing above
        assert_eq!(KeepId::map(1000, 501), "0 1 500\n1000 0 1\n");
    }
}
