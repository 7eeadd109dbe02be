using System.Diagnostics;
using PageRange.Diagnostics;
using PageRange.Memory;
using PageRange.Tests.Infrastructure;
using PageRange.Tests.Transport;
using PageRange.Transport;

namespace PageRange.Tests.Diagnostics;

/// <summary>The <c>PageRange</c> meter seen through a <see cref="System.Diagnostics.Metrics.MeterListener"/>, over real connections.</summary>
[Collection(MetricsCollection.Name)]
public sealed class PageRangeMetricsTests(ITestOutputHelper output)
{
    private static readonly int s_page = SharedRegion.PageSize;

    private static PageRangeOptions SmallRegion() => new()
    {
        RegionSize = 256L << 10,
        TransactionRingCapacity = 64,
        FreeRingCapacity = 64,
        RegionFullTimeout = TimeSpan.FromMilliseconds(200),
    };

    [Fact]
    public async Task Counters_OnewayCallAndReply_CountedByKindWithBytesAndFrees()
    {
        using MetricsRecorder metrics = await MetricsRecorder.StartAloneAsync();
        await using LoopbackPair pair = await LoopbackPair.OpenAsync();

        for (int i = 0; i < 3; i++)
        {
            pair.Client.SendOneway(1, new byte[100]);
            using Transaction oneway = pair.Server.Receive();
        }
        Task serving = Task.Run(() =>
        {
            using Transaction call = pair.Server.Receive();
            call.Reply(new byte[50]);
        });
        using (Transaction reply = pair.Client.Call(2, new byte[200], TestTimeouts.Long))
        {
            Assert.Equal(50, reply.Length);
        }
        await serving.WaitAsync(TestTimeouts.Long);

        Assert.Equal(3, metrics.Get("pagerange.transaction.sent", "oneway"));
        Assert.Equal(1, metrics.Get("pagerange.transaction.sent", "call"));
        Assert.Equal(1, metrics.Get("pagerange.transaction.sent", "reply"));
        Assert.Equal(300, metrics.Get("pagerange.payload.sent", "oneway"));
        Assert.Equal(200, metrics.Get("pagerange.payload.sent", "call"));
        Assert.Equal(50, metrics.Get("pagerange.payload.sent", "reply"));
        Assert.Equal(3, metrics.Get("pagerange.transaction.received", "oneway"));
        Assert.Equal(1, metrics.Get("pagerange.transaction.received", "call"));
        Assert.Equal(1, metrics.Get("pagerange.transaction.received", "reply"));
        Assert.Equal(300, metrics.Get("pagerange.payload.received", "oneway"));
        Assert.Equal(200, metrics.Get("pagerange.payload.received", "call"));
        Assert.Equal(50, metrics.Get("pagerange.payload.received", "reply"));
        // Three oneways and the call freed by the server, the reply by the client.
        Assert.Equal(5, metrics.Get("pagerange.buffer.freed"));
        Assert.Equal(0, metrics.Get("pagerange.protocol.violations"));
    }

    [Fact]
    public async Task Counters_DisposeCallWithoutReply_CountsAnErrorReply()
    {
        using MetricsRecorder metrics = await MetricsRecorder.StartAloneAsync();
        await using LoopbackPair pair = await LoopbackPair.OpenAsync();

        Task serving = Task.Run(() =>
        {
            using Transaction call = pair.Server.Receive();
        });
        Assert.Throws<RemoteCallException>(() => pair.Client.Call(2, new byte[8], TestTimeouts.Long).Dispose());
        await serving.WaitAsync(TestTimeouts.Long);

        Assert.Equal(1, metrics.Get("pagerange.transaction.sent", "error_reply"));
        Assert.Equal(1, metrics.Get("pagerange.transaction.received", "error_reply"));
    }

    [Fact]
    public async Task Gauges_HeldAndFreedBuffers_FollowPagesInFlightResidentAndOnewaySpace()
    {
        using MetricsRecorder metrics = await MetricsRecorder.StartAloneAsync();
        metrics.Observe();
        long clients = metrics.Get("pagerange.connection.count", "client");
        long servers = metrics.Get("pagerange.connection.count", "server");
        long used = metrics.Get("pagerange.region.pages", "used");
        long available = metrics.Get("pagerange.region.pages", "available");
        long free = metrics.Get("pagerange.region.pages", "free");
        long outboundInFlight = metrics.Get("pagerange.transaction.in_flight", "outbound");
        long inboundInFlight = metrics.Get("pagerange.transaction.in_flight", "inbound");
        long onewaySpace = metrics.Get("pagerange.oneway.space.available");
        long outboundResident = metrics.Get("pagerange.region.resident", "outbound");

        await using LoopbackPair pair = await LoopbackPair.OpenAsync(SmallRegion(), SmallRegion());
        metrics.Observe();
        // One side connected, the other was accepted by a listener.
        Assert.Equal(clients + 1, metrics.Get("pagerange.connection.count", "client"));
        Assert.Equal(servers + 1, metrics.Get("pagerange.connection.count", "server"));
        long pagesPerRegion = (metrics.Get("pagerange.region.pages", "free") - free) / 2;
        Assert.True(pagesPerRegion > 0);
        long quotaPerRegion = (metrics.Get("pagerange.oneway.space.available") - onewaySpace) / 2;
        Assert.Equal(pagesPerRegion * s_page / 2, quotaPerRegion);

        // Two oneways of three whole pages each, both still unread: six pages Used in the server's region.
        pair.Client.SendOneway(1, new byte[3 * s_page]);
        pair.Client.SendOneway(1, new byte[3 * s_page]);
        metrics.Observe();
        Assert.Equal(used + 6, metrics.Get("pagerange.region.pages", "used"));
        Assert.Equal(outboundInFlight + 2, metrics.Get("pagerange.transaction.in_flight", "outbound"));
        Assert.Equal(onewaySpace + (2 * quotaPerRegion) - (6 * s_page), metrics.Get("pagerange.oneway.space.available"));
        Assert.True(metrics.Get("pagerange.region.resident", "outbound") >= outboundResident + (6 * s_page));
        Assert.True(metrics.Get("pagerange.region.resident", "inbound") >= 6 * s_page);

        // The server takes both off its ring (one delivered, one backlogged behind it): both are in flight inbound.
        Transaction first = pair.Server.Receive();
        Assert.False(pair.Server.TryReceive(out _));
        metrics.Observe();
        Assert.Equal(inboundInFlight + 2, metrics.Get("pagerange.transaction.in_flight", "inbound"));

        first.Dispose();
        pair.Server.Receive().Dispose();
        // The client drains the frees on its next send or within a park timeout: the pages join the LRU. Both looked for
        // together: the gauges are read without the allocator's lock, so one observation can fall inside a drain, after
        // the buffer left the in-flight count and before its pages left Used (seen once, as a non-root run's only
        // difference).
        await EventuallyAsync(() =>
        {
            metrics.Observe();
            return metrics.Get("pagerange.transaction.in_flight", "outbound") == outboundInFlight
                && metrics.Get("pagerange.region.pages", "used") == used;
        });
        Assert.Equal(inboundInFlight, metrics.Get("pagerange.transaction.in_flight", "inbound"));
        Assert.True(metrics.Get("pagerange.region.pages", "available") >= available + 6);
        Assert.Equal(onewaySpace + (2 * quotaPerRegion), metrics.Get("pagerange.oneway.space.available"));

        // The shrinker gives them back: counted, and the pages turn Free.
        long scanned = ReadShrinker(metrics, "pagerange.shrinker.pages.scanned");
        long freed = ReadShrinker(metrics, "pagerange.shrinker.pages.freed");
        long reclaimed = Shrinker.Shared.Scan(long.MaxValue);
        Assert.True(reclaimed >= 6);
        Assert.Equal(freed + reclaimed, ReadShrinker(metrics, "pagerange.shrinker.pages.freed"));
        Assert.True(ReadShrinker(metrics, "pagerange.shrinker.pages.scanned") >= scanned + reclaimed);
        Assert.Equal(0, metrics.Get("pagerange.region.pages", "available"));

        await pair.DisposeAsync();
        metrics.Observe();
        Assert.Equal(clients, metrics.Get("pagerange.connection.count", "client"));
        Assert.Equal(servers, metrics.Get("pagerange.connection.count", "server"));
    }

    [Fact]
    public async Task Counters_RegionFullAndOnewaySpam_CountWaitsFailuresAndSuspects()
    {
        using MetricsRecorder metrics = await MetricsRecorder.StartAloneAsync();
        metrics.Observe();
        long suspects = metrics.Get("pagerange.oneway.spam.suspects");
        await using LoopbackPair pair = await LoopbackPair.OpenAsync(SmallRegion(), SmallRegion());

        // Oneways of four pages, held by the server: the seventh leaves less than a tenth of the area in the quota while
        // the sender holds more than a quarter of it (binder's spam rule); the eighth no longer fits the quota.
        int sent = 0;
        RegionFullException? full = null;
        while (full is null && sent < 64)
        {
            try
            {
                pair.Client.SendOneway(1, new byte[4 * s_page]);
                sent++;
            }
            catch (RegionFullException error)
            {
                full = error;
            }
        }
        output.WriteLine($"{sent} oneways fit; then: {full?.Message}");
        Assert.NotNull(full);
        Assert.Equal(1, metrics.Get("pagerange.region.full.waits"));
        Assert.Equal(1, metrics.Get("pagerange.region.full.failures"));
        metrics.Observe();
        Assert.Equal(suspects + 1, metrics.Get("pagerange.oneway.spam.suspects"));

        // The suspect count outlives the connection: the meter keeps the totals of closed connections.
        await pair.DisposeAsync();
        metrics.Observe();
        Assert.Equal(suspects + 1, metrics.Get("pagerange.oneway.spam.suspects"));
    }

    [Fact]
    public async Task Counters_PeerScribblesAndForgesFrees_CountViolationAndIgnoredFrees()
    {
        using MetricsRecorder metrics = await MetricsRecorder.StartAloneAsync();
        metrics.Observe();
        long ignored = metrics.Get("pagerange.buffer.free.ignored");
        long servers = metrics.Get("pagerange.connection.count", "server");
        await using RawAttack attack = await RawAttack.StartAsync(SmallRegion());
        (RawPeer peer, PageRangeConnection victim) = attack;

        // A free of a buffer the victim never sent: its writer drains it before its next send of more than
        // OutboundChannel.LazyDrainMaxMessage bytes (smaller ones leave frees for a batch) and ignores it.
        peer.Inbound.Free(new TransactionRecord(7, 3L * s_page, 8, 0, TransactionFlags.Oneway));
        victim.SendOneway(1, new byte[OutboundChannel.LazyDrainMaxMessage + 1]);
        metrics.Observe();
        Assert.Equal(ignored + 1, metrics.Get("pagerange.buffer.free.ignored"));

        // A transaction ring tail far ahead of anything published: the victim closes the connection.
        peer.Scribble(RegionHeaderLayout.TxTailOffset, BitConverter.GetBytes(1UL << 40));
        Assert.Throws<ProtocolViolationException>(() => victim.TryReceive(out _));
        Assert.Equal(1, metrics.Get("pagerange.protocol.violations"));
        Assert.False(victim.IsPeerAlive);

        // The violation unmaps the victim's regions before its owner disposes it: what it holds can no longer be read
        // (it leaves the connection count), what it counted still can.
        await EventuallyAsync(() =>
        {
            metrics.Observe();
            return metrics.Get("pagerange.connection.count", "server") == servers;
        });
        Assert.Equal(ignored + 1, metrics.Get("pagerange.buffer.free.ignored"));

        await victim.DisposeAsync();
        metrics.Observe();
        Assert.Equal(ignored + 1, metrics.Get("pagerange.buffer.free.ignored"));
        Assert.Equal(1, metrics.Get("pagerange.protocol.violations"));
    }

    [Fact]
    public async Task HotPath_OnewaySendReceiveFree_AllocatesNothingWithOrWithoutAListener()
    {
        await using LoopbackPair pair = await LoopbackPair.OpenAsync();
        byte[] payload = new byte[64];

        long withoutListener = AllocatedBytesOver(pair, payload, 2000);
        long withListener;
        using (var metrics = new MetricsRecorder())
        {
            // The first measurements create the recorder's dictionary entries and the meter's per-thread tag buffer.
            AllocatedBytesOver(pair, payload, 200);
            withListener = AllocatedBytesOver(pair, payload, 2000);
            Assert.True(metrics.Measurements >= 2000 * 5);
        }
        output.WriteLine($"allocated over 2000 round trips: {withoutListener} bytes without a listener, {withListener} with one");
        Assert.Equal(0, withoutListener);
        Assert.Equal(0, withListener);
    }

    private static long AllocatedBytesOver(LoopbackPair pair, byte[] payload, int count)
    {
        // Warm up this exact loop (tiered compilation, first-use paths) before measuring.
        SendReceiveFree(pair, payload, 100);
        long before = GC.GetAllocatedBytesForCurrentThread();
        SendReceiveFree(pair, payload, count);
        return GC.GetAllocatedBytesForCurrentThread() - before;
    }

    private static void SendReceiveFree(LoopbackPair pair, byte[] payload, int count)
    {
        for (int i = 0; i < count; i++)
        {
            pair.Client.SendOneway(1, payload);
            // The background reader may hold the reader role for a moment (its periodic drain); then the record is
            // ready an instant later. Spinning, unlike a blocking Receive, allocates nothing on any path.
            Transaction transaction;
            var spinner = default(SpinWait);
            while (!pair.Server.TryReceive(out transaction))
            {
                spinner.SpinOnce();
            }
            transaction.Dispose();
        }
    }

    private static long ReadShrinker(MetricsRecorder metrics, string instrument)
    {
        metrics.Observe();
        return metrics.Get(instrument);
    }

    internal static async Task EventuallyAsync(Func<bool> condition)
    {
        var clock = Stopwatch.StartNew();
        while (!condition())
        {
            Assert.True(clock.Elapsed < TestTimeouts.Long, "The condition did not come true in time.");
            await Task.Delay(10);
        }
    }
}
