using System.Diagnostics;
using System.Net.Sockets;
using System.Numerics;
using System.Text;
using PageRange.Memory;

namespace PageRange.Transport;

/// <summary>
/// Sets a connection up over its control socket: credentials, hellos, and the two regions' memfds.
/// </summary>
/// <remarks>
/// <para>The exchange, in lock step so that at most one message is ever in flight:</para>
/// <code>
/// connecting side (C)                                   listening side (L)
/// connect; check L's uid (SO_PEERCRED)
/// Hello(C) + C's memfd (SCM_RIGHTS)         --->        check C's uid; validate Hello(C); open C's region
///                                           &lt;---        Hello(L) + L's memfd,  or Refusal(reason) and close
/// validate Hello(L); open L's region
/// Ready,  or Refusal(reason) and close      --->        done
/// </code>
/// <para>
/// A side that refuses sends the reason before it closes, so both sides fail with a <see cref="ConnectionRefusedException"/>
/// that says why. Each side validates everything it receives: the version, the sizes, the memfd's size and seals
/// (<see cref="SharedRegion.Open"/>), and never trusts the hello's pid over <c>SO_PEERCRED</c>. A side that refused
/// after sending its own memfd must not reuse that region: the refused peer still holds the descriptor.
/// </para>
/// </remarks>
internal static class ControlHandshake
{
    /// <summary>The protocol this build speaks. A peer announcing another version is refused.</summary>
    /// <remarks>7: small calls and replies may carry their payload inline in the transaction ring (<see cref="InlineLayout"/>).
    /// 8: a small reply may be written directly into two lines of the caller's region header (<see cref="DirectReplyLayout"/>),
    /// a small call into two lines of the callee's (<see cref="DirectCallLayout"/>). 9: two payload lines each (up to 128 bytes).
    /// 10: a pack's entries whose ids follow each other leave the id out (an 8-byte entry header,
    /// <see cref="PackLayout.EntryHeaderSize"/>). 11: a receiver that parks as a rule announces park by park whether its readers
    /// issue the park barrier (<see cref="RegionHeaderLayout.AdaptiveParkBarrierFlag"/>).
    /// 12: a pack's entry carries up to 1 KiB (<see cref="PackLayout.MaxPayload"/>; 256 bytes before).</remarks>
    public const int ProtocolVersion = 12;

    private const string Listener = "the listener";
    private const string Connector = "the connecting process";

    /// <summary>The prefix of every PageRange name in the abstract socket namespace.</summary>
    public const string AbstractPrefix = "pagerange/";

    // sun_path holds 108 bytes: the leading NUL of an abstract name, the prefix, then the name.
    private const int MaxNameBytes = 108 - 1 - 10;

    /// <summary>The abstract socket address of <paramref name="name"/>: <c>\0pagerange/&lt;name&gt;</c>.</summary>
    /// <exception cref="ArgumentException">The name is empty, too long or contains a NUL.</exception>
    public static UnixDomainSocketEndPoint GetEndPoint(string name)
    {
        ValidateName(name);
        return new UnixDomainSocketEndPoint("\0" + AbstractPrefix + name);
    }

    /// <summary>Checks that <paramref name="name"/> can be a listener's name.</summary>
    /// <exception cref="ArgumentException">The name is empty, longer than 97 bytes of UTF-8, or contains a NUL.</exception>
    public static void ValidateName(string name)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        if (name.Contains('\0', StringComparison.Ordinal))
        {
            throw new ArgumentException("A PageRange name cannot contain a NUL character.", nameof(name));
        }
        if (Encoding.UTF8.GetByteCount(name) > MaxNameBytes)
        {
            throw new ArgumentException($"A PageRange name is at most {MaxNameBytes} bytes of UTF-8.", nameof(name));
        }
    }

    /// <summary>The hello this process sends for <paramref name="ownRegion"/> under <paramref name="options"/>.</summary>
    public static HelloMessage CreateHello(PageRangeOptions options, SharedRegion ownRegion) =>
        new(ProtocolVersion, Environment.ProcessId, ownRegion.Size, options.TransactionRingCapacity, options.FreeRingCapacity);

    /// <summary>
    /// Connects to the listener <paramref name="name"/> and runs the connecting side of the handshake, offering
    /// <paramref name="ownRegion"/> (created and sealed by the caller) as the region this side receives in.
    /// </summary>
    /// <param name="name">The listener's name.</param>
    /// <param name="options">This side's options; null for the defaults.</param>
    /// <param name="ownRegion">This side's receive region; still the caller's afterwards, also on failure.</param>
    /// <param name="cancellationToken">Cancels connecting and the handshake.</param>
    /// <returns>The control socket (not watched yet), the peer's region and hello.</returns>
    /// <exception cref="PageRangeException">Nobody listens on <paramref name="name"/>.</exception>
    /// <exception cref="ConnectionRefusedException">Either side refused the other; the message says which and why.</exception>
    /// <exception cref="TimeoutException">The handshake did not finish within <see cref="PageRangeOptions.ConnectTimeout"/>.</exception>
    public static ValueTask<HandshakeResult> ConnectAsync(string name, PageRangeOptions? options, SharedRegion ownRegion, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(ownRegion);
        options ??= new PageRangeOptions();
        return ConnectCoreAsync(name, options, CreateHello(options, ownRegion), ownRegion.Handle, cancellationToken);
    }

    /// <summary>
    /// The body of <see cref="ConnectAsync"/>, which tests also call to announce any hello with any descriptor (a
    /// wrong version, an unsealed memfd, a size that is not the memfd's).
    /// </summary>
    internal static async ValueTask<HandshakeResult> ConnectCoreAsync(
        string name, PageRangeOptions options, HelloMessage ownHello, SafeMemfdHandle ownDescriptor, CancellationToken cancellationToken)
    {
        ValidateName(name);
        Interop.EnsureLinux();
        UnixDomainSocketEndPoint endPoint = ListenerEndPoint.ForConnect(name, options.Namespace);
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(options.ConnectTimeout);

        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        ControlChannel channel;
        try
        {
            await socket.ConnectAsync(endPoint, timeout.Token).ConfigureAwait(false);
            channel = new ControlChannel(socket, name, options.ControlSendTimeout);
        }
        catch (SocketException error) when (error.SocketErrorCode is SocketError.ConnectionRefused or SocketError.AddressNotAvailable)
        {
            socket.Dispose();
            throw new PageRangeException(
                $"Nobody listens on the PageRange name '{name}' ({ListenerEndPoint.Describe(name, options.Namespace)}): start the listener first, or check the name and PageRangeOptions.Namespace.",
                error);
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            socket.Dispose();
            throw new TimeoutException($"Connecting to the PageRange name '{name}' took longer than {options.ConnectTimeout}.");
        }
        catch
        {
            socket.Dispose();
            throw;
        }

        try
        {
            await RefuseUnlessUidAllowedAsync(channel, options, Listener, Connector, timeout.Token).ConfigureAwait(false);

            await SendAsync(channel, ownHello, ownDescriptor, Listener, timeout.Token).ConfigureAwait(false);
            ControlMessage? reply = await ReadOrRefuseAsync(channel, timeout.Token).ConfigureAwait(false);
            HelloMessage peerHello = reply switch
            {
                HelloMessage hello => hello,
                RefusalMessage refusal => throw RefusedByPeer(channel, Listener, refusal),
                null => throw ClosedWithoutAnswer(channel),
                _ => throw await RefuseAsync(channel, $"{Listener} answered the hello with a {reply.Kind} message", timeout.Token).ConfigureAwait(false),
            };

            SharedRegion peerRegion = await OpenPeerRegionAsync(channel, peerHello, options, Listener, Connector, timeout.Token).ConfigureAwait(false);
            try
            {
                await RefuseIfExtraDescriptorAsync(channel, Listener, timeout.Token).ConfigureAwait(false);
                await SendAsync(channel, new ReadyMessage(), descriptor: null, Listener, timeout.Token).ConfigureAwait(false);
                return new HandshakeResult(channel, peerRegion, peerHello);
            }
            catch
            {
                peerRegion.Dispose();
                throw;
            }
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            await channel.DisposeAsync().ConfigureAwait(false);
            throw new TimeoutException($"The handshake with the PageRange listener '{name}' took longer than {options.ConnectTimeout}.");
        }
        catch
        {
            await channel.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>
    /// Runs the listening side of the handshake on a freshly accepted socket, offering <paramref name="ownRegion"/>.
    /// </summary>
    /// <param name="socket">The accepted socket; owned by the result, or disposed when this throws.</param>
    /// <param name="name">The listener's name.</param>
    /// <param name="options">The listener's options.</param>
    /// <param name="ownRegion">This side's receive region; still the caller's afterwards. Once sent it must not be
    /// offered again if this throws.</param>
    /// <param name="cancellationToken">Cancels the handshake.</param>
    /// <exception cref="ConnectionRefusedException">Either side refused the other.</exception>
    /// <exception cref="ProtocolViolationException">The peer sent something malformed.</exception>
    /// <exception cref="PeerDiedException">The peer closed the socket during the handshake.</exception>
    /// <exception cref="TimeoutException">The peer did not finish within <see cref="PageRangeOptions.ConnectTimeout"/>.</exception>
    public static ValueTask<HandshakeResult> AcceptAsync(
        Socket socket, string name, PageRangeOptions options, SharedRegion ownRegion, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(ownRegion);
        return AcceptCoreAsync(socket, name, options, CreateHello(options, ownRegion), ownRegion.Handle, cancellationToken);
    }

    /// <summary>The body of <see cref="AcceptAsync"/>, which tests also call to announce any hello with any descriptor.</summary>
    internal static ValueTask<HandshakeResult> AcceptCoreAsync(
        Socket socket, string name, PageRangeOptions options, HelloMessage ownHello, SafeMemfdHandle ownDescriptor, CancellationToken cancellationToken)
    {
        var channel = new ControlChannel(socket, name, options.ControlSendTimeout);
        return AcceptChannelAsync(channel, options, () => (ownHello, ownDescriptor), admit: null, cancellationToken);
    }

    /// <summary>
    /// The listening side of the handshake over a channel whose credentials were read: checks the peer's uid and
    /// <paramref name="admit"/>, waits at most <see cref="PageRangeOptions.HelloTimeout"/> for its hello, validates
    /// it and its region, and only then calls <paramref name="offerOwn"/> for what to offer in return.
    /// </summary>
    /// <param name="channel">The control channel; owned by the result, or disposed when this throws.</param>
    /// <param name="options">The listener's options.</param>
    /// <param name="offerOwn">This side's hello and memfd, called once the peer's hello and region passed every check.
    /// What it created stays the caller's; once sent it must not be offered again if this throws.</param>
    /// <param name="admit">The admission check (see <see cref="PageRangeListener.Admit"/>); null admits every allowed uid.</param>
    /// <param name="cancellationToken">Cancels the handshake.</param>
    /// <exception cref="ConnectionRefusedException">Either side refused the other.</exception>
    /// <exception cref="PeerDiedException">The peer closed the socket during the handshake.</exception>
    /// <exception cref="TimeoutException">The peer sent no hello within the hello timeout, did not answer ours within
    /// <see cref="PageRangeOptions.HandshakeRestTimeout"/>, or did not finish within <see cref="PageRangeOptions.ConnectTimeout"/>.</exception>
    internal static async ValueTask<HandshakeResult> AcceptChannelAsync(
        ControlChannel channel, PageRangeOptions options, Func<(HelloMessage Hello, SafeMemfdHandle Descriptor)> offerOwn,
        Func<Interop.PeerCredentials, string?>? admit, CancellationToken cancellationToken)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        TimeSpan helloTimeout = options.EffectiveHelloTimeout;
        timeout.CancelAfter(helloTimeout);
        long started = Stopwatch.GetTimestamp();
        bool helloArrived = false;
        TimeSpan restTimeout = Timeout.InfiniteTimeSpan;
        bool restBoundIsConnectTimeout = false;
        try
        {
            await RefuseUnlessUidAllowedAsync(channel, options, Connector, Listener, timeout.Token).ConfigureAwait(false);
            if (admit?.Invoke(channel.PeerCredentials) is { } notAdmitted)
            {
                throw await RefuseAsync(channel, notAdmitted, timeout.Token).ConfigureAwait(false);
            }

            ControlMessage? first = await ReadOrRefuseAsync(channel, timeout.Token).ConfigureAwait(false);
            helloArrived = true;
            // The first frame came in time. The rest is one round trip, bounded on its own and always finite (see
            // PageRangeOptions.HandshakeRestTimeout): with only ConnectTimeout, which may be infinite, a peer that sent a
            // valid hello and never Ready held its slot and a region of ours for good. The whole handshake's deadline
            // still applies when it comes first.
            restTimeout = options.HandshakeRestTimeout;
            if (options.ConnectTimeout != Timeout.InfiniteTimeSpan)
            {
                TimeSpan left = TimeSpan.FromTicks(Math.Max(TimeSpan.TicksPerMillisecond, (options.ConnectTimeout - Stopwatch.GetElapsedTime(started)).Ticks));
                if (left < restTimeout)
                {
                    restTimeout = left;
                    restBoundIsConnectTimeout = true;
                }
            }
            timeout.CancelAfter(restTimeout);
            HelloMessage peerHello = first switch
            {
                HelloMessage hello => hello,
                RefusalMessage refusal => throw RefusedByPeer(channel, Connector, refusal),
                null => throw ClosedWithoutAnswer(channel),
                _ => throw await RefuseAsync(channel, $"{Connector} opened with a {first.Kind} message instead of a hello", timeout.Token).ConfigureAwait(false),
            };

            SharedRegion peerRegion = await OpenPeerRegionAsync(channel, peerHello, options, Connector, Listener, timeout.Token).ConfigureAwait(false);
            try
            {
                (HelloMessage ownHello, SafeMemfdHandle ownDescriptor) = offerOwn();
                await SendAsync(channel, ownHello, ownDescriptor, Connector, timeout.Token).ConfigureAwait(false);
                ControlMessage? last = await ReadOrRefuseAsync(channel, timeout.Token).ConfigureAwait(false);
                switch (last)
                {
                    case ReadyMessage:
                        break;
                    case RefusalMessage refusal:
                        throw RefusedByPeer(channel, Connector, refusal);
                    case null:
                        throw ClosedWithoutAnswer(channel);
                    default:
                        throw await RefuseAsync(channel, $"{Connector} answered the hello with a {last.Kind} message", timeout.Token).ConfigureAwait(false);
                }
                await RefuseIfExtraDescriptorAsync(channel, Connector, timeout.Token).ConfigureAwait(false);
                return new HandshakeResult(channel, peerRegion, peerHello);
            }
            catch
            {
                peerRegion.Dispose();
                throw;
            }
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            await channel.DisposeAsync().ConfigureAwait(false);
            throw new TimeoutException(helloArrived
                ? restBoundIsConnectTimeout
                    ? $"The peer (pid {channel.PeerCredentials.Pid}) did not finish the handshake on '{channel.Name}' within {options.ConnectTimeout}."
                    : $"The peer (pid {channel.PeerCredentials.Pid}) did not finish the handshake on '{channel.Name}': it did not answer the listener's hello within {restTimeout}."
                : $"The peer (pid {channel.PeerCredentials.Pid}) did not finish the handshake on '{channel.Name}': it sent no hello within {helloTimeout}.");
        }
        catch
        {
            await channel.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>Why a peer's hello is unacceptable, or <see langword="null"/> if it is fine.</summary>
    /// <param name="hello">The peer's hello.</param>
    /// <param name="options">This side's options: <see cref="PageRangeOptions.MaxPeerRegionSize"/> caps the region.</param>
    /// <param name="peer">How the reason names the peer ("the listener").</param>
    /// <param name="self">How the reason names this side.</param>
    internal static string? ValidateHello(HelloMessage hello, PageRangeOptions options, string peer, string self)
    {
        if (hello.ProtocolVersion != ProtocolVersion)
        {
            return $"{peer} speaks PageRange protocol version {hello.ProtocolVersion}, and {self} speaks version {ProtocolVersion}";
        }
        if (hello.RegionSize > options.MaxPeerRegionSize)
        {
            // Before the size rules below: the local limit is the clearer reason, and the peer's cost is ours to cap.
            return $"{peer} announced a region of {hello.RegionSize} bytes, more than the {options.MaxPeerRegionSize} bytes {self} accepts (PageRangeOptions.MaxPeerRegionSize)";
        }
        if (hello.Pid <= 0)
        {
            return $"{peer} announced pid {hello.Pid}";
        }
        if (hello.RegionSize is < PageRangeOptions.MinRegionSize or > PageRangeOptions.MaxRegionSize || hello.RegionSize % SharedRegion.PageSize != 0)
        {
            return $"{peer} announced a region of {hello.RegionSize} bytes, not a multiple of {SharedRegion.PageSize} from {PageRangeOptions.MinRegionSize} to {PageRangeOptions.MaxRegionSize}";
        }
        if (!IsValidRingCapacity(hello.TransactionRingCapacity))
        {
            return $"{peer} announced a transaction ring of {hello.TransactionRingCapacity} records, not a power of two from {PageRangeOptions.MinRingCapacity} to {PageRangeOptions.MaxRingCapacity}";
        }
        if (!IsValidRingCapacity(hello.FreeRingCapacity))
        {
            return $"{peer} announced a free ring of {hello.FreeRingCapacity} records, not a power of two from {PageRangeOptions.MinRingCapacity} to {PageRangeOptions.MaxRingCapacity}";
        }
        return null;
    }

    private static bool IsValidRingCapacity(int capacity) =>
        capacity is >= PageRangeOptions.MinRingCapacity and <= PageRangeOptions.MaxRingCapacity && BitOperations.IsPow2(capacity);

    /// <summary>Refuses the peer unless its uid, as <c>SO_PEERCRED</c> reports it, is one <paramref name="options"/> allow.</summary>
    private static async ValueTask RefuseUnlessUidAllowedAsync(
        ControlChannel channel, PageRangeOptions options, string peer, string self, CancellationToken cancellationToken)
    {
        uint ownUid = Interop.GetEffectiveUserId();
        uint peerUid = channel.PeerCredentials.Uid;
        if (!options.IsUidAllowed(peerUid, ownUid))
        {
            throw await RefuseAsync(channel, $"{peer} runs as uid {peerUid}, and {self} {options.DescribeAllowedUids(ownUid)}", cancellationToken)
                .ConfigureAwait(false);
        }
    }

    /// <summary>Refuses the peer if it passed a descriptor beyond its region's: the protocol passes exactly one.</summary>
    private static async ValueTask RefuseIfExtraDescriptorAsync(ControlChannel channel, string peer, CancellationToken cancellationToken)
    {
        if (channel.TakeDescriptor() is { } extra)
        {
            extra.Dispose();
            throw await RefuseAsync(channel, $"{peer} passed more descriptors than its region's", cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>Validates the hello, takes the memfd that came with it and maps it; refuses the peer on anything wrong.</summary>
    private static async ValueTask<SharedRegion> OpenPeerRegionAsync(
        ControlChannel channel, HelloMessage hello, PageRangeOptions options, string peer, string self, CancellationToken cancellationToken)
    {
        SafeMemfdHandle? descriptor = channel.TakeDescriptor();
        if (ValidateHello(hello, options, peer, self) is { } problem)
        {
            descriptor?.Dispose();
            throw await RefuseAsync(channel, problem, cancellationToken).ConfigureAwait(false);
        }
        if (descriptor is null)
        {
            throw await RefuseAsync(channel, $"the hello of {peer} came without the memfd of its region", cancellationToken).ConfigureAwait(false);
        }
        SharedRegion? region = null;
        try
        {
            // Open takes ownership of the descriptor and checks what the peer could lie about: the memfd's real size
            // against the announced one, and the seals that keep it from shrinking under our mapping.
            region = SharedRegion.Open(descriptor, hello.RegionSize, writableBytes: hello.RegionSize);
            // Then what the peer wrote into it: the header and the rings, the checks the outbound channel makes too, so
            // that a bad region is this handshake's refusal rather than a failure after the connection exists.
            ValidatePeerHeader(region, hello);
            return region;
        }
        catch (Exception error) when (error is ProtocolViolationException or SystemCallException)
        {
            region?.Dispose();
            // A SystemCallException here means the descriptor is no memfd at all (F_GET_SEALS or mmap refused it).
            throw await RefuseAsync(channel, $"{peer} offered a bad region: {AsClause(error.Message)}", cancellationToken, error)
                .ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Checks the header of a peer's region against its hello: the layout (<see cref="RegionLayout.Validate"/>) and
    /// rings that are still empty, as <see cref="OutboundChannel"/> requires them.
    /// </summary>
    /// <exception cref="ProtocolViolationException">The header is not what the peer announced, or a ring is not empty.</exception>
    internal static unsafe void ValidatePeerHeader(SharedRegion region, HelloMessage hello)
    {
        region.AddRef();
        try
        {
            // Copy the header once and check only the copy: the peer can rewrite the shared one at any time.
            // SAFETY: the region is at least MinRegionSize (the hello was validated), larger than the header structure,
            // and the reference taken above keeps it mapped for the copy.
            RegionHeaderLayout header = *(RegionHeaderLayout*)region.BasePointer;
            RegionLayout.Validate(header, region.Size, hello.TransactionRingCapacity, hello.FreeRingCapacity);
            if (header.TxTail != 0 || header.TxHead != 0 || header.FreeTail != 0 || header.FreeHead != 0)
            {
                throw new ProtocolViolationException(
                    $"The peer's region is not fresh: ring indices tx {header.TxHead}..{header.TxTail}, free {header.FreeHead}..{header.FreeTail}.");
            }
        }
        finally
        {
            region.ReleaseRef();
        }
    }

    /// <summary>
    /// Sends a handshake message. If the peer is already gone, the reason is usually waiting in our receive queue: a
    /// peer that refuses does so at once (a uid check needs no message from us) and closes, so our send can meet a
    /// closed socket. The refusal then explains the failure better than the broken pipe does.
    /// </summary>
    private static async ValueTask SendAsync(
        ControlChannel channel, ControlMessage message, SafeMemfdHandle? descriptor, string peer, CancellationToken cancellationToken)
    {
        try
        {
            await channel.SendAsync(message, descriptor, cancellationToken).ConfigureAwait(false);
        }
        catch (PeerDiedException)
        {
            ControlMessage? pending;
            try
            {
                pending = await channel.ReadMessageAsync(cancellationToken).ConfigureAwait(false);
            }
            catch (ProtocolViolationException)
            {
                pending = null;
            }
            if (pending is RefusalMessage refusal)
            {
                throw RefusedByPeer(channel, peer, refusal);
            }
            throw;
        }
    }

    /// <summary>Reads the next handshake message; a malformed one refuses the peer with the reason.</summary>
    private static async ValueTask<ControlMessage?> ReadOrRefuseAsync(ControlChannel channel, CancellationToken cancellationToken)
    {
        try
        {
            return await channel.ReadMessageAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (ProtocolViolationException violation)
        {
            throw await RefuseAsync(channel, AsClause(violation.Message), cancellationToken, violation).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Tells the peer it was refused (best effort: it may already be gone) and returns the exception this side raises,
    /// which carries the reason. The reason stays here: it may name our limits and configuration, which are not the
    /// refused peer's business, so the refusal on the wire carries no text.
    /// </summary>
    private static async ValueTask<ConnectionRefusedException> RefuseAsync(
        ControlChannel channel, string reason, CancellationToken cancellationToken, Exception? innerException = null)
    {
        Interop.PeerCredentials peer = channel.PeerCredentials;
        try
        {
            await channel.SendAsync(new RefusalMessage(string.Empty), descriptor: null, cancellationToken).ConfigureAwait(false);
        }
        catch (PeerDiedException)
        {
            // The peer left first; our own exception still says why we refused.
        }
        return new ConnectionRefusedException(
            $"Refused the connection on '{channel.Name}' with pid {peer.Pid} (uid {peer.Uid}, gid {peer.Gid}): {reason}.",
            refusedByPeer: false,
            innerException);
    }

    private static ConnectionRefusedException RefusedByPeer(ControlChannel channel, string peer, RefusalMessage refusal)
    {
        // This build sends no reason; an older or foreign peer might, and whatever it sent is its text, not ours.
        string said = PeerText.Sanitize(refusal.Reason);
        return new(
            $"{FirstCharToUpper(peer)} on '{channel.Name}' (pid {channel.PeerCredentials.Pid}) refused the connection; "
            + (said.Length == 0
                ? $"it keeps the reason to itself (see its log{(peer == Listener ? " or its HandshakeFailed event" : string.Empty)})."
                : $"it said: \"{said}\"."),
            refusedByPeer: true);
    }

    private static PeerDiedException ClosedWithoutAnswer(ControlChannel channel) =>
        new($"The peer on '{channel.Name}' (pid {channel.PeerCredentials.Pid}) closed the control socket in the middle of the handshake.");

    private static string FirstCharToUpper(string text) =>
        text.Length == 0 ? text : string.Concat(char.ToUpperInvariant(text[0]).ToString(), text.AsSpan(1));

    /// <summary>An exception's sentence as a clause: first letter lowered, final period dropped.</summary>
    private static string AsClause(string sentence)
    {
        string clause = sentence.TrimEnd('.');
        return clause.Length == 0 ? clause : string.Concat(char.ToLowerInvariant(clause[0]).ToString(), clause.AsSpan(1));
    }
}
