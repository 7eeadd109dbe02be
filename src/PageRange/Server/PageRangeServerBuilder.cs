using System.Diagnostics.CodeAnalysis;
using MessagePack;
using PageRange.Serialization;
using PageRange.Transport;

namespace PageRange.Server;

/// <summary>Registers a server's handlers by code, before it starts (<see cref="PageRangeServer.Start(string, PageRangeServerOptions?, Action{PageRangeServerBuilder})"/>).</summary>
/// <remarks>
/// A code has one handler. A raw handler gets the <see cref="Transaction"/> (payload in place, valid until the handler
/// returns) and replies itself; if it returns without replying to a two-way call, the caller gets an error reply. A
/// typed handler gets the deserialized request and returns the response, which the server serializes into the caller's
/// region; a struct handler (<see cref="MapStruct{TRequest, TResponse}(uint, Func{TRequest, CallContext, TResponse})"/>)
/// the same with an unmanaged struct's bytes and no serializer. A handler fails a call with <see cref="PageRangeStatusException"/>; any other exception becomes
/// <see cref="CallStatus.Internal"/>.
/// </remarks>
public sealed class PageRangeServerBuilder
{
    private readonly Dictionary<uint, ServerHandler> _handlers = [];

    internal PageRangeServerBuilder()
    {
    }

    /// <summary>Maps <paramref name="code"/> to a raw synchronous handler, for calls and oneway messages.</summary>
    /// <param name="code">The code.</param>
    /// <param name="handler">Runs on a worker thread; replies with <see cref="Transaction.Reply(ReadOnlySpan{byte})"/> to a two-way call.</param>
    /// <returns>This builder.</returns>
    /// <exception cref="ArgumentException"><paramref name="code"/> is mapped already.</exception>
    public PageRangeServerBuilder Map(uint code, Action<Transaction, CallContext> handler)
    {
        ArgumentNullException.ThrowIfNull(handler);
        return Add(new ServerHandler(code, (transaction, context) =>
        {
            handler(transaction, context);
            return ValueTask.CompletedTask;
        }, OnewayOnly: false));
    }

    /// <summary>Maps <paramref name="code"/> to a raw asynchronous handler, for calls and oneway messages.</summary>
    /// <param name="code">The code.</param>
    /// <param name="handler">Starts on a worker thread; replies to a two-way call before its task completes.</param>
    /// <returns>This builder.</returns>
    /// <exception cref="ArgumentException"><paramref name="code"/> is mapped already.</exception>
    public PageRangeServerBuilder Map(uint code, Func<Transaction, CallContext, ValueTask> handler)
    {
        ArgumentNullException.ThrowIfNull(handler);
        return Add(new ServerHandler(code, handler, OnewayOnly: false));
    }

    /// <summary>Maps <paramref name="code"/> to a typed MessagePack handler: request in, response out.</summary>
    /// <typeparam name="TRequest">The request type.</typeparam>
    /// <typeparam name="TResponse">The response type.</typeparam>
    /// <param name="code">The code.</param>
    /// <param name="handler">Runs on a worker thread with the request, deserialized in place.</param>
    /// <param name="options">Serializer options; defaults to <see cref="PageRangeMessagePack.DefaultOptions"/>.</param>
    /// <returns>This builder.</returns>
    /// <remarks>A request that does not deserialize fails the call with <see cref="CallStatus.InvalidArgument"/>. A oneway
    /// message with this code runs the handler and drops the response.</remarks>
    /// <exception cref="ArgumentException"><paramref name="code"/> is mapped already.</exception>
    [RequiresDynamicCode("MessagePack's default resolver generates code at run time.")]
    [RequiresUnreferencedCode("MessagePack's default resolver reflects over the message type.")]
    public PageRangeServerBuilder Map<TRequest, TResponse>(
        uint code, Func<TRequest, CallContext, TResponse> handler, MessagePackSerializerOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(handler);
        return Add(new ServerHandler(code, (transaction, context) =>
        {
            TRequest request = DeserializeRequest<TRequest>(transaction, options);
            TResponse response = handler(request, context);
            if (transaction.IsTwoWay)
            {
                transaction.Reply(response, options);
            }
            return ValueTask.CompletedTask;
        }, OnewayOnly: false));
    }

    /// <summary>Maps <paramref name="code"/> to a typed asynchronous MessagePack handler.</summary>
    /// <inheritdoc cref="Map{TRequest, TResponse}(uint, Func{TRequest, CallContext, TResponse}, MessagePackSerializerOptions?)"/>
    [RequiresDynamicCode("MessagePack's default resolver generates code at run time.")]
    [RequiresUnreferencedCode("MessagePack's default resolver reflects over the message type.")]
    public PageRangeServerBuilder Map<TRequest, TResponse>(
        uint code, Func<TRequest, CallContext, ValueTask<TResponse>> handler, MessagePackSerializerOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(handler);
        return Add(new ServerHandler(code, async (transaction, context) =>
        {
            TRequest request = DeserializeRequest<TRequest>(transaction, options);
            TResponse response = await handler(request, context).ConfigureAwait(false);
            if (transaction.IsTwoWay)
            {
                transaction.Reply(response, options);
            }
        }, OnewayOnly: false));
    }

    /// <summary>Maps <paramref name="code"/> to a typed handler of oneway messages: one client's run one at a time, in order.</summary>
    /// <typeparam name="T">The message type.</typeparam>
    /// <param name="code">The code.</param>
    /// <param name="handler">Runs on a worker thread with the message, deserialized in place.</param>
    /// <param name="options">Serializer options; defaults to <see cref="PageRangeMessagePack.DefaultOptions"/>.</param>
    /// <returns>This builder.</returns>
    /// <remarks>A two-way call with this code fails with <see cref="CallStatus.FailedPrecondition"/>: it takes oneway messages only.</remarks>
    /// <exception cref="ArgumentException"><paramref name="code"/> is mapped already.</exception>
    [RequiresDynamicCode("MessagePack's default resolver generates code at run time.")]
    [RequiresUnreferencedCode("MessagePack's default resolver reflects over the message type.")]
    public PageRangeServerBuilder MapOneway<T>(uint code, Action<T, CallContext> handler, MessagePackSerializerOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(handler);
        return Add(new ServerHandler(code, (transaction, context) =>
        {
            handler(DeserializeRequest<T>(transaction, options), context);
            return ValueTask.CompletedTask;
        }, OnewayOnly: true));
    }

    /// <summary>Maps <paramref name="code"/> to a handler of fixed-layout struct messages: request in, response out, no serializer.</summary>
    /// <typeparam name="TRequest">The request type: an unmanaged struct the clients define alike (<see cref="PageRangeStructs"/>).</typeparam>
    /// <typeparam name="TResponse">The response type: an unmanaged struct the clients define alike.</typeparam>
    /// <param name="code">The code.</param>
    /// <param name="handler">Runs on a worker thread with a copy of the request (<see cref="PageRangeStructs.ReadStruct{T}(Transaction)"/>).</param>
    /// <returns>This builder.</returns>
    /// <remarks>A request that is not <typeparamref name="TRequest"/>'s size fails the call with <see cref="CallStatus.InvalidArgument"/>.
    /// A oneway message with this code runs the handler and drops the response.</remarks>
    /// <exception cref="ArgumentException"><paramref name="code"/> is mapped already.</exception>
    public PageRangeServerBuilder MapStruct<TRequest, TResponse>(uint code, Func<TRequest, CallContext, TResponse> handler)
        where TRequest : unmanaged
        where TResponse : unmanaged
    {
        ArgumentNullException.ThrowIfNull(handler);
        return Add(new ServerHandler(code, (transaction, context) =>
        {
            TResponse response = handler(ReadStructRequest<TRequest>(transaction), context);
            if (transaction.IsTwoWay)
            {
                transaction.ReplyStruct(response);
            }
            return ValueTask.CompletedTask;
        }, OnewayOnly: false));
    }

    /// <summary>Maps <paramref name="code"/> to an asynchronous handler of fixed-layout struct messages.</summary>
    /// <inheritdoc cref="MapStruct{TRequest, TResponse}(uint, Func{TRequest, CallContext, TResponse})"/>
    public PageRangeServerBuilder MapStruct<TRequest, TResponse>(uint code, Func<TRequest, CallContext, ValueTask<TResponse>> handler)
        where TRequest : unmanaged
        where TResponse : unmanaged
    {
        ArgumentNullException.ThrowIfNull(handler);
        return Add(new ServerHandler(code, async (transaction, context) =>
        {
            TResponse response = await handler(ReadStructRequest<TRequest>(transaction), context).ConfigureAwait(false);
            if (transaction.IsTwoWay)
            {
                transaction.ReplyStruct(response);
            }
        }, OnewayOnly: false));
    }

    /// <summary>Maps <paramref name="code"/> to a handler of oneway struct messages: one client's run one at a time, in order.</summary>
    /// <typeparam name="T">The message type: an unmanaged struct the clients define alike (<see cref="PageRangeStructs"/>).</typeparam>
    /// <param name="code">The code.</param>
    /// <param name="handler">Runs on a worker thread with a copy of the message.</param>
    /// <returns>This builder.</returns>
    /// <remarks>A two-way call with this code fails with <see cref="CallStatus.FailedPrecondition"/>: it takes oneway messages only.</remarks>
    /// <exception cref="ArgumentException"><paramref name="code"/> is mapped already.</exception>
    public PageRangeServerBuilder MapOnewayStruct<T>(uint code, Action<T, CallContext> handler)
        where T : unmanaged
    {
        ArgumentNullException.ThrowIfNull(handler);
        return Add(new ServerHandler(code, (transaction, context) =>
        {
            handler(ReadStructRequest<T>(transaction), context);
            return ValueTask.CompletedTask;
        }, OnewayOnly: true));
    }

    internal HandlerRegistry Build() => new(_handlers.Values);

    /// <summary>Maps a code the server reserves for itself (<see cref="PageRangeServer.DiagnosticsCode"/>).</summary>
    internal void AddReserved(ServerHandler handler) => _handlers.Add(handler.Code, handler);

    private PageRangeServerBuilder Add(ServerHandler handler)
    {
        if (handler.Code == PageRangeServer.DiagnosticsCode)
        {
            throw new ArgumentException($"Code {handler.Code} (0x{handler.Code:X8}) is reserved for the server's diagnostics (PageRangeServer.DiagnosticsCode).", nameof(handler));
        }
        if (!_handlers.TryAdd(handler.Code, handler))
        {
            throw new ArgumentException($"Code {handler.Code} already has a handler.", nameof(handler));
        }
        return this;
    }

    private static T ReadStructRequest<T>(Transaction transaction)
        where T : unmanaged
    {
        try
        {
            return transaction.ReadStruct<T>();
        }
        catch (InvalidMessageException error)
        {
            throw new PageRangeStatusException(CallStatus.InvalidArgument, $"The request is not a {typeof(T).Name}: it takes {System.Runtime.CompilerServices.Unsafe.SizeOf<T>()} bytes.", error);
        }
    }

    [RequiresDynamicCode("MessagePack's default resolver generates code at run time.")]
    [RequiresUnreferencedCode("MessagePack's default resolver reflects over the message type.")]
    private static T DeserializeRequest<T>(Transaction transaction, MessagePackSerializerOptions? options)
    {
        try
        {
            return transaction.Deserialize<T>(options);
        }
        catch (InvalidMessageException error)
        {
            throw new PageRangeStatusException(CallStatus.InvalidArgument, $"The request is not a valid {typeof(T).Name}.", error);
        }
    }
}
