using MessagePack;

namespace PageRange.Benchmarks.CrossProcess;

/// <summary>The typed message of the MessagePack mode: a sequence number and the payload bytes, a blob as users send it.</summary>
/// <remarks>Public because MessagePack's dynamic resolver generates its formatter at run time for public types only.</remarks>
[MessagePackObject]
public sealed class BenchMessage
{
    /// <summary>A sequence number, as a real message would carry.</summary>
    [Key(0)]
    public long Seq { get; set; }

    /// <summary>The payload: read in place, a slice of the transaction's payload in the region (issue 12 item 4).</summary>
    [Key(1)]
    public ReadOnlyMemory<byte> Data { get; set; }
}
