namespace PageRange.Transport;

/// <summary>
/// A direct reply: the reply to a call flagged for it is written into lines of the caller's region header instead of
/// the transaction ring (issue 12: a round trip's own work; protocol version 8; two payload lines since version 9).
/// </summary>
/// <remarks>
/// <code>
/// region offset <see cref="Offset"/>        record: a <see cref="TransactionRecordLayout"/>, Reserved1 = its ring position,
///                                          TransactionId stored last (release)
/// region offset <see cref="Offset"/> + 64   payload: Length bytes, up to <see cref="PayloadLines"/> lines (the bytes
///                                          past it unspecified; the reader reads only the lines Length covers)
/// </code>
/// <para>
/// The caller asks for it with <see cref="RequestFlag"/> on its two-way record (buffer or inline) and says, by that
/// flag, that the lines are free: a caller flags at most one call at a time, and only once the previous flagged
/// call's reply was taken from the lines (or came another way). The callee writes a reply or error reply of at most
/// <see cref="MaxPayload"/> bytes there, every other reply (larger, with no room) on the ring as before; a reply there
/// is an inline transaction in every other respect (<see cref="InlineLayout"/>): no buffer, counted live by the writer
/// until the caller's free with <see cref="InlineLayout.FreeOffset"/> comes back.
/// </para>
/// <para>
/// Its place in the ring's order is <c>Reserved1</c>, the writer's tail when it wrote it: the reader takes it before the
/// ring record at that position, after every record published before it (a oneway the callee sent before its reply is
/// routed before the reply completes the call, as on the ring), and whatever the writer publishes later cannot hold it
/// back. A position the reader has not reached while the ring is empty (loaded after the id) names a record never
/// published: a protocol violation.
/// </para>
/// <para>
/// What it saves per round trip: the caller's pass over the ring for its reply (the ring's tail, the record's and
/// payload's ring slots, the head's store, which the writer later loads) and one line the reply's writer touches.
/// The caller's reader takes the reply as the first record of a batch, when the record's id is the one it waits for;
/// anything else in the lines (a stale reply, a forged one) is not looked at. The taken copy is validated as a ring
/// record is (exactly Reply or ErrorReply, no other bit, offset 0, a length within <see cref="MaxPayload"/>, no
/// metadata, no chain, a status only on an error reply, <c>Reserved0</c> zero, a position reached); an invalid one is a
/// protocol violation.
/// </para>
/// </remarks>
internal static class DirectReplyLayout
{
    /// <summary>Where the record line starts: right after <see cref="RegionHeaderLayout"/>.</summary>
    internal const int Offset = RegionHeaderLayout.Size;

    /// <summary>Where the payload lines start.</summary>
    internal const int PayloadOffset = Offset + TransactionRecordLayout.Size;

    /// <summary>
    /// The payload lines: two, so that a 64-byte message with a serializer's few bytes of framing (a MessagePack
    /// message with a 64 B blob is 67-72 B on the wire, 68 B in the cross-process benchmark) comes here too (protocol version 9; one line in version 8). A payload
    /// of one line touches one: the reader copies only the lines the length covers.
    /// </summary>
    internal const int PayloadLines = 2;

    /// <summary>The record line and the payload lines, in bytes.</summary>
    internal const int Size = (1 + PayloadLines) * TransactionRecordLayout.Size;

    /// <summary>The largest reply written directly: the payload lines.</summary>
    internal const int MaxPayload = PayloadLines * TransactionRecordLayout.Size;

    /// <summary>The wire-only flag bit of a two-way record whose caller waits for a direct reply; never a public <see cref="TransactionFlags"/> member.</summary>
    internal const uint RequestFlag = 1u << 29;
}
