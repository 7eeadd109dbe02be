using System.Buffers.Binary;
using PageRange.Tests.Infrastructure;
using PageRange.Transport;

namespace PageRange.Tests.Transport;

/// <summary>
/// The connection's own locks per message: a receiver that pumps the ring takes the transaction it made ready under the
/// lock that routed it (no second slot lock to dequeue it), and the rules hold with receivers of every kind racing.
/// </summary>
public sealed class ConnectionReceiveLockTests
{
    [Theory]
    [InlineData(WaitStrategy.BusySpin)]
    [InlineData(WaitStrategy.SpinThenPark)]
    public async Task Receive_CallRoundTrips_TheReceiverTakesWhatItsPumpRoutedWithoutASecondLock(WaitStrategy strategy)
    {
        const int calls = 2000;
        long locked = (await ConnectionPair.CountOverEchoedCallsAsync(strategy, calls, pair => [pair.Server.LockedDequeues]))[0];
        // Before: every call the echo thread received was dequeued under a slot lock of its own after the pump had
        // routed it under another (2,000 of 2,000). Now only a call that a follower or a later look finds ready is.
        Assert.True(locked < calls / 10, $"the receiver dequeued {locked} of {calls} calls under a lock of its own");
    }

    [Theory]
    [InlineData(WaitStrategy.BusySpin)]
    [InlineData(WaitStrategy.SpinThenPark)]
    public async Task Receive_OnewayStream_TheNextOnewayAFreeReleasesIsTakenWithoutASlotLock(WaitStrategy strategy)
    {
        const int count = 20_000;
        PageRangeOptions options = ConnectionPair.DefaultOptions();
        options.WaitStrategy = strategy;
        options.RegionFullTimeout = TestTimeouts.Long;
        await using ConnectionPair pair = await ConnectionPair.CreateAsync(options);
        using var bound = new CancellationTokenSource(TestTimeouts.Long);
        long before = pair.Server.LockedDequeues;
        Task receiver = Task.Factory.StartNew(
            () =>
            {
                for (int i = 0; i < count; i++)
                {
                    using Transaction transaction = pair.Server.Receive(bound.Token);
                    Assert.Equal(i, BinaryPrimitives.ReadInt32LittleEndian(transaction.Payload));
                }
            },
            bound.Token, TaskCreationOptions.LongRunning, TaskScheduler.Default);
        byte[] payload = new byte[64];
        for (int i = 0; i < count; i++)
        {
            BinaryPrimitives.WriteInt32LittleEndian(payload, i);
            pair.Client.SendOneway(1, payload);
        }
        await receiver.WaitAsync(TestTimeouts.Long);
        long locked = pair.Server.LockedDequeues - before;
        // Before: every oneway was dequeued under a slot lock of its own, after the free that released it from the
        // backlog had queued it under another (20,000 of 20,000). Now the free hands it over, and the first of a batch
        // is taken by the pump that routed it.
        Assert.True(locked < count / 10, $"the receiver dequeued {locked} of {count} oneways under a lock of its own");
        Assert.Equal(0, pair.Server.LiveIncomingTransactions);
    }

    [Fact]
    public async Task Receive_OnewaysFreedOnAHandlerThreadWhileReceiversWait_OneAtATimeInOrderNothingLeftLive()
    {
        PageRangeOptions options = ConnectionPair.DefaultOptions();
        options.WaitStrategy = WaitStrategy.SpinThenPark;
        options.RegionFullTimeout = TestTimeouts.Long;
        await using ConnectionPair pair = await ConnectionPair.CreateAsync(options);
        const int count = 10_000;
        using var bound = new CancellationTokenSource(TestTimeouts.Long);
        using var handlerQueue = new System.Collections.Concurrent.BlockingCollection<Transaction>();
        int received = 0;
        int last = -1;
        string? failure = null;
        // Receivers (two sync, one async) pass every oneway to one handler thread, which checks and frees it: each free
        // releases the next oneway while the receivers are waiting, from a thread that never receives.
        Task handler = Task.Factory.StartNew(
            () =>
            {
                foreach (Transaction transaction in handlerQueue.GetConsumingEnumerable(bound.Token))
                {
                    using (transaction)
                    {
                        int sequence = BinaryPrimitives.ReadInt32LittleEndian(transaction.Payload);
                        if (sequence != last + 1)
                        {
                            failure ??= $"oneway {sequence} after {last}";
                        }
                        last = sequence;
                    }
                    if (last == count - 1)
                    {
                        return;
                    }
                }
            },
            bound.Token, TaskCreationOptions.LongRunning, TaskScheduler.Default);
        Task[] syncReceivers = Enumerable.Range(0, 2).Select(_ => Task.Factory.StartNew(
            () =>
            {
                while (Volatile.Read(ref received) < count)
                {
                    try
                    {
                        handlerQueue.Add(pair.Server.Receive(bound.Token));
                        Interlocked.Increment(ref received);
                    }
                    catch (OperationCanceledException)
                    {
                        return;
                    }
                }
            },
            bound.Token, TaskCreationOptions.LongRunning, TaskScheduler.Default)).ToArray();
        Task asyncReceiver = Task.Run(async () =>
        {
            while (Volatile.Read(ref received) < count)
            {
                try
                {
                    handlerQueue.Add(await pair.Server.ReceiveAsync(bound.Token));
                    Interlocked.Increment(ref received);
                }
                catch (OperationCanceledException)
                {
                    return;
                }
            }
        });
        byte[] payload = new byte[64];
        for (int i = 0; i < count; i++)
        {
            BinaryPrimitives.WriteInt32LittleEndian(payload, i);
            pair.Client.SendOneway(1, payload);
        }
        await handler.WaitAsync(TestTimeouts.Long);
        bound.Cancel();
        await Task.WhenAll([.. syncReceivers, asyncReceiver]).WaitAsync(TestTimeouts.Long);
        Assert.Null(failure);
        Assert.Equal(count - 1, last);
        Assert.Equal(count, Volatile.Read(ref received));
        Assert.Equal(0, pair.Server.LiveIncomingTransactions);
    }

    [Theory]
    [InlineData(WaitStrategy.BusySpin)]
    [InlineData(WaitStrategy.SpinThenPark)]
    public async Task Receive_SyncAndAsyncReceiversRacingCallersAndOneways_OnewaysOneAtATimeInOrderEveryCallAnswered(WaitStrategy strategy)
    {
        PageRangeOptions options = ConnectionPair.DefaultOptions();
        options.WaitStrategy = strategy;
        options.RegionFullTimeout = TestTimeouts.Long;
        await using ConnectionPair pair = await ConnectionPair.CreateAsync(options);
        const int onewayCount = 20_000;
        const int syncCallers = 2;
        const int callsEach = 1_000;
        const int asyncCalls = 1_000;
        int expectedCalls = (syncCallers * callsEach) + asyncCalls;
        using var bound = new CancellationTokenSource(TestTimeouts.Long);
        int lastOneway = -1;
        int onewaysInHand = 0;
        int callsSeen = 0;
        int onewaysSeen = 0;
        string? failure = null;

        // What every receiver does with a transaction: a oneway must be the next in order and the only one delivered
        // and not yet freed (binder: the next is released when the previous buffer is freed); a call is echoed.
        void Handle(Transaction transaction)
        {
            using (transaction)
            {
                if (transaction.IsTwoWay)
                {
                    transaction.Reply(transaction.Payload);
                    Interlocked.Increment(ref callsSeen);
                    return;
                }
                int sequence = BinaryPrimitives.ReadInt32LittleEndian(transaction.Payload);
                if (Interlocked.Increment(ref onewaysInHand) != 1)
                {
                    failure ??= $"oneway {sequence} delivered while another was not freed";
                }
                int previous = Interlocked.Exchange(ref lastOneway, sequence);
                if (previous != sequence - 1)
                {
                    failure ??= $"oneway {sequence} delivered after {previous}";
                }
                Interlocked.Decrement(ref onewaysInHand);
                Interlocked.Increment(ref onewaysSeen);
            }
        }

        bool Done() => Volatile.Read(ref onewaysSeen) == onewayCount && Volatile.Read(ref callsSeen) == expectedCalls;

        Task[] syncReceivers = Enumerable.Range(0, 2).Select(_ => Task.Factory.StartNew(
            () =>
            {
                while (!Done())
                {
                    Transaction transaction;
                    try
                    {
                        transaction = pair.Server.Receive(bound.Token);
                    }
                    catch (OperationCanceledException)
                    {
                        return;
                    }
                    Handle(transaction);
                }
            },
            bound.Token, TaskCreationOptions.LongRunning, TaskScheduler.Default)).ToArray();
        Task asyncReceiver = Task.Run(async () =>
        {
            while (!Done())
            {
                Transaction transaction;
                try
                {
                    transaction = await pair.Server.ReceiveAsync(bound.Token);
                }
                catch (OperationCanceledException)
                {
                    return;
                }
                Handle(transaction);
            }
        });
        // TryReceive from a polling thread too: it pumps and takes under the same lock when it holds the role.
        Task poller = Task.Factory.StartNew(
            () =>
            {
                while (!Done() && !bound.IsCancellationRequested)
                {
                    if (pair.Server.TryReceive(out Transaction transaction))
                    {
                        Handle(transaction);
                    }
                    else
                    {
                        Thread.Yield();
                    }
                }
            },
            bound.Token, TaskCreationOptions.LongRunning, TaskScheduler.Default);

        Task onewaySender = Task.Factory.StartNew(
            () =>
            {
                Span<byte> payload = stackalloc byte[64];
                for (int i = 0; i < onewayCount; i++)
                {
                    BinaryPrimitives.WriteInt32LittleEndian(payload, i);
                    pair.Client.SendOneway(1, payload[..(4 + (i % 60))]);
                }
            },
            bound.Token, TaskCreationOptions.LongRunning, TaskScheduler.Default);
        Task[] callers = ConnectionPair.StartEchoCheckingCallers(pair.Client, syncCallers, callsEach, bound.Token);
        Task asyncCaller = Task.Run(async () =>
        {
            byte[] request = new byte[32];
            for (int i = 0; i < asyncCalls; i++)
            {
                BinaryPrimitives.WriteInt32LittleEndian(request, 1_000_000 + i);
                using Transaction reply = await pair.Client.CallAsync(3, request, TestTimeouts.Long, bound.Token);
                Assert.True(reply.Payload.SequenceEqual(request));
            }
        });

        await Task.WhenAll([onewaySender, .. callers, asyncCaller]).WaitAsync(TestTimeouts.Long);
        await WaitUntilAsync(Done, "every oneway and call was received");
        bound.Cancel();
        await Task.WhenAll([.. syncReceivers, asyncReceiver, poller]).WaitAsync(TestTimeouts.Long);

        Assert.Null(failure);
        Assert.Equal(onewayCount - 1, lastOneway);
        Assert.Equal(0, pair.Server.LiveIncomingTransactions);
    }

    [Fact]
    public async Task Receive_PeerDiesMidStreamWithReceiversOfEveryKind_EveryReceiverEndsWithPeerDied()
    {
        PageRangeOptions options = ConnectionPair.DefaultOptions();
        options.WaitStrategy = WaitStrategy.SpinThenPark;
        ConnectionPair pair = await ConnectionPair.CreateAsync(options);
        try
        {
            using var bound = new CancellationTokenSource(TestTimeouts.Long);
            int received = 0;
            Task[] syncReceivers = Enumerable.Range(0, 2).Select(_ => Task.Factory.StartNew(
                () =>
                {
                    while (true)
                    {
                        using Transaction transaction = pair.Server.Receive(bound.Token);
                        Interlocked.Increment(ref received);
                    }
                },
                bound.Token, TaskCreationOptions.LongRunning, TaskScheduler.Default)).ToArray();
            Task asyncReceiver = Task.Run(async () =>
            {
                while (true)
                {
                    using Transaction transaction = await pair.Server.ReceiveAsync(bound.Token);
                    Interlocked.Increment(ref received);
                }
            });
            byte[] payload = new byte[64];
            for (int i = 0; i < 5_000; i++)
            {
                pair.Client.SendOneway(1, payload);
            }
            await WaitUntilAsync(() => Volatile.Read(ref received) > 100, "the receivers got part of the stream");
            // The peer goes away mid-stream: what it published is delivered, then every receiver hears of its end.
            await pair.Client.DisposeAsync();
            foreach (Task receiver in (Task[])[.. syncReceivers, asyncReceiver])
            {
                await Assert.ThrowsAsync<PeerDiedException>(() => receiver.WaitAsync(TestTimeouts.Long));
            }
            Assert.Equal(5_000, Volatile.Read(ref received));
            Assert.Equal(0, pair.Server.LiveIncomingTransactions);
        }
        finally
        {
            await pair.Server.DisposeAsync();
        }
    }

    private static async Task WaitUntilAsync(Func<bool> condition, string what)
    {
        using var timeout = new CancellationTokenSource(TestTimeouts.Long);
        while (!condition())
        {
            await Task.Delay(5, timeout.Token).ConfigureAwait(false);
        }
        Assert.True(condition(), what);
    }
}

/// <summary>
/// A call that has no chain to register (no nested-call handler, or async) takes its pending-call slot from the spare
/// and gives it back there (a short pass of the slot lock each, biased to a lone caller), not through the stack and its
/// chain bookkeeping; the limit on outstanding calls holds.
/// </summary>
public sealed class ConnectionPendingCallSpareTests
{
    [Fact]
    public async Task Call_RoundTrips_RentAndReturnThePendingCallThroughTheSpare()
    {
        const int calls = 2000;
        await using ConnectionPair pair = await ConnectionPair.CreateAsync();
        using var stop = new CancellationTokenSource();
        Thread echo = ConnectionPair.StartEchoThread(pair.Server, stop.Token);
        try
        {
            byte[] payload = new byte[64];
            using (Transaction warm = pair.Client.Call(1, payload, TestTimeouts.Long))
            {
            }
            long before = pair.Client.LockedCallRents;
            for (int i = 0; i < calls; i++)
            {
                BinaryPrimitives.WriteInt32LittleEndian(payload, i);
                using Transaction reply = pair.Client.Call(1, payload, TestTimeouts.Long);
                Assert.Equal(i, BinaryPrimitives.ReadInt32LittleEndian(reply.Payload));
            }
            for (int i = 0; i < calls / 10; i++)
            {
                using Transaction reply = await pair.Client.CallAsync(1, payload, TestTimeouts.Long);
            }
            // Before the spare: every call rented from the stack (and returned to it). Now one after another they pass
            // the spare between them.
            Assert.Equal(0, pair.Client.LockedCallRents - before);
        }
        finally
        {
            stop.Cancel();
            echo.Join(TestTimeouts.Long);
        }
    }

    [Fact]
    public async Task Call_AtTheLimitTwiceOver_TheSpareCountsAsFreeAndTheNextCallIsRefused()
    {
        PageRangeOptions options = ConnectionPair.DefaultOptions();
        options.MaxConcurrentCalls = 2;
        await using ConnectionPair pair = await ConnectionPair.CreateAsync(options);
        byte[] payload = new byte[16];
        for (int round = 0; round < 3; round++)
        {
            // Two calls outstanding: one takes the spare (after the first round), the other the stack.
            ValueTask<Transaction> first = pair.Client.CallAsync(1, payload, TestTimeouts.Long);
            ValueTask<Transaction> second = pair.Client.CallAsync(1, payload, TestTimeouts.Long);
            // Thrown at once, or through the task when a listener observes calls (metrics or tracing in another test).
            await Assert.ThrowsAsync<InvalidOperationException>(async () => await pair.Client.CallAsync(1, payload, TestTimeouts.Long));
            for (int answered = 0; answered < 2; answered++)
            {
                using Transaction call = pair.Server.Receive(new CancellationTokenSource(TestTimeouts.Long).Token);
                call.Reply(call.Payload);
            }
            using (Transaction reply = await first)
            {
            }
            using (Transaction reply = await second)
            {
            }
        }
        Assert.Equal(0, pair.Client.LiveIncomingTransactions);
    }

    [Fact]
    public async Task Call_SyncAndAsyncCallersRacingForTheSpareAndTheStack_EveryReplyMatches()
    {
        PageRangeOptions options = ConnectionPair.DefaultOptions();
        options.MaxConcurrentCalls = 3;
        await using ConnectionPair pair = await ConnectionPair.CreateAsync(options);
        using var bound = new CancellationTokenSource(TestTimeouts.Long);
        using var stop = new CancellationTokenSource();
        Thread echo = ConnectionPair.StartEchoThread(pair.Server, stop.Token);
        Thread echo2 = ConnectionPair.StartEchoThread(pair.Server, stop.Token);
        const int callsEach = 2_000;
        try
        {
            // Three callers and three slots: the spare and the stack are both emptied and refilled all the time.
            Task[] callers =
            [
                .. Enumerable.Range(0, 2).Select(c => Task.Factory.StartNew(
                    () =>
                    {
                        byte[] request = new byte[64];
                        for (int i = 0; i < callsEach; i++)
                        {
                            BinaryPrimitives.WriteInt32LittleEndian(request, (c * callsEach) + i);
                            using Transaction reply = pair.Client.Call(2, request, TestTimeouts.Long, bound.Token);
                            Assert.True(reply.Payload.SequenceEqual(request));
                        }
                    },
                    bound.Token, TaskCreationOptions.LongRunning, TaskScheduler.Default)),
                Task.Run(async () =>
                {
                    byte[] request = new byte[40];
                    for (int i = 0; i < callsEach; i++)
                    {
                        BinaryPrimitives.WriteInt32LittleEndian(request, 1_000_000 + i);
                        using Transaction reply = await pair.Client.CallAsync(3, request, TestTimeouts.Long, bound.Token);
                        Assert.True(reply.Payload.SequenceEqual(request));
                    }
                }),
            ];
            await Task.WhenAll(callers).WaitAsync(TestTimeouts.Long);
        }
        finally
        {
            stop.Cancel();
            echo.Join(TestTimeouts.Long);
            echo2.Join(TestTimeouts.Long);
        }
        Assert.Equal(0, pair.Client.LiveIncomingTransactions);
    }
}
