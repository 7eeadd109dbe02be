using System.Buffers;
using MessagePack;

namespace PageRange.Tests.Serialization;

/// <summary>A message with a sequence member that deserializes as a slice of the region.</summary>
/// <remarks>Public because MessagePack's dynamic resolver generates formatters only for public types.</remarks>
[MessagePackObject]
public sealed class RegionSequenceBlob
{
    [Key(0)]
    public long Seq { get; set; }

    [Key(1)]
    public ReadOnlySequence<byte> Data { get; set; }
}
