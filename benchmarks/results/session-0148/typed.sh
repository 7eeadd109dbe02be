#!/usr/bin/env bash
# typed.sh N OUT build... : MessagePack round trip (64 B) and oneway streams (64 B, 64 KiB, 1 MiB) against the floor and raw, N rounds alternating builds.
n=$1; out=$2; shift 2
for i in $(seq 1 $n); do for b in "$@"; do
  d=/tmp/typed-$b; rm -rf $d
  timeout 600 /work/bench-$b/PageRange.Benchmarks cross-process --rounds 2 --slice-ms 300 --warmup-ms 100 --transports floor,pagerange-raw:busy-spin,pagerange-msgpack:busy-spin --pingpong-sizes 64 --oneway-sizes 64,65536,1048576 --oneway-echo-sizes none --no-charts --out $d >/dev/null 2>&1
  echo "== $(date -u +%H:%M:%S) $b"; grep -E '^\| (floor|pagerange)' $d/results.md | grep -v "round trip" | awk -F'|' '{gsub(/ /,"",$2);gsub(/ /,"",$3); print $2, $3, $4, $5}'
done; done | tee -a $out
