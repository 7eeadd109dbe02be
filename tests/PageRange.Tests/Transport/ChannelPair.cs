using System.Numerics;
using System.Runtime.InteropServices;
using PageRange.Memory;
using PageRange.Transport;

namespace PageRange.Tests.Transport;

/// <summary>
/// Both ends of one direction in this process, as two processes would hold them: the receiver creates the region,
/// the writer opens it from a duplicate of the descriptor (its own mapping), over a private shrinker.
/// </summary>
internal sealed class ChannelPair : IDisposable
{
    internal ChannelPair(ChannelOptions options, string name = "channel-test")
    {
        Options = options;
        Shrinker = new Shrinker();
        Inbound = InboundChannel.Create(name, options);
        SharedRegion writerView = SharedRegion.Open(Interop.Dup(Inbound.Region.Handle), Inbound.Region.Size, writableBytes: Inbound.Region.Size);
        Outbound = new OutboundChannel(writerView, options, Shrinker);
    }

    internal ChannelOptions Options { get; }

    internal Shrinker Shrinker { get; }

    internal InboundChannel Inbound { get; }

    internal OutboundChannel Outbound { get; }

    /// <param name="pack">Whether small oneways share packs (the default); off for tests about one record (and one buffer
    /// or slab slot) per message.</param>
    /// <param name="inline">Whether small calls and replies carry their payload inline in the ring (off: the channel's default).</param>
    internal static ChannelOptions SmallOptions(
        int pages = 64, int rings = 64, WaitStrategy strategy = WaitStrategy.SpinThenPark, bool pack = true, TimeSpan? packWait = null,
        bool inline = false, bool? rest = null) => new()
    {
        PackSmallOneways = pack,
        RestFullPacks = rest,
        InlineSmallPayloads = inline,
        PackWait = packWait ?? ChannelOptions.Default.PackWait,
        RegionSize = (long)pages * SharedRegion.PageSize,
        TxRingCapacity = rings,
        FreeRingCapacity = rings,
        WaitStrategy = strategy,
        SpinDuration = TimeSpan.FromMicroseconds(10),
        ParkTimeout = TimeSpan.FromMilliseconds(100),
    };

    /// <summary>A view of the receiver's header (read-write in its mapping, as the peer's is).</summary>
    internal Span<byte> Header => Inbound.Region.GetSpan(0, (int)Inbound.Layout.HeaderBytes);

    internal void WriteHeader<T>(int offset, T value)
        where T : unmanaged => MemoryMarshal.Write(Header[offset..], in value);

    internal T ReadHeader<T>(int offset)
        where T : unmanaged => MemoryMarshal.Read<T>(Header[offset..]);

    /// <summary>Receives one transaction that must be there.</summary>
    internal TransactionRecord ReceiveOne()
    {
        Assert.True(Inbound.TryReceive(out TransactionRecord record), "a transaction was published");
        return record;
    }

    /// <summary>
    /// Receives everything the ring and the current pack give now, checking each payload against its id
    /// (<see cref="PayloadFor"/>, its code the <see cref="Checksum"/>), and frees each unless <paramref name="free"/> is false.
    /// </summary>
    internal List<TransactionRecord> ReceiveAllChecked(bool free = true)
    {
        var received = new List<TransactionRecord>();
        var batch = new TransactionRecord[InboundChannel.ReceiveBatch];
        int taken;
        while ((taken = Inbound.TryReceiveBatch(batch)) > 0)
        {
            foreach (TransactionRecord record in batch.AsSpan(0, taken))
            {
                ReadOnlySpan<byte> payload = Inbound.GetPayload(record);
                Assert.Equal(Checksum(payload), record.Code);
                Assert.True(payload.SequenceEqual(PayloadFor(record.TransactionId, payload.Length)), $"payload of {record.TransactionId}");
                received.Add(record);
                if (free)
                {
                    Inbound.Free(record);
                }
            }
        }
        return received;
    }

    /// <summary>Deterministic payload bytes for a transaction id.</summary>
    internal static void Fill(Span<byte> payload, ulong id)
    {
        ulong state = (id * 0x9E3779B97F4A7C15UL) | 1;
        for (int i = 0; i < payload.Length; i++)
        {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            payload[i] = (byte)state;
        }
    }

    /// <summary>A payload of <paramref name="size"/> bytes filled for <paramref name="id"/> (<see cref="Fill"/>).</summary>
    internal static byte[] PayloadFor(ulong id, int size)
    {
        byte[] payload = new byte[size];
        Fill(payload, id);
        return payload;
    }

    /// <summary>The checksum a test sends as the transaction's code.</summary>
    internal static uint Checksum(ReadOnlySpan<byte> payload)
    {
        uint crc = 0xFFFFFFFF;
        int i = 0;
        for (; i + 8 <= payload.Length; i += 8)
        {
            crc = BitOperations.Crc32C(crc, MemoryMarshal.Read<ulong>(payload[i..]));
        }
        for (; i < payload.Length; i++)
        {
            crc = BitOperations.Crc32C(crc, payload[i]);
        }
        return ~crc;
    }

    public void Dispose()
    {
        Outbound.Dispose();
        Inbound.Dispose();
    }
}
