using System.Diagnostics;
using System.Globalization;
using PageRange.Memory;
using PageRange.Tests.Infrastructure;
using PageRange.Transport;

namespace PageRange.Tests.Transport;

public sealed class OutboundInboundChannelTests
{
    private static readonly int s_page = SharedRegion.PageSize;

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(7)]
    [InlineData(4095)]
    [InlineData(4096)]
    [InlineData(4097)]
    [InlineData(100_000)]
    public void TrySend_ThenTryReceive_DeliversPayloadInPlace(int size)
    {
        using var pair = new ChannelPair(ChannelPair.SmallOptions(pages: 64));
        byte[] payload = new byte[size];
        ChannelPair.Fill(payload, 42);

        Assert.True(pair.Outbound.TrySend(42, 7, TransactionFlags.TwoWay, payload));
        TransactionRecord record = pair.ReceiveOne();
        Assert.Equal(42UL, record.TransactionId);
        Assert.Equal(7u, record.Code);
        Assert.Equal(TransactionFlags.TwoWay, record.Flags);
        Assert.Equal(size, record.Length);
        Assert.True(pair.Inbound.GetPayload(record).SequenceEqual(payload));
        Assert.True(pair.Inbound.GetPayloadMemory(record).Span.SequenceEqual(payload));
        Assert.False(pair.Inbound.TryReceive(out _));

        Assert.Equal(1, pair.Outbound.LiveBuffers);
        pair.Inbound.Free(record);
        // A small call is a slot of a call slab, which goes back to the allocator once idle.
        Assert.Equal(1, pair.Outbound.DrainFreesAndReleaseIdleSlab());
        Assert.Equal(0, pair.Outbound.LiveBuffers);
        Assert.Equal(0, pair.Outbound.Allocator.BufferCount);
        Assert.Equal(0, pair.Outbound.IgnoredFrees);
    }

    [Fact]
    public void Create_DataArea_IsMappedReadOnlyForTheReceiver()
    {
        using var pair = new ChannelPair(ChannelPair.SmallOptions(pages: 16));
        SharedRegion region = pair.Inbound.Region;
        long headerStart = region.BaseAddress;
        long dataStart = headerStart + pair.Inbound.Layout.DataOffset;
        long end = headerStart + region.Size;
        string[] lines = File.ReadAllLines("/proc/self/maps");
        Assert.Equal("rw-s", PermissionsAt(lines, headerStart));
        Assert.Equal("r--s", PermissionsAt(lines, dataStart));
        Assert.Equal("r--s", PermissionsAt(lines, end - 1));
        // The writer's own mapping of the same memfd is writable throughout.
        Assert.Equal("rw-s", PermissionsAt(lines, pair.Outbound.Region.BaseAddress + pair.Inbound.Layout.DataOffset));
    }

    private static string PermissionsAt(string[] mapsLines, long address)
    {
        foreach (string line in mapsLines)
        {
            string[] fields = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            string[] range = fields[0].Split('-');
            long start = long.Parse(range[0], NumberStyles.HexNumber, CultureInfo.InvariantCulture);
            long end = long.Parse(range[1], NumberStyles.HexNumber, CultureInfo.InvariantCulture);
            if (address >= start && address < end)
            {
                return fields[1];
            }
        }
        throw new InvalidOperationException($"0x{address:x} is not mapped");
    }

    [Fact]
    public void Create_HeaderPagesBacked_DataAreaNot()
    {
        using var pair = new ChannelPair(ChannelPair.SmallOptions(pages: 64));
        Assert.Equal(pair.Inbound.Layout.HeaderBytes, pair.Inbound.Region.ResidentBytes);
    }

    [Theory]
    [InlineData(WaitStrategy.SpinThenPark)]
    [InlineData(WaitStrategy.Park)]
    public async Task Send_100000OnewayBetweenTwoThreads_ArriveInOrderWithMatchingChecksums(WaitStrategy strategy)
    {
        const int count = 100_000;
        // A small region and rings, so the writer wraps many times and meets back-pressure.
        using var pair = new ChannelPair(ChannelPair.SmallOptions(pages: 32, rings: 128, strategy));

        Task writer = Task.Factory.StartNew(
            () =>
            {
                byte[] buffer = new byte[2048];
                for (ulong id = 0; id < count; id++)
                {
                    Span<byte> payload = buffer.AsSpan(0, (int)(id * 7919 % 2049));
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
                    Assert.Equal(TransactionFlags.Oneway, record.Flags);
                    ReadOnlySpan<byte> payload = pair.Inbound.GetPayload(record);
                    Assert.Equal((int)(expected * 7919 % 2049), payload.Length);
                    Assert.Equal(record.Code, ChannelPair.Checksum(payload));
                    pair.Inbound.Free(record);
                    expected++;
                }
            },
            TaskCreationOptions.LongRunning);

        await Task.WhenAll(writer, reader).WaitAsync(TimeSpan.FromSeconds(120));
        // One record per message, but one per pack for the packed ones.
        ulong records = (ulong)(count - pair.Outbound.PackedSent + pair.Outbound.PacksOpened);
        Assert.Equal(records, pair.Outbound.Sent);
        Assert.Equal(records, pair.Inbound.Received);
        Assert.Equal(pair.Outbound.PacksOpened, pair.Inbound.PacksReceived);
        pair.Outbound.DrainFrees();
        // Nothing live but the pack the last messages went into, if it is still open (a stream's writer keeps it so).
        Assert.Equal(pair.Outbound.OpenPackOffset >= 0 ? 1 : 0, pair.Outbound.LiveBuffers);
        Assert.Equal(0, pair.Outbound.IgnoredFrees);
    }

    [Fact]
    public void Send_ReceiverStopsFreeing_FailsWithRegionFullThenResumesAfterFrees()
    {
        using var pair = new ChannelPair(ChannelPair.SmallOptions(pages: 25, rings: 1024));
        byte[] payload = new byte[1000];
        ulong next = 0;
        while (true)
        {
            ChannelPair.Fill(payload, next);
            if (!pair.Outbound.TrySend(next, ChannelPair.Checksum(payload), TransactionFlags.TwoWay, payload))
            {
                break;
            }
            next++;
            Assert.True(next < 10_000, "the region filled up");
        }
        ulong filled = next;
        Assert.True(filled > 10);

        // The receiver reads but does not free: nothing can make room.
        List<TransactionRecord> held = [];
        while (pair.Inbound.TryReceive(out TransactionRecord record))
        {
            held.Add(record);
        }
        Assert.Equal((int)filled, held.Count);
        Assert.False(pair.Outbound.TrySend(next, 0, TransactionFlags.TwoWay, payload));
        var watch = Stopwatch.StartNew();
        Assert.Throws<RegionFullException>(() => pair.Outbound.Send(next, 0, TransactionFlags.TwoWay, payload, TimeSpan.FromMilliseconds(200), default));
        Assert.True(watch.Elapsed >= TimeSpan.FromMilliseconds(190), $"Send waited {watch.Elapsed}");

        foreach (TransactionRecord record in held)
        {
            pair.Inbound.Free(record);
        }
        for (int i = 0; i < 3 * (int)filled; i++)
        {
            ChannelPair.Fill(payload, next);
            pair.Outbound.Send(next, ChannelPair.Checksum(payload), TransactionFlags.TwoWay, payload, TestTimeouts.Short, default);
            next++;
            TransactionRecord record = pair.ReceiveOne();
            held.Add(record);
            Assert.Equal(record.Code, ChannelPair.Checksum(pair.Inbound.GetPayload(record)));
            pair.Inbound.Free(record);
        }

        // Nothing lost, nothing duplicated: every id once, in order.
        Assert.Equal(Enumerable.Range(0, (int)next).Select(i => (ulong)i), held.Select(r => r.TransactionId));
        pair.Outbound.DrainFrees();
        Assert.Equal(0, pair.Outbound.LiveBuffers);
    }

    [Fact]
    public async Task Send_WaitingForRoom_CompletesWhenTheReceiverFrees()
    {
        var options = new ChannelOptions
        {
            RegionSize = 17L * s_page, TxRingCapacity = 4, FreeRingCapacity = 4, WaitStrategy = WaitStrategy.Park, ParkTimeout = TimeSpan.FromSeconds(120),
            // Four live buffers fill the region: one record and one buffer per message (packed, all five would share one).
            PackSmallOneways = false,
        };
        using var pair = new ChannelPair(options);
        for (ulong id = 0; id < 4; id++)
        {
            Assert.True(pair.Outbound.TrySend(id, 0, TransactionFlags.Oneway, [1, 2, 3]));
        }
        Task sender = Task.Factory.StartNew(
            () => pair.Outbound.Send(4, 0, TransactionFlags.Oneway, [4], TestTimeouts.Long, default),
            TaskCreationOptions.LongRunning);

        // Wait until the sender is parked on the free doorbell, then free one buffer: the wake, not the (huge) park
        // timeout, must let it through.
        var watch = Stopwatch.StartNew();
        while (pair.ReadHeader<int>(RegionHeaderLayout.FreeDoorbellParkedOffset) == 0)
        {
            Assert.True(watch.Elapsed < TestTimeouts.Short, "the sender parked");
            Thread.Yield();
        }
        pair.Inbound.Free(pair.ReceiveOne());
        await sender.WaitAsync(TestTimeouts.Long);
        Assert.True(watch.Elapsed < TestTimeouts.Long);
        for (ulong id = 1; id <= 4; id++)
        {
            Assert.Equal(id, pair.ReceiveOne().TransactionId);
        }
    }

    [Fact]
    public void TrySend_LiveBufferLimit_IsTheSmallerRingCapacity()
    {
        var options = new ChannelOptions { RegionSize = 64L * s_page, TxRingCapacity = 8, FreeRingCapacity = 4 };
        using var pair = new ChannelPair(options);
        for (ulong id = 0; id < 4; id++)
        {
            Assert.True(pair.Outbound.TrySend(id, 0, TransactionFlags.TwoWay, [1]));
        }
        Assert.False(pair.Outbound.TrySend(4, 0, TransactionFlags.TwoWay, [1]));
        Assert.Equal(4, pair.Outbound.LiveBuffers);
        pair.Inbound.Free(pair.ReceiveOne());
        Assert.True(pair.Outbound.TrySend(4, 0, TransactionFlags.TwoWay, [1]));
    }

    [Fact]
    public void TrySend_Oneway_RespectsTheQuotaWhileTwoWayStillFits()
    {
        using var pair = new ChannelPair(ChannelPair.SmallOptions(pages: 33, rings: 1024));
        long quota = pair.Outbound.Allocator.OnewayQuota;
        Assert.Equal(pair.Outbound.Layout.DataSize / 2, quota);
        byte[] payload = new byte[1000];
        long onewayBytes = 0;
        ulong id = 0;
        while (pair.Outbound.TrySend(id++, 0, TransactionFlags.Oneway, payload))
        {
            onewayBytes += payload.Length;
            Assert.True(onewayBytes <= quota, "oneway buffers stay within the quota");
        }
        Assert.True(onewayBytes > quota - (2 * payload.Length), $"the quota ({quota}) was nearly used up ({onewayBytes})");
        // Two-way transactions may use the other half.
        Assert.True(pair.Outbound.TrySend(id++, 0, TransactionFlags.TwoWay, new byte[(int)(quota / 2)]));

        Assert.Throws<MessageTooLargeException>(() => pair.Outbound.TrySend(id, 0, TransactionFlags.Oneway, new byte[quota + 1]));
        Assert.Throws<MessageTooLargeException>(() => pair.Outbound.TrySend(id, 0, TransactionFlags.TwoWay, new byte[pair.Outbound.Layout.DataSize + 1]));
        Assert.Throws<MessageTooLargeException>(() => pair.Outbound.Send(id, 0, TransactionFlags.TwoWay, new byte[pair.Outbound.Layout.DataSize + 1], TestTimeouts.Long, default));
    }

    [Fact]
    public void FreeAndScan_AfterTraffic_ResidentBytesBackToHeaderPages()
    {
        using var pair = new ChannelPair(ChannelPair.SmallOptions(pages: 256, rings: 64));
        long header = pair.Inbound.Layout.HeaderBytes;
        byte[] payload = new byte[3 * s_page + 100];
        for (ulong id = 0; id < 200; id++)
        {
            pair.Outbound.Send(id, 0, TransactionFlags.Oneway, payload.AsSpan(0, (int)(id * 997 % (ulong)payload.Length)), TestTimeouts.Short, default);
            if (id % 3 == 0)
            {
                // Keep a few buffers live at a time, so the allocator spreads over many pages.
                while (pair.Inbound.TryReceive(out TransactionRecord record))
                {
                    pair.Inbound.Free(record);
                }
            }
        }
        while (pair.Inbound.TryReceive(out TransactionRecord record))
        {
            pair.Inbound.Free(record);
        }
        // The writer is idle now: its housekeeping drain also gives back the empty slab the small messages used, and
        // seals the pack they shared; the receiver's next look finishes that pack and frees it.
        pair.Outbound.DrainFreesAndReleaseIdleSlab();
        Assert.False(pair.Inbound.TryReceive(out _));
        pair.Outbound.DrainFrees();
        Assert.Equal(0, pair.Outbound.LiveBuffers);
        Assert.True(pair.Inbound.Region.ResidentBytes > header, "freed pages stay backed until the shrinker runs");
        Assert.Equal(0, pair.Outbound.Pages.GetStats().Used);

        long available = pair.Shrinker.Count();
        Assert.True(available > 0);
        Assert.Equal(available, pair.Shrinker.Scan(available));
        Assert.Equal(header, pair.Inbound.Region.ResidentBytes);
        Assert.Equal(header, pair.Outbound.Region.ResidentBytes);
    }

    [Fact]
    public void Free_Twice_SecondIsAnIgnoredFree()
    {
        using var pair = new ChannelPair(ChannelPair.SmallOptions());
        // Larger than a slab's slot: a buffer of its own, whose stray second free binder ignores (a slot's second free
        // is a violation: ChannelSlabHostileTests).
        Assert.True(pair.Outbound.TrySend(1, 0, TransactionFlags.TwoWay, new byte[PageRange.Allocation.BufferSlab.SlotSize + 8]));
        TransactionRecord record = pair.ReceiveOne();
        pair.Inbound.Free(record);
        pair.Inbound.Free(record);
        Assert.Equal(2, pair.Outbound.DrainFrees());
        Assert.Equal(1, pair.Outbound.IgnoredFrees);
        Assert.Equal(0, pair.Outbound.LiveBuffers);
    }

    [Fact]
    public void TryReserve_Commit_PublishesWhatWasWrittenInPlace()
    {
        using var pair = new ChannelPair(ChannelPair.SmallOptions());
        Assert.True(pair.Outbound.TryReserve(5000, oneway: false, out PendingBuffer buffer));
        Assert.True(buffer.IsPending);
        ChannelPair.Fill(buffer.Span[..3000], 9);
        pair.Outbound.Commit(ref buffer, 3000, 9, 11, TransactionFlags.TwoWay);
        Assert.False(buffer.IsPending);

        TransactionRecord record = pair.ReceiveOne();
        Assert.Equal(3000, record.Length);
        byte[] expected = new byte[3000];
        ChannelPair.Fill(expected, 9);
        Assert.True(pair.Inbound.GetPayload(record).SequenceEqual(expected));
    }

    [Fact]
    public void TryReserve_Abort_GivesTheRoomBackAndPublishesNothing()
    {
        using var pair = new ChannelPair(ChannelPair.SmallOptions());
        Assert.True(pair.Outbound.TryReserve(100, oneway: true, out PendingBuffer buffer));
        Assert.Equal(1, pair.Outbound.LiveBuffers);
        pair.Outbound.Abort(ref buffer);
        Assert.Equal(0, pair.Outbound.LiveBuffers);
        // A small oneway buffer is a slot of a slab, which an idle writer's drain gives back once it is empty.
        pair.Outbound.DrainFreesAndReleaseIdleSlab();
        Assert.Equal(0, pair.Outbound.Slabs.SlabsInUse);
        Assert.Equal(pair.Outbound.Allocator.OnewayQuota, pair.Outbound.Allocator.FreeOnewaySpace);
        Assert.False(pair.Inbound.TryReceive(out _));
    }

    [Fact]
    public void Commit_MisusedBuffer_ThrowsArgumentException()
    {
        using var pair = new ChannelPair(ChannelPair.SmallOptions());
        Assert.True(pair.Outbound.TryReserve(100, oneway: true, out PendingBuffer buffer));
        Assert.Throws<ArgumentException>(() => pair.Outbound.Commit(ref buffer, 10, 1, 0, TransactionFlags.TwoWay));
        Assert.Throws<ArgumentOutOfRangeException>(() => pair.Outbound.Commit(ref buffer, 101, 1, 0, TransactionFlags.Oneway));
        PendingBuffer copy = buffer;
        pair.Outbound.Commit(ref buffer, 10, 1, 0, TransactionFlags.Oneway);
        Assert.Throws<ArgumentException>(() => pair.Outbound.Commit(ref buffer, 10, 1, 0, TransactionFlags.Oneway));
        Assert.ThrowsAny<InvalidOperationException>(() => pair.Outbound.Commit(ref copy, 10, 1, 0, TransactionFlags.Oneway));
        Assert.Equal(1UL, pair.Outbound.Sent);
    }

    [Theory]
    [InlineData(TransactionFlags.None)]
    [InlineData(TransactionFlags.Oneway | TransactionFlags.Reply)]
    [InlineData((TransactionFlags)0x100)]
    public void TrySend_InvalidFlags_ThrowsArgumentException(TransactionFlags flags)
    {
        using var pair = new ChannelPair(ChannelPair.SmallOptions());
        Assert.Throws<ArgumentException>(() => pair.Outbound.TrySend(1, 0, flags, [1]));
    }

    [Fact]
    public void WaitForTransaction_NothingSent_ReturnsFalseAfterTimeout()
    {
        using var pair = new ChannelPair(ChannelPair.SmallOptions(strategy: WaitStrategy.Park));
        var watch = Stopwatch.StartNew();
        Assert.False(pair.Inbound.WaitForTransaction(TimeSpan.FromMilliseconds(100), default));
        Assert.True(watch.Elapsed >= TimeSpan.FromMilliseconds(90));
    }

    [Fact]
    public async Task Dispose_WhileReceiverWaits_WakesItWithObjectDisposed()
    {
        var options = new ChannelOptions { RegionSize = 16L * s_page, TxRingCapacity = 4, FreeRingCapacity = 4, WaitStrategy = WaitStrategy.Park, ParkTimeout = TimeSpan.FromSeconds(120) };
        var pair = new ChannelPair(options);
        Task waiter = Task.Factory.StartNew(() => pair.Inbound.WaitForTransaction(Timeout.InfiniteTimeSpan, default), TaskCreationOptions.LongRunning);
        var watch = Stopwatch.StartNew();
        while (pair.ReadHeader<int>(RegionHeaderLayout.TxDoorbellParkedOffset) == 0)
        {
            Assert.True(watch.Elapsed < TestTimeouts.Short, "the receiver parked");
            Thread.Yield();
        }
        pair.Dispose();
        await Assert.ThrowsAsync<ObjectDisposedException>(() => waiter.WaitAsync(TestTimeouts.Long));
        Assert.Throws<ObjectDisposedException>(() => pair.Inbound.TryReceive(out _));
        Assert.Throws<ObjectDisposedException>(() => pair.Outbound.TrySend(1, 0, TransactionFlags.Oneway, [1]));
    }

    [Fact]
    public async Task WaitForTransaction_Cancelled_ThrowsOperationCanceled()
    {
        using var pair = new ChannelPair(ChannelPair.SmallOptions(strategy: WaitStrategy.Park));
        using var cts = new CancellationTokenSource(TimeSpan.FromMilliseconds(50));
        Task waiter = Task.Factory.StartNew(() => pair.Inbound.WaitForTransaction(TestTimeouts.Long, cts.Token), TaskCreationOptions.LongRunning);
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => waiter.WaitAsync(TestTimeouts.Long));
    }

    [Fact]
    public void Free_ClearOnFree_ZeroesTheBufferBeforeItIsReused()
    {
        using var pair = new ChannelPair(ChannelPair.SmallOptions());
        byte[] secret = [.. Enumerable.Repeat((byte)0xA5, 300)];
        Assert.True(pair.Outbound.TrySend(1, 0, TransactionFlags.TwoWay | TransactionFlags.ClearOnFree, secret));
        TransactionRecord record = pair.ReceiveOne();
        Assert.Equal(TransactionFlags.TwoWay | TransactionFlags.ClearOnFree, record.Flags);
        pair.Inbound.Free(record);
        pair.Outbound.DrainFrees();
        // The page is still backed (Available), so what we read is the writer's zeroing, not a punched hole.
        Assert.Equal(1, pair.Outbound.Pages.GetStats().Available);
        Assert.True(pair.Inbound.GetPayload(record).IndexOfAnyExcept((byte)0) < 0);
    }

    [Theory]
    [InlineData(TransactionFlags.TwoWay)]
    [InlineData(TransactionFlags.Reply)]
    [InlineData(TransactionFlags.ErrorReply)]
    public void TrySend_NotOneway_DoesNotChargeTheOnewayQuota(TransactionFlags flags)
    {
        using var pair = new ChannelPair(ChannelPair.SmallOptions());
        Assert.True(pair.Outbound.TrySend(1, 0, flags, new byte[1000]));
        Assert.Equal(pair.Outbound.Allocator.OnewayQuota, pair.Outbound.Allocator.FreeOnewaySpace);
        Assert.Equal(flags, pair.ReceiveOne().Flags);
    }
}
