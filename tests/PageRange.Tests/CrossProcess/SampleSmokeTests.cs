using System.Diagnostics;
using System.Text.RegularExpressions;
using PageRange.Tests.Infrastructure;

namespace PageRange.Tests.CrossProcess;

/// <summary>
/// The ping-pong sample end to end, as a user runs it (<c>dotnet PingPong.dll</c>, which starts its own peer process):
/// a tiny run succeeds and prints its figures, the Unix socket's beside them and the ratio; a peer that cannot start or
/// dies ends it with one sentence and a non-zero exit code; a bad argument is one line and exit code 2, before any
/// process is started.
/// </summary>
[Collection(CrossProcessCollection.Name)]
public sealed partial class SampleSmokeTests(ITestOutputHelper output)
{
    [Fact]
    public void Sample_TinyRun_ExitsZeroAndPrintsLatencyAndThroughput()
    {
        // A warm-up of at most about a second a phase: enough to see it run and end, short on a busy CI machine.
        (int exitCode, string stdout, string stderr) = RunSample("--count", "200", "--duration", "0.5", "--jit-settle", "1");

        Assert.Equal(0, exitCode);
        Assert.Equal("", stderr);
        Assert.Matches(LatencyLine(), stdout);
        Assert.Matches(ThroughputLine(), stdout);
        Assert.Matches(SocketLatencyLine(), stdout);
        Assert.Matches(RatioLine(), stdout);
        // Each phase was warmed up (settled, or still compiling when its second ran out); the oneway phase's warm-up
        // streams are checked message by message like the measured one, so the peer's count starts afresh for each.
        foreach (string phase in new[] { "sync Call", "sync Unix socket", "await CallAsync", "oneway 4096 B" })
        {
            Assert.Matches($@"(?m)^jit: {phase} (settled|still compiling) after \d+ rounds in \d+\.\d s$", stdout);
        }
        // The table is laid out for 120 columns when redirected, so no phase name is wrapped.
        Assert.Matches("│ await CallAsync +│", stdout);
        Assert.Matches("│ sync Unix socket +│", stdout);
    }

    [Fact]
    public void Sample_NoSocket_SkipsTheSocketPhaseAndTheRatio()
    {
        (int exitCode, string stdout, string stderr) = RunSample("--count", "200", "--duration", "0.2", "--no-socket", "--jit-settle", "0");

        Assert.Equal(0, exitCode);
        Assert.Equal("", stderr);
        Assert.Matches(LatencyLine(), stdout);
        Assert.Contains("jit: sync Call not settled (--jit-settle 0)", stdout, StringComparison.Ordinal);
        Assert.DoesNotMatch(SocketLatencyLine(), stdout);
        Assert.DoesNotMatch(RatioLine(), stdout);
    }

    [Theory]
    [InlineData(new[] { "--count", "abc" }, "error: --count takes a whole number above zero, not 'abc'. See --help.")]
    [InlineData(new[] { "--count", "0" }, "error: --count takes a whole number above zero, not '0'. See --help.")]
    [InlineData(new[] { "--size", "-1" }, "error: --size takes a whole number of zero or more, not '-1'. See --help.")]
    [InlineData(new[] { "--duration", "soon" }, "error: --duration takes a number above zero up to 86400, not 'soon'. See --help.")]
    [InlineData(new[] { "--duration", "Infinity" }, "error: --duration takes a number above zero up to 86400, not 'Infinity'. See --help.")]
    [InlineData(new[] { "--jit-settle", "-1" }, "error: --jit-settle takes a number of zero or more up to 86400, not '-1'. See --help.")]
    [InlineData(new[] { "--jit-settle", "1e300" }, "error: --jit-settle takes a number of zero or more up to 86400, not '1e300'. See --help.")]
    [InlineData(new[] { "--wait", "sometimes" }, "error: 'sometimes' is not a wait strategy for --wait: use busy-spin, spin-then-park or park. See --help.")]
    [InlineData(new[] { "--colour", "blue" }, "error: Unrecognized command or argument '--colour'. See --help.")]
    public void Sample_BadArgument_OneLineOnStderrAndExitCode2(string[] arguments, string expected)
    {
        (int exitCode, string stdout, string stderr) = RunSample(arguments);

        Assert.Equal(2, exitCode);
        Assert.Equal(expected + Environment.NewLine, stderr);
        Assert.Equal("", stdout);
    }

    [Fact]
    public void Sample_Help_ExitsZeroAndListsEveryOption()
    {
        (int exitCode, string stdout, string stderr) = RunSample("--help");

        Assert.Equal(0, exitCode);
        Assert.Equal("", stderr);
        foreach (string option in new[] { "--count", "--size", "--stream-size", "--duration", "--wait", "--jit-settle", "--dump", "--no-socket" })
        {
            Assert.Contains(option, stdout, StringComparison.Ordinal);
        }
        // The peer's options are for the sample itself and for tests, not for a reader of the help.
        Assert.DoesNotContain("--peer", stdout, StringComparison.Ordinal);
    }

    [Fact]
    public void Sample_PeerExitsBeforeConnecting_OneSentenceErrorAndNonZeroExit()
    {
        (int exitCode, _, string stderr) = RunSample("--count", "200", "--duration", "0.5", "--peer-exit-after", "0");

        Assert.NotEqual(0, exitCode);
        Assert.Equal("error: the peer process exited before connecting (exit code 17).", stderr.Trim());
    }

    [Fact]
    public void Sample_PeerDiesDuringTheWarmUp_OneSentenceErrorAndNonZeroExit()
    {
        // 2,000 warm-up calls, then the JIT warm-up's first round, in which the peer dies (its compiled-method count
        // is asked by a call too).
        (int exitCode, string stdout, string stderr) = RunSample("--count", "3000", "--duration", "0.5", "--peer-exit-after", "2100");

        Assert.NotEqual(0, exitCode);
        Assert.Matches(PeerDiedLine(), stderr.Trim());
        Assert.DoesNotMatch(LatencyLine(), stdout);
        Assert.DoesNotContain("jit:", stdout, StringComparison.Ordinal);
    }

    [Fact]
    public void Sample_PeerDiesMidRun_OneSentenceErrorAndNonZeroExit()
    {
        (int exitCode, string stdout, string stderr) = RunSample("--count", "1000", "--duration", "0.5", "--peer-exit-after", "300", "--jit-settle", "0");

        Assert.NotEqual(0, exitCode);
        Assert.Matches(PeerDiedLine(), stderr.Trim());
        Assert.DoesNotMatch(LatencyLine(), stdout);
    }

    private (int ExitCode, string Stdout, string Stderr) RunSample(params string[] arguments)
    {
        var start = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        start.ArgumentList.Add(SampleAssemblyPath);
        foreach (string argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }
        using Process process = Process.Start(start) ?? throw new InvalidOperationException("dotnet did not start.");
        try
        {
            Task<string> stdout = process.StandardOutput.ReadToEndAsync();
            Task<string> stderr = process.StandardError.ReadToEndAsync();
            Assert.True(process.WaitForExit(TestTimeouts.Long), "The sample did not finish within the time limit.");
            process.WaitForExit();
            string outText = stdout.GetAwaiter().GetResult();
            string errText = stderr.GetAwaiter().GetResult();
            output.WriteLine($"exit code {process.ExitCode}\n--- stdout\n{outText}--- stderr\n{errText}");
            return (process.ExitCode, outText, errText);
        }
        finally
        {
            if (!process.HasExited)
            {
                // Kills the sample's peer too.
                process.Kill(entireProcessTree: true);
            }
        }
    }

    /// <summary>The sample built beside this test assembly, in the same configuration.</summary>
    private static string SampleAssemblyPath => RepositoryPaths.BuiltAssembly("samples/PingPong", "PingPong.dll");

    [GeneratedRegex(@"^latency: sync Call p50 \d+\.\d+ us p99 \d+\.\d+ us p99\.9 \d+\.\d+ us$", RegexOptions.Multiline)]
    private static partial Regex LatencyLine();

    [GeneratedRegex(@"^throughput: oneway 4096 B \d+ messages/s \d+\.\d+ GB/s$", RegexOptions.Multiline)]
    private static partial Regex ThroughputLine();

    [GeneratedRegex(@"^latency: sync Unix socket p50 \d+\.\d+ us p99 \d+\.\d+ us p99\.9 \d+\.\d+ us$", RegexOptions.Multiline)]
    private static partial Regex SocketLatencyLine();

    [GeneratedRegex(@"^ratio: sync Call / sync Unix socket p50 \d+\.\d{3} p99 \d+\.\d{3} \(PageRange \d+\.\d+x (faster|slower) at p50\)$", RegexOptions.Multiline)]
    private static partial Regex RatioLine();

    [GeneratedRegex(@"^error: the peer process \d+ died during the run( \(exit code 17\))?\.$")]
    private static partial Regex PeerDiedLine();
}
