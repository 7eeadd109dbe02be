using System.Buffers.Binary;
using System.Text;
using CsCheck;
using Grpc.Core;
using PageRange.Grpc;
using PageRange.Server;
using PageRange.Transport;

namespace PageRange.Tests.Grpc.Core;

/// <summary>The wire: metadata blocks, request and reply heads, frames and method codes; malformed input is a typed error.</summary>
public sealed class GrpcWireTests
{
    private static readonly Gen<string> s_key = Gen.Char["abcdefghijklmnopqrstuvwxyz0123456789-_."].Array[1, 20].Select(static chars => new string(chars));

    private static readonly Gen<Metadata.Entry> s_entry = Gen.OneOf(
        // A text entry's key may not end in "-bin" (the binary suffix): the random characters can make one (seed 8CNa7PQoCRb8).
        Gen.Select(s_key.Where(static key => !key.EndsWith("-bin", StringComparison.Ordinal)), Gen.Char[' ', '~'].Array[0, 40], static (key, value) => new Metadata.Entry("k" + key, new string(value))),
        Gen.Select(s_key, Gen.Byte.Array[0, 40], static (key, value) => new Metadata.Entry("k" + key + "-bin", value)));

    [Fact]
    public void Metadata_RoundTrip_SameEntriesInOrder()
    {
        s_entry.Array[0, GrpcWire.MaxMetadataEntries].Sample(entries =>
        {
            var metadata = new Metadata();
            foreach (Metadata.Entry entry in entries)
            {
                metadata.Add(entry);
            }
            byte[] bytes = new byte[GrpcMetadataCodec.GetSize(metadata)];
            var writer = new GrpcWriter(bytes);
            GrpcMetadataCodec.Write(ref writer, metadata);
            Assert.Equal(bytes.Length, writer.Position);

            var reader = new GrpcReader(bytes);
            Metadata read = GrpcMetadataCodec.Read(ref reader);

            Assert.Equal(0, reader.Remaining);
            Assert.Equal(metadata.Count, read.Count);
            for (int i = 0; i < metadata.Count; i++)
            {
                Assert.Equal(metadata[i].Key, read[i].Key);
                Assert.Equal(metadata[i].IsBinary, read[i].IsBinary);
                Assert.Equal(metadata[i].ValueBytes, read[i].ValueBytes);
            }
        }, iter: 300);
    }

    [Fact]
    public void Metadata_RandomBytes_ParseOrProtocolViolationOnly()
    {
        Gen.Byte.Array[0, 200].Sample(bytes =>
        {
            try
            {
                var reader = new GrpcReader(bytes);
                GrpcMetadataCodec.Read(ref reader);
            }
            catch (ProtocolViolationException)
            {
                // The only failure a peer's bytes may cause.
            }
        }, iter: 2000);
    }

    [Fact]
    public void Metadata_TooManyEntries_ProtocolViolation()
    {
        byte[] bytes = [GrpcWire.MaxMetadataEntries + 1, 0];
        Assert.Throws<ProtocolViolationException>(() =>
        {
            var reader = new GrpcReader(bytes);
            GrpcMetadataCodec.Read(ref reader);
        });
    }

    [Fact]
    public void Metadata_OverTheByteLimit_RefusedOnBothSides()
    {
        var metadata = new Metadata { { "big", new string('x', GrpcWire.MaxMetadataBytes) } };
        RpcException error = Assert.Throws<RpcException>(() => GrpcMetadataCodec.GetSize(metadata));
        Assert.Equal(StatusCode.ResourceExhausted, error.StatusCode);

        // Eight entries of 1 KiB and more: each under u16, together over the block's limit.
        var writer = new List<byte> { 8, 0 };
        for (int i = 0; i < 8; i++)
        {
            writer.AddRange([1, 0, (byte)('a' + i), 0x10, 0x04]);
            writer.AddRange(Enumerable.Repeat((byte)'v', 0x0410));
        }
        byte[] bytes = [.. writer];
        Assert.Throws<ProtocolViolationException>(() =>
        {
            var reader = new GrpcReader(bytes);
            GrpcMetadataCodec.Read(ref reader);
        });
    }

    [Fact]
    public void Metadata_ControlCharacterOrBadKey_ProtocolViolation()
    {
        byte[] control = [1, 0, 1, 0, (byte)'k', 1, 0, 0x07];
        byte[] badKey = [1, 0, 1, 0, (byte)'!', 1, 0, (byte)'v'];
        foreach (byte[] bytes in new[] { control, badKey })
        {
            Assert.Throws<ProtocolViolationException>(() =>
            {
                var reader = new GrpcReader(bytes);
                GrpcMetadataCodec.Read(ref reader);
            });
        }
    }

    [Theory]
    [InlineData("line one\nline two")]
    [InlineData("tab\there")]
    [InlineData("caf\u00E9")]
    [InlineData("\U0001F600")]
    [InlineData("del\u007F")]
    public void Metadata_TextValueNotPrintableAscii_RefusedAsInternalBeforeAnythingIsWritten(string value)
    {
        var metadata = new Metadata { { "ok", "printable ~" }, { "x-bad", value } };

        RpcException error = Assert.Throws<RpcException>(() => GrpcMetadataCodec.GetSize(metadata));

        Assert.Equal(StatusCode.Internal, error.StatusCode);
        Assert.Contains("'x-bad'", error.Status.Detail, StringComparison.Ordinal);
        // The same bytes in a binary value go as they are.
        var binary = new Metadata { { "x-bad-bin", Encoding.UTF8.GetBytes(value) } };
        Assert.Equal(2 + 4 + "x-bad-bin".Length + Encoding.UTF8.GetByteCount(value), GrpcMetadataCodec.GetSize(binary));
    }

    [Fact]
    public void RequestHead_RoundTrip_AndEveryTruncationIsAViolation()
    {
        var head = new GrpcRequestHead(GrpcCallKind.Stream, 77, "/p.S/M", "host", HasMessage: false, new Metadata { { "a", "b" }, { "c-bin", new byte[] { 0, 255 } } });
        byte[] bytes = new byte[head.GetSize()];
        head.Write(bytes);

        GrpcRequestHead read = GrpcRequestHead.Read(bytes, out int length);

        Assert.Equal(bytes.Length, length);
        Assert.Equal((head.Kind, head.StreamId, head.Method, head.Host, head.HasMessage), (read.Kind, read.StreamId, read.Method, read.Host, read.HasMessage));
        Assert.Equal("b", read.Headers.GetValue("a"));
        for (int cut = 0; cut < bytes.Length; cut++)
        {
            Assert.Throws<ProtocolViolationException>(() => GrpcRequestHead.Read(bytes.AsSpan(0, cut), out _));
        }
        // A head that announced no message with bytes after it.
        Assert.Throws<ProtocolViolationException>(() => GrpcRequestHead.Read([.. bytes, 1], out _));
    }

    [Fact]
    public void RequestHead_RandomBytes_ParseOrProtocolViolationOnly()
    {
        Gen.Byte.Array[0, 120].Sample(bytes =>
        {
            try
            {
                GrpcRequestHead.Read(bytes, out _);
            }
            catch (ProtocolViolationException)
            {
                // The only failure a peer's bytes may cause.
            }
        }, iter: 2000);
    }

    [Fact]
    public void ReplyHead_RoundTrip_AndUnknownStatusIsAViolation()
    {
        var head = new GrpcReplyHead(StatusCode.DataLoss, "détail", 12, HasMessage: true, new Metadata { { "h", "1" } }, new Metadata { { "t", "2" } });
        byte[] bytes = new byte[head.GetSize() + 3];
        head.Write(bytes);

        GrpcReplyHead read = GrpcReplyHead.Read(bytes, out int length);

        Assert.Equal(bytes.Length - 3, length);
        Assert.Equal((StatusCode.DataLoss, "détail", 12u, true), (read.Code, read.Detail, read.MessagesSent, read.HasMessage));
        Assert.Equal("1", read.ResponseHeaders!.GetValue("h"));
        Assert.Equal("2", read.Trailers.GetValue("t"));
        bytes[0] = 17;
        Assert.Throws<ProtocolViolationException>(() => GrpcReplyHead.Read(bytes, out _));
    }

    [Fact]
    public void ReplyHead_InvalidUtf8Detail_ProtocolViolation()
    {
        byte[] bytes = [2, 0, 0, 0, 2, 0, 0xC3, 0x28, 0, 0, 0, 0, 0, 0, 0, 0];
        Assert.Throws<ProtocolViolationException>(() => GrpcReplyHead.Read(bytes, out _));
    }

    [Fact]
    public void Frames_UnknownKindOrBadCredit_ProtocolViolation()
    {
        byte[] head = new byte[GrpcFrames.HeadLength];
        GrpcFrames.WriteHead(head, GrpcFrameKind.Credit, 5);
        Assert.Equal((GrpcFrameKind.Credit, 5ul), GrpcFrames.ReadHead(head));
        head[0] = 99;
        Assert.Throws<ProtocolViolationException>(() => GrpcFrames.ReadHead(head));
        Assert.Throws<ProtocolViolationException>(() => GrpcFrames.ReadHead(head.AsSpan(0, 4)));
        Assert.Throws<ProtocolViolationException>(() => GrpcFrames.ReadCredit(new byte[7]));
        byte[] pastWindow = new byte[8];
        BinaryPrimitives.WriteUInt32LittleEndian(pastWindow, GrpcWire.WindowMessages + 1);
        Assert.Throws<ProtocolViolationException>(() => GrpcFrames.ReadCredit(pastWindow));
        // More bytes than an int holds: no message is that large.
        Assert.Throws<ProtocolViolationException>(() => GrpcFrames.ReadCredit([0, 0, 0, 0, 0, 0, 0, 0x80]));
        Assert.Equal((3, 4), GrpcFrames.ReadCredit([3, 0, 0, 0, 4, 0, 0, 0]));
        // A reader that read one message larger than the window grants its size back (the writer's gate judges it).
        Assert.Equal((1, GrpcWire.WindowBytes + 1), GrpcFrames.ReadCredit([1, 0, 0, 0, 1, 0, 0x10, 0]));
    }

    [Fact]
    public void MethodCode_IsFnv1aWithTheTopBit_AndStable()
    {
        const string Name = "/pagerange.grpc.coretest.CoreTest/Unary";
        uint hash = 2166136261;
        foreach (byte b in Encoding.UTF8.GetBytes(Name))
        {
            hash = (hash ^ b) * 16777619;
        }

        Assert.Equal(hash | 0x8000_0000, GrpcWire.MethodCode(Name));
        Assert.NotEqual(GrpcWire.MethodCode(Name), GrpcWire.MethodCode("/pagerange.grpc.coretest.CoreTest/Duplex"));
        Assert.All(new[] { "/a.B/C", "/x/y", "/ü.Ω/名" }, static name =>
        {
            uint code = GrpcWire.MethodCode(name);
            Assert.True(code >= 0x8000_0000);
            Assert.NotEqual(GrpcWire.FrameCode, code);
            Assert.NotEqual(PageRangeServer.DiagnosticsCode, code);
        });
    }

    [Fact]
    public void MethodCode_TwoMethodsCollide_RefusedWhenMapped()
    {
        (string first, string second) = FindCollision();
        var builder = new PageRangeServerBuilder();
        GrpcServerState state = GrpcServerState.For(builder);
        state.Add(builder, new NamedMethod(first));

        ArgumentException error = Assert.Throws<ArgumentException>(() => state.Add(builder, new NamedMethod(second)));

        Assert.Contains("same code", error.Message, StringComparison.Ordinal);
    }

    /// <summary>Two method names whose codes are equal: found by trying names until two meet (31 bits: some 10^5 tries).</summary>
    internal static (string First, string Second) FindCollision()
    {
        var seen = new Dictionary<uint, string>();
        for (int i = 0; ; i++)
        {
            string name = $"/collide.Service/Method{i}";
            if (!seen.TryAdd(GrpcWire.MethodCode(name), name))
            {
                return (seen[GrpcWire.MethodCode(name)], name);
            }
        }
    }

    private sealed class NamedMethod(string name) : IGrpcServerMethod
    {
        public string FullName => name;

        public ValueTask HandleAsync(Transaction transaction, CallContext context, GrpcServerState state) => ValueTask.CompletedTask;
    }
}
