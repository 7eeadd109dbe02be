namespace PageRange.Diagnostics;

/// <summary>Something the observable instruments read: in practice a live connection.</summary>
/// <remarks>
/// <see cref="Collect"/> runs on the thread that collects metrics (a <c>dotnet-counters</c> or OpenTelemetry
/// exporter), about once a second, never on a hot path. It may take the source's own locks; the registry's lock is
/// held around it, so it must not register or unregister anything.
/// </remarks>
internal interface IMetricsSource
{
    /// <summary>Adds this source's values to <paramref name="sample"/>.</summary>
    /// <exception cref="ObjectDisposedException">The source closed meanwhile; the registry skips it.</exception>
    void Collect(ref MetricsSample sample);
}
