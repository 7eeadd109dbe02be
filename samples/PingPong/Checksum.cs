using System.Runtime.InteropServices;

namespace PingPong;

/// <summary>A checksum that touches every byte: the sum of the payload's 8-byte words plus its tail.</summary>
internal static class Checksum
{
    public static ulong Of(ReadOnlySpan<byte> bytes)
    {
        ulong sum = 0;
        foreach (ulong word in MemoryMarshal.Cast<byte, ulong>(bytes))
        {
            sum += word;
        }
        for (int i = bytes.Length & ~7; i < bytes.Length; i++)
        {
            sum += bytes[i];
        }
        return sum;
    }
}
