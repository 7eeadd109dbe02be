using System.Buffers;
using System.Diagnostics.CodeAnalysis;
using MessagePack;
using PageRange.Transport;

namespace PageRange.Serialization;

/// <summary>
/// Typed messages over a <see cref="PageRangeConnection"/> with MessagePack: each message is serialized once into a
/// per-thread buffer (the "Parcel"), copied once into the peer's region, and deserialized in place on the other side.
/// </summary>
/// <remarks>
/// The default options (<see cref="DefaultOptions"/>) treat every payload as untrusted data from another process
/// (<see cref="MessagePackSecurity.UntrustedData"/>: bounded depth, hash-collision-resistant dictionaries).
/// MessagePack's default resolver generates code at run time, so these methods are not AOT-safe unless the options
/// carry a source-generated resolver.
/// </remarks>
public static class PageRangeMessagePack
{
    /// <summary>The code typed sends use when the caller names none.</summary>
    public const uint DefaultCode = 1;

    [ThreadStatic]
    private static ArrayBufferWriter<byte>? t_parcel;

    /// <summary>Standard resolvers with <see cref="MessagePackSecurity.UntrustedData"/>.</summary>
    public static MessagePackSerializerOptions DefaultOptions { get; } =
        MessagePackSerializerOptions.Standard.WithSecurity(MessagePackSecurity.UntrustedData);

    /// <summary>Serializes <paramref name="message"/> and sends it oneway.</summary>
    /// <exception cref="MessageTooLargeException">The serialized message can never fit the peer's oneway quota.</exception>
    [RequiresDynamicCode("MessagePack's default resolver generates code at run time.")]
    [RequiresUnreferencedCode("MessagePack's default resolver reflects over the message type.")]
    public static void SendOneway<T>(this PageRangeConnection connection, T message, uint code = DefaultCode, MessagePackSerializerOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(connection);
        ArrayBufferWriter<byte> parcel = Serialize(message, options);
        connection.SendOneway(code, parcel.WrittenSpan);
    }

    /// <summary>Calls the peer with a typed request and waits on this thread for its typed reply.</summary>
    /// <exception cref="InvalidMessageException">The reply is not a valid <typeparamref name="TResponse"/>.</exception>
    [RequiresDynamicCode("MessagePack's default resolver generates code at run time.")]
    [RequiresUnreferencedCode("MessagePack's default resolver reflects over the message type.")]
    public static TResponse Call<TRequest, TResponse>(
        this PageRangeConnection connection, TRequest request, uint code = DefaultCode, MessagePackSerializerOptions? options = null,
        TimeSpan? timeout = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(connection);
        ArrayBufferWriter<byte> parcel = Serialize(request, options);
        using Transaction reply = connection.Call(code, parcel.WrittenSpan, timeout, cancellationToken);
        return reply.Deserialize<TResponse>(options);
    }

    /// <summary>Calls the peer with a typed request and completes with its typed reply.</summary>
    /// <exception cref="InvalidMessageException">The reply is not a valid <typeparamref name="TResponse"/>.</exception>
    [RequiresDynamicCode("MessagePack's default resolver generates code at run time.")]
    [RequiresUnreferencedCode("MessagePack's default resolver reflects over the message type.")]
    public static async ValueTask<TResponse> CallAsync<TRequest, TResponse>(
        this PageRangeConnection connection, TRequest request, uint code = DefaultCode, MessagePackSerializerOptions? options = null,
        TimeSpan? timeout = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(connection);
        // The parcel is per thread and the await may resume elsewhere, so copy it into a rented array first.
        ArrayBufferWriter<byte> parcel = Serialize(request, options);
        byte[] rented = ArrayPool<byte>.Shared.Rent(parcel.WrittenCount);
        int length = parcel.WrittenCount;
        parcel.WrittenSpan.CopyTo(rented);
        Transaction reply;
        try
        {
            reply = await connection.CallAsync(code, rented.AsMemory(0, length), timeout, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(rented);
        }
        using (reply)
        {
            return reply.Deserialize<TResponse>(options);
        }
    }

    /// <summary>Deserializes the payload in place, without copying it out of the region.</summary>
    /// <exception cref="InvalidMessageException">The payload is not a valid <typeparamref name="T"/>; the connection is unaffected.</exception>
    [RequiresDynamicCode("MessagePack's default resolver generates code at run time.")]
    [RequiresUnreferencedCode("MessagePack's default resolver reflects over the message type.")]
    public static T Deserialize<T>(this Transaction transaction, MessagePackSerializerOptions? options = null)
    {
        try
        {
            return MessagePackSerializer.Deserialize<T>(transaction.Memory, options ?? DefaultOptions);
        }
        catch (MessagePackSerializationException error)
        {
            throw new InvalidMessageException(
                $"Transaction {transaction.Id} (code {transaction.Code}, {transaction.Length} bytes) is not a valid {typeof(T).Name}: {error.Message}", error);
        }
    }

    /// <summary>Serializes <paramref name="message"/> and sends it as the reply to this call.</summary>
    [RequiresDynamicCode("MessagePack's default resolver generates code at run time.")]
    [RequiresUnreferencedCode("MessagePack's default resolver reflects over the message type.")]
    public static void Reply<T>(this Transaction transaction, T message, MessagePackSerializerOptions? options = null)
    {
        ArrayBufferWriter<byte> parcel = Serialize(message, options);
        transaction.Reply(parcel.WrittenSpan);
    }

    [RequiresDynamicCode("MessagePack's default resolver generates code at run time.")]
    [RequiresUnreferencedCode("MessagePack's default resolver reflects over the message type.")]
    private static ArrayBufferWriter<byte> Serialize<T>(T message, MessagePackSerializerOptions? options)
    {
        ArrayBufferWriter<byte> parcel = t_parcel ??= new ArrayBufferWriter<byte>(4096);
        parcel.ResetWrittenCount();
        MessagePackSerializer.Serialize(parcel, message, options ?? DefaultOptions);
        return parcel;
    }
}
