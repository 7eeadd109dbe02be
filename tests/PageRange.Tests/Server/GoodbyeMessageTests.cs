using System.Buffers;
using PageRange.Transport;

namespace PageRange.Tests.Server;

/// <summary>The control message a server closes a client with: its reason crosses intact, bounded like a refusal's.</summary>
public sealed class GoodbyeMessageTests
{
    [Fact]
    public void Goodbye_EncodeThenDecode_KeepsTheReason()
    {
        var buffer = new ReadOnlySequence<byte>(ControlFrameCodec.Encode(new GoodbyeMessage("the server is shutting down")));

        Assert.True(ControlFrameCodec.TryDecode(ref buffer, out ControlMessage? message));

        Assert.Equal(new GoodbyeMessage("the server is shutting down"), message);
        Assert.True(buffer.IsEmpty);
    }

    [Fact]
    public void Goodbye_LongReason_IsCutSoTheFrameFits()
    {
        var buffer = new ReadOnlySequence<byte>(ControlFrameCodec.Encode(new GoodbyeMessage(new string('x', 5000))));

        Assert.True(ControlFrameCodec.TryDecode(ref buffer, out ControlMessage? message));

        Assert.Equal(ControlFrameCodec.MaxReasonLength, Assert.IsType<GoodbyeMessage>(message).Reason.Length);
    }
}
