/// Protocol Buffers wire format: decoding.
///
/// `ProtoReader` walks untrusted bytes. It never traps: every malformed input (truncation,
/// over-long varints, lengths past the end, unknown or unexpected wire types, nesting deeper than
/// `maxDepth`) is reported as a `ProtoDecodingError`.

public enum WireType: UInt8, Sendable {
    case varint = 0
    case fixed64 = 1
    case lengthDelimited = 2
    case startGroup = 3
    case endGroup = 4
    case fixed32 = 5
}

public enum ProtoDecodingError: Error, Equatable, Sendable {
    /// The input ended inside a tag, a value or a length-delimited field.
    case truncated
    /// A varint longer than 10 bytes, or whose 10th byte carries more than one bit.
    case malformedVarint
    /// A length prefix pointing past the end of the enclosing message.
    case lengthOutOfBounds
    /// A length prefix of 2⁶³ or more (negative as a Go int).
    case negativeLength
    /// A tag with wire type 6 or 7, or field number 0.
    case invalidTag(UInt64)
    /// A known field arrived with a wire type its declaration does not allow.
    case wrongWireType(field: Int, wireType: UInt8)
    /// Nested messages (or groups) deeper than the reader's bound.
    case nestingTooDeep
    /// A start-group without its end-group, or a stray end-group.
    case unbalancedGroup
    /// A `string` field that is not valid UTF-8.
    case invalidUTF8(field: Int)
    /// A value this version does not know how to apply faithfully (e.g. an op kind added by a
    /// newer version): refusing it beats silently dropping part of a message.
    case unsupported(String)
}

extension ProtoDecodingError {
    /// The text etcd's generated (gogo-protobuf) decoders give for this problem in a message of
    /// type `messageName` — what grpc-go puts after "grpc: error unmarshalling request: ". A
    /// wrong wire type names the field by number where etcd names its Go field.
    public func goText(messageName: String) -> String {
        switch self {
        case .truncated, .lengthOutOfBounds: return "unexpected EOF"
        case .malformedVarint: return "proto: integer overflow"
        case .negativeLength: return "proto: negative length found during unmarshaling"
        case .invalidTag(let key):
            let field = key >> 3, wireType = key & 7
            if wireType == 4 { return "proto: \(messageName): wiretype end group for non-group" }
            if field == 0 { return "proto: \(messageName): illegal tag 0 (wire type \(wireType))" }
            return "proto: illegal wireType \(wireType)"
        case .wrongWireType(let field, let wireType):
            if wireType == 4 { return "proto: \(messageName): wiretype end group for non-group" }
            return "proto: wrong wireType = \(wireType) for field \(field)"
        case .nestingTooDeep: return "proto: \(messageName): nested messages too deep"
        case .unbalancedGroup: return "proto: \(messageName): unbalanced group"
        case .invalidUTF8(let field): return "proto: \(messageName): invalid UTF-8 in field \(field)"
        case .unsupported(let what): return "proto: \(messageName): \(what)"
        }
    }
}

public struct ProtoReader {
    /// Default bound on message nesting; etcd's deepest legitimate nesting (Txn inside Txn) is
    /// bounded by the request size, this keeps hostile input from recursing without end.
    public static let defaultMaxDepth = 64

    @usableFromInline let bytes: [UInt8]
    @usableFromInline var index: Int
    @usableFromInline let end: Int
    @usableFromInline let depth: Int
    @usableFromInline let maxDepth: Int

    public init(_ bytes: [UInt8], maxDepth: Int = ProtoReader.defaultMaxDepth) {
        self.bytes = bytes
        self.index = 0
        self.end = bytes.count
        self.depth = 0
        self.maxDepth = maxDepth
    }

    /// A reader over `range` of `bytes` (a message embedded in a larger buffer, without a copy).
    public init(_ bytes: [UInt8], range: Range<Int>, maxDepth: Int = ProtoReader.defaultMaxDepth) {
        precondition(range.lowerBound >= 0 && range.upperBound <= bytes.count, "range outside the buffer")
        self.init(bytes: bytes, start: range.lowerBound, end: range.upperBound, depth: 0, maxDepth: maxDepth)
    }

    /// Where a length-delimited field's contents lie in the buffer this reader reads; this reader
    /// moves past the field. For a large bytes field decoded later, without a copy.
    public mutating func readBytesRange() throws(ProtoDecodingError) -> Range<Int> {
        let length = try readLength()
        defer { index += length }
        return index..<(index + length)
    }

    /// The buffer this reader reads (whole, whatever its range).
    public var buffer: [UInt8] { bytes }

    @usableFromInline init(bytes: [UInt8], start: Int, end: Int, depth: Int, maxDepth: Int) {
        self.bytes = bytes
        self.index = start
        self.end = end
        self.depth = depth
        self.maxDepth = maxDepth
    }

    public var isAtEnd: Bool { index >= end }

    /// Reads the next tag; `nil` at the end of the message.
    @inlinable
    public mutating func nextTag() throws(ProtoDecodingError) -> (field: Int, wireType: WireType)? {
        if index >= end { return nil }
        let key = try readVarint()
        guard let wireType = WireType(rawValue: UInt8(key & 7)) else { throw .invalidTag(key) }
        let field = key >> 3
        guard field > 0, field <= 536_870_911 else { throw .invalidTag(key) }
        return (Int(field), wireType)
    }

    @inlinable
    public mutating func readVarint() throws(ProtoDecodingError) -> UInt64 {
        var result: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            guard index < end else { throw .truncated }
            let byte = bytes[index]
            index += 1
            if shift == 63 && byte > 1 { throw .malformedVarint }
            result |= UInt64(byte & 0x7f) << shift
            if byte & 0x80 == 0 { return result }
            shift += 7
            if shift > 63 { throw .malformedVarint }
        }
    }

    @inlinable
    public mutating func readFixed32() throws(ProtoDecodingError) -> UInt32 {
        guard end - index >= 4 else { throw .truncated }
        var v: UInt32 = 0
        for i in 0..<4 { v |= UInt32(bytes[index + i]) << (8 * UInt32(i)) }
        index += 4
        return v
    }

    @inlinable
    public mutating func readFixed64() throws(ProtoDecodingError) -> UInt64 {
        guard end - index >= 8 else { throw .truncated }
        var v: UInt64 = 0
        for i in 0..<8 { v |= UInt64(bytes[index + i]) << (8 * UInt64(i)) }
        index += 8
        return v
    }

    @inlinable
    mutating func readLength() throws(ProtoDecodingError) -> Int {
        let length = try readVarint()
        guard length <= UInt64(end - index) else {
            if length > UInt64(Int64.max) { throw .negativeLength }
            throw index >= end ? .truncated : .lengthOutOfBounds
        }
        return Int(length)
    }

    @inlinable
    public mutating func readBytes() throws(ProtoDecodingError) -> [UInt8] {
        let length = try readLength()
        let out = Array(bytes[index..<(index + length)])
        index += length
        return out
    }

    public mutating func readString(field: Int) throws(ProtoDecodingError) -> String {
        let raw = try readBytes()
        guard let s = String(validating: raw, as: UTF8.self) else { throw .invalidUTF8(field: field) }
        return s
    }

    /// A reader over the contents of a length-delimited field, one level deeper; this reader
    /// moves past the field. For scanning a nested message without decoding all of it.
    public mutating func readNested() throws(ProtoDecodingError) -> ProtoReader {
        guard depth + 1 < maxDepth else { throw .nestingTooDeep }
        let length = try readLength()
        let sub = ProtoReader(bytes: bytes, start: index, end: index + length, depth: depth + 1, maxDepth: maxDepth)
        index += length
        return sub
    }

    /// The first `count` bytes (fewer if the field is shorter) of a length-delimited field;
    /// this reader moves past the whole field.
    public mutating func readBytesPrefix(_ count: Int) throws(ProtoDecodingError) -> [UInt8] {
        let length = try readLength()
        let out = Array(bytes[index..<(index + min(count, length))])
        index += length
        return out
    }

    /// Decodes a nested message from a length-delimited field, one level deeper.
    @inlinable
    public mutating func readMessage<M: ProtoMessage>(_ type: M.Type = M.self) throws(ProtoDecodingError) -> M {
        var m = M()
        try mergeMessage(into: &m)
        return m
    }

    /// Merges a nested length-delimited message into an existing value (protobuf merge semantics
    /// for a repeated occurrence of a singular message field).
    @inlinable
    public mutating func mergeMessage<M: ProtoMessage>(into message: inout M) throws(ProtoDecodingError) {
        guard depth + 1 < maxDepth else { throw .nestingTooDeep }
        let length = try readLength()
        var sub = ProtoReader(bytes: bytes, start: index, end: index + length, depth: depth + 1, maxDepth: maxDepth)
        try message.merge(from: &sub)
        index += length
    }

    /// Skips a field's value of any wire type, including (nested) groups.
    public mutating func skip(_ wireType: WireType, field: Int) throws(ProtoDecodingError) {
        switch wireType {
        case .varint: _ = try readVarint()
        case .fixed64: guard end - index >= 8 else { throw .truncated }; index += 8
        case .fixed32: guard end - index >= 4 else { throw .truncated }; index += 4
        case .lengthDelimited: let n = try readLength(); index += n
        case .endGroup: throw .unbalancedGroup
        case .startGroup:
            guard depth + 1 < maxDepth else { throw .nestingTooDeep }
            var sub = ProtoReader(bytes: bytes, start: index, end: end, depth: depth + 1, maxDepth: maxDepth)
            while true {
                guard let (f, wt) = try sub.nextTag() else { throw .truncated }
                if wt == .endGroup {
                    guard f == field else { throw .unbalancedGroup }
                    break
                }
                try sub.skip(wt, field: f)
            }
            index = sub.index
        }
    }

    // MARK: typed helpers that check the wire type

    @inlinable
    public mutating func readUInt64(_ wt: WireType, field: Int) throws(ProtoDecodingError) -> UInt64 {
        guard wt == .varint else { throw .wrongWireType(field: field, wireType: wt.rawValue) }
        return try readVarint()
    }

    @inlinable
    public mutating func readInt64(_ wt: WireType, field: Int) throws(ProtoDecodingError) -> Int64 {
        Int64(bitPattern: try readUInt64(wt, field: field))
    }

    @inlinable
    public mutating func readInt32(_ wt: WireType, field: Int) throws(ProtoDecodingError) -> Int32 {
        Int32(truncatingIfNeeded: try readUInt64(wt, field: field))
    }

    @inlinable
    public mutating func readUInt32(_ wt: WireType, field: Int) throws(ProtoDecodingError) -> UInt32 {
        UInt32(truncatingIfNeeded: try readUInt64(wt, field: field))
    }

    @inlinable
    public mutating func readBool(_ wt: WireType, field: Int) throws(ProtoDecodingError) -> Bool {
        try readUInt64(wt, field: field) != 0
    }

    @inlinable
    public mutating func readSInt64(_ wt: WireType, field: Int) throws(ProtoDecodingError) -> Int64 {
        let raw = try readUInt64(wt, field: field)
        return Int64(bitPattern: (raw >> 1) ^ (0 &- (raw & 1)))
    }

    @inlinable
    public mutating func readFixed64Field(_ wt: WireType, field: Int) throws(ProtoDecodingError) -> UInt64 {
        guard wt == .fixed64 else { throw .wrongWireType(field: field, wireType: wt.rawValue) }
        return try readFixed64()
    }

    @inlinable
    public mutating func readFixed32Field(_ wt: WireType, field: Int) throws(ProtoDecodingError) -> UInt32 {
        guard wt == .fixed32 else { throw .wrongWireType(field: field, wireType: wt.rawValue) }
        return try readFixed32()
    }

    @inlinable
    public mutating func readBytes(_ wt: WireType, field: Int) throws(ProtoDecodingError) -> [UInt8] {
        guard wt == .lengthDelimited else { throw .wrongWireType(field: field, wireType: wt.rawValue) }
        return try readBytes()
    }

    public mutating func readString(_ wt: WireType, field: Int) throws(ProtoDecodingError) -> String {
        guard wt == .lengthDelimited else { throw .wrongWireType(field: field, wireType: wt.rawValue) }
        return try readString(field: field)
    }

    @inlinable
    public mutating func readMessage<M: ProtoMessage>(_ wt: WireType, field: Int, as type: M.Type = M.self) throws(ProtoDecodingError) -> M {
        guard wt == .lengthDelimited else { throw .wrongWireType(field: field, wireType: wt.rawValue) }
        return try readMessage(M.self)
    }

    /// Decodes a nested message from a length-delimited field and returns its encoded bytes
    /// too (copied), for passing on unchanged: writing them as a bytes field encodes the same
    /// message.
    public mutating func readMessageKeepingBytes<M: ProtoMessage>(_ wt: WireType, field: Int, as type: M.Type = M.self)
        throws(ProtoDecodingError) -> (message: M, bytes: [UInt8]) {
        guard wt == .lengthDelimited else { throw .wrongWireType(field: field, wireType: wt.rawValue) }
        var sub = try readNested()
        let range = sub.index..<sub.end
        var m = M()
        try m.merge(from: &sub)
        return (m, Array(bytes[range]))
    }

    /// Appends a repeated varint field, accepting both packed and unpacked encodings.
    public mutating func readRepeatedVarint(_ wt: WireType, field: Int, into array: inout [UInt64]) throws(ProtoDecodingError) {
        switch wt {
        case .varint:
            array.append(try readVarint())
        case .lengthDelimited:
            let length = try readLength()
            let stop = index + length
            var sub = ProtoReader(bytes: bytes, start: index, end: stop, depth: depth, maxDepth: maxDepth)
            while !sub.isAtEnd { array.append(try sub.readVarint()) }
            index = stop
        default:
            throw .wrongWireType(field: field, wireType: wt.rawValue)
        }
    }

    /// Appends a repeated fixed64 field, accepting both packed and unpacked encodings.
    public mutating func readRepeatedFixed64(_ wt: WireType, field: Int, into array: inout [UInt64]) throws(ProtoDecodingError) {
        switch wt {
        case .fixed64:
            array.append(try readFixed64())
        case .lengthDelimited:
            let length = try readLength()
            guard length % 8 == 0 else { throw .lengthOutOfBounds }
            let stop = index + length
            while index < stop { array.append(try readFixed64()) }
        default:
            throw .wrongWireType(field: field, wireType: wt.rawValue)
        }
    }
}
