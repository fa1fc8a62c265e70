#!/usr/bin/env bash
# Small files on the FUSE overlay, phase by phase, in files per second as issue 12 states its
# figures: create (`xargs touch`), list+stat (`ls -l`) and delete (`xargs rm`) of FILES empty
# files in a new directory, each phase timed inside the container (busybox `time -p`), so the
# container's start-up is not in the figures. Kernel overlay, rbox's FUSE overlay and Debian's
# fuse-overlayfs (through Podman's overlay.mount_program, as rootless Podman uses it), one
# container each per round, the engines interleaved in every round (whatever a file system
# carries over from one run to the next, each engine gets the same share of it).
#
#   cargo build --release && sudo bench/run-fuse-files.sh      # as root: runs as $BENCH_USER
#
# Env: RBOX (default target/release/rbox), BENCH_USER (default rboxsub), ROUNDS (default 3),
# FILES (default 50000), BENCH_FS (journaled: the default as root, the work directory on a
# fresh journaled ext4, see lib.sh's journaled_fs; host: /var/tmp as it is). Writes
# bench/results/fuse-files-<date>.md and prints the table.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd -P)"
repo="$(dirname "$here")"
. "$here/lib.sh"

RBOX="${RBOX:-$repo/target/release/rbox}"
ROUNDS="${ROUNDS:-3}"
FILES="${FILES:-50000}"
need_tools run-fuse-files podman fuse-overlayfs jq setpriv
need_rbox run-fuse-files
fuse_bench_setup run-fuse-files files
busybox_rootfs "$R/rootfs"
tar -C "$R/rootfs" -cf "$R/image.tar" .
rm -rf "$R/rootfs"
fuse_bench_import "$R/image.tar" bench-files

# One container: the three phases, each line "PHASE SECONDS" (busybox time -p's "real").
phases="mkdir /d && cd /d && seq 1 $FILES >/tmp/names &&
for p in create list delete; do
  case \$p in
    create) c='xargs touch </tmp/names' ;;
    list) c='ls -l >/dev/null' ;;
    delete) c='xargs rm </tmp/names' ;;
  esac
  echo \$p \$( { time -p sh -c \"\$c\" ; } 2>&1 | awk '/^real/ {print \$2}')
done"
declare -A engine=(
    [overlay]="$RB --storage-driver=overlay run --rm --network=none bench-files"
    [fuse-overlay]="$RB --storage-driver=fuse-overlay run --rm --network=none bench-files"
    [podman+fuse-overlayfs]="$P run --rm --network=none localhost/bench-files"
)
samples="$W/samples"
: >"$samples"
for r in $(seq 1 "$ROUNDS"); do
    echo "--- round $r/$ROUNDS" >&2
    for e in overlay fuse-overlay podman+fuse-overlayfs; do
        # shellcheck disable=SC2086
        run env CONTAINERS_CONF="$R/containers.conf" ${engine[$e]} sh -c "$phases" |
            while read -r phase secs; do
                [ -n "$secs" ] || { echo "run-fuse-files: $e: no time for $phase" >&2; exit 1; }
                echo "$e $phase $secs" | tee -a "$samples" >&2
            done
    done
done

out="$here/results/fuse-files-$(date -u +%Y%m%d-%H%M).md"
mkdir -p "$here/results"
{
    echo "# Small files: create / list+stat / delete, files per second"
    echo
    echo "$(machine_line); $("$W/rbox" --version); store on $(store_fs "$W"); fuse-overlayfs $(fuse-overlayfs --version 2>/dev/null | awk '/fuse-overlayfs/ {print $3; exit}'); FILES=$FILES, $ROUNDS rounds"
    echo
    echo "Median over the rounds of FILES / the phase's time inside the container (busybox \`time -p\`, 10 ms"
    echo "resolution: a phase under 10 ms counts as 5 ms);"
    echo "in brackets the slowest and the fastest round; x = median against fuse-overlayfs's."
    echo
    jq -Rrn --argjson files "$FILES" '
      [inputs | split(" ") | {e: .[0], p: .[1], s: ([(.[2] | tonumber), 0.005] | max)}] as $all
      | def median: sort | if length % 2 == 1 then .[length/2|floor]
                           else (.[length/2 - 1] + .[length/2]) / 2 end;
        def rate($e; $p): [$all[] | select(.e == $e and .p == $p) | $files / .s];
        def cell($e; $p): (rate($e; $p)) as $r
          | (rate("podman+fuse-overlayfs"; $p) | median) as $base
          | "\($r | median | round) [\($r | min | round)-\($r | max | round)] x\((($r | median) / $base * 100 | round) / 100)";
        "| engine | create | list+stat | delete |",
        "|---|---:|---:|---:|",
        (["overlay", "fuse-overlay", "podman+fuse-overlayfs"][] as $e
         | "| \($e) | \(cell($e; "create")) | \(cell($e; "list")) | \(cell($e; "delete")) |")
    ' <"$samples"
} >"$out"
cat "$out"
