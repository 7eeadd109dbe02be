using PageRange.Transport;

namespace PageRange.Server;

/// <summary>
/// One client's share of the server, HTTP/2's per-connection stream limit: at most <c>limit</c> of its two-way calls
/// running at once (<see cref="PageRangeServerOptions.MaxConcurrentCallsPerClient"/>), the next ones waiting here in
/// arrival order (at most <c>queueLimit</c>, <see cref="PageRangeServerOptions.MaxQueuedCallsPerClient"/>), and one
/// more refused. The session keeps receiving whatever the count: only the calls wait, never the receiving.
/// </summary>
/// <remarks>
/// <para>
/// A call holds a slot from <see cref="TryTakeSlot"/> (or <see cref="TryTakeQueued"/>) until <see cref="Release"/>,
/// which the server calls exactly once when the call ended. The fast path (nothing queued, a slot free) is one
/// compare-exchange; the queue is behind a lock, taken only at the limit.
/// </para>
/// <para>
/// No lost wake-up: a call that queues adds itself to <see cref="_queued"/> (a full fence) and then looks for a free
/// slot (<see cref="TryTakeQueued"/>); a call that ends gives its slot back (a full fence) and then looks at
/// <see cref="_queued"/>. Either the queuer sees the slot or the ender sees the queued call. A call may take a slot
/// just freed ahead of one queued a moment before (they raced to arrive): harmless, the queued one takes the next.
/// </para>
/// </remarks>
internal sealed class ClientCallLimiter
{
    private readonly int _limit;
    private readonly int _queueLimit;
    private readonly Lock _lock = new();
    // Grows to the most calls queued at once, then stays: no allocation per call in the steady state.
    private readonly Queue<Transaction> _queue = new();
    private int _running;
    private int _queued;
    // Nested calls running beside the limit (TryTakeNested): at most _limit.
    private int _nested;
    private bool _closed;

    internal ClientCallLimiter(int limit, int queueLimit)
    {
        _limit = limit;
        _queueLimit = queueLimit;
    }

    /// <summary>How a call that found no free slot was taken.</summary>
    internal enum Admission
    {
        /// <summary>A slot came free after all: the call runs and holds it.</summary>
        Run,

        /// <summary>The call waits in the queue; the caller looks for a free slot once more (<see cref="TryTakeQueued"/>).</summary>
        Queued,

        /// <summary>The queue is full: the call is refused.</summary>
        Refused,

        /// <summary>The session ended: nothing more is taken.</summary>
        Closed,
    }

    /// <summary>The most calls running at once.</summary>
    internal int Limit => _limit;

    /// <summary>The most calls queued at once.</summary>
    internal int QueueLimit => _queueLimit;

    /// <summary>Calls holding a slot now.</summary>
    internal int Running => Volatile.Read(ref _running);

    /// <summary>Calls queued now.</summary>
    internal int Queued => Volatile.Read(ref _queued);

    /// <summary>Takes a slot if one is free and no call is queued (the queued go first).</summary>
    internal bool TryTakeSlot() => Volatile.Read(ref _queued) == 0 && TryTakeSlotCore();

    /// <summary>Nested calls running beside the limit now.</summary>
    internal int Nested => Volatile.Read(ref _nested);

    /// <summary>
    /// Lets a nested call of a chain the server is calling the client in run beside the limit, if fewer than the limit
    /// do already; the caller gives it back with <see cref="ReleaseNested"/>.
    /// </summary>
    internal bool TryTakeNested()
    {
        if (Interlocked.Increment(ref _nested) <= _limit)
        {
            return true;
        }
        Interlocked.Decrement(ref _nested);
        return false;
    }

    /// <summary>Gives back what <see cref="TryTakeNested"/> took.</summary>
    internal void ReleaseNested() => Interlocked.Decrement(ref _nested);

    /// <summary>At the limit (<see cref="TryTakeSlot"/> failed): runs, queues or refuses <paramref name="transaction"/>.</summary>
    internal Admission Admit(Transaction transaction)
    {
        using (_lock.EnterScope())
        {
            if (_closed)
            {
                return Admission.Closed;
            }
            if (_queue.Count == 0 && TryTakeSlotCore())
            {
                return Admission.Run;
            }
            if (_queue.Count >= _queueLimit)
            {
                return Admission.Refused;
            }
            _queue.Enqueue(transaction);
            // A full fence before the caller's look for a free slot (TryTakeQueued): see the remarks.
            Interlocked.Increment(ref _queued);
            return Admission.Queued;
        }
    }

    /// <summary>Gives a call's slot back.</summary>
    /// <returns>Whether calls are queued: the caller then hands them the free slots (<see cref="TryTakeQueued"/>).</returns>
    internal bool Release()
    {
        // A full fence before the load of _queued: see the remarks.
        Interlocked.Decrement(ref _running);
        return Volatile.Read(ref _queued) != 0;
    }

    /// <summary>Takes the oldest queued call with a free slot, which it then holds.</summary>
    internal bool TryTakeQueued(out Transaction transaction)
    {
        using (_lock.EnterScope())
        {
            if (_queue.Count != 0 && TryTakeSlotCore())
            {
                transaction = _queue.Dequeue();
                Interlocked.Decrement(ref _queued);
                return true;
            }
        }
        transaction = default;
        return false;
    }

    /// <summary>Takes every queued call (they will not run: the server stops, or the session ended).</summary>
    /// <param name="close">Whether nothing is taken any more (the session ended).</param>
    /// <returns>The calls taken, oldest first; empty if none.</returns>
    internal Transaction[] TakeAllQueued(bool close)
    {
        using (_lock.EnterScope())
        {
            _closed |= close;
            if (_queue.Count == 0)
            {
                return [];
            }
            Transaction[] all = _queue.ToArray();
            _queue.Clear();
            Interlocked.Exchange(ref _queued, 0);
            return all;
        }
    }

    private bool TryTakeSlotCore()
    {
        int running = Volatile.Read(ref _running);
        while (running < _limit)
        {
            int seen = Interlocked.CompareExchange(ref _running, running + 1, running);
            if (seen == running)
            {
                return true;
            }
            running = seen;
        }
        return false;
    }
}
