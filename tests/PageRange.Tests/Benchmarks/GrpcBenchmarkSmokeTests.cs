using System.Globalization;
using PageRange.Tests.Infrastructure;
using PageRange.Tests.Tools;

namespace PageRange.Tests.Benchmarks;

/// <summary>
/// Runs the benchmark harness's <c>grpc --quick</c> once: the server process must serve gRPC over PageRange and over
/// Kestrel on a Unix socket, every workload must produce a row for both, and the named-pipe configuration must either
/// produce its rows or say why it has none. Timing numbers are not asserted: the machine is shared.
/// </summary>
[Collection(CrossProcessCollection.Name)]
public sealed class GrpcBenchmarkSmokeTests(ITestOutputHelper output) : IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("pagerange-grpc-bench-smoke-").FullName;

    [Fact]
    public async Task GrpcQuick_PageRangeAndUnixSocket_WritesEveryWorkloadAndTheRatios()
    {
        await DotnetRun.RunBenchmarksAsync(output, TimeSpan.FromSeconds(180), "grpc", "--quick", "--wait", "park", "--out", _directory);

        string[][] rows = (await File.ReadAllLinesAsync(Path.Combine(_directory, "grpc-results.csv"))).Skip(1).Select(line => line.Split(',')).ToArray();
        foreach (string transport in new[] { "pagerange", "uds" })
        {
            Assert.Contains(rows, row => row[0] == transport && row[1] == "unary" && row[2] == "64" && Positive(row[3]) && Positive(row[4]));
            Assert.Contains(rows, row => row[0] == transport && row[1] == "unary" && row[2] == "16384" && Positive(row[3]) && Positive(row[4]));
            Assert.Contains(rows, row => row[0] == transport && row[1] == "server-stream" && row[2] == "1024" && Positive(row[5]));
        }
        string markdown = await File.ReadAllTextAsync(Path.Combine(_directory, "grpc-results.md"));
        Assert.Contains("- uds: unary 64 B p50 x", markdown, StringComparison.Ordinal);
        // Either measured or explained, never silently missing.
        Assert.True(rows.Any(row => row[0] == "named-pipe") || markdown.Contains("- named-pipe: no figure.", StringComparison.Ordinal), markdown);
    }

    private static bool Positive(string value) => double.Parse(value, CultureInfo.InvariantCulture) > 0;

    public void Dispose() => Directory.Delete(_directory, recursive: true);
}
