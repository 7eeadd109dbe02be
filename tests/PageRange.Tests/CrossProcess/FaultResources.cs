using PageRange.Tests.Diagnostics;
using PageRange.Tests.Infrastructure;

namespace PageRange.Tests.CrossProcess;

/// <summary>This process's open descriptors and mappings, as the kernel lists them in <c>/proc/self</c>.</summary>
/// <remarks>
/// The memfd counts are PageRange's regions only (<c>memfd:pagerange:…</c>): the runtime keeps memfds of its own for
/// its double-mapped code, and those grow as methods are compiled. The total of mappings is informative only: thread
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

    public static FaultResources Now()
    {
        int descriptors = 0;
        int memfdDescriptors = 0;
        foreach (string fd in Directory.EnumerateFileSystemEntries("/proc/self/fd"))
        {
            string? target = new FileInfo(fd).LinkTarget;
            // The runtime opens assemblies lazily (System.Net.NameResolution.dll turns up after a few thousand
            // connections): those are not ours to count.
            if (target is not null && target.EndsWith(".dll", StringComparison.Ordinal))
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
