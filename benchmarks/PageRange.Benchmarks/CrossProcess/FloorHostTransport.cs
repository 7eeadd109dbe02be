namespace PageRange.Benchmarks.CrossProcess;

/// <summary>
/// The floor, measuring side: the same copies as PageRange's raw path (the request copied into shared memory, the
/// echo copied back, the reply checksummed in place) over a bare ring, both sides busy-spinning.
/// </summary>
internal sealed class FloorHostTransport(FloorChannel channel) : IHostTransport
{
    public string Transport => "floor";

    public string Mode => "busy-spin";

    public ulong RoundTrip(BenchPayload payload)
    {
        channel.Outbound.Send(BenchCodes.Ping, payload.Data);
        ulong checksum = Checksum.Of(channel.Inbound.Receive(out _));
        channel.Inbound.Release();
        return checksum;
    }

    // The floor's round trip is already a message out on one ring and one back on the other: two oneways.
    public ulong OnewayRoundTrip(BenchPayload payload) => RoundTrip(payload);

    public void SendOneways(BenchPayload payload, int count)
    {
        for (int i = 0; i < count; i++)
        {
            channel.Outbound.Send(BenchCodes.Oneway, payload.Data);
        }
    }

    public StopReport Stop()
    {
        channel.Outbound.Send(BenchCodes.Stop, []);
        ReadOnlySpan<byte> report = channel.Inbound.Receive(out uint code);
        if (code != BenchCodes.Stop)
        {
            throw new InvalidOperationException($"Expected the floor peer's stop report, got code {code}.");
        }
        StopReport result = StopReport.ReadFrom(report);
        channel.Inbound.Release();
        return result;
    }

    public void Dispose() => channel.Dispose();
}
