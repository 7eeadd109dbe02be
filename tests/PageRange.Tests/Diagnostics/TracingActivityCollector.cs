using System.Collections.Concurrent;
using System.Diagnostics;
using PageRange.Diagnostics;

namespace PageRange.Tests.Diagnostics;

/// <summary>An <see cref="ActivityListener"/> on the <c>PageRange</c> source that keeps every activity it saw stop.</summary>
internal sealed class TracingActivityCollector : IDisposable
{
    private readonly ActivityListener _listener;

    public TracingActivityCollector()
    {
        _listener = new ActivityListener
        {
            ShouldListenTo = source => source.Name == PageRangeTracing.SourceName,
            Sample = static (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllDataAndRecorded,
            ActivityStopped = Stopped.Enqueue,
        };
        ActivitySource.AddActivityListener(_listener);
    }

    /// <summary>The activities that ended, in order.</summary>
    public ConcurrentQueue<Activity> Stopped { get; } = new();

    public void Dispose() => _listener.Dispose();
}
