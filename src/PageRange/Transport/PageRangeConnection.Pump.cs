namespace PageRange.Transport;

/// <summary>The background reader and housekeeping thread.</summary>
public sealed partial class PageRangeConnection
{
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
                // A housekeeping pass does not read a ring that a receiving thread reads itself (the thread the receive
                // lock is biased to entered it since the last pass): taking the lock would revoke that thread's bias.
                bool readRing = drainDeath || Volatile.Read(ref _asyncInterest) > 0
                    || (housekeeping && !_inbound.ReceiveLock.BiasOwnerActiveSince(ref _receiveLockEntriesSeen));
                if (readRing && !_violated && TryTakeReaderRole())
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

    // What the biased locks' owners had done at the last housekeeping pass (ThinLock.BiasOwnerActiveSince): while a
    // stream's own threads use the connection, they do its housekeeping themselves, and this thread leaves their locks
    // alone (taking one would revoke its bias, a process-wide barrier). A pass after they stop does it.
    private int _receiveLockEntriesSeen;
    private int _slotLockEntriesSeen;
    private int _sendLockEntriesSeen;

    // Housekeeping passes made, for tests.
    private int _housekeepingPasses;

    private void Housekeeping()
    {
        _lastHousekeeping = Environment.TickCount64;
        Volatile.Write(ref _housekeepingPasses, _housekeepingPasses + 1);
        // The backstop for frees held back for a batch whose receiver then stopped receiving (a ready transaction
        // nobody takes): the writer gets them within a park timeout, as it gets a lost wake's.
        if (!_slotLock.BiasOwnerActiveSince(ref _slotLockEntriesSeen))
        {
            PublishHeldFrees();
        }
        if (!_peerDead && !_outbound.SendLock.BiasOwnerActiveSince(ref _sendLockEntriesSeen))
        {
            try
            {
                // The idle writer's frees reach the allocator, and an empty slab the allocator, within a park timeout.
                _outbound.DrainFreesAndReleaseIdleSlab();
            }
            catch (ProtocolViolationException violation)
            {
                CloseForViolation(violation);
            }
        }
        // Backstop for the control socket's end-of-file: a peer whose process is gone is dead. Only a process watched
        // through a pidfd counts (PeerProcess): a pid of 0 (another pid namespace) or one already gone at connect
        // time never raises the alarm; those peers die by the socket's end-of-file alone.
        if (!_peerDead && _control.PeerProcess.HasExited)
        {
            OnPeerDied(null);
        }
    }
}
