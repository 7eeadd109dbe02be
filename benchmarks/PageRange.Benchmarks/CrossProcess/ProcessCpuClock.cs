using System.Runtime.InteropServices;

namespace PageRange.Benchmarks.CrossProcess;

/// <summary>
/// A process's CPU time (user + system of every thread it ever ran, exited ones included) to the nanosecond, from its
/// CPU-time clock (<c>clock_gettime</c>).
/// </summary>
/// <remarks>
/// Not <see cref="System.Diagnostics.Process.TotalProcessorTime"/>: on Linux that reads <c>/proc/&lt;pid&gt;/stat</c>, in
/// clock ticks of 10 ms. A 400 ms slice with a 1 ms peer holds about 300 round trips, so one tick either way in either
/// process moved the CPU per round trip by 33 µs, and a slice's two reads per process could add up to 130 µs.
/// </remarks>
internal static class ProcessCpuClock
{
    // CLOCK_PROCESS_CPUTIME_ID, and the low bits of another process's clock (CPUCLOCK_SCHED: the scheduler's exact runtime).
    private const int OwnProcessClock = 2;
    private const int SchedClockOfPid = 2;

    /// <summary>The CPU time of process <paramref name="pid"/> so far.</summary>
    /// <exception cref="InvalidOperationException">The clock could not be read (the process is gone).</exception>
    public static TimeSpan Of(int pid)
    {
        // Linux's clock id of another process's CPU clock (what glibc's clock_getcpuclockid returns): ~pid << 3 | kind.
        int clock = pid == Environment.ProcessId ? OwnProcessClock : (~pid << 3) | SchedClockOfPid;
        if (ClockGetTime(clock, out Timespec time) != 0)
        {
            throw new InvalidOperationException($"The CPU clock of process {pid} could not be read (errno {Marshal.GetLastPInvokeError()}).");
        }
        return TimeSpan.FromTicks(time.Seconds * TimeSpan.TicksPerSecond + time.Nanoseconds / 100);
    }

    [DllImport("libc", EntryPoint = "clock_gettime", SetLastError = true)]
    [DefaultDllImportSearchPaths(DllImportSearchPath.SafeDirectories)]
    private static extern int ClockGetTime(int clockId, out Timespec time);

    [StructLayout(LayoutKind.Sequential)]
    private struct Timespec
    {
        public long Seconds;
        public long Nanoseconds;
    }
}
