using System.Text;

namespace PageRange.Tests.Root;

public sealed class PeerTextTests
{
    [Fact]
    public void Sanitize_ControlCharactersAndBidiOverrides_BecomeSpaces()
    {
        string text = PeerText.Sanitize("line1\nline2\r\u001b[31mred\u202Eevil\u0085");
        Assert.Equal("line1 line2  [31mred evil ", text);
    }

    [Fact]
    public void Sanitize_LongText_IsCutAndMarked()
    {
        string text = PeerText.Sanitize(new string('x', 10_000));
        Assert.Equal(PeerText.MaxLength + 1, text.Length);
        Assert.EndsWith("\u2026", text, StringComparison.Ordinal);
    }

    [Fact]
    public void Sanitize_CleanShortText_IsReturnedAsIs()
    {
        const string clean = "no such method 7";
        Assert.Same(clean, PeerText.Sanitize(clean));
    }

    [Fact]
    public void Sanitize_InvalidUtf8AndHugeInput_DecodesBoundedAndReplaces()
    {
        byte[] bytes = new byte[1 << 20];
        bytes.AsSpan().Fill((byte)'a');
        bytes[0] = 0xFF;
        bytes[1] = 0x0A;
        string text = PeerText.Sanitize(bytes);
        Assert.True(text.Length <= PeerText.MaxLength + 1);
        Assert.Equal('\uFFFD', text[0]);
        Assert.Equal(' ', text[1]);
        Assert.EndsWith("\u2026", text, StringComparison.Ordinal);
        Assert.Equal("ok", PeerText.Sanitize(Encoding.UTF8.GetBytes("ok")));
    }

    [Fact]
    public void RemoteCallException_PeerMessage_IsSanitizedAndKeepsStatus()
    {
        var error = new RemoteCallException(CallStatus.NotFound, "gone\n\u001b");
        Assert.Equal(CallStatus.NotFound, error.Status);
        Assert.Equal("gone  ", error.Message);
    }

    [Fact]
    public void PageRangeStatusException_OkStatus_IsRefused()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new PageRangeStatusException(CallStatus.Ok, "fine"));
        Assert.Throws<ArgumentOutOfRangeException>(() => new PageRangeStatusException((CallStatus)99, "odd"));
        Assert.Equal(CallStatus.Internal, new PageRangeStatusException(CallStatus.Internal, "x").Status);
    }
}
