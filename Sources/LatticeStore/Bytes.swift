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

/// Key versions by key, for the write path's per-request and per-batch maps. Keyed by
/// `StoredKey`, which hashes a key's bytes in one call: a `[UInt8]` key feeds the hasher one
/// byte at a time, and these maps are looked up several times per written key.
struct VersionsByKey: Sequence, ExpressibleByDictionaryLiteral {
    typealias Element = (key: [UInt8], value: KeyVersion)
    private var storage: [StoredKey: KeyVersion] = [:]

    init() {}

    init(dictionaryLiteral elements: ([UInt8], KeyVersion)...) {
        for (key, value) in elements { storage[StoredKey(key)] = value }
    }

    subscript(key: [UInt8]) -> KeyVersion? {
        get { storage[StoredKey(key)] }
        set { storage[StoredKey(key)] = newValue }
    }

    /// Sets the version; returns the one it replaced.
    @discardableResult
    mutating func updateValue(_ value: KeyVersion, forKey key: [UInt8]) -> KeyVersion? {
        storage.updateValue(value, forKey: StoredKey(key))
    }

    var count: Int { storage.count }
    var isEmpty: Bool { storage.isEmpty }
    var keys: LazyMapSequence<Dictionary<StoredKey, KeyVersion>.Keys, [UInt8]> { storage.keys.lazy.map(\.bytes) }

    func makeIterator() -> LazyMapSequence<[StoredKey: KeyVersion], Element>.Iterator {
        storage.lazy.map { (key: $0.key.bytes, value: $0.value) }.makeIterator()
    }
}
