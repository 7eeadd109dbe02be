using BenchmarkDotNet.Attributes;
using PageRange.Transport;

namespace PageRange.Benchmarks.Micro;

/// <summary>
/// One thread plays both ends of a channel: send (reserve, copy, publish, wake-if-parked), receive, free, drain.
/// Measures the data plane's own cost without a second core or a futex; the allocation column must read 0 B.
/// </summary>
[MemoryDiagnoser]
public class ChannelBenchmarks
{
    private const int OperationsPerInvoke = 1024;

    private InboundChannel _inbound = null!;
    private OutboundChannel _outbound = null!;
    private readonly TransactionRecord[] _batch = new TransactionRecord[32];
    private byte[] _payload = null!;
    private ulong _id;

    /// <summary>The payload size in bytes.</summary>
    [Params(64, 4096)]
    public int PayloadSize { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        var options = new ChannelOptions { RegionSize = 4L << 20, TxRingCapacity = 1024, FreeRingCapacity = 1024 };
        _inbound = InboundChannel.Create("bench", options);
        _outbound = LoopbackChannel.WriterFor(_inbound, options);
        _payload = new byte[PayloadSize];
        Random.Shared.NextBytes(_payload);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _outbound.Dispose();
        _inbound.Dispose();
    }

    /// <summary>Send, receive, read one byte in place, free, drain.</summary>
    [Benchmark(OperationsPerInvoke = OperationsPerInvoke)]
    public int SendReceiveFreeDrain()
    {
        int sum = 0;
        for (int i = 0; i < OperationsPerInvoke; i++)
        {
            if (!_outbound.TrySend(_id++, 1, TransactionFlags.Oneway, _payload) || !_inbound.TryReceive(out TransactionRecord record))
            {
                throw new InvalidOperationException("The channel should never be full here.");
            }
            sum += _inbound.GetPayload(record)[^1];
            _inbound.Free(record);
            _outbound.DrainFrees();
        }
        return sum;
    }

    /// <summary>Send, receive, read one byte in place, free: the sends drain the frees themselves, as a stream's do.</summary>
    [Benchmark(OperationsPerInvoke = OperationsPerInvoke)]
    public int SendReceiveFree()
    {
        int sum = 0;
        for (int i = 0; i < OperationsPerInvoke; i++)
        {
            if (!_outbound.TrySend(_id++, 1, TransactionFlags.Oneway, _payload) || !_inbound.TryReceive(out TransactionRecord record))
            {
                throw new InvalidOperationException("The channel should never be full here.");
            }
            sum += _inbound.GetPayload(record)[^1];
            _inbound.Free(record);
        }
        return sum;
    }

    /// <summary>Send a batch of 32, then receive and free them all, then drain: amortises the ring's cache-line traffic.</summary>
    [Benchmark(OperationsPerInvoke = OperationsPerInvoke)]
    public int Batched32()
    {
        int sum = 0;
        for (int batch = 0; batch < OperationsPerInvoke / 32; batch++)
        {
            for (int i = 0; i < 32; i++)
            {
                if (!_outbound.TrySend(_id++, 1, TransactionFlags.Oneway, _payload))
                {
                    throw new InvalidOperationException("The channel should never be full here.");
                }
            }
            while (_inbound.TryReceive(out TransactionRecord record))
            {
                sum += _inbound.GetPayload(record)[^1];
                _inbound.Free(record);
            }
            _outbound.DrainFrees();
        }
        return sum;
    }

    /// <summary>
    /// <see cref="Batched32"/> with the receiver batched as a connection's pump and release path are: the 32 records
    /// taken under one receive lock with one head store, each free written under the free lock as it comes and the
    /// free tail published (and the doorbell rung) once, with the last.
    /// </summary>
    [Benchmark(OperationsPerInvoke = OperationsPerInvoke)]
    public int Batched32ReceiverBatched()
    {
        int sum = 0;
        Span<TransactionRecord> records = _batch;
        for (int batch = 0; batch < OperationsPerInvoke / 32; batch++)
        {
            for (int i = 0; i < 32; i++)
            {
                if (!_outbound.TrySend(_id++, 1, TransactionFlags.Oneway, _payload))
                {
                    throw new InvalidOperationException("The channel should never be full here.");
                }
            }
            int taken = _inbound.TryReceiveBatch(records);
            for (int i = 0; i < taken; i++)
            {
                sum += _inbound.GetPayload(records[i])[^1];
                using (_inbound.FreeLock.EnterScope())
                {
                    _inbound.FreeUnderLock(records[i], deferPublish: i < taken - 1);
                }
            }
            _outbound.DrainFrees();
        }
        return sum;
    }
}
