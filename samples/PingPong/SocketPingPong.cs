using System.Diagnostics;
using System.Net.Sockets;
using HdrHistogram;
using Spectre.Console;

namespace PingPong;

/// <summary>
/// The sync phase again over a Unix domain socket, as .NET code would do it without PageRange: the same messages, the
/// same sizes, the same peer process, a blocking send and a blocking read per round trip.
/// </summary>
internal static class SocketPingPong
{
    public const string Phase = "sync Unix socket";

    public static Result Run(string name, SampleOptions options, ProgressTask progress)
    {
        using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        socket.Connect(SocketPeer.EndPointFor(name));
        var framing = new SocketFraming(socket);
        var histogram = new LongHistogram(TimeStamp.Hours(1), 3);
        var ping = new Ping(0, new byte[options.Size]);
        for (int i = 0; i < options.Warmup; i++)
        {
            RoundTrip(framing, ping with { Seq = i });
        }
        var total = Stopwatch.StartNew();
        for (long i = 0; i < options.Count; i++)
        {
            long start = Stopwatch.GetTimestamp();
            Pong pong = RoundTrip(framing, ping with { Seq = i });
            histogram.RecordValue(Stopwatch.GetTimestamp() - start);
            if (pong.Seq != i)
            {
                throw new InvalidOperationException($"Pong {pong.Seq} answered ping {i} over the socket.");
            }
            if ((i & 255) == 0)
            {
                progress.Value = i;
            }
        }
        progress.Value = options.Count;
        return Result.ForLatency(Phase, histogram, options.Count, total.Elapsed);
    }

    private static Pong RoundTrip(SocketFraming framing, Ping ping)
    {
        framing.Send(ping);
        return framing.TryReceive(out Pong pong) ? pong : throw new EndOfStreamException("The peer closed the socket.");
    }
}
