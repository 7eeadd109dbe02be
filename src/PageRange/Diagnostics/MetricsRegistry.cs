// Locks: s_lock (the registry) is taken before any lock a source's Collect takes (allocator, page range).

namespace PageRange.Diagnostics;

/// <summary>
/// The live connections the observable instruments sum over. Registering and unregistering happen when a connection
/// opens and closes; the hot path never touches the registry.
/// </summary>
/// <remarks>
/// The cumulative counts (<see cref="IMetricsSource.CollectCounts"/>) are read apart from what a source holds: they
/// stay readable after the source closed (a protocol violation unmaps a connection's regions before its owner disposes
/// it), and those of a source that unregisters are folded into retired totals under the same lock, so an observable
/// counter never goes backwards when a connection closes.
/// </remarks>
internal static class MetricsRegistry
{
    private static readonly Lock s_lock = new();
    private static readonly List<IMetricsSource> s_sources = [];
    private static MetricsSample s_retired;

    /// <summary>How many sources are registered.</summary>
    internal static int Count
    {
        get
        {
            using (s_lock.EnterScope())
            {
                return s_sources.Count;
            }
        }
    }

    /// <summary>Adds a live source.</summary>
    internal static void Register(IMetricsSource source)
    {
        ArgumentNullException.ThrowIfNull(source);
        using (s_lock.EnterScope())
        {
            s_sources.Add(source);
        }
    }

    /// <summary>Adds a source that lives as long as the process (the shared shrinker), once however often it is called.</summary>
    internal static void RegisterOnce(IMetricsSource source)
    {
        ArgumentNullException.ThrowIfNull(source);
        using (s_lock.EnterScope())
        {
            if (!s_sources.Contains(source))
            {
                s_sources.Add(source);
            }
        }
    }

    /// <summary>Removes a source, keeping its cumulative counts; a second call does nothing.</summary>
    internal static void Unregister(IMetricsSource source)
    {
        ArgumentNullException.ThrowIfNull(source);
        using (s_lock.EnterScope())
        {
            if (!s_sources.Remove(source))
            {
                return;
            }
            source.CollectCounts(ref s_retired);
        }
    }

    /// <summary>Sums every live source, plus the retired cumulative counts.</summary>
    internal static MetricsSample Collect()
    {
        using (s_lock.EnterScope())
        {
            MetricsSample sample = s_retired;
            foreach (IMetricsSource source in s_sources)
            {
                source.CollectCounts(ref sample);
                MetricsSample one = default;
                if (TryCollect(source, ref one))
                {
                    AddHoldings(ref sample, one);
                }
            }
            return sample;
        }
    }

    private static bool TryCollect(IMetricsSource source, ref MetricsSample sample)
    {
        try
        {
            source.Collect(ref sample);
            return true;
        }
        catch (ObjectDisposedException)
        {
            // Closing right now: it unregisters itself; half a reading would only mislead.
            return false;
        }
    }

    /// <summary>Adds what <see cref="IMetricsSource.Collect"/> reports; the cumulative counts come from <see cref="IMetricsSource.CollectCounts"/> alone.</summary>
    private static void AddHoldings(ref MetricsSample sum, in MetricsSample one)
    {
        sum.Connections += one.Connections;
        sum.AcceptedConnections += one.AcceptedConnections;
        sum.PagesUsed += one.PagesUsed;
        sum.PagesAvailable += one.PagesAvailable;
        sum.PagesFree += one.PagesFree;
        sum.InboundResidentBytes += one.InboundResidentBytes;
        sum.OutboundResidentBytes += one.OutboundResidentBytes;
        sum.OutboundInFlight += one.OutboundInFlight;
        sum.InboundInFlight += one.InboundInFlight;
        sum.FreeOnewaySpace += one.FreeOnewaySpace;
    }
}
