using System.Buffers;
using System.Buffers.Binary;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using MessagePack;
using PageRange.Serialization;

namespace PingPong;

/// <summary>
/// The Unix-socket comparison's wire: a 4-byte little-endian length, then the same MessagePack message PageRange
/// carries, serialized with the same options. Buffers are reused, so the socket pays for the socket, not for garbage.
/// </summary>
internal sealed class SocketFraming
{
    private readonly Socket _socket;
    private readonly ArrayBufferWriter<byte> _send = new(256);
    private byte[] _receive = new byte[256];

    public SocketFraming(Socket socket) => _socket = socket;

    /// <summary>Serializes <paramref name="message"/> and writes it with its length.</summary>
    public void Send<T>(T message)
    {
        _send.ResetWrittenCount();
        _send.Advance(sizeof(int));
        MessagePackSerializer.Serialize(_send, message, PageRangeMessagePack.DefaultOptions);
        // SAFETY: an ArrayBufferWriter's memory is an array it owns and nobody else sees until the next reset; writing
        // the length into its first four bytes (advanced past above, so they exist) only fills the gap left for it.
        if (!MemoryMarshal.TryGetArray(_send.WrittenMemory, out ArraySegment<byte> frame))
        {
            throw new InvalidOperationException("An ArrayBufferWriter is backed by an array.");
        }
        BinaryPrimitives.WriteInt32LittleEndian(frame.AsSpan(), _send.WrittenCount - sizeof(int));
        ReadOnlySpan<byte> rest = _send.WrittenSpan;
        while (!rest.IsEmpty)
        {
            rest = rest[_socket.Send(rest)..];
        }
    }

    /// <summary>Reads one message; <see langword="false"/> when the other side closed the socket between messages.</summary>
    public bool TryReceive<T>(out T message)
    {
        Span<byte> length = stackalloc byte[sizeof(int)];
        if (!ReceiveExactly(length, endAllowed: true))
        {
            message = default!;
            return false;
        }
        int size = BinaryPrimitives.ReadInt32LittleEndian(length);
        if (size < 0 || size > 64 << 20)
        {
            throw new InvalidDataException($"A frame of {size} bytes is not one the sample sends.");
        }
        if (_receive.Length < size)
        {
            _receive = new byte[Math.Max(size, _receive.Length * 2)];
        }
        ReceiveExactly(_receive.AsSpan(0, size), endAllowed: false);
        message = MessagePackSerializer.Deserialize<T>(_receive.AsMemory(0, size), PageRangeMessagePack.DefaultOptions);
        return true;
    }

    private bool ReceiveExactly(Span<byte> buffer, bool endAllowed)
    {
        for (int read = 0; read < buffer.Length;)
        {
            int n = _socket.Receive(buffer[read..]);
            if (n == 0)
            {
                if (endAllowed && read == 0)
                {
                    return false;
                }
                throw new EndOfStreamException("The other side closed the socket in the middle of a message.");
            }
            read += n;
        }
        return true;
    }
}
