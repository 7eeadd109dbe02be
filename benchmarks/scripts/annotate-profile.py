#!/usr/bin/env python3
"""Prints a JIT'd method's instructions with the perf samples that landed on each (see profile-probe.sh).

usage: annotate-profile.py DISASM_FILE LISTING_MATCH SYMS_FILE SYMBOL_MATCH
  DISASM_FILE    DOTNET_JitStdOutFile output, written with DOTNET_JitDisasmWithCodeBytes=1
  LISTING_MATCH  a substring of the "; Assembly listing for method" line (its last Tier1 listing is used)
  SYMS_FILE      `perf script -F ip,sym,symoff` output of the same process
  SYMBOL_MATCH   a substring of the method's perf-map symbol, e.g. '::WaitForProgress('
A sample marks the instruction the interrupt found next, so a stall shows on the instruction after the slow one.
"""
import re
import sys

if len(sys.argv) != 5:
    sys.exit(__doc__)
disasm, listing, syms, symbol = sys.argv[1:5]
lines = open(disasm).read().split('\n')
starts = [i for i, line in enumerate(lines)
          if line.startswith('; Assembly listing for method') and listing in line and 'Tier1' in line and 'OSR' not in line]
if not starts:
    sys.exit(f'no Tier1 listing matches {listing!r}')
body, offset = [], 0
for line in lines[starts[-1] + 1:]:
    if line.startswith('; Assembly listing') or line.startswith('; Total bytes'):
        break
    m = re.match(r'^\s{7}([0-9A-F]+)\s+(.*)$', line)
    if m:
        body.append((offset, m.group(2)))
        offset += len(m.group(1)) // 2
    elif line.startswith('G_M'):
        body.append((None, line))
counts = {}
for line in open(syms):
    if symbol in line:
        m = re.search(r'\+0x([0-9a-f]+)$', line.strip())
        if m:
            at = int(m.group(1), 16)
            counts[at] = counts.get(at, 0) + 1
total = sum(counts.values())
print('samples', total)
for at, text in body:
    if at is None:
        print(text)
    else:
        n = counts.get(at, 0)
        print(f"{at:5x} {n:5d} {'#' if total and n > total * 0.02 else ' '} {text}")
