using System.Buffers.Binary;

namespace PageRange.Benchmarks.CrossProcess;

/// <summary>What the peer saw during one serve session: how many messages, how many payload bytes, and their checksum.</summary>
/// <remarks>Echoed pings count too, so the host checks that nothing was lost or duplicated in either workload.</remarks>
internal readonly record struct StopReport(long Messages, long Bytes, ulong Checksum)
{
    public const int Size = 24;

    public void WriteTo(Span<byte> destination)
    {
        BinaryPrimitives.WriteInt64LittleEndian(destination, Messages);
        BinaryPrimitives.WriteInt64LittleEndian(destination[8..], Bytes);
        BinaryPrimitives.WriteUInt64LittleEndian(destination[16..], Checksum);
    }

    public static StopReport ReadFrom(ReadOnlySpan<byte> source)
    {
        if (source.Length != Size)
        {
            throw new InvalidOperationException($"A stop report has {Size} bytes, not {source.Length}.");
        }
        return new StopReport(
            BinaryPrimitives.ReadInt64LittleEndian(source),
            BinaryPrimitives.ReadInt64LittleEndian(source[8..]),
            BinaryPrimitives.ReadUInt64LittleEndian(source[16..]));
    }
}
