using System.Runtime.InteropServices;
using PageRange.Serialization;
using PageRange.Tests.Infrastructure;
using PageRange.Transport;

namespace PageRange.Tests.Serialization;

/// <summary>
/// Typed messages with a <see cref="ReadOnlyMemory{T}"/> blob (the shared tests in <see cref="RegionBlobFormatterTests{TBlob}"/>),
/// and a reply the caller keeps, whose blob stays in place.
/// </summary>
public sealed class RegionMemoryFormatterTests : RegionBlobFormatterTests<RegionBlob>
{
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

    protected override RegionBlob Create(long seq, byte[] data) => new() { Seq = seq, Data = data };

    protected override long SeqOf(RegionBlob blob) => blob.Seq;

    protected override void SetSeq(RegionBlob blob, long seq) => blob.Seq = seq;

    protected override ReadOnlyMemory<byte> FirstSegment(RegionBlob blob) => blob.Data;

    protected override bool IsSingleSegment(RegionBlob blob) => true;

    protected override byte[] DataOf(RegionBlob blob) => blob.Data.ToArray();
}
