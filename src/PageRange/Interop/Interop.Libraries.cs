// Interop is one static class in the root namespace, as in the .NET runtime, so call sites read Interop.Fallocate(...).
namespace PageRange;

/// <summary>Every call PageRange makes into the operating system goes through this class.</summary>
/// <remarks>
/// Raw descriptors and pointers never leave <c>Interop/</c> and <c>Memory/</c>; callers above get
/// safe handles and typed exceptions.
/// </remarks>
internal static partial class Interop
{
    internal static class Libraries
    {
        internal const string Libc = "libc";
    }

    /// <summary>Throws <see cref="PlatformNotSupportedException"/> when not on Linux.</summary>
    internal static void EnsureLinux()
    {
        if (!OperatingSystem.IsLinux())
        {
            ThrowHelper.ThrowPlatformNotSupported();
        }
    }
}
