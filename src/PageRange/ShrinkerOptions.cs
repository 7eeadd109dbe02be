using Microsoft.Extensions.Logging;

namespace PageRange;

/// <summary>
/// When the memory-pressure monitor (<see cref="Memory.Shrinker.StartMonitor"/>) asks the shrinker to reclaim
/// Available pages: the signals it watches, their thresholds, how often it looks, and an optional idle age.
/// </summary>
/// <remarks>
/// The monitor reclaims when <em>any</em> signal crosses its threshold; setting a threshold to <see langword="null"/>
/// switches that signal off. A signal the system does not offer (no PSI in the kernel, say) is ignored.
/// The monitor copies the options when it starts; changing them afterwards has no effect on it.
/// </remarks>
public sealed class ShrinkerOptions
{
    /// <summary>Whether the monitor runs at all. Defaults to <see langword="true"/>; when false it starts no timer.</summary>
    public bool Enabled { get; set; } = true;

    /// <summary>How often the monitor reads the signals. Defaults to 1 second; at least 1 millisecond.</summary>
    public TimeSpan PollingPeriod { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>
    /// Reclaim when the <c>some avg10</c> of Linux PSI (<c>/proc/pressure/memory</c>) is at least this: the percentage
    /// of the last 10 seconds in which at least one task stalled waiting for memory. Defaults to 10.
    /// </summary>
    public double? PsiSomeAvg10Threshold { get; set; } = 10.0;

    /// <summary>
    /// Reclaim when <c>MemAvailable</c> in <c>/proc/meminfo</c> falls below this percentage of <c>MemTotal</c>.
    /// Defaults to 5.
    /// </summary>
    public double? MinAvailableMemoryPercent { get; set; } = 5.0;

    /// <summary>
    /// Reclaim when the GC's memory load (<see cref="GC.GetGCMemoryInfo()"/>: load over the memory available to the
    /// process, which honours a container's limit) is at least this percentage. Defaults to 90, the GC's own
    /// high-memory-load threshold.
    /// </summary>
    public double? GcMemoryLoadThresholdPercent { get; set; } = 90.0;

    /// <summary>
    /// The most pages one poll under pressure reclaims (the kernel's <c>nr_to_scan</c>). Defaults to
    /// <see cref="long.MaxValue"/>: every Available page.
    /// </summary>
    public long MaxPagesPerScan { get; set; } = long.MaxValue;

    /// <summary>
    /// When set, every poll also reclaims pages that have been Available for at least this long, pressure or not.
    /// Defaults to <see langword="null"/> (off).
    /// </summary>
    public TimeSpan? IdleAge { get; set; }

    /// <summary>
    /// Where the monitor logs changes of memory pressure and the shrinker logs its passes
    /// (<see cref="Diagnostics.PageRangeLogEvents.MemoryCategory"/>).
    /// </summary>
    /// <remarks>
    /// Defaults to <see langword="null"/>: no logging, at no cost. The shrinker serves the whole process, so the first
    /// factory it is given stays its own.
    /// </remarks>
    public ILoggerFactory? LoggerFactory { get; set; }

    /// <summary>Checks every value; called when a monitor starts.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A value is out of range.</exception>
    internal void Validate()
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(PollingPeriod, TimeSpan.FromMilliseconds(1), nameof(PollingPeriod));
        ThrowIfNotPercent(PsiSomeAvg10Threshold, nameof(PsiSomeAvg10Threshold));
        ThrowIfNotPercent(MinAvailableMemoryPercent, nameof(MinAvailableMemoryPercent));
        ThrowIfNotPercent(GcMemoryLoadThresholdPercent, nameof(GcMemoryLoadThresholdPercent));
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(MaxPagesPerScan, nameof(MaxPagesPerScan));
        if (IdleAge is { } idleAge)
        {
            ArgumentOutOfRangeException.ThrowIfLessThan(idleAge, TimeSpan.Zero, nameof(IdleAge));
        }
    }

    /// <summary>A copy, so a running monitor does not see later changes.</summary>
    internal ShrinkerOptions Clone() => (ShrinkerOptions)MemberwiseClone();

    private static void ThrowIfNotPercent(double? value, string name)
    {
        if (value is { } percent && (double.IsNaN(percent) || percent < 0 || percent > 100))
        {
            throw new ArgumentOutOfRangeException(name, percent, "A percentage lies in [0, 100].");
        }
    }
}
