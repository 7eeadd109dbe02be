using PageRange.Tests.Infrastructure;
using PageRange.Transport;

namespace PageRange.Tests.Transport;

/// <summary>
/// Which connections run the doorbells' asymmetric protocol (issue 12): both sides announced
/// <see cref="RegionCapabilities.ParksWithMembarrier"/>, which a side waiting with <see cref="WaitStrategy.Park"/> never
/// does; all four doorbells of both sides agree, and calls flow either way.
/// </summary>
public sealed class ConnectionMembarrierTests
{
    [Theory]
    [InlineData(WaitStrategy.SpinThenPark, WaitStrategy.SpinThenPark, true)]
    [InlineData(WaitStrategy.Park, WaitStrategy.Park, false)]
    [InlineData(WaitStrategy.SpinThenPark, WaitStrategy.Park, false)]
    [InlineData(WaitStrategy.Park, WaitStrategy.SpinThenPark, false)]
    public async Task Connect_BothSidesAnnounce_AllFourDoorbellsAgree(WaitStrategy serverWait, WaitStrategy clientWait, bool expected)
    {
        PageRangeOptions serverOptions = ConnectionPair.DefaultOptions();
        serverOptions.WaitStrategy = serverWait;
        PageRangeOptions clientOptions = ConnectionPair.DefaultOptions();
        clientOptions.WaitStrategy = clientWait;
        string name = ControlHandshakeTests.UniqueName();
        await using PageRangeListener listener = PageRangeListener.Listen(name, serverOptions);
        using var timeout = new CancellationTokenSource(TestTimeouts.Long);
        Task<PageRangeConnection> accepting = listener.AcceptAsync(timeout.Token).AsTask();
        await using PageRangeConnection client = await PageRangeConnection.ConnectAsync(name, clientOptions, timeout.Token).AsTask().WaitAsync(TestTimeouts.Long);
        await using PageRangeConnection server = await accepting.WaitAsync(TestTimeouts.Long);

        Assert.Equal(serverWait != WaitStrategy.Park, server.Inbound.Capabilities == RegionCapabilities.ParksWithMembarrier);
        Assert.Equal(server.Inbound.Capabilities, client.Outbound.PeerCapabilities);
        Assert.Equal(client.Inbound.Capabilities, server.Outbound.PeerCapabilities);
        Assert.Equal([expected, expected, expected, expected],
            new[] { server.Inbound.UsesMembarrier, server.Outbound.UsesMembarrier, client.Inbound.UsesMembarrier, client.Outbound.UsesMembarrier });

        using var stop = new CancellationTokenSource();
        Thread echo = ConnectionPair.StartEchoThread(server, stop.Token);
        try
        {
            for (int i = 0; i < 200; i++)
            {
                byte[] payload = BitConverter.GetBytes(i);
                using Transaction reply = client.Call(1, payload, TestTimeouts.Long);
                Assert.Equal(payload, reply.Payload.ToArray());
            }
        }
        finally
        {
            await stop.CancelAsync();
            Assert.True(echo.Join(TestTimeouts.Long), "the echo thread stopped");
        }
    }
}
