using System.Diagnostics;
using System.Diagnostics.CodeAnalysis;
using System.Globalization;
using Microsoft.Extensions.Logging;
using PageRange.Diagnostics;

namespace PageRange.Allocation;

/// <summary>Delivering, aborting and freeing buffers, and what a freed buffer gives back to the page range.</summary>
internal sealed partial class BufferAllocator
{
    /// <summary>Delivers a Reserved buffer: it becomes Allocated, and only <see cref="Free(long)"/> gives it back.</summary>
    /// <exception cref="InvalidOperationException">No buffer starts at <paramref name="offset"/>, or it is not Reserved.</exception>
    internal void Commit(long offset) => Commit(offset, sequence: 0);

    /// <summary>
    /// Delivers a Reserved buffer whose record goes to position <paramref name="sequence"/> of the transaction ring:
    /// <see cref="Free(long, ulong)"/> honours a free of it only once the receiver's head is past that position.
    /// </summary>
    /// <exception cref="InvalidOperationException">No buffer starts at <paramref name="offset"/>, or it is not Reserved.</exception>
    internal void Commit(long offset, ulong sequence) => CommitCore(offset, sequence, callerHoldsLock: false);

    /// <summary><see cref="Commit(long, ulong)"/> for an owner that holds the <see cref="BufferAllocatorOptions.SharedLock"/>: no second lock.</summary>
    /// <remarks>Safety: the caller holds the shared lock (asserted in Debug builds).</remarks>
    /// <inheritdoc cref="Commit(long, ulong)"/>
    internal void CommitUnderLock(long offset, ulong sequence) => CommitCore(offset, sequence, callerHoldsLock: true);

    private void CommitCore(long offset, ulong sequence, bool callerHoldsLock)
    {
        ExtentState found;
        using (EnterUnlessHeld(callerHoldsLock))
        {
            int index = FindLiveUnsynchronized(offset);
            found = index == Nil ? ExtentState.Free : LiveUnsynchronized(index).State;
            if (found == ExtentState.Reserved)
            {
                ref Extent buffer = ref LiveUnsynchronized(index);
                buffer.State = ExtentState.Allocated;
                buffer.Sequence = sequence;
                return;
            }
        }
        ThrowNotInState(offset, found, "commit", ExtentState.Reserved);
    }

    /// <summary>Gives back a Reserved buffer that was never delivered (a failed send), zeroing it first if asked to.</summary>
    /// <exception cref="InvalidOperationException">No buffer starts at <paramref name="offset"/>, or it is not Reserved
    /// (binder's EINVAL and EPERM).</exception>
    internal void Abort(long offset) => AbortCore(offset, callerHoldsLock: false);

    /// <summary><see cref="Abort"/> for an owner that holds the <see cref="BufferAllocatorOptions.SharedLock"/>: no second lock.</summary>
    /// <remarks>Safety: the caller holds the shared lock (asserted in Debug builds).</remarks>
    /// <inheritdoc cref="Abort"/>
    internal void AbortUnderLock(long offset) => AbortCore(offset, callerHoldsLock: true);

    private void AbortCore(long offset, bool callerHoldsLock)
    {
        ExtentState found;
        long clearSize = 0;
        using (EnterUnlessHeld(callerHoldsLock))
        {
            int index = FindLiveUnsynchronized(offset);
            found = index == Nil ? ExtentState.Free : LiveUnsynchronized(index).State;
            if (found == ExtentState.Reserved)
            {
                clearSize = BeginReleaseUnsynchronized(index);
            }
        }

        if (found != ExtentState.Reserved)
        {
            if (found == ExtentState.Allocated)
            {
                PageRangeLog.AbortRefused(_logger, offset);
            }
            ThrowNotInState(offset, found, "abort", ExtentState.Reserved);
        }
        if (clearSize > 0)
        {
            ClearAndRelease(offset, clearSize, callerHoldsLock);
        }
    }

    /// <summary>
    /// Frees an Allocated buffer (binder's <c>BC_FREE_BUFFER</c>): zeroes it if it was reserved with clear-on-free,
    /// returns its range, refunds the oneway quota and marks the pages it alone covered Available.
    /// </summary>
    /// <returns>
    /// <see langword="false"/> if no buffer starts at <paramref name="offset"/>, or it was never delivered or is
    /// already being freed: binder logs such a free and ignores it, and so do we (see <see cref="IgnoredFrees"/>).
    /// </returns>
    internal bool Free(long offset) => Free(offset, deliveredBefore: ulong.MaxValue) == FreeResult.Freed;

    /// <summary>
    /// <see cref="Free(long)"/> under binder's delivery rule: a buffer becomes freeable only once the receiver has
    /// taken its record off the transaction ring, i.e. its ring position (given to <see cref="Commit(long, ulong)"/>)
    /// is below <paramref name="deliveredBefore"/>, the receiver's head as the writer sees it. A free of a buffer whose
    /// record is still on the ring is ignored and counted, as binder ignores a free of an undelivered buffer: freeing
    /// it would let the writer reuse bytes the receiver has not read yet, and a slot the record still occupies.
    /// </summary>
    /// <param name="offset">The offset the receiver named.</param>
    /// <param name="deliveredBefore">The transaction ring's head, validated: records before it have been received.</param>
    /// <returns>What became of the free.</returns>
    internal FreeResult Free(long offset, ulong deliveredBefore) => FreeCore(offset, deliveredBefore, callerHoldsLock: false);

    /// <summary><see cref="Free(long, ulong)"/> for an owner that holds the <see cref="BufferAllocatorOptions.SharedLock"/>: no second lock.</summary>
    /// <remarks>Safety: the caller holds the shared lock (asserted in Debug builds).</remarks>
    /// <inheritdoc cref="Free(long, ulong)"/>
    internal FreeResult FreeUnderLock(long offset, ulong deliveredBefore) => FreeCore(offset, deliveredBefore, callerHoldsLock: true);

    /// <summary>
    /// Whether <see cref="FreeUnderLock"/> would free the buffer at <paramref name="offset"/> now (a live buffer starts
    /// there and its record is below <paramref name="deliveredBefore"/>), without freeing it: for an owner that honours a
    /// free now and gives the buffer back later (a writer's resting packs). Counts and logs nothing.
    /// </summary>
    /// <remarks>Safety: the caller holds the shared lock (asserted in Debug builds).</remarks>
    /// <inheritdoc cref="Free(long, ulong)"/>
    internal bool IsFreeableUnderLock(long offset, ulong deliveredBefore)
    {
        using (EnterUnlessHeld(callerHoldsLock: true))
        {
            int index = FindLiveUnsynchronized(offset);
            return index != Nil && LiveUnsynchronized(index).State == ExtentState.Allocated && LiveUnsynchronized(index).Sequence < deliveredBefore;
        }
    }

    /// <summary>
    /// Reserves again, where it lies, an Allocated buffer of <paramref name="size"/> bytes whose free the owner honoured
    /// without giving it back (<see cref="IsFreeableUnderLock"/>; a writer's resting pack): it becomes Reserved, as a
    /// new reservation, without a free and a placement, and its pages stay Used and its oneway charge stays.
    /// </summary>
    /// <remarks>Safety: the caller holds the shared lock (asserted in Debug builds).</remarks>
    /// <param name="offset">The buffer's offset.</param>
    /// <param name="size">The size it was reserved with.</param>
    /// <exception cref="InvalidOperationException">No buffer starts at <paramref name="offset"/>, it is not Allocated, its
    /// size is not <paramref name="size"/>'s, or it is not a oneway buffer or one cleared on free.</exception>
    internal void RecycleUnderLock(long offset, long size)
    {
        ExtentState found;
        using (EnterUnlessHeld(callerHoldsLock: true))
        {
            int index = FindLiveUnsynchronized(offset);
            found = index == Nil ? ExtentState.Free : LiveUnsynchronized(index).State;
            if (found == ExtentState.Allocated)
            {
                ref Extent buffer = ref LiveUnsynchronized(index);
                // What a writer's pack was reserved as: a buffer of another kind is not one, whatever its owner thinks.
                if (buffer.Size != PadSize(size) || !buffer.Oneway || buffer.ClearOnFree)
                {
                    throw new InvalidOperationException(
                        $"Cannot recycle the buffer at offset {offset}: it holds {buffer.Size} bytes ({(buffer.Oneway ? "oneway" : "not oneway")}{(buffer.ClearOnFree ? ", cleared on free" : "")}), not a oneway buffer of {PadSize(size)}.");
                }
                // A new reservation's state: the next Commit gives it the ring position of its new record.
                buffer.State = ExtentState.Reserved;
                buffer.Sequence = 0;
                return;
            }
        }
        ThrowNotInState(offset, found, "recycle", ExtentState.Allocated);
    }

    /// <summary>At most this many ignored frees are logged per <see cref="IgnoredFreeLogInterval"/>; the rest are counted.</summary>
    internal const int IgnoredFreeLogBurst = 10;

    /// <summary>The window of <see cref="IgnoredFreeLogBurst"/> (binder's default printk rate limit: 10 lines per 5 s).</summary>
    internal TimeSpan IgnoredFreeLogInterval
    {
        get => _ignoredFreeLog.Interval;
        set => _ignoredFreeLog.Interval = value;
    }

    /// <summary>Whether this ignored free gets a log line, and how many went unlogged before it.</summary>
    private bool ShouldLogIgnoredFreeUnsynchronized(out long notLoggedBefore)
    {
        notLoggedBefore = 0;
        return _logger.IsEnabled(LogLevel.Warning) && _ignoredFreeLog.TryTake(out notLoggedBefore);
    }

    private FreeResult FreeCore(long offset, ulong deliveredBefore, bool callerHoldsLock)
    {
        ExtentState found;
        bool undelivered = false;
        long clearSize = 0;
        bool log = false;
        long notLoggedBefore = 0;
        using (EnterUnlessHeld(callerHoldsLock))
        {
            int index = FindLiveUnsynchronized(offset);
            found = index == Nil ? ExtentState.Free : LiveUnsynchronized(index).State;
            if (found == ExtentState.Allocated && LiveUnsynchronized(index).Sequence >= deliveredBefore)
            {
                undelivered = true;
                _undeliveredFrees++;
                _ignoredFrees++;
            }
            else if (found == ExtentState.Allocated)
            {
                clearSize = BeginReleaseUnsynchronized(index);
            }
            else
            {
                _ignoredFrees++;
            }
            if (found != ExtentState.Allocated || undelivered)
            {
                log = ShouldLogIgnoredFreeUnsynchronized(out notLoggedBefore);
            }
        }

        if (found != ExtentState.Allocated || undelivered)
        {
            if (log)
            {
                string reason = found switch
                {
                    ExtentState.Allocated => "its record is still on the transaction ring",
                    ExtentState.Reserved => "the buffer was never delivered",
                    ExtentState.Freeing => "the buffer is already being freed",
                    _ => "no buffer starts there (unknown or already freed)",
                };
                PageRangeLog.IgnoredFree(_logger, offset, notLoggedBefore == 0 ? reason
                    : string.Create(CultureInfo.InvariantCulture, $"{reason}; {notLoggedBefore} more ignored frees were not logged before this one"));
            }
            return undelivered ? FreeResult.Undelivered : FreeResult.Ignored;
        }
        if (clearSize > 0)
        {
            ClearAndRelease(offset, clearSize, callerHoldsLock);
        }
        return FreeResult.Freed;
    }

    /// <summary>
    /// Zeroes every live buffer reserved with clear-on-free, for a connection that ends while they are live: their
    /// bytes must not outlive it in the peer's region any more than a freed buffer's would.
    /// </summary>
    /// <returns>How many bytes were zeroed.</returns>
    /// <remarks>
    /// Safety: the caller makes sure no reservation, commit or free runs meanwhile (the channel is closing and holds
    /// its lock); every live buffer's pages are Used, so zeroing them goes through the checked page range.
    /// </remarks>
    internal long ClearLiveBuffers()
    {
        long cleared = 0;
        using (_lock.EnterScope())
        {
            for (int index = FirstLiveUnsynchronized(); index != Nil; index = NextLiveUnsynchronized(index))
            {
                ref Extent buffer = ref LiveUnsynchronized(index);
                if (buffer.ClearOnFree && buffer.State != ExtentState.Freeing)
                {
                    _pages.FillZero(buffer.Offset, buffer.Size);
                    cleared += buffer.Size;
                }
            }
        }
        return cleared;
    }

    /// <summary>
    /// Takes a live buffer back for freeing. Without clear-on-free its range is released at once and 0 is returned;
    /// with it, the buffer is marked Freeing and its size returned: the caller zeroes it outside the lock (it still
    /// covers its pages, so they stay Used) and then calls <see cref="ClearAndRelease"/>.
    /// </summary>
    private long BeginReleaseUnsynchronized(int index)
    {
        ref Extent buffer = ref LiveUnsynchronized(index);
        if (buffer.ClearOnFree)
        {
            buffer.State = ExtentState.Freeing;
            return buffer.Size;
        }
        ReleaseUnsynchronized(index);
        return 0;
    }

    /// <summary>Zeroes a Freeing buffer, then returns its range (binder's free order: clear, then return the extent).</summary>
    private void ClearAndRelease(long offset, long size, bool callerHoldsLock)
    {
        try
        {
            _pages.FillZero(offset, size);
        }
        finally
        {
            using (EnterUnlessHeld(callerHoldsLock))
            {
                int index = FindLiveUnsynchronized(offset);
                Debug.Assert(index != Nil && LiveUnsynchronized(index).State == ExtentState.Freeing, "Only we release a Freeing buffer.");
                ReleaseUnsynchronized(index);
            }
        }
    }

    /// <summary>
    /// Removes the live buffer at <paramref name="index"/>, merges its range with free neighbours, refunds the oneway
    /// quota and stops using the pages no other live buffer overlaps (B.6).
    /// </summary>
    private void ReleaseUnsynchronized(int index)
    {
        long offset;
        long end;
        bool oneway;
        long previousLiveEnd;
        long nextLiveStart;
        if (_mode == AllocatorMode.Array)
        {
            ReleaseFromArrayUnsynchronized(index, out offset, out end, out oneway, out previousLiveEnd, out nextLiveStart);
        }
        else
        {
            ReleaseFromTreeUnsynchronized(index, out offset, out end, out oneway, out previousLiveEnd, out nextLiveStart);
        }
        _bufferCount--;
        if (oneway)
        {
            // Exactly what was charged: the padded size.
            _freeOnewaySpace += end - offset;
        }

        // Under the allocator lock, as binder: a reservation that would cover these pages can only be placed after
        // we release the lock, so its UseRange never races with this StopUsingRange on the same page.
        (int firstPage, int endPage) = PagesToRelease(offset, end, previousLiveEnd, nextLiveStart);
        _pages.StopUsingRange(firstPage, endPage);

        if (_mode == AllocatorMode.Tree && _bufferCount == 0)
        {
            ResetToEmptyUnsynchronized();
        }
    }

    /// <summary>
    /// The pages a freed buffer <c>[offset, end)</c> leaves unused: its interior pages, plus each partial boundary
    /// page that no other live buffer overlaps (the closest live neighbours end at <paramref name="previousLiveEnd"/>
    /// and start at <paramref name="nextLiveStart"/>). This is binder's rule in both modes: in tree mode "the free
    /// neighbour covers the rest of the page" says the same thing, because free ranges are merged.
    /// </summary>
    private (int First, int End) PagesToRelease(long offset, long end, long previousLiveEnd, long nextLiveStart)
    {
        long first = offset / _pageSize;
        if (offset % _pageSize != 0 && previousLiveEnd > first * _pageSize)
        {
            first++;
        }
        long last = end / _pageSize;
        if (end % _pageSize != 0 && nextLiveStart >= (last + 1) * _pageSize)
        {
            last++;
        }
        // An inverted range (a buffer inside one shared page) is a no-op for StopUsingRange.
        return ((int)first, (int)last);
    }

    [DoesNotReturn]
    private static void ThrowNotInState(long offset, ExtentState found, string operation, ExtentState expected) =>
        throw new InvalidOperationException(found == ExtentState.Free
            ? $"Cannot {operation} offset {offset}: no buffer starts there."
            : $"Cannot {operation} the buffer at offset {offset}: it is {found}, not {expected}.");
}
