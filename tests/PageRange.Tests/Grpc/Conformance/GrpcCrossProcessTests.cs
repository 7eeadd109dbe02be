using System.Diagnostics;
using System.Globalization;
using Grpc.Core;
using PageRange.Grpc;
using PageRange.Tests.Infrastructure;
using PageRange.Tests.Transport;

namespace PageRange.Tests.Grpc.Conformance;

/// <summary>
/// The conformance service served by another process (the TestHost's <c>grpc-serve</c>) and called through the
/// generated client over <see cref="PageRangeGrpcChannel"/>: every method kind, a status error, and a client stream of
/// 100 MiB held back by a slow reader while the server process's resident memory stays bounded.
/// </summary>
[Collection(CrossProcessCollection.Name)]
public sealed class GrpcCrossProcessTests(ITestOutputHelper output)
{
    private static PageRangeGrpcChannelOptions ChannelOptions() => new()
    {
        ConnectionOptions = new PageRangeOptions { RegionSize = 8L << 20, WaitStrategy = WaitStrategy.SpinThenPark },
    };

    [Fact]
    public async Task GrpcServe_EveryMethodKindAndAStatusError_ServedByTheOtherProcess()
    {
        string name = ControlHandshakeTests.UniqueName();
        using TestHostProcess host = TestHostProcess.Start(output, "grpc-serve", name);
        try
        {
            int hostPid = int.Parse(host.ReadUntil("ready: "), CultureInfo.InvariantCulture);
            await using PageRangeCallInvoker invoker = PageRangeGrpcChannel.Create(name, ChannelOptions());
            var client = new GrpcConformance.GrpcConformanceClient(invoker);

            EchoReply echo = await client.EchoAsync(new EchoRequest { ReplySize = 20_000 }).ResponseAsync.WaitAsync(TestTimeouts.Long);
            Assert.Equal(ConformanceService.PatternChunk(0, 20_000).Data, echo.Payload);

            CallInfo info = await client.EchoHeadersAsync(new Empty(), new Metadata { { "x-from", "test" } }).ResponseAsync.WaitAsync(TestTimeouts.Long);
            Assert.Equal($"pagerange:pid={Environment.ProcessId},uid={PageRangeGrpcConformanceTests.CurrentUid()}", info.Peer);
            Assert.Contains(info.Headers, h => h.Key == "x-from" && h.Value == "test");

            var fail = new FailRequest { Code = (int)StatusCode.Unauthenticated, Detail = "not from here" };
            fail.Trailers.Add("x-host", hostPid.ToString(CultureInfo.InvariantCulture));
            RpcException error = await Assert.ThrowsAsync<RpcException>(() => client.FailAsync(fail).ResponseAsync.WaitAsync(TestTimeouts.Long));
            Assert.Equal(StatusCode.Unauthenticated, error.StatusCode);
            Assert.Equal("not from here", error.Status.Detail);
            Assert.Equal(hostPid.ToString(CultureInfo.InvariantCulture), error.Trailers.GetValue("x-host"));

            using (AsyncServerStreamingCall<Chunk> server = client.ServerStream(new StreamRequest { Count = 200, Size = 5000 }))
            {
                int index = 0;
                while (await server.ResponseStream.MoveNext(CancellationToken.None).WaitAsync(TestTimeouts.Long))
                {
                    Assert.Equal(ConformanceService.PatternChunk(index, 5000), server.ResponseStream.Current);
                    index++;
                }
                Assert.Equal(200, index);
            }

            using (AsyncClientStreamingCall<Chunk, Sum> clientStream = client.ClientStream())
            {
                for (int i = 0; i < 100; i++)
                {
                    await clientStream.RequestStream.WriteAsync(ConformanceService.PatternChunk(i, 1000)).WaitAsync(TestTimeouts.Long);
                }
                await clientStream.RequestStream.CompleteAsync().WaitAsync(TestTimeouts.Long);
                Sum sum = await clientStream.ResponseAsync.WaitAsync(TestTimeouts.Long);
                Assert.Equal(100, sum.Count);
                Assert.Equal(100_000, sum.Bytes);
            }

            using (AsyncDuplexStreamingCall<Chunk, Chunk> duplex = client.Duplex())
            {
                for (int i = 0; i < 50; i++)
                {
                    Chunk chunk = ConformanceService.PatternChunk(i, 2000);
                    await duplex.RequestStream.WriteAsync(chunk).WaitAsync(TestTimeouts.Long);
                    Assert.True(await duplex.ResponseStream.MoveNext(CancellationToken.None).WaitAsync(TestTimeouts.Long));
                    Assert.Equal(chunk, duplex.ResponseStream.Current);
                }
                await duplex.RequestStream.CompleteAsync().WaitAsync(TestTimeouts.Long);
                Assert.False(await duplex.ResponseStream.MoveNext(CancellationToken.None).WaitAsync(TestTimeouts.Long));
            }

            host.WriteLine("quit");
            host.ReadUntil("stopped: ok");
            Assert.Equal(0, host.WaitForExit());
        }
        finally
        {
            host.Kill();
        }
    }

    [Fact]
    public async Task GrpcServe_HundredMiBClientStreamToSlowReader_WriterHeldBack_ServerMemoryBounded()
    {
        const int Size = 64 << 10;
        const int Count = (100 << 20) / Size;
        // The credit window is 256 messages or 1 MiB (16 messages of 64 KiB): ahead by more than 4 MiB means the writer was not held back.
        const int MaxAhead = (4 << 20) / Size;
        // The server holds a window of messages and the garbage of those it read: 100 MiB buffered would show.
        const long MaxGrowth = 48L << 20;
        string name = ControlHandshakeTests.UniqueName();
        using TestHostProcess host = TestHostProcess.Start(output, "grpc-serve", name);
        try
        {
            int hostPid = int.Parse(host.ReadUntil("ready: "), CultureInfo.InvariantCulture);
            await using PageRangeCallInvoker invoker = PageRangeGrpcChannel.Create(name, ChannelOptions());
            var client = new GrpcConformance.GrpcConformanceClient(invoker);
            // A first stream warms both processes (JIT, pools, the region's pages) before the baseline is taken.
            using (AsyncClientStreamingCall<Chunk, Sum> warm = client.ClientStream())
            {
                for (int i = 0; i < 32; i++)
                {
                    await warm.RequestStream.WriteAsync(ConformanceService.PatternChunk(i, Size)).WaitAsync(TestTimeouts.Long);
                }
                await warm.RequestStream.CompleteAsync().WaitAsync(TestTimeouts.Long);
                await warm.ResponseAsync.WaitAsync(TestTimeouts.Long);
            }
            long baseline = ResidentBytes(hostPid);

            string key = Guid.NewGuid().ToString("N");
            var headers = new Metadata { { ConformanceService.ReadDelayHeader, "1" }, { ConformanceService.RecordKeyHeader, key } };
            using AsyncClientStreamingCall<Chunk, Sum> call = client.ClientStream(headers);
            Chunk chunk = ConformanceService.PatternChunk(3, Size);
            long written = 0;
            Task writer = Task.Run(async () =>
            {
                for (int i = 0; i < Count; i++)
                {
                    await call.RequestStream.WriteAsync(chunk).WaitAsync(TestTimeouts.Long);
                    Interlocked.Increment(ref written);
                }
                await call.RequestStream.CompleteAsync().WaitAsync(TestTimeouts.Long);
            });
            long maxAhead = 0;
            long peak = baseline;
            var clock = Stopwatch.StartNew();
            while (!writer.IsCompleted && clock.Elapsed < TimeSpan.FromMinutes(3))
            {
                // The reader's count first, the writer's after: the difference can only overstate the writer's lead.
                Record record = await client.GetRecordAsync(new RecordKey { Name = key }).ResponseAsync.WaitAsync(TestTimeouts.Long);
                maxAhead = Math.Max(maxAhead, Interlocked.Read(ref written) - record.Read);
                peak = Math.Max(peak, ResidentBytes(hostPid));
                await Task.Delay(20);
            }
            await writer.WaitAsync(TimeSpan.FromMinutes(3));
            Sum sum = await call.ResponseAsync.WaitAsync(TestTimeouts.Long);

            output.WriteLine($"writer at most {maxAhead} messages ahead; server resident {baseline >> 20} MiB before, peak {peak >> 20} MiB; {clock.Elapsed.TotalSeconds:F1} s");
            Assert.Equal(Count, sum.Count);
            Assert.Equal((long)Count * Size, sum.Bytes);
            Assert.InRange(maxAhead, 0, MaxAhead);
            Assert.InRange(peak - baseline, long.MinValue, MaxGrowth);
        }
        finally
        {
            host.Kill();
        }
    }

    /// <summary>The resident set of process <paramref name="pid"/> (VmRSS of /proc/pid/status), in bytes.</summary>
    private static long ResidentBytes(int pid)
    {
        string line = File.ReadLines($"/proc/{pid}/status").First(l => l.StartsWith("VmRSS:", StringComparison.Ordinal));
        string kib = line["VmRSS:".Length..].Trim().Split(' ')[0];
        return long.Parse(kib, CultureInfo.InvariantCulture) << 10;
    }
}
