using System.Buffers.Binary;
using System.Diagnostics;
using System.Globalization;
using PageRange.Tests.Infrastructure;
using PageRange.Transport;

namespace PageRange.Tests.Transport;

/// <summary>
/// The fence moved to the parker (issue 12), between this process and a TestHost (<c>fence-echo</c>): a ping-pong in
/// which both sides park on every wait, with a park timeout long enough that a lost wake shows as a park that ran it
/// out. Run with the asymmetric protocol, with the fallback forced on both sides, with only one side announcing it
/// (what an older peer looks like), and with the park strategy (which keeps the fences).
/// </summary>
[Collection(CrossProcessCollection.Name)]
public sealed class DoorbellMembarrierCrossProcessTests(ITestOutputHelper output)
{
    private const int Rounds = 2_000;
    private const int DelayMicroseconds = 150;

    /// <summary>Long beside the delays here: a wait that runs it out is a lost wake, not a slow peer.</summary>
    private static readonly TimeSpan s_parkTimeout = TimeSpan.FromSeconds(5);

    [Theory]
    [InlineData(WaitStrategy.SpinThenPark, true, true)]
    [InlineData(WaitStrategy.SpinThenPark, false, false)]
    [InlineData(WaitStrategy.SpinThenPark, true, false)]
    [InlineData(WaitStrategy.SpinThenPark, false, true)]
    [InlineData(WaitStrategy.Park, true, true)]
    [InlineData(WaitStrategy.Park, false, false)]
    public async Task PingPong_EveryWaitParks_NoWaitEndsByItsTimeout(WaitStrategy wait, bool ourMembarrier, bool hostMembarrier)
    {
        // Park keeps the fences whatever the kernel offers (Doorbell.CapabilitiesFor): a membarrier per park costs it more.
        bool expected = ourMembarrier && hostMembarrier && wait != WaitStrategy.Park;
        // A spin of a microsecond: SpinThenPark still runs its spin (and learns from it), then parks, on a busy
        // machine too, where a longer spin's yields can outlast the peer's delay.
        var options = new PageRangeOptions { WaitStrategy = wait, SpinDuration = TimeSpan.FromMicroseconds(1), ParkTimeout = s_parkTimeout };
        string name = ControlHandshakeTests.UniqueName();
        PageRangeConnection connection;
        TestHostProcess host;
        // Our region (created at accept) announces the capability or not; the switch is ours only until then.
        Doorbell.MembarrierDisabledForTest = !ourMembarrier;
        try
        {
            await using PageRangeListener listener = PageRangeListener.Listen(name, options);
            using var timeout = new CancellationTokenSource(TestTimeouts.Long);
            Task<PageRangeConnection> accepting = listener.AcceptAsync(timeout.Token).AsTask();
            host = TestHostProcess.Start(output, "fence-echo", name, "--wait", wait.ToString(), "--delay-us",
                DelayMicroseconds.ToString(CultureInfo.InvariantCulture), "--park-timeout-ms",
                ((int)s_parkTimeout.TotalMilliseconds).ToString(CultureInfo.InvariantCulture), "--membarrier", hostMembarrier ? "on" : "off");
            try
            {
                connection = await accepting.WaitAsync(TestTimeouts.Long);
            }
            catch
            {
                host.Dispose();
                throw;
            }
        }
        finally
        {
            Doorbell.MembarrierDisabledForTest = false;
        }

        using (host)
        await using (connection)
        {
            string[] hostModes = host.ReadUntil("connected: ").Split(' ');
            Assert.Equal([expected.ToString(), expected.ToString()], hostModes);
            Assert.Equal(expected, connection.Inbound.UsesMembarrier);
            Assert.Equal(expected, connection.Outbound.UsesMembarrier);

            (long hostParks, long hostTimeouts, _) = HostStats(host);
            long ourParks = connection.Inbound.ReaderParks;
            long ourTimeouts = connection.Inbound.ReaderParkTimeouts;
            long delay = Stopwatch.Frequency / 1_000_000 * DelayMicroseconds;
            byte[] request = new byte[64];
            var clock = Stopwatch.StartNew();
            for (int i = 0; i < Rounds; i++)
            {
                // Our delay makes the host's wait for the next request park, as its delay makes ours park.
                SpinFor(delay);
                BinaryPrimitives.WriteInt32LittleEndian(request, i);
                using Transaction reply = connection.Call(FenceEchoCode, request, TestTimeouts.Long);
                Assert.Equal(i, BinaryPrimitives.ReadInt32LittleEndian(reply.Payload));
            }
            TimeSpan elapsed = clock.Elapsed;
            (long hostParksAfter, long hostTimeoutsAfter, long answered) = HostStats(host);
            long ourParksAfter = connection.Inbound.ReaderParks;
            long ourTimeoutsAfter = connection.Inbound.ReaderParkTimeouts;
            output.WriteLine(
                $"{Rounds} round trips in {elapsed.TotalMilliseconds:F0} ms, membarrier {expected}: our parks {ourParksAfter - ourParks} " +
                $"(timed out {ourTimeoutsAfter - ourTimeouts}), the host's {hostParksAfter - hostParks} (timed out {hostTimeoutsAfter - hostTimeouts})");

            Assert.True(answered >= Rounds, $"the host answered {answered} calls");
            // The waits did park, so the protocol under test is what woke them...
            Assert.True(ourParksAfter - ourParks >= Rounds / 4, $"we parked {ourParksAfter - ourParks} times in {Rounds} round trips");
            Assert.True(hostParksAfter - hostParks >= Rounds / 4, $"the host parked {hostParksAfter - hostParks} times in {Rounds} round trips");
            // ... and every one of them was woken: none ran its park timeout out.
            Assert.Equal(0, ourTimeoutsAfter - ourTimeouts);
            Assert.Equal(0, hostTimeoutsAfter - hostTimeouts);

            host.WriteLine("quit");
            Assert.Equal(0, host.WaitForExit());
        }
    }

    /// <summary>The host's <c>FenceScenarios.DelayedEcho</c>.</summary>
    private const uint FenceEchoCode = 1;

    private static (long Parks, long Timeouts, long Answered) HostStats(TestHostProcess host)
    {
        host.WriteLine("stats");
        long[] values = host.ReadUntil("stats: ").Split(' ').Select(v => long.Parse(v, CultureInfo.InvariantCulture)).ToArray();
        return (values[0], values[1], values[2]);
    }

    private static void SpinFor(long ticks)
    {
        long start = Stopwatch.GetTimestamp();
        while (Stopwatch.GetTimestamp() - start < ticks)
        {
            Thread.SpinWait(20);
        }
    }
}
