using System.Buffers.Binary;

namespace PageRange.Benchmarks.CrossProcess;

/// <summary>
/// One message size, prepared once: the bytes, their checksum, the framed copies the stream baselines send, and the
/// typed message of the MessagePack mode, and (at 64 B) the same bytes as the struct mode's message. Every transport sends from a prepared buffer, so none pays for building it.
/// </summary>
internal sealed class BenchPayload
{
    /// <summary>Bytes in front of every stream frame: a little-endian length, then the code.</summary>
    public const int FrameHeaderSize = 8;

    public BenchPayload(int size)
    {
        Data = new byte[size];
        new Random(size).NextBytes(Data);
        Checksum = CrossProcess.Checksum.Of(Data);
        PingFrame = Frame(BenchCodes.Ping, Data);
        OnewayFrame = Frame(BenchCodes.Oneway, Data);
        Message = new BenchMessage { Data = Data };
        Struct = size == BenchStruct.Size ? BenchStruct.From(Data) : default;
    }

    public int Size => Data.Length;

    public byte[] Data { get; }

    public ulong Checksum { get; }

    public byte[] PingFrame { get; }

    public byte[] OnewayFrame { get; }

    public BenchMessage Message { get; }

    /// <summary>The payload's bytes as the struct mode's message (64 B only: <see cref="BenchStruct.Size"/>).</summary>
    public BenchStruct Struct { get; }

    public static byte[] Frame(uint code, ReadOnlySpan<byte> payload)
    {
        byte[] frame = new byte[FrameHeaderSize + payload.Length];
        WriteHeader(frame, code, payload.Length);
        payload.CopyTo(frame.AsSpan(FrameHeaderSize));
        return frame;
    }

    public static void WriteHeader(Span<byte> destination, uint code, int length)
    {
        BinaryPrimitives.WriteInt32LittleEndian(destination, length);
        BinaryPrimitives.WriteUInt32LittleEndian(destination[4..], code);
    }
}
