using Grpc.Core;

namespace PageRange.Grpc;

/// <summary>
/// What precedes the message in a call's request: u8 kind, u64 stream id (0 for unary), the method's full name
/// (u16 + UTF-8), the host (u16 + UTF-8, empty for none), u8 whether a message follows, the request headers (a metadata
/// block). The message is the rest of the payload.
/// </summary>
internal sealed record GrpcRequestHead(GrpcCallKind Kind, ulong StreamId, string Method, string? Host, bool HasMessage, Metadata Headers)
{
    internal int GetSize() =>
        1 + 8 + GrpcWriter.StringSize(Method, GrpcWire.MaxNameBytes, "The method name")
        + GrpcWriter.StringSize(Host ?? "", GrpcWire.MaxNameBytes, "The host") + 1 + GrpcMetadataCodec.GetSize(Headers);

    internal void Write(Span<byte> destination)
    {
        var writer = new GrpcWriter(destination);
        writer.WriteByte((byte)Kind);
        writer.WriteUInt64(StreamId);
        writer.WriteString(Method);
        writer.WriteString(Host ?? "");
        writer.WriteByte(HasMessage ? (byte)1 : (byte)0);
        GrpcMetadataCodec.Write(ref writer, Headers);
    }

    /// <summary>Reads the head; <paramref name="length"/> is where the message starts.</summary>
    /// <exception cref="ProtocolViolationException">Malformed.</exception>
    internal static GrpcRequestHead Read(ReadOnlySpan<byte> payload, out int length)
    {
        var reader = new GrpcReader(payload);
        byte kind = reader.ReadByte();
        if (kind > (byte)GrpcCallKind.Stream)
        {
            throw GrpcReader.Violation($"unknown call kind {kind}.");
        }
        ulong streamId = reader.ReadUInt64();
        string method = reader.ReadString(GrpcWire.MaxNameBytes, "the method name");
        string host = reader.ReadString(GrpcWire.MaxNameBytes, "the host");
        byte hasMessage = reader.ReadByte();
        if (hasMessage > 1)
        {
            throw GrpcReader.Violation($"the message flag is {hasMessage}.");
        }
        Metadata headers = GrpcMetadataCodec.Read(ref reader);
        if (hasMessage == 0 && reader.Remaining != 0)
        {
            throw GrpcReader.Violation($"{reader.Remaining} bytes follow a request head that announced no message.");
        }
        length = reader.Position;
        return new GrpcRequestHead((GrpcCallKind)kind, streamId, method, host.Length == 0 ? null : host, hasMessage == 1, headers);
    }
}
