using PageRange.Memory;

namespace PageRange.Transport;

/// <summary>Read-only views for tests: the regions behind a connection, to inject faults and count resources.</summary>
public sealed partial class PageRangeConnection
{
    /// <summary>The peer's region, which this side writes into (set its <see cref="SharedRegion.AllocationFaultInjector"/>).</summary>
    internal SharedRegion OutboundRegionForTests => _outbound.Region;

    /// <summary>This side's own receive region, which the peer writes into.</summary>
    internal SharedRegion InboundRegionForTests => _inbound.Region;
}
