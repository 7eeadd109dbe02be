namespace PageRange.Transport;

/// <summary>
/// A small call, reply or error reply carried inline: its payload in the transaction ring's slots right after its
/// record, instead of in a buffer of the data area (issue 12: a round trip's own work; protocol version 7).
/// </summary>
/// <remarks>
/// <code>
/// ring slot t      record: Flags = TwoWay | Reply | ErrorReply (exactly one, no modifier) | <see cref="RecordFlag"/>,
///                  BufferOffset 0, Length = payload bytes (0..<see cref="MaxPayload"/>), MetadataLength 0,
///                  the other fields as any record of that kind
/// ring slot t+1    the payload, if any (<see cref="PayloadSlots"/>: 0 or 1 slot; the bytes past its length unspecified)
/// tail             t + 1 + PayloadSlots(Length), stored once (release) after the record and its payload
/// </code>
/// <para>
/// What it saves per transaction: the writer's buffer reservation and commit, the receiver's read of a separate
/// payload line, and the writer's bookkeeping of the buffer's free. The transaction still counts as one live buffer
/// on both sides until the receiver frees it: the receiver writes a free record with <see cref="FreeOffset"/> (no
/// buffer to give back, but the writer's live count, which bounds the receiver's incoming slots, goes down), so every
/// limit a buffer has (<c>MaxLiveBuffers</c>, the receiver's slot table, the free ring's room) holds unchanged.
/// </para>
/// <para>
/// The receiver validates the record as any other (the inline bit, the kind, a length within <see cref="MaxPayload"/>,
/// a zero offset and no metadata) and requires the payload slots to be published with it (the tail it loaded covers
/// them; a writer that publishes the record first and its payload later is violating the protocol). It copies the
/// payload out as the batch is taken, into private memory (a staging area, then the connection's incoming slot for
/// that transaction, the one copy the handler reads):
/// the ring slots are the writer's again as soon as the head passes them, so nothing is read from shared memory after
/// the batch, and a payload carried inline is private, as if copied, whatever <see cref="PageRangeOptions.CopyIncomingPayloads"/> says.
/// </para>
/// <para>
/// The writer sends inline only while the slots waiting unconsumed on the ring, this record's included, are at most the
/// ring's capacity minus <c>MaxLiveBuffers</c> (transactions consumed but not freed may all be freed while the payload
/// slots are still on the ring): a buffer's record always finds a slot, as before, so a full ring still means a
/// receiver that freed what it had not received. Rings no larger than the live limit carry nothing inline.
/// </para>
/// </remarks>
internal static class InlineLayout
{
    /// <summary>The wire-only flag bit that marks a record as carrying its payload inline; never a <see cref="TransactionFlags"/> member.</summary>
    internal const uint RecordFlag = 1u << 30;

    /// <summary>The largest payload carried inline: one ring slot.</summary>
    /// <remarks>
    /// One slot, not more, by measurement (session 2026-12-04 21:22, benchmarks/README.md "Small payloads inline in
    /// the ring"): across processes with far vCPUs a 64 B payload inline made the round trip ~10% shorter, but 100 B
    /// (two payload slots) was level with a buffer and 160 B (three) 6-17% slower, and a 64 B MessagePack call (70 B on
    /// the wire) 0.1 µs slower; the code takes payloads of any number of slots, the limit is this constant.
    /// </remarks>
    internal const int MaxPayload = TransactionRecordLayout.Size;

    /// <summary>
    /// The largest payload a reader stages for an inline transaction: a direct line set's
    /// (<see cref="DirectReplyLayout.MaxPayload"/>, two lines), at least a ring slot's (<see cref="MaxPayload"/>). The
    /// staging area has this much per batch position and each incoming slot's private copy this much.
    /// </summary>
    internal const int MaxStagedPayload = DirectReplyLayout.MaxPayload > MaxPayload ? DirectReplyLayout.MaxPayload : MaxPayload;

    /// <summary>The free ring's offset for an inline transaction's free: beyond every data area, no buffer.</summary>
    internal const ulong FreeOffset = ulong.MaxValue;

    /// <summary>The ring slots after the record that a payload of <paramref name="length"/> bytes takes.</summary>
    internal static int PayloadSlots(int length) => (length + TransactionRecordLayout.Size - 1) / TransactionRecordLayout.Size;

    /// <summary>The flags a record carried inline may have besides <see cref="RecordFlag"/>: exactly one of these.</summary>
    internal static bool IsInlineKind(TransactionFlags flags) =>
        flags is TransactionFlags.TwoWay or TransactionFlags.Reply or TransactionFlags.ErrorReply;
}
