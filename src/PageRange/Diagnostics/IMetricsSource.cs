namespace PageRange.Diagnostics;

/// <summary>Something the observable instruments read: in practice a live connection.</summary>
/// <remarks>
/// Both methods run on the thread that collects metrics (a <c>dotnet-counters</c> or OpenTelemetry exporter), about
/// once a second, never on a hot path. They may take the source's own locks; the registry's lock is held around them,
/// so they must not register or unregister anything.
/// </remarks>
internal interface IMetricsSource
{
    /// <summary>Adds what this source holds now (connections, pages, bytes, transactions in flight) to <paramref name="sample"/>.</summary>
    /// <exception cref="ObjectDisposedException">The source closed meanwhile; the registry skips its holdings.</exception>
    void Collect(ref MetricsSample sample);

    /// <summary>
    /// Adds this source's cumulative counts (ignored frees, oneway-spam suspects, the shrinker's pages) to
    /// <paramref name="sample"/>. Never throws, also after the source closed: the registry keeps them when the source
    /// unregisters, so an observable counter never goes backwards.
    /// </summary>
    void CollectCounts(ref MetricsSample sample);
}
