import XCTest
import ProtoWire

// MARK: test messages (ProtoWireTests depends on ProtoWire only)

/// One field of every scalar kind the codec supports.
struct Scalars: ProtoMessage, Equatable {
    var int64: Int64 = 0            // 1
    var uint64: UInt64 = 0          // 2
    var sint64: Int64 = 0           // 3
    var fixed64: UInt64 = 0         // 4
    var fixed32: UInt32 = 0         // 5
    var bool = false                // 6
    var string = ""                 // 7
    var bytes: [UInt8] = []         // 8
    var packed: [Int64] = []        // 9, packed repeated int64
    var fixedList: [UInt64] = []    // 10, repeated fixed64 (written unpacked)
    var int32: Int32 = 0            // 11
    var uint32: UInt32 = 0          // 12
    var strings: [String] = []      // 13

    mutating func decodeField(_ field: Int, _ wt: WireType, from r: inout ProtoReader) throws(ProtoDecodingError) {
        switch field {
        case 1: int64 = try r.readInt64(wt, field: field)
        case 2: uint64 = try r.readUInt64(wt, field: field)
        case 3: sint64 = try r.readSInt64(wt, field: field)
        case 4: fixed64 = try r.readFixed64Field(wt, field: field)
        case 5: fixed32 = try r.readFixed32Field(wt, field: field)
        case 6: bool = try r.readBool(wt, field: field)
        case 7: string = try r.readString(wt, field: field)
        case 8: bytes = try r.readBytes(wt, field: field)
        case 9:
            var raw: [UInt64] = []
            try r.readRepeatedVarint(wt, field: field, into: &raw)
            packed += raw.map { Int64(bitPattern: $0) }
        case 10: try r.readRepeatedFixed64(wt, field: field, into: &fixedList)
        case 11: int32 = try r.readInt32(wt, field: field)
        case 12: uint32 = try r.readUInt32(wt, field: field)
        case 13: strings.append(try r.readString(wt, field: field))
        default: try r.skip(wt, field: field)
        }
    }

    func traverse<V: ProtoVisitor>(_ v: inout V) {
        v.int64(1, int64)
        v.uint64(2, uint64)
        v.sint64(3, sint64)
        v.fixed64(4, fixed64)
        if fixed32 != 0 { v.fixed32Field(5, fixed32) }
        v.bool(6, bool)
        v.string(7, string)
        v.bytes(8, bytes)
        v.packedInt64(9, packed)
        for x in fixedList { v.fixed64Field(10, x) }
        v.int32(11, int32)
        v.uint32(12, uint32)
        v.repeatedStrings(13, strings)
    }
}

/// Counts `traverse` calls, to show that encoding visits every nested message a fixed number of
/// times (once to size it, once to write it) however deep it sits.
final class TraversalCounter: @unchecked Sendable {
    var count = 0
}

/// A recursive message: a tree of nodes.
struct Node: ProtoMessage, Equatable {
    var value: Int64 = 0            // 1
    var name = ""                   // 2
    var children: [Node] = []       // 3
    var counter: TraversalCounter?  // not serialized

    init() {}
    init(value: Int64, name: String = "", children: [Node] = []) {
        self.value = value
        self.name = name
        self.children = children
    }

    static func == (a: Node, b: Node) -> Bool {
        a.value == b.value && a.name == b.name && a.children == b.children
    }

    /// A chain: `depth` nested levels below the root.
    static func chain(depth: Int, counter: TraversalCounter? = nil) -> Node {
        var node = Node(value: Int64(depth), name: "leaf")
        node.counter = counter
        for level in stride(from: depth - 1, through: 0, by: -1) {
            var parent = Node(value: Int64(level), children: [node])
            parent.counter = counter
            node = parent
        }
        return node
    }

    mutating func decodeField(_ field: Int, _ wt: WireType, from r: inout ProtoReader) throws(ProtoDecodingError) {
        switch field {
        case 1: value = try r.readInt64(wt, field: field)
        case 2: name = try r.readString(wt, field: field)
        case 3: children.append(try r.readMessage(wt, field: field))
        default: try r.skip(wt, field: field)
        }
    }

    func traverse<V: ProtoVisitor>(_ v: inout V) {
        counter?.count += 1
        v.int64(1, value)
        v.string(2, name)
        v.messages(3, children)
    }
}

/// A message whose only field is a nested message, so that every strict prefix of its encoding
/// (other than the empty one) is truncated.
struct Envelope: ProtoMessage, Equatable {
    var inner: Scalars?

    mutating func decodeField(_ field: Int, _ wt: WireType, from r: inout ProtoReader) throws(ProtoDecodingError) {
        switch field {
        case 1: inner = try r.readMessage(wt, field: field)
        default: try r.skip(wt, field: field)
        }
    }

    func traverse<V: ProtoVisitor>(_ v: inout V) {
        v.message(1, inner)
    }
}

/// Always emits field 1 as a varint, even when zero (like a oneof member).
struct RawVarint: ProtoMessage, Equatable {
    var value: UInt64 = 0

    mutating func decodeField(_ field: Int, _ wt: WireType, from r: inout ProtoReader) throws(ProtoDecodingError) {
        switch field {
        case 1: value = try r.readUInt64(wt, field: field)
        default: try r.skip(wt, field: field)
        }
    }

    func traverse<V: ProtoVisitor>(_ v: inout V) {
        v.varintField(1, value)
    }
}

// MARK: helpers

func hex(_ s: String) -> [UInt8] {
    let digits = s.filter { !$0.isWhitespace }
    var out: [UInt8] = []
    var i = digits.startIndex
    while i < digits.endIndex {
        let j = digits.index(i, offsetBy: 2)
        out.append(UInt8(digits[i..<j], radix: 16)!)
        i = j
    }
    return out
}

func assertThrows<T>(
    _ expected: ProtoDecodingError, _ body: () throws(ProtoDecodingError) -> T,
    file: StaticString = #filePath, line: UInt = #line
) {
    do {
        let value = try body()
        XCTFail("expected \(expected), decoded \(value)", file: file, line: line)
    } catch {
        XCTAssertEqual(error, expected, file: file, line: line)
    }
}

func readVarint(_ bytes: [UInt8]) throws(ProtoDecodingError) -> UInt64 {
    var r = ProtoReader(bytes)
    let v = try r.readVarint()
    XCTAssertTrue(r.isAtEnd, "varint did not consume all of \(bytes)")
    return v
}

final class ProtoWireTests: XCTestCase {

    // MARK: varints

    /// A message framed after a prefix is the prefix and the same bytes, with room for a
    /// trailer, and the nested sizes still line up.
    func testEncodingAfterAPrefixIsThePrefixThenTheMessage() throws {
        let node = Node(value: 1, name: "root", children: [Node(value: 2, name: "a", children: [Node(value: 3, name: "a1")]),
                                                             Node(value: -4, name: "b")])
        let framed = node.protoBytes(after: [0x4c, 0x54, 1], reserving: 8)
        XCTAssertEqual(framed, [0x4c, 0x54, 1] + node.protoBytes())
        XCTAssertGreaterThanOrEqual(framed.capacity, framed.count + 8)
        XCTAssertEqual(try Node(protoBytes: Array(framed.dropFirst(3))), node)
    }

    func testVarintBoundaryValues() throws {
        let cases: [(UInt64, String)] = [
            (0, "00"),
            (1, "01"),
            (127, "7f"),
            (128, "8001"),
            (300, "ac02"),
            (16_383, "ff7f"),
            (16_384, "808001"),
            (UInt64(UInt32.max), "ffffffff0f"),
            (1 << 63, "80808080808080808001"),
            (UInt64.max, "ffffffffffffffffff01"),
        ]
        for (value, encoding) in cases {
            let expected = hex(encoding)
            XCTAssertEqual(varintSize(value), expected.count, "varintSize(\(value))")
            XCTAssertEqual(try readVarint(expected), value)
            // Through a message: tag 0x08 (field 1, varint), then the varint.
            let m = RawVarint(value: value)
            XCTAssertEqual(m.protoBytes(), [0x08] + expected, "encoding of \(value)")
            XCTAssertEqual(m.protoSize, 1 + expected.count)
            XCTAssertEqual(try RawVarint(protoBytes: m.protoBytes()), m)
        }
    }

    func testNegativeIntegersTakeTenBytes() throws {
        var m = Scalars()
        m.int64 = -1
        XCTAssertEqual(m.protoBytes(), hex("08 ffffffffffffffffff01"))
        XCTAssertEqual(try Scalars(protoBytes: m.protoBytes()).int64, -1)

        m.int64 = Int64.min
        XCTAssertEqual(m.protoBytes(), hex("08 80808080808080808001"))
        XCTAssertEqual(try Scalars(protoBytes: m.protoBytes()).int64, Int64.min)

        // int32 (and enums) are sign-extended to 64 bits on the wire, as Go and C++ do.
        m = Scalars()
        m.int32 = -2
        XCTAssertEqual(m.protoBytes(), hex("58 feffffffffffffffff01"))
        XCTAssertEqual(try Scalars(protoBytes: m.protoBytes()).int32, -2)

        m = Scalars()
        m.int32 = Int32.max
        m.uint32 = UInt32.max
        let decoded = try Scalars(protoBytes: m.protoBytes())
        XCTAssertEqual(decoded.int32, Int32.max)
        XCTAssertEqual(decoded.uint32, UInt32.max)
    }

    func testZigZagSInt64() throws {
        let cases: [(Int64, UInt64)] = [
            (0, 0), (-1, 1), (1, 2), (-2, 3), (2, 4),
            (Int64(Int32.max), 4_294_967_294), (Int64(Int32.min), 4_294_967_295),
            (Int64.max, UInt64.max - 1), (Int64.min, UInt64.max),
        ]
        for (value, zigzag) in cases {
            var m = Scalars()
            m.sint64 = value
            let bytes = m.protoBytes()
            if value == 0 {
                XCTAssertEqual(bytes, [], "proto3 omits a zero sint64")
                continue
            }
            XCTAssertEqual(bytes, [0x18] + RawVarint(value: zigzag).protoBytes().dropFirst(), "sint64 \(value)")
            XCTAssertEqual(try Scalars(protoBytes: bytes).sint64, value)
        }
    }

    func testFixed32AndFixed64AreLittleEndian() throws {
        var m = Scalars()
        m.fixed64 = 0x0102_0304_0506_0708
        m.fixed32 = 0xA1B2_C3D4
        XCTAssertEqual(m.protoBytes(), hex("21 0807060504030201  2d d4c3b2a1"))
        XCTAssertEqual(try Scalars(protoBytes: m.protoBytes()), m)

        m.fixed64 = UInt64.max
        m.fixed32 = UInt32.max
        XCTAssertEqual(m.protoBytes(), hex("21 ffffffffffffffff  2d ffffffff"))
        XCTAssertEqual(try Scalars(protoBytes: m.protoBytes()), m)

        var r = ProtoReader(hex("0100000002000000 ff"))
        XCTAssertEqual(try r.readFixed32(), 1)
        XCTAssertEqual(try r.readFixed32(), 2)
        assertThrows(.truncated) { () throws(ProtoDecodingError) in try r.readFixed32() }
        var r64 = ProtoReader(hex("01020304050607"))
        assertThrows(.truncated) { () throws(ProtoDecodingError) in try r64.readFixed64() }
    }

    func testEveryScalarRoundTrips() throws {
        var m = Scalars()
        m.int64 = -123_456_789_012
        m.uint64 = 9_876_543_210
        m.sint64 = -42
        m.fixed64 = 77
        m.fixed32 = 88
        m.bool = true
        m.string = "héllo, wörld ✓"
        m.bytes = [0, 1, 2, 0xff]
        m.packed = [0, 1, -1, Int64.max, Int64.min]
        m.fixedList = [1, UInt64.max]
        m.int32 = -7
        m.uint32 = 7
        m.strings = ["a", "", "c"]
        let bytes = m.protoBytes()
        XCTAssertEqual(bytes.count, m.protoSize)
        XCTAssertEqual(try Scalars(protoBytes: bytes), m)
        XCTAssertEqual(Scalars().protoBytes(), [], "proto3 defaults are all omitted")
        XCTAssertEqual(try Scalars(protoBytes: []), Scalars())
    }

    // MARK: repeated fields

    func testPackedRepeatedEncoding() throws {
        var m = Scalars()
        m.packed = [1, 150, -1]
        // field 9, wire type 2; payload 01 | 96 01 | ff..ff 01 = 1 + 2 + 10 bytes.
        XCTAssertEqual(m.protoBytes(), hex("4a 0d 01 9601 ffffffffffffffffff01"))
        XCTAssertEqual(try Scalars(protoBytes: m.protoBytes()).packed, [1, 150, -1])
        m.packed = []
        XCTAssertEqual(m.protoBytes(), [], "an empty packed field is omitted")
    }

    func testRepeatedVarintAcceptsPackedUnpackedAndMixed() throws {
        // Unpacked: one tag per element.
        XCTAssertEqual(try Scalars(protoBytes: hex("48 01  48 02  48 03")).packed, [1, 2, 3])
        // Packed, then unpacked, then packed again: all appended in order.
        XCTAssertEqual(try Scalars(protoBytes: hex("4a 02 0102  48 03  4a 01 04")).packed, [1, 2, 3, 4])
        // An empty packed run adds nothing.
        XCTAssertEqual(try Scalars(protoBytes: hex("4a 00")).packed, [])
        // A varint cut off inside the packed run.
        assertThrows(.truncated) { () throws(ProtoDecodingError) in try Scalars(protoBytes: hex("4a 02 01 80")) }
        // Wrong wire type for a repeated varint.
        assertThrows(.wrongWireType(field: 9, wireType: 5)) { () throws(ProtoDecodingError) in
            try Scalars(protoBytes: hex("4d 01000000"))
        }
    }

    func testRepeatedFixed64AcceptsPackedAndUnpacked() throws {
        var m = Scalars()
        m.fixedList = [1, 2]
        XCTAssertEqual(m.protoBytes(), hex("51 0100000000000000  51 0200000000000000"))
        XCTAssertEqual(try Scalars(protoBytes: m.protoBytes()).fixedList, [1, 2])
        let packed = hex("52 10 0100000000000000 0200000000000000  51 0300000000000000")
        XCTAssertEqual(try Scalars(protoBytes: packed).fixedList, [1, 2, 3])
        assertThrows(.lengthOutOfBounds) { () throws(ProtoDecodingError) in
            try Scalars(protoBytes: hex("52 07 01000000000000"))
        }
    }

    func testRepeatedStringsKeepEmptyElements() throws {
        var m = Scalars()
        m.strings = ["", "x", ""]
        XCTAssertEqual(m.protoBytes(), hex("6a00 6a0178 6a00"))
        XCTAssertEqual(try Scalars(protoBytes: m.protoBytes()).strings, ["", "x", ""])
    }

    // MARK: nested messages

    func testNestedMessagesEncodeAndDecode() throws {
        let tree = Node(value: 1, name: "a", children: [
            Node(value: 2, children: [Node(value: 3)]),
            Node(),
        ])
        // 08 01 | 12 01 61 | 1a 06 (08 02 1a 02 (08 03)) | 1a 00
        XCTAssertEqual(tree.protoBytes(), hex("0801 120161 1a06 0802 1a02 0803 1a00"))
        XCTAssertEqual(tree.protoSize, tree.protoBytes().count)
        XCTAssertEqual(try Node(protoBytes: tree.protoBytes()), tree)
    }

    func testMergeMessageMergesIntoAnExistingValue() throws {
        // Two length-delimited occurrences merged into one value, as protobuf does for a repeated
        // occurrence of a singular message field.
        var r = ProtoReader(hex("0a02 0801  0a04 1001 0802"))
        var merged = Scalars()
        while let (field, wt) = try r.nextTag() {
            XCTAssertEqual(field, 1)
            XCTAssertEqual(wt, .lengthDelimited)
            try r.mergeMessage(into: &merged)
        }
        XCTAssertEqual(merged.int64, 2, "a later scalar wins")
        XCTAssertEqual(merged.uint64, 1, "an earlier field not repeated later is kept")
    }

    func testDeepChainRoundTripsAndSizesEachNestedMessageOnce() throws {
        for depth in [1, 2, 10, 30, 62] {
            let counter = TraversalCounter()
            let chain = Node.chain(depth: depth, counter: counter)
            let bytes = chain.protoBytes()
            // One sizing pass and one writing pass over each of the depth + 1 messages: linear,
            // where encoding each nested message to learn its length would be quadratic.
            XCTAssertEqual(counter.count, 2 * (depth + 1), "traversals at depth \(depth)")
            counter.count = 0
            XCTAssertEqual(chain.protoSize, bytes.count)
            XCTAssertEqual(counter.count, depth + 1)
            XCTAssertEqual(try Node(protoBytes: bytes), chain, "depth \(depth)")
        }
    }

    // MARK: unknown fields

    func testSkipsUnknownFieldsOfEveryWireType() throws {
        let bytes = hex("""
            08 05
            f003 96 01
            f903 0102030405060708
            fa03 03 616263
            fd03 01020304
            83 04
              d004 01
              db04  e004 02  dc04
              e2 04 00
              85 05 aabbccdd
              89 05 aabbccddeeff0011
            84 04
            12 01 78
            a03f 7f
            """)
        // 08 05: field 1 = 5. Unknown: 62 varint, 63 fixed64, 63 len, 63 fixed32, group 64 holding
        // a varint, a nested group 75, a len, a fixed32 and a fixed64; then known field 2 = "x";
        // then unknown field 1012 varint.
        let n = try Node(protoBytes: bytes)
        XCTAssertEqual(n, Node(value: 5, name: "x"))
    }

    func testUnknownGroupErrors() throws {
        // A start group with no end.
        assertThrows(.truncated) { () throws(ProtoDecodingError) in try Node(protoBytes: hex("83 04 d004 01")) }
        // An end group for another field.
        assertThrows(.unbalancedGroup) { () throws(ProtoDecodingError) in try Node(protoBytes: hex("83 04 8c 04")) }
        // A stray end group.
        assertThrows(.unbalancedGroup) { () throws(ProtoDecodingError) in try Node(protoBytes: hex("84 04")) }
        // Groups nested past the bound.
        var deep: [UInt8] = []
        for _ in 0..<100 { deep += hex("83 04") }
        for _ in 0..<100 { deep += hex("84 04") }
        assertThrows(.nestingTooDeep) { () throws(ProtoDecodingError) in try Node(protoBytes: deep) }
        // ...which a higher bound accepts.
        XCTAssertEqual(try Node(protoBytes: deep, maxDepth: 200), Node())
    }

    // MARK: malformed input

    func testTruncationAtEveryOffsetThrows() throws {
        var inner = Scalars()
        inner.int64 = -5
        inner.uint64 = UInt64.max
        inner.sint64 = -300
        inner.fixed64 = 1
        inner.fixed32 = 2
        inner.bool = true
        inner.string = "string"
        inner.bytes = [9, 9, 9]
        inner.packed = [1, 1000, -1]
        inner.fixedList = [3]
        inner.int32 = -1
        inner.uint32 = 40_000
        inner.strings = ["s"]
        var envelope = Envelope()
        envelope.inner = inner
        let bytes = envelope.protoBytes()
        XCTAssertEqual(try Envelope(protoBytes: bytes), envelope)
        // Every strict, non-empty prefix cuts the one top-level field short.
        for cut in 1..<bytes.count {
            XCTAssertThrowsError(try Envelope(protoBytes: Array(bytes[..<cut])), "prefix of \(cut) bytes")
        }
        // Without the envelope, a prefix is either a valid message (cut between fields) or an error;
        // it never traps and never reads past the cut.
        let flat = inner.protoBytes()
        var valid = 0
        for cut in 0..<flat.count {
            if (try? Scalars(protoBytes: Array(flat[..<cut]))) != nil { valid += 1 }
        }
        XCTAssertGreaterThan(valid, 1)
        XCTAssertLessThan(valid, flat.count)
    }

    func testOverlongVarints() throws {
        // 10 continuation bytes: an 11th byte would be needed.
        assertThrows(.malformedVarint) { () throws(ProtoDecodingError) in
            try readVarint(hex("80808080808080808080 01"))
        }
        assertThrows(.malformedVarint) { () throws(ProtoDecodingError) in
            try readVarint(hex("ffffffffffffffffffff 01"))
        }
        // 10th byte carrying more than the top bit of a UInt64.
        assertThrows(.malformedVarint) { () throws(ProtoDecodingError) in try readVarint(hex("ffffffffffffffffff02")) }
        assertThrows(.malformedVarint) { () throws(ProtoDecodingError) in try readVarint(hex("ffffffffffffffffff7f")) }
        // The largest legal 10-byte varint, and a non-minimal but legal encoding of 0.
        XCTAssertEqual(try readVarint(hex("ffffffffffffffffff01")), UInt64.max)
        XCTAssertEqual(try readVarint(hex("80808080808080808000")), 0)
        // Cut off.
        assertThrows(.truncated) { () throws(ProtoDecodingError) in try readVarint(hex("8080")) }
        assertThrows(.truncated) { () throws(ProtoDecodingError) in try readVarint([]) }
        // In a field value and in a tag.
        assertThrows(.malformedVarint) { () throws(ProtoDecodingError) in
            try Scalars(protoBytes: hex("08 ffffffffffffffffff02"))
        }
        assertThrows(.malformedVarint) { () throws(ProtoDecodingError) in
            try Scalars(protoBytes: hex("ffffffffffffffffff02 00"))
        }
    }

    func testLengthsPastTheEnd() throws {
        assertThrows(.lengthOutOfBounds) { () throws(ProtoDecodingError) in try Scalars(protoBytes: hex("3a 05 6162")) }
        // A length larger than any Int: negative to Go, and etcd says so.
        assertThrows(.negativeLength) { () throws(ProtoDecodingError) in
            try Scalars(protoBytes: hex("42 ffffffffffffffffff01 00"))
        }
        XCTAssertEqual(ProtoDecodingError.negativeLength.goText(messageName: "RangeRequest"),
                       "proto: negative length found during unmarshaling")
        XCTAssertEqual(ProtoDecodingError.invalidTag(0x02).goText(messageName: "RangeRequest"),
                       "proto: RangeRequest: illegal tag 0 (wire type 2)")
        XCTAssertEqual(ProtoDecodingError.truncated.goText(messageName: "RangeRequest"), "unexpected EOF")
        // A nested message's length reaching past its parent's end.
        assertThrows(.lengthOutOfBounds) { () throws(ProtoDecodingError) in
            try Node(protoBytes: hex("1a 04 1a 05 0801 0801"))
        }
        // Unknown length-delimited field past the end.
        assertThrows(.lengthOutOfBounds) { () throws(ProtoDecodingError) in try Node(protoBytes: hex("fa03 10 00")) }
        // A length with no bytes after it at all.
        assertThrows(.truncated) { () throws(ProtoDecodingError) in try Scalars(protoBytes: hex("42 01")) }
    }

    func testInvalidWireTypesAndFieldNumbers() throws {
        // Wire types 6 and 7.
        assertThrows(.invalidTag(0x0e)) { () throws(ProtoDecodingError) in try Scalars(protoBytes: hex("0e 00")) }
        assertThrows(.invalidTag(0x0f)) { () throws(ProtoDecodingError) in try Scalars(protoBytes: hex("0f 00")) }
        assertThrows(.invalidTag(0x3e)) { () throws(ProtoDecodingError) in try Scalars(protoBytes: hex("08 01 3e")) }
        // Field number 0, with each wire type.
        for wt: UInt64 in [0, 1, 2, 5] {
            assertThrows(.invalidTag(wt)) { () throws(ProtoDecodingError) in
                try Scalars(protoBytes: [UInt8(wt), 0, 0, 0, 0, 0, 0, 0, 0])
            }
        }
        // Field number above 2^29 - 1.
        let tooBig: UInt64 = (1 << 29) << 3
        var m = RawVarint()
        m.value = tooBig
        let tag = Array(m.protoBytes().dropFirst())  // the varint encoding of tooBig
        assertThrows(.invalidTag(tooBig)) { () throws(ProtoDecodingError) in try Scalars(protoBytes: tag + [0]) }
        // The largest field number is fine (skipped as unknown).
        let maxTag: UInt64 = ((1 << 29) - 1) << 3
        m.value = maxTag
        XCTAssertEqual(try Scalars(protoBytes: Array(m.protoBytes().dropFirst()) + [0]), Scalars())
    }

    func testWrongWireTypeForKnownField() throws {
        // int64 field 1 as fixed32.
        assertThrows(.wrongWireType(field: 1, wireType: 5)) { () throws(ProtoDecodingError) in
            try Scalars(protoBytes: hex("0d 01000000"))
        }
        // string field 7 as varint.
        assertThrows(.wrongWireType(field: 7, wireType: 0)) { () throws(ProtoDecodingError) in
            try Scalars(protoBytes: hex("38 01"))
        }
        // fixed64 field 4 as varint; fixed32 field 5 as fixed64.
        assertThrows(.wrongWireType(field: 4, wireType: 0)) { () throws(ProtoDecodingError) in
            try Scalars(protoBytes: hex("20 01"))
        }
        assertThrows(.wrongWireType(field: 5, wireType: 1)) { () throws(ProtoDecodingError) in
            try Scalars(protoBytes: hex("29 0100000000000000"))
        }
        // Message field 3 as a start group.
        assertThrows(.wrongWireType(field: 3, wireType: 3)) { () throws(ProtoDecodingError) in
            try Node(protoBytes: hex("1b 1c"))
        }
        // bool field 6 as length-delimited.
        assertThrows(.wrongWireType(field: 6, wireType: 2)) { () throws(ProtoDecodingError) in
            try Scalars(protoBytes: hex("32 01 01"))
        }
    }

    func testInvalidUTF8InStringField() throws {
        assertThrows(.invalidUTF8(field: 7)) { () throws(ProtoDecodingError) in try Scalars(protoBytes: hex("3a 02 c328")) }
        assertThrows(.invalidUTF8(field: 2)) { () throws(ProtoDecodingError) in try Node(protoBytes: hex("12 01 ff")) }
        // The same bytes are fine in a bytes field.
        XCTAssertEqual(try Scalars(protoBytes: hex("42 02 c328")).bytes, [0xc3, 0x28])
    }

    func testNestingDeeperThanTheBound() throws {
        let maxDepth = ProtoReader.defaultMaxDepth
        // The root is at depth 0; nested messages are allowed up to depth maxDepth - 1.
        let deepest = Node.chain(depth: maxDepth - 1)
        XCTAssertEqual(try Node(protoBytes: deepest.protoBytes()), deepest)
        assertThrows(.nestingTooDeep) { () throws(ProtoDecodingError) in
            try Node(protoBytes: Node.chain(depth: maxDepth).protoBytes())
        }
        assertThrows(.nestingTooDeep) { () throws(ProtoDecodingError) in
            try Node(protoBytes: Node.chain(depth: 100).protoBytes())
        }
        // A custom bound.
        let chain = Node.chain(depth: 5)
        XCTAssertEqual(try Node(protoBytes: chain.protoBytes(), maxDepth: 6), chain)
        assertThrows(.nestingTooDeep) { () throws(ProtoDecodingError) in
            try Node(protoBytes: chain.protoBytes(), maxDepth: 5)
        }
    }

    func testHostileNestingIsBoundedWithoutRecursingPerByte() throws {
        // 100 000 bytes of "1a 7f": each claims a nested message; decoding must stop at the bound.
        var bytes: [UInt8] = []
        for _ in 0..<50_000 { bytes += [0x1a, 0x7f] }
        XCTAssertThrowsError(try Node(protoBytes: bytes))
        // Length prefixes that really nest, 2 000 deep.
        var nested: [UInt8] = []
        for _ in 0..<2_000 {
            var len: [UInt8] = []
            var n = UInt64(nested.count)
            while n >= 0x80 { len.append(UInt8(n & 0x7f) | 0x80); n >>= 7 }
            len.append(UInt8(n))
            nested = [0x1a] + len + nested
        }
        assertThrows(.nestingTooDeep) { () throws(ProtoDecodingError) in try Node(protoBytes: nested) }
    }
}
