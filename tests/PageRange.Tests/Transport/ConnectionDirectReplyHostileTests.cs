using System.Runtime.InteropServices;
using PageRange.Tests.CrossProcess;
using PageRange.Tests.Diagnostics;
using PageRange.Tests.Infrastructure;
using PageRange.Transport;
using static PageRange.Tests.Infrastructure.Poll;

namespace PageRange.Tests.Transport;

/// <summary>
/// A raw peer that answers the victim's call through the direct reply lines (<see cref="DirectReplyLayout"/>) as no
/// honest peer would: a broken reply with the expected id (only that connection closes, the waiting call fails with a
/// typed error, the victim lets go of its descriptors and mappings, a neighbour on the same listener carries on); the
/// same call answered in the lines and on the ring (one answer reaches the caller, the other is freed, nothing is
/// refused); lines written for calls that never asked. In the non-parallel collection: descriptors and mappings are
/// counted over the whole process.
/// </summary>
[Collection(CrossProcessCollection.Name)]
[Trait("Category", "Hostile")]
public sealed class ConnectionDirectReplyHostileTests(ITestOutputHelper output)
{
    [Fact]
    public async Task RawPeer_BrokenDirectReplyWithTheExpectedId_OnlyThatConnectionClosesAndLetsGoOfEverything()
    {
        await using RawAttack attack = await RawAttack.StartAsync();
        (RawPeer attacker, PageRangeConnection victim) = attack;
        (PageRangeConnection honestClient, PageRangeConnection honestServer) = await attack.ConnectNeighbourAsync();
        string victimView = attack.RegionName;
        (int Descriptors, int Mappings) connected = FaultResources.Naming(victimView);
        output.WriteLine($"connected: {connected}");

        Task<Exception?> calling = Task.Run(Exception? () => Record.Exception(() => victim.Call(1, [1, 2, 3], TestTimeouts.Long).Dispose()));
        TransactionRecord request = await ReceiveRequestAsync(attacker);
        Assert.NotEqual(0, (int)(request.Flags & TransactionFlagsExtensions.DirectReplyRequested));
        // A reply one byte longer than the payload lines, with the id the victim waits for.
        attacker.Scribble(DirectReplyLayout.PayloadOffset, new byte[DirectReplyLayout.MaxPayload]);
        WriteRecord(attacker, new TransactionRecordLayout { Flags = (uint)TransactionFlags.Reply, Length = DirectReplyLayout.MaxPayload + 1, TransactionId = request.TransactionId });

        Exception? error = await calling.WaitAsync(TestTimeouts.Long);
        Assert.True(error is PageRangeException, $"the call failed with a typed error: {error}");
        output.WriteLine(error!.Message);
        await AssertOnlyTheVictimClosedAsync(victim, victimView, connected, honestClient, honestServer);
    }

    [Fact]
    public async Task RawPeer_AnswersInTheLinesAndOnTheRing_TheCallerGetsOneBothAreFreedTheConnectionGoesOn()
    {
        await using RawAttack attack = await RawAttack.StartAsync();
        (RawPeer attacker, PageRangeConnection victim) = attack;

        for (int round = 0; round < 3; round++)
        {
            Task<byte[]> calling = Task.Run(() =>
            {
                using Transaction reply = victim.Call(1, [(byte)round], TestTimeouts.Long);
                return reply.Payload.ToArray();
            });
            TransactionRecord request = await ReceiveRequestAsync(attacker);
            // On the ring first (honestly sent, without the bit), then the same id in the lines.
            Assert.True(attacker.Outbound.TrySend(request.TransactionId, 0, TransactionFlags.Reply, [1, (byte)round]));
            Assert.True(attacker.Outbound.TrySend(request.TransactionId, 0, TransactionFlags.Reply | TransactionFlagsExtensions.DirectReplyRequested, [2, (byte)round]));
            byte[] answer = await calling.WaitAsync(TestTimeouts.Long);
            Assert.Equal(round, answer[1]);
            attacker.Inbound.Free(request);
        }

        // The victim freed every answer it took: the second of a round was freed at once (nobody waiting), unless it was
        // the lines' and the ring's had ended the expectation first, in which case the lines were never read. What stays
        // live is the attacker's own count of lines it wrote unasked.
        long unread = 3 - victim.Inbound.DirectRepliesReceived;
        output.WriteLine($"{victim.Inbound.DirectRepliesReceived} of 3 rounds answered from the lines");
        await WaitUntilAsync(() =>
        {
            attacker.Outbound.DrainFrees();
            return attacker.Outbound.LiveBuffers == unread;
        }, "every answer the victim took freed");
        Assert.Equal(0, attacker.Outbound.IgnoredFrees);
        Assert.True(victim.IsPeerAlive);
        Assert.Equal(0, victim.LiveIncomingTransactions);
        Assert.Equal(0UL, victim.Inbound.ExpectedDirectReply);
        // A call that does not ask (an async one) never reads the lines, whatever the peer writes there.
        Task<Transaction> asyncCall = victim.CallAsync(3, new byte[] { 9 }, TestTimeouts.Long).AsTask();
        TransactionRecord asyncRequest = await ReceiveRequestAsync(attacker);
        Assert.Equal(0, (int)(asyncRequest.Flags & TransactionFlagsExtensions.DirectReplyRequested));
        Assert.True(attacker.Outbound.TrySend(asyncRequest.TransactionId, 0, TransactionFlags.Reply | TransactionFlagsExtensions.DirectReplyRequested, [7]));
        await Task.Delay(100);
        Assert.False(asyncCall.IsCompleted);
        Assert.True(attacker.Outbound.TrySend(asyncRequest.TransactionId, 0, TransactionFlags.Reply, [8]));
        using (Transaction reply = await asyncCall.WaitAsync(TestTimeouts.Long))
        {
            Assert.Equal([8], reply.Payload.ToArray());
        }
        Assert.True(victim.IsPeerAlive);
    }

    [Fact]
    public async Task RawPeer_AnswersEveryCallTwiceWhileFourThreadsCall_EveryCallGetsItsOwnAnswerAndNoneTimesOut()
    {
        // Every call answered twice, by the lines and the ring in turn, while four threads call: each gets its own answer,
        // none waits for its timeout, and both answers go back. The window in which a reader that cleared the owner's word
        // wiped the next call's expectation is a few instructions wide; ChannelDirectReplyHostileTests opens it on purpose.
        await using RawAttack attack = await RawAttack.StartAsync();
        (RawPeer attacker, PageRangeConnection victim) = attack;
        const int Threads = 4;
        const int CallsPerThread = 300;
        using var stop = new CancellationTokenSource();
        long answeredInTheLines = 0;
        Task answering = Task.Run(() =>
        {
            long answered = 0;
            while (!stop.IsCancellationRequested)
            {
                attacker.Outbound.DrainFrees();
                if (!attacker.Inbound.TryReceive(out TransactionRecord request))
                {
                    Thread.Yield();
                    continue;
                }
                byte[] echo = attacker.Inbound.GetPayload(request).ToArray();
                bool asked = (request.Flags & TransactionFlagsExtensions.DirectReplyRequested) != 0;
                // The order alternates: the lines first or the ring first.
                bool linesFirst = (answered++ & 1) == 0;
                if (asked && linesFirst)
                {
                    Send(TransactionFlags.Reply | TransactionFlagsExtensions.DirectReplyRequested);
                }
                Send(TransactionFlags.Reply);
                if (asked && !linesFirst)
                {
                    Send(TransactionFlags.Reply | TransactionFlagsExtensions.DirectReplyRequested);
                }
                attacker.Inbound.Free(request);

                void Send(TransactionFlags flags)
                {
                    while (!attacker.Outbound.TrySend(request.TransactionId, 0, flags, echo))
                    {
                        // The victim frees the answers it took (and the second ones nobody waits for) as it goes.
                        attacker.Outbound.DrainFrees();
                        Thread.Yield();
                    }
                    if ((flags & TransactionFlagsExtensions.DirectReplyRequested) != 0)
                    {
                        Interlocked.Increment(ref answeredInTheLines);
                    }
                }
            }
        });
        try
        {
            Task[] callers = [.. Enumerable.Range(0, Threads).Select(thread => Task.Run(() =>
            {
                for (int i = 0; i < CallsPerThread; i++)
                {
                    byte[] request = [(byte)thread, (byte)i, (byte)(i >> 8)];
                    using Transaction reply = victim.Call(1, request, TestTimeouts.Long);
                    Assert.Equal(request, reply.Payload.ToArray());
                }
            }))];
            await Task.WhenAll(callers).WaitAsync(TestTimeouts.Long);
        }
        finally
        {
            await stop.CancelAsync();
            await answering.WaitAsync(TestTimeouts.Long);
        }

        output.WriteLine($"{Interlocked.Read(ref answeredInTheLines)} answers written in the lines, {victim.Inbound.DirectRepliesReceived} taken from them");
        Assert.True(victim.Inbound.DirectRepliesReceived > 0, "some answers came through the lines");
        Assert.True(victim.IsPeerAlive);
        Assert.Equal(0UL, victim.Inbound.ExpectedDirectReply);
        // Every answer the victim took went back, the second ones of each call too.
        await WaitUntilAsync(() => victim.LiveIncomingTransactions == 0, "every answer freed");
    }

    [Fact]
    public async Task RawPeer_FailsTheCallOverTheControlSocket_TheLinesAreFreeForTheNextCall()
    {
        await using RawAttack attack = await RawAttack.StartAsync();
        (RawPeer attacker, PageRangeConnection victim) = attack;

        Task<Exception?> calling = Task.Run(Exception? () => Record.Exception(() => victim.Call(1, [1], TestTimeouts.Long).Dispose()));
        TransactionRecord request = await ReceiveRequestAsync(attacker);
        Assert.NotEqual(0, (int)(request.Flags & TransactionFlagsExtensions.DirectReplyRequested));
        // Not in the lines, not on the ring: the peer says over the control socket that it could not reply at all.
        await attacker.Handshake.Control.SendFailedReplyAsync(request.TransactionId);
        var failed = Assert.IsType<RemoteCallException>(await calling.WaitAsync(TestTimeouts.Long));
        Assert.Equal(CallStatus.ResourceExhausted, failed.Status);
        // Nothing will be written for that call: the next one asks for the lines again.
        Assert.Equal(0UL, victim.Inbound.ExpectedDirectReply);
        attacker.Inbound.Free(request);

        Task<byte[]> next = Task.Run(() =>
        {
            using Transaction reply = victim.Call(2, [2], TestTimeouts.Long);
            return reply.Payload.ToArray();
        });
        TransactionRecord second = await ReceiveRequestAsync(attacker);
        Assert.NotEqual(0, (int)(second.Flags & TransactionFlagsExtensions.DirectReplyRequested));
        Assert.True(attacker.Outbound.TrySend(second.TransactionId, 0, TransactionFlags.Reply | TransactionFlagsExtensions.DirectReplyRequested, [3]));
        Assert.Equal([3], await next.WaitAsync(TestTimeouts.Long));
        Assert.Equal(1, victim.Inbound.DirectRepliesReceived);
        Assert.True(victim.IsPeerAlive);
    }

    [Fact]
    public async Task RawPeer_FailsATimedOutCallOverTheControlSocket_BothDirectLinesAreFreeForTheNextCall()
    {
        await using RawAttack attack = await RawAttack.StartAsync();
        (RawPeer attacker, PageRangeConnection victim) = attack;

        Assert.Throws<TimeoutException>(() => victim.Call(1, [1], TimeSpan.FromMilliseconds(100)).Dispose());
        TransactionRecord request = await ReceiveRequestAsync(attacker);
        Assert.Equal(1, attacker.Inbound.DirectCallsReceived);
        // Unanswered: the reply's expectation and the call lines stay with it (a late answer may still come).
        Assert.Equal(request.TransactionId, victim.Inbound.ExpectedDirectReply);
        // The late answer is the peer's failure notice (found by review: it ended neither before).
        await attacker.Handshake.Control.SendFailedReplyAsync(request.TransactionId);
        await WaitUntilAsync(() => victim.Inbound.ExpectedDirectReply == 0, "the failure notice ended the expectation");
        attacker.Inbound.Free(request);

        Task<byte[]> next = Task.Run(() =>
        {
            using Transaction reply = victim.Call(2, [2], TestTimeouts.Long);
            return reply.Payload.ToArray();
        });
        TransactionRecord second = await ReceiveRequestAsync(attacker);
        // Both lines again: the call came through the direct call lines and asks for a direct reply.
        Assert.Equal(2, attacker.Inbound.DirectCallsReceived);
        Assert.NotEqual(0, (int)(second.Flags & TransactionFlagsExtensions.DirectReplyRequested));
        Assert.True(attacker.Outbound.TrySend(second.TransactionId, 0, TransactionFlags.Reply | TransactionFlagsExtensions.DirectReplyRequested, [3]));
        Assert.Equal([3], await next.WaitAsync(TestTimeouts.Long));
        Assert.True(victim.IsPeerAlive);
    }

    [Fact]
    public async Task RawPeer_WritesABrokenDirectCall_OnlyThatConnectionClosesAndLetsGoOfEverything()
    {
        await using RawAttack attack = await RawAttack.StartAsync();
        (RawPeer attacker, PageRangeConnection victim) = attack;
        (PageRangeConnection honestClient, PageRangeConnection honestServer) = await attack.ConnectNeighbourAsync();
        string victimView = attack.RegionName;
        (int Descriptors, int Mappings) connected = FaultResources.Naming(victimView);

        // One honest direct call first, then one whose sequence skips ahead.
        Assert.True(attacker.Outbound.TrySend(1, 5, TransactionFlags.TwoWay | TransactionFlagsExtensions.DirectCall, [1]));
        using (Transaction first = await victim.ReceiveAsync().AsTask().WaitAsync(TestTimeouts.Long))
        {
            Assert.Equal(5u, first.Code);
            Assert.Equal(TransactionFlags.TwoWay, first.Flags);
        }
        WriteRecord(attacker, DirectCallLayout.Offset, new TransactionRecordLayout { TransactionId = 2, Code = 6, Flags = (uint)TransactionFlags.TwoWay, Reserved0 = 3 });
        // The doorbell, so a parked receiver looks now rather than after its park timeout.
        attacker.Outbound.RingDoorbellForTest();

        await Assert.ThrowsAnyAsync<PageRangeException>(async () =>
        {
            using Transaction second = await victim.ReceiveAsync().AsTask().WaitAsync(TestTimeouts.Long);
        });
        await AssertOnlyTheVictimClosedAsync(victim, victimView, connected, honestClient, honestServer);
    }

    [Fact]
    public async Task RawPeer_RewritesATwoLineDirectCallWhileTheHandlerHoldsIt_TheHandlerKeepsTheBytesItWasGiven()
    {
        await using RawAttack attack = await RawAttack.StartAsync();
        (RawPeer attacker, PageRangeConnection victim) = attack;
        byte[] payload = [.. Enumerable.Range(0, DirectCallLayout.MaxPayload).Select(i => (byte)(i + 9))];
        Assert.True(attacker.Outbound.TrySend(1, 5, TransactionFlags.TwoWay | TransactionFlagsExtensions.DirectCall, payload));
        attacker.Outbound.RingDoorbellForTest();

        using (Transaction call = await victim.ReceiveAsync().AsTask().WaitAsync(TestTimeouts.Long))
        {
            Assert.Equal(1, victim.Inbound.DirectCallsReceived);
            ReadOnlyMemory<byte> memory = call.Memory;
            // Both payload lines written over while the handler holds the call: it reads its private copy.
            attacker.Scribble(DirectCallLayout.PayloadOffset, Enumerable.Repeat((byte)0xEE, DirectCallLayout.MaxPayload).ToArray());
            Assert.Equal(payload, call.Payload.ToArray());
            Assert.Equal(payload, memory.ToArray());
            call.Reply(call.Payload);
        }

        TransactionRecord reply = default;
        await WaitUntilAsync(() => attacker.Inbound.TryReceive(out reply), "the victim's reply arrived");
        Assert.Equal(TransactionFlags.Reply, reply.Flags);
        Assert.Equal(payload, attacker.Inbound.GetPayload(reply).ToArray());
        // The rewrite left the sequence the victim took last: not a new call, nothing refused.
        Assert.True(victim.IsPeerAlive);
        Assert.Equal(0, victim.LiveIncomingTransactions);
        Assert.Equal(1, victim.Inbound.DirectCallsReceived);
    }

    /// <summary>
    /// The victim closed the connection and let go of its descriptors and mappings, holds no transaction, and the
    /// neighbour on the same listener still calls, through both direct line sets.
    /// </summary>
    private static async Task AssertOnlyTheVictimClosedAsync(
        PageRangeConnection victim, string victimView, (int Descriptors, int Mappings) connected, PageRangeConnection honestClient, PageRangeConnection honestServer)
    {
        await WaitUntilAsync(() => victim.PeerDied.IsCancellationRequested, "the victim closed the connection");
        await WaitUntilAsync(() => FaultResources.Naming(victimView).Descriptors < connected.Descriptors, "the victim closed its descriptors");
        await WaitUntilAsync(() => FaultResources.Naming(victimView).Mappings < connected.Mappings, "the victim unmapped its views");
        Assert.Equal(0, victim.LiveIncomingTransactions);

        using var stop = new CancellationTokenSource();
        Thread echo = ConnectionPair.StartEchoThread(honestServer, stop.Token);
        try
        {
            using Transaction reply = honestClient.Call(2, [4, 5], TestTimeouts.Long);
            Assert.Equal([4, 5], reply.Payload.ToArray());
            Assert.Equal(1, honestClient.Inbound.DirectRepliesReceived);
            Assert.Equal(1, honestServer.Inbound.DirectCallsReceived);
        }
        finally
        {
            await stop.CancelAsync();
            Assert.True(echo.Join(TestTimeouts.Long));
        }
    }

    private static async Task<TransactionRecord> ReceiveRequestAsync(RawPeer attacker)
    {
        TransactionRecord request = default;
        await WaitUntilAsync(() => attacker.Inbound.TryReceive(out request), "the victim's call arrived");
        Assert.Equal(TransactionFlags.TwoWay, request.Flags & ~TransactionFlagsExtensions.DirectReplyRequested);
        return request;
    }

    private static void WriteRecord(RawPeer attacker, TransactionRecordLayout record) =>
        WriteRecord(attacker, DirectReplyLayout.Offset, record);

    private static void WriteRecord(RawPeer attacker, int offset, TransactionRecordLayout record)
    {
        Span<byte> line = stackalloc byte[TransactionRecordLayout.Size];
        MemoryMarshal.Write(line, in record);
        attacker.Scribble(offset, line);
    }
}
