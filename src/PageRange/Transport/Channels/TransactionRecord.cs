namespace PageRange.Transport;

/// <summary>A transaction record after validation: a private copy, never re-read from shared memory.</summary>
/// <param name="TransactionId">The sender's id; a reply carries the id of the call it answers.</param>
/// <param name="Offset">The buffer's offset from the start of the data area; inside it with <paramref name="Length"/>.</param>
/// <param name="Length">The buffer's length in bytes: metadata block and payload.</param>
/// <param name="Code">What the transaction asks for (binder's <c>code</c>).</param>
/// <param name="Flags">Valid flags: exactly one kind.</param>
/// <param name="Context">The chain of a two-way call, or the status of an error reply (no metadata: see
/// <see cref="ReceivedContext"/>).</param>
/// <param name="MetadataLength">How many bytes at the start of the buffer are the metadata block, not payload; at most
/// <paramref name="Length"/>.</param>
/// <param name="Pack">For a oneway message taken from a pack (see <see cref="PackLayout"/>): the receiving channel's
/// private marker of that pack (its table index plus one), which its free counts; zero for a record of its own;
/// <see cref="InlinePack"/> for a transaction whose payload came inline (see <see cref="Inline"/>).</param>
internal readonly record struct TransactionRecord(
    ulong TransactionId, long Offset, int Length, uint Code, TransactionFlags Flags, ReceivedContext Context = default, int MetadataLength = 0,
    int Pack = 0)
{
    /// <summary>The <see cref="Pack"/> of a transaction whose payload came inline: not a field of its own, which would
    /// make the record 64 bytes, a copy of which the JIT makes as one 64-byte store whose upper half a later load of a
    /// field does not get forwarded (about 15 ns more per round trip in the call probe when it was one).</summary>
    internal const int InlinePack = -1;

    /// <summary>
    /// The payload came inline in the ring (see <see cref="InlineLayout"/>): <see cref="Offset"/> is its place in the
    /// receiving channel's staging area until the connection copies it into the transaction's slot, never an offset in
    /// the data area, and there is no buffer to free.
    /// </summary>
    internal bool Inline => Pack == InlinePack;

    /// <summary>Where the payload starts in the data area: after the metadata block.</summary>
    internal long PayloadOffset => Offset + MetadataLength;

    /// <summary>The payload's length: the buffer without its metadata block.</summary>
    internal int PayloadLength => Length - MetadataLength;

    /// <summary>Whether no reply is expected.</summary>
    internal bool IsOneway => Flags.IsOneway();
}

/// <summary>
/// <see cref="RecordContext"/> as received: the chain and status, without the sender's metadata memory. Blittable, so a
/// <see cref="TransactionRecord"/> holds no object reference and copying one (into the pump's batch, into a slot) is a
/// plain copy: with the reference every copy into the heap went through the runtime's write-barrier helper, per message.
/// </summary>
/// <param name="ChainId">The chain a two-way call belongs to; zero on other records.</param>
/// <param name="Depth">How deep in its chain the call is; zero on other records.</param>
/// <param name="Status">The <see cref="CallStatus"/> of an error reply; <see cref="CallStatus.Ok"/> on other records.</param>
internal readonly record struct ReceivedContext(ulong ChainId, uint Depth, CallStatus Status);
