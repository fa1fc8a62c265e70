#!/usr/bin/env bash
# Networking, as an unprivileged user, in one run (issue 8):
#  1. throughput with iperf3 (Gbit/s, both directions), interleaved in rounds: the host's own
#     loopback (the baseline); host -> a published port (`-d -p PORT:5201`) for rbox pasta, rbox
#     slirp4netns (rbox's forwarder), rbox slirp4netns:port_handler=slirp4netns, Podman
#     slirp4netns (its default port handler, rootlessport) and Podman
#     slirp4netns:port_handler=slirp4netns; container -> an iperf3 server on the host's
#     127.0.0.1 for rbox pasta (the gateway address), rbox and Podman
#     slirp4netns:allow_host_loopback=true (10.0.2.2). Podman 4.3 has no pasta (4.4 added it).
#  2. the start-up time a network adds over --network=none (hyperfine, interleaved: lib.sh);
#  3. the resident memory (VmRSS, VmHWM, Pss) of rbox's monitor (the parent of the container's
#     init, with the port forwarder in it) and its network helper, against Podman's conmon +
#     rootlessport + slirp4netns, each with a published port that has just served a transfer.
# Targets: published ports >= 0.9x host loopback (client address kept); every other path >=
# Podman's on the same backend; the monitor under 5 MB RSS; the start-up a network adds under
# Podman's.
#
#   sudo bench/run-net.sh          # as root: runs as $BENCH_USER (needs /dev/net/tun 0666)
#   bench/run-net.sh               # as an ordinary user
#
# The image is built offline: a busybox root (lib.sh) plus the host's iperf3 and the shared
# libraries ldd lists for it, imported with `rbox import` and `podman import`.
# Env: RBOX (binary, default target/release/rbox), BENCH_USER (default rboxsub, when run as
# root), ROUNDS (throughput rounds, default 3), SECONDS_PER_TEST (iperf3 -t, default 5),
# PORT_BASE (first host port used, default 38500; it uses 6 from there), START_ROUNDS and
# START_RUNS (start-up hyperfine rounds and runs per round and command, default 3 and 10),
# BENCH_SHOW=1 (hyperfine shows each command's output).
# Writes bench/results/net-<date>.md and prints the tables.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd -P)"
repo="$(dirname "$here")"
. "$here/lib.sh"

RBOX="${RBOX:-$repo/target/release/rbox}"
ROUNDS="${ROUNDS:-3}"
T="${SECONDS_PER_TEST:-5}"
PORT_BASE="${PORT_BASE:-38500}"
START_ROUNDS="${START_ROUNDS:-3}"
START_RUNS="${START_RUNS:-10}"
need_tools run-net hyperfine podman slirp4netns pasta iperf3 jq setpriv ldd
need_rbox run-net
[ -r /dev/net/tun ] && [ -w /dev/net/tun ] ||
    { echo "run-net: \`/dev/net/tun\` is not usable: chmod 666 /dev/net/tun" >&2; exit 1; }

bench_user run-net
W="$(mktemp -d /tmp/rbox-bench-net.XXXXXX)"
chmod 755 "$W"
# Podman's runtime dir: short, as slirp4netns' API socket path in it must fit in 108 bytes.
X="$(mktemp -d /tmp/rbn.XXXXXX)"
export BENCH_HOME="$W/home"
R="$W/user"
rbox() { run "$W/rbox" --root "$R/rbox-store" --runroot "$R/rbox-run" "$@"; }
P=(podman --root "$R/podman-store" --runroot "$R/podman-run")
# Podman gets a runtime dir of its own, so that its rootless pause process (and netns files)
# are this run's alone and can go at the end without touching anyone else's.
pod() { run env XDG_RUNTIME_DIR="$X" CONTAINERS_CONF="$R/containers.conf" "${P[@]}" "$@"; }

# Everything started here goes at exit: the containers (by name), the host's iperf3 server
# (by pid), then the work dir.
names=()
host_srv=""
cleanup() {
    set +e
    for n in "${names[@]}"; do
        case "$n" in
        rbox:*) rbox rm -f "${n#rbox:}" >/dev/null 2>&1 ;;
        podman:*) pod rm -f -t 0 "${n#podman:}" >/dev/null 2>&1 ;;
        esac
    done
    [ -n "$host_srv" ] && kill "$host_srv" 2>/dev/null && wait "$host_srv" 2>/dev/null
    # Podman leaves its rootless pause process behind: this run's own (see pod()).
    if [ -s "$X/libpod/tmp/pause.pid" ]; then
        kill "$(cat "$X/libpod/tmp/pause.pid")" 2>/dev/null
    fi
    rm -rf "$W" "$X" 2>/dev/null || run rm -rf "$W" "$X" 2>/dev/null
    rm -rf "$W" "$X" 2>/dev/null
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for port in $(seq "$PORT_BASE" $((PORT_BASE + 5))); do
    if ss -Htln "sport = :$port" 2>/dev/null | grep -q .; then
        echo "run-net: port $port is in use: set PORT_BASE to a free range of 6 ports" >&2
        exit 1
    fi
done
install -m 755 "$RBOX" "$W/rbox"
mkdir -p "$W/home" "$R"
chmod 700 "$X"

# The image: busybox + iperf3 and its libraries at the host's paths.
busybox_rootfs "$R/rootfs"
copy_in() { mkdir -p "$R/rootfs$(dirname "$1")" && cp -L "$1" "$R/rootfs$1"; }
copy_in /usr/bin/iperf3
for lib in $(ldd /usr/bin/iperf3 | grep -o '/[^ ]*'); do copy_in "$lib"; done
tar -C "$R/rootfs" -cf "$R/iperf3.tar" .
podman_conf "$R/containers.conf"
[ "$(id -u)" = 0 ] && chown -R "$user:" "$W/home" "$R" "$X"
echo "preparing: rbox import, podman import" >&2
rbox import "$R/iperf3.tar" bench-iperf3 >/dev/null
pod import -q "$R/iperf3.tar" localhost/bench-iperf3 >/dev/null
IMG=bench-iperf3
PIMG=localhost/bench-iperf3

# The address the host's loopback has from inside a pasta container: the default gateway.
gw="$(rbox run --rm --network=pasta "$IMG" ip route | awk '/^default via/ {print $3; exit}')"
[ -n "$gw" ] || { echo "run-net: no default route in a --network=pasta container" >&2; exit 1; }

# iperf3_gbps JSON DIRECTION-LABEL: Gbit/s received, from iperf3 -J output on stdin.
gbps() { jq -r '.end.sum_received.bits_per_second / 1e9 | . * 1000 | round / 1000'; }

# wait_server CMD...: run a 1 KiB iperf3 transfer until it works (the server is up and, for a
# published port, reachable through the forwarder), at most 30 s.
wait_server() {
    local deadline=$((SECONDS + 30))
    until "$@" -n 1K >/dev/null 2>&1; do
        [ "$SECONDS" -lt "$deadline" ] || { echo "run-net: no iperf3 server answered: $*" >&2; return 1; }
        sleep 0.1
    done
}

# measure CMD...: one iperf3 -J test, retried (bounded) when the server is still finishing
# the previous one ("the server is busy"); prints Gbit/s, or "fail" (counted in the table).
measure() {
    local out i
    for i in 1 2 3 4 5; do
        if out="$("$@" -t "$T" -J 2>/dev/null)" && [ -n "$out" ]; then
            v="$(echo "$out" | gbps 2>/dev/null)" && [ -n "$v" ] && [ "$v" != null ] && { echo "$v"; return 0; }
        fi
        sleep 0.2
    done
    echo "run-net: iperf3 kept failing: $*" >&2
    echo "$out" | jq -r '.error // empty' >&2 2>/dev/null || true
    echo fail
}

# The host's iperf3 server on 127.0.0.1 (baseline and container -> host).
HPORT=$((PORT_BASE))
# Started without a function or subshell around it, so that $! is iperf3's own pid.
if [ "$(id -u)" = 0 ]; then
    setpriv --reuid="$user" --regid="$(id -g "$user")" --init-groups -- env -i PATH="$PATH" \
        HOME="$BENCH_HOME" iperf3 -s -B 127.0.0.1 -p "$HPORT" >/dev/null 2>&1 &
else
    iperf3 -s -B 127.0.0.1 -p "$HPORT" >/dev/null 2>&1 &
fi
host_srv=$!
wait_server run iperf3 -c 127.0.0.1 -p "$HPORT"

# Published ports: one container each, serving through all rounds.
pub_paths=(rbox-pasta rbox-slirp4netns rbox-slirp4netns-ph podman-rootlessport podman-slirp4netns-ph)
declare -A pub_net pub_port pub_engine
pub_net[rbox-pasta]=pasta
pub_net[rbox-slirp4netns]=slirp4netns
pub_net[rbox-slirp4netns-ph]=slirp4netns:port_handler=slirp4netns
pub_net[podman-rootlessport]=slirp4netns
pub_net[podman-slirp4netns-ph]=slirp4netns:port_handler=slirp4netns
i=1
for p in "${pub_paths[@]}"; do
    pub_port[$p]=$((PORT_BASE + i))
    i=$((i + 1))
    name="bench-net-$p"
    if [ "${p%%-*}" = rbox ]; then
        names+=("rbox:$name")
        rbox run -d --name "$name" --network="${pub_net[$p]}" -p "${pub_port[$p]}:5201" "$IMG" \
            iperf3 -s --forceflush >/dev/null
    else
        names+=("podman:$name")
        pod run -d --name "$name" --network="${pub_net[$p]}" -p "${pub_port[$p]}:5201" "$PIMG" \
            iperf3 -s --forceflush >/dev/null
    fi
    wait_server run iperf3 -c 127.0.0.1 -p "${pub_port[$p]}"
done

# Container -> host: a new container per test, client inside.
declare -A ctr_cmd
ctr_cmd[rbox-pasta]="rbox run --rm --network=pasta $IMG iperf3 -c $gw -p $HPORT"
ctr_cmd[rbox-slirp4netns-hostlo]="rbox run --rm --network=slirp4netns:allow_host_loopback=true $IMG iperf3 -c 10.0.2.2 -p $HPORT"
ctr_cmd[podman-slirp4netns-hostlo]="pod run --rm --network=slirp4netns:allow_host_loopback=true $PIMG iperf3 -c 10.0.2.2 -p $HPORT"
ctr_paths=(rbox-pasta rbox-slirp4netns-hostlo podman-slirp4netns-hostlo)

# Throughput rounds. Results: lines "KIND PATH DIRECTION GBPS" in $W/tp.
# DIRECTION: h2c (host sends to the container), c2h (the container sends to the host).
: >"$W/tp"
for r in $(seq 1 "$ROUNDS"); do
    echo "--- throughput round $r/$ROUNDS" >&2
    for d in h2c c2h; do
        rev=()
        [ "$d" = c2h ] && rev=(-R)
        echo "loopback host $d $(measure run iperf3 -c 127.0.0.1 -p "$HPORT" "${rev[@]}")" >>"$W/tp"
        for p in "${pub_paths[@]}"; do
            echo "published $p $d $(measure run iperf3 -c 127.0.0.1 -p "${pub_port[$p]}" "${rev[@]}")" >>"$W/tp"
        done
        # Client in the container: sending is c2h, -R is h2c.
        rev=()
        [ "$d" = h2c ] && rev=(-R)
        for p in "${ctr_paths[@]}"; do
            # shellcheck disable=SC2086 # the command line is words
            echo "to-host $p $d $(measure ${ctr_cmd[$p]} "${rev[@]}")" >>"$W/tp"
        done
    done
    tail -n $((2 * (1 + ${#pub_paths[@]} + ${#ctr_paths[@]}))) "$W/tp" | sed 's/^/  /' >&2
done

# The client address each published-port server saw (from its own log).
declare -A seen
for p in "${pub_paths[@]}"; do
    if [ "${p%%-*}" = rbox ]; then l="$(rbox logs "bench-net-$p" 2>/dev/null || true)"; else l="$(pod logs "bench-net-$p" 2>/dev/null || true)"; fi
    seen[$p]="$(echo "$l" | awk '/Accepted connection from/ {a=$4} END {sub(",", "", a); print a}')"
done

# Memory: each published-port container in turn is the only one of its engine's kind left,
# so its helpers can be told apart: rbox's monitor is the parent of the container's init,
# its network helper (pasta, slirp4netns) the monitor's other child; Podman's conmon is the
# parent of the init, slirp4netns runs with the container's netns path, rootlessport is the
# process whose argv[0] is rootlessport (with its child).
uid="$(id -u "$user")"
user_pids() { # processes of the bench user, "PID ARGV0" (argv0 basename)
    local f p a
    for f in /proc/[0-9]*; do
        p="${f#/proc/}"
        [ "$(stat -c %u "$f" 2>/dev/null)" = "$uid" ] || continue
        a="$(tr '\0' '\n' <"$f/cmdline" 2>/dev/null | head -1)" || continue
        echo "$p ${a##*/}"
    done
}
: >"$W/mem"
for p in "${pub_paths[@]}"; do
    name="bench-net-$p"
    procs=()
    if [ "${p%%-*}" = rbox ]; then
        pid="$(rbox inspect -f '{{.State.Pid}}' "$name")"
        mon="$(ppid_of "$pid")"
        procs+=("monitor:$mon")
        for c in $(cat "/proc/$mon/task/"*/children 2>/dev/null); do
            [ "$c" = "$pid" ] || procs+=("$(tr '\0' '\n' <"/proc/$c/cmdline" | head -1 | xargs basename):$c")
        done
    else
        pid="$(pod inspect -f '{{.State.Pid}}' "$name")"
        procs+=("conmon:$(ppid_of "$pid")")
        ns="$(pod inspect -f '{{.NetworkSettings.SandboxKey}}' "$name")"
        while read -r q a; do
            case "$a" in
            slirp4netns) grep -qF "$ns" "/proc/$q/cmdline" 2>/dev/null && procs+=("slirp4netns:$q") ;;
            rootlessport*) procs+=("$a:$q") ;;
            esac
        done < <(user_pids)
    fi
    IFS='|' read -r tot_rss tot_pss line <<<"$(mem_sum "${procs[@]}")"
    echo "$p $tot_rss $tot_pss$line" >>"$W/mem"
    # Done with it: the next one is alone.
    if [ "${p%%-*}" = rbox ]; then rbox rm -f "$name" >/dev/null; else pod rm -f -t 0 "$name" >/dev/null; fi
done

# Start-up time added by the network.
if [ "$(id -u)" = 0 ]; then
    pre="setpriv --reuid=$user --regid=$(id -g "$user") --init-groups -- env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=$BENCH_HOME"
else
    pre="env HOME=$BENCH_HOME"
fi
rb="$pre $W/rbox --root $R/rbox-store --runroot $R/rbox-run run --rm"
pd="$pre XDG_RUNTIME_DIR=$X CONTAINERS_CONF=$R/containers.conf ${P[*]} run --rm"
json="$W/startup.json"
interleaved "$json" "$START_ROUNDS" "$START_RUNS" 2 -- \
    -n "rbox none" "$rb --network=none $IMG /bin/true" \
    -n "rbox pasta" "$rb --network=pasta $IMG /bin/true" \
    -n "rbox slirp4netns" "$rb --network=slirp4netns $IMG /bin/true" \
    -n "podman none" "$pd --network=none $PIMG /bin/true" \
    -n "podman slirp4netns" "$pd --network=slirp4netns $PIMG /bin/true"

# The tables.
stats() { # KIND PATH DIR -> "mean min max"
    awk -v k="$1" -v p="$2" -v d="$3" '$1==k && $2==p && $3==d && $4=="fail" {f++}
        $1==k && $2==p && $3==d && $4!="fail" {s+=$4; n++; if (n==1||$4<mn) mn=$4; if ($4>mx) mx=$4}
        END {if (n) printf "%.2f %.2f %.2f%s\n", s/n, mn, mx, (f ? "," f "-failed" : ""); else print "- - -"}' "$W/tp"
}
read -r base_h2c _ _ <<<"$(stats loopback host h2c)"
read -r base_c2h _ _ <<<"$(stats loopback host c2h)"
row() { # KIND PATH LABEL EXTRA
    local m1 n1 x1 m2 n2 x2
    read -r m1 n1 x1 <<<"$(stats "$1" "$2" h2c)"
    read -r m2 n2 x2 <<<"$(stats "$1" "$2" c2h)"
    echo "| $3 | $m1 ($n1-$x1) | $(awk -v a="$m1" -v b="$base_h2c" 'BEGIN {printf "%.2f", a/b}') | $m2 ($n2-$x2) | $(awk -v a="$m2" -v b="$base_c2h" 'BEGIN {printf "%.2f", a/b}') | $4 |"
}
declare -A label
label[rbox-pasta]="rbox pasta (rbox's forwarder)"
label[rbox-slirp4netns]="rbox slirp4netns (rbox's forwarder)"
label[rbox-slirp4netns-ph]="rbox slirp4netns:port_handler=slirp4netns"
label[podman-rootlessport]="podman slirp4netns (rootlessport)"
label[podman-slirp4netns-ph]="podman slirp4netns:port_handler=slirp4netns"
mkdir -p "$here/results"
out="$here/results/net-$(date -u +%Y%m%d-%H%M).md"
{
    echo "# Networking: iperf3 throughput, start-up, monitor memory, as user $user"
    echo
    echo "$(machine_line); $("$W/rbox" --version 2>/dev/null | head -1), $(podman --version), pasta $(dpkg-query -W -f '${Version}' passt 2>/dev/null || echo '(version unknown)'), $(slirp4netns --version | head -1), $(iperf3 --version | head -1)"
    echo
    echo "## Throughput, Gbit/s (iperf3 -t $T, received), $ROUNDS interleaved rounds: mean (min-max)"
    echo
    echo "Podman 4.3 has no pasta (it came in 4.4): not measured."
    echo
    echo "| path | host -> container | x loopback | container -> host | x loopback | client address the server saw |"
    echo "|---|---:|---:|---:|---:|---|"
    row loopback host "host loopback, 127.0.0.1 (baseline)" ""
    for p in "${pub_paths[@]}"; do row published "$p" "published port: ${label[$p]}" "${seen[$p]:-?}"; done
    row to-host rbox-pasta "container to host 127.0.0.1: rbox pasta (gateway $gw)" ""
    row to-host rbox-slirp4netns-hostlo "container to host 127.0.0.1: rbox slirp4netns:allow_host_loopback=true (10.0.2.2)" ""
    row to-host podman-slirp4netns-hostlo "container to host 127.0.0.1: podman slirp4netns:allow_host_loopback=true (10.0.2.2)" ""
    echo
    echo "Host -> container: the data flows into the container (published port: the host's client sends;"
    echo "container to host: the client in the container runs with -R); container -> host: the other way."
    echo "Ratios are of the means to the host loopback's mean in the same direction. The last column is"
    echo "the peer address the server in the container logged (\"Accepted connection from\")."
    echo
    echo "## Resident memory with a published port that has served, kB (VmRSS/VmHWM/Pss)"
    echo
    echo "| container | RSS total | Pss total | processes |"
    echo "|---|---:|---:|---|"
    while read -r p rss pss rest; do
        echo "| ${label[$p]} | $rss | $pss | $rest |"
    done <"$W/mem"
    echo
    echo "## Start-up added by the network: \`run --rm IMG true\`, $START_ROUNDS interleaved rounds x $START_RUNS runs"
    echo
    table "$json" "rbox none"
    echo
    echo "Added by the network over the same engine's --network=none (difference of the means):"
    echo
    jq -r 'map({key: .command, value: (.times | add / length * 1000)}) | from_entries
      | "- rbox pasta: +\(.["rbox pasta"] - .["rbox none"] | round) ms; rbox slirp4netns: +\(.["rbox slirp4netns"] - .["rbox none"] | round) ms; podman slirp4netns: +\(.["podman slirp4netns"] - .["podman none"] | round) ms"' "$json"
} | tee "$out"
echo >&2
echo "written: $out" >&2
