using Grpc.Core;

namespace PageRange.Tests.Grpc.Conformance;

/// <summary>
/// One conformance server for all the tests of a concrete class (started once, the service's records are keyed per
/// test) and the <see cref="CallInvoker"/> its clients use.
/// </summary>
public abstract class ConformanceFixture : IAsyncLifetime
{
    /// <summary>The server's interceptor: every call the server dispatches passes through it.</summary>
    public RecordingServerInterceptor ServerInterceptor { get; } = new();

    internal ConformanceService Service { get; } = new();

    /// <summary>The client side: a channel to <see cref="Service"/>, set by <see cref="InitializeAsync"/>.</summary>
    public CallInvoker Invoker { get; protected set; } = null!;

    public abstract Task InitializeAsync();

    public abstract Task DisposeAsync();
}
