using System.Runtime.InteropServices;
using PageRange.Memory;
using PageRange.Transport;

namespace PageRange.Tests.Transport;

/// <summary>
/// A receiver that speaks the wire format with no library code: it reads transaction records and publishes frees by
/// writing the ring words and slots of its region directly, so it can do what an honest <see cref="InboundChannel"/>
/// never would (free what it has not received, keep the free ring busy for ever). Use it instead of the pair's
/// <see cref="InboundChannel"/> for the free ring: the two would disagree about the tail.
/// </summary>
internal sealed class RawReceiverPeer(ChannelPair pair)
{
    private readonly SharedRegion _region = pair.Inbound.Region;
    private readonly RegionLayout _layout = pair.Inbound.Layout;

    /// <summary>The record at position <paramref name="sequence"/> of the transaction ring, as published.</summary>
    internal TransactionRecordLayout PeekRecord(ulong sequence)
    {
        int slot = (int)(sequence & (ulong)(_layout.TxRingCapacity - 1));
        return MemoryMarshal.Read<TransactionRecordLayout>(_region.GetSpan(_layout.TxRingOffset + ((long)slot * TransactionRecordLayout.Size), TransactionRecordLayout.Size));
    }

    /// <summary>Takes <paramref name="count"/> records off the transaction ring (stores the head) without looking at them.</summary>
    internal void AdvanceTxHead(ulong count)
    {
        ref ulong head = ref Word(RegionHeaderLayout.TxHeadOffset);
        Volatile.Write(ref head, Volatile.Read(ref head) + count);
    }

    /// <summary>Publishes one free naming <paramref name="bufferOffset"/>, whatever it is.</summary>
    internal void PublishFree(ulong bufferOffset, ulong transactionId = 0)
    {
        ref ulong tail = ref Word(RegionHeaderLayout.FreeTailOffset);
        ulong next = Volatile.Read(ref tail);
        FreeSlots[(int)(next & (ulong)(_layout.FreeRingCapacity - 1))] = new FreeRecordLayout { BufferOffset = bufferOffset, TransactionId = transactionId };
        Volatile.Write(ref tail, next + 1);
    }

    /// <summary>
    /// Keeps the free ring full of frees naming <paramref name="offsets"/> in turn (valid offsets, so nothing is a
    /// protocol violation), refilling as fast as the writer consumes, until <paramref name="stop"/> is cancelled.
    /// </summary>
    /// <returns>How many frees were published.</returns>
    internal long FloodFrees(ulong[] offsets, CancellationToken stop, ManualResetEventSlim? started = null)
    {
        ref ulong tailWord = ref Word(RegionHeaderLayout.FreeTailOffset);
        ref ulong headWord = ref Word(RegionHeaderLayout.FreeHeadOffset);
        ulong capacity = (ulong)_layout.FreeRingCapacity;
        ulong tail = Volatile.Read(ref tailWord);
        ulong first = tail;
        while (!stop.IsCancellationRequested)
        {
            ulong head = Volatile.Read(ref headWord);
            Span<FreeRecordLayout> slots = FreeSlots;
            while (tail - head < capacity)
            {
                slots[(int)(tail & (capacity - 1))] = new FreeRecordLayout { BufferOffset = offsets[(int)(tail % (ulong)offsets.Length)], TransactionId = tail };
                tail++;
            }
            Volatile.Write(ref tailWord, tail);
            // The ring is full now: from here on every free the writer drains is replaced at once.
            started?.Set();
        }
        return (long)(tail - first);
    }

    private Span<FreeRecordLayout> FreeSlots =>
        MemoryMarshal.Cast<byte, FreeRecordLayout>(_region.GetSpan(_layout.FreeRingOffset, _layout.FreeRingCapacity * FreeRecordLayout.Size));

    private ref ulong Word(int offset) => ref MemoryMarshal.AsRef<ulong>(_region.GetSpan(offset, sizeof(ulong)));
}
