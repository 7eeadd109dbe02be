using System.Diagnostics.CodeAnalysis;
using System.Reflection;
using Grpc.Core;
using Grpc.Core.Interceptors;
using PageRange.Server;

namespace PageRange.Grpc;

/// <summary>Binds a service's methods to codes of a server builder, through its generated <c>BindService</c>.</summary>
internal static class GrpcServiceMapper
{
    internal static PageRangeServerBuilder Map<[DynamicallyAccessedMembers(PageRangeGrpcServerBuilderExtensions.ServiceMembers)] TService>(
        PageRangeServerBuilder builder, TService? instance, Func<TService> factory, PageRangeGrpcServiceOptions options)
        where TService : class
    {
        ArgumentNullException.ThrowIfNull(builder);
        ArgumentNullException.ThrowIfNull(options);
        (MethodInfo bind, Type bindType) = FindBindMethod(typeof(TService));
        TService prototype = instance ?? factory() ?? throw new ArgumentException("The service factory returned null.", nameof(factory));
        Interceptor[] interceptors = [.. options.Interceptors];
        if (interceptors.Any(static interceptor => interceptor is null))
        {
            throw new ArgumentException("An interceptor is null.", nameof(options));
        }
        var binder = new GrpcServiceBinder<TService>(instance is null ? factory : null, interceptors);
        _ = bindType;
        try
        {
            bind.Invoke(null, [binder, prototype]);
        }
        catch (TargetInvocationException error) when (error.InnerException is not null)
        {
            throw error.InnerException;
        }
        GrpcServerState state = GrpcServerState.For(builder);
        foreach (IGrpcServerMethod method in binder.Methods)
        {
            state.Add(builder, method);
        }
        return builder;
    }

    /// <summary>The generated <c>BindService(ServiceBinderBase, TBase)</c>, named by the base class's attribute.</summary>
    [UnconditionalSuppressMessage("Trimming", "IL2075", Justification = "BindServiceMethodAttribute.BindType keeps the generated class's methods (it is annotated in Grpc.Core.Api) and the generated BindService is public static.")]
    private static (MethodInfo Bind, Type BindType) FindBindMethod([DynamicallyAccessedMembers(PageRangeGrpcServerBuilderExtensions.ServiceMembers)] Type service)
    {
        for (Type? type = service; type is not null; type = type.BaseType)
        {
            if (type.GetCustomAttribute<BindServiceMethodAttribute>(inherit: false) is { } attribute)
            {
                MethodInfo? bind = attribute.BindType.GetMethod(
                    attribute.BindMethodName, BindingFlags.Static | BindingFlags.Public | BindingFlags.NonPublic, [typeof(ServiceBinderBase), type]);
                return bind is null
                    ? throw new ArgumentException($"{attribute.BindType} has no method {attribute.BindMethodName}(ServiceBinderBase, {type.Name}).", nameof(service))
                    : (bind, attribute.BindType);
            }
        }
        throw new ArgumentException($"{service} is not a gRPC service: no base class of it carries [BindServiceMethod] (derive it from the generated *Base class).", nameof(service));
    }
}
