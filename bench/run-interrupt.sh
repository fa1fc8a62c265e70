#!/usr/bin/env bash
# How fast Ctrl-C stops rbox inside a large layer (issue 10): the time from SIGINT to the
# process's exit, and whether it left anything in the store, for
#   rbox pull    of a one-layer image (SIZE_MB of random data) from a local registry, signalled
#                once more than a quarter of the blob is staged in tmp/
#   rbox build   FROM scratch + COPY of a SIZE_MB file, signalled once its layer tar is being
#                written (a `.commit` entry in tmp/ holding more than 1 MiB)
#   rbox commit  of a container whose upper holds a SIZE_MB file, signalled likewise
# Target: well under a second each, exit status 1 (Podman's), nothing left in tmp/,
# blobs/, layers/ or images/.
#
#   cargo build --release && sudo bench/run-interrupt.sh
#
# Needs root for the setup (registry, the push with podman); the commands run as
# $BENCH_USER (default rboxsub). Env: RBOX, BENCH_USER, RUNS (default 5), SIZE_MB (default 256).
# Writes bench/results/interrupt-<date>.md and prints the table.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd -P)"
repo="$(dirname "$here")"
. "$here/lib.sh"

RBOX="${RBOX:-$repo/target/release/rbox}"
RUNS="${RUNS:-5}"
SIZE_MB="${SIZE_MB:-256}"
user="${BENCH_USER:-rboxsub}"
[ "$(id -u)" = 0 ] || { echo "run-interrupt: run as root (registry setup)" >&2; exit 1; }
need_tools run-interrupt podman docker-registry setpriv python3
need_rbox run-interrupt

workdir_with_registry interrupt
install -m 755 "$RBOX" "$W/rbox"

start_registry "$W/reg"

# The image: one layer holding one file of random data (gzip cannot shrink it).
mkdir -p "$W/ctx"
head -c "${SIZE_MB}M" /dev/urandom >"$W/ctx/big"
tar -C "$W/ctx" -cf "$W/big.tar" big
printf 'FROM scratch\nCOPY big /big\n' >"$W/ctx/Containerfile"
image="$addr/bench/big:1"
PR=(podman --root "$W/push-store" --runroot "$W/push-run" --storage-driver vfs)
"${PR[@]}" import "$W/big.tar" localhost/bench-big >/dev/null
"${PR[@]}" push --tls-verify=false localhost/bench-big "docker://$image" >/dev/null 2>&1
rm -rf "$W/push-store" "$W/push-run" "$W/big.tar"
chmod -R a+rX "$W/ctx"

U="$W/user"
mkdir -p "$U/home"
chown -R "$user:" "$U"
as_user=(setpriv --reuid="$user" --regid="$(id -g "$user")" --init-groups -- env -i
    PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME="$U/home")

# stop NAME STORE SUFFIX MIN_BYTES -- COMMAND...: runs COMMAND as the user, waits until the
# store's tmp/ holds an entry ending in SUFFIX of more than MIN_BYTES (polling every 2 ms),
# sends SIGINT and prints "NAME MS STATUS LEFT" (LEFT: entries in tmp/ after the exit, and
# whether an image record was made).
stop() {
    local name="$1" store="$2" suffix="$3" min="$4"
    shift 5
    "${as_user[@]}" "$@" >/dev/null 2>"$W/stderr" &
    local pid=$! seen=""
    while kill -0 "$pid" 2>/dev/null; do
        seen="$(find "$store/tmp" -maxdepth 1 -name "*$suffix" -size +"$min"c 2>/dev/null | head -1)"
        [ -n "$seen" ] && break
        sleep 0.002
    done
    [ -n "$seen" ] || { echo "$name: ended before its staging was seen" >&2; cat "$W/stderr" >&2; return 1; }
    local t0 t1 rc=0
    t0="$(date +%s%N)"
    kill -INT "$pid"
    wait "$pid" || rc=$?
    t1="$(date +%s%N)"
    local left
    left="$(find "$store/tmp" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)"
    echo "$name $(((t1 - t0) / 1000)) $rc $left"
}

R=("$W/rbox" --root "$U/store" --runroot "$U/run")
quarter=$((SIZE_MB * 1024 * 1024 / 4))
results="$W/results"
: >"$results"
# the container whose upper holds the big file, for commit
"${as_user[@]}" "${R[@]}" build -q -t bench-big "$W/ctx" >/dev/null
"${as_user[@]}" "${R[@]}" create --name c --network=none bench-big true >/dev/null
cp "$W/ctx/big" "$U/store/containers/$("${as_user[@]}" "${R[@]}" inspect -f '{{.Id}}' c)/upper/big2"
chown "$user:" "$U/store/containers/"*/upper/big2
images_before="$("${as_user[@]}" "${R[@]}" images -q | sort | tr '\n' ' ')"
for i in $(seq 1 "$RUNS"); do
    echo "--- run $i/$RUNS" >&2
    stop "rbox-pull" "$U/store" .blob "$quarter" -- "${R[@]}" pull -q --tls-verify=false "$image" >>"$results"
    stop "rbox-build-copy" "$U/store" .commit 1048576 -- "${R[@]}" build -q --no-cache -t never "$W/ctx" >>"$results"
    stop "rbox-commit" "$U/store" .commit 1048576 -- "${R[@]}" commit -q c never2 >>"$results"
done
images_after="$("${as_user[@]}" "${R[@]}" images -q | sort | tr '\n' ' ')"

mkdir -p "$here/results"
out="$here/results/interrupt-$(date -u +%Y%m%d-%H%M).md"
{
    echo "# Ctrl-C inside a ${SIZE_MB} MiB layer: SIGINT to exit, as user $user"
    echo
    echo "$(machine_line); $("$W/rbox" --version | head -1) ($RBOX)"
    echo "$RUNS runs per command; statuses: the exit status of each run; left: tmp/ entries after"
    echo "the exit (all runs). Image ids before the runs: $images_before; after: $images_after"
    echo
    echo "| command | runs | median ms | max ms | statuses | tmp/ entries left |"
    echo "|---|---:|---:|---:|---|---:|"
    for n in rbox-pull rbox-build-copy rbox-commit; do
        awk -v n="$n" '$1 == n { print $2, $3, $4 }' "$results" | sort -n | awk -v n="$n" '
            { t[NR] = $1; s = s (s == "" ? "" : ",") $2; left += $3 }
            END { printf "| %s | %d | %.1f | %.1f | %s | %d |\n", n, NR,
                  t[int((NR + 1) / 2)] / 1000, t[NR] / 1000, s, left }'
    done
} | tee "$out"
echo >&2
echo "written: $out" >&2
