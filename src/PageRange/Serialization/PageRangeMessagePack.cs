using System.Buffers;
using System.Diagnostics.CodeAnalysis;
using System.Runtime.Intrinsics.X86;
using MessagePack;
using PageRange.Transport;

namespace PageRange.Serialization;

/// <summary>
/// Typed messages over a <see cref="PageRangeConnection"/> with MessagePack: each message is serialized straight into a
/// buffer reserved in the peer's region (zero-copy), published, and deserialized in place on the other side.
/// </summary>
/// <remarks>
/// <para>
/// A MessagePack message's size is known only once it is written, so each send estimates it from the last message of
/// the same type (its size plus an eighth). Below <see cref="ZeroCopyThreshold"/> bytes the message is serialized
/// into a per-thread buffer (the "Parcel") and copied once: for small messages one reservation and one publish under
/// the send lock cost less than a separate reserve and commit (measured: 32-byte messages ~1 µs copied against
/// ~1.5 µs reserved; 64 KiB 7 µs against 5 µs; 1 MiB 56 µs against 35 µs). Above it the message is serialized straight
/// into a buffer reserved in the receiver's region and never copied. A message that outgrows its reservation is
/// finished in the Parcel, the reservation is given back, and the message is sent with one copy; the estimate grows.
/// The estimate is reserved only if it fits the peer's region now: otherwise the message is serialized into the Parcel
/// and waits for room for its real size, so a small message after a large one of its type never waits for (or fails
/// on) the room the large one needed, and the estimate shrinks back. While calls are traced or measured (an activity
/// listener on <see cref="Diagnostics.PageRangeTracing.SourceName"/>, or the client-call metrics) every typed call is
/// copied: the client span, the trace context sent with the call and the call metrics are on the copying path.
/// </para>
/// <para>
/// The default options (<see cref="DefaultOptions"/>) treat every payload as untrusted data from another process
/// (<see cref="MessagePackSecurity.UntrustedData"/>: bounded depth, hash-collision-resistant dictionaries).
/// MessagePack's default resolver generates code at run time, so these methods are not AOT-safe unless the options
/// carry a source-generated resolver.
/// </para>
/// <para>
/// Trimmed and native AOT applications: generate the formatters at build time (MessagePack's <c>mpc</c> tool,
/// MessagePack.Generator, writes a <c>GeneratedResolver</c> for the <c>[MessagePackObject]</c> types of a project) and
/// pass options whose resolver finds every message type there before any dynamic resolver is asked, once, in a static:
/// <code>
/// static readonly MessagePackSerializerOptions s_aot = MessagePackSerializerOptions.Standard
///     .WithResolver(CompositeResolver.Create(GeneratedResolver.Instance, BuiltinResolver.Instance, PrimitiveObjectResolver.Instance))
///     .WithSecurity(MessagePackSecurity.UntrustedData);
/// // ...
/// Pong pong = connection.Call&lt;Ping, Pong&gt;(ping, options: s_aot);
/// </code>
/// The methods keep their <see cref="RequiresDynamicCodeAttribute"/> and <see cref="RequiresUnreferencedCodeAttribute"/>
/// annotations, because the analyzer cannot see which resolver the options carry: with a resolver like the one above
/// the dynamic path is never taken, so a caller may suppress IL3050 and IL2026 at its call site with
/// <see cref="UnconditionalSuppressMessageAttribute"/> and a justification that names the resolver. The raw-bytes API
/// (<see cref="PageRangeConnection.Call(uint, ReadOnlySpan{byte}, TimeSpan?, CancellationToken)"/>, <c>Reserve</c>) needs
/// neither.
/// </para>
/// </remarks>
public static partial class PageRangeMessagePack
{
    /// <summary>The code typed sends use when the caller names none.</summary>
    public const uint DefaultCode = 1;

    /// <summary>The estimated size from which typed sends serialize straight into the peer's region: 1 KiB.</summary>
    public const int ZeroCopyThreshold = 1024;

    /// <summary>The largest parcel a thread keeps between messages: 1 MiB.</summary>
    /// <remarks>
    /// A parcel grows to the largest message copied through it; kept at that size, one large message would hold its
    /// memory for the thread's life (a pool thread's, a server worker's). A larger one serves its message and is dropped.
    /// </remarks>
    internal const int ParcelKeepLimit = 1 << 20;

    [ThreadStatic]
    private static ArrayBufferWriter<byte>? t_parcel;

    /// <summary>Set when the last <see cref="SerializeInto"/> on this thread spilled: the parcel that holds that message.</summary>
    [ThreadStatic]
    private static ArrayBufferWriter<byte>? t_spilled;

    /// <summary>Standard resolvers with <see cref="MessagePackSecurity.UntrustedData"/>.</summary>
    /// <remarks>
    /// A <see cref="ReadOnlyMemory{T}"/> or <see cref="System.Buffers.ReadOnlySequence{T}"/> of bytes in a message read with <see cref="Deserialize{T}"/> is a slice of the
    /// transaction's payload in the region, valid until the transaction is disposed (copy it to keep it longer); the
    /// replies of the typed <c>Call</c>, whose transaction is freed before it returns, get a copy.
    /// </remarks>
    public static MessagePackSerializerOptions DefaultOptions { get; } =
        MessagePackSerializerOptions.Standard
            .WithResolver(MessagePack.Resolvers.CompositeResolver.Create(
                [RegionMemoryFormatter.Instance, RegionSequenceFormatter.Instance], [MessagePack.Resolvers.StandardResolver.Instance]))
            .WithSecurity(MessagePackSecurity.UntrustedData);

    /// <summary>Serializes <paramref name="message"/> into the peer's region and sends it oneway.</summary>
    /// <param name="connection">The connection.</param>
    /// <param name="message">The message.</param>
    /// <param name="code">The method or opcode, for the receiver.</param>
    /// <param name="options">Serializer options; defaults to <see cref="DefaultOptions"/>.</param>
    /// <exception cref="MessageTooLargeException">The serialized message can never fit the peer's oneway quota.</exception>
    /// <exception cref="RegionFullException">The peer's region (or its oneway quota) stayed full.</exception>
    /// <exception cref="PeerDiedException">The peer is gone.</exception>
    [RequiresDynamicCode("MessagePack's default resolver generates code at run time.")]
    [RequiresUnreferencedCode("MessagePack's default resolver reflects over the message type.")]
    public static void SendOneway<T>(this PageRangeConnection connection, T message, uint code = DefaultCode, MessagePackSerializerOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(connection);
        int estimate = Estimate<T>(connection.MaxOnewayMessageSize);
        // Reserved only if the estimate fits now: it is the last message's size, and after a large one a small one must
        // not wait for (or fail on) room it does not need. The copying path waits for the real size, and corrects the estimate.
        if (estimate >= ZeroCopyThreshold
            && connection.TryRentReservation(estimate, ReservationKind.Oneway) is { } reservation
            && SerializeInto(reservation, message, options))
        {
            connection.CommitOneway(reservation, code, length: null);
            return;
        }
        connection.SendOneway(code, ParcelFor(message, options, estimate).WrittenSpan);
    }

    /// <summary>Calls the peer with a typed request and waits on this thread for its typed reply.</summary>
    /// <param name="connection">The connection.</param>
    /// <param name="request">The request.</param>
    /// <param name="code">The method or opcode, for the receiver.</param>
    /// <param name="options">Serializer options for the request and the reply; defaults to <see cref="DefaultOptions"/>.</param>
    /// <param name="timeout">How long to wait for the reply; defaults to <see cref="PageRangeOptions.CallTimeout"/>.</param>
    /// <param name="cancellationToken">Cancels the wait.</param>
    /// <returns>The reply, deserialized in place (the reply's buffer is freed before this returns).</returns>
    /// <exception cref="InvalidMessageException">The reply is not a valid <typeparamref name="TResponse"/>.</exception>
    /// <exception cref="RemoteCallException">The peer's handler failed or disposed the call without replying.</exception>
    /// <exception cref="PeerDiedException">The peer is gone.</exception>
    [RequiresDynamicCode("MessagePack's default resolver generates code at run time.")]
    [RequiresUnreferencedCode("MessagePack's default resolver reflects over the message type.")]
    public static TResponse Call<TRequest, TResponse>(
        this PageRangeConnection connection, TRequest request, uint code = DefaultCode, MessagePackSerializerOptions? options = null,
        TimeSpan? timeout = null, CancellationToken cancellationToken = default) =>
        Call<TRequest, TResponse>(connection, request, default(CallChain), code, options, timeout, cancellationToken);

    /// <summary>
    /// Calls the peer in <paramref name="chain"/> (a nested call made on behalf of an incoming call, from
    /// <see cref="Transaction.NestedChain"/>) with a typed request and waits on this thread for its typed reply.
    /// </summary>
    /// <param name="connection">The connection.</param>
    /// <param name="request">The request.</param>
    /// <param name="chain">The chain; <c>default</c> starts a new one.</param>
    /// <param name="code">The method or opcode, for the receiver.</param>
    /// <param name="options">Serializer options for the request and the reply; defaults to <see cref="DefaultOptions"/>.</param>
    /// <param name="timeout">How long to wait for the reply; defaults to <see cref="PageRangeOptions.CallTimeout"/>.</param>
    /// <param name="cancellationToken">Cancels the wait.</param>
    /// <returns>The reply, deserialized in place (the reply's buffer is freed before this returns).</returns>
    /// <exception cref="PageRangeStatusException">The call would be deeper than <see cref="PageRangeOptions.MaxCallDepth"/>.</exception>
    /// <exception cref="InvalidMessageException">The reply is not a valid <typeparamref name="TResponse"/>.</exception>
    /// <exception cref="RemoteCallException">The peer failed the call (its status and message), or disposed it without replying.</exception>
    /// <exception cref="PeerDiedException">The peer is gone.</exception>
    [RequiresDynamicCode("MessagePack's default resolver generates code at run time.")]
    [RequiresUnreferencedCode("MessagePack's default resolver reflects over the message type.")]
    public static TResponse Call<TRequest, TResponse>(
        this PageRangeConnection connection, TRequest request, CallChain chain, uint code = DefaultCode, MessagePackSerializerOptions? options = null,
        TimeSpan? timeout = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(connection);
        using Transaction reply = CallCore(connection, request, chain, code, options, timeout, cancellationToken);
        return DeserializeCore<TResponse>(reply, options, sliceInPlace: false);
    }

    /// <summary>
    /// Calls the peer with a typed request and returns its reply as a transaction the caller keeps: read it with
    /// <see cref="Deserialize{T}"/>, in place (byte memory and sequence members are slices of the region), then dispose it.
    /// </summary>
    /// <param name="connection">The connection.</param>
    /// <param name="request">The request.</param>
    /// <param name="code">The method or opcode, for the receiver.</param>
    /// <param name="options">Serializer options for the request; defaults to <see cref="DefaultOptions"/>.</param>
    /// <param name="timeout">How long to wait for the reply; defaults to <see cref="PageRangeOptions.CallTimeout"/>.</param>
    /// <param name="cancellationToken">Cancels the wait.</param>
    /// <returns>The reply, in the region until disposed. Dispose it, or the peer's region stays charged.</returns>
    /// <exception cref="RemoteCallException">The peer's handler failed or disposed the call without replying.</exception>
    /// <exception cref="PeerDiedException">The peer is gone.</exception>
    [RequiresDynamicCode("MessagePack's default resolver generates code at run time.")]
    [RequiresUnreferencedCode("MessagePack's default resolver reflects over the message type.")]
    public static Transaction CallForReply<TRequest>(
        this PageRangeConnection connection, TRequest request, uint code = DefaultCode, MessagePackSerializerOptions? options = null,
        TimeSpan? timeout = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(connection);
        return CallCore(connection, request, default, code, options, timeout, cancellationToken);
    }

    [RequiresDynamicCode("MessagePack's default resolver generates code at run time.")]
    [RequiresUnreferencedCode("MessagePack's default resolver reflects over the message type.")]
    private static Transaction CallCore<TRequest>(
        PageRangeConnection connection, TRequest request, CallChain chain, uint code, MessagePackSerializerOptions? options,
        TimeSpan? timeout, CancellationToken cancellationToken)
    {
        // Checked first, as the copying path's Call does: a reserved call checked only at its commit would leave the reservation behind.
        PageRangeConnection.ValidateCallTimeout(timeout);
        int estimate = Estimate<TRequest>(connection.MaxMessageSize);
        // Reserved only if the estimate fits now, as in SendOneway; and only if calls are not observed: the client span,
        // the trace context sent with the call and the call metrics are all on the copying path.
        return estimate >= ZeroCopyThreshold
            && !PageRangeConnection.CallsObserved
            && connection.TryRentReservation(estimate, ReservationKind.Call) is { } reservation
            && SerializeInto(reservation, request, options)
            ? connection.CommitCall(reservation, code, length: null, timeout, cancellationToken, chain)
            : connection.Call(code, ParcelFor(request, options, estimate).WrittenSpan, chain, timeout, cancellationToken);
    }

    /// <summary>Calls the peer with a typed request and completes with its typed reply.</summary>
    /// <remarks>While the peer's region is full the request waits for room asynchronously: no thread is blocked.</remarks>
    /// <inheritdoc cref="Call{TRequest, TResponse}(PageRangeConnection, TRequest, uint, MessagePackSerializerOptions?, TimeSpan?, CancellationToken)"/>
    [RequiresDynamicCode("MessagePack's default resolver generates code at run time.")]
    [RequiresUnreferencedCode("MessagePack's default resolver reflects over the message type.")]
    public static ValueTask<TResponse> CallAsync<TRequest, TResponse>(
        this PageRangeConnection connection, TRequest request, uint code = DefaultCode, MessagePackSerializerOptions? options = null,
        TimeSpan? timeout = null, CancellationToken cancellationToken = default) =>
        CallAsync<TRequest, TResponse>(connection, request, default(CallChain), code, options, timeout, cancellationToken);

    /// <summary>Calls the peer in <paramref name="chain"/> with a typed request and completes with its typed reply.</summary>
    /// <remarks>
    /// While the peer's region is full the request waits for room asynchronously. An asynchronous caller does not run
    /// the peer's nested calls itself: they go to the receivers.
    /// </remarks>
    /// <inheritdoc cref="Call{TRequest, TResponse}(PageRangeConnection, TRequest, CallChain, uint, MessagePackSerializerOptions?, TimeSpan?, CancellationToken)"/>
    [RequiresDynamicCode("MessagePack's default resolver generates code at run time.")]
    [RequiresUnreferencedCode("MessagePack's default resolver reflects over the message type.")]
    public static async ValueTask<TResponse> CallAsync<TRequest, TResponse>(
        this PageRangeConnection connection, TRequest request, CallChain chain, uint code = DefaultCode, MessagePackSerializerOptions? options = null,
        TimeSpan? timeout = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(connection);
        // Checked first, as in CallCore.
        PageRangeConnection.ValidateCallTimeout(timeout);
        int estimate = Estimate<TRequest>(connection.MaxMessageSize);
        Transaction reply;
        // As in CallCore: reserved only if the estimate fits now and calls are not observed.
        if (estimate >= ZeroCopyThreshold
            && !PageRangeConnection.CallsObserved
            && connection.TryRentReservation(estimate, ReservationKind.Call) is { } reservation
            && SerializeInto(reservation, request, options))
        {
            reply = await connection.CommitCallAsync(reservation, code, length: null, timeout, cancellationToken, chain).ConfigureAwait(false);
        }
        else
        {
            // The parcel is per thread and the await may resume elsewhere, so copy it into a rented array first.
            byte[] rented = RentCopy(ParcelFor(request, options, estimate), out int length);
            try
            {
                reply = await connection.CallAsync(code, rented.AsMemory(0, length), chain, timeout, cancellationToken).ConfigureAwait(false);
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(rented);
            }
        }
        using (reply)
        {
            return DeserializeCore<TResponse>(reply, options, sliceInPlace: false);
        }
    }

    /// <summary>Serializes <paramref name="message"/> into the peer's region and sends it oneway, waiting asynchronously for room.</summary>
    /// <param name="connection">The connection.</param>
    /// <param name="message">The message.</param>
    /// <param name="code">The method or opcode, for the receiver.</param>
    /// <param name="options">Serializer options; defaults to <see cref="DefaultOptions"/>.</param>
    /// <param name="cancellationToken">Cancels waiting for room; nothing is sent then.</param>
    /// <returns>Completes once the message is published.</returns>
    /// <exception cref="MessageTooLargeException">The serialized message can never fit the peer's oneway quota.</exception>
    /// <exception cref="RegionFullException">The peer's region (or its oneway quota) stayed full.</exception>
    /// <exception cref="OperationCanceledException">The token was cancelled before the message could be placed.</exception>
    /// <exception cref="PeerDiedException">The peer is gone.</exception>
    [RequiresDynamicCode("MessagePack's default resolver generates code at run time.")]
    [RequiresUnreferencedCode("MessagePack's default resolver reflects over the message type.")]
    public static ValueTask SendOnewayAsync<T>(
        this PageRangeConnection connection, T message, uint code = DefaultCode, MessagePackSerializerOptions? options = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(connection);
        int estimate = Estimate<T>(connection.MaxOnewayMessageSize);
        if (estimate >= ZeroCopyThreshold
            && connection.TryRentReservation(estimate, ReservationKind.Oneway) is { } reservation
            && SerializeInto(reservation, message, options))
        {
            connection.CommitOneway(reservation, code, length: null);
            return ValueTask.CompletedTask;
        }
        return SendCopyAsync(connection, RentCopy(ParcelFor(message, options, estimate), out int length), length, code, cancellationToken);
    }

    /// <summary>Serializes <paramref name="message"/> into the caller's region and sends it as the reply, waiting asynchronously for room.</summary>
    /// <param name="transaction">The incoming two-way call.</param>
    /// <param name="message">The reply.</param>
    /// <param name="options">Serializer options; defaults to <see cref="DefaultOptions"/>.</param>
    /// <param name="cancellationToken">Cancels waiting for room; nothing is sent then, and the call can still be answered.</param>
    /// <returns>Completes once the reply is published.</returns>
    /// <exception cref="InvalidOperationException">This is not a two-way call, or it was already replied to.</exception>
    /// <exception cref="PeerDiedException">The caller's process is gone.</exception>
    /// <exception cref="RegionFullException">The caller's region stayed full.</exception>
    /// <exception cref="OperationCanceledException">The token was cancelled before the reply could be placed.</exception>
    [RequiresDynamicCode("MessagePack's default resolver generates code at run time.")]
    [RequiresUnreferencedCode("MessagePack's default resolver reflects over the message type.")]
    public static ValueTask ReplyAsync<T>(this Transaction transaction, T message, MessagePackSerializerOptions? options = null, CancellationToken cancellationToken = default)
    {
        if (TryReplyInPlace(transaction, message, options, out int estimate))
        {
            return ValueTask.CompletedTask;
        }
        return ReplyCopyAsync(transaction, RentCopy(ParcelFor(message, options, estimate), out int length), length, cancellationToken);
    }

    private static async ValueTask SendCopyAsync(PageRangeConnection connection, byte[] rented, int length, uint code, CancellationToken cancellationToken)
    {
        try
        {
            await connection.SendOnewayAsync(code, rented.AsMemory(0, length), cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(rented);
        }
    }

    private static async ValueTask ReplyCopyAsync(Transaction transaction, byte[] rented, int length, CancellationToken cancellationToken)
    {
        try
        {
            await transaction.ReplyAsync(rented.AsMemory(0, length), cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(rented);
        }
    }

    /// <summary>
    /// The parcel holding the message for the copying path: already there after a spill (a reservation was tried and
    /// the message outgrew it), else serialized now.
    /// </summary>
    [RequiresDynamicCode("MessagePack's default resolver generates code at run time.")]
    [RequiresUnreferencedCode("MessagePack's default resolver reflects over the message type.")]
    private static ArrayBufferWriter<byte> ParcelFor<T>(T message, MessagePackSerializerOptions? options, int estimate)
    {
        // A spill leaves the whole message in the parcel with its length; a reservation that was never made leaves
        // whatever the last send put there, so serialize then. SerializeInto marks which happened.
        if (estimate >= ZeroCopyThreshold && t_spilled is { } spilled)
        {
            t_spilled = null;
            return spilled;
        }
        return Serialize(message, options);
    }

    /// <summary>A pooled copy of the parcel, which is per thread and cannot cross an await.</summary>
    private static byte[] RentCopy(ArrayBufferWriter<byte> parcel, out int length)
    {
        length = parcel.WrittenCount;
        byte[] rented = ArrayPool<byte>.Shared.Rent(length);
        parcel.WrittenSpan.CopyTo(rented);
        return rented;
    }

    /// <summary>Deserializes the payload in place, without copying it out of the region.</summary>
    /// <param name="transaction">The transaction; it stays live (dispose it yourself).</param>
    /// <param name="options">Serializer options; defaults to <see cref="DefaultOptions"/>.</param>
    /// <returns>The message. Only the object graph is allocated: MessagePack reads straight from the mapped region.</returns>
    /// <exception cref="InvalidMessageException">The payload is not a valid <typeparamref name="T"/>; the connection is unaffected.</exception>
    [RequiresDynamicCode("MessagePack's default resolver generates code at run time.")]
    [RequiresUnreferencedCode("MessagePack's default resolver reflects over the message type.")]
    public static T Deserialize<T>(this Transaction transaction, MessagePackSerializerOptions? options = null) =>
        DeserializeCore<T>(transaction, options, sliceInPlace: true);

    /// <summary>
    /// Deserializes in place; byte memory members are slices of the payload when <paramref name="sliceInPlace"/> (the
    /// caller keeps the transaction), copies when the transaction is freed before the message is handed out.
    /// </summary>
    [RequiresDynamicCode("MessagePack's default resolver generates code at run time.")]
    [RequiresUnreferencedCode("MessagePack's default resolver reflects over the message type.")]
    internal static T DeserializeCore<T>(Transaction transaction, MessagePackSerializerOptions? options, bool sliceInPlace)
    {
        bool outer = RegionMemoryFormatter.t_sliceInPlace;
        RegionMemoryFormatter.t_sliceInPlace = sliceInPlace;
        try
        {
            ReadOnlyMemory<byte> payload = transaction.Memory;
            PrefetchSmall(payload.Span);
            return DeserializeMessage<T>(payload, options ?? DefaultOptions);
        }
        catch (MessagePackSerializationException error)
        {
            throw new InvalidMessageException(
                $"Transaction {transaction.Id} (code {transaction.Code}, {transaction.Length} bytes) is not a valid {typeof(T).Name}: {error.Message}", error);
        }
        finally
        {
            RegionMemoryFormatter.t_sliceInPlace = outer;
        }
    }

    /// <summary>Payloads up to this many bytes (16 cache lines) have every line prefetched before they are deserialized.</summary>
    internal const int PrefetchLimit = 1024;

    /// <summary>
    /// Asks for every cache line of a small payload at once, before the deserializer walks it.
    /// </summary>
    /// <remarks>
    /// The peer wrote the payload on another core, so each of its lines is a cross-core miss (about 0.25 µs with the
    /// vCPUs far apart). A memcpy (the raw path) misses on all of them in parallel; a deserializer does not: where a
    /// member starts depends on the header bytes before it, and a blob member is read only later (copied for the typed
    /// <c>Call</c>'s reply, or re-serialized by a handler that echoes it), so each line missed one after the other. A
    /// 64-byte blob in a MessagePack message is 68 bytes, two lines: measured, the typed round trip paid about 0.7 µs
    /// over raw's where its serialization took 0.3 µs in a tight loop. Larger payloads are left to the hardware
    /// prefetcher (their walk is sequential) and to the reader: a large blob read in place may never be touched.
    /// </remarks>
    private static unsafe void PrefetchSmall(ReadOnlySpan<byte> payload)
    {
        if (!Sse.IsSupported || payload.IsEmpty || payload.Length > PrefetchLimit)
        {
            return;
        }
        fixed (byte* start = payload)
        {
            // SAFETY: every address is inside the payload's span (offsets below its length, and its last byte), which
            // the transaction keeps mapped while it is deserialized; a prefetch is a hint that neither faults nor
            // changes memory. Stepping a line from the first byte touches every line but perhaps the last; the last
            // byte covers that one.
            for (int offset = 0; offset < payload.Length; offset += 64)
            {
                Sse.Prefetch0(start + offset);
            }
            Sse.Prefetch0(start + payload.Length - 1);
        }
    }

    /// <summary>Serializes <paramref name="message"/> into the caller's region and sends it as the reply to this call.</summary>
    /// <param name="transaction">The incoming two-way call.</param>
    /// <param name="message">The reply.</param>
    /// <param name="options">Serializer options; defaults to <see cref="DefaultOptions"/>.</param>
    /// <exception cref="InvalidOperationException">This is not a two-way call, or it was already replied to.</exception>
    /// <exception cref="PeerDiedException">The caller's process is gone.</exception>
    [RequiresDynamicCode("MessagePack's default resolver generates code at run time.")]
    [RequiresUnreferencedCode("MessagePack's default resolver reflects over the message type.")]
    public static void Reply<T>(this Transaction transaction, T message, MessagePackSerializerOptions? options = null)
    {
        if (TryReplyInPlace(transaction, message, options, out int estimate))
        {
            return;
        }
        // A reservation not made, or aborted after a spill, leaves the call "not replied", so the plain reply goes through.
        transaction.Reply(ParcelFor(message, options, estimate).WrittenSpan);
    }

    /// <summary>
    /// Replies by serializing straight into the caller's region, if the type's size estimate is worth it and fits there
    /// now; otherwise (or after a spill) nothing is sent and the caller copies.
    /// </summary>
    /// <remarks>Reserved only if the estimate fits now, as in SendOneway: waiting for room a small reply does not need
    /// would run into the reply-room limit, and the caller would be closed as a client that stopped reading.</remarks>
    [RequiresDynamicCode("MessagePack's default resolver generates code at run time.")]
    [RequiresUnreferencedCode("MessagePack's default resolver reflects over the message type.")]
    private static bool TryReplyInPlace<T>(Transaction transaction, T message, MessagePackSerializerOptions? options, out int estimate)
    {
        PageRangeConnection connection = transaction.Connection;
        estimate = Estimate<T>(connection.MaxMessageSize);
        if (estimate >= ZeroCopyThreshold
            && connection.TryRentReplyReservation(transaction.Slot, transaction.Generation, estimate) is { } reservation
            && SerializeInto(reservation, message, options))
        {
            connection.CommitReply(reservation, length: null);
            return true;
        }
        return false;
    }

    /// <summary>
    /// Serializes into the reservation. Returns <see langword="true"/> if the message fit (commit the reservation);
    /// otherwise the reservation was aborted and the whole message is in the parcel <see cref="t_spilled"/> names.
    /// </summary>
    [RequiresDynamicCode("MessagePack's default resolver generates code at run time.")]
    [RequiresUnreferencedCode("MessagePack's default resolver reflects over the message type.")]
    private static bool SerializeInto<T>(Reservation reservation, T message, MessagePackSerializerOptions? options)
    {
        ArrayBufferWriter<byte> parcel = t_parcel ??= new ArrayBufferWriter<byte>(4096);
        reservation.Spill = parcel;
        try
        {
            SerializeMessage(reservation, message, options ?? DefaultOptions);
        }
        catch
        {
            reservation.Connection.AbortReservation(reservation);
            ForgetLargeParcel(parcel);
            throw;
        }
        SizeEstimate<T>.Update(reservation.Length);
        if (!reservation.Spilled)
        {
            return true;
        }
        reservation.Connection.AbortReservation(reservation);
        t_spilled = parcel;
        ForgetLargeParcel(parcel);
        return false;
    }

    /// <summary>Serializes into the per-thread parcel, for the copying path.</summary>
    [RequiresDynamicCode("MessagePack's default resolver generates code at run time.")]
    [RequiresUnreferencedCode("MessagePack's default resolver reflects over the message type.")]
    private static ArrayBufferWriter<byte> Serialize<T>(T message, MessagePackSerializerOptions? options)
    {
        ArrayBufferWriter<byte> parcel = t_parcel ??= new ArrayBufferWriter<byte>(4096);
        parcel.ResetWrittenCount();
        try
        {
            SerializeMessage(parcel, message, options ?? DefaultOptions);
        }
        finally
        {
            ForgetLargeParcel(parcel);
        }
        SizeEstimate<T>.Update(parcel.WrittenCount);
        return parcel;
    }

    /// <summary>
    /// Lets go of <paramref name="parcel"/>, the thread's, if a message grew it past <see cref="ParcelKeepLimit"/>: the
    /// caller still sends this message from it, and the thread's next copied message starts a small one.
    /// </summary>
    private static void ForgetLargeParcel(ArrayBufferWriter<byte> parcel)
    {
        if (parcel.Capacity > ParcelKeepLimit)
        {
            t_parcel = null;
        }
    }

    /// <summary>
    /// <see cref="MessagePackSerializer.Serialize{T}(IBufferWriter{byte}, T, MessagePackSerializerOptions, CancellationToken)"/>,
    /// with <see cref="DefaultOptions"/>' formatter for <typeparamref name="T"/> looked up once (<see cref="DefaultFormatter{T}"/>).
    /// </summary>
    /// <exception cref="MessagePackSerializationException">The formatter failed (what it threw is the inner exception), as MessagePack reports it.</exception>
    [RequiresDynamicCode("MessagePack's default resolver generates code at run time.")]
    [RequiresUnreferencedCode("MessagePack's default resolver reflects over the message type.")]
    private static void SerializeMessage<T>(IBufferWriter<byte> target, T message, MessagePackSerializerOptions options)
    {
        if (!ReferenceEquals(options, DefaultOptions))
        {
            MessagePackSerializer.Serialize(target, message, options);
            return;
        }
        var writer = new MessagePackWriter(target);
        try
        {
            DefaultFormatter<T>.Get().Serialize(ref writer, message, options);
        }
        catch (Exception error)
        {
            // MessagePackSerializer's own wrapping, so that either path fails alike.
            throw new MessagePackSerializationException($"Failed to serialize {typeof(T).FullName} value.", error);
        }
        writer.Flush();
    }

    /// <summary>
    /// <see cref="MessagePackSerializer.Deserialize{T}(ReadOnlyMemory{byte}, MessagePackSerializerOptions, CancellationToken)"/>,
    /// with <see cref="DefaultOptions"/>' formatter for <typeparamref name="T"/> looked up once (<see cref="DefaultFormatter{T}"/>).
    /// </summary>
    /// <exception cref="MessagePackSerializationException">The payload is not a valid <typeparamref name="T"/> (what the formatter threw is the inner exception).</exception>
    [RequiresDynamicCode("MessagePack's default resolver generates code at run time.")]
    [RequiresUnreferencedCode("MessagePack's default resolver reflects over the message type.")]
    private static T DeserializeMessage<T>(ReadOnlyMemory<byte> payload, MessagePackSerializerOptions options)
    {
        if (!ReferenceEquals(options, DefaultOptions))
        {
            return MessagePackSerializer.Deserialize<T>(payload, options);
        }
        var reader = new MessagePackReader(payload);
        try
        {
            return DefaultFormatter<T>.Get().Deserialize(ref reader, options);
        }
        catch (Exception error)
        {
            throw new MessagePackSerializationException($"Failed to deserialize {typeof(T).FullName} value.", error);
        }
    }

    /// <summary>
    /// <see cref="DefaultOptions"/>' formatter for <typeparamref name="T"/>, asked of its resolver once instead of per
    /// message.
    /// </summary>
    /// <remarks>
    /// MessagePackSerializer asks the options' resolver for every message, a generic interface method (a slow virtual
    /// dispatch) and the composite resolver's cache behind it, twice per side of a typed call: ~7% of the typed one-thread
    /// call probe's samples. Only <see cref="DefaultOptions"/> is cached, and only the uncompressed path it takes is
    /// replaced: it is ours, immutable, and uses no compression and no old-spec writing; any other options go through
    /// MessagePackSerializer as before. A formatter that cannot be found is not cached: each use asks again and fails
    /// alike.
    /// </remarks>
    private static class DefaultFormatter<T>
    {
        // Written once by whichever thread gets there first: a race only asks the resolver twice for the same formatter.
        private static MessagePack.Formatters.IMessagePackFormatter<T>? s_formatter;

        [RequiresDynamicCode("MessagePack's default resolver generates code at run time.")]
        [RequiresUnreferencedCode("MessagePack's default resolver reflects over the message type.")]
        internal static MessagePack.Formatters.IMessagePackFormatter<T> Get() =>
            s_formatter ??= DefaultOptions.Resolver.GetFormatterWithVerify<T>();
    }

    private static int Estimate<T>(long limit) => (int)Math.Min(Volatile.Read(ref SizeEstimate<T>.Bytes), limit);

    /// <summary>How many bytes to reserve for the next <typeparamref name="T"/>: the last one's size plus an eighth and a little.</summary>
    /// <remarks>Racy on purpose: a lost update only costs one copy or a few spare bytes.</remarks>
    private static class SizeEstimate<T>
    {
        internal static int Bytes;

        internal static void Update(int length)
        {
            long wanted = ((long)length + (length >> 3) + 64 + 7) & ~7L;
            Volatile.Write(ref Bytes, (int)Math.Min(wanted, 1L << 30));
        }
    }
}
