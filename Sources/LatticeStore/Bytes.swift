#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import LatticeCore

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
