using System.Buffers.Binary;

namespace PageRange.Benchmarks.Soak;

/// <summary>
/// Self-checking soak messages: <c>stream u32 | n u32 | length u32 | filler | FNV-1a 64 of everything before it</c>.
/// The stream is the sending thread, n counts its messages from 1; a partial or damaged message fails the check.
/// </summary>
internal static class SoakPayload
{
    internal const int MinLength = 20;

    internal static void Fill(Span<byte> payload, uint stream, uint n)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(payload, stream);
        BinaryPrimitives.WriteUInt32LittleEndian(payload[4..], n);
        BinaryPrimitives.WriteUInt32LittleEndian(payload[8..], (uint)payload.Length);
        ulong x = (((ulong)stream << 32) | n) * 0x9E3779B97F4A7C15UL;
        Span<byte> filler = payload[12..^8];
        for (int i = 0; i < filler.Length; i++)
        {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            filler[i] = (byte)x;
        }
        BinaryPrimitives.WriteUInt64LittleEndian(payload[^8..], Fnv(payload[..^8]));
    }

    internal static bool TryVerify(ReadOnlySpan<byte> payload, out uint stream, out uint n)
    {
        stream = payload.Length >= 4 ? BinaryPrimitives.ReadUInt32LittleEndian(payload) : 0;
        n = payload.Length >= 8 ? BinaryPrimitives.ReadUInt32LittleEndian(payload[4..]) : 0;
        return payload.Length >= MinLength
            && BinaryPrimitives.ReadUInt32LittleEndian(payload[8..]) == payload.Length
            && BinaryPrimitives.ReadUInt64LittleEndian(payload[^8..]) == Fnv(payload[..^8]);
    }

    /// <summary>A size from a skewed mix: mostly small, some pages, a few large buffers.</summary>
    internal static int NextSize(Random random, int max) =>
        random.Next(100) switch
        {
            < 50 => random.Next(MinLength, 1024),
            < 85 => random.Next(1024, 16 << 10),
            < 99 => random.Next(16 << 10, 256 << 10),
            _ => random.Next(256 << 10, max),
        };

    private static ulong Fnv(ReadOnlySpan<byte> bytes)
    {
        ulong hash = 0xCBF29CE484222325UL;
        foreach (byte b in bytes)
        {
            hash = (hash ^ b) * 0x100000001B3UL;
        }
        return hash;
    }
}
