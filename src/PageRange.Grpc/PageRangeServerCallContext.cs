using Grpc.Core;
using PageRange.Server;

namespace PageRange.Grpc;

/// <summary>A gRPC call's <see cref="ServerCallContext"/> over PageRange.</summary>
internal sealed class PageRangeServerCallContext : ServerCallContext
{
    private static readonly AuthContext NoAuth = new(null, new Dictionary<string, List<AuthProperty>>());

    private readonly string _method;
    private readonly string? _host;
    private readonly string _peer;
    private readonly DateTime _deadline;
    private readonly Metadata _requestHeaders;
    private readonly CancellationToken _cancellationToken;
    private readonly Func<Metadata, Task>? _sendHeaders;
    private Status _status;

    /// <param name="method">The method's full name.</param>
    /// <param name="host">The host the client named, if any.</param>
    /// <param name="call">The transport's context of the call (caller, deadline).</param>
    /// <param name="requestHeaders">The request headers.</param>
    /// <param name="sendHeaders">Sends response headers at once (a stream); null: they go with the reply (unary).</param>
    /// <param name="cancellationToken">Fires when the client cancels, at the deadline, or when the server stops.</param>
    internal PageRangeServerCallContext(
        string method, string? host, CallContext call, Metadata requestHeaders, Func<Metadata, Task>? sendHeaders, CancellationToken cancellationToken)
    {
        _method = method;
        _host = host;
        _peer = $"pagerange:pid={call.PeerPid},uid={call.PeerUid}";
        _deadline = call.Deadline?.UtcDateTime ?? DateTime.MaxValue;
        _requestHeaders = requestHeaders;
        _cancellationToken = cancellationToken;
        _sendHeaders = sendHeaders;
        Transport = call;
    }

    /// <summary>The transport's context of the call (tests reach the connection through it).</summary>
    internal CallContext Transport { get; }

    /// <summary>The response headers, once written (or once the first message went).</summary>
    internal Metadata? SentHeaders { get; private set; }

    /// <inheritdoc/>
    protected override string MethodCore => _method;

    /// <inheritdoc/>
    protected override string HostCore => _host ?? "";

    /// <inheritdoc/>
    protected override string PeerCore => _peer;

    /// <inheritdoc/>
    protected override DateTime DeadlineCore => _deadline;

    /// <inheritdoc/>
    protected override Metadata RequestHeadersCore => _requestHeaders;

    /// <inheritdoc/>
    protected override CancellationToken CancellationTokenCore => _cancellationToken;

    /// <inheritdoc/>
    protected override Metadata ResponseTrailersCore { get; } = [];

    /// <inheritdoc/>
    protected override Status StatusCore
    {
        get => _status;
        set => _status = value;
    }

    /// <inheritdoc/>
    protected override WriteOptions? WriteOptionsCore { get; set; }

    /// <inheritdoc/>
    protected override AuthContext AuthContextCore => NoAuth;

    /// <inheritdoc/>
    protected override ContextPropagationToken CreatePropagationTokenCore(ContextPropagationOptions? options) =>
        throw new NotSupportedException("Context propagation is not supported by gRPC over PageRange.");

    /// <inheritdoc/>
    protected override async Task WriteResponseHeadersAsyncCore(Metadata responseHeaders)
    {
        ArgumentNullException.ThrowIfNull(responseHeaders);
        if (SentHeaders is not null)
        {
            throw new InvalidOperationException("Response headers can only be sent once per call.");
        }
        GrpcMetadataCodec.GetSize(responseHeaders);
        SentHeaders = responseHeaders;
        if (_sendHeaders is not null)
        {
            await _sendHeaders(responseHeaders).ConfigureAwait(false);
        }
    }

    /// <summary>The first message of a stream goes: headers not written by then are empty.</summary>
    internal void MarkHeadersSent() => SentHeaders ??= [];
}
