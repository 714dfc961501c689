/// A JSON document as the merge sees it (docs/consistency.md, "Conflicts").
///
/// What it is for: merging concurrent versions of one key field by field, and writing the
/// merged document back out so that every node produces *identical bytes*. So:
/// - numbers are kept as their literal text (`1.0`, `1e3`, `-0` stay exactly that), never
///   converted to a binary floating point value and back; they *compare* by exact decimal value
///   (`1`, `1.0`, `1e0` and `10e-1` are equal, as are `0` and `-0`), so writing a number in
///   another form is not a conflict;
/// - strings are kept as their unescaped UTF-8 bytes and compared byte by byte (not with Swift's
///   `String` equality, which treats canonically equivalent Unicode as equal);
/// - objects are unordered (`==` ignores member order); serialisation sorts member names by
///   their UTF-8 bytes.
///
/// What it is not: a general-purpose JSON library. The parser is strict RFC 8259 (no comments,
/// no trailing commas, no lone surrogates, valid UTF-8 only) and rejects objects with a duplicate
/// member name; nesting is bounded. A value that fails to parse is simply not mergeable and the
/// merge falls back to last-writer-wins, so strictness never loses data.
public enum JSONValue: Hashable, Sendable {
    case null
    case bool(Bool)
    /// A number as its literal text, validated against the JSON number grammar.
    case number(literal: [UInt8])
    /// A string as UTF-8 bytes, escapes resolved.
    case string([UInt8])
    case array([JSONValue])
    /// Members by name (UTF-8 bytes); names are unique.
    case object([[UInt8]: JSONValue])

    public static func == (a: JSONValue, b: JSONValue) -> Bool {
        switch (a, b) {
        case (.null, .null): return true
        case (.bool(let x), .bool(let y)): return x == y
        case (.number(let x), .number(let y)): return x == y || JSONNumber(literal: x) == JSONNumber(literal: y)
        case (.string(let x), .string(let y)): return x == y
        case (.array(let x), .array(let y)): return x == y
        case (.object(let x), .object(let y)): return x == y
        default: return false
        }
    }

    public func hash(into h: inout Hasher) {
        switch self {
        case .null: h.combine(0)
        case .bool(let b): h.combine(1); h.combine(b)
        case .number(let literal): h.combine(2); h.combine(JSONNumber(literal: literal))
        case .string(let s): h.combine(3); h.combine(s)
        case .array(let a): h.combine(4); h.combine(a)
        case .object(let o): h.combine(5); h.combine(o)
        }
    }

    /// Parsing nests at most this deep; deeper documents are rejected (and so merged LWW), which
    /// bounds the recursion of the parser, the merge and the serialiser.
    public static let defaultMaxDepth = 256

    /// Parses a complete JSON text (surrounding whitespace allowed).
    public init(parsing bytes: [UInt8], maxDepth: Int = JSONValue.defaultMaxDepth) throws(JSONParseError) {
        var parser = JSONParser(bytes: bytes, maxDepth: maxDepth)
        self = try parser.parseDocument()
    }

    /// The members of `bytes` if it is a valid JSON text whose top-level value is an object, else
    /// `nil`. Only such values are merged field by field; everything else is merged LWW.
    /// A stream of JSON values separated by whitespace (`{"a":1} {"b":2}`); empty input is none.
    public static func parseSequence(_ bytes: [UInt8], maxDepth: Int = JSONValue.defaultMaxDepth) throws(JSONParseError) -> [JSONValue] {
        var parser = JSONParser(bytes: bytes, maxDepth: maxDepth)
        return try parser.parseSequence()
    }

    public static func parseObject(_ bytes: [UInt8]) -> [[UInt8]: JSONValue]? {
        // Cheap rejection before any work: an object starts with `{` after optional whitespace.
        // Kubernetes protobuf (`k8s\0…`) and most binary values stop here.
        var i = 0
        while i < bytes.count, JSONParser.isWhitespace(bytes[i]) { i += 1 }
        guard i < bytes.count, bytes[i] == UInt8(ascii: "{") else { return nil }
        guard case .object(let members)? = try? JSONValue(parsing: bytes) else { return nil }
        return members
    }

    /// The canonical serialisation: no whitespace, object members sorted by name bytes, numbers
    /// as their literal text, strings with the minimal escapes (`"`, `\`, control characters).
    /// Equal values (`==`) serialise to identical bytes except for how their numbers are written
    /// (`1` and `1.0` are equal); the merge picks among equal values deterministically.
    public func canonicalBytes() -> [UInt8] {
        var out: [UInt8] = []
        serialize(into: &out)
        return out
    }

    /// Appends the canonical serialisation to `out`.
    public func serialize(into out: inout [UInt8]) {
        switch self {
        case .null: out.append(contentsOf: JSONValue.nullBytes)
        case .bool(let b): out.append(contentsOf: b ? JSONValue.trueBytes : JSONValue.falseBytes)
        case .number(let literal): out.append(contentsOf: literal)
        case .string(let s): JSONValue.serializeString(s, into: &out)
        case .array(let elements):
            out.append(UInt8(ascii: "["))
            for (i, e) in elements.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                e.serialize(into: &out)
            }
            out.append(UInt8(ascii: "]"))
        case .object(let members):
            out.append(UInt8(ascii: "{"))
            for (i, name) in members.keys.sorted(by: { $0.lexicographicallyPrecedes($1) }).enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                JSONValue.serializeString(name, into: &out)
                out.append(UInt8(ascii: ":"))
                members[name]!.serialize(into: &out)
            }
            out.append(UInt8(ascii: "}"))
        }
    }

    private static let nullBytes = Array("null".utf8)
    private static let trueBytes = Array("true".utf8)
    private static let falseBytes = Array("false".utf8)
    private static let hexDigits = Array("0123456789abcdef".utf8)

    private static func serializeString(_ s: [UInt8], into out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        for byte in s {
            switch byte {
            case UInt8(ascii: "\""): out.append(UInt8(ascii: "\\")); out.append(UInt8(ascii: "\""))
            case UInt8(ascii: "\\"): out.append(UInt8(ascii: "\\")); out.append(UInt8(ascii: "\\"))
            case 0x08: out.append(UInt8(ascii: "\\")); out.append(UInt8(ascii: "b"))
            case 0x0C: out.append(UInt8(ascii: "\\")); out.append(UInt8(ascii: "f"))
            case 0x0A: out.append(UInt8(ascii: "\\")); out.append(UInt8(ascii: "n"))
            case 0x0D: out.append(UInt8(ascii: "\\")); out.append(UInt8(ascii: "r"))
            case 0x09: out.append(UInt8(ascii: "\\")); out.append(UInt8(ascii: "t"))
            case 0..<0x20:
                out.append(contentsOf: Array("\\u00".utf8))
                out.append(hexDigits[Int(byte >> 4)])
                out.append(hexDigits[Int(byte & 0xF)])
            default: out.append(byte)
            }
        }
        out.append(UInt8(ascii: "\""))
    }
}

extension JSONValue {
    /// Convenience for tests and callers that hold text.
    public init(parsing text: String) throws(JSONParseError) {
        try self.init(parsing: Array(text.utf8))
    }

    /// The canonical serialisation as a `String` (it is always valid UTF-8).
    public var canonicalText: String { String(decoding: canonicalBytes(), as: UTF8.self) }
}

/// The exact decimal value of a JSON number literal, for comparison: sign, significant digits
/// (no leading or trailing zeros) and the power of ten of the last one. Zero is unsigned.
/// A literal whose exponent exceeds 2⁴⁰ compares by its text.
struct JSONNumber: Hashable {
    var negative = false
    var digits: [UInt8] = []
    var exponent = 0
    /// Set (to the literal) when the exponent saturated: such numbers compare by their text.
    var saturatedLiteral: [UInt8]?

    init(literal: [UInt8]) {
        var i = 0
        if i < literal.count, literal[i] == UInt8(ascii: "-") { negative = true; i += 1 }
        var fraction = 0
        var inFraction = false
        while i < literal.count {
            let c = literal[i]
            if c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9") {
                if !(digits.isEmpty && c == UInt8(ascii: "0")) { digits.append(c) }
                if inFraction { fraction += 1 }
            } else if c == UInt8(ascii: ".") {
                inFraction = true
            } else {
                break
            }
            i += 1
        }
        var exp = 0
        if i < literal.count, literal[i] == UInt8(ascii: "e") || literal[i] == UInt8(ascii: "E") {
            i += 1
            var expNegative = false
            if i < literal.count, literal[i] == UInt8(ascii: "-") || literal[i] == UInt8(ascii: "+") {
                expNegative = literal[i] == UInt8(ascii: "-")
                i += 1
            }
            while i < literal.count, literal[i] >= UInt8(ascii: "0"), literal[i] <= UInt8(ascii: "9") {
                exp = exp * 10 + Int(literal[i] - UInt8(ascii: "0"))
                if exp > 1 << 40 {
                    exp = 1 << 40
                    saturatedLiteral = literal
                }
                i += 1
            }
            if expNegative { exp = -exp }
        }
        // Leading zeros of the fraction were skipped but still count as fraction positions.
        exponent = exp - fraction
        while let last = digits.last, last == UInt8(ascii: "0") { digits.removeLast(); exponent += 1 }
        if digits.isEmpty { negative = false; exponent = 0 }
    }
}

/// Why a text is not (acceptable) JSON. `offset` is the byte offset where parsing stopped.
public enum JSONParseError: Error, Equatable, Sendable {
    case unexpectedEnd
    case unexpectedByte(offset: Int)
    case invalidNumber(offset: Int)
    case invalidString(offset: Int)
    case duplicateMemberName(offset: Int)
    case trailingBytes(offset: Int)
    case nestingTooDeep(offset: Int)
}

/// A strict recursive-descent parser over bytes. Recursion depth is bounded by `maxDepth`.
struct JSONParser {
    let bytes: [UInt8]
    let maxDepth: Int
    var index = 0

    init(bytes: [UInt8], maxDepth: Int) {
        self.bytes = bytes
        self.maxDepth = maxDepth
    }

    static func isWhitespace(_ b: UInt8) -> Bool { b == 0x20 || b == 0x0A || b == 0x0D || b == 0x09 }

    /// Values one after another, separated by whitespace (a stream of JSON messages).
    mutating func parseSequence() throws(JSONParseError) -> [JSONValue] {
        var values: [JSONValue] = []
        skipWhitespace()
        while index < bytes.count {
            values.append(try parseValue(depth: 0))
            skipWhitespace()
        }
        return values
    }

    mutating func parseDocument() throws(JSONParseError) -> JSONValue {
        skipWhitespace()
        let value = try parseValue(depth: 0)
        skipWhitespace()
        if index != bytes.count { throw .trailingBytes(offset: index) }
        return value
    }

    private mutating func skipWhitespace() {
        while index < bytes.count, JSONParser.isWhitespace(bytes[index]) { index += 1 }
    }

    private func peek() throws(JSONParseError) -> UInt8 {
        guard index < bytes.count else { throw .unexpectedEnd }
        return bytes[index]
    }

    private mutating func parseValue(depth: Int) throws(JSONParseError) -> JSONValue {
        let b = try peek()
        switch b {
        case UInt8(ascii: "{"): return try parseObject(depth: depth + 1)
        case UInt8(ascii: "["): return try parseArray(depth: depth + 1)
        case UInt8(ascii: "\""): return .string(try parseString())
        case UInt8(ascii: "t"): try expectLiteral("true"); return .bool(true)
        case UInt8(ascii: "f"): try expectLiteral("false"); return .bool(false)
        case UInt8(ascii: "n"): try expectLiteral("null"); return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return .number(literal: try parseNumber())
        default: throw .unexpectedByte(offset: index)
        }
    }

    private mutating func expectLiteral(_ word: StaticString) throws(JSONParseError) {
        let start = index
        var i = 0
        let n = word.utf8CodeUnitCount
        while i < n {
            guard index < bytes.count else { throw .unexpectedEnd }
            if bytes[index] != word.utf8Start[i] { throw .unexpectedByte(offset: start) }
            index += 1
            i += 1
        }
    }

    private mutating func parseObject(depth: Int) throws(JSONParseError) -> JSONValue {
        if depth > maxDepth { throw .nestingTooDeep(offset: index) }
        index += 1 // {
        var members: [[UInt8]: JSONValue] = [:]
        skipWhitespace()
        if try peek() == UInt8(ascii: "}") { index += 1; return .object(members) }
        while true {
            skipWhitespace()
            guard try peek() == UInt8(ascii: "\"") else { throw .unexpectedByte(offset: index) }
            let nameOffset = index
            let name = try parseString()
            skipWhitespace()
            guard try peek() == UInt8(ascii: ":") else { throw .unexpectedByte(offset: index) }
            index += 1
            skipWhitespace()
            let value = try parseValue(depth: depth)
            if members.updateValue(value, forKey: name) != nil { throw .duplicateMemberName(offset: nameOffset) }
            skipWhitespace()
            let b = try peek()
            index += 1
            if b == UInt8(ascii: "}") { return .object(members) }
            if b != UInt8(ascii: ",") { throw .unexpectedByte(offset: index - 1) }
        }
    }

    private mutating func parseArray(depth: Int) throws(JSONParseError) -> JSONValue {
        if depth > maxDepth { throw .nestingTooDeep(offset: index) }
        index += 1 // [
        var elements: [JSONValue] = []
        skipWhitespace()
        if try peek() == UInt8(ascii: "]") { index += 1; return .array(elements) }
        while true {
            skipWhitespace()
            elements.append(try parseValue(depth: depth))
            skipWhitespace()
            let b = try peek()
            index += 1
            if b == UInt8(ascii: "]") { return .array(elements) }
            if b != UInt8(ascii: ",") { throw .unexpectedByte(offset: index - 1) }
        }
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`, returned verbatim.
    private mutating func parseNumber() throws(JSONParseError) -> [UInt8] {
        let start = index
        func isDigit(_ b: UInt8) -> Bool { b >= UInt8(ascii: "0") && b <= UInt8(ascii: "9") }
        if index < bytes.count, bytes[index] == UInt8(ascii: "-") { index += 1 }
        guard index < bytes.count else { throw .unexpectedEnd }
        if bytes[index] == UInt8(ascii: "0") {
            index += 1
        } else if isDigit(bytes[index]) {
            while index < bytes.count, isDigit(bytes[index]) { index += 1 }
        } else {
            throw .invalidNumber(offset: start)
        }
        if index < bytes.count, bytes[index] == UInt8(ascii: ".") {
            index += 1
            guard index < bytes.count, isDigit(bytes[index]) else { throw .invalidNumber(offset: start) }
            while index < bytes.count, isDigit(bytes[index]) { index += 1 }
        }
        if index < bytes.count, bytes[index] == UInt8(ascii: "e") || bytes[index] == UInt8(ascii: "E") {
            index += 1
            if index < bytes.count, bytes[index] == UInt8(ascii: "+") || bytes[index] == UInt8(ascii: "-") { index += 1 }
            guard index < bytes.count, isDigit(bytes[index]) else { throw .invalidNumber(offset: start) }
            while index < bytes.count, isDigit(bytes[index]) { index += 1 }
        }
        return Array(bytes[start..<index])
    }

    /// A string starting at the opening quote; returns its UTF-8 content with escapes resolved.
    /// Raw bytes must be valid UTF-8 and not control characters.
    private mutating func parseString() throws(JSONParseError) -> [UInt8] {
        let start = index
        index += 1 // "
        var out: [UInt8] = []
        while true {
            guard index < bytes.count else { throw .unexpectedEnd }
            let b = bytes[index]
            switch b {
            case UInt8(ascii: "\""):
                index += 1
                return out
            case UInt8(ascii: "\\"):
                index += 1
                guard index < bytes.count else { throw .unexpectedEnd }
                let e = bytes[index]
                index += 1
                switch e {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): out.append(e)
                case UInt8(ascii: "b"): out.append(0x08)
                case UInt8(ascii: "f"): out.append(0x0C)
                case UInt8(ascii: "n"): out.append(0x0A)
                case UInt8(ascii: "r"): out.append(0x0D)
                case UInt8(ascii: "t"): out.append(0x09)
                case UInt8(ascii: "u"):
                    var scalar = try parseHex4()
                    if scalar >= 0xD800 && scalar <= 0xDBFF {
                        // A high surrogate must be followed by an escaped low surrogate.
                        guard index + 1 < bytes.count, bytes[index] == UInt8(ascii: "\\"), bytes[index + 1] == UInt8(ascii: "u") else {
                            throw .invalidString(offset: start)
                        }
                        index += 2
                        let low = try parseHex4()
                        guard low >= 0xDC00 && low <= 0xDFFF else { throw .invalidString(offset: start) }
                        scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                    } else if scalar >= 0xDC00 && scalar <= 0xDFFF {
                        throw .invalidString(offset: start)
                    }
                    JSONParser.appendUTF8(scalar, to: &out)
                default:
                    throw .invalidString(offset: start)
                }
            case 0..<0x20:
                throw .invalidString(offset: start)
            case 0..<0x80:
                out.append(b)
                index += 1
            default:
                let n = try validUTF8SequenceLength(at: index)
                out.append(contentsOf: bytes[index..<(index + n)])
                index += n
            }
        }
    }

    private mutating func parseHex4() throws(JSONParseError) -> UInt32 {
        guard index + 4 <= bytes.count else { throw .unexpectedEnd }
        var v: UInt32 = 0
        for _ in 0..<4 {
            let c = bytes[index]
            let d: UInt32
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): d = UInt32(c - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): d = UInt32(c - UInt8(ascii: "a") + 10)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): d = UInt32(c - UInt8(ascii: "A") + 10)
            default: throw .invalidString(offset: index)
            }
            v = v << 4 | d
            index += 1
        }
        return v
    }

    /// Length of the well-formed UTF-8 sequence (2–4 bytes) starting at `i`; rejects overlong
    /// forms, surrogates and code points above U+10FFFF (Unicode Table 3-7).
    private func validUTF8SequenceLength(at i: Int) throws(JSONParseError) -> Int {
        let b0 = bytes[i]
        func cont(_ k: Int, _ lo: UInt8 = 0x80, _ hi: UInt8 = 0xBF) -> Bool {
            i + k < bytes.count && bytes[i + k] >= lo && bytes[i + k] <= hi
        }
        switch b0 {
        case 0xC2...0xDF: if cont(1) { return 2 }
        case 0xE0: if cont(1, 0xA0, 0xBF) && cont(2) { return 3 }
        case 0xE1...0xEC, 0xEE...0xEF: if cont(1) && cont(2) { return 3 }
        case 0xED: if cont(1, 0x80, 0x9F) && cont(2) { return 3 }
        case 0xF0: if cont(1, 0x90, 0xBF) && cont(2) && cont(3) { return 4 }
        case 0xF1...0xF3: if cont(1) && cont(2) && cont(3) { return 4 }
        case 0xF4: if cont(1, 0x80, 0x8F) && cont(2) && cont(3) { return 4 }
        default: break
        }
        throw .invalidString(offset: i)
    }

    static func appendUTF8(_ scalar: UInt32, to out: inout [UInt8]) {
        switch scalar {
        case 0..<0x80:
            out.append(UInt8(scalar))
        case 0x80..<0x800:
            out.append(UInt8(0xC0 | (scalar >> 6)))
            out.append(UInt8(0x80 | (scalar & 0x3F)))
        case 0x800..<0x10000:
            out.append(UInt8(0xE0 | (scalar >> 12)))
            out.append(UInt8(0x80 | ((scalar >> 6) & 0x3F)))
            out.append(UInt8(0x80 | (scalar & 0x3F)))
        default:
            out.append(UInt8(0xF0 | (scalar >> 18)))
            out.append(UInt8(0x80 | ((scalar >> 12) & 0x3F)))
            out.append(UInt8(0x80 | ((scalar >> 6) & 0x3F)))
            out.append(UInt8(0x80 | (scalar & 0x3F)))
        }
    }
}
