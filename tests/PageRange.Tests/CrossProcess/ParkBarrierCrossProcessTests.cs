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

    /// <summary>
    /// Has the host stream <paramref name="count"/> messages to us and takes them, waiting as <paramref name="strategyOf"/>
    /// says (by the message awaited) whenever none is there; checks each in order, and returns the longest one waited.
    /// </summary>
    private static TimeSpan ReceiveHostStream(TransportHost host, int count, Func<ulong, WaitStrategy> strategyOf)
    {
        PageRangeConnection connection = host.Connection;
        host.Process.WriteLine($"send-stream {count}");
        var worst = TimeSpan.Zero;
        var total = Stopwatch.StartNew();
        for (ulong expected = 0; expected < (ulong)count; expected++)
        {
            var wait = Stopwatch.StartNew();
            Transaction transaction;
            while (!connection.TryReceive(out transaction))
            {
                Assert.True(total.Elapsed < TimeSpan.FromSeconds(120), $"message {expected} never came");
                connection.Inbound.WaitForTransaction(TimeSpan.FromSeconds(30), strategyOf(expected), CancellationToken.None);
            }
            using (transaction)
            {
                Assert.Equal(expected, StreamMessage.Check(transaction.Payload));
            }
            worst = wait.Elapsed > worst ? wait.Elapsed : worst;
        }
        Assert.Equal($"{count}", host.Process.ReadUntil("sent: "));
        return worst;
    }

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
        // The host's writer: we spin then park as a rule, so we promised the barrier only while our mode word says so
        // (the adaptive barrier), and the host fences unless it does. Its frees: our writer promised nothing.
        Assert.Equal("while-announced", host.Command("fence", "fence: "));
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
        // Park, not the busy spin the options say: the wait the barrier is for.
        TimeSpan worst = ReceiveHostStream(host, Count, _ => WaitStrategy.Park);
        output.WriteLine($"slowest receive {worst.TotalMilliseconds:F2} ms, {connection.Inbound.ReaderParks} parks, " +
            $"{connection.Inbound.ReaderParkBarriers} barriers");
        Assert.True(worst < TimeSpan.FromSeconds(9), $"a message waited {worst}: a lost wake (the park timeout is 10 s)");
        Assert.True(connection.Inbound.ReaderParkBarriers > 0, "our reader never parked: the barrier was not run");
    }
    /// <summary>
    /// The adaptive barrier between two real processes: the host's writer streams to our spin-then-park reader, which
    /// parks on every other wait and switches its barrier at nearly every park (test thresholds); the host's writer
    /// skips its fence whenever our mode word says "on" (its process registered for the barrier when it read our
    /// header). A lost wake would show as a message 10 s late (our park timeout).
    /// </summary>
    [Fact]
    public async Task Stream_FromAHostWriterFollowingOurBarrierMode_ToOurReaderSwitchingIt_EveryMessageInOrderAndPrompt()
    {
        const int Count = 20_000;
        var options = new PageRangeOptions { WaitStrategy = WaitStrategy.SpinThenPark, ParkTimeout = s_longPark };
        await using TransportHost host = await TransportHost.StartAsync(output, options, "--wait", "Park");
        PageRangeConnection connection = host.Connection;
        Assert.True(connection.Inbound.ReadersParkWithAdaptiveBarrier);
        Assert.Equal("while-announced", host.Command("fence", "fence: "));
        // Every park attempt flips it: off whatever the records before it (nothing is below int.MaxValue), on after none.
        connection.Inbound.SetReaderBarrierThresholdsForTest(onAfter: 0, offBelow: int.MaxValue);
        // Every other wait parks at once, the others spin first: both end in parks and in the spin.
        TimeSpan worst = ReceiveHostStream(host, Count, expected => expected % 2 == 0 ? WaitStrategy.Park : WaitStrategy.SpinThenPark);
        output.WriteLine($"slowest receive {worst.TotalMilliseconds:F2} ms, {connection.Inbound.ReaderParks} parks, " +
            $"{connection.Inbound.ReaderParkBarriers} barriers, {connection.Inbound.ReaderBarrierSwitches} switches");
        Assert.True(worst < TimeSpan.FromSeconds(9), $"a message waited {worst}: a lost wake (the park timeout is 10 s)");
        Assert.True(connection.Inbound.ReaderBarrierSwitches > 10, "the barrier barely switched: the race was not run");
    }

    /// <summary>
    /// The free ring's half between two real processes: our async stream fills the host's small region while the host
    /// is paused (five times), so our room watcher waits for room, parking with the barrier (we busy-spin; no spin first
    /// here), and the host, resumed, frees without a fence: it read our
    /// promise from our region's header, frees without a fence; its process registered for the barrier when it read it.
    /// A lost wake would show as a send 10 s late (our park timeout).
    /// </summary>
    [Fact]
    public async Task AsyncStream_IntoAFullHostRegion_OurRoomWaitsParkWithTheBarrier_AndTheHostsFenceFreeFreesWakeThem()
    {
        const int Count = 20_000;
        // No spin before the room watcher parks (it spins then parks for a busy-spinning side): every wait for room parks.
        // And no region-full timeout (5 s by default): a send waits for room for as long as it takes, so a lost wake would
        // show as a send as late as the park timeout instead of as a RegionFullException.
        var options = new PageRangeOptions
        {
            WaitStrategy = WaitStrategy.BusySpin, ParkTimeout = s_longPark, SpinDuration = TimeSpan.Zero, RegionFullTimeout = Timeout.InfiniteTimeSpan,
        };
        await using TransportHost host = await TransportHost.StartAsync(output, options, "--wait", "Park", "--region-size", "262144");
        PageRangeConnection connection = host.Connection;
        Assert.True(connection.Outbound.RoomWaitsParkWithBarrier);
        Assert.Equal("none", host.Command("free-fence", "free-fence: "));
        var worst = TimeSpan.Zero;
        // The host keeps up with a stream by itself: paused, its region fills and our sends wait for room until it
        // resumes and frees.
        host.Command("pause", "paused: ");
        Task sending = Task.Run(async () =>
        {
            byte[] buffer = new byte[StreamMessage.MaxLength];
            for (ulong sequence = 0; sequence < Count; sequence++)
            {
                int length = StreamMessage.LengthOf(sequence);
                StreamMessage.Write(buffer.AsSpan(0, length), sequence);
                var sent = Stopwatch.StartNew();
                await connection.SendOnewayAsync(TransportHost.Codes.Stream, buffer.AsMemory(0, length));
                worst = sent.Elapsed > worst ? sent.Elapsed : worst;
            }
        });
        for (int cycle = 0; cycle < 5; cycle++)
        {
            await Task.Delay(100);
            host.Command("resume", "resumed: ");
            if (cycle < 4)
            {
                await Task.Delay(20);
                host.Command("pause", "paused: ");
            }
        }
        await sending.WaitAsync(TimeSpan.FromSeconds(120));
        (long received, _, long errors) = await host.WaitForStreamAsync(Count);
        Assert.Equal(Count, received);
        Assert.Equal(0, errors);
        long parks = connection.Outbound.RoomWaitParks;
        output.WriteLine($"slowest send {worst.TotalMilliseconds:F2} ms, {parks} room-wait parks, {connection.Outbound.RoomWaitParkBarriers} barriers");
        Assert.True(worst < TimeSpan.FromSeconds(9), $"a send waited {worst} for room: a lost wake (the park timeout is 10 s)");
        Assert.True(parks > 0, "our room watcher never parked: the host kept up, the barrier was not run");
        Assert.InRange(connection.Outbound.RoomWaitParkBarriers, parks, long.MaxValue);
    }
}
