using System.Buffers.Binary;
using System.Text;

namespace PageRange.Grpc;

/// <summary>Writes the fields <see cref="GrpcReader"/> reads, into a span sized beforehand.</summary>
internal ref struct GrpcWriter
{
    private readonly Span<byte> _bytes;
    private int _position;

    internal GrpcWriter(Span<byte> bytes)
    {
        _bytes = bytes;
        _position = 0;
    }

    internal readonly int Position => _position;

    internal void WriteByte(byte value) => Take(1)[0] = value;

    internal void WriteUInt16(ushort value) => BinaryPrimitives.WriteUInt16LittleEndian(Take(2), value);

    internal void WriteUInt32(uint value) => BinaryPrimitives.WriteUInt32LittleEndian(Take(4), value);

    internal void WriteInt32(int value) => BinaryPrimitives.WriteInt32LittleEndian(Take(4), value);

    internal void WriteUInt64(ulong value) => BinaryPrimitives.WriteUInt64LittleEndian(Take(8), value);

    internal void WriteBytes(ReadOnlySpan<byte> value) => value.CopyTo(Take(value.Length));

    /// <summary>A string as u16 length + UTF-8 (its length checked by <see cref="StringSize"/> beforehand).</summary>
    internal void WriteString(string value)
    {
        int length = Encoding.UTF8.GetByteCount(value);
        WriteUInt16(checked((ushort)length));
        Encoding.UTF8.GetBytes(value, Take(length));
    }

    /// <summary>A string as ASCII bytes, no length (written by the caller).</summary>
    internal void WriteAscii(string value) => Encoding.ASCII.GetBytes(value, Take(value.Length));

    internal static int StringSize(string value, int maxBytes, string what)
    {
        int length = Encoding.UTF8.GetByteCount(value);
        if (length > maxBytes)
        {
            throw new ArgumentException($"{what} of {length} bytes is longer than the limit of {maxBytes} bytes.");
        }
        return 2 + length;
    }

    private Span<byte> Take(int count)
    {
        Span<byte> slice = _bytes.Slice(_position, count);
        _position += count;
        return slice;
    }
}
