using System.Buffers.Binary;
using System.Collections.Concurrent;
using PageRange.Serialization;
using PageRange.Tests.Infrastructure;
using PageRange.Transport;

namespace PageRange.Tests.Transport;

/// <summary>Call chains and nested calls (binder's transaction stack), in one process over a real connection.</summary>
public sealed class ConnectionNestedCallTests(ITestOutputHelper output)
{
    /// <summary>What one handler invocation saw: the side, its thread, the call's chain and depth.</summary>
    internal readonly record struct Visit(string Side, int Thread, ulong Chain, int Depth);

    /// <summary>
    /// The ping-pong handler: a call carrying n &gt; 0 calls the peer back in its chain with n - 1 and replies with the
    /// answer plus one; n = 0 replies 0. So a call with n comes back with n, after n nested calls.
    /// </summary>
    internal static void PingPong(PageRangeConnection connection, Transaction call, string side, ConcurrentQueue<Visit> visits)
    {
        visits.Enqueue(new Visit(side, Environment.CurrentManagedThreadId, call.ChainId, call.Depth));
        int remaining = BinaryPrimitives.ReadInt32LittleEndian(call.Payload);
        int answer = 0;
        if (remaining > 0)
        {
            byte[] request = new byte[4];
            BinaryPrimitives.WriteInt32LittleEndian(request, remaining - 1);
            try
            {
                using Transaction reply = connection.Call(call.Code, request, call.NestedChain, TestTimeouts.Long);
                answer = BinaryPrimitives.ReadInt32LittleEndian(reply.Payload) + 1;
            }
            catch (RemoteCallException error)
            {
                call.ReplyError(error.Status, error.Message);
                return;
            }
            catch (PageRangeStatusException error)
            {
                call.ReplyError(error.Status, error.Message);
                return;
            }
        }
        byte[] payload = new byte[4];
        BinaryPrimitives.WriteInt32LittleEndian(payload, answer);
        call.Reply(payload);
    }

    /// <summary>One thread that receives and handles calls until the connection ends or <paramref name="stop"/> fires.</summary>
    private static Thread StartServing(PageRangeConnection connection, Action<Transaction> handle, CancellationToken stop)
    {
        var thread = new Thread(() =>
        {
            try
            {
                while (true)
                {
                    Transaction call = connection.Receive(stop);
                    try
                    {
                        handle(call);
                    }
                    finally
                    {
                        call.Dispose();
                    }
                }
            }
            catch (Exception error) when (error is OperationCanceledException or PeerDiedException or ObjectDisposedException)
            {
                // Stopped.
            }
        })
        { IsBackground = true, Name = "serving" };
        thread.Start();
        return thread;
    }

    private static byte[] Count(int value)
    {
        byte[] payload = new byte[4];
        BinaryPrimitives.WriteInt32LittleEndian(payload, value);
        return payload;
    }

    [Fact]
    public async Task Call_ChainABAB_Depth8_OneThreadPerSideNoDeadlock()
    {
        await using ConnectionPair pair = await ConnectionPair.CreateAsync();
        var visits = new ConcurrentQueue<Visit>();
        pair.Client.SetNestedCallHandler(call => PingPong(pair.Client, call, "client", visits));
        pair.Server.SetNestedCallHandler(call => PingPong(pair.Server, call, "server", visits));
        using var stop = new CancellationTokenSource();
        // The server's only thread: it takes the first call from the ready queue; every later one of the chain reaches
        // it while it waits in its own nested call.
        Thread server = StartServing(pair.Server, call => PingPong(pair.Server, call, "server", visits), stop.Token);

        int answer = -1;
        int clientThread = 0;
        var client = new Thread(() =>
        {
            clientThread = Environment.CurrentManagedThreadId;
            using Transaction reply = pair.Client.Call(7, Count(8), TestTimeouts.Long);
            answer = BinaryPrimitives.ReadInt32LittleEndian(reply.Payload);
        })
        { IsBackground = true, Name = "client" };
        client.Start();

        Assert.True(client.Join(TestTimeouts.Long), "the chain deadlocked");
        await stop.CancelAsync();
        Assert.True(server.Join(TestTimeouts.Long));
        foreach (Visit visit in visits)
        {
            output.WriteLine(visit.ToString());
        }
        Assert.Equal(8, answer);
        Visit[] all = [.. visits];
        Assert.Equal(9, all.Length);
        // One chain, started by the client (the connecting side's chains have the high bit clear), depths 0..8 in order.
        Assert.All(all, v => Assert.Equal(all[0].Chain, v.Chain));
        Assert.NotEqual(0UL, all[0].Chain);
        Assert.Equal(Enumerable.Range(0, 9), all.Select(v => v.Depth));
        Assert.All(all.Where(v => v.Side == "client"), v => Assert.Equal(clientThread, v.Thread));
        Assert.Equal(server.ManagedThreadId, Assert.Single(all.Where(v => v.Side == "server").Select(v => v.Thread).Distinct()));
        Assert.Equal(5, all.Count(v => v.Side == "server"));
    }

    [Fact]
    public async Task Call_ChainsOfBothSides_NeverCollide()
    {
        await using ConnectionPair pair = await ConnectionPair.CreateAsync();
        var chains = new ConcurrentQueue<(string, ulong)>();
        using var stop = new CancellationTokenSource();
        Thread server = StartServing(pair.Server, call => { chains.Enqueue(("from client", call.ChainId)); call.Reply([]); }, stop.Token);
        Thread client = StartServing(pair.Client, call => { chains.Enqueue(("from server", call.ChainId)); call.Reply([]); }, stop.Token);

        for (int i = 0; i < 5; i++)
        {
            pair.Client.Call(1, [], TestTimeouts.Long).Dispose();
            pair.Server.Call(1, [], TestTimeouts.Long).Dispose();
        }

        await stop.CancelAsync();
        Assert.True(server.Join(TestTimeouts.Long) && client.Join(TestTimeouts.Long));
        ulong[] ids = [.. chains.Select(c => c.Item2)];
        Assert.Equal(10, ids.Distinct().Count());
        Assert.All(chains.Where(c => c.Item1 == "from client"), c => Assert.Equal(0UL, c.Item2 >> 63));
        Assert.All(chains.Where(c => c.Item1 == "from server"), c => Assert.Equal(1UL, c.Item2 >> 63));
    }

    [Fact]
    public async Task Call_NewChainsFromManyThreadsAndEveryCallPath_AllDistinct()
    {
        // A call that starts a chain takes the chain's id and its own id from one draw of the call sequence: calls racing
        // from four threads through each path that starts a chain (Call, CallAsync, a reserved call, a call with
        // options) must still each start a chain of its own, all with our side's bit clear.
        await using ConnectionPair pair = await ConnectionPair.CreateAsync();
        var chains = new ConcurrentQueue<ulong>();
        using var stop = new CancellationTokenSource();
        Thread server = StartServing(pair.Server, call => { chains.Enqueue(call.ChainId); call.Reply([]); }, stop.Token);
        const int Threads = 4;
        const int CallsPerPath = 50;
        var options = new PageRangeCallOptions { Deadline = DateTimeOffset.UtcNow + TestTimeouts.Long };
        Task[] callers = [.. Enumerable.Range(0, Threads).Select(_ => Task.Run(async () =>
        {
            for (int i = 0; i < CallsPerPath; i++)
            {
                pair.Client.Call(1, [1], TestTimeouts.Long).Dispose();
                (await pair.Client.CallAsync(1, new byte[] { 2 }, TestTimeouts.Long)).Dispose();
                ReservedBuffer reserved = pair.Client.Reserve(8);
                reserved.Span[0] = 3;
                reserved.CommitCall(1, 1, TestTimeouts.Long).Dispose();
                pair.Client.Call(1, [4], options, TestTimeouts.Long).Dispose();
            }
        }))];
        await Task.WhenAll(callers).WaitAsync(TestTimeouts.Long);

        await stop.CancelAsync();
        Assert.True(server.Join(TestTimeouts.Long));
        ulong[] ids = [.. chains];
        Assert.Equal(Threads * CallsPerPath * 4, ids.Length);
        Assert.Equal(ids.Length, ids.Distinct().Count());
        Assert.All(ids, id => Assert.Equal(0UL, id >> 63));
        Assert.DoesNotContain(0UL, ids);
    }

    [Fact]
    public async Task Call_IncomingDeeperThanLimit_ErrorReplyAndNeverReachesAHandler()
    {
        PageRangeOptions serverOptions = ConnectionPair.DefaultOptions();
        serverOptions.MaxCallDepth = 2;
        await using Diagnostics.LoopbackPair pair = await Diagnostics.LoopbackPair.OpenAsync(serverOptions, ConnectionPair.DefaultOptions());
        var handled = new ConcurrentQueue<int>();
        using var stop = new CancellationTokenSource();
        Thread server = StartServing(pair.Server, call => { handled.Enqueue(call.Depth); call.Reply([]); }, stop.Token);

        // Depth 2 is within the limit; depth 3 is not.
        pair.Client.Call(1, [], new CallChain(42, 2), TestTimeouts.Long).Dispose();
        var error = Assert.Throws<RemoteCallException>(() => pair.Client.Call(1, [], new CallChain(42, 3), TestTimeouts.Long));

        output.WriteLine(error.Message);
        Assert.Equal(CallStatus.ResourceExhausted, error.Status);
        Assert.Contains("call depth limit 2 exceeded", error.Message, StringComparison.Ordinal);
        // The connection goes on: the next call is served.
        pair.Client.Call(1, [], TestTimeouts.Long).Dispose();
        await stop.CancelAsync();
        Assert.True(server.Join(TestTimeouts.Long));
        Assert.Equal([2, 0], handled.ToArray());
        Assert.Equal(0, pair.Server.LiveIncomingTransactions);
    }

    [Fact]
    public async Task Call_ChainedPingPongOverTheLimit_CallerGetsTheDepthError()
    {
        PageRangeOptions options = ConnectionPair.DefaultOptions();
        options.MaxCallDepth = 5;
        await using ConnectionPair pair = await ConnectionPair.CreateAsync(options);
        var visits = new ConcurrentQueue<Visit>();
        pair.Client.SetNestedCallHandler(call => PingPong(pair.Client, call, "client", visits));
        pair.Server.SetNestedCallHandler(call => PingPong(pair.Server, call, "server", visits));
        using var stop = new CancellationTokenSource();
        Thread server = StartServing(pair.Server, call => PingPong(pair.Server, call, "server", visits), stop.Token);

        Exception? failure = null;
        var client = new Thread(() => failure = Record.Exception(() => pair.Client.Call(7, Count(20), TestTimeouts.Long).Dispose()))
        { IsBackground = true };
        client.Start();

        Assert.True(client.Join(TestTimeouts.Long), "the chain deadlocked");
        await stop.CancelAsync();
        Assert.True(server.Join(TestTimeouts.Long));
        var error = Assert.IsType<RemoteCallException>(failure);
        output.WriteLine(error.Message);
        Assert.Equal(CallStatus.ResourceExhausted, error.Status);
        Assert.Contains("call depth limit 5 exceeded", error.Message, StringComparison.Ordinal);
        Assert.Equal(5, visits.Max(v => v.Depth));
    }

    [Fact]
    public async Task Call_OutgoingDeeperThanLimit_ThrowsAtOnceAndSendsNothing()
    {
        PageRangeOptions options = ConnectionPair.DefaultOptions();
        options.MaxCallDepth = 3;
        await using ConnectionPair pair = await ConnectionPair.CreateAsync(options);
        ulong sentBefore = pair.Client.Outbound.Sent;

        var error = Assert.Throws<PageRangeStatusException>(() => pair.Client.Call(1, [1], new CallChain(9, 4), TestTimeouts.Long));
        var asyncError = await Assert.ThrowsAsync<PageRangeStatusException>(
            async () => (await pair.Client.CallAsync(1, new byte[1], new CallChain(9, 4), TestTimeouts.Long)).Dispose());

        Assert.Equal(CallStatus.ResourceExhausted, error.Status);
        Assert.Equal(CallStatus.ResourceExhausted, asyncError.Status);
        Assert.Contains("call depth limit 3 exceeded", error.Message, StringComparison.Ordinal);
        Assert.Equal(sentBefore, pair.Client.Outbound.Sent);
        // Nor into the peer's direct call lines (DirectCallLayout), where a small synchronous call goes.
        Assert.Equal(0, pair.Client.Outbound.DirectCallsSent);
    }

    [Fact]
    public async Task Call_NewChainDuringNestedWait_GoesToTheReadyQueueNotTheWaitingThread()
    {
        await using ConnectionPair pair = await ConnectionPair.CreateAsync();
        var nestedHandled = new ConcurrentQueue<int>();
        pair.Client.SetNestedCallHandler(call => { nestedHandled.Enqueue(Environment.CurrentManagedThreadId); call.Reply([]); });
        using var stop = new CancellationTokenSource();
        // The server's handler calls the client back in a NEW chain (not nested) before it replies.
        Thread server = StartServing(pair.Server, call =>
        {
            pair.Server.Call(2, [], TestTimeouts.Long).Dispose();
            call.Reply([]);
        }, stop.Token);
        int poolThread = 0;
        var pool = new ConcurrentQueue<(int Thread, ulong Chain)>();
        Thread client = StartServing(pair.Client, call =>
        {
            pool.Enqueue((Environment.CurrentManagedThreadId, call.ChainId));
            call.Reply([]);
        }, stop.Token);
        poolThread = client.ManagedThreadId;

        pair.Client.Call(1, [], TestTimeouts.Long).Dispose();

        await stop.CancelAsync();
        Assert.True(server.Join(TestTimeouts.Long) && client.Join(TestTimeouts.Long));
        Assert.Empty(nestedHandled);
        (int thread, ulong chain) = Assert.Single(pool);
        Assert.Equal(poolThread, thread);
        Assert.Equal(1UL, chain >> 63);
    }

    [Fact]
    public async Task CallAsync_NestedCallWhileWaitingAsynchronously_GoesToTheReadyQueue()
    {
        await using ConnectionPair pair = await ConnectionPair.CreateAsync();
        var nestedHandled = new ConcurrentQueue<int>();
        pair.Client.SetNestedCallHandler(call => { nestedHandled.Enqueue(call.Depth); call.Reply([]); });
        using var stop = new CancellationTokenSource();
        Thread server = StartServing(pair.Server, call =>
        {
            pair.Server.Call(2, [], call.NestedChain, TestTimeouts.Long).Dispose();
            call.Reply([]);
        }, stop.Token);
        var pool = new ConcurrentQueue<int>();
        Thread client = StartServing(pair.Client, call => { pool.Enqueue(call.Depth); call.Reply([]); }, stop.Token);

        (await pair.Client.CallAsync(1, Array.Empty<byte>(), TestTimeouts.Long).AsTask().WaitAsync(TestTimeouts.Long)).Dispose();

        await stop.CancelAsync();
        Assert.True(server.Join(TestTimeouts.Long) && client.Join(TestTimeouts.Long));
        Assert.Empty(nestedHandled);
        Assert.Equal([1], pool.ToArray());
    }

    [Fact]
    public async Task TypedCall_InChain_RunsOnTheWaitingThreadOneLevelDeeper()
    {
        await using ConnectionPair pair = await ConnectionPair.CreateAsync();
        var visits = new ConcurrentQueue<Visit>();
        pair.Client.SetNestedCallHandler(call =>
        {
            visits.Enqueue(new Visit("client", Environment.CurrentManagedThreadId, call.ChainId, call.Depth));
            Serialization.Order order = PageRangeMessagePack.Deserialize<Serialization.Order>(call);
            PageRangeMessagePack.Reply(call, order.WithId(order.Id + 1));
        });
        using var stop = new CancellationTokenSource();
        Thread server = StartServing(pair.Server, call =>
        {
            Serialization.Order nested = PageRangeMessagePack.Call<Serialization.Order, Serialization.Order>(
                pair.Server, Serialization.Order.Sample(5, 1, 10), call.NestedChain, timeout: TestTimeouts.Long);
            PageRangeMessagePack.Reply(call, nested.WithId(nested.Id + 10));
        }, stop.Token);

        int id = 0;
        int callerThread = 0;
        var caller = new Thread(() =>
        {
            callerThread = Environment.CurrentManagedThreadId;
            id = PageRangeMessagePack.Call<Serialization.Order, Serialization.Order>(
                pair.Client, Serialization.Order.Sample(1, 1, 10), timeout: TestTimeouts.Long).Id;
        })
        { IsBackground = true };
        caller.Start();

        Assert.True(caller.Join(TestTimeouts.Long), "the chain deadlocked");
        await stop.CancelAsync();
        Assert.True(server.Join(TestTimeouts.Long));
        Assert.Equal(16, id);
        Visit visit = Assert.Single(visits);
        Assert.Equal(1, visit.Depth);
        Assert.Equal(callerThread, visit.Thread);
    }

    [Fact]
    public void MaxCallDepth_OutOfRange_Throws()
    {
        var options = new PageRangeOptions();
        Assert.Equal(32, options.MaxCallDepth);
        Assert.Throws<ArgumentOutOfRangeException>(() => options.MaxCallDepth = -1);
        Assert.Throws<ArgumentOutOfRangeException>(() => options.MaxCallDepth = PageRangeOptions.MaxCallDepthLimit + 1);
        options.MaxCallDepth = 0;
        Assert.Equal(0, options.Clone().MaxCallDepth);
    }
}
