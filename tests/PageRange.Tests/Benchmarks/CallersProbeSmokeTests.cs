using System.Globalization;
using System.Text.RegularExpressions;
using PageRange.Tests.Infrastructure;
using PageRange.Tests.Tools;

namespace PageRange.Tests.Benchmarks;

/// <summary>The benchmarks' <c>callers-probe</c>: several threads calling on one connection, a line per round with calls/s and CPU per call.</summary>
[Collection(CrossProcessCollection.Name)]
public sealed partial class CallersProbeSmokeTests(ITestOutputHelper output)
{
    [Fact]
    public async Task CallersProbe_ThreeThreadsOnOneConnection_ReportsEachRoundWithCallsMade()
    {
        string text = await DotnetRun.RunBenchmarksAsync(
            output, TimeSpan.FromSeconds(180), "callers-probe", "--callers", "3", "--rounds", "2", "--round-ms", "300", "--wait", "park");
        MatchCollection rounds = RoundLine().Matches(text);
        Assert.Equal(2, rounds.Count);
        foreach (Match round in rounds)
        {
            // Every round made calls: the followers behind the reader role got their replies.
            Assert.True(double.Parse(round.Groups["calls"].Value, NumberStyles.AllowThousands, CultureInfo.InvariantCulture) > 0, round.Value);
            Assert.True(double.Parse(round.Groups["cpu"].Value, CultureInfo.InvariantCulture) > 0, round.Value);
        }
        // Every thread made calls: none was starved behind the reader role (or left waiting out park timeouts).
        Match perThread = PerThreadLine().Match(text);
        Assert.True(perThread.Success, text);
        long[] counts = perThread.Groups["counts"].Value.Split(", ").Select(count => long.Parse(count, CultureInfo.InvariantCulture)).ToArray();
        Assert.Equal(3, counts.Length);
        Assert.All(counts, count => Assert.True(count > 0, perThread.Value));
    }

    [GeneratedRegex(@"calls per thread: (?<counts>\d+(, \d+)*)")]
    private static partial Regex PerThreadLine();

    [GeneratedRegex(@"round \d+: (?<calls>[\d,]+) calls/s, (?<cpu>[\d.]+) ns CPU per call")]
    private static partial Regex RoundLine();
}
