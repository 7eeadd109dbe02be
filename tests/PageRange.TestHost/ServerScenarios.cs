using System.Buffers.Binary;
using System.Diagnostics;
using System.Globalization;
using System.Net.Sockets;
using PageRange.Memory;
using PageRange.Testing;
using PageRange.Transport;

namespace PageRange.TestHost;

/// <summary>
/// The clients of the server tests (<c>tests/PageRange.Tests/Server</c>). Each connects to the test's server and prints
/// <c>connected: ok</c>, then:
/// <list type="bullet">
/// <item><c>server-client &lt;name&gt; &lt;operations&gt; &lt;seed&gt;</c>: mixed calls (checked byte for byte) and
/// oneways of mixed sizes, then a report call that checks the server got every oneway in order; prints
/// <c>done: ops=N calls=C oneways=W max-ms=M</c> and exits 0, or <c>error: ...</c> and exits 1.</item>
/// <item><c>server-garbage &lt;name&gt;</c>: a few honest oneways, then random records published into the server's
/// ring; prints <c>garbage: written</c> and waits to be killed.</item>
/// <item><c>server-silent &lt;name&gt;</c>: connects the socket and never says a word; prints <c>silent: connected</c>.</item>
/// <item><c>server-fd-flood &lt;name&gt;</c>: completes the handshake, then sends descriptors on the control socket until it
/// is closed; prints <c>flood: N</c>.</item>
/// </list>
/// </summary>
internal static class ServerScenarios
{
    private static readonly TimeSpan s_bound = TimeSpan.FromSeconds(120);

    // Twenty processes start at once on a small shared machine: a handshake may wait its turn for a core.
    private static PageRangeOptions Options() => new() { RegionSize = 1L << 20, ConnectTimeout = TimeSpan.FromSeconds(60) };

    public static int Client(string[] args)
    {
        string name = args[1];
        int operations = int.Parse(args[2], CultureInfo.InvariantCulture);
        var random = new Random(int.Parse(args[3], CultureInfo.InvariantCulture));
        using PageRangeConnection connection = PageRangeConnection.ConnectAsync(name, Options())
            .AsTask().WaitAsync(s_bound).GetAwaiter().GetResult();
        Console.WriteLine("connected: ok");
        byte[] request = new byte[128 << 10];
        ulong oneways = 0;
        long calls = 0;
        long maxTicks = 0;
        for (int op = 0; op < operations; op++)
        {
            // Mostly small, now and then tens of pages: the sizes a service sees.
            int length = random.Next(8) == 0 ? random.Next(FaultPayload.MinLength, request.Length) : random.Next(FaultPayload.MinLength, 2048);
            Span<byte> payload = request.AsSpan(0, length);
            if (random.Next(3) == 0)
            {
                FaultPayload.Fill(payload, ++oneways);
                connection.SendOneway(ServerLoadPayload.OnewayCode, payload);
                continue;
            }
            random.NextBytes(payload);
            long started = Stopwatch.GetTimestamp();
            using (Transaction reply = connection.Call(ServerLoadPayload.EchoCode, payload, s_bound))
            {
                long took = Stopwatch.GetTimestamp() - started;
                // The first calls include the JIT of both sides; the bound is about the server's steady service.
                if (op >= 50)
                {
                    maxTicks = Math.Max(maxTicks, took);
                }
                if (!ServerLoadPayload.IsReplyTo(payload, reply.Payload))
                {
                    Console.WriteLine($"error: the reply to call {calls} ({length} bytes) is not its request's");
                    return 1;
                }
            }
            calls++;
        }
        Span<byte> expected = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(expected, oneways);
        using (Transaction report = connection.Call(ServerLoadPayload.ReportCode, expected, s_bound))
        {
            (ulong received, ulong outOfOrder, ulong corrupt) = ServerLoadPayload.ReadReport(report.Payload);
            if (received != oneways || outOfOrder != 0 || corrupt != 0)
            {
                Console.WriteLine($"error: sent {oneways} oneways; the server got {received}, {outOfOrder} out of order, {corrupt} corrupt");
                return 1;
            }
        }
        double maxMs = maxTicks * 1000.0 / Stopwatch.Frequency;
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"done: ops={operations} calls={calls} oneways={oneways} max-ms={maxMs:F1}"));
        return 0;
    }

    public static int Garbage(string[] args)
    {
        string name = args[1];
        PageRangeOptions options = Options();
        InboundChannel inbound = PageRangeConnection.CreateInbound(name, options);
        HandshakeResult handshake = ControlHandshake.ConnectAsync(name, options, inbound.Region, CancellationToken.None)
            .AsTask().WaitAsync(s_bound).GetAwaiter().GetResult();
        handshake.Control.StartWatching();
        using var outbound = new OutboundChannel(handshake.PeerRegion, new ChannelOptions
        {
            RegionSize = handshake.PeerRegion.Size,
            TxRingCapacity = handshake.PeerHello.TransactionRingCapacity,
            FreeRingCapacity = handshake.PeerHello.FreeRingCapacity,
        });
        Console.WriteLine("connected: ok");
        byte[] payload = new byte[256];
        for (ulong seq = 1; seq <= 20; seq++)
        {
            FaultPayload.Fill(payload, seq);
            outbound.TrySend((seq << 16) | 0xFFFF, ServerLoadPayload.OnewayCode, TransactionFlags.Oneway, payload);
        }
        // Random records in the next slots, published by moving the tail past them.
        SharedRegion victim = handshake.PeerRegion;
        RegionLayout layout = outbound.Layout;
        Span<byte> tailWord = victim.GetSpan(RegionHeaderLayout.TxTailOffset, 8);
        ulong tail = BinaryPrimitives.ReadUInt64LittleEndian(tailWord);
        var random = new Random(17);
        for (int k = 0; k < 4; k++)
        {
            ulong slot = (tail + (ulong)k) & (ulong)(layout.TxRingCapacity - 1);
            random.NextBytes(victim.GetSpan(layout.TxRingOffset + ((long)slot * TransactionRecordLayout.Size), TransactionRecordLayout.Size));
        }
        BinaryPrimitives.WriteUInt64LittleEndian(tailWord, tail + 4);
        Console.WriteLine("garbage: written");
        handshake.Control.PeerDied.WaitHandle.WaitOne(s_bound);
        Console.WriteLine("closed: ok");
        return 0;
    }

    public static int Silent(string[] args)
    {
        using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        socket.Connect(ControlHandshake.GetEndPoint(args[1]));
        Console.WriteLine("silent: connected");
        // Wait for the listener to give up on us (it closes the socket), or to be killed.
        byte[] one = new byte[1];
        socket.ReceiveTimeout = (int)s_bound.TotalMilliseconds;
        try
        {
            _ = socket.Receive(one);
        }
        catch (SocketException)
        {
            // Reset or timed out: either way the wait is over.
        }
        Console.WriteLine("silent: closed");
        return 0;
    }

    public static int DescriptorFlood(string[] args)
    {
        string name = args[1];
        PageRangeOptions options = Options();
        InboundChannel inbound = PageRangeConnection.CreateInbound(name, options);
        HandshakeResult handshake = ControlHandshake.ConnectAsync(name, options, inbound.Region, CancellationToken.None)
            .AsTask().WaitAsync(s_bound).GetAwaiter().GetResult();
        handshake.Control.StartWatching();
        Console.WriteLine("connected: ok");
        int sent = 0;
        try
        {
            for (; sent < 10_000; sent++)
            {
                handshake.Control.SendAsync(new CancelMessage((ulong)sent), inbound.Region.Handle, CancellationToken.None)
                    .AsTask().WaitAsync(s_bound).GetAwaiter().GetResult();
            }
        }
        catch (PageRangeException)
        {
            // The server closed the connection: the flood is over.
        }
        Console.WriteLine($"flood: {sent}");
        handshake.Control.PeerDied.WaitHandle.WaitOne(s_bound);
        return 0;
    }
}
