using System.Buffers;
using System.Buffers.Binary;
using MessagePack;
using PageRange.Transport;

namespace PageRange.Tests.Transport;

public sealed class ControlFrameCodecTests
{
    private static readonly ControlMessage[] s_messages =
    [
        new HelloMessage(ControlHandshake.ProtocolVersion, 1234, 4L << 20, 1024, 4096),
        new RefusalMessage("the listener speaks version 1"),
        new ReadyMessage(),
        new CancelMessage(ulong.MaxValue),
    ];

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    public void Encode_ThenDecode_RoundTrips(int index)
    {
        ControlMessage message = s_messages[index];
        var buffer = new ReadOnlySequence<byte>(ControlFrameCodec.Encode(message));

        Assert.True(ControlFrameCodec.TryDecode(ref buffer, out ControlMessage? decoded));

        Assert.Equal(message, decoded);
        Assert.True(buffer.IsEmpty);
    }

    [Fact]
    public void TryDecode_TwoFramesSplitAcrossSegments_DecodesBothInOrder()
    {
        byte[] first = ControlFrameCodec.Encode(new CancelMessage(1));
        byte[] second = ControlFrameCodec.Encode(new CancelMessage(2));
        byte[] all = [.. first, .. second];
        // Cut inside the first frame's length prefix, and inside the second frame's body.
        ReadOnlySequence<byte> buffer = Segments(all, 2, first.Length + 5);

        Assert.True(ControlFrameCodec.TryDecode(ref buffer, out ControlMessage? one));
        Assert.True(ControlFrameCodec.TryDecode(ref buffer, out ControlMessage? two));

        Assert.Equal(new CancelMessage(1), one);
        Assert.Equal(new CancelMessage(2), two);
        Assert.True(buffer.IsEmpty);
    }

    [Fact]
    public void TryDecode_IncompleteFrame_ReturnsFalseAndLeavesBufferAlone()
    {
        byte[] frame = ControlFrameCodec.Encode(new HelloMessage(ControlHandshake.ProtocolVersion, 1, 65536, 16, 16));
        for (int length = 0; length < frame.Length; length++)
        {
            var buffer = new ReadOnlySequence<byte>(frame, 0, length);

            Assert.False(ControlFrameCodec.TryDecode(ref buffer, out _));
            Assert.Equal(length, buffer.Length);
        }
    }

    [Theory]
    [InlineData(0u)]
    [InlineData(ControlFrameCodec.MaxBodyLength + 1u)]
    [InlineData(uint.MaxValue)]
    public void TryDecode_LengthOutOfBounds_ThrowsProtocolViolation(uint length)
    {
        byte[] header = new byte[ControlFrameCodec.HeaderLength];
        BinaryPrimitives.WriteUInt32LittleEndian(header, length);
        var buffer = new ReadOnlySequence<byte>(header);

        var error = Assert.Throws<ProtocolViolationException>(() => ControlFrameCodec.TryDecode(ref buffer, out _));
        Assert.Contains($"{length} bytes", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void TryDecode_UnknownKind_ThrowsProtocolViolation()
    {
        var buffer = new ReadOnlySequence<byte>(Frame((ref MessagePackWriter writer) =>
        {
            writer.WriteArrayHeader(1);
            writer.Write(99);
        }));

        var error = Assert.Throws<ProtocolViolationException>(() => ControlFrameCodec.TryDecode(ref buffer, out _));
        Assert.Contains("kind 99", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void TryDecode_NotMessagePack_ThrowsProtocolViolation()
    {
        var buffer = new ReadOnlySequence<byte>(Frame((ref MessagePackWriter writer) => writer.WriteRaw("GET / HTTP/1.1"u8)));

        Assert.Throws<ProtocolViolationException>(() => ControlFrameCodec.TryDecode(ref buffer, out _));
    }

    [Fact]
    public void TryDecode_BytesAfterLastField_ThrowsProtocolViolation()
    {
        var buffer = new ReadOnlySequence<byte>(Frame((ref MessagePackWriter writer) =>
        {
            writer.WriteArrayHeader(1);
            writer.Write((int)ControlMessageKind.Ready);
            writer.Write(7);
        }));

        Assert.Throws<ProtocolViolationException>(() => ControlFrameCodec.TryDecode(ref buffer, out _));
    }

    [Fact]
    public void TryDecode_HelloOfAnotherVersion_KeepsOnlyTheVersion()
    {
        // A future version may add fields or change their types; decoding must still name its version.
        var buffer = new ReadOnlySequence<byte>(Frame((ref MessagePackWriter writer) =>
        {
            writer.WriteArrayHeader(4);
            writer.Write((int)ControlMessageKind.Hello);
            writer.Write(99);
            writer.Write("a string where we have a pid");
            writer.WriteNil();
        }));

        Assert.True(ControlFrameCodec.TryDecode(ref buffer, out ControlMessage? message));

        Assert.Equal(new HelloMessage(99, 0, 0, 0, 0), message);
    }

    [Fact]
    [Trait("Category", "Hostile")]
    public void TryDecode_HelloOfAnotherVersion_ParsesNothingAfterTheVersion()
    {
        // After a foreign version nothing more is parsed: not even skipped. The bytes that follow are no MessagePack at
        // all (0xc1 is "never used"), and a nesting a million arrays deep is announced, so any parsing would throw.
        // Version 99 (0x63): foreign to every version this code has had (the connection work made 2 the current one).
        byte[] body = [0x94, (byte)ControlMessageKind.Hello, 0x63, 0xc1, 0xdd, 0x00, 0x0f, 0x42, 0x40];
        byte[] frame = new byte[ControlFrameCodec.HeaderLength + body.Length];
        BinaryPrimitives.WriteUInt32LittleEndian(frame, (uint)body.Length);
        body.CopyTo(frame, ControlFrameCodec.HeaderLength);
        var buffer = new ReadOnlySequence<byte>(frame);

        Assert.True(ControlFrameCodec.TryDecode(ref buffer, out ControlMessage? message));

        Assert.Equal(new HelloMessage(99, 0, 0, 0, 0), message);
        Assert.True(buffer.IsEmpty);
    }

    [Fact]
    public void TryDecode_HelloOfOurVersionWithMissingFields_ThrowsProtocolViolation()
    {
        var buffer = new ReadOnlySequence<byte>(Frame((ref MessagePackWriter writer) =>
        {
            writer.WriteArrayHeader(3);
            writer.Write((int)ControlMessageKind.Hello);
            writer.Write(ControlHandshake.ProtocolVersion);
            writer.Write(42);
        }));

        Assert.Throws<ProtocolViolationException>(() => ControlFrameCodec.TryDecode(ref buffer, out _));
    }

    [Fact]
    public void Encode_LongRefusal_IsCutSoTheFrameFits()
    {
        byte[] frame = ControlFrameCodec.Encode(new RefusalMessage(new string('x', 100_000)));
        var buffer = new ReadOnlySequence<byte>(frame);

        Assert.True(ControlFrameCodec.TryDecode(ref buffer, out ControlMessage? message));

        Assert.Equal(ControlFrameCodec.MaxReasonLength, Assert.IsType<RefusalMessage>(message).Reason.Length);
    }

    private delegate void BodyWriter(ref MessagePackWriter writer);

    private static byte[] Frame(BodyWriter write)
    {
        var body = new ArrayBufferWriter<byte>();
        var writer = new MessagePackWriter(body);
        write(ref writer);
        writer.Flush();
        byte[] frame = new byte[ControlFrameCodec.HeaderLength + body.WrittenCount];
        BinaryPrimitives.WriteUInt32LittleEndian(frame, (uint)body.WrittenCount);
        body.WrittenSpan.CopyTo(frame.AsSpan(ControlFrameCodec.HeaderLength));
        return frame;
    }

    private static ReadOnlySequence<byte> Segments(byte[] bytes, params int[] cuts)
    {
        var first = new Segment(bytes.AsMemory(0, cuts[0]), 0);
        Segment last = first;
        int start = cuts[0];
        foreach (int cut in cuts.Skip(1).Append(bytes.Length))
        {
            last = last.Append(bytes.AsMemory(start, cut - start));
            start = cut;
        }
        return new ReadOnlySequence<byte>(first, 0, last, last.Memory.Length);
    }

    private sealed class Segment : ReadOnlySequenceSegment<byte>
    {
        public Segment(ReadOnlyMemory<byte> memory, long runningIndex)
        {
            Memory = memory;
            RunningIndex = runningIndex;
        }

        public Segment Append(ReadOnlyMemory<byte> memory)
        {
            var next = new Segment(memory, RunningIndex + Memory.Length);
            Next = next;
            return next;
        }
    }
}
