using System.Runtime.InteropServices;
using PageRange.Memory;
using PageRange.Transport;

namespace PageRange.Tests.Transport;

/// <summary>
/// A peer that writes random bytes into the header and rings, at random moments: both sides either go on or throw
/// <see cref="ProtocolViolationException"/>; never another exception, never a read outside the mapping (which would
/// crash the test process).
/// </summary>
public sealed class ChannelFuzzTests(ITestOutputHelper output)
{
    private const int Cases = 3000;

    private static readonly int[] s_words =
    [
        RegionHeaderLayout.TxTailOffset, RegionHeaderLayout.TxHeadOffset,
        RegionHeaderLayout.FreeTailOffset, RegionHeaderLayout.FreeHeadOffset,
        RegionHeaderLayout.TxDoorbellSequenceOffset, RegionHeaderLayout.TxDoorbellParkedOffset,
        RegionHeaderLayout.FreeDoorbellSequenceOffset, RegionHeaderLayout.FreeDoorbellParkedOffset,
    ];

    [Fact]
    public void RandomHeaderAndRingBytes_ReaderAndWriterContinueOrThrowProtocolViolation()
    {
        var options = new ChannelOptions { RegionSize = 8L * SharedRegion.PageSize, TxRingCapacity = 8, FreeRingCapacity = 8 };
        int violations = 0;
        int received = 0;
        for (int seed = 0; seed < Cases; seed++)
        {
            try
            {
                (bool violated, int got) = RunCase(seed, options);
                violations += violated ? 1 : 0;
                received += got;
            }
            catch (Exception e) when (e is not ProtocolViolationException)
            {
                throw new InvalidOperationException($"Fuzz case {seed} failed with {e.GetType().Name}: {e.Message}", e);
            }
        }
        output.WriteLine($"{Cases} cases: {violations} ended in a protocol violation, {received} transactions received.");
        // The fuzzer is not vacuous: it both breaks the protocol and lets traffic through.
        Assert.InRange(violations, Cases / 10, Cases - (Cases / 10));
        Assert.True(received > Cases);
    }

    [Fact]
    public void RandomConfigurationBytes_OutboundChannelOpensOrThrowsProtocolViolation()
    {
        var options = new ChannelOptions { RegionSize = 8L * SharedRegion.PageSize, TxRingCapacity = 8, FreeRingCapacity = 8 };
        var random = new Random(7);
        int refused = 0;
        for (int i = 0; i < 500; i++)
        {
            using InboundChannel inbound = InboundChannel.Create("fuzz-config", options);
            Span<byte> header = inbound.Region.GetSpan(0, RegionHeaderLayout.Size);
            int writes = random.Next(0, 3);
            for (int w = 0; w < writes; w++)
            {
                header[random.Next(0, 64 + 64)] = (byte)random.Next(256);
            }
            SharedRegion view = SharedRegion.Open(Interop.Dup(inbound.Region.Handle), inbound.Region.Size, inbound.Region.Size);
            try
            {
                using var outbound = new OutboundChannel(view, options, new Shrinker());
                Assert.True(outbound.TrySend(1, 0, TransactionFlags.Oneway, [1]));
            }
            catch (ProtocolViolationException)
            {
                refused++;
            }
        }
        Assert.InRange(refused, 50, 499);
    }

    private static (bool Violated, int Received) RunCase(int seed, ChannelOptions options)
    {
        var random = new Random(seed);
        using var pair = new ChannelPair(options, "fuzz");
        long dataSize = pair.Inbound.Layout.DataSize;
        int headerBytes = (int)pair.Inbound.Layout.HeaderBytes;
        int ringsStart = pair.Inbound.Layout.TxRingOffset;
        int ringsEnd = pair.Inbound.Layout.FreeRingOffset + (options.FreeRingCapacity * FreeRecordLayout.Size);
        List<TransactionRecord> held = [];
        byte[] payload = new byte[(int)(dataSize / 4)];
        ulong nextId = 0;
        int received = 0;
        int corruptAt = random.Next(0, 30);
        try
        {
            for (int step = 0; step < 40; step++)
            {
                if (step == corruptAt)
                {
                    Corrupt(random, pair, headerBytes, ringsStart, ringsEnd);
                }
                switch (random.Next(4))
                {
                    case 0:
                        int size = random.Next(0, payload.Length);
                        TransactionFlags flags = random.Next(2) == 0 ? TransactionFlags.Oneway : TransactionFlags.TwoWay;
                        pair.Outbound.TrySend(nextId++, (uint)size, flags, payload.AsSpan(0, size));
                        break;
                    case 1:
                        if (pair.Inbound.TryReceive(out TransactionRecord record))
                        {
                            received++;
                            Assert.InRange(record.Offset, 0, dataSize);
                            Assert.InRange(record.Length, 0, dataSize - record.Offset);
                            ReadOnlySpan<byte> bytes = pair.Inbound.GetPayload(record);
                            // Touch every byte: a read outside the mapping would fault here.
                            int sum = 0;
                            foreach (byte b in bytes)
                            {
                                sum += b;
                            }
                            Assert.True(sum >= 0);
                            held.Add(record);
                        }
                        break;
                    case 2:
                        if (held.Count > 0)
                        {
                            int index = random.Next(held.Count);
                            pair.Inbound.Free(held[index]);
                            held.RemoveAt(index);
                        }
                        break;
                    default:
                        pair.Outbound.DrainFrees();
                        break;
                }
            }
            return (false, received);
        }
        catch (ProtocolViolationException)
        {
            return (true, received);
        }
    }

    private static void Corrupt(Random random, ChannelPair pair, int headerBytes, int ringsStart, int ringsEnd)
    {
        Span<byte> header = pair.Header;
        int writes = random.Next(1, 6);
        for (int i = 0; i < writes; i++)
        {
            switch (random.Next(3))
            {
                case 0:
                    // An index or doorbell word: nudged a little (plausible) or replaced (wild).
                    int word = s_words[random.Next(s_words.Length)];
                    ulong value = MemoryMarshal.Read<ulong>(header[word..]);
                    value = random.Next(2) == 0 ? value + (ulong)random.Next(-3, 12) : (ulong)random.NextInt64() * (ulong)random.Next(1, 4);
                    MemoryMarshal.Write(header[word..], in value);
                    break;
                case 1:
                    // Bytes of a ring slot.
                    int at = random.Next(ringsStart, ringsEnd - 8);
                    random.NextBytes(header.Slice(at, random.Next(1, 9)));
                    break;
                default:
                    // Anywhere in the header pages.
                    header[random.Next(0, headerBytes)] = (byte)random.Next(256);
                    break;
            }
        }
    }
}
