using System.Runtime.InteropServices;

namespace PageRange;

internal static partial class Interop
{
    internal const int PROT_READ = 1;
    internal const int PROT_WRITE = 2;
    internal const int MAP_SHARED = 0x01;
    internal const int MADV_DONTFORK = 10;
    internal static readonly nint MAP_FAILED = -1;

    internal static partial class Libc
    {
        [LibraryImport(Libraries.Libc, EntryPoint = "mmap", SetLastError = true)]
        internal static partial nint Mmap(nint addr, nuint length, int prot, int flags, SafeMemfdHandle fd, long offset);

        [LibraryImport(Libraries.Libc, EntryPoint = "munmap", SetLastError = true)]
        internal static partial int Munmap(nint addr, nuint length);

        [LibraryImport(Libraries.Libc, EntryPoint = "mprotect", SetLastError = true)]
        internal static partial int Mprotect(nint addr, nuint length, int prot);

        [LibraryImport(Libraries.Libc, EntryPoint = "madvise", SetLastError = true)]
        internal static partial int Madvise(nint addr, nuint length, int advice);

        [LibraryImport(Libraries.Libc, EntryPoint = "getpagesize")]
        internal static partial int GetPageSize();
    }

    /// <summary>Maps <paramref name="length"/> bytes of <paramref name="fd"/> shared, not inherited by fork children.</summary>
    internal static SafeMappingHandle MapShared(SafeMemfdHandle fd, long length, bool writable)
    {
        int prot = writable ? PROT_READ | PROT_WRITE : PROT_READ;
        nint address = Libc.Mmap(0, (nuint)length, prot, MAP_SHARED, fd, 0);
        if (address == MAP_FAILED)
        {
            throw GetLastErrorException("mmap");
        }
        var mapping = new SafeMappingHandle(address, (ulong)length);
        // binder's VM_DONTCOPY: a forked child must not inherit a view of the peer's memory.
        if (Libc.Madvise(address, (nuint)length, MADV_DONTFORK) != 0)
        {
            Exception error = GetLastErrorException("madvise(MADV_DONTFORK)");
            mapping.Dispose();
            throw error;
        }
        return mapping;
    }

    /// <summary>Changes the protection of part of a mapping the caller keeps alive.</summary>
    internal static void Protect(nint address, long length, int prot)
    {
        if (Libc.Mprotect(address, (nuint)length, prot) != 0)
        {
            throw GetLastErrorException("mprotect");
        }
    }
}
