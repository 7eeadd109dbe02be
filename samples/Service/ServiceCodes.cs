namespace Service;

/// <summary>The service's codes.</summary>
internal static class ServiceCodes
{
    /// <summary>Two-way: replies with the FNV-1a 64 of the request (8 bytes).</summary>
    public const uint Checksum = 1;
}
