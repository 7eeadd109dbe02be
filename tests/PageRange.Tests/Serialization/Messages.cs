using MessagePack;
using MessagePack.Formatters;

namespace PageRange.Tests.Serialization;

// Public because MessagePack's dynamic resolver generates formatters only for public types.

[MessagePackObject]
public sealed class Order
{
    [Key(0)]
    public int Id { get; set; }

    [Key(1)]
    public Customer? Customer { get; set; }

    [Key(2)]
    public List<OrderLine> Lines { get; set; } = [];

    [Key(3)]
    public Dictionary<string, OrderLine[]> ByWarehouse { get; set; } = [];

    [Key(4)]
    public byte[]? Attachment { get; set; }

    public Order WithId(int id)
    {
        Id = id;
        return this;
    }

    public static Order Sample(int id, int lines, int attachment) => new()
    {
        Id = id,
        Customer = new Customer { Name = $"customer {id} ✓", Address = new Address("Main St", id, ["a", "b"]) },
        Lines = [.. Enumerable.Range(0, lines).Select(i => new OrderLine($"sku-{i}", i, i * 1.5m))],
        ByWarehouse = new() { ["north"] = [new OrderLine("n", 1, 2m)], ["south"] = [] },
        Attachment = ReservedBufferTests.Pattern(attachment, id),
    };
}

[MessagePackObject]
public sealed class Customer
{
    [Key(0)]
    public string Name { get; set; } = "";

    [Key(1)]
    public Address? Address { get; set; }
}

[MessagePackObject]
public sealed record Address([property: Key(0)] string Street, [property: Key(1)] int Number, [property: Key(2)] string[] Tags);

[MessagePackObject]
public sealed record OrderLine([property: Key(0)] string Sku, [property: Key(1)] int Quantity, [property: Key(2)] decimal Price);

[MessagePackObject]
public sealed record Blob([property: Key(0)] byte[] Data);

// One type per test of the size estimate: a type's estimate is shared by the whole process, so a test that relies on
// what its last message was needs a type no other test sends.

[MessagePackObject]
public sealed record OnewaySizedBlob([property: Key(0)] byte[] Data);

[MessagePackObject]
public sealed record CallSizedBlob([property: Key(0)] byte[] Data);

[MessagePackObject]
public sealed record ReplySizedBlob([property: Key(0)] byte[] Data);

[MessagePackObject]
public sealed record TimeoutSizedBlob([property: Key(0)] byte[] Data);

[MessagePackObject]
public sealed record TracedSizedBlob([property: Key(0)] byte[] Data);

[MessagePackObject]
public sealed record ParcelSizedBlob([property: Key(0)] byte[] Data);

/// <summary>A struct with a blob read in place: deserializing it from a transaction the caller keeps allocates nothing.</summary>
[MessagePackObject]
public readonly record struct Frame([property: Key(0)] long Seq, [property: Key(1)] ReadOnlyMemory<byte> Data);

/// <summary>A message of 2001 bytes whose serialization, if asked to, fails halfway, after bytes were written.</summary>
[MessagePackFormatter(typeof(Formatter))]
public sealed class Exploding
{
    public bool Explode { get; init; }

    public sealed class Formatter : IMessagePackFormatter<Exploding>
    {
        public void Serialize(ref MessagePackWriter writer, Exploding value, MessagePackSerializerOptions options)
        {
            writer.Write(new byte[1000]);
            if (value.Explode)
            {
                throw new InvalidOperationException("boom");
            }
            writer.Write(new byte[995]);
        }

        public Exploding Deserialize(ref MessagePackReader reader, MessagePackSerializerOptions options) => throw new NotSupportedException();
    }
}
