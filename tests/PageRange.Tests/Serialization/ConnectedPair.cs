using PageRange.Tests.Infrastructure;
using PageRange.Tests.Transport;
using PageRange.Transport;

namespace PageRange.Tests.Serialization;

/// <summary>
/// Both ends of a real connection inside this process: a listener, a client that connects to it, and the accepted
/// server end. Real memfds, mappings and control socket; only the second process is missing.
/// </summary>
internal sealed class ConnectedPair : IAsyncDisposable
{
    private readonly PageRangeListener _listener;

    private ConnectedPair(PageRangeListener listener, PageRangeConnection client, PageRangeConnection server)
    {
        _listener = listener;
        Client = client;
        Server = server;
    }

    public PageRangeConnection Client { get; }

    public PageRangeConnection Server { get; }

    public static PageRangeOptions SmallOptions() => new()
    {
        RegionSize = 256 << 10,
        TransactionRingCapacity = 64,
        FreeRingCapacity = 64,
        RegionFullTimeout = TimeSpan.FromSeconds(10),
    };

    public static async Task<ConnectedPair> CreateAsync(PageRangeOptions? options = null)
    {
        options ??= SmallOptions();
        PageRangeListener listener = PageRangeListener.Listen(ControlHandshakeTests.UniqueName(), options);
        try
        {
            ValueTask<PageRangeConnection> accept = listener.AcceptAsync();
            PageRangeConnection client = await PageRangeConnection.ConnectAsync(listener.Name, options).AsTask().WaitAsync(TestTimeouts.Long);
            PageRangeConnection server = await accept.AsTask().WaitAsync(TestTimeouts.Long);
            return new ConnectedPair(listener, client, server);
        }
        catch
        {
            await listener.DisposeAsync();
            throw;
        }
    }

    /// <summary>
    /// Runs <paramref name="handle"/> on every transaction the server receives, on a thread of its own, until the pair
    /// is disposed; each transaction is disposed after its handler.
    /// </summary>
    public Task Serve(Action<Transaction> handle) => Task.Factory.StartNew(() =>
    {
        while (true)
        {
            Transaction transaction;
            try
            {
                transaction = Server.Receive();
            }
            catch (Exception error) when (error is PeerDiedException or ObjectDisposedException)
            {
                return;
            }
            using (transaction)
            {
                handle(transaction);
            }
        }
    }, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);

    public async ValueTask DisposeAsync()
    {
        await Client.DisposeAsync();
        await Server.DisposeAsync();
        await _listener.DisposeAsync();
    }
}
