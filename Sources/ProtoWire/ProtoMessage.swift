/// A protobuf message type with a hand-written codec.
///
/// A message describes its fields once, in `traverse`, in field order. The same traversal is used
/// twice when encoding: `ProtoSizer` computes the size of the message and of every nested message
/// (pre-order, each exactly once), then `ProtoWriter` writes the bytes, reading the nested sizes
/// back in the same order. So a nested message is never encoded just to learn its length.
public protocol ProtoMessage: Sendable {
    init()
    /// Decodes one field. Unknown fields must be skipped with `reader.skip(wireType, field:)`.
    mutating func decodeField(_ field: Int, _ wireType: WireType, from reader: inout ProtoReader) throws(ProtoDecodingError)
    /// Visits every field that has a non-default value, in field-number order.
    func traverse<V: ProtoVisitor>(_ visitor: inout V)
}

extension ProtoMessage {
    @inlinable
    public mutating func merge(from reader: inout ProtoReader) throws(ProtoDecodingError) {
        while let (field, wireType) = try reader.nextTag() {
            try decodeField(field, wireType, from: &reader)
        }
    }

    /// Decodes a message from its serialized bytes.
    @inlinable
    public init(protoBytes: [UInt8], maxDepth: Int = ProtoReader.defaultMaxDepth) throws(ProtoDecodingError) {
        self.init()
        var reader = ProtoReader(protoBytes, maxDepth: maxDepth)
        try merge(from: &reader)
    }

    /// The serialized size in bytes.
    public var protoSize: Int {
        var sizer = ProtoSizer()
        traverse(&sizer)
        return sizer.size
    }

    /// Serializes the message.
    public func protoBytes() -> [UInt8] {
        protoBytes(after: [], reserving: 0)
    }

    /// `prefix` followed by the serialized message, in one buffer with room for `reserving`
    /// more bytes (a framing trailer): no copy of a large message to frame it.
    public func protoBytes(after prefix: [UInt8], reserving extra: Int) -> [UInt8] {
        var sizer = ProtoSizer()
        traverse(&sizer)
        var writer = ProtoWriter(prefix: prefix, capacity: sizer.size + extra, nestedSizes: sizer.nestedSizes)
        traverse(&writer)
        return writer.bytes
    }
}

/// Receives the fields of a message. The primitive requirements always emit; the extension
/// methods below apply proto3's rule of omitting default values.
public protocol ProtoVisitor {
    mutating func varintField(_ field: Int, _ value: UInt64)
    mutating func fixed64Field(_ field: Int, _ value: UInt64)
    mutating func fixed32Field(_ field: Int, _ value: UInt32)
    mutating func bytesField(_ field: Int, _ value: [UInt8])
    mutating func stringField(_ field: Int, _ value: String)
    mutating func messageField<M: ProtoMessage>(_ field: Int, _ value: M)
    mutating func packedVarintField(_ field: Int, _ values: [UInt64])
}

extension ProtoVisitor {
    // proto3 scalars: omitted when zero/empty. Use the primitive requirements for oneof members,
    // which are emitted even when zero.
    @inlinable public mutating func int64(_ field: Int, _ v: Int64) { if v != 0 { varintField(field, UInt64(bitPattern: v)) } }
    @inlinable public mutating func uint64(_ field: Int, _ v: UInt64) { if v != 0 { varintField(field, v) } }
    @inlinable public mutating func int32(_ field: Int, _ v: Int32) { if v != 0 { varintField(field, UInt64(bitPattern: Int64(v))) } }
    @inlinable public mutating func uint32(_ field: Int, _ v: UInt32) { if v != 0 { varintField(field, UInt64(v)) } }
    @inlinable public mutating func bool(_ field: Int, _ v: Bool) { if v { varintField(field, 1) } }
    @inlinable public mutating func sint64(_ field: Int, _ v: Int64) {
        if v != 0 { varintField(field, UInt64(bitPattern: (v << 1) ^ (v >> 63))) }
    }
    @inlinable public mutating func fixed64(_ field: Int, _ v: UInt64) { if v != 0 { fixed64Field(field, v) } }
    @inlinable public mutating func bytes(_ field: Int, _ v: [UInt8]) { if !v.isEmpty { bytesField(field, v) } }
    @inlinable public mutating func string(_ field: Int, _ v: String) { if !v.isEmpty { stringField(field, v) } }
    @inlinable public mutating func message<M: ProtoMessage>(_ field: Int, _ v: M?) { if let v { messageField(field, v) } }
    @inlinable public mutating func messages<M: ProtoMessage>(_ field: Int, _ vs: [M]) { for v in vs { messageField(field, v) } }
    @inlinable public mutating func repeatedBytes(_ field: Int, _ vs: [[UInt8]]) { for v in vs { bytesField(field, v) } }
    @inlinable public mutating func repeatedStrings(_ field: Int, _ vs: [String]) { for v in vs { stringField(field, v) } }
    @inlinable public mutating func packedUInt64(_ field: Int, _ vs: [UInt64]) { if !vs.isEmpty { packedVarintField(field, vs) } }
    @inlinable public mutating func packedInt64(_ field: Int, _ vs: [Int64]) {
        if !vs.isEmpty { packedVarintField(field, vs.map { UInt64(bitPattern: $0) }) }
    }
}

@inlinable
public func varintSize(_ v: UInt64) -> Int {
    if v == 0 { return 1 }
    return (64 - v.leadingZeroBitCount + 6) / 7
}

@inlinable
func tagSize(_ field: Int) -> Int { varintSize(UInt64(field) << 3) }

/// First encoding pass: sizes.
public struct ProtoSizer: ProtoVisitor {
    public private(set) var size = 0
    /// Sizes of nested messages in pre-order, consumed by `ProtoWriter`.
    public private(set) var nestedSizes: [Int] = []

    public init() {}

    public mutating func varintField(_ field: Int, _ value: UInt64) { size += tagSize(field) + varintSize(value) }
    public mutating func fixed64Field(_ field: Int, _ value: UInt64) { size += tagSize(field) + 8 }
    public mutating func fixed32Field(_ field: Int, _ value: UInt32) { size += tagSize(field) + 4 }
    public mutating func bytesField(_ field: Int, _ value: [UInt8]) {
        size += tagSize(field) + varintSize(UInt64(value.count)) + value.count
    }
    public mutating func stringField(_ field: Int, _ value: String) {
        let n = value.utf8.count
        size += tagSize(field) + varintSize(UInt64(n)) + n
    }
    public mutating func messageField<M: ProtoMessage>(_ field: Int, _ value: M) {
        let slot = nestedSizes.count
        nestedSizes.append(0)
        let outer = size
        size = 0
        value.traverse(&self)
        let inner = size
        nestedSizes[slot] = inner
        size = outer + tagSize(field) + varintSize(UInt64(inner)) + inner
    }
    public mutating func packedVarintField(_ field: Int, _ values: [UInt64]) {
        var n = 0
        for v in values { n += varintSize(v) }
        size += tagSize(field) + varintSize(UInt64(n)) + n
    }
}

/// Second encoding pass: bytes.
public struct ProtoWriter: ProtoVisitor {
    public private(set) var bytes: [UInt8]
    let nestedSizes: [Int]
    var cursor = 0

    public init(capacity: Int, nestedSizes: [Int]) {
        self.init(prefix: [], capacity: capacity, nestedSizes: nestedSizes)
    }

    /// A writer whose output starts with `prefix`.
    public init(prefix: [UInt8], capacity: Int, nestedSizes: [Int]) {
        bytes = []
        bytes.reserveCapacity(prefix.count + capacity)
        bytes.append(contentsOf: prefix)
        self.nestedSizes = nestedSizes
    }

    mutating func writeVarint(_ value: UInt64) {
        var v = value
        while v >= 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: v) | 0x80)
            v >>= 7
        }
        bytes.append(UInt8(v))
    }

    mutating func writeTag(_ field: Int, _ wireType: WireType) {
        writeVarint(UInt64(field) << 3 | UInt64(wireType.rawValue))
    }

    public mutating func varintField(_ field: Int, _ value: UInt64) {
        writeTag(field, .varint)
        writeVarint(value)
    }
    public mutating func fixed64Field(_ field: Int, _ value: UInt64) {
        writeTag(field, .fixed64)
        for i in 0..<8 { bytes.append(UInt8(truncatingIfNeeded: value >> (8 * UInt64(i)))) }
    }
    public mutating func fixed32Field(_ field: Int, _ value: UInt32) {
        writeTag(field, .fixed32)
        for i in 0..<4 { bytes.append(UInt8(truncatingIfNeeded: value >> (8 * UInt32(i)))) }
    }
    public mutating func bytesField(_ field: Int, _ value: [UInt8]) {
        writeTag(field, .lengthDelimited)
        writeVarint(UInt64(value.count))
        bytes.append(contentsOf: value)
    }
    public mutating func stringField(_ field: Int, _ value: String) {
        writeTag(field, .lengthDelimited)
        writeVarint(UInt64(value.utf8.count))
        bytes.append(contentsOf: value.utf8)
    }
    public mutating func messageField<M: ProtoMessage>(_ field: Int, _ value: M) {
        let size = nestedSizes[cursor]
        cursor += 1
        writeTag(field, .lengthDelimited)
        writeVarint(UInt64(size))
        value.traverse(&self)
    }
    public mutating func packedVarintField(_ field: Int, _ values: [UInt64]) {
        var n = 0
        for v in values { n += varintSize(v) }
        writeTag(field, .lengthDelimited)
        writeVarint(UInt64(n))
        for v in values { writeVarint(v) }
    }
}
