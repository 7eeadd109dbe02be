namespace PageRange.Benchmarks.Soak;

/// <summary>What the soak was asked to do.</summary>
internal sealed record SoakSettings(TimeSpan Duration, int Seed, int Senders, TimeSpan MinLife, TimeSpan MaxLife, TimeSpan Sample);
