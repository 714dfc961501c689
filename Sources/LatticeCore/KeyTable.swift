#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A hash table from `StoredKey` to `Value`: one shard of a `StoredKeyMap`.
///
/// Why not `Dictionary`: a dictionary's table has a power-of-two number of buckets and doubles
/// when it is three quarters full, so it is between 37.5 % and 75 % full (at a million keys in
/// 256 shards, 48 %: every shard had just doubled). The store keeps a million of these entries
/// twice (the index and the replica), and an entry holds a key's single version inline, so an
/// empty bucket costs as much as a full one. This table grows by a quarter when it is 85 % full
/// (68–85 % full), with any number of slots.
///
/// Open addressing with linear probing. Each slot keeps the upper 32 bits of the key's seeded
/// hash (0: empty), so a probe compares keys only when those bits match and growing never
/// rehashes a key; a slot's home is `hash × capacity >> 32`. Removal shifts the following
/// entries back (no tombstones, so lookups never slow down after removals). The hash is
/// `Hasher`'s, seeded per process, so keys chosen by a client cannot be made to collide.
///
/// Value semantics: the slots live in a class instance that is copied before a change when it
/// is shared (a snapshot's captured copy shares every shard).
public struct KeyTable<Value>: Sequence {
    public typealias Element = (key: StoredKey, value: Value)

    @usableFromInline var storage: Storage

    @inlinable public init() { storage = Storage(capacity: 0) }

    /// Room for `count` entries without growing.
    @inlinable public init(minimumCapacity count: Int) {
        storage = Storage(capacity: Self.capacity(for: count))
    }

    @inlinable public var count: Int { storage.count }
    @inlinable public var isEmpty: Bool { storage.count == 0 }
    /// Slots, full and empty (for tests and memory accounting).
    @inlinable public var capacity: Int { storage.capacity }

    /// Slots for `count` entries at most 85 % full.
    @inlinable static func capacity(for count: Int) -> Int {
        count == 0 ? 0 : count + count * 3 / 17 + 1
    }

    /// The seeded hash's upper 32 bits, never 0 (0 marks an empty slot).
    @inlinable @inline(__always)
    static func hash(_ key: StoredKey) -> UInt32 {
        var hasher = Hasher()
        key.bytes.withUnsafeBytes { hasher.combine(bytes: $0) }
        let h = UInt32(truncatingIfNeeded: UInt64(bitPattern: Int64(hasher.finalize())) >> 32)
        return h == 0 ? 1 : h
    }

    public mutating func reserveCapacity(_ count: Int) {
        let needed = Self.capacity(for: count)
        guard needed > storage.capacity else { return }
        let unique = isKnownUniquelyReferenced(&storage)
        storage = storage.resized(to: needed, moving: unique)
    }

    // MARK: lookup

    @inlinable
    public subscript(key: StoredKey) -> Value? {
        get {
            let h = Self.hash(key)
            let (slot, found) = storage.find(key, hash: h)
            return found ? storage.valuePointer(slot).pointee : nil
        }
        _modify {
            let h = Self.hash(key)
            makeUnique()
            let (slot, found) = storage.find(key, hash: h)
            var value: Value? = found ? storage.valuePointer(slot).move() : nil
            defer { store(value, key: key, hash: h, slot: slot, found: found) }
            yield &value
        }
    }

    @inlinable
    public subscript(key: StoredKey, default defaultValue: @autoclosure () -> Value) -> Value {
        get { self[key] ?? defaultValue() }
        _modify {
            let h = Self.hash(key)
            makeUnique()
            var (slot, found) = storage.find(key, hash: h)
            if !found { slot = insert(defaultValue(), key: key, hash: h, at: slot) }
            yield &storage.valuePointer(slot).pointee
        }
    }

    /// Sets the value; returns the one it replaced.
    @discardableResult
    @inlinable
    public mutating func updateValue(_ value: Value, forKey key: StoredKey) -> Value? {
        let h = Self.hash(key)
        makeUnique()
        let (slot, found) = storage.find(key, hash: h)
        if found {
            let old = storage.valuePointer(slot).move()
            storage.valuePointer(slot).initialize(to: value)
            return old
        }
        insert(value, key: key, hash: h, at: slot)
        return nil
    }

    /// Removes the entry; returns its value.
    @discardableResult
    @inlinable
    public mutating func removeValue(forKey key: StoredKey) -> Value? {
        let h = Self.hash(key)
        makeUnique()
        let (slot, found) = storage.find(key, hash: h)
        guard found else { return nil }
        let old = storage.valuePointer(slot).move()
        storage.remove(slot: slot)
        return old
    }

    /// The key as stored (its bytes, shared) and its value.
    @inlinable
    public func entry(forKey key: StoredKey) -> Element? {
        let (slot, found) = storage.find(key, hash: Self.hash(key))
        return found ? (storage.keyPointer(slot).pointee, storage.valuePointer(slot).pointee) : nil
    }

    /// Writes back what a `_modify` yielded: the value (the slot's value was moved out), a new
    /// entry, or a removal.
    @inlinable
    mutating func store(_ value: Value?, key: StoredKey, hash h: UInt32, slot: Int, found: Bool) {
        switch (value, found) {
        case (let value?, true):
            storage.valuePointer(slot).initialize(to: value)
        case (nil, true):
            storage.remove(slot: slot)
        case (let value?, false):
            insert(value, key: key, hash: h, at: slot)
        case (nil, false):
            break
        }
    }

    /// Adds an entry for a key that is not in the table, at `slot` (the empty slot `find`
    /// returned), or where it goes after the table grew; returns its slot.
    @inlinable @discardableResult
    mutating func insert(_ value: Value, key: StoredKey, hash h: UInt32, at slot: Int) -> Int {
        var slot = slot
        if storage.isFull {
            storage = storage.resized(to: storage.grownCapacity, moving: true)
            slot = storage.find(key, hash: h).slot
        }
        storage.initialize(slot: slot, hash: h, key: key, value: value)
        return slot
    }

    @inlinable @inline(__always)
    mutating func makeUnique() {
        if !isKnownUniquelyReferenced(&storage) { storage = storage.resized(to: storage.capacity, moving: false) }
    }

    // MARK: iteration

    @inlinable
    public func makeIterator() -> Iterator { Iterator(storage: storage) }

    public struct Iterator: IteratorProtocol {
        @usableFromInline let storage: Storage
        @usableFromInline var slot = 0

        @inlinable init(storage: Storage) { self.storage = storage }

        @inlinable
        public mutating func next() -> Element? {
            while slot < storage.capacity {
                defer { slot += 1 }
                if storage.hashes[slot] != 0 { return (storage.keyPointer(slot).pointee, storage.valuePointer(slot).pointee) }
            }
            return nil
        }
    }

    // MARK: storage

    /// The slots: hashes (0: empty), and entries initialized where the hash is not 0.
    public final class Storage {
        @usableFromInline let capacity: Int
        @usableFromInline var count = 0
        @usableFromInline let hashes: UnsafeMutablePointer<UInt32>
        /// Each slot's key and value side by side: a lookup's key comparison brings the value's
        /// cache line with it (separate arrays cost a cache miss more per lookup: a paginated
        /// LIST at a million keys spent 16 % of its time in the table, 10 % slower).
        @usableFromInline let entries: UnsafeMutablePointer<Entry>

        @usableFromInline struct Entry {
            @usableFromInline var key: StoredKey
            @usableFromInline var value: Value

            @inlinable init(key: StoredKey, value: Value) {
                self.key = key
                self.value = value
            }
        }

        @inlinable @inline(__always)
        func keyPointer(_ slot: Int) -> UnsafeMutablePointer<StoredKey> {
            UnsafeMutableRawPointer(entries + slot).assumingMemoryBound(to: StoredKey.self)
        }

        @inlinable @inline(__always)
        func valuePointer(_ slot: Int) -> UnsafeMutablePointer<Value> {
            (UnsafeMutableRawPointer(entries + slot) + MemoryLayout<Entry>.offset(of: \Entry.value)!)
                .assumingMemoryBound(to: Value.self)
        }

        /// The one block holding both arrays (hashes, then entries), and its size.
        @usableFromInline let block: UnsafeMutableRawPointer
        @usableFromInline let blockBytes: Int
        /// Whether `block` was mapped (and is unmapped) rather than allocated from the heap.
        @usableFromInline let mapped: Bool

        /// Tables of at least this many bytes are mapped from the kernel and unmapped when they
        /// go. From the heap, a growing table leaves its previous block behind as a hole that
        /// only smaller allocations can reuse (8 MiB of RSS at a million keys filled in one go).
        @usableFromInline static var mappedBytes: Int { 64 << 10 }

        @usableFromInline init(capacity: Int) {
            self.capacity = capacity
            let slots = Swift.max(capacity, 1)
            let alignment = Swift.max(MemoryLayout<Entry>.alignment, 8)
            let entriesOffset = (slots * 4 + alignment - 1) & ~(alignment - 1)
            let bytes = entriesOffset + slots * MemoryLayout<Entry>.stride
            blockBytes = bytes
            if bytes >= Self.mappedBytes,
               let mapped = mmap(nil, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0),
               mapped != MAP_FAILED {
                block = mapped  // zero-filled: every slot empty
                self.mapped = true
            } else {
                self.mapped = false
                block = .allocate(byteCount: bytes, alignment: alignment)
                block.initializeMemory(as: UInt32.self, repeating: 0, count: slots)
            }
            hashes = block.assumingMemoryBound(to: UInt32.self)
            entries = (block + entriesOffset).bindMemory(to: Entry.self, capacity: slots)
        }

        deinit {
            for slot in 0..<capacity where hashes[slot] != 0 {
                entries.advanced(by: slot).deinitialize(count: 1)
            }
            if mapped { munmap(block, blockBytes) } else { block.deallocate() }
        }

        /// Whether one more entry would take the table past 85 % full.
        @inlinable var isFull: Bool { (count + 1) * 20 > capacity * 17 }

        /// A quarter more slots.
        @inlinable var grownCapacity: Int { Swift.max(capacity + capacity / 4, 8) }

        @inlinable @inline(__always)
        func home(_ h: UInt32) -> Int { Int(truncatingIfNeeded: (UInt64(h) &* UInt64(capacity)) >> 32) }

        /// The key's slot, or the empty slot where it would go.
        @inlinable @inline(__always)
        func find(_ key: StoredKey, hash h: UInt32) -> (slot: Int, found: Bool) {
            guard capacity > 0 else { return (0, false) }
            var slot = home(h)
            while true {
                let s = hashes[slot]
                if s == 0 { return (slot, false) }
                if s == h && keyPointer(slot).pointee == key { return (slot, true) }
                slot += 1
                if slot == capacity { slot = 0 }
            }
        }

        @inlinable
        func initialize(slot: Int, hash h: UInt32, key: StoredKey, value: Value) {
            hashes[slot] = h
            entries.advanced(by: slot).initialize(to: Entry(key: key, value: value))
            count += 1
        }

        /// Empties `slot`, whose value was already moved out, and shifts back the entries after
        /// it that could not sit at their home or closer because it was full.
        @usableFromInline
        func remove(slot removed: Int) {
            keyPointer(removed).deinitialize(count: 1)
            count -= 1
            var hole = removed
            var slot = removed
            while true {
                slot += 1
                if slot == capacity { slot = 0 }
                let h = hashes[slot]
                if h == 0 { break }
                let home = home(h)
                // The entry may move into the hole when its home is not cyclically in (hole, slot].
                let stays = hole <= slot ? (hole < home && home <= slot) : (hole < home || home <= slot)
                if stays { continue }
                hashes[hole] = h
                entries.advanced(by: hole).moveInitialize(from: entries.advanced(by: slot), count: 1)
                hole = slot
            }
            hashes[hole] = 0
        }

        /// A table of `newCapacity` slots with these entries: moved out of this one when the
        /// table being changed holds it alone (and replaces it), copied otherwise.
        @usableFromInline
        func resized(to newCapacity: Int, moving unique: Bool) -> Storage {
            let new = Storage(capacity: newCapacity)
            for slot in 0..<capacity where hashes[slot] != 0 {
                let h = hashes[slot]
                var target = new.home(h)
                while new.hashes[target] != 0 {
                    target += 1
                    if target == newCapacity { target = 0 }
                }
                new.hashes[target] = h
                if unique {
                    new.entries.advanced(by: target).moveInitialize(from: entries.advanced(by: slot), count: 1)
                    hashes[slot] = 0
                } else {
                    new.entries.advanced(by: target).initialize(to: entries[slot])
                }
            }
            new.count = count
            if unique { count = 0 }
            return new
        }
    }
}

extension KeyTable: @unchecked Sendable where Value: Sendable {}
extension KeyTable.Storage: @unchecked Sendable where Value: Sendable {}
