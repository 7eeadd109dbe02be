using System.Diagnostics;
using PageRange.Testing;
using PageRange.Tests.Diagnostics;
using PageRange.Tests.Infrastructure;
using PageRange.Tests.Transport;
using PageRange.Transport;

namespace PageRange.Tests.CrossProcess;

/// <summary>
/// A peer that stops reading: the sender waits for room, gives up after the configured time with a typed error, and
/// carries on, losing nothing, once the peer reads again.
/// </summary>
[Collection(CrossProcessCollection.Name)]
[Trait("Category", "Fault")]
public sealed class FaultBackPressureTests(ITestOutputHelper output)
{
    private const int MessageSize = 64 << 10;

    [Fact]
    public async Task PeerStopsReading_SendWaitsThenFailsBounded_AndRecoversWithNothingLostWhenItResumes()
    {
        TimeSpan regionFullTimeout = TimeSpan.FromMilliseconds(500);
        string name = ControlHandshakeTests.UniqueName();
        var options = new PageRangeOptions { RegionFullTimeout = regionFullTimeout };
        await using PageRangeListener listener = PageRangeListener.Listen(name, options);
        using TestHostProcess host = TestHostProcess.Start(output, "fault-slow-reader", name);
        await using PageRangeConnection sender = await listener.AcceptAsync().AsTask().WaitAsync(TestTimeouts.Long);
        // The sender is this test's; another test's closing connection must not count its region-full failures here.
        using MetricsRecorder metrics = await MetricsRecorder.StartAloneAsync(ownConnections: 1);
        byte[] payload = new byte[MessageSize];
        ulong seq = 0;

        // Flowing: the reader keeps up.
        for (int i = 0; i < 100; i++)
        {
            FaultPayload.Fill(payload, ++seq);
            sender.SendOneway(1, payload);
        }

        // Stopped: the oneway quota (half the peer's 4 MiB data area) fills, then a send waits and gives up.
        host.WriteLine("pause");
        host.ReadUntil("paused: ");
        RegionFullException? full = null;
        var failedSend = new Stopwatch();
        while (full is null)
        {
            Assert.True(seq < 1000, "the region never filled up");
            FaultPayload.Fill(payload, ++seq);
            failedSend.Restart();
            try
            {
                sender.SendOneway(1, payload);
            }
            catch (RegionFullException error)
            {
                full = error;
                seq--;
            }
        }
        failedSend.Stop();
        output.WriteLine($"after {seq} sends: {full.Message} (after {failedSend.ElapsedMilliseconds} ms)");
        Assert.InRange(failedSend.Elapsed, regionFullTimeout * 0.9, regionFullTimeout + TestTimeouts.Short);
        Assert.True(metrics.Get("pagerange.region.full.waits") >= 1);
        Assert.Equal(1, metrics.Get("pagerange.region.full.failures"));
        Assert.True(sender.IsPeerAlive);

        // Reading again: the very message that failed goes through, then the stream goes on.
        host.WriteLine("resume");
        host.ReadUntil("resumed: ");
        for (int i = 0; i < 100; i++)
        {
            FaultPayload.Fill(payload, ++seq);
            sender.SendOneway(1, payload);
        }

        // Every acknowledged send arrived, whole and in order.
        string report = "";
        var clock = Stopwatch.StartNew();
        while (!report.StartsWith($"{seq} ", StringComparison.Ordinal) && clock.Elapsed < TestTimeouts.Long)
        {
            host.WriteLine("report");
            report = host.ReadUntil("received: ");
        }
        Assert.Equal($"{seq} bad: 0", report);
        host.WriteLine("quit");
        Assert.Equal(0, host.WaitForExit());
    }
}
