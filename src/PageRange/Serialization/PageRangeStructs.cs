using System.Buffers;
using System.Diagnostics.CodeAnalysis;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using PageRange.Transport;

namespace PageRange.Serialization;

/// <summary>
/// Fixed-layout messages: an unmanaged struct's bytes are the payload, with no serializer on either side. A oneway, a
/// call or a reply costs what the raw-bytes API costs (one copy into the peer's region; one copy out into a local).
/// </summary>
/// <remarks>
/// <para>
/// For the small messages a hot path sends again and again (a quote, a tick, a sample, a command), where a serializer's
/// work is most of the message's cost: a 64-byte MessagePack message takes three to four times the CPU of 64 raw bytes
/// (benchmarks/README.md, "Small typed messages"). Both processes must use the same definition of the struct (the same
/// assembly): the bytes are sent as they lie in memory, padding included, so give the struct an explicit layout
/// (<see cref="StructLayoutAttribute"/>, <c>Pack = 1</c>, or padding fields of its own) if a stale byte of padding must not
/// reach the peer. The two processes run on one machine, so byte order and sizes agree.
/// </para>
/// <para>
/// <see cref="ReadStruct{T}(Transaction)"/> checks that the payload is exactly the struct's size, then copies it into a
/// local once: the peer can change its region while it is read, never the copy. What the fields hold is the peer's word,
/// as any message's content is: an enum outside its values, a bool that is neither 0 nor 1, a length larger than its
/// array: check them on the copy. A struct that holds pointers is allowed by the constraint and meaningless across
/// processes.
/// </para>
/// </remarks>
public static class PageRangeStructs
{
    /// <summary>Sends <paramref name="message"/>'s bytes oneway.</summary>
    /// <typeparam name="T">The message type: an unmanaged struct both processes define alike.</typeparam>
    /// <param name="connection">The connection.</param>
    /// <param name="code">The method or opcode, for the receiver.</param>
    /// <param name="message">The message.</param>
    /// <exception cref="ArgumentNullException"><paramref name="connection"/> is null.</exception>
    /// <exception cref="MessageTooLargeException">The struct can never fit the peer's oneway quota.</exception>
    /// <exception cref="RegionFullException">The peer's region (or its oneway quota) stayed full.</exception>
    /// <exception cref="PeerDiedException">The peer is gone.</exception>
    public static void SendOnewayStruct<T>(this PageRangeConnection connection, uint code, in T message)
        where T : unmanaged
    {
        ArgumentNullException.ThrowIfNull(connection);
        connection.SendOneway(code, BytesOf(in message));
    }

    /// <summary>Sends <paramref name="message"/>'s bytes oneway, waiting asynchronously for room.</summary>
    /// <typeparam name="T">The message type: an unmanaged struct both processes define alike.</typeparam>
    /// <param name="connection">The connection.</param>
    /// <param name="code">The method or opcode, for the receiver.</param>
    /// <param name="message">The message.</param>
    /// <param name="cancellationToken">Cancels waiting for room; nothing is sent then.</param>
    /// <returns>Completes once the message is published.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="connection"/> is null.</exception>
    /// <exception cref="MessageTooLargeException">The struct can never fit the peer's oneway quota.</exception>
    /// <exception cref="RegionFullException">The peer's region (or its oneway quota) stayed full.</exception>
    /// <exception cref="OperationCanceledException">The token was cancelled before the message could be placed.</exception>
    /// <exception cref="PeerDiedException">The peer is gone.</exception>
    public static async ValueTask SendOnewayStructAsync<T>(
        this PageRangeConnection connection, uint code, T message, CancellationToken cancellationToken = default)
        where T : unmanaged
    {
        ArgumentNullException.ThrowIfNull(connection);
        // The struct lives in this method's state machine, which no memory can point into: a pooled copy crosses the await.
        byte[] rented = RentCopy(in message);
        try
        {
            await connection.SendOnewayAsync(code, rented.AsMemory(0, Unsafe.SizeOf<T>()), cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(rented);
        }
    }

    /// <summary>Calls the peer with <paramref name="request"/>'s bytes and waits on this thread for its reply, read as a <typeparamref name="TReply"/>.</summary>
    /// <typeparam name="TRequest">The request type: an unmanaged struct both processes define alike.</typeparam>
    /// <typeparam name="TReply">The reply type: an unmanaged struct both processes define alike.</typeparam>
    /// <param name="connection">The connection.</param>
    /// <param name="code">The method or opcode, for the receiver.</param>
    /// <param name="request">The request.</param>
    /// <param name="timeout">How long to wait for the reply; defaults to <see cref="PageRangeOptions.CallTimeout"/>.</param>
    /// <param name="cancellationToken">Cancels the wait.</param>
    /// <returns>A copy of the reply (its buffer is freed before this returns).</returns>
    /// <exception cref="ArgumentNullException"><paramref name="connection"/> is null.</exception>
    /// <exception cref="InvalidMessageException">The reply is not <typeparamref name="TReply"/>'s size; it was freed, and the connection is unaffected.</exception>
    /// <exception cref="RemoteCallException">The peer's handler failed or disposed the call without replying.</exception>
    /// <exception cref="PeerDiedException">The peer is gone.</exception>
    public static TReply CallStruct<TRequest, TReply>(
        this PageRangeConnection connection, uint code, in TRequest request, TimeSpan? timeout = null, CancellationToken cancellationToken = default)
        where TRequest : unmanaged
        where TReply : unmanaged =>
        CallStruct<TRequest, TReply>(connection, code, in request, default(CallChain), timeout, cancellationToken);

    /// <summary>Calls the peer with <paramref name="request"/>'s bytes and completes with its reply, read as a <typeparamref name="TReply"/>.</summary>
    /// <remarks>While the peer's region is full the request waits for room asynchronously: no thread is blocked.</remarks>
    /// <inheritdoc cref="CallStruct{TRequest, TReply}(PageRangeConnection, uint, in TRequest, TimeSpan?, CancellationToken)"/>
    public static ValueTask<TReply> CallStructAsync<TRequest, TReply>(
        this PageRangeConnection connection, uint code, TRequest request, TimeSpan? timeout = null, CancellationToken cancellationToken = default)
        where TRequest : unmanaged
        where TReply : unmanaged =>
        CallStructAsync<TRequest, TReply>(connection, code, request, default(CallChain), timeout, cancellationToken);

    /// <summary>
    /// Calls the peer in <paramref name="chain"/> with <paramref name="request"/>'s bytes (a nested call: when the peer calls
    /// back in the same chain, this thread runs that call) and waits for its reply, read as a <typeparamref name="TReply"/>.
    /// </summary>
    /// <typeparam name="TRequest">The request type: an unmanaged struct both processes define alike.</typeparam>
    /// <typeparam name="TReply">The reply type: an unmanaged struct both processes define alike.</typeparam>
    /// <param name="connection">The connection.</param>
    /// <param name="code">The method or opcode, for the receiver.</param>
    /// <param name="request">The request.</param>
    /// <param name="chain">The chain of the incoming call this one is made for (<see cref="Transaction.NestedChain"/>).</param>
    /// <param name="timeout">How long to wait for the reply; defaults to <see cref="PageRangeOptions.CallTimeout"/>.</param>
    /// <param name="cancellationToken">Cancels the wait.</param>
    /// <returns>A copy of the reply (its buffer is freed before this returns).</returns>
    /// <exception cref="ArgumentNullException"><paramref name="connection"/> is null.</exception>
    /// <exception cref="InvalidMessageException">The reply is not <typeparamref name="TReply"/>'s size; it was freed, and the connection is unaffected.</exception>
    /// <exception cref="RemoteCallException">The peer's handler failed or disposed the call without replying.</exception>
    /// <exception cref="PeerDiedException">The peer is gone.</exception>
    public static TReply CallStruct<TRequest, TReply>(
        this PageRangeConnection connection, uint code, in TRequest request, CallChain chain, TimeSpan? timeout = null,
        CancellationToken cancellationToken = default)
        where TRequest : unmanaged
        where TReply : unmanaged
    {
        ArgumentNullException.ThrowIfNull(connection);
        using Transaction reply = connection.Call(code, BytesOf(in request), chain, timeout, cancellationToken);
        return reply.ReadStruct<TReply>();
    }

    /// <summary>Calls the peer in <paramref name="chain"/> with <paramref name="request"/>'s bytes and completes with its reply.</summary>
    /// <remarks>An asynchronous caller does not run the peer's nested calls itself: they go to the receivers.</remarks>
    /// <inheritdoc cref="CallStruct{TRequest, TReply}(PageRangeConnection, uint, in TRequest, CallChain, TimeSpan?, CancellationToken)"/>
    public static async ValueTask<TReply> CallStructAsync<TRequest, TReply>(
        this PageRangeConnection connection, uint code, TRequest request, CallChain chain, TimeSpan? timeout = null,
        CancellationToken cancellationToken = default)
        where TRequest : unmanaged
        where TReply : unmanaged
    {
        ArgumentNullException.ThrowIfNull(connection);
        byte[] rented = RentCopy(in request);
        Transaction reply;
        try
        {
            reply = await connection.CallAsync(code, rented.AsMemory(0, Unsafe.SizeOf<TRequest>()), chain, timeout, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(rented);
        }
        using (reply)
        {
            return reply.ReadStruct<TReply>();
        }
    }

    /// <summary>Sends <paramref name="message"/>'s bytes as the reply to this call.</summary>
    /// <typeparam name="T">The reply type: an unmanaged struct both processes define alike.</typeparam>
    /// <param name="transaction">The incoming two-way call.</param>
    /// <param name="message">The reply.</param>
    /// <exception cref="InvalidOperationException">This is not a two-way call, or it was already replied to.</exception>
    /// <exception cref="PeerDiedException">The caller's process is gone.</exception>
    public static void ReplyStruct<T>(this Transaction transaction, in T message)
        where T : unmanaged =>
        transaction.Reply(BytesOf(in message));

    /// <summary>Sends <paramref name="message"/>'s bytes as the reply to this call, waiting asynchronously for room.</summary>
    /// <typeparam name="T">The reply type: an unmanaged struct both processes define alike.</typeparam>
    /// <param name="transaction">The incoming two-way call.</param>
    /// <param name="message">The reply.</param>
    /// <param name="cancellationToken">Cancels waiting for room; nothing is sent then, and the call can still be answered.</param>
    /// <returns>Completes once the reply is published.</returns>
    /// <exception cref="InvalidOperationException">This is not a two-way call, or it was already replied to.</exception>
    /// <exception cref="PeerDiedException">The caller's process is gone.</exception>
    /// <exception cref="RegionFullException">The caller's region stayed full.</exception>
    /// <exception cref="OperationCanceledException">The token was cancelled before the reply could be placed.</exception>
    public static async ValueTask ReplyStructAsync<T>(this Transaction transaction, T message, CancellationToken cancellationToken = default)
        where T : unmanaged
    {
        byte[] rented = RentCopy(in message);
        try
        {
            await transaction.ReplyAsync(rented.AsMemory(0, Unsafe.SizeOf<T>()), cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(rented);
        }
    }

    /// <summary>The payload as a <typeparamref name="T"/>: checked to be exactly its size, then copied into the value returned.</summary>
    /// <typeparam name="T">The message type: an unmanaged struct both processes define alike.</typeparam>
    /// <param name="transaction">The transaction; it stays live (dispose it yourself).</param>
    /// <returns>A copy of the payload, which the peer can no longer change; check its fields on the copy.</returns>
    /// <exception cref="InvalidMessageException">The payload is not <typeparamref name="T"/>'s size; the connection is unaffected.</exception>
    /// <exception cref="ObjectDisposedException">The transaction was disposed.</exception>
    public static T ReadStruct<T>(this Transaction transaction)
        where T : unmanaged
    {
        ReadOnlySpan<byte> payload = transaction.Payload;
        if (payload.Length != Unsafe.SizeOf<T>())
        {
            ThrowWrongSize<T>(transaction, payload.Length);
        }
        return MemoryMarshal.Read<T>(payload);
    }

    private static ReadOnlySpan<byte> BytesOf<T>(in T message)
        where T : unmanaged =>
        MemoryMarshal.AsBytes(new ReadOnlySpan<T>(in message));

    /// <summary>A pooled copy of the struct's bytes, for a send that awaits.</summary>
    private static byte[] RentCopy<T>(in T message)
        where T : unmanaged
    {
        byte[] rented = ArrayPool<byte>.Shared.Rent(Unsafe.SizeOf<T>());
        BytesOf(in message).CopyTo(rented);
        return rented;
    }

    [DoesNotReturn]
    private static void ThrowWrongSize<T>(Transaction transaction, int length) =>
        throw new InvalidMessageException(
            $"Transaction {transaction.Id} (code {transaction.Code}, {length} bytes) is not a {typeof(T).Name}, which takes {Unsafe.SizeOf<T>()} bytes.");
}
