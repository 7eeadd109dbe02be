namespace PageRange.Transport;

/// <summary>Closing on a protocol violation, and letting go of what was routed to us but never received.</summary>
public sealed partial class PageRangeConnection
{
    private void CloseForViolation(ProtocolViolationException violation)
    {
        bool first = !_peerDead;
        if (first)
        {
            OnPeerDied(violation);
        }
        // After the death's cause is set, never before: a receiver that sees the violation reports it from that cause
        // (NewPeerDied), and one that looked in between would report a plain death.
        _violated = true;
        if (first)
        {
            // Closing the control socket is the peer's notice. Nothing more is delivered from a peer that broke the
            // protocol, so both regions go now (not when the owner disposes the connection, nor when the GC finalizes
            // them): transactions routed but never received are freed, and our region is unmapped once the ones the
            // application still holds are disposed.
            _ = Task.Run(async () =>
            {
                await _control.DisposeAsync().ConfigureAwait(false);
                // A peer that broke the protocol gets nothing more from our region, its pages included.
                PunchOwnRegionIfThePeerIsDone(peerMayStillRead: false);
                ReleaseUndelivered();
                _outbound.Dispose();
            }).ContinueWith(
                static task => _ = task.Exception, CancellationToken.None, TaskContinuationOptions.OnlyOnFaulted, TaskScheduler.Default);
        }
        // The ring is never read again (the pump skips a violated connection), so the drain after death that fails the
        // calls still pending and tells waiting receivers never comes: end them now. This matters when the peer died
        // first (its socket's end-of-file: death noticed without a violation, so nothing was failed, and a receiver
        // woken by it went back to wait for that drain) and the drain that followed found the violation; without it
        // that receiver (a server session's receive loop) waits forever.
        MarkDrainedAfterDeath();
    }

    /// <summary>
    /// The connection is closing (disposed, or the peer broke the protocol): frees every transaction routed to us that
    /// no receiver took (ready, backlogged oneways, nested calls not yet run), as if delivered and disposed, so our region
    /// can be unmapped at once. No reply is sent for the calls among them: the peer sees the end of the connection.
    /// </summary>
    private void ReleaseUndelivered()
    {
        List<(IncomingSlot Slot, int Generation)> undelivered = [];
        using (_slotLock.EnterScope())
        {
            _inboundClosing = true;
            // Set and taken only under this lock (Release, TryTakeHandoff): what is here now is nobody's yet.
            if (_handoff is { } handedOff)
            {
                _handoff = null;
                undelivered.Add((handedOff, handedOff.Generation));
            }
            while (_incomingReady.TryDequeue(out IncomingSlot? slot))
            {
                _readyCount--;
                undelivered.Add((slot, slot.Generation));
            }
            while (_onewayBacklog.TryDequeue(out IncomingSlot? slot))
            {
                undelivered.Add((slot, slot.Generation));
            }
            foreach (PendingCall top in _chainWaiters.Values)
            {
                for (PendingCall? waiter = top; waiter is not null; waiter = waiter.PreviousInChain)
                {
                    while (waiter.NestedInbox.TryDequeue(out IncomingSlot? slot))
                    {
                        undelivered.Add((slot, slot.Generation));
                    }
                    waiter.NestedCount = 0;
                }
            }
        }
        foreach ((IncomingSlot slot, int generation) in undelivered)
        {
            // Nobody answers a call of a closed connection; Release must not try.
            Volatile.Write(ref slot.Replied, 1);
            Release(slot, generation);
        }
        bool disposeInbound;
        using (_slotLock.EnterScope())
        {
            disposeInbound = _liveTransactions == 0;
        }
        if (disposeInbound)
        {
            _inbound.Dispose();
        }
    }
}
