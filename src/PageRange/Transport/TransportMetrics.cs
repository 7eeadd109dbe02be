using System.Runtime.CompilerServices;
using PageRange.Diagnostics;

namespace PageRange.Transport;

/// <summary>The transport's calls into the <c>PageRange</c> meter: maps flags to the meter's kinds, allocates nothing.</summary>
internal static class TransportMetrics
{
    /// <summary>Counts a transaction published into the peer's region.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void OnSent(TransactionFlags flags, int length) => PageRangeMetrics.RecordSent(KindOf(flags), length);

    /// <summary>Counts a validated transaction taken off our ring.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void OnReceived(TransactionFlags flags, int length) => PageRangeMetrics.RecordReceived(KindOf(flags), length);

    /// <summary>The meter's kind for valid flags (exactly one kind bit is set).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static TransactionKind KindOf(TransactionFlags flags) =>
        (flags & TransactionFlags.Oneway) != 0 ? TransactionKind.Oneway
        : (flags & TransactionFlags.TwoWay) != 0 ? TransactionKind.Call
        : (flags & TransactionFlags.Reply) != 0 ? TransactionKind.Reply
        : TransactionKind.ErrorReply;
}
