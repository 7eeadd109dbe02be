using PageRange.Transport;

namespace PageRange.Tests.Transport;

/// <summary>
/// A peer that abuses inline payloads (<see cref="InlineLayout"/>): as a writer, records the receiver must refuse, a
/// payload not published with its record, the ring rewritten after the receiver took it; as a receiver, inline frees
/// for transactions it never had. The victim refuses with <see cref="ProtocolViolationException"/> or ignores the free,
/// never reads outside its copy, and its live count never goes wrong.
/// </summary>
[Trait("Category", "Hostile")]
public sealed class ChannelInlineHostileTests
{
    private static ChannelOptions Options => ChannelPair.SmallOptions(pack: false, inline: true);

    private delegate void Spoil(ref TransactionRecordLayout record);

    private static (string What, Spoil Spoil)[] BadInlineRecords() =>
    [
        ("a oneway inline", (ref r) => r.Flags = (uint)TransactionFlags.Oneway | InlineLayout.RecordFlag),
        ("clear-on-free inline", (ref r) => r.Flags |= (uint)TransactionFlags.ClearOnFree),
        ("a cancel inline", (ref r) => r.Flags |= (uint)TransactionFlags.Cancel),
        ("no kind", (ref r) => r.Flags = InlineLayout.RecordFlag),
        ("two kinds", (ref r) => r.Flags |= (uint)TransactionFlags.TwoWay),
        ("the pack bit too", (ref r) => r.Flags |= PackLayout.RecordFlag),
        ("longer than the inline limit", (ref r) => r.Length = InlineLayout.MaxPayload + 1),
        ("a huge length", (ref r) => r.Length = uint.MaxValue),
        ("a buffer offset", (ref r) => r.BufferOffset = 64),
        ("metadata", (ref r) => r.MetadataLength = 8),
        ("a status on a reply", (ref r) => r.Status = 2),
        ("a status past the last", (ref r) => (r.Flags, r.Status) = ((uint)TransactionFlags.ErrorReply | InlineLayout.RecordFlag, 99)),
        ("a chain on a reply", (ref r) => r.ChainId = 7),
        ("a depth on a reply", (ref r) => r.Depth = 1),
        ("a depth past the protocol's on a call", (ref r) => (r.Flags, r.ChainId, r.Depth) = ((uint)TransactionFlags.TwoWay | InlineLayout.RecordFlag, 1, TransactionRecordLayout.MaxDepth + 1)),
        ("reserved0 set", (ref r) => r.Reserved0 = 1),
        ("reserved1 set", (ref r) => r.Reserved1 = 1),
    ];

    [Fact]
    public void TryReceive_InvalidInlineRecord_ThrowsEveryTimeAndDeliversNothing()
    {
        foreach ((string what, Spoil spoil) in BadInlineRecords())
        {
            using var pair = new ChannelPair(Options);
            Assert.True(pair.Outbound.TrySend(1, 0, TransactionFlags.Reply, new byte[64]));
            int slot = pair.Inbound.Layout.TxRingOffset;
            TransactionRecordLayout record = pair.ReadHeader<TransactionRecordLayout>(slot);
            Assert.NotEqual(0u, record.Flags & InlineLayout.RecordFlag);
            spoil(ref record);
            pair.WriteHeader(slot, record);

            ProtocolViolationException error = Assert.Throws<ProtocolViolationException>(() => pair.Inbound.TryReceive(out _));
            Assert.True(error.Message.Contains("invalid inline record", StringComparison.Ordinal) || error.Message.Contains("pack record", StringComparison.Ordinal), $"{what}: {error.Message}");
            Assert.Throws<ProtocolViolationException>(() => pair.Inbound.TryReceive(out _));
            Assert.Equal(0UL, pair.Inbound.Received);
        }
    }

    [Theory]
    [InlineData(1, 1)]
    [InlineData(1, 64)]
    public void TryReceive_TailCoversTheRecordButNotItsPayload_Throws(int publishedSlots, int payloadLength)
    {
        // The writer published the record and its payload later or never: refused, not read.
        using var pair = new ChannelPair(Options);
        Assert.True(pair.Outbound.TrySend(1, 0, TransactionFlags.Reply, new byte[payloadLength]));
        pair.WriteHeader(RegionHeaderLayout.TxTailOffset, (ulong)publishedSlots);

        ProtocolViolationException error = Assert.Throws<ProtocolViolationException>(() => pair.Inbound.TryReceive(out _));
        Assert.Contains("published in the ring slots after it", error.Message, StringComparison.Ordinal);
        Assert.Equal(0UL, pair.Inbound.Received);
    }

    [Fact]
    public void TryReceiveBatch_BadInlineRecordAfterGoodOnes_ReturnsTheGoodOnesThenThrows()
    {
        using var pair = new ChannelPair(Options);
        Assert.True(pair.Outbound.TrySend(1, 0, TransactionFlags.Reply, [1]));
        Assert.True(pair.Outbound.TrySend(2, 0, TransactionFlags.Reply, [2]));
        // The second record sits at slot 2 (the first took a record slot and a payload slot).
        int second = pair.Inbound.Layout.TxRingOffset + (2 * TransactionRecordLayout.Size);
        TransactionRecordLayout record = pair.ReadHeader<TransactionRecordLayout>(second);
        record.Length = InlineLayout.MaxPayload + 64;
        pair.WriteHeader(second, record);

        var batch = new TransactionRecord[8];
        Assert.Equal(1, pair.Inbound.TryReceiveBatch(batch));
        Assert.Equal([1], pair.Inbound.GetPayload(batch[0]).ToArray());
        Assert.Throws<ProtocolViolationException>(() => pair.Inbound.TryReceiveBatch(batch));
    }

    [Fact]
    public void TryReceive_WriterRewritesThePayloadSlotsAfterTheTake_TheReceivedBytesStayAsTaken()
    {
        using var pair = new ChannelPair(Options);
        byte[] payload = Enumerable.Range(0, InlineLayout.MaxPayload).Select(i => (byte)i).ToArray();
        Assert.True(pair.Outbound.TrySend(1, 0, TransactionFlags.Reply, payload));
        TransactionRecord record = pair.ReceiveOne();
        // The writer scribbles over the record's slot and its payload's (the head is past them: they are its again).
        for (int slot = 0; slot <= 1; slot++)
        {
            pair.Header.Slice(pair.Inbound.Layout.TxRingOffset + (slot * TransactionRecordLayout.Size), TransactionRecordLayout.Size).Fill(0xEE);
        }
        Assert.True(payload.AsSpan().SequenceEqual(pair.Inbound.GetPayload(record)));
    }

    [Fact]
    public void DrainFrees_InlineFreesForRecordsStillOnTheRing_OnlyLetTheWriterSendMoreItsRingNeverOverflows()
    {
        // A receiver that frees the inline transactions it has not taken: the writer counts fewer live than the ring
        // holds, but each such free stands for a record and payload slot still on the ring, so filling the live limit
        // with buffers afterwards still fits (no "ring is full" against an honest writer's bookkeeping).
        using var pair = new ChannelPair(Options);
        int maxLive = pair.Outbound.Layout.MaxLiveBuffers;
        int sent = 0;
        while (pair.Outbound.TrySend((ulong)sent, 0, TransactionFlags.Reply, new byte[64]) && pair.Outbound.InlineLive == sent + 1)
        {
            sent++;
        }
        // The last send went as a buffer (the surplus was used up) or not at all.
        Assert.InRange(sent, 1, pair.Outbound.Layout.TxRingCapacity - maxLive);
        var peer = new RawReceiverPeer(pair);
        for (int i = 0; i < sent; i++)
        {
            peer.PublishFree(InlineLayout.FreeOffset, (ulong)i);
        }
        pair.Outbound.DrainFrees();
        Assert.Equal(0, pair.Outbound.InlineLive);
        for (int i = 0; pair.Outbound.TrySend(1000 + (ulong)i, 0, TransactionFlags.Reply, new byte[300]); i++)
        {
        }
        Assert.Equal(maxLive, pair.Outbound.LiveBuffers);
        // Everything the writer published is on the ring, in order, and readable.
        var batch = new TransactionRecord[1];
        int received = 0;
        while (pair.Inbound.TryReceiveBatch(batch) == 1)
        {
            received++;
        }
        // The inline ones the receiver pretended to free, and a live limit's worth of buffers (the first may be the one
        // that ended the inline run).
        Assert.Equal(sent + maxLive, received);
    }

    [Fact]
    public void DrainFrees_InlineFreesForTransactionsNeverSent_AreIgnoredAndTheLiveCountStaysRight()
    {
        // The writer is the victim here: a receiver that frees inline transactions it never had. Honouring more than
        // the writer has inline live would let the live count go below the buffers really live.
        using var pair = new ChannelPair(Options);
        Assert.True(pair.Outbound.TrySend(1, 0, TransactionFlags.Reply, new byte[8]));
        Assert.True(pair.Outbound.TrySend(2, 0, TransactionFlags.Reply, new byte[300]));
        TransactionRecord inline = pair.ReceiveOne();
        TransactionRecord buffer = pair.ReceiveOne();
        Assert.True(inline.Inline);
        Assert.False(buffer.Inline);
        var peer = new RawReceiverPeer(pair);
        for (int i = 0; i < 5; i++)
        {
            peer.PublishFree(InlineLayout.FreeOffset, 1);
        }
        pair.Outbound.DrainFrees();
        // One honoured (the one inline transaction), four ignored; the buffer is still live.
        Assert.Equal(0, pair.Outbound.InlineLive);
        Assert.Equal(1, pair.Outbound.LiveBuffers);
        Assert.Equal(4, pair.Outbound.IgnoredFrees);
        // The real inline free, late, finds nothing inline live: ignored too, and the count does not go below zero.
        // (Written by the raw peer too: the channel's own free ring producer does not know the frees the peer wrote.)
        peer.PublishFree(InlineLayout.FreeOffset, inline.TransactionId);
        peer.PublishFree((ulong)buffer.Offset, buffer.TransactionId);
        pair.Outbound.DrainFrees();
        Assert.Equal(0, pair.Outbound.LiveBuffers);
        Assert.Equal(0, pair.Outbound.InlineLive);
        Assert.Equal(5, pair.Outbound.IgnoredFrees);
        Assert.Equal(0, pair.Outbound.Allocator.GetStats().BufferCount);
    }
}
