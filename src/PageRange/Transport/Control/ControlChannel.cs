using System.Buffers;
using System.Collections.Concurrent;
using System.IO.Pipelines;
using System.Net.Sockets;

namespace PageRange.Transport;

/// <summary>
/// The control socket of one connection: framed messages in both directions, descriptors passed with
/// <c>SCM_RIGHTS</c>, and, once the handshake is done, the watch whose end is the peer's death notification.
/// </summary>
/// <remarks>
/// <para>
/// Every byte is received with <c>recvmsg</c> by one pump that fills a <see cref="Pipe"/>; frames are cut from the
/// pipe's reader. A plain <c>recv</c> (a <c>NetworkStream</c>) would silently drop a descriptor whose bytes it happened
/// to read, so nothing else ever reads from the socket, and a descriptor is queued, in order, the moment it arrives.
/// </para>
/// <para>
/// Thread safety: <see cref="SendAsync"/> may be called from any thread; sends are serialised. Reading is single-threaded:
/// <see cref="ReadMessageAsync"/> belongs to the handshake, and after <see cref="StartWatching"/> only the watch reads.
/// </para>
/// </remarks>
internal sealed class ControlChannel : IAsyncDisposable
{
    // Control messages are tiny; this is only how much one recvmsg may take at once.
    private const int ReceiveChunk = 4096;

    private readonly Socket _socket;
    private readonly string _name;
    private readonly Pipe _inbound = new(new PipeOptions(pauseWriterThreshold: 64 * 1024, resumeWriterThreshold: 32 * 1024, useSynchronizationContext: false));
    private readonly ConcurrentQueue<SafeMemfdHandle> _descriptors = new();
    private readonly SemaphoreSlim _sendLock = new(1, 1);
    private readonly CancellationTokenSource _stopping = new();
    private readonly CancellationTokenSource _peerDied = new();
    private readonly TimeSpan _sendTimeout;
    private readonly Task _pump;
    private Task _watch = Task.CompletedTask;
    private Action<ControlMessage>? _onMessage;
    private Exception? _pumpError;
    private Exception? _closeReason;
    private int _watching;
    private int _descriptorsReceived;
    private int _disposed;

    /// <summary>Takes ownership of a connected Unix stream socket and starts receiving from it.</summary>
    /// <param name="socket">The connected socket; disposed with the channel, also when this constructor throws.</param>
    /// <param name="name">The listener's name, for messages.</param>
    /// <param name="sendTimeout">The longest one send may wait for the peer to make room (<see cref="PageRangeOptions.ControlSendTimeout"/>);
    /// null for that option's default.</param>
    public ControlChannel(Socket socket, string name, TimeSpan? sendTimeout = null)
    {
        _socket = socket;
        _name = name;
        _sendTimeout = sendTimeout ?? PageRangeOptions.DefaultControlSendTimeout;
        try
        {
            PeerCredentials = Interop.GetPeerCredentials(socket);
            // At once, with the credentials: the later the pidfd is taken, the longer the pid has to be reused.
            PeerProcess = PeerProcess.Open(socket, PeerCredentials);
        }
        catch
        {
            socket.Dispose();
            _stopping.Dispose();
            _peerDied.Dispose();
            _sendLock.Dispose();
            throw;
        }
        _pump = PumpAsync();
    }

    /// <summary>The peer's pid, uid and gid as the kernel saw them when the socket was connected (<c>SO_PEERCRED</c>).</summary>
    public Interop.PeerCredentials PeerCredentials { get; }

    /// <summary>The peer's process, for the death backstop; watched only where that can raise no false alarm.</summary>
    public PeerProcess PeerProcess { get; }

    /// <summary>The listener's name.</summary>
    public string Name => _name;

    /// <summary>
    /// Cancelled once the connection is over: the peer closed its end or died (EOF or a socket error), sent something
    /// invalid, or this channel was disposed. <see cref="CloseReason"/> says which.
    /// </summary>
    /// <remarks>Only the watch notices the peer's end; before <see cref="StartWatching"/> only disposal cancels this.</remarks>
    public CancellationToken PeerDied => _peerDied.Token;

    /// <summary>
    /// Why the connection is over, set before <see cref="PeerDied"/> is cancelled: a <see cref="PeerDiedException"/>, a
    /// <see cref="ProtocolViolationException"/>, or an <see cref="ObjectDisposedException"/> after local disposal.
    /// </summary>
    public Exception? CloseReason => Volatile.Read(ref _closeReason);

    /// <summary>Completes when the watch has ended (after <see cref="PeerDied"/> was cancelled).</summary>
    public Task Completion => _watch;

    /// <summary>
    /// Sends <paramref name="message"/> as one frame; when <paramref name="descriptor"/> is not null it rides on the
    /// frame's first bytes with <c>SCM_RIGHTS</c>.
    /// </summary>
    /// <param name="message">The message.</param>
    /// <param name="descriptor">A descriptor to pass; still owned by the caller afterwards.</param>
    /// <param name="cancellationToken">Cancels waiting for the send lock or for room in the socket's buffer.</param>
    /// <exception cref="PeerDiedException">The socket is closed or the peer is gone; or the peer left no room for the
    /// frame within the send timeout, and the connection was closed for it.</exception>
    /// <remarks>
    /// Every send is bounded by the send timeout, waiting for the lock included: a peer that stops reading its control
    /// socket fills our socket's buffer, and without a bound it would hold every later sender. When the bound passes, the
    /// connection is over: the socket is shut down, so <see cref="PeerDied"/> follows with the stall as its reason.
    /// </remarks>
    public async ValueTask SendAsync(ControlMessage message, SafeMemfdHandle? descriptor, CancellationToken cancellationToken)
    {
        byte[] frame = ControlFrameCodec.Encode(message);
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        using var bounded = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        bounded.CancelAfter(_sendTimeout);
        bool locked = false;
        try
        {
            await _sendLock.WaitAsync(bounded.Token).ConfigureAwait(false);
            locked = true;
            int offset = 0;
            if (descriptor is not null)
            {
                int sent;
                while (!Interop.TrySendMessage(_socket.SafeHandle, frame, descriptor, out sent))
                {
                    WaitUntilWritable(bounded.Token);
                }
                offset = sent;
            }
            while (offset < frame.Length)
            {
                offset += await _socket.SendAsync(frame.AsMemory(offset), SocketFlags.None, bounded.Token).ConfigureAwait(false);
            }
        }
        catch (Exception error) when (error is SocketException or SystemCallException or ObjectDisposedException)
        {
            throw new PeerDiedException(
                $"Could not send a {message.Kind} message on '{_name}': the control socket to pid {PeerCredentials.Pid} is closed.", error);
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            var stalled = new PeerDiedException(
                $"The peer (pid {PeerCredentials.Pid}) on '{_name}' left no room on its control socket for {_sendTimeout} (it stopped reading it): the connection is closed.");
            Interlocked.CompareExchange(ref _closeReason, stalled, null);
            ShutdownSocket();
            throw stalled;
        }
        finally
        {
            if (locked)
            {
                _sendLock.Release();
            }
        }
    }

    /// <summary>Tells the peer that the caller gave up on call <paramref name="callId"/>.</summary>
    /// <exception cref="PeerDiedException">The peer is gone.</exception>
    public ValueTask SendCancelAsync(ulong callId, CancellationToken cancellationToken = default) =>
        SendAsync(new CancelMessage(callId), descriptor: null, cancellationToken);

    /// <summary>Tells the peer that its call <paramref name="callId"/> failed without a reply in its region.</summary>
    public ValueTask SendFailedReplyAsync(ulong callId, CancellationToken cancellationToken = default) =>
        SendAsync(new FailedReplyMessage(callId), descriptor: null, cancellationToken);

    /// <summary>Tells the peer that this side closes the connection on purpose, and why; the caller closes it next.</summary>
    /// <exception cref="PeerDiedException">The peer is gone.</exception>
    public ValueTask SendGoodbyeAsync(string reason, CancellationToken cancellationToken = default) =>
        SendAsync(new GoodbyeMessage(reason), descriptor: null, cancellationToken);

    /// <summary>Reads the next message; for the handshake, before <see cref="StartWatching"/>.</summary>
    /// <returns>The message, or <see langword="null"/> when the peer closed its end (or the connection was reset).</returns>
    /// <exception cref="ProtocolViolationException">The peer sent a malformed frame or invalid control data.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled.</exception>
    public async ValueTask<ControlMessage?> ReadMessageAsync(CancellationToken cancellationToken)
    {
        PipeReader reader = _inbound.Reader;
        while (true)
        {
            ReadResult result = await reader.ReadAsync(cancellationToken).ConfigureAwait(false);
            ReadOnlySequence<byte> buffer = result.Buffer;
            bool decoded;
            ControlMessage? message;
            try
            {
                decoded = ControlFrameCodec.TryDecode(ref buffer, out message);
            }
            catch
            {
                reader.AdvanceTo(buffer.Start);
                throw;
            }
            if (decoded)
            {
                reader.AdvanceTo(buffer.Start);
                return message;
            }
            if (result.IsCompleted)
            {
                reader.AdvanceTo(buffer.End);
                if (Volatile.Read(ref _pumpError) is ProtocolViolationException violation)
                {
                    throw violation;
                }
                if (!buffer.IsEmpty)
                {
                    throw new ProtocolViolationException(
                        $"The peer closed the control socket in the middle of a frame ({buffer.Length} bytes of it arrived).");
                }
                return null;
            }
            reader.AdvanceTo(buffer.Start, buffer.End);
        }
    }

    /// <summary>Takes the oldest descriptor the peer passed that nobody has taken yet.</summary>
    /// <returns>The descriptor, owned by the caller, or <see langword="null"/> if none is waiting.</returns>
    public SafeMemfdHandle? TakeDescriptor() => _descriptors.TryDequeue(out SafeMemfdHandle? descriptor) ? descriptor : null;

    /// <summary>
    /// Starts the watch: reads messages until the peer's end, hands each one to <paramref name="onMessage"/>, and
    /// cancels <see cref="PeerDied"/> when the connection is over.
    /// </summary>
    /// <param name="onMessage">Called on the watch's thread for each message after the handshake (a
    /// <see cref="CancelMessage"/> or a <see cref="FailedReplyMessage"/>); must not throw or block. Any other message kind, or a descriptor, is a protocol violation.</param>
    public void StartWatching(Action<ControlMessage>? onMessage = null)
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        if (Interlocked.Exchange(ref _watching, 1) != 0)
        {
            throw new InvalidOperationException("The control socket is already being watched.");
        }
        _onMessage = onMessage;
        _watch = WatchAsync();
    }

    /// <summary>Closes the socket (the peer sees EOF), stops the pump and the watch, and closes descriptors nobody took.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }
        Interlocked.CompareExchange(ref _closeReason, new ObjectDisposedException(nameof(ControlChannel), $"The connection on '{_name}' was closed by this side."), null);
        await _stopping.CancelAsync().ConfigureAwait(false);
        ShutdownSocket();
        _socket.Dispose();
        await _pump.ConfigureAwait(false);
        await _watch.ConfigureAwait(false);
        await _peerDied.CancelAsync().ConfigureAwait(false);
        await _inbound.Reader.CompleteAsync().ConfigureAwait(false);
        while (_descriptors.TryDequeue(out SafeMemfdHandle? descriptor))
        {
            descriptor.Dispose();
        }
        _sendLock.Dispose();
        _stopping.Dispose();
        PeerProcess.Dispose();
        // _peerDied stays undisposed on purpose: PeerDied must keep answering (cancelled) after disposal, and a
        // source without timer or wait handle holds nothing to release.
    }

    private async Task PumpAsync()
    {
        // Yield at once: the constructor must not run the first receive inline.
        await Task.Yield();
        PipeWriter writer = _inbound.Writer;
        byte[] peek = new byte[1];
        try
        {
            while (true)
            {
                // A peek consumes nothing (nor any descriptor): it only waits, asynchronously, until there is something for
                // recvmsg to take. Zero means the peer closed its end.
                int ready = await _socket.ReceiveAsync(peek, SocketFlags.Peek, _stopping.Token).ConfigureAwait(false);
                if (ready == 0)
                {
                    break;
                }
                Memory<byte> memory = writer.GetMemory(ReceiveChunk);
                if (!Interop.TryReceiveMessage(_socket.SafeHandle, memory.Span, out int received, out SafeMemfdHandle? descriptor))
                {
                    continue;
                }
                // Queue the descriptor before its bytes reach the reader, so the frame it came with finds it.
                if (descriptor is not null)
                {
                    // The protocol passes exactly one descriptor per connection, with the hello. A second one (a flood, or
                    // any SCM_RIGHTS after the handshake) is closed at once and ends the connection: it is never queued,
                    // so the peer cannot make us hold descriptors by sending faster than we read frames.
                    if (Interlocked.Increment(ref _descriptorsReceived) > 1)
                    {
                        descriptor.Dispose();
                        throw new ProtocolViolationException(
                            "The peer passed a second descriptor; the protocol passes exactly one, with its hello. It was closed.");
                    }
                    _descriptors.Enqueue(descriptor);
                }
                if (received == 0)
                {
                    break;
                }
                writer.Advance(received);
                FlushResult flushed = await writer.FlushAsync(_stopping.Token).ConfigureAwait(false);
                if (flushed.IsCompleted)
                {
                    break;
                }
            }
        }
        catch (Exception error)
        {
            // A reset, a violation or our own disposal: complete the pipe cleanly anyway, so frames that arrived before
            // (a refusal, typically) are still read; the reader asks _pumpError why the stream ended.
            Volatile.Write(ref _pumpError, error);
            if (error is ProtocolViolationException)
            {
                // Nothing more is read from this peer; shut the socket now so it learns at once, and so that whatever it
                // still queues (descriptors included) is dropped by the kernel rather than waiting in our receive queue.
                ShutdownSocket();
            }
        }
        finally
        {
            await writer.CompleteAsync().ConfigureAwait(false);
        }
    }

    private async Task WatchAsync()
    {
        await Task.Yield();
        Exception reason;
        try
        {
            while (true)
            {
                ControlMessage? message = await ReadMessageAsync(_stopping.Token).ConfigureAwait(false);
                if (TakeDescriptor() is { } unexpected)
                {
                    unexpected.Dispose();
                    throw new ProtocolViolationException("The peer passed a descriptor after the handshake.");
                }
                if (message is null)
                {
                    reason = new PeerDiedException(DescribeEnd(), Volatile.Read(ref _pumpError));
                    break;
                }
                if (message is RefusalMessage refusal)
                {
                    // The listener may still refuse after our Ready (it found a stray descriptor): the connection is over.
                    string said = PeerText.Sanitize(refusal.Reason);
                    reason = new PeerDiedException(said.Length == 0
                        ? $"The peer (pid {PeerCredentials.Pid}) on '{_name}' refused the connection after it was set up."
                        : $"The peer (pid {PeerCredentials.Pid}) on '{_name}' refused the connection after it was set up; it said: \"{said}\".");
                    ShutdownSocket();
                    break;
                }
                if (message is GoodbyeMessage goodbye)
                {
                    // The peer closes on purpose and says why (a server shutting down): the death carries its reason.
                    string said = PeerText.Sanitize(goodbye.Reason);
                    reason = new PeerDiedException($"The peer (pid {PeerCredentials.Pid}) on '{_name}' closed the connection: {said}", null, said);
                    ShutdownSocket();
                    break;
                }
                if (message is not (CancelMessage or FailedReplyMessage))
                {
                    throw new ProtocolViolationException($"The peer sent a {message.Kind} message after the handshake.");
                }
                _onMessage?.Invoke(message);
            }
        }
        catch (OperationCanceledException) when (_stopping.IsCancellationRequested)
        {
            reason = CloseReason ?? new ObjectDisposedException(nameof(ControlChannel));
        }
        catch (ProtocolViolationException violation)
        {
            reason = violation;
            // Close our end so the peer learns at once that the connection is over.
            ShutdownSocket();
        }
        Interlocked.CompareExchange(ref _closeReason, reason, null);
        await _peerDied.CancelAsync().ConfigureAwait(false);
    }

    private string DescribeEnd() =>
        Volatile.Read(ref _pumpError) is { } error and not OperationCanceledException
            ? $"The peer (pid {PeerCredentials.Pid}) on '{_name}' is gone: its control socket failed ({error.Message})."
            : $"The peer (pid {PeerCredentials.Pid}) on '{_name}' is gone: it closed its control socket or exited.";

    private void WaitUntilWritable(CancellationToken cancellationToken)
    {
        // Only a descriptor-carrying frame gets here, and only when the socket's buffer (hundreds of KiB) is full of
        // earlier control frames: rare enough for a blocking poll in short slices that notice cancellation.
        while (!_socket.Poll(TimeSpan.FromMilliseconds(50), SelectMode.SelectWrite))
        {
            cancellationToken.ThrowIfCancellationRequested();
        }
    }

    private void ShutdownSocket()
    {
        try
        {
            _socket.Shutdown(SocketShutdown.Both);
        }
        catch (Exception error) when (error is SocketException or ObjectDisposedException)
        {
            // Already closed or never fully connected: nothing to shut down.
        }
    }
}
