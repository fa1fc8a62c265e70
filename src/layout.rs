//! Where the `rbox` binary's own files lie, in the store and in the runtime directory: pure
//! functions of a directory and a name, so every reader and writer (completion included,
//! which must stay lock-free and fast) builds a path the same way. Which store root and which
//! runtime directory is [`crate::paths`]'s decision; the store's own files (blobs, layers,
//! images, names, a container's upper/work/rootfs, the overlay probe) are rbox-storage's,
//! reached through `Store` and `ContainerDir`. The whole layout, both sides, is written down
//! in rbox-storage's crate documentation (`storage/src/lib.rs`); keep the two in step.
//!
//! Nothing here touches the filesystem.

use std::path::{Path, PathBuf};

// ---- the store (`--root`) ----

/// `containers/`: one directory per container, shared with rbox-storage (`ContainerDir`).
pub fn containers_dir(root: &Path) -> PathBuf {
    root.join("containers")
}

/// `containers/<id>/`: the container's directory.
pub fn container_dir(root: &Path, id: &str) -> PathBuf {
    containers_dir(root).join(id)
}

/// `containers/<id>/container.json`: the durable container record.
pub fn container_record(root: &Path, id: &str) -> PathBuf {
    container_dir(root, id).join("container.json")
}

/// `containers/<id>/config.json`: the container's OCI runtime spec, what the runtime runs.
pub fn oci_config(root: &Path, id: &str) -> PathBuf {
    container_dir(root, id).join("config.json")
}

/// `containers/<id>/health.json`: the results of the container's healthcheck.
pub fn health(root: &Path, id: &str) -> PathBuf {
    container_dir(root, id).join("health.json")
}

/// `containers/<id>/ctr.log`: the output of a detached container.
pub fn container_log(root: &Path, id: &str) -> PathBuf {
    container_dir(root, id).join("ctr.log")
}

/// `containers/<id>/monitor.log`: what the monitor of a detached container logs (its own
/// events and the errors it cannot report to anyone).
pub fn monitor_log(root: &Path, id: &str) -> PathBuf {
    container_dir(root, id).join("monitor.log")
}

/// The files `containers/<id>/` holds for the container's /etc/hosts, /etc/hostname and
/// /etc/resolv.conf, in that order, given the container's directory.
pub fn etc_files(container_dir: &Path) -> [PathBuf; 3] {
    [
        container_dir.join("hosts"),
        container_dir.join("hostname"),
        container_dir.join("resolv.conf"),
    ]
}

/// `containers/<id>/secrets/`, given the container's directory: the copies of its
/// `--secret`s, made at create (see `runtime::secrets`).
pub fn container_secrets(container_dir: &Path) -> PathBuf {
    container_dir.join("secrets")
}

/// `containers/<id>/secrets/<n>`: the copy of the container's `n`th `--secret`.
pub fn container_secret(container_dir: &Path, n: usize) -> PathBuf {
    container_secrets(container_dir).join(n.to_string())
}

/// `container-names/`: one file per container name, holding the container's id.
pub fn container_names_dir(root: &Path) -> PathBuf {
    root.join("container-names")
}

/// `container-names/<name>`.
pub fn container_name(root: &Path, name: &str) -> PathBuf {
    container_names_dir(root).join(name)
}

/// `mnt/`: the one mount point every container assembles its root on, each in its own mount
/// namespace.
pub fn mount_point(root: &Path) -> PathBuf {
    root.join("mnt")
}

/// `cache/seccomp/`: compiled seccomp programs (see `runtime::seccomp`), in the store because
/// it is private to its owner.
pub fn seccomp_cache(root: &Path) -> PathBuf {
    root.join("cache").join("seccomp")
}

/// `run/`: the runtime directory when `/tmp/rbox-run-UID` belongs to another user.
pub fn store_runtime_dir(root: &Path) -> PathBuf {
    root.join("run")
}

// ---- the runtime directory (`--runroot`) ----

/// `containers/<id>.json` in the runtime directory: the live state of a container's current
/// start.
pub fn live_state(runtime_dir: &Path, id: &str) -> PathBuf {
    runtime_dir.join("containers").join(format!("{id}.json"))
}

/// `containers/<id>.exec/` in the runtime directory: one empty file per `exec -d` session of
/// the container's current start, named by the session's id (`inspect`'s ExecIDs).
pub fn exec_sessions(runtime_dir: &Path, id: &str) -> PathBuf {
    runtime_dir.join("containers").join(format!("{id}.exec"))
}

/// `containers/<id>.pid` in the runtime directory: the pid of a detached container's monitor
/// while it holds the container (a systemd unit's PIDFile).
pub fn monitor_pid(runtime_dir: &Path, id: &str) -> PathBuf {
    runtime_dir.join("containers").join(format!("{id}.pid"))
}

/// `containers/<id>.stop` or `.restart` in the runtime directory: what a user asked of a
/// running container (`rbox stop`, `rbox restart`), for its monitor to read when the
/// container's command exits, before its restart policy.
pub fn request(runtime_dir: &Path, id: &str, what: &str) -> PathBuf {
    runtime_dir.join("containers").join(format!("{id}.{what}"))
}

/// `attach/<short id>` in the runtime directory: the attach socket of a detached container's
/// monitor (the short id: a unix socket path must fit in 108 bytes).
pub fn attach_socket(runtime_dir: &Path, id: &str) -> PathBuf {
    runtime_dir.join("attach").join(&id[..id.len().min(12)])
}

/// `net/<short id>/` in the runtime directory: the network helper's files (slirp4netns's API
/// socket, pasta's pid file) while the container runs. The id's first 12 digits: a unix
/// socket path must fit in 108 bytes.
pub fn network_dir(runtime_dir: &Path, id: &str) -> PathBuf {
    runtime_dir.join("net").join(&id[..id.len().min(12)])
}

/// `pause.pid` in the runtime directory: the pid of the process keeping rbox's user namespace.
pub fn pause_pid(runtime_dir: &Path) -> PathBuf {
    runtime_dir.join("pause.pid")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The paths documented in rbox-storage's crate documentation, exactly.
    #[test]
    fn layout_gives_the_documented_paths() {
        let s = Path::new("/s");
        let r = Path::new("/r");
        let p = |x: &str| PathBuf::from(x);
        assert_eq!(containers_dir(s), p("/s/containers"));
        assert_eq!(container_dir(s, "abc"), p("/s/containers/abc"));
        assert_eq!(
            container_record(s, "abc"),
            p("/s/containers/abc/container.json")
        );
        assert_eq!(oci_config(s, "abc"), p("/s/containers/abc/config.json"));
        assert_eq!(container_log(s, "abc"), p("/s/containers/abc/ctr.log"));
        assert_eq!(monitor_log(s, "abc"), p("/s/containers/abc/monitor.log"));
        assert_eq!(
            etc_files(&container_dir(s, "abc")),
            [
                p("/s/containers/abc/hosts"),
                p("/s/containers/abc/hostname"),
                p("/s/containers/abc/resolv.conf"),
            ]
        );
        assert_eq!(
            container_secret(&container_dir(s, "abc"), 1),
            p("/s/containers/abc/secrets/1")
        );
        assert_eq!(container_names_dir(s), p("/s/container-names"));
        assert_eq!(container_name(s, "web"), p("/s/container-names/web"));
        assert_eq!(mount_point(s), p("/s/mnt"));
        assert_eq!(seccomp_cache(s), p("/s/cache/seccomp"));
        assert_eq!(store_runtime_dir(s), p("/s/run"));
        assert_eq!(live_state(r, "abc"), p("/r/containers/abc.json"));
        assert_eq!(pause_pid(r), p("/r/pause.pid"));
        assert_eq!(network_dir(r, &"ab".repeat(32)), p("/r/net/abababababab"));
    }
}
