namespace PageRange.Transport;

/// <summary>Validation of <see cref="TransactionFlags"/> read from shared memory or given by a caller.</summary>
internal static class TransactionFlagsExtensions
{
    private const TransactionFlags KindMask =
        TransactionFlags.Oneway | TransactionFlags.TwoWay | TransactionFlags.Reply | TransactionFlags.ErrorReply;

    /// <summary>
    /// On a received two-way call: its caller waits for a direct reply (<see cref="DirectReplyLayout.RequestFlag"/>, the same
    /// bit). Internal: never valid on a send, masked from <see cref="Transaction.Flags"/>.
    /// </summary>
    internal const TransactionFlags DirectReplyRequested = (TransactionFlags)DirectReplyLayout.RequestFlag;

    /// <summary>
    /// On a two-way call being sent: write it into the callee's direct call lines if it fits (<see cref="DirectCallLayout"/>).
    /// Internal: never on the wire (the lines say it), never valid on a received record.
    /// </summary>
    internal const TransactionFlags DirectCall = (TransactionFlags)(1u << 28);

    private const TransactionFlags KnownMask = KindMask | TransactionFlags.ClearOnFree | TransactionFlags.Cancel;

    /// <summary>No unknown bit, and exactly one kind bit.</summary>
    internal static bool IsValid(this TransactionFlags flags)
    {
        TransactionFlags kind = flags & KindMask;
        return (flags & ~KnownMask) == 0 && kind != 0 && (kind & (kind - 1)) == 0;
    }

    /// <summary>Whether the transaction counts against the oneway quota.</summary>
    internal static bool IsOneway(this TransactionFlags flags) => (flags & TransactionFlags.Oneway) != 0;
}
