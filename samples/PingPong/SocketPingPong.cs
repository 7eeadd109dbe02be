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

    public static async Task<Result> RunAsync(string name, SampleOptions options, JitSettle jit, ProgressTask progress)
    {
        using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        socket.Connect(SocketPeer.EndPointFor(name));
        var framing = new SocketFraming(socket);
        var histogram = new LongHistogram(TimeStamp.Hours(1), 3);
        var ping = new Ping(0, new byte[options.Size]);
        RoundTrips(framing, ping, histogram, options.Warmup, long.MaxValue, progress: null);
        await jit.RunAsync(Phase, progress, duration =>
        {
            RoundTrips(framing, ping, histogram, long.MaxValue, JitSettle.DeadlineAfter(duration), progress);
            return Task.CompletedTask;
        });
        histogram.Reset();
        var total = Stopwatch.StartNew();
        RoundTrips(framing, ping, histogram, options.Count, long.MaxValue, progress);
        return Result.ForLatency(Phase, histogram, options.Count, total.Elapsed);
    }

    /// <summary>Round trips until <paramref name="count"/> or the <paramref name="deadline"/> (a <see cref="Stopwatch"/> timestamp), each recorded.</summary>
    private static void RoundTrips(SocketFraming framing, Ping ping, LongHistogram histogram, long count, long deadline, ProgressTask? progress)
    {
        for (long i = 0; i < count; i++)
        {
            long start = Stopwatch.GetTimestamp();
            if (start >= deadline)
            {
                return;
            }
            Pong pong = RoundTrip(framing, ping with { Seq = i });
            histogram.RecordValue(Stopwatch.GetTimestamp() - start);
            if (pong.Seq != i)
            {
                throw new InvalidOperationException($"Pong {pong.Seq} answered ping {i} over the socket.");
            }
            if ((i & 255) == 0)
            {
                progress?.Value = i;
            }
        }
        progress?.Value = count;
    }

    private static Pong RoundTrip(SocketFraming framing, Ping ping)
    {
        framing.Send(ping);
        return framing.TryReceive(out Pong pong) ? pong : throw new EndOfStreamException("The peer closed the socket.");
    }
}
