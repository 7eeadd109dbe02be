using System.Runtime.CompilerServices;

namespace PageRange.Threading;

/// <summary>
/// The current thread's managed id, read once and handed to the several <see cref="ThinLock"/> passes of one operation
/// (a call's rent, send, wait, routing and return; a receive's pump), valid only on the thread that read it.
/// </summary>
/// <remarks>
/// Each pass needs the id (is the lock biased to this thread? which owner word?), and on Linux each read of a thread
/// static is a call to <c>__tls_get_addr</c> plus a few dependent loads, made once per method that takes a lock: a
/// synchronous round trip made about nine, ~24 ns of its ~270 ns of own work in the call probe's profile (session
/// 2026-12-04 23:50). A struct of its own rather than an <see cref="int"/>, so that no other number is passed by
/// mistake; <c>default</c> (id 0) is refused by <see cref="ThinLock.EnterScope(ThreadToken)"/>.
/// </remarks>
internal readonly struct ThreadToken
{
    private ThreadToken(int id) => Id = id;

    /// <summary>The managed thread id: never 0 for a token made by <see cref="Current"/>, 0 for <c>default</c>.</summary>
    internal int Id { get; }

    /// <summary>The current thread's token.</summary>
    internal static ThreadToken Current
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => new(ThinLock.CurrentThreadId);
    }
}
