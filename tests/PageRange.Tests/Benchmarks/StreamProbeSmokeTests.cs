using System.Globalization;
using System.Text.RegularExpressions;
using PageRange.Tests.Infrastructure;
using PageRange.Tests.Tools;

namespace PageRange.Tests.Benchmarks;

/// <summary>The benchmarks' <c>stream-probe</c>: a line per round with the send and receive work per message, and a steady state that allocates nothing.</summary>
[Collection(CrossProcessCollection.Name)]
public sealed partial class StreamProbeSmokeTests(ITestOutputHelper output)
{
    [Fact]
    public async Task StreamProbe_ReportsEachRound_TheLastAllocatesNothing()
    {
        string text = await DotnetRun.RunBenchmarksAsync(output, TimeSpan.FromSeconds(180), "stream-probe", "--batches", "2000", "--rounds", "3");
        MatchCollection rounds = RoundLine().Matches(text);
        Assert.Equal(3, rounds.Count);
        foreach (Match round in rounds)
        {
            Assert.True(double.Parse(round.Groups["send"].Value, CultureInfo.InvariantCulture) > 0);
            Assert.True(double.Parse(round.Groups["receive"].Value, CultureInfo.InvariantCulture) > 0);
        }
        // Send, receive, read in place and dispose: no allocation per message once the JIT's first round is over.
        Assert.Equal(0.0, double.Parse(rounds[^1].Groups["allocated"].Value, CultureInfo.InvariantCulture));
    }

    [Fact]
    public async Task StreamProbe_Struct_ReportsEachRound_TheLastAllocatesNothing()
    {
        string text = await DotnetRun.RunBenchmarksAsync(output, TimeSpan.FromSeconds(180), "stream-probe", "--struct", "--batches", "2000", "--rounds", "3");
        Assert.Contains("as a struct (SendOnewayStruct, ReadStruct)", text, StringComparison.Ordinal);
        MatchCollection rounds = RoundLine().Matches(text);
        Assert.Equal(3, rounds.Count);
        // SendOnewayStruct and ReadStruct copy the struct and nothing else: no allocation per message either.
        Assert.Equal(0.0, double.Parse(rounds[^1].Groups["allocated"].Value, CultureInfo.InvariantCulture));
    }

    [Fact]
    public async Task StreamProbe_TwoThreads_ReportsEachRoundsRate()
    {
        string text = await DotnetRun.RunBenchmarksAsync(output, TimeSpan.FromSeconds(180), "stream-probe", "--two-threads", "--batches", "2000", "--rounds", "2");
        Assert.Contains("on a second thread", text, StringComparison.Ordinal);
        MatchCollection rounds = TwoThreadLine().Matches(text);
        Assert.Equal(2, rounds.Count);
        Assert.All(rounds, round => Assert.True(double.Parse(round.Groups["rate"].Value, CultureInfo.InvariantCulture) > 0));
        // Both threads' bytes, the runtime's own threads too: no per-message allocation (one would be 24 B or more).
        Assert.True(double.Parse(rounds[^1].Groups["allocated"].Value, CultureInfo.InvariantCulture) < 1);
    }

    [GeneratedRegex(@"round \d+: (?<rate>[\d.]+) M messages/s, sent here and received on a second thread; allocated (?<allocated>[\d.]+) B per message \(both threads\)")]
    private static partial Regex TwoThreadLine();

    [GeneratedRegex(@"round \d+: send (?<send>[\d.]+) ns, receive \(with reading the payload and disposing\) (?<receive>[\d.]+) ns per message; allocated (?<allocated>[\d.]+) B per message")]
    private static partial Regex RoundLine();
}
