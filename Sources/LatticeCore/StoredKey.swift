#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Lexicographic byte order of keys, as etcd's `bytes.Compare` (one `memcmp`; the standard
/// library's `lexicographicallyPrecedes` compares element by element, several times slower on
/// keys sharing long prefixes, as Kubernetes keys do).
@inlinable @inline(__always)
public func compareBytes(_ a: [UInt8], _ b: [UInt8]) -> Int {
    let n = min(a.count, b.count)
    let c = a.withUnsafeBufferPointer { pa in
        b.withUnsafeBufferPointer { pb in n == 0 ? 0 : memcmp(pa.baseAddress!, pb.baseAddress!, n) }
    }
    if c != 0 { return c < 0 ? -1 : 1 }
    return a.count == b.count ? 0 : (a.count < b.count ? -1 : 1)
}

@inlinable @inline(__always)
public func bytesLess(_ a: [UInt8], _ b: [UInt8]) -> Bool { compareBytes(a, b) < 0 }

/// A key as the replica's and the index's maps hold it. `[UInt8]`'s own `Hashable` feeds the hasher one byte at
/// a time; this feeds all bytes in one call, several times faster for etcd-length keys. Equality
/// is byte equality, as for `[UInt8]`.
public struct StoredKey: Hashable, Sendable {
    public let bytes: [UInt8]

    @inlinable
    public init(_ bytes: [UInt8]) { self.bytes = bytes }

    @inlinable
    public static func == (a: StoredKey, b: StoredKey) -> Bool { a.bytes == b.bytes }

    @inlinable
    public func hash(into hasher: inout Hasher) {
        bytes.withUnsafeBytes { hasher.combine(bytes: $0) }
    }
}

/// A dictionary keyed by `StoredKey` that splits itself into 256 shards, each a dictionary of
/// its own, once it holds more than `shardingThreshold` entries (small maps stay one dictionary:
/// no per-shard cost when a replica is copied).
///
/// Why: the store snapshots its state by keeping a copy-on-write reference while a snapshot is
/// encoded on another thread. With one dictionary, the writer's next change copied the whole
/// dictionary (a million entries: about a quarter of a second with every write waiting). Here
/// a change copies only its own shard, so after a snapshot starts each write pays at most one
/// shard's copy (1/256 of the keys) and the copying is spread over the writes that follow.
/// 4,096 shards spread it more finely (put p99 with a snapshot every 4,000 writes at a million
/// keys: 5–29 ms against 112–172 ms) but cost 170 MiB more memory at a million keys: shards
/// that small come from the heap, and the copies a snapshot leaves behind stay resident as free
/// heap, where 256 shards are large enough to be mapped and given back.
public struct StoredKeyMap<Value>: Sequence {
    public typealias Element = (key: StoredKey, value: Value)
    @usableFromInline static var shardBits: Int { 8 }
    @usableFromInline static var shardCount: Int { 1 << shardBits }
    @usableFromInline static var shardingThreshold: Int { 16_384 }

    /// One dictionary, or `shardCount` of them.
    @usableFromInline var shards: [[StoredKey: Value]] = [[:]]

    @inlinable
    public init() {}

    /// The shard of a key: the top bits of its hash (the seeded hasher's, over all its bytes).
    /// Each shard's dictionary picks buckets by the low bits of the same hash, so the two stay
    /// independent.
    @inlinable @inline(__always)
    func shard(_ key: StoredKey) -> Int {
        if shards.count == 1 { return 0 }
        return Int(truncatingIfNeeded: UInt(bitPattern: key.hashValue) >> UInt(UInt.bitWidth - Self.shardBits))
    }

    /// Splits the single dictionary into shards once it grew past the threshold.
    @usableFromInline
    mutating func shardIfLarge() {
        guard shards.count == 1, shards[0].count > Self.shardingThreshold else { return }
        split(reserving: shards[0].count * 2)
    }

    /// Spreads the single dictionary's entries over `shardCount` shards, each with room for its
    /// part of `total` entries.
    @usableFromInline
    mutating func split(reserving total: Int) {
        let all = shards[0]
        shards = Array(repeating: [:], count: Self.shardCount)
        let each = total / Self.shardCount + total / (4 * Self.shardCount) + 4
        for i in shards.indices { shards[i].reserveCapacity(each) }
        for (key, value) in all { shards[shard(key)][key] = value }
    }

    @inlinable
    public var count: Int { shards.reduce(0) { $0 + $1.count } }
    @inlinable
    public var isEmpty: Bool { shards.allSatisfy(\.isEmpty) }

    @inlinable
    public mutating func reserveCapacity(_ total: Int) {
        if shards.count == 1 {
            if total > Self.shardingThreshold { split(reserving: total) } else { shards[0].reserveCapacity(total) }
            return
        }
        let each = total / Self.shardCount + total / (4 * Self.shardCount) + 1
        for i in shards.indices { shards[i].reserveCapacity(each) }
    }

    @inlinable
    public subscript(key: StoredKey) -> Value? {
        get { shards[shard(key)][key] }
        _modify {
            yield &shards[shard(key)][key]
            shardIfLarge()
        }
    }

    @inlinable
    public subscript(key: StoredKey, default defaultValue: @autoclosure () -> Value) -> Value {
        get { shards[shard(key)][key] ?? defaultValue() }
        _modify {
            yield &shards[shard(key)][key, default: defaultValue()]
            shardIfLarge()
        }
    }

    /// Sets the value; returns the one it replaced.
    @discardableResult
    @inlinable
    public mutating func updateValue(_ value: Value, forKey key: StoredKey) -> Value? {
        defer { shardIfLarge() }
        return shards[shard(key)].updateValue(value, forKey: key)
    }

    /// The key as stored (its bytes, shared) and its value.
    @inlinable
    public func entry(forKey key: StoredKey) -> Element? {
        let s = shard(key)
        guard let i = shards[s].index(forKey: key) else { return nil }
        return shards[s][i]
    }

    /// Every entry, shard by shard (no particular order).
    @inlinable
    public func makeIterator() -> FlattenSequence<[[StoredKey: Value]]>.Iterator {
        shards.joined().makeIterator()
    }
}

extension StoredKeyMap: Sendable where Value: Sendable {}
