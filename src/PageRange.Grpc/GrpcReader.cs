using System.Buffers.Binary;
using System.Text;

namespace PageRange.Grpc;

/// <summary>
/// Reads the peer's bytes once, front to back, checking every length against what is left: a bad value is a
/// <see cref="ProtocolViolationException"/>, never an exception of another type or a read out of bounds.
/// </summary>
internal ref struct GrpcReader
{
    private readonly ReadOnlySpan<byte> _bytes;
    private int _position;

    internal GrpcReader(ReadOnlySpan<byte> bytes)
    {
        _bytes = bytes;
        _position = 0;
    }

    internal readonly int Position => _position;

    internal readonly int Remaining => _bytes.Length - _position;

    internal byte ReadByte() => Take(1)[0];

    internal ushort ReadUInt16() => BinaryPrimitives.ReadUInt16LittleEndian(Take(2));

    internal uint ReadUInt32() => BinaryPrimitives.ReadUInt32LittleEndian(Take(4));

    internal int ReadInt32() => BinaryPrimitives.ReadInt32LittleEndian(Take(4));

    internal ulong ReadUInt64() => BinaryPrimitives.ReadUInt64LittleEndian(Take(8));

    internal ReadOnlySpan<byte> ReadBytes(int count) => Take(count);

    /// <summary>A UTF-8 string of at most <paramref name="maxBytes"/> bytes, prefixed by its u16 length.</summary>
    internal string ReadString(int maxBytes, string what)
    {
        int length = ReadUInt16();
        if (length > maxBytes)
        {
            throw Violation($"{what} of {length} bytes is longer than the limit of {maxBytes}.");
        }
        try
        {
            return Utf8Strict.GetString(Take(length));
        }
        catch (DecoderFallbackException error)
        {
            throw new ProtocolViolationException($"gRPC over PageRange: {what} is not valid UTF-8.", error);
        }
    }

    internal static ProtocolViolationException Violation(string message) => new($"gRPC over PageRange: {message}");

    private static readonly UTF8Encoding Utf8Strict = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    private ReadOnlySpan<byte> Take(int count)
    {
        if (count < 0 || count > _bytes.Length - _position)
        {
            throw Violation($"a field of {count} bytes at offset {_position} runs past the end of {_bytes.Length} bytes.");
        }
        ReadOnlySpan<byte> slice = _bytes.Slice(_position, count);
        _position += count;
        return slice;
    }
}
