using System.Text;
using PageRange.Server;

namespace PageRange.Grpc;

/// <summary>The constants of gRPC over PageRange and the method codes (the package's README describes the wire).</summary>
internal static class GrpcWire
{
    /// <summary>The code of every stream frame (a oneway message): below every method code, never a method's.</summary>
    internal const uint FrameCode = 0x8000_0000;

    /// <summary>The bit every method code has set, so gRPC codes never meet a user's hand-picked small codes.</summary>
    internal const uint MethodBit = 0x8000_0000;

    /// <summary>The most bytes of one metadata block (request headers, response headers or trailers).</summary>
    internal const int MaxMetadataBytes = 8 * 1024;

    /// <summary>The most entries of one metadata block.</summary>
    internal const int MaxMetadataEntries = 64;

    /// <summary>The most bytes of a method's full name or a host.</summary>
    internal const int MaxNameBytes = 1024;

    /// <summary>The most bytes of a status detail.</summary>
    internal const int MaxDetailBytes = 4 * 1024;

    /// <summary>
    /// Messages a stream's reader lets its writer have in flight. Large enough that a stream of small messages rarely
    /// waits for a grant (credits come back every quarter window); the byte window bounds a stream of large ones.
    /// </summary>
    internal const int WindowMessages = 256;

    /// <summary>Bytes a stream's reader lets its writer have in flight (a single larger message still passes, alone).</summary>
    internal const int WindowBytes = 1024 * 1024;

    /// <summary>The code of a method: FNV-1a (32 bits) of its full name's UTF-8, with the top bit set.</summary>
    /// <param name="fullName">"/package.Service/Method".</param>
    internal static uint MethodCode(string fullName)
    {
        uint hash = 2166136261;
        Span<byte> one = stackalloc byte[4];
        foreach (Rune rune in fullName.EnumerateRunes())
        {
            int length = rune.EncodeToUtf8(one);
            for (int i = 0; i < length; i++)
            {
                hash = (hash ^ one[i]) * 16777619;
            }
        }
        uint code = hash | MethodBit;
        // The two codes with a meaning of their own: step aside deterministically (both sides compute the same).
        return code is FrameCode or PageRangeServer.DiagnosticsCode ? code ^ 1 : code;
    }
}
