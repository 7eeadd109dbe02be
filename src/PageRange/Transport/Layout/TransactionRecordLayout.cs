using System.Runtime.InteropServices;

namespace PageRange.Transport;

/// <summary>One slot of the transaction ring (writer -> receiver): where a payload lies and what it is.</summary>
/// <remarks>
/// <code>
/// 0 TransactionId u64 | 8 BufferOffset u64 | 16 Length u32 | 20 Code u32 | 24 Flags u32 | 28 Reserved u32 | 32
/// </code>
/// <see cref="BufferOffset"/> is relative to the data area. The receiver copies a slot to a local once and validates
/// the copy (offset and length inside the data area, known flags) before it touches the payload.
/// </remarks>
[StructLayout(LayoutKind.Explicit, Size = Size)]
internal struct TransactionRecordLayout
{
    /// <summary>The size of one record in bytes.</summary>
    internal const int Size = 32;

    /// <summary>The sender's id for the transaction; a reply carries the id of the call it answers.</summary>
    [FieldOffset(0)] public ulong TransactionId;

    /// <summary>Offset of the payload from the start of the data area.</summary>
    [FieldOffset(8)] public ulong BufferOffset;

    /// <summary>Payload length in bytes.</summary>
    [FieldOffset(16)] public uint Length;

    /// <summary>What the transaction asks for (binder's <c>code</c>: the method or opcode).</summary>
    [FieldOffset(20)] public uint Code;

    /// <summary>A <see cref="TransactionFlags"/> value.</summary>
    [FieldOffset(24)] public uint Flags;

    /// <summary>Zero; room for a later version.</summary>
    [FieldOffset(28)] public uint Reserved;
}
