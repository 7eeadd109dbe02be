using System.Globalization;
using PageRange.Tests.Infrastructure;
using PageRange.Tests.Tools;

namespace PageRange.Tests.Benchmarks;

/// <summary>
/// Runs the benchmark harness's <c>--quick</c> modes once, as CI's smoke test: the two-process run over every transport
/// must finish, write its files and check every message it sent; the memory run must show pages reused from the LRU
/// and returned to the kernel. Timing numbers are not asserted: the machine is shared.
/// </summary>
[Collection(CrossProcessCollection.Name)]
public sealed class BenchmarkSmokeTests(ITestOutputHelper output) : IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("pagerange-bench-smoke-").FullName;

    [Fact]
    public async Task CrossProcessQuick_EveryTransport_WritesResultsForEachWorkload()
    {
        await DotnetRun.RunBenchmarksAsync(output, TimeSpan.FromSeconds(120), "cross-process", "--quick", "--out", _directory);

        string[] lines = await File.ReadAllLinesAsync(Path.Combine(_directory, "results.csv"));
        Assert.StartsWith("# machine: ", lines[0], StringComparison.Ordinal);
        Assert.Equal("transport,mode,workload,size_bytes,p50_ns,p99_ns,p999_ns,max_ns,msgs_per_s,bytes_per_s,cpu_ns_per_msg,floor_ratio", lines[1]);
        string[][] rows = lines.Skip(2).Select(line => line.Split(',')).ToArray();
        // Thirteen transports (the floor, eight PageRange variants, four baselines) times two ping-pong sizes, two oneway
        // sizes and one oneway echo size, and the three struct variants at 64 B only (a struct has one size).
        Assert.Equal(65 + 9, rows.Length);
        Assert.Equal(9, rows.Count(row => row[0] == "pagerange-struct" && row[3] == "64"));
        Assert.DoesNotContain(rows, row => row[0] == "pagerange-struct" && row[3] != "64");
        Assert.All(rows, row => Assert.True(double.Parse(row[8], CultureInfo.InvariantCulture) > 0, string.Join(',', row)));
        Assert.Contains(rows, row => row[0] == "unix-socket" && row[2] == "pingpong" && row[3] == "64");
        Assert.Contains(rows, row => row[0] == "pagerange-batch" && row[1] == "spin-then-park" && row[2] == "oneway" && row[3] == "64");
        Assert.Contains(rows, row => row[0] == "pagerange-msgpack" && row[1] == "park" && row[2] == "oneway" && row[3] == "65536");
        // A oneway echo is timed as a round trip: a p50 for every transport, including the receivers in batches and the typed one.
        Assert.Equal(16, rows.Count(row => row[2] == "oneway-echo" && row[3] == "64" && double.Parse(row[4], CultureInfo.InvariantCulture) > 0));
        Assert.Contains(rows, row => row[0] == "pagerange-batch" && row[1] == "busy-spin" && row[2] == "oneway-echo");
        Assert.Contains(rows, row => row[0] == "pagerange-msgpack" && row[1] == "park" && row[2] == "oneway-echo");
        // The floor is measured in the run, and every row carries its ratio to it (the floor's own is 1).
        Assert.Equal(5, rows.Count(row => row[0] == "floor"));
        Assert.All(rows, row => Assert.True(double.Parse(row[11], CultureInfo.InvariantCulture) > 0, string.Join(',', row)));
        Assert.All(rows.Where(row => row[0] == "floor"), row => Assert.Equal(1.0, double.Parse(row[11], CultureInfo.InvariantCulture)));
        string markdown = await File.ReadAllTextAsync(Path.Combine(_directory, "results.md"));
        Assert.Contains("## Targets (issue 6)", markdown, StringComparison.Ordinal);
        Assert.Contains("## Targets (issue 12, against this run's floor)", markdown, StringComparison.Ordinal);
        Assert.Contains("## Oneway echo: a oneway out, the peer's oneway back", markdown, StringComparison.Ordinal);
        Assert.True(File.Exists(Path.Combine(_directory, "roundtrip.png")));
        Assert.True(File.Exists(Path.Combine(_directory, "throughput.png")));
    }

    [Fact]
    public async Task CrossProcessQuick_TransportsWithoutFloor_MeasuresTheFloorAnyway()
    {
        await DotnetRun.RunBenchmarksAsync(output, TimeSpan.FromSeconds(120), "cross-process", "--quick", "--transports", "unix-socket", "--pingpong-sizes", "64", "--oneway-sizes", "64", "--oneway-echo-sizes", "none", "--no-charts", "--out", _directory);

        string[] rows = (await File.ReadAllLinesAsync(Path.Combine(_directory, "results.csv"))).Skip(2).ToArray();
        Assert.Equal(4, rows.Length);
        Assert.Equal(2, rows.Count(row => row.StartsWith("floor,busy-spin,", StringComparison.Ordinal)));
        // Each workload and size let the JIT settle after its warm-up (at least the two quiet rounds it waits for, or
        // the quick limit of 3 s), and the run line says how it went.
        string markdown = await File.ReadAllTextAsync(Path.Combine(_directory, "results.md"));
        Assert.Matches(@"after a 60 ms warm-up and JIT settling \(short rounds with pauses until two in a row compile nothing: ([2-9]|[1-9]\d+)-\d+ rounds, at most \d+\.\d s\)", markdown);
    }

    [Fact]
    public async Task CrossProcess_FourRounds_ReadsEachRoundTripSliceAgainstTheFloorsOfItsRound()
    {
        // With JIT settling (unmeasured slices, which must not be counted) and the harness's own check that every round
        // trip of a slice is in its histogram once (the run fails otherwise).
        await DotnetRun.RunBenchmarksAsync(output, TimeSpan.FromSeconds(120), "cross-process", "--rounds", "4", "--slice-ms", "50", "--warmup-ms", "50", "--jit-settle-ms", "500",
            "--transports", "pagerange-raw:busy-spin", "--pingpong-sizes", "64", "--oneway-sizes", "none", "--oneway-echo-sizes", "none", "--no-charts", "--out", _directory);

        string markdown = await File.ReadAllTextAsync(Path.Combine(_directory, "results.md"));
        Assert.Contains("## Round trip against the floor, slice by slice", markdown, StringComparison.Ordinal);
        string row = Assert.Single(markdown.Split('\n'), line => line.StartsWith("| 64 B | pagerange-raw | busy-spin |", StringComparison.Ordinal));
        string[] cells = row.Split('|').Select(cell => cell.Trim()).ToArray();
        // Every measured round's slice is in one group or the other, and nothing else (warm-up, settling) is.
        int fast = int.Parse(cells[4], CultureInfo.InvariantCulture);
        int slow = int.Parse(cells[8], CultureInfo.InvariantCulture);
        Assert.Equal(4, fast + slow);
        // The group's median p50 lies within the whole run's range of round trips (a slice's own, not a running total).
        double p50 = double.Parse(cells[7], CultureInfo.InvariantCulture);
        string[] csv = (await File.ReadAllLinesAsync(Path.Combine(_directory, "results.csv"))).Single(line => line.StartsWith("pagerange-raw,busy-spin,pingpong,64,", StringComparison.Ordinal)).Split(',');
        Assert.InRange(p50 * 1000, 1, double.Parse(csv[7], CultureInfo.InvariantCulture));
        Assert.True(double.Parse(cells[5].TrimEnd('×'), CultureInfo.InvariantCulture) > 0, row);
    }

    [Fact]
    public async Task CrossProcess_JitSettleZero_MeasuresRightAfterTheWarmup()
    {
        await DotnetRun.RunBenchmarksAsync(output, TimeSpan.FromSeconds(120), "cross-process", "--quick", "--jit-settle-ms", "0", "--transports", "unix-socket", "--pingpong-sizes", "64", "--oneway-sizes", "none", "--oneway-echo-sizes", "none", "--no-charts", "--out", _directory);

        string markdown = await File.ReadAllTextAsync(Path.Combine(_directory, "results.md"));
        Assert.Contains("after a 60 ms warm-up, PageRange regions", markdown, StringComparison.Ordinal);
        Assert.DoesNotContain("JIT settling", markdown, StringComparison.Ordinal);
    }

    [Fact]
    public async Task CrossProcess_DumpState_BothProcessesWriteTheirViewOfTheStreamsPacks()
    {
        await DotnetRun.RunBenchmarksAsync(output, TimeSpan.FromSeconds(120), "cross-process", "--quick", "--jit-settle-ms", "0",
            "--transports", "pagerange-batch:spin-then-park,unix-socket", "--pingpong-sizes", "none", "--oneway-sizes", "64", "--oneway-echo-sizes", "none", "--no-charts", "--dump-state", "--out", _directory);

        // One file per PageRange connection and side; none for the socket or the floor.
        Assert.Equal(
            ["state-pagerange-batch-spin-then-park-host.txt", "state-pagerange-batch-spin-then-park-peer.txt"],
            Directory.GetFiles(_directory, "state-*").Select(Path.GetFileName).Order(StringComparer.Ordinal));
        string host = await File.ReadAllTextAsync(Path.Combine(_directory, "state-pagerange-batch-spin-then-park-host.txt"));
        string peer = await File.ReadAllTextAsync(Path.Combine(_directory, "state-pagerange-batch-spin-then-park-peer.txt"));
        // The host sent the 64 B stream in packs (its outbound's line); the peer took exactly those messages from exactly
        // those packs (its inbound's line), with at least one look at a Committed word per pack, and freed them all.
        (long opened, long packed) = Numbers(host, @"packs of small oneways: (\d+) opened, (\d+) messages packed");
        (long taken, long messages) = Numbers(peer, @"packs of small oneways: (\d+) taken, (\d+) messages from them");
        Assert.True(packed > opened && opened > 0, host);
        Assert.Equal((opened, packed), (taken, messages));
        (long looks, long notFreed) = Numbers(peer, @"messages from them in (\d+) looks at a Committed word, (\d+) not yet freed");
        Assert.InRange(looks, taken, messages + taken);
        Assert.Equal(0, notFreed);
    }

    /// <summary>The two numbers the first match of <paramref name="pattern"/> in a state dump captures.</summary>
    private static (long, long) Numbers(string state, string pattern)
    {
        System.Text.RegularExpressions.Match match = System.Text.RegularExpressions.Regex.Match(state, pattern);
        Assert.True(match.Success, $"'{pattern}' not in:\n{state}");
        return (long.Parse(match.Groups[1].Value, CultureInfo.InvariantCulture), long.Parse(match.Groups[2].Value, CultureInfo.InvariantCulture));
    }

    [Fact]
    public async Task MicroDry_EveryBenchmarkOfEveryClass_RunsToAMean()
    {
        // BenchmarkDotNet's dry job in this process: every case once, seconds in all. It measures nothing worth reading
        // (one cold iteration); it proves each benchmark still sets up, runs and cleans up, which a full run takes an
        // hour to find out. A case that throws is reported with a mean of NA, and the run still exits with 0.
        await DotnetRun.RunBenchmarksAsync(output, TimeSpan.FromSeconds(300), "micro", "--filter", "*", "--job", "dry", "--inProcess", "--memory", "--artifacts", _directory);

        string micro = Path.Combine(RepositoryPaths.Root, "benchmarks", "PageRange.Benchmarks", "Micro");
        var classes = Directory.GetFiles(micro, "*.cs")
            .Select(file => (Class: Path.GetFileNameWithoutExtension(file), Methods: BenchmarkMethods(File.ReadAllText(file))))
            .Where(source => source.Methods.Length > 0)
            .ToList();
        Assert.True(classes.Count >= 6, string.Join(", ", classes.Select(c => c.Class)));
        foreach ((string name, string[] methods) in classes)
        {
            string csv = Path.Combine(_directory, "results", $"PageRange.Benchmarks.Micro.{name}-report.csv");
            Assert.True(File.Exists(csv), $"no report for {name}");
            string[] lines = await File.ReadAllLinesAsync(csv);
            string[] header = CsvFields(lines[0]);
            int method = Array.IndexOf(header, "Method");
            int mean = Array.IndexOf(header, "Mean");
            string[][] rows = lines.Skip(1).Select(CsvFields).ToArray();
            Assert.Equal(methods.Order(StringComparer.Ordinal), rows.Select(row => row[method]).Distinct().Order(StringComparer.Ordinal));
            Assert.All(rows, row => Assert.True(row[mean].EndsWith('s') && row[mean] != "NA", $"{name}.{row[method]}: mean '{row[mean]}'"));
        }
    }

    /// <summary>A CSV line's fields: commas inside double quotes (a value BenchmarkDotNet quoted) belong to the field.</summary>
    private static string[] CsvFields(string line)
    {
        var fields = new List<string>();
        var field = new System.Text.StringBuilder();
        bool quoted = false;
        foreach (char c in line)
        {
            if (c == '"')
            {
                quoted = !quoted;
            }
            else if (c == ',' && !quoted)
            {
                fields.Add(field.ToString());
                field.Clear();
            }
            else
            {
                field.Append(c);
            }
        }
        fields.Add(field.ToString());
        return [.. fields];
    }

    /// <summary>The names of the methods marked <c>[Benchmark]</c> in a benchmark class's source.</summary>
    private static string[] BenchmarkMethods(string source) =>
        System.Text.RegularExpressions.Regex.Matches(source, @"\[Benchmark\b[^\]]*\]\s*public\s+[\w<>\[\]?]+\s+(\w+)\s*\(")
            .Select(match => match.Groups[1].Value).ToArray();

    [Fact]
    public async Task MemoryQuick_SecondBurstReusesLruPages_ScanReturnsThemToTheKernel()
    {
        await DotnetRun.RunBenchmarksAsync(output, TimeSpan.FromSeconds(120), "memory", "--quick", "--out", _directory);

        string[] lines = await File.ReadAllLinesAsync(Path.Combine(_directory, "memory.csv"));
        // time_s,phase,used,available,free,resident,...
        var samples = lines.Skip(2).Select(line =>
        {
            string[] quoted = line.Split('"');
            string[] after = quoted[2].Split(',');
            return (Phase: quoted[1], Free: int.Parse(after[3], CultureInfo.InvariantCulture), Resident: long.Parse(after[4], CultureInfo.InvariantCulture));
        }).ToList();
        // The sampler takes each phase's first sample as the phase begins, in the same order as the others: the first
        // sample of the phase after a phase is the state at its end, there even when the loaded machine left the
        // sampling thread no time to sample during a phase.
        (string Phase, int Free, long Resident) Start(string phase) => samples.First(s => s.Phase.StartsWith(phase, StringComparison.Ordinal));
        (string Phase, int Free, long Resident) End(string phase) => samples[samples.FindLastIndex(s => s.Phase.StartsWith(phase, StringComparison.Ordinal)) + 1];

        // Burst 1 backed pages, which stay backed (Available, on the LRU) after it.
        int backed1 = Start("burst 1").Free - End("burst 1").Free;
        Assert.True(backed1 > 0, "burst 1 backed no page");
        // Burst 2 took its pages from the LRU: it backed almost none. Not none: one round of a burst may need a page or
        // two more than another (where the allocator places the messages), and a burst that a loaded machine cut to a
        // round or two can end before its largest round, leaving burst 2 to back those (seen: 1 page, under load).
        // A burst 2 that did not reuse the LRU backs all of burst 1's pages again.
        int backed2 = Start("burst 2").Free - samples.Where(s => s.Phase.StartsWith("burst 2", StringComparison.Ordinal)).Append(End("burst 2")).Min(s => s.Free);
        Assert.True(backed2 * 10 < backed1, $"burst 2 backed {backed2} pages, burst 1 {backed1}: the LRU's pages were not reused");
        // The explicit scan punched them: the memfd's resident bytes fell by the burst's footprint, from the phase's start
        // to its end (before burst 3 sends anything).
        long before = Start("explicit").Resident;
        long after = End("explicit").Resident;
        Assert.True(after < before / 4, $"resident {after} after the scan, {before} before");
    }

    public void Dispose() => Directory.Delete(_directory, recursive: true);
}
