using System.Runtime.InteropServices;

namespace PageRange.Transport;

/// <summary>One slot of the transaction ring (writer -> receiver): where a payload lies, what it is, and which call chain it belongs to.</summary>
/// <remarks>
/// <code>
/// 0 TransactionId u64 | 8 BufferOffset u64 | 16 Length u32 | 20 Code u32 | 24 Flags u32 | 28 Status u32 |
/// 32 ChainId u64 | 40 Depth u32 | 44 MetadataLength u32 | 48 Reserved0 u64 | 56 Reserved1 u64 | 64
/// </code>
/// One cache line. <see cref="BufferOffset"/> is relative to the data area. The receiver copies a slot to a local once
/// and validates the copy (offset and length inside the data area, known flags, a status only on an error reply, a
/// chain only on a two-way call, a depth within <see cref="MaxDepth"/>, a bounded metadata length, reserved words zero) before it touches the payload.
/// </remarks>
[StructLayout(LayoutKind.Explicit, Size = Size)]
internal struct TransactionRecordLayout
{
    /// <summary>The size of one record in bytes: one cache line.</summary>
    internal const int Size = 64;

    /// <summary>The deepest call chain the protocol carries; <see cref="PageRangeOptions.MaxCallDepth"/> is at most this.</summary>
    internal const uint MaxDepth = 1024;

    /// <summary>The highest status an error reply may carry (<see cref="CallStatus.Unauthenticated"/>).</summary>
    internal const uint MaxStatus = (uint)CallStatus.Unauthenticated;

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

    /// <summary>A <see cref="CallStatus"/> on an error reply (at most <see cref="MaxStatus"/>); zero on every other record.</summary>
    [FieldOffset(28)] public uint Status;

    /// <summary>The call chain a two-way call belongs to (binder's transaction stack); zero on every other record.</summary>
    [FieldOffset(32)] public ulong ChainId;

    /// <summary>How deep in its chain a two-way call is (0: a call nobody nested); zero on every other record.</summary>
    [FieldOffset(40)] public uint Depth;

    /// <summary>
    /// How many bytes at the start of the buffer are a metadata block (deadline, trace context, user metadata; see
    /// <see cref="CallMetadataBlock"/>) rather than payload: zero, or on a call or oneway message a multiple of 8 up to
    /// <see cref="CallMetadataBlock.MaxLength"/> and within <see cref="Length"/>.
    /// </summary>
    [FieldOffset(44)] public uint MetadataLength;

    /// <summary>Zero; room for a later version.</summary>
    [FieldOffset(48)] public ulong Reserved0;

    /// <summary>Zero; room for a later version.</summary>
    [FieldOffset(56)] public ulong Reserved1;
}
