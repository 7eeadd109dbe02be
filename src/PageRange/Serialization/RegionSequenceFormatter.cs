using System.Buffers;
using MessagePack;
using MessagePack.Formatters;

namespace PageRange.Serialization;

/// <summary>
/// <see cref="ReadOnlySequence{T}"/> of bytes as MessagePack <c>bin</c>, as <see cref="RegionMemoryFormatter"/> does for
/// <see cref="ReadOnlyMemory{T}"/>: read, when the caller keeps the transaction (<see cref="PageRangeMessagePack.Deserialize{T}"/>),
/// as a slice of the payload in the mapped region (no copy, no allocation, valid until the transaction is disposed);
/// copied where the payload is freed before the message is returned (the typed <c>Call</c>).
/// </summary>
internal sealed class RegionSequenceFormatter : IMessagePackFormatter<ReadOnlySequence<byte>>
{
    public static readonly RegionSequenceFormatter Instance = new();

    private RegionSequenceFormatter()
    {
    }

    public void Serialize(ref MessagePackWriter writer, ReadOnlySequence<byte> value, MessagePackSerializerOptions options) =>
        writer.Write(value);

    public ReadOnlySequence<byte> Deserialize(ref MessagePackReader reader, MessagePackSerializerOptions options)
    {
        // ReadBytes returns a slice of the input sequence (never a copy); nil reads as empty, as MessagePack's own does.
        if (reader.ReadBytes() is not { } bytes)
        {
            return ReadOnlySequence<byte>.Empty;
        }
        // The same per-thread switch as the memory formatter: set only while a transaction the caller keeps is read.
        return RegionMemoryFormatter.t_sliceInPlace ? bytes : new ReadOnlySequence<byte>(bytes.ToArray());
    }
}
