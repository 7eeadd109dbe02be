using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace PageRange.Benchmarks.CrossProcess;

/// <summary>
/// The fixed-layout message of the struct mode and probe: a sequence number and 56 bytes, 64 bytes in all, the size of
/// the raw and typed 64 B messages (sent with <c>SendOnewayStruct</c>, read with <c>ReadStruct</c>).
/// </summary>
[StructLayout(LayoutKind.Sequential, Pack = 1)]
internal readonly struct BenchStruct
{
    public const int Size = 64;

    private readonly long _sequence;
    private readonly Body _body;

    public BenchStruct(long sequence)
    {
        _sequence = sequence;
    }

    /// <summary>The struct whose bytes are <paramref name="bytes"/> (64 of them): the harness's payload as a struct.</summary>
    public static BenchStruct From(ReadOnlySpan<byte> bytes) => MemoryMarshal.Read<BenchStruct>(bytes);

    /// <summary>The bytes of <paramref name="message"/>, a copy the caller holds.</summary>
    public static ReadOnlySpan<byte> BytesOf(in BenchStruct message) => MemoryMarshal.AsBytes(new ReadOnlySpan<BenchStruct>(in message));

    /// <summary>The same checksum as the raw bytes' (<see cref="Checksum.Of"/>), over this copy's bytes.</summary>
    public ulong Checksum() => CrossProcess.Checksum.Of(BytesOf(in this));

    [InlineArray(Size - sizeof(long))]
    private struct Body
    {
        private byte _first;
    }
}
