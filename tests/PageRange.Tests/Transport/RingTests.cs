using System.Runtime.InteropServices;
using PageRange.Memory;
using PageRange.Transport;

namespace PageRange.Tests.Transport;

public sealed class RingTests : IDisposable
{
    private const int TailOffset = 0;
    private const int HeadOffset = 64;
    private const int SlotsOffset = 128;
    private const int Capacity = 4;

    private readonly SharedRegion _region = SharedRegion.Create("ring-test", SharedRegion.PageSize);
    private readonly RingProducer<TransactionRecordLayout> _producer;
    private readonly RingConsumer<TransactionRecordLayout> _consumer;

    public RingTests()
    {
        _producer = RingProducer<TransactionRecordLayout>.Over(_region, TailOffset, HeadOffset, SlotsOffset, Capacity, "test");
        _consumer = RingConsumer<TransactionRecordLayout>.Over(_region, TailOffset, HeadOffset, SlotsOffset, Capacity, "test");
    }

    public void Dispose() => _region.Dispose();

    private ulong SharedTail
    {
        get => MemoryMarshal.Read<ulong>(_region.GetSpan(TailOffset, 8));
        set => MemoryMarshal.Write(_region.GetSpan(TailOffset, 8), in value);
    }

    private ulong SharedHead
    {
        get => MemoryMarshal.Read<ulong>(_region.GetSpan(HeadOffset, 8));
        set => MemoryMarshal.Write(_region.GetSpan(HeadOffset, 8), in value);
    }

    private static TransactionRecordLayout Record(ulong id) =>
        new() { TransactionId = id, BufferOffset = id * 8, Length = (uint)id, Code = (uint)(id * 3), Flags = 1 };

    private bool Publish(ulong id)
    {
        InPlaceStores<TransactionRecordLayout> stores = default;
        return _producer.TryPublish(ref stores, Record(id));
    }

    private ulong Take()
    {
        Assert.True(_consumer.TryPeek(out TransactionRecordLayout record));
        _consumer.Advance();
        return record.TransactionId;
    }

    [Fact]
    public void Ring_ManyLaps_DeliversEveryRecordInOrderAcrossWrapAround()
    {
        ulong next = 0;
        ulong expected = 0;
        var random = new Random(42);
        for (int round = 0; round < 1000; round++)
        {
            int toPublish = random.Next(0, Capacity + 1);
            for (int i = 0; i < toPublish && Publish(next); i++)
            {
                next++;
            }
            int toTake = random.Next(0, Capacity + 1);
            for (int i = 0; i < toTake && _consumer.TryPeek(out TransactionRecordLayout record); i++)
            {
                Assert.Equal(Record(expected), record);
                _consumer.Advance();
                expected++;
            }
        }
        Assert.True(next > 10 * Capacity, "the test wrapped around the ring many times");
        Assert.Equal(next, SharedTail);
        Assert.Equal(expected, SharedHead);
    }

    [Fact]
    public void TryPublish_RingFull_ReturnsFalseUntilTheConsumerAdvances()
    {
        for (ulong i = 0; i < Capacity; i++)
        {
            Assert.True(Publish(i));
        }
        Assert.False(Publish(99));
        Assert.Equal(0, _producer.FreeSlots());
        Assert.Equal(Capacity, _consumer.Count());
        Assert.Equal(0UL, Take());
        Assert.Equal(1, _producer.FreeSlots());
        Assert.True(Publish(4));
        Assert.False(Publish(5));
        for (ulong i = 1; i <= 4; i++)
        {
            Assert.Equal(i, Take());
        }
        Assert.False(_consumer.TryPeek(out _));
    }

    [Fact]
    public void TryPeek_WithoutAdvance_ReturnsTheSameRecordAndDoesNotFreeTheSlot()
    {
        Assert.True(Publish(7));
        Assert.True(_consumer.TryPeek(out TransactionRecordLayout first));
        Assert.True(_consumer.TryPeek(out TransactionRecordLayout second));
        Assert.Equal(first, second);
        Assert.Equal(0UL, SharedHead);
        _consumer.Advance();
        Assert.Equal(1UL, SharedHead);
    }

    [Fact]
    public void TryPublish_MakesStoresInOrder_PayloadThenRecordThenTail()
    {
        List<string> log = [];
        var stores = new RecordingStores(log, _region);
        Assert.True(_producer.TryPublish(ref stores, Record(1)));
        Assert.Equal(["payload", "record", "tail"], log);
        Assert.Equal(1UL, SharedTail);
        Assert.Equal(Record(1), MemoryMarshal.Read<TransactionRecordLayout>(_region.GetSpan(SlotsOffset, TransactionRecordLayout.Size)));
    }

    [Fact]
    public void TryPublish_RingFull_MakesNoStoreAtAll()
    {
        for (ulong i = 0; i < Capacity; i++)
        {
            Assert.True(Publish(i));
        }
        List<string> log = [];
        var stores = new RecordingStores(log, _region);
        Assert.False(_producer.TryPublish(ref stores, Record(9)));
        Assert.Empty(log);
    }

    [Theory]
    [InlineData(5UL)]            // beyond the producer's tail
    [InlineData(ulong.MaxValue)] // "negative"
    public void FreeSlots_HeadOutsideRange_ThrowsProtocolViolation(ulong badHead)
    {
        Assert.True(Publish(0));
        Assert.True(Publish(1));
        SharedHead = badHead;
        Assert.Throws<ProtocolViolationException>(() => _producer.FreeSlots());
    }

    [Fact]
    public void FreeSlots_HeadGoesBackwards_ThrowsProtocolViolation()
    {
        for (ulong i = 0; i < 3; i++)
        {
            Assert.True(Publish(i));
        }
        SharedHead = 2;
        Assert.Equal(3, _producer.FreeSlots());
        SharedHead = 1;
        Assert.Throws<ProtocolViolationException>(() => _producer.FreeSlots());
    }

    [Fact]
    public void TryPublish_PeerScribblesOverTail_ProducerKeepsItsOwnCount()
    {
        Assert.True(Publish(0));
        SharedTail = 1000;
        Assert.True(Publish(1));
        Assert.Equal(2UL, SharedTail);
        Assert.Equal(2UL, _producer.Tail);
    }

    [Theory]
    [InlineData(Capacity + 1UL)]
    [InlineData(ulong.MaxValue)]
    public void TryPeek_TailMoreThanARingAhead_ThrowsProtocolViolation(ulong badTail)
    {
        SharedTail = badTail;
        Assert.Throws<ProtocolViolationException>(() => _consumer.TryPeek(out _));
        Assert.Throws<ProtocolViolationException>(() => _consumer.Count());
    }

    [Fact]
    public void TryPeek_TailGoesBackwards_ThrowsProtocolViolation()
    {
        Assert.True(Publish(0));
        Assert.True(Publish(1));
        Assert.Equal(0UL, Take());
        Assert.Equal(1UL, Take());
        SharedTail = 1;
        Assert.Throws<ProtocolViolationException>(() => _consumer.TryPeek(out _));
    }

    [Fact]
    public void TryPeek_TailExactlyARingAhead_IsValid()
    {
        SharedTail = Capacity;
        Assert.Equal(Capacity, _consumer.Count());
        Assert.True(_consumer.TryPeek(out _));
    }

    [Fact]
    public void Over_PartsOutsideRegionOrMisaligned_ThrowArgumentException()
    {
        Assert.ThrowsAny<ArgumentException>(() => RingProducer<TransactionRecordLayout>.Over(_region, 0, 64, SharedRegion.PageSize - 64, 4, "x"));
        Assert.ThrowsAny<ArgumentException>(() => RingConsumer<TransactionRecordLayout>.Over(_region, 4, 64, 128, 4, "x"));
        Assert.ThrowsAny<ArgumentException>(() => RingConsumer<TransactionRecordLayout>.Over(_region, 0, 64, 128, 3, "x"));
    }

    /// <summary>A fake publish that logs each store and checks, at each step, that the later stores have not happened yet.</summary>
    private readonly struct RecordingStores(List<string> log, SharedRegion region) : IPublishStores<TransactionRecordLayout>
    {
        private ulong Tail => MemoryMarshal.Read<ulong>(region.GetSpan(TailOffset, 8));

        public void StorePayload()
        {
            Assert.Equal(0UL, Tail);
            Assert.Equal(default, MemoryMarshal.Read<TransactionRecordLayout>(region.GetSpan(SlotsOffset, TransactionRecordLayout.Size)));
            log.Add("payload");
        }

        public void StoreRecord(ref TransactionRecordLayout slot, in TransactionRecordLayout record)
        {
            Assert.Equal(0UL, Tail);
            log.Add("record");
            slot = record;
        }

        public void StoreTail(ref ulong tail, ulong value)
        {
            log.Add("tail");
            Volatile.Write(ref tail, value);
        }
    }
}
