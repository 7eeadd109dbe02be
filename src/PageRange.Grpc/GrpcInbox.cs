namespace PageRange.Grpc;

/// <summary>
/// The messages of one stream that arrived and wait for the application to read them: at most the window (messages and
/// bytes) the reader granted. As the application reads, credits go back to the writer in batches (a quarter of the
/// window), so a slow reader holds its writer back and nothing here grows without bound.
/// </summary>
/// <typeparam name="T">The message type.</typeparam>
internal sealed class GrpcInbox<T>
    where T : class
{
    private readonly Lock _lock = new();
    private readonly Queue<(T Message, int Size)> _queue = new();
    private readonly Action<int, int> _grant;
    private TaskCompletionSource? _waiter;
    private bool _ended;
    private Exception? _error;
    private bool _errorAfterQueued;
    private long _queuedBytes;
    private int _ungrantedMessages;
    private long _ungrantedBytes;

    /// <param name="grant">Sends credits (messages, bytes) back to the writer; must not throw.</param>
    internal GrpcInbox(Action<int, int> grant) => _grant = grant;

    /// <summary>The message the last successful <see cref="MoveNextAsync"/> read.</summary>
    internal T? Current { get; private set; }

    /// <summary>Messages waiting (tests look).</summary>
    internal int Count
    {
        get
        {
            lock (_lock)
            {
                return _queue.Count;
            }
        }
    }

    /// <summary>Adds an arrived message of <paramref name="size"/> wire bytes.</summary>
    /// <returns>False if the writer went past the window it was granted: the peer broke the protocol.</returns>
    internal bool TryAdd(T message, int size)
    {
        TaskCompletionSource? waiter;
        lock (_lock)
        {
            int outstanding = _queue.Count + _ungrantedMessages;
            long outstandingBytes = _queuedBytes + _ungrantedBytes;
            if (outstanding >= GrpcWire.WindowMessages || outstandingBytes >= GrpcWire.WindowBytes)
            {
                return false;
            }
            if (_ended)
            {
                return true;
            }
            _queue.Enqueue((message, size));
            _queuedBytes += size;
            waiter = _waiter;
            _waiter = null;
        }
        waiter?.TrySetResult();
        return true;
    }

    /// <summary>No more messages: reads end after the queued ones, or at once with <paramref name="error"/>.</summary>
    internal void End(Exception? error = null) => End(error, afterQueued: false);

    /// <summary>
    /// No more messages: reads return the queued ones, then throw <paramref name="error"/> (a status that followed the
    /// messages, as gRPC delivers every message before the status).
    /// </summary>
    internal void EndAfterQueued(Exception error) => End(error, afterQueued: true);

    private void End(Exception? error, bool afterQueued)
    {
        TaskCompletionSource? waiter;
        lock (_lock)
        {
            _ended = true;
            if (_error is null)
            {
                _error = error;
                _errorAfterQueued = afterQueued;
            }
            else if (error is not null && !afterQueued)
            {
                // An error that ends reads at once (cancellation, a lost connection) overrides one waiting its turn.
                _errorAfterQueued = false;
            }
            waiter = _waiter;
            _waiter = null;
        }
        waiter?.TrySetResult();
    }

    /// <summary>Waits for the next message.</summary>
    /// <returns>True with <see cref="Current"/> set; false at the end of the stream.</returns>
    internal async Task<bool> MoveNextAsync(CancellationToken cancellationToken)
    {
        while (true)
        {
            Task wait;
            int grantMessages = 0;
            int grantBytes = 0;
            lock (_lock)
            {
                if (_error is not null && !_errorAfterQueued)
                {
                    throw _error;
                }
                if (_queue.TryDequeue(out (T Message, int Size) item))
                {
                    Current = item.Message;
                    _queuedBytes -= item.Size;
                    _ungrantedMessages++;
                    _ungrantedBytes += item.Size;
                    if (!_ended && (_ungrantedMessages >= GrpcWire.WindowMessages / 4 || _ungrantedBytes >= GrpcWire.WindowBytes / 4))
                    {
                        grantMessages = _ungrantedMessages;
                        grantBytes = (int)_ungrantedBytes;
                        _ungrantedMessages = 0;
                        _ungrantedBytes = 0;
                    }
                }
                else if (_ended)
                {
                    if (_error is not null)
                    {
                        throw _error;
                    }
                    Current = null;
                    return false;
                }
                else
                {
                    _waiter ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                    wait = _waiter.Task;
                    goto Wait;
                }
            }
            if (grantMessages > 0)
            {
                _grant(grantMessages, grantBytes);
            }
            return true;
        Wait:
            await wait.WaitAsync(cancellationToken).ConfigureAwait(false);
        }
    }
}
