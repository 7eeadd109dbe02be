using PageRange.Threading;
using PageRange.Transport;

namespace PageRange.Tests.Transport;

/// <summary>
/// A peer that abuses direct replies (<see cref="DirectReplyLayout"/>): as a writer, lines the receiver must refuse once
/// it expects them, lines it never asked for, lines rewritten after the take; the request's bit on records that are not
/// calls. The victim refuses with <see cref="ProtocolViolationException"/> or ignores what it did not ask for, never reads
/// outside its copy, and its expectation ends only with the reply it expected.
/// </summary>
[Trait("Category", "Hostile")]
public sealed class ChannelDirectReplyHostileTests
{
    private static ChannelOptions Options => ChannelPair.SmallOptions(pack: false, inline: true);

    private delegate void Spoil(ref TransactionRecordLayout record);

    private static (string What, Spoil Spoil)[] BadDirectReplies() =>
    [
        ("a call", (ref r) => r.Flags = (uint)TransactionFlags.TwoWay),
        ("a oneway", (ref r) => r.Flags = (uint)TransactionFlags.Oneway),
        ("no kind", (ref r) => r.Flags = 0),
        ("two kinds", (ref r) => r.Flags |= (uint)TransactionFlags.ErrorReply),
        ("clear-on-free", (ref r) => r.Flags |= (uint)TransactionFlags.ClearOnFree),
        ("the inline bit", (ref r) => r.Flags |= InlineLayout.RecordFlag),
        ("the request's bit", (ref r) => r.Flags |= DirectReplyLayout.RequestFlag),
        ("longer than the payload lines", (ref r) => r.Length = DirectReplyLayout.MaxPayload + 1),
        ("a huge length", (ref r) => r.Length = uint.MaxValue),
        ("a buffer offset", (ref r) => r.BufferOffset = 64),
        ("metadata", (ref r) => r.MetadataLength = 8),
        ("a status on a reply", (ref r) => r.Status = 2),
        ("a status past the last", (ref r) => (r.Flags, r.Status) = ((uint)TransactionFlags.ErrorReply, 99)),
        ("a chain", (ref r) => r.ChainId = 7),
        ("a depth", (ref r) => r.Depth = 1),
        ("reserved0 set", (ref r) => r.Reserved0 = 1),
        ("a ring position never published", (ref r) => r.Reserved1 = 1),
    ];

    [Fact]
    public void TryReceive_InvalidDirectReplyWithTheExpectedId_ThrowsEveryTimeAndDeliversNothing()
    {
        foreach ((string what, Spoil spoil) in BadDirectReplies())
        {
            using var pair = new ChannelPair(Options);
            pair.Inbound.ExpectDirectReply(5);
            Assert.True(pair.Outbound.TrySend(5, 0, TransactionFlags.Reply | TransactionFlagsExtensions.DirectReplyRequested, new byte[64]));
            Assert.Equal(1, pair.Outbound.DirectRepliesSent);
            TransactionRecordLayout record = pair.ReadHeader<TransactionRecordLayout>(DirectReplyLayout.Offset);
            spoil(ref record);
            pair.WriteHeader(DirectReplyLayout.Offset, record);

            ProtocolViolationException error = Assert.Throws<ProtocolViolationException>(() => pair.Inbound.TryReceive(out _));
            Assert.True(error.Message.Contains("invalid direct reply", StringComparison.Ordinal), $"{what}: {error.Message}");
            Assert.Throws<ProtocolViolationException>(() => pair.Inbound.TryReceive(out _));
            Assert.Equal(0, pair.Inbound.DirectRepliesReceived);
            Assert.Equal(5UL, pair.Inbound.ExpectedDirectReply);
        }
    }

    [Fact]
    public void TryReceive_LinesWithAnotherIdOrNoneExpected_AreNotLookedAt()
    {
        using var pair = new ChannelPair(Options);
        // Nothing expected: a reply written there, even a broken one, is never read.
        Assert.True(pair.Outbound.TrySend(5, 0, TransactionFlags.Reply | TransactionFlagsExtensions.DirectReplyRequested, [1, 2]));
        TransactionRecordLayout record = pair.ReadHeader<TransactionRecordLayout>(DirectReplyLayout.Offset);
        record.Length = uint.MaxValue;
        pair.WriteHeader(DirectReplyLayout.Offset, record);
        Assert.False(pair.Inbound.TryReceive(out _));
        // Another id expected: the same.
        pair.Inbound.ExpectDirectReply(6);
        Assert.False(pair.Inbound.TryReceive(out _));
        Assert.Equal(0, pair.Inbound.DirectRepliesReceived);
        Assert.Equal(6UL, pair.Inbound.ExpectedDirectReply);
        // The expected one, written honestly, is taken once, with every byte, and ends the expectation.
        Assert.True(pair.Outbound.TrySend(6, 3, TransactionFlags.ErrorReply | TransactionFlagsExtensions.DirectReplyRequested, [7, 8, 9], RecordContext.ForError(CallStatus.Internal)));
        ulong receivedBefore = pair.Inbound.Received;
        Assert.True(pair.Inbound.TryReceive(out TransactionRecord taken));
        Assert.Equal((6UL, 3u, TransactionFlags.ErrorReply, CallStatus.Internal), (taken.TransactionId, taken.Code, taken.Flags, taken.Context.Status));
        // Counted as received (the connection's housekeeping reads the ring only when nothing was since its last pass).
        Assert.Equal(receivedBefore + 1, pair.Inbound.Received);
        Assert.True(taken.Inline);
        Assert.Equal([7, 8, 9], pair.Inbound.GetPayload(taken).ToArray());
        Assert.Equal(0UL, pair.Inbound.ExpectedDirectReply);
        // The lines still hold it: not taken again (a writer that writes it twice changes nothing).
        Assert.False(pair.Inbound.TryReceive(out _));
        pair.WriteHeader(DirectReplyLayout.Offset, pair.ReadHeader<TransactionRecordLayout>(DirectReplyLayout.Offset));
        Assert.False(pair.Inbound.TryReceive(out _));
        Assert.Equal(1, pair.Inbound.DirectRepliesReceived);
    }

    [Fact]
    public void TryReceive_AnsweredTwiceAndTheNextCallExpectsWhileTheReplyIsTaken_TheNextCallsExpectationStands()
    {
        // A peer that answers call 5 in the lines and another way: the other answer lets the call's owner end the
        // expectation and the next call (6) begin one while the reader is taking the lines' copy. Before the fix the
        // reader's clear wiped 6's expectation, and call 6, answered honestly in the lines, timed out.
        using var pair = new ChannelPair(Options);
        pair.Inbound.ExpectDirectReply(5);
        Assert.True(pair.Outbound.TrySend(5, 1, DirectReply, [1, 2, 3]));
        int raced = 0;
        pair.Inbound.DirectReplyTakingForTest = () =>
        {
            raced++;
            pair.Inbound.StopExpectingDirectReply(5);
            pair.Inbound.ExpectDirectReply(6);
        };

        Assert.True(pair.Inbound.TryReceive(out TransactionRecord first));
        pair.Inbound.DirectReplyTakingForTest = null;
        Assert.Equal((1, 5UL), (raced, first.TransactionId));
        Assert.Equal(6UL, pair.Inbound.ExpectedDirectReply);
        pair.Inbound.Free(first);
        Assert.Equal(1, pair.Outbound.DrainFrees());

        // Call 6's reply, in the lines: taken, and only now is nothing expected.
        Assert.True(pair.Outbound.TrySend(6, 2, DirectReply, [4, 5]));
        Assert.True(pair.Inbound.TryReceive(out TransactionRecord second));
        Assert.Equal((6UL, 2u), (second.TransactionId, second.Code));
        Assert.Equal([4, 5], pair.Inbound.GetPayload(second).ToArray());
        Assert.Equal(0UL, pair.Inbound.ExpectedDirectReply);
        Assert.Equal(2, pair.Inbound.DirectRepliesReceived);
    }

    [Fact]
    public void TryTakeDirectReplyAlone_AnsweredTwiceAndTheNextCallExpectsWhileTheReplyIsTaken_TheNextCallsExpectationStands()
    {
        // The same race on the synchronous caller's own take.
        using var pair = new ChannelPair(Options);
        ThreadToken thread = ThreadToken.Current;
        pair.Inbound.ExpectDirectReply(5);
        Assert.True(pair.Outbound.TrySend(5, 1, DirectReply, [1]));
        pair.Inbound.DirectReplyTakingForTest = () =>
        {
            pair.Inbound.StopExpectingDirectReply(5);
            pair.Inbound.ExpectDirectReply(6);
        };
        Assert.True(pair.Inbound.TryTakeDirectReplyAlone(out TransactionRecord first, thread));
        pair.Inbound.DirectReplyTakingForTest = null;
        Assert.Equal(5UL, first.TransactionId);
        Assert.Equal(6UL, pair.Inbound.ExpectedDirectReply);
        pair.Inbound.Free(first);
        Assert.Equal(1, pair.Outbound.DrainFrees());
        Assert.True(pair.Outbound.TrySend(6, 2, DirectReply, [2]));
        Assert.True(pair.Inbound.TryTakeDirectReplyAlone(out TransactionRecord second, thread));
        Assert.Equal(6UL, second.TransactionId);
        Assert.Equal(0UL, pair.Inbound.ExpectedDirectReply);
    }

    [Fact]
    public void TryReceiveBatch_DirectReplyGoesWhereTheRingsOrderPutsIt_NeitherBeforeEarlierRecordsNorAfterLaterOnes()
    {
        using var pair = new ChannelPair(Options);
        pair.Inbound.ExpectDirectReply(7);
        Assert.True(pair.Outbound.TrySend(1, 1, TransactionFlags.Oneway, new byte[16]));
        Assert.True(pair.Outbound.TrySend(7, 2, TransactionFlags.Reply | TransactionFlagsExtensions.DirectReplyRequested, [1]));
        Assert.True(pair.Outbound.TrySend(3, 3, TransactionFlags.Oneway, new byte[16]));
        Assert.Equal(1, pair.Outbound.DirectRepliesSent);
        var batch = new TransactionRecord[8];
        Assert.Equal(3, pair.Inbound.TryReceiveBatch(batch));
        Assert.Equal([1u, 2u, 3u], batch[..3].Select(r => r.Code).ToArray());
        // Taken one at a time, the same order.
        using var single = new ChannelPair(Options);
        single.Inbound.ExpectDirectReply(7);
        Assert.True(single.Outbound.TrySend(1, 1, TransactionFlags.Oneway, new byte[16]));
        Assert.True(single.Outbound.TrySend(7, 2, TransactionFlags.Reply | TransactionFlagsExtensions.DirectReplyRequested, [1]));
        Assert.True(single.Outbound.TrySend(3, 3, TransactionFlags.Oneway, new byte[16]));
        var codes = new List<uint>();
        while (single.Inbound.TryReceive(out TransactionRecord record))
        {
            codes.Add(record.Code);
        }
        Assert.Equal([1u, 2u, 3u], codes);
    }

    private const TransactionFlags DirectReply = TransactionFlags.Reply | TransactionFlagsExtensions.DirectReplyRequested;

    [Fact]
    public void TryTakeDirectReplyAlone_OnlyTheExpectedReplyWithNothingBeforeIt_TakenWithItsBytes()
    {
        using var pair = new ChannelPair(Options);
        ThreadToken thread = ThreadToken.Current;
        Assert.False(pair.Inbound.TryTakeDirectReplyAlone(out _, thread));
        pair.Inbound.ExpectDirectReply(7);
        Assert.False(pair.Inbound.TryTakeDirectReplyAlone(out _, thread));
        byte[] payload = [.. Enumerable.Range(0, DirectReplyLayout.MaxPayload).Select(i => (byte)(i + 2))];
        Assert.True(pair.Outbound.TrySend(7, 4, DirectReply, payload));

        Assert.True(pair.Inbound.TryTakeDirectReplyAlone(out TransactionRecord taken, thread));
        Assert.Equal((7UL, 4u, TransactionFlags.Reply), (taken.TransactionId, taken.Code, taken.Flags & ~TransactionFlagsExtensions.DirectReplyRequested));
        Assert.Equal(payload, pair.Inbound.GetPayload(taken).ToArray());
        Assert.Equal(0UL, pair.Inbound.ExpectedDirectReply);
        Assert.Equal((1L, 1L, 1UL), (pair.Inbound.DirectRepliesTakenAlone, pair.Inbound.DirectRepliesReceived, pair.Inbound.Received));
        // Taken once: the lines still hold it, but nothing is expected any more.
        Assert.False(pair.Inbound.TryTakeDirectReplyAlone(out _, thread));
        Assert.Equal(0, pair.Inbound.TryReceiveBatch(new TransactionRecord[4]));
    }

    [Fact]
    public void TryTakeDirectReplyAlone_SomethingMayComeFirst_DeclinesAndTheBatchKeepsTheOrder()
    {
        ThreadToken thread = ThreadToken.Current;
        var batch = new TransactionRecord[8];

        // A ring record published before the reply.
        using (var pair = new ChannelPair(Options))
        {
            pair.Inbound.ExpectDirectReply(7);
            Assert.True(pair.Outbound.TrySend(1, 1, TransactionFlags.Oneway, new byte[16]));
            Assert.True(pair.Outbound.TrySend(7, 2, DirectReply, [1]));
            Assert.False(pair.Inbound.TryTakeDirectReplyAlone(out _, thread));
            Assert.Equal(7UL, pair.Inbound.ExpectedDirectReply);
            Assert.Equal(2, pair.Inbound.TryReceiveBatch(batch));
            Assert.Equal([1u, 2u], batch[..2].Select(r => r.Code).ToArray());
        }

        // A direct call in its lines, at an earlier position: the batch takes (here: refuses) it first, and nothing after
        // a refused record is delivered. An honest writer cannot leave one behind a ring record the reader took; a peer
        // can write one there.
        using (var pair = new ChannelPair(Options))
        {
            pair.Inbound.ExpectDirectReply(7);
            Assert.True(pair.Outbound.TrySend(1, 1, TransactionFlags.Oneway, new byte[16]));
            Assert.Equal(1, pair.Inbound.TryReceiveBatch(batch));
            Assert.True(pair.Outbound.TrySend(7, 3, DirectReply, [1]));
            pair.WriteHeader(DirectCallLayout.Offset, new TransactionRecordLayout { TransactionId = 5, Code = 2, Flags = (uint)TransactionFlags.Oneway, Reserved0 = 1, Reserved1 = 0 });
            Assert.False(pair.Inbound.TryTakeDirectReplyAlone(out _, thread));
            Assert.Throws<ProtocolViolationException>(() => pair.Inbound.TryReceiveBatch(batch));
            Assert.Equal(0L, pair.Inbound.DirectRepliesReceived);
        }

        // A pack still current: its entries are taken before anything published after its record.
        using (var pair = new ChannelPair(ChannelPair.SmallOptions(inline: true)))
        {
            pair.Inbound.ExpectDirectReply(7);
            Assert.True(pair.Outbound.TrySend(1, 1, TransactionFlags.Oneway, new byte[16]));
            Assert.Equal(1, pair.Inbound.TryReceiveBatch(batch.AsSpan(0, 1)));
            Assert.True(pair.Outbound.TrySend(2, 2, TransactionFlags.Oneway, new byte[16]));
            // Seals the pack (the reply goes after its entries), which the reader has not finished.
            Assert.True(pair.Outbound.TrySend(7, 3, DirectReply, [1]));
            Assert.False(pair.Inbound.TryTakeDirectReplyAlone(out _, thread));
            Assert.Equal(7UL, pair.Inbound.ExpectedDirectReply);
            Assert.Equal(2, pair.Inbound.TryReceiveBatch(batch));
            Assert.Equal([2u, 3u], batch[..2].Select(r => r.Code).ToArray());
        }

        // A position the ring never reached, with the ring empty: declined, and the batch refuses it.
        using (var pair = new ChannelPair(Options))
        {
            pair.Inbound.ExpectDirectReply(7);
            Assert.True(pair.Outbound.TrySend(7, 3, DirectReply, [1]));
            TransactionRecordLayout record = pair.ReadHeader<TransactionRecordLayout>(DirectReplyLayout.Offset);
            record.Reserved1 = 5;
            pair.WriteHeader(DirectReplyLayout.Offset, record);
            Assert.False(pair.Inbound.TryTakeDirectReplyAlone(out _, thread));
            Assert.Throws<ProtocolViolationException>(() => pair.Inbound.TryReceiveBatch(batch));
            Assert.Equal(0L, pair.Inbound.DirectRepliesTakenAlone);
        }
    }

    [Fact]
    public void TryTakeDirectReplyAlone_PeerWritesBetweenTheLookAndTheTake_TheOrderIsTheBatchsOrTheReplyIsRefused()
    {
        ThreadToken thread = ThreadToken.Current;
        var batch = new TransactionRecord[8];

        // A ring record and a direct call published after the look: both after the reply, which was written first (at the
        // same position as the call: the batch takes the reply first too).
        using (var pair = new ChannelPair(Options))
        {
            pair.Inbound.ExpectDirectReply(7);
            Assert.True(pair.Outbound.TrySend(7, 1, DirectReply, [1]));
            pair.Inbound.DirectReplyLookedAtForTest = () =>
            {
                Assert.True(pair.Outbound.TrySend(5, 2, TransactionFlags.TwoWay | TransactionFlagsExtensions.DirectCall, [2]));
                Assert.True(pair.Outbound.TrySend(1, 3, TransactionFlags.Oneway, new byte[16]));
            };
            Assert.True(pair.Inbound.TryTakeDirectReplyAlone(out TransactionRecord reply, thread));
            Assert.Equal(1u, reply.Code);
            Assert.Equal(2, pair.Inbound.TryReceiveBatch(batch));
            Assert.Equal([2u, 3u], batch[..2].Select(r => r.Code).ToArray());
        }

        // The lines rewritten after the look: the take's copy is what counts. Another id: not taken, nothing refused.
        using (var pair = new ChannelPair(Options))
        {
            pair.Inbound.ExpectDirectReply(7);
            Assert.True(pair.Outbound.TrySend(7, 1, DirectReply, [1]));
            pair.Inbound.DirectReplyLookedAtForTest = () => Rewrite(pair, (ref r) => r.TransactionId = 8);
            Assert.False(pair.Inbound.TryTakeDirectReplyAlone(out _, thread));
            Assert.Equal(7UL, pair.Inbound.ExpectedDirectReply);
            Assert.Equal(0, pair.Inbound.TryReceiveBatch(batch));
        }

        // The expected id with a broken field, or a position the ring never reached: not taken, and the batch refuses it.
        foreach (Spoil spoil in new Spoil[] { (ref r) => r.Length = DirectReplyLayout.MaxPayload + 1, (ref r) => r.Reserved1 = 3 })
        {
            using var pair = new ChannelPair(Options);
            pair.Inbound.ExpectDirectReply(7);
            Assert.True(pair.Outbound.TrySend(7, 1, DirectReply, [1]));
            pair.Inbound.DirectReplyLookedAtForTest = () => Rewrite(pair, spoil);
            Assert.False(pair.Inbound.TryTakeDirectReplyAlone(out _, thread));
            Assert.Throws<ProtocolViolationException>(() => pair.Inbound.TryReceiveBatch(batch));
            Assert.Equal(0L, pair.Inbound.DirectRepliesReceived);
        }

        static void Rewrite(ChannelPair pair, Spoil spoil)
        {
            TransactionRecordLayout record = pair.ReadHeader<TransactionRecordLayout>(DirectReplyLayout.Offset);
            spoil(ref record);
            pair.WriteHeader(DirectReplyLayout.Offset, record);
        }
    }

    [Fact]
    public void TryReceive_LinesRewrittenAfterTheTake_TheTakenBytesStay()
    {
        using var pair = new ChannelPair(Options);
        byte[] payload = [.. Enumerable.Range(0, DirectReplyLayout.MaxPayload).Select(i => (byte)(i + 1))];
        pair.Inbound.ExpectDirectReply(9);
        Assert.True(pair.Outbound.TrySend(9, 0, TransactionFlags.Reply | TransactionFlagsExtensions.DirectReplyRequested, payload));
        var batch = new TransactionRecord[4];
        Assert.Equal(1, pair.Inbound.TryReceiveBatch(batch));
        pair.Inbound.Region.GetSpan(DirectReplyLayout.Offset, DirectReplyLayout.Size).Fill(0xEE);
        Assert.Equal(payload, pair.Inbound.GetPayload(batch[0]).ToArray());
        byte[] copy = new byte[InlineLayout.MaxStagedPayload];
        pair.Inbound.CopyInlinePayload(batch[0], copy);
        Assert.Equal(payload, copy);
    }

    [Fact]
    public void TryReceive_OneLineReplyWithBytesInTheSecondLine_NothingPastItsLengthReachesTheTransactionsCopy()
    {
        using var pair = new ChannelPair(Options);
        // A two-line reply first: its second line's bytes stay in the lines and in staging slot 0.
        pair.Inbound.ExpectDirectReply(1);
        Assert.True(pair.Outbound.TrySend(1, 0, TransactionFlags.Reply | TransactionFlagsExtensions.DirectReplyRequested, new byte[DirectReplyLayout.MaxPayload]));
        Assert.True(pair.Inbound.TryReceive(out _));
        byte[] small = [.. Enumerable.Range(0, 40).Select(i => (byte)(i + 7))];
        pair.Inbound.ExpectDirectReply(2);
        Assert.True(pair.Outbound.TrySend(2, 0, TransactionFlags.Reply | TransactionFlagsExtensions.DirectReplyRequested, small));
        // The writer's leftovers past the length: what a peer may leave there.
        pair.Inbound.Region.GetSpan(DirectReplyLayout.PayloadOffset + small.Length, DirectReplyLayout.MaxPayload - small.Length).Fill(0xEE);

        Assert.True(pair.Inbound.TryReceive(out TransactionRecord taken));
        Assert.Equal(small, pair.Inbound.GetPayload(taken).ToArray());
        byte[] copy = new byte[InlineLayout.MaxStagedPayload];
        copy.AsSpan().Fill(0xAA);
        pair.Inbound.CopyInlinePayload(taken, copy);
        Assert.Equal(small, copy[..small.Length]);
        // One line copied: nothing of the second line (nor of the staging slot past it) reaches the copy.
        Assert.All(copy[TransactionRecordLayout.Size..], b => Assert.Equal(0xAA, b));
    }

    [Fact]
    public void TrySend_DirectReplyTooLargeForTheLines_GoesOnTheRingWithoutTheRequestsBit()
    {
        using var pair = new ChannelPair(Options);
        pair.Inbound.ExpectDirectReply(4);
        Assert.True(pair.Outbound.TrySend(4, 0, TransactionFlags.Reply | TransactionFlagsExtensions.DirectReplyRequested, new byte[DirectReplyLayout.MaxPayload + 1]));
        Assert.Equal(0, pair.Outbound.DirectRepliesSent);
        TransactionRecordLayout onRing = pair.ReadHeader<TransactionRecordLayout>(pair.Inbound.Layout.TxRingOffset);
        Assert.Equal((uint)TransactionFlags.Reply, onRing.Flags);
        Assert.True(pair.Inbound.TryReceive(out TransactionRecord taken));
        Assert.Equal(TransactionFlags.Reply, taken.Flags);
        // The channel does not end the expectation for a ring reply: its owner does (the connection's routing).
        Assert.Equal(4UL, pair.Inbound.ExpectedDirectReply);
    }

    [Theory]
    [InlineData(TransactionFlags.Oneway, 16, false)]
    [InlineData(TransactionFlags.Oneway, 200, false)]
    [InlineData(TransactionFlags.Reply, 16, false)]
    [InlineData(TransactionFlags.Reply, 200, false)]
    [InlineData(TransactionFlags.ErrorReply, 16, false)]
    [InlineData(TransactionFlags.TwoWay, 16, true)]
    [InlineData(TransactionFlags.TwoWay, 200, true)]
    public void TryReceive_RequestsBitOnlyOnACall(TransactionFlags kind, int length, bool valid)
    {
        using var pair = new ChannelPair(Options);
        Assert.True(pair.Outbound.TrySend(1, 0, kind, new byte[length]));
        int slot = pair.Inbound.Layout.TxRingOffset;
        TransactionRecordLayout record = pair.ReadHeader<TransactionRecordLayout>(slot);
        record.Flags |= DirectReplyLayout.RequestFlag;
        pair.WriteHeader(slot, record);

        if (valid)
        {
            Assert.True(pair.Inbound.TryReceive(out TransactionRecord taken));
            Assert.Equal(kind | TransactionFlagsExtensions.DirectReplyRequested, taken.Flags);
            Assert.Equal(length <= InlineLayout.MaxPayload, taken.Inline);
        }
        else
        {
            Assert.Throws<ProtocolViolationException>(() => pair.Inbound.TryReceive(out _));
            Assert.Equal(0UL, pair.Inbound.Received);
        }
    }

    [Fact]
    public void TrySend_CallAskingForADirectReply_CarriesTheRequestsBitOnTheWire()
    {
        using var pair = new ChannelPair(Options);
        Assert.True(pair.Outbound.TrySend(1, 0, TransactionFlags.TwoWay | TransactionFlagsExtensions.DirectReplyRequested, new byte[16]));
        Assert.True(pair.Outbound.TrySend(2, 0, TransactionFlags.TwoWay | TransactionFlagsExtensions.DirectReplyRequested, new byte[200]));
        // Inline: the record, then its payload slot, then the buffer record.
        TransactionRecordLayout inline = pair.ReadHeader<TransactionRecordLayout>(pair.Inbound.Layout.TxRingOffset);
        TransactionRecordLayout buffered = pair.ReadHeader<TransactionRecordLayout>(pair.Inbound.Layout.TxRingOffset + (2 * TransactionRecordLayout.Size));
        Assert.Equal((uint)TransactionFlags.TwoWay | InlineLayout.RecordFlag | DirectReplyLayout.RequestFlag, inline.Flags);
        Assert.Equal((uint)TransactionFlags.TwoWay | DirectReplyLayout.RequestFlag, buffered.Flags);
        // A oneway with the internal bit is sent without it (it means nothing there).
        Assert.True(pair.Outbound.TrySend(3, 0, TransactionFlags.Oneway | TransactionFlagsExtensions.DirectReplyRequested, new byte[16]));
        var batch = new TransactionRecord[4];
        Assert.Equal(3, pair.Inbound.TryReceiveBatch(batch));
        Assert.Equal(TransactionFlags.Oneway, batch[2].Flags);
    }
}
