using PageRange.Allocation;
using PageRange.Tests.Infrastructure;
using PageRange.Transport;

namespace PageRange.Tests.Transport;

/// <summary>
/// Small oneway messages share slabs: in order with every other message, one slab reused while the receiver keeps up,
/// given back (and its pages reclaimed) once idle, never for two-way or clear-on-free messages.
/// </summary>
public sealed class ChannelSlabTests
{
    [Fact]
    public async Task Send_SlabAndBufferSizesMixed_ArriveInOrderWithTheirBytes()
    {
        const int count = 50_000;
        using var pair = new ChannelPair(ChannelPair.SmallOptions(pages: 64, rings: 128));

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
        using var pair = new ChannelPair(ChannelPair.SmallOptions());
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
        using var pair = new ChannelPair(ChannelPair.SmallOptions(pages: 256, rings: 256));
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
        using var pair = new ChannelPair(ChannelPair.SmallOptions());
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
    public void DrainFrees_SlabEmpty_KeptForTheNextMessages()
    {
        using var pair = new ChannelPair(ChannelPair.SmallOptions());
        Assert.True(pair.Outbound.TrySend(1, 0, TransactionFlags.Oneway, new byte[64]));
        pair.Inbound.Free(pair.ReceiveOne());
        // A drain between sends (a larger message's, a waiting sender's) keeps the empty slab: only idleness gives it back.
        Assert.Equal(1, pair.Outbound.DrainFrees());
        Assert.Equal(1, pair.Outbound.Slabs.SlabsInUse);
        Assert.True(pair.Outbound.TrySend(2, 0, TransactionFlags.Oneway, new byte[64]));
        Assert.Equal(1, pair.Outbound.Slabs.SlabsOpened);
    }

    [Theory]
    [InlineData(TransactionFlags.TwoWay)]
    [InlineData(TransactionFlags.Oneway | TransactionFlags.ClearOnFree)]
    public void Send_TwoWayOrClearOnFree_TakesABufferOfItsOwn(TransactionFlags flags)
    {
        using var pair = new ChannelPair(ChannelPair.SmallOptions());
        Assert.True(pair.Outbound.TrySend(1, 0, flags, new byte[64]));
        Assert.Equal(0, pair.Outbound.Slabs.SlabsOpened);
        Assert.Equal(1, pair.Outbound.Allocator.BufferCount);
    }

    [Fact]
    public void TryReserve_SmallOneway_IsASlotAndCommitsInOrder()
    {
        using var pair = new ChannelPair(ChannelPair.SmallOptions());
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
