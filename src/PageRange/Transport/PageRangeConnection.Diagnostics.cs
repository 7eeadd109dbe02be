using System.Globalization;
using System.Text;
using PageRange.Allocation;
using PageRange.Diagnostics;
using PageRange.Memory;

namespace PageRange.Transport;

/// <summary>What the <c>PageRange</c> meter and the state dump read from a connection.</summary>
public sealed partial class PageRangeConnection : IMetricsSource
{
    /// <summary>Joins the meter's registry of live connections (and the shared shrinker, once per process).</summary>
    private void RegisterMetrics()
    {
        MetricsRegistry.RegisterOnce(ShrinkerMetricsSource.Instance);
        MetricsRegistry.Register(this);
    }

    /// <summary>Leaves the registry, keeping this connection's cumulative counts in the meter's totals.</summary>
    private void UnregisterMetrics() => MetricsRegistry.Unregister(this);

    /// <inheritdoc/>
    void IMetricsSource.Collect(ref MetricsSample sample)
    {
        // One consistent snapshot of the allocator, with its page range's counts and resident bytes.
        BufferAllocatorStats stats = _outbound.Allocator.GetStats();
        sample.Connections++;
        sample.AcceptedConnections += _chainSide != 0 ? 1 : 0;
        sample.PagesUsed += stats.Pages.Used;
        sample.PagesAvailable += stats.Pages.Available;
        sample.PagesFree += stats.Pages.Free;
        sample.OutboundResidentBytes += stats.Pages.ResidentBytes;
        sample.FreeOnewaySpace += stats.FreeOnewaySpace;
        sample.OutboundInFlight += _outbound.LiveBuffers;
        sample.InboundInFlight += Volatile.Read(ref _liveTransactions);
        // Throws ObjectDisposedException once our region is unmapped; the registry skips us then.
        sample.InboundResidentBytes += _inbound.Region.ResidentBytes;
    }

    /// <inheritdoc/>
    void IMetricsSource.CollectCounts(ref MetricsSample sample)
    {
        // The allocator and the channel keep their counts after they are disposed: readable at any time.
        sample.OnewaySpamSuspects += _outbound.Allocator.GetStats().OnewaySpamReports;
        sample.IgnoredFrees += _outbound.IgnoredFrees;
    }

    /// <summary>
    /// The inbound side of the dump: one line per transaction the peer wrote into our region that is not freed yet
    /// (the receiver's view of its buffers), with where it is (ready, backlogged oneway, or held by the application).
    /// </summary>
    private void AppendInboundBuffers(StringBuilder text)
    {
        CultureInfo invariant = CultureInfo.InvariantCulture;
        using (_slotLock.EnterScope())
        {
            text.AppendLine(invariant, $"  buffers: {_liveTransactions}");
            foreach (IncomingSlot? slot in _incomingSlots)
            {
                if (slot is null || (slot.Generation & 1) == 0)
                {
                    continue;
                }
                TransactionRecord record = slot.Record;
                string where = _incomingReady.Contains(slot) || ReferenceEquals(Volatile.Read(ref _handoff), slot) ? "ready" : _onewayBacklog.Contains(slot) ? "backlog" : "delivered";
                text.AppendLine(invariant,
                    $"  buffer: {(record.Inline ? "inline" : record.Offset)} size {record.Length} id {record.TransactionId} code {record.Code} {TransportMetrics.KindOf(record.Flags) switch
                    {
                        TransactionKind.Oneway => "oneway",
                        TransactionKind.Call => "call",
                        TransactionKind.Reply => "reply",
                        _ => "error-reply",
                    }} {where}");
            }
        }
    }

    /// <summary>The process-wide shrinker's cumulative counts, for the meter.</summary>
    private sealed class ShrinkerMetricsSource : IMetricsSource
    {
        internal static readonly ShrinkerMetricsSource Instance = new();

        public void Collect(ref MetricsSample sample)
        {
            // The shrinker holds nothing of its own: it only counts.
        }

        public void CollectCounts(ref MetricsSample sample)
        {
            Shrinker shrinker = Shrinker.Shared;
            sample.ShrinkerPagesScanned += shrinker.PagesScanned;
            sample.ShrinkerPagesFreed += shrinker.PagesFreed;
            sample.ShrinkerPagesSkipped += shrinker.PagesSkipped;
        }
    }
}
