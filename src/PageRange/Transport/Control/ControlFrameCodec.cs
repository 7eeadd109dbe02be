using System.Buffers;
using System.Buffers.Binary;
using MessagePack;

namespace PageRange.Transport;

/// <summary>
/// Frames control messages: a 4-byte little-endian body length, then the body, a MessagePack array
/// <c>[kind, fields...]</c>.
/// </summary>
/// <remarks>
/// Hand-written with <see cref="MessagePackWriter"/> and <see cref="MessagePackReader"/> rather than attribute-driven
/// serializers: the messages are few and fixed, and the primitives need neither reflection nor dynamic code (AOT-clean).
/// Everything read from the peer is checked; anything malformed is a <see cref="ProtocolViolationException"/>.
/// </remarks>
internal static class ControlFrameCodec
{
    /// <summary>The bytes of the length prefix.</summary>
    public const int HeaderLength = 4;

    /// <summary>The largest body accepted. Control messages are tiny; a larger length means the peer is not speaking this protocol.</summary>
    public const int MaxBodyLength = 4096;

    /// <summary>A refusal reason is cut to this many characters, so that its frame always fits.</summary>
    public const int MaxReasonLength = 1000;

    /// <summary>Encodes <paramref name="message"/> as one frame, length prefix included.</summary>
    public static byte[] Encode(ControlMessage message)
    {
        ArgumentNullException.ThrowIfNull(message);
        var body = new ArrayBufferWriter<byte>(64);
        var writer = new MessagePackWriter(body);
        switch (message)
        {
            case HelloMessage hello:
                writer.WriteArrayHeader(6);
                writer.Write((int)ControlMessageKind.Hello);
                writer.Write(hello.ProtocolVersion);
                writer.Write(hello.Pid);
                writer.Write(hello.RegionSize);
                writer.Write(hello.TransactionRingCapacity);
                writer.Write(hello.FreeRingCapacity);
                break;
            case RefusalMessage refusal:
                writer.WriteArrayHeader(2);
                writer.Write((int)ControlMessageKind.Refusal);
                writer.Write(refusal.Reason.Length > MaxReasonLength ? refusal.Reason[..MaxReasonLength] : refusal.Reason);
                break;
            case ReadyMessage:
                writer.WriteArrayHeader(1);
                writer.Write((int)ControlMessageKind.Ready);
                break;
            case CancelMessage cancel:
                writer.WriteArrayHeader(2);
                writer.Write((int)ControlMessageKind.Cancel);
                writer.Write(cancel.CallId);
                break;
            case FailedReplyMessage failed:
                writer.WriteArrayHeader(2);
                writer.Write((int)ControlMessageKind.FailedReply);
                writer.Write(failed.CallId);
                break;
            case GoodbyeMessage goodbye:
                writer.WriteArrayHeader(2);
                writer.Write((int)ControlMessageKind.Goodbye);
                writer.Write(goodbye.Reason.Length > MaxReasonLength ? goodbye.Reason[..MaxReasonLength] : goodbye.Reason);
                break;
            default:
                throw new ArgumentException($"No encoding for {message.GetType().Name}.", nameof(message));
        }
        writer.Flush();

        byte[] frame = new byte[HeaderLength + body.WrittenCount];
        BinaryPrimitives.WriteUInt32LittleEndian(frame, (uint)body.WrittenCount);
        body.WrittenSpan.CopyTo(frame.AsSpan(HeaderLength));
        return frame;
    }

    /// <summary>
    /// Decodes the first frame of <paramref name="buffer"/> if it is complete, and slices it off.
    /// </summary>
    /// <returns><see langword="false"/> if the buffer does not hold a whole frame yet; it is then unchanged.</returns>
    /// <exception cref="ProtocolViolationException">The frame is too long, malformed, or of an unknown kind.</exception>
    public static bool TryDecode(ref ReadOnlySequence<byte> buffer, out ControlMessage? message)
    {
        message = null;
        if (buffer.Length < HeaderLength)
        {
            return false;
        }
        Span<byte> header = stackalloc byte[HeaderLength];
        buffer.Slice(0, HeaderLength).CopyTo(header);
        uint bodyLength = BinaryPrimitives.ReadUInt32LittleEndian(header);
        if (bodyLength is 0 or > MaxBodyLength)
        {
            throw new ProtocolViolationException(
                $"The peer sent a control frame of {bodyLength} bytes; frames are 1 to {MaxBodyLength} bytes. It does not speak the PageRange protocol.");
        }
        if (buffer.Length < HeaderLength + bodyLength)
        {
            return false;
        }

        ReadOnlySequence<byte> body = buffer.Slice(HeaderLength, bodyLength);
        message = DecodeBody(body);
        buffer = buffer.Slice(HeaderLength + bodyLength);
        return true;
    }

    private static ControlMessage DecodeBody(ReadOnlySequence<byte> body)
    {
        try
        {
            var reader = new MessagePackReader(body);
            int count = reader.ReadArrayHeader();
            if (count < 1)
            {
                throw new ProtocolViolationException("The peer sent an empty control message.");
            }
            var kind = (ControlMessageKind)reader.ReadInt32();
            ControlMessage message = kind switch
            {
                ControlMessageKind.Hello => DecodeHello(ref reader, count),
                ControlMessageKind.Refusal when count == 2 => new RefusalMessage(reader.ReadString() ?? string.Empty),
                ControlMessageKind.Ready when count == 1 => new ReadyMessage(),
                ControlMessageKind.Cancel when count == 2 => new CancelMessage(reader.ReadUInt64()),
                ControlMessageKind.FailedReply when count == 2 => new FailedReplyMessage(reader.ReadUInt64()),
                ControlMessageKind.Goodbye when count == 2 => new GoodbyeMessage(reader.ReadString() ?? string.Empty),
                _ => throw new ProtocolViolationException(
                    $"The peer sent a control message of kind {(int)kind} with {count} fields, which this protocol does not have."),
            };
            if (message is HelloMessage { ProtocolVersion: not ControlHandshake.ProtocolVersion })
            {
                // Another version's hello: the rest of the frame is not parsed at all (see DecodeHello).
                return message;
            }
            if (!reader.End)
            {
                throw new ProtocolViolationException($"The peer's {kind} control message has bytes after its last field.");
            }
            return message;
        }
        catch (Exception error) when (error is MessagePackSerializationException or EndOfStreamException or OverflowException)
        {
            throw new ProtocolViolationException($"The peer sent a malformed control message: {error.Message}", error);
        }
    }

    private static HelloMessage DecodeHello(ref MessagePackReader reader, int count)
    {
        if (count < 2)
        {
            throw new ProtocolViolationException("The peer's hello carries no protocol version.");
        }
        int version = reader.ReadInt32();
        if (version != ControlHandshake.ProtocolVersion)
        {
            // Another version may shape its hello differently: keep only the version, so the refusal can name it, and
            // parse nothing more of what the peer sent (not even to skip it: skipping nested values is parsing too).
            return new HelloMessage(version, 0, 0, 0, 0);
        }
        if (count != 6)
        {
            throw new ProtocolViolationException($"The peer's version {version} hello has {count} fields; it has 6.");
        }
        return new HelloMessage(version, reader.ReadInt32(), reader.ReadInt64(), reader.ReadInt32(), reader.ReadInt32());
    }
}
