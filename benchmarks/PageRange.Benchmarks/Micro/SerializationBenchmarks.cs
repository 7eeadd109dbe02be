using System.Buffers;
using BenchmarkDotNet.Attributes;
using MessagePack;
using PageRange.Benchmarks.CrossProcess;
using PageRange.Serialization;
using PageRange.Transport;

namespace PageRange.Benchmarks.Micro;

/// <summary>A small typed message: a struct of numbers, so deserializing it allocates nothing.</summary>
[MessagePackObject]
public readonly record struct Quote(
    [property: Key(0)] long Seq,
    [property: Key(1)] double Price,
    [property: Key(2)] int Quantity,
    [property: Key(3)] long Timestamp);

/// <summary>
/// Typed MessagePack messages into the region: serialize into the sender's reusable parcel, copy once into the
/// region, receive, deserialize in place, free. <c>[MemoryDiagnoser]</c> must read 0 B for a struct message.
/// </summary>
/// <remarks>
/// <see cref="ChannelParcelCopy"/> is the library's path without the connection around it; <see cref="ConnectionTypedCall"/>
/// and <see cref="ConnectionTypedOneway"/> are the public typed API (<see cref="PageRangeMessagePack"/>) with a server
/// thread answering. <see cref="BlobMessageCall"/> sends a class with a 64-byte array, which MessagePack must allocate
/// on each side: a cost of the message's shape, not of the transport.
/// </remarks>
[MemoryDiagnoser]
public class SerializationBenchmarks
{
    private const int Operations = 4096;

    private readonly ArrayBufferWriter<byte> _parcel = new(4096);
    private readonly MessagePackSerializerOptions _options = PageRangeMessagePack.DefaultOptions;
    private InboundChannel? _inbound;
    private OutboundChannel? _outbound;
    private ulong _id;

    private PageRangeListener? _listener;
    private PageRangeConnection? _client;
    private PageRangeConnection? _server;
    private Thread? _serverThread;
    private long _serverOneways;
    private readonly BenchMessage _blob = new() { Data = new byte[64] };

    [GlobalSetup(Target = nameof(ChannelParcelCopy))]
    public void SetupChannel()
    {
        var options = new ChannelOptions { RegionSize = 4L << 20, TxRingCapacity = 1024, FreeRingCapacity = 1024 };
        _inbound = InboundChannel.Create("bench-serialization", options);
        _outbound = LoopbackChannel.WriterFor(_inbound, options);
    }

    [GlobalSetup(Targets = [nameof(ConnectionTypedCall), nameof(ConnectionTypedOneway), nameof(BlobMessageCall)])]
    public void SetupConnection()
    {
        string name = $"bench-serialization-{Environment.ProcessId}";
        var options = new PageRangeOptions { WaitStrategy = WaitStrategy.SpinThenPark };
        _listener = PageRangeListener.Listen(name, options);
        ValueTask<PageRangeConnection> accept = _listener.AcceptAsync();
        _client = PageRangeConnection.ConnectAsync(name, options).AsTask().GetAwaiter().GetResult();
        _server = accept.AsTask().GetAwaiter().GetResult();
        _serverThread = new Thread(ServerLoop) { IsBackground = true, Name = "serialization server" };
        _serverThread.Start();
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _client?.Dispose();
        _server?.Dispose();
        _serverThread?.Join();
        _listener?.DisposeAsync().AsTask().GetAwaiter().GetResult();
        _outbound?.Dispose();
        _inbound?.Dispose();
    }

    /// <summary>Serialize into the parcel, copy once into the region, receive, deserialize in place, free, drain.</summary>
    [Benchmark(OperationsPerInvoke = Operations)]
    public long ChannelParcelCopy()
    {
        long sum = 0;
        for (int i = 0; i < Operations; i++)
        {
            _parcel.ResetWrittenCount();
            MessagePackSerializer.Serialize(_parcel, new Quote(i, 101.25, 7, 1_700_000_000), _options);
            if (!_outbound!.TrySend(_id++, BenchCodes.Oneway, TransactionFlags.Oneway, _parcel.WrittenSpan)
                || !_inbound!.TryReceive(out TransactionRecord record))
            {
                throw new InvalidOperationException("The region should never be full here.");
            }
            Quote quote = MessagePackSerializer.Deserialize<Quote>(_inbound.GetPayloadMemory(record), _options);
            sum += quote.Seq;
            _inbound.Free(record);
            _outbound.DrainFrees();
        }
        return sum;
    }

    /// <summary><c>Call&lt;Quote, Quote&gt;</c> through the connection; the server deserializes and replies with the same quote.</summary>
    [Benchmark(OperationsPerInvoke = Operations)]
    public long ConnectionTypedCall()
    {
        long sum = 0;
        for (int i = 0; i < Operations; i++)
        {
            sum += _client!.Call<Quote, Quote>(new Quote(i, 101.25, 7, 1_700_000_000), BenchCodes.Ping).Seq;
        }
        return sum;
    }

    /// <summary><c>SendOneway&lt;Quote&gt;</c> through the connection, then wait until the server has deserialized them all.</summary>
    [Benchmark(OperationsPerInvoke = Operations)]
    public long ConnectionTypedOneway()
    {
        long target = Volatile.Read(ref _serverOneways) + Operations;
        for (int i = 0; i < Operations; i++)
        {
            _client!.SendOneway(new Quote(i, 101.25, 7, 1_700_000_000), BenchCodes.Oneway);
        }
        var spinner = default(SpinWait);
        while (Volatile.Read(ref _serverOneways) < target)
        {
            spinner.SpinOnce(sleep1Threshold: -1);
        }
        return target;
    }

    /// <summary>A class message with a 64-byte array, as the cross-process MessagePack mode sends: allocates the message and its array on each side.</summary>
    [Benchmark(OperationsPerInvoke = Operations)]
    public long BlobMessageCall()
    {
        long sum = 0;
        for (int i = 0; i < Operations; i++)
        {
            sum += _client!.Call<BenchMessage, BenchMessage>(_blob, BenchCodes.Stop).Data.Length;
        }
        return sum;
    }

    private void ServerLoop()
    {
        try
        {
            while (true)
            {
                using Transaction transaction = _server!.Receive();
                switch (transaction.Code)
                {
                    case BenchCodes.Ping:
                        transaction.Reply(transaction.Deserialize<Quote>());
                        break;
                    case BenchCodes.Oneway:
                        _ = transaction.Deserialize<Quote>();
                        Interlocked.Increment(ref _serverOneways);
                        break;
                    default:
                        transaction.Reply(transaction.Deserialize<BenchMessage>());
                        break;
                }
            }
        }
        catch (Exception error) when (error is PageRangeException or ObjectDisposedException)
        {
            // The benchmark is over.
        }
    }
}
