using System.Globalization;

namespace PageRange.Cli;

/// <summary>Reads <c>/proc/net/unix</c>: the kernel's table of Unix domain sockets.</summary>
/// <remarks>
/// Each line after the header is <c>Num RefCount Protocol Flags Type St Inode [Path]</c>, numbers in hex except the
/// inode. An abstract address is shown with <c>@</c> for its leading NUL. A listener's accepted sockets show the
/// listener's address too, which is how connections are counted.
/// </remarks>
internal static class UnixSocketTable
{
    /// <summary>The kernel's <c>__SO_ACCEPTCON</c> flag: the socket listens.</summary>
    public const uint AcceptConnections = 0x10000;

    /// <summary>The kernel's <c>SS_CONNECTED</c> state.</summary>
    public const int Connected = 3;

    /// <summary>Reads and parses the table of this machine's network namespace.</summary>
    public static IReadOnlyList<UnixSocketEntry> Read() => Parse(File.ReadAllText("/proc/net/unix"));

    /// <summary>Parses the table's text; lines that do not have the expected fields are skipped.</summary>
    public static IReadOnlyList<UnixSocketEntry> Parse(string text)
    {
        var entries = new List<UnixSocketEntry>();
        foreach (string line in text.Split('\n').Skip(1))
        {
            // Seven fields, then the path, which may itself hold spaces: split no further than that.
            string[] fields = line.Split(' ', 8, StringSplitOptions.RemoveEmptyEntries);
            if (fields.Length < 7
                || !uint.TryParse(fields[3], NumberStyles.HexNumber, CultureInfo.InvariantCulture, out uint flags)
                || !int.TryParse(fields[5], NumberStyles.HexNumber, CultureInfo.InvariantCulture, out int state)
                || !long.TryParse(fields[6], NumberStyles.Integer, CultureInfo.InvariantCulture, out long inode))
            {
                continue;
            }
            entries.Add(new UnixSocketEntry(flags, state, inode, fields.Length == 8 ? fields[7].TrimEnd() : ""));
        }
        return entries;
    }
}
