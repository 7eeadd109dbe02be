namespace PageRange.Memory;

/// <summary>One reading of the memory-pressure signals; a signal the system does not offer is <see langword="null"/>.</summary>
/// <param name="PsiSomeAvg10">PSI <c>some avg10</c> of <c>/proc/pressure/memory</c>, in percent.</param>
/// <param name="MemAvailableBytes"><c>MemAvailable</c> of <c>/proc/meminfo</c>.</param>
/// <param name="MemTotalBytes"><c>MemTotal</c> of <c>/proc/meminfo</c>.</param>
/// <param name="GcMemoryLoadPercent">The GC's memory load over the memory available to the process, in percent.</param>
internal readonly record struct MemoryPressureReading(
    double? PsiSomeAvg10, long? MemAvailableBytes, long? MemTotalBytes, double? GcMemoryLoadPercent)
{
    /// <summary>The signals of this reading that cross the thresholds of <paramref name="options"/>.</summary>
    /// <remarks>Pure: the monitor's whole decision, so tests can drive it with made-up readings.</remarks>
    internal MemoryPressureSignals Evaluate(ShrinkerOptions options)
    {
        MemoryPressureSignals signals = MemoryPressureSignals.None;
        if (options.PsiSomeAvg10Threshold is { } psiThreshold && PsiSomeAvg10 is { } psi && psi >= psiThreshold)
        {
            signals |= MemoryPressureSignals.Psi;
        }
        if (options.MinAvailableMemoryPercent is { } minAvailable
            && MemAvailableBytes is { } available
            && MemTotalBytes is { } total
            && total > 0
            && available * 100.0 / total < minAvailable)
        {
            signals |= MemoryPressureSignals.MemAvailable;
        }
        if (options.GcMemoryLoadThresholdPercent is { } loadThreshold && GcMemoryLoadPercent is { } load && load >= loadThreshold)
        {
            signals |= MemoryPressureSignals.GcMemoryLoad;
        }
        return signals;
    }
}
