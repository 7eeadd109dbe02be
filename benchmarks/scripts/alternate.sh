#!/usr/bin/env bash
# Runs builds of the benchmarks alternately on one workload, so that the machine's drift (the vCPUs' placement, the
# host's noise, which move a figure 2x within minutes on the 2-core guests) falls on every build alike. Prints one line
# per run: the build, the round, the floor's figure, PageRange's figure and their ratio (for the probe: the median round
# trip of rounds 3-10 and every round's figure). Compare builds within a round, and medians over rounds.
#
# usage: benchmarks/scripts/alternate.sh ROUNDS WORKLOAD BUILD_DIR...
#   WORKLOAD  rtt     64 B raw round trip, busy-spin, against the floor (p50, µs)
#             oneway  64 B stream received with ReceiveBatch, busy-spin, against the floor (messages/s)
#             probe   the one-thread call probe (call-probe --rounds 10 --calls 300000; ns per round trip)
#   BUILD_DIR a directory holding a build of the benchmarks, one per commit compared, e.g.
#             git worktree add ../before main && dotnet build ../before/benchmarks/PageRange.Benchmarks -c Release -o ../bench-before
# The runs' files go to ${ALTERNATE_OUT:-alternate-out}/<build dir's name>-<round>/.
set -euo pipefail
[ $# -ge 3 ] || { sed -n '2,15p' "$0" >&2; exit 2; }
rounds=$1
workload=$2
shift 2
out_root=${ALTERNATE_OUT:-alternate-out}
case "$workload" in
    rtt) args=(--transports floor,pagerange-raw:busy-spin --pingpong-sizes 64 --oneway-sizes none --oneway-echo-sizes none); row=pagerange-raw; column=4 ;;
    oneway) args=(--transports floor,pagerange-batch:busy-spin --pingpong-sizes none --oneway-sizes 64 --oneway-echo-sizes none); row=pagerange-batch; column=4 ;;
    probe) ;;
    *) echo "unknown workload '$workload' (rtt, oneway or probe)" >&2; exit 2 ;;
esac
for round in $(seq 1 "$rounds"); do
    for build in "$@"; do
        exe="$build/PageRange.Benchmarks"
        [ -x "$exe" ] || { echo "$exe: not a build of the benchmarks" >&2; exit 2; }
        name=$(basename "$build")
        dir="$out_root/$name-$round"
        mkdir -p "$dir"
        if [ "$workload" = probe ]; then
            "$exe" call-probe --rounds 10 --calls 300000 > "$dir/probe.log" 2>&1
            figures=$(grep -o 'round trip [0-9.]*' "$dir/probe.log" | awk '{print $3}' | tail -n +3)
            median=$(echo "$figures" | sort -n | awk '{v[NR]=$1} END {print (NR%2 ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2)}')
            echo "$name round $round: median $median ns; rounds 3-10: $(echo $figures)"
        else
            "$exe" cross-process --rounds 2 --slice-ms 300 --warmup-ms 100 "${args[@]}" --no-charts --out "$dir" > "$dir/run.log" 2>&1
            floor=$(grep -E '^\| floor \| busy-spin' "$dir/results.md" | head -1 | awk -F'|' -v c=$column '{gsub(/ /, "", $c); print $c}')
            ours=$(grep -E "^\\| $row \\| busy-spin" "$dir/results.md" | head -1 | awk -F'|' -v c=$column '{gsub(/ /, "", $c); print $c}')
            ratio=$(grep -E "^\\| $row \\| busy-spin" "$dir/results.md" | head -1 | awk -F'|' '{gsub(/ /, "", $(NF-1)); print $(NF-1)}')
            echo "$name round $round: floor $floor, $row $ours, floor ratio $ratio"
        fi
    done
done
