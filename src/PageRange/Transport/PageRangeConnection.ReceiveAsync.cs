using System.Runtime.CompilerServices;

namespace PageRange.Transport;

/// <summary>
/// Asynchronous receiving: receivers that wait on pooled value-task sources, woken one per transaction queued, so a
/// <see cref="ReceiveAsync"/> that has to wait allocates nothing in steady state. The list of waiters is guarded by
/// the slot lock.
/// </summary>
public sealed partial class PageRangeConnection
{
    private readonly List<ReceiveWaiter> _receiveWaiters = [];
    private readonly Stack<ReceiveWaiter> _receiveWaiterPool = new();

    /// <summary>Completes with the next incoming call or oneway message.</summary>
    /// <remarks>A wait allocates nothing in steady state: the waiter is pooled and so is the state machine.</remarks>
    /// <inheritdoc cref="Receive"/>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    public async ValueTask<Transaction> ReceiveAsync(CancellationToken cancellationToken = default)
    {
        if (TryReceive(out Transaction ready))
        {
            return ready;
        }
        // The background reader reads the ring for async receivers; tell it there is one.
        Interlocked.Increment(ref _asyncInterest);
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
                cancellationToken.ThrowIfCancellationRequested();
                ThrowIfWaitingInOwnLane();
                ReceiveWaiter? waiter = RegisterReceiveWaiter();
                if (waiter is null)
                {
                    // Something became ready (or the peer's last transaction was delivered) meanwhile.
                    continue;
                }
                CancellationTokenRegistration registration = cancellationToken.UnsafeRegister(
                    static state => ((ReceiveWaiter)state!).Owner.CompleteReceiveWaiter((ReceiveWaiter)state, ready: false), waiter);
                try
                {
                    await new ValueTask<bool>(waiter, waiter.Version).ConfigureAwait(false);
                }
                finally
                {
                    // Waits for a cancellation callback in progress, so the waiter is complete and unused before it is pooled.
                    registration.Dispose();
                    ReturnReceiveWaiter(waiter);
                }
            }
        }
        finally
        {
            Interlocked.Decrement(ref _asyncInterest);
        }
    }

    /// <summary>Joins the waiting receivers, unless a transaction is ready or the connection is drained after death.</summary>
    /// <returns>The waiter to await, or null if the caller should look again instead.</returns>
    private ReceiveWaiter? RegisterReceiveWaiter()
    {
        using (_slotLock.EnterScope())
        {
            if (_readyCount > 0 || _handoff is not null || _drainedAfterDeath)
            {
                return null;
            }
            ReceiveWaiter waiter = _receiveWaiterPool.TryPop(out ReceiveWaiter? pooled) ? pooled : new ReceiveWaiter(this);
            waiter.Reset();
            _receiveWaiters.Add(waiter);
            return waiter;
        }
    }

    /// <summary>Completes <paramref name="waiter"/> if it still waits (whoever takes it out of the list completes it).</summary>
    private void CompleteReceiveWaiter(ReceiveWaiter waiter, bool ready)
    {
        using (_slotLock.EnterScope())
        {
            if (!_receiveWaiters.Remove(waiter))
            {
                return;
            }
            waiter.Complete(ready);
        }
    }

    /// <summary>Wakes every waiting receiver so it looks again (the connection ended, or its last transaction was routed).</summary>
    private void WakeAllReceiveWaiters()
    {
        using (_slotLock.EnterScope())
        {
            foreach (ReceiveWaiter waiter in _receiveWaiters)
            {
                waiter.Complete(false);
            }
            _receiveWaiters.Clear();
        }
    }

    private void ReturnReceiveWaiter(ReceiveWaiter waiter)
    {
        using (_slotLock.EnterScope())
        {
            _receiveWaiterPool.Push(waiter);
        }
    }
}
