using System.Diagnostics;
using System.IO.Pipelines;
using System.Security.Cryptography;
using PageRange.Serialization;
using PageRange.Tests.Infrastructure;
using PageRange.Tests.Serialization;
using PageRange.Tests.Transport;
using PageRange.Transport;

namespace PageRange.Tests.CrossProcess;

/// <summary>A byte stream through <see cref="PageRangeStreams.AsDuplexPipe"/> between this process and a real TestHost.</summary>
[Collection(CrossProcessCollection.Name)]
public sealed class SerializationStreamTests(ITestOutputHelper output)
{
    [Fact]
    public async Task AsDuplexPipe_100MiBToAnotherProcess_ChecksumMatchesAndBothSidesComplete()
    {
        const long Total = 100L << 20;
        string name = ControlHandshakeTests.UniqueName();
        await using PageRangeListener listener = PageRangeListener.Listen(name);
        ValueTask<PageRangeConnection> accepting = listener.AcceptAsync();
        using TestHostProcess host = TestHostProcess.Start(output, "pipe-sink", name);
        await using PageRangeConnection connection = await accepting.AsTask().WaitAsync(TestTimeouts.Long);
        Assert.Equal(host.Id, connection.PeerPid);
        IDuplexPipe pipe = connection.AsDuplexPipe();

        // Nothing has come back yet: a pending read waits, and cancelling it loses nothing.
        ValueTask<ReadResult> pending = pipe.Input.ReadAsync();
        pipe.Input.CancelPendingRead();
        ReadResult cancelled = await pending.AsTask().WaitAsync(TestTimeouts.Short);
        Assert.True(cancelled.IsCanceled);
        pipe.Input.AdvanceTo(cancelled.Buffer.Start);

        // 100 MiB of varied bytes: windows of one random megabyte at shifting offsets, in writes of shifting sizes.
        byte[] source = ReservedBufferTests.Pattern(1 << 20, 42);
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var clock = Stopwatch.StartNew();
        long sent = 0;
        int step = 1;
        while (sent < Total)
        {
            int size = (int)Math.Min(Total - sent, 1000 + (step * 7919 % (300 << 10)));
            int offset = step * 104_729 % (source.Length - size);
            ReadOnlyMemory<byte> slice = source.AsMemory(offset, size);
            hash.AppendData(slice.Span);
            FlushResult flushed = await pipe.Output.WriteAsync(slice).AsTask().WaitAsync(TestTimeouts.Long);
            Assert.False(flushed.IsCompleted);
            sent += size;
            step++;
        }
        await pipe.Output.CompleteAsync();
        string expected = Convert.ToHexString(hash.GetHashAndReset());

        // The peer's reader completed (it saw the end of the stream) with every byte, then answered and completed.
        Assert.Equal($"{Total} {expected}", host.ReadUntil("received: "));
        byte[] answer = await PageRangeDuplexPipeTests.ReadToEndAsync(pipe.Input).WaitAsync(TestTimeouts.Long);
        output.WriteLine($"100 MiB in {clock.Elapsed.TotalSeconds:F2} s ({Total / clock.Elapsed.TotalSeconds / 1e9:F2} GB/s)");
        Assert.Equal(expected, Convert.ToHexString(answer));

        await connection.DisposeAsync();
        Assert.Equal("ok", host.ReadUntil("closed: "));
        Assert.Equal(0, host.WaitForExit());
    }
}
