#!/usr/bin/env python3
"""Per-phase 25th percentile and median of the call probe's rounds 3 and later, per build, over every run that
alternate.sh wrote (ALTERNATE_OUT/<build>-<round>/probe.log). The host's slow mode stretches whole rounds: compare
builds by the 25th percentiles of several alternated runs.

usage: probe-phases.py ALTERNATE_OUT BUILD_NAME...
"""
import glob
import re
import statistics
import sys

if len(sys.argv) < 3:
    sys.exit(__doc__)
pattern = re.compile(r'round (\d+): client send ([\d.]+) ns, server receive ([\d.]+) ns, server reply\+dispose ([\d.]+) ns, '
                     r'client take\+read\+dispose ([\d.]+) ns; round trip ([\d.]+)')
names = ['send', 'receive', 'reply', 'take', 'round trip']
for build in sys.argv[2:]:
    phases = {name: [] for name in names}
    for path in sorted(glob.glob(f'{sys.argv[1]}/{build}-*/probe.log')):
        for line in open(path):
            m = pattern.match(line)
            if m and int(m.group(1)) >= 3:
                for i, name in enumerate(names):
                    phases[name].append(float(m.group(i + 2)))
    def p25(values):
        values = sorted(values)
        return values[len(values) // 4] if values else 0.0
    print(f"{build} ({len(phases['round trip'])} rounds): " + ', '.join(
        f"{name} {p25(v):.1f} / {statistics.median(v) if v else 0:.1f}" for name, v in phases.items()) + ' ns (p25 / median)')
