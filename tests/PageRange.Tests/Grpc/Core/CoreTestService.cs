using Google.Protobuf;
using Grpc.Core;
using PageRange.Tests.Grpc.Core.Protos;
using PageRange.Transport;

namespace PageRange.Tests.Grpc.Core;

/// <summary>The service the package's protocol tests call: each behaviour chosen by the request's text.</summary>
internal sealed class CoreTestService : CoreTest.CoreTestBase
{
    private static int s_instances;
    private long _clientMessagesRead;
    private long _serverMessagesWritten;

    /// <summary>Completes when a handler saw its cancellation token fire.</summary>
    public TaskCompletionSource<StatusCode> Cancelled { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>Completes with what the server-streaming handler's first failed write threw.</summary>
    public TaskCompletionSource<Exception> ServerWriteFailed { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>Instances made so far in this process (per-call mapping makes one per call).</summary>
    public static int Instances => Volatile.Read(ref s_instances);

    /// <summary>Messages the client-streaming handler has read so far.</summary>
    public long ClientMessagesRead => Interlocked.Read(ref _clientMessagesRead);

    /// <summary>Messages the server-streaming handler has written so far.</summary>
    public long ServerMessagesWritten => Interlocked.Read(ref _serverMessagesWritten);

    /// <summary>The server's end of the last call's connection.</summary>
    public PageRangeConnection? LastConnection { get; private set; }

    /// <summary>Called by the slow client-streaming reader after each message it read (test's probe).</summary>
    public Action? OnClientMessageRead { get; set; }

    public CoreTestService() => Interlocked.Increment(ref s_instances);

    public override async Task<CoreMessage> Unary(CoreMessage request, ServerCallContext context)
    {
        switch (request.Text)
        {
            case "throw-rpc":
                throw new RpcException(new Status(StatusCode.NotFound, "not here"), new Metadata { { "why", "because" } });
            case "throw":
                throw new InvalidOperationException("boom");
            case "bad-trailer":
                // As a handler that puts an exception's text in a trailer: a newline no peer accepts in metadata.
                throw new RpcException(new Status(StatusCode.Aborted, "with details"), new Metadata { { "error-details", "line one\nline two" } });
            case "wait":
                await WaitForCancellationAsync(context).ConfigureAwait(false);
                return request;
            case "context":
                await context.WriteResponseHeadersAsync(new Metadata { { "resp-h", "v1" } }).ConfigureAwait(false);
                context.ResponseTrailers.Add("trail", "t1");
                context.ResponseTrailers.Add("trail-bin", new byte[] { 1, 2, 3 });
                return new CoreMessage
                {
                    Text = string.Join('|', context.Peer, context.Method, context.Host, context.RequestHeaders.GetValue("req-h"),
                        context.Deadline == DateTime.MaxValue ? "none" : context.Deadline.ToString("O")),
                };
            case "auth":
                AuthContext auth = context.AuthContext;
                return new CoreMessage
                {
                    Text = string.Join('|', auth.IsPeerAuthenticated, auth.PeerIdentityPropertyName,
                        string.Join(',', auth.PeerIdentity.Select(static property => property.Value)),
                        string.Join(',', auth.FindPropertiesByName("pagerange.pid").Select(static property => property.Value)),
                        string.Join(',', auth.FindPropertiesByName("pagerange.uid").Select(static property => property.Value)),
                        auth.Properties.Count()),
                };
            case "propagate":
                try
                {
                    _ = context.CreatePropagationToken();
                    return new CoreMessage { Text = "made" };
                }
                catch (NotSupportedException error)
                {
                    return new CoreMessage { Text = error.Message };
                }
            case "deadline-token":
                // Whether the handler's token is the transport's own (its deadline timer, and no other), and its state.
                var transport = ((PageRange.Grpc.PageRangeServerCallContext)context).Transport;
                return new CoreMessage
                {
                    Text = string.Join('|', context.CancellationToken == transport.CancellationToken, context.CancellationToken.IsCancellationRequested,
                        context.Deadline.ToString("O")),
                };
            case "status":
                context.Status = new Status(StatusCode.FailedPrecondition, "set, not thrown");
                return request;
            default:
                return new CoreMessage { Text = request.Text, Number = request.Number + 1, Data = request.Data };
        }
    }

    public override async Task ServerStream(CoreMessage request, IServerStreamWriter<CoreMessage> responseStream, ServerCallContext context)
    {
        LastConnection = null;
        if (request.Text == "headers")
        {
            await context.WriteResponseHeadersAsync(new Metadata { { "stream-h", "s1" } }).ConfigureAwait(false);
        }
        if (request.Text == "too-large-first")
        {
            // Messages that never fit the client's region (4 MiB in these tests), more than the window of them: each
            // write fails, alone.
            var tooLarge = new CoreMessage { Data = ByteString.CopyFrom(new byte[8 << 20]) };
            for (int i = 0; i < 2 * PageRange.Grpc.GrpcWire.WindowMessages; i++)
            {
                try
                {
                    await responseStream.WriteAsync(tooLarge).ConfigureAwait(false);
                    throw new InvalidOperationException("a message of 8 MiB was written.");
                }
                catch (RpcException error) when (error.StatusCode == StatusCode.ResourceExhausted)
                {
                    // Refused, as it should be: the next one.
                }
            }
        }
        byte[] data = new byte[request.Number];
        for (int i = 0; i < request.Count; i++)
        {
            try
            {
                await responseStream.WriteAsync(new CoreMessage { Number = i, Data = ByteString.CopyFrom(data) }).ConfigureAwait(false);
            }
            catch (Exception error)
            {
                ServerWriteFailed.TrySetResult(error);
                throw;
            }
            Interlocked.Increment(ref _serverMessagesWritten);
        }
        context.ResponseTrailers.Add("sent", request.Count.ToString(System.Globalization.CultureInfo.InvariantCulture));
        switch (request.Text)
        {
            case "fail-after":
                throw new RpcException(new Status(StatusCode.Aborted, "stopped after the messages"));
            case "wait":
                await WaitForCancellationAsync(context).ConfigureAwait(false);
                break;
        }
    }

    public override async Task<CoreMessage> ClientStream(IAsyncStreamReader<CoreMessage> requestStream, ServerCallContext context)
    {
        LastConnection = ((PageRange.Grpc.PageRangeServerCallContext)context).Transport.Connection;
        long bytes = 0;
        int count = 0;
        while (await requestStream.MoveNext(CancellationToken.None).ConfigureAwait(false))
        {
            CoreMessage message = requestStream.Current;
            bytes += message.Data.Length;
            count++;
            Interlocked.Increment(ref _clientMessagesRead);
            OnClientMessageRead?.Invoke();
            if (message.DelayMs > 0)
            {
                await Task.Delay(message.DelayMs, context.CancellationToken).ConfigureAwait(false);
            }
            if (message.Text == "stop")
            {
                throw new RpcException(new Status(StatusCode.ResourceExhausted, "enough"));
            }
            if (message.Text == "return")
            {
                // Done before the client is: OK, with what was read so far.
                return new CoreMessage { Number = bytes, Count = count };
            }
            if (message.Text == "abort")
            {
                // A status no failed write of the client's could make up (a region full for good is ResourceExhausted).
                throw new RpcException(new Status(StatusCode.Aborted, "the handler ended the call"), new Metadata { { "why", "aborted" } });
            }
        }
        return new CoreMessage { Number = bytes, Count = count };
    }

    public override async Task Duplex(IAsyncStreamReader<CoreMessage> requestStream, IServerStreamWriter<CoreMessage> responseStream, ServerCallContext context)
    {
        while (await requestStream.MoveNext(context.CancellationToken).ConfigureAwait(false))
        {
            CoreMessage message = requestStream.Current;
            if (message.Text == "wait")
            {
                await WaitForCancellationAsync(context).ConfigureAwait(false);
            }
            await responseStream.WriteAsync(new CoreMessage { Text = message.Text, Number = message.Number * 2 }).ConfigureAwait(false);
        }
    }

    private async Task WaitForCancellationAsync(ServerCallContext context)
    {
        try
        {
            await Task.Delay(Timeout.Infinite, context.CancellationToken).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            // The client gives up at the deadline too, and its cancel may arrive a hair before the server's own timer fires.
            bool deadline = context.Deadline != DateTime.MaxValue && DateTime.UtcNow >= context.Deadline.AddMilliseconds(-50);
            Cancelled.TrySetResult(deadline ? StatusCode.DeadlineExceeded : StatusCode.Cancelled);
            throw;
        }
    }
}
