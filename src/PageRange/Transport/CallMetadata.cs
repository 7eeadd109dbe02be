using System.Diagnostics;

namespace PageRange.Transport;

/// <summary>A received metadata block after validation: a private copy, never re-read from shared memory.</summary>
internal sealed class CallMetadata
{
    internal CallMetadata(DateTimeOffset? deadline, ActivityContext traceContext, KeyValuePair<string, string>[] pairs)
    {
        Deadline = deadline;
        TraceContext = traceContext;
        Pairs = pairs;
    }

    /// <summary>The caller's deadline, if it set one.</summary>
    internal DateTimeOffset? Deadline { get; }

    /// <summary>The caller's W3C trace context (remote); <c>default</c> when it carried none.</summary>
    internal ActivityContext TraceContext { get; }

    /// <summary>The caller's key/values, in the order sent.</summary>
    internal KeyValuePair<string, string>[] Pairs { get; }
}
