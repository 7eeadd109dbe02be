namespace PageRange.Benchmarks.CrossProcess;

/// <summary>The transaction codes (and frame codes of the stream baselines) both processes agree on.</summary>
internal static class BenchCodes
{
    /// <summary>A round trip: the peer echoes the payload back.</summary>
    public const uint Ping = 1;

    /// <summary>A streamed message: the peer checksums it and counts it.</summary>
    public const uint Oneway = 2;

    /// <summary>Ends a serve session: the peer replies with a <see cref="StopReport"/> and goes back to its command line.</summary>
    public const uint Stop = 3;

    /// <summary>A oneway echo: the peer sends the payload back as a oneway message of the same code.</summary>
    public const uint OnewayPing = 4;
}
