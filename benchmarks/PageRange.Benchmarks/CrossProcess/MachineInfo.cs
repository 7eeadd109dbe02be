using System.Globalization;
using System.Runtime.InteropServices;

namespace PageRange.Benchmarks.CrossProcess;

/// <summary>What the numbers were measured on, and how busy the machine was meanwhile.</summary>
internal sealed record MachineInfo(string CpuModel, int Cores, string Kernel, string Runtime, long MemoryBytes)
{
    public static MachineInfo Capture()
    {
        string cpu = ReadLines("/proc/cpuinfo")
            .Where(line => line.StartsWith("model name", StringComparison.Ordinal))
            .Select(line => line[(line.IndexOf(':', StringComparison.Ordinal) + 1)..].Trim())
            .FirstOrDefault() ?? RuntimeInformation.ProcessArchitecture.ToString();
        long memory = ReadLines("/proc/meminfo")
            .Where(line => line.StartsWith("MemTotal:", StringComparison.Ordinal))
            .Select(line => long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture) * 1024)
            .FirstOrDefault();
        string kernel = ReadLines("/proc/sys/kernel/osrelease").FirstOrDefault() is { } release
            ? $"Linux {release.Trim()} ({RuntimeInformation.OSDescription})"
            : RuntimeInformation.OSDescription;
        // The machine's cores, not Environment.ProcessorCount: that counts only the cores a taskset leaves us.
        int cores = ReadLines("/proc/cpuinfo").Count(line => line.StartsWith("processor", StringComparison.Ordinal));
        return new MachineInfo(cpu, cores > 0 ? cores : Environment.ProcessorCount, kernel, RuntimeInformation.FrameworkDescription, memory);
    }

    public override string ToString() => string.Create(CultureInfo.InvariantCulture,
        $"{CpuModel}, {Cores} cores, {MemoryBytes / (1L << 30)} GiB, {Kernel}, {Runtime}");

    /// <summary>The 1-minute load average now.</summary>
    public static string LoadAverage() => ReadLines("/proc/loadavg").FirstOrDefault() ?? "n/a";

    /// <summary>Busy CPU time of the whole machine so far (every core, from <c>/proc/stat</c>), to tell how much others used.</summary>
    public static TimeSpan MachineBusyTime()
    {
        string? line = ReadLines("/proc/stat").FirstOrDefault(l => l.StartsWith("cpu ", StringComparison.Ordinal));
        if (line is null)
        {
            return TimeSpan.Zero;
        }
        // user nice system idle iowait irq softirq steal ...: all but idle and iowait are busy. USER_HZ is 100 on Linux.
        long[] ticks = line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1..].Select(t => long.Parse(t, CultureInfo.InvariantCulture)).ToArray();
        long busy = ticks[0] + ticks[1] + ticks[2] + ticks[5] + ticks[6] + (ticks.Length > 7 ? ticks[7] : 0);
        return TimeSpan.FromMilliseconds(busy * 10);
    }

    private static IEnumerable<string> ReadLines(string path) => File.Exists(path) ? File.ReadLines(path) : [];
}
