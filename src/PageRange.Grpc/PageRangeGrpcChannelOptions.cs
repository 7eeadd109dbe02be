using PageRange.Transport;

namespace PageRange.Grpc;

/// <summary>Options of a gRPC channel over PageRange (<see cref="PageRangeGrpcChannel"/>).</summary>
public sealed class PageRangeGrpcChannelOptions
{
    /// <summary>The options of the connection the invoker makes; <c>null</c> for the defaults. Unused when the invoker
    /// is given an existing <see cref="PageRangeConnection"/>.</summary>
    public PageRangeOptions? ConnectionOptions { get; set; }

    /// <summary>
    /// How long a call without a gRPC deadline waits for its reply; <see cref="Timeout.InfiniteTimeSpan"/> (the default)
    /// waits as long as the server takes, as gRPC does. A call's deadline always bounds it.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">Not positive and not infinite.</exception>
    public TimeSpan CallTimeout
    {
        get;
        set
        {
            if (value != Timeout.InfiniteTimeSpan)
            {
                ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(value, TimeSpan.Zero);
                ArgumentOutOfRangeException.ThrowIfGreaterThan(value, TimeSpan.FromMilliseconds(int.MaxValue - 1));
            }
            field = value;
        }
    } = Timeout.InfiniteTimeSpan;

    internal PageRangeGrpcChannelOptions Clone() => new() { ConnectionOptions = ConnectionOptions, CallTimeout = CallTimeout };
}
