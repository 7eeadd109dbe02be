namespace PageRange.Tests.Diagnostics;

/// <summary>
/// Tests that read the process-wide <c>PageRange</c> meter run in this non-parallel collection, alone: every connection
/// in the process records into the same instruments, so another test's traffic would change the counts.
/// </summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class MetricsCollection
{
    public const string Name = "Metrics";
}
