using System.Buffers.Binary;
using System.Globalization;
using PageRange.Tests.Infrastructure;
using PageRange.Tests.Transport;
using PageRange.Transport;

namespace PageRange.Tests.CrossProcess;

/// <summary>
/// A TestHost process running the <c>transport-connect</c> scenario, connected to a listener in this process: the
/// test holds the accepted <see cref="Connection"/>, the host serves the codes of <see cref="Codes"/> and answers commands.
/// </summary>
internal sealed class TransportHost : IAsyncDisposable
{
    private TransportHost(TestHostProcess process, PageRangeConnection connection, long hostMaxMessageSize)
    {
        Process = process;
        Connection = connection;
        HostMaxMessageSize = hostMaxMessageSize;
    }

    /// <summary>The host process.</summary>
    public TestHostProcess Process { get; }

    /// <summary>Our end of the connection.</summary>
    public PageRangeConnection Connection { get; }

    /// <summary>The largest message the host can send us (our data area), as the host sees it.</summary>
    public long HostMaxMessageSize { get; }

    /// <summary>Options for our side: a real wait strategy that parks, short park timeouts so housekeeping runs often.</summary>
    public static PageRangeOptions DefaultOptions(WaitStrategy wait = WaitStrategy.SpinThenPark) =>
        new() { WaitStrategy = wait, ParkTimeout = TimeSpan.FromMilliseconds(50) };

    /// <summary>Listens, starts the host with <paramref name="flags"/>, accepts it and reads its <c>connected:</c> line.</summary>
    public static async Task<TransportHost> StartAsync(ITestOutputHelper output, PageRangeOptions? options = null, params string[] flags)
    {
        string name = ControlHandshakeTests.UniqueName();
        await using PageRangeListener listener = PageRangeListener.Listen(name, options ?? DefaultOptions());
        using var timeout = new CancellationTokenSource(TestTimeouts.Long);
        Task<PageRangeConnection> accepting = listener.AcceptAsync(timeout.Token).AsTask();
        TestHostProcess process = TestHostProcess.Start(output, "transport-connect", [name, .. flags]);
        try
        {
            PageRangeConnection connection = await accepting.WaitAsync(TestTimeouts.Long);
            string[] connected = process.ReadUntil("connected: ").Split(' ');
            Assert.Equal(Environment.ProcessId.ToString(CultureInfo.InvariantCulture), connected[0]);
            Assert.Equal(process.Id, connection.PeerPid);
            return new TransportHost(process, connection, long.Parse(connected[1], CultureInfo.InvariantCulture));
        }
        catch
        {
            process.Dispose();
            throw;
        }
    }

    /// <summary>Sends a command and returns the rest of the answer line that starts with <paramref name="answer"/>.</summary>
    public string Command(string command, string answer, TimeSpan? timeout = null)
    {
        Process.WriteLine(command);
        return Process.ReadUntil(answer, timeout);
    }

    /// <summary>The host's stream counters: received, next expected sequence, errors.</summary>
    public (long Received, long Next, long Errors) Stats()
    {
        long[] values = Command("stats", "stats: ").Split(' ').Select(v => long.Parse(v, CultureInfo.InvariantCulture)).ToArray();
        return (values[0], values[1], values[2]);
    }

    /// <summary>Polls the host's stream counters until it received <paramref name="count"/> messages (bounded).</summary>
    public async Task<(long Received, long Next, long Errors)> WaitForStreamAsync(long count)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (true)
        {
            (long received, long next, long errors) = Stats();
            if (received >= count || errors != 0 || clock.Elapsed > TestTimeouts.Long)
            {
                return (received, next, errors);
            }
            // A poll interval, not a race cover: the counters only grow, and the bound above ends the wait.
            await Task.Delay(20);
        }
    }

    /// <summary>The host's live buffers in our region after draining frees, and the transactions it holds from us.</summary>
    public (int HostLiveInOurRegion, int HostHolding) Live()
    {
        string[] values = Command("live", "live: ").Split(' ');
        return (int.Parse(values[0], CultureInfo.InvariantCulture), int.Parse(values[1], CultureInfo.InvariantCulture));
    }

    public async ValueTask DisposeAsync()
    {
        await Connection.DisposeAsync();
        // Kill and reap it before disposing, so that no output is still being delivered while its reader goes away.
        Process.Kill();
        Process.Dispose();
    }

    /// <summary>Mirrors <c>TransportScenarios.Codes</c> in the TestHost.</summary>
    public static class Codes
    {
        public const uint Echo = 1;
        public const uint Stream = 2;
        public const uint Nested = 3;
        public const uint WaitCancelled = 4;
        public const uint Hold = 5;
        public const uint ReplyThenExit = 6;
    }
}
