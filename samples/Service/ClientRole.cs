using System.Diagnostics;
using System.Globalization;
using HdrHistogram;
using PageRange;
using PageRange.Transport;

namespace Service;

/// <summary>
/// A client process: calls the server with mixed sizes as fast as it can and prints, twice a second,
/// <c>stats &lt;calls&gt; &lt;calls/s&gt; &lt;p50 µs&gt; &lt;p99 µs&gt; &lt;errors&gt;</c> for the last interval. The
/// <c>garbage</c> role calls for a while, then scribbles over the rings it shares with the server.
/// </summary>
internal static class ClientRole
{
    public static async Task<int> RunAsync(string name, bool garbage, TimeSpan duration)
    {
        await using PageRangeConnection connection = await PageRangeConnection.ConnectAsync(name, new PageRangeOptions { RegionSize = 1L << 20 });
        Console.WriteLine($"pid {Environment.ProcessId}");
        var random = new Random(Environment.ProcessId);
        byte[] request = new byte[64 << 10];
        random.NextBytes(request);
        var histogram = new LongHistogram(TimeStamp.Seconds(10), 3);
        long calls = 0;
        long errors = 0;
        long intervalCalls = 0;
        var clock = Stopwatch.StartNew();
        TimeSpan nextReport = TimeSpan.FromMilliseconds(500);
        TimeSpan lastReport = TimeSpan.Zero;
        TimeSpan scribbleAt = garbage ? duration / 3 : TimeSpan.MaxValue;
        while (clock.Elapsed < duration)
        {
            // Mostly small requests, one in eight up to 64 KiB: the mix a service sees.
            int size = random.Next(8) == 0 ? random.Next(1024, request.Length) : random.Next(16, 1024);
            long started = Stopwatch.GetTimestamp();
            try
            {
                using Transaction reply = connection.Call(ServiceCodes.Checksum, request.AsSpan(0, size));
                if (reply.Length != sizeof(ulong))
                {
                    errors++;
                }
            }
            catch (PageRangeException error) when (error is RemoteCallException or RegionFullException)
            {
                errors++;
            }
            catch (PageRangeException error) when (error is PeerDiedException or ProtocolViolationException)
            {
                // The server closed this connection (after the scribbling, that is the point).
                Console.WriteLine($"closed {error.Message}");
                return 0;
            }
            histogram.RecordValue(Math.Max(1, (Stopwatch.GetTimestamp() - started) * 1_000_000 / Stopwatch.Frequency));
            calls++;
            intervalCalls++;
            if (clock.Elapsed >= scribbleAt)
            {
                Scribble();
                scribbleAt = TimeSpan.MaxValue;
                Console.WriteLine("scribbled");
            }
            if (clock.Elapsed >= nextReport)
            {
                TimeSpan now = clock.Elapsed;
                double rate = intervalCalls / (now - lastReport).TotalSeconds;
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"stats {calls} {rate:F0} {histogram.GetValueAtPercentile(50)} {histogram.GetValueAtPercentile(99)} {errors}"));
                histogram.Reset();
                intervalCalls = 0;
                lastReport = now;
                nextReport = now + TimeSpan.FromMilliseconds(500);
            }
        }
        Console.WriteLine($"done {calls}");
        return 0;
    }

    /// <summary>
    /// The hostile part: this process holds the server's region (a memfd it writes payloads into). Find it in
    /// /proc/self/fd (its inode is not the one of our own region, whose data area we map read-only), reopen it and write
    /// a huge value over the transaction ring's tail (byte 64 of the header), as a buggy or malicious client could. The
    /// server must close this client's connection and nobody else's.
    /// </summary>
    private static void Scribble()
    {
        const long TxTailOffset = 64;
        const string Prefix = "/memfd:pagerange:";
        // Our own region: the mapping we only read (its data area). Columns: range perms offset dev inode path.
        HashSet<string> ownInodes = [.. File.ReadLines("/proc/self/maps")
            .Select(line => line.Split(' ', StringSplitOptions.RemoveEmptyEntries))
            .Where(fields => fields.Length >= 6 && fields[5].StartsWith(Prefix, StringComparison.Ordinal) && fields[1].StartsWith("r--", StringComparison.Ordinal))
            .Select(fields => fields[4])];
        Span<byte> junk = stackalloc byte[8];
        junk.Fill(0xEE);
        foreach (string fd in Directory.EnumerateFileSystemEntries("/proc/self/fd"))
        {
            string? target;
            string? inode;
            try
            {
                target = new FileInfo(fd).LinkTarget;
                inode = File.ReadLines($"/proc/self/fdinfo/{Path.GetFileName(fd)}")
                    .FirstOrDefault(line => line.StartsWith("ino:", StringComparison.Ordinal))?[4..].Trim();
            }
            catch (IOException)
            {
                continue;
            }
            if (target is null || !target.StartsWith(Prefix, StringComparison.Ordinal) || (inode is not null && ownInodes.Contains(inode)))
            {
                continue;
            }
            using Microsoft.Win32.SafeHandles.SafeFileHandle handle = File.OpenHandle(fd, FileMode.Open, FileAccess.ReadWrite);
            RandomAccess.Write(handle, junk, TxTailOffset);
        }
    }
}
