using Microsoft.Win32.SafeHandles;

namespace PageRange;

/// <summary>Owns one file descriptor (a memfd or a socket) and closes it exactly once.</summary>
internal sealed class SafeMemfdHandle : SafeHandleZeroOrMinusOneIsInvalid
{
    internal SafeMemfdHandle(nint fd, bool ownsHandle)
        : base(ownsHandle) => SetHandle(fd);

    /// <summary>Descriptor 0 is valid on Unix; only -1 means "none".</summary>
    public override bool IsInvalid => handle == -1;

    internal int Fd => (int)handle;

    protected override bool ReleaseHandle() => Interop.Libc.Close(handle) == 0;
}
