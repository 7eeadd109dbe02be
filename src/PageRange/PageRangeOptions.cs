using System.Numerics;
using Microsoft.Extensions.Logging;
using PageRange.Memory;

namespace PageRange;

/// <summary>
/// Settings of a PageRange connection: the size of the region this side receives in, its rings, who may connect, and
/// the timeouts of connecting, calling and waiting for space.
/// </summary>
/// <remarks>
/// Every setter checks its value at once and throws <see cref="ArgumentOutOfRangeException"/> with the rule it broke, so
/// a bad setting fails where it is made, not later inside a connection. A listener or connection copies the options it
/// is given; changing them afterwards does not affect it. Not thread-safe while being changed.
/// </remarks>
public sealed class PageRangeOptions
{
    /// <summary>The default <see cref="RegionSize"/>: 4 MiB, binder's usable mapping size.</summary>
    public const long DefaultRegionSize = 4L << 20;

    /// <summary>The smallest <see cref="RegionSize"/>: 64 KiB.</summary>
    public const long MinRegionSize = 64L << 10;

    /// <summary>The largest <see cref="RegionSize"/>: 1 GiB.</summary>
    public const long MaxRegionSize = 1L << 30;

    /// <summary>The default <see cref="TransactionRingCapacity"/>: 1024 records.</summary>
    public const int DefaultTransactionRingCapacity = 1024;

    /// <summary>The default <see cref="FreeRingCapacity"/>: 4096 records.</summary>
    public const int DefaultFreeRingCapacity = 4096;

    /// <summary>The smallest ring capacity: 16 records.</summary>
    public const int MinRingCapacity = 16;

    /// <summary>The largest ring capacity: 65536 records.</summary>
    public const int MaxRingCapacity = 1 << 16;

    /// <summary>The most receiving threads: 256.</summary>
    public const int MaxReceiveThreads = 256;

    private static readonly TimeSpan s_maxSpinDuration = TimeSpan.FromSeconds(1);

    private long _regionSize = DefaultRegionSize;
    private int _transactionRingCapacity = DefaultTransactionRingCapacity;
    private int _freeRingCapacity = DefaultFreeRingCapacity;
    private TimeSpan _spinDuration = TimeSpan.FromMicroseconds(20);
    private int _receiveThreads = 4;
    private TimeSpan _connectTimeout = TimeSpan.FromSeconds(10);
    private TimeSpan _callTimeout = Timeout.InfiniteTimeSpan;
    private TimeSpan _regionFullTimeout = TimeSpan.FromSeconds(5);
    private TimeSpan _parkTimeout = TimeSpan.FromMilliseconds(100);
    private int _maxConcurrentCalls = 1024;
    private WaitStrategy _waitStrategy = WaitStrategy.SpinThenPark;

    /// <summary>Creates options with every default.</summary>
    public PageRangeOptions()
    {
    }

    // Memory hardening options (issue 11): kept together in this block.

    /// <summary>
    /// Whether every buffer this side sends is zeroed in the peer's region when the peer frees it, and when the
    /// connection ends while it is still live (binder's <c>TF_CLEAR_BUF</c>, as a connection default).
    /// </summary>
    /// <remarks>
    /// Defaults to <see langword="false"/>. Turn it on when payloads carry secrets that must not linger in the peer's
    /// memory after use; it costs one pass over each buffer's bytes when it is freed.
    /// </remarks>
    public bool ClearBuffersOnFree { get; set; }

    private PageRangeOptions(PageRangeOptions values, HashSet<uint> allowedUids)
    {
        _regionSize = values._regionSize;
        _transactionRingCapacity = values._transactionRingCapacity;
        _freeRingCapacity = values._freeRingCapacity;
        _spinDuration = values._spinDuration;
        _receiveThreads = values._receiveThreads;
        _connectTimeout = values._connectTimeout;
        _callTimeout = values._callTimeout;
        _regionFullTimeout = values._regionFullTimeout;
        _parkTimeout = values._parkTimeout;
        _maxConcurrentCalls = values._maxConcurrentCalls;
        ClearBuffersOnFree = values.ClearBuffersOnFree;
        InlineSmallPayloads = values.InlineSmallPayloads;
        DirectReplies = values.DirectReplies;
        DirectCalls = values.DirectCalls;
        RestFullPacks = values.RestFullPacks;
        LoggerFactory = values.LoggerFactory;
        WaitStrategy = values.WaitStrategy;
        AllowAnyUid = values.AllowAnyUid;
        AllowedUids = allowedUids;
        CopyConnectionProtocolOptions(values);
        CopyHardeningFrom(values);
    }

    /// <summary>
    /// The size in bytes of the region this side receives transactions in (its memory budget for the peer).
    /// </summary>
    /// <remarks>
    /// Defaults to 4 MiB. A multiple of the page size, from 64 KiB to 1 GiB, and at least a page larger than the header
    /// pages of its rings (132 KiB with the default rings, so at least 136 KiB with them; 64 KiB fits rings of 512
    /// transactions and 1024 frees): <see cref="Transport.PageRangeListener.Listen"/> and <see cref="Transport.PageRangeConnection.ConnectAsync"/>
    /// check the combination. Pages are backed only while buffers cover
    /// them, so a generous region costs nothing at rest. The largest two-way message is the region's data area; the
    /// largest oneway message is half of it.
    /// </remarks>
    /// <exception cref="ArgumentOutOfRangeException">The value is out of bounds or not a page multiple.</exception>
    public long RegionSize
    {
        get => _regionSize;
        set
        {
            ArgumentOutOfRangeException.ThrowIfLessThan(value, MinRegionSize);
            ArgumentOutOfRangeException.ThrowIfGreaterThan(value, MaxRegionSize);
            if (value % SharedRegion.PageSize != 0)
            {
                throw new ArgumentOutOfRangeException(
                    nameof(value), value, $"RegionSize must be a multiple of the page size ({SharedRegion.PageSize}).");
            }
            _regionSize = value;
        }
    }

    /// <summary>How many transaction records the ring of this side's region holds: transactions published and not yet received.</summary>
    /// <remarks>
    /// Defaults to 1024. A power of two from 16 to 65536. A ring of 64 records or more keeps an eighth of its slots for
    /// the payloads of small calls and replies, which travel in the ring after their record: the peer may have at most
    /// seven eighths of it (896 of the default 1024), and at most <see cref="FreeRingCapacity"/>, transactions live in
    /// this region at once.
    /// </remarks>
    /// <exception cref="ArgumentOutOfRangeException">The value is out of bounds or not a power of two.</exception>
    public int TransactionRingCapacity
    {
        get => _transactionRingCapacity;
        set => _transactionRingCapacity = CheckRingCapacity(value);
    }

    /// <summary>
    /// How many free records the free ring of this side's region holds. It also bounds how many buffers the peer may
    /// have live in this region at once, so a free never has to wait for room (as does
    /// <see cref="TransactionRingCapacity"/>: the smaller bound applies).
    /// </summary>
    /// <remarks>Defaults to 4096. A power of two from 16 to 65536.</remarks>
    /// <exception cref="ArgumentOutOfRangeException">The value is out of bounds or not a power of two.</exception>
    public int FreeRingCapacity
    {
        get => _freeRingCapacity;
        set => _freeRingCapacity = CheckRingCapacity(value);
    }

    /// <summary>The longest a waiting receiver spins before it parks on the futex (<see cref="WaitStrategy.SpinThenPark"/>).</summary>
    /// <remarks>
    /// Defaults to 20 microseconds. From zero (park at once) to one second. A waiter whose recent waits took more than
    /// eight times this parks at once instead, until its waits are short again.
    /// </remarks>
    /// <exception cref="ArgumentOutOfRangeException">The value is negative or longer than one second.</exception>
    public TimeSpan SpinDuration
    {
        get => _spinDuration;
        set
        {
            ArgumentOutOfRangeException.ThrowIfLessThan(value, TimeSpan.Zero);
            ArgumentOutOfRangeException.ThrowIfGreaterThan(value, s_maxSpinDuration);
            _spinDuration = value;
        }
    }

    /// <summary>How many threads may handle two-way calls of one connection at once. Oneway transactions are handled one at a time, in order.</summary>
    /// <remarks>Defaults to 4. From 1 to 256.</remarks>
    /// <exception cref="ArgumentOutOfRangeException">The value is out of bounds.</exception>
    public int ReceiveThreads
    {
        get => _receiveThreads;
        set
        {
            ArgumentOutOfRangeException.ThrowIfLessThan(value, 1);
            ArgumentOutOfRangeException.ThrowIfGreaterThan(value, MaxReceiveThreads);
            _receiveThreads = value;
        }
    }

    /// <summary>
    /// Uids besides this process's own effective uid whose processes may connect (checked with <c>SO_PEERCRED</c>).
    /// </summary>
    /// <remarks>
    /// Empty by default: only processes running as the same uid may connect, on either side of the connection. A
    /// connecting process checks the listener's uid the same way.
    /// </remarks>
    public ISet<uint> AllowedUids { get; } = new HashSet<uint>();

    /// <summary>Lets a process running as any uid connect. Defaults to <see langword="false"/>.</summary>
    public bool AllowAnyUid { get; set; }

    /// <summary>The longest connecting and the handshake that follows may take, on either side.</summary>
    /// <remarks>Defaults to 10 seconds. Positive, or <see cref="Timeout.InfiniteTimeSpan"/>.</remarks>
    /// <exception cref="ArgumentOutOfRangeException">The value is zero or negative and not infinite.</exception>
    public TimeSpan ConnectTimeout
    {
        get => _connectTimeout;
        set => _connectTimeout = CheckTimeout(value, allowZero: false);
    }

    /// <summary>The longest a two-way call waits for its reply.</summary>
    /// <remarks>Defaults to <see cref="Timeout.InfiniteTimeSpan"/>, as binder: a call waits until the reply or the peer's death.
    /// Positive, or infinite.</remarks>
    /// <exception cref="ArgumentOutOfRangeException">The value is zero or negative and not infinite.</exception>
    public TimeSpan CallTimeout
    {
        get => _callTimeout;
        set => _callTimeout = CheckTimeout(value, allowZero: false);
    }

    /// <summary>The longest a sender waits for the peer to free space in its region before failing with <see cref="RegionFullException"/>.</summary>
    /// <remarks>Defaults to 5 seconds. Zero fails at once; infinite waits until space, cancellation or death.</remarks>
    /// <exception cref="ArgumentOutOfRangeException">The value is negative and not infinite.</exception>
    public TimeSpan RegionFullTimeout
    {
        get => _regionFullTimeout;
        set => _regionFullTimeout = CheckTimeout(value, allowZero: true);
    }

    /// <summary>How a thread waiting for the peer waits: spin, spin then park on a futex, or park at once.</summary>
    /// <remarks>
    /// Defaults to <see cref="PageRange.WaitStrategy.SpinThenPark"/>: the lowest latency that does not burn a core while
    /// idle. <see cref="PageRange.WaitStrategy.BusySpin"/> gives the lowest latency and owns a core per waiting thread;
    /// use it only with a core to spare for each side.
    /// </remarks>
    /// <exception cref="ArgumentOutOfRangeException">The value is not a defined strategy.</exception>
    public WaitStrategy WaitStrategy
    {
        get => _waitStrategy;
        set
        {
            if (!Enum.IsDefined(value))
            {
                throw new ArgumentOutOfRangeException(nameof(value), value, "Not a defined WaitStrategy.");
            }
            _waitStrategy = value;
        }
    }

    /// <summary>
    /// The longest a parked thread sleeps on the futex before it re-checks on its own: the backstop that notices a dead
    /// peer or a lost wake-up, and how often an idle connection drains the peer's frees so freed pages reach the shrinker.
    /// </summary>
    /// <remarks>Defaults to 100 milliseconds. From 1 millisecond to 10 seconds.</remarks>
    /// <exception cref="ArgumentOutOfRangeException">The value is out of bounds.</exception>
    public TimeSpan ParkTimeout
    {
        get => _parkTimeout;
        set
        {
            ArgumentOutOfRangeException.ThrowIfLessThan(value, TimeSpan.FromMilliseconds(1));
            ArgumentOutOfRangeException.ThrowIfGreaterThan(value, TimeSpan.FromSeconds(10));
            _parkTimeout = value;
        }
    }

    /// <summary>
    /// Where connections and listeners made with these options write their log events (handshakes refused or failed, peer
    /// deaths, protocol violations, ignored frees, oneway-spam suspects, region-full episodes), with the stable ids of
    /// <see cref="Diagnostics.PageRangeLogEvents"/>.
    /// </summary>
    /// <remarks>
    /// Defaults to <see langword="null"/>: no logging, at no cost (no logger is created and no message is formatted).
    /// The factory is shared, not copied, and must outlive the connections that use it. A server logs its own events
    /// (<see cref="Diagnostics.PageRangeLogEvents.ServerCategory"/>) to its connection options' factory; the first
    /// factory a connection brings also becomes <see cref="Memory.Shrinker.Shared"/>'s, if it had none.
    /// </remarks>
    public ILoggerFactory? LoggerFactory { get; set; }

    /// <summary>
    /// Whether this side's small calls, replies and error replies carry their payload inline in the peer's transaction
    /// ring (see <see cref="Transport.InlineLayout"/>); defaults to true. Internal: off only in tests of the buffer path's
    /// small sends (an error reply that must find room in the caller's region, say) and in benchmarks that compare both.
    /// </summary>
    internal bool InlineSmallPayloads { get; set; } = true;

    /// <summary>
    /// Whether this side's synchronous calls ask the peer for a direct reply (see <see cref="Transport.DirectReplyLayout"/>):
    /// a small reply (up to 128 bytes) written into lines of our region header instead of the transaction ring, one call at a time;
    /// defaults to true. Internal: off only in tests of the ring's reply path and in benchmarks that compare both.
    /// </summary>
    internal bool DirectReplies { get; set; } = true;

    /// <summary>
    /// Whether this side's small synchronous calls (up to 128 bytes) are written into lines of the peer's region header (see
    /// <see cref="Transport.DirectCallLayout"/>) instead of its transaction ring, one call at a time; defaults to true.
    /// Internal: off only in tests of the ring's call path and in benchmarks that compare both.
    /// </summary>
    internal bool DirectCalls { get; set; } = true;

    /// <summary>
    /// Whether this side's full packs of small oneways rest after their free (see <see cref="Transport.PackLayout.RestingPacksOnThisMachine"/>):
    /// <see langword="true"/> up to <see cref="Transport.PackLayout.MaxRestingPacks"/> on every machine, <see langword="false"/>
    /// none; <see langword="null"/> (the default) takes this machine's count. Internal: set only by tests that run both ways.
    /// </summary>
    internal bool? RestFullPacks { get; set; }

    /// <summary>How many two-way calls this side may have waiting for replies at once, over all threads.</summary>
    /// <remarks>Defaults to 1024. From 1 to 65535.</remarks>
    /// <exception cref="ArgumentOutOfRangeException">The value is out of bounds.</exception>
    public int MaxConcurrentCalls
    {
        get => _maxConcurrentCalls;
        set
        {
            ArgumentOutOfRangeException.ThrowIfLessThan(value, 1);
            ArgumentOutOfRangeException.ThrowIfGreaterThan(value, 65535);
            _maxConcurrentCalls = value;
        }
    }

    /// <summary>Whether a peer running as <paramref name="peerUid"/> may connect to a process running as <paramref name="ownUid"/>.</summary>
    internal bool IsUidAllowed(uint peerUid, uint ownUid) => AllowAnyUid || peerUid == ownUid || AllowedUids.Contains(peerUid);

    /// <summary>A copy that later changes to this instance do not reach.</summary>
    internal PageRangeOptions Clone() => new(this, new HashSet<uint>(AllowedUids));

    /// <summary>
    /// Checks the settings together, where each setter checked only its own value: throws unless
    /// <see cref="RegionSize"/> leaves at least one data page after the header pages of its rings
    /// (<see cref="TransactionRingCapacity"/>, <see cref="FreeRingCapacity"/>).
    /// </summary>
    /// <remarks>
    /// <see cref="Transport.PageRangeListener.Listen"/> and <see cref="Transport.PageRangeConnection.ConnectAsync"/> call
    /// it before they make anything (without it a listener would fail at every accept, a connection after its socket);
    /// call it to fail earlier, where the options are made.
    /// </remarks>
    /// <exception cref="ArgumentException">The region is too small for its rings; the message names the three settings and
    /// the smallest region that fits them.</exception>
    public void Validate()
    {
        long headerBytes = Transport.RegionLayout.HeaderBytesFor(TransactionRingCapacity, FreeRingCapacity);
        if (RegionSize <= headerBytes)
        {
            throw new ArgumentException(
                $"RegionSize ({RegionSize} bytes) leaves no data page after the {headerBytes} header bytes of the rings " +
                $"(TransactionRingCapacity {TransactionRingCapacity}, FreeRingCapacity {FreeRingCapacity}): make it at least " +
                $"{headerBytes + SharedRegion.PageSize} bytes, or the rings smaller.",
                "options");
        }
    }

    /// <summary>The description of who may connect, for refusal messages.</summary>
    internal string DescribeAllowedUids(uint ownUid) =>
        AllowedUids.Count == 0
            ? $"allows only its own uid {ownUid} (add the uid to PageRangeOptions.AllowedUids, or set AllowAnyUid, to widen that)"
            : $"allows only its own uid {ownUid} and PageRangeOptions.AllowedUids [{string.Join(", ", AllowedUids.Order())}]";

    private static int CheckRingCapacity(int value)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(value, MinRingCapacity);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(value, MaxRingCapacity);
        if (!BitOperations.IsPow2(value))
        {
            throw new ArgumentOutOfRangeException(nameof(value), value, "A ring capacity must be a power of two.");
        }
        return value;
    }

    private static TimeSpan CheckTimeout(TimeSpan value, bool allowZero)
    {
        if (value == Timeout.InfiniteTimeSpan)
        {
            return value;
        }
        if (allowZero)
        {
            ArgumentOutOfRangeException.ThrowIfLessThan(value, TimeSpan.Zero);
        }
        else
        {
            ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(value, TimeSpan.Zero);
        }
        return value;
    }

    // Connection protocol options (call chains, incoming payload copies): one block, kept together.

    /// <summary>The default <see cref="MaxCallDepth"/>: 32 nested calls.</summary>
    public const int DefaultMaxCallDepth = 32;

    /// <summary>The largest <see cref="MaxCallDepth"/> the protocol carries: 1024.</summary>
    public const int MaxCallDepthLimit = 1024;

    private int _maxCallDepth = DefaultMaxCallDepth;
    private IncomingPayloadCopy _copyIncomingPayloads = IncomingPayloadCopy.Auto;

    /// <summary>
    /// How deep a chain of nested calls may go (A calls B, B calls A back on its behalf, and so on; binder's
    /// transaction stack). An incoming call deeper than this gets an automatic error reply
    /// (<see cref="CallStatus.ResourceExhausted"/>) and never reaches a handler; an outgoing nested call deeper than this
    /// fails at once.
    /// </summary>
    /// <remarks>Defaults to 32. From 0 (no nested calls) to 1024.</remarks>
    /// <exception cref="ArgumentOutOfRangeException">The value is out of bounds.</exception>
    public int MaxCallDepth
    {
        get => _maxCallDepth;
        set
        {
            ArgumentOutOfRangeException.ThrowIfNegative(value);
            ArgumentOutOfRangeException.ThrowIfGreaterThan(value, MaxCallDepthLimit);
            _maxCallDepth = value;
        }
    }

    /// <summary>
    /// Whether each incoming payload is copied once into private pooled memory before a handler or deserializer sees
    /// it. A payload is read in place from memory the sender can still write: a sender that changes it while it is read
    /// can make a handler see two different values for one field (a double fetch). The copy closes that.
    /// </summary>
    /// <remarks>
    /// Defaults to <see cref="IncomingPayloadCopy.Auto"/>: copy when the peer runs as another uid (it does not trust us
    /// and we should not trust it); a peer of our own uid could read and write our memory anyway.
    /// </remarks>
    /// <exception cref="ArgumentOutOfRangeException">The value is not a defined <see cref="IncomingPayloadCopy"/>.</exception>
    public IncomingPayloadCopy CopyIncomingPayloads
    {
        get => _copyIncomingPayloads;
        set
        {
            if (!Enum.IsDefined(value))
            {
                throw new ArgumentOutOfRangeException(nameof(value), value, "Not a defined IncomingPayloadCopy.");
            }
            _copyIncomingPayloads = value;
        }
    }

    private void CopyConnectionProtocolOptions(PageRangeOptions values)
    {
        _maxCallDepth = values._maxCallDepth;
        _copyIncomingPayloads = values._copyIncomingPayloads;
    }

    // Hardening of the control plane and the listener (issue 11): every option of that work is in this block.

    private TimeSpan _helloTimeout = DefaultHelloTimeout;

    /// <summary>
    /// The longest a listener waits, after accepting a socket, for the connecting process's first frame (its hello).
    /// Each handshake has its own deadline, so a silent client costs only its own slot, never another client's time.
    /// </summary>
    /// <remarks>Defaults to 5 seconds; <see cref="ConnectTimeout"/> still bounds the whole handshake when it is shorter.
    /// Positive, or <see cref="Timeout.InfiniteTimeSpan"/>. Once the hello came, the listener waits this long again (5
    /// seconds if this is infinite) for the peer's answer to its own hello, whatever <see cref="ConnectTimeout"/> says:
    /// a peer that stops there holds one of the listener's regions.</remarks>
    /// <exception cref="ArgumentOutOfRangeException">The value is zero or negative and not infinite.</exception>
    public TimeSpan HelloTimeout
    {
        get => _helloTimeout;
        set => _helloTimeout = CheckTimeout(value, allowZero: false);
    }

    /// <summary>The first-frame deadline a listener applies: the shorter of <see cref="HelloTimeout"/> and <see cref="ConnectTimeout"/>.</summary>
    internal TimeSpan EffectiveHelloTimeout =>
        _helloTimeout == Timeout.InfiniteTimeSpan ? _connectTimeout
        : _connectTimeout == Timeout.InfiniteTimeSpan ? _helloTimeout
        : _helloTimeout < _connectTimeout ? _helloTimeout : _connectTimeout;

    /// <summary>
    /// The deadline for the rest of a listener's handshake once the hello came: the connecting process has one round
    /// trip left (read our hello, map our region, answer Ready), no more work than its hello took, so the hello's bound
    /// fits; and a peer that stalls here holds a region of ours besides its socket, so the bound is finite even when
    /// <see cref="HelloTimeout"/> and <see cref="ConnectTimeout"/> are infinite (then it is the default hello timeout).
    /// <see cref="ConnectTimeout"/>'s remainder still applies when it is shorter.
    /// </summary>
    internal TimeSpan HandshakeRestTimeout =>
        _helloTimeout == Timeout.InfiniteTimeSpan ? DefaultHelloTimeout : _helloTimeout;

    /// <summary>The default <see cref="HelloTimeout"/>: 5 seconds.</summary>
    internal static readonly TimeSpan DefaultHelloTimeout = TimeSpan.FromSeconds(5);

    private int _maxHandshakesPerUid = 32;

    /// <summary>
    /// The most handshakes a listener runs at once with processes of one uid (<c>SO_PEERCRED</c>). A listener runs at most
    /// 64 handshakes at once in all; without a share, the processes of one allowed uid could hold every one of them
    /// (silent, or never finishing) and keep every other client waiting.
    /// </summary>
    /// <remarks>
    /// Defaults to 32, half of the 64, so one uid cannot take every slot while an honest burst of one uid still has
    /// plenty. From 1 to 64 (64: no share). A connection beyond the share is refused at once (the socket is closed; the
    /// listener's <c>HandshakeFailed</c> event gets a <see cref="ConnectionRefusedException"/> that names this option, and
    /// a server's <c>ClientRefused</c> event a reason that does).
    /// </remarks>
    /// <exception cref="ArgumentOutOfRangeException">The value is out of bounds.</exception>
    public int MaxHandshakesPerUid
    {
        get => _maxHandshakesPerUid;
        set => _maxHandshakesPerUid = CheckHandshakeShare(value);
    }

    private int _maxHandshakesPerProcess = 16;

    /// <summary>
    /// The most handshakes a listener runs at once with one process (its pid, from <c>SO_PEERCRED</c>): by default every
    /// client runs as the listener's own uid, so the share of <see cref="MaxHandshakesPerUid"/> alone would not keep one
    /// stuck or hostile process from holding that uid's slots; this keeps it from holding more than its own few.
    /// </summary>
    /// <remarks>
    /// Defaults to 16, a quarter of the listener's 64 handshakes. From 1 to 64 (64: no share). A peer in a pid namespace
    /// the listener cannot see has pid 0; such peers are bounded by <see cref="MaxHandshakesPerUid"/> only. A connection
    /// beyond the share is refused at once, as for <see cref="MaxHandshakesPerUid"/>. A client that opens more
    /// connections than this at once to one listener should raise it, or be refused the extra ones.
    /// </remarks>
    /// <exception cref="ArgumentOutOfRangeException">The value is out of bounds.</exception>
    public int MaxHandshakesPerProcess
    {
        get => _maxHandshakesPerProcess;
        set => _maxHandshakesPerProcess = CheckHandshakeShare(value);
    }

    private static int CheckHandshakeShare(int value)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(value, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(value, Transport.PageRangeListener.MaxConcurrentHandshakes);
        return value;
    }

    private long _maxPeerRegionSize = MaxRegionSize;

    /// <summary>
    /// The largest region a peer may announce for this side to write into: the peer chooses its region's size, and this
    /// side pays for the mapping and the bookkeeping, so a larger announcement is refused during the handshake.
    /// </summary>
    /// <remarks>Defaults to <see cref="MaxRegionSize"/> (1 GiB). A multiple of the page size, from 64 KiB to 1 GiB.
    /// A refusal names this option in this side's exception (and a listener's <c>HandshakeFailed</c> event), not to the peer.</remarks>
    /// <exception cref="ArgumentOutOfRangeException">The value is out of bounds or not a page multiple.</exception>
    public long MaxPeerRegionSize
    {
        get => _maxPeerRegionSize;
        set
        {
            ArgumentOutOfRangeException.ThrowIfLessThan(value, MinRegionSize);
            ArgumentOutOfRangeException.ThrowIfGreaterThan(value, MaxRegionSize);
            if (value % SharedRegion.PageSize != 0)
            {
                throw new ArgumentOutOfRangeException(
                    nameof(value), value, $"MaxPeerRegionSize must be a multiple of the page size ({SharedRegion.PageSize}).");
            }
            _maxPeerRegionSize = value;
        }
    }

    /// <summary>The default <see cref="ControlSendTimeout"/>: 5 seconds.</summary>
    public static readonly TimeSpan DefaultControlSendTimeout = TimeSpan.FromSeconds(5);

    private TimeSpan _controlSendTimeout = DefaultControlSendTimeout;

    /// <summary>
    /// The longest one message on the control socket (a hello, a call's cancellation) may wait for the peer to make room
    /// for it. A peer that stops reading its control socket cannot block this side: when the bound passes, the
    /// connection is closed.
    /// </summary>
    /// <remarks>Defaults to 5 seconds. Positive, or <see cref="Timeout.InfiniteTimeSpan"/>.</remarks>
    /// <exception cref="ArgumentOutOfRangeException">The value is zero or negative and not infinite.</exception>
    public TimeSpan ControlSendTimeout
    {
        get => _controlSendTimeout;
        set => _controlSendTimeout = CheckTimeout(value, allowZero: false);
    }

    private PageRangeNamespace _namespace = PageRangeNamespace.Abstract;

    /// <summary>
    /// Where the listener's name lives, on both sides: an abstract socket (the default) or a socket file in a directory
    /// only this uid can enter (<c>$XDG_RUNTIME_DIR/pagerange/NAME</c>, else <c>/tmp/pagerange-UID/NAME</c>).
    /// </summary>
    /// <remarks>
    /// Defaults to <see cref="PageRangeNamespace.Abstract"/>. Abstract names are per network namespace and any uid can bind
    /// a free one first; <see cref="PageRangeNamespace.Private"/> names cannot be taken or reached by another user, but
    /// only processes of the same uid (and root) can connect. The listener and its clients must use the same value.
    /// </remarks>
    /// <exception cref="ArgumentOutOfRangeException">The value is not a defined namespace.</exception>
    public PageRangeNamespace Namespace
    {
        get => _namespace;
        set
        {
            if (!Enum.IsDefined(value))
            {
                throw new ArgumentOutOfRangeException(nameof(value), value, "Not a defined PageRangeNamespace.");
            }
            _namespace = value;
        }
    }

    private void CopyHardeningFrom(PageRangeOptions values)
    {
        _namespace = values._namespace;
        _controlSendTimeout = values._controlSendTimeout;
        _helloTimeout = values._helloTimeout;
        _maxPeerRegionSize = values._maxPeerRegionSize;
        _maxHandshakesPerUid = values._maxHandshakesPerUid;
        _maxHandshakesPerProcess = values._maxHandshakesPerProcess;
    }
}
