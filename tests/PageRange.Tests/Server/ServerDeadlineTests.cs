using PageRange.Server;
using PageRange.Tests.Infrastructure;
using PageRange.Tests.Transport;
using PageRange.Transport;

namespace PageRange.Tests.Server;

/// <summary>The caller's deadline, known to the server from the record's metadata, cancels the handler's token.</summary>
public sealed class ServerDeadlineTests
{
    private static PageRangeServerOptions Options() => ServerTestOptions.InProcess(maxThreads: 2);

    [Fact]
    public async Task Oneway_DeadlinePassesWhileHandlerRuns_HandlerTokenCancelledAtTheDeadline()
    {
        // A oneway message has no caller waiting and sends no cancel: only the deadline can end the handler's wait.
        string name = ControlHandshakeTests.UniqueName();
        var outcome = new TaskCompletionSource<(bool Cancelled, DateTimeOffset At, DateTimeOffset? Deadline)>(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var server = PageRangeServer.Start(name, Options(), builder => builder.Map(5, (Transaction _, CallContext ctx) =>
        {
            bool cancelled = ctx.CancellationToken.WaitHandle.WaitOne(TestTimeouts.Long);
            outcome.TrySetResult((cancelled, DateTimeOffset.UtcNow, ctx.Deadline));
        }));
        await using PageRangeConnection client = await ServerTestOptions.ConnectAsync(name);
        DateTimeOffset deadline = DateTimeOffset.UtcNow.AddMilliseconds(500);
        client.SendOneway(5, [1, 2, 3], new PageRangeCallOptions { Deadline = deadline });

        (bool cancelled, DateTimeOffset at, DateTimeOffset? seen) = await outcome.Task.WaitAsync(TestTimeouts.Long);
        Assert.True(cancelled, "the handler's token was not cancelled at the caller's deadline");
        Assert.Equal(deadline, seen);
        // Not before the deadline (the record carries it to the tick; a timer may fire a few milliseconds early).
        Assert.True(at >= deadline.AddMilliseconds(-50), $"cancelled at {at:O}, before the deadline {deadline:O}");
    }

    [Fact]
    public async Task Call_NoDeadline_HandlerTokenNotCancelled()
    {
        string name = ControlHandshakeTests.UniqueName();
        await using var server = PageRangeServer.Start(name, Options(), builder => builder.Map(6, (tx, ctx) =>
        {
            bool cancelled = ctx.CancellationToken.WaitHandle.WaitOne(TimeSpan.FromMilliseconds(300));
            tx.Reply([cancelled ? (byte)1 : (byte)0]);
        }));
        await using PageRangeConnection client = await ServerTestOptions.ConnectAsync(name);
        using Transaction reply = await client.CallAsync(6, ReadOnlyMemory<byte>.Empty).AsTask().WaitAsync(TestTimeouts.Long);
        Assert.Equal(0, reply.Payload[0]);
    }

    [Fact]
    public async Task Call_HandlerHonoursTheDeadline_DeadlineExceededCountedAndTheServerGoesOn()
    {
        // The caller stops waiting at its deadline too; the handler's token fires from the server's own clock, and the
        // handler's OperationCanceledException ends the call as DeadlineExceeded, not as a handler failure.
        string name = ControlHandshakeTests.UniqueName();
        int failed = 0;
        await using var server = PageRangeServer.Start(name, Options(), builder => builder
            .Map(7, async (Transaction _, CallContext ctx) => await Task.Delay(TestTimeouts.Long, ctx.CancellationToken))
            .Map(8, (tx, _) => tx.Reply([8])));
        server.CallFailed += (_, _) => Interlocked.Increment(ref failed);
        await using PageRangeConnection client = await ServerTestOptions.ConnectAsync(name);
        var options = new PageRangeCallOptions { Deadline = DateTimeOffset.UtcNow.AddMilliseconds(300) };
        await Assert.ThrowsAnyAsync<Exception>(() => client.CallAsync(7, ReadOnlyMemory<byte>.Empty, options).AsTask().WaitAsync(TestTimeouts.Long));
        await PageRangeServerTests.WaitUntilAsync(() => server.InFlightCalls == 0);
        Assert.Equal(0, Volatile.Read(ref failed));
        using Transaction reply = await client.CallAsync(8, ReadOnlyMemory<byte>.Empty).AsTask().WaitAsync(TestTimeouts.Long);
        Assert.Equal(8, reply.Payload[0]);
    }
    [Fact]
    public async Task Call_ManyShortDeadlinesHonoured_NoneCountedAsAHandlerFailure()
    {
        // The deadline's timer runs on a coarse millisecond clock and can fire a little before the deadline by the wall
        // clock: a handler that honours its token at that moment must still end as DeadlineExceeded, not as a failure.
        string name = ControlHandshakeTests.UniqueName();
        int failed = 0;
        await using var server = PageRangeServer.Start(name, Options(), builder => builder
            .Map(7, async (Transaction _, CallContext ctx) => await Task.Delay(TestTimeouts.Long, ctx.CancellationToken)));
        server.CallFailed += (_, _) => Interlocked.Increment(ref failed);
        await using PageRangeConnection client = await ServerTestOptions.ConnectAsync(name);
        var calls = new List<Task>();
        for (int i = 0; i < 60; i++)
        {
            var options = new PageRangeCallOptions { Deadline = DateTimeOffset.UtcNow.AddMilliseconds(5 + (i % 13)) };
            calls.Add(Assert.ThrowsAnyAsync<Exception>(() => client.CallAsync(7, ReadOnlyMemory<byte>.Empty, options).AsTask().WaitAsync(TestTimeouts.Long)));
            if (i % 2 == 1)
            {
                await Task.WhenAll(calls);
                calls.Clear();
            }
        }
        await PageRangeServerTests.WaitUntilAsync(() => server.InFlightCalls == 0);
        Assert.Equal(0, Volatile.Read(ref failed));
    }
}
