using System.Buffers;
using System.IO.Pipelines;
using PageRange.Serialization;
using PageRange.Tests.Infrastructure;
using PageRange.Transport;

namespace PageRange.Tests.Serialization;

/// <summary>
/// <see cref="PageRangeStreams.AsDuplexPipe"/> over a real connection: bytes arrive whole and in order in both
/// directions, completion and errors cross over, a pending read can be cancelled, and a reader that stops reading
/// stops the writer.
/// </summary>
public sealed class PageRangeDuplexPipeTests
{
    [Fact]
    public async Task Streams_BothDirections_ArriveWholeAndCompletionEndsTheReader()
    {
        await using ConnectedPair pair = await ConnectedPair.CreateAsync();
        IDuplexPipe client = pair.Client.AsDuplexPipe();
        IDuplexPipe server = pair.Server.AsDuplexPipe();
        byte[] up = ReservedBufferTests.Pattern(3 << 20, 1);
        byte[] down = ReservedBufferTests.Pattern(1 << 20, 2);

        Task<byte[]> serverReads = ReadToEndAsync(server.Input);
        Task<byte[]> clientReads = ReadToEndAsync(client.Input);
        await Task.WhenAll(WriteAsync(client.Output, up, 7_777), WriteAsync(server.Output, down, 65_536)).WaitAsync(TestTimeouts.Long);

        Assert.True((await serverReads.WaitAsync(TestTimeouts.Long)).AsSpan().SequenceEqual(up));
        Assert.True((await clientReads.WaitAsync(TestTimeouts.Long)).AsSpan().SequenceEqual(down));
    }

    [Fact]
    public async Task PendingRead_Cancelled_ReturnsCanceledOrThrowsAndLosesNoData()
    {
        await using ConnectedPair pair = await ConnectedPair.CreateAsync();
        IDuplexPipe client = pair.Client.AsDuplexPipe();
        IDuplexPipe server = pair.Server.AsDuplexPipe();

        ValueTask<ReadResult> pending = server.Input.ReadAsync();
        Assert.False(pending.IsCompleted);
        server.Input.CancelPendingRead();
        ReadResult cancelled = await pending.AsTask().WaitAsync(TestTimeouts.Short);
        Assert.True(cancelled.IsCanceled);
        Assert.True(cancelled.Buffer.IsEmpty);
        server.Input.AdvanceTo(cancelled.Buffer.Start);

        using var token = new CancellationTokenSource();
        ValueTask<ReadResult> withToken = server.Input.ReadAsync(token.Token);
        Assert.False(withToken.IsCompleted);
        await token.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () => await withToken.AsTask().WaitAsync(TestTimeouts.Short));

        await client.Output.WriteAsync("hello"u8.ToArray());
        ReadResult result = await server.Input.ReadAsync().AsTask().WaitAsync(TestTimeouts.Short);
        Assert.Equal("hello"u8.ToArray(), result.Buffer.ToArray());
        server.Input.AdvanceTo(result.Buffer.End);
    }

    [Fact]
    public async Task Output_CompletedWithAnError_PeerReaderThrowsItsMessage()
    {
        await using ConnectedPair pair = await ConnectedPair.CreateAsync();
        IDuplexPipe client = pair.Client.AsDuplexPipe();
        IDuplexPipe server = pair.Server.AsDuplexPipe();
        await client.Output.WriteAsync(new byte[100]);
        await client.Output.CompleteAsync(new InvalidDataException("the source went bad"));

        var error = await Assert.ThrowsAsync<PageRangeException>(async () => await ReadToEndAsync(server.Input).WaitAsync(TestTimeouts.Long));
        Assert.Contains("The peer aborted the stream: InvalidDataException: the source went bad", error.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(nameof(PageRangeException))]
    [InlineData(nameof(PeerDiedException))]
    [InlineData(nameof(ObjectDisposedException))]
    public async Task Output_CompletedWithAConnectionError_PeerReaderSeesTheAbort(string errorType)
    {
        // A relay whose other side failed completes this side's output with that failure: the peer must hear of it
        // (these types were left out, and the peer waited for ever).
        await using ConnectedPair pair = await ConnectedPair.CreateAsync();
        IDuplexPipe client = pair.Client.AsDuplexPipe();
        IDuplexPipe server = pair.Server.AsDuplexPipe();
        await client.Output.WriteAsync(new byte[100]);
        const string Why = "the upstream connection failed";
        Exception upstream = errorType switch
        {
            nameof(PageRangeException) => new PageRangeException(Why),
            nameof(PeerDiedException) => new PeerDiedException(Why),
            _ => new ObjectDisposedException("upstream", Why),
        };
        await client.Output.CompleteAsync(upstream);

        var error = await Assert.ThrowsAsync<PageRangeException>(async () => await ReadToEndAsync(server.Input).WaitAsync(TestTimeouts.Long));
        Assert.Contains($"The peer aborted the stream: {errorType}: ", error.Message, StringComparison.Ordinal);
        Assert.Contains(Why, error.Message, StringComparison.Ordinal);
    }

    [Fact]
    [Trait("Category", "Hostile")]
    public async Task Abort_HostilePeerSendsAMegabyteOfControlCharacters_TheReaderGetsABoundedCleanMessage()
    {
        // 4 MiB: a oneway quota that takes the 1 MiB abort.
        PageRangeOptions options = ConnectedPair.SmallOptions();
        options.RegionSize = 4 << 20;
        await using ConnectedPair pair = await ConnectedPair.CreateAsync(options);
        IDuplexPipe server = pair.Server.AsDuplexPipe();
        byte[] hostile = System.Text.Encoding.UTF8.GetBytes(
            string.Concat(Enumerable.Repeat("\n\r\u001b[31mFATAL forged log line\u0007\u202E\u0085", (1 << 20) / 32)));
        Assert.InRange(hostile.Length, 1 << 20, 2 << 20);
        // A raw peer: no pipe of its own, only the abort message.
        pair.Client.SendOneway(PageRangeStreams.AbortCode, hostile);

        var error = await Assert.ThrowsAsync<PageRangeException>(async () => await ReadToEndAsync(server.Input).WaitAsync(TestTimeouts.Long));
        Assert.StartsWith("The peer aborted the stream: ", error.Message, StringComparison.Ordinal);
        Assert.InRange(error.Message.Length, 1, "The peer aborted the stream: ".Length + PeerText.MaxLength + 1);
        Assert.DoesNotContain(error.Message, c => char.IsControl(c) || c == '\u202E');
        Assert.Contains("FATAL forged log line", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task PeerGone_ReaderGetsTheBytesSentThenPeerDied_AndTheWriterFails()
    {
        await using ConnectedPair pair = await ConnectedPair.CreateAsync();
        IDuplexPipe client = pair.Client.AsDuplexPipe();
        IDuplexPipe server = pair.Server.AsDuplexPipe();
        await client.Output.WriteAsync(new byte[1000]);
        ReadResult first = await server.Input.ReadAtLeastAsync(1000).AsTask().WaitAsync(TestTimeouts.Long);
        Assert.Equal(1000, first.Buffer.Length);
        server.Input.AdvanceTo(first.Buffer.End);

        await pair.Client.DisposeAsync();
        await Assert.ThrowsAsync<PeerDiedException>(async () => await server.Input.ReadAsync().AsTask().WaitAsync(TestTimeouts.Long));
        await Assert.ThrowsAnyAsync<PageRangeException>(async () =>
        {
            // The send pump completes its reader with the death; the next flush sees it.
            for (int i = 0; i < 1000; i++)
            {
                await server.Output.WriteAsync(new byte[1000]).AsTask().WaitAsync(TestTimeouts.Long);
                await Task.Delay(10);
            }
        });
    }

    [Fact]
    public async Task SlowReader_StopsTheWriter_ThenEverythingArrives()
    {
        const int Total = 8 << 20;
        await using ConnectedPair pair = await ConnectedPair.CreateAsync();
        IDuplexPipe client = pair.Client.AsDuplexPipe();
        IDuplexPipe server = pair.Server.AsDuplexPipe();
        byte[] data = ReservedBufferTests.Pattern(Total, 3);
        long flushed = 0;
        Task writing = Task.Run(async () =>
        {
            for (int at = 0; at < Total; at += 64 << 10)
            {
                await client.Output.WriteAsync(data.AsMemory(at, 64 << 10));
                Interlocked.Add(ref flushed, 64 << 10);
            }
            await client.Output.CompleteAsync();
        });

        // Nobody reads: the writer must stall once the region and both pipes' buffers are full.
        long seen = -1;
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (clock.Elapsed < TestTimeouts.Short)
        {
            // Stalled means no progress over a whole interval after some progress: a writer task that has not started
            // yet on a busy machine has not stalled.
            long now = Interlocked.Read(ref flushed);
            if (now == seen && now > 0)
            {
                break;
            }
            seen = now;
            await Task.Delay(300);
        }
        Assert.False(writing.IsCompleted);
        // 256 KiB region, 30 KiB chunks: well under 1 MiB can be in flight.
        Assert.InRange(seen, 1, 1 << 20);

        byte[] received = await ReadToEndAsync(server.Input).WaitAsync(TestTimeouts.Long);
        await writing.WaitAsync(TestTimeouts.Long);
        Assert.True(received.AsSpan().SequenceEqual(data));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task SlowReader_RegionFullPastTheTimeoutAsTheStreamEnds_TheEndOrAbortStillArrives(bool abort)
    {
        // The end and the abort were sent with the region-full timeout while data waits for ever: behind a reader that
        // paused with the region full they failed, unsent, and the reader never saw the stream end.
        const int Chunk = 4096;
        PageRangeOptions options = ConnectedPair.SmallOptions();
        options.RegionFullTimeout = TimeSpan.FromMilliseconds(500);
        await using ConnectedPair pair = await ConnectedPair.CreateAsync(options);
        IDuplexPipe client = pair.Client.AsDuplexPipe(Chunk);
        IDuplexPipe server = pair.Server.AsDuplexPipe(Chunk);
        // The server's application reads nothing yet: its pipe takes two chunks, then the oneway quota fills. Exactly as
        // many chunks as fit, so all are sent and less than a chunk (or a pack of small messages) is left for the end.
        int chunks = 2 + (int)(pair.Client.MaxOnewayMessageSize / Chunk);
        byte[] data = ReservedBufferTests.Pattern(chunks * Chunk, 5);
        for (int at = 0; at < data.Length; at += Chunk)
        {
            await client.Output.WriteAsync(data.AsMemory(at, Chunk)).AsTask().WaitAsync(TestTimeouts.Long);
        }
        await Poll.WaitUntilAsync(() => pair.Client.OutboundStats.FreeOnewaySpace < Chunk, "the oneway quota full");
        Task completing = abort
            ? client.Output.CompleteAsync(new InvalidDataException(new string('x', 2 * Chunk))).AsTask()
            : client.Output.CompleteAsync().AsTask();
        await completing.WaitAsync(TestTimeouts.Long);

        // The reader pauses well past the region-full timeout, then reads to the end.
        await Task.Delay(4 * options.RegionFullTimeout);
        if (abort)
        {
            var error = await Assert.ThrowsAsync<PageRangeException>(async () => await ReadToEndAsync(server.Input).WaitAsync(TestTimeouts.Long));
            Assert.Contains("The peer aborted the stream: InvalidDataException: xxx", error.Message, StringComparison.Ordinal);
        }
        else
        {
            byte[] received = await ReadToEndAsync(server.Input).WaitAsync(TestTimeouts.Long);
            Assert.True(received.AsSpan().SequenceEqual(data));
        }
    }

    [Fact]
    public async Task ForeignTransaction_CompletesTheInputWithInvalidMessage()
    {
        await using ConnectedPair pair = await ConnectedPair.CreateAsync();
        IDuplexPipe server = pair.Server.AsDuplexPipe();
        pair.Client.SendOneway(5, [1, 2, 3]);
        var error = await Assert.ThrowsAsync<InvalidMessageException>(async () => await server.Input.ReadAsync().AsTask().WaitAsync(TestTimeouts.Long));
        Assert.Contains("is not part of the stream", error.Message, StringComparison.Ordinal);
        Assert.Throws<InvalidOperationException>(() => pair.Server.AsDuplexPipe());
    }

    [Fact]
    public async Task InputEndedByAForeignTransaction_LaterCallsAreRefusedAndOnewaysFreed()
    {
        // Once the input ended nothing received any more: the peer's calls waited out their timeout and its oneways
        // filled the region until its sends failed.
        await using ConnectedPair pair = await ConnectedPair.CreateAsync();
        IDuplexPipe server = pair.Server.AsDuplexPipe();
        Task<Transaction> foreign = pair.Client.CallAsync(5, new byte[] { 1, 2, 3 }, TestTimeouts.Long).AsTask();
        await Assert.ThrowsAsync<InvalidMessageException>(async () => await server.Input.ReadAsync().AsTask().WaitAsync(TestTimeouts.Long));
        Assert.Equal(CallStatus.FailedPrecondition, (await Assert.ThrowsAsync<RemoteCallException>(() => foreign.WaitAsync(TestTimeouts.Long))).Status);

        for (int i = 0; i < 3; i++)
        {
            RemoteCallException refused = await Assert.ThrowsAsync<RemoteCallException>(
                () => pair.Client.CallAsync(7, new byte[10], TestTimeouts.Long).AsTask().WaitAsync(TestTimeouts.Long));
            Assert.Equal(CallStatus.FailedPrecondition, refused.Status);
            Assert.Contains("arrived after the stream's input ended", refused.Message, StringComparison.Ordinal);
        }
        // Four times what the 256 KiB region holds.
        await Task.Run(() =>
        {
            for (int i = 0; i < 64; i++)
            {
                pair.Client.SendOneway(PageRangeStreams.DataCode, new byte[16 << 10]);
            }
        }).WaitAsync(TestTimeouts.Long);
    }

    [Fact]
    public async Task InputCompletedByTheApplication_ThePeersWriterDoesNotStall()
    {
        await using ConnectedPair pair = await ConnectedPair.CreateAsync();
        IDuplexPipe client = pair.Client.AsDuplexPipe();
        IDuplexPipe server = pair.Server.AsDuplexPipe();
        await server.Input.CompleteAsync();

        // Sixteen times what the 256 KiB region holds: dropped as it arrives.
        await WriteAsync(client.Output, ReservedBufferTests.Pattern(4 << 20, 9), 64 << 10).WaitAsync(TestTimeouts.Long);
        RemoteCallException refused = await Assert.ThrowsAsync<RemoteCallException>(
            () => pair.Client.CallAsync(7, new byte[10], TestTimeouts.Long).AsTask().WaitAsync(TestTimeouts.Long));
        Assert.Equal(CallStatus.FailedPrecondition, refused.Status);
    }

    internal static async Task WriteAsync(PipeWriter writer, byte[] data, int step)
    {
        for (int at = 0; at < data.Length; at += step)
        {
            int n = Math.Min(step, data.Length - at);
            data.AsSpan(at, n).CopyTo(writer.GetSpan(n));
            writer.Advance(n);
            FlushResult result = await writer.FlushAsync();
            Assert.False(result.IsCompleted);
        }
        await writer.CompleteAsync();
    }

    internal static async Task<byte[]> ReadToEndAsync(PipeReader reader)
    {
        var received = new ArrayBufferWriter<byte>();
        while (true)
        {
            ReadResult result = await reader.ReadAsync();
            foreach (ReadOnlyMemory<byte> segment in result.Buffer)
            {
                received.Write(segment.Span);
            }
            reader.AdvanceTo(result.Buffer.End);
            if (result.IsCompleted)
            {
                await reader.CompleteAsync();
                return received.WrittenSpan.ToArray();
            }
        }
    }
}
