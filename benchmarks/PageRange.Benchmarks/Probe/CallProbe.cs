using System.Buffers;
using System.CommandLine;
using System.Diagnostics;
using MessagePack;
using PageRange.Benchmarks.CrossProcess;
using PageRange.Serialization;
using PageRange.Transport;

namespace PageRange.Benchmarks.Probe;

/// <summary>
/// <c>call-probe</c>: a synchronous call's work per round trip, phase by phase, in one process and on one thread (a
/// connection to a listener of this process): the client sends the request, the server receives it and replies, the
/// client takes the reply, reads it and disposes it. Every line each phase reads is in this core's cache, so the figures
/// are the library's own instructions per round trip, without the cache-line transfers of two processes; a
/// cross-process round trip is their sum plus those transfers and the waits. Also reports the bytes allocated.
/// </summary>
internal static class CallProbe
{
    internal const string CommandName = "call-probe";

    private static readonly Option<int> s_calls = OptionRules.Positive(new Option<int>("--calls")
    {
        Description = "Round trips per round.",
        DefaultValueFactory = _ => 1_000_000,
        HelpName = "n",
    });

    private static readonly Option<int> s_rounds = ProbeSetup.RoundsOption();

    private static readonly Option<int> s_size = ProbeSetup.SizeOption("Bytes of the request's and of the reply's payload.");

    private static readonly Option<bool> s_noInline = new("--no-inline")
    {
        Description = "Send small payloads in buffers, not inline in the ring (the path before protocol version 7), to compare both in one build.",
    };

    private static readonly Option<bool> s_typed = new("--typed")
    {
        Description = "Typed calls: the cross-process benchmark's MessagePack message (a sequence number and --size bytes), serialized, " +
            "deserialized in place by the server and replied to as PageRangeMessagePack's Call and Reply do.",
    };

    public static Command CreateCommand()
    {
        var command = new Command(CommandName,
            "A synchronous call's work per round trip, phase by phase (client send, server receive, server reply and " +
            "dispose, client take, read and dispose), on one thread of one process (no cache-line transfers), and the " +
            "bytes allocated per round trip. Not a timed test.")
        {
            s_calls, s_rounds, s_size, s_noInline, s_typed,
        };
        command.SetAction((parse, _) => RunAsync(parse.GetValue(s_calls), parse.GetValue(s_rounds), parse.GetValue(s_size), !parse.GetValue(s_noInline), parse.GetValue(s_typed)));
        return command;
    }

    private static async Task<int> RunAsync(int calls, int rounds, int size, bool inline, bool typed)
    {
        await using ProbeSetup setup = await ProbeSetup.ConnectAsync(CommandName, inline: inline).ConfigureAwait(false);
        PageRangeConnection client = setup.Client;
        PageRangeConnection server = setup.Server;
        byte[] payload = new byte[size];
        var message = new BenchMessage { Data = payload };
        var parcel = new ArrayBufferWriter<byte>(4096);
        Console.WriteLine($"call-probe: {size} B requests and replies{(inline ? "" : ", no payload inline")}{(typed ? ", typed (MessagePack)" : "")}, {calls:N0} calls per round, pid {Environment.ProcessId}, " +
            $"{Environment.ProcessorCount} cores");
        Console.WriteLine($"clock: {TimestampCost():F1} ns per Stopwatch.GetTimestamp (one is taken per phase, included below)");
        ulong sum = 0;
        for (int round = 1; round <= rounds; round++)
        {
            long send = 0, receive = 0, reply = 0, take = 0;
            long allocatedBefore = GC.GetAllocatedBytesForCurrentThread();
            long t0 = Stopwatch.GetTimestamp();
            for (int i = 0; i < calls; i++)
            {
                PendingCall call;
                if (typed)
                {
                    // As PageRangeMessagePack.Call's small message: serialized into a reused parcel, sent by copy.
                    message.Seq = i;
                    parcel.ResetWrittenCount();
                    MessagePackSerializer.Serialize(parcel, message, PageRangeMessagePack.DefaultOptions);
                    call = client.SendCallForProbe(BenchCodes.Ping, parcel.WrittenSpan);
                }
                else
                {
                    call = client.SendCallForProbe(BenchCodes.Ping, payload);
                }
                long t1 = Stopwatch.GetTimestamp();
                Transaction request = server.Receive();
                long t2 = Stopwatch.GetTimestamp();
                using (request)
                {
                    if (typed)
                    {
                        // As the cross-process peer: deserialized in place, replied to with the typed reply.
                        request.Reply(request.Deserialize<BenchMessage>());
                    }
                    else
                    {
                        request.Reply(request.Payload);
                    }
                }
                long t3 = Stopwatch.GetTimestamp();
                using (Transaction answer = client.FinishCall(call, timeout: null, CancellationToken.None))
                {
                    // As PageRangeMessagePack.Call: the reply deserialized with its bytes copied (it is freed on return).
                    sum += typed
                        ? Checksum.Of(PageRangeMessagePack.DeserializeCore<BenchMessage>(answer, options: null, sliceInPlace: false).Data.Span)
                        : Checksum.Of(answer.Payload);
                }
                long t4 = Stopwatch.GetTimestamp();
                send += t1 - t0;
                receive += t2 - t1;
                reply += t3 - t2;
                take += t4 - t3;
                t0 = t4;
            }
            long allocated = GC.GetAllocatedBytesForCurrentThread() - allocatedBefore;
            double perCall = 1e9 / Stopwatch.Frequency / calls;
            Console.WriteLine(
                $"round {round}: client send {send * perCall:F1} ns, server receive {receive * perCall:F1} ns, server reply+dispose " +
                $"{reply * perCall:F1} ns, client take+read+dispose {take * perCall:F1} ns; round trip {(send + receive + reply + take) * perCall:F1} ns; " +
                $"allocated {allocated / (double)calls:F3} B per call");
        }
        // Keeps the reads of the replies from being optimized away.
        GC.KeepAlive(sum);
        return 0;
    }

    private static double TimestampCost()
    {
        const int Count = 1_000_000;
        long sink = 0;
        long started = Stopwatch.GetTimestamp();
        for (int i = 0; i < Count; i++)
        {
            sink += Stopwatch.GetTimestamp();
        }
        long elapsed = Stopwatch.GetTimestamp() - started;
        GC.KeepAlive(sink);
        return elapsed * 1e9 / Stopwatch.Frequency / Count;
    }
}
