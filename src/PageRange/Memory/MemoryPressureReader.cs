using System.Buffers.Text;
using Microsoft.Win32.SafeHandles;

namespace PageRange.Memory;

/// <summary>Reads the signals the <see cref="MemoryPressureMonitor"/> watches: PSI, <c>/proc/meminfo</c> and the GC.</summary>
/// <remarks>
/// A file that is missing or unreadable (a kernel without PSI, PSI switched off at boot, a sandbox hiding
/// <c>/proc</c>) gives <see langword="null"/> for its signal, never an exception: the monitor runs on a timer and must
/// not take the process down. Not thread-safe: the monitor polls from one thread at a time.
/// </remarks>
internal sealed class MemoryPressureReader
{
    internal const string DefaultPsiPath = "/proc/pressure/memory";
    internal const string DefaultMemInfoPath = "/proc/meminfo";

    private readonly string _psiPath;
    private readonly string _memInfoPath;

    // /proc/meminfo is about 1.5 KiB; the buffer is reused so a poll does not allocate one per read.
    private readonly byte[] _buffer = new byte[16 * 1024];

    internal MemoryPressureReader(string psiPath = DefaultPsiPath, string memInfoPath = DefaultMemInfoPath)
    {
        _psiPath = psiPath;
        _memInfoPath = memInfoPath;
    }

    /// <summary>Reads every signal now.</summary>
    internal MemoryPressureReading Read()
    {
        double? psi = TryReadFile(_psiPath, out int psiLength) ? ParsePsiSomeAvg10(_buffer.AsSpan(0, psiLength)) : null;
        long? available = null;
        long? total = null;
        if (TryReadFile(_memInfoPath, out int memInfoLength))
        {
            ReadOnlySpan<byte> memInfo = _buffer.AsSpan(0, memInfoLength);
            available = ParseMemInfoBytes(memInfo, "MemAvailable:"u8);
            total = ParseMemInfoBytes(memInfo, "MemTotal:"u8);
        }
        return new MemoryPressureReading(psi, available, total, ReadGcMemoryLoadPercent());
    }

    /// <summary>The <c>avg10</c> of the <c>some</c> line of a PSI file, or <see langword="null"/> if there is none.</summary>
    /// <remarks>Format: <c>some avg10=0.00 avg60=0.00 avg300=0.00 total=0</c>, then a <c>full</c> line.</remarks>
    internal static double? ParsePsiSomeAvg10(ReadOnlySpan<byte> text)
    {
        ReadOnlySpan<byte> line = FindLine(text, "some "u8);
        int at = line.IndexOf("avg10="u8);
        if (at < 0)
        {
            return null;
        }
        return Utf8Parser.TryParse(line[(at + "avg10=".Length)..], out double value, out _) ? value : null;
    }

    /// <summary>The value of a <c>/proc/meminfo</c> field such as <c>MemAvailable:</c>, in bytes, or <see langword="null"/>.</summary>
    /// <remarks>Format: <c>MemAvailable:   24306880 kB</c>; the kernel's "kB" is KiB.</remarks>
    internal static long? ParseMemInfoBytes(ReadOnlySpan<byte> text, ReadOnlySpan<byte> field)
    {
        ReadOnlySpan<byte> line = FindLine(text, field);
        if (line.IsEmpty)
        {
            return null;
        }
        ReadOnlySpan<byte> rest = line[field.Length..].TrimStart((byte)' ');
        if (!Utf8Parser.TryParse(rest, out long value, out int consumed) || value < 0)
        {
            return null;
        }
        return rest[consumed..].Trim((byte)' ').SequenceEqual("kB"u8) ? value * 1024 : value;
    }

    /// <summary>The GC's memory load in percent of the memory available to the process, or <see langword="null"/> before the first GC.</summary>
    internal static double? ReadGcMemoryLoadPercent()
    {
        GCMemoryInfo info = GC.GetGCMemoryInfo();
        return info.TotalAvailableMemoryBytes > 0 ? info.MemoryLoadBytes * 100.0 / info.TotalAvailableMemoryBytes : null;
    }

    /// <summary>The line of <paramref name="text"/> that starts with <paramref name="prefix"/>, without its newline; empty if none.</summary>
    private static ReadOnlySpan<byte> FindLine(ReadOnlySpan<byte> text, ReadOnlySpan<byte> prefix)
    {
        while (!text.IsEmpty)
        {
            int newline = text.IndexOf((byte)'\n');
            ReadOnlySpan<byte> line = newline < 0 ? text : text[..newline];
            if (line.StartsWith(prefix))
            {
                return line;
            }
            text = newline < 0 ? [] : text[(newline + 1)..];
        }
        return [];
    }

    private bool TryReadFile(string path, out int length)
    {
        length = 0;
        try
        {
            using SafeFileHandle file = File.OpenHandle(path);
            // procfs files report size 0 and are produced on read: read until end of file, not to a size.
            while (length < _buffer.Length)
            {
                int read = RandomAccess.Read(file, _buffer.AsSpan(length), length);
                if (read == 0)
                {
                    break;
                }
                length += read;
            }
            return true;
        }
        catch (Exception error) when (error is IOException or UnauthorizedAccessException or NotSupportedException)
        {
            return false;
        }
    }
}
