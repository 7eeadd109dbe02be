using System.Diagnostics;
using System.Reflection;
using PageRange.Transport;

namespace PageRange.Tests.Infrastructure;

/// <summary>
/// A test of what the library allocates on an async path: skipped when the library was built without optimization
/// (a Debug build, e.g. <c>dotnet test</c> without <c>-c Release</c>), where the compiler makes every async method's
/// state machine a class, one allocation per call whatever the code does. The README's and CI's command build Release.
/// </summary>
[AttributeUsage(AttributeTargets.Method)]
public sealed class OptimizedBuildFactAttribute : FactAttribute
{
    public OptimizedBuildFactAttribute()
    {
        if (typeof(PageRangeConnection).Assembly.GetCustomAttribute<DebuggableAttribute>()?.IsJITOptimizerDisabled == true)
        {
            Skip = "The library is a Debug build: its async state machines are classes, allocated per call (run with -c Release).";
        }
    }
}
