using System.Buffers;
using System.Runtime.InteropServices;
using PageRange.Serialization;
using PageRange.Tests.Infrastructure;
using PageRange.Transport;

namespace PageRange.Tests.Serialization;

/// <summary>
/// Typed messages with a <see cref="ReadOnlySequence{T}"/> member: read in place as a slice of the transaction's
/// payload, copied where the transaction is freed before the message is handed out (the typed Call's reply).
/// </summary>
public sealed class RegionSequenceFormatterTests
{
    private const int MiB = 1 << 20;

    private static PageRangeOptions LargeOptions() => new()
    {
        RegionSize = 8 << 20,
        RegionFullTimeout = TimeSpan.FromSeconds(30),
    };

    [Fact]
    public async Task Deserialize_ReadOnlySequenceMember_IsASliceOfTheTransactionPayload()
    {
        await using ConnectedPair pair = await ConnectedPair.CreateAsync(LargeOptions());
        byte[] data = Enumerable.Range(0, 64 << 10).Select(i => (byte)(i * 5)).ToArray();

        using var timeout = new CancellationTokenSource(TestTimeouts.Long);
        pair.Client.SendOneway(new RegionSequenceBlob { Seq = 1, Data = new ReadOnlySequence<byte>(data) });
        using Transaction transaction = pair.Server.Receive(timeout.Token);
        RegionSequenceBlob blob = transaction.Deserialize<RegionSequenceBlob>();

        Assert.True(blob.Data.IsSingleSegment);
        Assert.True(transaction.Payload.Overlaps(blob.Data.FirstSpan), "the sequence was copied out of the region");
        Assert.False(MemoryMarshal.TryGetArray(blob.Data.First, out _), "the sequence is backed by a managed array");
        Assert.Equal(data, blob.Data.ToArray());
    }

    [Fact]
    public async Task SendOneway_MultiSegmentSequence_ArrivesWhole()
    {
        await using ConnectedPair pair = await ConnectedPair.CreateAsync(LargeOptions());
        byte[] first = [.. Enumerable.Range(0, 3000).Select(i => (byte)i)];
        byte[] second = [.. Enumerable.Range(0, 5000).Select(i => (byte)(i * 3))];
        var head = new Segment(first);
        Segment tail = head.Append(second);

        using var timeout = new CancellationTokenSource(TestTimeouts.Long);
        pair.Client.SendOneway(new RegionSequenceBlob { Seq = 2, Data = new ReadOnlySequence<byte>(head, 0, tail, second.Length) });
        using Transaction transaction = pair.Server.Receive(timeout.Token);
        RegionSequenceBlob blob = transaction.Deserialize<RegionSequenceBlob>();

        Assert.Equal([.. first, .. second], blob.Data.ToArray());
        Assert.True(transaction.Payload.Overlaps(blob.Data.FirstSpan));
    }

    [Fact]
    public async Task SendOnewayAndDeserialize_OneMebibyteSequence_AllocatesNoLargeObjectPerMessage()
    {
        await using ConnectedPair pair = await ConnectedPair.CreateAsync(LargeOptions());
        var message = new RegionSequenceBlob { Data = new ReadOnlySequence<byte>(Enumerable.Range(0, MiB).Select(i => (byte)i).ToArray()) };
        using var timeout = new CancellationTokenSource(TestTimeouts.Long);
        long sum = 0;
        void SendAndReceiveOne()
        {
            message.Seq++;
            pair.Client.SendOneway(message);
            using Transaction transaction = pair.Server.Receive(timeout.Token);
            RegionSequenceBlob received = transaction.Deserialize<RegionSequenceBlob>();
            sum += received.Data.FirstSpan[^1] + received.Seq;
        }

        for (int i = 0; i < 4; i++)
        {
            SendAndReceiveOne();
        }
        const int Messages = 16;
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < Messages; i++)
        {
            SendAndReceiveOne();
        }
        long perMessage = (GC.GetAllocatedBytesForCurrentThread() - before) / Messages;

        Assert.True(perMessage < 4096, $"{perMessage} bytes allocated per 1 MiB message");
        Assert.True(sum > 0);
    }

    [Fact]
    public async Task Call_ReplyWithReadOnlySequenceMember_IsACopyBecauseTheReplyIsFreed()
    {
        await using ConnectedPair pair = await ConnectedPair.CreateAsync(LargeOptions());
        Task serving = pair.Serve(transaction => transaction.Reply(transaction.Deserialize<RegionSequenceBlob>()));
        byte[] data = Enumerable.Range(0, 4096).Select(i => (byte)(i * 11)).ToArray();

        RegionSequenceBlob reply = await Task.Run(() =>
            pair.Client.Call<RegionSequenceBlob, RegionSequenceBlob>(new RegionSequenceBlob { Seq = 6, Data = new ReadOnlySequence<byte>(data) }))
            .WaitAsync(TestTimeouts.Long);

        Assert.True(MemoryMarshal.TryGetArray(reply.Data.First, out _), "the reply's sequence points into a freed region buffer");
        Assert.Equal(data, reply.Data.ToArray());
        Assert.Equal(6, reply.Seq);
        Assert.False(serving.IsFaulted);
    }

    private sealed class Segment : ReadOnlySequenceSegment<byte>
    {
        public Segment(ReadOnlyMemory<byte> memory) => Memory = memory;

        public Segment Append(ReadOnlyMemory<byte> memory)
        {
            var next = new Segment(memory) { RunningIndex = RunningIndex + Memory.Length };
            Next = next;
            return next;
        }
    }
}
