using PageRange.Transport;

namespace PageRange.Server;

/// <summary>One received transaction waiting for a worker, and the client it came from.</summary>
internal readonly record struct ServerWorkItem(ClientSession Session, Transaction Transaction);
