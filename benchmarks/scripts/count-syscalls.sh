#!/usr/bin/env bash
# Counts the system calls of both processes during a steady oneway stream: runs the cross-process harness on one
# transport with one long slice, attaches `strace -c -f` to every thread of the host and its peer for a window in
# the middle of the stream, then divides by the messages sent in that window (the rate the harness reports times
# the window). Setup and teardown fall outside the window.
#
# usage: benchmarks/scripts/count-syscalls.sh [transport] [size] [window-seconds]
#   e.g. benchmarks/scripts/count-syscalls.sh pagerange-raw:spin-then-park 64 3
set -euo pipefail
transport=${1:-pagerange-raw:spin-then-park}
size=${2:-64}
window=${3:-3}
root=$(cd "$(dirname "$0")/../.." && pwd)
exe="$root/benchmarks/PageRange.Benchmarks/bin/Release/net10.0/PageRange.Benchmarks"
command -v strace >/dev/null || { echo "strace is not installed (apt-get install strace)" >&2; exit 1; }
[ -x "$exe" ] || dotnet build "$root/benchmarks/PageRange.Benchmarks" -c Release >/dev/null
out=$(mktemp -d)
slice_ms=$(( (window + 4) * 1000 ))
"$exe" cross-process --transports "$transport" --pingpong-sizes none --oneway-sizes "$size" --oneway-echo-sizes none --rounds 1 \
    --warmup-ms 500 --slice-ms "$slice_ms" --no-charts --out "$out" > "$out/run.log" 2>&1 &
host=$!
# Wait for the stream to start, then a little more for it to settle.
until grep -q "Oneway" "$out/run.log" 2>/dev/null; do sleep 0.1; done
sleep 1.5
peer=$(pgrep -P "$host" | head -1)
tids=()
for pid in "$host" "$peer"; do
    for task in /proc/"$pid"/task/*; do tids+=(-p "$(basename "$task")"); done
done
timeout -s INT "$window" strace -c -f "${tids[@]}" -o "$out/strace.txt" || true
wait "$host"
rate=$(awk -F, -v t="${transport%%:*}" '$1==t && $3=="oneway" {print $9}' "$out/results.csv")
total=$(awk '/total/ {print $4}' "$out/strace.txt")
echo "transport: $transport, $size B oneway, strace window: $window s over host pid $host and peer pid $peer"
cat "$out/strace.txt"
awk -v n="$total" -v r="$rate" -v w="$window" 'BEGIN {
    printf "messages/s during the run (with strace attached for part of it): %.0f\n", r;
    printf "system calls in the window: %d, about %.0f messages: %.5f system calls per message\n", n, r * w, n / (r * w) }'
