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
        PageRangeOptions options = ConnectionPair.DefaultOptions();
        options.WaitStrategy = strategy;
        await using ConnectionPair pair = await ConnectionPair.CreateAsync(options);
        using var stop = new CancellationTokenSource();
        Thread echo = ConnectionPair.StartEchoThread(pair.Server, stop.Token);
        try
        {
            byte[] payload = new byte[64];
            // Warm up, then count: the housekeeping pump's passes (one per park timeout) are all that may find nothing.
            for (int i = 0; i < 100; i++)
            {
                using Transaction reply = pair.Client.Call(1, payload, TestTimeouts.Long);
            }
            long serverBefore = pair.Server.Inbound.EmptyReceivePasses;
            long clientBefore = pair.Client.Inbound.EmptyReceivePasses;
            for (int i = 0; i < calls; i++)
            {
                using Transaction reply = pair.Client.Call(1, payload, TestTimeouts.Long);
                Assert.Equal(64, reply.Payload.Length);
            }
            long serverEmpty = pair.Server.Inbound.EmptyReceivePasses - serverBefore;
            long clientEmpty = pair.Client.Inbound.EmptyReceivePasses - clientBefore;
            // Before: every Receive passed over the empty ring twice (TryReceive's try, then the pump before the wait) and
            // every Call once, so at least 2 and 1 per round trip. Now a pass finds nothing only after a wait that ended
            // without a record (a park timeout, a wake that was not a publish) or in the housekeeping pump.
            Assert.True(serverEmpty < calls / 10, $"the server passed over an empty ring {serverEmpty} times in {calls} calls");
            Assert.True(clientEmpty < calls / 10, $"the client passed over an empty ring {clientEmpty} times in {calls} calls");
        }
        finally
        {
            stop.Cancel();
            echo.Join(TestTimeouts.Long);
        }
    }
}
