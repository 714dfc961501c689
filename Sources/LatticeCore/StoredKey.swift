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

/// A dictionary keyed by `StoredKey` that splits itself into 256 shards, each a `KeyTable` of
/// its own (fuller than a `Dictionary`, see there), once it holds more than `shardingThreshold`
/// entries, and that can be captured for a snapshot without the writer copying it afterwards.
///
/// Why: the store snapshots its state by keeping a copy-on-write copy while a snapshot is
/// encoded on another thread. A change to a shared dictionary copies it first: with one
/// dictionary, the writer's next change copied a million entries (a quarter of a second with
/// every write waiting); with 256 shards, each of the writes that followed copied a shard of
/// ~4,000 entries (a cache miss per entry to retain it), so for the first few hundred
/// milliseconds of every snapshot the writer spent most of its time copying, and put p99 at
/// 1,000 puts/s rose to 40–140 ms. 4,096 smaller shards spread the copying more finely but left
/// 170 MiB more heap behind at a million keys.
///
/// So `capture()` returns the copy and leaves this map *frozen*: its shards stay as they were,
/// shared with the copy, and changes go to a small `overlay` of the keys changed since. Once
/// every captured copy is gone (the snapshot finished), the next change merges the overlay into
/// the shards, which are no longer shared: nothing is ever copied.
public struct StoredKeyMap<Value>: Sequence {
    public typealias Element = (key: StoredKey, value: Value)
    @usableFromInline static var shardBits: Int { 8 }
    @usableFromInline static var shardCount: Int { 1 << shardBits }
    @usableFromInline static var shardingThreshold: Int { 16_384 }

    /// One table, or `shardCount` of them.
    @usableFromInline var shards: [KeyTable<Value>] = [KeyTable()]
    /// While frozen: every key changed since the capture, with its value now (nil: removed).
    @usableFromInline var overlay: [StoredKey: Value?]?
    /// While frozen: entries the overlay adds to the shards' count (negative for removals).
    @usableFromInline var overlayCountDelta = 0
    /// Shared with every captured copy; uniquely held again once they are all gone.
    @usableFromInline var captures: CaptureToken?

    @inlinable
    public init() {}

    /// The shard of a key: the top bits of `shardHash`. The shard's dictionary then hashes the
    /// key with the seeded hasher; taking the shard from that hash too cost a second seeded hash
    /// per access (a dictionary cannot be handed a hash it did not compute). A key set made to
    /// land in one shard only makes that shard a larger dictionary, still hashed with the
    /// seeded hasher.
    @inlinable @inline(__always)
    func shard(_ key: StoredKey) -> Int {
        if shards.count == 1 { return 0 }
        return Int(truncatingIfNeeded: Self.shardHash(key.bytes) >> UInt64(64 - Self.shardBits))
    }

    /// A cheap mix of all of a key's bytes, eight at a time (a multiply and a shift per word,
    /// and SplitMix64's finalizer), for choosing its shard; the same within a process.
    @inlinable @inline(__always)
    static func shardHash(_ bytes: [UInt8]) -> UInt64 {
        bytes.withUnsafeBytes { raw -> UInt64 in
            var h: UInt64 = 0x9E37_79B9_7F4A_7C15 ^ UInt64(raw.count)
            var i = 0
            while i + 8 <= raw.count {
                h = (h ^ raw.loadUnaligned(fromByteOffset: i, as: UInt64.self)) &* 0xBF58_476D_1CE4_E5B9
                h ^= h >> 31
                i += 8
            }
            var tail: UInt64 = 0
            var shift: UInt64 = 0
            while i < raw.count {
                tail |= UInt64(raw[i]) << shift
                shift += 8
                i += 1
            }
            h ^= tail
            h ^= h >> 30
            h &*= 0xBF58_476D_1CE4_E5B9
            h ^= h >> 27
            h &*= 0x94D0_49BB_1331_11EB
            h ^= h >> 31
            return h
        }
    }

    /// Splits the single dictionary into shards once it grew past the threshold.
    @usableFromInline
    mutating func shardIfLarge() {
        guard shards.count == 1, shards[0].count > Self.shardingThreshold else { return }
        split(reserving: shards[0].count * 2)
    }

    /// Room per shard for its part of `total` entries: the even share and about 6 % more for
    /// shards the hash fills above it (a shard that still fills up grows by a quarter).
    @usableFromInline
    static func shardCapacity(_ total: Int) -> Int { total / shardCount + total / (16 * shardCount) + 8 }

    /// Spreads the single dictionary's entries over `shardCount` shards, each with room for its
    /// part of `total` entries.
    @usableFromInline
    mutating func split(reserving total: Int) {
        let all = shards[0]
        let each = Self.shardCapacity(total)
        shards = (0..<Self.shardCount).map { _ in KeyTable(minimumCapacity: each) }
        for (key, value) in all { shards[shard(key)][key] = value }
    }

    // MARK: capture

    /// A copy of the map as it is now, for another thread to read at leisure. This map stays
    /// frozen (changes go to the overlay) until every copy captured from it is gone.
    @inlinable
    public mutating func capture() -> StoredKeyMap {
        // The previous capture's changes are merged first if nobody holds it any more: the new
        // copy then reads the shards alone, and the overlay starts empty.
        thawIfReleased()
        if captures == nil { captures = CaptureToken() }
        let copy = self
        if overlay == nil { overlay = [:] }
        return copy
    }

    /// Whether changes are going to the overlay (a capture was taken and has not been merged).
    @inlinable
    public var isFrozen: Bool { overlay != nil }

    /// Before a change: merges the overlay into the shards once no captured copy is left.
    @inlinable @inline(__always)
    mutating func thawIfReleased() {
        guard overlay != nil, isKnownUniquelyReferenced(&captures) else { return }
        thaw()
    }

    @usableFromInline
    mutating func thaw() {
        let changes = overlay!
        overlay = nil
        overlayCountDelta = 0
        captures = nil
        for (key, value) in changes { shards[shard(key)][key] = value }
        shardIfLarge()
    }

    /// Records a frozen map's change of `key` from `old` to `new`.
    @inlinable
    mutating func setInOverlay(_ key: StoredKey, _ new: Value?, old: Value?) {
        overlay!.updateValue(new, forKey: key)
        overlayCountDelta += (new == nil ? 0 : 1) - (old == nil ? 0 : 1)
    }

    // MARK: dictionary

    @inlinable
    public var count: Int { shards.reduce(0) { $0 + $1.count } + overlayCountDelta }
    @inlinable
    public var isEmpty: Bool { count == 0 }

    @inlinable
    public mutating func reserveCapacity(_ total: Int) {
        thawIfReleased()
        guard overlay == nil else { return }
        if shards.count == 1 {
            if total > Self.shardingThreshold { split(reserving: total) } else { shards[0].reserveCapacity(total) }
            return
        }
        let each = Self.shardCapacity(total)
        for i in shards.indices { shards[i].reserveCapacity(each) }
    }

    @inlinable
    public subscript(key: StoredKey) -> Value? {
        get {
            if let overlay, let changed = overlay[key] { return changed }
            return shards[shard(key)][key]
        }
        _modify {
            thawIfReleased()
            if overlay == nil {
                yield &shards[shard(key)][key]
                shardIfLarge()
            } else {
                let old = self[key]
                var value = old
                yield &value
                setInOverlay(key, value, old: old)
            }
        }
    }

    @inlinable
    public subscript(key: StoredKey, default defaultValue: @autoclosure () -> Value) -> Value {
        get { self[key] ?? defaultValue() }
        _modify {
            thawIfReleased()
            if overlay == nil {
                yield &shards[shard(key)][key, default: defaultValue()]
                shardIfLarge()
            } else {
                let old = self[key]
                var value = old ?? defaultValue()
                yield &value
                setInOverlay(key, value, old: old)
            }
        }
    }

    /// Sets the value; returns the one it replaced.
    @discardableResult
    @inlinable
    public mutating func updateValue(_ value: Value, forKey key: StoredKey) -> Value? {
        thawIfReleased()
        guard overlay != nil else {
            defer { shardIfLarge() }
            return shards[shard(key)].updateValue(value, forKey: key)
        }
        let old = self[key]
        setInOverlay(key, value, old: old)
        return old
    }

    /// The key as stored (its bytes, shared) and its value.
    @inlinable
    public func entry(forKey key: StoredKey) -> Element? {
        if let overlay, let i = overlay.index(forKey: key) {
            let (stored, value) = overlay[i]
            return value.map { (stored, $0) }
        }
        return shards[shard(key)].entry(forKey: key)
    }

    /// Every entry, shard by shard, then the overlay's (no particular order).
    @inlinable
    public func makeIterator() -> Iterator {
        Iterator(shards: shards.joined().makeIterator(), overlay: overlay)
    }

    public struct Iterator: IteratorProtocol {
        @usableFromInline var shards: FlattenSequence<[KeyTable<Value>]>.Iterator
        @usableFromInline let overlay: [StoredKey: Value?]?
        @usableFromInline var changed: Dictionary<StoredKey, Value?>.Iterator?

        @inlinable
        init(shards: FlattenSequence<[KeyTable<Value>]>.Iterator, overlay: [StoredKey: Value?]?) {
            self.shards = shards
            self.overlay = overlay
            self.changed = overlay?.makeIterator()
        }

        @inlinable
        public mutating func next() -> Element? {
            guard let overlay else { return shards.next() }
            while let entry = shards.next() {
                if overlay[entry.key] == nil { return entry }
            }
            while let (key, value) = changed?.next() {
                if let value { return (key, value) }
            }
            return nil
        }
    }
}

/// The token a map shares with the copies captured from it.
public final class CaptureToken: Sendable {
    @usableFromInline init() {}
}

extension StoredKeyMap: Sendable where Value: Sendable {}
