using System.Diagnostics;
using System.Runtime.CompilerServices;

namespace PageRange.Transport;

/// <summary>Receiving: the reader role, routing of records, and the receive API.</summary>
public sealed partial class PageRangeConnection
{
    private readonly Queue<IncomingSlot> _incomingReady;
    private readonly SemaphoreSlim _asyncReady = new(0);
    private int _readyCount;
    private int _asyncReceivers;
    private int _liveTransactions;
    private volatile bool _drainedAfterDeath;
    private volatile bool _violated;
    private bool _inboundClosing;

    /// <summary>Waits for the next incoming call or oneway message.</summary>
    /// <param name="cancellationToken">Cancels the wait.</param>
    /// <returns>The transaction, read in place. Dispose it; reply first if it is a two-way call.</returns>
    /// <exception cref="PeerDiedException">The peer is gone and everything it published has been delivered.</exception>
    /// <exception cref="ProtocolViolationException">The peer wrote something invalid; the connection is closed.</exception>
    /// <exception cref="OperationCanceledException">The token was cancelled.</exception>
    public Transaction Receive(CancellationToken cancellationToken = default)
    {
        while (true)
        {
            if (TryReceive(out Transaction transaction))
            {
                return transaction;
            }
            cancellationToken.ThrowIfCancellationRequested();
            if (_drainedAfterDeath)
            {
                throw NewPeerDied();
            }
            WaitForProgress(call: null, long.MaxValue, cancellationToken);
        }
    }

    /// <summary>Takes the next incoming transaction if one is ready, without waiting.</summary>
    /// <returns><see langword="true"/> and the transaction, or <see langword="false"/> if none is ready.</returns>
    public bool TryReceive(out Transaction transaction)
    {
        ThrowIfDisposed();
        if (Volatile.Read(ref _readyCount) == 0 && TryTakeReaderRole())
        {
            try
            {
                PumpAvailable();
            }
            finally
            {
                ReleaseReaderRole();
            }
        }
        lock (_slotLock)
        {
            if (_incomingReady.TryDequeue(out IncomingSlot? slot))
            {
                _readyCount--;
                transaction = new Transaction(this, slot, slot.Generation);
                return true;
            }
        }
        transaction = default;
        return false;
    }

    /// <summary>Completes with the next incoming call or oneway message.</summary>
    /// <inheritdoc cref="Receive"/>
    public async ValueTask<Transaction> ReceiveAsync(CancellationToken cancellationToken = default)
    {
        if (TryReceive(out Transaction ready))
        {
            return ready;
        }
        Interlocked.Increment(ref _asyncInterest);
        Interlocked.Increment(ref _asyncReceivers);
        _pumpWake.Set();
        try
        {
            while (true)
            {
                if (TryReceive(out Transaction transaction))
                {
                    return transaction;
                }
                if (_drainedAfterDeath)
                {
                    throw NewPeerDied();
                }
                await _asyncReady.WaitAsync(_options.ParkTimeout, cancellationToken).ConfigureAwait(false);
            }
        }
        finally
        {
            Interlocked.Decrement(ref _asyncReceivers);
            Interlocked.Decrement(ref _asyncInterest);
        }
    }

    /// <summary>Yields incoming transactions until the peer is gone or the token is cancelled.</summary>
    /// <remarks>Dispose each transaction before moving to the next one, or oneway messages stop flowing.</remarks>
    public async IAsyncEnumerable<Transaction> ReceiveAllAsync([EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        while (true)
        {
            Transaction transaction;
            try
            {
                transaction = await ReceiveAsync(cancellationToken).ConfigureAwait(false);
            }
            catch (PeerDiedException)
            {
                yield break;
            }
            yield return transaction;
        }
    }

    internal ReadOnlySpan<byte> GetPayload(in TransactionRecord record) => _inbound.GetPayload(record);

    internal ReadOnlyMemory<byte> GetPayloadMemory(in TransactionRecord record) => _inbound.GetPayloadMemory(record);

    internal CancellationToken GetCallCancellationToken(IncomingSlot slot)
    {
        CancellationTokenSource source;
        lock (_slotLock)
        {
            source = slot.Cancellation ??= new CancellationTokenSource();
        }
        if (slot.CancelRequested || _peerDead)
        {
            CancelQuietly(source);
        }
        return source.Token;
    }

    /// <summary>The peer could not reply to our call <paramref name="callId"/> even with an error reply: fail the call now.</summary>
    private void OnFailedReply(ulong callId)
    {
        int index = (int)(callId & PendingCallIndexMask);
        if (index < _calls.Length)
        {
            _calls[index].TryComplete(callId, default, new RemoteCallException(CallStatus.ResourceExhausted,
                $"The peer failed call {callId} and had no room in this side's region for its error reply."));
            NotifyFollowers();
        }
    }

    private void OnCancelRequested(ulong transactionId)
    {
        CancellationTokenSource? source = null;
        lock (_slotLock)
        {
            foreach (IncomingSlot slot in _incomingSlots)
            {
                if ((slot.Generation & 1) == 1 && slot.Record.TransactionId == transactionId && (slot.Record.Flags & TransactionFlags.TwoWay) != 0)
                {
                    slot.CancelRequested = true;
                    source = slot.Cancellation;
                    break;
                }
            }
        }
        if (source is not null)
        {
            // On the control socket's watch: a handler that disposed its transaction meanwhile disposed the source too,
            // and that must not end the watch.
            CancelQuietly(source);
        }
    }

    /// <summary>Frees a delivered transaction's buffer (binder's <c>BC_FREE_BUFFER</c>); ignores a second call.</summary>
    internal void Release(IncomingSlot slot, int generation)
    {
        // The generation first: a stale handle must not read the record of the slot's next transaction.
        if (Volatile.Read(ref slot.Generation) == generation && (slot.Record.Flags & TransactionFlags.TwoWay) != 0
            && Volatile.Read(ref slot.Replied) == 0 && !_peerDead && Volatile.Read(ref _disposed) == 0)
        {
            try
            {
                SendReply(slot, "The peer disposed the call without replying."u8, CallStatus.Unknown);
            }
            catch (InvalidOperationException)
            {
                // Replied concurrently.
            }
            catch (PageRangeException)
            {
                // Not even an error reply fits the caller's region (full, or no page for it): say it over the control
                // socket, binder's BR_FAILED_REPLY, which needs no buffer. If the caller is gone, it sees the death.
                SendFailedReply(slot.Record.TransactionId);
            }
        }

        CancellationTokenSource? cancellation;
        bool disposeInbound;
        ProtocolViolationException? violation = null;
        lock (_slotLock)
        {
            if (slot.Generation != generation)
            {
                return;
            }
            // Even: free. Stale copies of the Transaction now fail their generation check.
            slot.Generation = generation + 1;
            cancellation = slot.Cancellation;
            slot.Cancellation = null;
            if (!_inboundClosing)
            {
                try
                {
                    _inbound.Free(slot.Record);
                }
                catch (ProtocolViolationException error)
                {
                    // The free ring is full or its head is corrupt: the writer broke the protocol. Every later free
                    // would be lost, so the connection closes (after we leave the lock).
                    violation = error;
                }
            }
            if ((slot.Record.Flags & TransactionFlags.Oneway) != 0)
            {
                // binder: the next oneway transaction is released when the previous one's buffer is freed.
                if (_onewayBacklog.TryDequeue(out IncomingSlot? next))
                {
                    EnqueueReadyUnsynchronized(next);
                }
                else
                {
                    _onewayInProgress = false;
                }
            }
            _freeIncoming[_freeIncomingCount++] = slot.Index;
            _liveTransactions--;
            disposeInbound = _inboundClosing && _liveTransactions == 0;
        }
        cancellation?.Dispose();
        if (violation is not null)
        {
            CloseForViolation(violation);
        }
        if (disposeInbound)
        {
            _inbound.Dispose();
        }
        NotifyFollowers();
    }

    /// <summary>
    /// Waits until <paramref name="call"/> completed (or, with no call, until an incoming transaction is ready), the
    /// peer died, or the deadline passed. Reads the ring itself when no other thread is reading it.
    /// </summary>
    private void WaitForProgress(PendingCall? call, long deadline, CancellationToken cancellationToken)
    {
        if (TryTakeReaderRole())
        {
            try
            {
                while (!IsSatisfied(call) && !cancellationToken.IsCancellationRequested)
                {
                    // Read the death before draining: the peer published everything before it died, so a drain that
                    // starts after we saw the death and finds the ring empty has delivered everything.
                    bool dead = _peerDead;
                    if (PumpAvailable() > 0)
                    {
                        continue;
                    }
                    if (dead)
                    {
                        MarkDrainedAfterDeath();
                        return;
                    }
                    long now = Stopwatch.GetTimestamp();
                    if (now >= deadline)
                    {
                        return;
                    }
                    long sliceTicks = Math.Min(_options.ParkTimeout.Ticks, TicksUntil(deadline, now));
                    try
                    {
                        _inbound.WaitForTransaction(TimeSpan.FromTicks(sliceTicks), cancellationToken);
                    }
                    catch (OperationCanceledException)
                    {
                        return;
                    }
                }
            }
            finally
            {
                ReleaseReaderRole();
            }
        }
        else
        {
            WaitAsFollower(call, deadline, cancellationToken);
        }
    }

    /// <summary>
    /// The ring was drained after the peer's death: every transaction it published has been routed, so the calls still
    /// waiting will never get a reply, and receivers may now be told that the peer is gone.
    /// </summary>
    private void MarkDrainedAfterDeath()
    {
        if (_drainedAfterDeath)
        {
            return;
        }
        _drainedAfterDeath = true;
        FailPendingCalls();
        _asyncReady.Release();
        NotifyFollowers();
    }

    private static long TicksUntil(long deadline, long now) =>
        deadline == long.MaxValue ? long.MaxValue : (long)((deadline - now) * (double)TimeSpan.TicksPerSecond / Stopwatch.Frequency);

    private bool IsSatisfied(PendingCall? call) =>
        call is not null ? call.IsCompleted || Volatile.Read(ref call.NestedCount) > 0 : Volatile.Read(ref _readyCount) > 0;

    /// <summary>Waits while another thread holds the reader role: spin, then park on the gate until something changes.</summary>
    private void WaitAsFollower(PendingCall? call, long deadline, CancellationToken cancellationToken)
    {
        int generation = Volatile.Read(ref _generation);
        long spinUntil = _options.WaitStrategy == WaitStrategy.BusySpin
            ? Stopwatch.GetTimestamp() + (long)(_options.ParkTimeout.TotalSeconds * Stopwatch.Frequency)
            : _options.WaitStrategy == WaitStrategy.Park
                ? 0
                : Stopwatch.GetTimestamp() + (long)(_options.SpinDuration.TotalSeconds * Stopwatch.Frequency);
        var spinner = default(SpinWait);
        while (Stopwatch.GetTimestamp() < spinUntil)
        {
            if (Changed(call, generation) || cancellationToken.IsCancellationRequested)
            {
                return;
            }
            if (_options.WaitStrategy == WaitStrategy.BusySpin)
            {
                Thread.SpinWait(8);
            }
            else
            {
                spinner.SpinOnce(sleep1Threshold: -1);
            }
        }
        lock (_gate)
        {
            // Full fence: pairs with the one in NotifyFollowers (Dekker): either it sees us parked and pulses, or we
            // see its new generation in Changed below. A plain increment could be reordered after that load.
            Interlocked.Increment(ref _parkedFollowers);
            try
            {
                // A cancellation is noticed within a park timeout: the token does not pulse the gate.
                while (!Changed(call, generation) && !cancellationToken.IsCancellationRequested && Stopwatch.GetTimestamp() < deadline)
                {
                    Monitor.Wait(_gate, _options.ParkTimeout);
                }
            }
            finally
            {
                Interlocked.Decrement(ref _parkedFollowers);
            }
        }
    }

    // Not the death itself: the reader still drains what the peer published before it; followers wait for that drain.
    private bool Changed(PendingCall? call, int generation) =>
        IsSatisfied(call) || _drainedAfterDeath || Volatile.Read(ref _readerRole) == 0 || Volatile.Read(ref _generation) != generation;

    /// <summary>Tells waiting threads that something happened (a record routed, the reader role released).</summary>
    private void NotifyFollowers()
    {
        Interlocked.Increment(ref _generation);
        if (Volatile.Read(ref _parkedFollowers) > 0)
        {
            lock (_gate)
            {
                Monitor.PulseAll(_gate);
            }
        }
    }

    private bool TryTakeReaderRole() => Interlocked.CompareExchange(ref _readerRole, 1, 0) == 0;

    private void ReleaseReaderRole(bool wakePump = true)
    {
        Volatile.Write(ref _readerRole, 0);
        NotifyFollowers();
        // Async callers or receivers wait on the pump: without this it would find the role free only after a park timeout.
        if (wakePump && Volatile.Read(ref _asyncInterest) > 0)
        {
            _pumpWake.Set();
        }
    }

    /// <summary>Routes every record the ring holds now. Only the reader-role holder calls this.</summary>
    /// <returns>How many records were routed.</returns>
    private int PumpAvailable()
    {
        int routed = 0;
        try
        {
            while (_inbound.TryReceive(out TransactionRecord record))
            {
                Route(record);
                routed++;
            }
        }
        catch (ProtocolViolationException violation)
        {
            CloseForViolation(violation);
            throw;
        }
        if (routed > 0)
        {
            NotifyFollowers();
        }
        return routed;
    }

    private void Route(in TransactionRecord record)
    {
        IncomingSlot slot = AcquireIncoming(record);
        var transaction = new Transaction(this, slot, slot.Generation);
        if ((record.Flags & (TransactionFlags.Reply | TransactionFlags.ErrorReply)) != 0)
        {
            int index = (int)(record.TransactionId & PendingCallIndexMask);
            if (index >= _calls.Length || !_calls[index].TryComplete(record.TransactionId, transaction, null))
            {
                // A reply to a call that timed out or was cancelled: nobody will dispose it, so free it now.
                transaction.Dispose();
            }
            return;
        }
        if ((record.Flags & TransactionFlags.TwoWay) != 0 && record.Context.Depth > (uint)_options.MaxCallDepth)
        {
            RejectTooDeep(slot);
            return;
        }
        lock (_slotLock)
        {
            if ((record.Flags & TransactionFlags.TwoWay) != 0 && TryRouteNestedUnsynchronized(slot))
            {
                return;
            }
            if ((record.Flags & TransactionFlags.Oneway) != 0)
            {
                if (_onewayInProgress)
                {
                    _onewayBacklog.Enqueue(slot);
                    return;
                }
                _onewayInProgress = true;
            }
            EnqueueReadyUnsynchronized(slot);
        }
    }

    private void EnqueueReadyUnsynchronized(IncomingSlot slot)
    {
        _incomingReady.Enqueue(slot);
        _readyCount++;
        if (Volatile.Read(ref _asyncReceivers) > 0 && _asyncReady.CurrentCount == 0)
        {
            _asyncReady.Release();
        }
    }

    private IncomingSlot AcquireIncoming(in TransactionRecord record)
    {
        lock (_slotLock)
        {
            if (_freeIncomingCount == 0)
            {
                throw new ProtocolViolationException(
                    $"The peer published more than {_incomingSlots.Length} live buffers, beyond what its free ring allows.");
            }
            IncomingSlot slot = _incomingSlots[_freeIncoming[--_freeIncomingCount]];
            slot.Record = record;
            slot.Replied = 0;
            slot.CancelRequested = false;
            slot.Cancellation = null;
            // Odd: live.
            slot.Generation++;
            _liveTransactions++;
            return slot;
        }
    }

    private void CloseForViolation(ProtocolViolationException violation)
    {
        _violated = true;
        if (!_peerDead)
        {
            OnPeerDied(violation);
            // Closing the control socket is the peer's notice; the rest is torn down by Dispose.
            _ = Task.Run(async () => await _control.DisposeAsync().ConfigureAwait(false)).ContinueWith(
                static task => _ = task.Exception, CancellationToken.None, TaskContinuationOptions.OnlyOnFaulted, TaskScheduler.Default);
        }
    }

    /// <summary>
    /// The background reader: reads the ring while async callers or receivers wait and no other thread reads it; and,
    /// at least every park timeout, drains the ring (so a late reply is freed and a violation noticed on an idle
    /// connection), drains the peer's frees so idle pages reach the shrinker, and checks that the peer is alive.
    /// </summary>
    private void PumpLoop()
    {
        while (Volatile.Read(ref _disposed) == 0)
        {
            bool busy = false;
            try
            {
                bool housekeeping = Environment.TickCount64 - _lastHousekeeping >= (long)_options.ParkTimeout.TotalMilliseconds;
                bool drainDeath = _peerDead && !_drainedAfterDeath;
                if ((housekeeping || drainDeath || Volatile.Read(ref _asyncInterest) > 0) && !_violated && TryTakeReaderRole())
                {
                    try
                    {
                        bool dead = _peerDead;
                        if (PumpAvailable() > 0)
                        {
                            busy = true;
                        }
                        else if (dead)
                        {
                            MarkDrainedAfterDeath();
                        }
                        else if (Volatile.Read(ref _asyncInterest) > 0)
                        {
                            // Never a pure busy-spin here: the async continuations this thread completes need a
                            // core to run on, and a spinner that never yields would starve them on a small machine.
                            WaitStrategy strategy = _options.WaitStrategy == WaitStrategy.BusySpin ? WaitStrategy.SpinThenPark : _options.WaitStrategy;
                            _inbound.WaitForTransaction(_options.ParkTimeout, strategy, CancellationToken.None);
                            busy = true;
                        }
                    }
                    finally
                    {
                        ReleaseReaderRole(wakePump: false);
                    }
                }
                if (housekeeping)
                {
                    Housekeeping();
                }
            }
            catch (ProtocolViolationException)
            {
                // Already turned into the connection's death by PumpAvailable; the ring is not read again.
            }
            catch (ObjectDisposedException)
            {
                return;
            }
            if (!busy)
            {
                _pumpWake.Wait(_options.ParkTimeout);
                _pumpWake.Reset();
            }
        }
    }

    private long _lastHousekeeping;
    private string? _peerProcPath;

    private void Housekeeping()
    {
        _lastHousekeeping = Environment.TickCount64;
        if (!_peerDead)
        {
            try
            {
                _outbound.DrainFrees();
            }
            catch (ProtocolViolationException violation)
            {
                CloseForViolation(violation);
            }
        }
        // Backstop for the control socket's end-of-file: a peer whose process is gone is dead.
        if (!_peerDead && !Directory.Exists(_peerProcPath ??= $"/proc/{PeerPid}"))
        {
            OnPeerDied(null);
        }
    }
}
