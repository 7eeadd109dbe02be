using MessagePack;

namespace PageRange.Tests.Serialization;

/// <summary>A message with a blob member that deserializes as a slice of the region.</summary>
/// <remarks>Public because MessagePack's dynamic resolver generates formatters only for public types.</remarks>
[MessagePackObject]
public sealed class RegionBlob
{
    [Key(0)]
    public long Seq { get; set; }

    [Key(1)]
    public ReadOnlyMemory<byte> Data { get; set; }
}
