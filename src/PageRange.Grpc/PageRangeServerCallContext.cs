using System.Globalization;
using System.Text;
using Grpc.Core;
using PageRange.Server;

namespace PageRange.Grpc;

/// <summary>A gRPC call's <see cref="ServerCallContext"/> over PageRange.</summary>
internal sealed class PageRangeServerCallContext : ServerCallContext
{
    /// <summary>The <see cref="AuthContext"/> property holding the caller's pid (decimal, UTF-8).</summary>
    internal const string PidProperty = "pagerange.pid";

    /// <summary>The <see cref="AuthContext"/> property holding the caller's uid (decimal, UTF-8): the peer's identity.</summary>
    internal const string UidProperty = "pagerange.uid";

    private readonly string _method;
    private readonly string? _host;
    private readonly string _peer;
    private readonly DateTime _deadline;
    private readonly Metadata _requestHeaders;
    private readonly CancellationToken _cancellationToken;
    private readonly Func<Metadata, Task>? _sendHeaders;
    private Status _status;
    private AuthContext? _auth;

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
    /// <remarks>
    /// The caller's pid and uid, from <c>SO_PEERCRED</c>: the kernel vouches for them, so the peer is authenticated and
    /// its identity is the uid. Made on first use.
    /// </remarks>
    protected override AuthContext AuthContextCore => _auth ??= new AuthContext(UidProperty, new Dictionary<string, List<AuthProperty>>
    {
        [PidProperty] = [AuthProperty.Create(PidProperty, Encoding.UTF8.GetBytes(Transport.PeerPid.ToString(CultureInfo.InvariantCulture)))],
        [UidProperty] = [AuthProperty.Create(UidProperty, Encoding.UTF8.GetBytes(Transport.PeerUid.ToString(CultureInfo.InvariantCulture)))],
    });

    /// <inheritdoc/>
    /// <remarks>
    /// Not supported, as in grpc-dotnet's server: <see cref="ContextPropagationToken"/>'s only constructor is internal
    /// to Grpc.Core.Api (visible to the retired Grpc.Core alone), so no other implementation can make one. Pass
    /// <see cref="ServerCallContext.Deadline"/> and <see cref="ServerCallContext.CancellationToken"/> to the child call's
    /// <see cref="CallOptions"/> instead.
    /// </remarks>
    protected override ContextPropagationToken CreatePropagationTokenCore(ContextPropagationOptions? options) =>
        throw new NotSupportedException(
            "CreatePropagationToken is not supported by gRPC over PageRange (Grpc.Core.Api lets no other implementation make a token): " +
            "pass context.Deadline and context.CancellationToken to the child call's CallOptions.");

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
