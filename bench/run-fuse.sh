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
need_tools run-fuse hyperfine podman fuse-overlayfs jq setpriv
need_rbox run-fuse
fuse_bench_setup run-fuse fuse
echo "preparing: an image with a ${BIG_MB} MiB file and a tarball of $FILES files" >&2
busybox_rootfs "$R/rootfs"
dd if=/dev/urandom of="$R/rootfs/big" bs=1M count="$BIG_MB" status=none
mkdir -p "$R/many"
(cd "$R/many" && seq 1 "$FILES" | xargs -n 1000 sh -c 'for f; do echo "$f" > "f$f"; done' sh)
tar -C "$R" -cf "$R/rootfs/many.tar" many
rm -rf "$R/many"
tar -C "$R/rootfs" -cf "$R/image.tar" .
rm -rf "$R/rootfs"
fuse_bench_import "$R/image.tar" bench-fuse

if [ "$(id -u)" = 0 ]; then
    pre="setpriv --reuid=$user --regid=$(id -g "$user") --init-groups -- env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=$BENCH_HOME CONTAINERS_CONF=$R/containers.conf"
else
    pre="env HOME=$BENCH_HOME CONTAINERS_CONF=$R/containers.conf"
fi
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
    echo "$(machine_line); $("$W/rbox" --version); store on $(store_fs "$W"); fuse-overlayfs $(fuse-overlayfs --version 2>/dev/null | awk '/fuse-overlayfs/ {print $3; exit}'); BIG_MB=$BIG_MB FILES=$FILES"
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
