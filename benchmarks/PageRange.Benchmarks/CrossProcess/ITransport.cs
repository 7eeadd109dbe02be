namespace PageRange.Benchmarks.CrossProcess;

/// <summary>The measuring side of one transport: the same four operations for every transport, so the workloads are identical.</summary>
internal interface IHostTransport : IDisposable
{
    /// <summary>The transport, as the CSV names it: <c>pagerange-raw</c>, <c>unix-socket</c>, ...</summary>
    string Transport { get; }

    /// <summary>How it waits: a PageRange wait strategy, or <c>blocking</c> for the kernel's transports.</summary>
    string Mode { get; }

    /// <summary>Sends <paramref name="payload"/>, waits for the peer's echo, and returns the checksum of the reply (touching every byte).</summary>
    ulong RoundTrip(BenchPayload payload);

    /// <summary>
    /// Sends <paramref name="payload"/> as a oneway message, waits for the peer's oneway echo of it, and returns the
    /// checksum of the echo. A transport without oneway messages of its own (a byte stream, the floor's rings) sends
    /// exactly what <see cref="RoundTrip"/> sends.
    /// </summary>
    ulong OnewayRoundTrip(BenchPayload payload);

    /// <summary>Sends <paramref name="payload"/> <paramref name="count"/> times without waiting for the peer.</summary>
    /// <remarks>
    /// The loop is the transport's own, so one interface call covers a batch: a per-message interface call in the
    /// harness's loop was compiled from whichever workload ran first (after a ping-pong, its loop for oneways had no
    /// profile, so no guarded devirtualization: a stub dispatch per message for every transport).
    /// </remarks>
    void SendOneways(BenchPayload payload, int count);

    /// <summary>Ends the peer's serve session once it has handled everything sent before, and returns what it saw.</summary>
    StopReport Stop();

    /// <summary>Whether this transport sends messages of <paramref name="size"/> bytes: a struct has one size; the others send any.</summary>
    bool Carries(int size) => true;
}

/// <summary>The answering side of one transport.</summary>
internal interface IPeerTransport : IDisposable
{
    /// <summary>Echoes pings and checksums oneway messages until a stop, then replies with the session's report.</summary>
    void Serve();
}

/// <summary>Counts what a peer saw in one serve session.</summary>
internal struct ServeTally
{
    public long Messages;
    public long Bytes;
    public ulong Checksum;

    public void Add(ReadOnlySpan<byte> payload)
    {
        Messages++;
        Bytes += payload.Length;
        Checksum += CrossProcess.Checksum.Of(payload);
    }

    /// <summary>An echoed ping: counted; its bytes are checked by the host, which checksums the echo.</summary>
    public void AddEcho(int length)
    {
        Messages++;
        Bytes += length;
    }

    public readonly StopReport Report => new(Messages, Bytes, Checksum);
}
