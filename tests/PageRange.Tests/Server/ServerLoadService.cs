using System.Buffers;
using System.Buffers.Binary;
using System.Collections.Concurrent;
using PageRange.Server;
using PageRange.Testing;
using PageRange.Transport;

namespace PageRange.Tests.Server;

/// <summary>
/// The service the load tests' clients call (<see cref="ServerLoadPayload"/>): an echo that transforms every byte, a
/// oneway sink that checks each client's sequence, and the report of what each client's oneways looked like.
/// </summary>
internal sealed class ServerLoadService
{
    private static readonly TimeSpan s_reportBound = TimeSpan.FromSeconds(30);

    private readonly ConcurrentDictionary<long, OnewayState> _byClient = new();
    private readonly ConcurrentDictionary<int, long> _operationsByPid = new();

    /// <summary>Calls and oneways handled for the process <paramref name="pid"/> so far.</summary>
    public long OperationsOf(int pid) => _operationsByPid.TryGetValue(pid, out long count) ? count : 0;

    public void Configure(PageRangeServerBuilder builder) => builder
        .Map(ServerLoadPayload.EchoCode, Echo)
        .Map(ServerLoadPayload.OnewayCode, Oneway)
        .Map(ServerLoadPayload.ReportCode, Report);

    private void Count(CallContext context) => _operationsByPid.AddOrUpdate(context.PeerPid, 1, static (_, count) => count + 1);

    private void Echo(Transaction transaction, CallContext context)
    {
        Count(context);
        ReadOnlySpan<byte> request = transaction.Payload;
        byte[] rented = ArrayPool<byte>.Shared.Rent(request.Length);
        try
        {
            ServerLoadPayload.Transform(request, rented);
            transaction.Reply(rented.AsSpan(0, request.Length));
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(rented);
        }
    }

    private void Oneway(Transaction transaction, CallContext context)
    {
        Count(context);
        OnewayState state = _byClient.GetOrAdd(context.Client.Id, static _ => new OnewayState());
        // One at a time per client (binder's rule): the lock only publishes the counts to the report's thread.
        lock (state)
        {
            if (!FaultPayload.TryVerify(transaction.Payload, out ulong seq))
            {
                state.Corrupt++;
            }
            else if (seq != state.Received + 1)
            {
                state.OutOfOrder++;
            }
            state.Received++;
        }
    }

    private async ValueTask Report(Transaction transaction, CallContext context)
    {
        ulong expected = BinaryPrimitives.ReadUInt64LittleEndian(transaction.Payload);
        OnewayState state = _byClient.GetOrAdd(context.Client.Id, static _ => new OnewayState());
        // A call may overtake oneways sent before it: wait (bounded) until they are all handled, off the pool, so the
        // workers stay free to handle those very oneways.
        long deadline = Environment.TickCount64 + (long)s_reportBound.TotalMilliseconds;
        while (Environment.TickCount64 < deadline)
        {
            lock (state)
            {
                if (state.Received >= expected)
                {
                    break;
                }
            }
            await Task.Delay(10);
        }
        byte[] report = new byte[24];
        lock (state)
        {
            ServerLoadPayload.WriteReport(report, state.Received, state.OutOfOrder, state.Corrupt);
        }
        transaction.Reply(report);
    }

    private sealed class OnewayState
    {
        public ulong Received;
        public ulong OutOfOrder;
        public ulong Corrupt;
    }
}
