using System.Diagnostics;
using PageRange.Tests.Infrastructure;

namespace PageRange.Tests.Server;

/// <summary>The benchmark harness's server workload in its <c>--quick</c> mode: both servers, 1 and 2 client processes, one table.</summary>
[Collection(CrossProcessCollection.Name)]
public sealed class ServerBenchmarkSmokeTests(ITestOutputHelper output) : IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("pagerange-server-bench-").FullName;

    [Fact]
    public async Task ServerQuick_BothServers_OneAndTwoClients_WritesOneRowEach()
    {
        var start = new ProcessStartInfo("dotnet") { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (string argument in new[] { BenchmarksAssemblyPath, "server", "--quick", "--wait", "park", "--out", _directory })
        {
            start.ArgumentList.Add(argument);
        }
        using Process process = Process.Start(start)!;
        Task<string> stdout = process.StandardOutput.ReadToEndAsync();
        Task<string> stderr = process.StandardError.ReadToEndAsync();
        try
        {
            await process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(180));
        }
        finally
        {
            if (!process.HasExited)
            {
                process.Kill(entireProcessTree: true);
            }
        }
        output.WriteLine(await stdout);
        output.WriteLine(await stderr);
        Assert.Equal(0, process.ExitCode);
        string results = await File.ReadAllTextAsync(Path.Combine(_directory, "server-results.md"));
        foreach (string row in new[] { "| pagerange | 1 |", "| socket | 1 |", "| pagerange | 2 |", "| socket | 2 |" })
        {
            Assert.Contains(row, results, StringComparison.Ordinal);
        }
    }

    private static string BenchmarksAssemblyPath
    {
        get
        {
            string baseDirectory = AppContext.BaseDirectory;
            string marker = $"{Path.DirectorySeparatorChar}tests{Path.DirectorySeparatorChar}PageRange.Tests{Path.DirectorySeparatorChar}bin{Path.DirectorySeparatorChar}";
            int at = baseDirectory.LastIndexOf(marker, StringComparison.Ordinal);
            Assert.True(at >= 0, $"Cannot find the benchmarks relative to {baseDirectory}.");
            return Path.Combine(
                string.Concat(baseDirectory.AsSpan(0, at), $"{Path.DirectorySeparatorChar}benchmarks{Path.DirectorySeparatorChar}PageRange.Benchmarks{Path.DirectorySeparatorChar}bin{Path.DirectorySeparatorChar}", baseDirectory.AsSpan(at + marker.Length)),
                "PageRange.Benchmarks.dll");
        }
    }

    public void Dispose() => Directory.Delete(_directory, recursive: true);
}
