using PageRange.Tests.Infrastructure;
using PageRange.Tests.Tools;

namespace PageRange.Tests.Server;

/// <summary>The benchmark harness's server workload in its <c>--quick</c> mode: both servers, 1 and 2 client processes, one table.</summary>
[Collection(CrossProcessCollection.Name)]
public sealed class ServerBenchmarkSmokeTests(ITestOutputHelper output) : IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("pagerange-server-bench-").FullName;

    [Fact]
    public async Task ServerQuick_BothServers_OneAndTwoClients_WritesOneRowEach()
    {
        await DotnetRun.RunBenchmarksAsync(output, TimeSpan.FromSeconds(180), "server", "--quick", "--wait", "park", "--out", _directory);
        string results = await File.ReadAllTextAsync(Path.Combine(_directory, "server-results.md"));
        foreach (string row in new[] { "| pagerange | 1 |", "| socket | 1 |", "| pagerange | 2 |", "| socket | 2 |" })
        {
            Assert.Contains(row, results, StringComparison.Ordinal);
        }
    }

    public void Dispose() => Directory.Delete(_directory, recursive: true);
}
