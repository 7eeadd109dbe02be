using System.Buffers;
using System.Diagnostics.CodeAnalysis;
using MessagePack;
using PageRange.Transport;

namespace PageRange.Serialization;

/// <summary>
/// The typed forms with per-call options (<see cref="PageRangeCallOptions"/>: deadline, metadata, clear-on-free). The
/// message is serialized and copied once: the metadata block goes before the payload, which the reserved zero-copy
/// path does not lay out.
/// </summary>
public static partial class PageRangeMessagePack
{
    /// <summary>Serializes <paramref name="message"/> and sends it oneway with per-call options.</summary>
    /// <param name="connection">The connection.</param>
    /// <param name="message">The message.</param>
    /// <param name="callOptions">Deadline, metadata and clear-on-free for this message.</param>
    /// <param name="code">The method or opcode, for the receiver.</param>
    /// <param name="options">Serializer options; defaults to <see cref="DefaultOptions"/>.</param>
    /// <exception cref="ArgumentNullException"><paramref name="connection"/> or <paramref name="callOptions"/> is null.</exception>
    /// <exception cref="MessageTooLargeException">The serialized message can never fit the peer's oneway quota.</exception>
    /// <exception cref="RegionFullException">The peer's region (or its oneway quota) stayed full.</exception>
    /// <exception cref="PeerDiedException">The peer is gone.</exception>
    [RequiresDynamicCode("MessagePack's default resolver generates code at run time.")]
    [RequiresUnreferencedCode("MessagePack's default resolver reflects over the message type.")]
    public static void SendOneway<T>(
        this PageRangeConnection connection, T message, PageRangeCallOptions callOptions, uint code = DefaultCode, MessagePackSerializerOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(connection);
        ArgumentNullException.ThrowIfNull(callOptions);
        connection.SendOneway(code, Serialize(message, options).WrittenSpan, callOptions);
    }

    /// <summary>Serializes <paramref name="message"/> and sends it oneway with per-call options, waiting asynchronously for room.</summary>
    /// <param name="connection">The connection.</param>
    /// <param name="message">The message.</param>
    /// <param name="callOptions">Deadline, metadata and clear-on-free for this message.</param>
    /// <param name="code">The method or opcode, for the receiver.</param>
    /// <param name="options">Serializer options; defaults to <see cref="DefaultOptions"/>.</param>
    /// <param name="cancellationToken">Cancels waiting for room; nothing is sent then.</param>
    /// <returns>Completes once the message is published.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="connection"/> or <paramref name="callOptions"/> is null.</exception>
    /// <exception cref="MessageTooLargeException">The serialized message can never fit the peer's oneway quota.</exception>
    /// <exception cref="RegionFullException">The peer's region (or its oneway quota) stayed full.</exception>
    /// <exception cref="OperationCanceledException">The token was cancelled before the message could be placed.</exception>
    /// <exception cref="PeerDiedException">The peer is gone.</exception>
    [RequiresDynamicCode("MessagePack's default resolver generates code at run time.")]
    [RequiresUnreferencedCode("MessagePack's default resolver reflects over the message type.")]
    public static async ValueTask SendOnewayAsync<T>(
        this PageRangeConnection connection, T message, PageRangeCallOptions callOptions, uint code = DefaultCode,
        MessagePackSerializerOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(connection);
        ArgumentNullException.ThrowIfNull(callOptions);
        // The parcel is per thread and the await may resume elsewhere, so copy it into a rented array first.
        byte[] rented = RentCopy(Serialize(message, options), out int length);
        try
        {
            await connection.SendOnewayAsync(code, rented.AsMemory(0, length), callOptions, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(rented);
        }
    }

    /// <summary>Calls the peer with a typed request and per-call options, and waits on this thread for its typed reply.</summary>
    /// <param name="connection">The connection.</param>
    /// <param name="request">The request.</param>
    /// <param name="callOptions">Deadline, metadata and clear-on-free for this call; the call waits at most until the deadline.</param>
    /// <param name="code">The method or opcode, for the receiver.</param>
    /// <param name="options">Serializer options for the request and the reply; defaults to <see cref="DefaultOptions"/>.</param>
    /// <param name="timeout">How long to wait for the reply; defaults to <see cref="PageRangeOptions.CallTimeout"/>.</param>
    /// <param name="cancellationToken">Cancels the wait.</param>
    /// <returns>The reply (the reply's buffer is freed before this returns).</returns>
    /// <exception cref="ArgumentNullException"><paramref name="connection"/> or <paramref name="callOptions"/> is null.</exception>
    /// <exception cref="TimeoutException">The deadline or the timeout passed (a deadline already past: nothing was sent).</exception>
    /// <exception cref="InvalidMessageException">The reply is not a valid <typeparamref name="TResponse"/>.</exception>
    /// <exception cref="RemoteCallException">The peer's handler failed or disposed the call without replying.</exception>
    /// <exception cref="PeerDiedException">The peer is gone.</exception>
    [RequiresDynamicCode("MessagePack's default resolver generates code at run time.")]
    [RequiresUnreferencedCode("MessagePack's default resolver reflects over the message type.")]
    public static TResponse Call<TRequest, TResponse>(
        this PageRangeConnection connection, TRequest request, PageRangeCallOptions callOptions, uint code = DefaultCode,
        MessagePackSerializerOptions? options = null, TimeSpan? timeout = null, CancellationToken cancellationToken = default) =>
        Call<TRequest, TResponse>(connection, request, default(CallChain), callOptions, code, options, timeout, cancellationToken);

    /// <summary>
    /// Calls the peer in <paramref name="chain"/> (a nested call, from <see cref="Transaction.NestedChain"/>) with a typed
    /// request and per-call options, and waits on this thread for its typed reply.
    /// </summary>
    /// <param name="connection">The connection.</param>
    /// <param name="request">The request.</param>
    /// <param name="chain">The chain; <c>default</c> starts a new one.</param>
    /// <param name="callOptions">Deadline, metadata and clear-on-free for this call; the call waits at most until the deadline.</param>
    /// <param name="code">The method or opcode, for the receiver.</param>
    /// <param name="options">Serializer options for the request and the reply; defaults to <see cref="DefaultOptions"/>.</param>
    /// <param name="timeout">How long to wait for the reply; defaults to <see cref="PageRangeOptions.CallTimeout"/>.</param>
    /// <param name="cancellationToken">Cancels the wait.</param>
    /// <returns>The reply (the reply's buffer is freed before this returns).</returns>
    /// <exception cref="ArgumentNullException"><paramref name="connection"/> or <paramref name="callOptions"/> is null.</exception>
    /// <exception cref="TimeoutException">The deadline or the timeout passed (a deadline already past: nothing was sent).</exception>
    /// <exception cref="PageRangeStatusException">The call would be deeper than <see cref="PageRangeOptions.MaxCallDepth"/>.</exception>
    /// <exception cref="InvalidMessageException">The reply is not a valid <typeparamref name="TResponse"/>.</exception>
    /// <exception cref="RemoteCallException">The peer's handler failed or disposed the call without replying.</exception>
    /// <exception cref="PeerDiedException">The peer is gone.</exception>
    [RequiresDynamicCode("MessagePack's default resolver generates code at run time.")]
    [RequiresUnreferencedCode("MessagePack's default resolver reflects over the message type.")]
    public static TResponse Call<TRequest, TResponse>(
        this PageRangeConnection connection, TRequest request, CallChain chain, PageRangeCallOptions callOptions, uint code = DefaultCode,
        MessagePackSerializerOptions? options = null, TimeSpan? timeout = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(connection);
        ArgumentNullException.ThrowIfNull(callOptions);
        using Transaction reply = connection.Call(code, Serialize(request, options).WrittenSpan, chain, callOptions, timeout, cancellationToken);
        return DeserializeCore<TResponse>(reply, options, sliceInPlace: false);
    }

    /// <summary>Calls the peer with a typed request and per-call options, and completes with its typed reply.</summary>
    /// <remarks>While the peer's region is full the request waits for room asynchronously: no thread is blocked.</remarks>
    /// <inheritdoc cref="Call{TRequest, TResponse}(PageRangeConnection, TRequest, PageRangeCallOptions, uint, MessagePackSerializerOptions?, TimeSpan?, CancellationToken)"/>
    [RequiresDynamicCode("MessagePack's default resolver generates code at run time.")]
    [RequiresUnreferencedCode("MessagePack's default resolver reflects over the message type.")]
    public static ValueTask<TResponse> CallAsync<TRequest, TResponse>(
        this PageRangeConnection connection, TRequest request, PageRangeCallOptions callOptions, uint code = DefaultCode,
        MessagePackSerializerOptions? options = null, TimeSpan? timeout = null, CancellationToken cancellationToken = default) =>
        CallAsync<TRequest, TResponse>(connection, request, default(CallChain), callOptions, code, options, timeout, cancellationToken);

    /// <summary>Calls the peer in <paramref name="chain"/> with a typed request and per-call options, and completes with its typed reply.</summary>
    /// <remarks>While the peer's region is full the request waits for room asynchronously: no thread is blocked.</remarks>
    /// <inheritdoc cref="Call{TRequest, TResponse}(PageRangeConnection, TRequest, CallChain, PageRangeCallOptions, uint, MessagePackSerializerOptions?, TimeSpan?, CancellationToken)"/>
    [RequiresDynamicCode("MessagePack's default resolver generates code at run time.")]
    [RequiresUnreferencedCode("MessagePack's default resolver reflects over the message type.")]
    public static async ValueTask<TResponse> CallAsync<TRequest, TResponse>(
        this PageRangeConnection connection, TRequest request, CallChain chain, PageRangeCallOptions callOptions, uint code = DefaultCode,
        MessagePackSerializerOptions? options = null, TimeSpan? timeout = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(connection);
        ArgumentNullException.ThrowIfNull(callOptions);
        // The parcel is per thread and the await may resume elsewhere, so copy it into a rented array first.
        byte[] rented = RentCopy(Serialize(request, options), out int length);
        Transaction reply;
        try
        {
            reply = await connection.CallAsync(code, rented.AsMemory(0, length), chain, callOptions, timeout, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(rented);
        }
        using (reply)
        {
            return DeserializeCore<TResponse>(reply, options, sliceInPlace: false);
        }
    }
}
