using System.Runtime.InteropServices;
using PageRange.Tests.Infrastructure;
using PageRange.Transport;

namespace PageRange.Tests.Transport;

/// <summary>
/// A writer that corrupts a pack (its record, its Committed word, an entry) or publishes past an unsealed pack, and a
/// receiver that frees an open pack: each is a <see cref="ProtocolViolationException"/> of the victim's channel, and
/// nothing after the bad entry is delivered (every later receive throws again).
/// </summary>
[Trait("Category", "Hostile")]
public sealed class ChannelPackHostileTests
{
    private static readonly int s_entry64 = PackLayout.EntrySize(64);

    /// <summary>Sends <paramref name="count"/> 64-byte oneways into one pack and returns its offset.</summary>
    private static long SendPacked(ChannelPair pair, int count)
    {
        for (int i = 0; i < count; i++)
        {
            Assert.True(pair.Outbound.TrySend((ulong)i, 3, TransactionFlags.Oneway, new byte[64]));
        }
        long pack = pair.Outbound.OpenPackOffset;
        Assert.True(pack >= 0);
        return pack;
    }

    /// <summary>The pack's bytes as the writer maps them (read-write).</summary>
    private static Span<byte> PackBytes(ChannelPair pair, long pack) => pair.Outbound.Pages.GetSpan(pack, PackLayout.Capacity);

    private static void WriteWord(ChannelPair pair, long pack, uint word) => MemoryMarshal.Write(PackBytes(pair, pack), in word);

    private static void AssertViolationEveryTime(ChannelPair pair, string contains = "pack")
    {
        ProtocolViolationException error = Assert.Throws<ProtocolViolationException>(() => pair.Inbound.TryReceive(out _));
        Assert.Contains(contains, error.Message, StringComparison.Ordinal);
        Assert.Throws<ProtocolViolationException>(() => pair.Inbound.TryReceive(out _));
        var batch = new TransactionRecord[8];
        Assert.Throws<ProtocolViolationException>(() => pair.Inbound.TryReceiveBatch(batch));
    }

    [Fact]
    public void TryReceive_CommittedBeyondTheCapacity_Violation()
    {
        using var pair = new ChannelPair(ChannelPair.SmallOptions());
        long pack = SendPacked(pair, 1);
        WriteWord(pair, pack, (uint)(PackLayout.Capacity - PackLayout.HeaderSize + 8));
        AssertViolationEveryTime(pair, "Committed");
    }

    [Fact]
    public void TryReceive_MoreEntriesThanAPackHolds_ViolationAfterTheFirst64()
    {
        // The receiver's slots cover MaxLivePacks packs of MaxEntries: a writer that packs more breaks the promise.
        using var pair = new ChannelPair(ChannelPair.SmallOptions());
        long pack = SendPacked(pair, 1);
        int entries = PackLayout.MaxEntries + 1;
        PackBytes(pair, pack).Slice(PackLayout.HeaderSize, entries * PackLayout.EntrySize(0)).Clear();
        WriteWord(pair, pack, (uint)(entries * PackLayout.EntrySize(0)));

        var batch = new TransactionRecord[2 * PackLayout.MaxEntries];
        Assert.Equal(PackLayout.MaxEntries, pair.Inbound.TryReceiveBatch(batch));
        ProtocolViolationException error = Assert.Throws<ProtocolViolationException>(() => pair.Inbound.TryReceiveBatch(batch));
        Assert.Contains($"more than {PackLayout.MaxEntries} entries", error.Message, StringComparison.Ordinal);
        Assert.Throws<ProtocolViolationException>(() => pair.Inbound.TryReceive(out _));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void TryReceive_EmptyPack_Violation(bool sealed_)
    {
        // An honest writer commits a pack's first entry before it publishes the pack's record.
        using var pair = new ChannelPair(ChannelPair.SmallOptions());
        long pack = SendPacked(pair, 1);
        WriteWord(pair, pack, sealed_ ? PackLayout.SealedBit : 0);
        AssertViolationEveryTime(pair, "Committed");
    }

    [Fact]
    public void TryReceiveBatch_EveryRingSlotNamesOneEmptySealedPack_ViolationAtTheFirst()
    {
        // A pack record that hands out nothing kept the batch going: a peer republishing such records as fast as the
        // receiver finished them held one batch (the receive lock, the reader role) for ever. Here the ring holds as many
        // as it can: the old receiver took them all and returned 0, without a word.
        var options = ChannelPair.SmallOptions();
        using var pair = new ChannelPair(options);
        long pack = SendPacked(pair, 1);
        WriteWord(pair, pack, PackLayout.SealedBit);
        int ring = pair.Inbound.Layout.TxRingOffset;
        TransactionRecordLayout record = pair.ReadHeader<TransactionRecordLayout>(ring);
        Assert.NotEqual(0u, record.Flags & PackLayout.RecordFlag);
        for (int slot = 1; slot < options.TxRingCapacity; slot++)
        {
            pair.WriteHeader(ring + (slot * TransactionRecordLayout.Size), record);
        }
        pair.WriteHeader(RegionHeaderLayout.TxTailOffset, (ulong)options.TxRingCapacity);

        var batch = new TransactionRecord[8];
        ProtocolViolationException error = Assert.Throws<ProtocolViolationException>(() => pair.Inbound.TryReceiveBatch(batch));
        Assert.Contains("an entry at least", error.Message, StringComparison.Ordinal);
        Assert.Throws<ProtocolViolationException>(() => pair.Inbound.TryReceiveBatch(batch));
        // The first pack record only (the old receiver consumed every slot).
        Assert.True(pair.Inbound.Received <= 1, $"{pair.Inbound.Received} records consumed");
    }

    [Fact]
    public async Task TryReceive_PacksFinishedWhileTheWriterNeverReadsTheirFrees_ViolationWhenTheFreeRingIsFull()
    {
        // Each pack's entry is taken and freed while the pack is open; the seal is seen by the next pass, whose
        // FinishPack writes the pack's free. A writer that forges pack records and never reads those frees fills the free
        // ring: the free written inside the receive pass (under the receive and free locks) is the violation.
        var options = ChannelPair.SmallOptions();
        using var pair = new ChannelPair(options);
        long packA = SendPacked(pair, 1);
        int ring = pair.Inbound.Layout.TxRingOffset;
        TransactionRecordLayout record = pair.ReadHeader<TransactionRecordLayout>(ring);
        Assert.Equal((ulong)packA, record.BufferOffset);
        // A second pack, a copy of the first (header and one entry), 2 packs further on.
        long packB = packA + (2 * PackLayout.Capacity);
        Assert.True(packB + PackLayout.Capacity <= pair.Inbound.Layout.DataSize);
        // Not a buffer of the writer's allocator: written through the raw mapping, as a forger would.
        Span<byte> RawPack(long pack) => pair.Outbound.Region.GetSpan(pair.Outbound.Layout.DataOffset + pack, PackLayout.Capacity);
        void RawWord(long pack, uint word) => MemoryMarshal.Write(RawPack(pack), in word);
        RawPack(packA).CopyTo(RawPack(packB));
        uint open = (uint)s_entry64;

        ProtocolViolationException? error = null;
        ulong passes = 0;
        for (ulong i = 0; i < (ulong)(options.FreeRingCapacity + 4); i++)
        {
            // Finishes the pack before (its free written in this pass), then takes the open pack's entry.
            TransactionRecord message = default;
            error = Record.Exception(() => Assert.True(pair.Inbound.TryReceive(out message))) as ProtocolViolationException;
            if (error is not null)
            {
                break;
            }
            passes++;
            // Freed while its pack is open: the pack's free waits for the seal.
            pair.Inbound.Free(message);
            long current = i % 2 == 0 ? packA : packB;
            long next = i % 2 == 0 ? packB : packA;
            RawWord(current, PackLayout.SealedBit | open);
            RawWord(next, open);
            record.BufferOffset = (ulong)next;
            pair.WriteHeader(ring + ((int)((i + 1) % (ulong)options.TxRingCapacity) * TransactionRecordLayout.Size), record);
            pair.WriteHeader(RegionHeaderLayout.TxTailOffset, i + 2);
        }
        Assert.NotNull(error);
        Assert.Contains("free ring", error.Message, StringComparison.Ordinal);
        // The first pass finished no pack; each later one finished one and wrote its free, until the ring was full.
        Assert.Equal((ulong)options.FreeRingCapacity + 1, passes);
        // The throw let go of the receive and free locks (a connection closes on it: its pump never reads again): another
        // thread's pass and free get through.
        Task other = Task.Run(() =>
        {
            if (pair.Inbound.TryReceive(out TransactionRecord late))
            {
                pair.Inbound.Free(late);
            }
        });
        await other.WaitAsync(TestTimeouts.Long);
    }

    [Fact]
    public void TryReceive_CommittedNotAMultipleOf8_Violation()
    {
        using var pair = new ChannelPair(ChannelPair.SmallOptions());
        long pack = SendPacked(pair, 1);
        WriteWord(pair, pack, (uint)s_entry64 - 4);
        AssertViolationEveryTime(pair, "Committed");
    }

    [Fact]
    public void TryReceive_CommittedCoversAnEntrysHeaderButNotItsPayload_Violation()
    {
        using var pair = new ChannelPair(ChannelPair.SmallOptions());
        long pack = SendPacked(pair, 1);
        WriteWord(pair, pack, PackLayout.EntryHeaderSize);
        AssertViolationEveryTime(pair, "length");
    }

    [Theory]
    [InlineData(PackLayout.LongForm, 0, "length")]
    [InlineData(2, 64, "form")]
    [InlineData(ushort.MaxValue, 0, "form")]
    public void TryReceive_AnEntrysFormUnknownOrItsIdOutsideCommitted_Violation(int form, int length, string contains)
    {
        // A long entry's id takes 8 bytes after the header: an empty one covering only the header leaves it outside
        // Committed. Any form but 0 and 1 is a violation.
        using var pair = new ChannelPair(ChannelPair.SmallOptions());
        long pack = SendPacked(pair, 1);
        var entry = new PackEntryLayout { Length = (ushort)length, Form = (ushort)form, Code = 3 };
        MemoryMarshal.Write(PackBytes(pair, pack)[PackLayout.HeaderSize..], in entry);
        WriteWord(pair, pack, (uint)(length == 0 ? PackLayout.EntryHeaderSize : s_entry64));
        AssertViolationEveryTime(pair, contains);
    }

    [Fact]
    public void TryReceive_AForgedFirstIdOrLongEntryId_OnlyTheIdsChange_EveryPayloadDeliveredInOrder()
    {
        // Ids are only numbers to the receiver: a writer that rewrites the pack's FirstId or a long entry's id changes
        // what the records say, nothing else.
        using var pair = new ChannelPair(ChannelPair.SmallOptions());
        Assert.True(pair.Outbound.TrySend(0, 3, TransactionFlags.Oneway, new byte[64]));
        Assert.True(pair.Outbound.TrySend(1, 3, TransactionFlags.Oneway, new byte[64]));
        Assert.True(pair.Outbound.TrySend(7, 3, TransactionFlags.Oneway, new byte[64]));
        long pack = pair.Outbound.OpenPackOffset;
        Span<byte> bytes = PackBytes(pair, pack);
        MemoryMarshal.Write(bytes[PackLayout.FirstIdOffset..], ulong.MaxValue);
        // The third entry is long (7 does not follow 1): its id sits after its header.
        MemoryMarshal.Write(bytes[(PackLayout.HeaderSize + (2 * s_entry64) + PackLayout.EntryHeaderSize)..], 12345UL);

        var ids = new List<ulong>();
        while (pair.Inbound.TryReceive(out TransactionRecord record))
        {
            Assert.Equal(64, record.Length);
            ids.Add(record.TransactionId);
            pair.Inbound.Free(record);
        }
        // FirstId all ones is a oneway id's shape: the short entry after it steps by 2^16 (wrapping).
        Assert.Equal(new[] { ulong.MaxValue, unchecked(ulong.MaxValue + PackLayout.IdStep(ulong.MaxValue)), 12345UL }, ids);
    }

    [Fact]
    public void TryReceive_CommittedGoesBackwards_ViolationAfterTheEntriesTaken()
    {
        using var pair = new ChannelPair(ChannelPair.SmallOptions());
        long pack = SendPacked(pair, 2);
        Assert.True(pair.Inbound.TryReceive(out TransactionRecord first));
        Assert.True(pair.Inbound.TryReceive(out TransactionRecord second));
        Assert.Equal((0UL, 1UL), (first.TransactionId, second.TransactionId));
        WriteWord(pair, pack, (uint)s_entry64);
        AssertViolationEveryTime(pair, "Committed");
    }

    [Fact]
    public void WaitForTransaction_CommittedRewrittenWhileAStreamsReceiverPacesItsLooks_SeenWithinFourPollsAndAViolation()
    {
        // Pacing leaves reads of the word out, never its validation: a word forged backwards while the receiver waits
        // with paced looks ends the wait at the next read, and the pass that follows refuses it.
        using var pair = new ChannelPair(ChannelPair.SmallOptions(strategy: WaitStrategy.BusySpin));
        long pack = SendPacked(pair, 2);
        var batch = new TransactionRecord[8];
        Assert.Equal(2, pair.Inbound.TryReceiveBatch(batch));
        // More at the first look after the take: the receiver paces its looks from now on.
        Assert.True(pair.Outbound.TrySend(2, 3, TransactionFlags.Oneway, new byte[64]));
        Assert.True(pair.Inbound.RecordsMaybeReadyPaced);
        Assert.Equal(1, pair.Inbound.TryReceiveBatch(batch));

        WriteWord(pair, pack, (uint)s_entry64);
        (long polls, long looks) = (pair.Inbound.PackWaitPolls, pair.Inbound.PackWaitLooks);
        Assert.True(pair.Inbound.WaitForTransaction(TestTimeouts.Short, default));
        Assert.InRange(pair.Inbound.PackWaitPolls - polls, 1, InboundChannel.PackPollInterval);
        Assert.Equal(looks + 1, pair.Inbound.PackWaitLooks);
        AssertViolationEveryTime(pair, "Committed");
    }

    /// <summary>A forged hint, as an offset from the data area's end when <paramref name="fromEnd"/> (a boundary case).</summary>
    [Theory]
    [InlineData(ulong.MaxValue, false, 0, 1)]
    [InlineData((ulong)long.MaxValue, false, 0, 1)]
    [InlineData(0x8000_0000_0000_0001UL, false, 0, 1)]
    [InlineData(1UL, false, 1, 0)]
    [InlineData(0UL, false, 0, 0)]
    [InlineData((ulong)PackLayout.HeaderSize, false, 0, 1)]
    [InlineData((ulong)PackLayout.NextPackPrefetchBytes - 1, true, 1, 0)]
    [InlineData((ulong)PackLayout.NextPackPrefetchBytes - 9, true, 0, 1)]
    public void TryReceive_ForgedNextPackHint_OnlyAFetchInsideTheDataArea_EveryMessageDeliveredInOrder(ulong hint, bool fromEnd, long prefetched, long refused)
    {
        // The hint in a sealed pack's header only says where to prefetch: whatever it says (outside the data area, past
        // its last three lines, without the low bit, nothing), the next pack is the one its record names, nothing is
        // refused or skipped, and a hint that names nothing inside the data area is not even fetched.
        using var pair = new ChannelPair(ChannelPair.SmallOptions());
        int perPack = (PackLayout.Capacity - PackLayout.HeaderSize) / s_entry64;
        long full = SendPacked(pair, perPack);
        Assert.True(pair.Outbound.TrySend((ulong)perPack, 3, TransactionFlags.Oneway, new byte[64]));
        long next = pair.Outbound.OpenPackOffset;
        Assert.NotEqual(full, next);
        Assert.Equal(PackLayout.NextPackHint(next), MemoryMarshal.Read<ulong>(PackBytes(pair, full)[PackLayout.NextPackHintOffset..]));
        if (fromEnd)
        {
            hint = (ulong)pair.Outbound.Pages.ByteCount - hint;
        }
        MemoryMarshal.Write(PackBytes(pair, full)[PackLayout.NextPackHintOffset..], in hint);

        var ids = new List<ulong>();
        var batch = new TransactionRecord[8];
        int taken;
        while ((taken = pair.Inbound.TryReceiveBatch(batch)) > 0)
        {
            foreach (TransactionRecord record in batch.AsSpan(0, taken))
            {
                ids.Add(record.TransactionId);
                pair.Inbound.Free(record);
            }
        }
        Assert.Equal(Enumerable.Range(0, perPack + 1).Select(i => (ulong)i), ids);
        Assert.Equal(2, pair.Inbound.PacksReceived);
        if (System.Runtime.Intrinsics.X86.Sse.IsSupported)
        {
            Assert.Equal((prefetched, refused), (pair.Inbound.NextPackPrefetches, pair.Inbound.NextPackHintsRefused));
        }
        // The first pack went back whole; the second stays open.
        pair.Outbound.DrainFrees();
        Assert.Equal(1, pair.Outbound.LiveBuffers);
    }

    [Fact]
    public void TryReceive_CommittedGrowsAfterTheSeal_Violation()
    {
        using var pair = new ChannelPair(ChannelPair.SmallOptions());
        long pack = SendPacked(pair, 3);
        pair.Outbound.DrainFreesAndReleaseIdleSlab();
        uint sealedWord = MemoryMarshal.Read<uint>(PackBytes(pair, pack));
        Assert.Equal((uint)(3 * s_entry64) | PackLayout.SealedBit, sealedWord);
        // One message taken: the receiver saw the sealed word.
        Assert.True(pair.Inbound.TryReceive(out _));
        // A fourth, well-formed entry appended after the seal.
        var entry = new PackEntryLayout { Length = 64, Form = PackLayout.ShortForm, Code = 3 };
        MemoryMarshal.Write(PackBytes(pair, pack)[(PackLayout.HeaderSize + (3 * s_entry64))..], in entry);
        WriteWord(pair, pack, (uint)(4 * s_entry64) | PackLayout.SealedBit);
        AssertViolationEveryTime(pair, "Committed");
    }

    [Theory]
    [InlineData(PackLayout.MaxPayload + 1, "length")]
    [InlineData(ushort.MaxValue, "length")]
    [InlineData(128, "length")]
    public void TryReceive_EntryLongerThanTheBoundOrThanCommitted_Violation(int length, string contains)
    {
        using var pair = new ChannelPair(ChannelPair.SmallOptions());
        long pack = SendPacked(pair, 1);
        var entry = new PackEntryLayout { Length = (ushort)length, Form = PackLayout.ShortForm, Code = 3 };
        MemoryMarshal.Write(PackBytes(pair, pack)[PackLayout.HeaderSize..], in entry);
        // Committed stays one 64-byte entry; MaxPayload + 1 also exceeds the bound with Committed covering it.
        if (length == PackLayout.MaxPayload + 1)
        {
            WriteWord(pair, pack, (uint)PackLayout.EntrySize(length));
        }
        AssertViolationEveryTime(pair, contains);
    }

    [Fact]
    public void TryReceive_LaterRecordPublishedWhilePackNotSealed_ViolationAndTheLaterRecordNeverDelivered()
    {
        using var pair = new ChannelPair(ChannelPair.SmallOptions());
        long pack = SendPacked(pair, 1);
        // The call seals the pack before its record; the writer then takes the seal back.
        Assert.True(pair.Outbound.TrySend(50, 4, TransactionFlags.TwoWay, new byte[8], new RecordContext(1, 0, CallStatus.Ok)));
        WriteWord(pair, pack, (uint)s_entry64);
        Assert.True(pair.Inbound.TryReceive(out TransactionRecord first));
        Assert.Equal(0UL, first.TransactionId);
        AssertViolationEveryTime(pair, "not sealed");
        Assert.Equal(1UL, pair.Inbound.Received);
    }

    [Fact]
    public void TryReceive_UnsealedPackFullyConsumedRingEmpty_WaitsWithoutSpinning()
    {
        using var pair = new ChannelPair(ChannelPair.SmallOptions());
        SendPacked(pair, 1);
        Assert.True(pair.Inbound.TryReceive(out _));
        Assert.False(pair.Inbound.TryReceive(out _));
        Assert.False(pair.Inbound.TransactionMaybeReady);
    }

    private delegate void Spoil(ref TransactionRecordLayout record);

    private static (string What, Spoil Spoil)[] BadPackRecords(long dataSize) =>
    [
        ("offset beyond the data area", (ref r) => r.BufferOffset = (ulong)dataSize + 8),
        ("capacity runs past the end", (ref r) => r.BufferOffset = (ulong)dataSize - 64),
        ("misaligned offset", (ref r) => r.BufferOffset += 4),
        ("capacity below a header and an entry", (ref r) => r.Length = PackLayout.MinCapacity - 8),
        ("capacity above the limit", (ref r) => r.Length = PackLayout.MaxCapacity + 8),
        ("capacity not a multiple of 8", (ref r) => r.Length = PackLayout.Capacity - 4),
        ("a status", (ref r) => r.Status = 1),
        ("a chain", (ref r) => r.ChainId = 1),
        ("a depth", (ref r) => r.Depth = 1),
        ("metadata", (ref r) => r.MetadataLength = 8),
        ("an id", (ref r) => r.TransactionId = 1),
        ("a code", (ref r) => r.Code = 1),
        ("clear on free", (ref r) => r.Flags |= (uint)TransactionFlags.ClearOnFree),
        ("a call, not a oneway", (ref r) => r.Flags = (uint)TransactionFlags.TwoWay | PackLayout.RecordFlag),
        ("reserved0 set", (ref r) => r.Reserved0 = 1),
        ("reserved1 set", (ref r) => r.Reserved1 = 1),
    ];

    [Fact]
    public void TryReceive_InvalidPackRecord_ThrowsAndDoesNotConsumeIt()
    {
        foreach ((string what, Spoil spoil) in BadPackRecords(ChannelPair.SmallOptions().Validate().DataSize))
        {
            using var pair = new ChannelPair(ChannelPair.SmallOptions());
            SendPacked(pair, 2);
            int slot = pair.Inbound.Layout.TxRingOffset;
            TransactionRecordLayout record = pair.ReadHeader<TransactionRecordLayout>(slot);
            Assert.Equal((uint)TransactionFlags.Oneway | PackLayout.RecordFlag, record.Flags);
            spoil(ref record);
            pair.WriteHeader(slot, record);

            ProtocolViolationException error = Assert.Throws<ProtocolViolationException>(() => pair.Inbound.TryReceive(out _));
            Assert.True(error.Message.Contains("invalid pack record", StringComparison.Ordinal) || error.Message.Contains("invalid transaction record", StringComparison.Ordinal), what);
            Assert.Throws<ProtocolViolationException>(() => pair.Inbound.TryReceive(out _));
            Assert.Equal(0UL, pair.Inbound.Received);
        }
    }

    [Theory]
    [InlineData(0)]
    [InlineData(PackLayout.HeaderSize + PackLayout.EntryHeaderSize)]
    [InlineData(PackLayout.Capacity - 8)]
    public void DrainFrees_ReceiverFreesTheOpenPackOrAnOffsetInsideIt_Violation(int within)
    {
        using var pair = new ChannelPair(ChannelPair.SmallOptions());
        var peer = new RawReceiverPeer(pair);
        long pack = SendPacked(pair, 3);
        peer.AdvanceTxHead(1);
        peer.PublishFree((ulong)(pack + within));
        ProtocolViolationException error = Assert.Throws<ProtocolViolationException>(() => pair.Outbound.DrainFrees());
        Assert.Contains("still open", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void TrySend_ReceiverFreesAFullPackBeforeItsSeal_TheNextPacksReservationCatchesItAndNothingStaysReserved()
    {
        // The writer reserves the next pack before it seals the full one: the reservation's drain (a pack is larger than
        // LazyDrainMaxMessage, so every reservation of one reads the frees) runs with the full pack still open, so a free
        // naming it is refused there, and the new reservation is not left behind.
        using var pair = new ChannelPair(ChannelPair.SmallOptions());
        var peer = new RawReceiverPeer(pair);
        int perPack = (PackLayout.Capacity - PackLayout.HeaderSize) / s_entry64;
        long full = SendPacked(pair, perPack);
        int allocated = pair.Outbound.Allocator.GetStats().AllocatedBuffers;
        peer.AdvanceTxHead(1);
        peer.PublishFree((ulong)full);

        ProtocolViolationException error = Assert.Throws<ProtocolViolationException>(
            () => pair.Outbound.TrySend((ulong)perPack, 3, TransactionFlags.Oneway, new byte[64]));
        Assert.Contains("still open", error.Message, StringComparison.Ordinal);
        Assert.Equal(allocated, pair.Outbound.Allocator.GetStats().AllocatedBuffers);
        Assert.Equal(0, pair.Outbound.Allocator.GetStats().ReservedBuffers);
    }

    [Fact]
    public void DrainFrees_SealedPackFreedBeforeItsRecordWasTaken_IgnoredAndCountedAsAnyBuffer()
    {
        using var pair = new ChannelPair(ChannelPair.SmallOptions());
        var peer = new RawReceiverPeer(pair);
        long pack = SendPacked(pair, 3);
        pair.Outbound.DrainFreesAndReleaseIdleSlab();
        peer.PublishFree((ulong)pack);
        pair.Outbound.DrainFrees();
        Assert.Equal(1, pair.Outbound.UndeliveredFrees);
        Assert.Equal(1, pair.Outbound.LiveBuffers);
        // Taken, then freed: the pack goes back.
        peer.AdvanceTxHead(1);
        peer.PublishFree((ulong)pack);
        pair.Outbound.DrainFrees();
        Assert.Equal(0, pair.Outbound.LiveBuffers);
    }
}
