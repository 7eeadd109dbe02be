using System.Buffers.Binary;
using System.Collections.Concurrent;
using PageRange.Memory;
using PageRange.Tests.Infrastructure;
using PageRange.Transport;
using static PageRange.Tests.Infrastructure.Poll;

namespace PageRange.Tests.Transport;

/// <summary>
/// The connection's receiver in batches: a pass takes what the ring holds with one head store, a receiver that is
/// behind holds its small frees for a batch and publishes them when it catches up, before it waits, or when the
/// writer waits for room; oneways stay one at a time and in order, and a writer filling a small region never hangs.
/// </summary>
public sealed class ConnectionReceiveBatchTests
{
    /// <summary>
    /// A small oneway too large for a pack: a buffer and a free each, still small enough for its free to wait for a
    /// batch, which the tests below count (a pack's messages have no free of their own).
    /// </summary>
    private const int Unpacked = PackLayout.MaxPayload + 8;

    [Fact]
    public async Task Receive_BehindOnSmallOneways_FreesHeldForABatchAndAllPublishedWhenCaughtUp()
    {
        await using ConnectionPair pair = await ConnectionPair.CreateAsync();
        const int count = 40;
        for (int i = 0; i < count; i++)
        {
            pair.Client.SendOneway((uint)i, new byte[Unpacked]);
        }
        InboundChannel inbound = pair.Server.Inbound;
        using var bound = new CancellationTokenSource(TestTimeouts.Long);
        bool sawHeld = false;

        for (int i = 0; i < count; i++)
        {
            using (Transaction transaction = pair.Server.Receive(bound.Token))
            {
                Assert.Equal((uint)i, transaction.Code);
                // binder's rule as the handler sees it: one oneway at a time.
                Assert.False(pair.Server.TryReceive(out _));
                if (i == 0)
                {
                    // The first receive took every record the ring held in one pass (one head store for the batch).
                    Assert.Equal((ulong)count, inbound.Received);
                }
            }
            ulong published = inbound.Freed;
            int held = inbound.UnpublishedFrees;
            sawHeld |= held > 0;
            Assert.Equal((ulong)(i + 1), published + (ulong)held);
            Assert.True(held < InboundChannel.FreeBatch, $"{held} frees held after {i + 1}");
        }

        Assert.True(sawHeld, "the receiver, behind by 40 messages, never held a free for a batch");
        // Caught up: the last release found nothing more ready and published everything.
        Assert.Equal(0, inbound.UnpublishedFrees);
        Assert.Equal((ulong)count, inbound.Freed);
        await WaitUntilAsync(() => pair.Client.Outbound.LiveBuffers == 0, "the writer took every free back");
    }

    [Fact]
    public async Task Receive_FreeHeldThenTheApplicationStopsReceiving_PublishedWithinAParkTimeout()
    {
        await using ConnectionPair pair = await ConnectionPair.CreateAsync();
        for (int i = 0; i < 3; i++)
        {
            pair.Client.SendOneway((uint)i, new byte[Unpacked]);
        }
        using var bound = new CancellationTokenSource(TestTimeouts.Long);
        using (Transaction first = pair.Server.Receive(bound.Token))
        {
            Assert.Equal(0u, first.Code);
        }
        // The second oneway is ready and nobody takes it: the held free must still reach the writer (the housekeeping).
        await WaitUntilAsync(() => pair.Server.Inbound.UnpublishedFrees == 0 && pair.Server.Inbound.Freed == 1, "the held free was published");
        await WaitUntilAsync(() => pair.Client.Outbound.LiveBuffers == 2, "the writer took the free back");
    }

    [Fact]
    public async Task Release_BackloggedOnewayWhileAnotherThreadHoldsTheRoleAndNobodyIsParked_NoFutexWake()
    {
        await using ConnectionPair pair = await ConnectionPair.CreateAsync();
        for (int i = 0; i < 3; i++)
        {
            pair.Client.SendOneway((uint)i, new byte[64]);
        }
        using var bound = new CancellationTokenSource(TestTimeouts.Long);
        Transaction first = pair.Server.Receive(bound.Token);
        // All three routed (the background reader routes what the first receive left on the ring): two wait behind it.
        await WaitUntilAsync(() => pair.Server.LiveIncomingTransactions == 3, "the server routed every oneway");
        // The role is held by a thread that does not wait on the doorbell (as an async receiver's background reader
        // between its waits): the release's nudge must not make a FUTEX_WAKE, which bumps the sequence word first.
        await WaitUntilAsync(pair.Server.TryHoldReaderRoleForTest, "the reader role was taken");
        try
        {
            Span<byte> sequence = pair.Server.Inbound.Region.GetSpan(RegionHeaderLayout.TxDoorbellSequenceOffset, sizeof(int));
            int before = BitConverter.ToInt32(sequence);
            first.Dispose();
            Assert.Equal(before, BitConverter.ToInt32(sequence));
            Assert.True(pair.Server.TryReceive(out Transaction second), "the released oneway is ready");
            Assert.Equal(1u, second.Code);
            second.Dispose();
        }
        finally
        {
            pair.Server.ReleaseReaderRoleForTest();
        }
    }

    [Theory]
    [InlineData(WaitStrategy.Park)]
    [InlineData(WaitStrategy.SpinThenPark)]
    public async Task SendOneway_WriterFillsASmallRegionWhileTheReceiverBatches_NeverHangsAndStaysInOrder(WaitStrategy strategy)
    {
        // A 64 KiB region with 16-slot rings: the writer waits for room all the time. A park timeout of seconds: a
        // writer left waiting on frees the receiver holds would be freed only by it, thousands of times over.
        var options = new PageRangeOptions
        {
            RegionSize = PageRangeOptions.MinRegionSize,
            TransactionRingCapacity = 16,
            FreeRingCapacity = 16,
            WaitStrategy = strategy,
            ParkTimeout = TimeSpan.FromSeconds(5),
            RegionFullTimeout = TestTimeouts.Long,
        };
        await using ConnectionPair pair = await ConnectionPair.CreateAsync(options);
        const int count = 20_000;
        using var bound = new CancellationTokenSource(TestTimeouts.Long);

        Task sender = Task.Factory.StartNew(
            () =>
            {
                var random = new Random(12);
                Span<byte> payload = stackalloc byte[3000];
                for (int i = 0; i < count; i++)
                {
                    // Mostly slab slots, some small buffers, a few larger ones.
                    int length = random.Next(10) switch { < 7 => random.Next(4, 240), < 9 => random.Next(300, 2000), _ => random.Next(2100, 3000) };
                    BinaryPrimitives.WriteInt32LittleEndian(payload, i);
                    pair.Client.SendOneway((uint)length, payload[..length]);
                }
            },
            bound.Token, TaskCreationOptions.LongRunning, TaskScheduler.Default);

        Task receiver = Task.Factory.StartNew(
            () =>
            {
                var random = new Random(34);
                for (int i = 0; i < count; i++)
                {
                    using Transaction transaction = pair.Server.Receive(bound.Token);
                    Assert.Equal((int)transaction.Code, transaction.Length);
                    Assert.Equal(i, BinaryPrimitives.ReadInt32LittleEndian(transaction.Payload));
                    if (random.Next(64) == 0)
                    {
                        // Now and then the receiver falls behind.
                        Thread.Yield();
                    }
                }
            },
            bound.Token, TaskCreationOptions.LongRunning, TaskScheduler.Default);

        await Task.WhenAll(sender, receiver).WaitAsync(TestTimeouts.Long);
        Assert.Equal(0, pair.Server.Inbound.UnpublishedFrees);
    }

    [Fact]
    public async Task Receive_BatchesRacingHandlerThreadFreesCallsAndTheShrinker_OrderKeptAndNothingLeftLive()
    {
        PageRangeOptions options = ConnectionPair.DefaultOptions();
        options.RegionSize = 256 << 10;
        options.WaitStrategy = WaitStrategy.SpinThenPark;
        options.RegionFullTimeout = TestTimeouts.Long;
        await using ConnectionPair pair = await ConnectionPair.CreateAsync(options);
        const int onewayCount = 10_000;
        const int callers = 2;
        const int callsEach = 1_000;
        using var bound = new CancellationTokenSource(TestTimeouts.Long);
        using var handlerQueue = new BlockingCollection<Transaction>();
        using var stop = new CancellationTokenSource();

        // The server: one receive loop; calls go to two handler threads, which reply and free there; every fifth oneway
        // is freed by a handler thread too, while the loop already waits for the next one.
        Task[] handlers = Enumerable.Range(0, 2).Select(_ => Task.Factory.StartNew(
            () =>
            {
                foreach (Transaction transaction in handlerQueue.GetConsumingEnumerable(bound.Token))
                {
                    using (transaction)
                    {
                        if (transaction.IsTwoWay)
                        {
                            transaction.Reply(transaction.Payload);
                        }
                    }
                }
            },
            bound.Token, TaskCreationOptions.LongRunning, TaskScheduler.Default)).ToArray();
        Task receiveLoop = Task.Factory.StartNew(
            () =>
            {
                int expected = 0;
                int calls = 0;
                while (expected < onewayCount || calls < callers * callsEach)
                {
                    Transaction transaction = pair.Server.Receive(bound.Token);
                    if (transaction.IsTwoWay)
                    {
                        calls++;
                        handlerQueue.Add(transaction);
                        continue;
                    }
                    Assert.Equal(expected, BinaryPrimitives.ReadInt32LittleEndian(transaction.Payload));
                    if (expected++ % 5 == 0)
                    {
                        handlerQueue.Add(transaction);
                    }
                    else
                    {
                        transaction.Dispose();
                    }
                }
                handlerQueue.CompleteAdding();
            },
            bound.Token, TaskCreationOptions.LongRunning, TaskScheduler.Default);

        Task shrinking = Task.Factory.StartNew(
            () =>
            {
                while (!stop.IsCancellationRequested)
                {
                    Shrinker.Shared.Scan(long.MaxValue);
                    Thread.Yield();
                }
            },
            bound.Token, TaskCreationOptions.LongRunning, TaskScheduler.Default);

        Task onewaySender = Task.Factory.StartNew(
            () =>
            {
                var random = new Random(56);
                Span<byte> payload = stackalloc byte[1200];
                for (int i = 0; i < onewayCount; i++)
                {
                    int length = random.Next(8) == 0 ? random.Next(300, 1200) : random.Next(4, 200);
                    BinaryPrimitives.WriteInt32LittleEndian(payload, i);
                    pair.Client.SendOneway(1, payload[..length]);
                }
            },
            bound.Token, TaskCreationOptions.LongRunning, TaskScheduler.Default);
        Task[] callerTasks = ConnectionPair.StartEchoCheckingCallers(pair.Client, callers, callsEach, bound.Token);

        try
        {
            await Task.WhenAll([receiveLoop, onewaySender, .. callerTasks, .. handlers]).WaitAsync(TestTimeouts.Long);
        }
        finally
        {
            stop.Cancel();
            await shrinking.WaitAsync(TestTimeouts.Long);
        }

        // Everything freed reached the writer, which gives it all back once idle (its housekeeping drain).
        Assert.Equal(0, pair.Server.Inbound.UnpublishedFrees);
        await WaitUntilAsync(() => pair.Client.Outbound.LiveBuffers == 0, "the client's buffers all came back");
        await WaitUntilAsync(() => pair.Server.Outbound.LiveBuffers == 0, "the server's replies all came back");
    }
}
