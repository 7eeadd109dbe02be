using Microsoft.Extensions.Logging;

namespace PageRange.Allocation;

/// <summary>Settings for a <see cref="BufferAllocator"/>.</summary>
internal sealed class BufferAllocatorOptions
{
    /// <summary>
    /// Receives binder's log lines as events of <see cref="Diagnostics.PageRangeLog"/>: ignored frees, "no address
    /// space" with the allocated/free summary when <see cref="BufferAllocator.Reserve"/> finds no room, oneway-spam
    /// suspects, aborts of delivered buffers.
    /// </summary>
    /// <remarks>Written outside the allocator's lock, on the thread that hit the event. Defaults to no logging.</remarks>
    internal ILogger? Logger { get; init; }
}
