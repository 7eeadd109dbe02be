using PageRange.Tests.Infrastructure;
using PageRange.Transport;

namespace PageRange.Tests.Transport;

/// <summary>
/// A peer dies (its socket's end-of-file) and the drain of its ring that follows finds a violation (a SIGKILLed client
/// that was writing garbage): the connection must still tell its receivers, or a server session waits forever.
/// </summary>
public sealed class ConnectionViolationAfterDeathTests
{
    [Fact]
    public async Task ReceiveAsync_ViolationFoundAfterTheDeathWasNoticed_FailsWithPeerDied()
    {
        await using ConnectionPair pair = await ConnectionPair.CreateAsync();
        PageRangeConnection victim = pair.Server;
        using ReaderRoleHold reader = await PeerDiesWhileNobodyReadsAsync(pair);

        // The receiver woken by the death looked again, found nothing drained, and waits for the drain.
        ValueTask<Transaction> receiving = victim.ReceiveAsync();
        Assert.False(receiving.IsCompleted);
        Task<Transaction> received = receiving.AsTask();

        // The reader then finds a violation in what the dead peer left: the ring is never read again.
        victim.ClosePeerViolation(new ProtocolViolationException("garbage left in the ring by a dead peer"));
        reader.Release();

        await Assert.ThrowsAsync<PeerDiedException>(() => received.WaitAsync(TestTimeouts.Long));
    }

    /// <summary>
    /// Takes the reader role of <paramref name="pair"/>'s server, ends its client and waits until the server has noticed
    /// the death. Nobody reads the ring until the hold is released: the drain after death, which tells receivers, cannot
    /// happen first.
    /// </summary>
    internal static async Task<ReaderRoleHold> PeerDiesWhileNobodyReadsAsync(ConnectionPair pair)
    {
        ReaderRoleHold reader = await ReaderRoleHold.TakeAsync(pair.Server);
        try
        {
            await pair.Client.DisposeAsync();
            await ControlHandshakeTests.WaitCancelledAsync(pair.Server.PeerDied);
            return reader;
        }
        catch
        {
            reader.Dispose();
            throw;
        }
    }
}
