using System.Diagnostics;
using PageRange.Allocation;
using PageRange.Memory;
using PageRange.Tests.Infrastructure;
using PageRange.Transport;
using Xunit.Abstractions;

namespace PageRange.Tests.Transport;

/// <summary>
/// A raw receiver (<see cref="RawReceiverPeer"/>) misbehaves with valid values: the writer's work stays bounded, frees of
/// undelivered buffers are ignored, and what the writer backed in the peer's region goes when the channel closes.
/// </summary>
[Trait("Category", "Hostile")]
public sealed class ChannelHostileTests(ITestOutputHelper output)
{
    private static readonly int s_page = SharedRegion.PageSize;

    private static ChannelOptions Options(int rings = 64, int pages = 64, bool clear = false) => new()
    {
        RegionSize = (long)pages * s_page,
        TxRingCapacity = rings,
        FreeRingCapacity = rings,
        WaitStrategy = WaitStrategy.SpinThenPark,
        SpinDuration = TimeSpan.FromMicroseconds(10),
        ParkTimeout = TimeSpan.FromMilliseconds(50),
        ClearBuffersOnFree = clear,
    };

    private static string UniqueName(string what) => $"hostile-{what}-{Guid.NewGuid():N}"[..40];

    /// <summary>Fills every live-buffer slot with an undelivered oneway buffer and returns their offsets.</summary>
    /// <remarks>
    /// The buffers are larger than a slab's slot and a pack's entry, so each is a buffer of its own: a stray free of those is ignored
    /// (binder's rule), where one inside a slab is a violation (<see cref="ChannelSlabHostileTests"/>).
    /// </remarks>
    private static ulong[] FillLiveBuffers(ChannelPair pair, RawReceiverPeer peer)
    {
        int live = pair.Inbound.MaxLiveBuffers;
        for (int i = 0; i < live; i++)
        {
            Assert.True(pair.Outbound.TrySend((ulong)i, 0, TransactionFlags.Oneway, new byte[PackLayout.MaxPayload + 8]));
        }
        Assert.False(pair.Outbound.TrySend(999, 0, TransactionFlags.Oneway, new byte[8]));
        // Offsets of live (but undelivered) buffers, plus offsets no buffer starts at: every free is valid and ignored.
        return [.. Enumerable.Range(0, live).Select(i => peer.PeekRecord((ulong)i).BufferOffset), 8, 24, (ulong)s_page];
    }

    /// <summary>Runs <paramref name="victim"/> while the peer floods the free ring, and stops the flood afterwards.</summary>
    private async Task<T> WhileFloodingAsync<T>(ChannelPair pair, ulong[] offsets, Func<T> victim)
    {
        var peer = new RawReceiverPeer(pair);
        using var stop = new CancellationTokenSource();
        using var started = new ManualResetEventSlim();
        Task<long> flood = Task.Factory.StartNew(() => peer.FloodFrees(offsets, stop.Token, started), TaskCreationOptions.LongRunning);
        try
        {
            Assert.True(started.Wait(TestTimeouts.Long), "the peer keeps the free ring busy");
            return await Task.Run(victim).WaitAsync(TestTimeouts.Long);
        }
        finally
        {
            await stop.CancelAsync();
            long published = await flood.WaitAsync(TestTimeouts.Long);
            output.WriteLine($"the peer published {published} frees");
        }
    }

    [Fact]
    public async Task DrainFrees_PeerKeepsTheFreeRingBusy_EachCallTakesAtMostOneRing()
    {
        using var pair = new ChannelPair(Options(rings: 64), UniqueName("drain"));
        var peer = new RawReceiverPeer(pair);
        ulong[] offsets = FillLiveBuffers(pair, peer);

        int[] drained = await WhileFloodingAsync(pair, offsets, () => Enumerable.Range(0, 50).Select(_ => pair.Outbound.DrainFrees()).ToArray());

        Assert.All(drained, count => Assert.InRange(count, 0, 64));
        Assert.Contains(drained, count => count > 0);
        // Every free named a buffer still on the ring or no buffer: all ignored, nothing given back.
        Assert.Equal(pair.Outbound.Layout.MaxLiveBuffers, pair.Outbound.LiveBuffers);
        Assert.True(pair.Outbound.UndeliveredFrees > 0);
    }

    [Fact]
    public async Task Send_PeerKeepsTheFreeRingBusy_FailsWithRegionFullAfterItsTimeout()
    {
        using var pair = new ChannelPair(Options(), UniqueName("send"));
        ulong[] offsets = FillLiveBuffers(pair, new RawReceiverPeer(pair));
        var timer = Stopwatch.StartNew();

        Exception? error = await WhileFloodingAsync(pair, offsets, () => Record.Exception(
            () => pair.Outbound.Send(1000, 0, TransactionFlags.Oneway, new byte[8], TimeSpan.FromMilliseconds(300), CancellationToken.None)));

        Assert.IsType<RegionFullException>(error);
        output.WriteLine($"RegionFullException after {timer.Elapsed}");
    }

    [Fact]
    public async Task Send_PeerKeepsTheFreeRingBusy_CancellationEndsAnInfiniteWait()
    {
        using var pair = new ChannelPair(Options(), UniqueName("cancel"));
        ulong[] offsets = FillLiveBuffers(pair, new RawReceiverPeer(pair));
        using var cancel = new CancellationTokenSource(TimeSpan.FromMilliseconds(300));

        Exception? error = await WhileFloodingAsync(pair, offsets, () => Record.Exception(
            () => pair.Outbound.Send(1000, 0, TransactionFlags.Oneway, new byte[8], Timeout.InfiniteTimeSpan, cancel.Token)));

        Assert.IsAssignableFrom<OperationCanceledException>(error);
    }

    [Fact]
    public async Task Dispose_WhileASendWaitsAndThePeerKeepsTheFreeRingBusy_ReturnsAndTheSendSeesIt()
    {
        using var pair = new ChannelPair(Options(), UniqueName("dispose"));
        ulong[] offsets = FillLiveBuffers(pair, new RawReceiverPeer(pair));

        Exception? error = await WhileFloodingAsync(pair, offsets, () =>
        {
            Task<Exception?> send = Task.Factory.StartNew<Exception?>(
                () => Record.Exception(() => pair.Outbound.Send(1000, 0, TransactionFlags.Oneway, new byte[8], Timeout.InfiniteTimeSpan, CancellationToken.None)),
                TaskCreationOptions.LongRunning);
            // Let the send enter its loop (it cannot finish: every slot stays live), then close under it.
            Assert.False(send.Wait(TimeSpan.FromMilliseconds(200)));
            pair.Outbound.Dispose();
            return send.WaitAsync(TestTimeouts.Long).GetAwaiter().GetResult();
        });

        Assert.IsType<ObjectDisposedException>(error);
    }

    [Fact]
    public void Free_RecordStillOnTheRing_IsIgnoredCountedAndItsBytesStay()
    {
        using var pair = new ChannelPair(Options(rings: 16, pages: 16), UniqueName("undelivered"));
        var peer = new RawReceiverPeer(pair);
        byte[] first = Enumerable.Repeat((byte)0xA1, 100).ToArray();
        byte[] second = Enumerable.Repeat((byte)0xB2, 100).ToArray();
        Assert.True(pair.Outbound.TrySend(1, 0, TransactionFlags.TwoWay, first));
        Assert.True(pair.Outbound.TrySend(2, 0, TransactionFlags.TwoWay, second));
        TransactionRecordLayout a = peer.PeekRecord(0);
        TransactionRecordLayout b = peer.PeekRecord(1);

        // The peer takes the first record off the ring, then frees both: only the first was delivered.
        peer.AdvanceTxHead(1);
        peer.PublishFree(a.BufferOffset, 1);
        peer.PublishFree(b.BufferOffset, 2);
        Assert.Equal(2, pair.Outbound.DrainFrees());

        Assert.Equal(1, pair.Outbound.UndeliveredFrees);
        Assert.Equal(1, pair.Outbound.IgnoredFrees);
        Assert.Equal(1, pair.Outbound.LiveBuffers);
        // The undelivered buffer was not given back: a new buffer goes elsewhere, and its bytes are still there.
        Assert.True(pair.Outbound.TrySend(3, 0, TransactionFlags.TwoWay, Enumerable.Repeat((byte)0xC3, 100).ToArray()));
        TransactionRecordLayout c = peer.PeekRecord(2);
        Assert.NotEqual(b.BufferOffset, c.BufferOffset);
        Assert.Equal(second, pair.Inbound.Region.GetSpan(pair.Inbound.Layout.DataOffset + (long)b.BufferOffset, 100).ToArray());

        // Once the peer has taken it off the ring, the same free is honoured.
        peer.AdvanceTxHead(2);
        peer.PublishFree(b.BufferOffset, 2);
        peer.PublishFree(c.BufferOffset, 3);
        Assert.Equal(2, pair.Outbound.DrainFrees());
        Assert.Equal(0, pair.Outbound.LiveBuffers);
        Assert.Equal(1, pair.Outbound.UndeliveredFrees);
    }

    [Fact]
    public void ClearBuffersOnFree_SendWithoutTheFlag_ReceiverSeesItAndTheBufferIsZeroedOnFree()
    {
        using var pair = new ChannelPair(Options(rings: 16, pages: 16, clear: true), UniqueName("clear"));
        Assert.True(pair.Outbound.ClearBuffersOnFree);
        Assert.True(pair.Outbound.TrySend(1, 0, TransactionFlags.TwoWay, Enumerable.Repeat((byte)0x5A, 300).ToArray()));
        TransactionRecord record = pair.ReceiveOne();
        Assert.True((record.Flags & TransactionFlags.ClearOnFree) != 0);
        ReadOnlySpan<byte> bytes = pair.Inbound.GetPayload(record);
        Assert.Equal(0x5A, bytes[299]);

        pair.Inbound.Free(record);
        Assert.Equal(1, pair.Outbound.DrainFrees());
        Assert.True(pair.Inbound.GetPayload(record).IndexOfAnyExcept((byte)0) < 0, "the freed buffer reads as zeros");

        // The zero-copy path too: the reservation is clear-on-free, and a commit without the flag is accepted.
        Assert.True(pair.Outbound.TryReserve(64, oneway: false, out PendingBuffer buffer));
        Assert.True(buffer.ClearOnFree);
        buffer.Span.Fill(0x77);
        pair.Outbound.Commit(ref buffer, 64, 2, 0, TransactionFlags.TwoWay);
        Assert.True((pair.ReceiveOne().Flags & TransactionFlags.ClearOnFree) != 0);
    }

    [Fact]
    public void Dispose_LiveClearOnFreeBuffer_IsZeroedEvenWhenThePunchFails()
    {
        using var pair = new ChannelPair(Options(rings: 16, pages: 16), UniqueName("clearclose"));
        pair.Outbound.Region.PunchFaultInjector = _ => true;
        Assert.True(pair.Outbound.TrySend(1, 0, TransactionFlags.TwoWay | TransactionFlags.ClearOnFree, Enumerable.Repeat((byte)0x11, 200).ToArray()));
        Assert.True(pair.Outbound.TrySend(2, 0, TransactionFlags.TwoWay, Enumerable.Repeat((byte)0x22, 200).ToArray()));
        TransactionRecord secret = pair.ReceiveOne();
        TransactionRecord plain = pair.ReceiveOne();

        pair.Outbound.Dispose();

        Assert.True(pair.Outbound.Pages.DisposePunchFailed);
        Assert.True(pair.Inbound.GetPayload(secret).IndexOfAnyExcept((byte)0) < 0, "a live clear-on-free buffer is zeroed when the connection ends");
        Assert.Equal(0x22, pair.Inbound.GetPayload(plain)[199]);
    }

    [Fact]
    public void Dispose_PeerKeepsItsRegionOpen_EveryPageTheWriterBackedIsPunched()
    {
        string name = UniqueName("punch");
        using var pair = new ChannelPair(Options(rings: 16, pages: 64), name);
        long header = pair.Inbound.Layout.HeaderBytes;
        Assert.True(pair.Outbound.TrySend(1, 0, TransactionFlags.TwoWay, new byte[40 * s_page]));
        Assert.True(pair.Outbound.TrySend(2, 0, TransactionFlags.Oneway, new byte[3 * s_page]));
        pair.ReceiveOne();
        pair.ReceiveOne();
        // One buffer delivered and freed (its pages Available), two still live (Used): all must go.
        Assert.True(pair.Outbound.TrySend(3, 0, TransactionFlags.Oneway, new byte[2 * s_page]));
        pair.Inbound.Free(pair.ReceiveOne());
        Assert.Equal(1, pair.Outbound.DrainFrees());
        Assert.True(pair.Inbound.Region.ResidentBytes >= header + (45L * s_page));
        (int descriptors, int mappings) before = CountOwn(name);

        pair.Outbound.Dispose();

        // The peer (the inbound side here) still holds its descriptor and mapping, and its region holds nothing we backed.
        Assert.Equal(header, pair.Inbound.Region.ResidentBytes);
        Assert.False(pair.Outbound.Pages.DisposePunchFailed);
        (int descriptors, int mappings) after = CountOwn(name);
        Assert.Equal(before.descriptors - 1, after.descriptors);
        Assert.True(after.mappings < before.mappings, $"the writer's mapping is gone ({before.mappings} -> {after.mappings})");
        Assert.True(after.mappings > 0 && after.descriptors > 0, "the peer's are still there");
    }

    [Fact]
    public void OutboundChannel_PeerAnnounces1GiB_CostsKilobytesUntilUsed()
    {
        var options = new ChannelOptions { RegionSize = 1L << 30, TxRingCapacity = 1024, FreeRingCapacity = 1024 };
        using InboundChannel inbound = InboundChannel.Create(UniqueName("gib"), options);
        SharedRegion view = SharedRegion.Open(Interop.Dup(inbound.Region.Handle), inbound.Region.Size, inbound.Region.Size);
        var shrinker = new Shrinker();

        long before = GC.GetAllocatedBytesForCurrentThread();
        using var outbound = new OutboundChannel(view, options, shrinker);
        long opened = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.True(outbound.TrySend(1, 0, TransactionFlags.TwoWay, new byte[100]));
        long afterOneSend = GC.GetAllocatedBytesForCurrentThread() - before;

        output.WriteLine($"opening a 1 GiB peer region: {opened} managed bytes; after one send: {afterOneSend}");
        Assert.Equal((int)(options.Validate().DataSize / s_page), outbound.Pages.PageCount);
        Assert.True(outbound.Pages.PageCount > 200_000);
        Assert.InRange(opened, 1, 64 * 1024);
        Assert.Equal(1, outbound.Pages.AllocatedChunks);
        Assert.InRange(afterOneSend, opened, opened + (64 * 1024));
    }

    private static (int Descriptors, int Mappings) CountOwn(string name)
    {
        int descriptors = 0;
        foreach (string fd in Directory.EnumerateFileSystemEntries("/proc/self/fd"))
        {
            try
            {
                if (new FileInfo(fd).LinkTarget?.Contains(name, StringComparison.Ordinal) == true)
                {
                    descriptors++;
                }
            }
            catch (IOException)
            {
                // A descriptor closed while we listed them.
            }
        }
        int mappings = File.ReadLines("/proc/self/maps").Count(line => line.Contains(name, StringComparison.Ordinal));
        return (descriptors, mappings);
    }
}
