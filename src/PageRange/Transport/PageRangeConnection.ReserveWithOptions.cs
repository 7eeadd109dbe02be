using System.Diagnostics;

namespace PageRange.Transport;

/// <summary>
/// Zero-copy calls that carry <see cref="PageRangeCallOptions"/> (a deadline, key/values): the metadata block is written
/// at the start of the reservation and the payload after it, the layout a copied call has. Internal, for the gRPC
/// package; calls with a tracing or metrics listener still go through the copying path, which observes them.
/// </summary>
public sealed partial class PageRangeConnection
{
    /// <summary>
    /// Stands for the block in the record's context when the block is already in place: an in-place publish takes only
    /// its length and copies nothing from it.
    /// </summary>
    private static readonly byte[] s_inPlaceMetadata = new byte[CallMetadataBlock.MaxLength];

    /// <summary>
    /// Reserves a call buffer of <paramref name="options"/>' metadata block (written and advanced past here) and up to
    /// <paramref name="maxPayload"/> bytes of payload after it.
    /// </summary>
    /// <param name="maxPayload">The most payload bytes.</param>
    /// <param name="options">The call's options; not <see cref="PageRangeCallOptions.ClearOnFree"/> (the reservation's
    /// clearing is the connection's).</param>
    /// <param name="metadataLength">The block's bytes: the payload starts there.</param>
    /// <param name="cancellationToken">Cancels waiting for room.</param>
    /// <exception cref="ArgumentException"><paramref name="options"/> asks for <see cref="PageRangeCallOptions.ClearOnFree"/>.</exception>
    /// <exception cref="TimeoutException">The deadline passed while the call waited for room in the peer's region (before
    /// <see cref="PageRangeOptions.RegionFullTimeout"/>, which is a <see cref="RegionFullException"/>).</exception>
    internal ReservedBuffer ReserveCall(int maxPayload, PageRangeCallOptions options, out int metadataLength, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(maxPayload);
        ArgumentNullException.ThrowIfNull(options);
        if (options.ClearOnFree)
        {
            throw new ArgumentException("A reserved call's buffer is cleared as the connection says; send a ClearOnFree call with Call.", nameof(options));
        }
        metadataLength = options.HasBlockContent ? CallMetadataBlock.GetLength(options, default, null) : 0;
        // A call with a deadline waits for room no longer than the deadline allows: its caller (a gRPC call with a 100 ms
        // deadline) waited the region's whole timeout and then failed as exhausted, not as late (found by review).
        Reservation reservation = RentReservation(
            checked(metadataLength + maxPayload), ReservationKind.Call, _options.RegionFullTimeout, cancellationToken, options.Deadline);
        var reserved = new ReservedBuffer(reservation);
        if (metadataLength > 0)
        {
            CallMetadataBlock.Write(reserved.Span[..metadataLength], options, default, null);
            reserved.Advance(metadataLength);
        }
        return reserved;
    }

    /// <summary>Commits a call reserved with <see cref="ReserveCall"/> and waits for its reply (bounded by the deadline).</summary>
    /// <param name="reserved">The reservation; its written bytes (block and payload) are published.</param>
    /// <param name="code">What the call asks for.</param>
    /// <param name="metadataLength">From <see cref="ReserveCall"/>.</param>
    /// <param name="options">The same options.</param>
    /// <param name="timeout">The call's timeout, shortened to the deadline.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    /// <exception cref="TimeoutException">The deadline passed before it was sent (the reservation is the caller's to dispose).</exception>
    internal Transaction CommitCall(ReservedBuffer reserved, uint code, int metadataLength, PageRangeCallOptions options, TimeSpan? timeout, CancellationToken cancellationToken)
    {
        ValidateCallTimeout(timeout);
        TimeSpan? limit = LimitByDeadline(options, timeout);
        return FinishCall(PublishCall(reserved.Reservation, code, null, isAsync: false, default, InPlaceMetadata(metadataLength)), limit, cancellationToken);
    }

    /// <inheritdoc cref="CommitCall(ReservedBuffer, uint, int, PageRangeCallOptions, TimeSpan?, CancellationToken)"/>
    internal ValueTask<Transaction> CommitCallAsync(
        ReservedBuffer reserved, uint code, int metadataLength, PageRangeCallOptions options, TimeSpan? timeout, CancellationToken cancellationToken)
    {
        ValidateCallTimeout(timeout);
        TimeSpan? limit = LimitByDeadline(options, timeout);
        return FinishCallAsync(PublishCall(reserved.Reservation, code, null, isAsync: true, default, InPlaceMetadata(metadataLength)), limit, cancellationToken);
    }

    private static ReadOnlyMemory<byte> InPlaceMetadata(int length)
    {
        Debug.Assert(length is >= 0 and <= CallMetadataBlock.MaxLength, "GetLength bounds the block.");
        return s_inPlaceMetadata.AsMemory(0, length);
    }
}
