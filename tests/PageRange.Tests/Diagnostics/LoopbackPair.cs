using PageRange.Tests.Infrastructure;
using PageRange.Tests.Transport;
using PageRange.Transport;

namespace PageRange.Tests.Diagnostics;

/// <summary>Two ends of a real connection inside this process: a listener's accepted end and the connecting end.</summary>
internal sealed class LoopbackPair : IAsyncDisposable
{
    private LoopbackPair(PageRangeListener listener, PageRangeConnection server, PageRangeConnection client)
    {
        Listener = listener;
        Server = server;
        Client = client;
    }

    public PageRangeListener Listener { get; }

    public PageRangeConnection Server { get; }

    public PageRangeConnection Client { get; }

    public static async Task<LoopbackPair> OpenAsync(PageRangeOptions? serverOptions = null, PageRangeOptions? clientOptions = null)
    {
        string name = ControlHandshakeTests.UniqueName();
        PageRangeListener listener = PageRangeListener.Listen(name, serverOptions);
        try
        {
            Task<PageRangeConnection> accepting = listener.AcceptAsync().AsTask();
            PageRangeConnection client = await PageRangeConnection.ConnectAsync(name, clientOptions).AsTask().WaitAsync(TestTimeouts.Long);
            PageRangeConnection server = await accepting.WaitAsync(TestTimeouts.Long);
            return new LoopbackPair(listener, server, client);
        }
        catch
        {
            await listener.DisposeAsync();
            throw;
        }
    }

    public async ValueTask DisposeAsync()
    {
        await Client.DisposeAsync().AsTask().WaitAsync(TestTimeouts.Long);
        await Server.DisposeAsync().AsTask().WaitAsync(TestTimeouts.Long);
        await Listener.DisposeAsync().AsTask().WaitAsync(TestTimeouts.Long);
    }
}
