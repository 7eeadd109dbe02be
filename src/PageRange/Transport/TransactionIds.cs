namespace PageRange.Transport;

/// <summary>
/// The shape of a transaction id: a sequence number above the index of the caller's pending-call slot, so a reply
/// finds its call by the id alone. Oneway ids have every index bit set, outside every real slot index, so a forged
/// "reply" to one never matches a pending call.
/// </summary>
internal static class TransactionIds
{
    /// <summary>The low bits of a call's transaction id name its pending-call slot.</summary>
    internal const int PendingCallIndexBits = 16;

    /// <summary>The index bits; all set in a oneway id.</summary>
    internal const int PendingCallIndexMask = (1 << PendingCallIndexBits) - 1;

    /// <summary>
    /// Not an id: what a sender passes for a oneway message whose id the outbound channel gives it under its send lock
    /// (<see cref="Oneway"/> of the channel's own count), so sending a oneway takes no interlocked operation for its id.
    /// No real id is all ones: a call's index bits are below the mask, and a oneway's sequence would need 2^48 messages.
    /// </summary>
    internal const ulong AssignedOnSend = ulong.MaxValue;

    /// <summary>The id of the <paramref name="sequence"/>th oneway message.</summary>
    internal static ulong Oneway(ulong sequence) => (sequence << PendingCallIndexBits) | PendingCallIndexMask;

    /// <summary>The id of a call with <paramref name="sequence"/> in pending-call slot <paramref name="index"/>.</summary>
    internal static ulong Call(ulong sequence, int index) => (sequence << PendingCallIndexBits) | (uint)index;
}
