using PageRange.Transport;

namespace PageRange.Server;

/// <summary>One registered handler: what runs for a code, and which kinds of transaction it takes.</summary>
/// <param name="Code">The code it serves.</param>
/// <param name="Invoke">Runs the handler; for a two-way call it replies (or the dispatcher replies for it).</param>
/// <param name="OnewayOnly">Whether it takes oneway messages only (<see cref="PageRangeServerBuilder.MapOneway{T}(uint, Action{T, CallContext}, MessagePack.MessagePackSerializerOptions?)"/>).</param>
internal sealed record ServerHandler(uint Code, Func<Transaction, CallContext, ValueTask> Invoke, bool OnewayOnly)
{
    /// <summary>How long its runs took lately: whether it may run on the receiving thread.</summary>
    internal HandlerTiming Timing { get; } = new();
}
