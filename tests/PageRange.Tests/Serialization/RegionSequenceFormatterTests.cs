using System.Buffers;
using PageRange.Serialization;
using PageRange.Tests.Infrastructure;
using PageRange.Transport;

namespace PageRange.Tests.Serialization;

/// <summary>
/// Typed messages with a <see cref="ReadOnlySequence{T}"/> member (the shared tests in
/// <see cref="RegionBlobFormatterTests{TBlob}"/>), and a sequence sent in several segments.
/// </summary>
public sealed class RegionSequenceFormatterTests : RegionBlobFormatterTests<RegionSequenceBlob>
{
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

    protected override RegionSequenceBlob Create(long seq, byte[] data) => new() { Seq = seq, Data = new ReadOnlySequence<byte>(data) };

    protected override long SeqOf(RegionSequenceBlob blob) => blob.Seq;

    protected override void SetSeq(RegionSequenceBlob blob, long seq) => blob.Seq = seq;

    protected override ReadOnlyMemory<byte> FirstSegment(RegionSequenceBlob blob) => blob.Data.First;

    protected override bool IsSingleSegment(RegionSequenceBlob blob) => blob.Data.IsSingleSegment;

    protected override byte[] DataOf(RegionSequenceBlob blob) => blob.Data.ToArray();

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
