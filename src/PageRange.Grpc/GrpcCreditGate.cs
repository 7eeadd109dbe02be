namespace PageRange.Grpc;

/// <summary>
/// A stream writer's credits: it sends a message only while it holds a message credit and byte credit is left; the
/// reader grants them back as it reads (<see cref="GrpcInbox{T}"/>). A grant beyond the window is the peer's violation.
/// </summary>
internal sealed class GrpcCreditGate
{
    private readonly Lock _lock = new();
    private TaskCompletionSource? _waiter;
    private int _messages;
    private long _bytes;
    private Exception? _failed;

    internal GrpcCreditGate(int messages, long bytes)
    {
        _messages = messages;
        _bytes = bytes;
    }

    /// <summary>Whether the reader granted anything yet (a client stream's writer waits for the server's first grant).</summary>
    internal bool EverGranted { get; private set; }

    /// <summary>Credits held now (tests look).</summary>
    internal int Messages
    {
        get
        {
            lock (_lock)
            {
                return _messages;
            }
        }
    }

    /// <summary>Takes a message credit if one (and some byte credit) is held now.</summary>
    /// <returns>False if the writer has to wait (<see cref="TakeAsync"/>).</returns>
    /// <exception cref="Exception">What <see cref="Fail"/> was given.</exception>
    internal bool TryTake()
    {
        lock (_lock)
        {
            if (_failed is not null)
            {
                throw _failed;
            }
            if (_messages > 0 && _bytes > 0)
            {
                _messages--;
                return true;
            }
            return false;
        }
    }

    /// <summary>Waits for a message credit and some byte credit, and takes the message credit.</summary>
    /// <exception cref="Exception">What <see cref="Fail"/> was given.</exception>
    internal async ValueTask TakeAsync(CancellationToken cancellationToken)
    {
        while (true)
        {
            Task wait;
            lock (_lock)
            {
                if (_failed is not null)
                {
                    throw _failed;
                }
                if (_messages > 0 && _bytes > 0)
                {
                    _messages--;
                    return;
                }
                _waiter ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                wait = _waiter.Task;
            }
            await wait.WaitAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>Waits until the reader granted credits once (the stream exists on the other side).</summary>
    internal async ValueTask WaitGrantedAsync(CancellationToken cancellationToken)
    {
        while (true)
        {
            Task wait;
            lock (_lock)
            {
                if (_failed is not null)
                {
                    throw _failed;
                }
                if (EverGranted)
                {
                    return;
                }
                _waiter ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                wait = _waiter.Task;
            }
            await wait.WaitAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>Counts the bytes of a message sent under a credit taken with <see cref="TakeAsync"/>.</summary>
    internal void Consume(int bytes)
    {
        lock (_lock)
        {
            _bytes -= bytes;
        }
    }

    /// <summary>Gives back a message credit taken for a message that was not sent (it did not serialize or fit), and the
    /// <paramref name="bytes"/> charged for it, if any.</summary>
    internal void Return(int bytes = 0)
    {
        TaskCompletionSource? waiter;
        lock (_lock)
        {
            _messages++;
            _bytes += bytes;
            waiter = _waiter;
            _waiter = null;
        }
        waiter?.TrySetResult();
    }

    /// <summary>Adds the reader's grant.</summary>
    /// <returns>False if it goes past the window: the peer broke the protocol.</returns>
    internal bool TryGrant(int messages, int bytes)
    {
        TaskCompletionSource? waiter;
        lock (_lock)
        {
            if (messages < 0 || bytes < 0 || _messages + messages > GrpcWire.WindowMessages || _bytes + bytes > GrpcWire.WindowBytes)
            {
                return false;
            }
            _messages += messages;
            _bytes += bytes;
            EverGranted = true;
            waiter = _waiter;
            _waiter = null;
        }
        waiter?.TrySetResult();
        return true;
    }

    /// <summary>Ends the stream for the writer: waiting and later takes throw <paramref name="error"/>.</summary>
    internal void Fail(Exception error)
    {
        TaskCompletionSource? waiter;
        lock (_lock)
        {
            _failed ??= error;
            waiter = _waiter;
            _waiter = null;
        }
        waiter?.TrySetResult();
    }
}
