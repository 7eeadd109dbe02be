using PageRange.Tests.Infrastructure;
using PageRange.Transport;

namespace PageRange.Tests.Transport;

/// <summary>Both ends of one real connection inside this process: a listener accepts what <c>ConnectAsync</c> opens.</summary>
internal sealed class ConnectionPair : IAsyncDisposable
{
    private ConnectionPair(PageRangeConnection server, PageRangeConnection client)
    {
        Server = server;
        Client = client;
    }

    /// <summary>The accepted end.</summary>
    public PageRangeConnection Server { get; }

    /// <summary>The connecting end.</summary>
    public PageRangeConnection Client { get; }

    /// <summary>Small regions and a short park timeout unless told otherwise.</summary>
    public static PageRangeOptions DefaultOptions() => new()
    {
        RegionSize = 1 << 20,
        TransactionRingCapacity = 64,
        FreeRingCapacity = 64,
        ParkTimeout = TimeSpan.FromMilliseconds(50),
    };

    /// <summary>Connects a new pair through a listener of its own.</summary>
    /// <param name="options">The client's options, and the server's unless <paramref name="serverOptions"/> is given.</param>
    /// <param name="serverOptions">The accepted end's own options (its park timeout, say).</param>
    public static async Task<ConnectionPair> CreateAsync(PageRangeOptions? options = null, PageRangeOptions? serverOptions = null)
    {
        options ??= DefaultOptions();
        string name = ControlHandshakeTests.UniqueName();
        await using PageRangeListener listener = PageRangeListener.Listen(name, serverOptions ?? options);
        using var timeout = new CancellationTokenSource(TestTimeouts.Long);
        Task<PageRangeConnection> accepting = listener.AcceptAsync(timeout.Token).AsTask();
        PageRangeConnection client = await PageRangeConnection.ConnectAsync(name, options, timeout.Token).AsTask().WaitAsync(TestTimeouts.Long);
        PageRangeConnection server = await accepting.WaitAsync(TestTimeouts.Long);
        return new ConnectionPair(server, client);
    }

    /// <summary>
    /// A pair whose server makes no housekeeping pass while the test runs: the pass reads a ring nobody read since the
    /// last one, so one between a test's layout of records and its receiver's first look would route them itself, and
    /// what only the receiver's own look does (a lane) would not happen (the clean-clone CI caught it once with the
    /// tests' 50 ms: ConnectionReceiveLaneHostileTests). The server parks for the longest timeout the tests use, and its
    /// first pass, made when its background thread starts, is over before this returns (a loaded machine may start
    /// that thread late). The client keeps the short park timeout: its housekeeping gives the writer back the freed
    /// buffers the tests wait for.
    /// </summary>
    /// <param name="serverParkTimeout">The server's park timeout, 10 s unless given: a test that needs the server's own
    /// pass to end (its check waits for it) takes a shorter one, still far longer than the test's start takes.</param>
    public static async Task<ConnectionPair> CreateWithQuietServerAsync(TimeSpan? serverParkTimeout = null)
    {
        PageRangeOptions serverOptions = DefaultOptions();
        serverOptions.ParkTimeout = serverParkTimeout ?? TimeSpan.FromSeconds(10);
        ConnectionPair pair = await CreateAsync(DefaultOptions(), serverOptions);
        try
        {
            await Poll.WaitUntilAsync(() => pair.Server.HousekeepingPassesForTest > 0, "the server's first housekeeping pass");
        }
        catch
        {
            await pair.DisposeAsync();
            throw;
        }
        return pair;
    }

    /// <summary>
    /// Over a new pair with <paramref name="strategy"/>: 100 warm-up calls, then <paramref name="calls"/> numbered 64-byte
    /// calls a thread on the server echoes (each reply checked); returns how much each of <paramref name="counters"/>
    /// grew over the counted calls.
    /// </summary>
    public static async Task<long[]> CountOverEchoedCallsAsync(WaitStrategy strategy, int calls, Func<ConnectionPair, long[]> counters)
    {
        PageRangeOptions options = DefaultOptions();
        options.WaitStrategy = strategy;
        await using ConnectionPair pair = await CreateAsync(options);
        using var stop = new CancellationTokenSource();
        Thread echo = StartEchoThread(pair.Server, stop.Token);
        try
        {
            byte[] payload = new byte[64];
            for (int i = 0; i < 100; i++)
            {
                using Transaction reply = pair.Client.Call(1, payload, TestTimeouts.Long);
            }
            long[] before = counters(pair);
            for (int i = 0; i < calls; i++)
            {
                System.Buffers.Binary.BinaryPrimitives.WriteInt32LittleEndian(payload, i);
                using Transaction reply = pair.Client.Call(1, payload, TestTimeouts.Long);
                Assert.Equal(64, reply.Payload.Length);
                Assert.Equal(i, System.Buffers.Binary.BinaryPrimitives.ReadInt32LittleEndian(reply.Payload));
            }
            long[] after = counters(pair);
            return [.. after.Zip(before, (a, b) => a - b)];
        }
        finally
        {
            await stop.CancelAsync();
            echo.Join(TestTimeouts.Long);
        }
    }

    /// <summary>
    /// Starts <paramref name="callers"/> long-running callers on <paramref name="client"/>, each making
    /// <paramref name="callsEach"/> numbered 64-byte calls (code 2) and checking that each reply echoes its request.
    /// </summary>
    public static Task[] StartEchoCheckingCallers(PageRangeConnection client, int callers, int callsEach, CancellationToken token) =>
        [.. Enumerable.Range(0, callers).Select(c => Task.Factory.StartNew(
            () =>
            {
                byte[] request = new byte[64];
                for (int i = 0; i < callsEach; i++)
                {
                    System.Buffers.Binary.BinaryPrimitives.WriteInt32LittleEndian(request, (c * callsEach) + i);
                    using Transaction reply = client.Call(2, request, TestTimeouts.Long, token);
                    Assert.True(reply.Payload.SequenceEqual(request));
                }
            },
            token, TaskCreationOptions.LongRunning, TaskScheduler.Default))];

    /// <summary>Starts a thread that replies to every two-way call on <paramref name="connection"/> with its payload, until <paramref name="stop"/>.</summary>
    public static Thread StartEchoThread(PageRangeConnection connection, CancellationToken stop)
    {
        var thread = new Thread(() =>
        {
            try
            {
                while (true)
                {
                    using Transaction transaction = connection.Receive(stop);
                    if (transaction.IsTwoWay)
                    {
                        transaction.Reply(transaction.Payload);
                    }
                }
            }
            catch (Exception error) when (error is OperationCanceledException or PeerDiedException or ObjectDisposedException)
            {
                // Stopped, or the connection is over.
            }
        })
        { IsBackground = true, Name = "echo" };
        thread.Start();
        return thread;
    }

    public async ValueTask DisposeAsync()
    {
        await Client.DisposeAsync();
        await Server.DisposeAsync();
    }
}
