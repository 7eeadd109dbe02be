using System.Buffers.Binary;
using PageRange.Transport;

namespace PageRange.Grpc;

/// <summary>
/// Stream frames: oneway messages with <see cref="GrpcWire.FrameCode"/>, payload u8 kind, u64 stream id, then the
/// kind's body (a message; nothing; u32 messages + u32 bytes of credit; a metadata block of response headers).
/// </summary>
internal static class GrpcFrames
{
    /// <summary>The bytes before a frame's body.</summary>
    internal const int HeadLength = 9;

    internal static void WriteHead(Span<byte> destination, GrpcFrameKind kind, ulong streamId)
    {
        destination[0] = (byte)kind;
        BinaryPrimitives.WriteUInt64LittleEndian(destination[1..], streamId);
    }

    /// <summary>Sends a credit frame; a peer gone meanwhile is not an error here (the call ends on its own).</summary>
    internal static void SendCredit(PageRangeConnection connection, ulong streamId, int messages, int bytes)
    {
        Span<byte> frame = stackalloc byte[HeadLength + 8];
        WriteHead(frame, GrpcFrameKind.Credit, streamId);
        BinaryPrimitives.WriteUInt32LittleEndian(frame[HeadLength..], (uint)messages);
        BinaryPrimitives.WriteUInt32LittleEndian(frame[(HeadLength + 4)..], (uint)bytes);
        SendQuietly(connection, frame);
    }

    /// <summary>Sends a frame without a body (half-close).</summary>
    internal static void SendEmpty(PageRangeConnection connection, GrpcFrameKind kind, ulong streamId)
    {
        Span<byte> frame = stackalloc byte[HeadLength];
        WriteHead(frame, kind, streamId);
        connection.SendOneway(GrpcWire.FrameCode, frame);
    }

    /// <summary>Reads a credit frame's body.</summary>
    /// <exception cref="ProtocolViolationException">Malformed.</exception>
    internal static (int Messages, int Bytes) ReadCredit(ReadOnlySpan<byte> body)
    {
        var reader = new GrpcReader(body);
        uint messages = reader.ReadUInt32();
        uint bytes = reader.ReadUInt32();
        if (reader.Remaining != 0 || messages > GrpcWire.WindowMessages || bytes > GrpcWire.WindowBytes)
        {
            throw GrpcReader.Violation($"a credit frame of {body.Length} bytes grants {messages} messages and {bytes} bytes.");
        }
        return ((int)messages, (int)bytes);
    }

    /// <summary>Reads a frame's head.</summary>
    /// <exception cref="ProtocolViolationException">Malformed, or an unknown kind.</exception>
    internal static (GrpcFrameKind Kind, ulong StreamId) ReadHead(ReadOnlySpan<byte> payload)
    {
        var reader = new GrpcReader(payload);
        byte kind = reader.ReadByte();
        ulong streamId = reader.ReadUInt64();
        if (kind is < (byte)GrpcFrameKind.Message or > (byte)GrpcFrameKind.Headers)
        {
            throw GrpcReader.Violation($"unknown frame kind {kind}.");
        }
        return ((GrpcFrameKind)kind, streamId);
    }

    private static void SendQuietly(PageRangeConnection connection, ReadOnlySpan<byte> frame)
    {
        try
        {
            connection.SendOneway(GrpcWire.FrameCode, frame);
        }
        catch (Exception error) when (error is PageRangeException or ObjectDisposedException)
        {
            // The peer is gone or stuck: its call ends through the connection's end, not through this frame.
        }
    }
}
