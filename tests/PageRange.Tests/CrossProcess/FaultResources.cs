using System.Diagnostics;
using PageRange.Tests.Diagnostics;
using PageRange.Tests.Infrastructure;

namespace PageRange.Tests.CrossProcess;

/// <summary>This process's open descriptors and mappings, as the kernel lists them in <c>/proc/self</c>.</summary>
/// <remarks>
/// The memfd counts are PageRange's regions only (<c>memfd:pagerange:…</c>): the runtime keeps memfds of its own for
/// its double-mapped code, and those grow as methods are compiled. The total of descriptors leaves out the runtime's own
/// (<see cref="IsTheRuntimes"/>). The total of mappings is informative only: thread
/// stacks, code and heap segments come and go with the runtime's mood; the mappings PageRange makes are its regions'.
/// </remarks>
internal readonly record struct FaultResources(int Descriptors, int Mappings, int MemfdDescriptors, int MemfdMappings)
{
    private const string RegionPrefix = "/memfd:pagerange:";

    private static readonly SemaphoreSlim s_warmUp = new(1);
    private static bool s_warm;

    /// <summary>
    /// Counts after one connection and one child process have come and gone in this process (the socket engine, the
    /// child-reaping machinery and the thread pool keep descriptors for the life of the process), and after finalizers
    /// ran, so that a handle only waiting for the GC does not count as a leak.
    /// </summary>
    public static async Task<FaultResources> SettledAsync()
    {
        await s_warmUp.WaitAsync();
        try
        {
            if (!s_warm)
            {
                await using (LoopbackPair pair = await LoopbackPair.OpenAsync())
                {
                    pair.Client.SendOneway(1, new byte[8]);
                    pair.Server.Receive().Dispose();
                }
                using (TestHostProcess host = TestHostProcess.Start(null, "echo-args"))
                {
                    host.WaitForExit();
                }
                s_warm = true;
            }
        }
        finally
        {
            s_warmUp.Release();
        }
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
        return Now();
    }

    /// <summary>
    /// Settled counts (<see cref="SettledAsync"/>) once none is above <paramref name="baseline"/> any more, or the last
    /// ones when <see cref="TestTimeouts.Long"/> has passed: what a test's peers cost is given back asynchronously (a
    /// closing connection's socket, pidfd and regions go when its disposal ends, a killed child's pipes at its exit),
    /// later on a starved machine. The caller asserts the counts equal the baseline; this only waits for them.
    /// </summary>
    public static async Task<FaultResources> BackToAsync(FaultResources baseline)
    {
        var clock = Stopwatch.StartNew();
        FaultResources after = await SettledAsync();
        while ((after.Descriptors > baseline.Descriptors || after.MemfdDescriptors > baseline.MemfdDescriptors
            || after.MemfdMappings > baseline.MemfdMappings) && clock.Elapsed < TestTimeouts.Long)
        {
            await Task.Delay(100);
            after = await SettledAsync();
        }
        return after;
    }

    public static FaultResources Now()
    {
        int descriptors = 0;
        int memfdDescriptors = 0;
        foreach (string fd in Directory.EnumerateFileSystemEntries("/proc/self/fd"))
        {
            string? target = new FileInfo(fd).LinkTarget;
            if (target is not null && IsTheRuntimes(target))
            {
                continue;
            }
            descriptors++;
            if (target is not null && target.StartsWith(RegionPrefix, StringComparison.Ordinal))
            {
                memfdDescriptors++;
            }
        }
        int mappings = 0;
        int memfdMappings = 0;
        foreach (string line in File.ReadLines("/proc/self/maps"))
        {
            mappings++;
            if (line.Contains(RegionPrefix, StringComparison.Ordinal))
            {
                memfdMappings++;
            }
        }
        // The listing's own descriptor is counted too, the same way every time.
        return new FaultResources(descriptors, mappings, memfdDescriptors, memfdMappings);
    }

    /// <summary>
    /// Whether a descriptor is one the runtime opens for itself, when it likes: an assembly it loads lazily
    /// (System.Net.NameResolution.dll turns up after a few thousand connections), the memfd of its double-mapped code,
    /// an event-poll instance or an eventfd of its socket engine and thread pool, a timer, a random source. PageRange
    /// opens none of these kinds (its descriptors are sockets, pidfds and region memfds), nor do the tests' peers (their
    /// pipes and sockets): a leak of theirs is still counted, a runtime's whim is not.
    /// </summary>
    private static bool IsTheRuntimes(string target) =>
        target.EndsWith(".dll", StringComparison.Ordinal)
        || target.StartsWith("/memfd:doublemapper", StringComparison.Ordinal)
        || target is "anon_inode:[eventpoll]" or "anon_inode:[eventfd]" or "anon_inode:[timerfd]" or "anon_inode:inotify"
            or "/dev/urandom" or "/dev/random";

    /// <summary>Descriptors and mappings that name <paramref name="needle"/> (a memfd's name), e.g. one connection's region.</summary>
    public static (int Descriptors, int Mappings) Naming(string needle)
    {
        int descriptors = Directory.EnumerateFileSystemEntries("/proc/self/fd")
            .Count(fd => new FileInfo(fd).LinkTarget?.Contains(needle, StringComparison.Ordinal) == true);
        int mappings = File.ReadLines("/proc/self/maps").Count(line => line.Contains(needle, StringComparison.Ordinal));
        return (descriptors, mappings);
    }

    /// <summary>What each open descriptor names (its number and link target), for the message of a failed leak check.</summary>
    public static string ListDescriptors() =>
        string.Join(", ", Directory.EnumerateFileSystemEntries("/proc/self/fd")
            .Select(fd => $"{Path.GetFileName(fd)}={new FileInfo(fd).LinkTarget ?? "?"}")
            .Where(entry => !entry.EndsWith(".dll", StringComparison.Ordinal)));

    public override string ToString() =>
        $"{Descriptors} descriptors ({MemfdDescriptors} of regions), {Mappings} mappings ({MemfdMappings} of regions)";
}
