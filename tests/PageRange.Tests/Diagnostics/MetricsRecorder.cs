using System.Diagnostics.Metrics;
using PageRange.Diagnostics;

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
