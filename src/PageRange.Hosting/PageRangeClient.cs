// Locks: _lock only; never held while connecting, disposing a connection or logging.

using System.Diagnostics.CodeAnalysis;
using MessagePack;
using Microsoft.Extensions.Logging;
using PageRange.Serialization;
using PageRange.Transport;

namespace PageRange.Hosting;

/// <summary>
/// A named connection to a PageRange server that connects on first use and again after the server went away (died,
/// restarted, shut down), with a capped exponential backoff between failed attempts. While it has no connection, a
/// use fails at once with <see cref="ServerUnavailableException"/>, which names the server and the next attempt.
/// </summary>
/// <remarks>
/// <para>
/// Get one from the service provider by name (<c>[FromKeyedServices("name")]</c>, <c>GetRequiredKeyedService</c>) or
/// from <see cref="IPageRangeClientFactory"/>; the provider disposes it with the host. Every member may be called from
/// any thread; calls on one connection run concurrently as <see cref="PageRangeConnection"/>'s do.
/// </para>
/// <para>
/// Nothing is retried for the caller: a call lost with its connection may have run on the server, so only the caller
/// can know whether to repeat it.
/// </para>
/// </remarks>
public sealed class PageRangeClient : IAsyncDisposable, IDisposable
{
    private readonly Lock _lock = new();
    private readonly PageRangeClientOptions _settings;
    private readonly PageRangeOptions _connectionOptions;
    private readonly ILogger _logger;
    private readonly TimeProvider _time;
    private readonly CancellationTokenSource _disposing = new();
    private PageRangeConnection? _connection;
    private Task<PageRangeConnection>? _connecting;
    private int _failedAttempts;
    private long _nextAttemptTimestamp;
    private DateTimeOffset _nextAttemptAt;
    private Exception? _lastError;
    private bool _disposed;

    internal PageRangeClient(string name, PageRangeClientOptions settings, ILoggerFactory? loggerFactory, TimeProvider time)
    {
        Name = name;
        _settings = settings;
        ServerName = settings.ServerName ?? name;
        _connectionOptions = settings.CreateConnectionOptions(loggerFactory);
        _logger = loggerFactory?.CreateLogger(PageRangeHostingLogEvents.Category) ?? Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance;
        _time = time;
    }

    /// <summary>The client's name (its key in the service collection).</summary>
    public string Name { get; }

    /// <summary>The server it connects to.</summary>
    public string ServerName { get; }

    /// <summary>Whether it has a live connection now (a use may still find it lost a moment later).</summary>
    public bool IsConnected => Volatile.Read(ref _connection) is { IsPeerAlive: true };

    /// <summary>Returns the live connection, connecting first if there is none.</summary>
    /// <param name="cancellationToken">Cancels this caller's wait for a connection in progress (not the attempt, which others may share).</param>
    /// <returns>The connection. Do not dispose it: the client owns it. It may die at any time; the client then makes a new one.</returns>
    /// <exception cref="ServerUnavailableException">No connection now: the attempt failed, or the next one is not due yet.</exception>
    /// <exception cref="ObjectDisposedException">The client was disposed.</exception>
    /// <exception cref="OperationCanceledException">The token was cancelled.</exception>
    public ValueTask<PageRangeConnection> GetConnectionAsync(CancellationToken cancellationToken = default)
    {
        PageRangeConnection? connection = Volatile.Read(ref _connection);
        return connection is { IsPeerAlive: true } ? new(connection) : GetConnectionSlowAsync(cancellationToken);
    }

    /// <summary>Calls the server and completes with its reply.</summary>
    /// <param name="code">The method or opcode.</param>
    /// <param name="payload">The request bytes; may be empty.</param>
    /// <param name="timeout">How long to wait for the reply; defaults to the connection's <see cref="PageRangeOptions.CallTimeout"/>.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    /// <returns>The reply, read in place. Dispose it.</returns>
    /// <exception cref="ServerUnavailableException">No connection now, or it was lost during the call (which may have run).</exception>
    /// <exception cref="RemoteCallException">The server's handler failed the call.</exception>
    /// <remarks>The other exceptions are those of <see cref="PageRangeConnection.CallAsync(uint, ReadOnlyMemory{byte}, TimeSpan?, CancellationToken)"/>.</remarks>
    public async ValueTask<Transaction> CallAsync(uint code, ReadOnlyMemory<byte> payload, TimeSpan? timeout = null, CancellationToken cancellationToken = default)
    {
        PageRangeConnection connection = await GetConnectionAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            return await connection.CallAsync(code, payload, timeout, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception error) when (IsConnectionLoss(connection, error))
        {
            throw Lost(connection, error);
        }
    }

    /// <summary>Calls the server and waits on this thread for its reply.</summary>
    /// <inheritdoc cref="CallAsync(uint, ReadOnlyMemory{byte}, TimeSpan?, CancellationToken)"/>
    public Transaction Call(uint code, ReadOnlySpan<byte> payload, TimeSpan? timeout = null, CancellationToken cancellationToken = default)
    {
        PageRangeConnection connection = GetConnection(cancellationToken);
        try
        {
            return connection.Call(code, payload, timeout, cancellationToken);
        }
        catch (Exception error) when (IsConnectionLoss(connection, error))
        {
            throw Lost(connection, error);
        }
    }

    /// <summary>Sends a oneway message to the server.</summary>
    /// <param name="code">The method or opcode.</param>
    /// <param name="payload">The bytes; may be empty.</param>
    /// <exception cref="ServerUnavailableException">No connection now, or it was lost while sending.</exception>
    /// <remarks>The other exceptions are those of <see cref="PageRangeConnection.SendOneway(uint, ReadOnlySpan{byte})"/>.</remarks>
    public void SendOneway(uint code, ReadOnlySpan<byte> payload)
    {
        PageRangeConnection connection = GetConnection(CancellationToken.None);
        try
        {
            connection.SendOneway(code, payload);
        }
        catch (Exception error) when (IsConnectionLoss(connection, error))
        {
            throw Lost(connection, error);
        }
    }

    /// <summary>Calls the server with a typed MessagePack request and completes with its typed reply.</summary>
    /// <typeparam name="TRequest">The request type.</typeparam>
    /// <typeparam name="TResponse">The response type.</typeparam>
    /// <param name="request">The request.</param>
    /// <param name="code">The method or opcode.</param>
    /// <param name="options">Serializer options; defaults to <see cref="PageRangeMessagePack.DefaultOptions"/>.</param>
    /// <param name="timeout">How long to wait for the reply.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    /// <returns>The reply, deserialized.</returns>
    /// <exception cref="ServerUnavailableException">No connection now, or it was lost during the call (which may have run).</exception>
    /// <remarks>The other exceptions are those of <see cref="PageRangeMessagePack.CallAsync{TRequest, TResponse}(PageRange.Transport.PageRangeConnection, TRequest, uint, MessagePack.MessagePackSerializerOptions, System.Nullable{System.TimeSpan}, System.Threading.CancellationToken)"/>.</remarks>
    [RequiresDynamicCode("MessagePack's default resolver generates code at run time.")]
    [RequiresUnreferencedCode("MessagePack's default resolver reflects over the message type.")]
    public async ValueTask<TResponse> CallAsync<TRequest, TResponse>(
        TRequest request, uint code = PageRangeMessagePack.DefaultCode, MessagePackSerializerOptions? options = null,
        TimeSpan? timeout = null, CancellationToken cancellationToken = default)
    {
        PageRangeConnection connection = await GetConnectionAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            return await connection.CallAsync<TRequest, TResponse>(request, code, options, timeout, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception error) when (IsConnectionLoss(connection, error))
        {
            throw Lost(connection, error);
        }
    }

    /// <summary>Calls the server with a typed MessagePack request and waits on this thread for its typed reply.</summary>
    /// <inheritdoc cref="CallAsync{TRequest, TResponse}(TRequest, uint, MessagePackSerializerOptions?, TimeSpan?, CancellationToken)"/>
    [RequiresDynamicCode("MessagePack's default resolver generates code at run time.")]
    [RequiresUnreferencedCode("MessagePack's default resolver reflects over the message type.")]
    public TResponse Call<TRequest, TResponse>(
        TRequest request, uint code = PageRangeMessagePack.DefaultCode, MessagePackSerializerOptions? options = null,
        TimeSpan? timeout = null, CancellationToken cancellationToken = default)
    {
        PageRangeConnection connection = GetConnection(cancellationToken);
        try
        {
            return connection.Call<TRequest, TResponse>(request, code, options, timeout, cancellationToken);
        }
        catch (Exception error) when (IsConnectionLoss(connection, error))
        {
            throw Lost(connection, error);
        }
    }

    /// <summary>Sends a typed MessagePack message to the server, oneway.</summary>
    /// <typeparam name="T">The message type.</typeparam>
    /// <param name="message">The message.</param>
    /// <param name="code">The method or opcode.</param>
    /// <param name="options">Serializer options; defaults to <see cref="PageRangeMessagePack.DefaultOptions"/>.</param>
    /// <exception cref="ServerUnavailableException">No connection now, or it was lost while sending.</exception>
    [RequiresDynamicCode("MessagePack's default resolver generates code at run time.")]
    [RequiresUnreferencedCode("MessagePack's default resolver reflects over the message type.")]
    public void SendOneway<T>(T message, uint code = PageRangeMessagePack.DefaultCode, MessagePackSerializerOptions? options = null)
    {
        PageRangeConnection connection = GetConnection(CancellationToken.None);
        try
        {
            connection.SendOneway(message, code, options);
        }
        catch (Exception error) when (IsConnectionLoss(connection, error))
        {
            throw Lost(connection, error);
        }
    }

    /// <summary>Closes the connection (the server sees this client leave) and fails later uses with <see cref="ObjectDisposedException"/>.</summary>
    public async ValueTask DisposeAsync()
    {
        PageRangeConnection? connection;
        Task<PageRangeConnection>? connecting;
        lock (_lock)
        {
            if (_disposed)
            {
                return;
            }
            _disposed = true;
            connection = _connection;
            connecting = _connecting;
            _connection = null;
        }
        await _disposing.CancelAsync().ConfigureAwait(false);
        if (connecting is not null)
        {
            // The attempt sees the cancellation and disposes what it made; wait so nothing outlives the client.
            await connecting.ContinueWith(static _ => { }, CancellationToken.None, TaskContinuationOptions.None, TaskScheduler.Default).ConfigureAwait(false);
        }
        if (connection is not null)
        {
            await connection.DisposeAsync().ConfigureAwait(false);
        }
        _disposing.Dispose();
    }

    /// <inheritdoc cref="DisposeAsync"/>
    public void Dispose() => DisposeAsync().AsTask().GetAwaiter().GetResult();

    private PageRangeConnection GetConnection(CancellationToken cancellationToken)
    {
        PageRangeConnection? connection = Volatile.Read(ref _connection);
        // Blocking only on a connect, which takes a handshake, never on the steady path.
        return connection is { IsPeerAlive: true } ? connection : GetConnectionSlowAsync(cancellationToken).AsTask().GetAwaiter().GetResult();
    }

    private async ValueTask<PageRangeConnection> GetConnectionSlowAsync(CancellationToken cancellationToken)
    {
        Task<PageRangeConnection> attempt;
        bool started = false;
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_connection is { IsPeerAlive: true } live)
            {
                return live;
            }
            if (_connecting is null)
            {
                if (_failedAttempts > 0 && _time.GetTimestamp() < _nextAttemptTimestamp)
                {
                    throw UnavailableUnsynchronized(_lastError, "the last attempt to connect failed");
                }
                _connecting = ConnectAsync();
                started = true;
            }
            attempt = _connecting;
        }
        if (started)
        {
            // Observed here once: every waiter may have given up (cancelled) before the attempt failed.
            _ = attempt.ContinueWith(static task => _ = task.Exception, CancellationToken.None, TaskContinuationOptions.OnlyOnFaulted, TaskScheduler.Default);
        }
        try
        {
            return await attempt.WaitAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (Exception error) when (error is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
        {
            lock (_lock)
            {
                ObjectDisposedException.ThrowIf(_disposed, this);
                throw UnavailableUnsynchronized(error, "connecting failed");
            }
        }
    }

    /// <summary>One attempt to connect; on failure it schedules the next one. Started under the lock, runs outside it.</summary>
    private async Task<PageRangeConnection> ConnectAsync()
    {
        // Leave the caller's lock before the handshake's first system call.
        await Task.Yield();
        PageRangeConnection connection;
        try
        {
            connection = await PageRangeConnection.ConnectAsync(ServerName, _connectionOptions, _disposing.Token).ConfigureAwait(false);
        }
        catch (Exception error) when (error is not OperationCanceledException || !_disposing.IsCancellationRequested)
        {
            TimeSpan delay;
            int failures;
            lock (_lock)
            {
                failures = ++_failedAttempts;
                delay = ReconnectBackoff.Delay(failures, _settings.ReconnectDelay, _settings.MaxReconnectDelay, _settings.ReconnectJitter, Random.Shared.NextDouble());
                _nextAttemptTimestamp = _time.GetTimestamp() + (long)(delay.TotalSeconds * _time.TimestampFrequency);
                _nextAttemptAt = _time.GetUtcNow() + delay;
                _lastError = error;
                _connecting = null;
            }
            HostingLog.ClientConnectFailed(_logger, Name, ServerName, failures, (long)delay.TotalMilliseconds, error.Message);
            throw;
        }
        bool disposed;
        lock (_lock)
        {
            disposed = _disposed;
            if (!disposed)
            {
                _connection = connection;
                _failedAttempts = 0;
                _lastError = null;
            }
            _connecting = null;
        }
        if (disposed)
        {
            await connection.DisposeAsync().ConfigureAwait(false);
            throw new ObjectDisposedException(nameof(PageRangeClient));
        }
        // The registration lives as long as the connection: its token is cancelled once, when the connection ends.
        connection.PeerDied.UnsafeRegister(static (state, _) =>
        {
            var (client, lost) = ((PageRangeClient, PageRangeConnection))state!;
            client.OnConnectionLost(lost, cause: null);
        }, (this, connection));
        HostingLog.ClientConnected(_logger, Name, ServerName, connection.PeerPid);
        return connection;
    }

    /// <summary>Forgets a dead connection (once) so the next use connects again, and closes it off the caller's thread.</summary>
    private void OnConnectionLost(PageRangeConnection connection, Exception? cause)
    {
        lock (_lock)
        {
            if (!ReferenceEquals(_connection, connection))
            {
                return;
            }
            _connection = null;
            _failedAttempts = 0;
            _lastError = cause;
        }
        HostingLog.ClientConnectionLost(_logger, Name, ServerName, cause?.Message ?? "the server closed the connection or exited");
        // Not on this thread: it may be the connection's own death notification, which its disposal waits for.
        _ = Task.Run(async () => await connection.DisposeAsync().ConfigureAwait(false));
    }

    private bool IsConnectionLoss(PageRangeConnection connection, Exception error) =>
        error is PeerDiedException || (error is ObjectDisposedException && !connection.IsPeerAlive && !Volatile.Read(ref _disposed));

    private ServerUnavailableException Lost(PageRangeConnection connection, Exception error)
    {
        OnConnectionLost(connection, error);
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            return UnavailableUnsynchronized(error, "the connection was lost during the call, which may have run");
        }
    }

    private ServerUnavailableException UnavailableUnsynchronized(Exception? cause, string what)
    {
        long now = _time.GetTimestamp();
        TimeSpan wait = _failedAttempts > 0 && _nextAttemptTimestamp > now
            ? TimeSpan.FromSeconds((double)(_nextAttemptTimestamp - now) / _time.TimestampFrequency)
            : TimeSpan.Zero;
        DateTimeOffset retryAt = wait == TimeSpan.Zero ? _time.GetUtcNow() : _nextAttemptAt;
        string reason = cause switch
        {
            PeerDiedException { PeerReason: { } said } => $"the server said \"{said}\"",
            null => "no connection",
            _ => cause.Message,
        };
        string next = wait == TimeSpan.Zero ? "the next use connects again" : $"the next attempt is at {retryAt:HH:mm:ss.fff} UTC (in {wait.TotalMilliseconds:0} ms)";
        return new ServerUnavailableException(
            $"PageRange server '{ServerName}' is unavailable to client '{Name}': {what} ({reason}); {next}" +
            (_failedAttempts > 0 ? $", after {_failedAttempts} failed attempts in a row." : "."),
            ServerName, Name, retryAt, _failedAttempts, cause);
    }
}
