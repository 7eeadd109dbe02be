using System.Diagnostics.CodeAnalysis;
using MessagePack;
using PageRange.Serialization;
using PageRange.Transport;

namespace PageRange.Server;

/// <summary>
/// What a handler knows about the call it runs: who called (binder's <c>getCallingPid</c>/<c>getCallingUid</c>), the
/// code, a cancellation token, and the connection for calls back into the same client.
/// </summary>
/// <remarks>Valid while the handler runs; the server ends it when the handler returns.</remarks>
public sealed class CallContext
{
    private static readonly TimeSpan s_longestTimer = TimeSpan.FromMilliseconds(int.MaxValue - 1);

    private readonly Transaction _transaction;
    private readonly CancellationToken _serverStopping;
    private CancellationTokenSource? _linked;
    private int _disposed;

    internal CallContext(ClientInfo client, PageRangeConnection connection, Transaction transaction, CancellationToken serverStopping)
    {
        Client = client;
        Connection = connection;
        _transaction = transaction;
        Code = transaction.Code;
        IsOneway = transaction.IsOneway;
        // Read now: the context outlives the transaction's buffer in a handler that keeps it.
        Metadata = transaction.Metadata;
        Deadline = transaction.Deadline;
        _serverStopping = serverStopping;
    }

    /// <summary>The caller's deadline (<see cref="PageRangeCallOptions.Deadline"/>), UTC; <c>null</c> when it set none.</summary>
    public DateTimeOffset? Deadline { get; }

    /// <summary>The caller's key/values (<see cref="PageRangeCallOptions.Metadata"/>); empty when none.</summary>
    public IReadOnlyList<KeyValuePair<string, string>> Metadata { get; }

    /// <summary>The calling client.</summary>
    public ClientInfo Client { get; }

    /// <summary>The caller's process id (<c>SO_PEERCRED</c>).</summary>
    public int PeerPid => Client.Pid;

    /// <summary>The caller's user id (<c>SO_PEERCRED</c>).</summary>
    public uint PeerUid => Client.Uid;

    /// <summary>The caller's group id (<c>SO_PEERCRED</c>).</summary>
    public uint PeerGid => Client.Gid;

    /// <summary>The connection to the caller, for calls back into it.</summary>
    public PageRangeConnection Connection { get; }

    /// <summary>The call's code.</summary>
    public uint Code { get; }

    /// <summary>Whether this is a oneway message (no reply is expected).</summary>
    public bool IsOneway { get; }

    /// <summary>
    /// Cancelled when the caller cancels the call or gives up waiting, when the caller is gone, when the caller's
    /// <see cref="Deadline"/> passes (also for a oneway message), or when the server stops and the grace period of
    /// <see cref="PageRangeServer.StopAsync"/> is over.
    /// </summary>
    /// <remarks>A handler that lets the resulting <see cref="OperationCanceledException"/> through after the deadline fails
    /// the call with <see cref="CallStatus.DeadlineExceeded"/>.</remarks>
    public CancellationToken CancellationToken
    {
        get
        {
            ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
            if (Volatile.Read(ref _linked) is { } linked)
            {
                return linked.Token;
            }
            // Built on first use only: most handlers never look, and a linked source costs an allocation and a registration.
            var created = CancellationTokenSource.CreateLinkedTokenSource(_transaction.CallCancelled, _serverStopping);
            if (Deadline is { } deadline)
            {
                // The caller stops caring at its deadline, whether or not its cancel arrives (a oneway sends none): past
                // it, the handler's work is wasted. The timer is armed only below int.MaxValue ms (about 24.8 days); a
                // later deadline is as none.
                TimeSpan left = deadline - DateTimeOffset.UtcNow;
                if (left <= TimeSpan.Zero)
                {
                    created.Cancel();
                }
                else if (left < s_longestTimer)
                {
                    created.CancelAfter(left);
                }
            }
            if (Interlocked.CompareExchange(ref _linked, created, null) is { } raced)
            {
                created.Dispose();
                return raced.Token;
            }
            return created.Token;
        }
    }

    /// <summary>
    /// Whether <see cref="CancellationToken"/> fired from the deadline's timer: neither the caller's cancel nor the
    /// server's stop did it. The timer counts whole milliseconds of a coarse clock and can fire a little before
    /// <see cref="Deadline"/> by the wall clock, so comparing the deadline with the time alone misreads that moment.
    /// </summary>
    internal bool DeadlineTimerFired =>
        Deadline is not null
        && Volatile.Read(ref _linked) is { IsCancellationRequested: true }
        && !_serverStopping.IsCancellationRequested
        && !_transaction.CallCancelled.IsCancellationRequested;

    /// <summary>Calls back into the client and waits on this thread for its reply (a nested call).</summary>
    /// <param name="code">The code for the client's handler.</param>
    /// <param name="payload">The request bytes.</param>
    /// <param name="timeout">How long to wait; defaults to the connection's <see cref="PageRangeOptions.CallTimeout"/>.</param>
    /// <returns>The reply, read in place. Dispose it.</returns>
    /// <exception cref="PeerDiedException">The client is gone.</exception>
    /// <exception cref="RemoteCallException">The client's handler failed the call.</exception>
    /// <exception cref="OperationCanceledException">This call was cancelled meanwhile.</exception>
    /// <remarks>The call carries this call's chain one level deeper, so the client's thread waiting for this call's reply
    /// runs it (binder's transaction stack); deeper than <see cref="PageRangeOptions.MaxCallDepth"/> it fails with
    /// <see cref="PageRangeStatusException"/> (<see cref="CallStatus.ResourceExhausted"/>).</remarks>
    public Transaction Call(uint code, ReadOnlySpan<byte> payload, TimeSpan? timeout = null) =>
        Connection.Call(code, payload, NestedChain, timeout, CancellationToken);

    /// <summary>Calls back into the client and completes with its reply (a nested call).</summary>
    /// <inheritdoc cref="Call(uint, ReadOnlySpan{byte}, TimeSpan?)"/>
    public ValueTask<Transaction> CallAsync(uint code, ReadOnlyMemory<byte> payload, TimeSpan? timeout = null) =>
        Connection.CallAsync(code, payload, NestedChain, timeout, CancellationToken);

    /// <summary>Calls back into the client with a typed request and waits on this thread for its typed reply.</summary>
    /// <typeparam name="TRequest">The request type.</typeparam>
    /// <typeparam name="TResponse">The reply type.</typeparam>
    /// <param name="request">The request.</param>
    /// <param name="code">The code for the client's handler.</param>
    /// <param name="options">Serializer options; defaults to <see cref="PageRangeMessagePack.DefaultOptions"/>.</param>
    /// <param name="timeout">How long to wait.</param>
    /// <returns>The reply.</returns>
    /// <exception cref="InvalidMessageException">The reply is not a valid <typeparamref name="TResponse"/>.</exception>
    /// <exception cref="PeerDiedException">The client is gone.</exception>
    /// <exception cref="RemoteCallException">The client's handler failed the call.</exception>
    [RequiresDynamicCode("MessagePack's default resolver generates code at run time.")]
    [RequiresUnreferencedCode("MessagePack's default resolver reflects over the message type.")]
    public TResponse Call<TRequest, TResponse>(TRequest request, uint code = PageRangeMessagePack.DefaultCode,
        MessagePackSerializerOptions? options = null, TimeSpan? timeout = null)
    {
        byte[] bytes = MessagePackSerializer.Serialize(request, options ?? PageRangeMessagePack.DefaultOptions);
        using Transaction reply = Call(code, bytes, timeout);
        // The reply is freed on return: byte memory members must be copies, not slices of it.
        return PageRangeMessagePack.DeserializeCore<TResponse>(reply, options, sliceInPlace: false);
    }

    /// <summary>Calls back into the client with a typed request and completes with its typed reply.</summary>
    /// <inheritdoc cref="Call{TRequest, TResponse}(TRequest, uint, MessagePackSerializerOptions?, TimeSpan?)"/>
    [RequiresDynamicCode("MessagePack's default resolver generates code at run time.")]
    [RequiresUnreferencedCode("MessagePack's default resolver reflects over the message type.")]
    public ValueTask<TResponse> CallAsync<TRequest, TResponse>(TRequest request, uint code = PageRangeMessagePack.DefaultCode,
        MessagePackSerializerOptions? options = null, TimeSpan? timeout = null)
    {
        byte[] bytes = MessagePackSerializer.Serialize(request, options ?? PageRangeMessagePack.DefaultOptions);
        return CallTypedAsync<TResponse>(CallAsync(code, bytes, timeout), options);
    }

    /// <summary>Calls back into the client with a struct's bytes and waits on this thread for its reply, read as a <typeparamref name="TResponse"/> (a nested call).</summary>
    /// <typeparam name="TRequest">The request type: an unmanaged struct the client defines alike (<see cref="PageRangeStructs"/>).</typeparam>
    /// <typeparam name="TResponse">The reply type: an unmanaged struct the client defines alike.</typeparam>
    /// <param name="code">The code for the client's handler.</param>
    /// <param name="request">The request.</param>
    /// <param name="timeout">How long to wait.</param>
    /// <returns>A copy of the reply.</returns>
    /// <exception cref="InvalidMessageException">The reply is not <typeparamref name="TResponse"/>'s size.</exception>
    /// <exception cref="PeerDiedException">The client is gone.</exception>
    /// <exception cref="RemoteCallException">The client's handler failed the call.</exception>
    public TResponse CallStruct<TRequest, TResponse>(uint code, in TRequest request, TimeSpan? timeout = null)
        where TRequest : unmanaged
        where TResponse : unmanaged =>
        Connection.CallStruct<TRequest, TResponse>(code, in request, NestedChain, timeout, CancellationToken);

    /// <summary>Calls back into the client with a struct's bytes and completes with its reply, read as a <typeparamref name="TResponse"/>.</summary>
    /// <inheritdoc cref="CallStruct{TRequest, TResponse}(uint, in TRequest, TimeSpan?)"/>
    public ValueTask<TResponse> CallStructAsync<TRequest, TResponse>(uint code, TRequest request, TimeSpan? timeout = null)
        where TRequest : unmanaged
        where TResponse : unmanaged =>
        Connection.CallStructAsync<TRequest, TResponse>(code, request, NestedChain, timeout, CancellationToken);

    /// <summary>Calls back into the client with per-call options and waits on this thread for its reply (a nested call).</summary>
    /// <param name="code">The code for the client's handler.</param>
    /// <param name="payload">The request bytes.</param>
    /// <param name="options">Deadline, metadata and clear-on-free for this call.</param>
    /// <param name="timeout">How long to wait; defaults to the connection's <see cref="PageRangeOptions.CallTimeout"/>.</param>
    /// <returns>The reply, read in place. Dispose it.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="options"/> is null.</exception>
    /// <exception cref="TimeoutException">The deadline or the timeout passed (a deadline already past: nothing was sent).</exception>
    /// <exception cref="PeerDiedException">The client is gone.</exception>
    /// <exception cref="RemoteCallException">The client's handler failed the call.</exception>
    /// <exception cref="OperationCanceledException">This call was cancelled meanwhile.</exception>
    /// <remarks>As <see cref="Call(uint, ReadOnlySpan{byte}, TimeSpan?)"/>: the call carries this call's chain one level
    /// deeper. This call's own <see cref="Deadline"/> is not passed on by itself: put it in <paramref name="options"/>.</remarks>
    public Transaction Call(uint code, ReadOnlySpan<byte> payload, PageRangeCallOptions options, TimeSpan? timeout = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        return Connection.Call(code, payload, NestedChain, options, timeout, CancellationToken);
    }

    /// <summary>Calls back into the client with per-call options and completes with its reply (a nested call).</summary>
    /// <inheritdoc cref="Call(uint, ReadOnlySpan{byte}, PageRangeCallOptions, TimeSpan?)"/>
    public ValueTask<Transaction> CallAsync(uint code, ReadOnlyMemory<byte> payload, PageRangeCallOptions options, TimeSpan? timeout = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        return Connection.CallAsync(code, payload, NestedChain, options, timeout, CancellationToken);
    }

    /// <summary>Calls back into the client with a typed request and per-call options, and waits on this thread for its typed reply.</summary>
    /// <typeparam name="TRequest">The request type.</typeparam>
    /// <typeparam name="TResponse">The reply type.</typeparam>
    /// <param name="request">The request.</param>
    /// <param name="callOptions">Deadline, metadata and clear-on-free for this call.</param>
    /// <param name="code">The code for the client's handler.</param>
    /// <param name="options">Serializer options; defaults to <see cref="PageRangeMessagePack.DefaultOptions"/>.</param>
    /// <param name="timeout">How long to wait.</param>
    /// <returns>The reply.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="callOptions"/> is null.</exception>
    /// <exception cref="TimeoutException">The deadline or the timeout passed.</exception>
    /// <exception cref="InvalidMessageException">The reply is not a valid <typeparamref name="TResponse"/>.</exception>
    /// <exception cref="PeerDiedException">The client is gone.</exception>
    /// <exception cref="RemoteCallException">The client's handler failed the call.</exception>
    [RequiresDynamicCode("MessagePack's default resolver generates code at run time.")]
    [RequiresUnreferencedCode("MessagePack's default resolver reflects over the message type.")]
    public TResponse Call<TRequest, TResponse>(TRequest request, PageRangeCallOptions callOptions, uint code = PageRangeMessagePack.DefaultCode,
        MessagePackSerializerOptions? options = null, TimeSpan? timeout = null) =>
        Connection.Call<TRequest, TResponse>(request, NestedChain, callOptions, code, options, timeout, CancellationToken);

    /// <summary>Calls back into the client with a typed request and per-call options, and completes with its typed reply.</summary>
    /// <inheritdoc cref="Call{TRequest, TResponse}(TRequest, PageRangeCallOptions, uint, MessagePackSerializerOptions?, TimeSpan?)"/>
    [RequiresDynamicCode("MessagePack's default resolver generates code at run time.")]
    [RequiresUnreferencedCode("MessagePack's default resolver reflects over the message type.")]
    public ValueTask<TResponse> CallAsync<TRequest, TResponse>(TRequest request, PageRangeCallOptions callOptions, uint code = PageRangeMessagePack.DefaultCode,
        MessagePackSerializerOptions? options = null, TimeSpan? timeout = null) =>
        Connection.CallAsync<TRequest, TResponse>(request, NestedChain, callOptions, code, options, timeout, CancellationToken);

    /// <summary>The chain of calls made on behalf of this one (read while the transaction is live).</summary>
    private CallChain NestedChain => _transaction.NestedChain;

    [RequiresDynamicCode("MessagePack's default resolver generates code at run time.")]
    [RequiresUnreferencedCode("MessagePack's default resolver reflects over the message type.")]
    private static async ValueTask<TResponse> CallTypedAsync<TResponse>(ValueTask<Transaction> call, MessagePackSerializerOptions? options)
    {
        using Transaction reply = await call.ConfigureAwait(false);
        // The reply is freed on return: byte memory members must be copies, not slices of it.
        return PageRangeMessagePack.DeserializeCore<TResponse>(reply, options, sliceInPlace: false);
    }

    /// <summary>Ends the context when the handler has returned.</summary>
    internal void End()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0)
        {
            Interlocked.Exchange(ref _linked, null)?.Dispose();
        }
    }
}
