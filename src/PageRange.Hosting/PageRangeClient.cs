// Locks: _lock only; never held while connecting, disposing a connection or logging.

using System.Diagnostics;
using System.Diagnostics.CodeAnalysis;
using MessagePack;
using Microsoft.Extensions.Logging;
using PageRange.Serialization;
using PageRange.Transport;

namespace PageRange.Hosting;

/// <summary>
/// A named connection to a PageRange server that connects on first use and again after the server went away (died,
/// restarted, shut down), with a capped exponential backoff between failed attempts (a connection lost soon after it was
/// made counts as one: <see cref="PageRangeClientOptions.HealthyConnectionTime"/>). A use that finds no connection
/// starts an attempt (or joins the one in progress) and waits for it, up to the connection's connect timeout; during the
/// backoff after a failed attempt, a use fails at once. Either way the failure is a <see cref="ServerUnavailableException"/>,
/// which names the server and the next attempt.
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
    private ClientConnection? _connection;
    private Task<ClientConnection>? _connecting;
    private int _failedAttempts;
    private long _nextAttemptTimestamp;
    private DateTimeOffset _nextAttemptAt;
    private Exception? _lastError;
    private Task _retiring = Task.CompletedTask;
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
    public bool IsConnected => Volatile.Read(ref _connection) is { Connection.IsPeerAlive: true };

    /// <summary>Returns the live connection, connecting first if there is none.</summary>
    /// <param name="cancellationToken">Cancels this caller's wait for a connection in progress (not the attempt, which others may share).</param>
    /// <returns>The connection. Do not dispose it: the client owns it. It may die at any time; the client then closes it
    /// (a call still waiting on it directly may then fail with <see cref="ObjectDisposedException"/>) and makes a new one.</returns>
    /// <exception cref="ServerUnavailableException">No connection now: the attempt failed, or the next one is not due yet.</exception>
    /// <exception cref="ObjectDisposedException">The client was disposed.</exception>
    /// <exception cref="OperationCanceledException">The token was cancelled.</exception>
    public async ValueTask<PageRangeConnection> GetConnectionAsync(CancellationToken cancellationToken = default)
    {
        ClientConnection holder = await EnterAsync(cancellationToken).ConfigureAwait(false);
        Exit(holder);
        return holder.Connection;
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
        ClientConnection holder = await EnterAsync(cancellationToken).ConfigureAwait(false);
        PageRangeConnection connection = holder.Connection;
        try
        {
            return await connection.CallAsync(code, payload, timeout, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception error) when (IsConnectionLoss(connection, error))
        {
            throw Lost(holder, error);
        }
        finally
        {
            Exit(holder);
        }
    }

    /// <summary>Calls the server and waits on this thread for its reply.</summary>
    /// <inheritdoc cref="CallAsync(uint, ReadOnlyMemory{byte}, TimeSpan?, CancellationToken)"/>
    public Transaction Call(uint code, ReadOnlySpan<byte> payload, TimeSpan? timeout = null, CancellationToken cancellationToken = default)
    {
        ClientConnection holder = Enter(cancellationToken);
        PageRangeConnection connection = holder.Connection;
        try
        {
            return connection.Call(code, payload, timeout, cancellationToken);
        }
        catch (Exception error) when (IsConnectionLoss(connection, error))
        {
            throw Lost(holder, error);
        }
        finally
        {
            Exit(holder);
        }
    }

    /// <summary>Sends a oneway message to the server.</summary>
    /// <param name="code">The method or opcode.</param>
    /// <param name="payload">The bytes; may be empty.</param>
    /// <exception cref="ServerUnavailableException">No connection now, or it was lost while sending.</exception>
    /// <remarks>The other exceptions are those of <see cref="PageRangeConnection.SendOneway(uint, ReadOnlySpan{byte})"/>.</remarks>
    public void SendOneway(uint code, ReadOnlySpan<byte> payload)
    {
        ClientConnection holder = Enter(CancellationToken.None);
        PageRangeConnection connection = holder.Connection;
        try
        {
            connection.SendOneway(code, payload);
        }
        catch (Exception error) when (IsConnectionLoss(connection, error))
        {
            throw Lost(holder, error);
        }
        finally
        {
            Exit(holder);
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
    /// <remarks>The other exceptions are those of <see cref="PageRangeMessagePack.CallAsync{TRequest, TResponse}(PageRangeConnection, TRequest, uint, MessagePackSerializerOptions?, TimeSpan?, CancellationToken)"/>.</remarks>
    [RequiresDynamicCode("MessagePack's default resolver generates code at run time.")]
    [RequiresUnreferencedCode("MessagePack's default resolver reflects over the message type.")]
    public async ValueTask<TResponse> CallAsync<TRequest, TResponse>(
        TRequest request, uint code = PageRangeMessagePack.DefaultCode, MessagePackSerializerOptions? options = null,
        TimeSpan? timeout = null, CancellationToken cancellationToken = default)
    {
        ClientConnection holder = await EnterAsync(cancellationToken).ConfigureAwait(false);
        PageRangeConnection connection = holder.Connection;
        try
        {
            return await connection.CallAsync<TRequest, TResponse>(request, code, options, timeout, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception error) when (IsConnectionLoss(connection, error))
        {
            throw Lost(holder, error);
        }
        finally
        {
            Exit(holder);
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
        ClientConnection holder = Enter(cancellationToken);
        PageRangeConnection connection = holder.Connection;
        try
        {
            return connection.Call<TRequest, TResponse>(request, code, options, timeout, cancellationToken);
        }
        catch (Exception error) when (IsConnectionLoss(connection, error))
        {
            throw Lost(holder, error);
        }
        finally
        {
            Exit(holder);
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
        ClientConnection holder = Enter(CancellationToken.None);
        PageRangeConnection connection = holder.Connection;
        try
        {
            connection.SendOneway(message, code, options);
        }
        catch (Exception error) when (IsConnectionLoss(connection, error))
        {
            throw Lost(holder, error);
        }
        finally
        {
            Exit(holder);
        }
    }

    /// <summary>Calls the server with a struct's bytes and completes with its reply, read as a <typeparamref name="TResponse"/> (<see cref="PageRangeStructs"/>).</summary>
    /// <typeparam name="TRequest">The request type: an unmanaged struct the server defines alike.</typeparam>
    /// <typeparam name="TResponse">The response type: an unmanaged struct the server defines alike.</typeparam>
    /// <param name="code">The method or opcode.</param>
    /// <param name="request">The request.</param>
    /// <param name="timeout">How long to wait for the reply.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    /// <returns>A copy of the reply.</returns>
    /// <exception cref="ServerUnavailableException">No connection now, or it was lost during the call (which may have run).</exception>
    /// <remarks>The other exceptions are those of <see cref="PageRangeStructs.CallStructAsync{TRequest, TResponse}(PageRangeConnection, uint, TRequest, TimeSpan?, CancellationToken)"/>.</remarks>
    public async ValueTask<TResponse> CallStructAsync<TRequest, TResponse>(
        uint code, TRequest request, TimeSpan? timeout = null, CancellationToken cancellationToken = default)
        where TRequest : unmanaged
        where TResponse : unmanaged
    {
        ClientConnection holder = await EnterAsync(cancellationToken).ConfigureAwait(false);
        PageRangeConnection connection = holder.Connection;
        try
        {
            return await connection.CallStructAsync<TRequest, TResponse>(code, request, timeout, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception error) when (IsConnectionLoss(connection, error))
        {
            throw Lost(holder, error);
        }
        finally
        {
            Exit(holder);
        }
    }

    /// <summary>Calls the server with a struct's bytes and waits on this thread for its reply, read as a <typeparamref name="TResponse"/>.</summary>
    /// <inheritdoc cref="CallStructAsync{TRequest, TResponse}(uint, TRequest, TimeSpan?, CancellationToken)"/>
    public TResponse CallStruct<TRequest, TResponse>(
        uint code, in TRequest request, TimeSpan? timeout = null, CancellationToken cancellationToken = default)
        where TRequest : unmanaged
        where TResponse : unmanaged
    {
        ClientConnection holder = Enter(cancellationToken);
        PageRangeConnection connection = holder.Connection;
        try
        {
            return connection.CallStruct<TRequest, TResponse>(code, in request, timeout, cancellationToken);
        }
        catch (Exception error) when (IsConnectionLoss(connection, error))
        {
            throw Lost(holder, error);
        }
        finally
        {
            Exit(holder);
        }
    }

    /// <summary>Sends a struct's bytes to the server, oneway (<see cref="PageRangeStructs"/>).</summary>
    /// <typeparam name="T">The message type: an unmanaged struct the server defines alike.</typeparam>
    /// <param name="code">The method or opcode.</param>
    /// <param name="message">The message.</param>
    /// <exception cref="ServerUnavailableException">No connection now, or it was lost while sending.</exception>
    public void SendOnewayStruct<T>(uint code, in T message)
        where T : unmanaged
    {
        ClientConnection holder = Enter(CancellationToken.None);
        PageRangeConnection connection = holder.Connection;
        try
        {
            connection.SendOnewayStruct(code, in message);
        }
        catch (Exception error) when (IsConnectionLoss(connection, error))
        {
            throw Lost(holder, error);
        }
        finally
        {
            Exit(holder);
        }
    }

    /// <summary>Closes the connection (the server sees this client leave) and fails later uses with <see cref="ObjectDisposedException"/>.</summary>
    /// <remarks>
    /// Waits for an attempt to connect in progress to end, then closes the connection if it is alive (calls in progress
    /// on it fail at once) or if nothing is in progress on it. A connection that died with calls still in progress is
    /// closed by the last of them, once its reader failed them; the dispose then waits for the connections already let
    /// go of to close, not for that one.
    /// </remarks>
    public async ValueTask DisposeAsync()
    {
        ClientConnection? current;
        Task<ClientConnection>? connecting;
        lock (_lock)
        {
            if (_disposed)
            {
                return;
            }
            _disposed = true;
            current = _connection;
            connecting = _connecting;
            _connection = null;
        }
        await _disposing.CancelAsync().ConfigureAwait(false);
        if (connecting is not null)
        {
            // The attempt sees the cancellation and closes what it made; wait so nothing outlives the client.
            await connecting.ContinueWith(static _ => { }, CancellationToken.None, TaskContinuationOptions.None, TaskScheduler.Default).ConfigureAwait(false);
        }
        if (current is not null && current.Exit())
        {
            // Nobody is calling: close it here. (A live connection with calls in progress is closed by the last of
            // them; a dead one only after its reader failed them.)
            await current.Connection.DisposeAsync().ConfigureAwait(false);
        }
        else if (current is not null && current.Connection.IsPeerAlive)
        {
            // Calls are in progress on a live connection: closing it fails them at once, as disposing a connection does.
            await current.Connection.DisposeAsync().ConfigureAwait(false);
        }
        Task retiring;
        lock (_lock)
        {
            retiring = _retiring;
        }
        await retiring.ConfigureAwait(false);
        _disposing.Dispose();
    }

    /// <inheritdoc cref="DisposeAsync"/>
    public void Dispose() => DisposeAsync().AsTask().GetAwaiter().GetResult();

    /// <summary>The current connection, counted as in use until <see cref="Exit"/>; connects first if there is none.</summary>
    private ValueTask<ClientConnection> EnterAsync(CancellationToken cancellationToken)
    {
        ClientConnection? holder = Volatile.Read(ref _connection);
        if (holder is { Connection.IsPeerAlive: true })
        {
            holder.Enter();
            return new(holder);
        }
        return EnterSlowAsync(cancellationToken);
    }

    private ClientConnection Enter(CancellationToken cancellationToken)
    {
        ClientConnection? holder = Volatile.Read(ref _connection);
        if (holder is { Connection.IsPeerAlive: true })
        {
            holder.Enter();
            return holder;
        }
        // Blocking only on a connect, which takes a handshake, never on the steady path.
        return EnterSlowAsync(cancellationToken).AsTask().GetAwaiter().GetResult();
    }

    private void Exit(ClientConnection holder)
    {
        if (holder.Exit())
        {
            Close(holder);
        }
    }

    private async ValueTask<ClientConnection> EnterSlowAsync(CancellationToken cancellationToken)
    {
        Task<ClientConnection>? attempt = null;
        ServerUnavailableException? refused = null;
        bool started = false;
        ClientConnection? dead = null;
        Loss deadLoss = default;
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_connection is { Connection.IsPeerAlive: true } live)
            {
                live.Enter();
                return live;
            }
            if (_connection is not null)
            {
                // Dead, and its death notification has not run yet: let go of it here, or the new connection would
                // replace it unclosed. A short-lived one starts a backoff, which the check below then honours.
                dead = _connection;
                deadLoss = LetGoUnsynchronized(dead, cause: null);
            }
            if (_connecting is null && _failedAttempts > 0 && _time.GetTimestamp() < _nextAttemptTimestamp)
            {
                refused = UnavailableUnsynchronized(_lastError, dead is null ? "the last attempt to connect failed" : "the connection was lost soon after it was made");
            }
            else
            {
                if (_connecting is null)
                {
                    _connecting = ConnectAsync();
                    started = true;
                }
                attempt = _connecting;
            }
        }
        if (dead is not null)
        {
            // Before a refusal is thrown: the dead connection is ours to release either way.
            Retire(dead, cause: null, deadLoss);
        }
        if (refused is not null)
        {
            throw refused;
        }
        Debug.Assert(attempt is not null, "no refusal, so an attempt was started or joined");
        if (started)
        {
            // Observed here once: every waiter may have given up (cancelled) before the attempt failed.
            _ = attempt.ContinueWith(static task => _ = task.Exception, CancellationToken.None, TaskContinuationOptions.OnlyOnFaulted, TaskScheduler.Default);
        }
        ClientConnection connected;
        try
        {
            connected = await attempt.WaitAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (Exception error) when (error is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
        {
            lock (_lock)
            {
                ObjectDisposedException.ThrowIf(_disposed, this);
                throw UnavailableUnsynchronized(error, "connecting failed");
            }
        }
        // It may have died or been let go of since; a call on it then fails at once and is reported as unavailable.
        connected.Enter();
        return connected;
    }

    /// <summary>One attempt to connect; on failure it schedules the next one. Started under the lock, runs outside it.</summary>
    private async Task<ClientConnection> ConnectAsync()
    {
        // Leave the caller's lock before the handshake's first system call, for the thread pool: never for the caller's
        // context, whose thread a synchronous first use blocks until the connect ends (Task.Yield resumed there, and on a
        // UI thread that never ran: found by review).
        await Task.CompletedTask.ConfigureAwait(ConfigureAwaitOptions.ForceYielding);
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
                delay = ScheduleNextAttemptUnsynchronized();
                _lastError = error;
                _connecting = null;
            }
            HostingLog.ClientConnectFailed(_logger, Name, ServerName, failures, (long)delay.TotalMilliseconds, error.Message);
            throw;
        }
        ClientConnection holder;
        bool disposed;
        lock (_lock)
        {
            // The count is 0 while a connection is set (the backoff check in EnterSlowAsync relies on it); the holder
            // keeps it, for a loss that comes too soon to count as a success.
            holder = new ClientConnection(connection, _time.GetTimestamp(), _failedAttempts);
            disposed = _disposed;
            if (!disposed)
            {
                _connection = holder;
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
            var (client, lost) = ((PageRangeClient, ClientConnection))state!;
            client.OnConnectionLost(lost, cause: null);
        }, (this, holder));
        HostingLog.ClientConnected(_logger, Name, ServerName, connection.PeerPid);
        return holder;
    }

    /// <summary>Lets go of a dead connection (once) so the next use connects again, after the backoff if it was short-lived.</summary>
    private void OnConnectionLost(ClientConnection holder, Exception? cause)
    {
        Loss loss;
        lock (_lock)
        {
            if (!ReferenceEquals(_connection, holder))
            {
                return;
            }
            loss = LetGoUnsynchronized(holder, cause);
        }
        Retire(holder, cause, loss);
    }

    /// <summary>
    /// Clears the current connection, <paramref name="holder"/>, which died. One that lasted
    /// <see cref="PageRangeClientOptions.HealthyConnectionTime"/> resets the count of failed attempts; one lost sooner
    /// counts as the next failed attempt after those before it, and schedules the next attempt.
    /// </summary>
    /// <remarks>
    /// Resetting on every completed handshake (as gRPC does once the server's preface arrives) left a server that admits
    /// a client and drops it at once with a client that reconnected on every use: a loop of handshakes and log lines.
    /// Kubernetes resets its restart backoff only after a container ran a while, for the same reason.
    /// </remarks>
    private Loss LetGoUnsynchronized(ClientConnection holder, Exception? cause)
    {
        _connection = null;
        _lastError = cause;
        // Measured to when the loss is seen, never before the death: a late look errs towards a success, and even then
        // the handshakes were at least that far apart.
        TimeSpan lasted = _time.GetElapsedTime(holder.ConnectedTimestamp);
        if (lasted >= _settings.HealthyConnectionTime)
        {
            _failedAttempts = 0;
            return new Loss(lasted, 0, TimeSpan.Zero);
        }
        _failedAttempts = holder.FailedAttemptsBefore + 1;
        // The uses refused during the backoff name this as their cause, as they name a failed attempt's error.
        _lastError = cause ?? new PeerDiedException(
            $"The server (pid {holder.Connection.PeerPid}) closed the connection {lasted.TotalMilliseconds:0} ms after it was made.");
        return new Loss(lasted, _failedAttempts, ScheduleNextAttemptUnsynchronized());
    }

    /// <summary>Sets when the next attempt is due, after <see cref="_failedAttempts"/> failures in a row; returns the wait.</summary>
    private TimeSpan ScheduleNextAttemptUnsynchronized()
    {
        TimeSpan delay = ReconnectBackoff.Delay(_failedAttempts, _settings.ReconnectDelay, _settings.MaxReconnectDelay, _settings.ReconnectJitter, Random.Shared.NextDouble());
        _nextAttemptTimestamp = _time.GetTimestamp() + (long)(delay.TotalSeconds * _time.TimestampFrequency);
        _nextAttemptAt = _time.GetUtcNow() + delay;
        return delay;
    }

    /// <summary>Logs the loss of a connection no longer current and drops the client's reference to it.</summary>
    private void Retire(ClientConnection holder, Exception? cause, Loss loss)
    {
        string reason = cause?.Message ?? "the server closed the connection or exited";
        if (loss.FailedAttempts > 0)
        {
            HostingLog.ClientConnectionLostEarly(_logger, Name, ServerName, (long)loss.Lasted.TotalMilliseconds, loss.FailedAttempts, (long)loss.RetryDelay.TotalMilliseconds, reason);
        }
        else
        {
            HostingLog.ClientConnectionLost(_logger, Name, ServerName, reason);
        }
        Exit(holder);
    }

    /// <summary>How a lost connection was counted: how long it lasted and, if too short, the failures in a row and the wait.</summary>
    private readonly record struct Loss(TimeSpan Lasted, int FailedAttempts, TimeSpan RetryDelay);

    /// <summary>Closes a connection nobody uses any more, off the caller's thread.</summary>
    private void Close(ClientConnection holder)
    {
        // Not on this thread: it may be the connection's own death notification, which its disposal waits for.
        Task closing = Task.Run(async () => await holder.Connection.DisposeAsync().ConfigureAwait(false));
        lock (_lock)
        {
            _retiring = Task.WhenAll(_retiring, closing);
        }
    }

    private bool IsConnectionLoss(PageRangeConnection connection, Exception error) =>
        error is PeerDiedException || (error is ObjectDisposedException && !connection.IsPeerAlive && !Volatile.Read(ref _disposed));

    private ServerUnavailableException Lost(ClientConnection holder, Exception error)
    {
        OnConnectionLost(holder, error);
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
