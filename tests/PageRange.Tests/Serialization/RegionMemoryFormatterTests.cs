using System.Runtime.InteropServices;
using PageRange.Serialization;
using PageRange.Tests.Infrastructure;
using PageRange.Transport;

namespace PageRange.Tests.Serialization;

/// <summary>
/// Typed messages with a <see cref="ReadOnlyMemory{T}"/> blob: read in place as a slice of the transaction's payload,
/// so a 1 MiB message costs no large-object-heap allocation; copied where the transaction is freed before the message
/// is handed out (the typed Call's reply).
/// </summary>
public sealed class RegionMemoryFormatterTests
{
    private const int MiB = 1 << 20;

    private static PageRangeOptions LargeOptions() => new()
    {
        // The oneway quota is half the region: room for a 1 MiB message and its successor.
        RegionSize = 8 << 20,
        RegionFullTimeout = TimeSpan.FromSeconds(30),
    };

    [Fact]
    public async Task Deserialize_ReadOnlyMemoryMember_IsASliceOfTheTransactionPayload()
    {
        await using ConnectedPair pair = await ConnectedPair.CreateAsync(LargeOptions());
        byte[] data = Enumerable.Range(0, 64 << 10).Select(i => (byte)(i * 7)).ToArray();

        using var timeout = new CancellationTokenSource(TestTimeouts.Long);
        pair.Client.SendOneway(new RegionBlob { Seq = 1, Data = data });
        using Transaction transaction = pair.Server.Receive(timeout.Token);
        RegionBlob blob = transaction.Deserialize<RegionBlob>();

        Assert.True(transaction.Payload.Overlaps(blob.Data.Span), "the blob was copied out of the region");
        Assert.False(MemoryMarshal.TryGetArray(blob.Data, out _), "the blob is backed by a managed array");
        Assert.Equal(data, blob.Data.ToArray());
    }

    [Fact]
    public async Task SendOnewayAndDeserialize_OneMebibyteBlob_AllocatesNoLargeObjectPerMessage()
    {
        await using ConnectedPair pair = await ConnectedPair.CreateAsync(LargeOptions());
        var message = new RegionBlob { Data = Enumerable.Range(0, MiB).Select(i => (byte)i).ToArray() };
        using var timeout = new CancellationTokenSource(TestTimeouts.Long);
        long sum = 0;
        void SendAndReceiveOne()
        {
            message.Seq++;
            pair.Client.SendOneway(message);
            using Transaction transaction = pair.Server.Receive(timeout.Token);
            RegionBlob received = transaction.Deserialize<RegionBlob>();
            sum += received.Data.Span[^1] + received.Seq;
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
    public async Task CallForReply_ReplyKeptByTheCaller_MemoryMemberIsASliceOfTheReply()
    {
        await using ConnectedPair pair = await ConnectedPair.CreateAsync(LargeOptions());
        Task serving = pair.Serve(transaction => transaction.Reply(transaction.Deserialize<RegionBlob>()));
        byte[] data = Enumerable.Range(0, 4096).Select(i => (byte)(i * 13)).ToArray();

        using Transaction reply = await Task.Run(() => pair.Client.CallForReply(new RegionBlob { Seq = 7, Data = data })).WaitAsync(TestTimeouts.Long);
        RegionBlob blob = reply.Deserialize<RegionBlob>();

        Assert.True(reply.Payload.Overlaps(blob.Data.Span), "the reply's blob was copied out of the region");
        Assert.False(MemoryMarshal.TryGetArray(blob.Data, out _), "the reply's blob is backed by a managed array");
        Assert.Equal(data, blob.Data.ToArray());
        Assert.Equal(7, blob.Seq);
        Assert.False(serving.IsFaulted);
    }

    [Fact]
    public async Task Call_ReplyWithReadOnlyMemoryMember_IsACopyBecauseTheReplyIsFreed()
    {
        await using ConnectedPair pair = await ConnectedPair.CreateAsync(LargeOptions());
        Task serving = pair.Serve(transaction => transaction.Reply(transaction.Deserialize<RegionBlob>()));
        byte[] data = Enumerable.Range(0, 4096).Select(i => (byte)(i * 3)).ToArray();

        RegionBlob reply = await Task.Run(() => pair.Client.Call<RegionBlob, RegionBlob>(new RegionBlob { Seq = 5, Data = data })).WaitAsync(TestTimeouts.Long);

        Assert.True(MemoryMarshal.TryGetArray(reply.Data, out _), "the reply's blob points into a freed region buffer");
        Assert.Equal(data, reply.Data.ToArray());
        Assert.Equal(5, reply.Seq);
        Assert.False(serving.IsFaulted);
    }
}
