namespace PageRange;

/// <summary>The base of every error PageRange raises on purpose.</summary>
public class PageRangeException : Exception
{
    /// <summary>Creates the exception with a message.</summary>
    public PageRangeException(string message)
        : base(message)
    {
    }

    /// <summary>Creates the exception with a message and the error that caused it.</summary>
    public PageRangeException(string message, Exception? innerException)
        : base(message, innerException)
    {
    }
}
