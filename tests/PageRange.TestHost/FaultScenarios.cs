using System.Buffers.Binary;
using System.Globalization;
using System.Runtime.InteropServices;
using PageRange.Testing;
using PageRange.Transport;

namespace PageRange.TestHost;

/// <summary>
/// The misbehaving peers of the fault tests (<c>tests/PageRange.Tests/CrossProcess/Fault*.cs</c>). Each connects to the
/// test's listener, prints <c>connected: ok</c>, and then:
/// <list type="bullet">
/// <item><c>fault-send-stream &lt;name&gt; &lt;seed&gt;</c>: streams checksummed oneways (and now and then a call) of random
/// sizes until it is killed.</item>
/// <item><c>fault-hold &lt;name&gt;</c>: receives everything and frees nothing, replies to nothing; prints <c>held: N</c>
/// after each transaction; waits to be killed.</item>
/// <item><c>fault-slow-reader &lt;name&gt;</c>: receives checksummed oneways; stdin <c>pause</c> stops reading (prints
/// <c>paused: N</c>), <c>resume</c> reads again (<c>resumed: ok</c>), <c>report</c> prints <c>received: N bad: B</c>,
/// <c>quit</c> exits.</item>
/// <item><c>fault-fuzz &lt;name&gt; &lt;seed&gt; &lt;cases&gt;</c>: see <see cref="Fuzz"/>.</item>
/// </list>
/// </summary>
internal static class FaultScenarios
{
    private static readonly TimeSpan s_bound = TimeSpan.FromSeconds(120);

    public static int SendStream(string[] args)
    {
        string name = args[1];
        var random = new Random(int.Parse(args[2], CultureInfo.InvariantCulture));
        using PageRangeConnection connection = Connect(name, new PageRangeOptions());
        byte[] buffer = new byte[256 << 10];
        long deadline = Environment.TickCount64 + (long)s_bound.TotalMilliseconds;
        for (ulong seq = 1; Environment.TickCount64 < deadline; seq++)
        {
            // Mostly small, sometimes many pages: a kill then often lands in the middle of a copy.
            int length = random.Next(8) == 0 ? random.Next(FaultPayload.MinLength, buffer.Length) : random.Next(FaultPayload.MinLength, 2048);
            Span<byte> payload = buffer.AsSpan(0, length);
            FaultPayload.Fill(payload, seq);
            if (random.Next(16) == 0)
            {
                connection.Call(2, payload).Dispose();
            }
            else
            {
                connection.SendOneway(1, payload);
            }
        }
        return 3;
    }

    public static int Hold(string[] args)
    {
        using PageRangeConnection connection = Connect(args[1], new PageRangeOptions());
        var held = new List<Transaction>();
        using var bound = new CancellationTokenSource(s_bound);
        while (true)
        {
            // Oneways are handed out one at a time until the previous one is disposed: take what is ready, then wait.
            held.Add(connection.Receive(bound.Token));
            Console.WriteLine($"held: {held.Count}");
        }
    }

    public static int SlowReader(string[] args)
    {
        using PageRangeConnection connection = Connect(args[1], new PageRangeOptions());
        long received = 0;
        long bad = 0;
        ulong expected = 1;
        var resume = new SemaphoreSlim(0);
        CancellationTokenSource reading = new();
        object sync = new();
        var commands = new Thread(() =>
        {
            while (Console.ReadLine() is { } line)
            {
                switch (line)
                {
                    case "pause":
                        reading.Cancel();
                        break;
                    case "resume":
                        resume.Release();
                        break;
                    case "report":
                        lock (sync)
                        {
                            Console.WriteLine($"received: {received} bad: {bad}");
                        }
                        break;
                    case "quit":
                        Environment.Exit(0);
                        break;
                    default:
                        break;
                }
            }
        })
        { IsBackground = true };
        commands.Start();

        while (true)
        {
            try
            {
                using Transaction transaction = connection.Receive(reading.Token);
                lock (sync)
                {
                    received++;
                    if (!FaultPayload.TryVerify(transaction.Payload, out ulong seq) || seq != expected)
                    {
                        bad++;
                    }
                    expected = seq + 1;
                }
            }
            catch (OperationCanceledException)
            {
                lock (sync)
                {
                    Console.WriteLine($"paused: {received}");
                }
                if (!resume.Wait(s_bound))
                {
                    return 3;
                }
                reading = new CancellationTokenSource();
                Console.WriteLine("resumed: ok");
            }
        }
    }

    /// <summary>
    /// <c>fault-fuzz &lt;name&gt; &lt;seed&gt; &lt;cases&gt;</c>: a peer built from the transport's parts that, case after
    /// case, sends an honest probe and then writes seeded random bytes into the victim's header and rings (and lies on
    /// its own free ring, which the victim reads as a writer). After each case it prints
    /// <c>case &lt;k&gt; &lt;target&gt; intact|any keep|fresh</c> and waits for the victim's verdict on stdin: <c>next</c>
    /// (same connection) or <c>reconnect</c>; after connecting it waits for <c>ready</c>. <c>intact</c> promises that nothing hostile happened on this connection
    /// yet, so the victim must get the probe intact; <c>fresh</c> says the fuzzer broke its own view and reconnects.
    /// Ends with <c>done: &lt;connections&gt;</c>.
    /// </summary>
    public static int Fuzz(string[] args)
    {
        string name = args[1];
        int seed = int.Parse(args[2], CultureInfo.InvariantCulture);
        int cases = int.Parse(args[3], CultureInfo.InvariantCulture);
        var options = new PageRangeOptions { RegionSize = PageRangeOptions.MinRegionSize, TransactionRingCapacity = 16, FreeRingCapacity = 16 };
        FuzzPeer? peer = null;
        bool clean = false;
        int connections = 0;
        for (int k = 0; k < cases; k++)
        {
            if (peer is null)
            {
                peer = FuzzPeer.ConnectAsync(name, options).GetAwaiter().GetResult();
                // The victim checks our region's header once it has its end: scribble only after that.
                if (Console.ReadLine() != "ready")
                {
                    return 2;
                }
                clean = true;
                connections++;
            }
            var random = new Random(unchecked((seed * 100_003) + k));
            (FuzzTarget target, bool hostile, bool fresh) = peer.RunCase(k, random);
            bool intact = clean && !hostile;
            clean &= !hostile;
            Console.WriteLine($"case {k} {target} {(intact ? "intact" : "any")} {(fresh ? "fresh" : "keep")}");
            string? verdict = Console.ReadLine();
            if (verdict is null or "quit")
            {
                break;
            }
            if (verdict == "reconnect" || fresh)
            {
                peer.DisposeAsync().AsTask().GetAwaiter().GetResult();
                peer = null;
            }
        }
        peer?.DisposeAsync().AsTask().GetAwaiter().GetResult();
        Console.WriteLine($"done: {connections}");
        return 0;
    }

    private static PageRangeConnection Connect(string name, PageRangeOptions options)
    {
        PageRangeConnection connection = PageRangeConnection.ConnectAsync(name, options).AsTask().WaitAsync(s_bound).GetAwaiter().GetResult();
        Console.WriteLine("connected: ok");
        return connection;
    }

    internal enum FuzzTarget
    {
        // Harmless to the victim: it copied its configuration once, never reads padding, only waits with timeouts on
        // doorbell words, and the producer rewrites a consumed slot before publishing it again.
        ConfigBytes,
        Padding,
        DoorbellWord,
        ConsumedTxSlot,
        VictimFreeSlot,

        // Hostile, the fuzzer's own view stays sound.
        ForgedProbeRecord,
        VictimFreeHead,
        BogusFrees,
        OwnTxHead,

        // Hostile, and the fuzzer's own view is broken too: it reconnects after the case.
        TxTail,
        TxHead,
        VictimFreeTail,
        OwnFreeTail,
    }

    /// <summary>The fuzzing peer's connection: its own region and channels, and the victim's region read-write.</summary>
    private sealed class FuzzPeer : IAsyncDisposable
    {
        private readonly HandshakeResult _handshake;
        private readonly InboundChannel _inbound;
        private readonly OutboundChannel _outbound;
        private readonly byte[] _probe = new byte[4096];

        private FuzzPeer(HandshakeResult handshake, InboundChannel inbound, OutboundChannel outbound)
        {
            _handshake = handshake;
            _inbound = inbound;
            _outbound = outbound;
        }

        public static async Task<FuzzPeer> ConnectAsync(string name, PageRangeOptions options)
        {
            InboundChannel inbound = PageRangeConnection.CreateInbound(name, options);
            HandshakeResult handshake;
            try
            {
                handshake = await ControlHandshake.ConnectAsync(name, options, inbound.Region, CancellationToken.None).AsTask().WaitAsync(s_bound);
            }
            catch
            {
                inbound.Dispose();
                throw;
            }
            handshake.Control.StartWatching();
            var outbound = new OutboundChannel(handshake.PeerRegion, new ChannelOptions
            {
                RegionSize = handshake.PeerRegion.Size,
                TxRingCapacity = handshake.PeerHello.TransactionRingCapacity,
                FreeRingCapacity = handshake.PeerHello.FreeRingCapacity,
            });
            return new FuzzPeer(handshake, inbound, outbound);
        }

        /// <summary>Sends the probe, then applies one or more corruptions; says what it hit and how.</summary>
        public (FuzzTarget Target, bool Hostile, bool Fresh) RunCase(int k, Random random)
        {
            try
            {
                DrainReplies();
                int length = random.Next(FaultPayload.MinLength, _probe.Length);
                FaultPayload.Fill(_probe.AsSpan(0, length), (ulong)k);
                TransactionFlags kind = random.Next(2) == 0 ? TransactionFlags.Oneway : TransactionFlags.TwoWay;
                if (!_outbound.TrySend((ulong)k + 1, 3, kind, _probe.AsSpan(0, length)))
                {
                    // The region is full of buffers the victim will never free (forged records took their place).
                    return (FuzzTarget.ConfigBytes, Hostile: true, Fresh: true);
                }
                FuzzTarget first = Pick(random);
                bool hostile = false;
                bool fresh = false;
                int more = random.Next(4) == 0 ? random.Next(1, 3) : 0;
                for (int i = 0; i <= more; i++)
                {
                    FuzzTarget target = i == 0 ? first : Pick(random);
                    Apply(target, random);
                    hostile |= target >= FuzzTarget.ForgedProbeRecord;
                    fresh |= target >= FuzzTarget.TxTail;
                }
                return (first, hostile, fresh);
            }
            catch (PageRangeException)
            {
                // Our own side saw the victim close, or our scribbles broke our view: start over.
                return (FuzzTarget.ConfigBytes, Hostile: true, Fresh: true);
            }
            catch (ObjectDisposedException)
            {
                return (FuzzTarget.ConfigBytes, Hostile: true, Fresh: true);
            }
        }

        private static FuzzTarget Pick(Random random) =>
            random.Next(100) switch
            {
                < 10 => FuzzTarget.ConfigBytes,
                < 20 => FuzzTarget.Padding,
                < 30 => FuzzTarget.DoorbellWord,
                < 40 => FuzzTarget.ConsumedTxSlot,
                < 46 => FuzzTarget.VictimFreeSlot,
                < 66 => FuzzTarget.ForgedProbeRecord,
                < 71 => FuzzTarget.VictimFreeHead,
                < 79 => FuzzTarget.BogusFrees,
                < 83 => FuzzTarget.OwnTxHead,
                < 90 => FuzzTarget.TxTail,
                < 93 => FuzzTarget.TxHead,
                < 96 => FuzzTarget.VictimFreeTail,
                _ => FuzzTarget.OwnFreeTail,
            };

        private void Apply(FuzzTarget target, Random random)
        {
            RegionLayout layout = _outbound.Layout;
            ulong probeSlot = (_outbound.Sent - 1) & (ulong)(layout.TxRingCapacity - 1);
            switch (target)
            {
                case FuzzTarget.ConfigBytes:
                    WriteRandom(Victim, random.Next(0, 64 - 8), random.Next(1, 9), random);
                    break;
                case FuzzTarget.Padding:
                    // Each of lines 1..8 holds one word at its start (8 bytes for indices, 4 for doorbells).
                    WriteRandom(Victim, (random.Next(1, 9) * 64) + 8 + random.Next(0, 48), random.Next(1, 9), random);
                    break;
                case FuzzTarget.DoorbellWord:
                    int word = random.Next(4) switch
                    {
                        0 => RegionHeaderLayout.TxDoorbellSequenceOffset,
                        1 => RegionHeaderLayout.TxDoorbellParkedOffset,
                        2 => RegionHeaderLayout.FreeDoorbellSequenceOffset,
                        _ => RegionHeaderLayout.FreeDoorbellParkedOffset,
                    };
                    int value = random.Next(4) switch { 0 => 0, 1 => -1, 2 => int.MaxValue, _ => random.Next(int.MinValue, int.MaxValue) };
                    BinaryPrimitives.WriteInt32LittleEndian(Victim.GetSpan(word, 4), value);
                    break;
                case FuzzTarget.ConsumedTxSlot:
                    ulong slot = (probeSlot + (ulong)random.Next(1, layout.TxRingCapacity)) & (ulong)(layout.TxRingCapacity - 1);
                    WriteRandom(Victim, layout.TxRingOffset + ((long)slot * TransactionRecordLayout.Size), TransactionRecordLayout.Size, random);
                    break;
                case FuzzTarget.VictimFreeSlot:
                    WriteRandom(Victim, layout.FreeRingOffset + ((long)random.Next(layout.FreeRingCapacity) * FreeRecordLayout.Size), FreeRecordLayout.Size, random);
                    break;
                case FuzzTarget.ForgedProbeRecord:
                    ForgeRecord(Victim.GetSpan(layout.TxRingOffset + ((long)probeSlot * TransactionRecordLayout.Size), TransactionRecordLayout.Size), layout, random);
                    break;
                case FuzzTarget.VictimFreeHead:
                    WriteIndex(Victim, RegionHeaderLayout.FreeHeadOffset, random);
                    break;
                case FuzzTarget.BogusFrees:
                    for (int i = random.Next(1, 4); i > 0; i--)
                    {
                        long offset = random.Next(4) switch
                        {
                            0 => random.NextInt64(),
                            1 => random.NextInt64(0, layout.DataSize) & ~7L,
                            2 => random.NextInt64(0, layout.DataSize),
                            _ => 0,
                        };
                        _inbound.Free(new TransactionRecord((ulong)random.NextInt64(), offset, 0, 0, TransactionFlags.Oneway));
                    }
                    break;
                case FuzzTarget.OwnTxHead:
                    WriteIndex(_inbound.Region, RegionHeaderLayout.TxHeadOffset, random);
                    break;
                case FuzzTarget.TxTail:
                    WriteIndex(Victim, RegionHeaderLayout.TxTailOffset, random);
                    break;
                case FuzzTarget.TxHead:
                    WriteIndex(Victim, RegionHeaderLayout.TxHeadOffset, random);
                    break;
                case FuzzTarget.VictimFreeTail:
                    WriteIndex(Victim, RegionHeaderLayout.FreeTailOffset, random);
                    break;
                case FuzzTarget.OwnFreeTail:
                    WriteIndex(_inbound.Region, RegionHeaderLayout.FreeTailOffset, random);
                    break;
                default:
                    throw new ArgumentOutOfRangeException(nameof(target));
            }
        }

        private Memory.SharedRegion Victim => _handshake.PeerRegion;

        /// <summary>Random bits in one field, a random record, or a plausible record pointing anywhere.</summary>
        private static void ForgeRecord(Span<byte> slot, RegionLayout layout, Random random)
        {
            ref TransactionRecordLayout record = ref MemoryMarshal.AsRef<TransactionRecordLayout>(slot);
            switch (random.Next(4))
            {
                case 0:
                    random.NextBytes(slot.Slice(random.Next(0, TransactionRecordLayout.Size - 4), 4));
                    break;
                case 1:
                    random.NextBytes(slot);
                    break;
                default:
                    uint[] kinds = [1, 2, 4, 8, 1 | 16, 2 | 32];
                    record.TransactionId = random.Next(3) == 0 ? record.TransactionId ^ 0xFFFF : (ulong)random.NextInt64();
                    record.Flags = kinds[random.Next(kinds.Length)];
                    record.Code = (uint)random.Next();
                    (record.Status, record.ChainId, record.Depth, record.MetadataLength, record.Reserved0, record.Reserved1) = (0, 0, 0, 0, 0, 0);
                    (record.BufferOffset, record.Length) = random.Next(5) switch
                    {
                        0 => ((ulong)layout.DataSize, 0u),
                        1 => ((ulong)layout.DataSize - 8, 8u),
                        2 => (0UL, (uint)layout.DataSize),
                        3 => ((ulong)(random.NextInt64(0, layout.DataSize) & ~7L), (uint)random.Next(0, 8192)),
                        _ => (record.BufferOffset, (uint)random.Next(0, (int)layout.DataSize)),
                    };
                    break;
            }
        }

        private static void WriteIndex(Memory.SharedRegion region, int offset, Random random)
        {
            Span<byte> word = region.GetSpan(offset, 8);
            ulong current = BinaryPrimitives.ReadUInt64LittleEndian(word);
            ulong value = random.Next(5) switch
            {
                0 => (ulong)random.NextInt64(),
                1 => current + (ulong)random.Next(1, 40),
                2 => current - (ulong)random.Next(1, 3),
                3 => ulong.MaxValue,
                _ => 0,
            };
            BinaryPrimitives.WriteUInt64LittleEndian(word, value);
        }

        private static void WriteRandom(Memory.SharedRegion region, long offset, int length, Random random) =>
            random.NextBytes(region.GetSpan(offset, length));

        /// <summary>Frees the replies the victim wrote into our region, so it always has room to answer.</summary>
        private void DrainReplies()
        {
            while (_inbound.TryReceive(out TransactionRecord record))
            {
                _inbound.Free(record);
            }
        }

        public async ValueTask DisposeAsync()
        {
            _outbound.Dispose();
            await _handshake.DisposeAsync();
            _inbound.Dispose();
        }
    }
}
