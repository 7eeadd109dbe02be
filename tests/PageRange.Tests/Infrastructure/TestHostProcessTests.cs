using System.Globalization;
using System.Runtime.Versioning;

namespace PageRange.Tests.Infrastructure;

[Collection(CrossProcessCollection.Name)]
public sealed class TestHostProcessTests(ITestOutputHelper output)
{
    [Fact]
    public void Start_EchoScenario_ReadsItsLineAndExitCode()
    {
        using var host = TestHostProcess.Start(output, "echo-args", "a", "b");
        Assert.Equal("a b", host.ReadUntil("args: "));
        Assert.Equal(0, host.WaitForExit());
    }

    [Fact]
    [UnsupportedOSPlatform("windows")]
    public void Start_KilledHost_LeavesNoRuntimeFilesInTheTempDirectory()
    {
        // The runtime's diagnostic server makes dotnet-diagnostic-<pid>-<key>-* and clr-debug-pipe-<pid>-<key>-* in the
        // temp directory while the process lives and removes them only on a clean exit: hosts the tests kill would leave
        // them. The key (the process's start time) tells this host's files from those an earlier process with the same
        // pid left behind: pids wrap at 32768 here, and the CI once matched such stale files by pid alone.
        string temp = Environment.GetEnvironmentVariable("TMPDIR") is { Length: > 0 } tmpdir ? tmpdir : "/tmp";
        string prefix;
        using (var host = TestHostProcess.Start(output, "idle"))
        {
            Assert.Equal(host.Id.ToString(CultureInfo.InvariantCulture), host.ReadUntil("idle: "));
            prefix = $"{host.Id}-{StartTimeOf(host.Id)}-";
            Assert.Empty(RuntimeFilesOf(temp, prefix));
            host.Kill();
            Assert.NotEqual(0, host.WaitForExit());
        }
        Assert.Empty(RuntimeFilesOf(temp, prefix));
    }

    private static string[] RuntimeFilesOf(string directory, string prefix) =>
        [.. Directory.EnumerateFiles(directory, $"dotnet-diagnostic-{prefix}*"), .. Directory.EnumerateFiles(directory, $"clr-debug-pipe-{prefix}*")];

    /// <summary>Field 22 of <c>/proc/PID/stat</c>, the start time the runtime puts in its file names.</summary>
    private static ulong StartTimeOf(int pid)
    {
        string stat = File.ReadAllText($"/proc/{pid}/stat");
        // The command name (field 2) may hold spaces and parentheses: count the fields after its closing one.
        string[] fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
        return ulong.Parse(fields[22 - 3], CultureInfo.InvariantCulture);
    }

    [Fact]
    [UnsupportedOSPlatform("windows")]
    public void StagedTestHost_EveryUidCanReachAndReadIt()
    {
        string assembly = StagedTestHost.AssemblyPath;
        Assert.True(File.Exists(assembly));
        Assert.NotEqual(Path.GetDirectoryName(TestHostProcess.HostAssemblyPath), StagedTestHost.DirectoryPath);
        // Every directory from the root down is searchable by others, and every staged file readable by them.
        for (DirectoryInfo? directory = new(StagedTestHost.DirectoryPath); directory is not null; directory = directory.Parent)
        {
            Assert.True((directory.UnixFileMode & UnixFileMode.OtherExecute) != 0, $"{directory.FullName} is not searchable by other uids");
        }
        foreach (string file in Directory.EnumerateFiles(StagedTestHost.DirectoryPath, "*", SearchOption.AllDirectories))
        {
            Assert.True((File.GetUnixFileMode(file) & UnixFileMode.OtherRead) != 0, $"{file} is not readable by other uids");
        }
        foreach (string name in new[] { "PageRange.dll", "MessagePack.dll", "PageRange.TestHost.runtimeconfig.json" })
        {
            Assert.True(File.Exists(Path.Combine(StagedTestHost.DirectoryPath, name)), $"{name} is staged");
        }
    }
}
