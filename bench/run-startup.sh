#!/usr/bin/env bash
# Container start-up time, as an unprivileged user: `true` in the same busybox root filesystem
# through rbox, bwrap, crun and podman, interleaved in rounds with hyperfine (see lib.sh); and
# `rbox oci run` against `crun run` of the same bundle (rootless, and as root when the script
# runs as root: a second table, the root bundle without a user namespace).
# Targets (issue 11): `rbox run --rm` within 1.3x of bwrap; `rbox oci run` faster than
# `crun run`; both well over 10x faster than Podman.
#
#   cargo build --release && sudo bench/run-startup.sh      # as root: runs as $BENCH_USER
#   bench/run-startup.sh                                    # as an ordinary user
#
# Env: RBOX (binary, default target/release/rbox), BENCH_USER (default rboxsub, when run as
# root), BENCH_FS (journaled, the default as root, or host: see lib.sh's journaled_fs),
# ROUNDS (default 5), RUNS (per round and command, default 20), RBOX_BASE (a second
# rbox binary, e.g. a build of the commit before a change, measured as `rbox-base` in the same
# rounds: the only fair before/after on a noisy machine; its `rbox oci run` is not measured:
# builds before 2026-11-25 refuse the ambient capabilities of `crun spec`'s bundles).
# Writes bench/results/startup-<date>.md and prints the table.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd -P)"
repo="$(dirname "$here")"
. "$here/lib.sh"

RBOX="${RBOX:-$repo/target/release/rbox}"
ROUNDS="${ROUNDS:-5}"
RUNS="${RUNS:-20}"
need_tools run-startup hyperfine bwrap crun podman jq setpriv
need_rbox run-startup
if [ -n "${RBOX_BASE:-}" ] && [ ! -x "$RBOX_BASE" ]; then
    echo "run-startup: RBOX_BASE \`$RBOX_BASE\` is not an executable" >&2
    exit 1
fi

bench_user run-startup
W="$(mktemp -d /tmp/rbox-bench-startup.XXXXXX)"
chmod 755 "$W"
# as root on a fresh journaled ext4, as run-startup-fifo.sh (lib.sh journaled_fs)
journaled_fs "$W"
cleanup() {
    # this run's pause processes: their mount namespaces would keep the file system mounted
    stop_pause "$W/user/xdg/libpod/tmp/pause.pid"
    stop_pause "$W/user/rbox-run/pause.pid"
    stop_pause "$W/user/base-run/pause.pid"
    journaled_fs_off
    rm -rf "$W" 2>/dev/null || true
}
trap cleanup EXIT
# The user must be able to execute the binary wherever the checkout is.
install -m 755 "$RBOX" "$W/rbox"
[ -n "${RBOX_BASE:-}" ] && install -m 755 "$RBOX_BASE" "$W/rbox-base"
export BENCH_HOME="$W/home"


mkdir -p "$W/home" "$W/user/bundle" "$W/user/xdg"
chmod 700 "$W/user/xdg"
busybox_rootfs "$W/user/rootfs"
tar -C "$W/user/rootfs" -cf "$W/user/busybox.tar" .
[ "$(id -u)" = 0 ] && chown -R "$user:" "$W/home" "$W/user"

R="$W/user"
echo "preparing: rbox import, podman import, crun bundle" >&2
run "$W/rbox" --root "$R/rbox-store" --runroot "$R/rbox-run" import "$R/busybox.tar" bench-busybox >/dev/null
base=()
if [ -n "${RBOX_BASE:-}" ]; then
    run "$W/rbox-base" --root "$R/base-store" --runroot "$R/base-run" import "$R/busybox.tar" bench-busybox >/dev/null
fi
podman_conf "$R/containers.conf"
# Podman with a runtime directory of its own: its pause process (one per user and runtime
# directory) keeps the mount namespace of its first run, which may predate this file system
P=(podman --root "$R/podman-store" --runroot "$R/podman-run")
run env XDG_RUNTIME_DIR="$R/xdg" CONTAINERS_CONF="$R/containers.conf" "${P[@]}" import "$R/busybox.tar" localhost/bench-busybox >/dev/null
run sh -c "cd '$R/bundle' && crun spec --rootless && ln -s ../rootfs rootfs"
# crun maps the caller's ids itself where a rootless spec names none; rbox wants them named
# in the spec, and crun takes them as well.
jq --argjson u "$(id -u "$user")" --argjson g "$(id -g "$user")" \
    '.process.terminal = false | .process.args = ["/bin/true"] | .root.path = "rootfs" | .root.readonly = true
     | .linux.uidMappings = [{containerID: 0, hostID: $u, size: 1}]
     | .linux.gidMappings = [{containerID: 0, hostID: $g, size: 1}]' \
    "$R/bundle/config.json" >"$R/bundle/config.new" && mv "$R/bundle/config.new" "$R/bundle/config.json"
[ "$(id -u)" = 0 ] && chown -R "$user:" "$R"

# Each command as the user (setpriv + env -i costs the same ~1 ms for all of them when root).
if [ "$(id -u)" = 0 ]; then
    pre="setpriv --reuid=$user --regid=$(id -g "$user") --init-groups -- env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=$BENCH_HOME"
else
    pre="env HOME=$BENCH_HOME"
fi
[ -n "${RBOX_BASE:-}" ] && base=(-n rbox-base "$pre $W/rbox-base --root $R/base-store --runroot $R/base-run run --rm --network=none bench-busybox /bin/true")
json="$W/startup.json"
interleaved "$json" "$ROUNDS" "$RUNS" 3 -- "${base[@]}" \
    -n rbox "$pre $W/rbox --root $R/rbox-store --runroot $R/rbox-run run --rm --network=none bench-busybox /bin/true" \
    -n rbox-oci "$pre $W/rbox --root $R/rbox-oci oci run --bundle $R/bundle bench-rbox" \
    -n bwrap "$pre bwrap --unshare-all --die-with-parent --ro-bind $R/rootfs / --proc /proc --dev /dev --tmpfs /tmp /bin/true" \
    -n crun "$pre crun --root $R/crun-state run --bundle $R/bundle bench-crun" \
    -n podman "$pre XDG_RUNTIME_DIR=$R/xdg CONTAINERS_CONF=$R/containers.conf ${P[*]} run --rm --network=none localhost/bench-busybox /bin/true"

# As root: the same pair on a root bundle (no user namespace), same root filesystem.
rjson=""
if [ "$(id -u)" = 0 ]; then
    RB="$W/root"
    mkdir -p "$RB/bundle"
    (cd "$RB/bundle" && crun spec && ln -s "$R/rootfs" rootfs)
    jq '.process.terminal = false | .process.args = ["/bin/true"] | .root.path = "rootfs" | .root.readonly = true' \
        "$RB/bundle/config.json" >"$RB/bundle/config.new" && mv "$RB/bundle/config.new" "$RB/bundle/config.json"
    rjson="$W/startup-root.json"
    interleaved "$rjson" "$ROUNDS" "$RUNS" 3 -- \
        -n rbox-oci "$W/rbox --root $RB/rbox-oci oci run --bundle $RB/bundle bench-rbox" \
        -n crun "crun --root $RB/crun-state run --bundle $RB/bundle bench-crun"
fi

mkdir -p "$here/results"
out="$here/results/startup-$(date -u +%Y%m%d-%H%M).md"
{
    echo "# Start-up: \`true\` in a busybox rootfs, as user $user"
    echo
    echo "$(machine_line); $("$W/rbox" --version 2>/dev/null | head -1), $(bwrap --version), $(crun --version | head -1), $(podman --version); store on $(store_fs "$W")"
    [ -n "${RBOX_BASE:-}" ] && echo "rbox-base: \`$RBOX_BASE\`; rbox: \`$RBOX\`."
    echo "$ROUNDS interleaved rounds x $RUNS runs per command (hyperfine -N, 3 warm-up runs per round)."
    echo "Rootless: \`rbox-oci\` and \`crun\` run the same bundle (\`crun spec --rootless\`, \`true\`)."
    echo
    table "$json" bwrap
    if [ -n "$rjson" ]; then
        echo
        echo "As root: \`rbox oci run\` and \`crun run\` of the same bundle (\`crun spec\`: no user namespace)."
        echo
        table "$rjson" crun
    fi
} | tee "$out"
echo >&2
echo "written: $out" >&2
