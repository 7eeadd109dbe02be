using System.Runtime.CompilerServices;
using PageRange.Memory;
using PageRange.Threading;

namespace PageRange.Transport;

/// <summary>Zero-copy sending: reserve a buffer in the peer's region, write the payload in place, commit it.</summary>
/// <remarks>
/// <see cref="_reservationLock"/> guards only the pool of <see cref="Reservation"/> objects and nests inside nothing.
/// A reservation holds no lock between reserve and commit: other threads send meanwhile, and records are published in
/// commit order.
/// </remarks>
public sealed partial class PageRangeConnection
{
    /// <summary>Reservations kept for reuse; more may be live at once, the rest are allocated and dropped.</summary>
    private const int ReservationPoolSize = 16;

    private readonly Lock _reservationLock = new();
    private readonly Stack<Reservation> _reservationPool = new(ReservationPoolSize);

    /// <summary>The peer's region as this side's bookkeeping sees it (buffers reserved or delivered, free bytes), for tests.</summary>
    internal Allocation.BufferAllocatorStats OutboundStats => _outbound.GetSendStats();

    /// <summary>Buffers reserved or delivered in the peer's region and not yet freed, for tests.</summary>
    internal int OutboundLiveBuffers => _outbound.LiveBuffers;

    /// <summary>
    /// Reserves a buffer of <paramref name="maxSize"/> bytes in the peer's region, to write a payload straight into the
    /// receiver's memory and then commit it without a copy.
    /// </summary>
    /// <param name="maxSize">The most bytes the payload will have.</param>
    /// <param name="oneway">Reserve for a oneway message (charged to the peer's oneway quota) rather than a call.</param>
    /// <param name="cancellationToken">Cancels waiting for room.</param>
    /// <returns>The reservation: fill it, then <see cref="ReservedBuffer.CommitOneway"/> (oneway) or
    /// <see cref="ReservedBuffer.CommitCall"/> / <see cref="ReservedBuffer.CommitCallAsync"/> (call). Dispose it.</returns>
    /// <remarks>While the peer's region is full this waits for it to free buffers, up to
    /// <see cref="PageRangeOptions.RegionFullTimeout"/>.</remarks>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="maxSize"/> is negative.</exception>
    /// <exception cref="MessageTooLargeException">The buffer can never fit the peer's region (or its oneway quota).</exception>
    /// <exception cref="RegionFullException">The peer's region stayed full.</exception>
    /// <exception cref="OperationCanceledException">The token was cancelled.</exception>
    /// <exception cref="PeerDiedException">The peer is gone.</exception>
    public ReservedBuffer Reserve(int maxSize, bool oneway = false, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(maxSize);
        return new ReservedBuffer(RentReservation(maxSize, oneway ? ReservationKind.Oneway : ReservationKind.Call, _options.RegionFullTimeout, cancellationToken));
    }

    /// <summary>
    /// <see cref="Reserve"/> for a oneway message that belongs to a call with a deadline (a gRPC stream's frame): the wait
    /// for room ends at <paramref name="deadline"/> too, if that comes before <see cref="PageRangeOptions.RegionFullTimeout"/>,
    /// and when either token is cancelled (the call's, and the write's own).
    /// </summary>
    /// <exception cref="TimeoutException">The deadline passed while it waited for room.</exception>
    /// <exception cref="OperationCanceledException">A token was cancelled while it waited for room.</exception>
    internal ReservedBuffer ReserveOneway(int maxSize, DateTimeOffset? deadline, CancellationToken cancellationToken, CancellationToken alsoCancelledBy = default)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(maxSize);
        return new ReservedBuffer(RentReservationCore(maxSize, ReservationKind.Oneway, _options.RegionFullTimeout, deadline, cancellationToken, alsoCancelledBy));
    }

    /// <summary>Reserves the reply to the incoming call in <paramref name="call"/>; see <see cref="Transaction.ReserveReply"/>.</summary>
    internal ReservedBuffer ReserveReply(IncomingSlot call, int callGeneration, int maxSize, CancellationToken cancellationToken)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(maxSize);
        return new ReservedBuffer(RentReplyReservation(call, callGeneration, maxSize, cancellationToken));
    }

    /// <summary>Reserves a buffer and takes a pooled reservation for it.</summary>
    /// <param name="maxSize">The buffer's size.</param>
    /// <param name="kind">Oneway or call (replies go through <see cref="RentReplyReservation"/>).</param>
    /// <param name="timeout">How long to wait for room.</param>
    /// <param name="cancellationToken">Cancels the wait.</param>
    /// <param name="deadline">Ends the wait sooner than <paramref name="timeout"/>, as a <see cref="TimeoutException"/>; see
    /// <see cref="ReserveCore"/>.</param>
    /// <exception cref="TimeoutException">The deadline passed while it waited for room.</exception>
    internal Reservation RentReservation(int maxSize, ReservationKind kind, TimeSpan timeout, CancellationToken cancellationToken, DateTimeOffset? deadline = null) =>
        RentReservationCore(maxSize, kind, timeout, deadline, cancellationToken, alsoCancelledBy: default);

    /// <summary><see cref="RentReservation"/> with a second token that cancels the wait (see <see cref="ReserveCore"/>).</summary>
    private Reservation RentReservationCore(
        int maxSize, ReservationKind kind, TimeSpan timeout, DateTimeOffset? deadline, CancellationToken cancellationToken, CancellationToken alsoCancelledBy)
    {
        ThrowIfDisposed();
        // The reference keeps the peer's region mapped while the reservation's spans are in use, even across Dispose.
        SharedRegion region = _outbound.Region;
        if (!region.TryAddRef())
        {
            throw NewPeerDied();
        }
        try
        {
            PendingBuffer buffer = ReserveCore(maxSize, kind == ReservationKind.Oneway, timeout, deadline, cancellationToken, alsoCancelledBy);
            Reservation reservation = TakeReservation();
            reservation.Buffer = buffer;
            reservation.Kind = kind;
            reservation.Written = 0;
            reservation.Spilled = false;
            // Odd: live. Published last, so a handle made from it sees a complete reservation.
            Volatile.Write(ref reservation.Generation, reservation.Generation + 1);
            return reservation;
        }
        catch
        {
            region.ReleaseRef();
            throw;
        }
    }

    /// <summary>Reserves the reply to <paramref name="call"/>; marks the call replied so no other reply (or error reply) races it.</summary>
    internal Reservation RentReplyReservation(IncomingSlot call, int callGeneration, int maxSize, CancellationToken cancellationToken)
    {
        TransactionRecord record = call.Record;
        if ((record.Flags & TransactionFlags.TwoWay) == 0)
        {
            throw new InvalidOperationException("Only a two-way call can be replied to; this transaction is oneway or a reply.");
        }
        if (Interlocked.Exchange(ref call.Replied, 1) != 0)
        {
            throw new InvalidOperationException($"Call {record.TransactionId} was already replied to.");
        }
        Reservation reservation;
        try
        {
            reservation = RentReservation(maxSize, ReservationKind.Reply, RoomTimeout(TransactionFlags.Reply), cancellationToken);
        }
        catch (Exception error)
        {
            if (error is RegionFullException full)
            {
                OnReplyRoomExhausted(TransactionFlags.Reply, full);
            }
            // No reply is coming after all: disposing the call must still send the error reply.
            Volatile.Write(ref call.Replied, 0);
            throw;
        }
        reservation.Call = call;
        reservation.CallGeneration = callGeneration;
        reservation.ReplyId = record.TransactionId;
        reservation.ReplyCode = record.Code;
        return reservation;
    }

    internal void CommitOneway(Reservation reservation, uint code, int? length)
    {
        int size = CheckCommit(reservation, ReservationKind.Oneway, length);
        Publish(reservation, NextOnewayId(), code, TransactionFlags.Oneway, size);
    }

    internal void CommitReply(Reservation reservation, int? length)
    {
        int size = CheckCommit(reservation, ReservationKind.Reply, length);
        Publish(reservation, reservation.ReplyId, reservation.ReplyCode, TransactionFlags.Reply, size);
    }

    /// <summary>Publishes a reserved call and waits for its reply.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The timeout is not a call timeout (<see cref="ValidateCallTimeout"/>): nothing
    /// was published, and the reservation is still the caller's.</exception>
    internal Transaction CommitCall(
        Reservation reservation, uint code, int? length, TimeSpan? timeout, CancellationToken cancellationToken, CallChain chain = default)
    {
        ValidateCallTimeout(timeout);
        return FinishCall(PublishCall(reservation, code, length, isAsync: false, chain), timeout, cancellationToken);
    }

    /// <summary>Publishes a reserved call and completes with its reply.</summary>
    /// <inheritdoc cref="CommitCall(Reservation, uint, int?, TimeSpan?, CancellationToken, CallChain)"/>
    internal ValueTask<Transaction> CommitCallAsync(
        Reservation reservation, uint code, int? length, TimeSpan? timeout, CancellationToken cancellationToken, CallChain chain = default)
    {
        ValidateCallTimeout(timeout);
        return FinishCallAsync(PublishCall(reservation, code, length, isAsync: true, chain), timeout, cancellationToken);
    }

    /// <summary>Publishes a reserved call in <paramref name="chain"/> under a freshly rented pending-call slot; on failure gives both back.</summary>
    /// <remarks>A <c>metadata</c> block, if given, is already written at the buffer's start: only its length is used.</remarks>
    private PendingCall PublishCall(Reservation reservation, uint code, int? length, bool isAsync, CallChain chain, ReadOnlyMemory<byte> metadata = default)
    {
        int size = CheckCommit(reservation, ReservationKind.Call, length);
        PendingCall call;
        RecordContext context;
        try
        {
            context = ContextFor(chain) with { Metadata = metadata };
            call = RentCall(isAsync, ref context, ThreadToken.Current);
        }
        catch
        {
            AbortReservation(reservation);
            throw;
        }
        try
        {
            Publish(reservation, call.Id, code, TransactionFlags.TwoWay, size, context);
        }
        catch
        {
            ReturnCall(call, taken: false, ThreadToken.Current);
            throw;
        }
        return call;
    }

    /// <summary>Gives the reservation's buffer back unsent and returns the reservation to the pool.</summary>
    internal void AbortReservation(Reservation reservation)
    {
        if (!reservation.IsLive)
        {
            return;
        }
        try
        {
            if (reservation.Buffer.IsPending)
            {
                _outbound.Abort(ref reservation.Buffer);
            }
        }
        catch (ObjectDisposedException)
        {
            // The connection is closed: the region and its bookkeeping are gone with it.
        }
        finally
        {
            if (reservation.Kind == ReservationKind.Reply)
            {
                AbandonReply(reservation);
            }
            EndReservation(reservation);
        }
    }

    /// <summary>Waits for room as <see cref="SendCore(ulong, uint, TransactionFlags, ReadOnlySpan{byte}, CancellationToken, in RecordContext)"/> does, and reserves instead of copying.</summary>
    /// <remarks>A <paramref name="deadline"/> before the end of <paramref name="timeout"/> ends the wait for room there, as
    /// a <see cref="TimeoutException"/>: a caller with a deadline (a gRPC call, its stream's writes) waited the whole
    /// timeout and failed as the region being full, not as late. The clock is read only once there is no room. So is
    /// <paramref name="alsoCancelledBy"/> linked (a gRPC write's own token beside its call's): a reservation that finds
    /// room at once registers nothing.</remarks>
    /// <exception cref="TimeoutException">The deadline passed while it waited.</exception>
    private PendingBuffer ReserveCore(
        int maxSize, bool oneway, TimeSpan timeout, DateTimeOffset? deadline, CancellationToken cancellationToken, CancellationToken alsoCancelledBy)
    {
        if (_peerDead)
        {
            throw NewPeerDied();
        }
        try
        {
            if (_outbound.TryReserve(maxSize, oneway, out PendingBuffer buffer))
            {
                return buffer;
            }
            FreeLaneBeforeBlocking();
            bool deadlineBounds = ShortenToDeadline(deadline, ref timeout);
            // As SendSlow: no linked source for a caller without a token of its own.
            using CancellationTokenSource? linked = !alsoCancelledBy.CanBeCanceled
                ? cancellationToken.CanBeCanceled ? CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, _closed.Token) : null
                : cancellationToken.CanBeCanceled
                    ? CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, alsoCancelledBy, _closed.Token)
                    : CancellationTokenSource.CreateLinkedTokenSource(alsoCancelledBy, _closed.Token);
            try
            {
                return _outbound.Reserve(maxSize, oneway, clearOnFree: false, timeout, linked?.Token ?? _closed.Token);
            }
            catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested && !alsoCancelledBy.IsCancellationRequested && _peerDead)
            {
                throw NewPeerDied();
            }
            catch (RegionFullException full) when (deadlineBounds)
            {
                throw new TimeoutException($"The deadline {deadline:O} passed while waiting for room in the peer's region: {full.Message}", full);
            }
        }
        catch (ProtocolViolationException violation)
        {
            CloseForViolation(violation);
            throw;
        }
        catch (ObjectDisposedException) when (_peerDead)
        {
            throw NewPeerDied();
        }
    }

    /// <summary>Shortens a wait for room to what is left before <paramref name="deadline"/>, if that is sooner.</summary>
    /// <returns>Whether the deadline is what ends the wait now.</returns>
    private static bool ShortenToDeadline(DateTimeOffset? deadline, ref TimeSpan timeout)
    {
        if (deadline is not { } due)
        {
            return false;
        }
        TimeSpan left = due - DateTimeOffset.UtcNow;
        if (timeout != Timeout.InfiniteTimeSpan && left >= timeout)
        {
            return false;
        }
        timeout = left > TimeSpan.Zero ? left : TimeSpan.Zero;
        return true;
    }

    private static int CheckCommit(Reservation reservation, ReservationKind kind, int? length)
    {
        if (reservation.Kind != kind)
        {
            throw new InvalidOperationException(reservation.Kind switch
            {
                ReservationKind.Oneway => "This buffer was reserved for a oneway message: commit it with CommitOneway.",
                ReservationKind.Call => "This buffer was reserved for a call: commit it with CommitCall or CommitCallAsync.",
                _ => "This buffer was reserved for a reply: commit it with CommitReply.",
            });
        }
        int size = length ?? reservation.Written;
        ArgumentOutOfRangeException.ThrowIfNegative(size, nameof(length));
        if (size > reservation.Buffer.MaxSize)
        {
            throw new ArgumentOutOfRangeException(
                nameof(length), size, $"Only {reservation.Buffer.MaxSize} bytes were reserved; a commit cannot publish more than its reservation.");
        }
        return size;
    }

    /// <summary>Publishes the reservation's buffer and ends the reservation, whatever happens.</summary>
    private void Publish(Reservation reservation, ulong id, uint code, TransactionFlags flags, int length, in RecordContext context = default)
    {
        try
        {
            ThrowIfDisposed();
            if (_peerDead)
            {
                throw NewPeerDied();
            }
            try
            {
                _outbound.Commit(ref reservation.Buffer, length, id, code, flags, context);
            }
            finally
            {
                // Whatever Commit did, the buffer is no longer ours to abort: it was published, or aborted by the channel
                // (a protocol violation), or the channel is gone.
                reservation.Buffer.Complete();
            }
        }
        catch (ProtocolViolationException violation)
        {
            CloseForViolation(violation);
            throw;
        }
        catch (ObjectDisposedException) when (_peerDead)
        {
            throw NewPeerDied();
        }
        finally
        {
            if (reservation.Buffer.IsPending)
            {
                AbortReservation(reservation);
            }
            else
            {
                EndReservation(reservation);
            }
        }
    }

    /// <summary>A reply reservation ended without a reply: the caller must still hear something.</summary>
    private void AbandonReply(Reservation reservation)
    {
        IncomingSlot call = reservation.Call!;
        using (_slotLock.EnterScope())
        {
            if (call.Generation == reservation.CallGeneration)
            {
                // The call is still live: its Dispose sends the error reply, or the handler replies after all.
                Volatile.Write(ref call.Replied, 0);
                return;
            }
        }
        if (!_peerDead && Volatile.Read(ref _disposed) == 0)
        {
            try
            {
                SendCore(reservation.ReplyId, reservation.ReplyCode, TransactionFlags.ErrorReply, "The peer abandoned its reply."u8,
                    CancellationToken.None, RecordContext.ForError(CallStatus.Unknown));
            }
            catch (PageRangeException)
            {
                // The caller is gone or its region is full; it will time out or see the death.
            }
        }
    }

    private Reservation TakeReservation()
    {
        lock (_reservationLock)
        {
            if (_reservationPool.TryPop(out Reservation? pooled))
            {
                return pooled;
            }
        }
        return new Reservation(this);
    }

    private void EndReservation(Reservation reservation)
    {
        // Even: ended. Stale handles now fail their generation check.
        Volatile.Write(ref reservation.Generation, reservation.Generation + 1);
        reservation.Call = null;
        reservation.Spill = null;
        _outbound.Region.ReleaseRef();
        lock (_reservationLock)
        {
            if (_reservationPool.Count < ReservationPoolSize)
            {
                _reservationPool.Push(reservation);
            }
        }
    }
}
