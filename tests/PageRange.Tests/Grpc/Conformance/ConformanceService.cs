using System.Collections.Concurrent;
using System.Globalization;
using Google.Protobuf;
using Grpc.Core;

namespace PageRange.Tests.Grpc.Conformance;

/// <summary>
/// The one implementation of <c>tests/Protos/conformance.proto</c>, served by Kestrel and by PageRange in the tests and
/// by the TestHost's <c>grpc-serve</c> scenario (which links this file). What a handler saw (started, cancelled,
/// messages read) is recorded under a key the client chooses, and read back with <c>GetRecord</c>, so a test in
/// another process can check it too.
/// </summary>
internal sealed class ConformanceService : GrpcConformance.GrpcConformanceBase
{
    /// <summary>The request header that slows <c>ClientStream</c>'s reader: milliseconds to wait after each message.</summary>
    public const string ReadDelayHeader = "read-delay-ms";

    /// <summary>The request header naming the record of <c>ClientStream</c>'s progress.</summary>
    public const string RecordKeyHeader = "record-key";

    private readonly ConcurrentDictionary<string, CallRecord> _records = new(StringComparer.Ordinal);

    /// <summary>The byte at <paramref name="offset"/> of message <paramref name="index"/>: both ends compute it to check content.</summary>
    public static byte PatternByte(int index, int offset) => unchecked((byte)((index * 31) + offset));

    /// <summary>A message of <paramref name="size"/> pattern bytes.</summary>
    public static Chunk PatternChunk(int index, int size)
    {
        byte[] data = new byte[size];
        for (int i = 0; i < data.Length; i++)
        {
            data[i] = PatternByte(index, i);
        }
        return new Chunk { Index = index, Data = UnsafeByteOperations.UnsafeWrap(data) };
    }

    public override Task<EchoReply> Echo(EchoRequest request, ServerCallContext context)
    {
        if (request.ReplySize <= 0)
        {
            return Task.FromResult(new EchoReply { Payload = request.Payload });
        }
        return Task.FromResult(new EchoReply { Payload = PatternChunk(0, request.ReplySize).Data });
    }

    public override Task<Empty> Fail(FailRequest request, ServerCallContext context)
    {
        var trailers = new Metadata();
        foreach ((string key, string value) in request.Trailers)
        {
            trailers.Add(key, value);
        }
        throw new RpcException(new Status((StatusCode)request.Code, request.Detail), trailers);
    }

    public override Task<Empty> Throw(Empty request, ServerCallContext context) =>
        throw new InvalidOperationException("The conformance service's Throw handler throws.");

    public override async Task<Empty> WaitForCancel(RecordKey request, ServerCallContext context)
    {
        CallRecord record = _records.GetOrAdd(request.Name, _ => new CallRecord());
        record.Started = true;
        try
        {
            // Bounded, so a transport that never cancels fails the test instead of leaking a handler forever.
            await Task.Delay(TimeSpan.FromMinutes(2), context.CancellationToken);
        }
        catch (OperationCanceledException)
        {
            record.Cancelled = true;
            throw;
        }
        return new Empty();
    }

    public override Task<Record> GetRecord(RecordKey request, ServerCallContext context)
    {
        if (!_records.TryGetValue(request.Name, out CallRecord? record))
        {
            return Task.FromResult(new Record());
        }
        return Task.FromResult(new Record { Started = record.Started, Cancelled = record.Cancelled, Read = Interlocked.Read(ref record.Read) });
    }

    public override async Task<CallInfo> EchoHeaders(Empty request, ServerCallContext context)
    {
        var echoed = new Metadata();
        Metadata trailers = context.ResponseTrailers;
        var info = new CallInfo { Peer = context.Peer, Method = context.Method, Host = context.Host ?? "", HasDeadline = context.Deadline != DateTime.MaxValue };
        foreach (Metadata.Entry entry in context.RequestHeaders)
        {
            // Transport headers (user-agent, te, :authority...) differ by transport: only the test's own keys go back.
            if (!entry.Key.StartsWith("x-", StringComparison.Ordinal))
            {
                continue;
            }
            if (entry.IsBinary)
            {
                echoed.Add(entry.Key, entry.ValueBytes);
                trailers.Add("trailer-" + entry.Key, entry.ValueBytes);
                info.Headers.Add(new Header { Key = entry.Key, Binary = ByteString.CopyFrom(entry.ValueBytes) });
            }
            else
            {
                echoed.Add(entry.Key, entry.Value);
                trailers.Add("trailer-" + entry.Key, entry.Value);
                info.Headers.Add(new Header { Key = entry.Key, Value = entry.Value });
            }
        }
        await context.WriteResponseHeadersAsync(echoed);
        return info;
    }

    public override async Task ServerStream(StreamRequest request, IServerStreamWriter<Chunk> responseStream, ServerCallContext context)
    {
        for (int i = 0; i < request.Count; i++)
        {
            if (request.FailCode != 0 && i == request.FailAfter)
            {
                throw new RpcException(new Status((StatusCode)request.FailCode, $"failed after {i} messages"));
            }
            await responseStream.WriteAsync(PatternChunk(i, request.Size), context.CancellationToken);
        }
    }

    public override async Task<Sum> ClientStream(IAsyncStreamReader<Chunk> requestStream, ServerCallContext context)
    {
        int delayMs = 0;
        CallRecord? record = null;
        foreach (Metadata.Entry entry in context.RequestHeaders)
        {
            if (entry.Key == ReadDelayHeader)
            {
                delayMs = int.Parse(entry.Value, CultureInfo.InvariantCulture);
            }
            else if (entry.Key == RecordKeyHeader)
            {
                record = _records.GetOrAdd(entry.Value, _ => new CallRecord());
                record.Started = true;
            }
        }
        var sum = new Sum();
        try
        {
            await ReadAllAsync(requestStream, context, sum, record, delayMs);
        }
        catch (Exception) when (context.CancellationToken.IsCancellationRequested && record is not null)
        {
            // However the transport ends the read (OperationCanceledException, IOException), the token says why.
            record.Cancelled = true;
            throw;
        }
        return sum;
    }

    private static async Task ReadAllAsync(IAsyncStreamReader<Chunk> requestStream, ServerCallContext context, Sum sum, CallRecord? record, int delayMs)
    {
        while (await requestStream.MoveNext(context.CancellationToken))
        {
            Chunk chunk = requestStream.Current;
            sum.Count++;
            sum.Bytes += chunk.Data.Length;
            foreach (byte value in chunk.Data.Span)
            {
                sum.Checksum += value;
            }
            if (record is not null)
            {
                Interlocked.Increment(ref record.Read);
            }
            if (delayMs > 0)
            {
                await Task.Delay(delayMs, context.CancellationToken);
            }
        }
    }

    public override async Task Duplex(IAsyncStreamReader<Chunk> requestStream, IServerStreamWriter<Chunk> responseStream, ServerCallContext context)
    {
        while (await requestStream.MoveNext(context.CancellationToken))
        {
            await responseStream.WriteAsync(requestStream.Current, context.CancellationToken);
        }
    }

    private sealed class CallRecord
    {
        public volatile bool Started;
        public volatile bool Cancelled;
        public long Read;
    }
}
