import LatticeCore

/// One field of an etcd message, as the JSON gateway sees it (table in GatewaySchema.swift,
/// generated from Protos/etcd).
struct GatewayField: Sendable {
    enum Kind: Sendable {
        case int64, uint64, int32, uint32, bool, string, bytes
        case enumeration(String)
        case message(String)

        /// Carried as a varint on the wire (packable when repeated).
        var isVarint: Bool {
            switch self {
            case .int64, .uint64, .int32, .uint32, .bool, .enumeration: return true
            default: return false
            }
        }
    }

    let name: String
    /// The lowerCamelCase name JSON also accepts ("range_end" → "rangeEnd").
    let jsonName: String
    let number: Int
    let kind: Kind
    let repeated: Bool
    /// A oneof member: written even when zero.
    let oneof: Bool

    init(_ name: String, _ number: Int, _ kind: Kind, repeated: Bool = false, oneof: Bool = false) {
        self.name = name
        self.number = number
        self.kind = kind
        self.repeated = repeated
        self.oneof = oneof
        var camel = ""
        var upper = false
        for c in name {
            if c == "_" { upper = true } else { camel += upper ? c.uppercased() : String(c); upper = false }
        }
        jsonName = camel
    }
}

struct GatewayError: Error, Sendable {
    let message: String
    init(_ message: String) { self.message = message }
}

/// Transcodes between etcd's messages as protobuf bytes and as the JSON of etcd's gRPC gateway
/// (grpc-gateway's JSONPb with original field names): int64 and uint64 as strings, bytes as
/// base64, enums by name, fields with their zero value left out (a oneof member is kept),
/// fields in declaration order. Requests take names in either form, numbers as JSON numbers or
/// strings, enums by name or number; unknown fields are ignored (as etcd's gateway does).
enum GatewaySchema {
    static func fields(of message: String) -> [GatewayField] { messages[message] ?? [] }

    // MARK: JSON → protobuf

    static func encode(_ json: JSONValue, as message: String) throws(GatewayError) -> [UInt8] {
        var out: [UInt8] = []
        try encodeMessage(json, as: message, into: &out, depth: 0)
        return out
    }

    private static func encodeMessage(_ json: JSONValue, as message: String, into out: inout [UInt8], depth: Int) throws(GatewayError) {
        guard depth < 64 else { throw GatewayError("message nesting too deep") }
        let members: [[UInt8]: JSONValue]
        switch json {
        case .null: return
        case .object(let m): members = m
        default: throw GatewayError("json: cannot unmarshal \(typeName(json)) into Go value of type \(goType(message))")
        }
        let table = fields(of: message)
        var given: [(GatewayField, JSONValue)] = []
        for (rawName, value) in members {
            let name = String(decoding: rawName, as: UTF8.self)
            // Unknown fields are ignored, as etcd's gateway does.
            guard let field = table.first(where: { $0.name == name || $0.jsonName == name }) else { continue }
            given.append((field, value))
        }
        for (field, value) in given.sorted(by: { $0.0.number < $1.0.number }) {
            if case .null = value { continue }
            if field.repeated {
                guard case .array(let items) = value else {
                    throw GatewayError("json: cannot unmarshal \(typeName(value)) into Go value of type []json.RawMessage")
                }
                if field.kind.isVarint {
                    var packed: [UInt8] = []
                    for item in items { appendVarint(try varintValue(item, field), to: &packed) }
                    appendTag(field.number, wire: 2, to: &out)
                    appendVarint(UInt64(packed.count), to: &out)
                    out += packed
                } else {
                    for item in items { try encodeSingle(item, field, into: &out, depth: depth) }
                }
            } else {
                try encodeSingle(value, field, into: &out, depth: depth)
            }
        }
    }

    private static func encodeSingle(_ value: JSONValue, _ field: GatewayField, into out: inout [UInt8], depth: Int) throws(GatewayError) {
        switch field.kind {
        case .string:
            guard case .string(let s) = value else { throw badValue(field, value) }
            appendTag(field.number, wire: 2, to: &out)
            appendVarint(UInt64(s.count), to: &out)
            out += s
        case .bytes:
            guard case .string(let s) = value else { throw badValue(field, value) }
            guard let decoded = Base64.decode(s) else { throw GatewayError("illegal base64 data at input byte 0") }
            appendTag(field.number, wire: 2, to: &out)
            appendVarint(UInt64(decoded.count), to: &out)
            out += decoded
        case .message(let name):
            var inner: [UInt8] = []
            try encodeMessage(value, as: name, into: &inner, depth: depth + 1)
            appendTag(field.number, wire: 2, to: &out)
            appendVarint(UInt64(inner.count), to: &out)
            out += inner
        default:
            appendTag(field.number, wire: 0, to: &out)
            appendVarint(try varintValue(value, field), to: &out)
        }
    }

    private static func varintValue(_ value: JSONValue, _ field: GatewayField) throws(GatewayError) -> UInt64 {
        switch field.kind {
        case .bool:
            guard case .bool(let b) = value else { throw badValue(field, value) }
            return b ? 1 : 0
        case .enumeration(let name):
            if case .string(let s) = value {
                let text = String(decoding: s, as: UTF8.self)
                guard let number = enums[name]?.first(where: { $0.0 == text })?.1 else {
                    throw GatewayError("unknown value \"\(text)\" for enum \(goType(name))")
                }
                return UInt64(bitPattern: Int64(number))
            }
            return UInt64(bitPattern: Int64(try integer(value, field, min: Int64(Int32.min), max: Int64(Int32.max))))
        case .int64:
            return UInt64(bitPattern: try integer(value, field, min: Int64.min, max: Int64.max))
        case .int32:
            return UInt64(bitPattern: try integer(value, field, min: Int64(Int32.min), max: Int64(Int32.max)))
        case .uint32:
            return UInt64(try integer(value, field, min: 0, max: Int64(UInt32.max)))
        case .uint64:
            let text = try numberText(value, field)
            guard let v = UInt64(text) else { throw badValue(field, value) }
            return v
        default:
            throw badValue(field, value)
        }
    }

    private static func numberText(_ value: JSONValue, _ field: GatewayField) throws(GatewayError) -> String {
        switch value {
        case .number(let literal): return String(decoding: literal, as: UTF8.self)
        case .string(let s): return String(decoding: s, as: UTF8.self)
        default: throw badValue(field, value)
        }
    }

    private static func integer(_ value: JSONValue, _ field: GatewayField, min: Int64, max: Int64) throws(GatewayError) -> Int64 {
        let text = try numberText(value, field)
        guard let v = Int64(text), v >= min, v <= max else { throw badValue(field, value) }
        return v
    }

    private static func badValue(_ field: GatewayField, _ value: JSONValue) -> GatewayError {
        GatewayError("json: cannot unmarshal \(typeName(value)) into Go value of type \(goKind(field.kind))")
    }

    private static func typeName(_ value: JSONValue) -> String {
        switch value {
        case .null: return "null"
        case .bool: return "bool"
        case .number: return "number"
        case .string: return "string"
        case .array: return "array"
        case .object: return "object"
        }
    }

    private static func goKind(_ kind: GatewayField.Kind) -> String {
        switch kind {
        case .int64: return "int64"
        case .uint64: return "uint64"
        case .int32, .enumeration: return "int32"
        case .uint32: return "uint32"
        case .bool: return "bool"
        case .string: return "string"
        case .bytes: return "[]uint8"
        case .message(let name): return goType(name)
        }
    }

    /// "etcdserverpb.RangeRequest" → "etcdserverpb.RangeRequest" (Go's package.Type).
    private static func goType(_ message: String) -> String {
        let parts = message.split(separator: ".")
        return parts.count > 2 ? "\(parts[0]).\(parts[1...].joined(separator: "_"))" : message
    }

    private static func appendTag(_ number: Int, wire: UInt64, to out: inout [UInt8]) {
        appendVarint(UInt64(number) << 3 | wire, to: &out)
    }

    private static func appendVarint(_ value: UInt64, to out: inout [UInt8]) {
        var v = value
        while v >= 0x80 {
            out.append(UInt8(truncatingIfNeeded: v) | 0x80)
            v >>= 7
        }
        out.append(UInt8(v))
    }

    // MARK: protobuf → JSON

    static func render(_ bytes: [UInt8], as message: String) throws(GatewayError) -> [UInt8] {
        var out: [UInt8] = []
        try renderMessage(bytes[...], as: message, into: &out, depth: 0)
        return out
    }

    private enum WireValue {
        case varint(UInt64)
        case fixed64(UInt64)
        case fixed32(UInt32)
        case bytes(ArraySlice<UInt8>)
    }

    private static func renderMessage(_ bytes: ArraySlice<UInt8>, as message: String, into out: inout [UInt8], depth: Int) throws(GatewayError) {
        guard depth < 64 else { throw GatewayError("message nesting too deep") }
        var values: [Int: [WireValue]] = [:]
        var i = bytes.startIndex
        func varint() throws(GatewayError) -> UInt64 {
            var result: UInt64 = 0
            var shift: UInt64 = 0
            while true {
                guard i < bytes.endIndex, shift < 64 else { throw GatewayError("malformed response") }
                let b = bytes[i]
                i += 1
                result |= UInt64(b & 0x7F) << shift
                if b < 0x80 { return result }
                shift += 7
            }
        }
        while i < bytes.endIndex {
            let tag = try varint()
            let number = Int(tag >> 3)
            switch tag & 7 {
            case 0: values[number, default: []].append(.varint(try varint()))
            case 1:
                guard bytes.endIndex - i >= 8 else { throw GatewayError("malformed response") }
                values[number, default: []].append(.fixed64(bytes[i..<(i + 8)].reversed().reduce(0) { $0 << 8 | UInt64($1) }))
                i += 8
            case 2:
                let length = try varint()
                guard length <= UInt64(bytes.endIndex - i) else { throw GatewayError("malformed response") }
                values[number, default: []].append(.bytes(bytes[i..<(i + Int(length))]))
                i += Int(length)
            case 5:
                guard bytes.endIndex - i >= 4 else { throw GatewayError("malformed response") }
                values[number, default: []].append(.fixed32(bytes[i..<(i + 4)].reversed().reduce(0) { $0 << 8 | UInt32($1) }))
                i += 4
            default:
                throw GatewayError("malformed response")
            }
        }
        out.append(UInt8(ascii: "{"))
        var first = true
        for field in fields(of: message) {
            guard let found = values[field.number], !found.isEmpty else { continue }
            var items: [WireValue] = []
            if field.repeated && field.kind.isVarint {
                for value in found {
                    if case .bytes(let packed) = value {
                        var j = packed.startIndex
                        while j < packed.endIndex {
                            var result: UInt64 = 0
                            var shift: UInt64 = 0
                            while j < packed.endIndex {
                                let b = packed[j]
                                j += 1
                                result |= UInt64(b & 0x7F) << shift
                                shift += 7
                                if b < 0x80 || shift >= 64 { break }
                            }
                            items.append(.varint(result))
                        }
                    } else {
                        items.append(value)
                    }
                }
            } else {
                items = field.repeated ? found : [found.last!]
            }
            if !field.repeated && !field.oneof && isZero(items[0], field) { continue }
            if !first { out.append(UInt8(ascii: ",")) }
            first = false
            out += Array("\"\(field.name)\":".utf8)
            if field.repeated {
                out.append(UInt8(ascii: "["))
                for (k, item) in items.enumerated() {
                    if k > 0 { out.append(UInt8(ascii: ",")) }
                    try renderValue(item, field, into: &out, depth: depth)
                }
                out.append(UInt8(ascii: "]"))
            } else {
                try renderValue(items[0], field, into: &out, depth: depth)
            }
        }
        out.append(UInt8(ascii: "}"))
    }

    private static func isZero(_ value: WireValue, _ field: GatewayField) -> Bool {
        switch (value, field.kind) {
        case (.varint(let v), _): return v == 0
        case (.bytes(let b), .string), (.bytes(let b), .bytes): return b.isEmpty
        default: return false
        }
    }

    private static func renderValue(_ value: WireValue, _ field: GatewayField, into out: inout [UInt8], depth: Int) throws(GatewayError) {
        switch (field.kind, value) {
        case (.int64, .varint(let v)): out += Array("\"\(Int64(bitPattern: v))\"".utf8)
        case (.uint64, .varint(let v)): out += Array("\"\(v)\"".utf8)
        case (.int32, .varint(let v)): out += Array("\(Int32(truncatingIfNeeded: v))".utf8)
        case (.uint32, .varint(let v)): out += Array("\(UInt32(truncatingIfNeeded: v))".utf8)
        case (.bool, .varint(let v)): out += Array((v != 0 ? "true" : "false").utf8)
        case (.enumeration(let name), .varint(let v)):
            let number = Int32(truncatingIfNeeded: v)
            if let known = enums[name]?.first(where: { $0.1 == number }) {
                out += Array("\"\(known.0)\"".utf8)
            } else {
                out += Array("\(number)".utf8)
            }
        case (.string, .bytes(let b)):
            out += Array(HTTPService.jsonString(String(decoding: b, as: UTF8.self)).utf8)
        case (.bytes, .bytes(let b)):
            out.append(UInt8(ascii: "\""))
            out += Base64.encode(b)
            out.append(UInt8(ascii: "\""))
        case (.message(let name), .bytes(let b)):
            try renderMessage(b, as: name, into: &out, depth: depth + 1)
        default:
            throw GatewayError("malformed response: field \(field.name) has an unexpected wire type")
        }
    }
}
