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
        Assert.True(inline >= 50, $"only {inline} of the last 100 runs were on the receiving thread");
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
        await using var server = PageRangeServer.Start(name, ServerTestOptions.InProcess(4), builder => builder
            .Map(Echo, (tx, _) =>
            {
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
            for (int i = 0; i < 50; i++)
            {
                using Transaction reply = await client.CallAsync(Echo, new byte[] { Fast }).AsTask().WaitAsync(TestTimeouts.Long);
            }
            Task<Transaction> held = client.CallAsync(Echo, new byte[] { WaitForRelease }).AsTask();
            Assert.True(await waiting.WaitAsync(TestTimeouts.Long), "the waiting handler never started");
            Assert.True(waiterThread.TryDequeue(out string? thread));
            heldInline = thread!.StartsWith(SessionThread, StringComparison.Ordinal);
            if (heldInline)
            {
                // The watch finds the run held past StuckAfter and starts a rescue; the dump says so.
                Assert.True(SpinWait.SpinUntil(() => server.InlineRescues >= 1, TestTimeouts.Long), "no rescue started");
                string dump = server.DumpState();
                Assert.Contains("a handler inline for", dump, StringComparison.Ordinal);
                Assert.Contains("(rescued)", dump, StringComparison.Ordinal);
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
    public async Task InlineRunThatWasSlow_SendsTheHandlerBackToTheWorkers()
    {
        string name = ControlHandshakeTests.UniqueName();
        var threads = new ConcurrentQueue<(byte Kind, string Thread)>();
        await using var server = PageRangeServer.Start(name, ServerTestOptions.InProcess(4), builder => builder.Map(Echo, (tx, _) =>
        {
            byte kind = tx.Payload[0];
            threads.Enqueue((kind, Thread.CurrentThread.Name ?? ""));
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
            for (int i = 0; i < 50; i++)
            {
                using Transaction reply = await client.CallAsync(Echo, new byte[] { Fast }).AsTask().WaitAsync(TestTimeouts.Long);
            }
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
