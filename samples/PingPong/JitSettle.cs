using System.Diagnostics;
using System.Globalization;
using System.Runtime;

namespace PingPong;

/// <summary>
/// Warms a phase up until neither process's JIT compiles more than a few methods a round, so that the phase measures the
/// code the runtime settles on, not its first tiers.
/// </summary>
/// <remarks>
/// .NET first compiles a method quickly, then recompiles the ones called often, in the background, on a thread that needs
/// a core. While both processes spin on the two cores of a small machine that thread barely runs: 100,000 round trips
/// measured from a cold start took 3 µs each at p50 where the settled code takes 1 µs (2-core VM, 2026-12-05). Each round
/// runs the phase's own calls for <see cref="RoundLength"/>, then pauses for <see cref="Pause"/>, longer than the runtime's
/// call-counting delay (100 ms), so the background compiler runs with a core free (both free but under
/// <c>--wait busy-spin</c>, whose peer keeps spinning for the next call). Two quiet rounds in a row (at most
/// <see cref="QuietMethods"/> methods compiled by either process), the earliest the 7th and 8th (at least
/// <see cref="MinRounds"/> rounds), end it; so does the limit, looked at before each round (a phase may run over it by a
/// round, a pause and the pre-roll). The benchmark harness settles the same way (benchmarks/README).
/// </remarks>
internal sealed class JitSettle(Func<long> peerCompiledMethods, TimeSpan limit)
{
    private readonly List<Settled> _settled = [];

    /// <summary>How long each round runs the phase's calls: thousands of them, far past the 30 that promote a method.</summary>
    public static readonly TimeSpan RoundLength = TimeSpan.FromMilliseconds(20);

    /// <summary>The idle pause after each round, in which the background compiler gets a core.</summary>
    public static readonly TimeSpan Pause = TimeSpan.FromMilliseconds(150);

    /// <summary>
    /// One more run of the phase's calls after the last pause, without a pause after it: the first few thousand round
    /// trips after an idle pause were the slowest of a phase measured straight after it (halted vCPUs waking, the last
    /// recompiled code arriving).
    /// </summary>
    public static readonly TimeSpan PreRoll = TimeSpan.FromMilliseconds(50);

    /// <summary>A <see cref="Stopwatch"/> timestamp <paramref name="duration"/> from now, for a round's loop to end at.</summary>
    public static long DeadlineAfter(TimeSpan duration) => Stopwatch.GetTimestamp() + (long)(duration.TotalSeconds * Stopwatch.Frequency);

    /// <summary>
    /// The fewest rounds (the 7th and 8th are the first that can count as quiet): the first ones can compile nothing while the runtime still counts calls (two quiet rounds came
    /// before the main burst of recompilations, rounds 4-6, in a run on the 2-core VM).
    /// </summary>
    public const int MinRounds = 8;

    /// <summary>
    /// The most methods either process may compile in a round that still counts as quiet: the warm-up's own bookkeeping
    /// (the count query, the pause's timer), called once or twice a round, is recompiled a few methods at a time over
    /// dozens of rounds, while the phase's own calls are recompiled in bursts of tens to hundreds.
    /// </summary>
    public const int QuietMethods = 8;

    /// <summary>Quiet rounds in a row that end the warm-up.</summary>
    public const int QuietRoundsToEnd = 2;

    /// <summary>How each phase settled so far, in order.</summary>
    public IReadOnlyList<Settled> Phases => _settled;

    /// <summary>
    /// Runs rounds of <paramref name="round"/> until two in a row are quiet in both processes, or the limit passes (zero
    /// skips it); says so on the phase's progress line meanwhile, whose bar runs without a value until the phase itself.
    /// </summary>
    /// <param name="phase">The phase's name, for the report.</param>
    /// <param name="progress">The phase's progress line.</param>
    /// <param name="round">Runs the phase's calls for the time it is given.</param>
    public async Task RunAsync(string phase, Spectre.Console.ProgressTask progress, Func<TimeSpan, Task> round)
    {
        string description = progress.Description;
        progress.Description = $"{description} (JIT warm-up)";
        progress.IsIndeterminate = true;
        try
        {
            _settled.Add(await SettleAsync(phase, round));
        }
        finally
        {
            progress.Description = description;
            progress.IsIndeterminate = false;
            progress.Value = 0;
        }
    }

    private async Task<Settled> SettleAsync(string phase, Func<TimeSpan, Task> round)
    {
        long start = Stopwatch.GetTimestamp();
        int rounds = 0;
        int quiet = 0;
        while (quiet < QuietRoundsToEnd && Stopwatch.GetElapsedTime(start) < limit)
        {
            long ours = JitInfo.GetCompiledMethodCount();
            long theirs = peerCompiledMethods();
            await round(RoundLength);
            await Task.Delay(Pause);
            rounds++;
            bool quietRound = JitInfo.GetCompiledMethodCount() - ours <= QuietMethods && peerCompiledMethods() - theirs <= QuietMethods;
            quiet = quietRound && rounds >= MinRounds - 1 ? quiet + 1 : 0;
        }
        if (rounds > 0)
        {
            await round(PreRoll);
        }
        return new Settled(phase, rounds, Stopwatch.GetElapsedTime(start), quiet >= QuietRoundsToEnd);
    }

    /// <summary>How a phase's warm-up ended.</summary>
    public sealed record Settled(string Phase, int Rounds, TimeSpan Elapsed, bool Quiet)
    {
        /// <summary>"jit: sync Call settled after 9 rounds in 1.6 s", or that it did not within the limit, or that it was skipped.</summary>
        public string Summary() => Rounds == 0
            ? $"jit: {Phase} not settled (--jit-settle 0)"
            : string.Create(CultureInfo.InvariantCulture, $"jit: {Phase} {(Quiet ? "settled" : "still compiling")} after {Rounds} rounds in {Elapsed.TotalSeconds:F1} s");
    }
}
