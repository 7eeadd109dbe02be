using System.Buffers.Binary;
using System.Collections.Concurrent;
using PageRange.Diagnostics;
using PageRange.Server;
using PageRange.Tests.Diagnostics;
using PageRange.Tests.Infrastructure;
using PageRange.Tests.Transport;
using PageRange.Transport;

namespace PageRange.Tests.Server;

/// <summary>
/// <see cref="PageRangeServerOptions.MaxConcurrentCallsPerClient"/>: one client's calls beyond its limit wait in its own
/// queue (not in the pool's queue every client shares), the session keeps receiving (oneways, nested calls), the queue
/// is bounded (a refusal with ResourceExhausted), and every path gives the count back.
/// </summary>
public sealed class ServerCallLimitTests
{
    private const uint Slow = 1;
    private const uint Fast = 2;
    private const uint Release = 3;
    private const uint Back = 4;
    private const uint Inner = 5;

    // How long another client's call may take while the first client's calls hold their slots: it is served in
    // microseconds when nothing holds it up, and the sabotaged server holds it up until the gate opens (never, here).
    private static readonly TimeSpan s_served = TimeSpan.FromSeconds(10);

    private static PageRangeServerOptions Options(int limit, int queue, int maxThreads = 4) => new()
    {
        MinThreads = 1,
        MaxThreads = maxThreads,
        MaxConcurrentCallsPerClient = limit,
        MaxQueuedCallsPerClient = queue,
        // Every call through the workers: the pool's queue is what one client must not fill.
        RunFastHandlersInline = false,
        StartShrinkerMonitor = false,
        ConnectionOptions = new PageRangeOptions { RegionSize = 1L << 20, WaitStrategy = WaitStrategy.SpinThenPark },
    };

    private static byte[] Encode(int value)
    {
        byte[] bytes = new byte[4];
        BinaryPrimitives.WriteInt32LittleEndian(bytes, value);
        return bytes;
    }

    private static int Decode(ReadOnlySpan<byte> bytes) => BinaryPrimitives.ReadInt32LittleEndian(bytes);

    /// <summary>Raises <paramref name="peak"/> to <paramref name="now"/> if that is more (several threads at once).</summary>
    private static void RaisePeak(ref int peak, int now)
    {
        int seen;
        while (now > (seen = Volatile.Read(ref peak)) && Interlocked.CompareExchange(ref peak, now, seen) != seen)
        {
        }
    }

    /// <summary>Handlers that block a worker on a gate (Slow), and answer at once (Fast); counts entries and the most at once.</summary>
    private sealed class GatedService : IDisposable
    {
        private int _running;
        private int _peak;
        private int _entered;

        internal ManualResetEventSlim Gate { get; } = new(false);

        internal int Entered => Volatile.Read(ref _entered);

        internal int Peak => Volatile.Read(ref _peak);

        internal ConcurrentQueue<int> Order { get; } = new();

        internal void Configure(PageRangeServerBuilder builder) => builder
            .Map(Slow, (tx, ctx) =>
            {
                int running = Interlocked.Increment(ref _running);
                Interlocked.Increment(ref _entered);
                Order.Enqueue(Decode(tx.Payload));
                RaisePeak(ref _peak, running);
                try
                {
                    Assert.True(Gate.Wait(TestTimeouts.Long), "the gate never opened");
                    tx.Reply(tx.Payload);
                }
                finally
                {
                    Interlocked.Decrement(ref _running);
                }
            })
            .Map(Fast, (tx, ctx) => tx.Reply(tx.Payload));

        public void Dispose()
        {
            Gate.Set();
            Gate.Dispose();
        }
    }

    [Fact]
    public async Task Fairness_ClientOverItsLimit_AnotherClientServedBeforeTheFirstOnesHandlersReturn()
    {
        const int limit = 2;
        const int extra = 6;
        string name = ControlHandshakeTests.UniqueName();
        using var service = new GatedService();
        await using var server = PageRangeServer.Start(name, Options(limit, queue: 64, maxThreads: 4), service.Configure);
        await using PageRangeConnection a = await ServerTestOptions.ConnectAsync(name);
        await using PageRangeConnection b = await ServerTestOptions.ConnectAsync(name);
        var calls = new List<Task<Transaction>>();
        try
        {
            for (int i = 0; i < limit + extra; i++)
            {
                calls.Add(a.CallAsync(Slow, Encode(i), TestTimeouts.Long).AsTask());
            }
            // At least: without the limit more of A's calls run (one per worker), and B's call is what must tell.
            await Poll.WaitUntilAsync(() => service.Entered >= limit && server.InFlightCalls == limit + extra, "A's calls are in");

            // B's call: served while A's handlers still hold their workers (without the limit, A's calls fill the four
            // workers and the pool's queue, and B's waits behind them until the gate opens).
            using (Transaction reply = await b.CallAsync(Fast, Encode(42), TestTimeouts.Long).AsTask().WaitAsync(s_served))
            {
                Assert.Equal(42, Decode(reply.Payload));
            }
            Assert.Equal(limit, service.Entered);
        }
        finally
        {
            service.Gate.Set();
        }
        Transaction[] replies = await Task.WhenAll(calls).WaitAsync(TestTimeouts.Long);
        Assert.Equal(Enumerable.Range(0, limit + extra), replies.Select(reply => Decode(reply.Payload)));
        foreach (Transaction reply in replies)
        {
            reply.Dispose();
        }
        Assert.Equal(limit, service.Peak);
        await Poll.WaitUntilAsync(() => server.InFlightCalls == 0, "every call is counted out");
    }

    [Fact]
    public async Task Queue_LimitPlusMany_AllComplete_NeverMoreThanTheLimitAtOnce_LimitOneRunsThemInArrivalOrder()
    {
        foreach (int limit in new[] { 1, 3 })
        {
            const int queued = 20;
            string name = ControlHandshakeTests.UniqueName();
            using var service = new GatedService();
            service.Gate.Set();
            var log = new LogCapture();
            PageRangeServerOptions options = Options(limit, queue: queued);
            options.ConnectionOptions.LoggerFactory = log.Factory;
            await using var server = PageRangeServer.Start(name, options, service.Configure);
            await using PageRangeConnection client = await ServerTestOptions.ConnectAsync(name);
            // Sent in order from this thread: the queue hands them out in that order.
            Task<Transaction>[] calls = [.. Enumerable.Range(0, limit + queued).Select(i => client.CallAsync(Slow, Encode(i), TestTimeouts.Long).AsTask())];
            Transaction[] replies = await Task.WhenAll(calls).WaitAsync(TestTimeouts.Long);
            Assert.Equal(Enumerable.Range(0, limit + queued), replies.Select(reply => Decode(reply.Payload)));
            foreach (Transaction reply in replies)
            {
                reply.Dispose();
            }
            Assert.Equal(limit + queued, service.Entered);
            Assert.InRange(service.Peak, 1, limit);
            if (limit == 1)
            {
                Assert.Equal(Enumerable.Range(0, 1 + queued), service.Order);
            }
            await Poll.WaitUntilAsync(() => server.InFlightCalls == 0, "every call is counted out");
            log.Dispose();
        }
    }

    [Fact]
    public async Task Oneways_EveryRunningCallWaitsForALaterOnewayOfItsClient_AllComplete()
    {
        const int limit = 2;
        const int calls = 6;
        string name = ControlHandshakeTests.UniqueName();
        var released = new ConcurrentDictionary<int, TaskCompletionSource>();
        TaskCompletionSource For(int id) => released.GetOrAdd(id, _ => new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously));
        int entered = 0;
        await using var server = PageRangeServer.Start(name, Options(limit, queue: 16), builder => builder
            .Map(Slow, async (Transaction tx, CallContext ctx) =>
            {
                int id = Decode(tx.Payload);
                Interlocked.Increment(ref entered);
                await For(id).Task.WaitAsync(TestTimeouts.Long).ConfigureAwait(false);
                tx.Reply(Encode(id));
            })
            .Map(Release, (tx, ctx) => For(Decode(tx.Payload)).TrySetResult()));
        await using PageRangeConnection client = await ServerTestOptions.ConnectAsync(name);
        Task<Transaction>[] waiting = [.. Enumerable.Range(0, calls).Select(i => client.CallAsync(Slow, Encode(i), TestTimeouts.Long).AsTask())];
        // Not waiting for the queued calls to be counted in: a server that stopped receiving at the limit (the rejected
        // design) would fail that wait rather than the one below, which is the deadlock itself.
        await Poll.WaitUntilAsync(() => Volatile.Read(ref entered) == limit, "the limit is reached");

        // The calls running wait for these, which arrive behind the queued calls: the session must go on receiving.
        for (int i = 0; i < calls; i++)
        {
            client.SendOneway(Release, Encode(i));
        }
        Transaction[] replies = await Task.WhenAll(waiting).WaitAsync(TestTimeouts.Long);
        Assert.Equal(Enumerable.Range(0, calls), replies.Select(reply => Decode(reply.Payload)));
        foreach (Transaction reply in replies)
        {
            reply.Dispose();
        }
        await Poll.WaitUntilAsync(() => server.InFlightCalls == 0, "every call is counted out");
    }

    [Fact]
    public async Task Refusal_BeyondTheQueue_ResourceExhaustedAtOnce_SessionGoesOn_OtherClientServed_Logged()
    {
        const int queue = 2;
        const int refused = 3;
        string name = ControlHandshakeTests.UniqueName();
        using var service = new GatedService();
        using var log = new LogCapture();
        PageRangeServerOptions options = Options(limit: 1, queue);
        options.ConnectionOptions.LoggerFactory = log.Factory;
        await using var server = PageRangeServer.Start(name, options, service.Configure);
        var disconnects = new ConcurrentQueue<ClientDisconnectedEventArgs>();
        server.ClientDisconnected += (_, e) => disconnects.Enqueue(e);
        await using PageRangeConnection a = await ServerTestOptions.ConnectAsync(name);
        await using PageRangeConnection b = await ServerTestOptions.ConnectAsync(name);
        var held = new List<Task<Transaction>>();
        try
        {
            for (int i = 0; i < 1 + queue; i++)
            {
                held.Add(a.CallAsync(Slow, Encode(i), TestTimeouts.Long).AsTask());
            }
            await Poll.WaitUntilAsync(() => service.Entered == 1 && server.InFlightCalls == 1 + queue, "one call runs and two wait");
            for (int i = 0; i < refused; i++)
            {
                RemoteCallException error = await Assert.ThrowsAsync<RemoteCallException>(
                    () => a.CallAsync(Slow, Encode(100 + i), TestTimeouts.Long).AsTask().WaitAsync(s_served));
                Assert.Equal(CallStatus.ResourceExhausted, error.Status);
                Assert.Contains("MaxQueuedCallsPerClient", error.Message, StringComparison.Ordinal);
            }
            // Oneways and another client go on.
            using (Transaction reply = await b.CallAsync(Fast, Encode(7), TestTimeouts.Long).AsTask().WaitAsync(s_served))
            {
                Assert.Equal(7, Decode(reply.Payload));
            }
            Assert.Equal(1, service.Entered);
        }
        finally
        {
            service.Gate.Set();
        }
        Transaction[] replies = await Task.WhenAll(held).WaitAsync(TestTimeouts.Long);
        Assert.Equal([0, 1, 2], replies.Select(reply => Decode(reply.Payload)));
        foreach (Transaction reply in replies)
        {
            reply.Dispose();
        }
        // The session is intact: A's next call runs.
        using (Transaction again = await a.CallAsync(Fast, Encode(9), TestTimeouts.Long).AsTask().WaitAsync(TestTimeouts.Long))
        {
            Assert.Equal(9, Decode(again.Payload));
        }
        Assert.Empty(disconnects);
        Assert.Equal(2, server.ClientCount);
        Assert.Equal(refused, log.WithId(PageRangeLogEvents.ClientCallRefused).Length);
        Assert.NotEmpty(log.WithId(PageRangeLogEvents.ClientCallsQueued));
        await Poll.WaitUntilAsync(() => server.InFlightCalls == 0, "every call is counted out");
    }

    [Fact]
    public async Task Nested_AsyncHandlerCallsBackIntoItsClientAtTheLimit_TheClientsCallInThatChainRuns_NoDeadlock()
    {
        string name = ControlHandshakeTests.UniqueName();
        // One slot, no queue: the client's call back into the server in the chain finds the slot held by the call that
        // waits for it; counted, it would be refused (or, queued, wait forever).
        await using var server = PageRangeServer.Start(name, Options(limit: 1, queue: 0), builder => builder
            .Map(Slow, async (Transaction tx, CallContext ctx) =>
            {
                int n = Decode(tx.Payload);
                // Asynchronously: no thread waits in the chain, so the client's call back comes through the dispatch.
                using Transaction back = await ctx.CallAsync(Back, Encode(n + 1), TestTimeouts.Long).ConfigureAwait(false);
                tx.Reply(back.Payload);
            })
            .Map(Inner, (tx, ctx) => tx.Reply(Encode(Decode(tx.Payload) + 1))));
        await using PageRangeConnection client = await ServerTestOptions.ConnectAsync(name);
        using var stop = new CancellationTokenSource();
        Task receiver = Task.Run(async () =>
        {
            while (!stop.IsCancellationRequested)
            {
                Transaction tx = await client.ReceiveAsync(stop.Token).ConfigureAwait(false);
                using (tx)
                {
                    // The client's side of the chain: calls the server again, one level deeper.
                    using Transaction inner = await client.CallAsync(Inner, tx.Payload.ToArray(), tx.NestedChain, TestTimeouts.Long).ConfigureAwait(false);
                    tx.Reply(inner.Payload);
                }
            }
        });
        try
        {
            using Transaction reply = await client.CallAsync(Slow, Encode(10), TestTimeouts.Long).AsTask().WaitAsync(TestTimeouts.Long);
            Assert.Equal(12, Decode(reply.Payload));
        }
        finally
        {
            await stop.CancelAsync();
            await Assert.ThrowsAnyAsync<OperationCanceledException>(() => receiver.WaitAsync(TestTimeouts.Long));
        }
        await Poll.WaitUntilAsync(() => server.InFlightCalls == 0, "every call is counted out");
    }

    [Fact]
    public async Task Nested_AClientThatLeavesTheServersCallUnansweredAndSendsManyCallsInItsChain_NoMoreThanTheLimitRunBesideIt()
    {
        string name = ControlHandshakeTests.UniqueName();
        using var gate = new ManualResetEventSlim(false);
        int running = 0;
        int peak = 0;
        await using var server = PageRangeServer.Start(name, Options(limit: 1, queue: 0), builder => builder
            .Map(Slow, async (Transaction tx, CallContext ctx) =>
            {
                using Transaction back = await ctx.CallAsync(Back, tx.Payload.ToArray(), TestTimeouts.Long).ConfigureAwait(false);
                tx.Reply(back.Payload);
            })
            .Map(Inner, (tx, ctx) =>
            {
                RaisePeak(ref peak, Interlocked.Increment(ref running));
                try
                {
                    Assert.True(gate.Wait(TestTimeouts.Long), "the gate never opened");
                    tx.Reply(tx.Payload);
                }
                finally
                {
                    Interlocked.Decrement(ref running);
                }
            }));
        await using PageRangeConnection client = await ServerTestOptions.ConnectAsync(name);
        // The outer call holds the one slot and waits in its chain for the client's answer, which does not come yet.
        Task<Transaction> outer = client.CallAsync(Slow, Encode(1), TestTimeouts.Long).AsTask();
        using Transaction callback = await client.ReceiveAsync().AsTask().WaitAsync(TestTimeouts.Long);
        // The client sends three calls "nested" in that chain: one runs beside the limit, as an honest chain's would;
        // the others count as any call (the slot is taken, no queue): refused.
        Task<Transaction>[] nested = [.. Enumerable.Range(0, 3).Select(i => client.CallAsync(Inner, Encode(i), callback.NestedChain, TestTimeouts.Long).AsTask())];
        try
        {
            await Poll.WaitUntilAsync(() => nested.Count(static task => task.IsFaulted) == 2, "two of the nested calls refused");
            foreach (Task<Transaction> refused in nested.Where(static task => task.IsFaulted))
            {
                RemoteCallException error = await Assert.ThrowsAsync<RemoteCallException>(() => refused);
                Assert.Equal(CallStatus.ResourceExhausted, error.Status);
            }
            await Poll.WaitUntilAsync(() => Volatile.Read(ref running) == 1, "one nested call runs");
        }
        finally
        {
            gate.Set();
            callback.Reply(callback.Payload);
        }
        (await nested.Single(static task => !task.IsFaulted).WaitAsync(TestTimeouts.Long)).Dispose();
        (await outer.WaitAsync(TestTimeouts.Long)).Dispose();
        Assert.Equal(1, Volatile.Read(ref peak));
        await Poll.WaitUntilAsync(() => server.InFlightCalls == 0, "every call is counted out");

        // Given back: the next chain's nested call runs beside the limit again.
        Task<Transaction> again = client.CallAsync(Slow, Encode(2), TestTimeouts.Long).AsTask();
        using (Transaction second = await client.ReceiveAsync().AsTask().WaitAsync(TestTimeouts.Long))
        {
            using Transaction inner = await client.CallAsync(Inner, Encode(7), second.NestedChain, TestTimeouts.Long).AsTask().WaitAsync(TestTimeouts.Long);
            Assert.Equal(7, Decode(inner.Payload));
            second.Reply(second.Payload);
        }
        (await again.WaitAsync(TestTimeouts.Long)).Dispose();
    }

    [Fact]
    public async Task Nested_ACallMarkedNestedInAChainTheServerIsNotCallingIn_IsCounted()
    {
        string name = ControlHandshakeTests.UniqueName();
        using var service = new GatedService();
        await using var server = PageRangeServer.Start(name, Options(limit: 1, queue: 0), service.Configure);
        await using PageRangeConnection client = await ServerTestOptions.ConnectAsync(name);
        Task<Transaction> holding = client.CallAsync(Slow, Encode(0), TestTimeouts.Long).AsTask();
        try
        {
            await Poll.WaitUntilAsync(() => service.Entered == 1, "the slot is taken");
            // A forged chain, one level deep: no call of the server's waits in it, so it gets no way around the limit.
            RemoteCallException error = await Assert.ThrowsAsync<RemoteCallException>(
                () => client.CallAsync(Fast, Encode(1), new CallChain(0x1234, 1), TestTimeouts.Long).AsTask().WaitAsync(s_served));
            Assert.Equal(CallStatus.ResourceExhausted, error.Status);
        }
        finally
        {
            service.Gate.Set();
        }
        (await holding.WaitAsync(TestTimeouts.Long)).Dispose();
    }

    [Fact]
    public async Task Disconnect_WithAFullQueue_QueuedCallsDroppedNotRun_CountsGivenBack_OthersServed()
    {
        const int queue = 4;
        string name = ControlHandshakeTests.UniqueName();
        using var service = new GatedService();
        await using var server = PageRangeServer.Start(name, Options(limit: 1, queue), service.Configure);
        var disconnects = new ConcurrentQueue<ClientDisconnectedEventArgs>();
        server.ClientDisconnected += (_, e) => disconnects.Enqueue(e);
        await using PageRangeConnection b = await ServerTestOptions.ConnectAsync(name);
        PageRangeConnection a = await ServerTestOptions.ConnectAsync(name);
        var held = new List<Task<Transaction>>();
        try
        {
            for (int i = 0; i < 1 + queue; i++)
            {
                held.Add(a.CallAsync(Slow, Encode(i), TestTimeouts.Long).AsTask());
            }
            await Poll.WaitUntilAsync(() => service.Entered == 1 && server.InFlightCalls == 1 + queue, "the queue is full");
            await a.DisposeAsync();
            await Poll.WaitUntilAsync(() => !disconnects.IsEmpty, "A's session ended");
            // Only the running handler is left in flight: the queued calls were dropped and counted out.
            await Poll.WaitUntilAsync(() => server.InFlightCalls == 1, "the queued calls are counted out");
            using (Transaction reply = await b.CallAsync(Fast, Encode(5), TestTimeouts.Long).AsTask().WaitAsync(s_served))
            {
                Assert.Equal(5, Decode(reply.Payload));
            }
        }
        finally
        {
            service.Gate.Set();
            await a.DisposeAsync();
        }
        foreach (Task<Transaction> call in held)
        {
            await Assert.ThrowsAnyAsync<Exception>(() => call.WaitAsync(TestTimeouts.Long));
        }
        await Poll.WaitUntilAsync(() => server.InFlightCalls == 0, "every call is counted out");
        Assert.Equal(1, service.Entered);
        Assert.Equal(1, server.ClientCount);
    }

    [Fact]
    public async Task Deadline_PassesWhileQueued_TheCallIsNotRun()
    {
        string name = ControlHandshakeTests.UniqueName();
        using var service = new GatedService();
        await using var server = PageRangeServer.Start(name, Options(limit: 1, queue: 4), service.Configure);
        await using PageRangeConnection client = await ServerTestOptions.ConnectAsync(name);
        Task<Transaction> holding = client.CallAsync(Slow, Encode(0), TestTimeouts.Long).AsTask();
        try
        {
            await Poll.WaitUntilAsync(() => service.Entered == 1, "the slot is taken");
            DateTimeOffset deadline = DateTimeOffset.UtcNow.AddMilliseconds(200);
            var options = new PageRangeCallOptions { Deadline = deadline };
            await Assert.ThrowsAnyAsync<Exception>(() => client.CallAsync(Slow, Encode(1), options, TestTimeouts.Long).AsTask().WaitAsync(TestTimeouts.Long));
            // The caller gave up at its deadline; the server still holds the call in the queue until the slot comes back.
            Assert.Equal(2, server.InFlightCalls);
            // The caller's timer may fire a little before the deadline by the wall clock, and its cancel may not have
            // reached the server yet: the slot comes back only once the deadline has passed for the server too.
            await Poll.WaitUntilAsync(() => DateTimeOffset.UtcNow > deadline, "the deadline passed");
        }
        finally
        {
            service.Gate.Set();
        }
        (await holding.WaitAsync(TestTimeouts.Long)).Dispose();
        await Poll.WaitUntilAsync(() => server.InFlightCalls == 0, "every call is counted out");
        Assert.Equal(1, service.Entered);
    }

    [Fact]
    public void Options_OutOfRange_Throw_DefaultsAreDocumented()
    {
        var options = new PageRangeServerOptions();
        Assert.Equal(PageRangeServerOptions.DefaultMaxConcurrentCallsPerClient, options.MaxConcurrentCallsPerClient);
        Assert.Equal(PageRangeServerOptions.DefaultMaxQueuedCallsPerClient, options.MaxQueuedCallsPerClient);
        Assert.Throws<ArgumentOutOfRangeException>(() => options.MaxConcurrentCallsPerClient = 0);
        Assert.Throws<ArgumentOutOfRangeException>(() => options.MaxConcurrentCallsPerClient = 65536);
        Assert.Throws<ArgumentOutOfRangeException>(() => options.MaxQueuedCallsPerClient = -1);
        Assert.Throws<ArgumentOutOfRangeException>(() => options.MaxQueuedCallsPerClient = 65536);
        options.MaxQueuedCallsPerClient = 0;
        Assert.Equal(0, options.MaxQueuedCallsPerClient);
    }
}
