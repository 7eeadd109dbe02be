using System.Buffers;
using System.IO.Pipelines;
using System.Security.Cryptography;
using PageRange.Serialization;
using PageRange.Transport;

namespace PageRange.TestHost;

/// <summary>
/// Scenarios for the stream tests. <c>pipe-sink &lt;name&gt;</c> connects to the listener <c>name</c>, reads its duplex
/// pipe to the end, prints <c>received: &lt;bytes&gt; &lt;sha256 hex&gt;</c>, writes the 32-byte hash back through the pipe
/// and completes it, then waits for the test to close the connection. A stream that fails prints
/// <c>input-failed: &lt;type&gt;: &lt;message&gt;</c> and exits 3.
/// </summary>
internal static class SerializationScenarios
{
    private static readonly TimeSpan s_bound = TimeSpan.FromSeconds(120);

    public static int PipeSink(string[] args) => PipeSinkAsync(args[1]).GetAwaiter().GetResult();

    private static async Task<int> PipeSinkAsync(string name)
    {
        await using PageRangeConnection connection = await PageRangeConnection.ConnectAsync(name);
        Console.WriteLine($"connected: {Environment.ProcessId}");
        IDuplexPipe pipe = connection.AsDuplexPipe();
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        using var timeout = new CancellationTokenSource(s_bound);
        long total = 0;
        try
        {
            while (true)
            {
                ReadResult result = await pipe.Input.ReadAsync(timeout.Token);
                foreach (ReadOnlyMemory<byte> segment in result.Buffer)
                {
                    hash.AppendData(segment.Span);
                }
                total += result.Buffer.Length;
                pipe.Input.AdvanceTo(result.Buffer.End);
                if (result.IsCompleted)
                {
                    break;
                }
            }
        }
        catch (Exception error) when (error is PageRangeException)
        {
            Console.WriteLine($"input-failed: {error.GetType().Name}: {error.Message}");
            return 3;
        }
        await pipe.Input.CompleteAsync();
        byte[] digest = hash.GetHashAndReset();
        Console.WriteLine($"received: {total} {Convert.ToHexString(digest)}");
        await pipe.Output.WriteAsync(digest, timeout.Token);
        await pipe.Output.CompleteAsync();
        // Stay connected until the test has read the digest and closes its end.
        await Task.Delay(Timeout.InfiniteTimeSpan, connection.PeerDied).ContinueWith(static _ => { }, TaskScheduler.Default).WaitAsync(s_bound);
        Console.WriteLine("closed: ok");
        return 0;
    }
}
