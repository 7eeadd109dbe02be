using System.CommandLine;
using System.Diagnostics;
using PageRange.Benchmarks.CrossProcess;
using PageRange.Serialization;
using PageRange.Transport;

namespace PageRange.Benchmarks.Probe;

/// <summary>
/// <c>stream-probe</c>: a oneway stream's send and receive work per message, each side timed on its own, in one process
/// and on one thread (a connection to a listener of this process): a batch of small oneways is sent, then received,
/// read and disposed, again and again. Every line the receiver reads is in this core's cache, so the figures are the
/// library's instructions per message, without the cache-line transfers of two processes; a cross-process stream is
/// bounded by the slower side plus those transfers. Also reports the bytes this thread allocated per message.
/// </summary>
internal static class StreamProbe
{
    internal const string CommandName = "stream-probe";

    private static readonly Option<int> s_batch = OptionRules.Positive(new Option<int>("--batch")
    {
        Description = "Oneway messages sent, then received, per batch (packs of small messages form within a batch).",
        DefaultValueFactory = _ => 150,
        HelpName = "n",
    });

    private static readonly Option<int> s_batches = OptionRules.Positive(new Option<int>("--batches")
    {
        Description = "Batches per round.",
        DefaultValueFactory = _ => 20_000,
        HelpName = "n",
    });

    private static readonly Option<int> s_rounds = ProbeSetup.RoundsOption();

    private static readonly Option<int> s_size = ProbeSetup.SizeOption("Bytes of each message's payload.");

    private static readonly Option<string> s_receive = new("--receive")
    {
        Description = "How the messages are received: 'single' (Receive, one transaction per call) or 'batch' (ReceiveBatch with a handler).",
        DefaultValueFactory = _ => "single",
        HelpName = "single|batch",
    };

    private static readonly Option<bool> s_typed = new("--typed")
    {
        Description = "Send and receive the MessagePack message of the cross-process msgpack mode (a class with a sequence number and the payload as ReadOnlyMemory<byte>, read in place) instead of raw bytes; with 'single' receives only.",
    };

    private static readonly Option<bool> s_struct = new("--struct")
    {
        Description = "Send and receive a 64-byte unmanaged struct (a sequence number and 56 bytes) with SendOnewayStruct and ReadStruct instead of raw bytes; with 'single' receives and the default size only.",
    };

    private static readonly Option<bool> s_twoThreads = new("--two-threads")
    {
        Description = "Send on this thread while a second thread receives (one transaction per Receive), as two processes do but in one: each round reports the stream's messages per second, so a cost that only shows across cores can be probed without a second process.",
    };

    public static Command CreateCommand()
    {
        var command = new Command(CommandName,
            "A oneway stream's send and receive work per message, each timed on its own, on one thread of one process (no " +
            "cache-line transfers), and the bytes allocated per message. Not a timed test.")
        {
            s_batch, s_batches, s_rounds, s_size, s_receive, s_typed, s_struct, s_twoThreads,
        };
        s_receive.AcceptOnlyFromAmong("single", "batch");
        command.SetAction((parse, _) => RunAsync(
            parse.GetValue(s_batch), parse.GetValue(s_batches), parse.GetValue(s_rounds), parse.GetValue(s_size), parse.GetValue(s_receive) == "batch",
            parse.GetValue(s_typed), parse.GetValue(s_struct), parse.GetValue(s_twoThreads)));
        return command;
    }

    [System.Diagnostics.CodeAnalysis.UnconditionalSuppressMessage("AOT", "IL3050", Justification = "A benchmark, never trimmed or compiled ahead of time.")]
    [System.Diagnostics.CodeAnalysis.UnconditionalSuppressMessage("Trimming", "IL2026", Justification = "A benchmark, never trimmed.")]
    private static async Task<int> RunAsync(int batch, int batches, int rounds, int size, bool receiveBatch, bool typed, bool asStruct, bool twoThreads)
    {
        if ((typed || asStruct || twoThreads) && receiveBatch)
        {
            Console.Error.WriteLine("stream-probe: --typed, --struct and --two-threads receive one message at a time ('single').");
            return 1;
        }
        if (asStruct && (typed || size != BenchStruct.Size))
        {
            Console.Error.WriteLine($"stream-probe: --struct sends its {BenchStruct.Size}-byte struct, alone (no --typed, no other --size).");
            return 1;
        }
        // Two threads wait for each other: spin-then-park, so a receiver that catches up does not hold a core.
        await using ProbeSetup setup = await ProbeSetup.ConnectAsync(CommandName, twoThreads ? WaitStrategy.SpinThenPark : WaitStrategy.BusySpin).ConfigureAwait(false);
        PageRangeConnection sender = setup.Client;
        PageRangeConnection receiver = setup.Server;
        byte[] payload = new byte[size];
        var message = new BenchMessage { Data = payload };
        Console.WriteLine($"stream-probe: {size} B oneways, batches of {batch}, {batches:N0} batches per round, received with " +
            $"{(receiveBatch ? "ReceiveBatch" : "Receive")}{(typed ? ", typed (MessagePack)" : asStruct ? ", as a struct (SendOnewayStruct, ReadStruct)" : "")}" +
            $"{(twoThreads ? ", on a second thread" : "")}, pid {Environment.ProcessId}, {Environment.ProcessorCount} cores");
        if (twoThreads)
        {
            for (int round = 1; round <= rounds; round++)
            {
                TwoThreadRound(sender, receiver, (long)batch * batches, typed, asStruct, message, payload, round);
            }
            return 0;
        }
        ulong sum = 0;
        var tally = new Tally();
        for (int round = 1; round <= rounds; round++)
        {
            long sendTicks = 0;
            long receiveTicks = 0;
            long allocatedBefore = GC.GetAllocatedBytesForCurrentThread();
            for (int b = 0; b < batches; b++)
            {
                long started = Stopwatch.GetTimestamp();
                for (int i = 0; i < batch; i++)
                {
                    SendOne(sender, typed, asStruct, message, payload, i);
                }
                long sent = Stopwatch.GetTimestamp();
                if (receiveBatch)
                {
                    tally.Count = 0;
                    while (tally.Count < batch)
                    {
                        receiver.ReceiveBatch(Tally.Add, tally, Math.Min(batch - tally.Count, PageRangeConnection.MaxReceiveBatch));
                    }
                }
                else
                {
                    for (int i = 0; i < batch; i++)
                    {
                        using Transaction transaction = receiver.Receive();
                        sum += ReadOne(transaction, typed, asStruct);
                    }
                }
                long received = Stopwatch.GetTimestamp();
                sendTicks += sent - started;
                receiveTicks += received - sent;
            }
            long allocated = GC.GetAllocatedBytesForCurrentThread() - allocatedBefore;
            double messages = (double)batch * batches;
            Console.WriteLine(
                $"round {round}: send {sendTicks * 1e9 / Stopwatch.Frequency / messages:F1} ns, receive (with reading the payload and disposing) " +
                $"{receiveTicks * 1e9 / Stopwatch.Frequency / messages:F1} ns per message; allocated {allocated / messages:F3} B per message");
        }
        // Keeps the reads of the payloads from being optimized away.
        GC.KeepAlive(sum + tally.Sum);
        return 0;
    }

    /// <summary>
    /// One round of <paramref name="messages"/> oneways sent on this thread while a second thread receives, reads and
    /// disposes them; prints the stream's rate and the bytes both threads allocated per message.
    /// </summary>
    [System.Diagnostics.CodeAnalysis.UnconditionalSuppressMessage("AOT", "IL3050", Justification = "A benchmark, never trimmed or compiled ahead of time.")]
    [System.Diagnostics.CodeAnalysis.UnconditionalSuppressMessage("Trimming", "IL2026", Justification = "A benchmark, never trimmed.")]
    private static void TwoThreadRound(
        PageRangeConnection sender, PageRangeConnection receiver, long messages, bool typed, bool asStruct, BenchMessage message, byte[] payload, int round)
    {
        ulong sum = 0;
        Exception? failure = null;
        var receiving = new Thread(() =>
        {
            try
            {
                for (long i = 0; i < messages; i++)
                {
                    using Transaction transaction = receiver.Receive();
                    sum += ReadOne(transaction, typed, asStruct);
                }
            }
            catch (Exception error) when (error is PageRangeException or ObjectDisposedException)
            {
                failure = error;
            }
        })
        { Name = "stream-probe receiver", IsBackground = true };
        long allocatedBefore = GC.GetTotalAllocatedBytes(precise: true);
        long started = Stopwatch.GetTimestamp();
        receiving.Start();
        for (long i = 0; i < messages; i++)
        {
            SendOne(sender, typed, asStruct, message, payload, i);
        }
        receiving.Join();
        double seconds = Stopwatch.GetElapsedTime(started).TotalSeconds;
        long allocated = GC.GetTotalAllocatedBytes(precise: true) - allocatedBefore;
        if (failure is not null)
        {
            throw new InvalidOperationException("The receiving thread failed.", failure);
        }
        Console.WriteLine(string.Create(System.Globalization.CultureInfo.InvariantCulture,
            $"round {round}: {messages / seconds / 1e6:F2} M messages/s, sent here and received on a second thread; allocated {(double)allocated / messages:F3} B per message (both threads)"));
        // Keeps the reads of the payloads from being optimized away.
        GC.KeepAlive(sum);
    }

    /// <summary>Sends the probe's message number <paramref name="sequence"/>: typed, a struct, or raw bytes.</summary>
    [System.Diagnostics.CodeAnalysis.UnconditionalSuppressMessage("AOT", "IL3050", Justification = "A benchmark, never trimmed or compiled ahead of time.")]
    [System.Diagnostics.CodeAnalysis.UnconditionalSuppressMessage("Trimming", "IL2026", Justification = "A benchmark, never trimmed.")]
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private static void SendOne(PageRangeConnection sender, bool typed, bool asStruct, BenchMessage message, byte[] payload, long sequence)
    {
        if (typed)
        {
            sender.SendOneway(message, BenchCodes.Oneway);
        }
        else if (asStruct)
        {
            sender.SendOnewayStruct(BenchCodes.Oneway, new BenchStruct(sequence));
        }
        else
        {
            sender.SendOneway(BenchCodes.Oneway, payload);
        }
    }

    /// <summary>Reads a received message as it was sent and returns the checksum of its bytes.</summary>
    [System.Diagnostics.CodeAnalysis.UnconditionalSuppressMessage("AOT", "IL3050", Justification = "A benchmark, never trimmed or compiled ahead of time.")]
    [System.Diagnostics.CodeAnalysis.UnconditionalSuppressMessage("Trimming", "IL2026", Justification = "A benchmark, never trimmed.")]
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private static ulong ReadOne(in Transaction transaction, bool typed, bool asStruct) =>
        typed ? Checksum.Of(transaction.Deserialize<BenchMessage>().Data.Span)
        : asStruct ? transaction.ReadStruct<BenchStruct>().Checksum()
        : Checksum.Of(transaction.Payload);

    /// <summary>The batch receiver's state: the messages handled in this batch and their checksum.</summary>
    private sealed class Tally
    {
        internal static readonly TransactionHandler<Tally> Add = static (tally, in transaction) =>
        {
            tally.Sum += Checksum.Of(transaction.Payload);
            tally.Count++;
        };

        internal ulong Sum;
        internal int Count;
    }
}
