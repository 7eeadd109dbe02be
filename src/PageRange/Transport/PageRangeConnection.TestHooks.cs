using PageRange.Threading;

namespace PageRange.Transport;

/// <summary>Read-only views and seams for tests and the TestHost; nothing here is used by the library itself.</summary>
public sealed partial class PageRangeConnection
{
    /// <summary>The channel this side receives in (our region).</summary>
    internal InboundChannel Inbound => _inbound;

    /// <summary>Sends that found the peer's region full and waited for room, since the connection opened.</summary>
    internal long RegionFullSendsForTest => Interlocked.Read(ref _regionFullSendsEver);

    /// <summary>The channel this side writes into (the peer's region).</summary>
    internal OutboundChannel Outbound => _outbound;

    /// <summary>
    /// Incoming slots made so far (each is made the first time it is taken; the lane's, made with the connection,
    /// counts too), and how many there could be.
    /// </summary>
    internal (int Made, int Capacity) IncomingSlotsForTest
    {
        get
        {
            using (_slotLock.EnterScope())
            {
                return (_incomingSlotsMade + 1, _incomingSlots.Length);
            }
        }
    }

    /// <summary>Transactions the peer published that we read and have not freed yet (ready, held or backlogged).</summary>
    internal int LiveIncomingTransactions
    {
        get
        {
            using (_slotLock.EnterScope())
            {
                return _liveTransactions;
            }
        }
    }

    /// <summary>
    /// Transactions receivers dequeued under a slot lock of their own (<see cref="TryReceive"/>) rather than taken by
    /// their own pump under the lock that routed them.
    /// </summary>
    internal long LockedDequeues
    {
        get
        {
            using (_slotLock.EnterScope())
            {
                return _lockedDequeues;
            }
        }
    }

    /// <summary>Calls that rented their pending-call slot under the slot lock rather than taking the spare one.</summary>
    internal long LockedCallRents
    {
        get
        {
            using (_slotLock.EnterScope())
            {
                return _lockedRents;
            }
        }
    }

    /// <summary>
    /// The first half of a synchronous <see cref="Call(uint, ReadOnlySpan{byte}, TimeSpan?, CancellationToken)"/>: rents
    /// the pending call and sends the request. <see cref="FinishCall(PendingCall, TimeSpan?, CancellationToken)"/> is the second half. Lets the benchmarks' call
    /// probe time each half, with the peer's side run in between on the same thread.
    /// </summary>
    internal PendingCall SendCallForProbe(uint code, ReadOnlySpan<byte> payload)
    {
        RecordContext context = ContextFor(default);
        // Read once for the rent and the send, as CallCore does (the probe's FinishCall reads it again).
        ThreadToken thread = ThreadToken.Current;
        PendingCall call = RentCall(isAsync: false, ref context, thread, DirectLinesFor(payload.Length));
        try
        {
            SendCore(thread, call.Id, code, DirectFlagsFor(call, TransactionFlags.TwoWay), payload, CancellationToken.None, context);
        }
        catch
        {
            ReturnUnsentCall(call, thread);
            throw;
        }
        return call;
    }

    /// <summary>Runs after each record the reader routes: lets a test play a peer that publishes as fast as we consume.</summary>
    internal Action? RecordRoutedForTest { get; set; }

    /// <summary>Called by a lane's attempt after its lock-free checks passed, before it takes the reader role.</summary>
    internal Action? LaneChecksPassedForTest { get; set; }

    /// <summary>
    /// Called by the lane after it stored a message's record in the lane slot and before it makes the slot's generation
    /// live: a test reads a stale handle of the message before there, which must fail, not return this one's fields.
    /// </summary>
    internal Action? LaneRecordStoredForTest { get; set; }

    /// <summary>Sends a cancel frame for <paramref name="callId"/> over the control socket, as a caller giving up would.</summary>
    internal ValueTask SendCancelForTest(ulong callId) => _control.SendCancelAsync(callId);

    /// <summary>Asynchronous senders waiting for room in the peer's region right now.</summary>
    internal int RoomWaiters => Volatile.Read(ref _roomWaiters);

    /// <summary>Takes the reader role so that no thread reads the inbound ring until <see cref="ReleaseReaderRoleForTest"/>.</summary>
    /// <returns>Whether the role was free.</returns>
    internal bool TryHoldReaderRoleForTest() => TryTakeReaderRole();

    /// <summary>Gives back the role <see cref="TryHoldReaderRoleForTest"/> took.</summary>
    internal void ReleaseReaderRoleForTest() => ReleaseReaderRole();

    /// <summary>Threads waiting while another holds the reader role (spinning or parked), and those of them parked.</summary>
    internal (int Waiting, int Parked) FollowersForTest => (Volatile.Read(ref _followers), Volatile.Read(ref _parkedFollowers));

    /// <summary>How many times a follower went to park, for tests.</summary>
    internal long FollowerParksForTest => Interlocked.Read(ref _followerParks);

    /// <summary>Notices to the followers so far (each a locked increment of the generation), for tests.</summary>
    internal int FollowerNoticesForTest => Volatile.Read(ref _generation);

    /// <summary>Whether releases of the reader role are fenced now (a thread parked behind it once), for tests.</summary>
    internal bool RoleReleasesFencedForTest => Volatile.Read(ref _roleReleases) == RoleReleasesFenced;

    /// <summary>
    /// Makes releases of the reader role plain again, as on a new connection, so that a test races the switch many times
    /// on one connection. Only while no thread waits for the role (the switch's guarantee is for waiters that come after).
    /// </summary>
    internal void MakeRoleReleasesPlainForTest()
    {
        if (!InboundChannel.RoleReleaseNeedsFence)
        {
            Volatile.Write(ref _roleReleases, RoleReleasesPlain);
        }
    }

    /// <summary>Runs <paramref name="whileHeld"/> holding the slot lock: lets a test make a caller block on it.</summary>
    internal void HoldSlotLockForTest(Action whileHeld)
    {
        using (_slotLock.EnterScope())
        {
            whileHeld();
        }
    }

    /// <summary>The slot lock (the inbound free lock), for tests of its bias.</summary>
    internal ThinLock SlotLockForTest => _slotLock;

    /// <summary>The live incoming calls the cancel index holds now.</summary>
    internal int LiveCallsIndexedForTest
    {
        get
        {
            using (_slotLock.EnterScope())
            {
                return _liveCallsById.Count;
            }
        }
    }

    /// <summary>Housekeeping passes the background thread made so far.</summary>
    internal int HousekeepingPassesForTest => Volatile.Read(ref _housekeepingPasses);

    /// <summary>
    /// While set, the background reader's passes never read the inbound ring (their housekeeping still runs): records a
    /// test lays out stay in the ring for the receiver it runs, whatever the park timeout and however slow the machine.
    /// </summary>
    /// <remarks>
    /// A pass already past its look at this when it is set may still read the ring once; a test that needs the role
    /// free afterwards waits for a housekeeping pass (<see cref="HousekeepingPassesForTest"/>), made after that read.
    /// </remarks>
    internal bool PumpSkipsRingForTest
    {
        get => Volatile.Read(ref _pumpSkipsRingForTest);
        set => Volatile.Write(ref _pumpSkipsRingForTest, value);
    }
}
