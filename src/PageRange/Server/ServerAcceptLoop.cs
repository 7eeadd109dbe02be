using PageRange.Transport;

namespace PageRange.Server;

/// <summary>
/// A server's accept side: several handshakes at once on one listener, so a client that connects and stays silent
/// holds one of them for at most its handshake deadline and never delays the others; each accepted connection goes to
/// the admission callback; nothing one client does ends the loop.
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
    private readonly Task[] _loops;

    internal ServerAcceptLoop(PageRangeListener listener, int concurrency, Func<PageRangeConnection, Task> admit, Action<Exception> failed)
    {
        _listener = listener;
        _admit = admit;
        _failed = failed;
        _loops = new Task[concurrency];
    }

    internal void Start()
    {
        for (int i = 0; i < _loops.Length; i++)
        {
            _loops[i] = Task.Run(AcceptLoopAsync);
        }
    }

    /// <summary>Stops accepting: closes the listener (its name is free at once) and waits for the loops to end.</summary>
    internal async Task StopAsync()
    {
        await _stop.CancelAsync().ConfigureAwait(false);
        await _listener.DisposeAsync().ConfigureAwait(false);
        await Task.WhenAll(_loops).ConfigureAwait(false);
        Dispose();
    }

    /// <summary>Frees the stop signal; <see cref="StopAsync"/> calls this once the loops ended.</summary>
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
            await _admit(connection).ConfigureAwait(false);
        }
    }
}
