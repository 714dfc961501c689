import NIOHPACK

/// The checks etcd's HTTP/2 transport makes of a request's header block before it looks at the
/// call (RFC 9113 §8.2 and §8.3, as Go's HTTP/2 framer applies them), in one pass over the bytes.
/// A block that fails them is reset with PROTOCOL_ERROR, as etcd does:
///
/// - a field name is one or more token characters, none of them upper case;
/// - a field value holds no control character other than horizontal tab (nor DEL);
/// - pseudo-header fields come before every regular field, each at most once, and are among
///   `:method`, `:path`, `:scheme` and `:authority`.
///
/// What etcd accepts is accepted: a block without `:scheme` or `:authority`, connection-specific
/// fields (`connection`, `keep-alive`, …) and `te` values other than `trailers`. swift-nio-http2's
/// own validation of header blocks refuses those, and is turned off on the server's connections
/// (it also took about 4 % of the CPU of a put).
enum RequestHeaderBlock {
    static func isWellFormed(_ headers: HPACKHeaders) -> Bool {
        var sawRegular = false
        var pseudo: UInt8 = 0  // bits of the pseudo-header fields seen
        for (name, value, _) in headers {
            guard allBytes(value, isValueByte) else { return false }
            if name.utf8.first == UInt8(ascii: ":") {
                let bit: UInt8
                switch name {
                case ":method": bit = 1
                case ":path": bit = 2
                case ":scheme": bit = 4
                case ":authority": bit = 8
                default: return false
                }
                guard !sawRegular, pseudo & bit == 0 else { return false }
                pseudo |= bit
            } else {
                guard !name.isEmpty, allBytes(name, isNameByte) else { return false }
                sawRegular = true
            }
        }
        return true
    }

    /// Token characters (RFC 9110 §5.6.2) other than upper-case letters.
    @inline(__always)
    static func isNameByte(_ b: UInt8) -> Bool {
        switch b {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
             UInt8(ascii: "!"), UInt8(ascii: "#")...UInt8(ascii: "'"), UInt8(ascii: "*"), UInt8(ascii: "+"),
             UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "^"), UInt8(ascii: "_"), UInt8(ascii: "`"),
             UInt8(ascii: "|"), UInt8(ascii: "~"):
            return true
        default:
            return false
        }
    }

    @inline(__always)
    static func isValueByte(_ b: UInt8) -> Bool {
        (b >= 0x20 && b != 0x7F) || b == UInt8(ascii: "\t")
    }

    @inline(__always)
    private static func allBytes(_ s: String, _ accept: (UInt8) -> Bool) -> Bool {
        if let result = s.utf8.withContiguousStorageIfAvailable({ $0.allSatisfy(accept) }) { return result }
        return s.utf8.allSatisfy(accept)
    }
}

/// grpc-go's reading of a call's `:path`: the leading "/" dropped, the service is everything
/// before the last "/" and the method everything after it; no "/" left → a malformed name.
enum GRPCMethodPath {
    case malformed
    case named(service: Substring, method: Substring)

    init(_ path: String) {
        let name = path.hasPrefix("/") ? path.dropFirst() : Substring(path)
        guard let slash = name.lastIndex(of: "/") else {
            self = .malformed
            return
        }
        self = .named(service: name[..<slash], method: name[name.index(after: slash)...])
    }

    /// The status etcd answers a call of this path no route serves with.
    static func unservedStatus(_ path: String, services: Set<String>) -> GRPCStatus {
        switch GRPCMethodPath(path) {
        case .malformed:
            // grpc-go's historical code for this case.
            return GRPCStatus(.resourceExhausted, "malformed method name: \(goQuoted(path))")
        case .named(let service, let method):
            return services.contains(String(service))
                ? GRPCStatus(.unimplemented, "unknown method \(method) for service \(service)")
                : GRPCStatus(.unimplemented, "unknown service \(service)")
        }
    }

    /// Go's `%q` of a string: quoted, with `"` and `\` escaped and control characters written
    /// as escapes; other characters as they are.
    static func goQuoted(_ s: String) -> String {
        quotedString(s) { scalar in
            switch scalar {
            case "\"": return "\\\""
            case "\\": return "\\\\"
            case "\u{07}": return "\\a"
            case "\u{08}": return "\\b"
            case "\u{0C}": return "\\f"
            case "\n": return "\\n"
            case "\r": return "\\r"
            case "\t": return "\\t"
            case "\u{0B}": return "\\v"
            default:
                guard scalar.value < 0x20 || scalar.value == 0x7F else { return nil }
                let hex = String(scalar.value, radix: 16)
                return "\\x" + (hex.count < 2 ? "0" : "") + hex
            }
        }
    }
}

/// `s` between double quotes, each character written as `escape` gives it (nil: as it is).
public func quotedString(_ s: String, escaping escape: (Unicode.Scalar) -> String?) -> String {
    var out = "\""
    for scalar in s.unicodeScalars {
        if let escaped = escape(scalar) { out += escaped } else { out.unicodeScalars.append(scalar) }
    }
    return out + "\""
}
