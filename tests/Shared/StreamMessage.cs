using System.Buffers.Binary;

namespace PageRange.Testing;

/// <summary>
/// A stream message: <c>[u64 sequence][u32 FNV-1a of the rest][rest]</c>, the rest's length and bytes derived from the
/// sequence, so every message differs and lands at a different offset. Compiled into the tests and the TestHost.
/// </summary>
internal static class StreamMessage
{
    public const int HeaderSize = 12;

    public static int MaxLength => LengthOf(60);

    // 12 B to 1,992 B: about half of them packed (up to 1 KiB), the rest in buffers of their own; all within a receive
    // lane's 2 KiB.
    public static int LengthOf(ulong sequence) => HeaderSize + (int)(sequence % 61 * 33);

    public static void Write(Span<byte> message, ulong sequence)
    {
        BinaryPrimitives.WriteUInt64LittleEndian(message, sequence);
        Span<byte> rest = message[HeaderSize..];
        for (int i = 0; i < rest.Length; i++)
        {
            rest[i] = (byte)((sequence * 31) + (ulong)i);
        }
        BinaryPrimitives.WriteUInt32LittleEndian(message[8..], Fnv1a(rest));
    }

    public static ulong? Check(ReadOnlySpan<byte> message)
    {
        if (message.Length < HeaderSize)
        {
            return null;
        }
        ulong sequence = BinaryPrimitives.ReadUInt64LittleEndian(message);
        if (message.Length != LengthOf(sequence) || BinaryPrimitives.ReadUInt32LittleEndian(message[8..]) != Fnv1a(message[HeaderSize..]))
        {
            return null;
        }
        return sequence;
    }

    private static uint Fnv1a(ReadOnlySpan<byte> bytes)
    {
        uint hash = 2166136261;
        foreach (byte b in bytes)
        {
            hash = (hash ^ b) * 16777619;
        }
        return hash;
    }
}
