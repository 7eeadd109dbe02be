using PageRange.Threading;
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
    /// <remarks>Written on the thread that hit the event, outside the allocator's own lock but inside a
    /// <see cref="SharedLock"/> (the owner's send lock), which is why ignored frees, which a peer can cause at will, are
    /// rate-limited. Defaults to no logging.</remarks>
    internal ILogger? Logger { get; init; }

    /// <summary>
    /// The lock that guards the bookkeeping, when the owner already holds a lock of its own around every reservation,
    /// commit and free: the allocator then uses that lock, and the owner's <c>…UnderLock</c> calls skip a second
    /// lock round trip per operation. Defaults to a lock of the allocator's own.
    /// </summary>
    /// <remarks>
    /// The shared lock takes the allocator lock's place in the lock order (before every lock of the page range).
    /// </remarks>
    internal ThinLock? SharedLock { get; init; }
}
