using PageRange.Tests.Diagnostics;
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
        await EveryRoundThrowsProtocolViolationAsync(round => RoundAsync(round, (attacker, _) =>
            attacker.Inbound.Region.GetSpan(RegionHeaderLayout.FreeTailOffset, sizeof(ulong)).Fill(0x7f)));
    }

    [Fact]
    public async Task Receive_ViolationReportedByALayerAboveWhileAThreadWaits_ThrowsProtocolViolation()
    {
        // A layer above (gRPC's framing) closes the connection for a violation from a thread of its own.
        await EveryRoundThrowsProtocolViolationAsync(round => RoundAsync(round, (_, victim) =>
            victim.ClosePeerViolation(new ProtocolViolationException("a malformed frame above the transport"))));
    }

    [Fact]
    public async Task Receive_PeerForgesTheRingTailWhileAThreadWaits_ThrowsProtocolViolation()
    {
        // The receiver (or the background reader, whichever reads the ring first) finds a tail far ahead of anything
        // published.
        await EveryRoundThrowsProtocolViolationAsync(round => RoundAsync(round, (attacker, _) =>
            attacker.Scribble(RegionHeaderLayout.TxTailOffset, BitConverter.GetBytes(1UL << 40))));
    }

    [Fact]
    public async Task Call_ViolationReportedWhileAThreadWaitsForTheReply_ThrowsProtocolViolation()
    {
        // The synchronous call waits on the ring as a receive does (it reads it for its reply): the same release.
        await EveryRoundThrowsProtocolViolationAsync(async round =>
        {
            await using ConnectionPair pair = await ConnectionPair.CreateAsync();
            PageRangeConnection victim = pair.Server;
            // The client never receives: the call waits until the connection ends.
            Task<Exception> calling = StartBlocked("Call", () => victim.Call(5, [1, 2, 3], TestTimeouts.Long));
            if (round % 2 == 0)
            {
                await WaitParkedAsync(victim, calling);
            }
            victim.ClosePeerViolation(new ProtocolViolationException("a malformed frame above the transport"));
            return await calling.WaitAsync(TestTimeouts.Long);
        });
    }

    [Fact]
    public async Task Receive_PeerDiesThenItsRingIsFoundBroken_ThrowsPeerDiedAsReceiveAsyncDoes()
    {
        // The end is the death that came first (as ConnectionViolationAfterDeathTests has it for ReceiveAsync): the
        // blocked receiver, a follower while the test holds the reader role, is told by the violation's close.
        await using ConnectionPair pair = await ConnectionPair.CreateAsync();
        PageRangeConnection victim = pair.Server;
        using ReaderRoleHold reader = await ConnectionViolationAfterDeathTests.PeerDiesWhileNobodyReadsAsync(pair);
        Task<Exception> receiving = StartBlockedReceive(victim);
        await Task.Delay(50);
        Assert.False(receiving.IsCompleted, "the receiver waits for the drain after death");
        victim.ClosePeerViolation(new ProtocolViolationException("garbage left in the ring by a dead peer"));
        reader.Release();
        Assert.IsType<PeerDiedException>(await receiving.WaitAsync(TestTimeouts.Long));
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
    private static async Task<Exception> RoundAsync(int round, Action<RawPeer, PageRangeConnection> breakIt)
    {
        await using RawAttack attack = await RawAttack.StartAsync();
        (RawPeer attacker, PageRangeConnection victim) = attack;

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
    private static Task<Exception> StartBlockedReceive(PageRangeConnection connection) => StartBlocked("Receive", () =>
    {
        using var bound = new CancellationTokenSource(TestTimeouts.Long);
        return connection.Receive(bound.Token);
    });

    /// <summary>A thread that runs <paramref name="wait"/> (a blocking <paramref name="what"/>) once and hands back what it threw (a transaction is a failure).</summary>
    private static Task<Exception> StartBlocked(string what, Func<Transaction> wait)
    {
        var result = new TaskCompletionSource<Exception>(TaskCreationOptions.RunContinuationsAsynchronously);
        var thread = new Thread(() =>
        {
            try
            {
                using Transaction transaction = wait();
                result.SetResult(new InvalidOperationException($"{what} returned transaction {transaction.Id} (code {transaction.Code})."));
            }
#pragma warning disable CA1031 // Whatever the wait throws is the test's answer.
            catch (Exception error)
#pragma warning restore CA1031
            {
                result.SetResult(error);
            }
        })
        { IsBackground = true, Name = $"blocked {what}" };
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

    /// <summary>
    /// Runs <see cref="Rounds"/> rounds of <paramref name="round"/> (given its number), writes how often each exception
    /// came (with the message of any other than the violation), and asserts that every round threw the violation.
    /// </summary>
    private async Task EveryRoundThrowsProtocolViolationAsync(Func<int, Task<Exception>> round)
    {
        Dictionary<string, int> seen = [];
        for (int i = 0; i < Rounds; i++)
        {
            Exception error = await round(i);
            string key = error.GetType().Name;
            seen[key] = seen.GetValueOrDefault(key) + 1;
            if (error is not ProtocolViolationException)
            {
                seen[$"{key}: {error.Message}"] = 1;
            }
        }
        foreach ((string what, int count) in seen)
        {
            output.WriteLine($"{count} x {what}");
        }
        Assert.Equal([nameof(ProtocolViolationException)], seen.Keys);
    }
}
