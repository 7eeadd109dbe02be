namespace PageRange.Tests.Infrastructure;

[Collection(CrossProcessCollection.Name)]
public sealed class TestHostProcessTests(ITestOutputHelper output)
{
    [Fact]
    public void Start_EchoScenario_ReadsItsLineAndExitCode()
    {
        using var host = TestHostProcess.Start(output, "echo-args", "a", "b");
        Assert.Equal("a b", host.ReadUntil("args: "));
        Assert.Equal(0, host.WaitForExit());
    }
}
