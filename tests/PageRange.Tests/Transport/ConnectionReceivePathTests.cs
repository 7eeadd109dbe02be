using PageRange.Tests.Infrastructure;
using PageRange.Transport;

namespace PageRange.Tests.Transport;

/// <summary>
/// The receive path looks at the ring before it reads it: a receiver or a caller with nothing to read waits at once
/// instead of passing over the empty ring (the reader role, the receive lock, the slot lock) before every wait.
/// </summary>
public sealed class ConnectionReceivePathTests
{
    [Theory]
    [InlineData(WaitStrategy.BusySpin)]
    [InlineData(WaitStrategy.SpinThenPark)]
    public async Task CallAndReceive_RoundTrips_MakeNoEmptyPassBeforeEachWait(WaitStrategy strategy)
    {
        const int calls = 2000;
        // The warm-up's calls are left out: the housekeeping pump's passes (one per park timeout) are all that may find nothing.
        long[] empty = await ConnectionPair.CountOverEchoedCallsAsync(strategy, calls,
            pair => [pair.Server.Inbound.EmptyReceivePasses, pair.Client.Inbound.EmptyReceivePasses]);
        // Before: every Receive passed over the empty ring twice (TryReceive's try, then the pump before the wait) and
        // every Call once, so at least 2 and 1 per round trip. Now a pass finds nothing only after a wait that ended
        // without a record (a park timeout, a wake that was not a publish) or in the housekeeping pump.
        Assert.True(empty[0] < calls / 10, $"the server passed over an empty ring {empty[0]} times in {calls} calls");
        Assert.True(empty[1] < calls / 10, $"the client passed over an empty ring {empty[1]} times in {calls} calls");
    }
}
