using System.Text;

namespace PageRange.Transport;

/// <summary>
/// Per-call options: a deadline the callee sees, a few string key/values of user metadata, and binder's
/// <c>TF_CLEAR_BUF</c>. Immutable once built, so one instance can serve many calls.
/// </summary>
/// <remarks>
/// A deadline or metadata travels in a small metadata block before the payload (the receiver's
/// <see cref="Transaction.Payload"/> excludes it); <see cref="ClearOnFree"/> alone adds nothing to the message. Limits:
/// at most <see cref="MaxMetadataPairs"/> pairs, keys of printable ASCII (no spaces), keys and values together at most
/// <see cref="MaxMetadataBytes"/> bytes of UTF-8, no key twice.
/// </remarks>
public sealed class PageRangeCallOptions
{
    /// <summary>The most key/value pairs one call carries.</summary>
    public const int MaxMetadataPairs = 16;

    /// <summary>The most bytes (UTF-8) the keys and values of one call take together.</summary>
    public const int MaxMetadataBytes = 1024;

    private readonly KeyValuePair<string, string>[] _metadata = [];

    /// <summary>
    /// When the caller stops caring about the answer; the callee reads it from <see cref="Transaction.Deadline"/>. A call
    /// waits for its reply at most until then (or its timeout, if sooner); a deadline already past fails the call with
    /// <see cref="TimeoutException"/> before anything is sent. <c>null</c>: none.
    /// </summary>
    public DateTimeOffset? Deadline { get; init; }

    /// <summary>Zero the buffer in the peer's region when the peer frees it (binder's <c>TF_CLEAR_BUF</c>), for secrets.</summary>
    public bool ClearOnFree { get; init; }

    /// <summary>User metadata for the callee (<see cref="Transaction.Metadata"/>); copied and checked when set.</summary>
    /// <exception cref="ArgumentNullException">The list, a key or a value is null.</exception>
    /// <exception cref="ArgumentException">Too many pairs, too many bytes, an empty or non-ASCII key, a key twice, or a
    /// value that is not valid UTF-16 (a lone surrogate).</exception>
    public IReadOnlyList<KeyValuePair<string, string>> Metadata
    {
        get => _metadata;
        init
        {
            ArgumentNullException.ThrowIfNull(value);
            KeyValuePair<string, string>[] copy = [.. value];
            Validate(copy);
            _metadata = copy;
        }
    }

    /// <summary>Whether a metadata block must be sent: a deadline or metadata.</summary>
    internal bool HasBlockContent => Deadline is not null || _metadata.Length > 0;

    /// <summary>The pairs, for the encoder.</summary>
    internal ReadOnlySpan<KeyValuePair<string, string>> Pairs => _metadata;

    private static void Validate(KeyValuePair<string, string>[] value)
    {
        KeyValuePair<string, string>[] pairs = value;
        if (pairs.Length > MaxMetadataPairs)
        {
            throw new ArgumentException($"A call carries at most {MaxMetadataPairs} metadata pairs; {pairs.Length} were given.", nameof(value));
        }
        var strict = new UTF8Encoding(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);
        int total = 0;
        for (int i = 0; i < pairs.Length; i++)
        {
            (string key, string text) = (pairs[i].Key, pairs[i].Value);
            ArgumentNullException.ThrowIfNull(key, nameof(value));
            ArgumentNullException.ThrowIfNull(text, nameof(value));
            if (!CallMetadataBlock.IsValidKey(key))
            {
                throw new ArgumentException(
                    $"Metadata key '{PeerText.Sanitize(key)}' is not allowed: keys are 1 or more printable ASCII characters without spaces.",
                    nameof(value));
            }
            for (int j = 0; j < i; j++)
            {
                if (string.Equals(pairs[j].Key, key, StringComparison.Ordinal))
                {
                    throw new ArgumentException($"Metadata key '{key}' is given twice.", nameof(value));
                }
            }
            int valueBytes;
            try
            {
                valueBytes = strict.GetByteCount(text);
            }
            catch (EncoderFallbackException error)
            {
                throw new ArgumentException($"The value of metadata key '{key}' is not valid UTF-16 (a lone surrogate).", nameof(value), error);
            }
            total += key.Length + valueBytes;
            if (total > MaxMetadataBytes)
            {
                throw new ArgumentException(
                    $"Metadata keys and values take more than {MaxMetadataBytes} bytes of UTF-8 (at key '{key}').", nameof(value));
            }
        }
    }
}
