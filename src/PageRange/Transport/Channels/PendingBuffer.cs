namespace PageRange.Transport;

/// <summary>
/// A buffer reserved in the peer's region by <see cref="OutboundChannel.TryReserve(int, bool, out PendingBuffer)"/>:
/// fill <see cref="Span"/> in place, then <see cref="OutboundChannel.Commit"/> it (or <see cref="OutboundChannel.Abort"/>).
/// </summary>
/// <remarks>
/// Zero-copy send: the payload is written straight into the receiver's memory. The span is valid until the buffer is
/// committed or aborted; commit or abort a buffer exactly once, through the channel that reserved it.
/// </remarks>
internal struct PendingBuffer
{
    internal PendingBuffer(OutboundChannel channel, long offset, int maxSize, bool oneway, bool clearOnFree)
    {
        Channel = channel;
        Offset = offset;
        MaxSize = maxSize;
        Oneway = oneway;
        ClearOnFree = clearOnFree;
    }

    /// <summary>The channel that reserved the buffer; <see langword="null"/> once committed or aborted.</summary>
    internal OutboundChannel? Channel { get; private set; }

    /// <summary>The buffer's offset from the start of the data area.</summary>
    internal long Offset { get; }

    /// <summary>The most bytes the payload may have.</summary>
    internal int MaxSize { get; }

    /// <summary>Whether the buffer counts against the oneway quota; the committed flags must agree.</summary>
    internal bool Oneway { get; }

    /// <summary>Whether the buffer is zeroed when freed; the committed flags must agree.</summary>
    internal bool ClearOnFree { get; }

    /// <summary>Whether the buffer is still waiting for a commit or an abort.</summary>
    internal readonly bool IsPending => Channel is not null;

    /// <summary>Where to write the payload: <see cref="MaxSize"/> bytes in the peer's region.</summary>
    /// <exception cref="InvalidOperationException">The buffer was already committed or aborted.</exception>
    internal readonly Span<byte> Span =>
        Channel is { } channel ? channel.Pages.GetSpan(Offset, MaxSize) : throw new InvalidOperationException("The buffer was already committed or aborted.");

    /// <summary>Marks the buffer committed or aborted.</summary>
    internal void Complete() => Channel = null;
}
