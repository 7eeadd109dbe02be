using System.Buffers.Binary;
using System.Diagnostics;
using System.Globalization;
using System.Net.Sockets;
using HdrHistogram;
using PageRange.Transport;

namespace PageRange.Benchmarks.Server;

/// <summary>
/// A client process of the server benchmark (<c>--server-client &lt;pagerange|socket&gt; &lt;name or path&gt; &lt;size&gt;
/// &lt;warm-up ms&gt; &lt;measure ms&gt; [wait strategy]</c>): synchronous calls of one size, back to back; prints <c>ready</c>, waits for
/// <c>go</c> on stdin (so every client measures the same interval), then <c>result &lt;calls&gt; &lt;seconds&gt;</c> and
/// <c>hist v:c v:c ...</c> (latencies in nanoseconds) for the host to merge.
/// </summary>
internal static class ServerBenchmarkClient
{
    public static int Run(string[] args)
    {
        string transport = args[0];
        string target = args[1];
        int size = int.Parse(args[2], CultureInfo.InvariantCulture);
        var warmup = TimeSpan.FromMilliseconds(double.Parse(args[3], CultureInfo.InvariantCulture));
        var measure = TimeSpan.FromMilliseconds(double.Parse(args[4], CultureInfo.InvariantCulture));
        byte[] request = new byte[size];
        new Random(size).NextBytes(request);
        WaitStrategy wait = args.Length > 5 ? Enum.Parse<WaitStrategy>(args[5]) : WaitStrategy.SpinThenPark;
        Func<bool> call = transport == "pagerange" ? PageRangeCall(target, request, wait) : SocketCall(target, request);
        Console.WriteLine("ready");
        if (Console.ReadLine() != "go")
        {
            return 2;
        }
        var histogram = new LongHistogram(TimeStamp.Seconds(10), 3);
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < warmup)
        {
            call();
        }
        long calls = 0;
        clock.Restart();
        while (clock.Elapsed < measure)
        {
            long started = Stopwatch.GetTimestamp();
            if (!call())
            {
                Console.WriteLine("error: a reply was wrong");
                return 1;
            }
            histogram.RecordValue(Math.Max(1, (Stopwatch.GetTimestamp() - started) * 1_000_000_000 / Stopwatch.Frequency));
            calls++;
        }
        double seconds = clock.Elapsed.TotalSeconds;
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"result {calls} {seconds:F4}"));
        Console.WriteLine("hist " + string.Join(' ', histogram.RecordedValues().Select(v =>
            string.Create(CultureInfo.InvariantCulture, $"{v.ValueIteratedTo}:{v.CountAtValueIteratedTo}"))));
        return 0;
    }

    private static Func<bool> PageRangeCall(string name, byte[] request, WaitStrategy wait)
    {
        PageRangeConnection connection = PageRangeConnection.ConnectAsync(name, new PageRangeOptions { RegionSize = 4L << 20, WaitStrategy = wait })
            .AsTask().WaitAsync(TimeSpan.FromSeconds(60)).GetAwaiter().GetResult();
        return () =>
        {
            using Transaction reply = connection.Call(1, request);
            return reply.Length == request.Length;
        };
    }

    private static Func<bool> SocketCall(string path, byte[] request)
    {
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        socket.Connect(new UnixDomainSocketEndPoint(path));
        byte[] frame = new byte[4 + request.Length];
        BinaryPrimitives.WriteInt32LittleEndian(frame, request.Length);
        request.CopyTo(frame, 4);
        byte[] reply = new byte[4 + request.Length];
        return () =>
        {
            SocketServer.Send(socket, frame);
            return SocketServer.ReadExactly(socket, reply)
                && BinaryPrimitives.ReadInt32LittleEndian(reply) == request.Length;
        };
    }
}
