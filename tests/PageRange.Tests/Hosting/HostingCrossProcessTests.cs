using System.Buffers.Binary;
using System.Globalization;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using PageRange.Hosting;
using PageRange.Tests.Infrastructure;
using PageRange.Tests.Transport;
using PageRange.Transport;

namespace PageRange.Tests.Hosting;

/// <summary>
/// A hosted client in this process and a hosted server in a TestHost process (<c>hosting-serve</c>): the server is
/// killed with SIGKILL and started again under the same name, and the client gets through the outage.
/// </summary>
[Collection(CrossProcessCollection.Name)]
public sealed class HostingCrossProcessTests(ITestOutputHelper output)
{
    private const uint EchoWithPid = 1;
    private const uint Hold = 2;

    [Fact]
    public async Task Client_ServerProcessKilledAndRestarted_FailsClearlyThenReconnects()
    {
        string name = ControlHandshakeTests.UniqueName();
        using IHost host = HostingTestHost.Build(services => services.AddPageRangeClient(name, options =>
        {
            options.ReconnectDelay = TimeSpan.FromMilliseconds(50);
            options.MaxReconnectDelay = TimeSpan.FromMilliseconds(400);
            options.ConnectionOptions.RegionSize = 1L << 20;
        }));
        await host.StartAsync().WaitAsync(TestTimeouts.Long);
        PageRangeClient client = host.Services.GetRequiredKeyedService<PageRangeClient>(name);
        int ownMappingsBefore = CountMappings(name);

        using (TestHostProcess first = TestHostProcess.Start(output, "hosting-serve", name))
        {
            int firstPid = int.Parse(first.ReadUntil("ready: "), CultureInfo.InvariantCulture);
            Assert.Equal(firstPid, await CallForPidAsync(client));
            int mappingsConnected = CountMappings(name);
            Assert.True(mappingsConnected > ownMappingsBefore, "connected, the client maps its region and the server's");

            first.Kill();

            // The outage: every use fails at once with the clear exception (the first may be the call that finds the
            // connection dead), never a hang; none reaches a server.
            for (int i = 0; i < 5; i++)
            {
                ServerUnavailableException unavailable = await Assert.ThrowsAsync<ServerUnavailableException>(
                    () => client.CallAsync(EchoWithPid, new byte[] { 1 }).AsTask().WaitAsync(TestTimeouts.Long));
                Assert.Equal(name, unavailable.ServerName);
                Assert.Contains($"PageRange server '{name}' is unavailable", unavailable.Message, StringComparison.Ordinal);
                Assert.NotNull(unavailable.InnerException);
                output.WriteLine($"outage call {i}: {unavailable.Message}");
            }
            Assert.False(client.IsConnected);
            // The dead connection is closed: its regions are unmapped.
            await HostingTestHost.WaitUntilAsync(() => CountMappings(name) == ownMappingsBefore, "the dead connection's regions to be unmapped");
        }

        using TestHostProcess second = TestHostProcess.Start(output, "hosting-serve", name);
        int secondPid = int.Parse(second.ReadUntil("ready: "), CultureInfo.InvariantCulture);
        Assert.Equal(secondPid, await CallForPidAsync(client));
        Assert.True(client.IsConnected);

        // The restarted server stops gracefully: the client sees it go, then the host disposes the client.
        second.WriteLine("quit");
        Assert.Equal("ok", second.ReadUntil("stopped: "));
        Assert.Equal(0, second.WaitForExit());
        await host.StopAsync().WaitAsync(TestTimeouts.Long);
    }

    [Fact]
    public async Task Call_InFlightWhenTheServerProcessIsKilled_FailsWithServerUnavailable()
    {
        string name = ControlHandshakeTests.UniqueName();
        using IHost host = HostingTestHost.Build(services => services.AddPageRangeClient(name, options =>
        {
            options.ReconnectDelay = TimeSpan.FromMilliseconds(50);
            options.ConnectionOptions.RegionSize = 1L << 20;
        }));
        await host.StartAsync().WaitAsync(TestTimeouts.Long);
        PageRangeClient client = host.Services.GetRequiredKeyedService<PageRangeClient>(name);
        int mappingsBefore = CountMappings(name);

        using (TestHostProcess server = TestHostProcess.Start(output, "hosting-serve", name))
        {
            int pid = int.Parse(server.ReadUntil("ready: "), CultureInfo.InvariantCulture);
            Assert.Equal(pid, await CallForPidAsync(client));
            Task<Transaction> held = client.CallAsync(Hold, new byte[] { 1 }).AsTask();
            Assert.Equal("1", server.ReadUntil("holding: "));

            server.Kill();

            ServerUnavailableException lost = await Assert.ThrowsAsync<ServerUnavailableException>(() => held.WaitAsync(TestTimeouts.Long));
            Assert.IsType<PeerDiedException>(lost.InnerException);
            Assert.Contains("may have run", lost.Message, StringComparison.Ordinal);
        }
        await HostingTestHost.WaitUntilAsync(() => CountMappings(name) == mappingsBefore, "the dead connection's regions to be unmapped");
        await host.StopAsync().WaitAsync(TestTimeouts.Long);
    }

    private static async Task<int> CallForPidAsync(PageRangeClient client) =>
        await PageRangeClientTests.CallUntilConnectedAsync(client, EchoWithPid, static payload => BinaryPrimitives.ReadInt32LittleEndian(payload));

    /// <summary>The mappings of this process whose memfd carries <paramref name="name"/> (the client's region, the server's).</summary>
    private static int CountMappings(string name) =>
        File.ReadLines("/proc/self/maps").Count(line => line.Contains($"pagerange:{name}", StringComparison.Ordinal));
}
