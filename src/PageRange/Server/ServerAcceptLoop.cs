using PageRange.Transport;

namespace PageRange.Server;

/// <summary>
/// A server's accept side: takes each connection whose handshake completed (the listener runs handshakes concurrently,
/// each with its own deadline, so a silent client never delays another) and hands it to the admission callback;
/// nothing one client does ends the loop.
/// </summary>
internal sealed class ServerAcceptLoop : IDisposable
{
    // After an accept failed for a reason of this process (out of descriptors or memory), wait a little before the next
    // try rather than spin on the same error.
    private static readonly TimeSpan s_retryDelay = TimeSpan.FromMilliseconds(100);

    private readonly PageRangeListener _listener;
    private readonly Func<PageRangeConnection, Task> _admit;
    private readonly Action<Exception> _failed;
    private readonly CancellationTokenSource _stop = new();
    private Task _loop = Task.CompletedTask;

    internal ServerAcceptLoop(PageRangeListener listener, Func<PageRangeConnection, Task> admit, Action<Exception> failed)
    {
        _listener = listener;
        _admit = admit;
        _failed = failed;
    }

    internal void Start() => _loop = Task.Run(AcceptLoopAsync);

    /// <summary>Stops accepting: closes the listener (its name is free at once) and waits for the loop to end.</summary>
    internal async Task StopAsync()
    {
        await _stop.CancelAsync().ConfigureAwait(false);
        await _listener.DisposeAsync().ConfigureAwait(false);
        await _loop.ConfigureAwait(false);
        Dispose();
    }

    /// <summary>Frees the stop signal; <see cref="StopAsync"/> calls this once the loop ended.</summary>
    public void Dispose() => _stop.Dispose();

    private async Task AcceptLoopAsync()
    {
        CancellationToken stop = _stop.Token;
        while (!stop.IsCancellationRequested)
        {
            PageRangeConnection connection;
            try
            {
                connection = await _listener.AcceptAsync(stop).ConfigureAwait(false);
            }
            catch (Exception error) when (error is OperationCanceledException or ObjectDisposedException && stop.IsCancellationRequested)
            {
                return;
            }
            catch (Exception error) when (error is PageRangeException or IOException or System.Net.Sockets.SocketException or TimeoutException)
            {
                // The listener reports a failed handshake through its event and goes on; what reaches here failed before
                // or after a handshake for a reason of this process (descriptors, memory): report it, back off, go on.
                _failed(error);
                if (_listener.StoppedAccepting)
                {
                    // For good: every later accept fails the same way at once. Reported once; retried every 100 ms it
                    // was reported ten times a second for the server's life (found by review).
                    return;
                }
                try
                {
                    await Task.Delay(s_retryDelay, stop).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    return;
                }
                continue;
            }
            try
            {
                await _admit(connection).ConfigureAwait(false);
            }
#pragma warning disable CA1031 // One client's admission that failed must not end the accept loop: every later client would be refused.
            catch (Exception error)
#pragma warning restore CA1031
            {
                _failed(error);
                await connection.DisposeAsync().ConfigureAwait(false);
            }
        }
    }
}
