using System.Globalization;

namespace PageRange.Cli;

/// <summary>Which process holds which socket, from the <c>socket:[INODE]</c> links of <c>/proc/PID/fd</c>.</summary>
/// <remarks>
/// Processes come and go while we look, and another user's descriptors cannot be read without privilege: either is
/// skipped, never an error. A socket held by several processes (inherited) is given to the lowest pid.
/// </remarks>
internal static class ProcessSockets
{
    /// <summary>For each of <paramref name="inodes"/> found, the lowest pid holding it.</summary>
    public static IReadOnlyDictionary<long, int> Read(IReadOnlySet<long> inodes)
    {
        var holders = new Dictionary<long, int>();
        foreach (string directory in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(directory), NumberStyles.None, CultureInfo.InvariantCulture, out int pid))
            {
                continue;
            }
            try
            {
                foreach (string fd in Directory.EnumerateFileSystemEntries(Path.Combine(directory, "fd")))
                {
                    if (new FileInfo(fd).LinkTarget is { } target
                        && target.StartsWith("socket:[", StringComparison.Ordinal)
                        && long.TryParse(target.AsSpan(8, target.Length - 9), NumberStyles.None, CultureInfo.InvariantCulture, out long inode)
                        && inodes.Contains(inode)
                        && (!holders.TryGetValue(inode, out int known) || pid < known))
                    {
                        holders[inode] = pid;
                    }
                }
            }
            catch (Exception error) when (error is UnauthorizedAccessException or DirectoryNotFoundException or IOException)
            {
                // Another user's process, or one that exited while we looked.
            }
        }
        return holders;
    }

    /// <summary>The process's <c>comm</c>, or null if it is gone.</summary>
    public static string? NameOf(int pid) => TryRead($"/proc/{pid}/comm")?.Trim();

    /// <summary>The process's real uid (the first of <c>Uid:</c> in its status), or null if it is gone.</summary>
    public static uint? UidOf(int pid)
    {
        string? status = TryRead($"/proc/{pid}/status");
        string? line = status?.Split('\n').FirstOrDefault(l => l.StartsWith("Uid:", StringComparison.Ordinal));
        string[]? fields = line?.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);
        return fields is { Length: > 1 } && uint.TryParse(fields[1], NumberStyles.None, CultureInfo.InvariantCulture, out uint uid) ? uid : null;
    }

    private static string? TryRead(string path)
    {
        try
        {
            return File.ReadAllText(path);
        }
        catch (Exception error) when (error is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }
}
