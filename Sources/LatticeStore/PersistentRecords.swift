import LatticeCore
import ProtoWire

/// What the store writes to the WAL (record types and payloads; byte framing in docs/storage.md).
enum WALRecordType {
    /// A `Change` with the local revision it took (0 when it wrote no key): `ChangeRecord`.
    static let change: UInt8 = 1
    /// A compaction: `CompactionRecord`.
    static let compaction: UInt8 = 2
}

/// WAL payload of type 1: { 1: revision (int64), 2: Change }.
struct ChangeRecord: ProtoMessage {
    var revision: Int64 = 0
    var change = ChangeMessage()
    /// The change's encoding, when known: written as it is (the same bytes as encoding
    /// `change`), so a change is not encoded again. Never set by decoding.
    var encodedChange: [UInt8]?

    init() {}
    init(revision: Int64, change: Change) {
        self.revision = revision
        self.change = ChangeMessage(change)
    }
    init(revision: Int64, encodedChange: [UInt8]) {
        self.revision = revision
        self.encodedChange = encodedChange
    }

    mutating func decodeField(_ field: Int, _ wt: WireType, from r: inout ProtoReader) throws(ProtoDecodingError) {
        switch field {
        case 1: revision = try r.readInt64(wt, field: field)
        case 2: change = try r.readMessage(wt, field: field)
        default: try r.skip(wt, field: field)
        }
    }

    func traverse<V: ProtoVisitor>(_ v: inout V) {
        v.int64(1, revision)
        if let encodedChange { v.bytesField(2, encodedChange) } else { v.messageField(2, change) }
    }
}

/// The encodings (`ChangeMessage` bytes) of the changes this member wrote to its WAL most
/// recently, by dot, up to a byte budget, the oldest dropped first. A change is encoded once,
/// for its WAL record (or kept as it arrived from a peer), and peer feeds send those bytes
/// instead of encoding it again for every peer. A dot names one change for good (a member's
/// sequence numbers never repeat, docs/replication.md), so an entry is never stale. A member
/// without peers keeps none (`isKeeping`): nothing would read them.
///
/// Kept per author as a run of consecutive sequence numbers: an author's changes are applied,
/// and so written here, in sequence order, so a run grows at its end and a lookup is an offset
/// (no hashing per change). A change that does not follow its author's run (after a restart or
/// a state transfer) starts a new run.
struct RecentChangeEncodings {
    static let budgetBytes = 8 << 20

    /// Whether encodings are kept; turning it off drops those kept.
    var isKeeping = true {
        didSet {
            guard !isKeeping, !runs.isEmpty else { return }
            runs = []
            order = FIFO()
            totalBytes = 0
        }
    }

    private struct Run {
        let member: UInt64
        /// The seq of `items[0]`.
        var first: UInt64
        var items: FIFO<[UInt8]>
        /// Entries of `order` naming this author for encodings a new run discarded (they are
        /// older than every entry of this run, so they come first). They hold no bytes and leave
        /// `order` as the budget drops older entries; a new run follows only a restart or a state
        /// transfer, so they are few.
        var discardedInOrder = 0

        init(member: UInt64, first: UInt64, encoding: [UInt8], discardedInOrder: Int = 0) {
            self.member = member
            self.first = first
            self.items = FIFO()
            self.items.append(encoding)
            self.discardedInOrder = discardedInOrder
        }
    }

    /// A handful of authors: searched in order.
    private var runs: [Run] = []
    /// The author of each kept encoding, oldest first.
    private var order = FIFO<UInt64>()
    private(set) var totalBytes = 0

    var count: Int { runs.reduce(0) { $0 + $1.items.count } }

    subscript(dot: Dot) -> [UInt8]? {
        guard let run = runs.first(where: { $0.member == dot.member }),
              dot.seq >= run.first, dot.seq - run.first < UInt64(run.items.count) else { return nil }
        return run.items[Int(dot.seq - run.first)]
    }

    mutating func insert(_ dot: Dot, _ encoding: [UInt8]) {
        guard isKeeping else { return }
        if let r = runs.firstIndex(where: { $0.member == dot.member }) {
            let end = runs[r].first + UInt64(runs[r].items.count)
            if dot.seq < end { return }  // kept already, or older than the run
            if dot.seq == end {
                runs[r].items.append(encoding)
            } else {
                totalBytes -= runs[r].items.reduce(0) { $0 + $1.count }
                runs[r] = Run(member: dot.member, first: dot.seq, encoding: encoding,
                              discardedInOrder: runs[r].discardedInOrder + runs[r].items.count)
            }
        } else {
            runs.append(Run(member: dot.member, first: dot.seq, encoding: encoding))
        }
        order.append(dot.member)
        totalBytes += encoding.count
        while totalBytes > Self.budgetBytes, let member = order.popFirst() {
            guard let r = runs.firstIndex(where: { $0.member == member }) else { continue }
            if runs[r].discardedInOrder > 0 {
                runs[r].discardedInOrder -= 1
            } else if let dropped = runs[r].items.popFirst() {
                totalBytes -= dropped.count
                runs[r].first += 1
            }
            if runs[r].items.isEmpty, runs[r].discardedInOrder == 0 { runs.remove(at: r) }
        }
    }
}

/// A first-in first-out queue over an array: taking from the front releases the element and
/// moves a start index, and the array drops its taken front once that is at least half of it.
struct FIFO<Element>: Sequence {
    private var items: [Element?] = []
    private var head = 0

    var count: Int { items.count - head }
    var isEmpty: Bool { count == 0 }

    /// The element `offset` places from the front.
    subscript(offset: Int) -> Element { items[head + offset]! }

    mutating func append(_ element: Element) { items.append(element) }

    mutating func popFirst() -> Element? {
        guard head < items.count else { return nil }
        let element = items[head]
        items[head] = nil
        head += 1
        if head >= 1024, head * 2 >= items.count {
            items.removeFirst(head)
            head = 0
        }
        return element
    }

    func makeIterator() -> LazyMapSequence<ArraySlice<Element?>, Element>.Iterator { items[head...].lazy.map { $0! }.makeIterator() }
}

/// WAL payload of type 2: { 1: revision (int64) }.
struct CompactionRecord: ProtoMessage {
    var revision: Int64 = 0

    init() {}
    init(revision: Int64) { self.revision = revision }

    mutating func decodeField(_ field: Int, _ wt: WireType, from r: inout ProtoReader) throws(ProtoDecodingError) {
        switch field {
        case 1: revision = try r.readInt64(wt, field: field)
        default: try r.skip(wt, field: field)
        }
    }

    func traverse<V: ProtoVisitor>(_ v: inout V) { v.int64(1, revision) }
}

/// Snapshot payload: the whole node-local state.
///
/// ```
/// StoreSnapshot { 1: current revision, 2: compact revision, 6: repeated KeyHistory,
///                 7: repeated LeaseRecord, 9: bytes (Replica.encodeState: version vector,
///                 HLC, DAGs, leases, members) }
/// KeyHistory    { 1: key, 2: repeated VersionRecord }
/// VersionRecord { 1: mod, 2: create, 3: version (0 = deletion), 4: value, 5: lease,
///                 6: dot member, 7: dot seq, 8: value shared }
/// LeaseRecord   { 1: id, 2: ttl seconds, 3: expires at (wall ms) }
/// ```
///
/// `value shared` (snapshot file format 2): the value is not written here because the
/// replicated state holds the same bytes for the same key and dot; restoring takes it from there,
/// so each value is stored, and after a restart held, once.
struct StoreSnapshot: ProtoMessage {
    var currentRevision: Int64 = 1
    var compactRevision: Int64 = -1
    var histories: [KeyHistoryRecord] = []
    var leases: [(id: Int64, ttl: Int64, expiresAt: Int64)] = []
    /// `Replica.encodeState()`: the CRDT state (DAGs, leases, members, HLC, vector, log). When
    /// decoded, the whole snapshot buffer (shared, not copied) with the state at
    /// `replicaStateRange`.
    var replicaState: [UInt8] = [] {
        didSet { replicaStateRange = replicaState.indices }
    }
    private(set) var replicaStateRange: Range<Int> = 0..<0

    init() {}

    mutating func decodeField(_ field: Int, _ wt: WireType, from r: inout ProtoReader) throws(ProtoDecodingError) {
        switch field {
        case 9:
            guard wt == .lengthDelimited else { throw .wrongWireType(field: field, wireType: wt.rawValue) }
            let range = try r.readBytesRange()
            replicaState = r.buffer
            replicaStateRange = range
        case 1: currentRevision = try r.readInt64(wt, field: field)
        case 2: compactRevision = try r.readInt64(wt, field: field)
        case 6: histories.append(try r.readMessage(wt, field: field))
        case 7:
            let l: LeaseRecord = try r.readMessage(wt, field: field)
            leases.append((l.id, l.ttl, l.expiresAt))
        default: try r.skip(wt, field: field)
        }
    }

    func traverse<V: ProtoVisitor>(_ v: inout V) {
        v.int64(1, currentRevision)
        v.varintField(2, UInt64(bitPattern: compactRevision))
        for h in histories { v.messageField(6, h) }
        for l in leases { v.messageField(7, LeaseRecord(id: l.id, ttl: l.ttl, expiresAt: l.expiresAt)) }
        v.bytes(9, replicaStateRange == replicaState.indices ? replicaState : Array(replicaState[replicaStateRange]))
    }
}

extension StoreSnapshot {
    /// Where the replicated state lies in an encoded snapshot (empty if it holds none), found by
    /// skipping every other field, so it can be decoded while the histories are.
    static func replicaStateRange(in bytes: [UInt8]) throws(ProtoDecodingError) -> Range<Int> {
        var reader = ProtoReader(bytes)
        var range = 0..<0
        while let (field, wt) = try reader.nextTag() {
            if field == 9 {
                guard wt == .lengthDelimited else { throw .wrongWireType(field: field, wireType: wt.rawValue) }
                range = try reader.readBytesRange()
            } else {
                try reader.skip(wt, field: field)
            }
        }
        return range
    }
}

/// The versions of a key's history whose value is written once, in the replicated state: each
/// one's position in the history and the dot of the replicated version holding the value,
/// ascending by position. The first is held inline: a history of one version whose value is
/// shared (the norm) needs no allocation, where an array per key was a million small
/// allocations for a restart to make and free.
struct SharedValues: Sequence, ExpressibleByArrayLiteral {
    typealias Element = (position: Int, dot: Dot)
    private var first: Element?
    private var rest: [Element] = []

    init() {}
    init(arrayLiteral elements: Element...) {
        for e in elements { append(e.position, dot: e.dot) }
    }

    var isEmpty: Bool { first == nil }

    /// Adds `position` (greater than every position already held), shared with `dot`'s value.
    mutating func append(_ position: Int, dot: Dot) {
        if first == nil { first = (position, dot) } else { rest.append((position, dot)) }
    }

    struct Iterator: IteratorProtocol {
        var first: Element?
        var rest: IndexingIterator<[Element]>

        mutating func next() -> Element? {
            if let f = first {
                first = nil
                return f
            }
            return rest.next()
        }
    }

    func makeIterator() -> Iterator { Iterator(first: first, rest: rest.makeIterator()) }
}

struct KeyHistoryRecord: ProtoMessage {
    var key: [UInt8] = []
    /// The index's own storage when encoding a whole history (no copy per key).
    var versions = CompactArray<KeyVersion>()
    /// The versions whose value is the replicated state's (not written; empty in `versions`
    /// until restored).
    var sharedValues = SharedValues()

    init() {}
    init(key: [UInt8], versions: CompactArray<KeyVersion>, sharedValues: SharedValues = []) {
        self.key = key
        self.versions = versions
        self.sharedValues = sharedValues
    }

    mutating func decodeField(_ field: Int, _ wt: WireType, from r: inout ProtoReader) throws(ProtoDecodingError) {
        switch field {
        case 1: key = try r.readBytes(wt, field: field)
        case 2:
            let record: VersionRecord = try r.readMessage(wt, field: field)
            if record.shared { sharedValues.append(versions.count, dot: record.dot) }
            versions.append(record.version)
        default: try r.skip(wt, field: field)
        }
    }

    func traverse<V: ProtoVisitor>(_ v: inout V) {
        v.bytes(1, key)
        // Both ascend: walked side by side (a lookup per version would be quadratic).
        var shared = sharedValues.makeIterator()
        var nextShared = shared.next()
        for (i, version) in versions.enumerated() {
            var dot: Dot?
            if let s = nextShared, s.position == i {
                dot = s.dot
                nextShared = shared.next()
            }
            v.messageField(2, VersionRecord(version, sharedWith: dot))
        }
    }
}

/// One version of a key's history. Its value is written here (field 4), or, when the
/// replicated state holds the same bytes, only named there: `shared` (field 8) and the dot of
/// the replicated version holding it (fields 6 and 7, written only then).
struct VersionRecord: ProtoMessage {
    var version = KeyVersion(modRevision: 0, createRevision: 0, version: 0, value: [], lease: 0)
    var shared = false
    var dot = Dot(member: 0, seq: 0)

    init() {}
    init(_ version: KeyVersion, sharedWith dot: Dot? = nil) {
        self.version = version
        if let dot {
            self.shared = true
            self.dot = dot
        }
    }

    mutating func decodeField(_ field: Int, _ wt: WireType, from r: inout ProtoReader) throws(ProtoDecodingError) {
        switch field {
        case 1: version.modRevision = try r.readInt64(wt, field: field)
        case 2: version.createRevision = try r.readInt64(wt, field: field)
        case 3: version.version = try r.readInt64(wt, field: field)
        case 4: version.value = try r.readBytes(wt, field: field)
        case 5: version.lease = try r.readInt64(wt, field: field)
        case 6: dot.member = try r.readUInt64(wt, field: field)
        case 7: dot.seq = try r.readUInt64(wt, field: field)
        case 8: shared = try r.readBool(wt, field: field)
        default: try r.skip(wt, field: field)
        }
    }

    func traverse<V: ProtoVisitor>(_ v: inout V) {
        v.int64(1, version.modRevision)
        v.int64(2, version.createRevision)
        v.int64(3, version.version)
        if !shared { v.bytes(4, version.value) }
        v.int64(5, version.lease)
        if shared {
            v.uint64(6, dot.member)
            v.uint64(7, dot.seq)
        }
        v.bool(8, shared)
    }
}

struct LeaseRecord: ProtoMessage {
    var id: Int64 = 0
    var ttl: Int64 = 0
    var expiresAt: Int64 = 0

    init() {}
    init(id: Int64, ttl: Int64, expiresAt: Int64) {
        self.id = id
        self.ttl = ttl
        self.expiresAt = expiresAt
    }

    mutating func decodeField(_ field: Int, _ wt: WireType, from r: inout ProtoReader) throws(ProtoDecodingError) {
        switch field {
        case 1: id = try r.readInt64(wt, field: field)
        case 2: ttl = try r.readInt64(wt, field: field)
        case 3: expiresAt = try r.readInt64(wt, field: field)
        default: try r.skip(wt, field: field)
        }
    }

    func traverse<V: ProtoVisitor>(_ v: inout V) {
        v.int64(1, id)
        v.int64(2, ttl)
        v.int64(3, expiresAt)
    }
}
