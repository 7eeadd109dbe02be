using Grpc.Core;

namespace PageRange.Grpc;

/// <summary>What a client call learns at its end: response headers, status, trailers.</summary>
internal sealed class GrpcCallResult
{
    private readonly TaskCompletionSource<Metadata> _headers = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private Status? _status;
    private Metadata? _trailers;

    internal Task<Metadata> HeadersTask => _headers.Task;

    internal bool IsComplete => Volatile.Read(ref _trailers) is not null;

    internal Status GetStatus() => _status ?? throw new InvalidOperationException("Unable to get the status because the call is not complete.");

    internal Metadata GetTrailers() => Volatile.Read(ref _trailers) ?? throw new InvalidOperationException("Can't get the call trailers because the call has not completed successfully.");

    internal void SetHeaders(Metadata headers) => _headers.TrySetResult(headers);

    internal void Complete(Status status, Metadata trailers, Metadata? headers)
    {
        _headers.TrySetResult(headers ?? []);
        _status = status;
        Volatile.Write(ref _trailers, trailers);
    }

    internal void Fail(RpcException error)
    {
        if (_headers.TrySetException(error))
        {
            // Nobody may ever ask for the headers of a failed call.
            _ = _headers.Task.Exception;
        }
        if (_trailers is null)
        {
            _status = error.Status;
            Volatile.Write(ref _trailers, error.Trailers);
        }
    }
}
