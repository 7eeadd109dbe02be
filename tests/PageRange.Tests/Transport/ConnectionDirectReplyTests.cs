using PageRange.Tests.Infrastructure;
using static PageRange.Tests.Infrastructure.Poll;
using PageRange.Transport;

namespace PageRange.Tests.Transport;

/// <summary>
/// Direct replies (<see cref="DirectReplyLayout"/>) between two connections: a synchronous call's small reply or error
/// reply is written into the caller's lines, a larger one goes on the ring; one call at a time asks; the lines are free
/// again after every way a call can end (answered either way, never sent, timed out and answered late); every reply's
/// free comes back.
/// </summary>
public sealed class ConnectionDirectReplyTests(ITestOutputHelper output)
{
    [Theory]
    [InlineData(WaitStrategy.BusySpin)]
    [InlineData(WaitStrategy.SpinThenPark)]
    [InlineData(WaitStrategy.Park)]
    public async Task Call_EverySizeTo300_SmallRepliesComeDirectlyLargerOnTheRing_EveryByteRoundTrips(WaitStrategy wait)
    {
        PageRangeOptions options = ConnectionPair.DefaultOptions();
        options.WaitStrategy = wait;
        await using ConnectionPair pair = await ConnectionPair.CreateAsync(options);
        using var stop = new CancellationTokenSource();
        Thread echo = ConnectionPair.StartEchoThread(pair.Server, stop.Token);
        try
        {
            long direct = 0;
            for (int size = 0; size <= 300; size++)
            {
                byte[] payload = new byte[size];
                new Random(size).NextBytes(payload);
                using Transaction reply = pair.Client.Call(7, payload, TestTimeouts.Long);
                Assert.True(payload.AsSpan().SequenceEqual(reply.Payload), $"echo of {size} bytes");
                Assert.True(reply.Memory.Span.SequenceEqual(payload), $"echo's memory of {size} bytes");
                Assert.Equal(TransactionFlags.Reply, reply.Flags);
                direct += size <= DirectReplyLayout.MaxPayload ? 1 : 0;
                // Counted as it was taken, and the lines are free for the next call: a larger reply's came on the ring.
                Assert.Equal(direct, pair.Client.Inbound.DirectRepliesReceived);
                Assert.Equal(0UL, pair.Client.Inbound.ExpectedDirectReply);
            }
            Assert.Equal(direct, pair.Server.Outbound.DirectRepliesSent);
            // With nothing else on the ring, the caller takes its reply from the lines itself, not in a pass over the ring
            // (which takes one only if it arrives within the few instructions between the caller's look and the pass).
            long alone = pair.Client.Inbound.DirectRepliesTakenAlone;
            output.WriteLine($"{alone} of {direct} direct replies taken by their caller alone");
            Assert.True(alone > direct / 2, $"{alone} of {direct} direct replies taken alone");
            Assert.Equal(0, pair.Client.Inbound.InlineReceived);
            // The requests as well, into the server's direct call lines (DirectCallLayout, the same limit).
            Assert.Equal(direct, pair.Client.Outbound.DirectCallsSent);
            Assert.Equal(direct, pair.Server.Inbound.DirectCallsReceived);
            Assert.Equal(0, pair.Server.Inbound.InlineReceived);
            output.WriteLine($"{direct} of 301 calls and replies direct ({wait})");
        }
        finally
        {
            await stop.CancelAsync();
            Assert.True(echo.Join(TestTimeouts.Long));
        }
        await AssertEverythingFreedAsync(pair);
    }

    [Fact]
    public async Task Call_HandlerFailsOrDisposesWithoutReplying_TheErrorReplyComesDirectly_NoPageNeeded()
    {
        await using ConnectionPair pair = await ConnectionPair.CreateAsync();
        // No page of the caller's region can be backed: a reply that needed one could not be placed.
        pair.Server.Outbound.Region.AllocationFaultInjector = _ => true;
        Thread handler = StartHandler(() =>
        {
            using (Transaction call = pair.Server.Receive())
            {
                call.ReplyError(CallStatus.NotFound, "no such thing");
            }
            using (pair.Server.Receive())
            {
            }
        }, out Func<Exception?> handlerError);

        var failed = Assert.Throws<RemoteCallException>(() => pair.Client.Call(1, new byte[16], TestTimeouts.Long));
        Assert.Equal(CallStatus.NotFound, failed.Status);
        Assert.Contains("no such thing", failed.Message, StringComparison.Ordinal);
        var disposed = Assert.Throws<RemoteCallException>(() => pair.Client.Call(2, new byte[16], TestTimeouts.Long));
        Assert.Equal(CallStatus.Unknown, disposed.Status);
        Assert.Contains("disposed the call without replying", disposed.Message, StringComparison.Ordinal);

        Assert.True(handler.Join(TestTimeouts.Long));
        Assert.Null(handlerError());
        Assert.Equal(2, pair.Server.Outbound.DirectRepliesSent);
        Assert.Equal(2, pair.Client.Inbound.DirectRepliesReceived);
        Assert.Equal(0UL, pair.Client.Inbound.ExpectedDirectReply);
        pair.Server.Outbound.Region.AllocationFaultInjector = null;
        await AssertEverythingFreedAsync(pair);
    }

    [Theory]
    [InlineData(2)]
    [InlineData(DirectReplyLayout.MaxPayload + 36)]
    public async Task Call_TimesOutThenTheReplyComesLate_OtherCallsUseTheRingMeanwhile_TheLateReplyIsFreedAndTheLinesAreFreeAgain(int lateReplySize)
    {
        await using ConnectionPair pair = await ConnectionPair.CreateAsync();
        using var held = new ManualResetEventSlim();
        using var release = new ManualResetEventSlim();
        Thread handler = StartHandler(() =>
        {
            // The first call is held past its caller's timeout, then answered: its reply has nobody waiting.
            Transaction slow = pair.Server.Receive();
            held.Set();
            for (int i = 0; i < 3; i++)
            {
                using Transaction call = pair.Server.Receive();
                call.Reply(call.Payload);
            }
            release.Wait(TestTimeouts.Long);
            // Small: into the lines; larger: on the ring, which must end the expectation as well.
            slow.Reply(new byte[lateReplySize]);
            slow.Dispose();
            for (int i = 0; i < 3; i++)
            {
                using Transaction call = pair.Server.Receive();
                call.Reply(call.Payload);
            }
        }, out Func<Exception?> handlerError);

        Assert.Throws<TimeoutException>(() => pair.Client.Call(1, [1], TimeSpan.FromMilliseconds(200)));
        Assert.True(held.Wait(TestTimeouts.Long));
        ulong abandoned = pair.Client.Inbound.ExpectedDirectReply;
        Assert.NotEqual(0UL, abandoned);
        // The call went into the server's direct call lines, which it holds until it is answered.
        Assert.Equal(1, pair.Client.Outbound.DirectCallsSent);
        // While the late reply may still come into the lines, other calls do not ask for them: answered on the ring.
        for (int i = 0; i < 3; i++)
        {
            using Transaction reply = pair.Client.Call(2, [(byte)i], TestTimeouts.Long);
            Assert.Equal([(byte)i], reply.Payload.ToArray());
        }
        Assert.Equal(0, pair.Client.Inbound.DirectRepliesReceived);
        Assert.Equal(abandoned, pair.Client.Inbound.ExpectedDirectReply);
        Assert.Equal(1, pair.Client.Outbound.DirectCallsSent);

        release.Set();
        // The late reply is taken by whoever reads next (here the background reader's housekeeping), freed, and the
        // lines are free again.
        int lateDirect = lateReplySize <= DirectReplyLayout.MaxPayload ? 1 : 0;
        await WaitUntilAsync(() => pair.Client.Inbound.ExpectedDirectReply == 0, "the late reply ended the expectation");
        Assert.Equal(lateDirect, pair.Client.Inbound.DirectRepliesReceived);
        for (int i = 0; i < 3; i++)
        {
            using Transaction reply = pair.Client.Call(3, [(byte)i, 1], TestTimeouts.Long);
            Assert.Equal([(byte)i, 1], reply.Payload.ToArray());
        }
        Assert.Equal(lateDirect + 3, pair.Client.Inbound.DirectRepliesReceived);
        // The late answer freed the call lines too.
        Assert.Equal(4, pair.Client.Outbound.DirectCallsSent);
        Assert.True(handler.Join(TestTimeouts.Long));
        Assert.Null(handlerError());
        await AssertEverythingFreedAsync(pair);
    }

    [Fact]
    public async Task Call_RequestTooLargeToSend_TheLinesAreFreeForTheNextCall()
    {
        await using ConnectionPair pair = await ConnectionPair.CreateAsync();
        using var stop = new CancellationTokenSource();
        Thread echo = ConnectionPair.StartEchoThread(pair.Server, stop.Token);
        try
        {
            Assert.Throws<MessageTooLargeException>(() => pair.Client.Call(1, new byte[pair.Client.MaxMessageSize + 1], TestTimeouts.Long));
            Assert.Equal(0UL, pair.Client.Inbound.ExpectedDirectReply);
            using Transaction reply = pair.Client.Call(1, [5], TestTimeouts.Long);
            Assert.Equal([5], reply.Payload.ToArray());
            Assert.Equal(1, pair.Client.Inbound.DirectRepliesReceived);
        }
        finally
        {
            await stop.CancelAsync();
            Assert.True(echo.Join(TestTimeouts.Long));
        }
    }

    [Fact]
    public async Task Call_FourThreadsAtOnce_OneAsksAtATime_EveryReplyIsItsCallers()
    {
        await using ConnectionPair pair = await ConnectionPair.CreateAsync();
        using var stop = new CancellationTokenSource();
        Thread[] echoes = [ConnectionPair.StartEchoThread(pair.Server, stop.Token), ConnectionPair.StartEchoThread(pair.Server, stop.Token)];
        const int Calls = 3000;
        try
        {
            var callers = Enumerable.Range(0, 4).Select(t => new Thread(() =>
            {
                var random = new Random(t);
                for (int i = 0; i < Calls; i++)
                {
                    byte[] payload = new byte[random.Next(1, 100)];
                    random.NextBytes(payload);
                    payload[0] = (byte)t;
                    using Transaction reply = pair.Client.Call(1, payload, TestTimeouts.Long);
                    Assert.True(payload.AsSpan().SequenceEqual(reply.Payload), $"caller {t}, call {i}");
                }
            })).ToArray();
            foreach (Thread caller in callers)
            {
                caller.Start();
            }
            foreach (Thread caller in callers)
            {
                Assert.True(caller.Join(TestTimeouts.Long));
            }
        }
        finally
        {
            await stop.CancelAsync();
            foreach (Thread echo in echoes)
            {
                Assert.True(echo.Join(TestTimeouts.Long));
            }
        }
        long direct = pair.Client.Inbound.DirectRepliesReceived;
        output.WriteLine($"{direct} of {4 * Calls} replies direct");
        Assert.True(direct > 0, "some replies came directly");
        Assert.Equal(direct, pair.Server.Outbound.DirectRepliesSent);
        Assert.Equal(0UL, pair.Client.Inbound.ExpectedDirectReply);
        await AssertEverythingFreedAsync(pair);
    }

    [Theory]
    [InlineData(WaitStrategy.BusySpin)]
    [InlineData(WaitStrategy.SpinThenPark)]
    [InlineData(WaitStrategy.Park)]
    public async Task Call_HandlerSendsOnewaysBeforeEachDirectReply_EveryOnewayIsRoutedBeforeItsCallReturns(WaitStrategy wait)
    {
        // The caller takes a direct reply alone only with the ring empty: the oneways the handler sent before the reply are
        // on the ring, so the caller's pass routes them first, and each is ready when its call returns.
        PageRangeOptions options = ConnectionPair.DefaultOptions();
        options.WaitStrategy = wait;
        await using ConnectionPair pair = await ConnectionPair.CreateAsync(options);
        const int Calls = 2000;
        Thread handler = StartHandler(() =>
        {
            for (int i = 0; i < Calls; i++)
            {
                using Transaction call = pair.Server.Receive();
                int before = call.Payload[0] % 3;
                for (int k = 0; k < before; k++)
                {
                    pair.Server.SendOneway(9, [(byte)i, (byte)k]);
                }
                call.Reply([(byte)i]);
            }
        }, out Func<Exception?> handlerError);

        long onewaysExpected = 0;
        for (int i = 0; i < Calls; i++)
        {
            using (Transaction reply = pair.Client.Call(1, [(byte)i], TestTimeouts.Long))
            {
                Assert.Equal((byte)i, reply.Payload[0]);
            }
            // As the handler counts them: from the request's byte. Routed (ready or backlogged, read off the ring) before
            // the reply completed the call; a receive would read the ring itself, so the count is what proves it.
            int before = (byte)i % 3;
            Assert.True(before == pair.Client.LiveIncomingTransactions, $"call {i}: {pair.Client.LiveIncomingTransactions} of {before} oneways routed before the reply");
            for (int k = 0; k < before; k++)
            {
                Assert.True(pair.Client.TryReceive(out Transaction oneway), $"call {i}: oneway {k} not ready");
                using (oneway)
                {
                    Assert.Equal(new byte[] { (byte)i, (byte)k }, oneway.Payload.ToArray());
                }
                onewaysExpected++;
            }
        }
        Assert.True(handler.Join(TestTimeouts.Long));
        Assert.Null(handlerError());
        Assert.False(pair.Client.TryReceive(out _));
        long alone = pair.Client.Inbound.DirectRepliesTakenAlone;
        output.WriteLine($"{onewaysExpected} oneways; {alone} of {pair.Client.Inbound.DirectRepliesReceived} direct replies taken alone ({wait})");
        // Only the calls without oneways before their replies (a third) may be taken alone: some are.
        Assert.True(alone > 0, "some direct replies taken by their caller alone");
        Assert.Equal(Calls, pair.Client.Inbound.DirectRepliesReceived);
        await AssertEverythingFreedAsync(pair);
    }

    [Fact]
    public async Task CallAsyncAndReplyAsync_AsyncCallsDoNotAsk_AsyncRepliesToCallsThatAskAreWrittenDirectly()
    {
        await using ConnectionPair pair = await ConnectionPair.CreateAsync();
        var handler = Task.Run(async () =>
        {
            for (int i = 0; i < 4; i++)
            {
                using Transaction call = await pair.Server.ReceiveAsync().AsTask().WaitAsync(TestTimeouts.Long);
                await call.ReplyAsync(call.Memory);
            }
        });
        using (Transaction reply = await pair.Client.CallAsync(1, new byte[] { 1 }, TestTimeouts.Long).AsTask().WaitAsync(TestTimeouts.Long))
        {
            Assert.Equal([1], reply.Payload.ToArray());
        }
        Assert.Equal(0, pair.Client.Inbound.DirectRepliesReceived);
        for (int i = 0; i < 3; i++)
        {
            using Transaction reply = pair.Client.Call(1, [2, (byte)i], TestTimeouts.Long);
            Assert.Equal([2, (byte)i], reply.Payload.ToArray());
        }
        await handler.WaitAsync(TestTimeouts.Long);
        Assert.Equal(3, pair.Client.Inbound.DirectRepliesReceived);
        Assert.Equal(3, pair.Server.Outbound.DirectRepliesSent);
    }

    [Fact]
    public async Task Call_DirectRepliesOff_RepliesComeOnTheRing()
    {
        PageRangeOptions options = ConnectionPair.DefaultOptions();
        options.DirectReplies = false;
        await using ConnectionPair pair = await ConnectionPair.CreateAsync(options);
        using var stop = new CancellationTokenSource();
        Thread echo = ConnectionPair.StartEchoThread(pair.Server, stop.Token);
        try
        {
            using Transaction reply = pair.Client.Call(1, [3], TestTimeouts.Long);
            Assert.Equal([3], reply.Payload.ToArray());
        }
        finally
        {
            await stop.CancelAsync();
            Assert.True(echo.Join(TestTimeouts.Long));
        }
        Assert.Equal(0, pair.Client.Inbound.DirectRepliesReceived);
        Assert.Equal(1, pair.Client.Inbound.InlineReceived);
    }

    /// <summary>
    /// Runs a server's handler on a thread of its own; what it throws is kept for the test to assert, not left to end the
    /// test process (a failed test disposes the pair under a handler still receiving).
    /// </summary>
    private static Thread StartHandler(Action handle, out Func<Exception?> error)
    {
        Exception? thrown = null;
        var thread = new Thread(() =>
        {
            try
            {
                handle();
            }
            catch (Exception e)
            {
                Volatile.Write(ref thrown, e);
            }
        })
        { IsBackground = true };
        thread.Start();
        error = () => Volatile.Read(ref thrown);
        return thread;
    }

    private static async Task AssertEverythingFreedAsync(ConnectionPair pair)
    {
        await WaitUntilAsync(() =>
        {
            pair.Client.Outbound.DrainFrees();
            pair.Server.Outbound.DrainFrees();
            return pair.Client.Outbound.LiveBuffers == 0 && pair.Server.Outbound.LiveBuffers == 0;
        }, "every buffer and inline transaction freed");
        Assert.Equal(0, pair.Server.Outbound.InlineLive);
        Assert.Equal(0, pair.Server.Outbound.IgnoredFrees);
        Assert.Equal(0, pair.Client.Outbound.IgnoredFrees);
        Assert.Equal(0, pair.Client.LiveIncomingTransactions);
    }
}
