namespace PageRange.Memory;

/// <summary>Which signals said "memory is short" at a poll of the <see cref="MemoryPressureMonitor"/>.</summary>
[Flags]
public enum MemoryPressureSignals
{
    /// <summary>No signal crossed its threshold.</summary>
    None = 0,

    /// <summary>PSI <c>some avg10</c> reached <see cref="ShrinkerOptions.PsiSomeAvg10Threshold"/>.</summary>
    Psi = 1,

    /// <summary><c>MemAvailable</c> fell below <see cref="ShrinkerOptions.MinAvailableMemoryPercent"/> of <c>MemTotal</c>.</summary>
    MemAvailable = 2,

    /// <summary>The GC's memory load reached <see cref="ShrinkerOptions.GcMemoryLoadThresholdPercent"/>.</summary>
    GcMemoryLoad = 4,
}
