using System.Diagnostics;
using System.Globalization;

namespace PageRange.Benchmarks.CrossProcess;

/// <summary><c>cross-process</c>: runs the harness and writes results.md, results.csv and the charts.</summary>
internal static class CrossProcessCommand
{
    /// <summary>Runs with <paramref name="options"/>; <paramref name="args"/> (after the command's name) go into the report's command.</summary>
    public static async Task<int> RunAsync(CrossProcessOptions options, string[] args)
    {
        MachineInfo machine = MachineInfo.Capture();
        string directory = options.ResolveOutputDirectory();
        Directory.CreateDirectory(directory);
        Console.WriteLine($"machine: {machine}");
        Console.WriteLine($"transports: {string.Join(", ", options.Transports)}");
        string loadBefore = MachineInfo.LoadAverage();
        TimeSpan busyBefore = MachineInfo.MachineBusyTime();
        var wall = Stopwatch.StartNew();

        List<Measurement> results;
        TimeSpan ourCpu;
        string settled;
        using (var host = new CrossProcessHost(options))
        {
            await host.ConnectAsync(options.Transports);
            TimeSpan cpuBefore = host.CpuTime();
            results = host.RunAll(step => Console.WriteLine($"[{wall.Elapsed.TotalSeconds,6:F1} s] {step}"));
            ourCpu = host.CpuTime() - cpuBefore;
            settled = DescribeSettles(host.Settles, options.JitSettle);
        }
        wall.Stop();

        // Whatever the machine was busy with besides our two processes: the other helpers' builds and tests.
        double others = Math.Max(0, (MachineInfo.MachineBusyTime() - busyBefore - ourCpu).TotalSeconds / wall.Elapsed.TotalSeconds);
        string load = string.Create(CultureInfo.InvariantCulture,
            $"other processes kept {others:F2} of {machine.Cores} cores busy on average during the run; load average before: {loadBefore}, after: {MachineInfo.LoadAverage()}");
        string run = string.Create(CultureInfo.InvariantCulture,
            $"{DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC, {options.Rounds} interleaved round(s) of {options.Slice.TotalMilliseconds:F0} ms per transport and size after a {options.Warmup.TotalMilliseconds:F0} ms warm-up{settled}, PageRange regions of {options.RegionSize >> 20} MiB, {wall.Elapsed.TotalSeconds:F0} s in all");
        var report = new ReportWriter(results, machine, run, load);
        List<string> charts = [];
        if (options.Charts)
        {
            try
            {
                charts = Charts.Write(results, machine, directory);
            }
            catch (Exception error) when (error is TypeInitializationException or DllNotFoundException)
            {
                Console.Error.WriteLine($"charts skipped: {error.Message}");
            }
        }
        string command = "dotnet run -c Release --project benchmarks/PageRange.Benchmarks -- cross-process " + string.Join(' ', args);
        if (options.PinPeerToCpu is not null && HostCpus() is { } cpus)
        {
            // The host's own pinning came from outside (taskset); say so, or the command would not reproduce the run.
            command = $"taskset -c {cpus} {command}";
        }
        await File.WriteAllTextAsync(Path.Combine(directory, "results.csv"), report.Csv());
        string markdown = report.Markdown(command.TrimEnd(), charts);
        await File.WriteAllTextAsync(Path.Combine(directory, "results.md"), markdown);
        Console.WriteLine(markdown);
        Console.WriteLine($"written: {Path.Combine(directory, "results.md")}, results.csv{(charts.Count > 0 ? ", " + string.Join(", ", charts) : "")}");
        return 0;
    }

    /// <summary>How the JIT settled after the warm-ups, for the report's run line (empty when settling was off).</summary>
    private static string DescribeSettles(IReadOnlyList<JitSettle> settles, TimeSpan limit)
    {
        if (settles.Count == 0)
        {
            return "";
        }
        string text = string.Create(CultureInfo.InvariantCulture,
            $" and JIT settling (short rounds with pauses until two in a row compile nothing: {settles.Min(s => s.Rounds)}-{settles.Max(s => s.Rounds)} rounds, at most {settles.Max(s => s.Elapsed.TotalSeconds):F1} s)");
        JitSettle[] unsettled = settles.Where(s => !s.Settled).ToArray();
        return unsettled.Length == 0
            ? text
            : text + string.Create(CultureInfo.InvariantCulture,
                $" (**not settled within {limit.TotalSeconds:F0} s**: {string.Join(", ", unsettled.Select(s => $"{s.Workload} {s.Size} B"))})");
    }

    /// <summary>The cores this process may run on (<c>Cpus_allowed_list</c>), or null when it may run on all of them.</summary>
    private static string? HostCpus()
    {
        string? allowed = File.ReadLines("/proc/self/status")
            .FirstOrDefault(line => line.StartsWith("Cpus_allowed_list:", StringComparison.Ordinal))?
            .Split(':')[1].Trim();
        return allowed == $"0-{Environment.ProcessorCount - 1}" ? null : allowed;
    }
}
