using System.Text;

namespace PageRange;

/// <summary>
/// Makes text a peer supplied safe to put in an exception or a log: bounded in length, control characters and
/// invalid UTF-8 replaced, so a hostile peer can neither flood a log nor forge log lines or terminal escapes.
/// </summary>
internal static class PeerText
{
    /// <summary>The most characters of peer-supplied text kept; the rest is cut and marked with an ellipsis.</summary>
    internal const int MaxLength = 512;

    /// <summary>Bounds <paramref name="text"/> and replaces its control characters with spaces.</summary>
    /// <param name="text">Text from the peer; null reads as empty.</param>
    /// <returns>At most <see cref="MaxLength"/> + 1 characters, none of them a control character.</returns>
    internal static string Sanitize(string? text)
    {
        if (string.IsNullOrEmpty(text))
        {
            return string.Empty;
        }
        bool cut = text.Length > MaxLength;
        ReadOnlySpan<char> kept = cut ? text.AsSpan(0, MaxLength) : text.AsSpan();
        if (!cut && !NeedsCleaning(kept))
        {
            return text;
        }
        return string.Create(kept.Length + (cut ? 1 : 0), (Text: text, Cut: cut), static (destination, state) =>
        {
            ReadOnlySpan<char> source = state.Text.AsSpan(0, destination.Length - (state.Cut ? 1 : 0));
            for (int i = 0; i < source.Length; i++)
            {
                char c = source[i];
                destination[i] = IsUnsafe(c) ? ' ' : c;
            }
            if (state.Cut)
            {
                destination[^1] = '\u2026';
            }
        });
    }

    /// <summary>Decodes peer-supplied UTF-8 (invalid sequences become U+FFFD) and sanitizes it.</summary>
    /// <param name="utf8">Bytes from the peer; only the first <see cref="MaxLength"/> * 4 are decoded.</param>
    /// <returns>The sanitized text.</returns>
    internal static string Sanitize(ReadOnlySpan<byte> utf8)
    {
        // A character is at most 4 bytes: decoding more than that could never survive the cut.
        int take = Math.Min(utf8.Length, (MaxLength + 1) * 4);
        string decoded = Encoding.UTF8.GetString(utf8[..take]);
        return Sanitize(take < utf8.Length && decoded.Length <= MaxLength ? decoded + "\u2026" : decoded);
    }

    private static bool NeedsCleaning(ReadOnlySpan<char> text)
    {
        foreach (char c in text)
        {
            if (IsUnsafe(c))
            {
                return true;
            }
        }
        return false;
    }

    // Control characters (C0, DEL, C1), and the bidirectional overrides that can make a log line read differently.
    private static bool IsUnsafe(char c) =>
        char.IsControl(c) || c is >= '\u202A' and <= '\u202E' or >= '\u2066' and <= '\u2069';
}
