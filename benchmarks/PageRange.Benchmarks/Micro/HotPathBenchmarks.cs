using BenchmarkDotNet.Attributes;
using PageRange.Benchmarks.CrossProcess;
using PageRange.Transport;

namespace PageRange.Benchmarks.Micro;

/// <summary>
/// The whole hot path of a message in one process, with <c>[MemoryDiagnoser]</c> counting every allocation of the
/// process (both threads): reserve a buffer in the region, copy the payload in, publish the record, receive it,
/// read every byte in place, free it, and drain the free on the writer's side.
/// </summary>
/// <remarks>
/// <see cref="OneThreadRoundRobin"/> plays both ends on one thread: the data plane's own cost, no cache-line transfer.
/// <see cref="TwoThreads"/> writes on the benchmark thread and reads on a second one (spin, then park on the futex),
/// as two processes would. <see cref="ConnectionCall"/> and <see cref="ConnectionOneway"/> go through
/// <see cref="PageRangeConnection"/> (listener, handshake, leader/follower reader) with a server thread answering.
/// Pages stay backed between messages (a private shrinker for the channels; nothing scans the shared one), so the
/// steady state makes no system call except a futex wake when the reader had parked.
/// </remarks>
[MemoryDiagnoser]
public class HotPathBenchmarks
{
    private const int Operations = 4096;

    private InboundChannel _inbound = null!;
    private OutboundChannel _outbound = null!;
    private byte[] _payload = null!;
    private ulong _id;

    private Thread? _reader;
    private volatile bool _stopReader;
    private long _received;
    private ulong _readerSum;

    private PageRangeListener? _listener;
    private PageRangeConnection? _client;
    private PageRangeConnection? _server;
    private Thread? _serverThread;
    private long _serverOneways;

    /// <summary>The payload size in bytes.</summary>
    [Params(64, 4096)]
    public int PayloadSize { get; set; }

    [GlobalSetup(Targets = [nameof(OneThreadRoundRobin)])]
    public void SetupOneThread() => SetupChannels(WaitStrategy.SpinThenPark);

    [GlobalSetup(Targets = [nameof(TwoThreads)])]
    public void SetupTwoThreads()
    {
        SetupChannels(WaitStrategy.SpinThenPark);
        _reader = new Thread(ReaderLoop) { IsBackground = true, Name = "hot-path reader" };
        _reader.Start();
    }

    [GlobalSetup(Targets = [nameof(ConnectionCall), nameof(ConnectionOneway)])]
    public void SetupConnection()
    {
        _payload = NewPayload(PayloadSize);
        string name = $"bench-hotpath-{Environment.ProcessId}";
        var options = new PageRangeOptions { WaitStrategy = WaitStrategy.SpinThenPark };
        _listener = PageRangeListener.Listen(name, options);
        ValueTask<PageRangeConnection> accept = _listener.AcceptAsync();
        _client = PageRangeConnection.ConnectAsync(name, options).AsTask().GetAwaiter().GetResult();
        _server = accept.AsTask().GetAwaiter().GetResult();
        _serverThread = new Thread(ServerLoop) { IsBackground = true, Name = "hot-path server" };
        _serverThread.Start();
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _stopReader = true;
        _inbound?.WakeReader();
        _reader?.Join();
        _client?.Dispose();
        _server?.Dispose();
        _serverThread?.Join();
        _listener?.DisposeAsync().AsTask().GetAwaiter().GetResult();
        _outbound?.Dispose();
        _inbound?.Dispose();
    }

    /// <summary>Reserve, copy, publish, receive, checksum in place, free, drain: one thread, both ends.</summary>
    [Benchmark(OperationsPerInvoke = Operations)]
    public ulong OneThreadRoundRobin()
    {
        ulong sum = 0;
        for (int i = 0; i < Operations; i++)
        {
            if (!_outbound.TryReserve(_payload.Length, oneway: true, out PendingBuffer buffer))
            {
                throw new InvalidOperationException("The region should never be full here.");
            }
            _payload.CopyTo(buffer.Span);
            _outbound.Commit(ref buffer, _payload.Length, _id++, BenchCodes.Oneway, TransactionFlags.Oneway);
            if (!_inbound.TryReceive(out TransactionRecord record))
            {
                throw new InvalidOperationException("The transaction just published is not there.");
            }
            sum += Checksum.Of(_inbound.GetPayload(record));
            _inbound.Free(record);
            _outbound.DrainFrees();
        }
        return sum;
    }

    /// <summary>The writer here, the reader on its own thread: send <c>4096</c> messages, then wait until all are read and freed.</summary>
    [Benchmark(OperationsPerInvoke = Operations)]
    public long TwoThreads()
    {
        long target = Volatile.Read(ref _received) + Operations;
        for (int i = 0; i < Operations; i++)
        {
            // TrySend drains the free ring first, so a full region empties as the reader frees.
            while (!_outbound.TrySend(_id++, BenchCodes.Oneway, TransactionFlags.Oneway, _payload))
            {
                Thread.SpinWait(16);
            }
        }
        var spinner = default(SpinWait);
        while (Volatile.Read(ref _received) < target)
        {
            spinner.SpinOnce(sleep1Threshold: -1);
        }
        return target;
    }

    /// <summary>A two-way raw call through the connection: the server thread replies with the payload read in place.</summary>
    [Benchmark(OperationsPerInvoke = Operations)]
    public ulong ConnectionCall()
    {
        ulong sum = 0;
        for (int i = 0; i < Operations; i++)
        {
            using Transaction reply = _client!.Call(BenchCodes.Ping, _payload);
            sum += Checksum.Of(reply.Payload);
        }
        return sum;
    }

    /// <summary>Oneway sends through the connection, then wait until the server thread has read them all.</summary>
    [Benchmark(OperationsPerInvoke = Operations)]
    public long ConnectionOneway()
    {
        long target = Volatile.Read(ref _serverOneways) + Operations;
        for (int i = 0; i < Operations; i++)
        {
            _client!.SendOneway(BenchCodes.Oneway, _payload);
        }
        var spinner = default(SpinWait);
        while (Volatile.Read(ref _serverOneways) < target)
        {
            spinner.SpinOnce(sleep1Threshold: -1);
        }
        return target;
    }

    private void SetupChannels(WaitStrategy wait)
    {
        _payload = NewPayload(PayloadSize);
        var options = new ChannelOptions { RegionSize = 4L << 20, TxRingCapacity = 1024, FreeRingCapacity = 1024, WaitStrategy = wait };
        _inbound = InboundChannel.Create("bench-hotpath", options);
        _outbound = LoopbackChannel.WriterFor(_inbound, options);
    }

    private void ReaderLoop()
    {
        while (!_stopReader)
        {
            if (_inbound.TryReceive(out TransactionRecord record))
            {
                _readerSum += Checksum.Of(_inbound.GetPayload(record));
                _inbound.Free(record);
                Interlocked.Increment(ref _received);
            }
            else
            {
                try
                {
                    _inbound.WaitForTransaction(TimeSpan.FromMilliseconds(100), CancellationToken.None);
                }
                catch (ObjectDisposedException)
                {
                    return;
                }
            }
        }
    }

    private void ServerLoop()
    {
        try
        {
            while (true)
            {
                using Transaction transaction = _server!.Receive();
                if (transaction.IsTwoWay)
                {
                    transaction.Reply(transaction.Payload);
                }
                else
                {
                    _readerSum += Checksum.Of(transaction.Payload);
                    Interlocked.Increment(ref _serverOneways);
                }
            }
        }
        catch (Exception error) when (error is PageRangeException or ObjectDisposedException)
        {
            // The benchmark is over.
        }
    }

    private static byte[] NewPayload(int size)
    {
        byte[] payload = new byte[size];
        new Random(size).NextBytes(payload);
        return payload;
    }
}
