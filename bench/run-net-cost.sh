#!/usr/bin/env bash
# What a published port costs in CPU, as an unprivileged user: iperf3 through rbox's forwarder
# (host -> a published port and back) against the host's loopback, interleaved, reporting
# CPU time per GiB moved besides Gbit/s. On a loaded machine Gbit/s swings from run to run;
# CPU per GiB holds still, so compare forwarder changes with this. Per transfer:
#  - lo_cpu: the iperf3 client + server over 127.0.0.1 (iperf3's own cpu_utilization_percent),
#  - ep_cpu: the same two through the published port,
#  - fwd_cpu: the forwarder thread (`rbox-forward` of the container's monitor, from
#    /proc/PID/task/TID/stat), and its context switches (wake-ups) per GiB.
#
#   sudo bench/run-net-cost.sh     # as root: runs rbox as $BENCH_USER
#   bench/run-net-cost.sh          # as an ordinary user
#
# Env: RBOX (binary, default target/release/rbox, else target/debug/rbox: the forwarder's own
# code is under 1% of its CPU, so a debug build measures the same), NETS (default "pasta
# slirp4netns"), ROUNDS (default 3), SIZE (iperf3 -n, default 2G), BENCH_USER (default
# rboxsub), PORT (first of two host ports, default 38711). Prints one line per transfer and
# the forwarder's monitor's memory.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd -P)"
repo="$(dirname "$here")"
. "$here/lib.sh"

RBOX="${RBOX:-$repo/target/release/rbox}"
[ -x "$RBOX" ] || RBOX="$repo/target/debug/rbox"
NETS="${NETS:-pasta slirp4netns}"
ROUNDS="${ROUNDS:-3}"
SIZE="${SIZE:-2G}"
PORT="${PORT:-38711}"
need_tools run-net-cost iperf3 jq bc ldd setpriv
[ -x "$RBOX" ] || { echo "run-net-cost: \`$RBOX\` missing: cargo build first" >&2; exit 1; }
bench_user run-net-cost
W="$(mktemp -d /tmp/rbox-bench-netcost.XXXXXX)"
chmod 755 "$W"
export BENCH_HOME="$W/home"
rbox() { run "$W/rbox" --root "$W/store" --runroot "$W/run" "$@"; }
host_srv=""
cleanup() {
    set +e
    rbox rm -f bench-net-cost >/dev/null 2>&1
    [ -n "$host_srv" ] && kill "$host_srv" 2>/dev/null && wait "$host_srv" 2>/dev/null
    rm -rf "$W" 2>/dev/null || run rm -rf "$W"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

install -m 755 "$RBOX" "$W/rbox"
mkdir -p "$W/home"
busybox_rootfs "$W/rootfs"
copy_in() { mkdir -p "$W/rootfs$(dirname "$1")" && cp -L "$1" "$W/rootfs$1"; }
copy_in /usr/bin/iperf3
for lib in $(ldd /usr/bin/iperf3 | grep -o '/[^ ]*'); do copy_in "$lib"; done
tar -C "$W/rootfs" -cf "$W/iperf3.tar" .
[ "$(id -u)" = 0 ] && chown -R "$user:" "$W"
rbox import "$W/iperf3.tar" bench-iperf3 >/dev/null

HPORT=$PORT
FPORT=$((PORT + 1))
iperf3 -s -B 127.0.0.1 -p "$HPORT" >/dev/null 2>&1 &
host_srv=$!
until iperf3 -c 127.0.0.1 -p "$HPORT" -n 1K >/dev/null 2>&1; do sleep 0.1; done

gbps() { jq -r '.end.sum_received.bits_per_second / 1e9 * 100 | round / 100'; }
# CPU ms per GiB of iperf3's client and server together
ends_cpu() {
    jq -r '(.end.cpu_utilization_percent.host_total + .end.cpu_utilization_percent.remote_total)
        / 100 * .end.sum_received.seconds * 1000 * 1073741824 / .end.sum_received.bytes | round'
}
echo "$(machine_line); $("$RBOX" --version), $(iperf3 --version | head -1), iperf3 -n $SIZE, as $user"
for net in $NETS; do
    rbox run -d --name bench-net-cost --network="$net" -p "$FPORT:5201" bench-iperf3 \
        iperf3 -s >/dev/null
    until iperf3 -c 127.0.0.1 -p "$FPORT" -n 1K >/dev/null 2>&1; do sleep 0.1; done
    pid="$(rbox inspect -f '{{.State.Pid}}' bench-net-cost)"
    mon="$(ppid_of "$pid")"
    tid="$(grep -l '^rbox-forward$' /proc/"$mon"/task/*/comm | cut -d/ -f5)"
    ticks() { awk '{print $14 + $15}' "/proc/$mon/task/$tid/stat"; }
    switches() { awk '/ctxt_switches/ {n += $2} END {print n}' "/proc/$mon/task/$tid/status"; }
    hz="$(getconf CLK_TCK)"
    for r in $(seq 1 "$ROUNDS"); do
        for dir in h2c c2h; do
            flag=""
            [ "$dir" = c2h ] && flag=-R
            lo="$(iperf3 -c 127.0.0.1 -p "$HPORT" -n "$SIZE" $flag -J)"
            t0="$(ticks)" s0="$(switches)"
            fw="$(iperf3 -c 127.0.0.1 -p "$FPORT" -n "$SIZE" $flag -J)"
            t1="$(ticks)" s1="$(switches)"
            bytes="$(echo "$fw" | jq -r .end.sum_received.bytes)"
            echo "$net round $r $dir: loopback $(echo "$lo" | gbps) Gbit/s," \
                "published $(echo "$fw" | gbps) Gbit/s; CPU ms/GiB: lo_cpu $(echo "$lo" | ends_cpu)," \
                "ep_cpu $(echo "$fw" | ends_cpu), fwd_cpu $(echo "($t1 - $t0) * 1000 / $hz * 1073741824 / $bytes" | bc);" \
                "fwd wake-ups/GiB $(echo "($s1 - $s0) * 1073741824 / $bytes" | bc)"
        done
    done
    echo "$net monitor: $(grep -E '^(VmRSS|VmHWM)' "/proc/$mon/status" | tr -s ' \t\n' ' ')"
    rbox rm -f bench-net-cost >/dev/null
done
