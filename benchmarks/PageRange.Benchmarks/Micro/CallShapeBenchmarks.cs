using BenchmarkDotNet.Attributes;
using PageRange.Threading;
using PageRange.Transport;

namespace PageRange.Benchmarks.Micro;

/// <summary>
/// The data plane of one synchronous round trip and nothing else: a two-way call and its reply, each sent (inline up
/// to <see cref="InlineLayout.MaxPayload"/> bytes), received, copied out (inline) or read in place, and freed, by one
/// thread over one channel (the cost is the same as two), set up as a busy-spinning connection's are (records and frees
/// published without a fence). The call probe's round trip is this plus the connection layer (pending calls, the reader
/// role, routing, the slot table, transactions): the difference is what that layer costs.
/// </summary>
[MemoryDiagnoser]
public class CallShapeBenchmarks
{
    private const int OperationsPerInvoke = 1024;

    private InboundChannel _inbound = null!;
    private OutboundChannel _outbound = null!;
    private byte[] _payload = null!;
    private readonly byte[] _copy = new byte[InlineLayout.MaxStagedPayload];
    private readonly TransactionRecord[] _batch = new TransactionRecord[InboundChannel.ReceiveBatch];
    private ulong _id;

    /// <summary>The payload size in bytes: 64 travels inline, 256 in a slab slot.</summary>
    [Params(64, 256)]
    public int PayloadSize { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        // A connection's channels: small calls and replies inline (PageRangeOptions.InlineSmallPayloads, on by default).
        var options = new ChannelOptions
        {
            RegionSize = 4L << 20, TxRingCapacity = 1024, FreeRingCapacity = 4096, WaitStrategy = WaitStrategy.BusySpin,
            InlineSmallPayloads = true,
        };
        _inbound = InboundChannel.Create("bench-call-shape", options);
        _outbound = LoopbackChannel.WriterFor(_inbound, options);
        // As a busy-spinning connection does (PageRangeConnection's constructor): no fence after a free's publish.
        if (_outbound.PeerParksWithBarrier)
        {
            _inbound.PublishFreesWithoutFence();
        }
        if (!_outbound.RingsWithoutFence || !_inbound.FreesRingWithoutFence)
        {
            // Where membarrier is refused the connection fences too; this figure would then not be the one the docs quote.
            Console.WriteLine("// CallShapeBenchmarks: publishes or frees go with a fence here (no membarrier).");
        }
        _payload = new byte[PayloadSize];
        Random.Shared.NextBytes(_payload);
        // What the figure claims: 64 B travels inline, 256 B in a buffer.
        if (!_outbound.TrySend(_id++, 1, TransactionFlags.TwoWay, _payload, new RecordContext(ChainId: 7, Depth: 1, CallStatus.Ok))
            || !_inbound.TryReceive(out TransactionRecord first) || first.Inline != (PayloadSize <= InlineLayout.MaxPayload))
        {
            throw new InvalidOperationException($"A {PayloadSize} B call was not sent as the benchmark says (inline up to {InlineLayout.MaxPayload} B).");
        }
        _inbound.Free(first);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _outbound.Dispose();
        _inbound.Dispose();
    }

    /// <summary>One round trip: the call's direction, then the reply's.</summary>
    [Benchmark(OperationsPerInvoke = OperationsPerInvoke)]
    public int RoundTrip()
    {
        int sum = 0;
        for (int i = 0; i < OperationsPerInvoke; i++)
        {
            // As a connection does: the thread's id read once per operation, not once per lock pass.
            sum += OneDirection(TransactionFlags.TwoWay, new RecordContext(ChainId: 7, Depth: 1, CallStatus.Ok), ThreadToken.Current);
            sum += OneDirection(TransactionFlags.Reply, default, ThreadToken.Current);
        }
        return sum;
    }

    private int OneDirection(TransactionFlags flags, in RecordContext context, ThreadToken thread)
    {
        // The connection's calls: the send with the caller's token, the receive as its pump takes a batch.
        if (!_outbound.TrySend(thread, _id++, 1, flags, _payload, context) || _inbound.TryReceiveBatch(_batch, thread) != 1)
        {
            throw new InvalidOperationException("The channel should never be full here.");
        }
        ref TransactionRecord record = ref _batch[0];
        int last;
        if (record.Inline)
        {
            _inbound.CopyInlinePayload(record, _copy);
            last = _copy[record.Length - 1];
        }
        else
        {
            last = _inbound.GetPayload(record)[^1];
        }
        // As a transaction's dispose frees: under the lock the connection shares with its slot table.
        using (_inbound.FreeLock.EnterScope())
        {
            _inbound.FreeUnderLock(record);
        }
        return last;
    }
}
