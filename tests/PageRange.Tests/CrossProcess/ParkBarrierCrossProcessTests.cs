using System.Diagnostics;
using PageRange.Tests.Infrastructure;
using PageRange.Testing;
using PageRange.Transport;

namespace PageRange.Tests.CrossProcess;

/// <summary>
/// The asymmetric doorbell fence between two real processes (<see cref="ParkBarrier"/>): a side publishes without a
/// fence (records to the peer, frees of the peer's buffers) only to a busy-spinning peer, whose rare parks issue a
/// global expedited membarrier that reaches the publisher's process because it registered. Our reader parks on every
/// wait here with a 10 s park timeout (the longest allowed), so a lost wake would show as a message 10 s late.
/// </summary>
[Collection(CrossProcessCollection.Name)]
public sealed class ParkBarrierCrossProcessTests(ITestOutputHelper output)
{
    private static readonly TimeSpan s_longPark = TimeSpan.FromSeconds(10);

    [Theory]
    [InlineData("BusySpin", true)]
    [InlineData("SpinThenPark", false)]
    [InlineData("Park", false)]
    public async Task Writer_FencesUnlessTheHostBusySpins_AndCallsWorkEitherWay(string hostWait, bool fenceFree)
    {
        await using TransportHost host = await TransportHost.StartAsync(output, null, "--wait", hostWait);
        Assert.Equal(fenceFree, host.Connection.Outbound.RingsWithoutFence);
        // The host's writer parks with the barrier when it waits for room in our region only if it busy-spins: then we
        // free without a fence.
        Assert.Equal(fenceFree, host.Connection.Inbound.FreesRingWithoutFence);
        // The host's writer and its frees: we spin then park as a rule, so we promised nothing and the host fences both.
        Assert.Equal("full", host.Command("fence", "fence: "));
        Assert.Equal("full", host.Command("free-fence", "free-fence: "));
        byte[] request = new byte[64];
        for (int i = 0; i < 300; i++)
        {
            request[i % request.Length]++;
            using Transaction reply = host.Connection.Call(TransportHost.Codes.Echo, request, TestTimeouts.Long);
            Assert.True(reply.Payload.SequenceEqual(request));
        }
    }

    [Fact]
    public async Task Stream_FromAFenceFreeHostWriter_ToOurReaderParkingOnEveryWait_EveryMessageInOrderAndPrompt()
    {
        const int Count = 20_000;
        var options = new PageRangeOptions { WaitStrategy = WaitStrategy.BusySpin, ParkTimeout = s_longPark };
        await using TransportHost host = await TransportHost.StartAsync(output, options, "--wait", "Park");
        PageRangeConnection connection = host.Connection;
        Assert.True(connection.Inbound.ReadersParkWithBarrier);
        Assert.True(connection.Outbound.RoomWaitsParkWithBarrier);
        Assert.Equal("none", host.Command("fence", "fence: "));
        // We busy-spin, so our waits for room in the host's region park with the barrier, and the host frees without a fence.
        Assert.Equal("none", host.Command("free-fence", "free-fence: "));
        host.Process.WriteLine($"send-stream {Count}");
        var worst = TimeSpan.Zero;
        var total = Stopwatch.StartNew();
        for (ulong expected = 0; expected < Count; expected++)
        {
            var wait = Stopwatch.StartNew();
            Transaction transaction;
            while (!connection.TryReceive(out transaction))
            {
                Assert.True(total.Elapsed < TimeSpan.FromSeconds(120), $"message {expected} never came");
                // Park, not the busy spin the options say: the wait the barrier is for.
                connection.Inbound.WaitForTransaction(TimeSpan.FromSeconds(30), WaitStrategy.Park, CancellationToken.None);
            }
            using (transaction)
            {
                Assert.Equal(expected, StreamMessage.Check(transaction.Payload));
            }
            worst = wait.Elapsed > worst ? wait.Elapsed : worst;
        }
        Assert.Equal($"{Count}", host.Process.ReadUntil("sent: "));
        output.WriteLine($"slowest receive {worst.TotalMilliseconds:F2} ms, {connection.Inbound.ReaderParks} parks, " +
            $"{connection.Inbound.ReaderParkBarriers} barriers");
        Assert.True(worst < TimeSpan.FromSeconds(9), $"a message waited {worst}: a lost wake (the park timeout is 10 s)");
        Assert.True(connection.Inbound.ReaderParkBarriers > 0, "our reader never parked: the barrier was not run");
    }
}
