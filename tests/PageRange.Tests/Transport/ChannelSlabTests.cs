using PageRange.Allocation;
using PageRange.Memory;
using PageRange.Tests.Infrastructure;
using PageRange.Transport;

namespace PageRange.Tests.Transport;

/// <summary>
/// Small oneway messages share slabs: in order with every other message, one slab reused while the receiver keeps up,
/// given back (and its pages reclaimed) once idle, never for clear-on-free messages; small calls and replies have
/// slabs of their own, not charged to the oneway quota.
/// </summary>
public sealed class ChannelSlabTests
{
    [Fact]
    public async Task Send_SlabAndBufferSizesMixed_ArriveInOrderWithTheirBytes()
    {
        const int count = 50_000;
        using var pair = new ChannelPair(ChannelPair.SmallOptions(pages: 64, rings: 128, pack: false));

        Task writer = Task.Factory.StartNew(
            () =>
            {
                byte[] buffer = new byte[1024];
                for (ulong id = 0; id < count; id++)
                {
                    Span<byte> payload = buffer.AsSpan(0, PayloadLength(id));
                    ChannelPair.Fill(payload, id);
                    pair.Outbound.Send(id, ChannelPair.Checksum(payload), TransactionFlags.Oneway, payload, TestTimeouts.Long, default);
                }
            },
            TaskCreationOptions.LongRunning);

        Task reader = Task.Factory.StartNew(
            () =>
            {
                ulong expected = 0;
                while (expected < count)
                {
                    if (!pair.Inbound.TryReceive(out TransactionRecord record))
                    {
                        Assert.True(pair.Inbound.WaitForTransaction(TestTimeouts.Long, default), $"transaction {expected} arrived in time");
                        continue;
                    }
                    Assert.Equal(expected, record.TransactionId);
                    ReadOnlySpan<byte> payload = pair.Inbound.GetPayload(record);
                    Assert.Equal(PayloadLength(expected), payload.Length);
                    Assert.Equal(record.Code, ChannelPair.Checksum(payload));
                    pair.Inbound.Free(record);
                    expected++;
                }
            },
            TaskCreationOptions.LongRunning);

        await Task.WhenAll(writer, reader).WaitAsync(TimeSpan.FromSeconds(120));
        Assert.True(pair.Outbound.Slabs.SlabsOpened > 0, "small messages took slots");
        pair.Outbound.DrainFreesAndReleaseIdleSlab();
        Assert.Equal(0, pair.Outbound.LiveBuffers);
        Assert.Equal(0, pair.Outbound.IgnoredFrees);
        Assert.Equal(0, pair.Outbound.Slabs.SlabsInUse);
        Assert.Equal(0, pair.Outbound.Allocator.BufferCount);
        pair.Outbound.Allocator.Validate();

        // Three in four fit a slot (0-255 bytes), the rest take a buffer of their own (256-1023, up to a page).
        static int PayloadLength(ulong id) => (int)(id % 4 == 3 ? 256 + (id * 7919 % 768) : id * 31 % (BufferSlab.SlotSize + 1));
    }

    [Fact]
    public void Send_ReceiverKeepsUp_OneSlabServesEveryMessage()
    {
        using var pair = new ChannelPair(ChannelPair.SmallOptions(pack: false));
        for (ulong id = 0; id < 10_000; id++)
        {
            Assert.True(pair.Outbound.TrySend(id, 0, TransactionFlags.Oneway, new byte[64]));
            pair.Inbound.Free(pair.ReceiveOne());
        }
        Assert.Equal(1, pair.Outbound.Slabs.SlabsOpened);
        Assert.Equal(0, pair.Outbound.Slabs.SlabsReleased);
        // The allocator holds the one slab: no message took a reservation of its own.
        Assert.Equal(1, pair.Outbound.Allocator.BufferCount);
    }

    [Fact]
    public void Send_ReceiverBehind_MoreSlabsThenEachGivenBackWithItsLastFree()
    {
        using var pair = new ChannelPair(ChannelPair.SmallOptions(pages: 256, rings: 256, pack: false));
        var records = new List<TransactionRecord>();
        for (ulong id = 0; id < 3 * BufferSlab.SlotCount; id++)
        {
            Assert.True(pair.Outbound.TrySend(id, 0, TransactionFlags.Oneway, new byte[100]));
            records.Add(pair.ReceiveOne());
        }
        Assert.Equal(3, pair.Outbound.Slabs.SlabsInUse);
        foreach (TransactionRecord record in records)
        {
            pair.Inbound.Free(record);
        }
        pair.Outbound.DrainFreesAndReleaseIdleSlab();
        Assert.Equal(0, pair.Outbound.Slabs.SlabsInUse);
        Assert.Equal(3, pair.Outbound.Slabs.SlabsReleased);
        Assert.Equal(pair.Outbound.Allocator.OnewayQuota, pair.Outbound.Allocator.FreeOnewaySpace);
    }

    [Fact]
    public void DrainFrees_BurstThenIdle_SlabGivenBackAndTheShrinkerReclaimsItsPages()
    {
        using var pair = new ChannelPair(ChannelPair.SmallOptions(pack: false));
        long header = pair.Inbound.Layout.HeaderBytes;
        for (ulong id = 0; id < 40; id++)
        {
            Assert.True(pair.Outbound.TrySend(id, 0, TransactionFlags.Oneway, new byte[200]));
            pair.Inbound.Free(pair.ReceiveOne());
        }
        Assert.True(pair.Inbound.Region.ResidentBytes > header);
        // Frees waiting for a batch, and a slab being filled: nothing for the shrinker yet.
        pair.Shrinker.Scan(long.MaxValue);
        Assert.True(pair.Inbound.Region.ResidentBytes > header);

        // The writer goes idle: its drain takes the frees and gives the empty slab back.
        pair.Outbound.DrainFreesAndReleaseIdleSlab();
        Assert.Equal(0, pair.Outbound.Slabs.SlabsInUse);
        pair.Shrinker.Scan(long.MaxValue);
        Assert.Equal(header, pair.Inbound.Region.ResidentBytes);
    }

    [Fact]
    public void Send_SlotsOfSlabs_TheirPagesStayUsedThroughShrinkerScansIdleReleasesAndReopens()
    {
        // A slot's bytes are written without the range's look at its page states (GetSpanOfUsedPages): the slab keeps
        // its pages Used while it is open. Checked here in the build the tests run, through everything that moves pages:
        // frees, idle releases of the slab being filled, slabs drained and reopened, the shrinker reclaiming what was
        // given back.
        using var pair = new ChannelPair(ChannelPair.SmallOptions(pages: 64, rings: 64, pack: false));
        var held = new Queue<TransactionRecord>();
        byte[] buffer = new byte[BufferSlab.SlotSize];
        int slotsSeen = 0;
        for (ulong id = 1; id <= 6_000; id++)
        {
            TransactionFlags flags = (id % 3) switch { 0 => TransactionFlags.Oneway, 1 => TransactionFlags.TwoWay, _ => TransactionFlags.Reply };
            Span<byte> payload = buffer.AsSpan(0, (int)(id * 37 % BufferSlab.SlotSize) + 1);
            ChannelPair.Fill(payload, id);
            Assert.True(pair.Outbound.TrySend(id, ChannelPair.Checksum(payload), flags, payload));
            TransactionRecord record = pair.ReceiveOne();
            Assert.Equal(id, record.TransactionId);
            if (pair.Outbound.Slabs.FindFilling(record.Offset) is not null || pair.Outbound.CallSlabs.FindFilling(record.Offset) is not null)
            {
                slotsSeen++;
            }
            for (long page = record.Offset / SharedRegion.PageSize; page <= (record.Offset + record.Length - 1) / SharedRegion.PageSize; page++)
            {
                Assert.Equal(PageState.Used, pair.Outbound.Pages.GetPageState((int)page));
            }
            Assert.Equal(ChannelPair.Checksum(payload), record.Code);
            Assert.True(pair.Inbound.GetPayload(record).SequenceEqual(payload));
            // A receiver that is sometimes behind: slabs fill up, drain and are given back with their last free.
            held.Enqueue(record);
            while (held.Count > (int)(id % 97 % 40))
            {
                pair.Inbound.Free(held.Dequeue());
            }
            if (id % 250 == 0)
            {
                while (held.Count > 0)
                {
                    pair.Inbound.Free(held.Dequeue());
                }
                // Idle: the empty slabs go back and the shrinker takes every page nothing uses.
                pair.Outbound.DrainFreesAndReleaseIdleSlab();
                pair.Shrinker.Scan(long.MaxValue);
            }
        }
        Assert.True(slotsSeen > 5_000, $"{slotsSeen} messages took a slot of a slab being filled");
        Assert.True(pair.Outbound.Slabs.SlabsOpened > 10 && pair.Outbound.CallSlabs.SlabsOpened > 10,
            $"slabs opened: {pair.Outbound.Slabs.SlabsOpened} oneway, {pair.Outbound.CallSlabs.SlabsOpened} call");
    }

    [Fact]
    public void DrainFrees_SlabEmpty_KeptForTheNextMessages()
    {
        using var pair = new ChannelPair(ChannelPair.SmallOptions(pack: false));
        Assert.True(pair.Outbound.TrySend(1, 0, TransactionFlags.Oneway, new byte[64]));
        pair.Inbound.Free(pair.ReceiveOne());
        // A drain between sends (a larger message's, a waiting sender's) keeps the empty slab: only idleness gives it back.
        Assert.Equal(1, pair.Outbound.DrainFrees());
        Assert.Equal(1, pair.Outbound.Slabs.SlabsInUse);
        Assert.True(pair.Outbound.TrySend(2, 0, TransactionFlags.Oneway, new byte[64]));
        Assert.Equal(1, pair.Outbound.Slabs.SlabsOpened);
    }

    [Theory]
    [InlineData(TransactionFlags.TwoWay | TransactionFlags.ClearOnFree)]
    [InlineData(TransactionFlags.Oneway | TransactionFlags.ClearOnFree)]
    public void Send_ClearOnFree_TakesABufferOfItsOwn(TransactionFlags flags)
    {
        using var pair = new ChannelPair(ChannelPair.SmallOptions(pack: false));
        Assert.True(pair.Outbound.TrySend(1, 0, flags, new byte[64]));
        Assert.Equal(0, pair.Outbound.Slabs.SlabsOpened);
        Assert.Equal(0, pair.Outbound.CallSlabs.SlabsOpened);
        Assert.Equal(1, pair.Outbound.Allocator.BufferCount);
    }

    [Theory]
    [InlineData(TransactionFlags.TwoWay)]
    [InlineData(TransactionFlags.Reply)]
    [InlineData(TransactionFlags.ErrorReply)]
    public void Send_SmallCallOrReply_TakesASlotOfACallSlabNotChargedToTheOnewayQuota(TransactionFlags flags)
    {
        using var pair = new ChannelPair(ChannelPair.SmallOptions(pack: false));
        Assert.True(pair.Outbound.TrySend(1, 0, flags, new byte[64]));
        Assert.True(pair.Outbound.TrySend(2, 0, flags, new byte[BufferSlab.SlotSize]));
        Assert.Equal(0, pair.Outbound.Slabs.SlabsOpened);
        Assert.Equal(1, pair.Outbound.CallSlabs.SlabsOpened);
        // One allocator buffer (the slab), not charged to the oneway quota: oneway messages keep all of it.
        Assert.Equal(1, pair.Outbound.Allocator.BufferCount);
        Assert.Equal(pair.Outbound.Allocator.OnewayQuota, pair.Outbound.Allocator.FreeOnewaySpace);
        // The slab is a reserved buffer to the allocator, but no reservation waiting for a commit to the connection.
        Assert.Equal(1, pair.Outbound.Allocator.GetStats().ReservedBuffers);
        Assert.Equal(0, pair.Outbound.GetSendStats().ReservedBuffers);
        Assert.True(pair.Outbound.TryReserve(4096, oneway: false, out PendingBuffer pending));
        Assert.Equal(1, pair.Outbound.GetSendStats().ReservedBuffers);
        pair.Outbound.Abort(ref pending);
        TransactionRecord first = pair.ReceiveOne();
        TransactionRecord second = pair.ReceiveOne();
        Assert.Equal(BufferSlab.SlotSize, second.Offset - first.Offset);

        // A oneway message takes its own slab: the two kinds never share one.
        Assert.True(pair.Outbound.TrySend(3, 0, TransactionFlags.Oneway, new byte[64]));
        Assert.Equal(1, pair.Outbound.Slabs.SlabsOpened);
        Assert.Equal(2, pair.Outbound.Allocator.BufferCount);

        // A call one byte over a slot takes a buffer of its own.
        Assert.True(pair.Outbound.TrySend(4, 0, flags, new byte[BufferSlab.SlotSize + 1]));
        Assert.Equal(1, pair.Outbound.CallSlabs.SlabsOpened);
        Assert.Equal(3, pair.Outbound.Allocator.BufferCount);
    }

    [Fact]
    public void Send_CallsWhileTheReceiverKeepsUp_OneCallSlabServesThemAllThenIsGivenBackAndReclaimed()
    {
        using var pair = new ChannelPair(ChannelPair.SmallOptions(pack: false));
        long header = pair.Inbound.Layout.HeaderBytes;
        for (ulong id = 0; id < 10_000; id++)
        {
            TransactionFlags flags = id % 2 == 0 ? TransactionFlags.TwoWay : TransactionFlags.Reply;
            Assert.True(pair.Outbound.TrySend(id, (uint)id, flags, new byte[(int)(id % BufferSlab.SlotSize)]));
            TransactionRecord record = pair.ReceiveOne();
            Assert.Equal(id, record.TransactionId);
            pair.Inbound.Free(record);
        }
        Assert.Equal(1, pair.Outbound.CallSlabs.SlabsOpened);
        Assert.Equal(0, pair.Outbound.Slabs.SlabsOpened);

        // Idle: the empty slab goes back to the allocator, and its pages to the shrinker.
        pair.Outbound.DrainFreesAndReleaseIdleSlab();
        Assert.Equal(0, pair.Outbound.LiveBuffers);
        Assert.Equal(0, pair.Outbound.CallSlabs.SlabsInUse);
        Assert.Equal(1, pair.Outbound.CallSlabs.SlabsReleased);
        Assert.Equal(0, pair.Outbound.Allocator.BufferCount);
        pair.Outbound.Allocator.Validate();
        pair.Shrinker.Scan(long.MaxValue);
        Assert.Equal(header, pair.Inbound.Region.ResidentBytes);
    }

    [Fact]
    public void Send_CallsWhileTheReceiverIsBehind_FullCallSlabsDrainAndGoBackThenBuffersTakeOver()
    {
        using var pair = new ChannelPair(ChannelPair.SmallOptions(pages: 256, rings: 256, pack: false));
        long header = pair.Inbound.Layout.HeaderBytes;
        int slots = BufferSlabs.MaxCallSlabs * BufferSlab.SlotCount;
        var records = new List<TransactionRecord>();
        // Every call slab fills up; the next call takes a buffer of its own.
        for (int i = 0; i <= slots; i++)
        {
            Assert.True(pair.Outbound.TrySend((ulong)i, 0, TransactionFlags.TwoWay, new byte[64]));
            records.Add(pair.ReceiveOne());
        }
        Assert.Equal(BufferSlabs.MaxCallSlabs, pair.Outbound.CallSlabs.SlabsInUse);
        Assert.Equal(BufferSlabs.MaxCallSlabs + 1, pair.Outbound.Allocator.BufferCount);

        foreach (TransactionRecord record in records)
        {
            pair.Inbound.Free(record);
        }
        pair.Outbound.DrainFreesAndReleaseIdleSlab();
        // The full slab went back with its last free, the one being filled when idle.
        Assert.Equal(0, pair.Outbound.CallSlabs.SlabsInUse);
        Assert.Equal(BufferSlabs.MaxCallSlabs, pair.Outbound.CallSlabs.SlabsReleased);
        Assert.Equal(0, pair.Outbound.Allocator.BufferCount);
        pair.Shrinker.Scan(long.MaxValue);
        Assert.Equal(header, pair.Inbound.Region.ResidentBytes);
    }

    [Fact]
    public void TryReserve_SmallOneway_IsASlotAndCommitsInOrder()
    {
        using var pair = new ChannelPair(ChannelPair.SmallOptions(pack: false));
        Assert.True(pair.Outbound.TrySend(1, 0, TransactionFlags.Oneway, [1, 2, 3]));
        Assert.True(pair.Outbound.TryReserve(BufferSlab.SlotSize, oneway: true, out PendingBuffer buffer));
        buffer.Span[..4].Fill(7);
        pair.Outbound.Commit(ref buffer, 4, 2, 0, TransactionFlags.Oneway);
        Assert.Equal(1, pair.Outbound.Slabs.SlabsOpened);

        TransactionRecord first = pair.ReceiveOne();
        TransactionRecord second = pair.ReceiveOne();
        Assert.Equal(BufferSlab.SlotSize, second.Offset - first.Offset);
        Assert.Equal([7, 7, 7, 7], pair.Inbound.GetPayload(second).ToArray());
    }
}
