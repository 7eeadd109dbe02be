using System.Numerics;
using System.Runtime.InteropServices;

namespace PageRange.Benchmarks.CrossProcess;

/// <summary>
/// A checksum that touches every byte: the sum of the payload's 8-byte words plus its tail bytes. Addition is
/// commutative, so the vector lanes, the word order and the frame boundaries never change the result.
/// </summary>
internal static class Checksum
{
    public static ulong Of(ReadOnlySpan<byte> bytes)
    {
        ReadOnlySpan<ulong> words = MemoryMarshal.Cast<byte, ulong>(bytes);
        ReadOnlySpan<Vector<ulong>> vectors = MemoryMarshal.Cast<ulong, Vector<ulong>>(words);
        Vector<ulong> lanes = Vector<ulong>.Zero;
        foreach (Vector<ulong> vector in vectors)
        {
            lanes += vector;
        }
        ulong sum = Vector.Sum(lanes);
        for (int i = vectors.Length * Vector<ulong>.Count; i < words.Length; i++)
        {
            sum += words[i];
        }
        for (int i = words.Length * sizeof(ulong); i < bytes.Length; i++)
        {
            sum += bytes[i];
        }
        return sum;
    }
}
