using System.Diagnostics;
using System.Diagnostics.Metrics;
using PageRange.Diagnostics;
using PageRange.Tests.Infrastructure;

namespace PageRange.Tests.Diagnostics;

/// <summary>
/// A <see cref="MeterListener"/> on the <c>PageRange</c> meter: sums what counters record and keeps the last value
/// each observable instrument reported, per instrument and tag value.
/// </summary>
/// <remarks>
/// Measurements arrive on whatever thread records them; the callback takes a lock, which allocates nothing, so the
/// allocation test can run with the recorder on.
/// </remarks>
internal sealed class MetricsRecorder : IDisposable
{
    private readonly MeterListener _listener = new();
    private readonly Lock _lock = new();
    private readonly Dictionary<(string Instrument, string? Tag), long> _values = [];
    private long _measurements;

    public MetricsRecorder()
    {
        _listener.InstrumentPublished = (instrument, listener) =>
        {
            if (instrument.Meter.Name == PageRangeMetrics.MeterName)
            {
                listener.EnableMeasurementEvents(instrument);
            }
        };
        _listener.SetMeasurementEventCallback<long>(OnMeasurement);
        _listener.Start();
    }

    /// <summary>
    /// Starts recording once the process holds no connection but the test's own: the meter is process-wide, so a
    /// connection another test left closing (a server session ending, a violated connection its owner has not disposed
    /// yet) would add its traffic, or its closing, to the counts this test checks.
    /// </summary>
    /// <param name="ownConnections">Connections the test opened before it starts recording.</param>
    /// <remarks>
    /// The metrics tests run in non-parallel collections, which xunit runs after every parallel one, one at a time: what
    /// is left to wait for is what earlier tests have not finished closing. A connection that never closes fails here,
    /// by name of the count, rather than as a count off by one later.
    /// </remarks>
    public static async Task<MetricsRecorder> StartAloneAsync(int ownConnections = 0)
    {
        var clock = Stopwatch.StartNew();
        int others;
        // The registry holds the live connections plus, once the first connection registered it, the shared shrinker.
        while ((others = Math.Max(0, MetricsRegistry.Count - 1) - ownConnections) > 0)
        {
            Assert.True(clock.Elapsed < TestTimeouts.Long, $"{others} connections of other tests are still open");
            await Task.Delay(10);
        }
        return new MetricsRecorder();
    }

    /// <summary>How many measurements arrived so far.</summary>
    public long Measurements => Interlocked.Read(ref _measurements);

    /// <summary>The sum a counter recorded (or the last value an observable reported) for one tag value, 0 if none.</summary>
    public long Get(string instrument, string? tag = null)
    {
        lock (_lock)
        {
            return _values.TryGetValue((instrument, tag), out long value) ? value : 0;
        }
    }

    /// <summary>Asks every observable instrument for its value now.</summary>
    public void Observe() => _listener.RecordObservableInstruments();

    private void OnMeasurement(Instrument instrument, long measurement, ReadOnlySpan<KeyValuePair<string, object?>> tags, object? state)
    {
        Interlocked.Increment(ref _measurements);
        // Each instrument has at most one tag; its value names the series.
        string? tag = tags.Length > 0 ? (string?)tags[0].Value : null;
        bool observable = instrument.IsObservable;
        lock (_lock)
        {
            ref long value = ref System.Runtime.InteropServices.CollectionsMarshal.GetValueRefOrAddDefault(_values, (instrument.Name, tag), out _);
            value = observable ? measurement : value + measurement;
        }
    }

    public void Dispose() => _listener.Dispose();
}
