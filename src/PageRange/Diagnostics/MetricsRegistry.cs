// Locks: s_lock (the registry) is taken before any lock a source's Collect takes (allocator, page range).

namespace PageRange.Diagnostics;

/// <summary>
/// The live connections the observable instruments sum over. Registering and unregistering happen when a connection
/// opens and closes; the hot path never touches the registry.
/// </summary>
/// <remarks>
/// The cumulative values (ignored frees, oneway-spam suspects) of a source that unregisters are folded into retired
/// totals under the same lock, so an observable counter never goes backwards when a connection closes.
/// </remarks>
internal static class MetricsRegistry
{
    private static readonly Lock s_lock = new();
    private static readonly List<IMetricsSource> s_sources = [];
    private static long s_retiredIgnoredFrees;
    private static long s_retiredOnewaySpamSuspects;

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
            MetricsSample last = default;
            if (TryCollect(source, ref last))
            {
                s_retiredIgnoredFrees += last.IgnoredFrees;
                s_retiredOnewaySpamSuspects += last.OnewaySpamSuspects;
            }
        }
    }

    /// <summary>Sums every live source, plus the retired cumulative counts.</summary>
    internal static MetricsSample Collect()
    {
        using (s_lock.EnterScope())
        {
            MetricsSample sample = default;
            sample.IgnoredFrees = s_retiredIgnoredFrees;
            sample.OnewaySpamSuspects = s_retiredOnewaySpamSuspects;
            foreach (IMetricsSource source in s_sources)
            {
                MetricsSample one = default;
                if (TryCollect(source, ref one))
                {
                    Add(ref sample, one);
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

    private static void Add(ref MetricsSample sum, in MetricsSample one)
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
        sum.IgnoredFrees += one.IgnoredFrees;
        sum.OnewaySpamSuspects += one.OnewaySpamSuspects;
        sum.ShrinkerPagesScanned += one.ShrinkerPagesScanned;
        sum.ShrinkerPagesFreed += one.ShrinkerPagesFreed;
        sum.ShrinkerPagesSkipped += one.ShrinkerPagesSkipped;
    }
}
