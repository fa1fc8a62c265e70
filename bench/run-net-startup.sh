#!/usr/bin/env bash
# The start-up a network adds, as an unprivileged user (issue 8: "the start-up added by the
# network under Podman's"), alone: `run --rm IMG true` with --network=none, pasta and
# slirp4netns for rbox, none and slirp4netns for Podman (4.3 has no pasta), interleaved in
# hyperfine rounds (lib.sh). With RBOX_BASE, that binary's pasta run too, for an A/B of a
# change. bench/run-net.sh measures the same among its throughput runs; this one takes a
# minute and needs neither iperf3 nor free ports.
#
#   sudo bench/run-net-startup.sh     # as root: runs as $BENCH_USER
#   bench/run-net-startup.sh          # as an ordinary user
#
# Env: RBOX (default target/release/rbox, else target/debug/rbox), RBOX_BASE (optional),
# BENCH_USER (default rboxsub), ROUNDS and RUNS (hyperfine rounds, runs per round and
# command: default 3 and 10), NO_PODMAN=1. Writes bench/results/net-startup-<date>.md.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd -P)"
repo="$(dirname "$here")"
. "$here/lib.sh"

RBOX="${RBOX:-$repo/target/release/rbox}"
[ -x "$RBOX" ] || RBOX="$repo/target/debug/rbox"
ROUNDS="${ROUNDS:-3}"
RUNS="${RUNS:-10}"
tools=(hyperfine jq setpriv pasta slirp4netns)
[ -n "${NO_PODMAN:-}" ] || tools+=(podman)
need_tools run-net-startup "${tools[@]}"
bench_user run-net-startup
W="$(mktemp -d /tmp/rbox-bench-netstart.XXXXXX)"
chmod 755 "$W"
X="$(mktemp -d /tmp/rbns.XXXXXX)"
export BENCH_HOME="$W/home"
R="$W/user"
P=(podman --root "$R/podman-store" --runroot "$R/podman-run")
pod() { run env XDG_RUNTIME_DIR="$X" CONTAINERS_CONF="$R/containers.conf" "${P[@]}" "$@"; }
cleanup() {
    set +e
    if [ -s "$X/libpod/tmp/pause.pid" ]; then
        kill "$(cat "$X/libpod/tmp/pause.pid")" 2>/dev/null
    fi
    rm -rf "$W" "$X" 2>/dev/null || run rm -rf "$W" "$X" 2>/dev/null
    rm -rf "$W" "$X" 2>/dev/null
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$W/home" "$R"
chmod 700 "$X"
install -m 755 "$RBOX" "$W/rbox"
[ -z "${RBOX_BASE:-}" ] || install -m 755 "$RBOX_BASE" "$W/rbox-base"
busybox_rootfs "$R/rootfs"
tar -C "$R/rootfs" -cf "$R/bb.tar" .
podman_conf "$R/containers.conf"
[ "$(id -u)" = 0 ] && chown -R "$user:" "$W/home" "$R" "$X"
run "$W/rbox" --root "$R/rbox-store" --runroot "$R/rbox-run" import "$R/bb.tar" bench-bb >/dev/null
[ -n "${NO_PODMAN:-}" ] || pod import -q "$R/bb.tar" localhost/bench-bb >/dev/null

if [ "$(id -u)" = 0 ]; then
    pre="setpriv --reuid=$user --regid=$(id -g "$user") --init-groups -- env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=$BENCH_HOME"
else
    pre="env HOME=$BENCH_HOME"
fi
rb="$pre $W/rbox --root $R/rbox-store --runroot $R/rbox-run run --rm"
cmds=(-n "rbox none" "$rb --network=none bench-bb /bin/true"
    -n "rbox pasta" "$rb --network=pasta bench-bb /bin/true"
    -n "rbox slirp4netns" "$rb --network=slirp4netns bench-bb /bin/true")
if [ -n "${RBOX_BASE:-}" ]; then
    cmds+=(-n "rbox-base pasta" "$pre $W/rbox-base --root $R/rbox-store --runroot $R/rbox-run run --rm --network=pasta bench-bb /bin/true")
fi
if [ -z "${NO_PODMAN:-}" ]; then
    pd="$pre XDG_RUNTIME_DIR=$X CONTAINERS_CONF=$R/containers.conf ${P[*]} run --rm"
    cmds+=(-n "podman none" "$pd --network=none localhost/bench-bb /bin/true"
        -n "podman slirp4netns" "$pd --network=slirp4netns localhost/bench-bb /bin/true")
fi
json="$W/startup.json"
interleaved "$json" "$ROUNDS" "$RUNS" 2 -- "${cmds[@]}"

mkdir -p "$here/results"
out="$here/results/net-startup-$(date -u +%Y%m%d-%H%M).md"
{
    echo "# Start-up added by the network: \`run --rm IMG true\`, as user $user"
    echo
    echo "$(machine_line), load average $(cut -d' ' -f1-3 /proc/loadavg); $("$W/rbox" --version 2>/dev/null | head -1) ($RBOX$([ -n "${RBOX_BASE:-}" ] && echo ", base $RBOX_BASE")), pasta $(dpkg-query -W -f '${Version}' passt 2>/dev/null || echo '?'), $(slirp4netns --version | head -1)$([ -n "${NO_PODMAN:-}" ] || echo ", $(podman --version)")"
    echo
    echo "$ROUNDS interleaved rounds x $RUNS runs:"
    echo
    table "$json" "rbox none"
    echo
    echo "Added by the network over the same engine's --network=none (difference of the means):"
    echo
    jq -r 'map({key: .command, value: (.times | add / length * 1000)}) | from_entries
      | "- rbox pasta: +\(.["rbox pasta"] - .["rbox none"] | round) ms; rbox slirp4netns: +\(.["rbox slirp4netns"] - .["rbox none"] | round) ms"
        + (if .["rbox-base pasta"] then "; base pasta: +\(.["rbox-base pasta"] - .["rbox none"] | round) ms" else "" end)
        + (if .["podman none"] then "; podman slirp4netns: +\(.["podman slirp4netns"] - .["podman none"] | round) ms" else "" end)' "$json"
} | tee "$out"
echo >&2
echo "written: $out" >&2
