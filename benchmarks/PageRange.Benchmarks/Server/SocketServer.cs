using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Net.Sockets;

namespace PageRange.Benchmarks.Server;

/// <summary>
/// The baseline: a Unix-socket server with PageRangeServer's thread model. One reader per client frames requests
/// (<c>length u32 | payload</c>) and queues them; a fixed pool of worker threads runs the handler (an echo) and writes
/// the reply under the client's send lock.
/// </summary>
internal sealed class SocketServer : IDisposable
{
    private readonly Socket _listener;
    private readonly BlockingCollection<(Socket Client, object SendLock, byte[] Request, int Length)> _work = new();
    private readonly List<Thread> _threads = [];
    private readonly List<Socket> _clients = [];
    private volatile bool _stopping;

    public SocketServer(string path, int workers)
    {
        Path = path;
        _listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        _listener.Bind(new UnixDomainSocketEndPoint(path));
        _listener.Listen(128);
        Start(AcceptLoop, "socket server accept");
        for (int i = 0; i < workers; i++)
        {
            Start(WorkerLoop, $"socket server worker {i}");
        }
    }

    public string Path { get; }

    public void Dispose()
    {
        _stopping = true;
        _work.CompleteAdding();
        _listener.Dispose();
        lock (_clients)
        {
            foreach (Socket client in _clients)
            {
                client.Dispose();
            }
        }
        foreach (Thread thread in _threads)
        {
            thread.Join(TimeSpan.FromSeconds(5));
        }
        _work.Dispose();
        File.Delete(Path);
    }

    private void Start(ThreadStart body, string name)
    {
        var thread = new Thread(body) { IsBackground = true, Name = name };
        _threads.Add(thread);
        thread.Start();
    }

    private void AcceptLoop()
    {
        while (!_stopping)
        {
            Socket client;
            try
            {
                client = _listener.Accept();
            }
            catch (Exception error) when (error is SocketException or ObjectDisposedException)
            {
                return;
            }
            lock (_clients)
            {
                _clients.Add(client);
            }
            var thread = new Thread(() => ReadLoop(client)) { IsBackground = true, Name = "socket server reader" };
            thread.Start();
        }
    }

    private void ReadLoop(Socket client)
    {
        object sendLock = new();
        byte[] header = new byte[4];
        try
        {
            while (true)
            {
                if (!ReadExactly(client, header))
                {
                    return;
                }
                int length = BinaryPrimitives.ReadInt32LittleEndian(header);
                // One buffer per request: the reader goes on framing the next while a worker handles this one.
                byte[] request = new byte[Math.Max(length, 1)];
                if (!ReadExactly(client, request.AsSpan(0, length)))
                {
                    return;
                }
                _work.Add((client, sendLock, request, length));
            }
        }
        catch (Exception error) when (error is SocketException or ObjectDisposedException or InvalidOperationException)
        {
            // The client left or the server stops.
        }
    }

    private void WorkerLoop()
    {
        byte[] reply = new byte[4 + (1 << 20)];
        try
        {
            foreach ((Socket client, object sendLock, byte[] request, int length) in _work.GetConsumingEnumerable())
            {
                BinaryPrimitives.WriteInt32LittleEndian(reply, length);
                request.AsSpan(0, length).CopyTo(reply.AsSpan(4));
                try
                {
                    lock (sendLock)
                    {
                        Send(client, reply.AsSpan(0, 4 + length));
                    }
                }
                catch (Exception error) when (error is SocketException or ObjectDisposedException)
                {
                    // That client left; the others go on.
                }
            }
        }
        catch (ObjectDisposedException)
        {
            // Stopped.
        }
    }

    internal static void Send(Socket socket, ReadOnlySpan<byte> bytes)
    {
        while (!bytes.IsEmpty)
        {
            bytes = bytes[socket.Send(bytes, SocketFlags.None)..];
        }
    }

    internal static bool ReadExactly(Socket socket, Span<byte> destination)
    {
        while (!destination.IsEmpty)
        {
            int read = socket.Receive(destination, SocketFlags.None);
            if (read == 0)
            {
                return false;
            }
            destination = destination[read..];
        }
        return true;
    }
}
