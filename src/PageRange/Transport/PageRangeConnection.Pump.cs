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
            bool roleHeldByAnother = false;
            try
            {
                bool housekeeping = Environment.TickCount64 - _lastHousekeeping >= (long)_options.ParkTimeout.TotalMilliseconds;
                bool drainDeath = _peerDead && !_drainedAfterDeath;
                // A housekeeping pass reads only a ring nobody read since the last pass: a receiving thread that reads it
                // needs no backstop, and taking its lock would revoke that thread's bias (ThinLock), a process-wide barrier.
                bool readRing = drainDeath || Volatile.Read(ref _asyncInterest) > 0
                    || (housekeeping && _inbound.Received == _receivedAtLastPass);
                // The violation flag read once: read again for the branch below, a violation in between would leave the
                // role taken and never released (found by the final reread).
                bool tryRing = readRing && !_violated && !Volatile.Read(ref _pumpSkipsRingForTest);
                bool tookRole = tryRing && TryTakeReaderRole();
                roleHeldByAnother = tryRing && !tookRole;
                if (tookRole)
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
                    _receivedAtLastPass = _inbound.Received;
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
            if (!busy && roleHeldByAnother && Volatile.Read(ref _asyncInterest) > 0)
            {
                // An async caller or receiver counted itself and woke us, and the role was held: its holder's plain release
                // (a store, then a look at the count, with no fence between) may have looked before the count and we
                // before its store. After the switch (see SwitchRoleReleasesToFenced; made by us or by a follower), a look
                // at the role either sees it free, or its holder's look sees the count and wakes us when it lets go. The
                // look comes after the mode's read even when the mode is fenced already: our only look before was the
                // failed compare-exchange, which came before it (found by review: a follower's switch in between, and we
                // slept out a park timeout on a free role).
                if (Volatile.Read(ref _roleReleases) != RoleReleasesFenced)
                {
                    SwitchRoleReleasesToFenced();
                }
                if (!_inbound.ReaderRoleHeld)
                {
                    continue;
                }
            }
            if (!busy)
            {
                _pumpWake.Wait(_options.ParkTimeout);
                _pumpWake.Reset();
            }
        }
    }

    private long _lastHousekeeping;

    // Where the rings stood at the last housekeeping pass. A pass does the backstops only for what did not move since:
    // while a stream flows, its own threads read the ring, publish the frees and drain the peer's, and this thread
    // leaves their locks alone (taking one would revoke the bias its stream's thread holds, a process-wide barrier,
    // each pass). The first pass after they stop does it.
    private ulong _receivedAtLastPass;
    private ulong _freedAtLastPass;
    private ulong _sentAtLastPass;

    // Housekeeping passes made, for tests.
    private int _housekeepingPasses;

    // Set by a test (PumpSkipsRingForTest) that lays out records for a receiver's own first look: no pass reads the ring.
    private bool _pumpSkipsRingForTest;

    private void Housekeeping()
    {
        _lastHousekeeping = Environment.TickCount64;
        Volatile.Write(ref _housekeepingPasses, _housekeepingPasses + 1);
        // The backstop for frees held back for a batch whose receiver then stopped receiving (a ready transaction
        // nobody takes): the writer gets them within a park timeout, as it gets a lost wake's.
        ulong freed = _inbound.Freed;
        if (freed == _freedAtLastPass)
        {
            PublishHeldFrees();
        }
        _freedAtLastPass = freed;
        // Records, packed messages, and what went into the peer's direct lines, which move neither (found by review: a
        // server whose replies all went directly looked idle, and each pass took its replying thread's send lock).
        ulong sent = _outbound.Sent + (ulong)_outbound.PackedSent + (ulong)_outbound.DirectRepliesSent + (ulong)_outbound.DirectCallsSent;
        bool writerIdle = sent == _sentAtLastPass;
        _sentAtLastPass = sent;
        if (!_peerDead && writerIdle)
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
