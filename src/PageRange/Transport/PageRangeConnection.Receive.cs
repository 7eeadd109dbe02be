using System.Diagnostics;
using System.Runtime.CompilerServices;
using PageRange.Threading;

namespace PageRange.Transport;

/// <summary>Receiving: the reader role, routing of records, and the receive API.</summary>
public sealed partial class PageRangeConnection
{
    private readonly Queue<IncomingSlot> _incomingReady;
    private readonly LiveCallIndex _liveCallsById;
    private int _readyCount;

    // The oneway a free just released from the backlog (binder's next oneway) while nothing else was ready: in front of
    // the ready queue, taken by whichever receiver comes first, without the ready queue. Set and taken under the slot
    // lock (Release, TryTakeHandoff), only while the ready queue is empty and no async receiver waits; not in _readyCount.
    private IncomingSlot? _handoff;
    private int _liveTransactions;
    private volatile bool _drainedAfterDeath;
    private volatile bool _violated;
    private bool _inboundClosing;
    // Payload bytes copied out of live transactions (CopyIncomingPayloads), under the slot lock: an honest writer's live
    // buffers are disjoint parts of our data area, so they never add up to more than it. A peer naming one range again
    // and again would otherwise make us copy our region's worth once per incoming slot (found by review: gigabytes
    // from a 4 MiB region, with the defaults).
    private long _copiedBytesLive;

    // The reader role's batch: records taken off the ring in one pass (PumpAvailable), used only by the role's holder.
    private readonly TransactionRecord[] _pumpBatch = new TransactionRecord[InboundChannel.ReceiveBatch];

    // Transactions a receiver dequeued from the ready queue under a slot lock of its own (TryReceive), as opposed to
    // taken by its own pump under the routing lock: counted under the slot lock, for tests.
    private long _lockedDequeues;

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
            if (Volatile.Read(ref _readyCount) == 0 && Volatile.Read(ref _handoff) is null && !_violated && !_drainedAfterDeath)
            {
                // Nothing ready: wait at once. The wait reads the ring itself, so the pass TryReceive would make first
                // (the reader role taken and given back, the receive lock, the slot lock, all to find nothing) is saved.
                ThrowIfDisposed();
                cancellationToken.ThrowIfCancellationRequested();
                ThrowIfWaitingInOwnLane();
                Transaction taken = default;
                if (WaitForProgress<ReceiverWait>(call: null, long.MaxValue, returnWhenReadable: false, ThreadToken.Current, cancellationToken, ref taken))
                {
                    // Our own pump routed it and took it under the same slot lock: no second lock to dequeue it.
                    return taken;
                }
            }
            if (TryReceive(out Transaction transaction))
            {
                return transaction;
            }
            cancellationToken.ThrowIfCancellationRequested();
            if (_drainedAfterDeath)
            {
                throw NewPeerDied();
            }
        }
    }

    /// <summary>Takes the next incoming transaction if one is ready, without waiting.</summary>
    /// <returns><see langword="true"/> and the transaction, or <see langword="false"/> if none is ready.</returns>
    /// <exception cref="ProtocolViolationException">The peer broke the protocol; nothing it sent is delivered any more.</exception>
    /// <exception cref="PeerDiedException">The peer died, then its ring was found broken; nothing is delivered any more.</exception>
    /// <exception cref="ObjectDisposedException">This connection was disposed.</exception>
    /// <remarks>
    /// A stream's receiver takes most messages here, from the ready queue a batch filled: that part is forced inline
    /// (with <see cref="Receive"/>'s call of it), so it does not depend on the traffic the JIT profiled first. A process
    /// that answered calls before it streamed had <see cref="Receive"/> compiled from a profile in which the queue was
    /// always empty, with this method out of line (seen in the benchmark's peer after its ping-pong, 2026-12-03).
    /// </remarks>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool TryReceive(out Transaction transaction)
    {
        ThrowIfDisposed();
        if (TryTakeHandoff(out transaction))
        {
            return true;
        }
        if (Volatile.Read(ref _readyCount) != 0 && TryDequeueReady(out transaction))
        {
            return true;
        }
        return TryReceiveSlow(out transaction);
    }

    /// <summary>The rest of <see cref="TryReceive"/>: a violation's answer, a pass over the ring, the ready queue again.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private bool TryReceiveSlow(out Transaction transaction)
    {
        if (_violated && Volatile.Read(ref _readyCount) == 0)
        {
            // The ring is not read again (and may be unmapped already): the violation is the answer.
            throw NewPeerDied();
        }
        if (Volatile.Read(ref _readyCount) == 0 && TryTakeReaderRole())
        {
            Transaction taken = default;
            try
            {
                // No notice of its own: releasing the role just after notifies the followers once for both. The pump
                // takes the first ready transaction for us under its routing lock (no second slot lock below).
                PumpAvailable(notify: false, ref taken);
            }
            catch (ObjectDisposedException) when (RingReleasedByPeer)
            {
                // The peer's end released the ring under this pass (see RingReleasedByPeer): what is still ready is
                // taken below, then the end is the answer, as ReceiveAsync gives it.
            }
            finally
            {
                ReleaseReaderRole();
            }
            if (taken.IsLive)
            {
                transaction = taken;
                return true;
            }
        }
        if (TryDequeueReady(out transaction))
        {
            return true;
        }
        if (_violated)
        {
            // The violation came while this call looked (the check above came before it): the ring is not read again.
            throw NewPeerDied();
        }
        transaction = default;
        return false;
    }

    /// <summary>Takes the first transaction of the ready queue, if any, under the slot lock.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private bool TryDequeueReady(out Transaction transaction)
    {
        using (_slotLock.EnterScope())
        {
            if (_incomingReady.TryDequeue(out IncomingSlot? slot))
            {
                _readyCount--;
                _lockedDequeues++;
                transaction = new Transaction(this, slot, slot.Generation);
                return true;
            }
        }
        transaction = default;
        return false;
    }

    /// <summary>Takes the oneway a free released into <see cref="_handoff"/>, if it is still there.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private bool TryTakeHandoff(out Transaction transaction)
    {
        // A load first: the lock only when there is something to take.
        if (Volatile.Read(ref _handoff) is not null)
        {
            return TakeHandoffUnderLock(out transaction);
        }
        transaction = default;
        return false;
    }

    private bool TakeHandoffUnderLock(out Transaction transaction)
    {
        // Under the slot lock, not with an exchange: a stream's receiving thread holds that lock's bias (ThinLock), so
        // this costs no locked instruction there.
        using (_slotLock.EnterScope())
        {
            if (_handoff is { } slot)
            {
                _handoff = null;
                // Ours alone now: its generation changes only when it is freed.
                transaction = new Transaction(this, slot, slot.Generation);
                return true;
            }
        }
        transaction = default;
        return false;
    }

    /// <summary>
    /// Whether an <see cref="ObjectDisposedException"/> from the inbound ring means the peer's end released it, not the
    /// user's <see cref="Dispose"/>: the ring is released only by <see cref="ReleaseUndelivered"/>, which runs after a
    /// violation (<see cref="CloseForViolation"/>, on whichever thread found it) or after our own dispose, which sets
    /// <c>_disposed</c> first. A receiver blocked on the ring then reports the peer's end (<see cref="NewPeerDied"/>:
    /// the violation, or the death that came first), never the disposal of a connection the user did not dispose.
    /// </summary>
    private bool RingReleasedByPeer => _peerDead && Volatile.Read(ref _disposed) == 0;

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

    /// <summary>Whether a received transaction waits to be taken (a hint: another receiver may take it meanwhile).</summary>
    internal bool HasReadyTransactions => Volatile.Read(ref _readyCount) != 0 || Volatile.Read(ref _handoff) is not null;

    /// <summary>Whether incoming payloads are copied out of the shared region before anyone reads them.</summary>
    internal bool CopiesIncomingPayloads => _copyPayloads;

    /// <summary>A live transaction's payload, from its bounds and private copy (copied once from its slot): the copy, or in place.</summary>
    internal ReadOnlySpan<byte> GetPayload(long payloadOffset, int payloadLength, byte[]? copy) =>
        copy is not null ? copy.AsSpan(0, payloadLength) : _inbound.GetPayload(payloadOffset, payloadLength);

    /// <inheritdoc cref="GetPayload(long, int, byte[])"/>
    internal ReadOnlyMemory<byte> GetPayloadMemory(long payloadOffset, int payloadLength, byte[]? copy) =>
        copy is not null ? copy.AsMemory(0, payloadLength) : _inbound.GetPayloadMemory(payloadOffset, payloadLength);

    internal CancellationToken GetCallCancellationToken(IncomingSlot slot, int generation)
    {
        CancellationTokenSource source;
        using (_slotLock.EnterScope())
        {
            // Under the lock, again: a stale handle must not give its source to the slot's next transaction.
            if (slot.Generation != generation)
            {
                ThrowHelper.ThrowObjectDisposed(default(Transaction));
            }
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
        int index = (int)(callId & TransactionIds.PendingCallIndexMask);
        // Nothing will be written for the call any more: if it asked for a direct reply, the expectation ends (found by
        // review: after a timeout it stayed for good, and no later call could ask); if it ended unanswered while holding
        // the direct call lines, they are free (an answered call frees them itself).
        _inbound.StopExpectingDirectReply(callId);
        bool completed = index < _calls.Length && _calls[index].TryComplete(callId, default, new RemoteCallException(CallStatus.ResourceExhausted,
            $"The peer failed call {callId} and had no room in this side's region for its error reply."));
        if (!completed)
        {
            FreeDirectCallLinesAfterLateAnswer(callId, ThreadToken.Current);
        }
        if (index < _calls.Length)
        {
            NotifyFollowers();
        }
    }

    /// <summary>
    /// A late answer to call <paramref name="callId"/> (nobody waits for it) arrived: if the call held the direct call
    /// lines (<see cref="DirectCallLayout"/>), the peer took it, so they are free. An answered call frees them itself
    /// (<see cref="ReturnCall"/>).
    /// </summary>
    private void FreeDirectCallLinesAfterLateAnswer(ulong callId, ThreadToken thread)
    {
        if (Volatile.Read(ref _directCallLinesUser) == callId)
        {
            using (_slotLock.EnterScope(thread))
            {
                FreeDirectCallLinesUnsynchronized(callId);
            }
        }
    }

    private void OnCancelRequested(ulong transactionId)
    {
        CancellationTokenSource? source = null;
        using (_slotLock.EnterScope())
        {
            // Indexed by id: a flood of cancel frames costs one lookup each, not a scan of every slot.
            if (_liveCallsById.Find(transactionId) is { } slot)
            {
                slot.CancelRequested = true;
                source = slot.Cancellation;
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
        if (slot.IsLaneSlot)
        {
            // A lane's oneway ends here for its handle (stale copies fail from now on); its buffer goes back with the
            // lane's run (see ReceiveBatch). An exchange: another thread holding a copy may dispose it as the lane ends it.
            Interlocked.CompareExchange(ref slot.Generation, generation + 1, generation);
            return;
        }
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
        bool releasedOneway = false;
        ProtocolViolationException? violation = null;
        using (_slotLock.EnterScope())
        {
            if (slot.Generation != generation)
            {
                return;
            }
            bool oneway = (slot.Record.Flags & TransactionFlags.Oneway) != 0;
            // The receiver is behind when another transaction is ready, or this oneway releases the next (or the lane
            // goes on): its loop comes straight back, so this free may wait for a batch (published by a later free, or
            // before the receiver waits: PumpAvailable publishes whenever it finds the ring empty). Otherwise (the
            // receiver caught up, a free from a handler thread with nothing queued) it is published now.
            bool receiverBehind = _readyCount > 0 || _handoff is not null || (oneway && _onewayBacklog.Count > 0);
            cancellation = FreeSlotUnderLock(slot, generation, receiverBehind, ref violation);
            if (oneway)
            {
                releasedOneway = ReleaseNextOnewayUnderLock();
            }
            disposeInbound = _inboundClosing && _liveTransactions == 0;
        }
        cancellation?.Dispose();
        AfterRelease(releasedOneway, disposeInbound, violation);
    }

    /// <summary>
    /// Frees a live slot's buffer and gives the slot back (the part of <see cref="Release"/> under the slot lock, without
    /// the oneway bookkeeping); the caller holds the slot lock and has checked <paramref name="generation"/>.
    /// </summary>
    /// <returns>The slot's cancellation source, if it had one, for the caller to dispose after it leaves the lock.</returns>
    private CancellationTokenSource? FreeSlotUnderLock(IncomingSlot slot, int generation, bool deferPublish, ref ProtocolViolationException? violation)
    {
        Debug.Assert(slot.Generation == generation, "Only a live slot of this generation is freed.");
        // Even: free. Stale copies of the Transaction now fail their generation check.
        slot.Generation = generation + 1;
        CancellationTokenSource? cancellation = slot.Cancellation;
        slot.Cancellation = null;
        slot.Metadata = null;
        if (slot.PayloadCopy is { } copy)
        {
            // After the generation moved on: no handle can reach the copy any more.
            slot.PayloadCopy = null;
            _copiedBytesLive -= slot.Record.PayloadLength;
            System.Buffers.ArrayPool<byte>.Shared.Return(copy);
        }
        if (!_inboundClosing)
        {
            try
            {
                // _slotLock is the inbound channel's free lock (see the constructor): held here, so no second lock.
                _inbound.FreeUnderLock(slot.Record, deferPublish);
            }
            catch (ProtocolViolationException error)
            {
                // The free ring is full or its head is corrupt: the writer broke the protocol. Every later free would
                // be lost, so the connection closes (after the caller leaves the lock).
                violation ??= error;
            }
        }
        if ((slot.Record.Flags & TransactionFlags.TwoWay) != 0)
        {
            _liveCallsById.Remove(slot);
        }
        _freeIncoming[_freeIncomingCount++] = slot.Index;
        _liveTransactions--;
        return cancellation;
    }

    /// <summary>
    /// A oneway's buffer was freed: releases the next backlogged oneway (binder: the next oneway transaction is released
    /// when the previous one's buffer is freed), or marks that no oneway is in progress. The caller holds the slot lock.
    /// </summary>
    /// <returns>Whether a backlogged oneway was released.</returns>
    private bool ReleaseNextOnewayUnderLock()
    {
        if (!_onewayBacklog.TryDequeue(out IncomingSlot? next))
        {
            _onewayInProgress = false;
            return false;
        }
        if (_incomingReady.Count == 0 && _receiveWaiters.Count == 0 && !_inboundClosing)
        {
            // Nothing ready ahead of it and no async receiver to wake: the next receiver (often this thread, back from
            // freeing) takes it without the ready queue (TryTakeHandoff, under this lock, which a stream's receiving
            // thread holds the bias of). The slot's fields written at its routing are visible to the taker through the lock.
            Debug.Assert(_handoff is null, "Only one oneway is released at a time.");
            Volatile.Write(ref _handoff, next);
        }
        else
        {
            EnqueueReadyUnsynchronized(next);
        }
        return true;
    }

    /// <summary>What a release does after it leaves the slot lock: closes on a violation, nudges, disposes, notifies.</summary>
    private void AfterRelease(bool releasedOneway, bool disposeInbound, ProtocolViolationException? violation)
    {
        if (violation is not null)
        {
            CloseForViolation(violation);
        }
        if (releasedOneway && !disposeInbound && _inbound.ReaderRoleHeld)
        {
            // A receiver holding the reader role parks on the ring's doorbell, and nothing arrives in the ring for
            // this oneway: without the nudge it would find it only after a whole park timeout.
            _inbound.NudgeReader();
        }
        if (disposeInbound)
        {
            _inbound.Dispose();
        }
        // Followers wait for a transaction ready, their call's reply, the role, or the drain after a death: a free changes
        // none of these unless it released a backlogged oneway (or closed the connection), so only then are they told,
        // and for a released oneway only if there is a follower at all: a stream's single receiver then makes no locked
        // increment per message. A follower that arrives meanwhile misses nothing: it counts itself before it looks,
        // and before it parks it takes the slot lock, under which the oneway was released, or issues the process-wide
        // barrier, which orders this free's stores as well (see WaitAsCountedFollower).
        if ((releasedOneway && Volatile.Read(ref _followers) != 0) || disposeInbound || violation is not null)
        {
            NotifyFollowers();
        }
    }

    /// <summary>
    /// Waits until <paramref name="call"/> completed (or, with no call, until an incoming transaction is ready), the
    /// peer died, or the deadline passed. Reads the ring itself when no other thread is reading it.
    /// </summary>
    /// <remarks>For a caller waiting for <paramref name="call"/>'s reply, which nothing is delivered to directly.</remarks>
    private void WaitForProgress(PendingCall call, long deadline, ThreadToken thread, CancellationToken cancellationToken)
    {
        Transaction none = default;
        WaitForProgress<CallerWait>(call, deadline, returnWhenReadable: false, thread, cancellationToken, ref none);
    }

    /// <inheritdoc cref="WaitForProgress(PendingCall, long, ThreadToken, CancellationToken)"/>
    /// <returns>With no call: whether this thread's own pump routed a transaction and took it for the caller, into
    /// <paramref name="taken"/> (delivered: the caller returns it); otherwise the caller looks in the ready queue. With a
    /// call: always <see langword="false"/>.</returns>
    /// <param name="call">The call waited for; null for a receiver.</param>
    /// <param name="deadline">A <see cref="Stopwatch"/> timestamp.</param>
    /// <param name="returnWhenReadable">For a receiver that reads the ring itself (a <see cref="ReceiveBatch"/> lane):
    /// return (false) as soon as the ring has records, without routing them; after a death the ring is drained as usual.</param>
    /// <param name="cancellationToken">Cancels the wait.</param>
    /// <param name="taken">The caller's own variable, default on entry: the pump writes the transaction it takes straight
    /// into it, before the role's release. Returned as a <see cref="Nullable{T}"/> instead, it was copied into the
    /// caller's frame with four plain stores after that release (then a locked instruction), and the caller's 16-byte
    /// load of it right after could not be forwarded from them (~4 ns per receive in the call probe's profile, on a round
    /// trip's critical path).</param>
    /// <param name="thread">The current thread's token, read once by the caller for all the wait's lock passes.</param>
    private bool WaitForProgress<TWaiter>(PendingCall? call, long deadline, bool returnWhenReadable, ThreadToken thread, CancellationToken cancellationToken, ref Transaction taken)
        where TWaiter : struct, IProgressWaiter
    {
        Debug.Assert(TWaiter.ForACall == call is not null, "A caller's wait has its call, a receiver's none.");
        if (TryTakeReaderRole())
        {
            // A receiver (no call) lets its pump take the first transaction it makes ready, under the routing lock.
            Debug.Assert(!taken.IsLive, "The caller's variable is empty on entry.");
            try
            {
                // The loop's looks at the tail and its waits read shared words outside the receive lock, and a violation's
                // close on another thread may dispose the channel meanwhile: the role keeps them mapped until its release
                // (the looks see the dispose instead of faulting), once it is found open here, after the role's CAS.
                if (!_inbound.OpenToReaderRole)
                {
                    ThrowHelper.ThrowObjectDisposed(_inbound);
                }
                if (call is null)
                {
                    // Release reads the reader role (whether to nudge) after freeing under the slot lock; we took the
                    // role just now (found by review: without this, 1 round in ~3,000 of a race waited out the park timeout).
                    SynchronizeWithReleases(thread);
                }
                // Look, then read the ring or wait: a load of the ring's tail (the wait's own first check) says whether
                // there is anything, so no pass is made just to find the ring empty (the receive lock, the tail's
                // validation) before every wait, and a caller that has just sent its call waits at once. Frees held for
                // a batch stay held while the ring has more (as when PumpAvailable finds it busy). One clock read per wait.
                bool pump = false;
                while (!IsSatisfied(call) && !cancellationToken.IsCancellationRequested && Volatile.Read(ref _disposed) == 0)
                {
                    // Read the death before draining: the peer published everything before it died, so a drain that
                    // starts after we saw the death and finds the ring empty has delivered everything.
                    bool dead = _peerDead;
                    if (pump || dead || _inbound.TransactionMaybeReadyPaced)
                    {
                        if (returnWhenReadable && !dead && _inbound.RecordsMaybeReady)
                        {
                            // The caller's lane takes the records (the role's release below tells the followers).
                            return false;
                        }
                        pump = false;
                        if (TWaiter.ForACall && call!.DirectReply && TryTakeDirectReplyAlone(thread))
                        {
                            // Our reply, from our own lines, the ring empty: no pass over the ring needed.
                            continue;
                        }
                        // A receiver (no call) takes the first transaction made ready; a caller leaves `taken` alone.
                        int routed = PumpAvailable(notify: false, ref taken, take: call is null, thread);
                        if (taken.IsLive)
                        {
                            // Delivered to this receiver; the role's release below tells the followers of the rest.
                            return true;
                        }
                        if (routed > 0)
                        {
                            // Followers are told now only if what was routed is not what we waited for; otherwise the
                            // role's release below tells them, once.
                            if (!IsSatisfied(call))
                            {
                                NotifyFollowers();
                                // A bounded pass: the deadline holds even while the peer keeps the ring busy.
                                if (Stopwatch.GetTimestamp() >= deadline)
                                {
                                    return false;
                                }
                            }
                            continue;
                        }
                        if (dead)
                        {
                            MarkDrainedAfterDeath();
                            return false;
                        }
                    }
                    else
                    {
                        // The frees held for a batch go before we wait (PumpAvailable does this when it finds the ring
                        // empty): a writer waiting for room must never wait on frees we hold while we wait for it.
                        PublishHeldFrees(thread);
                    }
                    long now = Stopwatch.GetTimestamp();
                    if (now >= deadline)
                    {
                        return false;
                    }
                    long waitUntil = deadline - now <= _parkTimeoutTicks ? deadline : now + _parkTimeoutTicks;
                    try
                    {
                        _inbound.WaitForTransactionUntil(waitUntil, cancellationToken);
                    }
                    catch (OperationCanceledException)
                    {
                        return false;
                    }
                    pump = true;
                }
            }
            catch (ObjectDisposedException) when (RingReleasedByPeer)
            {
                // The peer's end released the ring under this wait or pass: nothing more will be routed, so the drain
                // after death is complete (pending calls fail with the end, receivers are told; done already by the
                // violation's close, which this makes sure of). The caller then reports the end with its typed error.
                MarkDrainedAfterDeath();
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
        return false;
    }

    /// <summary>
    /// A synchronous caller's look at its own direct reply lines, holding the reader role: when the ring is empty, no pack
    /// is current and the lines hold the reply expected at a position reached, the reply is taken and routed to its call
    /// here, without a pass over the ring (<see cref="PumpAvailable(bool, ref Transaction, bool, ThreadToken)"/>: its
    /// batch, the ring's second look, the batch's routing). Anything else (a ring record first, an invalid reply) is left
    /// to that pass, which keeps the order and refuses what is invalid.
    /// </summary>
    /// <returns>Whether the reply was taken (the caller's call is then complete).</returns>
    /// <remarks>
    /// The caller's whole take of a direct reply (routing, reading, disposing), in the one-thread call probe: 108-127 ns
    /// against 128-152 through the pass (benchmarks/README.md, "A caller takes its direct reply itself").
    /// </remarks>
    private bool TryTakeDirectReplyAlone(ThreadToken thread)
    {
        if (!_inbound.TryTakeDirectReplyAlone(out TransactionRecord reply, thread))
        {
            return false;
        }
        try
        {
            // As the pass routes a reply: to its call (ours), or, if it ended meanwhile, freed with the lines given back.
            Route(reply, thread);
        }
        catch (ProtocolViolationException violation)
        {
            CloseForViolation(violation);
            throw;
        }
        RecordRoutedForTest?.Invoke();
        // As the pass does when it finds the ring empty: a writer waiting for room must never wait on frees we hold.
        PublishHeldFrees(thread);
        return true;
    }

    /// <summary>
    /// Who waits in <see cref="WaitForProgress{TWaiter}"/>: a synchronous caller (<see cref="CallerWait"/>) or a receiver
    /// (<see cref="ReceiverWait"/>). A struct type argument makes the JIT compile the method once for each (the caller's
    /// direct take is folded away from the receiver's copy), so each has its own code and profile: a process that both
    /// calls and receives does not lay one out for the other's traffic (measured: the caller's direct take in the shared
    /// method left the call probe's round trip no shorter, the receiver's pass 5-25 ns slower).
    /// </summary>
    private interface IProgressWaiter
    {
        /// <summary>Whether the waiter waits for a call's reply (else for a transaction to receive).</summary>
        static abstract bool ForACall { get; }
    }

    /// <summary>A synchronous caller waiting for its reply.</summary>
    private readonly struct CallerWait : IProgressWaiter
    {
        public static bool ForACall => true;
    }

    /// <summary>A receiver waiting for a transaction.</summary>
    private readonly struct ReceiverWait : IProgressWaiter
    {
        public static bool ForACall => false;
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
        WakeAllReceiveWaiters();
        NotifyFollowers();
    }

    private bool IsSatisfied(PendingCall? call) =>
        call is not null
            ? call.IsCompleted || Volatile.Read(ref call.NestedCount) > 0
            : Volatile.Read(ref _readyCount) > 0 || Volatile.Read(ref _handoff) is not null;

    /// <summary>Waits while another thread holds the reader role: spin, then park on the gate until something changes.</summary>
    private void WaitAsFollower(PendingCall? call, long deadline, CancellationToken cancellationToken)
    {
        // Counted before the generation is read and anything is looked at: a free that releases a oneway tells the
        // followers only while this count is not zero (Release).
        Interlocked.Increment(ref _followers);
        try
        {
            WaitAsCountedFollower(call, deadline, cancellationToken);
        }
        finally
        {
            Interlocked.Decrement(ref _followers);
        }
    }

    private void WaitAsCountedFollower(PendingCall? call, long deadline, CancellationToken cancellationToken)
    {
        int generation = Volatile.Read(ref _generation);
        long spinUntil = _options.WaitStrategy == WaitStrategy.BusySpin
            ? Stopwatch.GetTimestamp() + (long)(_options.ParkTimeout.TotalSeconds * Stopwatch.Frequency)
            : _options.WaitStrategy == WaitStrategy.Park
                ? 0
                : Stopwatch.GetTimestamp() + (long)(_options.SpinDuration.TotalSeconds * Stopwatch.Frequency);
        var spinner = default(SpinWait);
        bool busySpin = _options.WaitStrategy == WaitStrategy.BusySpin;
        int polls = 0;
        // A busy spinner reads the clock every 32 polls (as Doorbell's busy spin), the others at every round.
        while ((busySpin && (++polls & 31) != 0) || Stopwatch.GetTimestamp() < spinUntil)
        {
            if (Changed(call, generation) || cancellationToken.IsCancellationRequested)
            {
                return;
            }
            if (busySpin)
            {
                // One pause, as Doorbell's busy spin (the instruction, inlined: see Doorbell.PausePoll).
                Doorbell.PausePoll();
            }
            else
            {
                spinner.SpinOnce(sleep1Threshold: -1);
            }
        }
        // Release reads the follower count (whether to tell us) after freeing under the slot lock; we counted ourselves on
        // entry. Spinning needs no such step: its checks see the release's stores as soon as they leave the releaser's
        // store buffer; parking does: the slot lock once, or, the first time a thread parks behind the role, the
        // process-wide barrier, which also covers the role's plain releases until then (SwitchRoleReleasesToFenced).
        if (Volatile.Read(ref _roleReleases) != RoleReleasesFenced)
        {
            SwitchRoleReleasesToFenced();
        }
        else
        {
            SynchronizeWithReleases(ThreadToken.Current);
        }
        lock (_gate)
        {
            // Full fence: pairs with the one in NotifyFollowers (Dekker): either it sees us parked and pulses, or we
            // see its new generation in Changed below. A plain increment could be reordered after that load.
            Interlocked.Increment(ref _parkedFollowers);
            // Written under the gate only (for tests).
            Volatile.Write(ref _followerParks, _followerParks + 1);
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

    /// <summary>
    /// Makes every later release of the reader role fenced (<see cref="ReleaseReaderRole"/>), for a thread about to wait
    /// for the role's release (a follower about to park, the background reader): a connection whose role is contended
    /// pays this system call once, its single reader thread never.
    /// </summary>
    /// <remarks>
    /// A plain release stores the role free and then reads the mode and the follower count with no fence between, so it
    /// and a waiter that counted itself and then looks at the role could each miss the other's write (Dekker), and the
    /// waiter would sleep out its park timeout. The process-wide barrier is a full fence on the releaser's core too: if
    /// its reads came before that fence, so did its store, which our looks after the barrier then see; otherwise its
    /// reads see our count (and the mode no longer plain), and it tells us. A waiter that finds the mode fenced already
    /// skips the barrier, provided it looks at the role after it read the mode (a follower's look under the gate, the
    /// background reader's look after this): the one that set it made its barrier after every release that read the
    /// mode as plain, and every later release fences. The exhaustive model is <c>tools/models/reader-role-model.py park</c>. The barrier
    /// also does what <see cref="SynchronizeWithReleases"/> does (it is a fence on the freeing thread's core as well).
    /// </remarks>
    private void SwitchRoleReleasesToFenced()
    {
        Interlocked.CompareExchange(ref _roleReleases, RoleReleasesSwitching, RoleReleasesPlain);
        Interlocked.MemoryBarrierProcessWide();
        Volatile.Write(ref _roleReleases, RoleReleasesFenced);
    }

    // The values of _roleReleases.
    private const int RoleReleasesPlain = 0;
    private const int RoleReleasesSwitching = 1;
    private const int RoleReleasesFenced = 2;

    /// <summary>
    /// The slot lock once, empty: for a waiter that has just stored something <see cref="Release"/> reads after its lock
    /// (the reader role, the follower count) to decide whether to wake it, before the waiter's looks and its park.
    /// </summary>
    /// <remarks>
    /// A release frees and hands the next oneway over under the slot lock, leaves it with a plain store, then reads our
    /// word: nothing orders that read after our store, so each side could miss the other's (Dekker), and we would park
    /// until the park timeout. With this section, either the release's section came first and our looks see what it
    /// handed over, or ours came first and the release's read, after its own acquisition, sees our word and wakes us.
    /// </remarks>
    private void SynchronizeWithReleases(ThreadToken thread)
    {
        using (_slotLock.EnterScope(thread))
        {
        }
    }

    // Not the death itself: the reader still drains what the peer published before it; followers wait for that drain.
    private bool Changed(PendingCall? call, int generation) =>
        IsSatisfied(call) || _drainedAfterDeath || !_inbound.ReaderRoleHeld || Volatile.Read(ref _generation) != generation;

    /// <summary>Tells waiting threads that something happened (a record routed, the reader role released).</summary>
    private void NotifyFollowers()
    {
        // Always a locked increment, never a plain one: a parking follower's Dekker with it, and ReleaseReaderRole once
        // its releases are fenced, count on it as a full fence.
        Interlocked.Increment(ref _generation);
        if (Volatile.Read(ref _parkedFollowers) > 0)
        {
            lock (_gate)
            {
                Monitor.PulseAll(_gate);
            }
        }
    }

    /// <summary>Takes the reader role (kept by the inbound channel: it also keeps the ring mapped for its holder).</summary>
    private bool TryTakeReaderRole() => _inbound.TryTakeReaderRole();

    private void ReleaseReaderRole(bool wakePump = true)
    {
        _inbound.ReleaseReaderRole();
        try
        {
            // Until a thread first parks behind the role, the release is a plain store and no locked instruction (one
            // per pass, two per synchronous round trip, each on its critical path): followers see the role free by
            // themselves, a spinner at its next look, the first one about to park after its process-wide barrier
            // (SwitchRoleReleasesToFenced), and Dispose's barrier stands in for the channel's fence. From then on, and
            // where that barrier does not reach every core, the notice's locked increment is the fence (for parked
            // followers, and for the channel's look at a dispose: InboundChannel.TryTakeReaderRole).
            if (Volatile.Read(ref _roleReleases) != RoleReleasesPlain || Volatile.Read(ref _followers) != 0)
            {
                NotifyFollowers();
            }
        }
        finally
        {
            // Even if the pulse under the gate threw (an interrupted thread): a dispose's unmap may be ours to make.
            _inbound.AfterReaderRoleReleased();
        }
        // Async callers or receivers wait on the pump: without this it would find the role free only after a park timeout.
        if (wakePump && Volatile.Read(ref _asyncInterest) > 0)
        {
            _pumpWake.Set();
        }
    }

    /// <summary>
    /// Routes the records the ring holds now, at most one ring's capacity: a peer that keeps the ring busy for ever
    /// (late replies we free at once, say) cannot keep the reader here; callers check deadlines, cancellation and
    /// disposal between passes. Only the reader-role holder calls this.
    /// </summary>
    /// <returns>How many records were routed.</returns>
    /// <param name="notify">Tell the followers when something was routed; <see langword="false"/> for a caller that
    /// tells them itself (it releases the role next, which does).</param>
    private int PumpAvailable(bool notify = true)
    {
        Transaction none = default;
        return PumpAvailable(notify, ref none, take: false, ThreadToken.Current);
    }

    /// <summary>
    /// <see cref="PumpAvailable(bool)"/> for a receiver: the first transaction made ready is dequeued for it under the
    /// same slot lock that routed it (delivered to <paramref name="taken"/>), and the pass ends there.
    /// </summary>
    private int PumpAvailable(bool notify, ref Transaction taken) => PumpAvailable(notify, ref taken, take: true, ThreadToken.Current);

    /// <param name="notify">Whether to tell the followers of what was routed.</param>
    /// <param name="taken">With <paramref name="take"/>: the receiver's variable, default on entry.</param>
    /// <param name="take">Whether the first transaction made ready is taken for the receiver pumping.</param>
    /// <param name="thread">The current thread's token, read once by the caller for all the pass's lock passes.</param>
    private int PumpAvailable(bool notify, ref Transaction taken, bool take, ThreadToken thread)
    {
        int routed = 0;
        int limit = _inbound.Layout.TxRingCapacity;
        try
        {
            while (routed < limit)
            {
                // One receive lock and one head store per batch (TryReceiveBatch), one slot lock per run of calls and
                // oneways (RouteBatch), instead of one receive lock and two slot locks per record.
                Span<TransactionRecord> batch = _pumpBatch.AsSpan(0, Math.Min(_pumpBatch.Length, limit - routed));
                int count = _inbound.TryReceiveBatch(batch, thread);
                if (count == 0)
                {
                    // The ring is empty: the receiver may wait next, so the frees held for a batch go now. A writer
                    // waiting for room must never wait on frees we hold while we wait for it.
                    PublishHeldFrees(thread);
                    break;
                }
                RouteBatch(batch[..count], take, ref taken, thread);
                routed += count;
                if (taken.IsLive)
                {
                    // Delivered to the receiver pumping: it returns now, the rest stays ready for the others. Nothing
                    // may throw past this point (the transaction would be lost; publishing frees does not throw). The
                    // held frees go as below when the ring was found empty, and stay held while it is busy.
                    if (count < batch.Length)
                    {
                        PublishHeldFrees(thread);
                    }
                    break;
                }
                if (count < batch.Length)
                {
                    // The batch took fewer than it could: the ring was empty when it ended, so this pass ends here, as if
                    // the next had found nothing, without that next pass's receive lock (one per pump that routes).
                    // A record published since is seen by the caller's next look at the ring. A bad record also ends a
                    // batch early; the next pass, at the caller's next look (the tail says there is more), throws.
                    PublishHeldFrees(thread);
                    break;
                }
            }
        }
        catch (ProtocolViolationException violation)
        {
            CloseForViolation(violation);
            throw;
        }
        if (routed > 0 && notify)
        {
            NotifyFollowers();
        }
        return routed;
    }

    /// <summary>Publishes the frees held back for a batch (see <see cref="Release"/>), if any.</summary>
    private void PublishHeldFrees() => PublishHeldFrees(ThreadToken.Current);

    /// <inheritdoc cref="PublishHeldFrees()"/>
    /// <param name="thread">The current thread's token, read once by the caller for all its lock passes.</param>
    private void PublishHeldFrees(ThreadToken thread)
    {
        // A lock-free look first: in a stream whose receiver keeps up nothing is held, and this costs one load.
        if (_inbound.UnpublishedFrees == 0)
        {
            return;
        }
        using (_slotLock.EnterScope(thread))
        {
            if (!_inboundClosing)
            {
                _inbound.PublishFreesUnderLock();
            }
        }
    }

    /// <summary>
    /// Routes a batch taken off the ring in order: each run of plain calls and oneway messages (no metadata block to
    /// parse, no payload to copy, within the call depth) under one slot lock; anything else one at a time, as before.
    /// With <paramref name="take"/>, a batch that ends with such a run also dequeues the first ready transaction for
    /// the receiver pumping, under that run's lock (<paramref name="taken"/>); the queue's order is kept.
    /// </summary>
    private void RouteBatch(ReadOnlySpan<TransactionRecord> batch, bool take, ref Transaction taken, ThreadToken thread)
    {
        int i = 0;
        while (i < batch.Length)
        {
            if (!IsPlain(batch[i]))
            {
                Route(batch[i], thread);
                i++;
                RecordRoutedForTest?.Invoke();
                continue;
            }
            int start = i;
            using (_slotLock.EnterScope(thread))
            {
                // An async receiver already waiting gets what is routed (it was woken for it): this receiver then
                // dequeues under its own lock, as before, if anything is left.
                bool mayTake = take && _receiveWaiters.Count == 0 && _handoff is null;
                do
                {
                    RouteUnsynchronized(AcquireIncomingUnsynchronized(batch[i], metadata: null, copy: null));
                    i++;
                }
                while (i < batch.Length && IsPlain(batch[i]));
                if (mayTake && i == batch.Length && _incomingReady.TryDequeue(out IncomingSlot? first))
                {
                    // The head of the queue, not necessarily one of this batch: the order of delivery is the queue's.
                    _readyCount--;
                    taken = new Transaction(this, first, first.Generation);
                }
            }
            for (int routed = start; routed < i; routed++)
            {
                RecordRoutedForTest?.Invoke();
            }
        }
    }

    /// <summary>A call or oneway message that needs no work outside the slot lock before it is routed.</summary>
    private bool IsPlain(in TransactionRecord record) =>
        !_copyPayloads && record.MetadataLength == 0
        && ((record.Flags & TransactionFlags.Oneway) != 0
            || ((record.Flags & TransactionFlags.TwoWay) != 0 && record.Context.Depth <= (uint)_options.MaxCallDepth));

    private void Route(in TransactionRecord record, ThreadToken thread)
    {
        IncomingSlot slot = AcquireIncoming(record, thread);
        var transaction = new Transaction(this, slot, slot.Generation);
        if ((record.Flags & (TransactionFlags.Reply | TransactionFlags.ErrorReply)) != 0)
        {
            int index = (int)(record.TransactionId & TransactionIds.PendingCallIndexMask);
            if (index >= _calls.Length || !_calls[index].TryComplete(record.TransactionId, transaction, null))
            {
                // Nobody waits (the call ended unanswered): if it asked for a direct reply and this one came on the ring
                // (too large for the lines, or the peer's live limit), nothing will be written to the lines for it any
                // more; if it held the direct call lines, they are free now. An answered call does both itself (ReturnCall).
                if (_inbound.ExpectedDirectReply == record.TransactionId)
                {
                    _inbound.StopExpectingDirectReply(record.TransactionId);
                }
                FreeDirectCallLinesAfterLateAnswer(record.TransactionId, thread);
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
        using (_slotLock.EnterScope(thread))
        {
            RouteUnsynchronized(slot);
        }
    }

    /// <summary>Routes a live call or oneway message: to a nested call waiting for it, the oneway backlog, or the ready queue.</summary>
    private void RouteUnsynchronized(IncomingSlot slot)
    {
        TransactionFlags flags = slot.Record.Flags;
        if ((flags & TransactionFlags.TwoWay) != 0 && TryRouteNestedUnsynchronized(slot))
        {
            return;
        }
        if ((flags & TransactionFlags.Oneway) != 0)
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

    private void EnqueueReadyUnsynchronized(IncomingSlot slot)
    {
        _incomingReady.Enqueue(slot);
        _readyCount++;
        if (_receiveWaiters.Count > 0)
        {
            // One transaction, one receiver woken: the newest waiter (its state is still in the cache).
            ReceiveWaiter waiter = _receiveWaiters[^1];
            _receiveWaiters.RemoveAt(_receiveWaiters.Count - 1);
            waiter.Complete(ready: true);
        }
    }

    private IncomingSlot AcquireIncoming(in TransactionRecord record, ThreadToken thread)
    {
        // Parsed before a slot is taken: a bad block closes the connection (the pump's caller) with nothing to undo.
        CallMetadata? metadata = record.MetadataLength == 0 ? null : ReadMetadata(record);
        // An inline payload is private already (copied out of the ring as its slot is taken).
        if (_copyPayloads && !record.Inline)
        {
            return AcquireIncomingCopied(record, metadata, thread);
        }
        using (_slotLock.EnterScope(thread))
        {
            return AcquireIncomingUnsynchronized(record, metadata, copy: null);
        }
    }

    /// <summary>
    /// <see cref="AcquireIncoming"/> for a payload that is copied: once, here, before any receiver, handler or
    /// deserializer can see the transaction (the sender can change the shared bytes later, but not these). A method of its
    /// own, so the usual path has no handler for the copy's return.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private IncomingSlot AcquireIncomingCopied(in TransactionRecord record, CallMetadata? metadata, ThreadToken thread)
    {
        byte[] copy = System.Buffers.ArrayPool<byte>.Shared.Rent(Math.Max(record.PayloadLength, 1));
        _inbound.GetPayload(record).CopyTo(copy);
        try
        {
            using (_slotLock.EnterScope(thread))
            {
                return AcquireIncomingUnsynchronized(record, metadata, copy);
            }
        }
        catch
        {
            // Refused (a violation): the copy goes back to the pool.
            System.Buffers.ArrayPool<byte>.Shared.Return(copy);
            throw;
        }
    }

    /// <summary>Takes a free incoming slot for <paramref name="record"/>; the caller holds the slot lock.</summary>
    /// <exception cref="ProtocolViolationException">The peer has more buffers live than its free ring allows, or (copied)
    /// more payload bytes live than our data area holds.</exception>
    private IncomingSlot AcquireIncomingUnsynchronized(in TransactionRecord record, CallMetadata? metadata, byte[]? copy)
    {
        if (_freeIncomingCount == 0)
        {
            throw new ProtocolViolationException(
                $"The peer published more than {_freeIncoming.Length} live buffers, beyond what its free ring allows.");
        }
        if (copy is not null && _copiedBytesLive + record.PayloadLength > _inbound.Layout.DataSize)
        {
            throw new ProtocolViolationException(
                $"The peer's live buffers add up to more than the {_inbound.Layout.DataSize} bytes of the data area they lie in " +
                $"({_copiedBytesLive} bytes live, then {record.PayloadLength} more at offset {record.Offset}): they overlap.");
        }
        int index = _freeIncoming[_freeIncomingCount - 1];
        IncomingSlot? slot = _incomingSlots[index];
        if (slot is null)
        {
            // Only the first time this index is taken: the steady state reuses the same few slots. Made before the index
            // leaves the free list, so an allocation that fails loses no slot.
            slot = _incomingSlots[index] = new IncomingSlot(index);
            _incomingSlotsMade++;
        }
        if (record.Inline && slot.InlinePayload is null)
        {
            // The first inline payload this slot holds gets its array, kept for its later ones; made, as the slot is,
            // before the index leaves the free list.
            slot.InlinePayload = new byte[InlineLayout.MaxStagedPayload];
        }
        _freeIncomingCount--;
        slot.Record = record;
        slot.Replied = 0;
        slot.CancelRequested = false;
        slot.Cancellation = null;
        // A free slot holds neither (Release clears both): stored only when there is one, since storing a reference into
        // the heap, even a null one held in a variable, goes through the runtime's write barrier, per message here.
        Debug.Assert(slot.PayloadCopy is null && slot.Metadata is null, "A free slot keeps no copy or metadata.");
        if (copy is not null)
        {
            slot.PayloadCopy = copy;
            _copiedBytesLive += record.PayloadLength;
        }
        if (metadata is not null)
        {
            slot.Metadata = metadata;
        }
        if (record.Inline)
        {
            // Out of the channel's staging (reused by the next batch) into the slot's own bytes, once: the handler's
            // reads are private from here on.
            _inbound.CopyInlinePayload(record, slot.InlinePayload!);
        }
        // Odd: live.
        slot.Generation++;
        _liveTransactions++;
        if ((record.Flags & TransactionFlags.TwoWay) != 0)
        {
            // A peer that reuses an id only makes its own earlier calls uncancellable while a newer one of that id is live
            // (the newest is found first).
            _liveCallsById.Add(slot, record.TransactionId);
        }
        return slot;
    }

    /// <summary>Copies a record's metadata block once out of the shared region and parses the copy.</summary>
    /// <exception cref="ProtocolViolationException">The block is malformed.</exception>
    private CallMetadata ReadMetadata(in TransactionRecord record)
    {
        // The sender can still write the shared bytes: parse only the private copy. The record's validation bounded
        // the length by CallMetadataBlock.MaxLength, so the stack holds it.
        Span<byte> block = stackalloc byte[CallMetadataBlock.MaxLength];
        block = block[..record.MetadataLength];
        _inbound.GetMetadata(record).CopyTo(block);
        return CallMetadataBlock.Parse(block);
    }
}
