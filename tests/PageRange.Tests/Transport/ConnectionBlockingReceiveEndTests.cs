using PageRange.Tests.Infrastructure;
using PageRange.Transport;

namespace PageRange.Tests.Transport;

/// <summary>
/// A thread blocked in the synchronous <see cref="PageRangeConnection.Receive"/> while the peer's violation, noticed by
/// another thread, releases the inbound ring under its wait: the receiver gets the violation as
/// <see cref="ProtocolViolationException"/> (what <see cref="PageRangeConnection.ReceiveAsync"/> reports for that end),
/// never <see cref="ObjectDisposedException"/>, which stays for a connection the user disposed. Looped: the ring's
/// release (on a pool thread after the violation) races the receiver's wake.
/// </summary>
[Trait("Category", "Hostile")]
public sealed class ConnectionBlockingReceiveEndTests(ITestOutputHelper output)
{
    private const int Rounds = 40;

    [Fact]
    public async Task Receive_PeerCorruptsTheFreeRingWhileAThreadWaits_ThrowsProtocolViolation()
    {
        // The victim's background reader reads the free ring at housekeeping (every park timeout): it, not the
        // receiver, finds the violation, and closes the connection under the receiver's wait.
        Dictionary<string, int> seen = [];
        for (int round = 0; round < Rounds; round++)
        {
            Exception error = await RoundAsync(round, (attacker, _) =>
                attacker.Inbound.Region.GetSpan(RegionHeaderLayout.FreeTailOffset, sizeof(ulong)).Fill(0x7f));
            Count(seen, error);
        }
        Report(seen);
        Assert.Equal([nameof(ProtocolViolationException)], seen.Keys);
    }

    [Fact]
    public async Task Receive_ViolationReportedByALayerAboveWhileAThreadWaits_ThrowsProtocolViolation()
    {
        // A layer above (gRPC's framing) closes the connection for a violation from a thread of its own.
        Dictionary<string, int> seen = [];
        for (int round = 0; round < Rounds; round++)
        {
            Exception error = await RoundAsync(round, (_, victim) =>
                victim.ClosePeerViolation(new ProtocolViolationException("a malformed frame above the transport")));
            Count(seen, error);
        }
        Report(seen);
        Assert.Equal([nameof(ProtocolViolationException)], seen.Keys);
    }

    [Fact]
    public async Task Receive_PeerForgesTheRingTailWhileAThreadWaits_ThrowsProtocolViolation()
    {
        // The receiver (or the background reader, whichever reads the ring first) finds a tail far ahead of anything
        // published.
        Dictionary<string, int> seen = [];
        for (int round = 0; round < Rounds; round++)
        {
            Exception error = await RoundAsync(round, (attacker, _) =>
                attacker.Scribble(RegionHeaderLayout.TxTailOffset, BitConverter.GetBytes(1UL << 40)));
            Count(seen, error);
        }
        Report(seen);
        Assert.Equal([nameof(ProtocolViolationException)], seen.Keys);
    }

    [Fact]
    public async Task Call_ViolationReportedWhileAThreadWaitsForTheReply_ThrowsProtocolViolation()
    {
        // The synchronous call waits on the ring as a receive does (it reads it for its reply): the same release.
        Dictionary<string, int> seen = [];
        for (int round = 0; round < Rounds; round++)
        {
            await using ConnectionPair pair = await ConnectionPair.CreateAsync();
            PageRangeConnection victim = pair.Server;
            var result = new TaskCompletionSource<Exception>(TaskCreationOptions.RunContinuationsAsynchronously);
            var thread = new Thread(() =>
            {
                try
                {
                    // The client never receives: the call waits until the connection ends.
                    using Transaction reply = victim.Call(5, [1, 2, 3], TestTimeouts.Long);
                    result.SetResult(new InvalidOperationException("The call got a reply."));
                }
#pragma warning disable CA1031 // Whatever Call throws is the test's answer.
                catch (Exception error)
#pragma warning restore CA1031
                {
                    result.SetResult(error);
                }
            })
            { IsBackground = true, Name = "blocked call" };
            thread.Start();
            if (round % 2 == 0)
            {
                await WaitParkedAsync(victim, result.Task);
            }
            victim.ClosePeerViolation(new ProtocolViolationException("a malformed frame above the transport"));
            Count(seen, await result.Task.WaitAsync(TestTimeouts.Long));
        }
        Report(seen);
        Assert.Equal([nameof(ProtocolViolationException)], seen.Keys);
    }

    [Fact]
    public async Task Receive_PeerDiesThenItsRingIsFoundBroken_ThrowsPeerDiedAsReceiveAsyncDoes()
    {
        // The end is the death that came first (as ConnectionViolationAfterDeathTests has it for ReceiveAsync): the
        // blocked receiver, a follower while the test holds the reader role, is told by the violation's close.
        await using ConnectionPair pair = await ConnectionPair.CreateAsync();
        PageRangeConnection victim = pair.Server;
        while (!victim.TryHoldReaderRoleForTest())
        {
            await Task.Yield();
        }
        bool held = true;
        try
        {
            await pair.Client.DisposeAsync();
            await ControlHandshakeTests.WaitCancelledAsync(victim.PeerDied);
            Task<Exception> receiving = StartBlockedReceive(victim);
            await Task.Delay(50);
            Assert.False(receiving.IsCompleted, "the receiver waits for the drain after death");
            victim.ClosePeerViolation(new ProtocolViolationException("garbage left in the ring by a dead peer"));
            victim.ReleaseReaderRoleForTest();
            held = false;
            Assert.IsType<PeerDiedException>(await receiving.WaitAsync(TestTimeouts.Long));
        }
        finally
        {
            if (held)
            {
                victim.ReleaseReaderRoleForTest();
            }
        }
    }

    [Fact]
    public async Task Receive_UserDisposesWhileAThreadWaits_StillThrowsObjectDisposed()
    {
        await using ConnectionPair pair = await ConnectionPair.CreateAsync();
        Task<Exception> receiving = StartBlockedReceive(pair.Server);
        await WaitParkedAsync(pair.Server, receiving);
        await pair.Server.DisposeAsync();
        Exception error = await receiving.WaitAsync(TestTimeouts.Long);
        Assert.IsType<ObjectDisposedException>(error);
    }

    /// <summary>One connection from a raw peer; a thread blocked in Receive; <paramref name="breakIt"/>; what Receive threw.</summary>
    private static async Task<Exception> RoundAsync(int round, Action<Diagnostics.RawPeer, PageRangeConnection> breakIt)
    {
        PageRangeOptions options = ConnectionPair.DefaultOptions();
        string name = ControlHandshakeTests.UniqueName();
        await using PageRangeListener listener = PageRangeListener.Listen(name, options);
        Task<PageRangeConnection> accepting = listener.AcceptAsync().AsTask();
        await using Diagnostics.RawPeer attacker = await Diagnostics.RawPeer.ConnectAsync(name, options);
        await using PageRangeConnection victim = await accepting.WaitAsync(TestTimeouts.Long);

        // One transaction first, received and disposed: the receiver has been through the ring before it waits.
        Assert.True(attacker.Outbound.TrySend(1, 7, TransactionFlags.Oneway, new byte[64]));
        using var bound = new CancellationTokenSource(TestTimeouts.Long);
        using (Transaction first = victim.Receive(bound.Token))
        {
            Assert.Equal(7u, first.Code);
        }
        Task<Exception> receiving = StartBlockedReceive(victim);
        // Half the rounds wait until the receiver is parked on the doorbell; the others break the peer at once, so the
        // violation lands anywhere in the receiver's way into its wait.
        if (round % 2 == 0)
        {
            await WaitParkedAsync(victim, receiving);
        }
        breakIt(attacker, victim);
        return await receiving.WaitAsync(TestTimeouts.Long);
    }

    /// <summary>A thread that calls Receive once and hands back what it threw (a transaction is a failure).</summary>
    private static Task<Exception> StartBlockedReceive(PageRangeConnection connection)
    {
        var result = new TaskCompletionSource<Exception>(TaskCreationOptions.RunContinuationsAsynchronously);
        var thread = new Thread(() =>
        {
            using var bound = new CancellationTokenSource(TestTimeouts.Long);
            try
            {
                using Transaction transaction = connection.Receive(bound.Token);
                result.SetResult(new InvalidOperationException($"Receive returned transaction {transaction.Id} (code {transaction.Code})."));
            }
#pragma warning disable CA1031 // Whatever Receive throws is the test's answer.
            catch (Exception error)
#pragma warning restore CA1031
            {
                result.SetResult(error);
            }
        })
        { IsBackground = true, Name = "blocked receive" };
        thread.Start();
        return result.Task;
    }

    private static async Task WaitParkedAsync(PageRangeConnection connection, Task<Exception> receiving)
    {
        long parks = connection.Inbound.ReaderParks;
        using var deadline = new CancellationTokenSource(TestTimeouts.Long);
        while (connection.Inbound.ReaderParks == parks && !receiving.IsCompleted)
        {
            await Task.Delay(1, deadline.Token);
        }
    }

    private static void Count(Dictionary<string, int> seen, Exception error)
    {
        string key = error.GetType().Name;
        seen[key] = seen.GetValueOrDefault(key) + 1;
        if (error is not ProtocolViolationException)
        {
            seen[$"{key}: {error.Message}"] = 1;
        }
    }

    private void Report(Dictionary<string, int> seen)
    {
        foreach ((string what, int count) in seen)
        {
            output.WriteLine($"{count} x {what}");
        }
    }
}
