using System.Runtime.InteropServices;

namespace PageRange;

/// <summary>Owns one <c>mmap</c> mapping and unmaps it exactly once, after every borrower has let go.</summary>
internal sealed class SafeMappingHandle : SafeBuffer
{
    private readonly nuint _length;

    public SafeMappingHandle()
        : base(ownsHandle: true)
    {
    }

    internal SafeMappingHandle(nint address, ulong length)
        : base(ownsHandle: true)
    {
        _length = (nuint)length;
        SetHandle(address);
        Initialize(length);
    }

    protected override bool ReleaseHandle() => Interop.Libc.Munmap(handle, _length) == 0;
}
