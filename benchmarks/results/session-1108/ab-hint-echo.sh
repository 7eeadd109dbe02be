#!/bin/bash
out=/work/s30/ab-hint-echo
mkdir -p $out
for i in 1 2 3 4 5 6 7 8; do
  for b in bench-echo bench-hint; do
    d=$out/$b-$i
    timeout 600 /work/$b/PageRange.Benchmarks cross-process --rounds 2 --slice-ms 300 --warmup-ms 100 --transports floor,pagerange-raw:busy-spin,pagerange-batch:busy-spin,pagerange-raw:spin-then-park,pagerange-msgpack:busy-spin --pingpong-sizes none --oneway-sizes none --oneway-echo-sizes 64 --no-charts --out $d > $d.log 2>&1
    echo "== $b $i"; grep "oneway-echo" $d/results.csv | cut -d, -f1,2,5,6,12
  done
done
