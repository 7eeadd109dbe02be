using System.Buffers.Binary;
using System.Globalization;
using System.Runtime.InteropServices;
using PageRange.Memory;
using PageRange.Testing;
using PageRange.Transport;

namespace PageRange.TestHost;

/// <summary>
/// The transport's cross-process scenario: <c>transport-connect &lt;name&gt;</c> connects a real
/// <see cref="PageRangeConnection"/> to the test's listener and serves it. Flags:
/// <list type="bullet">
/// <item><c>--uid N</c>: drop privileges to uid and gid N first; <c>--allow-uid N</c>: add N to AllowedUids.</item>
/// <item><c>--receivers N</c>: receiving threads (default 1); <c>--wait Park|SpinThenPark</c>; <c>--park-timeout-ms N</c> (50 by default); <c>--region-size N</c>.</item>
/// </list>
/// It prints <c>connected: &lt;peer pid&gt; &lt;MaxMessageSize&gt; &lt;MaxOnewayMessageSize&gt;</c> (or <c>refused: ...</c>),
/// serves the codes of <see cref="Codes"/> on its receiving threads and answers stdin commands, one line each:
/// <c>pause</c>, <c>resume</c>, <c>stats</c>, <c>fence</c> (whether its writer publishes without a fence), <c>free-fence</c> (whether it frees without one), <c>send-stream N</c> (0: until it fails), <c>corrupt bad-record|bad-tail|bad-free-tail</c>,
/// <c>live</c>, <c>scan</c>, <c>quit</c>.
/// </summary>
internal static class TransportScenarios
{
    private static readonly TimeSpan s_bound = TimeSpan.FromSeconds(60);

    /// <summary>What the host does with a transaction; mirrored by <c>TransportHost.Codes</c> in the tests.</summary>
    internal static class Codes
    {
        /// <summary>Two-way: replies with the request's bytes.</summary>
        public const uint Echo = 1;

        /// <summary>Oneway: a stream message (<see cref="StreamMessage"/>), checked for order and checksum.</summary>
        public const uint Stream = 2;

        /// <summary>Two-way: calls <see cref="Echo"/> back into the caller with the request's bytes, replies with that reply.</summary>
        public const uint Nested = 3;

        /// <summary>Two-way: waits for <see cref="Transaction.CallCancelled"/>, prints <c>cancelled:</c>, then replies late.</summary>
        public const uint WaitCancelled = 4;

        /// <summary>Two-way: prints <c>holding:</c> and never replies (until the caller is gone).</summary>
        public const uint Hold = 5;

        /// <summary>Two-way: replies with the request's bytes, then exits at once.</summary>
        public const uint ReplyThenExit = 6;
    }

    public static int Connect(string[] args) => RunAsync(args).GetAwaiter().GetResult();

    private static async Task<int> RunAsync(string[] args)
    {
        string name = args[1];
        var flags = new Dictionary<string, string>(StringComparer.Ordinal);
        for (int i = 2; i + 1 < args.Length; i += 2)
        {
            flags[args[i]] = args[i + 1];
        }
        if (flags.TryGetValue("--uid", out string? uidText))
        {
            ControlScenarios.DropPrivileges(uint.Parse(uidText, CultureInfo.InvariantCulture));
        }
        var options = new PageRangeOptions
        {
            RegionSize = flags.TryGetValue("--region-size", out string? size) ? long.Parse(size, CultureInfo.InvariantCulture) : PageRangeOptions.DefaultRegionSize,
            WaitStrategy = flags.TryGetValue("--wait", out string? wait) ? Enum.Parse<WaitStrategy>(wait) : WaitStrategy.SpinThenPark,
            ParkTimeout = TimeSpan.FromMilliseconds(flags.TryGetValue("--park-timeout-ms", out string? park) ? int.Parse(park, CultureInfo.InvariantCulture) : 50),
            RegionFullTimeout = TimeSpan.FromSeconds(30),
        };
        if (flags.TryGetValue("--allow-uid", out string? allowed))
        {
            options.AllowedUids.Add(uint.Parse(allowed, CultureInfo.InvariantCulture));
        }
        int receivers = flags.TryGetValue("--receivers", out string? count) ? int.Parse(count, CultureInfo.InvariantCulture) : 1;
        Console.WriteLine($"uid: {Interop.GetEffectiveUserId()}");

        PageRangeConnection connection;
        try
        {
            using var timeout = new CancellationTokenSource(s_bound);
            connection = await PageRangeConnection.ConnectAsync(name, options, timeout.Token);
        }
        catch (ConnectionRefusedException refused)
        {
            Console.WriteLine($"refused: {refused.Message}");
            return 0;
        }

        await using (connection)
        {
            Console.WriteLine($"connected: {connection.PeerPid} {connection.MaxMessageSize} {connection.MaxOnewayMessageSize}");
            var server = new Server(connection, receivers);
            server.Start();
            return await server.CommandLoopAsync();
        }
    }

    // The process ends with the server: its events and sources die with it.
    [System.Diagnostics.CodeAnalysis.SuppressMessage("Design", "CA1001", Justification = "Lives as long as the process.")]
    private sealed class Server(PageRangeConnection connection, int receivers)
    {
        private readonly ManualResetEventSlim _resumed = new(true);
        private readonly SemaphoreSlim _pausedThreads = new(0);
        private CancellationTokenSource _pause = new();
        private volatile bool _paused;
        private long _streamReceived;
        private long _streamNext;
        private long _streamErrors;
        private int _inOneway;

        public void Start()
        {
            for (int i = 0; i < receivers; i++)
            {
                new Thread(ReceiveLoop) { IsBackground = true, Name = $"receiver {i}" }.Start();
            }
        }

        public async Task<int> CommandLoopAsync()
        {
            while (await Console.In.ReadLineAsync() is { } line)
            {
                string[] words = line.Split(' ');
                switch (words[0])
                {
                    case "quit":
                        return 0;
                    case "pause":
                        _resumed.Reset();
                        _paused = true;
                        await _pause.CancelAsync();
                        for (int i = 0; i < receivers; i++)
                        {
                            if (!await _pausedThreads.WaitAsync(s_bound))
                            {
                                throw new TimeoutException("A receiving thread did not pause.");
                            }
                        }
                        Console.WriteLine($"paused: {Interlocked.Read(ref _streamReceived)}");
                        break;
                    case "resume":
                        _pause = new CancellationTokenSource();
                        _paused = false;
                        // The answer first: a receiver let go by the Set may print at once (receiver-ended, when the
                        // connection closed meanwhile), and a test reading up to "resumed: " would skip that line.
                        Console.WriteLine("resumed: ok");
                        _resumed.Set();
                        break;
                    case "fence":
                        Console.WriteLine($"fence: {(connection.Outbound.RingsWithoutFence ? "none" : connection.Outbound.RingsWithoutFenceWhileAnnounced ? "while-announced" : "full")}");
                        break;
                    case "free-fence":
                        Console.WriteLine($"free-fence: {(connection.Inbound.FreesRingWithoutFence ? "none" : "full")}");
                        break;
                    case "stats":
                        Console.WriteLine($"stats: {Interlocked.Read(ref _streamReceived)} {Interlocked.Read(ref _streamNext)} {Interlocked.Read(ref _streamErrors)}");
                        break;
                    case "send-stream":
                        SendStream(long.Parse(words[1], CultureInfo.InvariantCulture));
                        break;
                    case "corrupt":
                        Corrupt(words[1]);
                        Console.WriteLine("corrupted: ok");
                        break;
                    case "live":
                        connection.Outbound.DrainFrees();
                        Console.WriteLine($"live: {connection.Outbound.LiveBuffers} {connection.LiveIncomingTransactions}");
                        break;
                    case "scan":
                        connection.Outbound.DrainFrees();
                        long freed = Shrinker.Shared.Scan(long.MaxValue);
                        Console.WriteLine($"scanned: {freed} {connection.Outbound.Region.ResidentBytes} {connection.Outbound.Layout.HeaderBytes}");
                        break;
                    default:
                        Console.Error.WriteLine($"unknown command '{line}'");
                        return 2;
                }
            }
            return 0;
        }

        private void ReceiveLoop()
        {
            while (true)
            {
                if (_paused)
                {
                    _pausedThreads.Release();
                    _resumed.Wait();
                    continue;
                }
                Transaction transaction;
                try
                {
                    transaction = connection.Receive(_pause.Token);
                }
                catch (OperationCanceledException)
                {
                    continue;
                }
                catch (PageRangeException error)
                {
                    Console.WriteLine($"receiver-ended: {error.GetType().Name}: {error.Message}");
                    return;
                }
                catch (ObjectDisposedException)
                {
                    return;
                }
                using (transaction)
                {
                    try
                    {
                        Handle(transaction);
                    }
                    catch (PageRangeException error)
                    {
                        Console.WriteLine($"handler-failed: {error.GetType().Name}: {error.Message}");
                    }
                }
            }
        }

        private void Handle(Transaction transaction)
        {
            switch (transaction.Code)
            {
                case Codes.Echo:
                    transaction.Reply(transaction.Payload);
                    break;
                case Codes.Stream:
                    CheckStream(transaction);
                    break;
                case Codes.Nested:
                    using (Transaction inner = connection.Call(Codes.Echo, transaction.Payload, s_bound))
                    {
                        if (!inner.Payload.SequenceEqual(transaction.Payload))
                        {
                            Console.WriteLine("nested-mismatch: the nested reply differs from the request");
                        }
                        transaction.Reply(inner.Payload);
                    }
                    break;
                case Codes.WaitCancelled:
                    Console.WriteLine($"waiting: {transaction.Id}");
                    bool fired = transaction.CallCancelled.WaitHandle.WaitOne(s_bound);
                    Console.WriteLine($"cancelled: {transaction.Id} {fired}");
                    transaction.Reply("late"u8);
                    break;
                case Codes.Hold:
                    Console.WriteLine($"holding: {transaction.Id}");
                    connection.PeerDied.WaitHandle.WaitOne(s_bound);
                    break;
                case Codes.ReplyThenExit:
                    transaction.Reply(transaction.Payload);
                    // No disposal, no flush of anything: the process just ends, as a crash right after the reply would.
                    Environment.Exit(0);
                    break;
                default:
                    Console.WriteLine($"unknown-code: {transaction.Code}");
                    break;
            }
        }

        private void CheckStream(Transaction transaction)
        {
            // Oneway transactions are handed out one at a time, whatever the number of receiving threads.
            if (Interlocked.Increment(ref _inOneway) != 1)
            {
                Interlocked.Increment(ref _streamErrors);
            }
            ulong? sequence = StreamMessage.Check(transaction.Payload);
            if (sequence is not { } received || Interlocked.Exchange(ref _streamNext, (long)received + 1) != (long)received)
            {
                Interlocked.Increment(ref _streamErrors);
            }
            Interlocked.Increment(ref _streamReceived);
            Interlocked.Decrement(ref _inOneway);
        }

        private void SendStream(long count)
        {
            byte[] buffer = new byte[StreamMessage.LengthOf(60)];
            ulong sequence = 0;
            try
            {
                for (; count == 0 || (long)sequence < count; sequence++)
                {
                    Span<byte> message = buffer.AsSpan(0, StreamMessage.LengthOf(sequence));
                    StreamMessage.Write(message, sequence);
                    connection.SendOneway(Codes.Stream, message);
                }
                Console.WriteLine($"sent: {sequence}");
            }
            catch (PageRangeException error)
            {
                Console.WriteLine($"send-failed: {sequence} {error.GetType().Name}: {error.Message}");
            }
        }

        /// <summary>Writes what an honest writer never would into the shared rings, behind the channels' backs.</summary>
        private void Corrupt(string kind)
        {
            OutboundChannel outbound = connection.Outbound;
            RegionLayout layout = outbound.Layout;
            ulong tail = outbound.Sent;
            switch (kind)
            {
                case "bad-record":
                    // A record whose buffer lies past the end of the data area, published with an honest tail.
                    var record = new TransactionRecordLayout
                    {
                        TransactionId = 0xBAD,
                        BufferOffset = (ulong)layout.DataSize + 4096,
                        Length = 8,
                        Code = Codes.Echo,
                        Flags = (uint)TransactionFlags.Oneway,
                    };
                    long slot = layout.TxRingOffset + ((long)(tail & (ulong)(layout.TxRingCapacity - 1)) * TransactionRecordLayout.Size);
                    MemoryMarshal.Write(outbound.Region.GetSpan(slot, TransactionRecordLayout.Size), in record);
                    StoreWord(outbound.Region, RegionHeaderLayout.TxTailOffset, tail + 1);
                    break;
                case "bad-tail":
                    // A tail more than a ring ahead of the receiver's head.
                    StoreWord(outbound.Region, RegionHeaderLayout.TxTailOffset, tail + ((ulong)layout.TxRingCapacity * 4));
                    break;
                case "bad-free-tail":
                    // In our own region, where we produce frees for the test process: a free ring tail far ahead.
                    InboundChannel inbound = connection.Inbound;
                    StoreWord(inbound.Region, RegionHeaderLayout.FreeTailOffset, inbound.Freed + ((ulong)inbound.Layout.FreeRingCapacity * 4));
                    break;
                default:
                    throw new ArgumentException($"unknown corruption '{kind}'");
            }
        }

        private static void StoreWord(SharedRegion region, int offset, ulong value)
        {
            ref ulong word = ref MemoryMarshal.Cast<byte, ulong>(region.GetSpan(offset, sizeof(ulong)))[0];
            // Release: as an honest producer's tail store, so the record above is visible first.
            Volatile.Write(ref word, value);
        }
    }
}
