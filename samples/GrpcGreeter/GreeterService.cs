using Grpc.Core;

namespace GrpcGreeter;

/// <summary>The one service class: served over PageRange and by Kestrel at the same time, unchanged.</summary>
internal sealed class GreeterService : Greeter.GreeterBase
{
    public override Task<HelloReply> SayHello(HelloRequest request, ServerCallContext context) =>
        Task.FromResult(new HelloReply { Message = $"Hello {request.Name} (from {context.Peer})" });
}
