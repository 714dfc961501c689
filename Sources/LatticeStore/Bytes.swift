#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Lexicographic byte order of keys, as etcd's `bytes.Compare`.
@inline(__always)
func compareBytes(_ a: [UInt8], _ b: [UInt8]) -> Int {
    let n = min(a.count, b.count)
    let c = a.withUnsafeBufferPointer { pa in
        b.withUnsafeBufferPointer { pb in n == 0 ? 0 : memcmp(pa.baseAddress!, pb.baseAddress!, n) }
    }
    if c != 0 { return c < 0 ? -1 : 1 }
    return a.count == b.count ? 0 : (a.count < b.count ? -1 : 1)
}

@inline(__always)
func bytesLess(_ a: [UInt8], _ b: [UInt8]) -> Bool { compareBytes(a, b) < 0 }

/// A key range as etcd requests express it: `end` empty = the single key; `end == [0]` = every
/// key ≥ `key`; otherwise [key, end).
struct KeyRange {
    let key: [UInt8]
    let end: [UInt8]

    var isSingleKey: Bool { end.isEmpty }
    var isUnbounded: Bool { end == [0] }

    func contains(_ k: [UInt8]) -> Bool {
        if isSingleKey { return k == key }
        if compareBytes(k, key) < 0 { return false }
        return isUnbounded || compareBytes(k, end) < 0
    }
}
