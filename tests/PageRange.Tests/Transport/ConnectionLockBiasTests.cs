using System.Diagnostics;
using PageRange.Tests.Infrastructure;
using PageRange.Transport;

namespace PageRange.Tests.Transport;

/// <summary>
/// A oneway stream's threads hold their locks' bias (no locked instruction per message), and the connection's own
/// housekeeping thread, which takes the same locks once per park timeout, leaves them alone while the stream flows
/// instead of revoking the bias (a process-wide barrier) every pass.
/// </summary>
/// <remarks>In the collection that runs alone: two stream threads own both cores, and tests beside them would starve the
/// housekeeping threads this watches.</remarks>
[Collection(CrossProcessCollection.Name)]
public sealed class ConnectionLockBiasTests
{
    [BiasFact]
    public async Task OnewayStream_OverManyHousekeepingPasses_KeepsTheSendersAndReceiversLocksBiased()
    {
        PageRangeOptions options = ConnectionPair.DefaultOptions();
        options.WaitStrategy = WaitStrategy.SpinThenPark;
        options.ParkTimeout = TimeSpan.FromMilliseconds(25);
        await using ConnectionPair pair = await ConnectionPair.CreateAsync(options);
        PageRangeConnection client = pair.Client;
        PageRangeConnection server = pair.Server;

        // The stream runs until each side's housekeeping has passed this often (a slow machine takes longer).
        const int Passes = 20;
        long sent = 0;
        long received = 0;
        bool senderBiased = false;
        bool receiverBiased = false;
        int stop = 0;
        Exception? failure = null;
        var sender = new Thread(() =>
        {
            try
            {
                byte[] payload = new byte[64];
                var clock = Stopwatch.StartNew();
                int serverStart = server.HousekeepingPassesForTest;
                int clientStart = client.HousekeepingPassesForTest;
                while ((server.HousekeepingPassesForTest - serverStart < Passes || client.HousekeepingPassesForTest - clientStart < Passes)
                    && clock.Elapsed < TestTimeouts.Long)
                {
                    client.SendOneway(7, payload);
                    sent++;
                    if ((sent & 1023) == 0)
                    {
                        senderBiased |= client.Outbound.SendLock.IsBiasedToCurrentThread;
                    }
                }
                // The last one tells the receiver to stop.
                client.SendOneway(8, payload);
            }
            catch (Exception error)
            {
                failure = error;
            }
        })
        { IsBackground = true, Name = "stream-sender" };
        var receiver = new Thread(() =>
        {
            try
            {
                while (true)
                {
                    using Transaction transaction = server.Receive();
                    if (transaction.Code == 8)
                    {
                        break;
                    }
                    received++;
                    if ((received & 1023) == 0)
                    {
                        receiverBiased |= server.SlotLockForTest.IsBiasedToCurrentThread && server.Inbound.ReceiveLock.IsBiasedToCurrentThread;
                    }
                }
            }
            catch (Exception error)
            {
                failure = error;
            }
            finally
            {
                Volatile.Write(ref stop, 1);
            }
        })
        { IsBackground = true, Name = "stream-receiver" };
        receiver.Start();
        sender.Start();
        Assert.True(sender.Join(TestTimeouts.Long));
        Assert.True(receiver.Join(TestTimeouts.Long));

        Assert.Null(failure);
        Assert.Equal(1, Volatile.Read(ref stop));
        Assert.Equal(sent, received);
        // Twenty and more housekeeping passes ran on each side beside the stream (one per 25 ms); a pass that took
        // the locks would revoke a bias each time it had come back (a dozen and more per lock). A pass revokes only
        // after a whole park timeout in which the stream's thread did not run (a loaded machine can hold it off that
        // long now and then, and the bias then comes back only after a fast streak), so a few are allowed; without
        // the housekeeping's skip it is 14 and more.
        int serverPasses = server.HousekeepingPassesForTest;
        int clientPasses = client.HousekeepingPassesForTest;
        Assert.True(serverPasses >= Passes && clientPasses >= Passes, $"only {serverPasses} and {clientPasses} housekeeping passes");
        Assert.True(senderBiased, "the sender's send lock was never seen biased to it");
        Assert.True(receiverBiased, "the receiver's slot and receive locks were never seen biased to it");
        Assert.InRange(client.Outbound.SendLock.Revocations, 0, 6);
        Assert.InRange(server.SlotLockForTest.Revocations, 0, 6);
        Assert.InRange(server.Inbound.ReceiveLock.Revocations, 0, 6);

        // Once the stream stops, housekeeping does the work again: the idle writer's frees are drained (taking the
        // send lock and revoking its bias), so the sender's region gets its buffers back within a few passes.
        int sendLockRevocations = client.Outbound.SendLock.Revocations;
        await Poll.WaitUntilAsync(() => client.Outbound.SendLock.Revocations == sendLockRevocations + 1, "housekeeping took the idle sender's lock");
    }
}
