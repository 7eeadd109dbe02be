using System.CommandLine;
using System.CommandLine.Parsing;
using System.Globalization;
using System.Numerics;
using PageRange;

namespace PingPong;

/// <summary>
/// The sample's command line (System.CommandLine): <c>--help</c>, every value checked, and a bad argument reported as
/// one line on stderr with exit code 2, never a stack trace.
/// </summary>
internal static class SampleCommand
{
    /// <summary>The exit code of a bad command line, as the shells' own builtins use.</summary>
    public const int UsageExitCode = 2;

    private static readonly SampleOptions s_defaults = new();

    private static readonly Option<long> s_count = Positive(new Option<long>("--count", "-n")
    {
        Description = "Round trips in each latency phase (the first 2,000 or fewer are a warm-up on top).",
        DefaultValueFactory = _ => s_defaults.Count,
    });

    private static readonly Option<int> s_size = NotNegative(new Option<int>("--size")
    {
        Description = "Bytes in each ping's body.",
        DefaultValueFactory = _ => s_defaults.Size,
    });

    private static readonly Option<int> s_streamSize = Positive(new Option<int>("--stream-size")
    {
        Description = "Bytes in each message of the oneway stream.",
        DefaultValueFactory = _ => s_defaults.StreamSize,
    });

    private static readonly Option<double> s_duration = Positive(new Option<double>("--duration")
    {
        Description = "Seconds the oneway stream runs.",
        DefaultValueFactory = _ => s_defaults.Duration.TotalSeconds,
    });

    private static readonly Option<WaitStrategy> s_wait = new("--wait")
    {
        Description = "How a waiting thread waits: busy-spin, spin-then-park or park.",
        DefaultValueFactory = _ => s_defaults.WaitStrategy,
        CustomParser = ParseWaitStrategy,
        HelpName = "busy-spin|spin-then-park|park",
    };

    private static readonly Option<double> s_jitSettle = NotNegative(new Option<double>("--jit-settle")
    {
        Description = "About this many seconds at most per phase of warm-up rounds with pauses, until neither process's JIT compiles more than a few methods a round (0: skip).",
        DefaultValueFactory = _ => s_defaults.JitSettle.TotalSeconds,
    });

    private static readonly Option<bool> s_dump = new("--dump")
    {
        Description = "Print both regions' state (buffers, pages, rings) after the run.",
    };

    private static readonly Option<bool> s_noSocket = new("--no-socket")
    {
        Description = "Skip the sync phase over a Unix domain socket (and the ratio line).",
    };

    private static readonly Option<string> s_peer = new("--peer")
    {
        Description = "Run as the peer process and connect to this listener (the sample starts its own peer).",
        Hidden = true,
    };

    private static readonly Option<long?> s_peerExitAfter = new("--peer-exit-after")
    {
        Description = "For tests: the peer exits after this many pings (0: before connecting).",
        Hidden = true,
    };

    /// <summary>The root command; <paramref name="run"/> runs with the checked options.</summary>
    public static RootCommand Create(Func<SampleOptions, Task<int>> run)
    {
        var root = new RootCommand(
            "Ping-pong between two real processes over PageRange: the sample starts itself again as the peer, measures " +
            "synchronous and async round trips of small MessagePack messages and a oneway stream, then the same sync " +
            "round trip over a Unix domain socket, and prints the ratio.")
        {
            s_count, s_size, s_streamSize, s_duration, s_wait, s_jitSettle, s_dump, s_noSocket, s_peer, s_peerExitAfter,
        };
        root.SetAction((parse, _) => run(Bind(parse)));
        return root;
    }

    /// <summary>Parses <paramref name="args"/> and runs, or prints help, or reports a bad argument with exit code 2.</summary>
    public static async Task<int> InvokeAsync(string[] args, Func<SampleOptions, Task<int>> run)
    {
        ParseResult parse = Create(run).Parse(args);
        if (parse.Errors.Count > 0)
        {
            // One line for the first mistake: a newcomer fixes that one and tries again.
            Console.Error.WriteLine($"error: {parse.Errors[0].Message.TrimEnd('.')}. See --help.");
            return UsageExitCode;
        }
        return await parse.InvokeAsync();
    }

    private static SampleOptions Bind(ParseResult parse)
    {
        long count = parse.GetValue(s_count);
        return new SampleOptions
        {
            Count = count,
            Warmup = (int)Math.Min(s_defaults.Warmup, count),
            Size = parse.GetValue(s_size),
            StreamSize = parse.GetValue(s_streamSize),
            Duration = TimeSpan.FromSeconds(parse.GetValue(s_duration)),
            WaitStrategy = parse.GetValue(s_wait),
            JitSettle = TimeSpan.FromSeconds(parse.GetValue(s_jitSettle)),
            Dump = parse.GetValue(s_dump),
            Socket = !parse.GetValue(s_noSocket),
            PeerName = parse.GetValue(s_peer),
            PeerExitAfter = parse.GetValue(s_peerExitAfter),
        };
    }

    /// <summary>The names the sample has always taken (<c>busy-spin</c>), and the enum's own (<c>BusySpin</c>).</summary>
    private static WaitStrategy ParseWaitStrategy(ArgumentResult result)
    {
        string text = result.Tokens.Count == 1 ? result.Tokens[0].Value : "";
        switch (text.Replace("-", "", StringComparison.Ordinal).ToUpperInvariant())
        {
            case "BUSYSPIN":
                return WaitStrategy.BusySpin;
            case "SPINTHENPARK":
                return WaitStrategy.SpinThenPark;
            case "PARK":
                return WaitStrategy.Park;
            default:
                result.AddError($"'{text}' is not a wait strategy for --wait: use busy-spin, spin-then-park or park");
                return default;
        }
    }

    /// <summary>Parses the option's value as a number above zero, in the invariant culture.</summary>
    private static Option<T> Positive<T>(Option<T> option)
        where T : struct, INumber<T> =>
        Number(option, value => value > T.Zero, "above zero");

    /// <summary>Parses the option's value as a number of zero or more, in the invariant culture.</summary>
    private static Option<T> NotNegative<T>(Option<T> option)
        where T : struct, INumber<T> =>
        Number(option, value => value >= T.Zero, "of zero or more");

    private const double MaxSeconds = 86_400;

    private static Option<T> Number<T>(Option<T> option, Func<T, bool> allowed, string rule)
        where T : struct, INumber<T>
    {
        // A parser of our own rather than a validator: the built-in conversion's message names a CLR type, and a
        // validator would run after a failed conversion too.
        option.CustomParser = result =>
        {
            string text = result.Tokens.Count == 1 ? result.Tokens[0].Value : "";
            // Seconds (the double options) at most a day: the sample turns them into a TimeSpan, which overflows far above
            // that (infinity parses too).
            bool seconds = typeof(T) == typeof(double);
            if (T.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out T value) && allowed(value)
                && (!seconds || double.CreateChecked(value) <= MaxSeconds))
            {
                return value;
            }
            string kind = seconds ? "a number" : "a whole number";
            string most = seconds ? string.Create(CultureInfo.InvariantCulture, $" up to {MaxSeconds}") : "";
            result.AddError($"{option.Name} takes {kind} {rule}{most}, not '{text}'");
            return default;
        };
        return option;
    }
}
