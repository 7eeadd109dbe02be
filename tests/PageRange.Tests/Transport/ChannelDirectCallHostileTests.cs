using PageRange.Transport;

namespace PageRange.Tests.Transport;

/// <summary>
/// Direct calls (<see cref="DirectCallLayout"/>) at the channel: an honest one taken after everything the ring held
/// before it; and a writer that abuses the lines: records the receiver must refuse, sequences out of order, a rewrite of
/// a call already taken. The victim refuses with <see cref="ProtocolViolationException"/> or ignores what is not new,
/// never reads outside its copy, and never delivers anything after a refused call.
/// </summary>
[Trait("Category", "Hostile")]
public sealed class ChannelDirectCallHostileTests
{
    private static ChannelOptions Options => ChannelPair.SmallOptions(pack: false, inline: true);

    private const TransactionFlags DirectCall = TransactionFlags.TwoWay | TransactionFlagsExtensions.DirectCall;

    private delegate void Spoil(ref TransactionRecordLayout record);

    private static (string What, Spoil Spoil)[] BadDirectCalls() =>
    [
        ("a oneway", (ref r) => r.Flags = (uint)TransactionFlags.Oneway),
        ("a reply", (ref r) => r.Flags = (uint)TransactionFlags.Reply),
        ("an error reply", (ref r) => r.Flags = (uint)TransactionFlags.ErrorReply),
        ("no kind", (ref r) => r.Flags = 0),
        ("two kinds", (ref r) => r.Flags |= (uint)TransactionFlags.Reply),
        ("clear-on-free", (ref r) => r.Flags |= (uint)TransactionFlags.ClearOnFree),
        ("a cancel", (ref r) => r.Flags |= (uint)TransactionFlags.Cancel),
        ("the inline bit", (ref r) => r.Flags |= InlineLayout.RecordFlag),
        ("the pack bit", (ref r) => r.Flags |= PackLayout.RecordFlag),
        ("longer than the payload lines", (ref r) => r.Length = DirectCallLayout.MaxPayload + 1),
        ("a huge length", (ref r) => r.Length = uint.MaxValue),
        ("a buffer offset", (ref r) => r.BufferOffset = 64),
        ("metadata", (ref r) => r.MetadataLength = 8),
        ("a status", (ref r) => r.Status = 2),
        ("a depth past the protocol's", (ref r) => r.Depth = TransactionRecordLayout.MaxDepth + 1),
        ("a ring position never published", (ref r) => r.Reserved1 = 1),
        ("a sequence past the next", (ref r) => r.Reserved0 = 2),
        ("a sequence far ahead", (ref r) => r.Reserved0 = ulong.MaxValue),
    ];

    [Fact]
    public void TrySend_SmallCallWithTheDirectBit_GoesIntoTheLines_TakenAsAnInlineCall_RingUntouched()
    {
        using var pair = new ChannelPair(Options);
        byte[] payload = [.. Enumerable.Range(0, DirectCallLayout.MaxPayload).Select(i => (byte)(i + 3))];
        Assert.True(pair.Outbound.TrySend(11, 4, DirectCall | TransactionFlagsExtensions.DirectReplyRequested, payload, RecordContext.ForCall(new CallChain(77, 2))));
        Assert.Equal(1, pair.Outbound.DirectCallsSent);
        Assert.Equal(0UL, pair.Outbound.Sent);
        Assert.Equal(1, pair.Outbound.LiveBuffers);

        Assert.True(pair.Inbound.TryReceive(out TransactionRecord call));
        Assert.Equal((11UL, 4u, TransactionFlags.TwoWay | TransactionFlagsExtensions.DirectReplyRequested, 77UL, 2u),
            (call.TransactionId, call.Code, call.Flags, call.Context.ChainId, call.Context.Depth));
        Assert.True(call.Inline);
        Assert.Equal(payload, pair.Inbound.GetPayload(call).ToArray());
        Assert.Equal(1, pair.Inbound.DirectCallsReceived);
        Assert.Equal(1UL, pair.Inbound.Received);
        // Taken once: the lines still hold it, and it is not new.
        Assert.False(pair.Inbound.TryReceive(out _));
        // Its free comes back as an inline transaction's.
        pair.Inbound.Free(call);
        Assert.Equal(1, pair.Outbound.DrainFrees());
        Assert.Equal(0, pair.Outbound.LiveBuffers);
        Assert.Equal(0, pair.Outbound.IgnoredFrees);
        // A larger call goes on the ring as before.
        Assert.True(pair.Outbound.TrySend(12, 4, DirectCall, new byte[DirectCallLayout.MaxPayload + 1]));
        Assert.Equal(1, pair.Outbound.DirectCallsSent);
        Assert.True(pair.Outbound.Sent > 0);
    }

    [Fact]
    public void TryReceiveBatch_RecordsPublishedBeforeADirectCall_AreTakenFirst()
    {
        using var pair = new ChannelPair(Options);
        Assert.True(pair.Outbound.TrySend(1, 1, TransactionFlags.Oneway, new byte[16]));
        Assert.True(pair.Outbound.TrySend(2, 2, TransactionFlags.TwoWay, new byte[100]));
        Assert.True(pair.Outbound.TrySend(3, 3, DirectCall, [1]));
        Assert.True(pair.Outbound.TrySend(4, 4, TransactionFlags.Oneway, new byte[16]));
        var batch = new TransactionRecord[8];
        int count = pair.Inbound.TryReceiveBatch(batch);
        // The direct call comes after both records sent before it; the oneway sent after it may come in this batch or the
        // next, after it.
        Assert.True(count >= 3, $"{count} taken");
        Assert.Equal([1u, 2u, 3u], batch[..3].Select(r => r.Code).ToArray());
        if (count == 3)
        {
            Assert.Equal(1, pair.Inbound.TryReceiveBatch(batch));
            Assert.Equal(4u, batch[0].Code);
        }
        else
        {
            Assert.Equal(4u, batch[3].Code);
        }
    }

    [Fact]
    public void TryReceiveBatch_TwoLinePayloadsInBothLineSetsAfterAnInlineOne_OneBatch_EachKeepsItsOwnBytes()
    {
        using var pair = new ChannelPair(Options);
        byte[] inline = [.. Enumerable.Range(0, InlineLayout.MaxPayload).Select(i => (byte)(i + 1))];
        byte[] call = [.. Enumerable.Range(0, DirectCallLayout.MaxPayload).Select(i => (byte)(i + 101))];
        byte[] reply = [.. Enumerable.Range(0, DirectReplyLayout.MaxPayload).Select(i => (byte)(255 - i))];
        pair.Inbound.ExpectDirectReply(30);
        Assert.True(pair.Outbound.TrySend(10, 1, TransactionFlags.TwoWay, inline));
        Assert.True(pair.Outbound.TrySend(20, 2, DirectCall, call));
        Assert.True(pair.Outbound.TrySend(30, 3, TransactionFlags.Reply | TransactionFlagsExtensions.DirectReplyRequested, reply));
        Assert.Equal(1, pair.Outbound.DirectCallsSent);
        Assert.Equal(1, pair.Outbound.DirectRepliesSent);

        // Staged side by side (the ring's payload at position 0, both line sets' two lines at 1 and 2): a staging slot
        // narrower than two lines would let one overwrite the next.
        var batch = new TransactionRecord[8];
        Assert.Equal(3, pair.Inbound.TryReceiveBatch(batch));
        // Both direct ones name the position after the inline call; at the same position the reply goes first.
        Assert.Equal([1u, 3u, 2u], batch[..3].Select(r => r.Code).ToArray());
        byte[][] expected = [inline, reply, call];
        for (int i = 0; i < 3; i++)
        {
            Assert.True(batch[i].Inline);
            Assert.Equal(expected[i], pair.Inbound.GetPayload(batch[i]).ToArray());
            byte[] copy = new byte[InlineLayout.MaxStagedPayload];
            pair.Inbound.CopyInlinePayload(batch[i], copy);
            Assert.Equal(expected[i], copy[..expected[i].Length]);
        }
    }

    [Fact]
    public void TryReceive_InvalidDirectCall_ThrowsEveryTimeAndDeliversNothing()
    {
        foreach ((string what, Spoil spoil) in BadDirectCalls())
        {
            using var pair = new ChannelPair(Options);
            Assert.True(pair.Outbound.TrySend(5, 0, DirectCall, new byte[64]));
            TransactionRecordLayout record = pair.ReadHeader<TransactionRecordLayout>(DirectCallLayout.Offset);
            Assert.Equal(1UL, record.Reserved0);
            spoil(ref record);
            pair.WriteHeader(DirectCallLayout.Offset, record);

            ProtocolViolationException error = Assert.Throws<ProtocolViolationException>(() => pair.Inbound.TryReceive(out _));
            Assert.True(error.Message.Contains("invalid direct call", StringComparison.Ordinal), $"{what}: {error.Message}");
            Assert.Throws<ProtocolViolationException>(() => pair.Inbound.TryReceive(out _));
            Assert.Equal(0, pair.Inbound.DirectCallsReceived);
        }
    }

    [Fact]
    public void TryReceiveBatch_InvalidDirectCallAfterARingRecord_ReturnsTheRecordThenThrows()
    {
        using var pair = new ChannelPair(Options);
        Assert.True(pair.Outbound.TrySend(1, 1, TransactionFlags.Oneway, new byte[16]));
        Assert.True(pair.Outbound.TrySend(2, 2, DirectCall, [1]));
        TransactionRecordLayout record = pair.ReadHeader<TransactionRecordLayout>(DirectCallLayout.Offset);
        record.Length = uint.MaxValue;
        pair.WriteHeader(DirectCallLayout.Offset, record);

        var batch = new TransactionRecord[8];
        Assert.Equal(1, pair.Inbound.TryReceiveBatch(batch));
        Assert.Equal(1u, batch[0].Code);
        Assert.Throws<ProtocolViolationException>(() => pair.Inbound.TryReceiveBatch(batch));
    }

    [Fact]
    public void TryReceiveBatch_DirectCallWhileThePackBeforeItIsUnsealed_TheEntriesThenAViolation()
    {
        // An honest writer seals its open pack before it writes a direct call (as before any later record): a call in
        // the lines behind an unsealed pack would otherwise keep every waiter looking (the lines say "more") for nothing.
        using var pair = new ChannelPair(ChannelPair.SmallOptions(inline: true));
        Assert.True(pair.Outbound.TrySend(1, 1, TransactionFlags.Oneway, new byte[16]));
        Assert.True(pair.Outbound.TrySend(2, 2, TransactionFlags.Oneway, new byte[16]));
        Assert.True(pair.Outbound.OpenPackOffset >= 0);
        // The call written by hand, the pack left open.
        pair.WriteHeader(DirectCallLayout.Offset + TransactionRecordLayout.Size, 0UL);
        pair.WriteHeader(DirectCallLayout.Offset, new TransactionRecordLayout
        {
            TransactionId = 3, Code = 3, Flags = (uint)TransactionFlags.TwoWay, Reserved0 = 1, Reserved1 = pair.Outbound.Sent,
        });

        var batch = new TransactionRecord[8];
        Assert.Equal(2, pair.Inbound.TryReceiveBatch(batch));
        Assert.Equal([1u, 2u], batch[..2].Select(r => r.Code).ToArray());
        ProtocolViolationException error = Assert.Throws<ProtocolViolationException>(() => pair.Inbound.TryReceiveBatch(batch));
        Assert.Contains("not sealed", error.Message, StringComparison.Ordinal);
        Assert.Equal(0, pair.Inbound.DirectCallsReceived);
    }

    [Fact]
    public void TryReceive_LinesRewrittenAfterTheTake_TheTakenBytesStayAndTheOldSequenceIsNotNew()
    {
        using var pair = new ChannelPair(Options);
        byte[] payload = [.. Enumerable.Range(0, DirectCallLayout.MaxPayload).Select(i => (byte)(i + 1))];
        Assert.True(pair.Outbound.TrySend(9, 0, DirectCall, payload));
        var batch = new TransactionRecord[4];
        Assert.Equal(1, pair.Inbound.TryReceiveBatch(batch));
        TransactionRecordLayout taken = pair.ReadHeader<TransactionRecordLayout>(DirectCallLayout.Offset);
        pair.Inbound.Region.GetSpan(DirectCallLayout.Offset, DirectCallLayout.Size).Fill(0xEE);
        // The rewrite's sequence (0xEEEE...) is neither the last taken nor the next: the next look refuses it.
        Assert.Equal(payload, pair.Inbound.GetPayload(batch[0]).ToArray());
        Assert.Throws<ProtocolViolationException>(() => pair.Inbound.TryReceive(out _));

        // The same record written back (sequence 1, taken already): not new, nothing delivered twice.
        using var second = new ChannelPair(Options);
        Assert.True(second.Outbound.TrySend(9, 0, DirectCall, payload));
        Assert.True(second.Inbound.TryReceive(out _));
        second.WriteHeader(DirectCallLayout.Offset, taken);
        Assert.False(second.Inbound.TryReceive(out _));
        Assert.Equal(1, second.Inbound.DirectCallsReceived);
    }
}
