//! The FUSE overlay's mount choices that its read speed depends on, checked from inside a
//! container: the root is mounted noatime (as fuse-overlayfs is for Podman), so a read
//! through the page cache does no atime bookkeeping.

use crate::util::for_each_user;

#[test]
fn fuse_overlay_root_is_mounted_noatime() {
    if !crate::fuse::fuse_usable() {
        return;
    }
    for_each_user("fusenoatime", |env| {
        env.import_busybox("busybox");
        let out = env
            .rbox()
            .args([
                "--storage-driver=fuse-overlay",
                "run",
                "--rm",
                "--network=none",
                "busybox",
                "sh",
                "-c",
                "grep ' / fuse' /proc/mounts",
            ])
            .output()
            .success()
            .text();
        assert!(out.starts_with("rbox-fuse / fuse"), "{out}");
        let opts: Vec<&str> = out.split(' ').nth(3).unwrap_or("").split(',').collect();
        assert!(opts.contains(&"noatime"), "{out}");
        assert!(opts.contains(&"rw"), "{out}");
    });
}
