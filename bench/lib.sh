# Shared by the bench/ scripts (sourced, not run): interleaved hyperfine rounds and the
# results table. Interleaving: every round runs every command (hyperfine, a few runs each), so
# machine noise (the other core busy, page cache, thermal) spreads over all of them alike; the
# table is computed from the times of all rounds together.

# interleaved OUT_JSON ROUNDS RUNS_PER_ROUND WARMUP -- hyperfine args (-n NAME CMD ... and
# --prepare), exactly as for one hyperfine call.
interleaved() {
    local out="$1" rounds="$2" runs="$3" warmup="$4"
    shift 5
    local tmp style=(--style basic)
    # BENCH_SHOW=1 shows each command's output (to see why one fails)
    [ -n "${BENCH_SHOW:-}" ] && style=(--show-output)
    tmp="$(mktemp -d)"
    for r in $(seq 1 "$rounds"); do
        echo "--- round $r/$rounds" >&2
        hyperfine -N "${style[@]}" --warmup "$warmup" --runs "$runs" \
            --export-json "$tmp/round-$r.json" "$@" >&2
    done
    # Merge: per command name, all the times of every round.
    jq -s '[ .[].results[] ] | group_by(.command) | map({command: .[0].command,
            times: ([ .[].times[] ])})' "$tmp"/round-*.json >"$out"
    rm -rf "$tmp"
}

# table JSON BASELINE_NAME: a markdown table (mean, median, min, stddev in ms, ratio of the
# means to the baseline).
table() {
    local json="$1" base="$2"
    jq -r --arg base "$base" '
      def mean: add / length;
      def median: sort | if length % 2 == 1 then .[length/2|floor]
                         else (.[length/2 - 1] + .[length/2]) / 2 end;
      def sd: (mean) as $m | (map((. - $m) * (. - $m)) | add / length | sqrt);
      def ms: . * 1000 * 100 | round / 100;
      (map(select(.command == $base)) | .[0].times | mean) as $b
      | "| command | runs | mean ms | median ms | min ms | stddev ms | x " + $base + " |",
        "|---|---:|---:|---:|---:|---:|---:|",
        (sort_by(.times | mean)[]
         | "| \(.command | gsub("\\|"; "\\|")) | \(.times | length) | \(.times | mean | ms) | \(.times | median | ms) | \(.times | min | ms) | \(.times | sd | ms) | \(((.times | mean) / $b * 100 | round) / 100) |")
    ' "$json"
}

# machine_line: what the numbers were measured on.
machine_line() {
    echo "$(uname -sr), $(nproc) cores, $(. /etc/os-release && echo "$PRETTY_NAME"), $(date -u +%Y-%m-%dT%H:%MZ)"
}

# as_user USER CMD...: run CMD as USER with a clean environment (HOME in the work dir).
as_user() {
    local u="$1"
    shift
    setpriv --reuid="$u" --regid="$(id -g "$u")" --init-groups -- \
        env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        HOME="${BENCH_HOME:?}" USER="$u" LOGNAME="$u" "$@"
}

# busybox_rootfs DIR: a busybox root filesystem from the host's busybox-static.
busybox_rootfs() {
    local d="$1"
    mkdir -p "$d/bin" "$d/etc" "$d/tmp" "$d/proc" "$d/dev" "$d/sys"
    cp /bin/busybox "$d/bin/busybox"
    for a in $("$d/bin/busybox" --list); do
        [ "$a" = busybox ] || ln -sf busybox "$d/bin/$a"
    done
    echo "root:x:0:0:root:/root:/bin/sh" >"$d/etc/passwd"
    echo "root:x:0:" >"$d/etc/group"
}

# mem_of PID: "VmRSS VmHWM Pss" of the process, in kB.
mem_of() {
    local rss hwm pss
    rss="$(awk '/^VmRSS:/ {print $2}' "/proc/$1/status")"
    hwm="$(awk '/^VmHWM:/ {print $2}' "/proc/$1/status")"
    pss="$(awk '/^Pss:/ {print $2}' "/proc/$1/smaps_rollup")"
    echo "${rss:-0} ${hwm:-0} ${pss:-0}"
}

# ppid_of PID: its parent's pid.
ppid_of() { awk '/^PPid:/ {print $2}' "/proc/$1/status"; }

# mem_sum NAME:PID...: "RSS_TOTAL|PSS_TOTAL| NAME=RSS/HWM/PSS..." over the processes, in kB.
mem_sum() {
    local e rss hwm pss tot=0 totp=0 line=""
    for e in "$@"; do
        read -r rss hwm pss <<<"$(mem_of "${e#*:}")"
        tot=$((tot + rss)) totp=$((totp + pss))
        line="$line ${e%%:*}=$rss/$hwm/$pss"
    done
    echo "$tot|$totp|$line"
}
