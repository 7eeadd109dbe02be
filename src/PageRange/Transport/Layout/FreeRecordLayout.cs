using System.Runtime.InteropServices;

namespace PageRange.Transport;

/// <summary>One slot of the free ring (receiver -> writer): a buffer the receiver is done with (binder's <c>BC_FREE_BUFFER</c>).</summary>
/// <remarks>
/// <code>
/// 0 BufferOffset u64 | 8 TransactionId u64 | 16
/// </code>
/// The writer frees the buffer that starts at <see cref="BufferOffset"/> if it is a live, delivered buffer; any other
/// offset is counted as an ignored free, as binder ignores a free of an unknown address.
/// </remarks>
[StructLayout(LayoutKind.Explicit, Size = Size)]
internal struct FreeRecordLayout
{
    /// <summary>The size of one record in bytes.</summary>
    internal const int Size = 16;

    /// <summary>Offset of the freed buffer from the start of the data area.</summary>
    [FieldOffset(0)] public ulong BufferOffset;

    /// <summary>The transaction whose buffer this was; diagnostic only, the offset alone identifies the buffer.</summary>
    [FieldOffset(8)] public ulong TransactionId;
}
