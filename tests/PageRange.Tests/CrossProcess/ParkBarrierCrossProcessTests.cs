using System.Diagnostics;
using PageRange.Tests.Infrastructure;
using PageRange.Testing;
using PageRange.Transport;

namespace PageRange.Tests.CrossProcess;

/// <summary>
/// The asymmetric doorbell fence between two real processes (<see cref="ParkBarrier"/>): each side's writer publishes
/// without a fence because the other side's readers issue a global expedited membarrier, which reaches the writer's
/// process only because it registered. Both sides park (park strategy) with a 10 s park timeout (the longest allowed), so a lost wake would
/// show as a call or message 10 s late.
/// </summary>
[Collection(CrossProcessCollection.Name)]
public sealed class ParkBarrierCrossProcessTests(ITestOutputHelper output)
{
    private static readonly TimeSpan s_longPark = TimeSpan.FromSeconds(10);

    private static PageRangeOptions ParkingOptions() => new() { WaitStrategy = WaitStrategy.Park, ParkTimeout = s_longPark };

    [Fact]
    public async Task Calls_BothSidesParkBetweenThem_EveryWakeArrivesWithoutFences()
    {
        const int Calls = 1_500;
        await using TransportHost host = await TransportHost.StartAsync(output, ParkingOptions(), "--wait", "Park", "--park-timeout-ms", "10000");
        PageRangeConnection connection = host.Connection;
        Assert.True(connection.Outbound.RingsWithoutFence, "our writer fences: the host's region does not promise the barrier");
        Assert.True(connection.Inbound.ReadersParkWithBarrier);
        var random = new Random(2026);
        var worst = TimeSpan.Zero;
        byte[] request = new byte[64];
        for (int i = 0; i < Calls; i++)
        {
            // 0-100 µs between calls: the host's receiver is sometimes still spinning into its park, sometimes parked.
            long pauseEnd = Stopwatch.GetTimestamp() + (random.Next(0, 100) * Stopwatch.Frequency / 1_000_000);
            while (Stopwatch.GetTimestamp() < pauseEnd)
            {
                Thread.SpinWait(1);
            }
            random.NextBytes(request);
            var call = Stopwatch.StartNew();
            using (Transaction reply = connection.Call(TransportHost.Codes.Echo, request, TimeSpan.FromSeconds(60)))
            {
                Assert.True(reply.Payload.SequenceEqual(request));
            }
            worst = call.Elapsed > worst ? call.Elapsed : worst;
        }
        output.WriteLine($"{Calls} calls, slowest {worst.TotalMilliseconds:F2} ms; our reader parked {connection.Inbound.ReaderParks} times " +
            $"with {connection.Inbound.ReaderParkBarriers} barriers");
        Assert.True(worst < TimeSpan.FromSeconds(3), $"a call took {worst}: a lost wake (the park timeout is 10 s on both sides)");
        Assert.True(connection.Inbound.ReaderParkBarriers > Calls / 2, "our caller rarely parked for its reply: the race was barely run");
    }

    [Fact]
    public async Task Stream_FromHostToAParkedReceiver_EveryMessageInOrderAndPrompt()
    {
        const int Count = 20_000;
        await using TransportHost host = await TransportHost.StartAsync(output, ParkingOptions(), "--wait", "Park", "--park-timeout-ms", "10000");
        host.Process.WriteLine($"send-stream {Count}");
        var worst = TimeSpan.Zero;
        for (ulong expected = 0; expected < Count; expected++)
        {
            var wait = Stopwatch.StartNew();
            using Transaction transaction = await TransportCallTests.ReceiveBoundedAsync(host.Connection);
            worst = wait.Elapsed > worst ? wait.Elapsed : worst;
            Assert.Equal(expected, StreamMessage.Check(transaction.Payload));
        }
        Assert.Equal($"{Count}", host.Process.ReadUntil("sent: "));
        output.WriteLine($"slowest receive {worst.TotalMilliseconds:F2} ms, {host.Connection.Inbound.ReaderParkBarriers} barriers");
        Assert.True(worst < TimeSpan.FromSeconds(3), $"a message waited {worst}: a lost wake (the park timeout is 10 s)");
    }
}
