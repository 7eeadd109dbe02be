using System.Text.Json;
using PageRange.Cli;
using PageRange.Tests.Infrastructure;
using PageRange.Transport;

namespace PageRange.Tests.Tools;

/// <summary>
/// <c>pagerange list</c> against real listeners of this process: found by name with our pid, process name and uid,
/// its accepted connections counted, gone once disposed; the table parser on the kernel's own format.
/// </summary>
public sealed class ListCommandTests
{
    [Fact]
    public void AddressPrefix_IsTheLibrarysAbstractPrefix()
    {
        Assert.Equal("@" + ControlHandshake.AbstractPrefix, ListenerScanner.AddressPrefix);
    }

    [Fact]
    public async Task Scan_ListenerInThisProcess_FoundWithOurPidProcessAndUid_GoneAfterDispose()
    {
        string name = UniqueName();
        await using (PageRangeListener.Listen(name))
        {
            ListenerInfo listener = Assert.Single(ListenerScanner.Scan(), l => l.Name == name);

            Assert.Equal(Environment.ProcessId, listener.Pid);
            Assert.Equal(OwnComm(), listener.ProcessName);
            Assert.Equal(OwnUid(), listener.Uid);
            Assert.Equal(0, listener.Connections);
        }

        Assert.DoesNotContain(ListenerScanner.Scan(), l => l.Name == name);
    }

    [Fact]
    public async Task ListJson_ListenerWithAConnection_ShowsOurPidAndOneConnection()
    {
        string name = UniqueName();
        await using PageRangeListener listener = PageRangeListener.Listen(name);
        using var timeout = new CancellationTokenSource(TestTimeouts.Long);
        Task<PageRangeConnection> accepting = listener.AcceptAsync(timeout.Token).AsTask();
        await using PageRangeConnection client = await PageRangeConnection.ConnectAsync(name, null, timeout.Token).AsTask().WaitAsync(TestTimeouts.Long);
        await using PageRangeConnection server = await accepting.WaitAsync(TestTimeouts.Long);

        (int exitCode, string stdout, string stderr) = Invoke("list", "--json");

        Assert.Equal(0, exitCode);
        Assert.Equal("", stderr);
        using JsonDocument document = JsonDocument.Parse(stdout);
        JsonElement ours = Assert.Single(document.RootElement.EnumerateArray(), e => e.GetProperty("name").GetString() == name);
        Assert.Equal(Environment.ProcessId, ours.GetProperty("pid").GetInt32());
        Assert.Equal(OwnUid(), ours.GetProperty("uid").GetUInt32());
        Assert.Equal(OwnComm(), ours.GetProperty("process").GetString());
        Assert.Equal(1, ours.GetProperty("connections").GetInt32());
    }

    [Fact]
    public async Task ListTable_ListenerInThisProcess_OneRowWithNameAndPid()
    {
        string name = UniqueName();
        await using PageRangeListener listener = PageRangeListener.Listen(name);

        (int exitCode, string stdout, _) = Invoke("list");

        Assert.Equal(0, exitCode);
        string[] lines = stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Matches("^NAME +PID +PROCESS +UID +CONNECTIONS$", lines[0]);
        string row = Assert.Single(lines, line => line.StartsWith(name + " ", StringComparison.Ordinal));
        Assert.Equal([name, Environment.ProcessId.ToString(System.Globalization.CultureInfo.InvariantCulture)], row.Split(' ', StringSplitOptions.RemoveEmptyEntries)[..2]);
    }

    [Fact]
    public void Invoke_BadArgument_OneLineAndExitCode2_HelpExitsZero()
    {
        (int bad, string badOut, string badError) = Invoke("list", "--yaml");
        (int help, string helpOut, string helpError) = Invoke("--help");

        Assert.Equal(2, bad);
        Assert.Equal("", badOut);
        Assert.Equal("error: Unrecognized command or argument '--yaml'. See pagerange --help.\n", badError);
        Assert.Equal(0, help);
        Assert.Equal("", helpError);
        Assert.Contains("list", helpOut, StringComparison.Ordinal);
    }

    [Fact]
    public void Parse_KernelFormat_ListenersConnectionsAndPathsWithSpaces()
    {
        const string table = """
            Num       RefCount Protocol Flags    Type St Inode Path
            0000000000000000: 00000002 00000000 00010000 0001 01 1001 @pagerange/orders
            0000000000000000: 00000003 00000000 00000000 0001 03 1002 @pagerange/orders
            0000000000000000: 00000003 00000000 00000000 0001 03 1003
            0000000000000000: 00000002 00000000 00010000 0001 01 1004 @pagerange/with space
            0000000000000000: 00000002 00000000 00010000 0001 01 1005 /run/other.sock
            0000000000000000: 00000002 00000000 00000000 0002 01 1006 @pagerange/a-datagram-socket
            garbage
            """;

        IReadOnlyList<UnixSocketEntry> entries = UnixSocketTable.Parse(table.Replace("\r", "", StringComparison.Ordinal));
        IReadOnlyList<ListenerInfo> listeners = ListenerScanner.Match(entries, _ => new Dictionary<long, int> { [1001] = int.MaxValue });

        Assert.Equal(6, entries.Count);
        Assert.Equal(["orders", "with space"], listeners.Select(l => l.Name));
        Assert.Equal(1, listeners[0].Connections);
        // A pid that does not exist: its name and uid are unknown, never an error.
        Assert.Equal(int.MaxValue, listeners[0].Pid);
        Assert.Null(listeners[0].ProcessName);
        Assert.Null(listeners[1].Pid);
        Assert.Matches(new System.Text.RegularExpressions.Regex("^with space +- +- +- +0$", System.Text.RegularExpressions.RegexOptions.Multiline), ListCommand.ToTable(listeners));
    }

    private static (int ExitCode, string Stdout, string Stderr) Invoke(params string[] args)
    {
        using var output = new StringWriter();
        using var error = new StringWriter();
        int exitCode = PagerangeCommand.Invoke(args, output, error);
        return (exitCode, output.ToString(), error.ToString());
    }

    private static string UniqueName() => $"cli-test-{Environment.ProcessId}-{Guid.NewGuid():N}";

    private static string OwnComm() => File.ReadAllText("/proc/self/comm").Trim();

    private static uint OwnUid() =>
        uint.Parse(File.ReadLines("/proc/self/status").First(line => line.StartsWith("Uid:", StringComparison.Ordinal))
            .Split('\t', StringSplitOptions.RemoveEmptyEntries)[1], System.Globalization.CultureInfo.InvariantCulture);
}
