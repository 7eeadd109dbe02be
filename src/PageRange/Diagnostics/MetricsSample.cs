namespace PageRange.Diagnostics;

/// <summary>
/// What the observable instruments report, summed over every live connection (plus, for the cumulative counts, the
/// connections already closed) and the process's shrinker. Filled by <see cref="IMetricsSource.Collect"/> (what the
/// sources hold now) and <see cref="IMetricsSource.CollectCounts"/> (the cumulative counts).
/// </summary>
internal struct MetricsSample
{
    /// <summary>Live connections.</summary>
    internal long Connections;

    /// <summary>Live connections a listener accepted (the server's side); the rest connected (the client's side).</summary>
    internal long AcceptedConnections;

    /// <summary>Pages of the peers' regions covered by a live buffer we wrote.</summary>
    internal long PagesUsed;

    /// <summary>Backed pages of the peers' regions on the shrinker's LRU.</summary>
    internal long PagesAvailable;

    /// <summary>Pages of the peers' regions without backing memory.</summary>
    internal long PagesFree;

    /// <summary>Backed bytes of our own receive regions (the peers write into them).</summary>
    internal long InboundResidentBytes;

    /// <summary>Backed bytes of the peers' regions (we write into them).</summary>
    internal long OutboundResidentBytes;

    /// <summary>Transactions we sent whose buffers the peer has not freed yet.</summary>
    internal long OutboundInFlight;

    /// <summary>Transactions the peer sent that we received and not yet disposed.</summary>
    internal long InboundInFlight;

    /// <summary>Oneway quota left in the peers' regions, in bytes.</summary>
    internal long FreeOnewaySpace;

    /// <summary>Frees the peers pushed that matched no live buffer (cumulative).</summary>
    internal long IgnoredFrees;

    /// <summary>Oneway-spam suspects reported by our allocators (cumulative).</summary>
    internal long OnewaySpamSuspects;

    /// <summary>Pages the process's shrinker looked at (cumulative).</summary>
    internal long ShrinkerPagesScanned;

    /// <summary>Pages the process's shrinker gave back to the kernel (cumulative).</summary>
    internal long ShrinkerPagesFreed;

    /// <summary>Pages the process's shrinker skipped because their range was busy (cumulative).</summary>
    internal long ShrinkerPagesSkipped;
}
