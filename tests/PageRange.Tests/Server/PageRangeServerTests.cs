using System.Collections.Concurrent;
using System.Diagnostics;
using System.Diagnostics.CodeAnalysis;
using PageRange.Serialization;
using PageRange.Server;
using PageRange.Tests.Infrastructure;
using PageRange.Tests.Transport;
using PageRange.Transport;

namespace PageRange.Tests.Server;

/// <summary>One server and clients in this process: dispatch by code, typed handlers, error replies, the pool, caps and stop.</summary>
[SuppressMessage("Trimming", "IL2026", Justification = "Tests run on the JIT.")]
[SuppressMessage("AOT", "IL3050", Justification = "Tests run on the JIT.")]
public sealed class PageRangeServerTests(ITestOutputHelper output)
{
    private static PageRangeServerOptions Options(int maxThreads = 4) => ServerTestOptions.InProcess(maxThreads);

    [Fact]
    public async Task Map_RawEcho_ReplyHasTheRequestBytesAndTheCallerCredentials()
    {
        string name = ControlHandshakeTests.UniqueName();
        int seenPid = 0;
        await using var server = PageRangeServer.Start(name, Options(), builder => builder.Map(7, (tx, ctx) =>
        {
            seenPid = ctx.PeerPid;
            Assert.Equal(7u, ctx.Code);
            Assert.False(ctx.IsOneway);
            tx.Reply(tx.Payload);
        }));
        await using PageRangeConnection client = await ServerTestOptions.ConnectAsync(name);
        byte[] request = [.. Enumerable.Range(0, 3000).Select(i => (byte)(i * 7))];
        using Transaction reply = await client.CallAsync(7, request).AsTask().WaitAsync(TestTimeouts.Long);
        Assert.Equal(request, reply.Payload.ToArray());
        Assert.Equal(Environment.ProcessId, seenPid);
    }

    [Fact]
    public async Task Map_AsyncRawHandler_RepliesAfterAnAwait()
    {
        string name = ControlHandshakeTests.UniqueName();
        await using var server = PageRangeServer.Start(name, Options(), builder => builder.Map(3, async (Transaction tx, CallContext ctx) =>
        {
            byte[] copy = tx.Payload.ToArray();
            await Task.Yield();
            Array.Reverse(copy);
            tx.Reply(copy);
        }));
        await using PageRangeConnection client = await ServerTestOptions.ConnectAsync(name);
        using Transaction reply = await client.CallAsync(3, new byte[] { 1, 2, 3 }).AsTask().WaitAsync(TestTimeouts.Long);
        Assert.Equal(new byte[] { 3, 2, 1 }, reply.Payload.ToArray());
    }

    [Fact]
    public async Task MapTyped_CallTyped_GetsTheResponse()
    {
        string name = ControlHandshakeTests.UniqueName();
        await using var server = PageRangeServer.Start(name, Options(), builder => builder
            .Map<AddRequest, AddResponse>(1, (request, _) => new AddResponse(request.A + request.B))
            .Map<AddRequest, AddResponse>(2, async (request, _) =>
            {
                await Task.Yield();
                return new AddResponse(request.A * request.B);
            }));
        await using PageRangeConnection client = await ServerTestOptions.ConnectAsync(name);
        AddResponse sum = await client.CallAsync<AddRequest, AddResponse>(new AddRequest(40, 2), code: 1).AsTask().WaitAsync(TestTimeouts.Long);
        AddResponse product = await client.CallAsync<AddRequest, AddResponse>(new AddRequest(6, 7), code: 2).AsTask().WaitAsync(TestTimeouts.Long);
        Assert.Equal(42, sum.Sum);
        Assert.Equal(42, product.Sum);
    }

    [Fact]
    public async Task UnmappedCode_CallFailsWithAClearMessage()
    {
        string name = ControlHandshakeTests.UniqueName();
        await using var server = PageRangeServer.Start(name, Options(), builder => builder.Map(1, (tx, _) => tx.Reply([])));
        await using PageRangeConnection client = await ServerTestOptions.ConnectAsync(name);
        RemoteCallException error = await Assert.ThrowsAsync<RemoteCallException>(
            () => client.CallAsync(99, ReadOnlyMemory<byte>.Empty).AsTask().WaitAsync(TestTimeouts.Long));
        output.WriteLine(error.Message);
        Assert.Equal(CallStatus.Unimplemented, error.Status);
        Assert.Contains("No handler is mapped to code 99", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task HandlerThrowsStatusException_CallerGetsItsMessage()
    {
        string name = ControlHandshakeTests.UniqueName();
        await using var server = PageRangeServer.Start(name, Options(), builder => builder.Map(5, (_, _) =>
            throw new PageRangeStatusException(CallStatus.NotFound, "order 17 does not exist")));
        await using PageRangeConnection client = await ServerTestOptions.ConnectAsync(name);
        RemoteCallException error = await Assert.ThrowsAsync<RemoteCallException>(
            () => client.CallAsync(5, ReadOnlyMemory<byte>.Empty).AsTask().WaitAsync(TestTimeouts.Long));
        Assert.Equal(CallStatus.NotFound, error.Status);
        Assert.Equal("order 17 does not exist", error.Message);
    }

    [Fact]
    public async Task HandlerThrowsUnexpected_CallerGetsAGenericMessage_ServerReportsTheException()
    {
        string name = ControlHandshakeTests.UniqueName();
        var failures = new ConcurrentQueue<CallFailedEventArgs>();
        await using var server = PageRangeServer.Start(name, Options(), builder => builder.Map(5, (_, _) =>
            throw new InvalidOperationException("secret: /home/alice/.ssh/id_rsa")));
        server.CallFailed += (_, e) => failures.Enqueue(e);
        await using PageRangeConnection client = await ServerTestOptions.ConnectAsync(name);
        RemoteCallException error = await Assert.ThrowsAsync<RemoteCallException>(
            () => client.CallAsync(5, ReadOnlyMemory<byte>.Empty).AsTask().WaitAsync(TestTimeouts.Long));
        Assert.Equal(CallStatus.Internal, error.Status);
        Assert.DoesNotContain("secret", error.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("InvalidOperationException", error.Message, StringComparison.Ordinal);
        Assert.Contains("code 5", error.Message, StringComparison.Ordinal);
        CallFailedEventArgs failure = Assert.Single(failures);
        Assert.Equal(5u, failure.Code);
        Assert.Contains("secret", failure.Exception.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task HandlerThrowsUnexpected_WithIncludeExceptionDetails_CallerGetsTheDetails()
    {
        string name = ControlHandshakeTests.UniqueName();
        PageRangeServerOptions options = Options();
        options.IncludeExceptionDetails = true;
        await using var server = PageRangeServer.Start(name, options, builder => builder.Map(5, (_, _) =>
            throw new InvalidOperationException("the detail")));
        await using PageRangeConnection client = await ServerTestOptions.ConnectAsync(name);
        RemoteCallException error = await Assert.ThrowsAsync<RemoteCallException>(
            () => client.CallAsync(5, ReadOnlyMemory<byte>.Empty).AsTask().WaitAsync(TestTimeouts.Long));
        Assert.Contains("InvalidOperationException: the detail", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task MapOneway_ManyMessages_HandledOneAtATimeInOrder_WhileCallsRunBeside()
    {
        string name = ControlHandshakeTests.UniqueName();
        var seen = new ConcurrentQueue<int>();
        int running = 0;
        int overlap = 0;
        await using var server = PageRangeServer.Start(name, Options(maxThreads: 4), builder => builder
            .MapOneway<Note>(10, (note, _) =>
            {
                if (Interlocked.Increment(ref running) > 1)
                {
                    Interlocked.Increment(ref overlap);
                }
                seen.Enqueue(note.Seq);
                Thread.SpinWait(200);
                Interlocked.Decrement(ref running);
            })
            .Map(11, (tx, _) => tx.Reply(tx.Payload)));
        await using PageRangeConnection client = await ServerTestOptions.ConnectAsync(name);
        const int count = 2000;
        for (int i = 0; i < count; i++)
        {
            client.SendOneway(new Note(i), code: 10);
            if (i % 100 == 0)
            {
                using Transaction reply = await client.CallAsync(11, new byte[] { (byte)i }).AsTask().WaitAsync(TestTimeouts.Long);
                Assert.Equal((byte)i, reply.Payload[0]);
            }
        }
        await WaitUntilAsync(() => seen.Count == count);
        Assert.Equal(Enumerable.Range(0, count), seen);
        Assert.Equal(0, overlap);
    }

    [Fact]
    public async Task MapOneway_TwoWayCall_FailsWithAClearMessage()
    {
        string name = ControlHandshakeTests.UniqueName();
        await using var server = PageRangeServer.Start(name, Options(), builder => builder.MapOneway<Note>(10, (_, _) => { }));
        await using PageRangeConnection client = await ServerTestOptions.ConnectAsync(name);
        RemoteCallException error = await Assert.ThrowsAsync<RemoteCallException>(
            () => client.CallAsync(10, ReadOnlyMemory<byte>.Empty).AsTask().WaitAsync(TestTimeouts.Long));
        Assert.Equal(CallStatus.FailedPrecondition, error.Status);
        Assert.Contains("oneway messages only", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Pool_BlockedHandlers_GrowsToMaxThreadsOnly_ThenIdleWorkersRetire()
    {
        string name = ControlHandshakeTests.UniqueName();
        PageRangeServerOptions options = Options(maxThreads: 3);
        options.IdleThreadTimeout = TimeSpan.FromMilliseconds(200);
        using var release = new ManualResetEventSlim(false);
        int entered = 0;
        await using var server = PageRangeServer.Start(name, options, builder => builder.Map(1, (tx, _) =>
        {
            Interlocked.Increment(ref entered);
            release.Wait(TestTimeouts.Long);
            tx.Reply([]);
        }));
        Assert.Equal(1, server.ThreadCount);
        await using PageRangeConnection client = await ServerTestOptions.ConnectAsync(name);
        Task[] calls = [.. Enumerable.Range(0, 8).Select(_ => client.CallAsync(1, ReadOnlyMemory<byte>.Empty).AsTask()
            .ContinueWith(t => t.Result.Dispose(), TaskScheduler.Default))];
        await WaitUntilAsync(() => Volatile.Read(ref entered) == 3 && server.InFlightCalls == 8);
        Assert.Equal(3, server.ThreadCount);
        Assert.Equal(3, Volatile.Read(ref entered));
        release.Set();
        await Task.WhenAll(calls).WaitAsync(TestTimeouts.Long);
        Assert.Equal(3, server.PeakThreadCount);
        await WaitUntilAsync(() => server.ThreadCount == 1);
    }

    [Fact]
    public async Task MaxClients_OneTooMany_IsRefusedWithTheLimitInTheEvent_AndTheClientIsToldOnlyThatItWasRefused()
    {
        string name = ControlHandshakeTests.UniqueName();
        PageRangeServerOptions options = Options();
        options.MaxClients = 2;
        var refused = new ConcurrentQueue<ClientRefusedEventArgs>();
        await using var server = PageRangeServer.Start(name, options, builder => builder.Map(1, (tx, _) => tx.Reply([1])));
        server.ClientRefused += (_, e) => refused.Enqueue(e);
        await using PageRangeConnection first = await ServerTestOptions.ConnectAsync(name);
        await using PageRangeConnection second = await ServerTestOptions.ConnectAsync(name);
        await WaitUntilAsync(() => server.ClientCount == 2);
        ConnectionRefusedException theirs = await Assert.ThrowsAsync<ConnectionRefusedException>(() => ServerTestOptions.ConnectAsync(name));
        ClientRefusedEventArgs refusal = Assert.Single(refused);
        output.WriteLine($"server: {refusal}\nclient: {theirs.Message}");
        Assert.Contains("MaxClients reached: 2 of 2", refusal.Reason, StringComparison.Ordinal);
        Assert.Equal(Environment.ProcessId, refusal.Pid);
        Assert.True(theirs.RefusedByPeer);
        Assert.DoesNotContain("MaxClients", theirs.Message, StringComparison.Ordinal);
        using Transaction ok = await first.CallAsync(1, ReadOnlyMemory<byte>.Empty).AsTask().WaitAsync(TestTimeouts.Long);
        Assert.Equal(1, ok.Payload[0]);
    }

    [Fact]
    public async Task MaxClientsPerUid_OneTooMany_IsRefusedNamingTheUid()
    {
        string name = ControlHandshakeTests.UniqueName();
        PageRangeServerOptions options = Options();
        options.MaxClientsPerUid = 1;
        var refused = new ConcurrentQueue<ClientRefusedEventArgs>();
        await using var server = PageRangeServer.Start(name, options, builder => builder.Map(1, (tx, _) => tx.Reply([1])));
        server.ClientRefused += (_, e) => refused.Enqueue(e);
        await using PageRangeConnection first = await ServerTestOptions.ConnectAsync(name);
        await WaitUntilAsync(() => server.ClientCount == 1);
        await Assert.ThrowsAsync<ConnectionRefusedException>(() => ServerTestOptions.ConnectAsync(name));
        Assert.Contains($"MaxClientsPerUid reached: uid {Interop.GetEffectiveUserId()} has 1 of 1", Assert.Single(refused).Reason, StringComparison.Ordinal);
        await first.DisposeAsync();
        await WaitUntilAsync(() => server.ClientCount == 0);
        await using PageRangeConnection third = await ServerTestOptions.ConnectAsync(name);
        using Transaction ok = await third.CallAsync(1, ReadOnlyMemory<byte>.Empty).AsTask().WaitAsync(TestTimeouts.Long);
        Assert.Equal(1, ok.Payload[0]);
    }

    [Fact]
    public async Task SessionThatCannotStart_EndsAlone_NotCountedAgainstMaxClients_TheNextClientIsServed()
    {
        // A session's start can fail (a thread start at a pid or memory limit): that client stayed counted for the
        // server's life, its connection open, and the error ended the accept loop, so every later client waited.
        string name = ControlHandshakeTests.UniqueName();
        PageRangeServerOptions options = Options();
        options.MaxClients = 1;
        var disconnected = new TaskCompletionSource<ClientDisconnectedEventArgs>(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var server = PageRangeServer.Start(name, options, builder => builder.Map(1, (tx, _) => tx.Reply([1])));
        server.ClientDisconnected += (_, e) => disconnected.TrySetResult(e);
        int starts = 0;
        server.SessionStartingForTest = () =>
        {
            if (Interlocked.Increment(ref starts) == 1)
            {
                throw new InvalidOperationException("Thread failed to start: the pid limit.");
            }
        };
        await using PageRangeConnection first = await ServerTestOptions.ConnectAsync(name);
        ClientDisconnectedEventArgs ended = await disconnected.Task.WaitAsync(TestTimeouts.Long);
        output.WriteLine(ended.ToString());
        Assert.Equal(ClientDisconnectReason.Failed, ended.Reason);
        Assert.IsType<InvalidOperationException>(ended.Exception);
        await WaitUntilAsync(() => server.ClientCount == 0);
        await Assert.ThrowsAnyAsync<PageRangeException>(() => first.CallAsync(1, ReadOnlyMemory<byte>.Empty).AsTask().WaitAsync(TestTimeouts.Long));

        await using PageRangeConnection second = await ServerTestOptions.ConnectAsync(name);
        using Transaction ok = await second.CallAsync(1, ReadOnlyMemory<byte>.Empty).AsTask().WaitAsync(TestTimeouts.Long);
        Assert.Equal(1, ok.Payload[0]);
        Assert.Equal(1, server.ClientCount);
    }

    [Fact]
    public async Task ClientDisposes_ServerRaisesConnectedThenDisconnectedPeerClosed()
    {
        string name = ControlHandshakeTests.UniqueName();
        var events = new ConcurrentQueue<string>();
        var disconnected = new TaskCompletionSource<ClientDisconnectedEventArgs>(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var server = PageRangeServer.Start(name, Options(), builder => builder.Map(1, (tx, _) => tx.Reply([])));
        server.ClientConnected += (_, e) => events.Enqueue($"connected {e.Client.Id}");
        server.ClientDisconnected += (_, e) => disconnected.TrySetResult(e);
        PageRangeConnection client = await ServerTestOptions.ConnectAsync(name);
        (await client.CallAsync(1, ReadOnlyMemory<byte>.Empty).AsTask().WaitAsync(TestTimeouts.Long)).Dispose();
        await client.DisposeAsync();
        ClientDisconnectedEventArgs e = await disconnected.Task.WaitAsync(TestTimeouts.Long);
        output.WriteLine(e.ToString());
        Assert.Equal(ClientDisconnectReason.PeerClosed, e.Reason);
        Assert.Equal(1, e.Calls);
        Assert.Equal(["connected 1"], events);
        Assert.Equal(0, server.ClientCount);
    }

    [Fact]
    public async Task StopAsync_CallsInFlight_QuickOnesAnswered_SlowOnesCancelled_ClientsSeeTheShutdownReason()
    {
        string name = ControlHandshakeTests.UniqueName();
        using var quickMayFinish = new ManualResetEventSlim(false);
        int slowEntered = 0;
        int quickEntered = 0;
        int slowSawCancel = 0;
        var disconnects = new ConcurrentQueue<ClientDisconnectedEventArgs>();
        PageRangeServer server = PageRangeServer.Start(name, Options(maxThreads: 8), builder => builder
            .Map(1, (tx, _) =>
            {
                Interlocked.Increment(ref quickEntered);
                quickMayFinish.Wait(TestTimeouts.Long);
                tx.Reply([1]);
            })
            .Map(2, async (Transaction tx, CallContext ctx) =>
            {
                Interlocked.Increment(ref slowEntered);
                try
                {
                    await Task.Delay(Timeout.Infinite, ctx.CancellationToken);
                }
                catch (OperationCanceledException)
                {
                    Interlocked.Increment(ref slowSawCancel);
                    throw;
                }
            }));
        server.ClientDisconnected += (_, e) => disconnects.Enqueue(e);
        await using PageRangeConnection client = await ServerTestOptions.ConnectAsync(name);
        Task<Transaction> quick = client.CallAsync(1, ReadOnlyMemory<byte>.Empty).AsTask();
        Task<Transaction> slow = client.CallAsync(2, ReadOnlyMemory<byte>.Empty).AsTask();
        await WaitUntilAsync(() => Volatile.Read(ref slowEntered) == 1 && Volatile.Read(ref quickEntered) == 1);

        using var grace = new CancellationTokenSource();
        Task stopping = server.StopAsync(grace.Token);
        // New calls during the grace period are turned away at once.
        RemoteCallException turnedAway = await Assert.ThrowsAsync<RemoteCallException>(
            () => client.CallAsync(1, ReadOnlyMemory<byte>.Empty).AsTask().WaitAsync(TestTimeouts.Long));
        Assert.Equal(CallStatus.Unavailable, turnedAway.Status);
        Assert.Contains("shutting down", turnedAway.Message, StringComparison.Ordinal);
        quickMayFinish.Set();
        using (Transaction answered = await quick.WaitAsync(TestTimeouts.Long))
        {
            Assert.Equal(1, answered.Payload[0]);
        }
        Assert.False(stopping.IsCompleted);
        await grace.CancelAsync();
        await stopping.WaitAsync(TestTimeouts.Long);

        RemoteCallException cancelled = await Assert.ThrowsAsync<RemoteCallException>(() => slow.WaitAsync(TestTimeouts.Long));
        Assert.Equal(CallStatus.Cancelled, cancelled.Status);
        // The status travels in the record, the message in the payload: the close that follows must not punch out the
        // page of a reply the client has not read yet (it once read as zeros, fixed in the graceful close).
        Assert.Contains("cancelled", cancelled.Message, StringComparison.Ordinal);
        Assert.Equal(1, slowSawCancel);
        PeerDiedException died = await Assert.ThrowsAsync<PeerDiedException>(
            () => client.CallAsync(1, ReadOnlyMemory<byte>.Empty).AsTask().WaitAsync(TestTimeouts.Long));
        output.WriteLine(died.Message);
        Assert.Equal("the server is shutting down", died.PeerReason);
        Assert.Contains("the server is shutting down", died.Message, StringComparison.Ordinal);
        Assert.Equal(ClientDisconnectReason.ServerStopping, Assert.Single(disconnects).Reason);
        Assert.Equal(0, server.ThreadCount);
        await server.DisposeAsync();
    }

    [Fact]
    public async Task Start_DefaultOptions_TheSharedShrinkerMonitorRuns()
    {
        // One monitor serves every region of the process; a server starts it unless told not to (another part of the
        // process may have started it already: then that one serves the server's regions too).
        string name = ControlHandshakeTests.UniqueName();
        await using var server = PageRangeServer.Start(name, _ => { });
        Assert.NotNull(PageRange.Memory.Shrinker.Shared.Monitor);
    }

    [Fact]
    public async Task DisposeAsync_HandlerIgnoringItsToken_StillReturns()
    {
        string name = ControlHandshakeTests.UniqueName();
        using var never = new ManualResetEventSlim(false);
        PageRangeServer server = PageRangeServer.Start(name, Options(), builder => builder.Map(1, (_, _) => never.Wait(TestTimeouts.Long)));
        await using PageRangeConnection client = await ServerTestOptions.ConnectAsync(name);
        Task<Transaction> stuck = client.CallAsync(1, ReadOnlyMemory<byte>.Empty).AsTask();
        await WaitUntilAsync(() => server.InFlightCalls == 1);
        await server.DisposeAsync().AsTask().WaitAsync(TestTimeouts.Long);
        await Assert.ThrowsAnyAsync<PageRangeException>(() => stuck.WaitAsync(TestTimeouts.Long));
        never.Set();
    }

    [Fact]
    public async Task DisposeAsync_DuringAGracefulStop_CancelsTheCallsInFlightAndReturns()
    {
        // A stop with no deadline waits for its calls; a dispose meanwhile must not wait with it (it waited for the
        // first stop, so for a handler that waits for its token, for ever).
        string name = ControlHandshakeTests.UniqueName();
        PageRangeServer server = PageRangeServer.Start(name, Options(), builder => builder.Map(1, (_, context) =>
        {
            context.CancellationToken.WaitHandle.WaitOne(TestTimeouts.Long);
        }));
        await using PageRangeConnection client = await ServerTestOptions.ConnectAsync(name);
        Task<Transaction> waiting = client.CallAsync(1, ReadOnlyMemory<byte>.Empty).AsTask();
        await WaitUntilAsync(() => server.InFlightCalls == 1);
        Task graceful = server.StopAsync();
        await Task.Delay(200);
        Assert.False(graceful.IsCompleted, "the graceful stop waits for the call in flight");

        var disposing = Stopwatch.StartNew();
        await server.DisposeAsync().AsTask().WaitAsync(TestTimeouts.Long);
        // The handler returns once its token fires, far sooner than its own bound (TestTimeouts.Long).
        Assert.True(disposing.Elapsed < TestTimeouts.Long / 2, $"the dispose took {disposing.Elapsed}");
        Assert.True(graceful.IsCompleted, "the first stop ended with the dispose");
        await graceful;
        Assert.Equal(0, server.InFlightCalls);
        await Assert.ThrowsAnyAsync<PageRangeException>(() => waiting.WaitAsync(TestTimeouts.Long));
    }

    [Fact]
    public async Task Start_InvalidArguments_Throw()
    {
        Assert.Throws<ArgumentNullException>(() => PageRangeServer.Start("x", null!));
        Assert.Throws<ArgumentOutOfRangeException>(() => new PageRangeServerOptions { MaxThreads = 0 });
        Assert.Throws<ArgumentOutOfRangeException>(() => PageRangeServer.Start(ControlHandshakeTests.UniqueName(),
            new PageRangeServerOptions { MinThreads = 5, MaxThreads = 2 }, _ => { }));
        Assert.Throws<ArgumentException>(() => PageRangeServer.Start(ControlHandshakeTests.UniqueName(), builder => builder
            .Map(1, (tx, _) => tx.Reply([])).Map(1, (tx, _) => tx.Reply([]))));
        string name = ControlHandshakeTests.UniqueName();
        await using var first = PageRangeServer.Start(name, Options(), _ => { });
        Assert.Throws<PageRangeException>(() => PageRangeServer.Start(name, Options(), _ => { }));
    }

    [Fact]
    public async Task Start_InvalidShrinkerOptions_ThrowsBeforeTheNameIsTaken()
    {
        // The shrinker's options are checked with the server's, before the name is bound: a start that threw kept the
        // name bound, and a retry with good options failed with "another listener has the name".
        string name = ControlHandshakeTests.UniqueName();
        PageRangeServerOptions bad = Options();
        bad.StartShrinkerMonitor = true;
        bad.ShrinkerOptions = new ShrinkerOptions { PollingPeriod = TimeSpan.Zero };
        ArgumentOutOfRangeException error = Assert.Throws<ArgumentOutOfRangeException>(() => PageRangeServer.Start(name, bad, _ => { }));
        Assert.Equal(nameof(ShrinkerOptions.PollingPeriod), error.ParamName);
        await using PageRangeServer server = PageRangeServer.Start(name, Options(), builder => builder.Map(1, (tx, _) => tx.Reply([7])));
        await using PageRangeConnection client = await ServerTestOptions.ConnectAsync(name);
        using Transaction reply = client.Call(1, [], TestTimeouts.Long);
        Assert.Equal([7], reply.Payload.ToArray());
    }

    [Fact]
    public async Task ListenerStopsAcceptingForGood_ReportedOnceNotEveryTenthOfASecond()
    {
        string name = ControlHandshakeTests.UniqueName();
        await using PageRangeServer server = PageRangeServer.Start(name, Options(), builder => builder.Map(1, (tx, _) => tx.Reply([])));
        int reports = 0;
        server.HandshakeFailed += (_, e) =>
        {
            if (e.Exception.Message.Contains("stopped accepting", StringComparison.Ordinal))
            {
                Interlocked.Increment(ref reports);
            }
        };
        server.ListenerForTest.StopAcceptingForTest(new InvalidOperationException("the accept loop broke"));
        await WaitUntilAsync(() => Volatile.Read(ref reports) > 0);
        // The loop retried every 100 ms, reporting each time.
        await Task.Delay(1000);
        Assert.Equal(1, Volatile.Read(ref reports));
    }

    internal static async Task WaitUntilAsync(Func<bool> condition)
    {
        using var bound = new CancellationTokenSource(TestTimeouts.Long);
        while (!condition())
        {
            await Task.Delay(10, bound.Token);
        }
    }
}
