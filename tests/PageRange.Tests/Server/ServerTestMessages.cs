using MessagePack;

namespace PageRange.Tests.Server;

// Public because MessagePack's dynamic resolver generates formatters only for public types.

[MessagePackObject]
public sealed record AddRequest([property: Key(0)] int A, [property: Key(1)] int B);

[MessagePackObject]
public sealed record AddResponse([property: Key(0)] int Sum);

[MessagePackObject]
public sealed record Note([property: Key(0)] int Seq);
