//! The runtime: the fork/exec flow of `rbox run`, `create`, `start` and `exec`. Each process
//! role has its own file, whose doc says which process runs it:
//!
//! | step | file | process |
//! |---|---|---|
//! | options + image -> storage and record | `create` | the invocation |
//! | flags + image config -> spec (Docker's rules, pure) | `spec` | the invocation |
//! | record -> launch plan (mounts, maps, seccomp; pure but for /etc files) | `launch` | the container parent |
//! | clone, configure namespaces, drive the two sync points | `container` | the container parent |
//! | typed messages between those processes | `sync` | both sides |
//! | setup, pivot_root, terminal, `--init` reaper | `init` | the container's init (PID 1) |
//! | user, groups, caps, seccomp, exec | `process` | init, or exec's process |
//! | start, wait, record the exit, `--rm` | `monitor` | `rbox run` itself, or the `-d` monitor |
//! | DNS over TCP to the host's resolvers, for pasta's UDP-only DNS forwarder | `dnsrelay` | `rbox-dns`, the monitor's fork |
//! | signal relay and terminal | `attach`, `terminal` | monitor, init, exec |
//! | an attached run that can detach: the `-d` monitor's first client | `front` | `rbox run -i` |
//! | signal, stop, pause | `control` | any later invocation |
//! | a running container's processes, from /proc | `procs` | `top`, `stats`, `pause` |
//! | healthchecks: run one, record it; the monitor's timer | `health` | `rbox healthcheck run`, monitor |
//! | `--timeout`: kill the container after N seconds | `timeout` | monitor |
//! | join a running container | `exec` | `rbox exec` and its fork |
//! | a child chrooted into a container's root (`rbox cp`) | `inroot` | its fork |
//! | the record of `rbox mount`'s FUSE servers | `mounted` | `mount`, `start`, `rm` |
//! | id maps, entering the user namespace | `userns` | every invocation |
//! | `--userns=auto`'s range: its size, the first free ids, reserved under a lock | `userns_auto` | the invocation |
//! | a container's volumes: made, filled, removed with it | `volumes` | the invocation |
//! | the process that keeps the user namespace | `pause` | `rbox-pause` |
//! | rbox as an OCI runtime: bundles, their states, the verbs | `bundle` | `rbox oci`, `rbox-runtime` |
//! | OCI hooks: run one with the state on stdin, its timeout | `hooks` | `rbox oci`, init, monitor |
//! | CDI devices, `--gpus`, `--nv`: edits of the spec | `cdi`, `nvidia` | the invocation |
//! | OCI hooks directories: hooks matched to the spec | `ocihooks` | the invocation |
//!
//! Plus `mounts` (the mount plan as data and its executor), `cgroup` (the container's cgroup
//! and its limits: as root, or where a cgroup v2 subtree is delegated), `probe` (overlay), `caps`,
//! `seccomp`, and `sys` (the only unsafe code).
//!
//! The command layer (`cmd/`) owns the command line: it hands down a [`Context`] (the global
//! options), plain [`RunOptions`], and a [`Puller`] that pulls a missing image with its own
//! progress display. Nothing here imports `cli` or `cmd` (`.ci/run` checks).

pub mod attach;
pub mod bundle;
pub mod caps;
pub mod cdi;
pub mod cgroup;
pub mod console;
pub mod container;
pub mod control;
pub mod create;
pub mod dnsrelay;
pub mod exec;
pub mod front;
pub mod health;
pub mod hooks;
pub mod init;
pub mod inroot;
pub mod launch;
pub mod logfile;
pub mod monitor;
pub mod mounted;
pub mod mounts;
pub mod netshare;
pub mod nvidia;
pub mod oci;
pub mod ocihooks;
pub mod pause;
pub mod prenet;
pub mod probe;
pub mod process;
pub mod procs;
pub mod sdnotify;
pub mod seccomp;
pub mod seccomp_ranges;
pub mod secrets;
pub mod spec;
pub mod sync;
pub mod sys;
pub mod terminal;
pub mod timeout;
pub mod userns;
pub mod userns_auto;
pub mod volumes;

use anyhow::{Context as _, Result};
use rbox_storage::Store;

pub use control::{parse_signal, signal_container, stop_container};
pub use create::{restart, run, start, Puller, RunOptions};
pub use launch::seccomp_program;

use crate::context::Context;

/// An exclusive flock on `path` (made 0600 when missing), released on drop; `None` when it
/// cannot be opened or taken, and the caller goes on unserialised.
pub fn exclusive_lock(path: &std::path::Path) -> Option<nix::fcntl::Flock<std::fs::File>> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
        .ok()?;
    nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive).ok()
}

/// Open the store, entering the user namespace first.
pub fn open_store(g: &Context) -> Result<Store> {
    // The runtime directory is decided (and checked) before anything is created or started.
    g.runtime_dir()?;
    let ids = userns::enter(g)?;
    let root = g.storage_root()?;
    let mut store =
        Store::open(&root, ids).with_context(|| format!("open storage at `{}`", root.display()))?;
    store.set_max_layer_size(max_layer_size()?);
    add_image_stores(g, &mut store);
    store.set_upper_root(upper_placement(&root).map(|p| p.dir));
    // What unpacking skipped (device nodes, unsupported entries), shown as it happens.
    store.set_warning_sink(std::sync::Arc::new(|msg: &str| tracing::warn!("{msg}")));
    Ok(store)
}

/// Adds the read-only additional image stores to `store`. One that cannot be opened (a
/// shared filesystem not mounted on this node) is skipped with a warning: the user's own
/// images stay usable.
pub fn add_image_stores(g: &Context, store: &mut Store) {
    for dir in g.additional_image_stores() {
        match Store::open_read_only(&dir) {
            Ok(s) => store.add_read_only_store(s),
            Err(e) => tracing::warn!("skipping additional image store: {e}"),
        }
    }
}

/// Where containers' upper and work directories go: `RBOX_UPPER_DIR` when set, else
/// node-local storage when the store is on a network filesystem (see
/// `rbox_storage::placement::choose_upper`), else the store. `rbox info` shows it.
pub fn upper_placement(
    store_root: &std::path::Path,
) -> Option<rbox_storage::placement::UpperPlacement> {
    let configured = std::env::var_os("RBOX_UPPER_DIR")
        .filter(|v| !v.is_empty())
        .map(std::path::PathBuf::from);
    let tmpdir = std::env::var_os("TMPDIR").map(std::path::PathBuf::from);
    rbox_storage::placement::choose_upper(
        configured.as_deref(),
        store_root,
        tmpdir.as_deref(),
        userns::host_uid(),
        rbox_storage::placement::network_fs_at,
    )
}

/// The layer size limit from `RBOX_MAX_LAYER_SIZE` (`64G`, `0` for none), else the store's
/// default.
fn max_layer_size() -> Result<Option<u64>> {
    let Some(v) = std::env::var_os("RBOX_MAX_LAYER_SIZE") else {
        return Ok(Some(rbox_storage::DEFAULT_MAX_LAYER_SIZE));
    };
    match v.to_str().and_then(rbox_storage::parse_size) {
        Some(0) => Ok(None),
        Some(n) => Ok(Some(n)),
        None => anyhow::bail!(
            "invalid RBOX_MAX_LAYER_SIZE `{}`: expected a size such as 64G or 512M, or 0 for no limit",
            v.to_string_lossy()
        ),
    }
}
