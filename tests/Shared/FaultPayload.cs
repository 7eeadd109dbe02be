using System.Buffers.Binary;

namespace PageRange.Testing;

/// <summary>
/// Self-checking payloads, written by one process and checked by the other (compiled into the tests and the TestHost): <c>seq u64 | length u32 | filler | FNV-1a 64 of everything before
/// it</c>. A partial or corrupt transaction fails the length or the checksum.
/// </summary>
internal static class FaultPayload
{
    internal const int MinLength = 20;

    internal static void Fill(Span<byte> payload, ulong seq)
    {
        BinaryPrimitives.WriteUInt64LittleEndian(payload, seq);
        BinaryPrimitives.WriteUInt32LittleEndian(payload[8..], (uint)payload.Length);
        ulong x = seq * 0x9E3779B97F4A7C15UL;
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

    internal static bool TryVerify(ReadOnlySpan<byte> payload, out ulong seq)
    {
        seq = payload.Length >= 8 ? BinaryPrimitives.ReadUInt64LittleEndian(payload) : 0;
        return payload.Length >= MinLength
            && BinaryPrimitives.ReadUInt32LittleEndian(payload[8..]) == payload.Length
            && BinaryPrimitives.ReadUInt64LittleEndian(payload[^8..]) == Fnv(payload[..^8]);
    }

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
