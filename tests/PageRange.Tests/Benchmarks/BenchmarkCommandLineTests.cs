using PageRange.Tests.Tools;

namespace PageRange.Tests.Benchmarks;

/// <summary>
/// The benchmark commands' command lines: <c>--help</c> exits 0 and lists the options the READMEs document; a bad
/// argument is one line on stderr and exit code 2, before anything is measured or any process started.
/// </summary>
public sealed class BenchmarkCommandLineTests(ITestOutputHelper output)
{
    private static readonly string s_benchmarks = DotnetRun.BuiltAssembly("benchmarks/PageRange.Benchmarks", "PageRange.Benchmarks.dll");

    [Theory]
    [InlineData("cross-process", "--quick", "--rounds", "--slice-ms", "--warmup-ms", "--jit-settle-ms", "--transports", "--pingpong-sizes", "--oneway-sizes", "--oneway-echo-sizes", "--region-size", "--pin-peer", "--reply-delay-us", "--out", "--no-charts", "--dump-state")]
    [InlineData("memory", "--quick", "--out")]
    [InlineData("soak", "--duration", "--seed", "--senders", "--life", "--sample")]
    [InlineData("server", "--clients", "--size", "--warmup", "--measure", "--threads", "--out", "--quick")]
    public void Help_EveryCommand_ExitsZeroAndListsItsOptions(string command, params string[] options)
    {
        (int exitCode, string stdout, string stderr) = DotnetRun.Run(output, s_benchmarks, command, "--help");

        Assert.Equal(0, exitCode);
        Assert.Equal("", stderr);
        Assert.All(options, option => Assert.Contains(option, stdout, StringComparison.Ordinal));
    }

    [Theory]
    [InlineData(new[] { "cross-process", "--rounds", "abc" }, "error: --rounds takes a whole number above zero, not 'abc'. See cross-process --help.")]
    [InlineData(new[] { "cross-process", "--transports", "carrier-pigeon" }, "error: --transports: 'carrier-pigeon' is not a transport; known: ")]
    [InlineData(new[] { "cross-process", "--oneway-sizes", "64,big" }, "error: --oneway-sizes takes a comma list of sizes in bytes above zero, and 'big' is not one. See cross-process --help.")]
    [InlineData(new[] { "cross-process", "--jit-settle-ms", "-1" }, "error: --jit-settle-ms takes a whole number of zero or more, not '-1'. See cross-process --help.")]
    [InlineData(new[] { "cross-process", "--reply-delay-us", "-1" }, "error: --reply-delay-us takes a whole number of zero or more, not '-1'. See cross-process --help.")]
    [InlineData(new[] { "memory", "--fast" }, "error: Unrecognized command or argument '--fast'. See memory --help.")]
    [InlineData(new[] { "server", "--clients", "1,x" }, "error: --clients takes a comma list of whole numbers above zero, and 'x' is not one. See server --help.")]
    [InlineData(new[] { "server", "--size", "0" }, "error: --size takes a whole number above zero, not '0'. See server --help.")]
    [InlineData(new[] { "server", "--threads", "abc" }, "error: --threads takes a whole number above zero, not 'abc'. See server --help.")]
    [InlineData(new[] { "server", "--warmup", "-5" }, "error: --warmup takes a whole number of zero or more, not '-5'. See server --help.")]
    [InlineData(new[] { "server", "--fast" }, "error: Unrecognized command or argument '--fast'. See server --help.")]
    [InlineData(new[] { "soak", "--life", "8-2" }, "error: --life takes MIN-MAX seconds with 0 < MIN <= MAX, not '8-2'. See soak --help.")]
    public void BadArgument_OneLineOnStderrAndExitCode2(string[] arguments, string expectedStart)
    {
        (int exitCode, string stdout, string stderr) = DotnetRun.Run(output, [s_benchmarks, .. arguments]);

        Assert.Equal(2, exitCode);
        Assert.StartsWith(expectedStart, stderr, StringComparison.Ordinal);
        Assert.Single(stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.Equal("", stdout);
    }
}
