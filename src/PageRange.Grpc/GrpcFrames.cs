using System.Buffers.Binary;
using PageRange.Transport;

namespace PageRange.Grpc;

/// <summary>
/// Stream frames: oneway messages with <see cref="GrpcWire.FrameCode"/>, payload u8 kind, u64 stream id, then the
/// kind's body (a message; nothing; u32 messages + u32 bytes of credit; a metadata block of response headers; a count
/// and that many length-prefixed messages).
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

    /// <summary>
    /// Reads a credit frame's body. The bytes may exceed <see cref="GrpcWire.WindowBytes"/>: a reader that read one
    /// message larger than the window grants its size back. Whether a grant fits is the writer's
    /// <see cref="GrpcCreditGate.TryGrant"/> to judge (never more than the window in hand).
    /// </summary>
    /// <exception cref="ProtocolViolationException">Malformed.</exception>
    internal static (int Messages, int Bytes) ReadCredit(ReadOnlySpan<byte> body)
    {
        var reader = new GrpcReader(body);
        uint messages = reader.ReadUInt32();
        uint bytes = reader.ReadUInt32();
        if (reader.Remaining != 0 || messages > GrpcWire.WindowMessages || bytes > int.MaxValue)
        {
            throw GrpcReader.Violation($"a credit frame of {body.Length} bytes grants {messages} messages and {bytes} bytes.");
        }
        return ((int)messages, (int)bytes);
    }

    /// <summary>
    /// Reads the count and the lengths of a <see cref="GrpcFrameKind.Messages"/> frame's body into
    /// <paramref name="lengths"/> (each read once from the peer's bytes): at least one message and at most a window's,
    /// each length within what is left, and the lengths with their prefixes filling the body exactly. The messages are
    /// then sliced with these local lengths: see <see cref="MessageAt"/>.
    /// </summary>
    /// <param name="body">The frame's body, in our region (the peer may still write there: it is read once).</param>
    /// <param name="lengths">At least <see cref="GrpcWire.WindowMessages"/> entries.</param>
    /// <returns>The count.</returns>
    /// <exception cref="ProtocolViolationException">Malformed.</exception>
    internal static int ReadMessageLengths(ReadOnlySpan<byte> body, Span<int> lengths)
    {
        var reader = new GrpcReader(body);
        int count = reader.ReadUInt16();
        if (count is 0 || count > GrpcWire.WindowMessages)
        {
            throw GrpcReader.Violation($"a frame of {count} messages (1 to {GrpcWire.WindowMessages}).");
        }
        for (int i = 0; i < count; i++)
        {
            uint length = reader.ReadUInt32();
            if (length > (uint)reader.Remaining)
            {
                throw GrpcReader.Violation($"message {i} of {count} claims {length} bytes; {reader.Remaining} are left in the frame.");
            }
            _ = reader.ReadBytes((int)length);
            lengths[i] = (int)length;
        }
        if (reader.Remaining != 0)
        {
            throw GrpcReader.Violation($"{reader.Remaining} bytes follow the {count} messages of a frame.");
        }
        return count;
    }

    /// <summary>The next message of a <see cref="GrpcFrameKind.Messages"/> body, by the lengths already checked.</summary>
    /// <param name="body">The body.</param>
    /// <param name="offset">Where the message's length prefix starts (2 for the first); moved past the message.</param>
    /// <param name="length">Its length, from <see cref="ReadMessageLengths"/>.</param>
    internal static ReadOnlyMemory<byte> MessageAt(ReadOnlyMemory<byte> body, ref int offset, int length)
    {
        ReadOnlyMemory<byte> message = body.Slice(offset + GrpcFrameWriter.LengthPrefix, length);
        offset += GrpcFrameWriter.LengthPrefix + length;
        return message;
    }

    /// <summary>Hands each message of a <see cref="GrpcFrameKind.Messages"/> body to <paramref name="sink"/>, in order, until it refuses one.</summary>
    /// <exception cref="ProtocolViolationException">Malformed (see <see cref="ReadMessageLengths"/>).</exception>
    internal static void DeliverMessages<TSink>(ReadOnlyMemory<byte> body, TSink sink)
        where TSink : IGrpcMessageSink
    {
        Span<int> lengths = stackalloc int[GrpcWire.WindowMessages];
        int count = ReadMessageLengths(body.Span, lengths);
        int offset = 2;
        for (int i = 0; i < count; i++)
        {
            if (!sink.Deliver(MessageAt(body, ref offset, lengths[i])))
            {
                return;
            }
        }
    }

    /// <summary>Reads a frame's head.</summary>
    /// <exception cref="ProtocolViolationException">Malformed, or an unknown kind.</exception>
    internal static (GrpcFrameKind Kind, ulong StreamId) ReadHead(ReadOnlySpan<byte> payload)
    {
        var reader = new GrpcReader(payload);
        byte kind = reader.ReadByte();
        ulong streamId = reader.ReadUInt64();
        if (kind is < (byte)GrpcFrameKind.Message or > (byte)GrpcFrameKind.Messages)
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
