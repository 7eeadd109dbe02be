namespace PageRange.Transport;

/// <summary>
/// A direct call: a small two-way call written into lines of the callee's region header instead of the transaction ring
/// (issue 12: a round trip's own work; protocol version 8; two payload lines since version 9), the mirror of
/// <see cref="DirectReplyLayout"/>.
/// </summary>
/// <remarks>
/// <code>
/// region offset <see cref="Offset"/>        record: a <see cref="TransactionRecordLayout"/>, Reserved1 = its ring position,
///                                          Reserved0 = the sequence, stored last (release)
/// region offset <see cref="Offset"/> + 64   payload: Length bytes, up to <see cref="DirectReplyLayout.PayloadLines"/>
///                                          lines (the bytes past it unspecified; the reader reads only the lines
///                                          Length covers)
/// </code>
/// <para>
/// The writer numbers its direct calls 1, 2, 3... in <c>Reserved0</c>; the receiver takes call n + 1 after call n, and a
/// sequence that is neither the last taken nor the next is a protocol violation. The record is a call's: exactly
/// <see cref="TransactionFlags.TwoWay"/> (with <see cref="DirectReplyLayout.RequestFlag"/> if its caller waits for a direct
/// reply), offset 0, at most <see cref="MaxPayload"/> bytes, no metadata, a chain and depth as any call, no status. In
/// every other respect it is an inline transaction (<see cref="InlineLayout"/>): counted live by
/// the writer until the receiver's free with <see cref="InlineLayout.FreeOffset"/> comes back.
/// </para>
/// <para>
/// The writer uses the lines for one call at a time: from the moment it writes a call there until that call is
/// answered (its reply, directly or on the ring, or the peer's failure on the control socket), which an honest receiver
/// does only after it took the call (copied the lines); a call that ended unanswered keeps the lines until its late
/// reply arrives. Order: <c>Reserved1</c> is the writer's tail when it wrote the call; the receiver takes it before the
/// ring record at that position, after every record published before it, as on the ring, and nothing published later
/// holds it back. A position not reached while the ring is empty (loaded after the sequence, acquire) names a record never
/// published: a protocol violation.
/// </para>
/// </remarks>
internal static class DirectCallLayout
{
    /// <summary>Where the record line starts: right after the direct reply's lines.</summary>
    internal const int Offset = DirectReplyLayout.Offset + DirectReplyLayout.Size;

    /// <summary>Where the payload lines start.</summary>
    internal const int PayloadOffset = Offset + TransactionRecordLayout.Size;

    /// <summary>The record line and the payload lines (as many as a direct reply's), in bytes.</summary>
    internal const int Size = DirectReplyLayout.Size;

    /// <summary>The largest call written directly: the payload lines.</summary>
    internal const int MaxPayload = DirectReplyLayout.MaxPayload;
}
