using System.Globalization;
using System.Text;

namespace PageRange.Benchmarks.CrossProcess;

/// <summary>Writes the run's results: a Markdown report (tables, ratios, targets), a CSV, and PNG charts.</summary>
internal sealed class ReportWriter(IReadOnlyList<Measurement> results, MachineInfo machine, string runDescription, string loadDescription)
{
    private static readonly CultureInfo s_invariant = CultureInfo.InvariantCulture;

    public const string CsvHeader = "transport,mode,workload,size_bytes,p50_ns,p99_ns,p999_ns,max_ns,msgs_per_s,bytes_per_s,cpu_ns_per_msg,floor_ratio";

    public string Csv()
    {
        var text = new StringBuilder();
        text.Append(s_invariant, $"# machine: {machine}; {runDescription}; {loadDescription}\n");
        text.Append(CsvHeader).Append('\n');
        foreach (Measurement m in results)
        {
            string Ns(double value) => double.IsNaN(value) ? "" : value.ToString("F0", s_invariant);
            double floorRatio = FloorRatio(m);
            text.Append(s_invariant,
                $"{m.Transport},{m.Mode},{m.Workload.CsvName()},{m.Size},{Ns(m.Percentile(50))},{Ns(m.Percentile(99))},{Ns(m.Percentile(99.9))},{Ns(m.Max)},{m.MessagesPerSecond:F0},{m.BytesPerSecond:F0},{m.CpuNanosecondsPerMessage:F0},{(double.IsNaN(floorRatio) ? "" : floorRatio.ToString("G4", s_invariant))}\n");
        }
        return text.ToString();
    }

    public string Markdown(string command, IReadOnlyList<string> charts)
    {
        var text = new StringBuilder();
        text.Append("# PageRange cross-process benchmark\n\n");
        text.Append(s_invariant, $"- Machine: {machine}\n");
        text.Append(s_invariant, $"- Command: `{command}`\n");
        text.Append(s_invariant, $"- Run: {runDescription}\n");
        text.Append(s_invariant, $"- Load: {loadDescription}\n\n");
        text.Append("Latencies are round trips measured by the calling process (request out, the same bytes echoed back, every byte of the reply checksummed); ");
        text.Append("a oneway echo's request and echo are both oneway messages (on a byte stream and on the floor, the same bytes as a ping-pong's). ");
        text.Append("Oneway rates count messages the receiver has checksummed, up to its final stop reply. ");
        text.Append("CPU is user + system time of both processes over the measured windows, per message (per round trip for ping-pong and oneway echo), without the runtime's tiered-compilation threads (the JIT's tier-up runs on for seconds into a run and would land in whichever slice it overlaps). ");
        text.Append("The floor is the same two processes busy-spinning on a bare shared-memory ring with the same copies and nothing else; ");
        text.Append("the last column of each table is how many times the floor of the same run a transport is (1.0× is what this machine can do at that moment).\n\n");
        foreach (string chart in charts)
        {
            text.Append(s_invariant, $"![{Path.GetFileNameWithoutExtension(chart)}]({chart})\n\n");
        }
        AppendTargets(text);
        AppendFloorTargets(text);
        AppendPingPong(text);
        AppendSlicePairs(text);
        AppendOnewaySlicePairs(text);
        AppendOneway(text);
        AppendRoundTrips(text, Workload.OnewayEcho, "## Oneway echo: a oneway out, the peer's oneway back\n\n");
        AppendRatios(text);
        return text.ToString();
    }

    private void AppendPingPong(StringBuilder text) => AppendRoundTrips(text, Workload.PingPong, "## Ping-pong round trip\n\n");

    private void AppendRoundTrips(StringBuilder text, Workload workload, string title)
    {
        if (!results.Any(m => m.Workload == workload))
        {
            return;
        }
        text.Append(title);
        foreach (IGrouping<int, Measurement> group in results.Where(m => m.Workload == workload).GroupBy(m => m.Size))
        {
            text.Append(s_invariant, $"### {SizeName(group.Key)}\n\n");
            text.Append("| transport | mode | p50 µs | p99 µs | p99.9 µs | max µs | round trips/s | CPU µs per round trip | round trips | p50 ÷ floor's |\n");
            text.Append("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|\n");
            foreach (Measurement m in group)
            {
                text.Append(s_invariant,
                    $"| {m.Transport} | {m.Mode} | {Micros(m.Percentile(50))} | {Micros(m.Percentile(99))} | {Micros(m.Percentile(99.9))} | {Micros(m.Max)} | {m.MessagesPerSecond:N0} | {Micros(m.CpuNanosecondsPerMessage)} | {m.Messages:N0} | {FloorCell(m)} |\n");
            }
            text.Append('\n');
        }
    }

    /// <summary>
    /// Each PageRange ping-pong slice against the floor's slice of the same round: on VMs whose vCPUs
    /// move between close and far placements within a run, the run's p50s mix placements, and a ratio of p50s may compare
    /// a close floor with a far PageRange. Slices are grouped by the floor's slice: within 1.5× of its fastest slice of
    /// the run (the placement at its best), or slower.
    /// </summary>
    private void AppendSlicePairs(StringBuilder text)
    {
        List<(Measurement Floor, Measurement PageRange)> pairs = SlicePairs(Workload.PingPong, m => m.SliceMedians);
        if (pairs.Count == 0)
        {
            return;
        }
        text.Append("## Round trip against the floor, slice by slice\n\n");
        text.Append("Each measured slice's p50 ÷ the floor's slice of the same round (every transport runs one slice per round; with two transports they run back to back). Slices are grouped by the floor's own: ");
        text.Append("within 1.5× of its fastest slice of the run (the vCPUs' placement at its best), or slower. Medians of the ratios, and of the p50s.\n\n");
        text.Append("| size | transport | mode | floor at its fastest: slices | ratio | floor µs | p50 µs | floor slower: slices | ratio | floor µs | p50 µs |\n");
        text.Append("|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|\n");
        foreach ((Measurement floor, Measurement pageRange) in pairs)
        {
            (List<(double Floor, double PageRange)> fast, List<(double Floor, double PageRange)> slow) =
                SplitByTheFloor(floor.SliceMedians, pageRange.SliceMedians, lowerIsFaster: true);
            text.Append(s_invariant, $"| {SizeName(pageRange.Size)} | {pageRange.Transport} | {pageRange.Mode} | {Group(fast)} | {Group(slow)} |\n");
        }
        text.Append('\n');

        static string Group(List<(double Floor, double PageRange)> slices) => slices.Count == 0
            ? "0 | | |"
            : string.Create(s_invariant,
                $"{slices.Count} | {Median(slices.Select(s => s.PageRange / s.Floor)):G3}× | {Micros(Median(slices.Select(s => s.Floor)))} | {Micros(Median(slices.Select(s => s.PageRange)))}");
    }

    /// <summary>
    /// The oneway streams slice by slice against the floor's slice of the same round, grouped as the round trips are (the
    /// vCPUs' placement changes between slices on these VMs, and a run's two placements differ up to 5× in the floor).
    /// </summary>
    private void AppendOnewaySlicePairs(StringBuilder text)
    {
        List<(Measurement Floor, Measurement PageRange)> pairs = SlicePairs(Workload.Oneway, m => m.SliceRates);
        if (pairs.Count == 0)
        {
            return;
        }
        text.Append("## Oneway against the floor, slice by slice\n\n");
        text.Append("Each measured slice's messages/s ÷ the floor's slice of the same round (above 1, faster than the floor). Slices are grouped by the floor's own: ");
        text.Append("within 1.5× of its fastest slice of the run, or slower. Medians of the ratios and of the rates (M messages/s), then every slice as PageRange/floor.\n\n");
        text.Append("| size | transport | mode | floor at its fastest: slices | ratio | floor | PageRange | floor slower: slices | ratio | floor | PageRange | each slice |\n");
        text.Append("|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|---|\n");
        foreach ((Measurement floor, Measurement pageRange) in pairs)
        {
            (List<(double Floor, double PageRange)> fast, List<(double Floor, double PageRange)> slow) =
                SplitByTheFloor(floor.SliceRates, pageRange.SliceRates, lowerIsFaster: false);
            string each = string.Join(", ", floor.SliceRates.Select((f, i) => string.Create(s_invariant, $"{pageRange.SliceRates[i] / 1e6:F1}/{f / 1e6:F1}")));
            text.Append(s_invariant, $"| {SizeName(pageRange.Size)} | {pageRange.Transport} | {pageRange.Mode} | {Group(fast)} | {Group(slow)} | {each} |\n");
        }
        text.Append('\n');

        static string Group(List<(double Floor, double PageRange)> slices) => slices.Count == 0
            ? "0 | | |"
            : string.Create(s_invariant,
                $"{slices.Count} | {Median(slices.Select(s => s.PageRange / s.Floor)):G3}× | {Median(slices.Select(s => s.Floor)) / 1e6:F1} | {Median(slices.Select(s => s.PageRange)) / 1e6:F1}");
    }

    /// <summary>
    /// Each PageRange measurement of <paramref name="workload"/> with the floor's of the same size, where both have the same
    /// number of measured slices (at least two): slice i of each ran in round i.
    /// </summary>
    private List<(Measurement Floor, Measurement PageRange)> SlicePairs(Workload workload, Func<Measurement, List<double>> slices) => results
        .Where(m => m.IsPageRange && m.Workload == workload)
        .Select(m => (Floor: results.FirstOrDefault(f => f.IsFloor && f.Workload == workload && f.Size == m.Size), PageRange: m))
        .Where(p => p.Floor is not null && slices(p.Floor).Count >= 2 && slices(p.Floor).Count == slices(p.PageRange).Count)
        .Select(p => (p.Floor!, p.PageRange))
        .ToList();

    /// <summary>
    /// The slices of the same rounds in two groups by the floor's own: within 1.5× of its fastest slice of the run (the
    /// vCPUs' placement at its best), or slower. A round trip is faster when lower, a rate when higher.
    /// </summary>
    private static (List<(double Floor, double PageRange)> Fast, List<(double Floor, double PageRange)> Slow) SplitByTheFloor(
        List<double> floor, List<double> pageRange, bool lowerIsFaster)
    {
        double fastest = lowerIsFaster ? floor.Min() : floor.Max();
        var fast = new List<(double Floor, double PageRange)>();
        var slow = new List<(double Floor, double PageRange)>();
        for (int i = 0; i < floor.Count; i++)
        {
            bool nearFastest = lowerIsFaster ? floor[i] <= 1.5 * fastest : floor[i] * 1.5 >= fastest;
            (nearFastest ? fast : slow).Add((floor[i], pageRange[i]));
        }
        return (fast, slow);
    }

    /// <summary>The median of <paramref name="values"/> (the mean of the middle two for an even count).</summary>
    private static double Median(IEnumerable<double> values)
    {
        double[] sorted = values.Order().ToArray();
        return sorted.Length == 0 ? double.NaN
            : sorted.Length % 2 == 1 ? sorted[sorted.Length / 2]
            : (sorted[(sorted.Length / 2) - 1] + sorted[sorted.Length / 2]) / 2;
    }

    private void AppendOneway(StringBuilder text)
    {
        text.Append("## Oneway streaming\n\n");
        foreach (IGrouping<int, Measurement> group in results.Where(m => m.Workload == Workload.Oneway).GroupBy(m => m.Size))
        {
            text.Append(s_invariant, $"### {SizeName(group.Key)}\n\n");
            text.Append("| transport | mode | messages/s | GB/s | CPU ns per message | messages | floor's rate ÷ this |\n");
            text.Append("|---|---|--:|--:|--:|--:|--:|\n");
            foreach (Measurement m in group)
            {
                text.Append(s_invariant,
                    $"| {m.Transport} | {m.Mode} | {m.MessagesPerSecond:N0} | {m.BytesPerSecond / 1e9:F3} | {m.CpuNanosecondsPerMessage:N0} | {m.Messages:N0} | {FloorCell(m)} |\n");
            }
            text.Append('\n');
        }
    }

    /// <summary>How many times better each PageRange variant is than each baseline: latency ratio baseline/PageRange, throughput PageRange/baseline.</summary>
    private void AppendRatios(StringBuilder text)
    {
        text.Append("## Ratios to PageRange\n\n");
        text.Append("Each cell is how many times better the PageRange variant of its row is than the baseline of its column: ");
        text.Append("baseline p50 ÷ PageRange p50 for ping-pong and oneway echo, PageRange GB/s ÷ baseline GB/s for oneway. Above 1, PageRange is ahead.\n\n");
        foreach (Workload workload in new[] { Workload.PingPong, Workload.Oneway, Workload.OnewayEcho })
        {
            List<Measurement> ofWorkload = results.Where(m => m.Workload == workload).ToList();
            string[] baselines = ofWorkload.Where(m => !m.IsPageRange && !m.IsFloor).Select(m => m.Transport).Distinct().ToArray();
            if (baselines.Length == 0 || !ofWorkload.Any(m => m.IsPageRange))
            {
                continue;
            }
            text.Append(workload switch
            {
                Workload.PingPong => "### Ping-pong p50 latency\n\n",
                Workload.Oneway => "### Oneway throughput\n\n",
                _ => "### Oneway echo p50 latency\n\n",
            });
            text.Append("| size | PageRange | ").Append(string.Join(" | ", baselines)).Append(" |\n");
            text.Append("|---|---|").Append(string.Concat(baselines.Select(_ => "--:|"))).Append('\n');
            foreach (IGrouping<int, Measurement> group in ofWorkload.GroupBy(m => m.Size))
            {
                foreach (Measurement pageRange in group.Where(m => m.IsPageRange))
                {
                    text.Append(s_invariant, $"| {SizeName(group.Key)} | {pageRange.Label} |");
                    foreach (string baseline in baselines)
                    {
                        Measurement? other = group.FirstOrDefault(m => m.Transport == baseline);
                        text.Append(other is null ? " |" : string.Create(s_invariant, $" {Ratio(pageRange, other):F1}× |"));
                    }
                    text.Append('\n');
                }
            }
            text.Append('\n');
        }
    }

    /// <summary>
    /// How many times the floor measured in the same run <paramref name="m"/> is: its p50 round trip ÷ the floor's, or
    /// the floor's messages/s ÷ its own. 1 is the machine's limit; NaN when the run has no floor for that size.
    /// </summary>
    public double FloorRatio(Measurement m)
    {
        Measurement? floor = results.FirstOrDefault(f => f.IsFloor && f.Workload == m.Workload && f.Size == m.Size);
        if (floor is null || floor.Messages == 0 || m.Messages == 0)
        {
            return double.NaN;
        }
        return m.Workload.IsRoundTrip()
            ? m.Percentile(50) / floor.Percentile(50)
            : floor.MessagesPerSecond / m.MessagesPerSecond;
    }

    private string FloorCell(Measurement m) => FloorRatio(m) is var ratio && double.IsNaN(ratio) ? "" : string.Create(s_invariant, $"{ratio:G3}×");

    /// <summary>How many times better <paramref name="pageRange"/> is than <paramref name="baseline"/>.</summary>
    public static double Ratio(Measurement pageRange, Measurement baseline) => pageRange.Workload.IsRoundTrip()
        ? baseline.Percentile(50) / pageRange.Percentile(50)
        : pageRange.BytesPerSecond / baseline.BytesPerSecond;

    /// <summary>The targets of issue 6, each checked against this run.</summary>
    private void AppendTargets(StringBuilder text)
    {
        text.Append("## Targets (issue 6)\n\n| target | measured | met |\n|---|---|---|\n");
        Measurement? Find(string transport, string? mode, Workload workload, int size) =>
            results.FirstOrDefault(m => m.Transport == transport && (mode is null || m.Mode == mode) && m.Workload == workload && m.Size == size);
        void Row(string target, string measured, bool? met) =>
            text.Append(s_invariant, $"| {target} | {measured} | {(met is null ? "not measured" : met.Value ? "yes" : "**no**")} |\n");
        void LatencyRatio(string target, string transport, string mode, int size, double atLeast, bool strictlyAbove = false)
        {
            Measurement? pageRange = Find(transport, mode, Workload.PingPong, size);
            Measurement? socket = Find("unix-socket", null, Workload.PingPong, size);
            if (pageRange is null || socket is null)
            {
                Row(target, "", null);
                return;
            }
            double ratio = Ratio(pageRange, socket);
            Row(target, string.Create(s_invariant, $"{ratio:F1}× (p50 {Micros(pageRange.Percentile(50))} µs vs {Micros(socket.Percentile(50))} µs)"),
                strictlyAbove ? ratio > atLeast : ratio >= atLeast);
        }

        LatencyRatio("busy-spin `Call` 64 B raw ≥ 100× faster than a Unix socket", "pagerange-raw", "busy-spin", 64, 100);
        LatencyRatio("busy-spin typed MessagePack call 64 B ≥ 50× faster than a Unix socket", "pagerange-msgpack", "busy-spin", 64, 50);
        LatencyRatio("park (futex) round trip 64 B no slower than a Unix socket", "pagerange-raw", "park", 64, 1);
        foreach (int size in results.Where(m => m.Workload == Workload.PingPong && m.Size >= 16 << 10).Select(m => m.Size).Distinct())
        {
            LatencyRatio($"park round trip {SizeName(size)} faster than a Unix socket", "pagerange-raw", "park", size, 1, strictlyAbove: true);
        }

        // Raw bytes, received one per Receive or in batches (pagerange-batch): the best of them.
        Measurement? best64 = results.Where(m => m.Transport is "pagerange-raw" or "pagerange-batch" && m.Workload == Workload.Oneway && m.Size == 64)
            .MaxBy(m => m.MessagesPerSecond);
        Row("oneway 64 B ≥ 20 million messages/s",
            best64 is null ? "" : string.Create(s_invariant, $"{best64.MessagesPerSecond / 1e6:F2} M/s ({best64.Transport} {best64.Mode})"),
            best64 is null ? null : best64.MessagesPerSecond >= 20e6);
        foreach (int size in new[] { 64 << 10, 1 << 20 })
        {
            Measurement? best = results.Where(m => m.Transport == "pagerange-raw" && m.Workload == Workload.Oneway && m.Size == size)
                .MaxBy(m => m.BytesPerSecond);
            Measurement? socket = Find("unix-socket", null, Workload.Oneway, size);
            if (best is null || socket is null)
            {
                Row($"oneway {SizeName(size)} ≥ 2.5× the Unix socket's GB/s", "", null);
                continue;
            }
            double ratio = Ratio(best, socket);
            Row($"oneway {SizeName(size)} ≥ 2.5× the Unix socket's GB/s",
                string.Create(s_invariant, $"{ratio:F2}× ({best.BytesPerSecond / 1e9:F2} GB/s {best.Mode} vs {socket.BytesPerSecond / 1e9:F2} GB/s)"),
                ratio >= 2.5);
        }
        text.Append('\n');
    }

    /// <summary>The targets of issue 12, read against the floor of this run and against raw PageRange.</summary>
    private void AppendFloorTargets(StringBuilder text)
    {
        text.Append("## Targets (issue 12, against this run's floor)\n\n| target | measured | met |\n|---|---|---|\n");
        Measurement? Find(string transport, string mode, Workload workload, int size) =>
            results.FirstOrDefault(m => m.Transport == transport && m.Mode == mode && m.Workload == workload && m.Size == size);
        void Row(string target, string measured, bool? met) =>
            text.Append(s_invariant, $"| {target} | {measured} | {(met is null ? "not measured" : met.Value ? "yes" : "**no**")} |\n");
        foreach ((string transport, double atMost) in new[] { ("pagerange-raw", 2.0), ("pagerange-msgpack", 3.0) })
        {
            Measurement? m = Find(transport, "busy-spin", Workload.PingPong, 64);
            double ratio = m is null ? double.NaN : FloorRatio(m);
            // Below 1 the floor itself lost its core (a preempted spinner): the comparison says nothing then.
            bool valid = !double.IsNaN(ratio) && ratio >= 1;
            Row(string.Create(s_invariant, $"{transport} busy-spin round trip 64 B p50 ≤ {atMost:F0}× the floor"),
                double.IsNaN(ratio) ? "" : string.Create(s_invariant,
                    $"{ratio:G3}× ({Micros(m!.Percentile(50))} µs){(valid ? "" : "; the floor was preempted, no verdict")}"),
                valid ? ratio <= atMost : null);
        }
        Measurement? best64 = results.Where(m => m.Transport is "pagerange-raw" or "pagerange-batch" && m.Workload == Workload.Oneway && m.Size == 64)
            .MaxBy(m => m.MessagesPerSecond);
        Row("oneway raw 64 B ≥ 20 M messages/s",
            best64 is null ? "" : string.Create(s_invariant, $"{best64.MessagesPerSecond / 1e6:F2} M/s ({best64.Transport} {best64.Mode}; the floor {FloorRatio(best64) * best64.MessagesPerSecond / 1e6:F2} M/s)"),
            best64 is null ? null : best64.MessagesPerSecond >= 20e6);
        foreach (int size in new[] { 64 << 10, 1 << 20 })
        {
            Measurement? raw = results.Where(m => m.Transport == "pagerange-raw" && m.Workload == Workload.Oneway && m.Size == size).MaxBy(m => m.BytesPerSecond);
            Measurement? typed = results.Where(m => m.Transport == "pagerange-msgpack" && m.Workload == Workload.Oneway && m.Size == size).MaxBy(m => m.BytesPerSecond);
            bool measured = raw is not null && typed is not null;
            double ratio = measured ? typed!.BytesPerSecond / raw!.BytesPerSecond : double.NaN;
            Row($"oneway typed {SizeName(size)} ≥ 0.8× raw",
                measured ? string.Create(s_invariant, $"{ratio:F2}× ({typed!.BytesPerSecond / 1e9:F2} GB/s {typed.Mode} vs {raw!.BytesPerSecond / 1e9:F2} GB/s {raw.Mode})") : "",
                measured ? ratio >= 0.8 : null);
        }
        text.Append('\n');
    }

    public static string SizeName(int size) => size switch
    {
        >= 1 << 20 when size % (1 << 20) == 0 => $"{size >> 20} MiB",
        >= 1 << 10 when size % (1 << 10) == 0 => $"{size >> 10} KiB",
        _ => $"{size} B",
    };

    private static string Micros(double nanoseconds) => double.IsNaN(nanoseconds) ? "" : (nanoseconds / 1000) switch
    {
        < 10 => (nanoseconds / 1000).ToString("F2", s_invariant),
        < 100 => (nanoseconds / 1000).ToString("F1", s_invariant),
        _ => (nanoseconds / 1000).ToString("N0", s_invariant),
    };
}
