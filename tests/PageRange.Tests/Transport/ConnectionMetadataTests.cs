using PageRange.Server;
using PageRange.Tests.Infrastructure;
using PageRange.Transport;
using Xunit.Abstractions;

namespace PageRange.Tests.Transport;

/// <summary>Per-call options: deadline and metadata reach the callee outside the payload; bad options and bad blocks fail.</summary>
public sealed class ConnectionMetadataTests(ITestOutputHelper output)
{
    private static readonly KeyValuePair<string, string>[] s_pairs =
    [
        new("tenant", "blue"),
        new("x-request-id", "42"),
        new("greeting", "grüß dich ✓"),
    ];

    [Fact]
    public async Task Call_WithDeadlineAndMetadata_CalleeSeesThemAndPayloadExcludesThem()
    {
        await using ConnectionPair pair = await ConnectionPair.CreateAsync();
        DateTimeOffset deadline = DateTimeOffset.UtcNow.AddMinutes(5);
        var options = new PageRangeCallOptions { Deadline = deadline, Metadata = s_pairs };
        Task<(DateTimeOffset? Deadline, KeyValuePair<string, string>[] Metadata, byte[] Payload)> serving = Task.Run(() =>
        {
            using Transaction call = pair.Server.Receive();
            var seen = (call.Deadline, call.Metadata.ToArray(), call.Payload.ToArray());
            Assert.Equal(3, call.Length);
            call.Reply(call.Payload);
            return seen;
        });
        using (Transaction reply = pair.Client.Call(7, [1, 2, 3], options, TestTimeouts.Long))
        {
            Assert.Equal([1, 2, 3], reply.Payload.ToArray());
            Assert.Null(reply.Deadline);
            Assert.Empty(reply.Metadata);
        }
        var (seenDeadline, seenMetadata, seenPayload) = await serving.WaitAsync(TestTimeouts.Long);
        Assert.Equal(deadline.UtcTicks, seenDeadline!.Value.UtcTicks);
        Assert.Equal(s_pairs, seenMetadata);
        Assert.Equal([1, 2, 3], seenPayload);
    }

    [Fact]
    public async Task CallAsyncAndOneway_WithMetadata_CalleeSeesIt()
    {
        await using ConnectionPair pair = await ConnectionPair.CreateAsync();
        var options = new PageRangeCallOptions { Metadata = [new("k", "v")] };
        await pair.Client.SendOnewayAsync(3, new byte[] { 9 }, options).AsTask().WaitAsync(TestTimeouts.Long);
        pair.Client.SendOneway(4, [8], options);
        // Oneway messages come one at a time (binder's rule): the next after the previous is freed.
        using (Transaction first = await pair.Server.ReceiveAsync().AsTask().WaitAsync(TestTimeouts.Long))
        {
            Assert.Equal([new("k", "v")], first.Metadata);
            Assert.Equal([9], first.Payload.ToArray());
        }
        using (Transaction second = await pair.Server.ReceiveAsync().AsTask().WaitAsync(TestTimeouts.Long))
        {
            Assert.Equal([new("k", "v")], second.Metadata);
            Assert.Equal([8], second.Payload.ToArray());
            Assert.Null(second.Deadline);
        }
        Task<Transaction> calling = pair.Client.CallAsync(5, new byte[] { 1, 2 }, options, TestTimeouts.Long).AsTask();
        using (Transaction call = await pair.Server.ReceiveAsync().AsTask().WaitAsync(TestTimeouts.Long))
        {
            Assert.Equal([new("k", "v")], call.Metadata);
            call.Reply([6]);
        }
        using Transaction reply = await calling.WaitAsync(TestTimeouts.Long);
        Assert.Equal([6], reply.Payload.ToArray());
    }

    [Fact]
    public async Task Call_DeadlinePassed_ThrowsTimeoutAndSendsNothing()
    {
        await using ConnectionPair pair = await ConnectionPair.CreateAsync();
        var options = new PageRangeCallOptions { Deadline = DateTimeOffset.UtcNow.AddSeconds(-1) };
        Assert.Throws<TimeoutException>(() => pair.Client.Call(1, [1], options));
        await Assert.ThrowsAsync<TimeoutException>(() => pair.Client.CallAsync(1, new byte[] { 1 }, options).AsTask().WaitAsync(TestTimeouts.Long));
        Assert.False(pair.Server.TryReceive(out _));
    }

    [Fact]
    public async Task Call_DeadlineSoonerThanTimeout_EndsAtTheDeadline()
    {
        await using ConnectionPair pair = await ConnectionPair.CreateAsync();
        // Nobody answers: only the deadline can end the call.
        var options = new PageRangeCallOptions { Deadline = DateTimeOffset.UtcNow.AddMilliseconds(300) };
        Assert.Throws<TimeoutException>(() => pair.Client.Call(1, [1], options, TimeSpan.FromMinutes(10)));
    }

    [Fact]
    public async Task LimitByDeadline_DeadlineFurtherThanATimerHolds_BoundsNothing()
    {
        await using ConnectionPair pair = await ConnectionPair.CreateAsync();
        // About 24.8 days is the longest timer: a deadline 30 days out ended the call there (early, as late) when the
        // limit was capped to it. It now bounds nothing, as the server's CallContext arms no timer for it.
        var far = new PageRangeCallOptions { Deadline = DateTimeOffset.UtcNow.AddDays(30) };
        Assert.Equal(Timeout.InfiniteTimeSpan, pair.Client.LimitByDeadline(far, Timeout.InfiniteTimeSpan));
        Assert.Null(pair.Client.LimitByDeadline(far, null));
        Assert.Equal(TimeSpan.FromMinutes(10), pair.Client.LimitByDeadline(far, TimeSpan.FromMinutes(10)));

        // A deadline a timer holds still bounds the wait.
        var near = new PageRangeCallOptions { Deadline = DateTimeOffset.UtcNow.AddDays(20) };
        TimeSpan? limit = pair.Client.LimitByDeadline(near, Timeout.InfiniteTimeSpan);
        Assert.InRange(limit!.Value, TimeSpan.FromDays(20) - TestTimeouts.Long, TimeSpan.FromDays(20));
        Assert.Equal(TimeSpan.FromMinutes(10), pair.Client.LimitByDeadline(near, TimeSpan.FromMinutes(10)));
    }

    [Fact]
    public void Options_BadMetadata_ThrowArgumentException()
    {
        Assert.Throws<ArgumentException>(() => new PageRangeCallOptions
        {
            Metadata = [.. Enumerable.Range(0, PageRangeCallOptions.MaxMetadataPairs + 1).Select(i => new KeyValuePair<string, string>($"k{i}", "v"))],
        });
        Assert.Throws<ArgumentException>(() => new PageRangeCallOptions { Metadata = [new("big", new string('x', PageRangeCallOptions.MaxMetadataBytes))] });
        Assert.Throws<ArgumentException>(() => new PageRangeCallOptions { Metadata = [new("", "v")] });
        Assert.Throws<ArgumentException>(() => new PageRangeCallOptions { Metadata = [new("a key", "v")] });
        Assert.Throws<ArgumentException>(() => new PageRangeCallOptions { Metadata = [new("clé", "v")] });
        Assert.Throws<ArgumentException>(() => new PageRangeCallOptions { Metadata = [new("k", "v"), new("k", "w")] });
        Assert.Throws<ArgumentException>(() => new PageRangeCallOptions { Metadata = [new("k", "\ud800")] });
        Assert.Throws<ArgumentNullException>(() => new PageRangeCallOptions { Metadata = [new("k", null!)] });
        Assert.Throws<ArgumentNullException>(() => new PageRangeCallOptions { Metadata = null! });
        // At the limits exactly: fine.
        var full = new PageRangeCallOptions
        {
            Metadata = [.. Enumerable.Range(0, PageRangeCallOptions.MaxMetadataPairs).Select(i => new KeyValuePair<string, string>($"k{i:x}", new string('v', 62)))],
        };
        Assert.Equal(PageRangeCallOptions.MaxMetadataPairs, full.Metadata.Count);
    }

    [Fact]
    public async Task Call_MetadataAtTheLimits_RoundTrips()
    {
        await using ConnectionPair pair = await ConnectionPair.CreateAsync();
        KeyValuePair<string, string>[] pairs =
            [.. Enumerable.Range(0, PageRangeCallOptions.MaxMetadataPairs).Select(i => new KeyValuePair<string, string>($"k{i:x}", new string('v', 62)))];
        var options = new PageRangeCallOptions { Metadata = pairs, Deadline = DateTimeOffset.MaxValue };
        Task serving = Task.Run(() =>
        {
            using Transaction call = pair.Server.Receive();
            Assert.Equal(pairs, call.Metadata);
            Assert.Equal(DateTimeOffset.MaxValue, call.Deadline);
            Assert.Equal(0, call.Length);
            call.Reply([]);
        });
        using Transaction reply = pair.Client.Call(1, [], options, TestTimeouts.Long);
        await serving.WaitAsync(TestTimeouts.Long);
    }

    [Fact]
    public async Task Server_CallContext_SeesDeadlineAndMetadata()
    {
        string name = ControlHandshakeTests.UniqueName();
        var seen = new TaskCompletionSource<(DateTimeOffset?, KeyValuePair<string, string>[])>(TaskCreationOptions.RunContinuationsAsynchronously);
        await using PageRangeServer server = PageRangeServer.Start(name, builder => builder.Map(2, (call, context) =>
        {
            seen.TrySetResult((context.Deadline, context.Metadata.ToArray()));
            call.Reply(call.Payload);
        }));
        using var timeout = new CancellationTokenSource(TestTimeouts.Long);
        await using PageRangeConnection client = await PageRangeConnection.ConnectAsync(name, ConnectionPair.DefaultOptions(), timeout.Token)
            .AsTask().WaitAsync(TestTimeouts.Long);
        DateTimeOffset deadline = DateTimeOffset.UtcNow.AddMinutes(1);
        using (Transaction reply = await client.CallAsync(2, new byte[] { 5 }, new PageRangeCallOptions { Deadline = deadline, Metadata = s_pairs })
            .AsTask().WaitAsync(TestTimeouts.Long))
        {
            Assert.Equal([5], reply.Payload.ToArray());
        }
        (DateTimeOffset? seenDeadline, KeyValuePair<string, string>[] seenPairs) = await seen.Task.WaitAsync(TestTimeouts.Long);
        Assert.Equal(deadline.UtcTicks, seenDeadline!.Value.UtcTicks);
        Assert.Equal(s_pairs, seenPairs);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task Call_ClearOnFree_PeerRegionBytesZeroedWhenFreedOnlyWhenAsked(bool clearOnFree)
    {
        await using ConnectionPair pair = await ConnectionPair.CreateAsync();
        byte[] secret = [.. Enumerable.Repeat((byte)0xA5, 4096)];
        Task<long> serving = Task.Run(() =>
        {
            using Transaction call = pair.Server.Receive();
            long at = call.Slot.Record.Offset;
            call.Reply([1]);
            return at;
        });
        using (Transaction reply = pair.Client.Call(1, secret, new PageRangeCallOptions { ClearOnFree = clearOnFree }, TestTimeouts.Long))
        {
            Assert.Equal([1], reply.Payload.ToArray());
        }
        long offset = await serving.WaitAsync(TestTimeouts.Long);
        // The server freed the request; the client (the writer) clears the buffer when it takes the free, at its next send.
        pair.Client.SendOneway(2, [0]);
        using (Transaction drained = await pair.Server.ReceiveAsync().AsTask().WaitAsync(TestTimeouts.Long))
        {
            Assert.Equal(2u, drained.Code);
        }
        // The oneway may reuse the buffer's first bytes (a pack's header line and its first entry): look past them, at
        // the rest of the secret's page. A pack also claims each of its lines with a zero word at the line's start
        // (OutboundChannel.ClaimPackLines): those words are the pack's, not the secret's.
        InboundChannel inbound = pair.Server.Inbound;
        const int reused = PackLayout.HeaderSize + 64;
        long start = inbound.Layout.DataOffset + offset + reused;
        ReadOnlySpan<byte> rest = inbound.Region.GetSpan(start, secret.Length - reused);
        int left = 0;
        int secretBytes = 0;
        for (int i = 0; i < rest.Length; i++)
        {
            // The region's mapping is page-aligned, so its offsets give the cache lines.
            if ((start + i) % 64 >= sizeof(ulong))
            {
                secretBytes++;
                left += rest[i] == 0xA5 ? 1 : 0;
            }
        }
        output.WriteLine($"clear-on-free {clearOnFree}: secret bytes left {left} of {secretBytes} (and {rest.Count((byte)0xA5)} of {rest.Length} in all)");
        if (clearOnFree)
        {
            Assert.Equal(0, rest.Count((byte)0xA5));
        }
        else
        {
            Assert.Equal(secretBytes, left);
            Assert.True(secretBytes > rest.Length * 3 / 4);
        }
    }
}
