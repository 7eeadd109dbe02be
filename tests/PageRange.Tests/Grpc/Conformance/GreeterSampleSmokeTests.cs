using System.Diagnostics;
using System.Text.RegularExpressions;
using PageRange.Tests.Infrastructure;

namespace PageRange.Tests.Grpc.Conformance;

/// <summary>
/// The greeter sample as a user runs it (<c>dotnet GrpcGreeter.dll --transport all</c>): it starts its server child, greets
/// over PageRange, the Unix socket and TCP with the same generated client, prints each one's latency and the ratios,
/// exits 0, and leaves no server process behind.
/// </summary>
[Collection(CrossProcessCollection.Name)]
public sealed partial class GreeterSampleSmokeTests(ITestOutputHelper output)
{
    [Fact]
    public async Task GreeterSample_AllTransports_GreetsOverEachAndPrintsLatencyAndRatios()
    {
        var start = new ProcessStartInfo("dotnet") { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        start.ArgumentList.Add(SampleAssemblyPath);
        foreach (string argument in new[] { "--transport", "all", "--calls", "100" })
        {
            start.ArgumentList.Add(argument);
        }
        using Process process = Process.Start(start)!;
        Task<string> stdout = process.StandardOutput.ReadToEndAsync();
        Task<string> stderr = process.StandardError.ReadToEndAsync();
        try
        {
            await process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(120));
        }
        finally
        {
            if (!process.HasExited)
            {
                process.Kill(entireProcessTree: true);
            }
        }
        string text = await stdout;
        output.WriteLine(text);
        output.WriteLine(await stderr);

        Assert.Equal(0, process.ExitCode);
        // The service saw the sample's client process by its kernel credentials.
        Assert.Matches($"pagerange: Hello pagerange \\(from pagerange:pid={process.Id},uid=[0-9]+\\)", text);
        foreach (string transport in new[] { "pagerange", "uds", "tcp" })
        {
            Assert.Matches($"{transport}: p50 [0-9.]+ µs, p99 [0-9.]+ µs \\(100 calls\\)", text);
        }
        Assert.Matches(Ratio(), text);
        // The server child (named after its parent's pid) was killed when the client exited.
        string serverName = $"greeter-{process.Id}\0";
        Assert.DoesNotContain(Directory.EnumerateDirectories("/proc"), directory => CommandLineOf(directory).Contains(serverName, StringComparison.Ordinal));
    }

    [GeneratedRegex(@"uds / pagerange p50: x[0-9.]+\ntcp / pagerange p50: x[0-9.]+")]
    private static partial Regex Ratio();

    private static string CommandLineOf(string procDirectory)
    {
        try
        {
            return File.ReadAllText(Path.Combine(procDirectory, "cmdline"));
        }
        catch (Exception error) when (error is IOException or UnauthorizedAccessException)
        {
            return "";
        }
    }

    /// <summary>The sample's assembly built beside this test assembly (the test project references it), in the same configuration.</summary>
    private static string SampleAssemblyPath
    {
        get
        {
            string baseDirectory = AppContext.BaseDirectory;
            string marker = $"{Path.DirectorySeparatorChar}tests{Path.DirectorySeparatorChar}PageRange.Tests{Path.DirectorySeparatorChar}bin{Path.DirectorySeparatorChar}";
            int at = baseDirectory.LastIndexOf(marker, StringComparison.Ordinal);
            Assert.True(at >= 0, $"Cannot find the sample relative to {baseDirectory}.");
            return Path.Combine(
                string.Concat(baseDirectory.AsSpan(0, at), $"{Path.DirectorySeparatorChar}samples{Path.DirectorySeparatorChar}GrpcGreeter{Path.DirectorySeparatorChar}bin{Path.DirectorySeparatorChar}", baseDirectory.AsSpan(at + marker.Length)),
                "GrpcGreeter.dll");
        }
    }
}
