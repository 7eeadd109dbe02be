namespace PageRange;

/// <summary>A Linux system call failed; <see cref="SystemCall"/> names it and <see cref="Errno"/> says why.</summary>
public class SystemCallException : PageRangeException
{
    /// <summary>Creates the exception for a failed system call.</summary>
    public SystemCallException(string systemCall, int errno, string message)
        : base(message)
    {
        SystemCall = systemCall;
        Errno = errno;
    }

    /// <summary>The system call that failed, e.g. <c>fallocate</c>.</summary>
    public string SystemCall { get; }

    /// <summary>The <c>errno</c> it returned.</summary>
    public int Errno { get; }
}
