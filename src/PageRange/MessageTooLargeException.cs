namespace PageRange;

/// <summary>The message can never fit: it is larger than the region's data area, or than the oneway quota for a oneway message.</summary>
public sealed class MessageTooLargeException : PageRangeException
{
    /// <summary>Creates the exception.</summary>
    public MessageTooLargeException(long size, long limit, string message)
        : base(message)
    {
        Size = size;
        Limit = limit;
    }

    /// <summary>The size that was asked for, in bytes.</summary>
    public long Size { get; }

    /// <summary>The largest size that could ever be accepted, in bytes.</summary>
    public long Limit { get; }
}
