using Grpc.Core;

namespace PageRange.Grpc;

/// <summary>
/// What precedes the message in a call's reply: i32 status code, the detail (u16 + UTF-8), u32 messages the server sent
/// on the stream (0 for unary), u8 whether a message follows, u8 whether response headers follow, the response headers
/// (a metadata block, when announced), the trailers (a metadata block). The message is the rest of the payload.
/// </summary>
internal sealed record GrpcReplyHead(StatusCode Code, string Detail, uint MessagesSent, bool HasMessage, Metadata? ResponseHeaders, Metadata Trailers)
{
    internal int GetSize() =>
        4 + GrpcWriter.StringSize(Detail, GrpcWire.MaxDetailBytes, "The status detail") + 4 + 1 + 1
        + (ResponseHeaders is null ? 0 : GrpcMetadataCodec.GetSize(ResponseHeaders)) + GrpcMetadataCodec.GetSize(Trailers);

    internal void Write(Span<byte> destination)
    {
        var writer = new GrpcWriter(destination);
        writer.WriteInt32((int)Code);
        writer.WriteString(Detail);
        writer.WriteUInt32(MessagesSent);
        writer.WriteByte(HasMessage ? (byte)1 : (byte)0);
        writer.WriteByte(ResponseHeaders is null ? (byte)0 : (byte)1);
        if (ResponseHeaders is not null)
        {
            GrpcMetadataCodec.Write(ref writer, ResponseHeaders);
        }
        GrpcMetadataCodec.Write(ref writer, Trailers);
    }

    /// <summary>A detail cut to what the wire carries (a handler's message may be long).</summary>
    internal static string BoundDetail(string? detail)
    {
        detail ??= "";
        return detail.Length <= GrpcWire.MaxDetailBytes / 4 ? detail : detail[..(GrpcWire.MaxDetailBytes / 4)];
    }

    /// <summary>Reads the head; <paramref name="length"/> is where the message starts.</summary>
    /// <exception cref="ProtocolViolationException">Malformed.</exception>
    internal static GrpcReplyHead Read(ReadOnlySpan<byte> payload, out int length)
    {
        var reader = new GrpcReader(payload);
        int code = reader.ReadInt32();
        if (code is < 0 or > (int)StatusCode.Unauthenticated)
        {
            throw GrpcReader.Violation($"unknown status code {code}.");
        }
        string detail = reader.ReadString(GrpcWire.MaxDetailBytes, "the status detail");
        uint sent = reader.ReadUInt32();
        byte hasMessage = reader.ReadByte();
        byte hasHeaders = reader.ReadByte();
        if (hasMessage > 1 || hasHeaders > 1)
        {
            throw GrpcReader.Violation($"the reply's flags are {hasMessage} and {hasHeaders}.");
        }
        Metadata? headers = hasHeaders == 1 ? GrpcMetadataCodec.Read(ref reader) : null;
        Metadata trailers = GrpcMetadataCodec.Read(ref reader);
        if (hasMessage == 0 && reader.Remaining != 0)
        {
            throw GrpcReader.Violation($"{reader.Remaining} bytes follow a reply head that announced no message.");
        }
        length = reader.Position;
        return new GrpcReplyHead((StatusCode)code, detail, sent, hasMessage == 1, headers, trailers);
    }
}
