using PageRange.Memory;
using PageRange.Tests.Infrastructure;
using PageRange.Transport;
using static PageRange.Tests.Infrastructure.Poll;

namespace PageRange.Tests.Transport;

/// <summary>
/// Small oneways between two connections travel in packs: still one at a time and in order for the receiver, a slow
/// receiver never runs the connection out of slots, and an idle stream's pack is sealed, freed and its pages reclaimed.
/// </summary>
public sealed class ConnectionPackTests
{
    [Fact]
    public async Task SendOneway_SmallMessages_ReceivedOneAtATimeInOrderFromPacks()
    {
        await using ConnectionPair pair = await ConnectionPair.CreateAsync();
        // Three packs of 64 entries (4-byte payloads): room for the fourth a loaded machine's housekeeping may need if it
        // seals one early (the writer keeps at most four live, and nothing is freed before the receives below).
        const int count = 150;
        for (int i = 0; i < count; i++)
        {
            pair.Client.SendOneway((uint)i, BitConverter.GetBytes(i));
        }
        Assert.True(pair.Client.Outbound.PackedSent >= count);
        Assert.True(pair.Client.Outbound.Sent < 10, $"{pair.Client.Outbound.Sent} records for {count} messages");
        for (int i = 0; i < count; i++)
        {
            using Transaction transaction = await pair.Server.ReceiveAsync().AsTask().WaitAsync(TestTimeouts.Long);
            Assert.Equal((uint)i, transaction.Code);
            Assert.Equal(i, BitConverter.ToInt32(transaction.Payload));
            Assert.True(transaction.IsOneway);
            // binder's rule: the next oneway is not handed out while this one is held.
            Assert.False(pair.Server.TryReceive(out _));
        }
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task SendOneway_PackOpenWithRoom_AfterThePeersEndOrOwnDispose_TypedErrorAndNothingAppended(bool disposeOwnEnd)
    {
        // A stream's oneway goes straight into the open pack (no general path): the checks it skips must still hold.
        await using ConnectionPair pair = await ConnectionPair.CreateAsync();
        pair.Client.SendOneway(1, new byte[16]);
        Assert.True(pair.Client.Outbound.OpenPackOffset >= 0, "the first small oneway opened a pack");
        long packedBefore = pair.Client.Outbound.PackedSent;

        if (disposeOwnEnd)
        {
            pair.Client.Dispose();
            Assert.Throws<ObjectDisposedException>(() => pair.Client.SendOneway(2, new byte[16]));
            await Assert.ThrowsAsync<ObjectDisposedException>(() => pair.Client.SendOnewayAsync(2, new byte[16]).AsTask());
        }
        else
        {
            pair.Server.Dispose();
            await WaitUntilAsync(() => !pair.Client.IsPeerAlive, "the client saw its peer's end");
            Assert.Throws<PeerDiedException>(() => pair.Client.SendOneway(2, new byte[16]));
            await Assert.ThrowsAsync<PeerDiedException>(() => pair.Client.SendOnewayAsync(2, new byte[16]).AsTask());
        }
        Assert.Equal(packedBefore, pair.Client.Outbound.PackedSent);
    }

    [Fact]
    public async Task Call_BehindPacksOfOnewaysAHandlerHolds_DeliveredToAnotherReceiverAtOnce()
    {
        // binder routes a call past a node's queued oneways. Here the first oneway's handler holds it until the call
        // behind every pack the writer may keep live, full, and 50 oneways more (records of their own) is answered by
        // another thread: the receiver must take every pack whole to reach the call (it stopped after 32 packed
        // messages before the writer's promise of at most so many live packs, and this hung until the timeout).
        // Rings of 1024: the idle housekeeping may seal a pack early on a loaded machine, so more of the oneways may go as
        // records of their own than the default 64 live buffers hold before the server receives anything.
        PageRangeOptions options = ConnectionPair.DefaultOptions();
        options.TransactionRingCapacity = 1024;
        options.FreeRingCapacity = 1024;
        await using ConnectionPair pair = await ConnectionPair.CreateAsync(options);
        int perPack = (PackLayout.Capacity - PackLayout.HeaderSize) / PackLayout.EntrySize(64);
        int onewaysBefore = pair.Client.Outbound.MaxLivePacks * perPack + 50;
        for (int i = 0; i < onewaysBefore; i++)
        {
            pair.Client.SendOneway((uint)i, new byte[64]);
        }
        Assert.Equal(PackLayout.MaxLivePacks, pair.Client.Outbound.MaxLivePacks);
        Assert.True(pair.Client.Outbound.PacksOpened >= PackLayout.MaxLivePacks);

        using var answered = new ManualResetEventSlim();
        using var holding = new ManualResetEventSlim();
        Task<int> handler = Task.Factory.StartNew(() =>
        {
            using (Transaction first = pair.Server.Receive())
            {
                Assert.Equal(0u, first.Code);
                holding.Set();
                Assert.True(answered.Wait(TestTimeouts.Long), "the call behind the oneways was answered while this one is held");
            }
            int next = 1;
            while (next < onewaysBefore)
            {
                using Transaction oneway = pair.Server.Receive();
                Assert.Equal((uint)next, oneway.Code);
                next++;
            }
            return next;
        }, TaskCreationOptions.LongRunning);
        // The second receiver starts once the first holds oneway 0: otherwise it could be the one to take it.
        Assert.True(holding.Wait(TestTimeouts.Long), "the handler took the first oneway");
        Task callee = Task.Factory.StartNew(() =>
        {
            using Transaction call = pair.Server.Receive();
            Assert.True(call.IsTwoWay, $"got code {call.Code} ({(call.IsOneway ? "oneway" : "call")}) instead of the call");
            call.Reply([42]);
            answered.Set();
        }, TaskCreationOptions.LongRunning);

        using Transaction reply = await Task.Run(() => pair.Client.Call(7777, [1], TestTimeouts.Long)).WaitAsync(TestTimeouts.Long);
        Assert.Equal(42, reply.Payload[0]);
        await callee.WaitAsync(TestTimeouts.Long);
        Assert.Equal(onewaysBefore, await handler.WaitAsync(TestTimeouts.Long));
    }

    [Fact]
    public async Task SendOneway_BurstThenIdle_PackSealedFreedAndTheShrinkerReclaimsThePages()
    {
        await using ConnectionPair pair = await ConnectionPair.CreateAsync();
        SharedRegion serverRegion = pair.Server.Inbound.Region;
        long header = pair.Server.Inbound.Layout.HeaderBytes;
        for (int i = 0; i < 40; i++)
        {
            pair.Client.SendOneway(1, new byte[200]);
        }
        for (int i = 0; i < 40; i++)
        {
            using Transaction transaction = await pair.Server.ReceiveAsync().AsTask().WaitAsync(TestTimeouts.Long);
        }
        Assert.True(serverRegion.ResidentBytes > header);

        // Nothing more is sent: the client's housekeeping seals the pack, the server's background reader finishes it and
        // frees it, and the client's next housekeeping takes the free, so its pages join the LRU.
        await WaitUntilAsync(() => pair.Client.Outbound.LiveBuffers == 0 && pair.Client.Outbound.OpenPackOffset < 0, "the idle writer's pack was sealed and freed");
        Shrinker.Shared.Scan(long.MaxValue);
        Assert.Equal(header, serverRegion.ResidentBytes);
    }

    [Fact]
    public async Task SendOneway_SlowReceiverManyMessages_NeverRunsOutOfSlotsAllInOrder()
    {
        await using ConnectionPair pair = await ConnectionPair.CreateAsync();
        const int count = 5_000;
        var sender = Task.Run(() =>
        {
            for (int i = 0; i < count; i++)
            {
                pair.Client.SendOneway((uint)i, BitConverter.GetBytes(i));
            }
        });
        // Let the writer fill packs (and the region) ahead of us before we start.
        await Task.Delay(100);
        for (int i = 0; i < count; i++)
        {
            using Transaction transaction = pair.Server.Receive(new CancellationTokenSource(TestTimeouts.Long).Token);
            Assert.Equal((uint)i, transaction.Code);
            Assert.True(pair.Server.Inbound.PackedLive <= InboundChannel.MaxPackedLive);
        }
        await sender.WaitAsync(TestTimeouts.Long);
    }

    [Fact]
    public async Task IncomingSlots_MadeTheFirstTimeEachIsTakenAndReused()
    {
        // A connection keeps a slot for every packed message its peer may hold live (over a thousand): it makes them as
        // its traffic needs them, not up front.
        await using ConnectionPair pair = await ConnectionPair.CreateAsync();
        (int made, int capacity) = pair.Server.IncomingSlotsForTest;
        Assert.Equal(1, made);
        Assert.True(capacity > InboundChannel.MaxPackedLive, $"{capacity} slots");

        using var timeout = new CancellationTokenSource(TestTimeouts.Long);
        // Calls, not oneways: a connection hands out its oneways one at a time, each after the one before was freed.
        const int held = 20;
        var calls = new List<Task>();
        for (int i = 0; i < held; i++)
        {
            calls.Add(pair.Client.CallAsync((uint)i, new byte[64], TestTimeouts.Long).AsTask().ContinueWith(call => call.Result.Dispose(), TaskScheduler.Default));
        }
        var holding = new List<Transaction>();
        for (int i = 0; i < held; i++)
        {
            holding.Add(pair.Server.Receive(timeout.Token));
        }
        int madeWhileHolding = pair.Server.IncomingSlotsForTest.Made;
        Assert.InRange(madeWhileHolding, held + 1, held + 1 + InboundChannel.ReceiveBatch);
        holding.ForEach(transaction =>
        {
            transaction.Reply([]);
            transaction.Dispose();
        });
        await Task.WhenAll(calls).WaitAsync(TestTimeouts.Long);

        // One at a time from now on: the slots made already are taken again, none is made.
        for (int i = 0; i < 1_000; i++)
        {
            pair.Client.SendOneway((uint)i, new byte[64]);
            using Transaction transaction = pair.Server.Receive(timeout.Token);
            Assert.Equal((uint)i, transaction.Code);
        }
        Assert.Equal(madeWhileHolding, pair.Server.IncomingSlotsForTest.Made);
    }

    [Fact]
    public async Task SendOneway_InterleavedWithCalls_OnewayOrderKeptAndCallsAnswered()
    {
        await using ConnectionPair pair = await ConnectionPair.CreateAsync();
        using var stop = new CancellationTokenSource();
        var received = new List<uint>();
        var oneways = new List<uint>();
        var server = new Thread(() =>
        {
            try
            {
                while (true)
                {
                    using Transaction transaction = pair.Server.Receive(stop.Token);
                    lock (received)
                    {
                        received.Add(transaction.Code);
                        if (transaction.IsOneway)
                        {
                            oneways.Add(transaction.Code);
                        }
                    }
                    if (transaction.IsTwoWay)
                    {
                        transaction.Reply(transaction.Payload);
                    }
                }
            }
            catch (OperationCanceledException)
            {
            }
        })
        { IsBackground = true };
        server.Start();
        uint code = 0;
        var sentOneways = new List<uint>();
        for (int round = 0; round < 50; round++)
        {
            for (int i = 0; i < round % 7; i++)
            {
                sentOneways.Add(code);
                pair.Client.SendOneway(code++, new byte[32]);
            }
            uint callCode = code++;
            using Transaction reply = pair.Client.Call(callCode, BitConverter.GetBytes(callCode), TestTimeouts.Long);
            Assert.Equal(callCode, BitConverter.ToUInt32(reply.Payload));
        }
        await WaitUntilAsync(() => { lock (received) { return received.Count == (int)code; } }, "every message arrived");
        stop.Cancel();
        server.Join(TestTimeouts.Long);
        // binder's rule: oneways are in order among themselves (a call may overtake a backlogged oneway, as before packs).
        Assert.Equal(sentOneways, oneways);
        Assert.Equal(Enumerable.Range(0, (int)code).Select(i => (uint)i), received.Order());
    }
}
