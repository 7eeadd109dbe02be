using System.Collections.Concurrent;
using System.Diagnostics;
using PageRange.Serialization;
using PageRange.Tests.Infrastructure;
using PageRange.Tests.Serialization;
using PageRange.Transport;
using static PageRange.Tests.Infrastructure.Poll;

namespace PageRange.Tests.Transport;

/// <summary>
/// Asynchronous all the way: calls, oneways and replies wait for room in a full peer region without a blocked thread.
/// In the non-parallel collection: the thread pool's size is measured over the whole process.
/// </summary>
[Collection(CrossProcessCollection.Name)]
public sealed class ConnectionAsyncTests(ITestOutputHelper output)
{
    /// <summary>A oneway payload too large for a pack: one buffer and one record each, as these tests count.</summary>
    private const int Unpacked = PackLayout.MaxPayload + 8;

    private static byte[] Unpackable(byte first)
    {
        byte[] payload = new byte[Unpacked];
        payload[0] = first;
        return payload;
    }

    /// <summary>A peer region that holds only 16 live buffers (the rings' capacity), with a short park timeout.</summary>
    private static PageRangeOptions SmallRings(TimeSpan? regionFullTimeout = null) => new()
    {
        RegionSize = 1 << 20,
        TransactionRingCapacity = 16,
        FreeRingCapacity = 16,
        ParkTimeout = TimeSpan.FromMilliseconds(50),
        RegionFullTimeout = regionFullTimeout ?? TestTimeouts.Long,
    };

    /// <summary>Receives <paramref name="count"/> transactions on a thread and keeps them live, so the sender's view of our region stays full.</summary>
    private static (Thread Thread, ConcurrentQueue<Transaction> Held) Hold(PageRangeConnection connection, int count)
    {
        var held = new ConcurrentQueue<Transaction>();
        var thread = new Thread(() =>
        {
            for (int i = 0; i < count; i++)
            {
                held.Enqueue(connection.Receive());
            }
        })
        { IsBackground = true, Name = "holder" };
        thread.Start();
        return (thread, held);
    }

    [Fact]
    public async Task CallAsync_200OntoAFullRegion_NoThreadBlockedAndAllCompleteOnceThePeerFrees()
    {
        await using ConnectionPair pair = await ConnectionPair.CreateAsync(SmallRings());
        (Thread holder, ConcurrentQueue<Transaction> held) = Hold(pair.Server, 16);
        // Sent at once (16 live buffers fit); their replies come when the holder lets go.
        var first = Enumerable.Range(0, 16).Select(i => pair.Client.CallAsync(1, new byte[] { (byte)i }, TestTimeouts.Long).AsTask()).ToArray();
        Assert.True(holder.Join(TestTimeouts.Long));
        int threadsBefore = ThreadPool.ThreadCount;

        // Started from pool threads, as a server's handlers would: with a blocking wait for room each would hold one, and
        // CallAsync would not return to its caller until room came (it comes only below, once every call waits).
        int returned = 0;
        var calls = Enumerable.Range(0, 200).Select(i => Task.Run(async () =>
        {
            ValueTask<Transaction> pending = pair.Client.CallAsync(2, BitConverter.GetBytes(i), TestTimeouts.Long);
            Interlocked.Increment(ref returned);
            using Transaction reply = await pending;
            return BitConverter.ToInt32(reply.Payload);
        })).ToArray();
        await WaitUntilAsync(() => pair.Client.RoomWaiters == 200 && Volatile.Read(ref returned) == 200, "200 calls return to their callers and wait for room");
        // The pool's size is printed, not asserted: other tests running beside this one make the pool grow too.
        output.WriteLine($"thread pool: {threadsBefore} threads before, {ThreadPool.ThreadCount} while 200 calls wait for room");
        Assert.All(calls, call => Assert.False(call.IsCompleted));

        // The peer lets go: replies to the held calls, then serves the rest.
        using var stop = new CancellationTokenSource();
        while (held.TryDequeue(out Transaction call))
        {
            call.Reply(call.Payload);
            call.Dispose();
        }
        // Their replies fill our region (16 live buffers) until we dispose them.
        foreach (Task<Transaction> call in first)
        {
            (await call.WaitAsync(TestTimeouts.Long)).Dispose();
        }
        Thread echo = ConnectionPair.StartEchoThread(pair.Server, stop.Token);
        int[] answers = await Task.WhenAll(calls).WaitAsync(TestTimeouts.Long);
        await stop.CancelAsync();
        Assert.True(echo.Join(TestTimeouts.Long));
        Assert.Equal(Enumerable.Range(0, 200), answers);
        Assert.Equal(0, pair.Client.RoomWaiters);
    }

    [Fact]
    public async Task CallAsync_FullRegion_CancelledThrowsAndSendsNothing()
    {
        await using ConnectionPair pair = await ConnectionPair.CreateAsync(SmallRings());
        (Thread holder, ConcurrentQueue<Transaction> held) = Hold(pair.Server, 16);
        var first = Enumerable.Range(0, 16).Select(_ => pair.Client.CallAsync(1, new byte[8], TestTimeouts.Long).AsTask()).ToArray();
        Assert.True(holder.Join(TestTimeouts.Long));
        ulong sent = pair.Client.Outbound.Sent;

        using var cancel = new CancellationTokenSource();
        Task<Transaction> waiting = pair.Client.CallAsync(2, new byte[8], TestTimeouts.Long, cancel.Token).AsTask();
        await WaitUntilAsync(() => pair.Client.RoomWaiters == 1, "the call waits for room");
        await cancel.CancelAsync();

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => waiting.WaitAsync(TestTimeouts.Long));
        Assert.Equal(sent, pair.Client.Outbound.Sent);
        Assert.Equal(0, pair.Client.RoomWaiters);
        while (held.TryDequeue(out Transaction call))
        {
            call.Dispose();
        }
        foreach (Task<Transaction> call in first)
        {
            await Assert.ThrowsAsync<RemoteCallException>(() => call.WaitAsync(TestTimeouts.Long));
        }
    }

    [Fact]
    public async Task SendOnewayAsync_FullRegion_RegionFullAfterTheTimeoutWithoutBlocking()
    {
        await using ConnectionPair pair = await ConnectionPair.CreateAsync(SmallRings(TimeSpan.FromMilliseconds(300)));
        // Nobody receives: the 16 oneways stay live in the server's region (each larger than a pack's entry may be, so
        // each is a buffer of its own and 16 fill the live-buffer limit).
        for (int i = 0; i < 16; i++)
        {
            await pair.Client.SendOnewayAsync(1, new byte[Unpacked]).AsTask().WaitAsync(TestTimeouts.Long);
        }

        var clock = Stopwatch.StartNew();
        ValueTask sending = pair.Client.SendOnewayAsync(1, new byte[Unpacked]);
        // It returned to us without waiting: the wait is asynchronous.
        Assert.False(sending.IsCompleted);
        await Assert.ThrowsAsync<RegionFullException>(() => sending.AsTask().WaitAsync(TestTimeouts.Long));
        output.WriteLine($"failed after {clock.Elapsed.TotalMilliseconds:F0} ms");
        Assert.True(clock.Elapsed >= TimeSpan.FromMilliseconds(250), $"failed after {clock.Elapsed}");
        Assert.True(pair.Client.IsPeerAlive);
        Assert.Equal(0, pair.Client.RoomWaiters);
    }

    /// <summary>
    /// Disposing a connection whose room watcher is parked waiting for frees (an async sender waits for room the peer
    /// never frees) ends the watcher's wait at once: the connection's dispose waits for that thread, and before the wait
    /// looked at the writer's wake it parked again after every wake until its park timeout (10 s here).
    /// </summary>
    [Theory]
    [InlineData(WaitStrategy.SpinThenPark)]
    [InlineData(WaitStrategy.BusySpin)]
    public async Task Dispose_WhileTheRoomWatcherWaits_EndsItsWaitAtOnce(WaitStrategy strategy)
    {
        PageRangeOptions options = SmallRings(Timeout.InfiniteTimeSpan);
        options.ParkTimeout = TimeSpan.FromSeconds(10);
        options.WaitStrategy = strategy;
        ConnectionPair pair = await ConnectionPair.CreateAsync(options);
        try
        {
            for (int i = 0; i < 16; i++)
            {
                await pair.Client.SendOnewayAsync(1, new byte[Unpacked]).AsTask().WaitAsync(TestTimeouts.Long);
            }
            Task waiting = pair.Client.SendOnewayAsync(1, new byte[Unpacked]).AsTask();
            await WaitUntilAsync(() => pair.Client.RoomWaiters == 1, "the oneway waits for room");
            await WaitUntilAsync(() => pair.Client.Outbound.RoomWaitParks > 0, "the room watcher parks");

            var disposing = Stopwatch.StartNew();
            pair.Client.Dispose();
            output.WriteLine($"dispose took {disposing.Elapsed.TotalMilliseconds:F1} ms");
            Assert.True(disposing.Elapsed < TimeSpan.FromSeconds(5), $"dispose took {disposing.Elapsed}: the room watcher slept through its wake");
            await Assert.ThrowsAnyAsync<Exception>(() => waiting.WaitAsync(TestTimeouts.Long));
        }
        finally
        {
            await pair.DisposeAsync();
        }
    }

    /// <summary>
    /// A busy-spinning side's room watcher spins before it parks, but never for longer than a sixteenth of the park
    /// timeout, whatever the spin option says: with a spin as long as its waits (which end at the park timeout) it would
    /// spin through every wait of a peer that stopped freeing and never learn to park.
    /// </summary>
    [Fact]
    public async Task RoomWatcher_OfABusySpinningSide_WithASpinLongerThanItsWaits_StillParks()
    {
        PageRangeOptions options = SmallRings(Timeout.InfiniteTimeSpan);
        options.WaitStrategy = WaitStrategy.BusySpin;
        options.SpinDuration = TimeSpan.FromSeconds(1);
        options.ParkTimeout = TimeSpan.FromMilliseconds(20);
        await using ConnectionPair pair = await ConnectionPair.CreateAsync(options);
        for (int i = 0; i < 16; i++)
        {
            await pair.Client.SendOnewayAsync(1, new byte[Unpacked]).AsTask().WaitAsync(TestTimeouts.Long);
        }
        Task waiting = pair.Client.SendOnewayAsync(1, new byte[Unpacked]).AsTask();
        await WaitUntilAsync(() => pair.Client.RoomWaiters == 1, "the oneway waits for room");
        await WaitUntilAsync(() => pair.Client.Outbound.RoomWaitParks > 0, "the room watcher parks");
        // The peer frees: the waiting oneway goes.
        using (Transaction first = await pair.Server.ReceiveAsync().AsTask().WaitAsync(TestTimeouts.Long))
        {
        }
        await waiting.WaitAsync(TestTimeouts.Long);
    }

    [Fact]
    public async Task SendOnewayAsync_RegionFreesLater_CompletesInOrder()
    {
        await using ConnectionPair pair = await ConnectionPair.CreateAsync(SmallRings());
        // A buffer each (larger than a pack's entry may be): 16 fill the live-buffer limit.
        for (int i = 0; i < 16; i++)
        {
            await pair.Client.SendOnewayAsync(1, Unpackable((byte)i)).AsTask().WaitAsync(TestTimeouts.Long);
        }
        Task later = pair.Client.SendOnewayAsync(1, Unpackable(16)).AsTask();
        await WaitUntilAsync(() => pair.Client.RoomWaiters == 1, "the oneway waits for room");

        var seen = new List<byte>();
        for (int i = 0; i < 17; i++)
        {
            using Transaction message = await pair.Server.ReceiveAsync().AsTask().WaitAsync(TestTimeouts.Long);
            seen.Add(message.Payload[0]);
        }
        await later.WaitAsync(TestTimeouts.Long);
        Assert.Equal(Enumerable.Range(0, 17).Select(i => (byte)i), seen);
    }

    [Fact]
    public async Task ReplyAsync_CallersRegionFull_WaitsThenArrives()
    {
        PageRangeOptions options = SmallRings();
        await using ConnectionPair pair = await ConnectionPair.CreateAsync(options);
        // The server fills the client's region with oneways the client holds, then replies asynchronously to a call.
        for (int i = 0; i < 16; i++)
        {
            // A buffer each (larger than a pack's entry may be): 16 fill the live-buffer limit.
            pair.Server.SendOneway(5, new byte[Unpacked]);
        }
        Task<Transaction> call = pair.Client.CallAsync(1, new byte[] { 7 }, TestTimeouts.Long).AsTask();
        using Transaction incoming = await pair.Server.ReceiveAsync().AsTask().WaitAsync(TestTimeouts.Long);
        ValueTask replying = incoming.ReplyAsync(new byte[] { 8 });
        Assert.False(replying.IsCompleted);

        // The client drains its oneways one at a time (binder's order), which frees room for the reply.
        for (int i = 0; i < 16; i++)
        {
            using Transaction oneway = await pair.Client.ReceiveAsync().AsTask().WaitAsync(TestTimeouts.Long);
        }
        await replying.AsTask().WaitAsync(TestTimeouts.Long);
        using Transaction reply = await call.WaitAsync(TestTimeouts.Long);
        Assert.Equal([8], reply.Payload.ToArray());
    }

    [Fact]
    public async Task TypedAsyncForms_SmallAndLarge_RoundTrip()
    {
        await using ConnectedPair pair = await ConnectedPair.CreateAsync();
        using var stop = new CancellationTokenSource();
        var server = Task.Run(async () =>
        {
            for (int i = 0; i < 4; i++)
            {
                using Transaction transaction = await pair.Server.ReceiveAsync(stop.Token);
                Order order = transaction.Deserialize<Order>();
                if (transaction.IsTwoWay)
                {
                    await transaction.ReplyAsync(order.WithId(order.Id + 1000));
                }
            }
        });

        Order small = await pair.Client.CallAsync<Order, Order>(Order.Sample(1, 1, 10)).AsTask().WaitAsync(TestTimeouts.Long);
        Order large = await pair.Client.CallAsync<Order, Order>(Order.Sample(2, 50, 20_000)).AsTask().WaitAsync(TestTimeouts.Long);
        await pair.Client.SendOnewayAsync(Order.Sample(3, 1, 10)).AsTask().WaitAsync(TestTimeouts.Long);
        await pair.Client.SendOnewayAsync(Order.Sample(4, 50, 20_000)).AsTask().WaitAsync(TestTimeouts.Long);

        await server.WaitAsync(TestTimeouts.Long);
        Assert.Equal(1001, small.Id);
        Assert.Equal(1002, large.Id);
        Assert.Equal(Order.Sample(2, 50, 20_000).Attachment, large.Attachment);
    }
}
