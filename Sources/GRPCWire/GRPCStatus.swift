/// gRPC status codes and the status carried in trailers.
public struct GRPCStatus: Error, Hashable, Sendable, CustomStringConvertible {
    public enum Code: Int, Sendable, Hashable {
        case ok = 0
        case cancelled = 1
        case unknown = 2
        case invalidArgument = 3
        case deadlineExceeded = 4
        case notFound = 5
        case alreadyExists = 6
        case permissionDenied = 7
        case resourceExhausted = 8
        case failedPrecondition = 9
        case aborted = 10
        case outOfRange = 11
        case unimplemented = 12
        case `internal` = 13
        case unavailable = 14
        case dataLoss = 15
        case unauthenticated = 16
    }

    public var code: Code
    public var message: String

    public init(_ code: Code, _ message: String = "") {
        self.code = code
        self.message = message
    }

    public static let ok = GRPCStatus(.ok)

    public var description: String { "\(code)(\(code.rawValue)): \(message)" }
}

/// Percent-encoding of `grpc-message` values (gRPC over HTTP/2 spec): bytes outside printable
/// ASCII, and `%` itself, become `%XX`.
enum GRPCMessageEncoding {
    static func encode(_ message: String) -> String {
        var needs = false
        for b in message.utf8 where b < 0x20 || b > 0x7E || b == 0x25 { needs = true; break }
        if !needs { return message }
        var out = ""
        out.reserveCapacity(message.utf8.count * 3)
        let hex = Array("0123456789ABCDEF")
        for b in message.utf8 {
            if b < 0x20 || b > 0x7E || b == 0x25 {
                out.append("%")
                out.append(hex[Int(b >> 4)])
                out.append(hex[Int(b & 0xF)])
            } else {
                out.append(Character(Unicode.Scalar(b)))
            }
        }
        return out
    }

    static func decode(_ value: String) -> String {
        guard value.contains("%") else { return value }
        var bytes: [UInt8] = []
        var it = Array(value.utf8)[...]
        while let b = it.popFirst() {
            if b == 0x25, it.count >= 2, let hi = hexValue(it[it.startIndex]), let lo = hexValue(it[it.startIndex + 1]) {
                bytes.append(hi << 4 | lo)
                it = it.dropFirst(2)
            } else {
                bytes.append(b)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    private static func hexValue(_ c: UInt8) -> UInt8? {
        switch c {
        case 0x30...0x39: return c - 0x30
        case 0x41...0x46: return c - 0x41 + 10
        case 0x61...0x66: return c - 0x61 + 10
        default: return nil
        }
    }
}

/// `grpc-timeout` header: an ASCII integer of at most 8 digits and a unit (H, M, S, m, u, n).
enum GRPCTimeout {
    static func parseNanoseconds(_ value: String) -> Int64? {
        let utf8 = Array(value.utf8)
        guard utf8.count >= 2, utf8.count <= 9 else { return nil }
        var amount: Int64 = 0
        for c in utf8.dropLast() {
            guard c >= 0x30 && c <= 0x39 else { return nil }
            amount = amount * 10 + Int64(c - 0x30)
        }
        let multiplier: Int64
        switch utf8.last! {
        case UInt8(ascii: "H"): multiplier = 3_600_000_000_000
        case UInt8(ascii: "M"): multiplier = 60_000_000_000
        case UInt8(ascii: "S"): multiplier = 1_000_000_000
        case UInt8(ascii: "m"): multiplier = 1_000_000
        case UInt8(ascii: "u"): multiplier = 1_000
        case UInt8(ascii: "n"): multiplier = 1
        default: return nil
        }
        let (product, overflow) = amount.multipliedReportingOverflow(by: multiplier)
        return overflow ? Int64.max : product
    }

    static func encode(nanoseconds: Int64) -> String {
        let ns = max(nanoseconds, 0)
        if ns < 100_000_000 { return "\(ns)n" }
        if ns / 1_000 < 100_000_000 { return "\(ns / 1_000)u" }
        if ns / 1_000_000 < 100_000_000 { return "\(ns / 1_000_000)m" }
        return "\(min(ns / 1_000_000_000, 99_999_999))S"
    }
}
