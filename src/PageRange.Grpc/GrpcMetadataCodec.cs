using System.Text;
using Grpc.Core;

namespace PageRange.Grpc;

/// <summary>
/// A metadata block (request headers, response headers, trailers): u16 count, then per entry u16 key length, the key's
/// ASCII, u16 value length, the value (ASCII, or raw bytes for a <c>-bin</c> key). At most
/// <see cref="GrpcWire.MaxMetadataEntries"/> entries and <see cref="GrpcWire.MaxMetadataBytes"/> bytes.
/// </summary>
internal static class GrpcMetadataCodec
{
    /// <summary>The block's size in bytes.</summary>
    /// <exception cref="RpcException"><see cref="StatusCode.ResourceExhausted"/>: over the limits;
    /// <see cref="StatusCode.Internal"/>: a text value with a character the peer refuses (see <see cref="CheckPrintable"/>).</exception>
    internal static int GetSize(Metadata? metadata)
    {
        if (metadata is null || metadata.Count == 0)
        {
            return 2;
        }
        if (metadata.Count > GrpcWire.MaxMetadataEntries)
        {
            throw TooLarge($"{metadata.Count} entries (the limit is {GrpcWire.MaxMetadataEntries})");
        }
        int size = 2;
        foreach (Metadata.Entry entry in metadata)
        {
            size += 4 + entry.Key.Length + (entry.IsBinary ? entry.ValueBytes.Length : CheckPrintable(entry));
            if (size > GrpcWire.MaxMetadataBytes)
            {
                throw TooLarge($"more than {GrpcWire.MaxMetadataBytes} bytes");
            }
        }
        return size;
    }

    /// <summary>Writes the block, of <see cref="GetSize"/> bytes (call that first: it checks the values).</summary>
    internal static void Write(ref GrpcWriter writer, Metadata? metadata)
    {
        if (metadata is null)
        {
            writer.WriteUInt16(0);
            return;
        }
        writer.WriteUInt16((ushort)metadata.Count);
        foreach (Metadata.Entry entry in metadata)
        {
            writer.WriteUInt16((ushort)entry.Key.Length);
            writer.WriteAscii(entry.Key);
            if (entry.IsBinary)
            {
                byte[] value = entry.ValueBytes;
                writer.WriteUInt16((ushort)value.Length);
                writer.WriteBytes(value);
            }
            else
            {
                // GetSize checked the value: one printable ASCII byte per char.
                writer.WriteUInt16((ushort)entry.Value.Length);
                writer.WriteAscii(entry.Value);
            }
        }
    }

    /// <summary>Reads a block written by <see cref="Write"/>, checking every count, length and character.</summary>
    /// <exception cref="ProtocolViolationException">The block is malformed or over the limits.</exception>
    internal static Metadata Read(ref GrpcReader reader)
    {
        int start = reader.Position;
        int count = reader.ReadUInt16();
        if (count > GrpcWire.MaxMetadataEntries)
        {
            throw GrpcReader.Violation($"a metadata block of {count} entries is over the limit of {GrpcWire.MaxMetadataEntries}.");
        }
        var metadata = new Metadata();
        for (int i = 0; i < count; i++)
        {
            string key = ReadAscii(reader.ReadBytes(reader.ReadUInt16()), "a metadata key");
            ReadOnlySpan<byte> value = reader.ReadBytes(reader.ReadUInt16());
            if (reader.Position - start > GrpcWire.MaxMetadataBytes)
            {
                throw GrpcReader.Violation($"a metadata block is longer than the limit of {GrpcWire.MaxMetadataBytes} bytes.");
            }
            try
            {
                metadata.Add(key.EndsWith(Metadata.BinaryHeaderSuffix, StringComparison.Ordinal)
                    ? new Metadata.Entry(key, value.ToArray())
                    : new Metadata.Entry(key, ReadAscii(value, "a metadata value")));
            }
            catch (ArgumentException error)
            {
                throw new ProtocolViolationException($"gRPC over PageRange: metadata entry {i} is invalid: {error.Message}", error);
            }
        }
        return metadata;
    }

    private static string ReadAscii(ReadOnlySpan<byte> bytes, string what)
    {
        foreach (byte b in bytes)
        {
            if (b is < 0x20 or > 0x7E)
            {
                throw GrpcReader.Violation($"{what} holds the byte 0x{b:X2}, not printable ASCII.");
            }
        }
        return Encoding.ASCII.GetString(bytes);
    }

    /// <summary>
    /// A text value's length in bytes, once every char is printable ASCII (0x20 to 0x7E), the only bytes
    /// <see cref="Read"/> accepts: a value the peer would refuse as a protocol violation (closing the whole connection)
    /// fails this call here, before anything is sent, as grpc-dotnet's client refuses non-ASCII header values.
    /// </summary>
    private static int CheckPrintable(Metadata.Entry entry)
    {
        string value = entry.Value;
        foreach (char c in value)
        {
            if (c is < (char)0x20 or > (char)0x7E)
            {
                throw new RpcException(new Status(StatusCode.Internal,
                    $"gRPC over PageRange: the metadata value of '{entry.Key}' holds the character U+{(int)c:X4}; a text value may hold only printable ASCII (0x20 to 0x7E): use a key ending in '{Metadata.BinaryHeaderSuffix}' for other bytes."));
            }
        }
        return value.Length;
    }

    private static RpcException TooLarge(string what) =>
        new(new Status(StatusCode.ResourceExhausted, $"gRPC over PageRange: the metadata has {what}."));
}
