using System.Globalization;
using PageRange.Memory;

namespace PageRange.TestHost;

/// <summary>Scenarios for the memory layer's cross-process tests.</summary>
internal static class MemoryScenarios
{
    /// <summary>
    /// <c>map-region &lt;pid&gt; &lt;fd&gt; &lt;size&gt;</c>: maps the parent's region through <c>/proc/&lt;pid&gt;/fd/&lt;fd&gt;</c>
    /// (a new descriptor of the same memfd), then answers stdin commands <c>read &lt;offset&gt; &lt;length&gt;</c> with
    /// <c>bytes: &lt;hex&gt;</c> until <c>quit</c>.
    /// </summary>
    public static int MapRegion(string[] args)
    {
        int pid = int.Parse(args[1], CultureInfo.InvariantCulture);
        int fd = int.Parse(args[2], CultureInfo.InvariantCulture);
        long size = long.Parse(args[3], CultureInfo.InvariantCulture);
        SafeMemfdHandle handle = Interop.OpenReadWrite($"/proc/{pid}/fd/{fd}");
        using SharedRegion region = SharedRegion.Open(handle, size, writableBytes: 0);
        Console.WriteLine("mapped: ok");
        while (Console.ReadLine() is { } line)
        {
            string[] words = line.Split(' ');
            if (words[0] == "quit")
            {
                return 0;
            }
            if (words[0] == "read")
            {
                long offset = long.Parse(words[1], CultureInfo.InvariantCulture);
                int length = int.Parse(words[2], CultureInfo.InvariantCulture);
                Console.WriteLine($"bytes: {Convert.ToHexString(region.GetSpan(offset, length))}");
            }
        }
        return 0;
    }
}
