// Locks, in the order they may nest:
//  1. _sendLock    serialises the single producer of the outbound channel (reserve, copy, publish, drain frees)
//  2. _slotLock    protects the free lists of incoming slots and pending calls, and the oneway backlog
//  3. _gate        the condition variable followers park on (Monitor); nothing is taken while holding it
// The reader role (_readerRole) is not a lock anyone blocks on: it is taken with a compare-exchange, and only
// its holder consumes the inbound ring or parks on its doorbell.

using PageRange.Memory;

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
    private readonly IControlLink _control;
    private readonly InboundChannel _inbound;
    private readonly OutboundChannel _outbound;
    private readonly PageRangeOptions _options;

    private readonly Lock _sendLock = new();
    private readonly Lock _slotLock = new();
    private readonly object _gate = new();

    private readonly IncomingSlot[] _incomingSlots;
    private readonly int[] _freeIncoming;
    private int _freeIncomingCount;

    private readonly PendingCall[] _calls;
    private readonly int[] _freeCalls;
    private int _freeCallCount;
    private ulong _callSequence;

    private readonly Queue<IncomingSlot> _onewayBacklog;
    private bool _onewayInProgress;

    private readonly Thread _pumpThread;
    private readonly ManualResetEventSlim _pumpWake = new(false);

    private int _readerRole;
    private int _generation;
    private int _parkedFollowers;
    private int _asyncInterest;
    private volatile Exception? _deathCause;
    private volatile bool _peerDead;
    private int _disposed;

    internal PageRangeConnection(IControlLink control, InboundChannel inbound, OutboundChannel outbound, PageRangeOptions options)
    {
        _control = control;
        _inbound = inbound;
        _outbound = outbound;
        _options = options;

        // One incoming slot per buffer the peer may have live in our region: the writer never has more than the
        // free ring holds, so a slot is always there when a record arrives.
        int slots = inbound.MaxLiveBuffers;
        _incomingSlots = new IncomingSlot[slots];
        _freeIncoming = new int[slots];
        for (int i = 0; i < slots; i++)
        {
            _incomingSlots[i] = new IncomingSlot(i);
            _freeIncoming[i] = slots - 1 - i;
        }
        _freeIncomingCount = slots;
        _onewayBacklog = new Queue<IncomingSlot>(slots);
        _incomingReady = new Queue<IncomingSlot>(slots);

        int calls = Math.Min(options.MaxConcurrentCalls, PendingCallIndexMask + 1);
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
            Name = $"PageRange reader (peer {control.PeerPid})",
        };
        _pumpThread.Start();
        control.Start(OnPeerDied, OnCancelRequested);
    }

    /// <summary>The peer's process id (<c>SO_PEERCRED</c>; binder's <c>getCallingPid</c>).</summary>
    public int PeerPid => _control.PeerPid;

    /// <summary>The peer's user id (<c>SO_PEERCRED</c>; binder's <c>getCallingUid</c>).</summary>
    public int PeerUid => _control.PeerUid;

    /// <summary>The peer's group id (<c>SO_PEERCRED</c>).</summary>
    public int PeerGid => _control.PeerGid;

    /// <summary>Whether the peer is still there; once false, calls fail with <see cref="PeerDiedException"/>.</summary>
    public bool IsPeerAlive => !_peerDead;

    /// <summary>The largest two-way payload the peer's region can ever take, in bytes.</summary>
    public long MaxMessageSize => _outbound.MaxMessageSize;

    /// <summary>The largest oneway payload the peer's region can ever take (its oneway quota), in bytes.</summary>
    public long MaxOnewayMessageSize => _outbound.MaxOnewayMessageSize;

    /// <summary>Statistics of the region we write into (the peer's) and of ours.</summary>
    public string DumpState()
    {
        var text = new System.Text.StringBuilder();
        text.AppendLine(System.Globalization.CultureInfo.InvariantCulture, $"connection to pid {PeerPid} (uid {PeerUid}), peer alive: {IsPeerAlive}");
        text.AppendLine("outbound (peer's region, written by us):");
        lock (_sendLock)
        {
            text.Append(_outbound.DumpState());
        }
        text.AppendLine("inbound (our region, written by the peer):");
        text.Append(_inbound.DumpState());
        return text.ToString();
    }

    private void OnPeerDied(Exception? cause)
    {
        _deathCause = cause;
        _peerDead = true;
        // Fail every pending call; transactions already published stay in the ring and are still delivered.
        foreach (PendingCall call in _calls)
        {
            ulong id = Volatile.Read(ref call.Id);
            if (id != 0 && !call.IsCompleted)
            {
                call.TryComplete(id, default, NewPeerDied());
            }
        }
        _inbound.WakeReader();
        _outbound.WakeWriter();
        NotifyFollowers();
        _pumpWake.Set();
    }

    private PeerDiedException NewPeerDied() =>
        new($"The peer process {PeerPid} is gone; its connection is closed.", _deathCause);

    private void ThrowIfDisposed()
    {
        if (Volatile.Read(ref _disposed) != 0)
        {
            ThrowHelper.ThrowObjectDisposed(this);
        }
    }

    /// <summary>Closes the connection: the peer sees it as our death; pending calls fail; regions are unmapped.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }
        _control.Dispose();
        OnPeerDied(new ObjectDisposedException(nameof(PageRangeConnection)));
        _pumpThread.Join(_options.ParkTimeout * 4 + TimeSpan.FromSeconds(1));

        // Wait for a reader still holding the role (it notices the death within one park slice) before unmapping.
        var deadline = Environment.TickCount64 + 5000;
        while (Interlocked.CompareExchange(ref _readerRole, 1, 0) != 0 && Environment.TickCount64 < deadline)
        {
            Thread.Yield();
        }
        lock (_sendLock)
        {
            _outbound.Dispose();
        }
        _inbound.Dispose();
        _pumpWake.Dispose();
    }

    /// <inheritdoc cref="Dispose"/>
    public ValueTask DisposeAsync()
    {
        Dispose();
        return ValueTask.CompletedTask;
    }
}
