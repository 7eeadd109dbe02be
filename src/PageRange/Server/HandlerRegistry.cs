using System.Collections.Frozen;

namespace PageRange.Server;

/// <summary>The handlers of a server by code, fixed once the server starts (lookups take no lock).</summary>
internal sealed class HandlerRegistry
{
    private readonly FrozenDictionary<uint, ServerHandler> _handlers;

    internal HandlerRegistry(IEnumerable<ServerHandler> handlers) =>
        _handlers = handlers.ToFrozenDictionary(static handler => handler.Code);

    /// <summary>How many codes are served.</summary>
    internal int Count => _handlers.Count;

    /// <summary>The handler for <paramref name="code"/>, if one is registered.</summary>
    internal bool TryGet(uint code, out ServerHandler? handler) => _handlers.TryGetValue(code, out handler);
}
