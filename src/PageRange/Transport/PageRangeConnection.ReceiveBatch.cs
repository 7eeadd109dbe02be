using System.Diagnostics;
using PageRange.Threading;

namespace PageRange.Transport;

/// <summary>Handles one transaction of <see cref="PageRangeConnection.ReceiveBatch"/>, on the receiving thread.</summary>
/// <typeparam name="TState">What the caller passed along, so that the handler need not capture it (a static lambda allocates nothing).</typeparam>
/// <param name="state">The caller's state.</param>
/// <param name="transaction">The transaction: valid until the handler returns, when it is disposed for the handler.</param>
public delegate void TransactionHandler<in TState>(TState state, in Transaction transaction);

/// <summary>
/// Receiving in batches: every transaction ready is handed to one handler on the receiving thread, in order. A run of
/// plain oneway messages taken off the ring together goes through a lane: one slot lock to take the run and one to free
/// it, no ready queue, no hand-off between messages, and no slot of their own: each is handed out through the
/// connection's one lane slot in turn (its generation moves on between them, so a copy kept past its handler is stale),
/// and the lane frees their buffers from its own copies of their records. Instead of, per message, two slot locks, two
/// queue passes, and a slot taken and given back.
/// </summary>
/// <remarks>
/// binder's rule for oneways holds as the handler sees them: they are handled one at a time, in order, since the lane
/// keeps the connection's oneway in progress from its first message to its end, so oneways routed meanwhile (by
/// another thread that took the reader role) wait in the backlog, and the lane's end releases the next of them. What
/// changes is only when the buffers go back: together, at the lane's end (binder frees each before the next is
/// released); the writer sees them a batch later.
/// </remarks>
public sealed partial class PageRangeConnection
{
    /// <summary>The default and the largest <c>maxTransactions</c> of <see cref="ReceiveBatch"/>.</summary>
    public const int MaxReceiveBatch = 256;

    // The lane's records (validated by the channel), used only by the thread running the lane: only one lane runs at a
    // time (_laneRunning). Each is delivered through the one lane slot in turn. A lane reads the ring into the spare
    // array (under the reader role, which no two threads hold at once) and, once admitted under the slot lock, swaps the
    // two: the records are its own without a copy, and a later reader, while this lane runs, reads into the other array.
    private TransactionRecord[] _laneRecords = new TransactionRecord[InboundChannel.ReceiveBatch];
    private TransactionRecord[] _laneRecordsSpare = new TransactionRecord[InboundChannel.ReceiveBatch];
    // A lane is admitted (under the slot lock) until its end: no second lane may start meanwhile, even when a close has
    // released the backlog and with it the oneway in progress.
    private bool _laneRunning;
    private long _laneRuns;
    private long _laneMessages;
    // The thread running the lane (0: none), how many of the lane's messages it has been given so far, and how many of
    // the first ones it freed already because it was about to block (FreeLaneBeforeBlocking). Written by that thread;
    // the id is read by others only to find that they are not it.
    private int _laneThreadId;
    private int _laneDelivered;
    private int _laneFreedUpTo;

    /// <summary>
    /// Waits for the next incoming transaction, then hands it and every transaction ready behind it (at most
    /// <paramref name="maxTransactions"/>) to <paramref name="handler"/> on this thread, in order, disposing each when
    /// the handler returns.
    /// </summary>
    /// <typeparam name="TState">The type of <paramref name="state"/>.</typeparam>
    /// <param name="handler">Handles one transaction; it may reply to a call (a call it does not reply to gets the
    /// error reply of a disposed call), and it may dispose the transaction itself (a lane's oneway then ends for its
    /// handle; its buffer goes back with the run). It runs on this thread, so a slow
    /// handler delays the transactions behind it in the batch (hand slow work to another thread).</param>
    /// <param name="state">Passed to every call of <paramref name="handler"/>.</param>
    /// <param name="maxTransactions">The most transactions handled before this returns (1 to <see cref="MaxReceiveBatch"/>).</param>
    /// <param name="cancellationToken">Cancels the wait for the first transaction; a batch once started is handled whole.</param>
    /// <returns>How many transactions the handler was given (at least 1).</returns>
    /// <remarks>
    /// <para>
    /// The fast way to drain a stream: oneway messages that arrive together (small ones share a pack) are handled with
    /// a fraction of <see cref="Receive"/>'s work per message, and nothing is allocated. Oneways are handled one at a
    /// time and in order, as with <see cref="Receive"/>; their buffers go back to the writer together when the batch's
    /// run of them ends, not one by one.
    /// </para>
    /// <para>
    /// The lane takes plain oneways up to 2 KiB (packed ones included); larger ones are handled one at a time as
    /// <see cref="Receive"/> hands them out, their buffers freed one by one. A handler that blocks on the peer (a
    /// <c>Call</c>, a send waiting for room) first gives back the run's oneways it has finished, so a peer that needs
    /// that room before it answers is not kept waiting. A handler must not wait for a transaction on its own connection
    /// (<see cref="Receive"/>, <see cref="ReceiveAsync"/>, a nested <c>ReceiveBatch</c>): the next oneway is the lane's
    /// to deliver after the handler returns, so such a wait fails with <see cref="InvalidOperationException"/>;
    /// <see cref="TryReceive"/> does not wait.
    /// </para>
    /// <para>
    /// If the handler throws, the transaction it was given is disposed, the exception propagates, and the transactions
    /// not yet handled stay ready for the next receive, in order: nothing is lost. After some were handled, the
    /// peer's end or violation is reported by the next call, not this one (it returns what it handled).
    /// </para>
    /// </remarks>
    /// <exception cref="ArgumentNullException"><paramref name="handler"/> is null.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="maxTransactions"/> is out of range.</exception>
    /// <exception cref="PeerDiedException">The peer is gone and everything it published has been delivered.</exception>
    /// <exception cref="ProtocolViolationException">The peer wrote something invalid; the connection is closed.</exception>
    /// <exception cref="OperationCanceledException">The token was cancelled before a transaction arrived.</exception>
    /// <exception cref="ObjectDisposedException">This connection was disposed.</exception>
    /// <exception cref="InvalidOperationException">Called, and it had to wait, from a handler of a batch of this connection.</exception>
    public int ReceiveBatch<TState>(TransactionHandler<TState> handler, TState state, int maxTransactions = MaxReceiveBatch, CancellationToken cancellationToken = default)
    {
        CheckBatchArguments(handler, maxTransactions);
        return ReceiveBatchCore(handler, state, maxTransactions, mayWait: true, cancellationToken);
    }

    /// <summary>
    /// <see cref="ReceiveBatch"/> that waits for the first transaction without blocking a thread: what is ready now is
    /// handled at once, on this thread, without awaiting; otherwise the first transaction is awaited
    /// (<see cref="ReceiveAsync"/>) and it and what is ready behind it are handled on the thread that completes the wait.
    /// </summary>
    /// <inheritdoc cref="ReceiveBatch"/>
    /// <remarks>
    /// The handler runs synchronously, one transaction after the other, in order, as with <see cref="ReceiveBatch"/>.
    /// A batch found ready completes synchronously and allocates nothing; a wait allocates nothing in steady state either
    /// (pooled, as <see cref="ReceiveAsync"/>). An async receiver's records are usually routed by the connection's
    /// background reader, so the lane runs less often than with <see cref="ReceiveBatch"/> on a thread of its own.
    /// </remarks>
    public ValueTask<int> ReceiveBatchAsync<TState>(TransactionHandler<TState> handler, TState state, int maxTransactions = MaxReceiveBatch, CancellationToken cancellationToken = default)
    {
        CheckBatchArguments(handler, maxTransactions);
        int handled;
        try
        {
            handled = ReceiveBatchCore(handler, state, maxTransactions, mayWait: false, cancellationToken);
        }
        catch (Exception error)
        {
            // As an async method reports it: in the returned task, not thrown by the call.
            return ValueTask.FromException<int>(error);
        }
        return handled > 0 ? new ValueTask<int>(handled) : ReceiveBatchAfterWaitAsync(handler, state, maxTransactions, cancellationToken);
    }

    [System.Runtime.CompilerServices.AsyncMethodBuilder(typeof(System.Runtime.CompilerServices.PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<int> ReceiveBatchAfterWaitAsync<TState>(TransactionHandler<TState> handler, TState state, int maxTransactions, CancellationToken cancellationToken)
    {
        Transaction first = await ReceiveAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            handler(state, first);
        }
        finally
        {
            first.Dispose();
        }
        return maxTransactions == 1 ? 1 : 1 + ReceiveBatchCore(handler, state, maxTransactions - 1, mayWait: false, cancellationToken);
    }

    private static void CheckBatchArguments<TState>(TransactionHandler<TState> handler, int maxTransactions)
    {
        ArgumentNullException.ThrowIfNull(handler);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxTransactions, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(maxTransactions, MaxReceiveBatch);
    }

    /// <summary>The batch: what is ready, through the lane where it can; waits for the first only if <paramref name="mayWait"/>.</summary>
    /// <returns>How many were handled (0 only without <paramref name="mayWait"/>, when nothing was ready).</returns>
    private int ReceiveBatchCore<TState>(TransactionHandler<TState> handler, TState state, int maxTransactions, bool mayWait, CancellationToken cancellationToken)
    {
        ThrowIfDisposed();
        // One reading reference for the whole call: the lane's looks at the ring's tail (a load each) need the ring
        // mapped, and a close on another thread may dispose the channel meanwhile (the looks then see the dispose).
        bool reading = _inbound.TryEnterReading();
        int handled = 0;
        try
        {
            while (handled < maxTransactions)
            {
                // Paced looks (InboundChannel.PackPollInterval) only where a "no" costs a spin of a few polls: a caller that
                // may not wait goes off to an asynchronous wait on a "no", so it looks every time.
                int run = reading ? TryRunLane(handler, state, maxTransactions - handled, paced: mayWait) : 0;
                if (run > 0)
                {
                    handled += run;
                    continue;
                }
                if (handled > 0 && (_violated || _drainedAfterDeath))
                {
                    // What was handled stays handled: the next call reports the end (a lane's run before a bad record).
                    break;
                }
                Transaction transaction;
                bool maybeSomething = Volatile.Read(ref _readyCount) != 0 || Volatile.Read(ref _handoff) is not null
                    || _violated || _drainedAfterDeath || !reading || (mayWait ? _inbound.RecordsMaybeReadyPaced : _inbound.RecordsMaybeReady);
                if (!maybeSomething || !TryReceive(out transaction))
                {
                    if (handled > 0 || !mayWait)
                    {
                        // What was ready is handled; the caller comes back for more.
                        break;
                    }
                    WaitForFirst(cancellationToken, out transaction);
                    if (!transaction.IsLive)
                    {
                        // The ring has records (the lane above takes them) or something became ready: look again.
                        continue;
                    }
                }
                try
                {
                    handled++;
                    handler(state, transaction);
                }
                finally
                {
                    transaction.Dispose();
                }
            }
        }
        finally
        {
            // The lane holds its frees back for a batch (it comes straight back for more); the caller may now do
            // something else for a while, and a writer waiting for room must not wait on frees we hold.
            PublishHeldFrees();
            if (reading)
            {
                _inbound.ExitReading();
            }
        }
        return handled;
    }

    /// <summary>
    /// <see cref="ReceiveBatch"/>'s wait for its first transaction, as <see cref="Receive"/> waits, except that records
    /// arriving in the ring are left there for the lane: returns when something is ready or readable.
    /// </summary>
    /// <param name="cancellationToken">Cancels the wait.</param>
    /// <param name="taken">A transaction delivered to this receiver by the wait's own pump (after a death, say), or default.</param>
    private void WaitForFirst(CancellationToken cancellationToken, out Transaction taken)
    {
        taken = default;
        if (_drainedAfterDeath)
        {
            throw NewPeerDied();
        }
        if (_violated && Volatile.Read(ref _readyCount) == 0)
        {
            // TryReceive found nothing ready: the violation is the answer, as Receive gives it.
            throw NewPeerDied();
        }
        ThrowIfDisposed();
        cancellationToken.ThrowIfCancellationRequested();
        ThrowIfWaitingInOwnLane();
        if (WaitForProgress<ReceiverWait>(call: null, long.MaxValue, returnWhenReadable: true, ThreadToken.Current, cancellationToken, ref taken))
        {
            return;
        }
        cancellationToken.ThrowIfCancellationRequested();
        if (_drainedAfterDeath && Volatile.Read(ref _readyCount) == 0 && Volatile.Read(ref _handoff) is null)
        {
            throw NewPeerDied();
        }
    }

    /// <summary>Lanes run by <see cref="ReceiveBatch"/> so far, and the oneways they delivered, for tests and the dump.</summary>
    internal (long Runs, long Messages) LaneCounts => (Volatile.Read(ref _laneRuns), Volatile.Read(ref _laneMessages));

    /// <summary>
    /// Takes a batch off the ring, if the connection is idle enough for a lane (nothing ready, no oneway in progress, no
    /// async receiver waiting) and the ring has records; runs the batch's leading plain oneways through the lane and
    /// routes the rest as usual.
    /// </summary>
    /// <returns>How many transactions the lane handed to <paramref name="handler"/> (0: no lane ran).</returns>
    /// <param name="handler">The batch's handler.</param>
    /// <param name="state">The handler's state.</param>
    /// <param name="max">The most transactions to hand out.</param>
    /// <param name="paced">Look at a current pack's word as a repeated look does (<see cref="InboundChannel.RecordsMaybeReadyPaced"/>).</param>
    private int TryRunLane<TState>(TransactionHandler<TState> handler, TState state, int max, bool paced)
    {
        // Lock-free looks first (the caller holds a reading reference, so the ring's tail may be read): a lane needs
        // records in the ring and nothing ready ahead of them; a receiver that is behind takes its ready ones as usual.
        if (_copyPayloads || _violated || _drainedAfterDeath || Volatile.Read(ref _disposed) != 0 || _peerDead
            || Volatile.Read(ref _readyCount) != 0 || Volatile.Read(ref _handoff) is not null
            || Volatile.Read(ref _onewayInProgress) || Volatile.Read(ref _laneRunning) || !(paced ? _inbound.RecordsMaybeReadyPaced : _inbound.RecordsMaybeReady))
        {
            return 0;
        }
        LaneChecksPassedForTest?.Invoke();
        if (!TryTakeReaderRole())
        {
            return 0;
        }
        int laneCount = 0;
        try
        {
            // The spare array (the reader role is ours, and only a reader swaps it, when its lane is admitted): never the
            // array of a lane running on another thread.
            TransactionRecord[] spare = _laneRecordsSpare;
            Span<TransactionRecord> batch = spare.AsSpan(0, Math.Min(spare.Length, max));
            int count = _inbound.TryReceiveBatch(batch);
            if (count == 0)
            {
                return 0;
            }
            using (_slotLock.EnterScope())
            {
                // _laneRunning as well as the oneway in progress: a close releases the backlog's oneways, which may
                // clear the second while a lane still runs.
                if (!_laneRunning && !_onewayInProgress && _incomingReady.Count == 0 && _handoff is null && _receiveWaiters.Count == 0
                    && !_inboundClosing && IsLaneMessage(batch[0]))
                {
                    Debug.Assert(_onewayBacklog.Count == 0, "No oneway waits in the backlog while none is in progress.");
                    while (laneCount < count && IsLaneMessage(batch[laneCount]))
                    {
                        laneCount++;
                    }
                    // The last lane has ended (_laneRunning was false): its array is free to be the next spare.
                    _laneRecordsSpare = _laneRecords;
                    _laneRecords = spare;
                    // From now until the lane's end, oneways routed by anyone wait in the backlog. Live as delivered
                    // transactions are (a close unmaps the region only once none is), without a slot each.
                    _onewayInProgress = true;
                    _laneRunning = true;
                    _liveTransactions += laneCount;
                }
            }
            if (laneCount < count)
            {
                // The rest of the batch (a call, a reply, a oneway with metadata...) is routed as the pump routes: after
                // the lane's oneways were marked in progress, so a oneway among the rest waits behind them.
                Transaction none = default;
                try
                {
                    RouteBatch(batch[laneCount..count], take: false, ref none, ThreadToken.Current);
                }
                catch (Exception error) when (laneCount > 0 && error is not ProtocolViolationException)
                {
                    // Nothing reachable throws here today; if something did, the lane's oneways must not be stranded
                    // (taken, in progress, never delivered): they go to the backlog, in order, for the next receive.
                    EndLane(laneCount, delivered: 0);
                    laneCount = 0;
                    throw;
                }
            }
        }
        catch (ProtocolViolationException violation)
        {
            CloseForViolation(violation);
            if (laneCount == 0)
            {
                throw;
            }
            // The lane's oneways came before the bad record: they are delivered; the next receive reports the violation.
        }
        catch (ObjectDisposedException) when (RingReleasedByPeer && laneCount == 0)
        {
            // The peer's end released the ring under this pass: the caller's usual receive reports the end.
            MarkDrainedAfterDeath();
            return 0;
        }
        finally
        {
            // The handlers run without the role: one that makes a call of its own reads its reply as the reader.
            ReleaseReaderRole();
        }
        if (laneCount == 0)
        {
            return 0;
        }
        int delivered = 0;
        _laneFreedUpTo = 0;
        _laneDelivered = 0;
        Volatile.Write(ref _laneThreadId, Environment.CurrentManagedThreadId);
        IncomingSlot lane = _laneSlot;
        try
        {
            while (delivered < laneCount)
            {
                lane.Record = _laneRecords[delivered];
                LaneRecordStoredForTest?.Invoke();
                // Odd: live. Release: a copy handed to another thread reads the record it was given.
                int generation = lane.Generation + 1;
                Volatile.Write(ref lane.Generation, generation);
                delivered++;
                _laneDelivered = delivered;
                handler(state, new Transaction(this, lane, generation));
                // Ended for the handle (if the handler did not dispose it): a stale copy fails its generation check from
                // now on. The same store as a concurrent Release's exchange, so either order leaves it ended.
                Volatile.Write(ref lane.Generation, generation + 1);
                if (!Transaction.MemoryStaysInOrder)
                {
                    // The end must be visible before the next record's stores (a stale handle's reader checks it after them).
                    Interlocked.MemoryBarrier();
                }
                if (lane.Cancellation is not null)
                {
                    DisposeLaneCancellation();
                }
            }
        }
        finally
        {
            if ((lane.Generation & 1) != 0)
            {
                // The handler threw: its transaction ends with it.
                Volatile.Write(ref lane.Generation, lane.Generation + 1);
            }
            if (lane.Cancellation is not null)
            {
                // A handler that threw (after disposing its transaction, perhaps) leaves its source too.
                DisposeLaneCancellation();
            }
            Volatile.Write(ref _laneThreadId, 0);
            EndLane(laneCount, delivered);
        }
        return laneCount;
    }

    /// <summary>
    /// Frees the lane's delivered oneways under one slot lock, puts the undelivered ones (a handler threw) back in front
    /// of the backlog, and releases the next oneway as a free of the last one would.
    /// </summary>
    private void EndLane(int laneCount, int delivered)
    {
        bool releasedOneway;
        bool disposeInbound;
        ProtocolViolationException? violation = null;
        using (_slotLock.EnterScope())
        {
            // Those below _laneFreedUpTo went before a block of the handler's; a lane that ends without a handler (a
            // routing failure) frees none.
            FreeLaneRecordsUnderLock(Math.Min(_laneFreedUpTo, delivered), delivered, ref violation);
            if (delivered < laneCount)
            {
                if (_inboundClosing)
                {
                    // The connection closed under the lane (its undelivered transactions were released already): these
                    // are released the same way, so that the region goes once the last live one is freed.
                    FreeLaneRecordsUnderLock(delivered, laneCount, ref violation);
                }
                else
                {
                    RequeueUndeliveredUnderLock(laneCount, delivered, ref violation);
                }
            }
            releasedOneway = ReleaseNextOnewayUnderLock();
            disposeInbound = _inboundClosing && _liveTransactions == 0;
            _laneRunning = false;
            _laneRuns++;
            _laneMessages += delivered;
        }
        AfterRelease(releasedOneway, disposeInbound, violation);
    }

    /// <summary>
    /// Frees the buffers of the lane's records <paramref name="from"/> to <paramref name="to"/> (exclusive); the caller
    /// holds the slot lock (the inbound channel's free lock). Held for a batch: the lane's owner publishes them before it
    /// waits (or the free that ends a pack does).
    /// </summary>
    private void FreeLaneRecordsUnderLock(int from, int to, ref ProtocolViolationException? violation)
    {
        if (from >= to)
        {
            return;
        }
        _liveTransactions -= to - from;
        if (_inboundClosing)
        {
            // As FreeSlotUnderLock: a closing connection writes no frees (the writer is gone, or its ring is).
            return;
        }
        try
        {
            for (int i = from; i < to; i++)
            {
                _inbound.FreeUnderLock(_laneRecords[i], deferPublish: true);
            }
        }
        catch (ProtocolViolationException error)
        {
            // The free ring is full or its head is corrupt: the writer broke the protocol; the connection closes.
            violation ??= error;
        }
    }

    /// <summary>Disposes the cancellation source a lane's handler asked for (<see cref="Transaction.CallCancelled"/>), if any.</summary>
    private void DisposeLaneCancellation()
    {
        CancellationTokenSource? source;
        using (_slotLock.EnterScope())
        {
            source = _laneSlot.Cancellation;
            _laneSlot.Cancellation = null;
        }
        source?.Dispose();
    }

    /// <summary>
    /// Called before this thread blocks (for a call's reply, or for room in the peer's region): if it is running a lane
    /// of this connection, the lane's messages it has finished go back to the writer now, not at the lane's end. The peer
    /// may need that room before it can answer (binder frees each oneway before the next is released; a lane holds its
    /// run's buffers until the run ends, which must not make a handler that waits on the peer wait for ever).
    /// </summary>
    private void FreeLaneBeforeBlocking()
    {
        // A load first: only a thread of a running lane reads its id (a call into the runtime).
        if (Volatile.Read(ref _laneThreadId) == 0 || Volatile.Read(ref _laneThreadId) != Environment.CurrentManagedThreadId)
        {
            return;
        }
        // The message being handled (the last delivered) stays live: its handler is the one about to block.
        int upTo = _laneDelivered - 1;
        ProtocolViolationException? violation = null;
        bool disposeInbound;
        using (_slotLock.EnterScope())
        {
            FreeLaneRecordsUnderLock(_laneFreedUpTo, upTo, ref violation);
            _laneFreedUpTo = Math.Max(_laneFreedUpTo, upTo);
            if (!_inboundClosing)
            {
                // Held frees too: the writer gets all of it before we block.
                _inbound.PublishFreesUnderLock();
            }
            disposeInbound = _inboundClosing && _liveTransactions == 0;
        }
        AfterRelease(releasedOneway: false, disposeInbound, violation);
    }

    /// <summary>
    /// A handler of a lane that waits for a transaction on its own connection would wait for ever when what it waits for
    /// is the next oneway: the lane holds it, to deliver after this handler returns. Refused, with a typed error.
    /// </summary>
    /// <exception cref="InvalidOperationException">This thread is running a lane's handler on this connection.</exception>
    private void ThrowIfWaitingInOwnLane()
    {
        if (Volatile.Read(ref _laneThreadId) != 0 && Volatile.Read(ref _laneThreadId) == Environment.CurrentManagedThreadId)
        {
            throw new InvalidOperationException(
                "A ReceiveBatch handler cannot wait for a transaction on its own connection: the oneways behind the one it " +
                "handles are delivered by that ReceiveBatch after the handler returns. TryReceive does not wait.");
        }
    }

    /// <summary>Whether a record may ride a lane: a plain oneway small enough that holding its buffer to the run's end costs the writer little.</summary>
    private bool IsLaneMessage(in TransactionRecord record) =>
        (record.Flags & TransactionFlags.Oneway) != 0 && record.Length <= InboundChannel.FreeBatchMaxLength && IsPlain(record);

    /// <summary>
    /// A handler threw: the lane's oneways it did not reach go back, in order, in front of the oneways that were routed
    /// to the backlog meanwhile, as ordinary backlogged oneways, each in a slot of its own now. The caller holds the slot
    /// lock.
    /// </summary>
    private void RequeueUndeliveredUnderLock(int laneCount, int delivered, ref ProtocolViolationException? violation)
    {
        int routedMeanwhile = _onewayBacklog.Count;
        // Live already (counted when the lane took them): a slot each counts them again.
        _liveTransactions -= laneCount - delivered;
        for (int i = delivered; i < laneCount; i++)
        {
            if (_freeIncomingCount == 0)
            {
                // Only a peer with more buffers live than its rings allow leaves no slot: the rest are freed, and the
                // connection closes for the violation.
                violation ??= new ProtocolViolationException(
                    $"The peer published more than {_freeIncoming.Length} live buffers, beyond what its free ring allows.");
                _liveTransactions += laneCount - i;
                FreeLaneRecordsUnderLock(i, laneCount, ref violation);
                break;
            }
            _onewayBacklog.Enqueue(AcquireIncomingUnsynchronized(_laneRecords[i], metadata: null, copy: null));
        }
        // Rotate the ones routed meanwhile behind them (a rare path: a handler's exception).
        for (int i = 0; i < routedMeanwhile; i++)
        {
            _onewayBacklog.Enqueue(_onewayBacklog.Dequeue());
        }
    }
}
