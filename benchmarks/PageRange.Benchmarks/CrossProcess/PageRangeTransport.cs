using PageRange.Serialization;
using PageRange.Transport;

namespace PageRange.Benchmarks.CrossProcess;

/// <summary>
/// PageRange, measuring side: raw bytes (<c>Call</c>, <c>SendOneway</c>), typed MessagePack messages, or a 64-byte
/// struct (<c>CallStruct</c>, <c>SendOnewayStruct</c>; that size only). Its kind names the peer's way of receiving too:
/// <c>pagerange-raw</c>, <c>pagerange-msgpack</c> and <c>pagerange-struct</c> receive one transaction per <c>Receive</c>,
/// <c>pagerange-batch</c> (raw bytes) with <c>ReceiveBatch</c>.
/// </summary>
internal sealed class PageRangeHostTransport(PageRangeConnection connection, PageRangeListener listener, string kind, WaitStrategy wait)
    : IHostTransport
{
    private readonly bool messagePack = kind == "pagerange-msgpack";
    private readonly bool asStruct = kind == "pagerange-struct";

    public string Transport => kind;

    public string Mode => WaitStrategyNames.Of(wait);

    public bool Carries(int size) => !asStruct || size == BenchStruct.Size;

    public ulong RoundTrip(BenchPayload payload)
    {
        if (asStruct)
        {
            return connection.CallStruct<BenchStruct, BenchStruct>(BenchCodes.Ping, payload.Struct).Checksum();
        }
        if (messagePack)
        {
            BenchMessage reply = connection.Call<BenchMessage, BenchMessage>(payload.Message, BenchCodes.Ping);
            return Checksum.Of(reply.Data.Span);
        }
        using Transaction transaction = connection.Call(BenchCodes.Ping, payload.Data);
        return Checksum.Of(transaction.Payload);
    }

    public ulong OnewayRoundTrip(BenchPayload payload)
    {
        if (asStruct)
        {
            connection.SendOnewayStruct(BenchCodes.OnewayPing, payload.Struct);
        }
        else if (messagePack)
        {
            connection.SendOneway(payload.Message, BenchCodes.OnewayPing);
        }
        else
        {
            connection.SendOneway(BenchCodes.OnewayPing, payload.Data);
        }
        using Transaction echo = connection.Receive();
        if (echo.Code != BenchCodes.OnewayPing)
        {
            throw new InvalidOperationException($"Expected the peer's oneway echo, got code {echo.Code}.");
        }
        return asStruct ? echo.ReadStruct<BenchStruct>().Checksum()
            : messagePack ? Checksum.Of(echo.Deserialize<BenchMessage>().Data.Span)
            : Checksum.Of(echo.Payload);
    }

    public void SendOneways(BenchPayload payload, int count)
    {
        if (asStruct)
        {
            BenchStruct message = payload.Struct;
            for (int i = 0; i < count; i++)
            {
                connection.SendOnewayStruct(BenchCodes.Oneway, in message);
            }
        }
        else if (messagePack)
        {
            for (int i = 0; i < count; i++)
            {
                connection.SendOneway(payload.Message, BenchCodes.Oneway);
            }
        }
        else
        {
            for (int i = 0; i < count; i++)
            {
                connection.SendOneway(BenchCodes.Oneway, payload.Data);
            }
        }
    }

    public StopReport Stop()
    {
        // The stop goes oneway and so does its report: a two-way call may overtake oneway messages still queued at
        // the receiver (binder's rule: oneway transactions queue behind each other, calls do not), so a call could
        // stop the session before the stream is drained. Oneway after oneway stays in order.
        connection.SendOneway(BenchCodes.Stop, []);
        using Transaction report = connection.Receive();
        if (report.Code != BenchCodes.Stop)
        {
            throw new InvalidOperationException($"Expected the peer's stop report, got code {report.Code}.");
        }
        return StopReport.ReadFrom(report.Payload);
    }

    /// <summary>The connection, for the memory benchmark's look at the peer's region.</summary>
    public PageRangeConnection Connection => connection;

    public void Dispose()
    {
        connection.Dispose();
        listener.DisposeAsync().AsTask().GetAwaiter().GetResult();
    }
}

/// <summary>
/// PageRange, answering side: replies with the payload read in place (raw), the deserialized message re-sent
/// (MessagePack) or the struct read out and sent back (struct), and echoes a oneway ping the same way as a oneway message; receives one transaction per <c>Receive</c>, or (raw) hands every ready one to a handler with
/// <c>ReceiveBatch</c>. With a <paramref name="stateFile"/>, writes the connection's state there when it is disposed (<c>--dump-state</c>).
/// </summary>
internal sealed class PageRangePeerTransport(
    PageRangeConnection connection, bool messagePack, bool receiveBatch, bool asStruct = false, string? stateFile = null) : IPeerTransport
{
    public void Serve()
    {
        if (receiveBatch)
        {
            var state = new BatchServe(connection);
            while (!state.Stopped)
            {
                connection.ReceiveBatch(BatchServe.Handle, state);
            }
            return;
        }
        var tally = new ServeTally();
        Span<byte> report = stackalloc byte[StopReport.Size];
        while (true)
        {
            using Transaction transaction = connection.Receive();
            switch (transaction.Code)
            {
                case BenchCodes.Ping when asStruct:
                    BenchStruct structPing = transaction.ReadStruct<BenchStruct>();
                    tally.AddEcho(BenchStruct.Size);
                    ReplyDelay.Apply();
                    transaction.ReplyStruct(structPing);
                    break;
                case BenchCodes.Ping when messagePack:
                    BenchMessage ping = transaction.Deserialize<BenchMessage>();
                    tally.AddEcho(ping.Data.Length);
                    ReplyDelay.Apply();
                    transaction.Reply(ping);
                    break;
                case BenchCodes.Ping:
                    tally.AddEcho(transaction.Length);
                    ReplyDelay.Apply();
                    transaction.Reply(transaction.Payload);
                    break;
                case BenchCodes.OnewayPing when asStruct:
                    BenchStruct structOnewayPing = transaction.ReadStruct<BenchStruct>();
                    tally.AddEcho(BenchStruct.Size);
                    ReplyDelay.Apply();
                    connection.SendOnewayStruct(BenchCodes.OnewayPing, structOnewayPing);
                    break;
                case BenchCodes.OnewayPing when messagePack:
                    BenchMessage onewayPing = transaction.Deserialize<BenchMessage>();
                    tally.AddEcho(onewayPing.Data.Length);
                    ReplyDelay.Apply();
                    connection.SendOneway(onewayPing, BenchCodes.OnewayPing);
                    break;
                case BenchCodes.OnewayPing:
                    tally.AddEcho(transaction.Length);
                    ReplyDelay.Apply();
                    connection.SendOneway(BenchCodes.OnewayPing, transaction.Payload);
                    break;
                case BenchCodes.Oneway when asStruct:
                    BenchStruct structOneway = transaction.ReadStruct<BenchStruct>();
                    tally.Add(BenchStruct.BytesOf(in structOneway));
                    break;
                case BenchCodes.Oneway when messagePack:
                    tally.Add(transaction.Deserialize<BenchMessage>().Data.Span);
                    break;
                case BenchCodes.Oneway:
                    tally.Add(transaction.Payload);
                    break;
                case BenchCodes.Stop:
                    tally.Report.WriteTo(report);
                    connection.SendOneway(BenchCodes.Stop, report);
                    return;
                default:
                    throw new InvalidOperationException($"Unknown code {transaction.Code}.");
            }
        }
    }

    public void Dispose()
    {
        if (stateFile is not null)
        {
            File.WriteAllText(stateFile, connection.DumpState());
        }
        connection.Dispose();
    }

    /// <summary>The batch receiver's handler and state: what <see cref="Serve"/> does per transaction, for raw bytes.</summary>
    private sealed class BatchServe(PageRangeConnection connection)
    {
        internal static readonly TransactionHandler<BatchServe> Handle = static (state, in transaction) => state.Serve(transaction);

        private ServeTally _tally;

        internal bool Stopped { get; private set; }

        private void Serve(in Transaction transaction)
        {
            switch (transaction.Code)
            {
                case BenchCodes.Ping:
                    _tally.AddEcho(transaction.Length);
                    ReplyDelay.Apply();
                    transaction.Reply(transaction.Payload);
                    break;
                case BenchCodes.OnewayPing:
                    _tally.AddEcho(transaction.Length);
                    ReplyDelay.Apply();
                    connection.SendOneway(BenchCodes.OnewayPing, transaction.Payload);
                    break;
                case BenchCodes.Oneway:
                    _tally.Add(transaction.Payload);
                    break;
                case BenchCodes.Stop:
                    Span<byte> report = stackalloc byte[StopReport.Size];
                    _tally.Report.WriteTo(report);
                    connection.SendOneway(BenchCodes.Stop, report);
                    Stopped = true;
                    break;
                default:
                    throw new InvalidOperationException($"Unknown code {transaction.Code}.");
            }
        }
    }
}

/// <summary>The spelling of wait strategies on the command line and in the results.</summary>
internal static class WaitStrategyNames
{
    public static string Of(WaitStrategy wait) => wait switch
    {
        WaitStrategy.BusySpin => "busy-spin",
        WaitStrategy.SpinThenPark => "spin-then-park",
        WaitStrategy.Park => "park",
        _ => throw new ArgumentOutOfRangeException(nameof(wait), wait, null),
    };

    public static WaitStrategy Parse(string text) => text switch
    {
        "busy-spin" => WaitStrategy.BusySpin,
        "spin-then-park" => WaitStrategy.SpinThenPark,
        "park" => WaitStrategy.Park,
        _ => throw new ArgumentException($"Unknown wait strategy '{text}'.", nameof(text)),
    };
}
