using System.Diagnostics;
using System.Globalization;
using System.Reflection;
using System.Text;
using PageRange.Memory;
using PageRange.Transport;
using ScottPlot;

namespace PageRange.Benchmarks.CrossProcess;

/// <summary>
/// <c>memory</c>: bursts, idles and bursts again over a real two-process PageRange connection while a sampler records
/// the peer region's pages (Used / Available / Free), its resident bytes as the kernel counts them (<c>st_blocks</c>),
/// the shrinker's LRU, both processes' RSS, and this process's minor page faults. The shrinker runs by an explicit
/// <see cref="Shrinker.Scan"/>, by its pressure monitor (fed an injected pressure signal), and by idle age.
/// </summary>
/// <remarks>
/// What it shows: a second burst takes its pages back from the LRU (Free stays put, no page faults, resident bytes
/// unchanged), and reclaimed pages really leave the memfd and both processes' RSS, then fault in again when needed.
/// </remarks>
internal static class MemoryOverTime
{
    private const int MessageSize = 256 << 10;

    public static async Task<int> RunAsync(string[] args)
    {
        bool quick = args.Contains("--quick");
        string? outArgument = args.SkipWhile(a => a != "--out").Skip(1).FirstOrDefault();
        string directory = outArgument is not null
            ? Path.GetFullPath(outArgument)
            : Path.Combine(CrossProcessOptions.RepositoryRoot(), "benchmarks", "results", quick ? "quick" : "");
        Directory.CreateDirectory(directory);
        TimeSpan idle = TimeSpan.FromMilliseconds(quick ? 400 : 1200);
        TimeSpan burst = TimeSpan.FromMilliseconds(quick ? 400 : 1200);
        MachineInfo machine = MachineInfo.Capture();

        var options = CrossProcessOptions.Parse(["--region-size", (8L << 20).ToString(CultureInfo.InvariantCulture)]);
        using var host = new CrossProcessHost(options);
        await host.ConnectAsync(["pagerange-raw:spin-then-park"], withFloor: false);
        var transport = (PageRangeHostTransport)host.Transports[0];
        OutboundChannel outbound = OutboundOf(transport.Connection);
        var payload = new BenchPayload(MessageSize);

        using var sampler = new Sampler(outbound, host.Peer.Id);
        sampler.Start();
        var pressure = new PressureSwitch();

        sampler.Phase("idle, nothing sent yet");
        Thread.Sleep(idle);
        sampler.Phase("burst 1: pages backed (fallocate) and faulted in");
        Burst(host, transport, outbound, payload, burst);
        sampler.Phase("idle: freed pages wait on the LRU, still resident");
        Thread.Sleep(idle);
        sampler.Phase("burst 2: pages reused from the LRU");
        Burst(host, transport, outbound, payload, burst);
        sampler.Phase("explicit Shrinker.Shared.Scan");
        // The peer's last frees reach the writer at its next send or within a park timeout; take them now, so the scan
        // sees every page the burst left Available instead of racing the connection's housekeeping.
        outbound.DrainFrees();
        // A scan skips a page whose range is busy (the seed's try-lock: the connection's housekeeping may be draining
        // frees at that moment, and on a loaded machine its thread may be descheduled holding the lock); a pass that
        // had to skip is retried after a moment. (Stopping at a pass that freed nothing stopped at one that skipped
        // every page, since the region is one range.)
        long scanned = 0;
        for (int pass = 0; pass < 10; pass++)
        {
            long skippedBefore = Shrinker.Shared.PagesSkipped;
            scanned += Shrinker.Shared.Scan(Shrinker.Shared.Count());
            if (Shrinker.Shared.PagesSkipped == skippedBefore)
            {
                break;
            }
            Thread.Sleep(10);
        }
        Thread.Sleep(idle / 2);
        sampler.Phase("burst 3: pages backed and faulted in again");
        Burst(host, transport, outbound, payload, burst);
        using (MemoryPressureMonitor monitor = Shrinker.Shared.StartMonitorCore(
            new ShrinkerOptions { PollingPeriod = TimeSpan.FromMilliseconds(100) }, pressure.Read))
        {
            sampler.Phase("idle, pressure monitor running, no pressure");
            Thread.Sleep(idle);
            sampler.Phase("memory pressure (injected PSI some avg10 = 60%)");
            pressure.On = true;
            Thread.Sleep(idle / 2);
            pressure.On = false;
        }
        sampler.Phase("burst 4");
        Burst(host, transport, outbound, payload, burst);
        using (Shrinker.Shared.StartMonitor(new ShrinkerOptions { PollingPeriod = TimeSpan.FromMilliseconds(100), IdleAge = idle / 2 }))
        {
            sampler.Phase($"idle, monitor with IdleAge {(idle / 2).TotalMilliseconds:F0} ms");
            Thread.Sleep(idle * 1.5);
        }
        sampler.Phase("end");
        Thread.Sleep(100);
        sampler.Stop();

        List<Sample> samples = sampler.Samples;
        string csv = Csv(samples, machine);
        string markdown = Markdown(samples, machine, scanned);
        await File.WriteAllTextAsync(Path.Combine(directory, "memory.csv"), csv);
        await File.WriteAllTextAsync(Path.Combine(directory, "memory.md"), markdown);
        try
        {
            Chart(samples, machine, Path.Combine(directory, "memory.png"));
        }
        catch (Exception error) when (error is TypeInitializationException or DllNotFoundException)
        {
            Console.Error.WriteLine($"chart skipped: {error.Message}");
        }
        Console.WriteLine(markdown);
        Console.WriteLine($"written: {Path.Combine(directory, "memory.md")}, memory.csv, memory.png");
        return 0;
    }

    /// <summary>
    /// One burst: fill most of the peer's oneway quota while it is not reading (so many pages are Used at once), then
    /// let it drain and free them all; again until <paramref name="duration"/> is over.
    /// </summary>
    private static void Burst(CrossProcessHost host, PageRangeHostTransport transport, OutboundChannel outbound, BenchPayload payload, TimeSpan duration)
    {
        // Leave room for the allocator's rounding: the quota is half the data area.
        int fill = (int)(outbound.MaxOnewayMessageSize / (MessageSize + 4096)) - 1;
        var clock = Stopwatch.StartNew();
        do
        {
            transport.SendOneways(payload, fill);
            host.Peer.Serve(0);
            StopReport report = transport.Stop();
            if (report.Messages != fill)
            {
                throw new InvalidOperationException($"The peer received {report.Messages} of {fill} messages.");
            }
        }
        while (clock.Elapsed < duration);
    }

    /// <summary>The writer's channel into the peer's region. The connection keeps it private; the benchmark reads its pages and region.</summary>
    private static OutboundChannel OutboundOf(PageRangeConnection connection) =>
        typeof(PageRangeConnection).GetField("_outbound", BindingFlags.NonPublic | BindingFlags.Instance)?.GetValue(connection) as OutboundChannel
        ?? throw new InvalidOperationException("PageRangeConnection no longer has an _outbound field; update the memory benchmark.");

    private static string Csv(List<Sample> samples, MachineInfo machine)
    {
        var text = new StringBuilder();
        text.Append(CultureInfo.InvariantCulture, $"# machine: {machine}\n");
        text.Append("time_s,phase,used_pages,available_pages,free_pages,region_resident_bytes,lru_pages,host_rss_bytes,host_rss_shmem_bytes,peer_rss_bytes,peer_rss_shmem_bytes,host_minor_faults,shrinker_pages_freed\n");
        foreach (Sample s in samples)
        {
            text.Append(CultureInfo.InvariantCulture,
                $"{s.Seconds:F3},\"{s.Phase}\",{s.Stats.Used},{s.Stats.Available},{s.Stats.Free},{s.Stats.ResidentBytes},{s.LruPages},{s.HostRss.Resident},{s.HostRss.Shmem},{s.PeerRss.Resident},{s.PeerRss.Shmem},{s.HostMinorFaults},{s.PagesFreed}\n");
        }
        return text.ToString();
    }

    private static string Markdown(List<Sample> samples, MachineInfo machine, long scanned)
    {
        var text = new StringBuilder();
        text.Append("# PageRange memory over time\n\n");
        text.Append(CultureInfo.InvariantCulture, $"- Machine: {machine}\n");
        text.Append("- Command: `dotnet run -c Release --project benchmarks/PageRange.Benchmarks -- memory`\n");
        text.Append(CultureInfo.InvariantCulture,
            $"- Workload: oneway messages of {MessageSize >> 10} KiB into the peer's 8 MiB region, sent while the peer does not read until its oneway quota is nearly full, then drained and freed; sampled every {Sampler.Period.TotalMilliseconds:F0} ms.\n");
        text.Append(CultureInfo.InvariantCulture, $"- The explicit `Shrinker.Shared.Scan` freed {scanned} pages.\n\n");
        text.Append("Pages are the peer region's data pages as the writer (this process) tracks them; resident is the memfd's `st_blocks`; RSS shmem is the shared-memory part of each process's RSS. ");
        text.Append("Faults are this process's minor page faults during the phase; pages backed is how many pages went from Free to Used (each an `fallocate`).\n\n");
        text.Append("| # | phase | s | peak Used | at end Used:Available:Free | resident at end (KiB) | host RSS shmem at end (KiB) | peer RSS shmem at end (KiB) | minor faults | pages backed | pages reclaimed |\n");
        text.Append("|--:|---|--:|--:|---|--:|--:|--:|--:|--:|--:|\n");
        int number = 0;
        foreach (IGrouping<string, Sample> phase in samples.GroupBy(s => s.Phase).Where(g => g.Key != "end"))
        {
            number++;
            Sample first = phase.First();
            Sample last = samples.FirstOrDefault(s => s.Seconds > phase.Last().Seconds) ?? phase.Last();
            // Pages that left Free are pages backed again; the high-water of Used shows the burst's footprint.
            int backed = Math.Max(0, first.Stats.Free - phase.Min(s => s.Stats.Free));
            text.Append(CultureInfo.InvariantCulture,
                $"| {number} | {phase.Key} | {last.Seconds - first.Seconds:F1} | {phase.Max(s => s.Stats.Used)} | {last.Stats.Used}:{last.Stats.Available}:{last.Stats.Free} | {last.Stats.ResidentBytes >> 10:N0} | {last.HostRss.Shmem >> 10:N0} | {last.PeerRss.Shmem >> 10:N0} | {last.HostMinorFaults - first.HostMinorFaults:N0} | {backed} | {last.PagesFreed - first.PagesFreed} |\n");
        }
        text.Append('\n');
        return text.ToString();
    }

    private static void Chart(List<Sample> samples, MachineInfo machine, string path)
    {
        var plot = new Plot();
        double[] xs = samples.Select(s => s.Seconds).ToArray();
        void Line(string label, Func<Sample, double> value)
        {
            var scatter = plot.Add.Scatter(xs, samples.Select(value).ToArray());
            scatter.LegendText = label;
            scatter.MarkerSize = 0;
            scatter.LineWidth = 2;
        }
        Line("region resident (st_blocks)", s => s.Stats.ResidentBytes / 1048576.0);
        Line("Used pages", s => s.Stats.Used * (double)SharedRegion.PageSize / 1048576.0);
        Line("Available pages (on the LRU)", s => s.Stats.Available * (double)SharedRegion.PageSize / 1048576.0);
        Line("host RSS shmem", s => s.HostRss.Shmem / 1048576.0);
        Line("peer RSS shmem", s => s.PeerRss.Shmem / 1048576.0);
        int index = 1;
        foreach (IGrouping<string, Sample> phase in samples.GroupBy(s => s.Phase))
        {
            var line = plot.Add.VerticalLine(phase.First().Seconds);
            line.LinePattern = LinePattern.Dotted;
            line.Color = Colors.Gray;
            line.Text = phase.Key == "end" ? "" : index++.ToString(CultureInfo.InvariantCulture);
        }
        plot.XLabel("time (s); dotted lines start the phases numbered as in memory.md");
        plot.YLabel("MiB");
        plot.Title($"Memory over time: bursts, idle, shrinker\n{machine}", size: 13);
        plot.ShowLegend(Alignment.UpperRight);
        plot.SavePng(path, 1200, 650);
    }

    /// <summary>A pressure signal the benchmark turns on and off: the monitor's whole input, injected.</summary>
    private sealed class PressureSwitch
    {
        public volatile bool On;

        public MemoryPressureReading Read() => On
            ? new MemoryPressureReading(PsiSomeAvg10: 60, MemAvailableBytes: null, MemTotalBytes: null, GcMemoryLoadPercent: null)
            : new MemoryPressureReading(PsiSomeAvg10: 0, MemAvailableBytes: null, MemTotalBytes: null, GcMemoryLoadPercent: null);
    }

    internal readonly record struct ProcessRss(long Resident, long Shmem)
    {
        public static ProcessRss Of(string statusPath)
        {
            long rss = 0;
            long shmem = 0;
            try
            {
                foreach (string line in File.ReadLines(statusPath))
                {
                    if (line.StartsWith("VmRSS:", StringComparison.Ordinal))
                    {
                        rss = Kilobytes(line) * 1024;
                    }
                    else if (line.StartsWith("RssShmem:", StringComparison.Ordinal))
                    {
                        shmem = Kilobytes(line) * 1024;
                    }
                }
            }
            catch (IOException)
            {
                // The process is gone; report nothing.
            }
            return new ProcessRss(rss, shmem);
        }

        private static long Kilobytes(string line) =>
            long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture);
    }

    internal sealed record Sample(double Seconds, string Phase, PageRangeStats Stats, long LruPages, ProcessRss HostRss, ProcessRss PeerRss, long HostMinorFaults, long PagesFreed);

    /// <summary>Samples on its own thread every <see cref="Period"/>, labelling each sample with the current phase.</summary>
    /// <remarks>
    /// A sample is taken and added under one lock, which <see cref="Phase"/> takes to change the phase and take the
    /// phase's first sample: so a sample's label is the phase its numbers were read in, the list is in time order, and
    /// each phase's first sample is the state at its start (the end of the phase before), even when a loaded machine
    /// leaves the sampling thread no time to sample within a phase. (The label was read apart from the numbers: a
    /// sampler descheduled between them labelled the next phase's numbers with the last phase.)
    /// </remarks>
    private sealed class Sampler(OutboundChannel outbound, int peerPid) : IDisposable
    {
        public static readonly TimeSpan Period = TimeSpan.FromMilliseconds(25);

        private readonly Stopwatch _clock = new();
        private readonly ManualResetEventSlim _stop = new();
        private readonly Lock _sampling = new();
        private Thread? _thread;
        private string _phase = "";

        /// <summary>The samples in time order; read once <see cref="Stop"/> returned.</summary>
        public List<Sample> Samples { get; } = [];

        public void Start()
        {
            _clock.Start();
            _thread = new Thread(Loop) { IsBackground = true, Name = "memory sampler" };
            _thread.Start();
        }

        public void Phase(string phase)
        {
            lock (_sampling)
            {
                _phase = phase;
                TakeSampleLocked();
            }
        }

        public void Stop()
        {
            _stop.Set();
            _thread?.Join();
        }

        private void Loop()
        {
            while (!_stop.Wait(Period))
            {
                lock (_sampling)
                {
                    TakeSampleLocked();
                }
            }
        }

        private void TakeSampleLocked() =>
            Samples.Add(new Sample(
                _clock.Elapsed.TotalSeconds, _phase, outbound.Pages.GetStats(), Shrinker.Shared.Count(),
                ProcessRss.Of("/proc/self/status"), ProcessRss.Of($"/proc/{peerPid}/status"), MinorFaults(), Shrinker.Shared.PagesFreed));

        /// <summary>minflt, the 10th field of <c>/proc/self/stat</c> (counted after the command's closing parenthesis).</summary>
        private static long MinorFaults()
        {
            string stat = File.ReadAllText("/proc/self/stat");
            string[] fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
            return long.Parse(fields[7], CultureInfo.InvariantCulture);
        }

        public void Dispose() => _stop.Dispose();
    }
}
