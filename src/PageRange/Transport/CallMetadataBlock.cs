using System.Buffers.Binary;
using System.Diagnostics;
using System.Diagnostics.CodeAnalysis;
using System.Text;

namespace PageRange.Transport;

/// <summary>
/// The metadata block a call or oneway message may carry at the start of its buffer (the record's
/// <c>MetadataLength</c> bytes): deadline, W3C trace context and user key/values.
/// </summary>
/// <remarks>
/// <code>
/// 0 Version u8 (1) | 1 Fields u8 (1: deadline, 2: trace context) | 2 PairCount u16 |
/// [deadline: UtcTicks i64] |
/// [trace context: TraceId 16 bytes | SpanId 8 bytes | TraceFlags u8 | TraceStateLength u16 | TraceState ASCII] |
/// PairCount x (KeyLength u16 | Key ASCII | ValueLength u16 | Value UTF-8) | zero padding to a multiple of 8
/// </code>
/// Little-endian. The receiver copies the block once and parses the copy strictly: a known version, known fields,
/// lengths inside the block, at most <see cref="PageRangeCallOptions.MaxMetadataPairs"/> pairs of at most
/// <see cref="PageRangeCallOptions.MaxMetadataBytes"/> bytes, printable ASCII keys, no key twice, valid UTF-8
/// values, non-zero trace and span ids, zero padding. Anything else is a <see cref="ProtocolViolationException"/>.
/// </remarks>
internal static class CallMetadataBlock
{
    /// <summary>The largest block the protocol carries.</summary>
    internal const int MaxLength = 2048;

    /// <summary>The longest <c>tracestate</c> carried; a longer one is dropped by the sender (W3C allows that).</summary>
    internal const int MaxTraceStateLength = 512;

    private const byte Version = 1;
    private const byte DeadlineField = 1;
    private const byte TraceField = 2;
    private const int HeaderLength = 4;
    private const int TraceFixedLength = 16 + 8 + 1 + 2;

    private static readonly UTF8Encoding s_strictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    /// <summary>Whether <paramref name="key"/> is 1 or more printable ASCII characters without spaces.</summary>
    internal static bool IsValidKey(ReadOnlySpan<char> key)
    {
        if (key.IsEmpty)
        {
            return false;
        }
        foreach (char c in key)
        {
            if (c is < '!' or > '~')
            {
                return false;
            }
        }
        return true;
    }

    /// <summary>The encoded length (padded) of a block with these contents.</summary>
    internal static int GetLength(PageRangeCallOptions? options, in ActivityContext trace, string? traceState)
    {
        int length = HeaderLength;
        if (options?.Deadline is not null)
        {
            length += 8;
        }
        if (trace != default)
        {
            length += TraceFixedLength + (traceState?.Length ?? 0);
        }
        if (options is not null)
        {
            foreach (KeyValuePair<string, string> pair in options.Pairs)
            {
                length += 4 + pair.Key.Length + s_strictUtf8.GetByteCount(pair.Value);
            }
        }
        return (length + 7) & ~7;
    }

    /// <summary>A <c>tracestate</c> the block can carry: short printable ASCII, else none.</summary>
    internal static string? UsableTraceState(string? traceState)
    {
        if (string.IsNullOrEmpty(traceState) || traceState.Length > MaxTraceStateLength)
        {
            return null;
        }
        foreach (char c in traceState)
        {
            if (c is < ' ' or > '~')
            {
                return null;
            }
        }
        return traceState;
    }

    /// <summary>Writes the block into <paramref name="destination"/> (exactly <see cref="GetLength"/> bytes).</summary>
    internal static void Write(Span<byte> destination, PageRangeCallOptions? options, in ActivityContext trace, string? traceState)
    {
        destination.Clear();
        destination[0] = Version;
        byte fields = 0;
        int position = HeaderLength;
        if (options?.Deadline is { } deadline)
        {
            fields |= DeadlineField;
            BinaryPrimitives.WriteInt64LittleEndian(destination[position..], deadline.UtcTicks);
            position += 8;
        }
        if (trace != default)
        {
            fields |= TraceField;
            trace.TraceId.CopyTo(destination.Slice(position, 16));
            trace.SpanId.CopyTo(destination.Slice(position + 16, 8));
            destination[position + 24] = (byte)trace.TraceFlags;
            int stateLength = traceState?.Length ?? 0;
            BinaryPrimitives.WriteUInt16LittleEndian(destination[(position + 25)..], (ushort)stateLength);
            position += TraceFixedLength;
            if (stateLength > 0)
            {
                Encoding.ASCII.GetBytes(traceState, destination.Slice(position, stateLength));
                position += stateLength;
            }
        }
        int count = 0;
        if (options is not null)
        {
            foreach (KeyValuePair<string, string> pair in options.Pairs)
            {
                BinaryPrimitives.WriteUInt16LittleEndian(destination[position..], (ushort)pair.Key.Length);
                position += 2;
                position += Encoding.ASCII.GetBytes(pair.Key, destination[position..]);
                int valueLength = s_strictUtf8.GetBytes(pair.Value, destination[(position + 2)..]);
                BinaryPrimitives.WriteUInt16LittleEndian(destination[position..], (ushort)valueLength);
                position += 2 + valueLength;
                count++;
            }
        }
        destination[1] = fields;
        BinaryPrimitives.WriteUInt16LittleEndian(destination[2..], (ushort)count);
    }

    /// <summary>Parses a private copy of a block, or throws <see cref="ProtocolViolationException"/>.</summary>
    /// <param name="block">The copy: the peer cannot change it any more.</param>
    internal static CallMetadata Parse(ReadOnlySpan<byte> block)
    {
        if (block.Length < HeaderLength || block.Length > MaxLength || (block.Length & 7) != 0)
        {
            Fail($"its length {block.Length} is not a multiple of 8 between {HeaderLength} and {MaxLength}");
        }
        if (block[0] != Version)
        {
            Fail($"version {block[0]} is not {Version}");
        }
        byte fields = block[1];
        if ((fields & ~(DeadlineField | TraceField)) != 0)
        {
            Fail($"fields 0x{fields:x} name unknown ones");
        }
        int count = BinaryPrimitives.ReadUInt16LittleEndian(block[2..]);
        if (count > PageRangeCallOptions.MaxMetadataPairs)
        {
            Fail($"{count} pairs are more than {PageRangeCallOptions.MaxMetadataPairs}");
        }
        int position = HeaderLength;
        DateTimeOffset? deadline = null;
        if ((fields & DeadlineField) != 0)
        {
            long ticks = BinaryPrimitives.ReadInt64LittleEndian(Take(block, ref position, 8));
            if (ticks < 0 || ticks > DateTimeOffset.MaxValue.UtcTicks)
            {
                Fail($"the deadline {ticks} is not a time");
            }
            deadline = new DateTimeOffset(ticks, TimeSpan.Zero);
        }
        ActivityContext trace = default;
        if ((fields & TraceField) != 0)
        {
            ReadOnlySpan<byte> fixedPart = Take(block, ref position, TraceFixedLength);
            var traceId = ActivityTraceId.CreateFromBytes(fixedPart[..16]);
            var spanId = ActivitySpanId.CreateFromBytes(fixedPart.Slice(16, 8));
            if (traceId == default || spanId == default)
            {
                Fail("the trace or span id is zero");
            }
            int stateLength = BinaryPrimitives.ReadUInt16LittleEndian(fixedPart[25..]);
            if (stateLength > MaxTraceStateLength)
            {
                Fail($"the tracestate's length {stateLength} is more than {MaxTraceStateLength}");
            }
            ReadOnlySpan<byte> state = Take(block, ref position, stateLength);
            foreach (byte b in state)
            {
                if (b is < (byte)' ' or > (byte)'~')
                {
                    Fail("the tracestate is not printable ASCII");
                }
            }
            trace = new ActivityContext(traceId, spanId, (ActivityTraceFlags)fixedPart[24],
                stateLength == 0 ? null : Encoding.ASCII.GetString(state), isRemote: true);
        }
        var pairs = count == 0 ? [] : new KeyValuePair<string, string>[count];
        int total = 0;
        for (int i = 0; i < count; i++)
        {
            int keyLength = BinaryPrimitives.ReadUInt16LittleEndian(Take(block, ref position, 2));
            ReadOnlySpan<byte> key = Take(block, ref position, keyLength);
            int valueLength = BinaryPrimitives.ReadUInt16LittleEndian(Take(block, ref position, 2));
            ReadOnlySpan<byte> value = Take(block, ref position, valueLength);
            total += keyLength + valueLength;
            if (total > PageRangeCallOptions.MaxMetadataBytes)
            {
                Fail($"the pairs take more than {PageRangeCallOptions.MaxMetadataBytes} bytes");
            }
            if (keyLength == 0)
            {
                Fail($"key {i} is empty");
            }
            foreach (byte b in key)
            {
                if (b is < (byte)'!' or > (byte)'~')
                {
                    Fail($"key {i} is not printable ASCII");
                }
            }
            string keyText = Encoding.ASCII.GetString(key);
            for (int j = 0; j < i; j++)
            {
                if (string.Equals(pairs[j].Key, keyText, StringComparison.Ordinal))
                {
                    Fail($"key {i} repeats an earlier key");
                }
            }
            string valueText;
            try
            {
                valueText = s_strictUtf8.GetString(value);
            }
            catch (DecoderFallbackException)
            {
                Fail($"the value of key {i} is not valid UTF-8");
                throw;
            }
            pairs[i] = new KeyValuePair<string, string>(keyText, valueText);
        }
        if (block.Length - position >= 8 || block[position..].ContainsAnyExcept((byte)0))
        {
            Fail($"{block.Length - position} bytes after the last field are not zero padding");
        }
        return new CallMetadata(deadline, trace, pairs);
    }

    private static ReadOnlySpan<byte> Take(ReadOnlySpan<byte> block, ref int position, int length)
    {
        if (length > block.Length - position)
        {
            Fail($"a field of {length} bytes at {position} runs past the block's end");
        }
        ReadOnlySpan<byte> field = block.Slice(position, length);
        position += length;
        return field;
    }

    [DoesNotReturn]
    private static void Fail(string what) =>
        throw new ProtocolViolationException($"The peer sent an invalid call metadata block: {what}.");
}
