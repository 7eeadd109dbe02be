using PageRange;

namespace PingPong;

/// <summary>What the sample was asked to do: its command line, parsed and checked by <see cref="SampleCommand"/>.</summary>
internal sealed record SampleOptions
{
    public long Count { get; init; } = 100_000;

    public int Warmup { get; init; } = 2_000;

    public int Size { get; init; } = 32;

    public int StreamSize { get; init; } = 4096;

    public TimeSpan Duration { get; init; } = TimeSpan.FromSeconds(3);

    public WaitStrategy WaitStrategy { get; init; } = WaitStrategy.SpinThenPark;

    public bool Dump { get; init; }

    /// <summary>The longest each phase's JIT warm-up may take (<see cref="PingPong.JitSettle"/>); zero skips it.</summary>
    public TimeSpan JitSettle { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>Whether the sync phase also runs over a Unix domain socket, for the ratio.</summary>
    public bool Socket { get; init; } = true;

    /// <summary>Set in the peer process: the listener's name to connect to.</summary>
    public string? PeerName { get; init; }

    /// <summary>Hidden, for tests: the peer exits after this many pings (0: before connecting).</summary>
    public long? PeerExitAfter { get; init; }
}
