using System.Collections.Concurrent;
using PageRange.Server;
using PageRange.Tests.Infrastructure;
using PageRange.Tests.Transport;
using PageRange.Transport;

namespace PageRange.Tests.Server;

/// <summary>
/// Handlers that have been fast run on the thread that received their call (<see cref="PageRangeServerOptions.RunFastHandlersInline"/>),
/// and a run that lasts is rescued: another receiver takes the client's next calls meanwhile.
/// </summary>
public sealed class ServerInlineTests
{
    private const uint Echo = 1;
    private const uint Release = 2;
    private const byte Fast = 0;
    private const byte WaitForRelease = 1;
    private const byte Slow = 2;

    private const string SessionThread = "PageRange session";
    private const string WorkerThread = "PageRange server";

    [Fact]
    public async Task FastHandler_FirstRunsOnAWorker_ThenOnTheReceivingThread()
    {
        string name = ControlHandshakeTests.UniqueName();
        var threads = new ConcurrentQueue<string>();
        await using var server = PageRangeServer.Start(name, ServerTestOptions.InProcess(4), builder => builder.Map(Echo, (tx, _) =>
        {
            threads.Enqueue(Thread.CurrentThread.Name ?? "");
            tx.Reply(tx.Payload);
        }));
        await using PageRangeConnection client = await ServerTestOptions.ConnectAsync(name);
        for (int i = 0; i < 200; i++)
        {
            using Transaction reply = await client.CallAsync(Echo, new byte[] { Fast }).AsTask().WaitAsync(TestTimeouts.Long);
            Assert.Equal(Fast, reply.Payload[0]);
        }
        string[] names = [.. threads];
        Assert.Equal(200, names.Length);
        // No history yet: the first run is a worker's.
        Assert.StartsWith(WorkerThread, names[0], StringComparison.Ordinal);
        // Then inline, apart from runs a preemption made slow (each sends the handler back to the pool for a few runs).
        int inline = names[100..].Count(static thread => thread.StartsWith(SessionThread, StringComparison.Ordinal));
        Assert.True(inline >= 25, $"only {inline} of the last 100 runs were on the receiving thread");
    }

    [Fact]
    public async Task RunFastHandlersInlineOff_EveryRunIsAWorkers()
    {
        string name = ControlHandshakeTests.UniqueName();
        var threads = new ConcurrentQueue<string>();
        PageRangeServerOptions options = ServerTestOptions.InProcess(4);
        options.RunFastHandlersInline = false;
        await using var server = PageRangeServer.Start(name, options, builder => builder.Map(Echo, (tx, _) =>
        {
            threads.Enqueue(Thread.CurrentThread.Name ?? "");
            tx.Reply(tx.Payload);
        }));
        await using PageRangeConnection client = await ServerTestOptions.ConnectAsync(name);
        for (int i = 0; i < 100; i++)
        {
            using Transaction reply = await client.CallAsync(Echo, new byte[] { Fast }).AsTask().WaitAsync(TestTimeouts.Long);
        }
        Assert.All(threads, static thread => Assert.StartsWith(WorkerThread, thread, StringComparison.Ordinal));
        Assert.Equal(0, server.InlineRescues);
    }

    [Fact]
    public async Task InlineHandlerWaitingForItsClientsNextCall_IsRescued_BothCallsComplete()
    {
        string name = ControlHandshakeTests.UniqueName();
        using var released = new SemaphoreSlim(0);
        using var waiting = new SemaphoreSlim(0);
        var waiterThread = new ConcurrentQueue<string>();
        var warmUpThreads = new ConcurrentQueue<string>();
        await using var server = PageRangeServer.Start(name, ServerTestOptions.InProcess(4), builder => builder
            .Map(Echo, (tx, _) =>
            {
                warmUpThreads.Enqueue(Thread.CurrentThread.Name ?? "");
                if (tx.Payload[0] == WaitForRelease)
                {
                    waiterThread.Enqueue(Thread.CurrentThread.Name ?? "");
                    waiting.Release();
                    // Only the client's next call (code Release) lets this run end: on the thread that received it, with
                    // nobody else receiving, that call would never be read.
                    tx.Reply(released.Wait(TestTimeouts.Long) ? "released"u8 : "timed out"u8);
                    return;
                }
                tx.Reply(tx.Payload);
            })
            .Map(Release, (tx, _) =>
            {
                released.Release();
                tx.Reply([]);
            }));
        await using PageRangeConnection client = await ServerTestOptions.ConnectAsync(name);

        // A run held up on a worker proves nothing (a preemption can make a warm-up run slow): warm up and try again.
        bool heldInline = false;
        for (int attempt = 0; attempt < 5 && !heldInline; attempt++)
        {
            await WarmUpUntilInlineAsync(client, warmUpThreads);
            Task<Transaction> held = client.CallAsync(Echo, new byte[] { WaitForRelease }).AsTask();
            Assert.True(await waiting.WaitAsync(TestTimeouts.Long), "the waiting handler never started");
            Assert.True(waiterThread.TryDequeue(out string? thread));
            heldInline = thread!.StartsWith(SessionThread, StringComparison.Ordinal);
            if (heldInline)
            {
                // The watch finds the run held past StuckAfter and starts a rescue; the dump says so. (Not the count: a
                // warm-up run preempted for 2 ms may have had a rescue of its own.)
                Assert.True(SpinWait.SpinUntil(() => server.DumpState().Contains("(rescued)", StringComparison.Ordinal), TestTimeouts.Long),
                    "no rescue started");
                Assert.Contains("a handler inline for", server.DumpState(), StringComparison.Ordinal);
            }

            using (Transaction releasing = await client.CallAsync(Release, ReadOnlyMemory<byte>.Empty).AsTask().WaitAsync(TestTimeouts.Long))
            {
            }
            using Transaction answer = await held.WaitAsync(TestTimeouts.Long);
            Assert.Equal("released"u8.ToArray(), answer.Payload.ToArray());
        }
        Assert.True(heldInline, "the waiting handler never ran on the receiving thread in 5 attempts");
        Assert.True(server.InlineRescues >= 1, "no rescue: the release was received some other way");

        // The session thread is free again: fast calls go on.
        using Transaction after = await client.CallAsync(Echo, new byte[] { Fast }).AsTask().WaitAsync(TestTimeouts.Long);
        Assert.Equal(Fast, after.Payload[0]);
    }

    [Fact]
    public async Task DisposeAsync_InlineHandlerIgnoringItsToken_StillReturns_AndItsClientIsClosed()
    {
        string name = ControlHandshakeTests.UniqueName();
        using var never = new ManualResetEventSlim(false);
        var threads = new ConcurrentQueue<string>();
        PageRangeServer server = PageRangeServer.Start(name, ServerTestOptions.InProcess(4), builder => builder.Map(Echo, (tx, _) =>
        {
            threads.Enqueue(Thread.CurrentThread.Name ?? "");
            if (tx.Payload[0] == WaitForRelease)
            {
                never.Wait(TestTimeouts.Long);
                return;
            }
            tx.Reply(tx.Payload);
        }));
        try
        {
            await using PageRangeConnection client = await ServerTestOptions.ConnectAsync(name);
            await WarmUpUntilInlineAsync(client, threads);
            threads.Clear();
            Task<Transaction> stuck = client.CallAsync(Echo, new byte[] { WaitForRelease }).AsTask();
            // The call counts in flight before its handler runs: wait for the handler's own mark too (a clean-clone run
            // once peeked between the two).
            await PageRangeServerTests.WaitUntilAsync(() => server.InFlightCalls == 1 && !threads.IsEmpty);
            Assert.True(threads.TryPeek(out string? thread));
            // Held on the session's thread (a worker's stuck run is PageRangeServerTests' case).
            Assert.StartsWith(SessionThread, thread, StringComparison.Ordinal);
            await server.DisposeAsync().AsTask().WaitAsync(TestTimeouts.Long);
            await Assert.ThrowsAnyAsync<PageRangeException>(() => stuck.WaitAsync(TestTimeouts.Long));
        }
        finally
        {
            never.Set();
            await server.DisposeAsync();
        }
    }

    [Fact]
    public async Task ClientDiesWhileItsHandlerIsHeldInline_NoRescueStorm_TheEndIsReportedWhenTheHandlerReturns()
    {
        string name = ControlHandshakeTests.UniqueName();
        using var release = new ManualResetEventSlim(false);
        var threads = new ConcurrentQueue<string>();
        var disconnected = new TaskCompletionSource<ClientDisconnectReason>(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var server = PageRangeServer.Start(name, ServerTestOptions.InProcess(4), builder => builder.Map(Echo, (tx, _) =>
        {
            threads.Enqueue(Thread.CurrentThread.Name ?? "");
            if (tx.Payload[0] == WaitForRelease)
            {
                release.Wait(TestTimeouts.Long);
                return;
            }
            tx.Reply(tx.Payload);
        }));
        server.ClientDisconnected += (_, e) => disconnected.TrySetResult(e.Reason);
        PageRangeConnection? client = null;
        try
        {
            client = await ServerTestOptions.ConnectAsync(name);
            await StartAHeldCallInlineAsync(client, threads, release);
            Assert.True(SpinWait.SpinUntil(() => server.DumpState().Contains("(rescued)", StringComparison.Ordinal), TestTimeouts.Long),
                "no rescue started");

            await client.DisposeAsync();
            // The rescue's receive ends with the client's end; the watch must not start one rescue per tick after that
            // (each would fail at once the same way: about 1,000 a second before the fix).
            Assert.True(SpinWait.SpinUntil(() => !server.DumpState().Contains("(rescued)", StringComparison.Ordinal), TestTimeouts.Long),
                "the rescue never ended");
            long rescues = server.InlineRescues;
            await Task.Delay(300);
            Assert.InRange(server.InlineRescues - rescues, 0, 1);
        }
        finally
        {
            release.Set();
            // Disposed above on success; here too on a failure, so no connection outlives the test (the next tests count them).
            if (client is not null)
            {
                await client.DisposeAsync();
            }
        }
        // The session's own loop reports the end once the handler returned.
        Assert.Equal(ClientDisconnectReason.PeerClosed, await disconnected.Task.WaitAsync(TestTimeouts.Long));
    }

    [Fact]
    public async Task CallsSentAtOnce_RunAtTheSameTime_NotOneAfterAnotherInline()
    {
        string name = ControlHandshakeTests.UniqueName();
        var threads = new ConcurrentQueue<string>();
        using var bothInside = new CountdownEvent(2);
        await using var server = PageRangeServer.Start(name, ServerTestOptions.InProcess(4), builder => builder.Map(Echo, (tx, _) =>
        {
            threads.Enqueue(Thread.CurrentThread.Name ?? "");
            if (tx.Payload[0] == WaitForRelease)
            {
                // Two calls meet here only if they run at once: inline one after another, the first would time out.
                bothInside.Signal();
                tx.Reply(bothInside.Wait(TestTimeouts.Short) ? "met"u8 : "alone"u8);
                return;
            }
            tx.Reply(tx.Payload);
        }));
        await using PageRangeConnection client = await ServerTestOptions.ConnectAsync(name);
        await WarmUpUntilInlineAsync(client, threads);
        // Sent at once: if the session thread finds the second ready behind the first, the first goes to a worker and
        // the second runs inline; if it takes the first alone, that run is held and rescued, and the rescue hands the
        // second to a worker. Either way the two run at the same time.
        Task<Transaction> first = client.CallAsync(Echo, new byte[] { WaitForRelease }).AsTask();
        Task<Transaction> second = client.CallAsync(Echo, new byte[] { WaitForRelease }).AsTask();
        using Transaction a = await first.WaitAsync(TestTimeouts.Long);
        using Transaction b = await second.WaitAsync(TestTimeouts.Long);
        Assert.Equal("met"u8.ToArray(), a.Payload.ToArray());
        Assert.Equal("met"u8.ToArray(), b.Payload.ToArray());
    }

    /// <summary>Fast calls until the handler ran inline twice in a row (its first inline run, slow with the JIT's work, sends it back for a while).</summary>
    /// <summary>
    /// Starts a call whose handler waits for <paramref name="release"/>, held on the session's thread (run inline). The
    /// warm-up makes the next run inline, but a loaded machine can still time one of its runs as slow and send the next
    /// to a worker (seen once in a clean-clone run: "no rescue started"): such a call is released and the step repeated.
    /// </summary>
    private static async Task StartAHeldCallInlineAsync(PageRangeConnection client, ConcurrentQueue<string> threads, ManualResetEventSlim release)
    {
        for (int attempt = 0; attempt < 20; attempt++)
        {
            await WarmUpUntilInlineAsync(client, threads);
            threads.Clear();
            Task<Transaction> held = client.CallAsync(Echo, new byte[] { WaitForRelease }).AsTask();
            Assert.True(SpinWait.SpinUntil(() => !threads.IsEmpty, TestTimeouts.Long), "the held call's handler never ran");
            Assert.True(threads.TryPeek(out string? thread));
            if (thread.StartsWith(SessionThread, StringComparison.Ordinal))
            {
                return;
            }
            // On a worker: let it go (it replies nothing; the call ends with the server's error reply) and try again.
            release.Set();
            await Assert.ThrowsAnyAsync<Exception>(() => held.WaitAsync(TestTimeouts.Long));
            release.Reset();
        }
        Assert.Fail("the held call never ran inline in 20 attempts");
    }

    private static async Task WarmUpUntilInlineAsync(PageRangeConnection client, ConcurrentQueue<string> threads)
    {
        for (int i = 0; i < 2000; i++)
        {
            string[] last = [.. threads.TakeLast(2)];
            if (last.Length == 2 && last.All(static thread => thread.StartsWith(SessionThread, StringComparison.Ordinal)))
            {
                return;
            }
            using Transaction reply = await client.CallAsync(Echo, new byte[] { Fast }).AsTask().WaitAsync(TestTimeouts.Long);
        }
        Assert.Fail("the handler never ran inline twice in a row in 2,000 calls");
    }

    [Fact]
    public async Task InlineRunThatWasSlow_SendsTheHandlerBackToTheWorkers()
    {
        string name = ControlHandshakeTests.UniqueName();
        var threads = new ConcurrentQueue<(byte Kind, string Thread)>();
        var names = new ConcurrentQueue<string>();
        await using var server = PageRangeServer.Start(name, ServerTestOptions.InProcess(4), builder => builder.Map(Echo, (tx, _) =>
        {
            byte kind = tx.Payload[0];
            threads.Enqueue((kind, Thread.CurrentThread.Name ?? ""));
            names.Enqueue(Thread.CurrentThread.Name ?? "");
            if (kind == Slow)
            {
                Thread.Sleep(5);
            }
            tx.Reply(tx.Payload);
        }));
        await using PageRangeConnection client = await ServerTestOptions.ConnectAsync(name);

        bool slowRanInline = false;
        for (int attempt = 0; attempt < 5 && !slowRanInline; attempt++)
        {
            // Until two runs in a row were inline (each slow inline run before, a preemption's included, doubles the
            // streak needed: a fixed number of warm-up calls was not always enough on a loaded machine).
            await WarmUpUntilInlineAsync(client, names);
            threads.Clear();
            using (Transaction slow = await client.CallAsync(Echo, new byte[] { Slow }).AsTask().WaitAsync(TestTimeouts.Long))
            {
            }
            using (Transaction next = await client.CallAsync(Echo, new byte[] { Fast }).AsTask().WaitAsync(TestTimeouts.Long))
            {
            }
            (byte Kind, string Thread)[] runs = [.. threads];
            Assert.Equal(2, runs.Length);
            slowRanInline = runs[0].Thread.StartsWith(SessionThread, StringComparison.Ordinal);
            if (slowRanInline)
            {
                // The slow inline run ended the streak: the next run is a worker's.
                Assert.StartsWith(WorkerThread, runs[1].Thread, StringComparison.Ordinal);
            }
        }
        Assert.True(slowRanInline, "the slow run never ran on the receiving thread in 5 attempts");
    }
}
