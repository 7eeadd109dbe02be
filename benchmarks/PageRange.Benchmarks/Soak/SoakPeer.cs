using System.Buffers.Binary;
using PageRange.Transport;

namespace PageRange.Benchmarks.Soak;

/// <summary>
/// The soak's second process (<c>soak --peer &lt;name&gt; &lt;seed&gt;</c>): checks every message it receives, answers
/// calls with what it has seen so far, and calls back with messages of its own until it is killed or the soak closes.
/// </summary>
internal static class SoakPeer
{
    /// <summary>Oneway streams are the soak's sender threads, 0 to <see cref="MaxStreams"/> - 1.</summary>
    internal const int MaxStreams = 64;

    /// <summary>The stream of calls the peer makes.</summary>
    internal const uint PeerCallStream = 1000;

    /// <summary>
    /// A call's reply: <c>last contiguous oneway n of the caller's stream u32 | pad u32 | received u64 | gaps u64 | bad u64</c>.
    /// </summary>
    internal const int AckLength = 32;

    public static int Run(string name, int seed)
    {
        using PageRangeConnection connection = PageRangeConnection.ConnectAsync(name).AsTask().GetAwaiter().GetResult();
        var caller = new Thread(() => CallLoop(connection, seed)) { IsBackground = true, Name = "soak peer caller" };
        caller.Start();

        uint[] lastOneway = new uint[MaxStreams];
        ulong received = 0;
        ulong gaps = 0;
        ulong bad = 0;
        byte[] ack = new byte[AckLength];
        while (true)
        {
            Transaction transaction;
            try
            {
                transaction = connection.Receive();
            }
            catch (PeerDiedException)
            {
                return 0;
            }
            using (transaction)
            {
                received++;
                bool valid = SoakPayload.TryVerify(transaction.Payload, out uint stream, out uint n);
                if (transaction.IsOneway)
                {
                    if (!valid || stream >= MaxStreams)
                    {
                        bad++;
                        continue;
                    }
                    // One sender thread's oneways arrive in its order (binder hands out oneways one at a time, FIFO):
                    // a jump means messages in between were lost, a step back means one came twice.
                    uint expected = lastOneway[stream] + 1;
                    if (n > expected)
                    {
                        gaps += n - expected;
                    }
                    else if (n < expected)
                    {
                        bad++;
                    }
                    lastOneway[stream] = Math.Max(lastOneway[stream], n);
                }
                else if (transaction.IsTwoWay)
                {
                    if (!valid)
                    {
                        bad++;
                    }
                    uint callerStream = stream % MaxStreams;
                    BinaryPrimitives.WriteUInt32LittleEndian(ack, lastOneway[callerStream]);
                    BinaryPrimitives.WriteUInt64LittleEndian(ack.AsSpan(8), received);
                    BinaryPrimitives.WriteUInt64LittleEndian(ack.AsSpan(16), gaps);
                    BinaryPrimitives.WriteUInt64LittleEndian(ack.AsSpan(24), bad);
                    try
                    {
                        transaction.Reply(ack);
                    }
                    catch (PeerDiedException)
                    {
                        return 0;
                    }
                }
            }
        }
    }

    /// <summary>The other direction: calls to the soak with random sizes; its reply echoes the message's n.</summary>
    private static void CallLoop(PageRangeConnection connection, int seed)
    {
        var random = new Random(seed);
        byte[] buffer = new byte[1 << 20];
        try
        {
            for (uint n = 1; ; n++)
            {
                int length = SoakPayload.NextSize(random, buffer.Length);
                SoakPayload.Fill(buffer.AsSpan(0, length), PeerCallStream, n);
                using Transaction reply = connection.Call(2, buffer.AsSpan(0, length));
                if (reply.Length != 4 || BinaryPrimitives.ReadUInt32LittleEndian(reply.Payload) != n)
                {
                    Console.Error.WriteLine($"soak peer: reply to call {n} is wrong");
                    Environment.Exit(3);
                }
            }
        }
        catch (PeerDiedException)
        {
            // The soak closed the connection.
        }
        catch (ObjectDisposedException)
        {
            // The connection closed while we called.
        }
    }
}
