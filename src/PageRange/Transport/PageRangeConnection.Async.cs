using System.Diagnostics;
using System.Runtime.CompilerServices;
using PageRange.Diagnostics;
using PageRange.Memory;
using PageRange.Threading;

namespace PageRange.Transport;

/// <summary>
/// Asynchronous sending: calls, oneway messages and replies that wait for room in the peer's region without blocking a
/// thread.
/// </summary>
/// <remarks>
/// While the peer's region is full, asynchronous senders await the current room signal (a task shared by all of them).
/// One background thread per connection, the room watcher (started the first time an asynchronous sender has to wait),
/// parks on the free ring's doorbell while such senders exist, drains the frees the peer publishes, and completes the
/// signal whenever buffers came back; each sender then tries again. A sender reads the signal before it tries, so room
/// that appears between its failed try and its wait completes the signal it awaits: no wake-up is lost.
/// </remarks>
public sealed partial class PageRangeConnection
{
    private TaskCompletionSource _roomSignal = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly ManualResetEventSlim _roomWake = new(false);
    private int _roomWaiters;
    private Thread? _roomWatcher;

    /// <summary>Sends a oneway message, waiting asynchronously while the peer's region is full.</summary>
    /// <param name="code">The method or opcode, for the receiver.</param>
    /// <param name="payload">The bytes to send; may be empty. Not used after the returned task completes.</param>
    /// <param name="cancellationToken">Cancels waiting for room; nothing is sent then.</param>
    /// <returns>Completes once the message is published.</returns>
    /// <exception cref="MessageTooLargeException">The payload is larger than the peer's oneway quota and can never fit.</exception>
    /// <exception cref="RegionFullException">The peer's region (or its oneway quota) stayed full for <see cref="PageRangeOptions.RegionFullTimeout"/>.</exception>
    /// <exception cref="OperationCanceledException">The token was cancelled before the message could be placed.</exception>
    /// <exception cref="PeerDiedException">The peer is gone.</exception>
    public ValueTask SendOnewayAsync(uint code, ReadOnlyMemory<byte> payload, CancellationToken cancellationToken = default)
    {
        if (TryAppendOneway(code, payload.Span))
        {
            return ValueTask.CompletedTask;
        }
        ulong id = NextOnewayId();
        return TrySendNow(id, code, TransactionFlags.Oneway, payload.Span, default)
            ? ValueTask.CompletedTask
            : SendSlowAsync(id, code, TransactionFlags.Oneway, payload, default, cancellationToken);
    }

    /// <summary>Sends a reply or error reply, waiting asynchronously while the caller's region is full.</summary>
    internal ValueTask SendReplyAsync(IncomingSlot slot, ReadOnlyMemory<byte> payload, CallStatus status, CancellationToken cancellationToken)
    {
        TransactionRecord record = slot.Record;
        if ((record.Flags & TransactionFlags.TwoWay) == 0)
        {
            throw new InvalidOperationException("Only a two-way call can be replied to; this transaction is oneway or a reply.");
        }
        if (Interlocked.Exchange(ref slot.Replied, 1) != 0)
        {
            throw new InvalidOperationException($"Call {record.TransactionId} was already replied to.");
        }
        TransactionFlags flags = ReplyFlags(record, status);
        try
        {
            if (TrySendNow(record.TransactionId, record.Code, flags, payload.Span, RecordContext.ForError(status)))
            {
                return ValueTask.CompletedTask;
            }
        }
        catch
        {
            Volatile.Write(ref slot.Replied, 0);
            throw;
        }
        return ReplySlowAsync(slot, record, flags, payload, status, cancellationToken);
    }

    private async ValueTask ReplySlowAsync(
        IncomingSlot slot, TransactionRecord record, TransactionFlags flags, ReadOnlyMemory<byte> payload, CallStatus status, CancellationToken cancellationToken)
    {
        try
        {
            await SendSlowAsync(record.TransactionId, record.Code, flags, payload, RecordContext.ForError(status), cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            // Nothing was sent: as in SendReply, the handler may try again, and disposing the call still answers the caller.
            Volatile.Write(ref slot.Replied, 0);
            throw;
        }
    }

    /// <summary>A call whose request did not fit at once: waits for room asynchronously, then for the reply.</summary>
    private async ValueTask<Transaction> CallSlowAsync(
        PendingCall call, uint code, TransactionFlags flags, ReadOnlyMemory<byte> payload, RecordContext context, TimeSpan? timeout,
        CancellationToken cancellationToken)
    {
        try
        {
            await SendSlowAsync(call.Id, code, flags, payload, context, cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            ReturnCall(call, taken: false, ThreadToken.Current);
            throw;
        }
        return await FinishCallAsync(call, timeout, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>One try to place and publish a transaction now, without waiting.</summary>
    /// <returns>Whether it was sent; <see langword="false"/>: the peer's region is full now.</returns>
    private bool TrySendNow(ulong id, uint code, TransactionFlags flags, ReadOnlySpan<byte> payload, in RecordContext context)
    {
        ThrowIfDisposed();
        if (_peerDead)
        {
            throw NewPeerDied();
        }
        try
        {
            return _outbound.TrySend(id, code, flags, payload, context);
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

    /// <summary>Back-pressure without a blocked thread: tries again each time the peer frees buffers, until the deadline.</summary>
    private async ValueTask SendSlowAsync(
        ulong id, uint code, TransactionFlags flags, ReadOnlyMemory<byte> payload, RecordContext context, CancellationToken cancellationToken)
    {
        PageRangeMetrics.RecordRegionFullWait();
        FreeLaneBeforeBlocking();
        long started = Stopwatch.GetTimestamp();
        EnterRegionFull(payload.Length);
        try
        {
            while (true)
            {
                // Read before trying: room that appears after a failed try completes this signal.
                Task signal = Volatile.Read(ref _roomSignal).Task;
                if (TrySendNow(id, code, flags, payload.Span, context))
                {
                    return;
                }
                await WaitForRoomAsync(signal, started, payload.Length, flags, cancellationToken).ConfigureAwait(false);
            }
        }
        finally
        {
            LeaveRegionFull();
        }
    }

    /// <summary>
    /// Reserves a buffer for a typed asynchronous send if there is room now, without waiting.
    /// </summary>
    /// <returns>The reservation, or null if the peer's region is full now.</returns>
    internal Reservation? TryRentReservation(int maxSize, ReservationKind kind)
    {
        ThrowIfDisposed();
        SharedRegion region = _outbound.Region;
        if (!region.TryAddRef())
        {
            throw NewPeerDied();
        }
        bool kept = false;
        try
        {
            if (_peerDead)
            {
                throw NewPeerDied();
            }
            PendingBuffer buffer;
            try
            {
                if (!_outbound.TryReserve(maxSize, kind == ReservationKind.Oneway, out buffer))
                {
                    return null;
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
            Reservation reservation = TakeReservation();
            reservation.Buffer = buffer;
            reservation.Kind = kind;
            reservation.Written = 0;
            reservation.Spilled = false;
            // Odd: live. Published last, so a handle made from it sees a complete reservation.
            Volatile.Write(ref reservation.Generation, reservation.Generation + 1);
            kept = true;
            return reservation;
        }
        finally
        {
            if (!kept)
            {
                region.ReleaseRef();
            }
        }
    }

    /// <summary>Reserves the reply to <paramref name="call"/> if there is room now; null (and the call still unanswered) if not.</summary>
    internal Reservation? TryRentReplyReservation(IncomingSlot call, int callGeneration, int maxSize)
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
        Reservation? reservation;
        try
        {
            reservation = TryRentReservation(maxSize, ReservationKind.Reply);
        }
        catch
        {
            Volatile.Write(ref call.Replied, 0);
            throw;
        }
        if (reservation is null)
        {
            Volatile.Write(ref call.Replied, 0);
            return null;
        }
        reservation.Call = call;
        reservation.CallGeneration = callGeneration;
        reservation.ReplyId = record.TransactionId;
        reservation.ReplyCode = record.Code;
        return reservation;
    }

    /// <summary>Waits for <paramref name="signal"/> (room may have appeared), bounded by the region-full timeout from <paramref name="started"/>.</summary>
    private async ValueTask WaitForRoomAsync(Task signal, long started, int size, TransactionFlags flags, CancellationToken cancellationToken)
    {
        TimeSpan limit = RoomTimeout(flags);
        TimeSpan remaining = Timeout.InfiniteTimeSpan;
        if (limit != Timeout.InfiniteTimeSpan)
        {
            remaining = limit - Stopwatch.GetElapsedTime(started);
            if (remaining <= TimeSpan.Zero)
            {
                RegionFullException full = NewRegionFull(size, flags, limit);
                OnReplyRoomExhausted(flags, full);
                throw full;
            }
        }
        Interlocked.Increment(ref _roomWaiters);
        EnsureRoomWatcher();
        _roomWake.Set();
        try
        {
            await signal.WaitAsync(remaining, cancellationToken).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
            PageRangeMetrics.RecordRegionFullFailure();
            RegionFullException full = NewRegionFull(size, flags, limit);
            OnReplyRoomExhausted(flags, full);
            throw full;
        }
        finally
        {
            Interlocked.Decrement(ref _roomWaiters);
        }
    }

    private RegionFullException NewRegionFull(int size, TransactionFlags flags, TimeSpan timeout) =>
        new($"No room for a {size}-byte {(flags.IsOneway() ? "oneway " : "")}transaction in the peer's region within {timeout}: " +
            $"{_outbound.LiveBuffers} buffers live (limit {_outbound.Layout.MaxLiveBuffers}), {_outbound.Allocator.GetStats()}.");

    /// <summary>Completes the current room signal: every asynchronous sender waiting on it tries again.</summary>
    private void SignalRoom()
    {
        var fresh = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        Interlocked.Exchange(ref _roomSignal, fresh).TrySetResult();
    }

    private void EnsureRoomWatcher()
    {
        if (Volatile.Read(ref _roomWatcher) is not null)
        {
            return;
        }
        var watcher = new Thread(RoomWatchLoop) { IsBackground = true, Name = $"PageRange room watcher ({Name})" };
        if (Interlocked.CompareExchange(ref _roomWatcher, watcher, null) is null)
        {
            watcher.Start();
        }
    }

    /// <summary>
    /// While asynchronous senders wait for room: drains the peer's frees and completes the room signal when buffers came
    /// back; parks on the free ring's doorbell in between. Idle (parked on an event) while none waits.
    /// </summary>
    private void RoomWatchLoop()
    {
        long seen = _outbound.BuffersFreed;
        while (Volatile.Read(ref _disposed) == 0)
        {
            if (Volatile.Read(ref _roomWaiters) == 0)
            {
                _roomWake.Wait(_options.ParkTimeout);
                _roomWake.Reset();
                // Re-check after the reset: a waiter that set the event before it is counted above.
                continue;
            }
            if (_peerDead)
            {
                // Waiters see the death when they try again; OnPeerDied signalled already, this covers late arrivals.
                SignalRoom();
                _roomWake.Wait(_options.ParkTimeout);
                _roomWake.Reset();
                continue;
            }
            try
            {
                _outbound.DrainFrees();
                long now = _outbound.BuffersFreed;
                if (now != seen)
                {
                    seen = now;
                    SignalRoom();
                    continue;
                }
                _outbound.WaitForFrees(seen, _options.ParkTimeout);
            }
            catch (ProtocolViolationException violation)
            {
                CloseForViolation(violation);
            }
            catch (ObjectDisposedException)
            {
                SignalRoom();
                return;
            }
        }
        SignalRoom();
    }

    /// <summary>Stops the room watcher, if it ever started; after the connection is marked dead and disposed.</summary>
    private void StopRoomWatcher()
    {
        _roomWake.Set();
        _outbound.WakeWriter();
        Volatile.Read(ref _roomWatcher)?.Join();
        SignalRoom();
    }
}
