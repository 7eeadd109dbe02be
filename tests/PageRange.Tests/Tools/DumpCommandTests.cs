using PageRange.Cli;
using PageRange.Server;
using PageRange.Tests.Infrastructure;
using PageRange.Transport;

namespace PageRange.Tests.Tools;

/// <summary>
/// <c>pagerange dump NAME</c> against a live server of this process: with diagnostics on it prints the server's clients
/// and both regions' pages; off, absent or mistyped, one clear line and its own exit code.
/// </summary>
public sealed class DumpCommandTests
{
    private static PageRangeServerOptions Options(bool diagnostics) => new()
    {
        MaxThreads = 2,
        StartShrinkerMonitor = false,
        EnableDiagnostics = diagnostics,
        ConnectionOptions = new PageRangeOptions { RegionSize = 1L << 20, WaitStrategy = WaitStrategy.SpinThenPark },
    };

    [Fact]
    public async Task Dump_DiagnosticsOn_PrintsTheServerItsClientsPagesAndPool()
    {
        string name = UniqueName();
        await using var server = PageRangeServer.Start(name, Options(diagnostics: true), builder => builder.Map(1, static (tx, _) => tx.Reply(tx.Payload)));
        await using PageRangeConnection client = await PageRangeConnection.ConnectAsync(name, new PageRangeOptions { RegionSize = 1L << 20 }).AsTask().WaitAsync(TestTimeouts.Long);
        using (Transaction reply = await client.CallAsync(1, new byte[100]).AsTask().WaitAsync(TestTimeouts.Long))
        {
            Assert.Equal(100, reply.Payload.Length);
        }

        (int exitCode, string stdout, string stderr) = await Task.Run(() => Invoke("dump", name)).WaitAsync(TestTimeouts.Long);

        Assert.Equal("", stderr);
        Assert.Equal(0, exitCode);
        Assert.StartsWith($"server '{name}' pid {Environment.ProcessId} uid ", stdout, StringComparison.Ordinal);
        // Two clients: the test's own, which made one call, and the tool's, which is making the dump call.
        Assert.Contains("2 clients", stdout, StringComparison.Ordinal);
        Assert.Contains($"pid {Environment.ProcessId} uid ", stdout, StringComparison.Ordinal);
        Assert.Contains(", 1 calls\n", stdout, StringComparison.Ordinal);
        Assert.Contains("pool: ", stdout, StringComparison.Ordinal);
        Assert.Contains("outbound (the peer's region, written by us):", stdout, StringComparison.Ordinal);
        Assert.Contains("inbound (our region, written by the peer):", stdout, StringComparison.Ordinal);
        Assert.Contains("  pages: ", stdout, StringComparison.Ordinal);
        Assert.Contains("ring positions: ", stdout, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Dump_DiagnosticsOff_ClearRefusalExitCode4()
    {
        string name = UniqueName();
        await using var server = PageRangeServer.Start(name, Options(diagnostics: false), builder => builder.Map(1, static (tx, _) => tx.Reply(tx.Payload)));

        (int exitCode, string stdout, string stderr) = await Task.Run(() => Invoke("dump", name)).WaitAsync(TestTimeouts.Long);

        Assert.Equal(DumpCommand.RefusedExitCode, exitCode);
        Assert.Equal("", stdout);
        Assert.Equal(
            $"error: the server '{name}' has diagnostics off: it answers 'pagerange dump' only when started with PageRangeServerOptions.EnableDiagnostics = true.\n",
            stderr);
    }

    [Fact]
    public async Task Dump_NobodyListens_OneLineExitCode3()
    {
        string name = UniqueName();

        (int exitCode, string stdout, string stderr) = await Task.Run(() => Invoke("dump", name)).WaitAsync(TestTimeouts.Long);

        Assert.Equal(DumpCommand.NotThereExitCode, exitCode);
        Assert.Equal("", stdout);
        Assert.StartsWith($"error: cannot connect to the PageRange server '{name}': Nobody listens", stderr, StringComparison.Ordinal);
        Assert.Single(stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries));
    }

    [Theory]
    [InlineData(new[] { "dump" }, "error: Required argument missing for command: 'dump'")]
    [InlineData(new[] { "dump", "x", "--timeout", "0" }, "error: --timeout takes seconds above 0 and at most 600. See pagerange --help.")]
    public void Dump_BadCommandLine_OneLineExitCode2(string[] args, string expectedStart)
    {
        (int exitCode, string stdout, string stderr) = Invoke(args);

        Assert.Equal(PagerangeCommand.UsageExitCode, exitCode);
        Assert.Equal("", stdout);
        Assert.StartsWith(expectedStart, stderr, StringComparison.Ordinal);
    }

    [Fact]
    public void Map_TheDiagnosticsCode_RefusedAsReserved()
    {
        ArgumentException refused = Assert.Throws<ArgumentException>(() =>
            PageRangeServer.Start(UniqueName(), Options(diagnostics: false), builder => builder.Map(PageRangeServer.DiagnosticsCode, static (_, _) => { })));
        Assert.Contains("reserved for the server's diagnostics", refused.Message, StringComparison.Ordinal);
    }

    private static (int ExitCode, string Stdout, string Stderr) Invoke(params string[] args)
    {
        using var output = new StringWriter();
        using var error = new StringWriter();
        int exitCode = PagerangeCommand.Invoke(args, output, error);
        return (exitCode, output.ToString(), error.ToString());
    }

    private static string UniqueName() => $"dump-test-{Environment.ProcessId}-{Guid.NewGuid():N}";
}
