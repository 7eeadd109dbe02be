using System.Buffers;
using MessagePack;
using MessagePack.Formatters;

namespace PageRange.Serialization;

/// <summary>
/// <see cref="ReadOnlyMemory{T}"/> of bytes as MessagePack <c>bin</c>. Written straight from the value; read, when the
/// caller keeps the transaction (<see cref="PageRangeMessagePack.Deserialize{T}"/>), as a slice of the payload in the
/// mapped region: no copy and no allocation, valid until the transaction is disposed. Where the payload is freed
/// before the message is returned (the typed <c>Call</c>), or the input is not one piece of memory, it is copied.
/// </summary>
internal sealed class RegionMemoryFormatter : IMessagePackFormatter<ReadOnlyMemory<byte>>
{
    public static readonly RegionMemoryFormatter Instance = new();

    /// <summary>Set on this thread while a transaction the caller keeps is deserialized: slices are safe then.</summary>
    [ThreadStatic]
    internal static bool t_sliceInPlace;

    private RegionMemoryFormatter()
    {
    }

    public void Serialize(ref MessagePackWriter writer, ReadOnlyMemory<byte> value, MessagePackSerializerOptions options) =>
        writer.Write(value.Span);

    public ReadOnlyMemory<byte> Deserialize(ref MessagePackReader reader, MessagePackSerializerOptions options)
    {
        // ReadBytes returns a slice of the input sequence (never a copy); nil reads as empty, as MessagePack's own does.
        if (reader.ReadBytes() is not { } bytes)
        {
            return ReadOnlyMemory<byte>.Empty;
        }
        return t_sliceInPlace && bytes.IsSingleSegment ? bytes.First : bytes.ToArray();
    }
}
