#!/usr/bin/env bash
# The FUSE overlay against kernel overlay and fuse-overlayfs (Debian's, through Podman's
# overlay.mount_program, as rootless Podman uses it where native overlay is unavailable), as
# an unprivileged user, interleaved in rounds with hyperfine (see lib.sh). Every row is one
# whole `run --rm` of a workload inside a container, so each includes the start-up cost: the
# `true` rows give that cost (and the FUSE mount's share of it) to subtract.
#
#   cargo build --release && sudo bench/run-fuse.sh      # as root: runs as $BENCH_USER
#
# Workloads: `true`; write+fsync of BIG_MB MiB; read of a BIG_MB MiB image file (first read
# in the container, then a second one: keep_cache); create, stat and delete of FILES empty
# files; extracting a tarball of FILES small files.
# Env: RBOX (default target/release/rbox), BENCH_USER (default rboxsub), ROUNDS (default 3),
# RUNS (per round and command, default 3), BIG_MB (default 1024), FILES (default 50000),
# BENCH_FS (journaled: the default as root, the work directory on a fresh journaled ext4, see
# lib.sh's journaled_fs; host: /var/tmp as it is).
# Writes bench/results/fuse-<date>.md and prints the tables.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd -P)"
repo="$(dirname "$here")"
. "$here/lib.sh"

RBOX="${RBOX:-$repo/target/release/rbox}"
ROUNDS="${ROUNDS:-3}"
RUNS="${RUNS:-3}"
BIG_MB="${BIG_MB:-1024}"
FILES="${FILES:-50000}"
for t in hyperfine podman fuse-overlayfs jq setpriv; do
    command -v "$t" >/dev/null || { echo "run-fuse: $t is not installed" >&2; exit 1; }
done
[ -x "$RBOX" ] || { echo "run-fuse: \`$RBOX\` missing: cargo build --release first" >&2; exit 1; }
if [ "$(id -u)" = 0 ]; then
    user="${BENCH_USER:-rboxsub}"
    id "$user" >/dev/null 2>&1 || { echo "run-fuse: no user $user (see .ci/run)" >&2; exit 1; }
else
    user="$(id -un)"
fi
W="$(mktemp -d /var/tmp/rbox-bench-fuse.XXXXXX)"
chmod 755 "$W"
journaled_fs "$W"
cleanup() {
    # the stores hold files of subordinate ids: remove them from inside the user namespace
    run "$W/rbox" --root "$W/user/rbox-store" --runroot "$W/user/rbox-run" unshare rm -rf "$W/user/rbox-store" 2>/dev/null || true
    run env XDG_RUNTIME_DIR="$W/user/xdg" podman --root "$W/user/podman-store" --runroot "$W/user/podman-run" unshare rm -rf "$W/user/podman-store" 2>/dev/null || true
    # the pause processes of this run (Podman's: see XDG_RUNTIME_DIR below): their mount
    # namespaces would keep journaled_fs's file system mounted
    stop_pause "$W/user/xdg/libpod/tmp/pause.pid"
    stop_pause "$W/user/rbox-run/pause.pid"
    journaled_fs_off
    rm -rf "$W" 2>/dev/null || true
}
trap cleanup EXIT
install -m 755 "$RBOX" "$W/rbox"
export BENCH_HOME="$W/home"
run() { if [ "$(id -u)" = 0 ]; then as_user "$user" "$@"; else env HOME="$BENCH_HOME" "$@"; fi; }

mkdir -p "$W/home" "$W/user/xdg"
chmod 700 "$W/user/xdg"
R="$W/user"
echo "preparing: an image with a ${BIG_MB} MiB file and a tarball of $FILES files" >&2
busybox_rootfs "$R/rootfs"
dd if=/dev/urandom of="$R/rootfs/big" bs=1M count="$BIG_MB" status=none
mkdir -p "$R/many"
(cd "$R/many" && seq 1 "$FILES" | xargs -n 1000 sh -c 'for f; do echo "$f" > "f$f"; done' sh)
tar -C "$R" -cf "$R/rootfs/many.tar" many
rm -rf "$R/many"
tar -C "$R/rootfs" -cf "$R/image.tar" .
rm -rf "$R/rootfs"
cat >"$R/containers.conf" <<CONF
[containers]
default_ulimits = ["nofile=20000:20000"]
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF
[ "$(id -u)" = 0 ] && chown -R "$user:" "$W/home" "$R"
run "$W/rbox" --root "$R/rbox-store" --runroot "$R/rbox-run" import "$R/image.tar" bench-fuse >/dev/null
# Podman's pause process (one per user and runtime directory) keeps the mount namespace of
# its first run, from before this run's file system was mounted: its own runtime directory
P="env XDG_RUNTIME_DIR=$R/xdg podman --root $R/podman-store --runroot $R/podman-run --storage-driver overlay --storage-opt overlay.mount_program=/usr/bin/fuse-overlayfs"
run env CONTAINERS_CONF="$R/containers.conf" $P import "$R/image.tar" localhost/bench-fuse >/dev/null
rm -f "$R/image.tar"

if [ "$(id -u)" = 0 ]; then
    pre="setpriv --reuid=$user --regid=$(id -g "$user") --init-groups -- env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=$BENCH_HOME CONTAINERS_CONF=$R/containers.conf"
else
    pre="env HOME=$BENCH_HOME CONTAINERS_CONF=$R/containers.conf"
fi
RB="$W/rbox --root $R/rbox-store --runroot $R/rbox-run"
declare -A work=(
    [true]="true"
    [write]="dd if=/dev/zero of=/w bs=1M count=$BIG_MB conv=fsync"
    [read]="cat /big >/dev/null"
    [read-twice]="cat /big >/dev/null; cat /big >/dev/null"
    [files]="mkdir /d && cd /d && seq 1 $FILES | xargs touch && ls -l >/dev/null && seq 1 $FILES | xargs rm"
    [untar]="tar -C / -xf /many.tar"
)
out="$here/results/fuse-$(date -u +%Y%m%d-%H%M).md"
mkdir -p "$here/results"
{
    echo "# FUSE overlay vs kernel overlay vs fuse-overlayfs"
    echo
    echo "$(machine_line); $("$W/rbox" --version); store on $(if [ -n "$loop_mount" ]; then echo "a fresh journaled ext4 (loop file)"; else findmnt -no FSTYPE --target "$W"; fi); fuse-overlayfs $(fuse-overlayfs --version 2>/dev/null | awk '/fuse-overlayfs/ {print $3; exit}'); BIG_MB=$BIG_MB FILES=$FILES"
} >"$out"
for w in true write read read-twice files untar; do
    cmd="${work[$w]}"
    json="$W/$w.json"
    interleaved "$json" "$ROUNDS" "$RUNS" 0 -- \
        -n "overlay" "$pre $RB --storage-driver=overlay run --rm --network=none bench-fuse sh -c '$cmd'" \
        -n "fuse-overlay" "$pre $RB --storage-driver=fuse-overlay run --rm --network=none bench-fuse sh -c '$cmd'" \
        -n "podman+fuse-overlayfs" "$pre $P run --rm --network=none localhost/bench-fuse sh -c '$cmd'"
    {
        echo
        echo "## $w: \`$cmd\`"
        echo
        table "$json" overlay
    } >>"$out"
done
cat "$out"
