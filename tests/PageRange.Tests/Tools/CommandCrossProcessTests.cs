using System.Globalization;
using System.Text.Json;
using PageRange.Cli;
using PageRange.Tests.CrossProcess;
using PageRange.Tests.Infrastructure;

namespace PageRange.Tests.Tools;

/// <summary>
/// <c>pagerange list</c> and <c>pagerange dump</c> against a server in another process (a live TestHost): the listener is
/// found with that process's pid and name, and the dump comes from that process.
/// </summary>
[Collection(CrossProcessCollection.Name)]
public sealed class CommandCrossProcessTests(ITestOutputHelper output)
{
    [Fact]
    public void ListAndDump_ServerInAnotherProcess_ShowThatProcess()
    {
        string name = $"tool-test-{Environment.ProcessId}-{Guid.NewGuid():N}";
        using TestHostProcess host = TestHostProcess.Start(output, "tool-serve", name);
        int pid = int.Parse(host.ReadUntil("ready: "), CultureInfo.InvariantCulture);
        Assert.Equal(host.Id, pid);

        (int listExit, string listed, string listErrors) = Invoke("list", "--json");
        Assert.Equal(0, listExit);
        Assert.Equal("", listErrors);
        using (JsonDocument document = JsonDocument.Parse(listed))
        {
            JsonElement server = Assert.Single(document.RootElement.EnumerateArray(), e => e.GetProperty("name").GetString() == name);
            Assert.Equal(pid, server.GetProperty("pid").GetInt32());
            Assert.NotEqual(Environment.ProcessId, server.GetProperty("pid").GetInt32());
            Assert.False(string.IsNullOrEmpty(server.GetProperty("process").GetString()));
        }

        (int dumpExit, string dumped, string dumpErrors) = Invoke("dump", name);
        output.WriteLine(dumped);
        Assert.Equal("", dumpErrors);
        Assert.Equal(0, dumpExit);
        Assert.StartsWith($"server '{name}' pid {pid} uid ", dumped, StringComparison.Ordinal);
        // The one client is the tool itself, from this process.
        Assert.Contains("1 clients", dumped, StringComparison.Ordinal);
        Assert.Contains($"pid {Environment.ProcessId} uid ", dumped, StringComparison.Ordinal);
        Assert.Contains("  pages: ", dumped, StringComparison.Ordinal);

        host.WriteLine("quit");
        Assert.Equal("ok", host.ReadUntil("stopped: "));
        Assert.Equal(0, host.WaitForExit());
    }

    private static (int ExitCode, string Stdout, string Stderr) Invoke(params string[] args)
    {
        using var output = new StringWriter();
        using var error = new StringWriter();
        int exitCode = PagerangeCommand.Invoke(args, output, error);
        return (exitCode, output.ToString(), error.ToString());
    }
}
