using System.Diagnostics;
using System.Runtime.CompilerServices;
using PageRange.Diagnostics;
using PageRange.Threading;

namespace PageRange.Transport;

/// <summary>Sending: oneway messages, calls and replies.</summary>
public sealed partial class PageRangeConnection
{
    /// <summary>The bit of a chain id that says which side started the chain: set for the accepting side.</summary>
    private const ulong ChainSideBit = 1UL << 63;

    private static readonly OperationCanceledException s_abandoned = new("The call was abandoned before its reply arrived.");

    /// <summary>Sends a oneway message: copied once into the peer's region; returns without waiting for the peer.</summary>
    /// <param name="code">The method or opcode, for the receiver.</param>
    /// <param name="payload">The bytes to send; may be empty.</param>
    /// <exception cref="MessageTooLargeException">The payload is larger than the peer's oneway quota and can never fit.</exception>
    /// <exception cref="RegionFullException">The peer's region (or its oneway quota) stayed full for <see cref="PageRangeOptions.RegionFullTimeout"/>.</exception>
    /// <exception cref="PeerDiedException">The peer is gone.</exception>
    public void SendOneway(uint code, ReadOnlySpan<byte> payload)
    {
        if (!TryAppendOneway(code, payload))
        {
            SendCore(NextOnewayId(), code, TransactionFlags.Oneway, payload, CancellationToken.None);
        }
    }

    /// <summary>
    /// A stream's oneway straight into the open pack, if it can go there now (<see cref="OutboundChannel.TryAppendToOpenPack"/>);
    /// otherwise nothing is sent and the caller takes the full path, which also reports any error.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private bool TryAppendOneway(uint code, ReadOnlySpan<byte> payload) =>
        Volatile.Read(ref _disposed) == 0 && !_peerDead && _outbound.TryAppendToOpenPack(code, payload);

    /// <summary>Calls the peer and waits on this thread for its reply (binder-style).</summary>
    /// <param name="code">The method or opcode, for the receiver.</param>
    /// <param name="payload">The request bytes; may be empty.</param>
    /// <param name="timeout">How long to wait for the reply; defaults to <see cref="PageRangeOptions.CallTimeout"/>.</param>
    /// <param name="cancellationToken">Cancels the wait; the peer's handler sees it through <see cref="Transaction.CallCancelled"/>.</param>
    /// <returns>The reply, read in place from our region. Dispose it.</returns>
    /// <exception cref="TimeoutException">No reply within the timeout.</exception>
    /// <exception cref="OperationCanceledException">The token was cancelled.</exception>
    /// <exception cref="PeerDiedException">The peer is gone, or died before replying.</exception>
    /// <exception cref="RemoteCallException">The peer's handler failed or disposed the call without replying.</exception>
    /// <exception cref="MessageTooLargeException">The request can never fit the peer's region.</exception>
    /// <exception cref="RegionFullException">The peer's region stayed full.</exception>
    public Transaction Call(uint code, ReadOnlySpan<byte> payload, TimeSpan? timeout = null, CancellationToken cancellationToken = default) =>
        Call(code, payload, default(CallChain), timeout, cancellationToken);

    /// <summary>
    /// Calls the peer in <paramref name="chain"/> (a nested call made on behalf of an incoming call) and waits on this
    /// thread for its reply.
    /// </summary>
    /// <param name="code">The method or opcode, for the receiver.</param>
    /// <param name="payload">The request bytes; may be empty.</param>
    /// <param name="chain">The chain, from <see cref="Transaction.NestedChain"/> of the call being handled; <c>default</c>
    /// starts a new chain.</param>
    /// <param name="timeout">How long to wait for the reply; defaults to <see cref="PageRangeOptions.CallTimeout"/>.</param>
    /// <param name="cancellationToken">Cancels the wait; the peer's handler sees it through <see cref="Transaction.CallCancelled"/>.</param>
    /// <returns>The reply, read in place from our region. Dispose it.</returns>
    /// <remarks>
    /// While this thread waits, a call of the same chain that the peer makes back to us (binder's transaction stack)
    /// is handled on this thread by the connection's nested-call handler, if one is set (the server sets it); other
    /// calls go to the receivers as usual.
    /// </remarks>
    /// <exception cref="PageRangeStatusException">The call would be deeper than <see cref="PageRangeOptions.MaxCallDepth"/>
    /// (<see cref="CallStatus.ResourceExhausted"/>); nothing was sent.</exception>
    /// <exception cref="TimeoutException">No reply within the timeout.</exception>
    /// <exception cref="OperationCanceledException">The token was cancelled.</exception>
    /// <exception cref="PeerDiedException">The peer is gone, or died before replying.</exception>
    /// <exception cref="RemoteCallException">The peer failed the call (its status and message), or disposed it without replying.</exception>
    /// <exception cref="MessageTooLargeException">The request can never fit the peer's region.</exception>
    /// <exception cref="RegionFullException">The peer's region stayed full.</exception>
    public Transaction Call(uint code, ReadOnlySpan<byte> payload, CallChain chain, TimeSpan? timeout = null, CancellationToken cancellationToken = default) =>
        Call(code, payload, chain, options: null, timeout, cancellationToken);

    /// <summary>
    /// Sends a two-way call (in <paramref name="context"/>'s chain, or a new one, with its metadata) and waits for the reply.
    /// </summary>
    private Transaction CallCore(
        uint code, ReadOnlySpan<byte> payload, TransactionFlags flags, RecordContext context, TimeSpan? timeout,
        CancellationToken cancellationToken)
    {
        // Read once for the lock passes of the rent, the send, the wait's routing and the return (a lock left by its
        // owner word, a nested call and the reply's dispose still read it themselves).
        ThreadToken thread = ThreadToken.Current;
        PendingCall call = RentCall(isAsync: false, ref context, thread, DirectLinesFor(payload.Length));
        try
        {
            SendCore(thread, call.Id, code, DirectFlagsFor(call, flags), payload, cancellationToken, context);
        }
        catch
        {
            ReturnUnsentCall(call, thread);
            throw;
        }
        return FinishCall(call, timeout, thread, cancellationToken);
    }

    /// <summary>Calls the peer and completes when its reply arrives.</summary>
    /// <inheritdoc cref="Call(uint, ReadOnlySpan{byte}, TimeSpan?, CancellationToken)"/>
    public ValueTask<Transaction> CallAsync(uint code, ReadOnlyMemory<byte> payload, TimeSpan? timeout = null, CancellationToken cancellationToken = default) =>
        CallAsync(code, payload, default(CallChain), timeout, cancellationToken);

    /// <summary>Calls the peer in <paramref name="chain"/> and completes when its reply arrives.</summary>
    /// <remarks>An asynchronous caller does not run the peer's nested calls itself: they go to the receivers.</remarks>
    /// <inheritdoc cref="Call(uint, ReadOnlySpan{byte}, CallChain, TimeSpan?, CancellationToken)"/>
    public ValueTask<Transaction> CallAsync(uint code, ReadOnlyMemory<byte> payload, CallChain chain, TimeSpan? timeout = null, CancellationToken cancellationToken = default) =>
        CallAsync(code, payload, chain, options: null, timeout, cancellationToken);

    /// <summary>Sends a two-way call (in <paramref name="context"/>'s chain, with its metadata) and completes with the reply.</summary>
    private ValueTask<Transaction> CallAsyncCore(
        uint code, ReadOnlyMemory<byte> payload, TransactionFlags flags, RecordContext context, TimeSpan? timeout,
        CancellationToken cancellationToken)
    {
        ThreadToken thread = ThreadToken.Current;
        PendingCall call = RentCall(isAsync: true, ref context, thread);
        bool sent;
        try
        {
            sent = TrySendNow(call.Id, code, flags, payload.Span, context);
        }
        catch
        {
            ReturnCall(call, taken: false, thread);
            throw;
        }
        // While the peer's region is full the request waits for room asynchronously: no thread is blocked.
        return sent ? FinishCallAsync(call, timeout, cancellationToken) : CallSlowAsync(call, code, flags, payload, context, timeout, cancellationToken);
    }

    /// <summary>Waits on this thread for the reply to <paramref name="call"/>, already sent, and gives the slot back.</summary>
    internal Transaction FinishCall(PendingCall call, TimeSpan? timeout, CancellationToken cancellationToken) =>
        FinishCall(call, timeout, ThreadToken.Current, cancellationToken);

    /// <inheritdoc cref="FinishCall(PendingCall, TimeSpan?, CancellationToken)"/>
    /// <param name="call">The call, sent already.</param>
    /// <param name="timeout">How long to wait; defaults to <see cref="PageRangeOptions.CallTimeout"/>.</param>
    /// <param name="thread">The current thread's token, read once by the caller for all the call's lock passes.</param>
    /// <param name="cancellationToken">Cancels the wait.</param>
    internal Transaction FinishCall(PendingCall call, TimeSpan? timeout, ThreadToken thread, CancellationToken cancellationToken)
    {
        bool taken = false;
        try
        {
            WaitForReply(call, timeout ?? _options.CallTimeout, thread, cancellationToken);
            Transaction reply = TakeReply(call);
            taken = true;
            return reply;
        }
        finally
        {
            ReturnCall(call, taken, thread);
        }
    }

    /// <summary>Completes with the reply to <paramref name="call"/>, already sent, and gives the slot back.</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    internal async ValueTask<Transaction> FinishCallAsync(PendingCall call, TimeSpan? timeout, CancellationToken cancellationToken)
    {
        bool taken = false;
        // The background reader reads the ring for async callers; tell it there is one.
        Interlocked.Increment(ref _asyncInterest);
        _pumpWake.Set();
        try
        {
            TimeSpan limit = timeout ?? _options.CallTimeout;
            // Only what can fire is built: with no timeout and a token that cannot be cancelled, an async call
            // allocates nothing beyond its pooled state machine.
            using CancellationTokenSource? timeoutSource = limit == Timeout.InfiniteTimeSpan ? null : new CancellationTokenSource(limit);
            using CancellationTokenSource? linked = timeoutSource is not null && cancellationToken.CanBeCanceled
                ? CancellationTokenSource.CreateLinkedTokenSource(timeoutSource.Token, cancellationToken)
                : null;
            CancellationToken ends = linked?.Token ?? timeoutSource?.Token ?? cancellationToken;
            await using (ends.CanBeCanceled
                ? ends.UnsafeRegister(static (state, _) =>
                {
                    var pending = (PendingCall)state!;
                    pending.TryComplete(pending.Id, default, new OperationCanceledException());
                }, call)
                : default(CancellationTokenRegistration))
            {
                try
                {
                    await new ValueTask<Transaction>(call, call.Version).ConfigureAwait(false);
                }
                catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested && timeoutSource?.IsCancellationRequested == true)
                {
                    SendCancel(call.Id);
                    throw new TimeoutException($"The peer did not reply to call {call.Id} within {limit}.");
                }
                catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
                {
                    SendCancel(call.Id);
                    throw new OperationCanceledException(cancellationToken);
                }
            }
            Transaction reply = TakeReply(call);
            taken = true;
            return reply;
        }
        finally
        {
            Interlocked.Decrement(ref _asyncInterest);
            // After an await: possibly another thread than the one that rented the call.
            ReturnCall(call, taken, ThreadToken.Current);
        }
    }

    /// <summary>Sends the reply (<see cref="CallStatus.Ok"/>) or error reply (any other status) to an incoming two-way call.</summary>
    internal void SendReply(IncomingSlot slot, ReadOnlySpan<byte> payload, CallStatus status)
    {
        if ((slot.Record.Flags & TransactionFlags.TwoWay) == 0)
        {
            throw new InvalidOperationException("Only a two-way call can be replied to; this transaction is oneway or a reply.");
        }
        if (Interlocked.Exchange(ref slot.Replied, 1) != 0)
        {
            throw new InvalidOperationException($"Call {slot.Record.TransactionId} was already replied to.");
        }
        TransactionFlags flags = ReplyFlags(slot.Record, status);
        try
        {
            SendCore(ThreadToken.Current, slot.Record.TransactionId, slot.Record.Code, flags, payload, CancellationToken.None, RecordContext.ForError(status));
        }
        catch
        {
            // Nothing was sent: the handler may try a smaller reply, and disposing the call still sends the caller an
            // error reply (binder's BR_FAILED_REPLY) instead of leaving it waiting for ever.
            Volatile.Write(ref slot.Replied, 0);
            throw;
        }
    }

    /// <summary>
    /// A reply's flags for <paramref name="status"/>, with the internal direct-reply bit if the call asked for a direct
    /// reply (<see cref="DirectReplyLayout"/>): the outbound channel writes it into the caller's lines if it fits, else
    /// on the ring.
    /// </summary>
    private static TransactionFlags ReplyFlags(in TransactionRecord call, CallStatus status) =>
        (status == CallStatus.Ok ? TransactionFlags.Reply : TransactionFlags.ErrorReply)
        | (call.Flags & TransactionFlagsExtensions.DirectReplyRequested);

    /// <summary>Reserve, copy once, publish, wake the peer if it is parked; waits for frees while the region is full.</summary>
    private void SendCore(ulong id, uint code, TransactionFlags flags, ReadOnlySpan<byte> payload, CancellationToken cancellationToken, in RecordContext context = default) =>
        SendCore(ThreadToken.Current, id, code, flags, payload, cancellationToken, context);

    /// <inheritdoc cref="SendCore(ulong, uint, TransactionFlags, ReadOnlySpan{byte}, CancellationToken, in RecordContext)"/>
    private void SendCore(ThreadToken thread, ulong id, uint code, TransactionFlags flags, ReadOnlySpan<byte> payload, CancellationToken cancellationToken, in RecordContext context)
    {
        ThrowIfDisposed();
        if (_peerDead)
        {
            throw NewPeerDied();
        }
        try
        {
            if (_outbound.TrySend(thread, id, code, flags, payload, context))
            {
                return;
            }
            SendSlow(id, code, flags, payload, cancellationToken, context);
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

    /// <summary>Back-pressure: the peer's region is full, so wait (bounded, cancellable, ended by death) for frees.</summary>
    private void SendSlow(ulong id, uint code, TransactionFlags flags, ReadOnlySpan<byte> payload, CancellationToken cancellationToken, in RecordContext context)
    {
        PageRangeMetrics.RecordRegionFullWait();
        FreeLaneBeforeBlocking();
        EnterRegionFull(payload.Length);
        // A caller without a token of its own (a plain SendOneway) waits on the connection's close alone: no linked
        // source, so a sender that keeps finding the region full (a stream faster than its receiver) allocates nothing.
        using CancellationTokenSource? linked = cancellationToken.CanBeCanceled ? CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, _closed.Token) : null;
        try
        {
            _outbound.Send(id, code, flags, payload, RoomTimeout(flags), linked?.Token ?? _closed.Token, context);
        }
        catch (RegionFullException full)
        {
            OnReplyRoomExhausted(flags, full);
            throw;
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested && _peerDead)
        {
            throw NewPeerDied();
        }
        finally
        {
            LeaveRegionFull();
        }
    }

    private void SendCancel(ulong id)
    {
        if (_peerDead)
        {
            return;
        }
        // Best effort: a lost cancel only means the callee's handler runs to the end.
        _ = _control.SendCancelAsync(id).AsTask().ContinueWith(
            static task => _ = task.Exception, CancellationToken.None, TaskContinuationOptions.OnlyOnFaulted, TaskScheduler.Default);
    }

    private void SendFailedReply(ulong id)
    {
        if (_peerDead)
        {
            return;
        }
        _ = _control.SendFailedReplyAsync(id).AsTask().ContinueWith(
            static task => _ = task.Exception, CancellationToken.None, TaskContinuationOptions.OnlyOnFaulted, TaskScheduler.Default);
    }

    // A oneway's id is given by the outbound channel under the send lock it takes anyway (TransactionIds.Oneway of its
    // own count): an Interlocked.Increment here was a locked instruction per message, and each one waits for the
    // previous message's stores to reach lines the receiver is reading (about half the oneway rate, see
    // benchmarks/README.md).
    private static ulong NextOnewayId() => TransactionIds.AssignedOnSend;

    /// <summary>
    /// The record context of a call in <paramref name="chain"/>, checked against the depth limit; with no chain, a context
    /// whose chain id is 0: a new chain, named by <see cref="RentCall"/> after the call's own id.
    /// </summary>
    /// <param name="chain">The chain the call is made in; none starts a new one.</param>
    private RecordContext ContextFor(CallChain chain)
    {
        if (chain.IsNone)
        {
            return new RecordContext(0, 0, CallStatus.Ok);
        }
        if (chain.DepthValue > (uint)_options.MaxCallDepth)
        {
            throw new PageRangeStatusException(CallStatus.ResourceExhausted,
                $"call depth limit {_options.MaxCallDepth} exceeded: a nested call at depth {chain.DepthValue} in {chain} was not sent " +
                "(PageRangeOptions.MaxCallDepth).");
        }
        return RecordContext.ForCall(chain);
    }

    // Calls that rented their pending-call slot under the slot lock (not the spare), counted under it, for tests.
    private long _lockedRents;

    /// <param name="isAsync">Whether the caller awaits the reply rather than waiting on its thread.</param>
    /// <param name="context">The call's context from <see cref="ContextFor"/>; a new chain's (chain id 0) gets its id here.</param>
    /// <param name="thread">The current thread's token, read once by the caller for all the call's lock passes.</param>
    /// <param name="directLines">Which direct lines the call may use (<see cref="DirectLinesFor"/>): a synchronous call
    /// whose caller sends it with <see cref="DirectFlagsFor"/>'s flags. It uses those no other call uses.</param>
    private PendingCall RentCall(bool isAsync, ref RecordContext context, ThreadToken thread, DirectLines directLines = DirectLines.None)
    {
        ThrowIfDisposed();
        PendingCall? call;
        // A load first: the lock only when there is something to take.
        if ((_nestedHandler is null || isAsync) && Volatile.Read(ref _spareCall) is not null)
        {
            // Nothing to register for a chain (no nested-call handler, or an async caller, which never runs nested
            // calls): the spare slot, taken under a short pass of the slot lock. Under the slot lock, not an exchange: a
            // lone caller's thread holds the lock's bias (it routes its replies and frees them under it), so a pass is a
            // few plain stores and no locked instruction; the exchange here and the compare-exchange in ReturnCall were
            // two per call, on a round trip's critical path between the reply's arrival and the next request's publish
            // (the call probe's take phase: -5 ns, session 2026-12-04 16:56). Armed, and the direct reply asked for, in
            // the same pass.
            using (_slotLock.EnterScope(thread))
            {
                if ((call = _spareCall) is not null)
                {
                    _spareCall = null;
                    ArmCall(call, isAsync, ref context);
                    if (directLines != DirectLines.None)
                    {
                        TryUseDirectLinesUnsynchronized(call, directLines);
                    }
                    return call;
                }
            }
        }
        using (_slotLock.EnterScope(thread))
        {
            if (_freeCallCount > 0)
            {
                call = _calls[_freeCalls[--_freeCallCount]];
            }
            else if ((call = _spareCall) is null)
            {
                throw new InvalidOperationException(
                    $"More than {_calls.Length} calls are outstanding on this connection; raise PageRangeOptions.MaxConcurrentCalls.");
            }
            else
            {
                // Under the lock already: no second pass through it (TryTakeSpareCall's).
                _spareCall = null;
            }
            _lockedRents++;
            ArmCall(call, isAsync, ref context);
            if (directLines != DirectLines.None)
            {
                TryUseDirectLinesUnsynchronized(call, directLines);
            }
            // Before the call is sent: the peer's nested call may come back before this thread starts waiting.
            RegisterChainWaiterUnsynchronized(call);
        }
        return call;
    }

    private void ArmCall(PendingCall call, bool isAsync, ref RecordContext context)
    {
        // The slot's own sequence, not one of the connection: only the thread that rented the slot writes it, so no
        // locked increment per call (one was ~6 ns of a call's own work in the call probe, on the critical path of a
        // round trip, between the reply's arrival and the next request's publish). The id stays unique: the index tells
        // the slots apart, and a slot's sequence only grows, so a late reply to an earlier call of this slot never
        // matches (the reason for the sequence).
        ulong id = TransactionIds.Call(++call.Sequence, call.Index);
        if (context.ChainId == 0)
        {
            // A new chain takes its id from the call's, which is unique among our calls past and present, so among our
            // chains too; our side's bit keeps the chains we start apart from those the peer starts.
            context = context with { ChainId = _chainSide | (id & ~ChainSideBit) };
        }
        call.Arm(id, isAsync, context.ChainId);
    }

    /// <summary>
    /// Lets <paramref name="call"/> use the direct lines no other call uses: ask for a direct reply
    /// (<see cref="DirectReplyLayout"/>: the inbound channel then expects its id, before it is sent) and be written into
    /// the peer's direct call lines (<see cref="DirectCallLayout"/>). The caller holds the slot lock, which keeps two
    /// calls from taking either at once. The reply's expectation ends when the reader takes the reply, or when the call
    /// learns that it came another way (<see cref="ReturnCall"/>, <see cref="ReturnUnsentCall"/>, <see cref="Route"/>,
    /// <see cref="OnFailedReply"/>); the call lines are free again once the call was answered (<see cref="ReturnCall"/>),
    /// never sent, or, if it ended unanswered, once its late answer arrives (<see cref="Route"/>, <see cref="OnFailedReply"/>):
    /// an answer means the peer took the call.
    /// </summary>
    private void TryUseDirectLinesUnsynchronized(PendingCall call, DirectLines lines)
    {
        if (_directReplies && _inbound.ExpectedDirectReply == 0)
        {
            _inbound.ExpectDirectReply(call.Id);
            call.DirectReply = true;
        }
        if (lines == DirectLines.ReplyAndCall && _directCalls && _directCallLinesUser == 0)
        {
            _directCallLinesUser = call.Id;
            call.DirectCall = true;
        }
    }

    /// <summary>Which direct lines a synchronous call may use.</summary>
    internal enum DirectLines
    {
        /// <summary>None (an asynchronous call, a reserved one).</summary>
        None,

        /// <summary>The direct reply lines only: the request is too large for the peer's call lines.</summary>
        Reply,

        /// <summary>Both: the request fits the peer's call lines (<see cref="DirectCallLayout.MaxPayload"/>).</summary>
        ReplyAndCall,
    }

    /// <summary>
    /// The direct lines a synchronous call of <paramref name="requestLength"/> bytes may use: always the reply's (its
    /// size is not known yet), the peer's call lines only if the request fits them (a larger one would hold them for
    /// nothing).
    /// </summary>
    private static DirectLines DirectLinesFor(int requestLength) =>
        requestLength <= DirectCallLayout.MaxPayload ? DirectLines.ReplyAndCall : DirectLines.Reply;

    /// <summary>The flags a synchronous call is sent with: the internal bits for the direct lines it may use.</summary>
    private static TransactionFlags DirectFlagsFor(PendingCall call, TransactionFlags flags) =>
        flags
        | (call.DirectReply ? TransactionFlagsExtensions.DirectReplyRequested : 0)
        | (call.DirectCall ? TransactionFlagsExtensions.DirectCall : 0);

    /// <summary>Gives back a call whose request was never sent: no reply of any kind will come.</summary>
    private void ReturnUnsentCall(PendingCall call, ThreadToken thread)
    {
        if (call.DirectReply)
        {
            call.DirectReply = false;
            _inbound.StopExpectingDirectReply(call.Id);
        }
        ReturnCall(call, taken: false, thread, sent: false);
    }

    /// <summary>Keeps <paramref name="call"/> as the spare slot, if there is none yet.</summary>
    /// <param name="call">The call given back.</param>
    /// <param name="freeDirectCallLines">Also free the direct call lines call <paramref name="callId"/> used, in the same pass.</param>
    /// <param name="stopExpectingReply">Also end the direct reply's expectation of call <paramref name="callId"/>, if it is still there.</param>
    /// <param name="callId">The id <paramref name="call"/> had.</param>
    /// <param name="thread">The current thread's token.</param>
    private bool TryReturnSpare(PendingCall call, bool freeDirectCallLines, bool stopExpectingReply, ulong callId, ThreadToken thread)
    {
        using (_slotLock.EnterScope(thread))
        {
            if (freeDirectCallLines)
            {
                FreeDirectCallLinesUnsynchronized(callId);
            }
            if (stopExpectingReply)
            {
                _inbound.StopExpectingDirectReplyUnsynchronized(callId);
            }
            if (_spareCall is not null)
            {
                return false;
            }
            _spareCall = call;
            return true;
        }
    }

    /// <summary>Frees the direct call lines if call <paramref name="callId"/> holds them; the caller holds the slot lock.</summary>
    private void FreeDirectCallLinesUnsynchronized(ulong callId)
    {
        if (_directCallLinesUser == callId)
        {
            _directCallLinesUser = 0;
        }
    }

    /// <param name="call">The call given back.</param>
    /// <param name="taken">Whether its reply was handed to the caller.</param>
    /// <param name="thread">The current thread's token.</param>
    /// <param name="sent">Whether its request was sent (<see cref="ReturnUnsentCall"/>: it was not).</param>
    private void ReturnCall(PendingCall call, bool taken, ThreadToken thread, bool sent = true)
    {
        // A call abandoned by timeout, cancellation or an exception is marked done, so a reply that arrives later finds
        // no one waiting and is freed by the reader.
        call.Abandon(s_abandoned);
        // Answered: a reply or error reply (from the lines or the ring), or the peer's failure on the control socket.
        // Read after Abandon, which either completed the call unanswered or found it answered (found by review: read
        // before it, a reply that came in between left the call lines held for good).
        bool answered = call.Error is null or RemoteCallException;
        // The peer took the call before it answered, so the call lines are free; a call never sent never wrote them. One
        // that ended unanswered keeps them until its late answer arrives (Route, OnFailedReply).
        bool freeDirectCallLines = call.DirectCall && (answered || !sent);
        call.DirectCall = false;
        // Answered (a reply or error reply, taken from the lines or the ring, or the peer's failure on the control
        // socket): nothing more will be written for this call, so the reply lines are free for the next; the reader
        // ended the expectation already if the reply came directly (with a word of its own: see InboundChannel). A call
        // that ended unanswered (a timeout, a cancellation, the peer's death) leaves it for its late reply, which the
        // reader takes (and frees: nobody waits) before another call may ask. Cleared under the slot lock's pass below, without a locked instruction of its own.
        bool stopExpectingReply = call.DirectReply && answered;
        call.DirectReply = false;
        if (!taken && call.Reply.IsLive)
        {
            // The reply arrived, but the caller left by an exception (the reader failed right after routing it):
            // free it, or our region would stay mapped for a transaction nobody holds.
            call.Reply.Dispose();
        }
        ulong id = call.Id;
        call.Reply = default;
        call.Id = 0;
        // Set and cleared only by this call's own thread (RentCall, the unregistration below), so read without the lock.
        if (!call.IsChainWaiter && TryReturnSpare(call, freeDirectCallLines, stopExpectingReply, id, thread))
        {
            // The next call (often this thread's) takes it back under the slot lock, which publishes the fields reset
            // above to whoever takes it.
            return;
        }
        using (_slotLock.EnterScope(thread))
        {
            if (freeDirectCallLines)
            {
                FreeDirectCallLinesUnsynchronized(id);
            }
            if (stopExpectingReply)
            {
                _inbound.StopExpectingDirectReplyUnsynchronized(id);
            }
            UnregisterChainWaiterUnsynchronized(call);
            _freeCalls[_freeCallCount++] = call.Index;
        }
    }

    private void WaitForReply(PendingCall call, TimeSpan timeout, ThreadToken thread, CancellationToken cancellationToken)
    {
        long deadline = Doorbell.DeadlineAfter(timeout);
        // The clock is read by WaitForProgress before it waits; here only once a wait came back without the reply.
        bool waited = false;
        while (!call.IsCompleted)
        {
            if (Volatile.Read(ref call.NestedCount) > 0)
            {
                // The peer called back in our chain while it handles our call: binder runs it on the waiting thread.
                RunNestedCalls(call);
                continue;
            }
            if (cancellationToken.IsCancellationRequested)
            {
                if (call.TryComplete(call.Id, default, new OperationCanceledException(cancellationToken)))
                {
                    SendCancel(call.Id);
                }
                break;
            }
            if (waited && Stopwatch.GetTimestamp() >= deadline)
            {
                if (call.TryComplete(call.Id, default, new TimeoutException($"The peer did not reply to call {call.Id} within {timeout}.")))
                {
                    SendCancel(call.Id);
                }
                break;
            }
            // A lane's handler calling its peer: the run's finished oneways go back first (the peer may need the room).
            FreeLaneBeforeBlocking();
            WaitForProgress(call, deadline, thread, cancellationToken);
            waited = true;
        }
    }

    /// <summary>A call timeout is positive (or infinite) and fits a timer: about 24.8 days (int.MaxValue ms) at most.</summary>
    /// <remarks>Checked before anything is published: a call the peer received must have a wait that can end in its reply.</remarks>
    internal static void ValidateCallTimeout(TimeSpan? timeout)
    {
        if (timeout is { } value && value != Timeout.InfiniteTimeSpan)
        {
            ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(value, TimeSpan.Zero, nameof(timeout));
            ArgumentOutOfRangeException.ThrowIfGreaterThan(value, TimeSpan.FromMilliseconds(int.MaxValue - 1), nameof(timeout));
        }
    }

    private static Transaction TakeReply(PendingCall call)
    {
        if (call.Error is { } error)
        {
            if (error is PageRangeException or TimeoutException or OperationCanceledException)
            {
                System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(error);
            }
            throw new PageRangeException(error.Message, error);
        }
        Transaction reply = call.Reply;
        if ((reply.Flags & TransactionFlags.ErrorReply) != 0)
        {
            // The status was validated (at most Unauthenticated) when the record was read; an error without one is Unknown.
            CallStatus status = reply.Slot.Record.Context.Status;
            string message = PeerText.Sanitize(reply.Payload);
            reply.Dispose();
            throw new RemoteCallException(status == CallStatus.Ok ? CallStatus.Unknown : status, message);
        }
        return reply;
    }
}
