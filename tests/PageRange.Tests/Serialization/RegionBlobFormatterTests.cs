using System.Runtime.InteropServices;
using PageRange.Serialization;
using PageRange.Tests.Infrastructure;
using PageRange.Transport;

namespace PageRange.Tests.Serialization;

/// <summary>
/// What every region formatter promises, for a message with a blob member of either shape (<see cref="RegionBlob"/>'s
/// <see cref="ReadOnlyMemory{T}"/>, <see cref="RegionSequenceBlob"/>'s sequence): read in place as a slice of the
/// transaction's payload, so a 1 MiB message costs no large-object-heap allocation; copied where the transaction is
/// freed before the message is handed out (the typed Call's reply).
/// </summary>
/// <typeparam name="TBlob">The message type; each derived class adds the tests of its own shape.</typeparam>
public abstract class RegionBlobFormatterTests<TBlob>
    where TBlob : class
{
    private const int MiB = 1 << 20;

    protected static PageRangeOptions LargeOptions() => new()
    {
        // The oneway quota is half the region: room for a 1 MiB message and its successor.
        RegionSize = 8 << 20,
        RegionFullTimeout = TimeSpan.FromSeconds(30),
    };

    [Fact]
    public async Task Deserialize_BlobMember_IsASliceOfTheTransactionPayload()
    {
        await using ConnectedPair pair = await ConnectedPair.CreateAsync(LargeOptions());
        byte[] data = Enumerable.Range(0, 64 << 10).Select(i => (byte)(i * 7)).ToArray();

        using var timeout = new CancellationTokenSource(TestTimeouts.Long);
        pair.Client.SendOneway(Create(1, data));
        using Transaction transaction = pair.Server.Receive(timeout.Token);
        TBlob blob = transaction.Deserialize<TBlob>();

        Assert.True(IsSingleSegment(blob), "a payload in one buffer came back in pieces");
        Assert.True(transaction.Payload.Overlaps(FirstSegment(blob).Span), "the blob was copied out of the region");
        Assert.False(MemoryMarshal.TryGetArray(FirstSegment(blob), out _), "the blob is backed by a managed array");
        Assert.Equal(data, DataOf(blob));
    }

    [Fact]
    public async Task SendOnewayAndDeserialize_OneMebibyteBlob_AllocatesNoLargeObjectPerMessage()
    {
        await using ConnectedPair pair = await ConnectedPair.CreateAsync(LargeOptions());
        TBlob message = Create(0, Enumerable.Range(0, MiB).Select(i => (byte)i).ToArray());
        using var timeout = new CancellationTokenSource(TestTimeouts.Long);
        long sum = 0;
        void SendAndReceiveOne()
        {
            // The same message each time (its sequence number moves), so only the receive's allocations count.
            SetSeq(message, SeqOf(message) + 1);
            pair.Client.SendOneway(message);
            using Transaction transaction = pair.Server.Receive(timeout.Token);
            TBlob received = transaction.Deserialize<TBlob>();
            sum += FirstSegment(received).Span[^1] + SeqOf(received);
        }

        // Warm-up: the first message teaches the size estimate (and may spill into the parcel once).
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

        // A copy of the blob would be a 1 MiB array on the large-object heap per message; in place, only the message
        // object and the receive's bookkeeping remain.
        Assert.True(perMessage < 4096, $"{perMessage} bytes allocated per 1 MiB message");
        Assert.True(sum > 0);
    }

    [Fact]
    public async Task Call_ReplyWithBlobMember_IsACopyBecauseTheReplyIsFreed()
    {
        await using ConnectedPair pair = await ConnectedPair.CreateAsync(LargeOptions());
        Task serving = pair.Serve(transaction => transaction.Reply(transaction.Deserialize<TBlob>()));
        byte[] data = Enumerable.Range(0, 4096).Select(i => (byte)(i * 3)).ToArray();

        TBlob reply = await Task.Run(() => pair.Client.Call<TBlob, TBlob>(Create(5, data))).WaitAsync(TestTimeouts.Long);

        Assert.True(MemoryMarshal.TryGetArray(FirstSegment(reply), out _), "the reply's blob points into a freed region buffer");
        Assert.Equal(data, DataOf(reply));
        Assert.Equal(5, SeqOf(reply));
        Assert.False(serving.IsFaulted);
    }

    protected abstract TBlob Create(long seq, byte[] data);

    protected abstract long SeqOf(TBlob blob);

    protected abstract void SetSeq(TBlob blob, long seq);

    /// <summary>The blob's first (for a memory, its only) segment.</summary>
    protected abstract ReadOnlyMemory<byte> FirstSegment(TBlob blob);

    protected abstract bool IsSingleSegment(TBlob blob);

    protected abstract byte[] DataOf(TBlob blob);
}
