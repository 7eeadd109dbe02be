using System.Threading.Tasks.Sources;

namespace PageRange.Transport;

/// <summary>
/// One outstanding two-way call: the slot its reply is routed to. Preallocated and reused; the call's transaction id
/// carries the slot index in its low bits and a sequence number above, so a late reply to an abandoned call finds
/// a different id in the slot and is dropped.
/// </summary>
/// <remarks>
/// <see cref="_awaiting"/> holds the id while the call waits and 0 once it completed: completing is one
/// compare-exchange from the expected id to 0, so a reply, a timeout and a death race safely, and a reply for an
/// older call that used this slot can never complete a newer one.
/// </remarks>
internal sealed class PendingCall : IValueTaskSource<Transaction>
{
    private ManualResetValueTaskSourceCore<Transaction> _core;
    private ulong _awaiting;

    internal PendingCall(int index)
    {
        Index = index;
        // The reader thread completes calls; their continuations must not run on it.
        _core.RunContinuationsAsynchronously = true;
    }

    internal int Index { get; }

    /// <summary>The id of the call using this slot, 0 while free. Written only by the slot's owner.</summary>
    internal ulong Id;

    /// <summary>How many calls rented this slot: the sequence number in the id of the latest (written only by its renter).</summary>
    internal ulong Sequence;

    internal bool IsAsync;

    /// <summary>
    /// Whether the current call asked for a direct reply (<see cref="DirectReplyLayout"/>), whose id the inbound channel
    /// then expects; read and written only by the call's own thread (set under the slot lock).
    /// </summary>
    internal bool DirectReply;

    /// <summary>
    /// Whether the current call may be written into the peer's direct call lines (<see cref="DirectCallLayout"/>), which
    /// it then holds until it is answered; read and written only by the call's own thread (set under the slot lock).
    /// </summary>
    internal bool DirectCall;

    /// <summary>The chain the call was made in: a nested call of that chain from the peer may be routed to this call's thread.</summary>
    internal ulong ChainId;

    /// <summary>Whether a synchronous caller waits in this call and runs the peer's nested calls of its chain (guarded by the slot lock).</summary>
    internal bool IsChainWaiter;

    /// <summary>The call this one is nested in on the same chain, waiting under it (guarded by the slot lock).</summary>
    internal PendingCall? PreviousInChain;

    /// <summary>Nested calls of this chain routed to the waiting thread and not yet taken (guarded by the slot lock).</summary>
    internal readonly Queue<IncomingSlot> NestedInbox = new();

    /// <summary><see cref="NestedInbox"/>'s count, readable without the lock by the waiting thread.</summary>
    internal int NestedCount;

    internal Transaction Reply;

    internal Exception? Error;

    /// <summary>Whether the reply (or an error) has arrived for the current call.</summary>
    internal bool IsCompleted => Volatile.Read(ref _awaiting) == 0;

    internal short Version => _core.Version;

    /// <summary>Prepares the slot for a new call.</summary>
    internal void Arm(ulong id, bool isAsync, ulong chainId)
    {
        Reply = default;
        Error = null;
        IsAsync = isAsync;
        ChainId = chainId;
        if (isAsync)
        {
            _core.Reset();
        }
        Id = id;
        // Release: pairs with the compare-exchange in TryComplete; the fields above are set before anyone can match.
        Volatile.Write(ref _awaiting, id);
    }

    /// <summary>Completes call <paramref name="id"/>; false if that call is no longer waiting here.</summary>
    internal bool TryComplete(ulong id, Transaction reply, Exception? error)
    {
        if (id == 0 || Volatile.Read(ref _awaiting) != id)
        {
            return false;
        }
        // Claim with a compare-exchange to a sentinel first: only the winner writes Reply/Error, then releases with 0.
        if (Interlocked.CompareExchange(ref _awaiting, ulong.MaxValue, id) != id)
        {
            return false;
        }
        Reply = reply;
        Error = error;
        // Release: the owner reads Reply/Error after seeing 0.
        Volatile.Write(ref _awaiting, 0);
        if (IsAsync)
        {
            if (error is null)
            {
                _core.SetResult(reply);
            }
            else
            {
                _core.SetException(error);
            }
        }
        return true;
    }

    /// <summary>
    /// Ends the current call for good: completes it with <paramref name="error"/> if it is still waiting, and waits out a
    /// completion in progress on another thread, so that it cannot land in the next call that rents this slot.
    /// </summary>
    internal void Abandon(Exception error)
    {
        var spinner = default(SpinWait);
        while (true)
        {
            ulong awaiting = Volatile.Read(ref _awaiting);
            if (awaiting == 0 || (awaiting != ulong.MaxValue && TryComplete(awaiting, default, error)))
            {
                return;
            }
            // Another thread claimed the completion and is writing the result: a few instructions away.
            spinner.SpinOnce(sleep1Threshold: -1);
        }
    }

    Transaction IValueTaskSource<Transaction>.GetResult(short token) => _core.GetResult(token);

    ValueTaskSourceStatus IValueTaskSource<Transaction>.GetStatus(short token) => _core.GetStatus(token);

    void IValueTaskSource<Transaction>.OnCompleted(
        Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
        _core.OnCompleted(continuation, state, token, flags);
}
