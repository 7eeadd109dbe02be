using System.Diagnostics;
using System.Runtime.InteropServices;
using PageRange.Memory;
using PageRange.Tests.Infrastructure;
using PageRange.Transport;

namespace PageRange.Tests.Transport;

/// <summary>
/// Small oneway messages share a pack: one ring record and one free for many messages, in order with every other
/// record, and the pack's free goes back only once it is sealed, consumed and each of its messages was freed.
/// </summary>
public sealed class ChannelPackTests
{
    private static readonly int s_perPack = (PackLayout.Capacity - PackLayout.HeaderSize) / PackLayout.EntrySize(64);

    /// <summary>Receives everything the ring and the current pack give now, checking each payload against its id.</summary>
    private static List<TransactionRecord> ReceiveAll(ChannelPair pair, bool free = true) => pair.ReceiveAllChecked(free);

    /// <summary>No packed message live on the receiver, and every buffer back with the writer once it reads the frees.</summary>
    private static void AssertEveryPackFreedBack(ChannelPair pair)
    {
        Assert.Equal(0, pair.Inbound.PackedLive);
        pair.Outbound.DrainFrees();
        Assert.Equal(0, pair.Outbound.LiveBuffers);
        Assert.Equal(0, pair.Outbound.Allocator.GetStats().AllocatedBuffers);
    }

    private static void SendOneway(ChannelPair pair, ulong id, int size)
    {
        byte[] payload = ChannelPair.PayloadFor(id, size);
        Assert.True(pair.Outbound.TrySend(id, ChannelPair.Checksum(payload), TransactionFlags.Oneway, payload));
    }

    [Theory]
    [InlineData(0, 0)]
    [InlineData(4L * PackLayout.Capacity - 1, 0)]
    [InlineData(4L * PackLayout.Capacity, 4)]
    [InlineData(20L * PackLayout.Capacity - 1, 4)]
    [InlineData(20L * PackLayout.Capacity, 5)]
    [InlineData(64L * PackLayout.Capacity, 16)]
    [InlineData(1L << 30, 16)]
    public void LivePacksFor_AQuarterOfTheOnewayQuotaBetweenFourAndSixteen_NoneBelowFour(long quota, int packs) =>
        Assert.Equal(packs, PackLayout.LivePacksFor(quota));

    [Fact]
    public void TrySend_OnewaysOfUpToOneKiB_ThreeShareAPack_AndArriveWhole()
    {
        using var pair = new ChannelPair(ChannelPair.SmallOptions(pages: 128));
        int perPack = (PackLayout.Capacity - PackLayout.HeaderSize) / PackLayout.EntrySize(PackLayout.MaxPayload);
        Assert.Equal((1024, 3), (PackLayout.MaxPayload, perPack));
        for (ulong id = 1; id <= 6; id++)
        {
            SendOneway(pair, id, PackLayout.MaxPayload);
        }
        Assert.Equal((2L, 6L), (pair.Outbound.PacksOpened, pair.Outbound.PackedSent));
        SendOneway(pair, 7, PackLayout.MaxPayload + 1);
        Assert.Equal(6L, pair.Outbound.PackedSent);

        List<TransactionRecord> received = ReceiveAll(pair);
        Assert.Equal([1UL, 2, 3, 4, 5, 6, 7], received.Select(r => r.TransactionId));
        Assert.Equal(Enumerable.Repeat(PackLayout.MaxPayload, 6).Append(PackLayout.MaxPayload + 1), received.Select(r => (int)r.Length));
        AssertEveryPackFreedBack(pair);
    }

    [Theory]
    [InlineData(64, false)]
    [InlineData(0, true)]
    [InlineData(56, true)]
    [InlineData(PackLayout.MaxPayload, true)]
    public void OpeningAPack_ClaimsEachWholeLinePastItsFirstEntry_AndChangesNothingElse(int payload, bool misaligned)
    {
        using var pair = new ChannelPair(ChannelPair.SmallOptions());
        // Old bytes everywhere, as a buffer that was a pack before holds them.
        const byte old = 0xA5;
        long dataOffset = pair.Inbound.Layout.DataOffset;
        pair.Outbound.Region.GetSpan(dataOffset, (int)pair.Inbound.Layout.DataSize).Fill(old);
        if (misaligned)
        {
            // A buffer of its own first (too large for a pack), so the pack starts 8 bytes past a cache line.
            SendOneway(pair, 0, PackLayout.MaxPayload + 8);
        }
        SendOneway(pair, 1, payload);
        long pack = pair.Outbound.OpenPackOffset;
        Assert.Equal(misaligned, (dataOffset + pack) % 64 != 0);
        Assert.True(pack + PackLayout.Capacity + 64 <= pair.Inbound.Layout.DataSize);
        // The pack and the line after it (nothing may be written past the pack's end).
        byte[] bytes = pair.Outbound.Region.GetSpan(dataOffset + pack, PackLayout.Capacity + 64).ToArray();

        // One zero word at the start of every cache line (of the mapping, page-aligned) that lies wholly past the entry.
        int entryEnd = PackLayout.HeaderSize + PackLayout.EntrySize(payload);
        int claimed = 0;
        for (int at = entryEnd; at < bytes.Length; at++)
        {
            bool lineStart = (dataOffset + pack + at) % 64 == 0 && at + sizeof(ulong) <= PackLayout.Capacity;
            if (lineStart)
            {
                Assert.Equal(0UL, MemoryMarshal.Read<ulong>(bytes.AsSpan(at)));
                claimed++;
                at += sizeof(ulong) - 1;
            }
            else
            {
                Assert.True(bytes[at] == old, $"byte {at} of the pack changed to {bytes[at]:x2}");
            }
        }
        Assert.InRange(claimed, ((PackLayout.Capacity - entryEnd) / 64) - 1, (PackLayout.Capacity - entryEnd + 63) / 64);
        // The entry and the header are the message's: it arrives whole.
        Assert.Equal((uint)PackLayout.EntrySize(payload), MemoryMarshal.Read<uint>(bytes));
        List<TransactionRecord> received = ReceiveAll(pair);
        Assert.Equal(misaligned ? [0UL, 1UL] : [1UL], received.Select(r => r.TransactionId));
    }

    [Theory]
    [InlineData(8, 0)]
    [InlineData(32, PackLayout.MinLivePacks)]
    [InlineData(512, PackLayout.MaxLivePacks)]
    public void MaxLivePacks_FollowsTheRegionsOnewayQuota(int pages, int packs)
    {
        using var pair = new ChannelPair(ChannelPair.SmallOptions(pages: pages));
        Assert.Equal(packs, pair.Outbound.MaxLivePacks);
        // The receiver holds every packed message the most packing writer may keep live, whatever this writer's limit.
        Assert.Equal(PackLayout.MaxLivePacks * PackLayout.MaxEntries, InboundChannel.MaxPackedLive);
        SendOneway(pair, 1, 8);
        Assert.Equal(packs == 0 ? 0 : 1, pair.Outbound.PacksOpened);
    }

    [Fact]
    public void TrySend_IdsThatFollowEachOtherGoInShortEntries_AnyOtherInALongOne_EveryIdArrives()
    {
        using var pair = new ChannelPair(ChannelPair.SmallOptions());
        // Ids the channel gives (a oneway id's shape steps by 2^16), then ids a sender counts by one, then ids that jump.
        for (int i = 0; i < 3; i++)
        {
            Assert.True(pair.Outbound.TrySend(TransactionIds.AssignedOnSend, 3, TransactionFlags.Oneway, new byte[64]));
        }
        long assigned = pair.Outbound.OpenPackOffset;
        Assert.Equal((uint)(3 * PackLayout.EntrySize(64)), MemoryMarshal.Read<uint>(pair.Outbound.Pages.GetSpan(assigned, 8)));
        ulong[] own = [40, 41, 42, 100, 7, 8];
        // A call between seals the pack: the counted ids open a pack of their own.
        Assert.True(pair.Outbound.TrySend(1, 5, TransactionFlags.TwoWay, new byte[8], new RecordContext(1, 0, CallStatus.Ok)));
        foreach (ulong id in own)
        {
            Assert.True(pair.Outbound.TrySend(id, 3, TransactionFlags.Oneway, new byte[64]));
        }
        long counted = pair.Outbound.OpenPackOffset;
        // 40, 41, 42 short; 100 and 7 long (they follow nothing); 8 long too (the short one next would be 45).
        int bytes = (3 * PackLayout.EntrySize(64)) + (3 * PackLayout.EntrySize(64, longForm: true));
        Assert.Equal((uint)bytes, MemoryMarshal.Read<uint>(pair.Outbound.Pages.GetSpan(counted, 8)));

        var ids = new List<ulong>();
        while (pair.Inbound.TryReceive(out TransactionRecord record))
        {
            ids.Add(record.TransactionId);
            pair.Inbound.Free(record);
        }
        Assert.Equal(
            new[] { TransactionIds.Oneway(1), TransactionIds.Oneway(2), TransactionIds.Oneway(3), 1UL }.Concat(own),
            ids);
    }

    [Theory]
    [InlineData(0, 0, 0)]
    [InlineData(1L << 30, 0, 0)]
    [InlineData(20L * PackLayout.Capacity, 5, 0)]
    [InlineData(24L * PackLayout.Capacity, 5, 1)]
    [InlineData(128L * PackLayout.Capacity, 16, 16)]
    [InlineData(1L << 30, 16, PackLayout.MaxRestingPacks)]
    public void RestingPacksFor_WhatIsLeftOfAQuarterOfTheQuota_AtMost48(long quota, int livePacks, int resting) =>
        Assert.Equal(resting, PackLayout.RestingPacksFor(quota, livePacks));

    /// <summary>A stream of full packs, each received and freed before the next round: every pack's free is drained.</summary>
    private static HashSet<long> StreamPacks(ChannelPair pair, ref ulong id, int rounds)
    {
        var offsets = new HashSet<long>();
        for (int round = 0; round < rounds; round++)
        {
            for (int i = 0; i < s_perPack; i++)
            {
                SendOneway(pair, id++, 64);
                offsets.Add(pair.Outbound.OpenPackOffset);
            }
            ReceiveAll(pair);
            pair.Outbound.DrainFrees();
        }
        return offsets;
    }

    [Theory]
    [InlineData(true, PackLayout.MaxRestingPacks)]
    [InlineData(false, 0)]
    [InlineData(null, -1)]
    public void MaxRestingPacks_OnOffOrThisMachinesRule(bool? rest, int expected)
    {
        // Off, a freed pack goes straight back to the allocator; on, it stays reserved while newer ones come to rest; by
        // default the machine's count decides (PackLayout.RestingPacksOnThisMachine: a few on the AMD EPYC guest, 48 on
        // the Xeon guest).
        using var pair = new ChannelPair(ChannelPair.SmallOptions(pages: 600, rest: rest));
        Assert.Equal(expected >= 0 ? expected : PackLayout.RestingPacksOnThisMachine, pair.Outbound.MaxRestingPacks);
        if (rest == false)
        {
            ulong id = 0;
            StreamPacks(pair, ref id, rounds: 8);
            // Every freed pack went straight back: only the open one is reserved.
            Assert.Equal(0, pair.Outbound.RestingPacks);
            Assert.Equal(1, pair.Outbound.Allocator.GetStats().AllocatedBuffers);
        }
    }

    [Fact]
    public void Free_PacksRestBeforeTheAllocatorGetsThemBack_AStreamRotatesThroughManyBuffers()
    {
        // The allocator places a pack in the smallest free range: without the rest, a stream whose receiver keeps up
        // reuses one or two buffers whose lines are still in the other core's cache (see PackLayout.RestingPacksFor).
        using var pair = new ChannelPair(ChannelPair.SmallOptions(pages: 600, rest: true));
        Assert.Equal(PackLayout.MaxRestingPacks, pair.Outbound.MaxRestingPacks);
        ulong id = 0;
        HashSet<long> offsets = StreamPacks(pair, ref id, rounds: 3 * PackLayout.MaxRestingPacks);
        Assert.True(offsets.Count > PackLayout.MaxRestingPacks, $"{offsets.Count} buffers used by {pair.Outbound.PacksOpened} packs");
        // Freed as far as the protocol goes (no live buffer, nothing owed on the free ring), reserved until the rest ends.
        Assert.Equal(PackLayout.MaxRestingPacks, pair.Outbound.RestingPacks);
        Assert.Equal(1, pair.Outbound.LiveBuffers);
        Assert.Equal(PackLayout.MaxRestingPacks + 1, pair.Outbound.Allocator.GetStats().AllocatedBuffers);

        // An idle writer gives its resting packs back, and the packs freed after that (the one it seals now) too.
        pair.Outbound.DrainFreesAndReleaseIdleSlab();
        Assert.Equal(0, pair.Outbound.RestingPacks);
        ReceiveAll(pair);
        pair.Outbound.DrainFrees();
        Assert.Equal(0, pair.Outbound.RestingPacks);
        Assert.Equal(0, pair.Outbound.Allocator.GetStats().AllocatedBuffers);
        Assert.Equal(0, pair.Outbound.Pages.GetStats().Used);

        // A pack opened again: the next pack freed rests again.
        StreamPacks(pair, ref id, rounds: 2);
        Assert.Equal(1, pair.Outbound.RestingPacks);
    }

    [Fact]
    [Trait("Category", "Hostile")]
    public void Drain_ASecondFreeOfARestingPack_IgnoredAndTheRestEndsWithEveryBufferBack()
    {
        // A hostile receiver frees a pack again while it rests. Honoured, the buffer would go back to the allocator while
        // still in the rest, and the rest's end would free the buffer placed there since (here: the next pack).
        using var pair = new ChannelPair(ChannelPair.SmallOptions(pages: 600, rest: true));
        ulong id = 0;
        StreamPacks(pair, ref id, rounds: 2);
        Assert.Equal(1, pair.Outbound.RestingPacks);
        var allocatorStats = pair.Outbound.Allocator.GetStats();
        long freedBefore = pair.Outbound.BuffersFreed;
        long resting = PacksOffsets(pair).First();

        pair.Inbound.Free(new TransactionRecord(0, resting, PackLayout.Capacity, 0, TransactionFlags.Oneway));
        pair.Outbound.DrainFrees();
        Assert.Equal(1, pair.Outbound.RestingPackFreesIgnored);
        Assert.Equal(freedBefore, pair.Outbound.BuffersFreed);
        Assert.Equal(allocatorStats.AllocatedBuffers, pair.Outbound.Allocator.GetStats().AllocatedBuffers);
        Assert.Equal(1, pair.Outbound.RestingPacks);

        // The stream goes on past the rest's end; then an idle pass: every buffer back, none freed twice.
        StreamPacks(pair, ref id, rounds: PackLayout.MaxRestingPacks + 4);
        pair.Outbound.DrainFreesAndReleaseIdleSlab();
        AssertEveryBufferBackAfterTheLastPack(pair);
    }

    [Fact]
    [Trait("Category", "Hostile")]
    public void Drain_ASecondFreeOfAPackAlreadyBackWithoutRest_IgnoredAndEveryBufferBackAtTheEnd()
    {
        // Without resting packs (the option off) a freed pack goes straight back to the allocator; a hostile receiver's
        // second free of it names a free range, which is a stray free: ignored, and nothing live is touched.
        using var pair = new ChannelPair(ChannelPair.SmallOptions(pages: 600, rest: false));
        ulong id = 0;
        HashSet<long> offsets = StreamPacks(pair, ref id, rounds: 2);
        long open = pair.Outbound.OpenPackOffset;
        long back = Assert.Single(offsets, offset => offset != open);
        Assert.Equal((1, 1), (pair.Outbound.LiveBuffers, pair.Outbound.Allocator.GetStats().AllocatedBuffers));
        long freedBefore = pair.Outbound.BuffersFreed;

        pair.Inbound.Free(new TransactionRecord(0, back, PackLayout.Capacity, 0, TransactionFlags.Oneway));
        pair.Outbound.DrainFrees();
        Assert.Equal(freedBefore, pair.Outbound.BuffersFreed);
        Assert.Equal((1, 1), (pair.Outbound.LiveBuffers, pair.Outbound.Allocator.GetStats().AllocatedBuffers));
        Assert.Equal(open, pair.Outbound.OpenPackOffset);

        StreamPacks(pair, ref id, rounds: 8);
        pair.Outbound.DrainFreesAndReleaseIdleSlab();
        AssertEveryBufferBackAfterTheLastPack(pair);
    }

    [Fact]
    public void RestingPacksOnThisMachine_AFewOnAmds_48OnEveryOtherProcessor()
    {
        // The vendor as the kernel reports it, against the library's CPUID read.
        string? vendor = File.Exists("/proc/cpuinfo")
            ? File.ReadLines("/proc/cpuinfo").FirstOrDefault(line => line.StartsWith("vendor_id", StringComparison.Ordinal))?.Split(':')[1].Trim()
            : null;
        Assert.Equal(vendor == "AuthenticAMD" ? PackLayout.FewRestingPacks : PackLayout.MaxRestingPacks, PackLayout.RestingPacksOnThisMachine);
    }

    /// <summary>The receiver takes and frees the last (sealed) pack: nothing is live or reserved after the writer reads the free.</summary>
    private static void AssertEveryBufferBackAfterTheLastPack(ChannelPair pair)
    {
        ReceiveAll(pair);
        pair.Outbound.DrainFrees();
        Assert.Equal(0, pair.Outbound.LiveBuffers);
        Assert.Equal(0, pair.Outbound.Allocator.GetStats().AllocatedBuffers);
    }

    [Fact]
    [Trait("Category", "Hostile")]
    public void Drain_ASecondFreeOfARestingPack_NeverFreesTheLivePackPlacedThereSince()
    {
        // From the review: honoured, the second free let the allocator place a later pack at the resting offset, and
        // the rest's end then freed that live pack.
        using var pair = new ChannelPair(ChannelPair.SmallOptions(pages: 600, rest: true));
        ulong id = 0;
        StreamPacks(pair, ref id, rounds: 2);
        long resting = PacksOffsets(pair).Single();
        pair.Inbound.Free(new TransactionRecord(0, resting, PackLayout.Capacity, 0, TransactionFlags.Oneway));
        pair.Outbound.DrainFrees();
        for (int round = 0; round < 2 * PackLayout.MaxRestingPacks && pair.Outbound.OpenPackOffset != resting; round++)
        {
            StreamPacks(pair, ref id, rounds: 1);
        }
        // The buffer came back once and rested: recycled as the open pack now, and live.
        Assert.Equal(resting, pair.Outbound.OpenPackOffset);
        long live = pair.Outbound.OpenPackOffset;
        pair.Outbound.DrainFreesAndReleaseIdleSlab();
        Assert.True(pair.Outbound.Allocator.GetStats().AllocatedBuffers >= 1, $"the live pack at {live} was handed back to the allocator");
        AssertEveryBufferBackAfterTheLastPack(pair);
    }

    [Fact]
    [Trait("Category", "Hostile")]
    public void Drain_FreeOfAFullPackNotYetReceived_IgnoredAndItDoesNotRest()
    {
        // The delivery rule for a pack that would rest: a stream filled it (the next message opened another), and the
        // receiver frees it before it took its record.
        using var pair = new ChannelPair(ChannelPair.SmallOptions(pages: 600, rest: true));
        SendOneway(pair, 0, 64);
        long full = pair.Outbound.OpenPackOffset;
        for (ulong i = 1; i <= (ulong)s_perPack; i++)
        {
            SendOneway(pair, i, 64);
        }
        Assert.NotEqual(full, pair.Outbound.OpenPackOffset);
        AssertFreeBeforeItsRecordWasTakenIgnored(pair, full);

        // Received and freed for real, it rests.
        ReceiveAll(pair);
        pair.Outbound.DrainFrees();
        Assert.Equal(1, pair.Outbound.RestingPacks);
    }

    [Fact]
    public void Send_WithTheRestFull_TheNextPackIsTheOldestRestingOne_ReservedAgainWhereItLies()
    {
        using var pair = new ChannelPair(ChannelPair.SmallOptions(pages: 600, rest: true));
        ulong id = 0;
        // The first round's pack rests after the second round: one round more than the rest holds fills it.
        StreamPacks(pair, ref id, rounds: PackLayout.MaxRestingPacks + 1);
        Assert.Equal(PackLayout.MaxRestingPacks, pair.Outbound.RestingPacks);
        Assert.Equal(0, pair.Outbound.PacksRecycled);
        long oldest = PacksOffsets(pair).First();
        var rotation = new HashSet<long>(PacksOffsets(pair)) { pair.Outbound.OpenPackOffset };
        var allocatorBefore = pair.Outbound.Allocator.GetStats();
        long usedBefore = pair.Outbound.Pages.GetStats().Used;

        // The round's pack is the oldest resting one; the pack it followed came to rest at the round's end.
        Assert.Contains(oldest, StreamPacks(pair, ref id, rounds: 1));
        Assert.Equal(oldest, pair.Outbound.OpenPackOffset);
        Assert.Equal(1, pair.Outbound.PacksRecycled);
        Assert.Equal(PackLayout.MaxRestingPacks, pair.Outbound.RestingPacks);

        // The stream goes on through the same buffers: no reservation, no free, no page changing state.
        int rounds = 2 * PackLayout.MaxRestingPacks;
        HashSet<long> used = StreamPacks(pair, ref id, rounds);
        Assert.Subset(rotation, used);
        Assert.Equal(1 + rounds, pair.Outbound.PacksRecycled);
        var allocatorAfter = pair.Outbound.Allocator.GetStats();
        Assert.Equal(
            (allocatorBefore.AllocatedBuffers, allocatorBefore.FreeRanges, allocatorBefore.FreeBytes, allocatorBefore.FreeOnewaySpace),
            (allocatorAfter.AllocatedBuffers, allocatorAfter.FreeRanges, allocatorAfter.FreeBytes, allocatorAfter.FreeOnewaySpace));
        Assert.Equal(usedBefore, pair.Outbound.Pages.GetStats().Used);

        // An idle writer still gives every one of them back.
        pair.Outbound.DrainFreesAndReleaseIdleSlab();
        AssertEveryBufferBackAfterTheLastPack(pair);
        Assert.Equal(0, pair.Outbound.Pages.GetStats().Used);
    }

    [Fact]
    public void Drain_TwoPackFreesWithTheRestFull_TheOldestGoesBackToTheAllocator_TheNextPackIsANewReservation()
    {
        using var pair = new ChannelPair(ChannelPair.SmallOptions(pages: 600, rest: true));
        // Frees read at every seal: a rest one short is not full (see Send_BetweenTwoReadsOfTheFrees_... for the default).
        pair.Outbound.LazyDrainPacksForTest = 1;
        ulong id = 0;
        StreamPacks(pair, ref id, rounds: PackLayout.MaxRestingPacks + 1);
        long[] resting = PacksOffsets(pair).ToArray();
        // Two packs sealed before the receiver frees either: the first recycled, the second a new reservation (the
        // rest is one short by then).
        for (int i = 0; i <= s_perPack; i++)
        {
            SendOneway(pair, id++, 64);
        }
        Assert.Equal(1, pair.Outbound.PacksRecycled);
        long reserved = pair.Outbound.OpenPackOffset;
        Assert.DoesNotContain(reserved, resting);
        Assert.Equal(s_perPack + 1, ReceiveAll(pair).Count);
        var before = pair.Outbound.Allocator.GetStats();

        // One drain, both frees: the rest fills again with the first, and the second sends the oldest back.
        pair.Outbound.DrainFrees();
        Assert.Equal(PackLayout.MaxRestingPacks, pair.Outbound.RestingPacks);
        Assert.DoesNotContain(resting[1], PacksOffsets(pair));
        var after = pair.Outbound.Allocator.GetStats();
        Assert.Equal(before.AllocatedBuffers - 1, after.AllocatedBuffers);
        Assert.Equal(before.FreeOnewaySpace + PackLayout.Capacity, after.FreeOnewaySpace);
        Assert.Equal(PackLayout.MaxRestingPacks + 1, after.AllocatedBuffers);

        pair.Outbound.DrainFreesAndReleaseIdleSlab();
        AssertEveryBufferBackAfterTheLastPack(pair);
    }

    [Fact]
    [Trait("Category", "Hostile")]
    public void TrySend_AForgedFreeOfTheFullPackWhenTheNextIsRecycled_RefusedAndTheRecycledPackGoesBack()
    {
        // A seal that reads the frees (here every one) catches a free of the full pack, which is still open; the recycled
        // pack, reserved and written but never published, goes back to the allocator as a new reservation would.
        using var pair = new ChannelPair(ChannelPair.SmallOptions(pages: 600, rest: true));
        pair.Outbound.LazyDrainPacksForTest = 1;
        ulong id = 0;
        StreamPacks(pair, ref id, rounds: PackLayout.MaxRestingPacks + 1);
        long full = pair.Outbound.OpenPackOffset;
        long oldest = PacksOffsets(pair).First();
        var before = pair.Outbound.Allocator.GetStats();
        int liveBefore = pair.Outbound.LiveBuffers;
        pair.Inbound.Free(new TransactionRecord(0, full, PackLayout.Capacity, 0, TransactionFlags.Oneway));

        byte[] payload = ChannelPair.PayloadFor(id, 64);
        ProtocolViolationException error = Assert.Throws<ProtocolViolationException>(
            () => pair.Outbound.TrySend(id, ChannelPair.Checksum(payload), TransactionFlags.Oneway, payload));
        Assert.Contains("still open", error.Message, StringComparison.Ordinal);
        Assert.Equal(1, pair.Outbound.PacksRecycled);
        Assert.Equal(PackLayout.MaxRestingPacks - 1, pair.Outbound.RestingPacks);
        Assert.DoesNotContain(oldest, PacksOffsets(pair));
        var after = pair.Outbound.Allocator.GetStats();
        Assert.Equal(before.AllocatedBuffers - 1, after.AllocatedBuffers);
        Assert.Equal(0, after.ReservedBuffers);
        Assert.Equal(before.FreeOnewaySpace + PackLayout.Capacity, after.FreeOnewaySpace);
        Assert.Equal(liveBefore, pair.Outbound.LiveBuffers);
    }

    [Fact]
    public void Send_BetweenTwoReadsOfTheFrees_EveryPackIsRecycled_AndEveryFourthSealReadsThem()
    {
        // The rest fills when the writer reads its frees, and the packs opened until its next read take from it: each
        // turnover recycles while the rest is full but for the packs opened since, and the LazyDrainPacks-th seal reads.
        using var pair = new ChannelPair(ChannelPair.SmallOptions(pages: 600, rest: true));
        ulong id = 0;
        StreamPacks(pair, ref id, rounds: PackLayout.MaxRestingPacks + 1);
        Assert.Equal(PackLayout.MaxRestingPacks, pair.Outbound.RestingPacks);
        for (int turnover = 1; turnover <= OutboundChannel.LazyDrainPacks; turnover++)
        {
            long freedBefore = pair.Outbound.BuffersFreed;
            for (int i = 0; i < s_perPack; i++)
            {
                SendOneway(pair, id++, 64);
            }
            Assert.Equal(s_perPack, ReceiveAll(pair).Count);
            Assert.Equal(turnover, pair.Outbound.PacksRecycled);
            if (turnover < OutboundChannel.LazyDrainPacks)
            {
                // Not read: the packs the receiver finished stay live, and the rest gives one to each new pack.
                Assert.Equal(freedBefore, pair.Outbound.BuffersFreed);
                Assert.Equal(PackLayout.MaxRestingPacks - turnover, pair.Outbound.RestingPacks);
            }
            else
            {
                // Read by this seal: every pack finished before it (all but the one it sealed) comes to rest.
                Assert.Equal(freedBefore + turnover - 1, pair.Outbound.BuffersFreed);
                Assert.Equal(PackLayout.MaxRestingPacks - 1, pair.Outbound.RestingPacks);
            }
        }
        pair.Outbound.DrainFreesAndReleaseIdleSlab();
        AssertEveryBufferBackAfterTheLastPack(pair);
    }

    [Fact]
    [Trait("Category", "Hostile")]
    public void TrySend_AFreeOfTheFullPackBeforeASealThatDoesNotReadTheFrees_HonouredAfterIt_TheStreamGoesOn()
    {
        // Read after the seal, an early free of the full pack cannot be told from an honest one: it is honoured, which
        // costs the writer nothing (it writes nothing more into a sealed pack); the receiver's own free of the pack, when
        // it finishes it, is then a second free of a resting pack, ignored, and every message still arrives.
        using var pair = new ChannelPair(ChannelPair.SmallOptions(pages: 600, rest: true));
        ulong id = 0;
        StreamPacks(pair, ref id, rounds: PackLayout.MaxRestingPacks + 1);
        long full = pair.Outbound.OpenPackOffset;
        int liveBefore = pair.Outbound.LiveBuffers;
        pair.Inbound.Free(new TransactionRecord(0, full, PackLayout.Capacity, 0, TransactionFlags.Oneway));

        // The first seal since the last read of the frees: it reads none, and the next pack is the oldest resting one.
        SendOneway(pair, id++, 64);
        Assert.Equal(1, pair.Outbound.PacksRecycled);
        Assert.NotEqual(full, pair.Outbound.OpenPackOffset);
        Assert.Equal(liveBefore + 1, pair.Outbound.LiveBuffers);
        pair.Outbound.DrainFrees();
        Assert.Equal(liveBefore, pair.Outbound.LiveBuffers);
        Assert.Contains(full, PacksOffsets(pair));

        for (int i = 1; i < 3 * s_perPack; i++)
        {
            SendOneway(pair, id++, 64);
        }
        List<TransactionRecord> received = ReceiveAll(pair);
        Assert.Equal(3 * s_perPack, received.Count);
        pair.Outbound.DrainFrees();
        Assert.Equal(1, pair.Outbound.RestingPackFreesIgnored);
        pair.Outbound.DrainFreesAndReleaseIdleSlab();
        AssertEveryBufferBackAfterTheLastPack(pair);
    }

    [Fact]
    [Trait("Category", "Hostile")]
    public void TrySend_AFreeOfTheFullPackBeforeTheSealThatReadsTheFrees_RefusedAndTheRecycledPackGoesBack()
    {
        // The LazyDrainPacks-th seal since the last read of the frees reads them while the full pack is still open: a free
        // naming it is forged, and the pack recycled for the next, written but never published, goes back.
        using var pair = new ChannelPair(ChannelPair.SmallOptions(pages: 600, rest: true));
        ulong id = 0;
        StreamPacks(pair, ref id, rounds: PackLayout.MaxRestingPacks + 1);
        for (int i = 0; i < (OutboundChannel.LazyDrainPacks - 1) * s_perPack; i++)
        {
            SendOneway(pair, id++, 64);
        }
        ReceiveAll(pair);
        Assert.Equal(OutboundChannel.LazyDrainPacks - 1, pair.Outbound.PacksRecycled);
        long full = pair.Outbound.OpenPackOffset;
        int liveBefore = pair.Outbound.LiveBuffers;
        var before = pair.Outbound.Allocator.GetStats();
        pair.Inbound.Free(new TransactionRecord(0, full, PackLayout.Capacity, 0, TransactionFlags.Oneway));

        byte[] payload = ChannelPair.PayloadFor(id, 64);
        ProtocolViolationException error = Assert.Throws<ProtocolViolationException>(
            () => pair.Outbound.TrySend(id, ChannelPair.Checksum(payload), TransactionFlags.Oneway, payload));
        Assert.Contains("still open", error.Message, StringComparison.Ordinal);
        Assert.Equal(OutboundChannel.LazyDrainPacks, pair.Outbound.PacksRecycled);
        var after = pair.Outbound.Allocator.GetStats();
        Assert.Equal(0, after.ReservedBuffers);
        // The frees before the forged one were honoured: the packs the receiver finished came to rest.
        Assert.Equal(liveBefore - (OutboundChannel.LazyDrainPacks - 1), pair.Outbound.LiveBuffers);
        Assert.Equal(before.AllocatedBuffers - 1, after.AllocatedBuffers);
    }

    [Fact]
    [Trait("Category", "Hostile")]
    public void Drain_AStaleFreeOfARecycledPack_IgnoredUntilItsNewRecordIsTaken_RefusedWhileItIsOpen()
    {
        // A hostile receiver frees a buffer again after the writer recycled it as a new pack: before the receiver took
        // the new pack's record it is an undelivered free (binder's rule, as for any buffer), and while the pack is open
        // a forged one; the messages in it arrive whole either way. Frees read at every seal, so the rest one short after
        // the recycled pack is not full.
        using var pair = new ChannelPair(ChannelPair.SmallOptions(pages: 600, rest: true));
        pair.Outbound.LazyDrainPacksForTest = 1;
        ulong id = 0;
        StreamPacks(pair, ref id, rounds: PackLayout.MaxRestingPacks + 1);
        long oldest = PacksOffsets(pair).First();
        // The next message opens the oldest resting pack; the pack it fills is sealed when the next one opens (a new
        // reservation: the rest is no longer full). The receiver took neither record.
        for (int i = 0; i <= s_perPack; i++)
        {
            SendOneway(pair, id++, 64);
        }
        Assert.Equal(1, pair.Outbound.PacksRecycled);
        Assert.NotEqual(oldest, pair.Outbound.OpenPackOffset);
        long undeliveredBefore = pair.Outbound.UndeliveredFrees;
        int liveBefore = pair.Outbound.LiveBuffers;

        pair.Inbound.Free(new TransactionRecord(0, oldest, PackLayout.Capacity, 0, TransactionFlags.Oneway));
        pair.Outbound.DrainFrees();
        Assert.Equal(undeliveredBefore + 1, pair.Outbound.UndeliveredFrees);
        Assert.Equal(liveBefore, pair.Outbound.LiveBuffers);
        Assert.DoesNotContain(oldest, PacksOffsets(pair));
        Assert.Equal(s_perPack + 1, ReceiveAll(pair).Count);

        // Freed for real, the rest is full again; the message that fills the open pack and the next one open the
        // resting pack that is oldest now, and a free naming it is forged while it is open.
        pair.Outbound.DrainFrees();
        Assert.Equal(PackLayout.MaxRestingPacks, pair.Outbound.RestingPacks);
        long next = PacksOffsets(pair).First();
        for (int i = 0; i < s_perPack; i++)
        {
            SendOneway(pair, id++, 64);
        }
        Assert.Equal((2L, next), (pair.Outbound.PacksRecycled, pair.Outbound.OpenPackOffset));
        pair.Inbound.Free(new TransactionRecord(0, next, PackLayout.Capacity, 0, TransactionFlags.Oneway));
        ProtocolViolationException error = Assert.Throws<ProtocolViolationException>(() => pair.Outbound.DrainFrees());
        Assert.Contains("still open", error.Message, StringComparison.Ordinal);
    }

    /// <summary>
    /// A free of the sealed <paramref name="pack"/> before the receiver took its record (binder's delivery rule): ignored,
    /// so the pack does not rest and is not counted freed; it and the record after it stay live.
    /// </summary>
    private static void AssertFreeBeforeItsRecordWasTakenIgnored(ChannelPair pair, long pack)
    {
        long freedBefore = pair.Outbound.BuffersFreed;
        pair.Inbound.Free(new TransactionRecord(0, pack, PackLayout.Capacity, 0, TransactionFlags.Oneway));
        pair.Outbound.DrainFrees();
        Assert.Equal(0, pair.Outbound.RestingPacks);
        Assert.Equal(freedBefore, pair.Outbound.BuffersFreed);
        Assert.Equal(2, pair.Outbound.LiveBuffers);
    }

    /// <summary>The offsets of the writer's resting packs, oldest first.</summary>
    private static IEnumerable<long> PacksOffsets(ChannelPair pair) => pair.Outbound.RestingPackOffsetsForTest;

    [Fact]
    public void TrySend_RegionFullButForRestingPacks_TheyGoBackAndTheMessageFits()
    {
        using var pair = new ChannelPair(ChannelPair.SmallOptions(pages: 600, rest: true));
        ulong id = 0;
        StreamPacks(pair, ref id, rounds: 2 * PackLayout.MaxRestingPacks);
        Assert.Equal(PackLayout.MaxRestingPacks, pair.Outbound.RestingPacks);
        // Every byte of the oneway quota but the open pack's (and a page for padding): it fits only once the rest ends.
        int size = checked((int)(pair.Outbound.MaxOnewayMessageSize - PackLayout.Capacity - SharedRegion.PageSize));
        byte[] large = ChannelPair.PayloadFor(id, size);
        Assert.True(pair.Outbound.TrySend(id, ChannelPair.Checksum(large), TransactionFlags.Oneway, large));
        Assert.Equal(0, pair.Outbound.RestingPacks);
        Assert.Contains(id, ReceiveAll(pair).Select(record => record.TransactionId));
    }

    [Fact]
    [Trait("Category", "Hostile")]
    public void Drain_FreeOfASealedPackNotYetReceived_IgnoredAndAPackSealedByARecordNeverRests()
    {
        // Binder's delivery rule holds for a resting pack as for any buffer: a free of a pack whose record the receiver
        // has not taken is ignored, so the pack stays live and reserved, and is not counted freed.
        using var pair = new ChannelPair(ChannelPair.SmallOptions(pages: 600, rest: true));
        SendOneway(pair, 0, 64);
        long pack = pair.Outbound.OpenPackOffset;
        // A call seals the pack; nothing has been received yet.
        byte[] call = ChannelPair.PayloadFor(1, 8);
        Assert.True(pair.Outbound.TrySend(1, ChannelPair.Checksum(call), TransactionFlags.TwoWay, call, new RecordContext(1, 0, CallStatus.Ok)));
        AssertFreeBeforeItsRecordWasTakenIgnored(pair, pack);

        // Received and freed for real, the pack goes straight back: the call sealed it, no stream filled it.
        ReceiveAll(pair);
        pair.Outbound.DrainFrees();
        Assert.Equal(0, pair.Outbound.RestingPacks);
        Assert.Equal(0, pair.Outbound.LiveBuffers);
        Assert.Equal(0, pair.Outbound.Allocator.GetStats().AllocatedBuffers);
    }

    [Fact]
    public void TrySend_SmallOneways_OneRecordOnePackAllDeliveredInOrder()
    {
        using var pair = new ChannelPair(ChannelPair.SmallOptions());
        for (ulong i = 0; i < 20; i++)
        {
            SendOneway(pair, i, (int)(i * 13 % 257));
        }
        Assert.Equal(1UL, pair.Outbound.Sent);
        Assert.Equal(1, pair.Outbound.PacksOpened);
        Assert.Equal(20, pair.Outbound.PackedSent);
        Assert.Equal(1, pair.Outbound.LiveBuffers);

        List<TransactionRecord> received = ReceiveAll(pair);
        Assert.Equal(Enumerable.Range(0, 20).Select(i => (ulong)i), received.Select(r => r.TransactionId));
        Assert.All(received, r => Assert.Equal(TransactionFlags.Oneway, r.Flags));
        Assert.Equal(1UL, pair.Inbound.Received);
        Assert.Equal(1, pair.Inbound.PacksReceived);
        // Every message freed, but the pack is still open: its own free waits for the seal.
        Assert.Equal(0UL, pair.Inbound.Freed);
        Assert.Equal(0, pair.Inbound.PackedLive);
    }

    [Fact]
    public void TrySend_ManySmallOneways_OpenANewPackWhenFullAndKeepOrder()
    {
        using var pair = new ChannelPair(ChannelPair.SmallOptions());
        int count = (s_perPack * 2) + 5;
        for (int i = 0; i < count; i++)
        {
            SendOneway(pair, (ulong)i, 64);
        }
        Assert.Equal(3, pair.Outbound.PacksOpened);
        Assert.Equal(3UL, pair.Outbound.Sent);

        List<TransactionRecord> received = ReceiveAll(pair);
        Assert.Equal(Enumerable.Range(0, count).Select(i => (ulong)i), received.Select(r => r.TransactionId));
        // The two sealed packs were consumed and all their messages freed: two frees; the open one waits.
        Assert.Equal(2UL, pair.Inbound.Freed);
        pair.Outbound.DrainFrees();
        Assert.Equal(1, pair.Outbound.LiveBuffers);
    }

    [Fact]
    public void TrySend_AStreamFillsAPack_ItsSealNamesTheNextPackAndOnlyThatSealDoes()
    {
        using var pair = new ChannelPair(ChannelPair.SmallOptions());
        for (int i = 0; i < s_perPack; i++)
        {
            SendOneway(pair, (ulong)i, 64);
        }
        long full = pair.Outbound.OpenPackOffset;
        Assert.Equal(0UL, NextPackHint(pair, full));

        // The next message has no room: the full pack is sealed naming the pack it opens, whose first entry is written.
        SendOneway(pair, (ulong)s_perPack, 64);
        long next = pair.Outbound.OpenPackOffset;
        Assert.NotEqual(full, next);
        Assert.Equal((uint)(s_perPack * PackLayout.EntrySize(64)) | PackLayout.SealedBit,
            System.Buffers.Binary.BinaryPrimitives.ReadUInt32LittleEndian(pair.Outbound.Pages.GetSpan(full, 4)));
        Assert.Equal(PackLayout.NextPackHint(next), NextPackHint(pair, full));
        Assert.Equal((uint)PackLayout.EntrySize(64), System.Buffers.Binary.BinaryPrimitives.ReadUInt32LittleEndian(pair.Outbound.Pages.GetSpan(next, 4)));

        // A pack sealed by a record of another kind names none: nothing follows it at once.
        SendOneway(pair, 1000, PackLayout.MaxPayload + 1);
        Assert.Equal(0UL, NextPackHint(pair, next));

        List<TransactionRecord> received = ReceiveAll(pair);
        Assert.Equal(Enumerable.Range(0, s_perPack + 1).Select(i => (ulong)i).Append(1000UL), received.Select(r => r.TransactionId));
        // The receiver prefetched at the first seal only: the second named nothing.
        Assert.Equal((1L, 0L), (pair.Inbound.NextPackPrefetches, pair.Inbound.NextPackHintsRefused));
    }

    [Fact]
    public void TrySend_AStreamFillsAPackWithTheRegionFull_ThePackIsSealedNamingNothingAndNothingStaysReserved()
    {
        using var pair = new ChannelPair(ChannelPair.SmallOptions());
        // All of the oneway quota but one pack's room, in one message the receiver has not taken: one pack fits, a second
        // does not.
        int size = checked((int)(pair.Outbound.MaxOnewayMessageSize - PackLayout.Capacity - 8));
        Assert.True(pair.Outbound.TrySend(5000, 1, TransactionFlags.Oneway, new byte[size]));
        for (int i = 0; i < s_perPack; i++)
        {
            SendOneway(pair, (ulong)i, 64);
        }
        long full = pair.Outbound.OpenPackOffset;
        Assert.True(full >= 0);
        int allocated = pair.Outbound.Allocator.GetStats().AllocatedBuffers;

        Assert.False(pair.Outbound.TrySend((ulong)s_perPack, 3, TransactionFlags.Oneway, new byte[64]));
        Assert.Equal(-1, pair.Outbound.OpenPackOffset);
        Assert.Equal((uint)PackLayout.SealedBit,
            System.Buffers.Binary.BinaryPrimitives.ReadUInt32LittleEndian(pair.Outbound.Pages.GetSpan(full, 4)) & PackLayout.SealedBit);
        Assert.Equal(0UL, NextPackHint(pair, full));
        Assert.Equal(allocated, pair.Outbound.Allocator.GetStats().AllocatedBuffers);
    }

    private static ulong NextPackHint(ChannelPair pair, long pack) =>
        System.Buffers.Binary.BinaryPrimitives.ReadUInt64LittleEndian(pair.Outbound.Pages.GetSpan(pack + PackLayout.NextPackHintOffset, sizeof(ulong)));

    [Fact]
    public void TrySend_PacksInterleavedWithCallsLargeOnewaysAndZeroCopy_DeliveredInSendOrder()
    {
        // A region whose oneway quota allows the writer the fewest live packs (four), so the limit is reached below.
        using var pair = new ChannelPair(ChannelPair.SmallOptions(pages: 32));
        Assert.Equal(PackLayout.MinLivePacks, pair.Outbound.MaxLivePacks);
        ulong id = 0;
        var kinds = new List<TransactionFlags>();
        for (int round = 0; round < 6; round++)
        {
            for (int i = 0; i < 3 + round; i++)
            {
                SendOneway(pair, id++, 40);
                kinds.Add(TransactionFlags.Oneway);
            }
            switch (round % 3)
            {
                case 0:
                    byte[] call = ChannelPair.PayloadFor(id, 40);
                    Assert.True(pair.Outbound.TrySend(id++, ChannelPair.Checksum(call), TransactionFlags.TwoWay, call, new RecordContext(7, 0, CallStatus.Ok)));
                    kinds.Add(TransactionFlags.TwoWay);
                    break;
                case 1:
                    SendOneway(pair, id++, PackLayout.MaxPayload + 1);
                    kinds.Add(TransactionFlags.Oneway);
                    break;
                default:
                    Assert.True(pair.Outbound.TryReserve(64, oneway: true, out PendingBuffer buffer));
                    byte[] zeroCopy = ChannelPair.PayloadFor(id, 64);
                    zeroCopy.CopyTo(buffer.Span);
                    pair.Outbound.Commit(ref buffer, 64, id++, ChannelPair.Checksum(zeroCopy), TransactionFlags.Oneway);
                    kinds.Add(TransactionFlags.Oneway);
                    break;
            }
        }
        // Each call, large or zero-copy oneway sealed the pack before it: a new pack after each, until the writer's
        // four packs are live (nothing is freed before the end); the last two rounds' small oneways (7 + 8) then go
        // as records of their own.
        Assert.Equal(PackLayout.MinLivePacks, pair.Outbound.PacksOpened);

        List<TransactionRecord> received = ReceiveAll(pair);
        Assert.Equal(Enumerable.Range(0, (int)id).Select(i => (ulong)i), received.Select(r => r.TransactionId));
        Assert.Equal(kinds, received.Select(r => r.Flags));
        // Each pack was sealed by the record after it, so all four are finished and freed, with the six records of
        // their own and the fifteen small ones.
        Assert.Equal(PackLayout.MinLivePacks, pair.Inbound.PacksReceived);
        Assert.Equal(25UL, pair.Inbound.Freed);
        pair.Outbound.DrainFrees();
        Assert.Equal(0, pair.Outbound.LiveBuffers);
    }

    [Fact]
    public void Free_PackFreedOnlyAfterItsLastMessageAndItsSeal()
    {
        using var pair = new ChannelPair(ChannelPair.SmallOptions());
        for (ulong i = 0; i < 3; i++)
        {
            SendOneway(pair, i, 64);
        }
        List<TransactionRecord> held = ReceiveAll(pair, free: false);
        Assert.Equal(3, held.Count);
        Assert.Equal(3, pair.Inbound.PackedLive);

        // The idle housekeeping seals the pack; the receiver finishes it at its next look, but two messages are live.
        pair.Outbound.DrainFreesAndReleaseIdleSlab();
        Assert.Empty(ReceiveAll(pair));
        pair.Inbound.Free(held[0]);
        pair.Inbound.Free(held[2]);
        Assert.Equal(0UL, pair.Inbound.Freed);
        pair.Outbound.DrainFrees();
        Assert.Equal(1, pair.Outbound.LiveBuffers);

        // The last message's free writes the pack's.
        pair.Inbound.Free(held[1]);
        Assert.Equal(1UL, pair.Inbound.Freed);
        AssertEveryPackFreedBack(pair);
    }

    [Fact]
    public void Free_MessagesOfSeveralPacksFreedLastFirst_EachPackFreedOnceByItsLastFreeOrItsFinish()
    {
        // Each pack counts its messages taken (receive lock) and freed (free lock); whichever of the finish and the last
        // free comes second writes the pack's free, exactly once (a second would be a double free the writer rejects).
        using var pair = new ChannelPair(ChannelPair.SmallOptions());
        int total = (3 * s_perPack) + 5;
        for (ulong i = 0; i < (ulong)total; i++)
        {
            SendOneway(pair, i, 64);
        }
        Assert.Equal(4, pair.Outbound.PacksOpened);
        List<TransactionRecord> held = ReceiveAll(pair, free: false);
        Assert.Equal(total, held.Count);
        Assert.Equal(total, pair.Inbound.PackedLive);

        // Last first: the open pack's messages (not finished: no free), then each full pack's, whose free goes with its
        // first message, the last of it freed.
        for (int i = total - 1; i >= 0; i--)
        {
            pair.Inbound.Free(held[i]);
            int finishedPacksFreed = i >= 3 * s_perPack ? 0 : 3 - (i / s_perPack) - (i % s_perPack == 0 ? 0 : 1);
            Assert.Equal((ulong)finishedPacksFreed, pair.Inbound.Freed);
            Assert.Equal(i, pair.Inbound.PackedLive);
        }
        pair.Outbound.DrainFrees();
        Assert.Equal(1, pair.Outbound.LiveBuffers);

        // The open pack, all its messages freed, is sealed: the receiver's finish writes its free at its next look.
        pair.Outbound.DrainFreesAndReleaseIdleSlab();
        Assert.Empty(ReceiveAll(pair));
        Assert.Equal(4UL, pair.Inbound.Freed);
        pair.Outbound.DrainFrees();
        Assert.Equal(0, pair.Outbound.LiveBuffers);

        // More packs, received and freed as they come: each freed by its finish or its last message, whichever is second.
        for (ulong i = 0; i < (ulong)(6 * s_perPack); i++)
        {
            SendOneway(pair, 10_000 + i, 64);
            if (i % 7 == 0)
            {
                ReceiveAll(pair);
            }
        }
        ReceiveAll(pair);
        pair.Outbound.DrainFreesAndReleaseIdleSlab();
        Assert.Empty(ReceiveAll(pair));
        AssertEveryPackFreedBack(pair);
    }

    [Fact]
    public void Seal_AllMessagesFreedBefore_ReceiverFreesThePackAtItsNextLookAndPagesBecomeReclaimable()
    {
        using var pair = new ChannelPair(ChannelPair.SmallOptions());
        long header = pair.Inbound.Layout.HeaderBytes;
        for (ulong i = 0; i < 10; i++)
        {
            SendOneway(pair, i, 200);
        }
        Assert.Equal(10, ReceiveAll(pair).Count);
        Assert.True(pair.Inbound.Region.ResidentBytes > header);

        pair.Outbound.DrainFreesAndReleaseIdleSlab();
        Assert.True(pair.Inbound.TransactionMaybeReady, "the seal makes a waiting receiver look");
        Assert.Empty(ReceiveAll(pair));
        Assert.Equal(1UL, pair.Inbound.Freed);
        Assert.False(pair.Inbound.TransactionMaybeReady);
        pair.Outbound.DrainFrees();
        Assert.Equal(0, pair.Outbound.LiveBuffers);
        pair.Shrinker.Scan(long.MaxValue);
        Assert.Equal(header, pair.Inbound.Region.ResidentBytes);
    }

    [Fact]
    public void TrySend_WriterAtItsLivePackLimit_SmallOnewaysGoAsRecordsAndTheReceiverTakesEverythingWithoutAFree()
    {
        // The writer keeps at most MaxLivePacks packs of MaxEntries live, so the receiver's MaxPackedLive slots always
        // hold them whole: it never stops inside a pack, and the call behind reaches it with nothing freed. A region
        // whose oneway quota gives the writer the most packs it may ever keep.
        using var pair = new ChannelPair(ChannelPair.SmallOptions(pages: 512));
        Assert.Equal(PackLayout.MaxLivePacks, pair.Outbound.MaxLivePacks);
        const int extra = 8;
        for (ulong i = 0; i < InboundChannel.MaxPackedLive + extra; i++)
        {
            SendOneway(pair, i, 8);
        }
        Assert.Equal(pair.Outbound.MaxLivePacks, pair.Outbound.PacksOpened);
        Assert.Equal(InboundChannel.MaxPackedLive, pair.Outbound.PackedSent);
        Assert.True(pair.Outbound.TrySend(1000, 0, TransactionFlags.TwoWay, new byte[8], new RecordContext(1, 0, CallStatus.Ok)));

        var taken = new List<TransactionRecord>();
        var batch = new TransactionRecord[InboundChannel.ReceiveBatch];
        int got;
        while ((got = pair.Inbound.TryReceiveBatch(batch)) > 0)
        {
            taken.AddRange(batch[..got]);
        }
        Assert.Equal(Enumerable.Range(0, InboundChannel.MaxPackedLive + extra).Select(i => (ulong)i).Append(1000UL), taken.Select(r => r.TransactionId));
        Assert.Equal(InboundChannel.MaxPackedLive, pair.Inbound.PackedLive);

        // Freed and drained, the packs are forgotten: the next small oneway opens a pack again.
        foreach (TransactionRecord record in taken)
        {
            pair.Inbound.Free(record);
        }
        pair.Outbound.DrainFrees();
        SendOneway(pair, 2000, 8);
        Assert.Equal(pair.Outbound.MaxLivePacks + 1, pair.Outbound.PacksOpened);
    }

    /// <summary>The most packed messages the pair's writer keeps live: its live packs of <see cref="PackLayout.MaxEntries"/>.</summary>
    private static int PackedLimit(ChannelPair pair) => pair.Outbound.MaxLivePacks * PackLayout.MaxEntries;

    /// <summary>Sends small oneways until every pack the writer may keep live is full: the next one meets the limit.</summary>
    private static void FillEveryLivePack(ChannelPair pair, ref ulong id)
    {
        Assert.True(pair.Outbound.MaxLivePacks >= PackLayout.MinLivePacks);
        for (int i = 0; i < PackedLimit(pair); i++)
        {
            SendOneway(pair, id++, 8);
        }
    }

    [Fact]
    public async Task TrySend_WriterAtItsLivePackLimit_WaitsForTheReceiversPackFreeAndKeepsPacking()
    {
        // A stream that outruns its receiver: the message past the limit waits for a pack to come back instead of going
        // as a record of its own (which costs the receiver more and let it fall further behind).
        using var pair = new ChannelPair(ChannelPair.SmallOptions(packWait: TestTimeouts.Long));
        ulong id = 0;
        FillEveryLivePack(pair, ref id);
        Assert.Equal(pair.Outbound.MaxLivePacks, pair.Outbound.PacksOpened);

        Task send = Task.Factory.StartNew(() => SendOneway(pair, id, 8), TaskCreationOptions.LongRunning);
        // Nothing frees a pack until the receiver runs below: once the send began its wait it can only go on waiting (or,
        // without the wait, it would have gone unpacked already). Polled, not a fixed delay: a slow machine may start the
        // send's thread late.
        await Poll.WaitUntilAsync(() => pair.Outbound.PackWaits != 0 || send.IsCompleted, "the send past the limit began its wait");
        await Task.Delay(100);
        Assert.False(send.IsCompleted, "the send past the limit returned before any pack came back");
        Assert.Equal(1, pair.Outbound.PackWaits);
        List<TransactionRecord> first = ReceiveAll(pair);
        await send.WaitAsync(TestTimeouts.Long);

        Assert.Equal(pair.Outbound.MaxLivePacks + 1, pair.Outbound.PacksOpened);
        Assert.Equal(PackedLimit(pair) + 1, pair.Outbound.PackedSent);
        List<TransactionRecord> all = [.. first, .. ReceiveAll(pair)];
        Assert.Equal(Enumerable.Range(0, PackedLimit(pair) + 1).Select(i => (ulong)i), all.Select(r => r.TransactionId));
    }

    [Fact]
    public async Task TrySend_CallWhileAOnewayWaitsForALivePack_GoesAtOnce()
    {
        // Packs never hold up a call: the oneway's wait releases the send lock between its looks.
        using var pair = new ChannelPair(ChannelPair.SmallOptions(packWait: TestTimeouts.Long));
        ulong id = 0;
        FillEveryLivePack(pair, ref id);
        Task oneway = Task.Factory.StartNew(() => SendOneway(pair, id, 8), TaskCreationOptions.LongRunning);
        await Poll.WaitUntilAsync(() => pair.Outbound.PackWaits != 0 || oneway.IsCompleted, "the oneway past the limit began its wait");
        Assert.False(oneway.IsCompleted, "the oneway past the limit did not wait for a pack");

        byte[] request = ChannelPair.PayloadFor(1000, 8);
        Task<bool> call = Task.Run(() => pair.Outbound.TrySend(1000, ChannelPair.Checksum(request), TransactionFlags.TwoWay, request, new RecordContext(1, 0, CallStatus.Ok)));
        // Held behind the wait, the call would return only when the oneway's minute-long wait gave up.
        Assert.True(await call.WaitAsync(TimeSpan.FromSeconds(20)));
        Assert.False(oneway.IsCompleted, "the oneway gave up its wait: the call's timing proves nothing");

        // The call seals the open pack; the receiver takes every message and the call, and frees the packs: the waiting
        // oneway then goes into a new pack, after the call.
        List<TransactionRecord> first = ReceiveAll(pair);
        await oneway.WaitAsync(TestTimeouts.Long);
        List<TransactionRecord> all = [.. first, .. ReceiveAll(pair)];
        Assert.Equal(
            Enumerable.Range(0, PackedLimit(pair)).Select(i => (ulong)i).Append(1000UL).Append((ulong)PackedLimit(pair)),
            all.Select(r => r.TransactionId));
        Assert.Equal(PackedLimit(pair) + 1, pair.Outbound.PackedSent);
    }

    [Fact]
    public void TrySend_ReceiverHoldsEveryPack_WriterWaitsOnceThenSendsRecordsUntilAPackComesBack()
    {
        // A receiver that holds its messages frees no pack: the sender gives up once and does not wait per message; once a
        // pack comes back, the next time every pack is in use is worth a wait again.
        TimeSpan wait = TimeSpan.FromMilliseconds(50);
        using var pair = new ChannelPair(ChannelPair.SmallOptions(packWait: wait));
        const int extra = 20;
        ulong id = 0;
        for (int round = 1; round <= 2; round++)
        {
            FillEveryLivePack(pair, ref id);
            var clock = Stopwatch.StartNew();
            for (int i = 0; i < extra; i++)
            {
                SendOneway(pair, id++, 8);
            }
            clock.Stop();

            // One wait (not one per message), which lasted its whole budget; the messages went as records of their own.
            Assert.Equal(round, pair.Outbound.PackWaits);
            Assert.True(clock.Elapsed >= wait, $"round {round}: {extra} sends past the limit took {clock.Elapsed.TotalMilliseconds} ms");
            Assert.Equal(round * PackedLimit(pair), pair.Outbound.PackedSent);
            ulong first = id - (ulong)(PackedLimit(pair) + extra);
            Assert.Equal(Enumerable.Range(0, PackedLimit(pair) + extra).Select(i => first + (ulong)i), ReceiveAll(pair).Select(r => r.TransactionId));
            // Every pack was sealed (the first record past the limit seals the open one), consumed and freed: back.
            AssertEveryPackFreedBack(pair);
        }
    }

    [Fact]
    public void TrySend_ParkStrategy_NeverWaitsForALivePack()
    {
        // A user who chose Park asked for no spinning: past the limit a small oneway goes as a record of its own at once.
        using var pair = new ChannelPair(ChannelPair.SmallOptions(strategy: WaitStrategy.Park, packWait: TestTimeouts.Long));
        ulong id = 0;
        FillEveryLivePack(pair, ref id);
        SendOneway(pair, id, 8);
        Assert.Equal(0, pair.Outbound.PackWaits);
        Assert.Equal(PackedLimit(pair), pair.Outbound.PackedSent);
    }

    [Theory]
    [InlineData(WaitStrategy.Park)]
    [InlineData(WaitStrategy.SpinThenPark)]
    [InlineData(WaitStrategy.BusySpin)]
    public async Task TrySend_AppendToOpenPack_WakesAWaitingReceiver(WaitStrategy strategy)
    {
        // Parked, spinning or polling only now and then (PackPollInterval, after a stream's take): the append ends the wait.
        using var pair = new ChannelPair(ChannelPair.SmallOptions(strategy: strategy));
        TakeAsAStream(pair, 0);
        Assert.False(pair.Inbound.TransactionMaybeReady);
        var waiter = Task.Factory.StartNew(() => pair.Inbound.WaitForTransaction(TestTimeouts.Long, default), TaskCreationOptions.LongRunning);
        await Task.Delay(50);
        long packs = pair.Outbound.PacksOpened;
        SendOneway(pair, 2, 16);
        Assert.Equal(packs, pair.Outbound.PacksOpened);
        // Well before the wait's own timeout (TestTimeouts.Long), at which a busy-spin wait looks exactly anyway.
        Assert.True(await waiter.WaitAsync(TestTimeouts.Short));
        // However the wait ended (a paced look that found it, a park's exact look), the next paced look reads: the pass
        // after a wait is not turned away.
        Assert.True(pair.Inbound.RecordsMaybeReadyPaced);
        Assert.Equal(2UL, Assert.Single(ReceiveAll(pair)).TransactionId);
    }

    /// <summary>Makes the receiver see a stream: a message taken, and the next found at the first look after it.</summary>
    private static void TakeAsAStream(ChannelPair pair, ulong first)
    {
        SendOneway(pair, first, 64);
        Assert.Single(ReceiveAll(pair));
        SendOneway(pair, first + 1, 64);
        Assert.True(pair.Inbound.RecordsMaybeReadyPaced);
        Assert.Equal(first + 1, Assert.Single(ReceiveAll(pair)).TransactionId);
    }

    [Fact]
    public void WaitForTransaction_PollingAfterAStreamsTake_LooksAtItsCommittedWordOnceInFourPolls()
    {
        using var pair = new ChannelPair(ChannelPair.SmallOptions(strategy: WaitStrategy.BusySpin));
        Assert.False(pair.Inbound.WaitForTransaction(TimeSpan.FromMilliseconds(5), default));
        // No pack current: every poll looks (the ring's tail and the direct lines, written only when something comes).
        Assert.Equal((0, 0), (pair.Inbound.PackWaitPolls, pair.Inbound.PackWaitLooks));

        TakeAsAStream(pair, 0);
        Assert.True(pair.Outbound.OpenPackOffset >= 0);
        (long polls, long looks) = (pair.Inbound.PackWaitPolls, pair.Inbound.PackWaitLooks);
        Assert.False(pair.Inbound.WaitForTransaction(TimeSpan.FromMilliseconds(20), default));

        // The open pack's word, which the writer stores for every message it appends, is read once every PackPollInterval polls.
        polls = pair.Inbound.PackWaitPolls - polls;
        Assert.True(polls >= 8, $"{polls} polls in 20 ms");
        Assert.Equal(4, InboundChannel.PackPollInterval);
        Assert.Equal(polls / InboundChannel.PackPollInterval, pair.Inbound.PackWaitLooks - looks);
    }

    [Fact]
    public void WaitForTransaction_AfterAMessageThatCameLate_LooksAtEveryPoll()
    {
        // A writer that sends now and then: once a message came long after the last take, the next is looked for at every poll.
        using var pair = new ChannelPair(ChannelPair.SmallOptions(strategy: WaitStrategy.BusySpin));
        TakeAsAStream(pair, 0);
        Assert.False(pair.Inbound.WaitForTransaction(TimeSpan.FromMilliseconds(5), default));
        Assert.True(pair.Inbound.PackWaitPolls > InboundChannel.PackStreamPolls);
        SendOneway(pair, 2, 64);
        int looks = 0;
        while (looks < 100 && !pair.Inbound.RecordsMaybeReadyPaced)
        {
            looks++;
        }
        Assert.InRange(looks, 0, InboundChannel.PackPollInterval - 1);
        Assert.Single(ReceiveAll(pair));

        (long pollsBefore, long looksBefore) = (pair.Inbound.PackWaitPolls, pair.Inbound.PackWaitLooks);
        Assert.False(pair.Inbound.WaitForTransaction(TimeSpan.FromMilliseconds(20), default));
        long polls = pair.Inbound.PackWaitPolls - pollsBefore;
        Assert.True(polls >= 8, $"{polls} polls in 20 ms");
        Assert.Equal(polls, pair.Inbound.PackWaitLooks - looksBefore);
        SendOneway(pair, 3, 64);
        Assert.True(pair.Inbound.RecordsMaybeReadyPaced);
    }

    [Fact]
    public void RecordsMaybeReadyPaced_ParkStrategy_ReadsAtEveryLook()
    {
        // A parking receiver does not poll: a look left out would only send it round its wait loop.
        using var pair = new ChannelPair(ChannelPair.SmallOptions(strategy: WaitStrategy.Park));
        TakeAsAStream(pair, 0);
        SendOneway(pair, 2, 64);
        Assert.True(pair.Inbound.RecordsMaybeReadyPaced);
        Assert.Single(ReceiveAll(pair));
        Assert.Equal((0, 0), (pair.Inbound.PackWaitPolls, pair.Inbound.PackWaitLooks));
    }

    [Fact]
    public void RecordsMaybeReadyPaced_AfterALookThatFoundMore_LooksEveryTimeUntilAPassTakesIt()
    {
        using var pair = new ChannelPair(ChannelPair.SmallOptions(strategy: WaitStrategy.BusySpin));
        TakeAsAStream(pair, 0);
        SendOneway(pair, 2, 64);
        SendOneway(pair, 3, 64);

        // The pass took a stream's everything: three looks are left out, the fourth reads the word and finds more.
        int leftOut = 0;
        while (leftOut < 100 && !pair.Inbound.RecordsMaybeReadyPaced)
        {
            leftOut++;
        }
        Assert.Equal(InboundChannel.PackPollInterval - 1, leftOut);
        // Found: every look says so until a pass takes it (a lane's gate after a wait must not be turned away).
        for (int i = 0; i < 2 * InboundChannel.PackPollInterval; i++)
        {
            Assert.True(pair.Inbound.RecordsMaybeReadyPaced, $"look {i} after the one that found it");
        }
        Assert.True(pair.Inbound.TransactionMaybeReady);
        Assert.Equal([2UL, 3UL], ReceiveAll(pair).Select(record => record.TransactionId));
        // Taken, found within a few looks (still a stream): paced, one read in four looks, and the read finds nothing.
        long reads = pair.Inbound.PackWaitLooks;
        for (int i = 0; i < 2 * InboundChannel.PackPollInterval; i++)
        {
            Assert.False(pair.Inbound.RecordsMaybeReadyPaced);
        }
        Assert.Equal(reads + 2, pair.Inbound.PackWaitLooks);
        Assert.False(pair.Inbound.TransactionMaybeReady);
    }

    [Fact]
    public void TrySend_OptionOffMetadataClearOnFreeOrLarge_OneRecordEach()
    {
        using var pair = new ChannelPair(new ChannelOptions { RegionSize = 64L * 4096, TxRingCapacity = 64, FreeRingCapacity = 64, PackSmallOneways = false });
        SendOneway(pair, 0, 8);
        SendOneway(pair, 1, 8);
        Assert.Equal(2UL, pair.Outbound.Sent);
        Assert.Equal(0, pair.Outbound.PacksOpened);

        using var packing = new ChannelPair(ChannelPair.SmallOptions());
        byte[] small = ChannelPair.PayloadFor(2, 8);
        Assert.True(packing.Outbound.TrySend(2, ChannelPair.Checksum(small), TransactionFlags.Oneway | TransactionFlags.ClearOnFree, small));
        SendOneway(packing, 3, PackLayout.MaxPayload + 8);
        Assert.True(packing.Outbound.TrySend(4, 0, TransactionFlags.Oneway, small, new RecordContext(0, 0, CallStatus.Ok, new byte[16])));
        Assert.Equal(3UL, packing.Outbound.Sent);
        Assert.Equal(0, packing.Outbound.PacksOpened);
    }
}
