using System.Buffers.Binary;
using System.Diagnostics;
using System.Diagnostics.Metrics;
using System.Globalization;
using PageRange.Diagnostics;
using PageRange.Memory;
using PageRange.Transport;

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
    private const string Usage =
        "usage: soak [--duration SECONDS (60)] [--seed N (1)] [--senders N (2)] [--life MIN-MAX seconds (2-8)] [--sample SECONDS (10)]";

    public static async Task<int> RunAsync(string[] args)
    {
        if (args is ["--peer", string peerName, string peerSeed])
        {
            return SoakPeer.Run(peerName, int.Parse(peerSeed, CultureInfo.InvariantCulture));
        }
        SoakSettings settings;
        try
        {
            settings = SoakSettings.Parse(args);
        }
        catch (Exception error) when (error is ArgumentException or FormatException or IndexOutOfRangeException)
        {
            Console.Error.WriteLine(error.Message);
            Console.Error.WriteLine(Usage);
            return 2;
        }
        return await new SoakRun(settings).RunAsync();
    }
}

/// <summary>What the soak was asked to do.</summary>
internal sealed record SoakSettings(TimeSpan Duration, int Seed, int Senders, TimeSpan MinLife, TimeSpan MaxLife, TimeSpan Sample)
{
    public static SoakSettings Parse(string[] args)
    {
        var settings = new SoakSettings(TimeSpan.FromSeconds(60), 1, 2, TimeSpan.FromSeconds(2), TimeSpan.FromSeconds(8), TimeSpan.FromSeconds(10));
        for (int i = 0; i < args.Length; i += 2)
        {
            string value = args[i + 1];
            settings = args[i] switch
            {
                "--duration" => settings with { Duration = TimeSpan.FromSeconds(double.Parse(value, CultureInfo.InvariantCulture)) },
                "--seed" => settings with { Seed = int.Parse(value, CultureInfo.InvariantCulture) },
                "--senders" => settings with { Senders = Math.Clamp(int.Parse(value, CultureInfo.InvariantCulture), 1, SoakPeer.MaxStreams) },
                "--life" => settings with
                {
                    MinLife = TimeSpan.FromSeconds(double.Parse(value.Split('-')[0], CultureInfo.InvariantCulture)),
                    MaxLife = TimeSpan.FromSeconds(double.Parse(value.Split('-')[1], CultureInfo.InvariantCulture)),
                },
                "--sample" => settings with { Sample = TimeSpan.FromSeconds(double.Parse(value, CultureInfo.InvariantCulture)) },
                _ => throw new ArgumentException($"unknown option '{args[i]}'"),
            };
        }
        return settings;
    }
}
