using CsCheck;
using PageRange.Tests.Infrastructure;
using static PageRange.Tests.Infrastructure.Poll;
using PageRange.Transport;

namespace PageRange.Tests.Transport;

/// <summary>
/// Calls and replies whose payload goes inline in the ring (<see cref="InlineLayout"/>) between two connections: every
/// byte round trips at every size, inline and buffered sends mix under pressure without a violation, the payload a
/// handler reads is private, and an error reply needs no room in the caller's region.
/// </summary>
public sealed class ConnectionInlineTests(ITestOutputHelper output)
{
    [Fact]
    public async Task Call_RandomSizesAroundTheInlineLimit_EveryByteRoundTripsAndTheSmallOnesGoInline()
    {
        // The ring's inline path: without the direct lines (DirectCallLayout, DirectReplyLayout), which take a
        // synchronous call's small request and reply first (ConnectionDirectReplyTests).
        PageRangeOptions options = ConnectionPair.DefaultOptions();
        options.DirectCalls = false;
        options.DirectReplies = false;
        await using ConnectionPair pair = await ConnectionPair.CreateAsync(options);
        using var stop = new CancellationTokenSource();
        Thread echo = ConnectionPair.StartEchoThread(pair.Server, stop.Token);
        try
        {
            long small = 0;
            long calls = 0;
            // Sequences of sizes from empty to past the inline limit and the slabs' slot (256 B), random bytes.
            Gen.Select(Gen.Int[0, 400], Gen.Int).Array[1, 40].Sample(sizes =>
            {
                foreach ((int size, int seed) in sizes)
                {
                    byte[] payload = new byte[size];
                    new Random(seed).NextBytes(payload);
                    using Transaction reply = pair.Client.Call(7, payload, TestTimeouts.Long);
                    Assert.True(payload.AsSpan().SequenceEqual(reply.Payload), $"echo of {size} bytes");
                    Assert.True(reply.Memory.Span.SequenceEqual(payload), $"echo's memory of {size} bytes");
                    small += size <= InlineLayout.MaxPayload ? 1 : 0;
                    calls++;
                }
            }, iter: 100, threads: 1);
            // Every small request and every small echo went inline; nothing larger did.
            Assert.Equal(small, pair.Client.Outbound.InlineSent);
            Assert.Equal(small, pair.Server.Inbound.InlineReceived);
            Assert.Equal(small, pair.Server.Outbound.InlineSent);
            Assert.Equal(small, pair.Client.Inbound.InlineReceived);
            output.WriteLine($"{calls} calls, {small} of them inline both ways");
        }
        finally
        {
            await stop.CancelAsync();
            Assert.True(echo.Join(TestTimeouts.Long));
        }
        // Every inline transaction's free came back: once drained, nothing is live on either side.
        await WaitUntilAsync(() =>
        {
            pair.Client.Outbound.DrainFrees();
            pair.Server.Outbound.DrainFrees();
            return pair.Client.Outbound.LiveBuffers == 0 && pair.Server.Outbound.LiveBuffers == 0;
        }, "every buffer and inline transaction freed");
        Assert.Equal(0, pair.Client.Outbound.InlineLive);
        Assert.Equal(0, pair.Server.Outbound.InlineLive);
        Assert.Equal(0, pair.Client.Outbound.IgnoredFrees);
        Assert.Equal(0, pair.Server.Outbound.IgnoredFrees);
    }

    [Theory]
    [InlineData(WaitStrategy.SpinThenPark, false)]
    [InlineData(WaitStrategy.Park, false)]
    [InlineData(WaitStrategy.SpinThenPark, true)]
    [InlineData(WaitStrategy.Park, true)]
    public async Task Call_ManyThreadsMixedSizesAgainstHandlersThatHoldCalls_AllAnsweredNoViolation(WaitStrategy wait, bool direct)
    {
        // 64-slot rings (live limit 56, 8 slots for inline payloads): four callers race small and large calls against
        // two handlers that sometimes hold up to a dozen calls while they take the next, so consumed-but-unfreed
        // transactions, inline records waiting on the ring and buffers mix (the live limit and the full ring are the
        // channel tests': synchronous callers cannot reach them here without a handler that frees on its own).
        // With direct lines (DirectCallLayout, DirectReplyLayout) one small call at a time goes through them instead.
        PageRangeOptions options = ConnectionPair.DefaultOptions();
        options.WaitStrategy = wait;
        options.DirectCalls = direct;
        options.DirectReplies = direct;
        await using ConnectionPair pair = await ConnectionPair.CreateAsync(options);
        using var stop = new CancellationTokenSource();
        var handlers = Enumerable.Range(0, 2).Select(h => new Thread(() =>
        {
            var random = new Random(h);
            var held = new Queue<Transaction>();
            try
            {
                while (!stop.IsCancellationRequested)
                {
                    Transaction call = pair.Server.Receive(stop.Token);
                    call.Reply(call.Payload);
                    held.Enqueue(call);
                    if (held.Count > random.Next(0, 12))
                    {
                        held.Dequeue().Dispose();
                    }
                }
            }
            catch (OperationCanceledException)
            {
            }
            catch (PageRangeException)
            {
            }
            while (held.TryDequeue(out Transaction call))
            {
                call.Dispose();
            }
        })
        { IsBackground = true }).ToArray();
        foreach (Thread handler in handlers)
        {
            handler.Start();
        }
        try
        {
            Task[] callers = [.. Enumerable.Range(0, 4).Select(c => Task.Run(() =>
            {
                var random = new Random(100 + c);
                for (int i = 0; i < 1_500; i++)
                {
                    byte[] payload = new byte[random.Next(4) == 0 ? random.Next(InlineLayout.MaxPayload + 1, 1000) : random.Next(0, InlineLayout.MaxPayload + 1)];
                    random.NextBytes(payload);
                    using Transaction reply = pair.Client.Call(1, payload, TestTimeouts.Long);
                    Assert.True(payload.AsSpan().SequenceEqual(reply.Payload), $"caller {c} call {i}");
                }
            }))];
            await Task.WhenAll(callers).WaitAsync(TestTimeouts.Long);
        }
        finally
        {
            await stop.CancelAsync();
            foreach (Thread handler in handlers)
            {
                Assert.True(handler.Join(TestTimeouts.Long));
            }
        }
        Assert.True(pair.Client.IsPeerAlive && pair.Server.IsPeerAlive, "no side saw a violation");
        long requests = pair.Client.Outbound.InlineSent + pair.Client.Outbound.DirectCallsSent;
        long replies = pair.Server.Outbound.InlineSent + pair.Server.Outbound.DirectRepliesSent;
        Assert.True(requests > 1_000, $"{requests} requests inline or direct");
        Assert.True(replies > 1_000, $"{replies} replies inline or direct");
        Assert.Equal(direct, pair.Client.Outbound.DirectCallsSent > 0);
        Assert.Equal(direct, pair.Server.Outbound.DirectRepliesSent > 0);
        // Every call was answered: the reply lines are expected by nobody.
        Assert.Equal(0UL, pair.Client.Inbound.ExpectedDirectReply);
        output.WriteLine($"{pair.Client.Outbound.InlineSent} requests and {pair.Server.Outbound.InlineSent} replies of 6,000 inline, " +
            $"{pair.Client.Outbound.DirectCallsSent} and {pair.Server.Outbound.DirectRepliesSent} direct");
    }

    [Fact]
    public async Task Call_NoPageOfTheCallersRegionCanBeBacked_TheErrorReplyStillArrivesInline()
    {
        // What needed the control socket's fallback when every error reply needed a buffer (ConnectionTests'
        // Call_ErrorReplyCannotBePlaced...): a short one goes in the ring, which needs no page. (Not written directly into
        // the caller's lines, which needs none either: ConnectionDirectReplyTests.)
        PageRangeOptions options = ConnectionPair.DefaultOptions();
        options.DirectReplies = false;
        await using ConnectionPair pair = await ConnectionPair.CreateAsync(options);
        pair.Server.Outbound.Region.AllocationFaultInjector = _ => true;
        var handler = new Thread(() =>
        {
            using Transaction call = pair.Server.Receive();
        })
        { IsBackground = true };
        handler.Start();

        var error = Assert.Throws<RemoteCallException>(() => pair.Client.Call(1, new byte[16], TestTimeouts.Long));

        Assert.Equal(CallStatus.Unknown, error.Status);
        Assert.Contains("disposed the call without replying", error.Message, StringComparison.Ordinal);
        Assert.True(handler.Join(TestTimeouts.Long));
        Assert.Equal(1, pair.Server.Outbound.InlineSent);
    }

    [Fact]
    public async Task Receive_TheWriterRewritesTheRingAfterTheCallWasTaken_TheHandlersPayloadDoesNotChange()
    {
        await using ConnectionPair pair = await ConnectionPair.CreateAsync();
        byte[] request = [.. Enumerable.Range(0, InlineLayout.MaxPayload).Select(i => (byte)(i + 1))];
        Task<Transaction> calling = pair.Client.CallAsync(1, request, TestTimeouts.Long).AsTask();
        using (Transaction call = pair.Server.Receive())
        {
            Assert.Equal(1, pair.Server.Inbound.InlineReceived);
            // The writer scribbles over every slot of the ring it writes (the head is past the call's: they are its).
            InboundChannel inbound = pair.Server.Inbound;
            inbound.Region.GetSpan(inbound.Layout.TxRingOffset, inbound.Layout.TxRingCapacity * TransactionRecordLayout.Size).Fill(0xEE);
            Assert.True(request.AsSpan().SequenceEqual(call.Payload));
            Assert.True(call.Memory.Span.SequenceEqual(request));
            call.Reply(call.Payload);
        }
        using Transaction reply = await calling.WaitAsync(TestTimeouts.Long);
        Assert.True(request.AsSpan().SequenceEqual(reply.Payload));
    }

    [Fact]
    public async Task Call_InlineTurnedOff_SmallCallsGoAsBuffers()
    {
        PageRangeOptions options = ConnectionPair.DefaultOptions();
        options.InlineSmallPayloads = false;
        // Nor in the direct lines, which need no buffer either.
        options.DirectCalls = false;
        options.DirectReplies = false;
        await using ConnectionPair pair = await ConnectionPair.CreateAsync(options);
        using var stop = new CancellationTokenSource();
        Thread echo = ConnectionPair.StartEchoThread(pair.Server, stop.Token);
        try
        {
            using Transaction reply = pair.Client.Call(1, new byte[64], TestTimeouts.Long);
            Assert.Equal(64, reply.Length);
        }
        finally
        {
            await stop.CancelAsync();
            Assert.True(echo.Join(TestTimeouts.Long));
        }
        Assert.Equal(0, pair.Client.Outbound.InlineSent);
        Assert.Equal(0, pair.Server.Outbound.InlineSent);
        Assert.True(pair.Client.Outbound.CallSlabs.SlabsOpened > 0);
    }
}
