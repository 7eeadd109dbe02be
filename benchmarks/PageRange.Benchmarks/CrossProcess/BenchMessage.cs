using MessagePack;

namespace PageRange.Benchmarks.CrossProcess;

/// <summary>The typed message of the MessagePack mode: a sequence number and the payload bytes.</summary>
/// <remarks>Public because MessagePack's dynamic resolver generates its formatter at run time for public types only.</remarks>
[MessagePackObject]
public sealed class BenchMessage
{
    /// <summary>A sequence number, as a real message would carry.</summary>
    [Key(0)]
    public long Seq { get; set; }

    /// <summary>The payload.</summary>
    [Key(1)]
#pragma warning disable CA1819 // The message's shape is what users send: a blob. MessagePack needs the settable array.
    public byte[] Data { get; set; } = [];
#pragma warning restore CA1819
}
