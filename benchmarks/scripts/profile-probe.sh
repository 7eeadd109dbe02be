#!/usr/bin/env bash
# Profiles the one-thread call probe per instruction: runs `call-probe` with the JIT's listings of the hot methods
# written to OUT_DIR/disasm.txt while `perf record -a` samples, in the same process (the JIT lays code out differently
# in every process, so a listing from another run does not match the samples' offsets). Then
#   python3 benchmarks/scripts/annotate-profile.py OUT_DIR/disasm.txt 'WaitForProgress(' OUT_DIR/syms.txt '::WaitForProgress('
# prints a method's instructions with their samples. Needs perf (root or perf_event_paranoid <= 0).
#
# usage: benchmarks/scripts/profile-probe.sh BUILD_DIR OUT_DIR [METHODS]
#   BUILD_DIR  a build of the benchmarks (dotnet build benchmarks/PageRange.Benchmarks -c Release -o BUILD_DIR)
#   METHODS    DOTNET_JitDisasm's list (default: the call path's hot methods)
#   PROBE_ARGS (environment) more call-probe options, e.g. "--size 256" or "--no-inline"
set -euo pipefail
[ $# -ge 2 ] || { sed -n '2,11p' "$0" >&2; exit 2; }
build=$(cd "$1" && pwd)
mkdir -p "$2"
out=$(cd "$2" && pwd)
methods=${3:-"PublishUnsynchronized TryReceiveBatch PumpAvailable SendCore FreeSlotUnderLock WaitForProgress SendCallForProbe Route Release DrainFreesUnsynchronized Iterate SendReply Receive FinishCall"}
cd "$out"
DOTNET_PerfMapEnabled=1 DOTNET_EnableWriteXorExecute=0 DOTNET_JitDisasm="$methods" DOTNET_JitDisasmWithCodeBytes=1 \
    DOTNET_JitStdOutFile="$out/disasm.txt" "$build/PageRange.Benchmarks" call-probe --rounds 8 --calls 3000000 ${PROBE_ARGS:-} > probe.log 2>&1 &
probe=$!
trap 'kill $probe 2>/dev/null || true' EXIT
sleep 5
perf record -F 2999 -a -o perf.data -- sleep 6 > /dev/null 2>&1
wait $probe
trap - EXIT
perf script -i perf.data -F ip,sym,symoff 2> /dev/null > syms.txt
grep "round trip" probe.log | tail -2
