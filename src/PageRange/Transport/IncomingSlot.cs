namespace PageRange.Transport;

/// <summary>
/// The connection-side state of one delivered transaction, from receipt until its buffer is freed. There is a slot for
/// every buffer and packed message the peer may have live in our region, each made the first time it is taken and
/// reused from then on; <see cref="Generation"/> changes on every reuse, so a stale <see cref="Transaction"/> copy is
/// detected instead of touching someone else's buffer.
/// </summary>
internal sealed class IncomingSlot
{
    internal IncomingSlot(int index, bool isLaneSlot = false)
    {
        Index = index;
        IsLaneSlot = isLaneSlot;
    }

    internal int Index { get; }

    /// <summary>
    /// The connection's one slot for the oneways a <see cref="PageRangeConnection.ReceiveBatch"/> lane delivers: reused
    /// for each of them in turn (its generation moves on between them), never in the free list; their buffers are freed
    /// by the lane from its own copies of their records, not by a release of this slot.
    /// </summary>
    internal bool IsLaneSlot { get; }

    /// <summary>Odd while the slot holds a live transaction, even while it is free.</summary>
    internal int Generation;

    internal TransactionRecord Record;

    /// <summary>1 once a reply (or error reply) was sent for a two-way call.</summary>
    internal int Replied;

    /// <summary>Created only if the handler asks for the call's cancellation token.</summary>
    internal CancellationTokenSource? Cancellation;

    /// <summary>
    /// The payload copied out of the shared region when the connection copies incoming payloads (from
    /// <see cref="System.Buffers.ArrayPool{T}.Shared"/>, returned when the transaction is freed); null when read in place.
    /// </summary>
    internal byte[]? PayloadCopy;

    /// <summary>
    /// The payload of an inline transaction (see <see cref="InlineLayout"/>), copied here as it was routed; made the first
    /// time the slot holds one and kept for the slot's later ones. Meaningful only while <see cref="Record"/> is inline.
    /// </summary>
    internal byte[]? InlinePayload;

    /// <summary>
    /// The private bytes of this slot's payload, if it has some: an inline transaction's, or the copy of a buffer's;
    /// null when the payload is read in place.
    /// </summary>
    internal byte[]? PrivatePayload => Record.Inline ? InlinePayload : PayloadCopy;

    /// <summary>The transaction's metadata block, copied once and parsed; null when it carried none.</summary>
    internal CallMetadata? Metadata;

    /// <summary>Set when the caller cancelled before the handler asked for the token.</summary>
    internal volatile bool CancelRequested;

    /// <summary>The next (older) slot of this one's chain in the <see cref="LiveCallIndex"/> (its index plus one; 0: none).</summary>
    internal int NextById;

    /// <summary>The previous (newer) slot of this one's chain in the <see cref="LiveCallIndex"/> (its index plus one; 0: the head).</summary>
    internal int PreviousById;

    /// <summary>Whether the <see cref="LiveCallIndex"/> holds this slot now.</summary>
    internal bool IndexedById;
}
