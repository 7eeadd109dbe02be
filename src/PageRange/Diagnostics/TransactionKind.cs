namespace PageRange.Diagnostics;

/// <summary>The <c>kind</c> tag of the transaction counters: which of binder's transaction kinds a record carried.</summary>
internal enum TransactionKind
{
    /// <summary>Fire and forget (binder's <c>TF_ONE_WAY</c>).</summary>
    Oneway,

    /// <summary>A two-way call that waits for a reply.</summary>
    Call,

    /// <summary>The answer to a call (binder's <c>BR_REPLY</c>).</summary>
    Reply,

    /// <summary>The callee failed the call (binder's <c>BR_FAILED_REPLY</c>).</summary>
    ErrorReply,
}
