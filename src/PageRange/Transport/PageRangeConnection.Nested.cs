using System.Text;

namespace PageRange.Transport;

/// <summary>
/// Nested calls, binder's transaction stack: a thread waiting synchronously for the reply to a call of chain C runs the
/// peer's calls of chain C itself, so A -> B -> A -> B needs one thread on each side.
/// </summary>
/// <remarks>
/// Synchronous callers register in <see cref="_chainWaiters"/> (chain id to the most recent waiter, linked to the ones
/// under it) while they wait, if a nested-call handler is set. The reader routes an incoming two-way call whose chain
/// has a waiter to that waiter's inbox instead of the ready queue; the waiter wakes (it waits for "reply or nested
/// call"), runs the handler, and waits again. Every structure here is guarded by <see cref="_slotLock"/>.
/// </remarks>
public sealed partial class PageRangeConnection
{
    private readonly Dictionary<ulong, PendingCall> _chainWaiters = [];
    private volatile Action<Transaction>? _nestedHandler;

    /// <summary>
    /// Sets what a thread waiting in a synchronous call runs when the peer calls back in the same chain; null stops
    /// inline dispatch (such calls then go to the receivers).
    /// </summary>
    /// <param name="handler">Handles one call: replies (or fails it) and disposes it. Exceptions are swallowed; the
    /// transaction is disposed anyway, so the caller gets an error reply.</param>
    internal void SetNestedCallHandler(Action<Transaction>? handler) => _nestedHandler = handler;

    /// <summary>
    /// Whether a call of ours in chain <paramref name="chainId"/> waits for its reply now: an incoming call of that chain
    /// is then one the peer makes on behalf of it (a nested call we are waiting through), not a new call of the peer's.
    /// </summary>
    /// <remarks>Lock-free and racy by nature (a call may complete meanwhile): a hint for the server's per-client count,
    /// which must not hold up a nested call behind the calls waiting for it. Walks every call slot: call it only on a
    /// slow path.</remarks>
    internal bool HasCallWaitingInChain(ulong chainId)
    {
        if (chainId == 0)
        {
            return false;
        }
        foreach (PendingCall call in _calls)
        {
            // The acquire load of the id (IsCompleted) before the chain: Arm writes the chain before it publishes the id.
            if (!call.IsCompleted && call.ChainId == chainId)
            {
                return true;
            }
        }
        return false;
    }

    /// <summary>Registers a synchronous call as the newest waiter of its chain. Caller holds <see cref="_slotLock"/>.</summary>
    private void RegisterChainWaiterUnsynchronized(PendingCall call)
    {
        if (_nestedHandler is null || call.IsAsync)
        {
            return;
        }
        call.PreviousInChain = _chainWaiters.TryGetValue(call.ChainId, out PendingCall? below) ? below : null;
        _chainWaiters[call.ChainId] = call;
        call.IsChainWaiter = true;
    }

    /// <summary>
    /// Takes a call out of its chain's waiters; nested calls still in its inbox (they arrived after its reply, or it gave
    /// up) go to the waiter under it, or to the ready queue. Caller holds <see cref="_slotLock"/>.
    /// </summary>
    private void UnregisterChainWaiterUnsynchronized(PendingCall call)
    {
        if (!call.IsChainWaiter)
        {
            return;
        }
        call.IsChainWaiter = false;
        PendingCall? below = call.PreviousInChain;
        call.PreviousInChain = null;
        if (_chainWaiters.TryGetValue(call.ChainId, out PendingCall? top))
        {
            if (ReferenceEquals(top, call))
            {
                if (below is null)
                {
                    _chainWaiters.Remove(call.ChainId);
                }
                else
                {
                    _chainWaiters[call.ChainId] = below;
                }
            }
            else
            {
                // Several threads wait in one chain and a newer one is still waiting: unlink from the middle.
                PendingCall above = top;
                while (above.PreviousInChain is { } next && !ReferenceEquals(next, call))
                {
                    above = next;
                }
                if (ReferenceEquals(above.PreviousInChain, call))
                {
                    above.PreviousInChain = below;
                }
            }
        }
        while (call.NestedInbox.TryDequeue(out IncomingSlot? left))
        {
            if (below is not null)
            {
                below.NestedInbox.Enqueue(left);
                below.NestedCount++;
            }
            else
            {
                EnqueueReadyUnsynchronized(left);
            }
        }
        call.NestedCount = 0;
    }

    /// <summary>
    /// Routes an incoming two-way call to the newest thread waiting in its chain. Caller holds <see cref="_slotLock"/>.
    /// </summary>
    /// <returns>Whether a waiter took it.</returns>
    private bool TryRouteNestedUnsynchronized(IncomingSlot slot)
    {
        if (_chainWaiters.Count == 0 || !_chainWaiters.TryGetValue(slot.Record.Context.ChainId, out PendingCall? waiter))
        {
            return false;
        }
        waiter.NestedInbox.Enqueue(slot);
        // Release: the waiter reads the count without the lock, then takes the slot under it.
        Volatile.Write(ref waiter.NestedCount, waiter.NestedCount + 1);
        return true;
    }

    /// <summary>Runs the nested calls routed to <paramref name="call"/>'s thread, on this thread.</summary>
    private void RunNestedCalls(PendingCall call)
    {
        while (true)
        {
            IncomingSlot? slot;
            using (_slotLock.EnterScope())
            {
                if (!call.NestedInbox.TryDequeue(out slot))
                {
                    call.NestedCount = 0;
                    return;
                }
                call.NestedCount--;
            }
            var transaction = new Transaction(this, slot, slot.Generation);
            try
            {
                Action<Transaction>? handler = _nestedHandler;
                handler?.Invoke(transaction);
            }
#pragma warning disable CA1031 // The handler's failure must not end this thread's own call: the caller hears of it.
            catch (Exception)
#pragma warning restore CA1031
            {
                // Disposing below answers the peer (an error reply) if the handler did not.
            }
            finally
            {
                transaction.Dispose();
            }
        }
    }

    /// <summary>
    /// An incoming call deeper than <see cref="PageRangeOptions.MaxCallDepth"/>: answered at once with an error reply
    /// (without waiting for room: the reader must not block), or over the control socket if even that does not fit.
    /// </summary>
    private void RejectTooDeep(IncomingSlot slot)
    {
        TransactionRecord record = slot.Record;
        // Ours alone: nobody else has seen the slot, so the disposal below sends nothing more.
        slot.Replied = 1;
        byte[] message = Encoding.UTF8.GetBytes(
            $"call depth limit {_options.MaxCallDepth} exceeded: the call at depth {record.Context.Depth} was refused by pid {Environment.ProcessId}");
        bool sent = false;
        try
        {
            sent = !_peerDead && _outbound.TrySend(record.TransactionId, record.Code, TransactionFlags.ErrorReply, message,
                RecordContext.ForError(CallStatus.ResourceExhausted));
        }
        catch (ProtocolViolationException violation)
        {
            CloseForViolation(violation);
        }
        catch (Exception error) when (error is PageRangeException or ObjectDisposedException)
        {
            // No room or no page: the control socket says it instead, below.
        }
        if (!sent)
        {
            SendFailedReply(record.TransactionId);
        }
        new Transaction(this, slot, slot.Generation).Dispose();
    }
}
