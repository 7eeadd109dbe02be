using System.Buffers.Binary;
using System.Globalization;
using System.Net.Sockets;
using PageRange.Memory;
using PageRange.Testing;
using PageRange.Transport;

namespace PageRange.TestHost;

/// <summary>
/// The processes of the continuous adversary (<c>tests/PageRange.Tests/Server/ContinuousAdversaryTests.cs</c>):
/// <list type="bullet">
/// <item><c>adversary-honest &lt;name&gt; &lt;seconds&gt; &lt;seed&gt;</c>: calls the server for that long with mixed sizes,
/// checks every reply byte for byte, counts a typed <see cref="PageRangeException"/> as a failed call (reconnecting when
/// the connection is over); prints <c>done: answered=A failed=F</c> and exits 0, or <c>error: ...</c> and exits 1 on a
/// wrong reply or an untyped error.</item>
/// <item><c>adversary-attack &lt;name&gt; &lt;kind&gt; &lt;seed&gt;</c>: one attack (see <see cref="Attack"/>); prints
/// <c>attacking: KIND</c> once it is under way, then waits to be killed or for the server to close it.</item>
/// </list>
/// </summary>
internal static class AdversaryScenarios
{
    private static readonly TimeSpan s_bound = TimeSpan.FromSeconds(120);

    private static PageRangeOptions Options() => new()
    {
        RegionSize = 1L << 20,
        ConnectTimeout = TimeSpan.FromSeconds(60),
        WaitStrategy = WaitStrategy.Park,
    };

    public static int Honest(string[] args)
    {
        string name = args[1];
        long until = Environment.TickCount64 + (long)(double.Parse(args[2], CultureInfo.InvariantCulture) * 1000);
        var random = new Random(int.Parse(args[3], CultureInfo.InvariantCulture));
        byte[] request = new byte[96 << 10];
        long answered = 0;
        long failed = 0;
        PageRangeConnection? connection = null;
        Console.WriteLine("connected: ok");
        try
        {
            while (Environment.TickCount64 < until)
            {
                int length = random.Next(8) == 0 ? random.Next(FaultPayload.MinLength, request.Length) : random.Next(FaultPayload.MinLength, 2048);
                Span<byte> payload = request.AsSpan(0, length);
                random.NextBytes(payload);
                try
                {
                    connection ??= PageRangeConnection.ConnectAsync(name, Options()).AsTask().WaitAsync(s_bound).GetAwaiter().GetResult();
                    using Transaction reply = connection.Call(ServerLoadPayload.EchoCode, payload, TimeSpan.FromSeconds(30));
                    if (!ServerLoadPayload.IsReplyTo(payload, reply.Payload))
                    {
                        Console.WriteLine($"error: the reply to a call of {length} bytes is not its request's");
                        return 1;
                    }
                    answered++;
                }
                catch (PageRangeException error)
                {
                    failed++;
                    Console.WriteLine($"failed: {error.GetType().Name}: {error.Message}");
                    if (connection is { IsPeerAlive: false })
                    {
                        connection.Dispose();
                        connection = null;
                    }
                }
            }
        }
        finally
        {
            connection?.Dispose();
        }
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"done: answered={answered} failed={failed}"));
        return 0;
    }

    /// <summary>
    /// Kinds: <c>kill-mid-call</c> (calls of every size until the test kills it), <c>garbage</c> (random records in the
    /// server's ring), <c>bad-frees</c> (frees of buffers never delivered and of unknown offsets, then a busy free ring),
    /// <c>silent</c> (a socket that never speaks), <c>fd-flood</c> (descriptors on the control socket), <c>bad-hello</c>
    /// (a first frame of random bytes), <c>cancel-flood</c> (cancel frames for unknown calls), <c>region-full</c>
    /// (calls whose replies it never frees, so the server finds its region full).
    /// </summary>
    public static int Attack(string[] args)
    {
        string name = args[1];
        string kind = args[2];
        var random = new Random(int.Parse(args[3], CultureInfo.InvariantCulture));
        switch (kind)
        {
            case "kill-mid-call":
                return KillMidCall(name, random);
            case "garbage":
                return ServerScenarios.Garbage(["server-garbage", name]);
            case "silent":
                return ServerScenarios.Silent(["server-silent", name]);
            case "fd-flood":
                return ServerScenarios.DescriptorFlood(["server-fd-flood", name]);
            case "bad-frees":
                return BadFrees(name, random);
            case "bad-hello":
                return BadHello(name, random);
            case "cancel-flood":
                return CancelFlood(name);
            case "region-full":
                return RegionFull(name, random);
            default:
                Console.WriteLine($"error: unknown attack '{kind}'");
                return 2;
        }
    }

    private static int KillMidCall(string name, Random random)
    {
        using PageRangeConnection connection = PageRangeConnection.ConnectAsync(name, Options()).AsTask().WaitAsync(s_bound).GetAwaiter().GetResult();
        Console.WriteLine("attacking: kill-mid-call");
        byte[] request = new byte[256 << 10];
        while (true)
        {
            int length = random.Next(FaultPayload.MinLength, request.Length);
            using Transaction reply = connection.Call(ServerLoadPayload.EchoCode, request.AsSpan(0, length), s_bound);
        }
    }

    private static (InboundChannel Inbound, HandshakeResult Handshake) RawConnect(string name)
    {
        PageRangeOptions options = Options();
        InboundChannel inbound = PageRangeConnection.CreateInbound(name, options);
        HandshakeResult handshake = ControlHandshake.ConnectAsync(name, options, inbound.Region, CancellationToken.None)
            .AsTask().WaitAsync(s_bound).GetAwaiter().GetResult();
        handshake.Control.StartWatching();
        return (inbound, handshake);
    }

    private static int BadFrees(string name, Random random)
    {
        (InboundChannel inbound, HandshakeResult handshake) = RawConnect(name);
        // Our own region's free ring is ours to write (we are its producer); the server reads it.
        SharedRegion region = inbound.Region;
        RegionLayout layout = inbound.Layout;
        Span<byte> tailWord = region.GetSpan(RegionHeaderLayout.FreeTailOffset, 8);
        ulong tail = BinaryPrimitives.ReadUInt64LittleEndian(tailWord);
        Console.WriteLine("attacking: bad-frees");
        long until = Environment.TickCount64 + (long)s_bound.TotalMilliseconds;
        while (!handshake.Control.PeerDied.IsCancellationRequested && Environment.TickCount64 < until)
        {
            // Frees of offsets the server never gave us (some aligned, some not), then the tail moved past them:
            // kept up for as long as the server keeps the connection, so its free ring is never idle.
            for (int k = 0; k < 4; k++)
            {
                ulong slot = (tail + (ulong)k) & (ulong)(layout.FreeRingCapacity - 1);
                Span<byte> record = region.GetSpan(layout.FreeRingOffset + ((long)slot * FreeRecordLayout.Size), FreeRecordLayout.Size);
                BinaryPrimitives.WriteUInt64LittleEndian(record, random.Next(2) == 0 ? (ulong)random.Next(0, 1 << 20) & ~4095UL : (ulong)random.NextInt64());
                BinaryPrimitives.WriteUInt64LittleEndian(record[8..], (ulong)random.NextInt64());
            }
            tail += 4;
            BinaryPrimitives.WriteUInt64LittleEndian(tailWord, tail);
            Thread.Yield();
        }
        Console.WriteLine("closed: ok");
        return 0;
    }

    private static int BadHello(string name, Random random)
    {
        using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        socket.Connect(ControlHandshake.GetEndPoint(name));
        byte[] frame = new byte[random.Next(1, 512)];
        random.NextBytes(frame);
        socket.Send(frame);
        Console.WriteLine("attacking: bad-hello");
        byte[] one = new byte[64];
        socket.ReceiveTimeout = (int)s_bound.TotalMilliseconds;
        try
        {
            while (socket.Receive(one) > 0)
            {
                // Whatever the server answers (a refusal, say) is read and ignored until it closes.
            }
        }
        catch (SocketException)
        {
            // Reset or timed out: the wait is over.
        }
        Console.WriteLine("closed: ok");
        return 0;
    }

    private static int CancelFlood(string name)
    {
        (_, HandshakeResult handshake) = RawConnect(name);
        Console.WriteLine("attacking: cancel-flood");
        try
        {
            for (ulong id = 1; id < 1_000_000 && !handshake.Control.PeerDied.IsCancellationRequested; id++)
            {
                handshake.Control.SendCancelAsync(id).AsTask().WaitAsync(s_bound).GetAwaiter().GetResult();
            }
        }
        catch (PageRangeException)
        {
            // The server closed the connection.
        }
        handshake.Control.PeerDied.WaitHandle.WaitOne(s_bound);
        Console.WriteLine("closed: ok");
        return 0;
    }

    private static int RegionFull(string name, Random random)
    {
        using PageRangeConnection connection = PageRangeConnection.ConnectAsync(name, Options()).AsTask().WaitAsync(s_bound).GetAwaiter().GetResult();
        var held = new List<Transaction>();
        byte[] request = new byte[64 << 10];
        Console.WriteLine("attacking: region-full");
        try
        {
            while (true)
            {
                // Replies kept and never disposed: their buffers fill this side's region, which the server writes.
                held.Add(connection.Call(ServerLoadPayload.EchoCode, request.AsSpan(0, random.Next(FaultPayload.MinLength, request.Length)), TimeSpan.FromSeconds(20)));
            }
        }
        catch (PageRangeException error)
        {
            Console.WriteLine($"full: {error.GetType().Name} after {held.Count}");
        }
        catch (TimeoutException)
        {
            Console.WriteLine($"full: timeout after {held.Count}");
        }
        connection.PeerDied.WaitHandle.WaitOne(s_bound);
        return 0;
    }
}
