#!/usr/bin/env bash
# Time to the first process of a single-file squashfs image (`rbox run --image-file`, mounted
# by squashfuse without unpacking) against unpacking the same image into a store first (the
# `rbox load`/`pull` path: every layer written out as files) and then running it, as an
# unprivileged user, interleaved in rounds with hyperfine (see lib.sh). The image is busybox
# plus SIZE_MB MiB of files (random bytes, and compressible text), so that unpacking has real
# work to do. Target (issue 11): a squashfs image ready in under 0.5 s.
#
#   cargo build --release && sudo bench/run-sqfs.sh      # as root: runs as $BENCH_USER
#
# Rows (each one whole `run --rm ... true`):
#   image-file            the squashfs file, in the page cache
#   image-file, cold      the same, the file's pages dropped first (dd iflag=nocache), as on
#                         a node reading it from a shared filesystem for the first time
#   store                 the image already unpacked in the store (the floor of a start)
#   load + run            `rbox load` of the image's docker-archive into an empty store,
#                         then the run: what a node without the unpacked image pays
# Apptainer's SIF flow is the natural comparison; it is not packaged for Debian 12, so it is
# left out. Env: RBOX (default target/release/rbox), BENCH_USER (default rboxsub), ROUNDS
# (default 2), RUNS (per round and command, default 3), SIZE_MB (default 1024), BENCH_NOTE
# (a line about the conditions, written into the results).
# Writes bench/results/sqfs-<date>.md and prints the table.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd -P)"
repo="$(dirname "$here")"
. "$here/lib.sh"

RBOX="${RBOX:-$repo/target/release/rbox}"
ROUNDS="${ROUNDS:-2}"
RUNS="${RUNS:-3}"
SIZE_MB="${SIZE_MB:-1024}"
need_tools run-sqfs hyperfine jq setpriv squashfuse sqfstar unsquashfs
need_rbox run-sqfs
bench_user run-sqfs
W="$(mktemp -d /var/tmp/rbox-bench-sqfs.XXXXXX)"
chmod 755 "$W"
cleanup() {
    # the stores hold files of subordinate ids: remove them from inside the user namespace
    for s in store load; do
        run "$W/rbox" --root "$W/user/$s" --runroot "$W/user/$s-run" unshare rm -rf "$W/user/$s" 2>/dev/null || true
    done
    rm -rf "$W" 2>/dev/null || true
}
trap cleanup EXIT
install -m 755 "$RBOX" "$W/rbox"
export BENCH_HOME="$W/home"

mkdir -p "$W/home" "$W/user"
R="$W/user"
echo "preparing: an image of busybox and ${SIZE_MB} MiB of files" >&2
busybox_rootfs "$R/rootfs"
mkdir -p "$R/rootfs/data/bin" "$R/rootfs/data/text"
# three quarters random bytes in 4 MiB files, a quarter text in 64 KiB files
for i in $(seq 1 $((SIZE_MB * 3 / 4 / 4))); do
    head -c $((4 << 20)) /dev/urandom >"$R/rootfs/data/bin/f$i"
done
seq 1 $((SIZE_MB * 1024 * 1024 / 4 / 7)) | split -a 4 -b 65536 - "$R/rootfs/data/text/t"
tar -C "$R/rootfs" -cf "$R/image.tar" .
rm -rf "$R/rootfs"
[ "$(id -u)" = 0 ] && chown -R "$user:" "$W/home" "$R"
RS="$W/rbox --root $R/store --runroot $R/store-run"
RL="$W/rbox --root $R/load --runroot $R/load-run"
run $RS import "$R/image.tar" bench-sqfs >/dev/null
rm -f "$R/image.tar"
run $RS save -o "$R/image.docker.tar" bench-sqfs
t0=$(date +%s.%N)
run $RS save --format squashfs -o "$R/image.sqfs" bench-sqfs
t1=$(date +%s.%N)
save_s=$(awk "BEGIN { printf \"%.1f\", $t1 - $t0 }")
sqfs_mb=$(( $(stat -c %s "$R/image.sqfs") >> 20 ))
tar_mb=$(( $(stat -c %s "$R/image.docker.tar") >> 20 ))

if [ "$(id -u)" = 0 ]; then
    pre="setpriv --reuid=$user --regid=$(id -g "$user") --init-groups -- env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=$BENCH_HOME"
else
    pre="env HOME=$BENCH_HOME"
fi
RUN="run --rm --network=none"
json="$W/sqfs.json"
# one --prepare per command, in the order of the commands
interleaved "$json" "$ROUNDS" "$RUNS" 1 -- \
    --prepare "true" -n "image-file" "$pre $RS $RUN --image-file $R/image.sqfs true" \
    --prepare "true" -n "store" "$pre $RS $RUN bench-sqfs true" \
    --prepare "dd if=$R/image.sqfs iflag=nocache count=0 status=none" \
    -n "image-file, cold" "$pre $RS $RUN --image-file $R/image.sqfs true" \
    --prepare "$pre $RL unshare rm -rf $R/load $R/load-run" \
    -n "load + run" "$pre sh -c '$RL load -q -i $R/image.docker.tar >/dev/null && $RL $RUN bench-sqfs true'"

out="$here/results/sqfs-$(date -u +%Y%m%d-%H%M).md"
mkdir -p "$here/results"
{
    echo "# Time to first process: squashfs image file vs unpacking into a store"
    echo
    echo "$(machine_line); $("$W/rbox" --version); $(squashfuse --help 2>&1 | head -1); as $user; SIZE_MB=$SIZE_MB"
    echo
    [ -n "${BENCH_NOTE:-}" ] && { echo "Note: $BENCH_NOTE"; echo; }
    echo "Image: busybox + ${SIZE_MB} MiB of files; docker-archive ${tar_mb} MiB, squashfs (gzip) ${sqfs_mb} MiB, written by \`rbox save --format squashfs\` in ${save_s} s."
    echo
    table "$json" image-file
} >"$out"
cat "$out"
