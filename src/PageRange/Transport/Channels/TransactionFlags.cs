using System.Diagnostics.CodeAnalysis;

namespace PageRange.Transport;

/// <summary>What kind of transaction a record carries (binder's <c>TF_*</c> flags and <c>BR_*</c> kinds).</summary>
/// <remarks>
/// Exactly one of the kind flags (<see cref="Oneway"/>, <see cref="TwoWay"/>, <see cref="Reply"/>,
/// <see cref="ErrorReply"/>) is set; <see cref="ClearOnFree"/> and <see cref="Cancel"/> modify it. Any other bit is a
/// protocol violation.
/// </remarks>
[Flags]
[SuppressMessage("Naming", "CA1711", Justification = "The contract's name, after binder's transaction flags (TF_*).")]
public enum TransactionFlags : uint
{
    /// <summary>No flag; never valid on its own.</summary>
    None = 0,

    /// <summary>Fire and forget (binder's <c>TF_ONE_WAY</c>): no reply, counts against the oneway quota.</summary>
    Oneway = 1 << 0,

    /// <summary>A call: the sender waits for a <see cref="Reply"/> or <see cref="ErrorReply"/> with the same id.</summary>
    TwoWay = 1 << 1,

    /// <summary>The answer to a <see cref="TwoWay"/> call (binder's <c>BR_REPLY</c>).</summary>
    Reply = 1 << 2,

    /// <summary>The callee failed the call; the payload describes the error (binder's <c>BR_FAILED_REPLY</c>).</summary>
    ErrorReply = 1 << 3,

    /// <summary>Zero the buffer when it is freed (binder's <c>TF_CLEAR_BUF</c>), for secrets.</summary>
    ClearOnFree = 1 << 4,

    /// <summary>The sender gave up on the call this transaction refers to.</summary>
    Cancel = 1 << 5,
}
