// Locks, in the order they may nest:
//  1. _sendLock    serialises the single producer of the outbound channel (reserve, copy, publish, drain frees)
//  2. _slotLock    protects the free lists of incoming slots and pending calls, and the oneway backlog; it is the
//                  inbound channel's free lock (InboundChannel.FreeLock), so Release publishes a free without a second
//                  lock, and nothing takes the inbound receive lock while holding it
//  3. _gate        the condition variable followers park on (Monitor); nothing is taken while holding it
// The reader role (InboundChannel.TryTakeReaderRole) is not a lock anyone blocks on: it is taken with a compare-
// exchange, and only its holder consumes the inbound ring or parks on its doorbell; it also keeps the ring mapped.

using Microsoft.Extensions.Logging;
using PageRange.Diagnostics;
using PageRange.Memory;
using PageRange.Threading;

namespace PageRange.Transport;

/// <summary>
/// One end of a PageRange connection: calls, oneway messages and replies to the peer process, and the transactions
/// the peer sends us. Symmetric once set up: either side may call the other.
/// </summary>
/// <remarks>
/// <para>
/// Each side owns a receive region that the peer writes payloads into once; we read them in place and free them by
/// disposing the <see cref="Transaction"/>. Any thread may call, send or receive, concurrently. Whichever thread is
/// waiting for something from the peer reads the shared ring itself (a leader/follower scheme), so a synchronous
/// call's reply is usually read by the calling thread without any hand-off; a background thread takes over the
/// reading while async callers or receivers wait.
/// </para>
/// <para>
/// Oneway transactions are handed out one at a time, in order: the next is released when the previous one is
/// disposed (binder's rule). Two-way calls may be handled in parallel by as many threads as call
/// <see cref="Receive"/>.
/// </para>
/// </remarks>
public sealed partial class PageRangeConnection : IDisposable, IAsyncDisposable
{
    private readonly HandshakeResult _handshake;
    private readonly ControlChannel _control;
    private readonly InboundChannel _inbound;
    private readonly OutboundChannel _outbound;
    private readonly PageRangeOptions _options;
    private readonly long _parkTimeoutTicks;
    private readonly ILogger _logger;

    private readonly ThinLock _slotLock;
    private readonly object _gate = new();

    // Made on first use (see the constructor): null until then. How many were made, under the slot lock.
    private readonly IncomingSlot?[] _incomingSlots;
    private int _incomingSlotsMade;
    private readonly int[] _freeIncoming;
    private readonly IncomingSlot _laneSlot;
    private int _freeIncomingCount;

    private readonly PendingCall[] _calls;
    private readonly int[] _freeCalls;
    private int _freeCallCount;

    // One free pending-call slot kept out of _freeCalls, taken and given back under the slot lock by a call without a
    // chain to register (RentCall, ReturnCall): no chain bookkeeping, and the lock is biased to a lone caller's thread.
    // Counts as free with the stack.
    private PendingCall? _spareCall;
    private readonly ulong _chainSide;
    private readonly bool _copyPayloads;
    // Whether synchronous calls ask for direct replies (PageRangeOptions.DirectReplies), and are written into the peer's
    // direct call lines (PageRangeOptions.DirectCalls).
    private readonly bool _directReplies;
    private readonly bool _directCalls;

    // The id of the call that holds the peer's direct call lines (DirectCallLayout); 0 while they are free. Under the slot lock.
    private ulong _directCallLinesUser;

    private readonly Queue<IncomingSlot> _onewayBacklog;
    private bool _onewayInProgress;

    private readonly Thread _pumpThread;
    private readonly ManualResetEventSlim _pumpWake = new(false);
    private readonly CancellationTokenSource _closed = new();
    private readonly CancellationTokenRegistration _peerDiedRegistration;

    private int _generation;
    private int _parkedFollowers;
    // Threads in WaitAsFollower, spinning or parked: with none, a free that releases the next oneway tells nobody (a
    // locked increment of _generation per oneway saved; see Release and WaitAsFollower for why no wake is lost).
    private int _followers;
    // Followers that went to park (WaitAsCountedFollower), for tests.
    private long _followerParks;
    // How the reader role is released (ReleaseReaderRole): RoleReleasesPlain (a plain store, no notice unless a follower is
    // counted) until the first thread waits for the role's release (a follower about to park, the background reader for
    // an async caller), RoleReleasesFenced (the notice, a locked increment, every time) from then on, with
    // RoleReleasesSwitching between (fenced too). Fenced from the start where the process-wide barrier does not reach
    // every core. See SwitchRoleReleasesToFenced.
    private int _roleReleases = InboundChannel.RoleReleaseNeedsFence ? RoleReleasesFenced : RoleReleasesPlain;
    private int _asyncInterest;
    private volatile Exception? _deathCause;

    // Set by CloseAsync before it says goodbye: the peer answers by shutting its control socket, and that end may be
    // noticed (as a PeerDiedException) before DisposeAsync records ours; the close is still ours, and graceful.
    private volatile bool _closingGracefully;
    private volatile bool _peerDead;
    private int _deathNoticed;
    private int _disposed;

    private PageRangeConnection(string name, HandshakeResult handshake, InboundChannel inbound, PageRangeOptions options, bool connecting)
    {
        Name = name;
        _chainSide = connecting ? 0 : ChainSideBit;
        _handshake = handshake;
        _control = handshake.Control;
        _inbound = inbound;
        // The peer maps it now: it is emptied at our end only if the peer reads nothing more (see PunchOwnRegionIfThePeerIsDone).
        inbound.Region.PunchOnLastRelease = false;
        _slotLock = inbound.FreeLock;
        _options = options;
        // In Stopwatch ticks, once: the reader's wait slices are computed from it without a conversion per wait.
        _parkTimeoutTicks = Math.Max(1, (long)(options.ParkTimeout.TotalSeconds * System.Diagnostics.Stopwatch.Frequency));
        _logger = PageRangeLog.CreateLogger(options.LoggerFactory, PageRangeLogEvents.TransportCategory);
        // The first factory any part of the process gives the shared shrinker is the one it logs to.
        Shrinker.Shared.UseLoggerFactory(options.LoggerFactory);
        // The peer's hello announced its rings; the header it wrote must match them (OutboundChannel validates it).
        var outboundOptions = new ChannelOptions
        {
            RegionSize = handshake.PeerRegion.Size,
            TxRingCapacity = handshake.PeerHello.TransactionRingCapacity,
            FreeRingCapacity = handshake.PeerHello.FreeRingCapacity,
            WaitStrategy = options.WaitStrategy,
            SpinDuration = options.SpinDuration,
            ParkTimeout = options.ParkTimeout,
            ClearBuffersOnFree = options.ClearBuffersOnFree,
            InlineSmallPayloads = options.InlineSmallPayloads,
            RestFullPacks = options.RestFullPacks,
            AllocationLogger = options.LoggerFactory is null ? null : PageRangeLog.CreateLogger(options.LoggerFactory, PageRangeLogEvents.AllocationCategory),
        };
        _outbound = new OutboundChannel(handshake.PeerRegion, outboundOptions);
        // The peer's writer parks with the barrier when it waits for room in our region (its header says so): our frees
        // then go without a fence. Before any transaction arrives, so before the first free.
        if (_outbound.PeerParksWithBarrier)
        {
            _inbound.PublishFreesWithoutFence();
        }

        // One incoming slot per buffer the peer may have live in our region: the writer never has more than the
        // rings allow, so a slot is always there when a record arrives. Each is made the first time it is taken (the
        // free list hands out the lowest indices first and takes them back last in, first out): a connection pays for
        // the slots its traffic uses, not for the 1,000 and more its peer's packs could fill (PackLayout.MaxLivePacks).
        // One more, the lane's (see ReceiveBatch), last and never in the free list: in the array so that what looks at
        // every live slot (a close cancelling handlers' tokens, the dump) sees a lane's transaction too.
        int slots = inbound.MaxLiveTransactions;
        _incomingSlots = new IncomingSlot?[slots + 1];
        _freeIncoming = new int[slots];
        for (int i = 0; i < slots; i++)
        {
            _freeIncoming[i] = slots - 1 - i;
        }
        _laneSlot = _incomingSlots[slots] = new IncomingSlot(slots, isLaneSlot: true);
        _freeIncomingCount = slots;
        _directReplies = options.DirectReplies;
        _directCalls = options.DirectCalls;
        _copyPayloads = options.CopyIncomingPayloads switch
        {
            IncomingPayloadCopy.Always => true,
            IncomingPayloadCopy.Never => false,
            // A peer of another uid does not share our trust; one of our own uid could write our memory anyway.
            _ => handshake.PeerCredentials.Uid != Interop.GetEffectiveUserId(),
        };
        // Two-way calls only, records of their own (never packed): an honest peer has at most its rings' live buffers
        // of them, one that breaks its limits a call in every slot, so as many chains as slots (rounded up).
        _liveCallsById = new LiveCallIndex(_incomingSlots, _incomingSlots.Length);
        _onewayBacklog = new Queue<IncomingSlot>(slots);
        _incomingReady = new Queue<IncomingSlot>(slots);

        int calls = Math.Min(options.MaxConcurrentCalls, TransactionIds.PendingCallIndexMask);
        _calls = new PendingCall[calls];
        _freeCalls = new int[calls];
        for (int i = 0; i < calls; i++)
        {
            _calls[i] = new PendingCall(i);
            _freeCalls[i] = calls - 1 - i;
        }
        _freeCallCount = calls;

        _pumpThread = new Thread(PumpLoop)
        {
            IsBackground = true,
            Name = $"PageRange reader ({name})",
        };
        _pumpThread.Start();
        _control.StartWatching(OnControlMessage);
        _peerDiedRegistration = _control.PeerDied.UnsafeRegister(static state =>
        {
            var connection = (PageRangeConnection)state!;
            connection.OnPeerDied(connection._control.CloseReason);
        }, this);
        RegisterMetrics();
    }

    /// <summary>The listener's name.</summary>
    public string Name { get; }

    /// <summary>The peer's process id (<c>SO_PEERCRED</c>; binder's <c>getCallingPid</c>).</summary>
    public int PeerPid => _handshake.PeerCredentials.Pid;

    /// <summary>The peer's user id (<c>SO_PEERCRED</c>; binder's <c>getCallingUid</c>).</summary>
    public uint PeerUid => _handshake.PeerCredentials.Uid;

    /// <summary>The peer's group id (<c>SO_PEERCRED</c>).</summary>
    public uint PeerGid => _handshake.PeerCredentials.Gid;

    /// <summary>
    /// Cancelled once the connection is over: the peer closed its end, exited or was killed, sent something invalid,
    /// or this connection was disposed.
    /// </summary>
    public CancellationToken PeerDied => _closed.Token;

    /// <summary>Whether the peer is still there; once false, calls fail with <see cref="PeerDiedException"/>.</summary>
    public bool IsPeerAlive => !_peerDead;

    /// <summary>The largest two-way payload or reply the peer's region can ever take, in bytes: its data area.</summary>
    public long MaxMessageSize => _outbound.MaxMessageSize;

    /// <summary>The largest oneway payload the peer's region can ever take, in bytes: its oneway quota (half the data area).</summary>
    public long MaxOnewayMessageSize => _outbound.MaxOnewayMessageSize;

    /// <summary>Connects to the listener <paramref name="name"/>.</summary>
    /// <param name="name">The listener's name.</param>
    /// <param name="options">This side's options; null for the defaults.</param>
    /// <param name="cancellationToken">Cancels connecting.</param>
    /// <returns>The connection.</returns>
    /// <exception cref="ArgumentException">The name is empty, too long or contains a NUL, or the options' region is too
    /// small for its rings (<see cref="PageRangeOptions.RegionSize"/>).</exception>
    /// <exception cref="PageRangeException">Nobody listens on <paramref name="name"/>.</exception>
    /// <exception cref="ConnectionRefusedException">Either side refused the other (uid, version, region); the message says why.</exception>
    /// <exception cref="TimeoutException">Connecting took longer than <see cref="PageRangeOptions.ConnectTimeout"/>.</exception>
    /// <exception cref="PlatformNotSupportedException">Not on Linux.</exception>
    public static async ValueTask<PageRangeConnection> ConnectAsync(
        string name, PageRangeOptions? options = null, CancellationToken cancellationToken = default)
    {
        ControlHandshake.ValidateName(name);
        options = (options ?? new PageRangeOptions()).Clone();
        options.Validate();
        InboundChannel inbound = CreateInbound(name, options);
        HandshakeResult handshake;
        try
        {
            handshake = await ControlHandshake.ConnectAsync(name, options, inbound.Region, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception error)
        {
            inbound.Dispose();
            LogHandshakeFailure(PageRangeLog.CreateLogger(options.LoggerFactory, PageRangeLogEvents.TransportCategory), name, error, peer: null);
            throw;
        }
        return await CreateAsync(name, handshake, inbound, options, connecting: true).ConfigureAwait(false);
    }

    /// <summary>Builds the connection over a completed handshake; on failure closes both (the peer sees the end).</summary>
    /// <remarks>The two sides of a connection pass different <paramref name="connecting"/> values: it keeps their call chains apart.</remarks>
    internal static async ValueTask<PageRangeConnection> CreateAsync(
        string name, HandshakeResult handshake, InboundChannel inbound, PageRangeOptions options, bool connecting = false)
    {
        try
        {
            return new PageRangeConnection(name, handshake, inbound, options, connecting);
        }
        catch
        {
            await handshake.DisposeAsync().ConfigureAwait(false);
            inbound.Dispose();
            throw;
        }
    }

    /// <summary>Creates the channel this side receives in, sized by <paramref name="options"/>.</summary>
    internal static InboundChannel CreateInbound(string name, PageRangeOptions options) =>
        InboundChannel.Create($"pagerange:{name}", new ChannelOptions
        {
            RegionSize = options.RegionSize,
            TxRingCapacity = options.TransactionRingCapacity,
            FreeRingCapacity = options.FreeRingCapacity,
            WaitStrategy = options.WaitStrategy,
            SpinDuration = options.SpinDuration,
            ParkTimeout = options.ParkTimeout,
        });

    /// <summary>
    /// A text dump in the spirit of binder's debugfs: both regions' buffers, page counts, high-water marks, free oneway
    /// space and ring positions.
    /// </summary>
    public string DumpState()
    {
        var text = new System.Text.StringBuilder();
        text.Append(System.Globalization.CultureInfo.InvariantCulture,
            $"connection '{Name}' to pid {PeerPid} (uid {PeerUid}, gid {PeerGid}), peer alive: {IsPeerAlive}\n");
        text.Append(System.Globalization.CultureInfo.InvariantCulture,
            $"incoming: {Volatile.Read(ref _liveTransactions)} live transactions, {Volatile.Read(ref _readyCount) + (Volatile.Read(ref _handoff) is null ? 0 : 1)} ready\n");
        text.Append("outbound (the peer's region, written by us):\n");
        text.Append(_outbound.DumpState());
        text.Append("inbound (our region, written by the peer):\n");
        text.Append(_inbound.DumpState());
        AppendInboundBuffers(text);
        return text.ToString();
    }

    private void OnControlMessage(ControlMessage message)
    {
        switch (message)
        {
            case CancelMessage cancel:
                OnCancelRequested(cancel.CallId);
                break;
            case FailedReplyMessage failed:
                OnFailedReply(failed.CallId);
                break;
            default:
                break;
        }
    }

    private void OnPeerDied(Exception? cause)
    {
        // Once only, whichever comes first: the control socket's end, a violation, the /proc backstop, Dispose.
        if (Interlocked.Exchange(ref _deathNoticed, 1) != 0)
        {
            return;
        }
        _deathCause = cause;
        _peerDead = true;
        PageRangeMetrics.RecordConnectionClosed(cause);
        LogDeath(cause);
        if (cause is ObjectDisposedException or ProtocolViolationException)
        {
            // Nothing more will be read from the ring (it is being unmapped, or it is corrupt): fail every pending call now.
            FailPendingCalls();
        }
        // Else the peer is gone but what it published before is still in the ring, replies included: the next reader
        // drains it (routing those replies to their callers) and only then fails the calls still pending
        // (MarkDrainedAfterDeath). Readers check for death before they drain, so nothing published is missed.
        CancelHandlers();
        SignalRoom();
        WakeAllReceiveWaiters();
        _inbound.WakeReader();
        _outbound.WakeWriter();
        NotifyFollowers();
        _pumpWake.Set();
        try
        {
            _closed.Cancel();
        }
        catch (ObjectDisposedException)
        {
            // Disposed concurrently.
        }
    }

    /// <summary>Fails every call still waiting for a reply with the death's exception.</summary>
    private void FailPendingCalls()
    {
        foreach (PendingCall call in _calls)
        {
            ulong id = Volatile.Read(ref call.Id);
            if (id != 0 && !call.IsCompleted)
            {
                call.TryComplete(id, default, NewPeerDied());
            }
        }
    }

    /// <summary>Cancels the <see cref="Transaction.CallCancelled"/> tokens handlers hold: their callers are gone too.</summary>
    private void CancelHandlers()
    {
        List<CancellationTokenSource>? sources = null;
        using (_slotLock.EnterScope())
        {
            foreach (IncomingSlot? slot in _incomingSlots)
            {
                if (slot is not null && (slot.Generation & 1) == 1 && slot.Cancellation is { } source)
                {
                    (sources ??= []).Add(source);
                }
            }
        }
        if (sources is not null)
        {
            foreach (CancellationTokenSource source in sources)
            {
                CancelQuietly(source);
            }
        }
    }

    /// <summary>Cancels a handler's token; its transaction may have been disposed (and the source with it) meanwhile.</summary>
    private static void CancelQuietly(CancellationTokenSource source)
    {
        try
        {
            source.Cancel();
        }
        catch (ObjectDisposedException)
        {
            // The handler disposed its transaction first: nobody listens any more.
        }
    }

    private Exception NewPeerDied() =>
        _deathCause switch
        {
            ProtocolViolationException violation => new ProtocolViolationException(
                $"The connection to pid {PeerPid} was closed: the peer broke the protocol ({violation.Message})", violation),
            ObjectDisposedException => new ObjectDisposedException(nameof(PageRangeConnection), "This connection was closed."),
            PeerDiedException { PeerReason: { } said } goodbye => new PeerDiedException(
                $"The peer process {PeerPid} closed its connection '{Name}': {said}.", goodbye, said),
            var cause => new PeerDiedException($"The peer process {PeerPid} is gone; its connection '{Name}' is closed.", cause),
        };

    private void ThrowIfDisposed()
    {
        if (Volatile.Read(ref _disposed) != 0)
        {
            ThrowHelper.ThrowObjectDisposed(this);
        }
    }

    /// <summary>
    /// Tells the peer why this side closes the connection (its <see cref="PeerDiedException.PeerReason"/>), then closes
    /// it as <see cref="DisposeAsync"/> does. Best effort: a peer already gone just sees the end.
    /// </summary>
    internal async ValueTask CloseAsync(string reason)
    {
        if (!_peerDead && Volatile.Read(ref _disposed) == 0)
        {
            _closingGracefully = true;
            try
            {
                using var bound = new CancellationTokenSource(_options.ParkTimeout * 10);
                await _control.SendGoodbyeAsync(reason, bound.Token).ConfigureAwait(false);
            }
            catch (Exception error) when (error is PageRangeException or OperationCanceledException or ObjectDisposedException)
            {
                // The peer is gone or its socket is full (it stopped reading): it sees the end without the reason.
            }
        }
        await DisposeAsync().ConfigureAwait(false);
    }

    /// <summary>
    /// Marks our own region to be punched out when its last reference goes (<see cref="SharedRegion.PunchOnLastRelease"/>)
    /// unless the peer may still read it: a peer that ended first or broke the protocol reads nothing more, and one that
    /// keeps its descriptor must not keep our pages with it.
    /// </summary>
    private void PunchOwnRegionIfThePeerIsDone(bool peerMayStillRead)
    {
        if (!peerMayStillRead)
        {
            _inbound.Region.PunchOnLastRelease = true;
        }
    }

    /// <summary>Closes the connection: the peer sees it as our end; pending calls fail; regions are unmapped.</summary>
    /// <remarks>Our region stays mapped until every transaction we still hold is disposed, so their payloads stay readable.</remarks>
    public void Dispose() => DisposeAsync().AsTask().GetAwaiter().GetResult();

    /// <inheritdoc cref="Dispose"/>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }
        UnregisterMetrics();
        OnPeerDied(new ObjectDisposedException(nameof(PageRangeConnection)));
        await _peerDiedRegistration.DisposeAsync().ConfigureAwait(false);
        await _handshake.DisposeAsync().ConfigureAwait(false);
        _pumpWake.Set();
        _pumpThread.Join();
        // The peer's death may have been noticed before Dispose (so the notice above did nothing) while the ring was
        // not drained yet: nobody drains it now, so the calls still pending fail here instead of waiting for ever.
        FailPendingCalls();
        NotifyFollowers();
        StopRoomWatcher();
        // Our own close is graceful: the peer may still read the transactions we published (a reply, a last oneway), so
        // their pages stay until it frees or closes. A peer that died or broke the protocol reads nothing more.
        bool peerMayStillRead = _deathCause is ObjectDisposedException || (_closingGracefully && _deathCause is PeerDiedException);
        _outbound.Dispose(keepLiveBuffers: peerMayStillRead);
        PunchOwnRegionIfThePeerIsDone(peerMayStillRead);
        // Transactions routed to us that nobody received are freed now, so the region goes at once instead of when the
        // GC finalizes it; the ones the application holds keep it mapped until they are disposed. InboundChannel.Dispose
        // waits for a receive in progress, so a reader still holding the role is safe.
        ReleaseUndelivered();
        // _closed is not disposed: PeerDied stays readable after Dispose, and a source without timers holds nothing.
    }
}
