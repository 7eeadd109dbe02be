namespace PageRange.Benchmarks.CrossProcess;

/// <summary>The floor, answering side: echoes a ping by copying it from one ring into the other, checksums oneway messages in place.</summary>
internal sealed class FloorPeerTransport(FloorChannel channel) : IPeerTransport
{
    public void Serve()
    {
        var tally = new ServeTally();
        Span<byte> report = stackalloc byte[StopReport.Size];
        while (true)
        {
            ReadOnlySpan<byte> payload = channel.Inbound.Receive(out uint code);
            switch (code)
            {
                case BenchCodes.Ping:
                    tally.AddEcho(payload.Length);
                    ReplyDelay.Apply();
                    channel.Outbound.Send(BenchCodes.Ping, payload);
                    channel.Inbound.Release();
                    break;
                case BenchCodes.Oneway:
                    tally.Add(payload);
                    channel.Inbound.Release();
                    break;
                case BenchCodes.Stop:
                    channel.Inbound.Release();
                    tally.Report.WriteTo(report);
                    channel.Outbound.Send(BenchCodes.Stop, report);
                    return;
                default:
                    throw new InvalidOperationException($"Unknown code {code}.");
            }
        }
    }

    public void Dispose() => channel.Dispose();
}
