using System.Diagnostics.CodeAnalysis;

namespace PageRange;

/// <summary>Throw sites kept out of line so that hot paths stay small enough to inline.</summary>
internal static class ThrowHelper
{
    [DoesNotReturn]
    internal static void ThrowPlatformNotSupported() =>
        throw new PlatformNotSupportedException(
            "PageRange needs Linux (kernel 5.x or newer): it is built on memfd, fallocate, futex and SCM_RIGHTS, which other systems lack.");

    [DoesNotReturn]
    internal static void ThrowPageNotInUse(int pageIndex) => throw new PageNotInUseException(pageIndex);

    [DoesNotReturn]
    internal static void ThrowOutOfRange(long offset, long size, long limit) =>
        throw new ArgumentOutOfRangeException(
            nameof(offset), $"The range [{offset}, {offset}+{size}) does not lie within [0, {limit}).");

    [DoesNotReturn]
    internal static void ThrowObjectDisposed(object instance) => throw new ObjectDisposedException(instance.GetType().FullName);
}
