using System.Globalization;

namespace PageRange.Benchmarks.CrossProcess;

/// <summary>
/// The CPU time the runtime's tiered-compilation threads of some processes used since a start: what a measured slice
/// leaves out, because the JIT's re-compiling of hot methods runs on for seconds into a run (with a 1 ms peer it cost
/// up to 180 µs per round trip in a 3 s slice after 6 s of running) and lands in whichever slice it happens to overlap.
/// </summary>
/// <remarks>
/// Per thread, from <c>/proc/&lt;pid&gt;/task/&lt;tid&gt;/schedstat</c> (nanoseconds on the CPU): a thread that starts within the
/// slice counts from zero; one that ends within it loses what it used since the start (so the slice keeps that part, an
/// overestimate, never an underestimate of the transport's own CPU).
/// </remarks>
internal sealed class CompilerThreadsCpu
{
    // The thread name .NET gives its tiered-compilation worker, as the kernel truncates it (15 bytes).
    private const string CompilerThreadName = ".NET Tiered Com";

    private readonly int[] _pids;
    private readonly Dictionary<(int Pid, int Tid), long> _start;

    private CompilerThreadsCpu(int[] pids)
    {
        _pids = pids;
        _start = Read(pids);
    }

    /// <summary>Starts counting the compiler threads of <paramref name="pids"/>.</summary>
    public static CompilerThreadsCpu Start(params int[] pids) => new(pids);

    /// <summary>CPU time the compiler threads used since <see cref="Start"/>.</summary>
    public TimeSpan Elapsed()
    {
        long nanoseconds = 0;
        foreach (((int Pid, int Tid) thread, long now) in Read(_pids))
        {
            nanoseconds += now - _start.GetValueOrDefault(thread);
        }
        return TimeSpan.FromTicks(nanoseconds / 100);
    }

    private static Dictionary<(int Pid, int Tid), long> Read(int[] pids)
    {
        var times = new Dictionary<(int Pid, int Tid), long>();
        foreach (int pid in pids)
        {
            string tasks = $"/proc/{pid}/task";
            if (!Directory.Exists(tasks))
            {
                continue;
            }
            foreach (string task in Directory.EnumerateDirectories(tasks))
            {
                try
                {
                    if (File.ReadAllText(Path.Combine(task, "comm")).TrimEnd('\n') != CompilerThreadName)
                    {
                        continue;
                    }
                    string schedstat = File.ReadAllText(Path.Combine(task, "schedstat"));
                    long onCpu = long.Parse(schedstat.AsSpan(0, schedstat.IndexOf(' ', StringComparison.Ordinal)), NumberStyles.Integer, CultureInfo.InvariantCulture);
                    times[(pid, int.Parse(Path.GetFileName(task), CultureInfo.InvariantCulture))] = onCpu;
                }
                catch (Exception error) when (error is IOException or UnauthorizedAccessException)
                {
                    // The thread ended between the listing and the read.
                }
            }
        }
        return times;
    }
}
