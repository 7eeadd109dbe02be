using PageRange.Tests.Infrastructure;
using PageRange.Transport;

namespace PageRange.Tests.Transport;

/// <summary>
/// One real connection inside this process (listener and connector, real regions and control socket): the rules of
/// the connection itself, and its hot path's allocations.
/// </summary>
public sealed class ConnectionTests(ITestOutputHelper output)
{
    [Fact]
    public async Task Call_ErrorReplyCannotBePlaced_CallerFailsAtOnceOverTheControlSocket()
    {
        PageRangeOptions options = ConnectionPair.DefaultOptions();
        options.RegionFullTimeout = TimeSpan.FromMilliseconds(50);
        // The error reply must need a buffer: carried inline in the ring (the test below) or written directly into the
        // caller's lines (ConnectionDirectReplyTests) it needs no page.
        options.InlineSmallPayloads = false;
        options.DirectReplies = false;
        await using ConnectionPair pair = await ConnectionPair.CreateAsync(options);
        // Every page of the caller's region that the callee would back for a reply fails to back: no reply, not even
        // an error reply, can be placed there.
        pair.Server.Outbound.Region.AllocationFaultInjector = _ => true;
        var handler = new Thread(() =>
        {
            using Transaction call = pair.Server.Receive();
            // Disposed without a reply: the connection tries an error reply, which cannot be placed either.
        })
        { IsBackground = true };
        handler.Start();

        var clock = System.Diagnostics.Stopwatch.StartNew();
        // No call timeout: before the control-socket fallback this call waited for ever.
        var error = Assert.Throws<RemoteCallException>(() => pair.Client.Call(1, new byte[16]));
        output.WriteLine($"failed after {clock.Elapsed.TotalMilliseconds:F0} ms: {error.Message}");
        Assert.Contains("no room", error.Message, StringComparison.Ordinal);
        Assert.True(handler.Join(TestTimeouts.Long));
        Assert.True(pair.Client.IsPeerAlive);
    }

    [Fact]
    public async Task Call_ReplyArrivingAfterItsCallTimedOut_NeverAnswersTheNextCallOfTheSameSlotAndIsFreed()
    {
        await using ConnectionPair pair = await ConnectionPair.CreateAsync();
        ulong firstId = 0, secondId = 0, firstChain = 0, secondChain = 0;
        Exception? failure = null;
        var handler = new Thread(() =>
        {
            try
            {
                Transaction first = pair.Server.Receive();
                firstId = first.Id;
                firstChain = first.NestedChain.Id;
                // The caller gave up on the first call and made its next one: received before the first is answered, so
                // the late reply lands while the same pending-call slot waits for the second call's.
                using Transaction second = pair.Server.Receive();
                secondId = second.Id;
                secondChain = second.NestedChain.Id;
                first.Reply([0xAA]);
                first.Dispose();
                Thread.Sleep(50);
                second.Reply([0xBB]);
            }
            catch (Exception error)
            {
                failure = error;
            }
        })
        { IsBackground = true };
        handler.Start();

        Assert.Throws<TimeoutException>(() => pair.Client.Call(1, [1], TimeSpan.FromMilliseconds(100)));
        using (Transaction reply = pair.Client.Call(1, [2], TestTimeouts.Long))
        {
            Assert.Equal([0xBB], reply.Payload.ToArray());
        }
        Assert.True(handler.Join(TestTimeouts.Long));
        Assert.Null(failure);
        // Same slot (the index bits), different calls: the slot's own sequence told them apart. Each call started a
        // chain of its own, named after it.
        Assert.Equal(firstId & TransactionIds.PendingCallIndexMask, secondId & TransactionIds.PendingCallIndexMask);
        Assert.NotEqual(firstId, secondId);
        Assert.NotEqual(0UL, firstChain);
        Assert.NotEqual(0UL, secondChain);
        Assert.NotEqual(firstChain, secondChain);
        // The late reply was freed by the reader that found nobody waiting for it: nothing of the server's is left live.
        Assert.True(SpinWait.SpinUntil(() => pair.Server.Outbound.LiveBuffers == 0, TestTimeouts.Long),
            $"{pair.Server.Outbound.LiveBuffers} buffers of the server's replies still live");
    }

    [Fact]
    public async Task Call_SteadyState_AllocatesNothingOnTheCallingThread()
    {
        PageRangeOptions options = ConnectionPair.DefaultOptions();
        options.WaitStrategy = WaitStrategy.SpinThenPark;
        await using ConnectionPair pair = await ConnectionPair.CreateAsync(options);
        using var stop = new CancellationTokenSource();
        Thread echo = ConnectionPair.StartEchoThread(pair.Server, stop.Token);
        const int Calls = 5_000;
        long allocated = -1;
        Exception? failure = null;

        var caller = new Thread(() =>
        {
            try
            {
                byte[] payload = new byte[64];
                // Warm-up: JIT, tiering, lazily created per-thread state (the gate's wait object, spin counts).
                for (int i = 0; i < 2_000; i++)
                {
                    using Transaction reply = pair.Client.Call(1, payload);
                }
                long before = GC.GetAllocatedBytesForCurrentThread();
                for (int i = 0; i < Calls; i++)
                {
                    payload[0] = (byte)i;
                    using Transaction reply = pair.Client.Call(1, payload);
                    if (reply.Payload[0] != (byte)i)
                    {
                        throw new InvalidOperationException($"reply {i} carries the wrong payload");
                    }
                }
                allocated = GC.GetAllocatedBytesForCurrentThread() - before;
            }
            catch (Exception error)
            {
                failure = error;
            }
        })
        { IsBackground = true, Name = "caller" };
        caller.Start();

        Assert.True(caller.Join(TestTimeouts.Long), "the calls did not finish");
        await stop.CancelAsync();
        Assert.True(echo.Join(TestTimeouts.Short), "the echo thread did not stop");
        Assert.Null(failure);
        output.WriteLine($"{allocated} bytes allocated by {Calls} calls on the calling thread");
        Assert.Equal(0, allocated);
    }

    [Fact]
    public async Task Receive_Oneway_HandedOutOneAtATimeAndNextOnlyAfterDispose()
    {
        await using ConnectionPair pair = await ConnectionPair.CreateAsync();
        pair.Client.SendOneway(1, "first"u8);
        pair.Client.SendOneway(2, "second"u8);
        pair.Client.SendOneway(3, "third"u8);
        Task<Transaction> call = pair.Client.CallAsync(9, "call"u8.ToArray(), TestTimeouts.Long).AsTask();

        Transaction first = pair.Server.Receive();
        Assert.Equal(1u, first.Code);
        Assert.True(first.IsOneway);

        // The two-way call behind the oneway messages is not held up by them.
        Assert.True(pair.Server.TryReceive(out Transaction incoming));
        Assert.Equal(9u, incoming.Code);
        Assert.True(incoming.IsTwoWay);
        incoming.Reply("answer"u8);
        incoming.Dispose();
        using (Transaction answer = await call.WaitAsync(TestTimeouts.Long))
        {
            Assert.Equal("answer"u8.ToArray(), answer.Payload.ToArray());
        }

        // The next oneway message waits for the first one's buffer to be freed (binder's rule), not for it being read.
        Assert.False(pair.Server.TryReceive(out _));
        Assert.Equal(3, pair.Server.LiveIncomingTransactions);
        first.Dispose();
        Assert.Throws<ObjectDisposedException>(() => first.Payload.Length);
        first.Dispose();

        Transaction second = pair.Server.Receive();
        Assert.Equal(2u, second.Code);
        Assert.Equal("second"u8.ToArray(), second.Payload.ToArray());
        Assert.False(pair.Server.TryReceive(out _));
        second.Dispose();

        using Transaction third = pair.Server.Receive();
        Assert.Equal(3u, third.Code);
        Assert.False(pair.Server.TryReceive(out _));
    }

    [Fact]
    public async Task Receive_WaitingBehindAnotherReader_HonoursItsCancellationToken()
    {
        await using ConnectionPair pair = await ConnectionPair.CreateAsync();
        // Another thread reads the ring (here: holds the role and reads nothing), so this receiver is a follower.
        Assert.True(pair.Server.TryHoldReaderRoleForTest());
        try
        {
            using var cancel = new CancellationTokenSource(TimeSpan.FromMilliseconds(200));
            Task<Transaction> receive = Task.Factory.StartNew(
                () => pair.Server.Receive(cancel.Token), CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);

            await Assert.ThrowsAnyAsync<OperationCanceledException>(() => receive.WaitAsync(TestTimeouts.Short));
        }
        finally
        {
            pair.Server.ReleaseReaderRoleForTest();
        }
    }

    [Fact]
    public async Task Reply_TooLargeForCallersRegion_HandlerMayRetryAndCallerIsAnswered()
    {
        await using ConnectionPair pair = await ConnectionPair.CreateAsync();
        Task<Transaction> tooLarge = pair.Client.CallAsync(1, "big"u8.ToArray(), TestTimeouts.Long).AsTask();
        Task<Transaction> retried = pair.Client.CallAsync(2, "retry"u8.ToArray(), TestTimeouts.Long).AsTask();

        using (Transaction call = pair.Server.Receive())
        {
            Assert.Throws<MessageTooLargeException>(() => call.Reply(new byte[pair.Server.MaxMessageSize + 1]));
            // Nothing was sent, so disposing without a reply still answers the caller, with an error.
        }
        using (Transaction call = pair.Server.Receive())
        {
            Assert.Throws<MessageTooLargeException>(() => call.Reply(new byte[pair.Server.MaxMessageSize + 1]));
            call.Reply("smaller"u8);
        }

        var remote = await Assert.ThrowsAsync<RemoteCallException>(() => tooLarge.WaitAsync(TestTimeouts.Long));
        output.WriteLine(remote.Message);
        using Transaction reply = await retried.WaitAsync(TestTimeouts.Long);
        Assert.Equal("smaller"u8.ToArray(), reply.Payload.ToArray());
    }

    [Fact]
    public async Task CallCancelled_CallerGoesAway_HandlersTokenFires()
    {
        await using ConnectionPair pair = await ConnectionPair.CreateAsync();
        Task<Transaction> call = pair.Client.CallAsync(1, "hold"u8.ToArray()).AsTask();
        using Transaction incoming = pair.Server.Receive();
        CancellationToken cancelled = incoming.CallCancelled;
        Assert.False(cancelled.IsCancellationRequested);

        await pair.Client.DisposeAsync();

        await ControlHandshakeTests.WaitCancelledAsync(cancelled);
        await Assert.ThrowsAsync<ObjectDisposedException>(() => call.WaitAsync(TestTimeouts.Long));
        Assert.Throws<PeerDiedException>(() => incoming.Reply("too late"u8));
    }
}
