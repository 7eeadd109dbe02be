using PageRange.Diagnostics;

namespace PageRange.Tests.Diagnostics;

/// <summary>The registry the observable instruments sum over, with a source whose regions are already gone.</summary>
[Collection(MetricsCollection.Name)]
public sealed class MetricsRegistryTests
{
    [Fact]
    public void Unregister_SourceClosedBeforeItsOwnerDisposedIt_KeepsItsCumulativeCounts()
    {
        var source = new ClosedSource(ignoredFrees: 3, onewaySpamSuspects: 2);
        MetricsSample before = MetricsRegistry.Collect();

        MetricsRegistry.Register(source);
        MetricsSample live = MetricsRegistry.Collect();
        MetricsRegistry.Unregister(source);
        MetricsSample after = MetricsRegistry.Collect();

        // Its holdings cannot be read any more (Collect throws), its counts still can: they count while it is
        // registered and stay in the totals once it left, so the counters never go backwards.
        Assert.Equal(before.Connections, live.Connections);
        Assert.Equal(before.IgnoredFrees + 3, live.IgnoredFrees);
        Assert.Equal(before.OnewaySpamSuspects + 2, live.OnewaySpamSuspects);
        Assert.Equal(before.IgnoredFrees + 3, after.IgnoredFrees);
        Assert.Equal(before.OnewaySpamSuspects + 2, after.OnewaySpamSuspects);
        Assert.True(source.CountsRead >= 2);
    }

    [Fact]
    public void Unregister_Twice_RetiresTheCountsOnce()
    {
        var source = new ClosedSource(ignoredFrees: 5, onewaySpamSuspects: 0);
        MetricsRegistry.Register(source);
        MetricsRegistry.Unregister(source);
        long once = MetricsRegistry.Collect().IgnoredFrees;

        MetricsRegistry.Unregister(source);

        Assert.Equal(once, MetricsRegistry.Collect().IgnoredFrees);
    }

    /// <summary>A connection whose regions a protocol violation unmapped before its owner disposed it.</summary>
    private sealed class ClosedSource(long ignoredFrees, long onewaySpamSuspects) : IMetricsSource
    {
        public int CountsRead { get; private set; }

        public void Collect(ref MetricsSample sample)
        {
            sample.Connections++;
            throw new ObjectDisposedException(nameof(ClosedSource));
        }

        public void CollectCounts(ref MetricsSample sample)
        {
            CountsRead++;
            sample.IgnoredFrees += ignoredFrees;
            sample.OnewaySpamSuspects += onewaySpamSuspects;
        }
    }
}
