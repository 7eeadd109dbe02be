using System.Collections.Concurrent;
using System.Globalization;
using PageRange.Diagnostics;
using PageRange.Server;
using PageRange.Tests.CrossProcess;
using PageRange.Tests.Diagnostics;
using PageRange.Tests.Infrastructure;
using PageRange.Tests.Transport;
using PageRange.Transport;

namespace PageRange.Tests.Server;

/// <summary>
/// A client that stops reading its replies must not hold the workers every client shares: a reply waits for room at
/// most <see cref="PageRangeServerOptions.ReplyRoomTimeout"/>, then that client is closed as
/// <see cref="ClientDisconnectReason.StoppedReading"/>.
/// </summary>
[Collection(CrossProcessCollection.Name)]
public sealed class ServerReplyRoomTests(ITestOutputHelper output)
{
    private const int HonestClients = 4;
    private const int OperationsPerClient = 600;
    private static readonly TimeSpan s_bound = TimeSpan.FromMinutes(4);

    [Fact]
    [Trait("Category", "Hostile")]
    public async Task ClientNeverReadingLargeReplies_MaxThreadsTwo_HonestClientsServed_ClientClosedAsStoppedReading_ResourcesBackToBaseline()
    {
        FaultResources baseline = await FaultResources.SettledAsync();
        string name = ControlHandshakeTests.UniqueName();
        var service = new ServerLoadService();
        var disconnects = new ConcurrentQueue<ClientDisconnectedEventArgs>();
        using var logs = new LogCapture();
        using MetricsRecorder metrics = await MetricsRecorder.StartAloneAsync();
        PageRangeServerOptions options = ServerTestOptions.ForClientProcesses(maxThreads: 2, TimeSpan.FromSeconds(20), WaitStrategy.SpinThenPark);
        // Long, so that only the server's reply limit can explain a quick end of the stalled client.
        options.ConnectionOptions.RegionFullTimeout = TimeSpan.FromSeconds(30);
        options.ConnectionOptions.LoggerFactory = logs.Factory;
        PageRangeServer server = PageRangeServer.Start(name, options, service.Configure);
        server.ClientDisconnected += (_, e) => disconnects.Enqueue(e);
        var honest = new List<TestHostProcess>();
        TestHostProcess? stalled = null;
        try
        {
            for (int i = 0; i < HonestClients; i++)
            {
                honest.Add(TestHostProcess.Start(output, "server-client", name,
                    OperationsPerClient.ToString(CultureInfo.InvariantCulture), (3000 + i).ToString(CultureInfo.InvariantCulture)));
            }
            Task<double[]> honestDone = Task.WhenAll(honest.Select(FinishHonestAsync));
            stalled = TestHostProcess.Start(output, "server-stop-reading", name, "64");
            Assert.Equal("ok", stalled.ReadUntil("connected: "));
            Assert.Equal("sent", stalled.ReadUntil("stalled: "));
            string reason = await Task.Run(() => stalled.ReadUntil("closed: ", s_bound)).WaitAsync(s_bound);
            Assert.Equal("the client stopped reading its replies", reason);
            Assert.Equal(0, stalled.WaitForExit());

            double[] maxMs = await honestDone.WaitAsync(s_bound);
            output.WriteLine($"max call latency per honest client (ms, after warm-up): {string.Join(", ", maxMs.Select(ms => ms.ToString("F1", CultureInfo.InvariantCulture)))}");
            double load = ServerLoadTests.LoadAverage();
            double boundMs = load <= 2 * Environment.ProcessorCount ? 1000 : 5000;
            output.WriteLine($"load average {load:F1} on {Environment.ProcessorCount} cores: bound {boundMs} ms");
            Assert.All(maxMs, ms => Assert.True(ms < boundMs, $"an honest client waited {ms:F1} ms for the server (load average {load:F1})"));

            await PageRangeServerTests.WaitUntilAsync(() => disconnects.Count == HonestClients + 1);
            ClientDisconnectedEventArgs Of(TestHostProcess host) => Assert.Single(disconnects, e => e.Client.Pid == host.Id);
            Assert.Equal(ClientDisconnectReason.StoppedReading, Of(stalled).Reason);
            Assert.All(honest, host => Assert.Equal(ClientDisconnectReason.PeerClosed, Of(host).Reason));
            LogEntry logged = Assert.Single(logs.WithId(PageRangeLogEvents.ClientStoppedReading));
            Assert.Contains(stalled.Id.ToString(CultureInfo.InvariantCulture), logged.Message, StringComparison.Ordinal);
            Assert.Equal(1, metrics.Get("pagerange.server.client.disconnected", "stopped_reading"));
            Assert.InRange(server.PeakThreadCount, 1, 2);
        }
        finally
        {
            foreach (TestHostProcess host in honest)
            {
                host.Dispose();
            }
            stalled?.Dispose();
            await server.DisposeAsync();
        }

        FaultResources after = await FaultResources.BackToAsync(baseline);
        output.WriteLine($"before: {baseline}; after: {after}");
        Assert.Equal(baseline.MemfdDescriptors, after.MemfdDescriptors);
        Assert.Equal(baseline.MemfdMappings, after.MemfdMappings);
        Assert.Equal(baseline.Descriptors, after.Descriptors);
    }

    [Fact]
    public void ReplyRoomTimeout_OutOfBounds_Throws()
    {
        Assert.Equal(TimeSpan.FromMilliseconds(250), new PageRangeServerOptions().ReplyRoomTimeout);
        Assert.Throws<ArgumentOutOfRangeException>(() => new PageRangeServerOptions { ReplyRoomTimeout = TimeSpan.Zero });
        Assert.Throws<ArgumentOutOfRangeException>(() => new PageRangeServerOptions { ReplyRoomTimeout = TimeSpan.FromHours(2) });
    }

    private static Task<double> FinishHonestAsync(TestHostProcess host) =>
        Task.Factory.StartNew(() =>
        {
            string done = host.ReadUntil("done: ", s_bound);
            Assert.Equal(0, host.WaitForExit());
            string max = done.Split(' ').Single(part => part.StartsWith("max-ms=", StringComparison.Ordinal))["max-ms=".Length..];
            return double.Parse(max, CultureInfo.InvariantCulture);
        }, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
}
