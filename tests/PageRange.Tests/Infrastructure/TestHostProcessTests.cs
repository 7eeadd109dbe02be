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
        // The runtime's diagnostic server makes dotnet-diagnostic-<pid>-* and clr-debug-pipe-<pid>-* in the temp
        // directory while the process lives and removes them only on a clean exit: hosts the tests kill would leave them.
        string temp = Environment.GetEnvironmentVariable("TMPDIR") is { Length: > 0 } tmpdir ? tmpdir : "/tmp";
        int pid;
        using (var host = TestHostProcess.Start(output, "idle"))
        {
            pid = host.Id;
            Assert.Equal(pid.ToString(System.Globalization.CultureInfo.InvariantCulture), host.ReadUntil("idle: "));
            Assert.Empty(RuntimeFilesOf(temp, pid));
            host.Kill();
            Assert.NotEqual(0, host.WaitForExit());
        }
        Assert.Empty(RuntimeFilesOf(temp, pid));
    }

    private static string[] RuntimeFilesOf(string directory, int pid) =>
        [.. Directory.EnumerateFiles(directory, $"dotnet-diagnostic-{pid}-*"), .. Directory.EnumerateFiles(directory, $"clr-debug-pipe-{pid}-*")];

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
