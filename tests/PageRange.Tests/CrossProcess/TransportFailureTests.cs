using System.Diagnostics;
using PageRange.Testing;
using PageRange.Tests.Infrastructure;
using PageRange.Transport;

namespace PageRange.Tests.CrossProcess;

/// <summary>
/// What goes wrong between two real processes: a receiver that stops freeing, a peer killed with SIGKILL during a call
/// or in the middle of a stream, a peer that exits right after replying, and a peer that scribbles on the shared rings.
/// </summary>
[Collection(CrossProcessCollection.Name)]
public sealed class TransportFailureTests(ITestOutputHelper output)
{
    [Fact]
    public async Task SendOneway_ReceiverStopsFreeing_WaitsThenRegionFullThenResumesWithNothingLost()
    {
        TimeSpan regionFullTimeout = TimeSpan.FromMilliseconds(300);
        PageRangeOptions options = TransportHost.DefaultOptions();
        options.RegionFullTimeout = regionFullTimeout;
        await using TransportHost host = await TransportHost.StartAsync(output, options);
        PageRangeConnection connection = host.Connection;
        Assert.Equal("0", host.Command("pause", "paused: "));
        byte[] buffer = new byte[StreamMessage.MaxLength];

        // Send until the host's region (or its live-buffer limit) is full; the failing send waits first.
        ulong sequence = 0;
        RegionFullException? full = null;
        var waited = Stopwatch.StartNew();
        while (full is null)
        {
            Assert.True(sequence < 1_000_000, "the region never filled up");
            Span<byte> message = buffer.AsSpan(0, StreamMessage.LengthOf(sequence));
            StreamMessage.Write(message, sequence);
            waited.Restart();
            try
            {
                connection.SendOneway(TransportHost.Codes.Stream, message);
                sequence++;
            }
            catch (RegionFullException error)
            {
                full = error;
            }
        }
        waited.Stop();
        output.WriteLine($"region full after {sequence} messages, waited {waited.Elapsed.TotalMilliseconds:F0} ms: {full.Message}");
        Assert.True(waited.Elapsed >= regionFullTimeout * 0.9, $"the sender gave up after {waited.Elapsed}, before the {regionFullTimeout} timeout");
        Assert.True(waited.Elapsed < TestTimeouts.Short, $"the sender waited {waited.Elapsed}");
        Assert.Equal(0, host.Stats().Received);

        // The receiver frees again: the same message, and more, go through.
        Assert.Equal("ok", host.Command("resume", "resumed: "));
        ulong total = sequence + 5_000;
        for (; sequence < total; sequence++)
        {
            Span<byte> message = buffer.AsSpan(0, StreamMessage.LengthOf(sequence));
            StreamMessage.Write(message, sequence);
            connection.SendOneway(TransportHost.Codes.Stream, message);
        }

        (long received, long next, long errors) = await host.WaitForStreamAsync((long)total);
        Assert.Equal(0, errors);
        Assert.Equal((long)total, received);
        Assert.Equal((long)total, next);
    }

    [Fact]
    public async Task Call_PeerKilledDuringCall_SyncAndAsyncCallersGetPeerDied()
    {
        await using TransportHost host = await TransportHost.StartAsync(output, null, "--receivers", "2");
        PageRangeConnection connection = host.Connection;
        Task<Transaction> syncCall = Task.Factory.StartNew(
            () => connection.Call(TransportHost.Codes.Hold, "sync"u8),
            CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
        host.Process.ReadUntil("holding: ");
        Task<Transaction> asyncCall = connection.CallAsync(TransportHost.Codes.Hold, "async"u8.ToArray()).AsTask();
        host.Process.ReadUntil("holding: ");

        var clock = Stopwatch.StartNew();
        host.Process.Kill();

        var syncError = await Assert.ThrowsAsync<PeerDiedException>(() => syncCall.WaitAsync(TestTimeouts.Long));
        var asyncError = await Assert.ThrowsAsync<PeerDiedException>(() => asyncCall.WaitAsync(TestTimeouts.Long));
        output.WriteLine($"both callers failed {clock.Elapsed.TotalMilliseconds:F0} ms after SIGKILL: {syncError.Message}");
        Assert.Contains($"{host.Process.Id}", syncError.Message, StringComparison.Ordinal);
        Assert.Contains($"{host.Process.Id}", asyncError.Message, StringComparison.Ordinal);
        Assert.True(clock.Elapsed < TestTimeouts.Short, $"the callers took {clock.Elapsed} to notice the death");
        Assert.False(connection.IsPeerAlive);
        Assert.Throws<PeerDiedException>(() => connection.Call(TransportHost.Codes.Echo, "after"u8));
        Assert.Throws<PeerDiedException>(() => connection.SendOneway(TransportHost.Codes.Stream, "after"u8));
    }

    [Fact]
    public async Task Receive_SenderKilledMidStream_GetsEveryPublishedTransactionThenPeerDied()
    {
        await using TransportHost host = await TransportHost.StartAsync(output);
        PageRangeConnection connection = host.Connection;
        host.Process.WriteLine("send-stream 0");
        ulong expected = 0;
        for (; expected < 5_000; expected++)
        {
            using Transaction transaction = await TransportCallTests.ReceiveBoundedAsync(connection);
            Assert.Equal(expected, StreamMessage.Check(transaction.Payload));
        }

        host.Process.Kill();

        // Everything published before the kill is still delivered, whole and in order; then the death.
        var clock = Stopwatch.StartNew();
        PeerDiedException? died = null;
        while (died is null)
        {
            Assert.True(clock.Elapsed < TestTimeouts.Long, "no PeerDiedException after the sender was killed");
            try
            {
                using Transaction transaction = connection.Receive();
                Assert.Equal(expected, StreamMessage.Check(transaction.Payload));
                expected++;
            }
            catch (PeerDiedException error)
            {
                died = error;
            }
        }
        output.WriteLine($"received {expected} whole messages, then: {died.Message}");
        // Every transaction the channel handed out (records of their own and messages of packs) was received.
        Assert.Equal(connection.Inbound.Delivered, expected);
        Assert.Throws<PeerDiedException>(() => connection.Receive());
        Assert.False(connection.TryReceive(out _));
    }

    [Fact]
    public async Task Call_PeerRepliesThenExits_ReplyIsStillDelivered()
    {
        await using TransportHost host = await TransportHost.StartAsync(output);
        PageRangeConnection connection = host.Connection;
        using (Transaction warm = connection.Call(TransportHost.Codes.Echo, "warm"u8, TestTimeouts.Long))
        {
            Assert.Equal(4, warm.Length);
        }

        // Keep every thread of ours off the inbound ring until the death is known, so the reply is still in the ring
        // when the connection learns that the peer is gone: the published reply must win over the death.
        Assert.True(SpinUntil(connection.TryHoldReaderRoleForTest), "could not take the reader role");
        Task<Transaction> call;
        try
        {
            call = Task.Factory.StartNew(
                () => connection.Call(TransportHost.Codes.ReplyThenExit, "last words"u8, TestTimeouts.Long),
                CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
            Assert.Equal(0, host.Process.WaitForExit());
            await ControlHandshakeTestsWait(connection.PeerDied);
        }
        finally
        {
            connection.ReleaseReaderRoleForTest();
        }

        using Transaction reply = await call.WaitAsync(TestTimeouts.Long);
        Assert.Equal("last words"u8.ToArray(), reply.Payload.ToArray());
        Assert.Throws<PeerDiedException>(() => connection.Call(TransportHost.Codes.Echo, "after"u8));
    }

    [Theory]
    [InlineData("bad-record")]
    [InlineData("bad-tail")]
    [InlineData("bad-free-tail")]
    public async Task Peer_WritesInvalidRing_ProtocolViolationClosesOnlyThatConnection(string kind)
    {
        await using TransportHost bad = await TransportHost.StartAsync(output);
        await using TransportHost good = await TransportHost.StartAsync(output);
        using (Transaction warm = bad.Connection.Call(TransportHost.Codes.Echo, "warm"u8, TestTimeouts.Long))
        {
            Assert.Equal(4, warm.Length);
        }

        // The host stops receiving first: an honest free of its own would overwrite a corrupt free ring tail.
        Assert.Equal("0", bad.Command("pause", "paused: "));
        Assert.Equal("ok", bad.Command($"corrupt {kind}", "corrupted: "));

        // A corrupt transaction ring is found by whoever reads it; a corrupt free ring by the next send (or by the
        // housekeeping drain first, which closes the connection with the same cause).
        ProtocolViolationException violation = kind == "bad-free-tail"
            ? Assert.Throws<ProtocolViolationException>(() => SendUntilFailure(bad.Connection))
            : await Assert.ThrowsAsync<ProtocolViolationException>(() => TransportCallTests.ReceiveBoundedAsync(bad.Connection));
        output.WriteLine($"{kind}: {violation.Message}");

        await ControlHandshakeTestsWait(bad.Connection.PeerDied);
        Assert.False(bad.Connection.IsPeerAlive);
        Assert.Throws<ProtocolViolationException>(() => bad.Connection.Call(TransportHost.Codes.Echo, "after"u8, TestTimeouts.Short));
        // The bad host learns that we closed the connection.
        Assert.Equal("ok", bad.Command("resume", "resumed: "));
        Assert.StartsWith("PeerDiedException", bad.Process.ReadUntil("receiver-ended: "), StringComparison.Ordinal);

        // This process keeps running, and its other connection keeps working.
        using Transaction reply = good.Connection.Call(TransportHost.Codes.Echo, "still here"u8, TestTimeouts.Long);
        Assert.Equal("still here"u8.ToArray(), reply.Payload.ToArray());
        Assert.True(good.Connection.IsPeerAlive);
    }

    private static void SendUntilFailure(PageRangeConnection connection)
    {
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < TestTimeouts.Long)
        {
            connection.SendOneway(TransportHost.Codes.Stream, "x"u8);
        }
    }

    private static bool SpinUntil(Func<bool> condition)
    {
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < TestTimeouts.Short)
        {
            if (condition())
            {
                return true;
            }
            Thread.Yield();
        }
        return false;
    }

    private static Task ControlHandshakeTestsWait(CancellationToken token) => Transport.ControlHandshakeTests.WaitCancelledAsync(token);
}
