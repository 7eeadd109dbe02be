using System.Buffers.Binary;

namespace PageRange.Testing;

/// <summary>
/// The server load tests' wire (compiled into the tests and the TestHost): codes, the reply a call gets (its request's
/// bytes xor a key, so a reply is checked byte for byte against its own request), and the report of a client's oneways.
/// </summary>
internal static class ServerLoadPayload
{
    /// <summary>Two-way: the reply is the request xor <see cref="Key"/>.</summary>
    internal const uint EchoCode = 1;

    /// <summary>Oneway: a <see cref="FaultPayload"/> whose seq counts 1, 2, 3... per client.</summary>
    internal const uint OnewayCode = 2;

    /// <summary>Two-way: u64 expected oneways in; once the server has them (bounded), u64 received, u64 out of order, u64 corrupt out.</summary>
    internal const uint ReportCode = 3;

    internal const byte Key = 0xA5;

    internal static void Transform(ReadOnlySpan<byte> request, Span<byte> reply)
    {
        for (int i = 0; i < request.Length; i++)
        {
            reply[i] = (byte)(request[i] ^ Key);
        }
    }

    internal static bool IsReplyTo(ReadOnlySpan<byte> request, ReadOnlySpan<byte> reply)
    {
        if (request.Length != reply.Length)
        {
            return false;
        }
        for (int i = 0; i < request.Length; i++)
        {
            if (reply[i] != (byte)(request[i] ^ Key))
            {
                return false;
            }
        }
        return true;
    }

    internal static void WriteReport(Span<byte> destination, ulong received, ulong outOfOrder, ulong corrupt)
    {
        BinaryPrimitives.WriteUInt64LittleEndian(destination, received);
        BinaryPrimitives.WriteUInt64LittleEndian(destination[8..], outOfOrder);
        BinaryPrimitives.WriteUInt64LittleEndian(destination[16..], corrupt);
    }

    internal static (ulong Received, ulong OutOfOrder, ulong Corrupt) ReadReport(ReadOnlySpan<byte> report) =>
        (BinaryPrimitives.ReadUInt64LittleEndian(report), BinaryPrimitives.ReadUInt64LittleEndian(report[8..]),
         BinaryPrimitives.ReadUInt64LittleEndian(report[16..]));
}
