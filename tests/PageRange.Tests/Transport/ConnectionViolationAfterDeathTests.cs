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
        // Nobody reads the ring until released: the drain after death, which tells receivers, cannot happen first.
        while (!victim.TryHoldReaderRoleForTest())
        {
            await Task.Yield();
        }
        bool held = true;
        try
        {
            await pair.Client.DisposeAsync();
            await ControlHandshakeTests.WaitCancelledAsync(victim.PeerDied);

            // The receiver woken by the death looked again, found nothing drained, and waits for the drain.
            ValueTask<Transaction> receiving = victim.ReceiveAsync();
            Assert.False(receiving.IsCompleted);
            Task<Transaction> received = receiving.AsTask();

            // The reader then finds a violation in what the dead peer left: the ring is never read again.
            victim.ClosePeerViolation(new ProtocolViolationException("garbage left in the ring by a dead peer"));
            victim.ReleaseReaderRoleForTest();
            held = false;

            await Assert.ThrowsAsync<PeerDiedException>(() => received.WaitAsync(TestTimeouts.Long));
        }
        finally
        {
            if (held)
            {
                victim.ReleaseReaderRoleForTest();
            }
        }
    }
}
