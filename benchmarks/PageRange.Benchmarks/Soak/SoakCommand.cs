using System.CommandLine;
using System.CommandLine.Parsing;
using System.Globalization;

namespace PageRange.Benchmarks.Soak;

/// <summary>
/// <c>soak [--duration SECONDS] [--seed N] [--senders N] [--life MIN-MAX] [--sample SECONDS]</c>: runs traffic against a
/// peer process for the given time, killing the peer with SIGKILL at random moments and starting a new one. Random
/// message sizes (20 B to 1 MiB, mostly small), random call/oneway mixes, calls in both directions. Every message
/// carries a checksum; the peer's replies acknowledge the oneways it has seen, so a lost or damaged message that was
/// acknowledged cannot go unnoticed. Prints resident memory, descriptors and mappings over time, then a summary, and
/// exits 1 if anything acknowledged was lost or damaged, a protocol violation happened, or descriptors leaked.
/// </summary>
/// <remarks>Not part of CI: it runs for minutes. <c>Program.cs</c> hands it <c>soak ...</c>, the peer included.</remarks>
internal static class SoakCommand
{
    public const string CommandName = "soak";

    private static readonly Option<double> s_duration = OptionRules.Positive(new Option<double>("--duration")
    {
        Description = "Seconds the soak runs.",
        DefaultValueFactory = _ => 60,
    });

    private static readonly Option<int> s_seed = new("--seed")
    {
        Description = "Seed of the random sizes, mixes and kill times: the same seed gives the same run.",
        DefaultValueFactory = _ => 1,
    };

    private static readonly Option<int> s_senders = OptionRules.Positive(new Option<int>("--senders")
    {
        Description = $"Sender threads (at most {SoakPeer.MaxStreams}).",
        DefaultValueFactory = _ => 2,
    });

    private static readonly Option<(double Min, double Max)> s_life = new("--life")
    {
        Description = "The peer's lifetime before it is killed, in seconds: MIN-MAX.",
        DefaultValueFactory = _ => (2, 8),
        CustomParser = ParseLife,
        HelpName = "min-max",
    };

    private static readonly Option<double> s_sample = OptionRules.Positive(new Option<double>("--sample")
    {
        Description = "Seconds between two samples of memory, descriptors and mappings.",
        DefaultValueFactory = _ => 10,
    });

    /// <summary>The <c>soak</c> command.</summary>
    public static Command CreateCommand()
    {
        var command = new Command(CommandName,
            "Traffic against a peer process that is killed with SIGKILL at random moments and restarted; exits 1 if " +
            "anything acknowledged was lost or damaged, a protocol violation happened, or descriptors leaked. Not part of CI.")
        {
            s_duration, s_seed, s_senders, s_life, s_sample,
        };
        command.SetAction((parse, _) => new SoakRun(Bind(parse)).RunAsync());
        return command;
    }

    /// <summary>The peer process the soak starts: <c>soak --peer NAME SEED</c>.</summary>
    public static int RunPeer(string name, string seed) => SoakPeer.Run(name, int.Parse(seed, CultureInfo.InvariantCulture));

    private static SoakSettings Bind(ParseResult parse)
    {
        (double minLife, double maxLife) = parse.GetValue(s_life);
        int senders = parse.GetValue(s_senders);
        if (senders > SoakPeer.MaxStreams)
        {
            Console.Error.WriteLine($"soak: --senders {senders} is more than the peer serves; using {SoakPeer.MaxStreams}.");
        }
        return new SoakSettings(
            TimeSpan.FromSeconds(parse.GetValue(s_duration)),
            parse.GetValue(s_seed),
            Math.Min(senders, SoakPeer.MaxStreams),
            TimeSpan.FromSeconds(minLife),
            TimeSpan.FromSeconds(maxLife),
            TimeSpan.FromSeconds(parse.GetValue(s_sample)));
    }

    private static (double Min, double Max) ParseLife(ArgumentResult result)
    {
        string text = result.Tokens.Count == 1 ? result.Tokens[0].Value : "";
        string[] parts = text.Split('-');
        if (parts.Length == 2
            && double.TryParse(parts[0], NumberStyles.Float, CultureInfo.InvariantCulture, out double min)
            && double.TryParse(parts[1], NumberStyles.Float, CultureInfo.InvariantCulture, out double max)
            && min > 0 && max >= min)
        {
            return (min, max);
        }
        result.AddError($"--life takes MIN-MAX seconds with 0 < MIN <= MAX, not '{text}'");
        return default;
    }
}
