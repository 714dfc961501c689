/// One member's copy of the replicated state (docs/architecture.md): the key version DAGs, leases and
/// members, the version vector, the change log peers may still need, and the causal buffer.
/// Pure and deterministic: no I/O, no threads, time only through the injected `WallClock`
/// (which feeds the HLC). Not thread-safe; owned by the store's writer.
///
/// Two ways in:
/// - `makeChange(_:)` for a local write: the store has already evaluated etcd's semantics and
///   knows what it puts and deletes; the replica stamps the change (next dot, deps, HLC), fills
///   every put/delete's `parents` with the key's current heads, and applies it.
/// - `apply(remote:)` for a change from a peer (or from the WAL on restart, own changes
///   included): duplicates are ignored; a change whose causal dependencies are missing is
///   buffered until they arrive; applying it may release buffered ones.
/// Both return `AppliedChange`s: per written key, the visible value before and after — what the
/// store turns into a local revision and watch events (PUT with the new value, DELETE when the
/// key disappeared, nothing when the visible value did not change).
///
/// Invariants:
/// - a change is applied only after every change it depends on (`vector` covers its `deps` and
///   its origin's previous seq), and at most once;
/// - the visible keyspace, leases and members are pure functions of the *set* of applied
///   changes: replicas that applied the same changes, in any causal order, with any
///   interleaving of restarts and garbage collection, show identical state and `stateHash()`;
/// - a key whose DAG has a single live head shows exactly the bytes written (no JSON parsing).
public struct Replica: Sendable {
    public static let defaultCausalBufferLimit = 100_000

    public let member: UInt64
    public let mergeMode: MergeMode
    /// Per member, the highest seq applied contiguously (causally closed: it covers the deps of
    /// everything it covers).
    public private(set) var vector = VersionVector()
    public private(set) var clock: HybridClock
    /// Every change applied here and not yet known to be held by all members, in application
    /// order (a causal order). Garbage collection trims its stable prefix.
    public private(set) var log: [Change] = []
    /// The absolute position of `log[0]`: how many entries were ever trimmed from the front.
    /// Positions (`logBase ..< logEnd`) let a peer feed resume where it stopped without
    /// rescanning the log.
    public private(set) var logBase = 0
    public var logEnd: Int { logBase + log.count }
    /// The other members configured at start-up (etcd member ids; `setPeerMembers`).
    public private(set) var configuredPeers: Set<UInt64> = []
    /// This member's etcd member id once it takes part in replicated membership (0: it does not,
    /// and members in the replicated table do not count for stability).
    public private(set) var localMember: UInt64 = 0
    /// Per peer member, the latest usable report: the peer's durable vector, recorded only when
    /// this replica had applied everything it names (see `recordReport`).
    public private(set) var peerReports: [UInt64: VersionVector] = [:]
    /// Changes covered by this vector may have been dropped from `log`.
    public private(set) var logFloor = VersionVector()

    private(set) var dags = StoredKeyMap<KeyVersionDAG>()
    /// Keys whose DAG garbage collection could shrink (several versions, tombstones, stale edges).
    private var collectable: Set<StoredKey> = []
    /// Per dot author, the collectable keys waiting for one of their versions by that author to
    /// become stable (a min-heap on seq). Whether a key can shrink depends only on its DAG and the
    /// stable vector, and its DAG changes only by a new version (queued here): so a collection
    /// visits only the keys one of whose versions just became stable, not every collectable key.
    /// A key with a version of a silent member stays collectable without costing each collection
    /// a visit.
    private var stabilityQueues: [UInt64: StabilityQueue] = [:]
    /// Keys to visit at the next collection whatever moved: long histories skipped this time, keys
    /// that shrank and may shrink further, versions that were already stable when queued.
    private var revisit: Set<StoredKey> = []
    /// The stable vector of the last collection. While it does not move (a member is down or
    /// silent) nothing can be collected: a version written since is not stable, and dropping a
    /// version needs a stable child or stable heads. Collections then visit no key at all, so a
    /// key written all through a partition does not cost a scan of its history per batch.
    private var lastStable: VersionVector?
    /// Keys with a long history are collected only every so many collections (one per
    /// `longHistory` versions held), so a burst of stability moves after a partition heals does
    /// not rescan a key of tens of thousands of versions each time: per collection, a key costs
    /// about `longHistory` visits amortised.
    private var collectionsToSkip: [StoredKey: Int] = [:]
    static let longHistory = 1_024
    private(set) var leaseTable = LeaseTable()
    private(set) var memberTable = MemberTable()
    private(set) var authTable = AuthTable()
    private var buffer: CausalBuffer

    public init(member: UInt64, mergeMode: MergeMode = .json, wallClock: any WallClock = SystemWallClock(),
                causalBufferLimit: Int = Replica.defaultCausalBufferLimit, causalBufferBytes: Int = 64 << 20) {
        precondition(member != 0, "member id 0 is reserved")
        self.member = member
        self.mergeMode = mergeMode
        self.clock = HybridClock(wall: wallClock)
        self.buffer = CausalBuffer(limit: causalBufferLimit, limitBytes: causalBufferBytes)
    }

    /// Whether `dot` waits in the causal buffer.
    public func isPending(_ dot: Dot) -> Bool { buffer.contains(dot) }

    // MARK: local writes

    /// Stamps `ops` as this member's next change, applies it and returns its effects.
    ///
    /// The `parents` of put and delete ops are ignored and replaced by the key's heads before
    /// this change (a change writes one version per key: when several ops touch one key, the
    /// last decides the value). A local put therefore supersedes every concurrent version: the
    /// key then shows exactly the bytes put, and a local delete removes it — locally a write
    /// always behaves exactly like etcd. An empty `ops` still takes a seq (callers skip those).
    @discardableResult
    public mutating func makeChange(_ ops: [Op]) -> AppliedChange {
        var stamped = ops
        for i in stamped.indices {
            switch stamped[i] {
            case .put(let key, let value, let lease, _):
                stamped[i] = .put(key: key, value: value, lease: lease, parents: dags[StoredKey(key)]?.heads ?? [])
            case .delete(let key, _):
                stamped[i] = .delete(key: key, parents: dags[StoredKey(key)]?.heads ?? [])
            default:
                break
            }
        }
        let change = Change(id: Dot(member: member, seq: vector[member] &+ 1), deps: vector, hlc: clock.tick(), ops: stamped)
        return integrate(change)
    }

    /// The ops that revoke `lease` here: a delete of every key whose visible value is attached to
    /// it, then the revoke (docs/consistency.md, "Leases": revocation deletes the attached keys it has seen).
    /// A key attached concurrently elsewhere survives (add-wins); `keysWithDeadLeases()` finds
    /// such keys for the lessor's sweep. O(keys).
    public func revokeOps(lease: Int64) -> [Op] {
        keys(attachedTo: lease).map { Op.delete(key: $0, parents: []) } + [.leaseRevoke(id: lease)]
    }

    // MARK: remote changes

    /// Applies a change received from a peer, or replayed from the WAL (own changes included).
    ///
    /// Returns the changes applied, in order: none if `change` was already applied or buffered
    /// (idempotent) or is now buffered waiting for its dependencies; otherwise `change` followed
    /// by any buffered changes it released. Throws for a change that violates the protocol
    /// (nothing is applied) and when the causal buffer is full (the sender should retry later).
    public mutating func apply(remote change: Change) throws(ReplicaError) -> [AppliedChange] {
        try Replica.validate(change)
        if vector.contains(change.id) || buffer.contains(change.id) { return [] }
        clock.observe(change.hlc)
        guard vector[change.id.member] &+ 1 == change.id.seq, vector.covers(change.deps) else {
            guard buffer.insert(change) else { throw .causalBufferFull(limit: buffer.limit) }
            return []
        }
        var applied = [integrate(change)]
        while let next = buffer.popDeliverable(vector) { applied.append(integrate(next)) }
        return applied
    }

    /// Changes received but not yet applied (waiting for dependencies), ascending by dot.
    public var pendingChanges: [Change] { buffer.all }
    public var pendingCount: Int { buffer.count }
    public var pendingBytes: Int { buffer.bytes }

    /// Forgets the buffered changes: they were never counted as received (the vector does not
    /// cover them), so their senders send them again. A store does this when it restores a
    /// snapshot, because the WAL only holds changes that were applied.
    public mutating func dropPendingChanges() { buffer.removeAll() }

    /// A copy for another thread to read at leisure (a snapshot's encoder). The key map is not
    /// copied, now or later: it stays shared with the copy, and this replica's changes go to a
    /// small overlay until the copy is gone (`StoredKeyMap.capture`).
    public mutating func capture() -> Replica {
        var copy = self
        copy.dags = dags.capture()
        return copy
    }

    static func validate(_ change: Change) throws(ReplicaError) {
        let id = change.id
        guard id.member != 0, id.seq != 0 else { throw .invalidChange(id, "member and seq must be non-zero") }
        guard change.deps.entries[0] == nil else { throw .invalidChange(id, "deps name member 0") }
        guard change.deps[id.member] < id.seq else { throw .invalidChange(id, "deps cover the change itself") }
        for op in change.ops {
            switch op {
            case .put(_, _, _, let parents), .delete(_, let parents):
                for p in parents where p != id && !change.deps.contains(p) {
                    throw .invalidChange(id, "parent \(p.member):\(p.seq) is not covered by deps")
                }
            default:
                break
            }
        }
    }

    // MARK: applying

    private mutating func integrate(_ change: Change) -> AppliedChange {
        vector[change.id.member] = change.id.seq
        var writes: [PendingWrite] = []
        var slot: [[UInt8]: Int] = [:]
        var leasesChanged: [Int64] = []
        var membersChanged: [UInt64] = []
        var authChanged = false
        for op in change.ops {
            switch op {
            case .put(let key, let value, let lease, let parents):
                record(PendingWrite(key: key, value: value, lease: lease, parents: parents), into: &writes, slot: &slot, manyOps: change.ops.count > 1)
            case .delete(let key, let parents):
                record(PendingWrite(key: key, value: nil, lease: 0, parents: parents), into: &writes, slot: &slot, manyOps: change.ops.count > 1)
            case .leaseGrant(let id, _), .leaseRevoke(let id), .leaseCheckpoint(let id, _):
                if leaseTable.apply(op, of: change), !leasesChanged.contains(id) { leasesChanged.append(id) }
            case .memberAdd, .memberUpdate, .memberRemove, .memberPublish:
                if let id = memberTable.apply(op, of: change), !membersChanged.contains(id) { membersChanged.append(id) }
            case .auth(let a):
                authTable.apply(a, of: change)
                authChanged = true
            }
        }
        var effects: [KeyEffect] = []
        effects.reserveCapacity(writes.count)
        for w in writes {
            var parents = w.parents
            if !Replica.isStrictlyAscending(parents) || parents.contains(change.id) {
                parents = Array(Set(parents).subtracting([change.id])).sorted()
            }
            let version = KeyVersion(dot: change.id, hlc: change.hlc, value: w.value, lease: w.lease, parents: parents)
            let key = StoredKey(w.key)
            let (before, after, isCollectable, resolution) = Replica.add(version, to: &dags[key, default: KeyVersionDAG()], mode: mergeMode)
            if isCollectable {
                if collectable.insert(key).inserted {
                    // Newly collectable: any of its versions becoming stable may let it shrink.
                    for v in dags[key]!.versions { awaitStability(of: v.dot, key: key) }
                } else {
                    awaitStability(of: change.id, key: key)
                }
            }
            if let resolution { noteResolution(resolution, key: w.key) }
            effects.append(KeyEffect(key: w.key, before: before, after: after))
        }
        log.append(change)
        return AppliedChange(change: change, effects: effects, leasesChanged: leasesChanged, membersChanged: membersChanged, changesAuth: authChanged)
    }

    /// Queues `key` to be visited once `dot` is stable (at the next collection if it already is).
    private mutating func awaitStability(of dot: Dot, key: StoredKey) {
        if let last = lastStable, last.contains(dot) {
            revisit.insert(key)
        } else {
            stabilityQueues[dot.member, default: StabilityQueue()].push(seq: dot.seq, key: key)
        }
    }

    /// One dictionary access per written key on the hot path.
    private static func add(_ version: KeyVersion, to dag: inout KeyVersionDAG, mode: MergeMode)
        -> (before: VisibleValue?, after: VisibleValue?, isCollectable: Bool, resolution: KeyVersionDAG.Resolution?) {
        let before = dag.isEmpty ? nil : dag.visible
        let resolution = dag.add(version, mode: mode)
        return (before, dag.visible, dag.isCollectable, resolution)
    }

    // MARK: conflicts (what concurrent writes overwrote)

    /// Counts of how applied changes that left a key with several differing live heads were
    /// resolved, since this replica was created (not persisted).
    public struct MergeCounters: Sendable, Equatable {
        /// Resolved by last writer wins, whole values (not JSON objects, or `--merge=lww`).
        public var lastWriterWins = 0
        /// Resolved by a field-level merge.
        public var merges = 0
        /// Values inside those merges changed differently by several heads (the winner's kept).
        public var mergeConflicts = 0
        /// Merges against a base that is itself a merge (criss-cross histories), and array
        /// regions both sides changed differently.
        public var crissCrossMerges = 0
        public var adjacentArrayEdits = 0
        /// Merges against a common ancestor document (three-way), not creations.
        public var sharedBaseMerges = 0

        public init() {}
    }

    /// A resolution that overwrote something: the key, the winning head, the others.
    public struct ConflictRecord: Sendable, Equatable {
        public var key: [UInt8]
        public var resolution: KeyVersionDAG.Resolution
    }

    public private(set) var mergeCounters = MergeCounters()
    /// The latest records (at most `conflictRecordLimit`), for the operator's log.
    private var conflictRecords: [ConflictRecord] = []
    private var droppedConflictRecords = 0
    static let conflictRecordLimit = 256

    private mutating func noteResolution(_ r: KeyVersionDAG.Resolution, key: [UInt8]) {
        switch r.kind {
        case .lastWriterWins:
            mergeCounters.lastWriterWins += 1
        case .merged(let conflicts):
            mergeCounters.merges += 1
            mergeCounters.mergeConflicts += conflicts
            if r.crissCross { mergeCounters.crissCrossMerges += 1 }
            if r.sharedBase { mergeCounters.sharedBaseMerges += 1 }
            mergeCounters.adjacentArrayEdits += r.adjacentArrayEdits
            if conflicts == 0 { return }
        }
        if conflictRecords.count >= Replica.conflictRecordLimit {
            conflictRecords.removeFirst()
            droppedConflictRecords += 1
        }
        conflictRecords.append(ConflictRecord(key: key, resolution: r))
    }

    /// Hands out (and forgets) the records of resolutions that overwrote something, and how many
    /// were dropped because the record buffer was full.
    public mutating func drainConflicts() -> (records: [ConflictRecord], dropped: Int) {
        defer { conflictRecords = []; droppedConflictRecords = 0 }
        return (conflictRecords, droppedConflictRecords)
    }

    private struct PendingWrite {
        var key: [UInt8]
        var value: [UInt8]?
        var lease: Int64
        var parents: [Dot]
    }

    /// Several ops on one key in one change make one version: the last op's value and lease, the
    /// union of their parents.
    private func record(_ w: PendingWrite, into writes: inout [PendingWrite], slot: inout [[UInt8]: Int], manyOps: Bool) {
        guard manyOps else { writes.append(w); return }
        if let i = slot[w.key] {
            writes[i].value = w.value
            writes[i].lease = w.lease
            writes[i].parents += w.parents
        } else {
            slot[w.key] = writes.count
            writes.append(w)
        }
    }

    private static func isStrictlyAscending(_ dots: [Dot]) -> Bool {
        var i = 1
        while i < dots.count { if !(dots[i - 1] < dots[i]) { return false }; i += 1 }
        return true
    }

    // MARK: reads

    /// The visible value of `key`, nil when absent.
    public func visible(_ key: [UInt8]) -> VisibleValue? { dags[StoredKey(key)]?.visible }

    /// The DAG of `key` in `sorted` (ascending by key bytes), looking from `cursor` on: callers
    /// that visit keys in ascending order walk beside the list instead of a lookup per key.
    /// Moves `cursor` to the first entry not before `key`.
    public static func dag(of key: [UInt8], in sorted: [(key: StoredKey, dag: KeyVersionDAG)],
                           from cursor: inout Int) -> (key: StoredKey, dag: KeyVersionDAG)? {
        while cursor < sorted.count && compareBytes(sorted[cursor].key.bytes, key) < 0 { cursor += 1 }
        return cursor < sorted.count && sorted[cursor].key.bytes == key ? sorted[cursor] : nil
    }

    /// Every key with its DAG (present or tombstoned) for which `include` holds, ascending by
    /// key bytes. O(n log n).
    public func sortedDAGs(where include: (StoredKey) -> Bool = { _ in true }) -> [(key: StoredKey, dag: KeyVersionDAG)] {
        var keys: [[UInt8]] = []
        var entries: [(key: StoredKey, dag: KeyVersionDAG)] = []
        for (key, dag) in dags where include(key) {
            keys.append(key.bytes)
            entries.append((key, dag))
        }
        // Sorting positions moves plain integers; sorting the entries themselves retains and
        // releases three references per move.
        var order = Array(0..<keys.count)
        keys.withUnsafeBufferPointer { k in order.sort { bytesLess(k[$0], k[$1]) } }
        return order.map { entries[$0] }
    }

    /// Every present key with its visible value, ascending by key bytes. O(n log n).
    public func visibleKeyspace() -> [VisibleEntry] {
        var out: [VisibleEntry] = []
        out.reserveCapacity(dags.count)
        for (key, dag) in dags { if let v = dag.visible { out.append(VisibleEntry(key: key.bytes, value: v)) } }
        out.sort { bytesLess($0.key, $1.key) }
        return out
    }

    /// The version DAG held for `key` (for inspection and tests), nil if none is held.
    public func dag(_ key: [UInt8]) -> KeyVersionDAG? { dags[StoredKey(key)] }

    /// How many keys have a DAG (visible or tombstoned) and how many versions they hold.
    public var storedKeyCount: Int { dags.count }
    public var storedVersionCount: Int { dags.reduce(0) { $0 + $1.value.versions.count } }
    public var storedTombstoneCount: Int {
        dags.reduce(0) { $0 + $1.value.versions.filter(\.isTombstone).count }
    }

    /// A live lease (granted and not revoked), nil otherwise.
    public func lease(_ id: Int64) -> LeaseInfo? { leaseTable.info(id) }
    /// The replica ids (dot members) whose live grants keep lease `id`: who expires it.
    public func leaseGrantOrigins(_ id: Int64) -> Set<UInt64> { leaseTable.grantOrigins(id) }
    /// All live leases, ascending by id.
    public var leases: [LeaseInfo] { leaseTable.all }

    /// Current members, ascending by id, and the ids removed for good.
    public var members: [Member] { memberTable.members }
    public var removedMembers: Set<UInt64> { Set(memberTable.removed.keys) }
    /// Whether member `id` was removed (for good).
    public func isRemoved(_ id: UInt64) -> Bool { memberTable.removed[id] != nil }
    /// A current member, nil when unknown or removed.
    public func member(_ id: UInt64) -> Member? { memberTable.member(id) }

    /// The visible auth state (users, roles, permissions, enabled flag). O(auth entries).
    public var authState: AuthState { authTable.state }
    /// `authState.revision`, without building the state.
    public var authRevision: UInt64 { authTable.applied + 1 }

    /// Visible keys attached to `lease`, ascending. O(keys).
    public func keys(attachedTo lease: Int64) -> [[UInt8]] {
        dags.compactMap { $0.value.visible?.lease == lease && lease != 0 ? $0.key.bytes : nil }
            .sorted { $0.lexicographicallyPrecedes($1) }
    }

    /// Visible keys attached to a lease that is not live (revoked, or granted and revoked
    /// before this node saw it), ascending: what the lessor's sweep deletes. O(keys).
    public func keysWithDeadLeases() -> [[UInt8]] {
        dags.compactMap { key, dag -> [UInt8]? in
            guard let lease = dag.visible?.lease, lease != 0, leaseTable.info(lease) == nil else { return nil }
            return key.bytes
        }.sorted { $0.lexicographicallyPrecedes($1) }
    }

    /// SHA-256 over the visible keyspace (keys, values, leases), the live leases and the
    /// members, in a fixed order. Equal on every replica that applied the same changes, however
    /// they were delivered, restarted or garbage collected. O(state).
    public func stateHash() -> [UInt8] {
        var h = SHA256.Hasher()
        func bytes(_ b: [UInt8]) { h.update(uint64: UInt64(b.count)); h.update(b) }
        let keyspace = visibleKeyspace()
        h.update(uint64: UInt64(keyspace.count))
        for e in keyspace { bytes(e.key); bytes(e.value.value); h.update(uint64: UInt64(bitPattern: e.value.lease)) }
        let leases = leaseTable.all
        h.update(uint64: UInt64(leases.count))
        for l in leases {
            h.update(uint64: UInt64(bitPattern: l.id))
            h.update(uint64: UInt64(bitPattern: l.ttlSeconds))
            h.update(uint64: UInt64(bitPattern: l.expiresAtMilliseconds))
        }
        let members = memberTable.members
        h.update(uint64: UInt64(members.count))
        for m in members {
            h.update(uint64: m.id); bytes(Array(m.name.utf8)); h.update(uint64: m.isLearner ? 1 : 0)
            h.update(uint64: UInt64(m.peerURLs.count)); for u in m.peerURLs { bytes(Array(u.utf8)) }
            h.update(uint64: UInt64(m.clientURLs.count)); for u in m.clientURLs { bytes(Array(u.utf8)) }
        }
        let removed = memberTable.removed.keys.sorted()
        h.update(uint64: UInt64(removed.count))
        for id in removed { h.update(uint64: id) }
        // The auth state without its revision (a per-member count).
        let auth = authTable.state
        h.update(uint64: auth.enabled ? 1 : 0)
        h.update(uint64: UInt64(auth.users.count))
        for name in auth.users.keys.sorted() {
            let u = auth.users[name]!
            bytes(Array(name.utf8)); bytes(Array(u.passwordHash.utf8)); h.update(uint64: u.noPassword ? 1 : 0)
            h.update(uint64: UInt64(u.roles.count)); for r in u.roles { bytes(Array(r.utf8)) }
        }
        h.update(uint64: UInt64(auth.roles.count))
        for name in auth.roles.keys.sorted() {
            let perms = auth.roles[name]!
            bytes(Array(name.utf8))
            h.update(uint64: UInt64(perms.count))
            for p in perms { h.update(uint64: UInt64(p.type.rawValue)); bytes(p.key); bytes(p.rangeEnd) }
        }
        return h.finalize()
    }

    // MARK: anti-entropy

    /// The changes a peer whose vector is `peer` lacks, in causal order; nil when some of them
    /// were already garbage collected from the log (the peer needs a state snapshot instead).
    /// Buffered (not yet applied) changes are not included.
    public func changes(since peer: VersionVector) -> [Change]? {
        changes(from: 0, to: logEnd, lacking: peer, maxBytes: .max)?.changes
    }

    /// A page of the changes a peer lacks, reading the log from absolute `position` up to (not
    /// including) `end`: at most `maxBytes` (`Change.approximateBytes`; at least one change), and
    /// the position to continue from. nil when the peer lacks changes that were trimmed from
    /// the log (it needs a state transfer). O(entries read).
    /// Changes authored by a member in `skipping` are passed over (the peer gets them from their
    /// author).
    public func changes(from position: Int, to end: Int, lacking peer: VersionVector, maxBytes: Int,
                        skipping: Set<UInt64> = []) -> (changes: [Change], next: Int)? {
        var i = max(position, logBase)
        // Reading from the log's start needs the peer to hold everything below the floor. Not
        // only when entries were trimmed under this reader: a replica restarted from a snapshot
        // or given a transferred state has a floor at position 0 too. (A feed merges the peer's
        // recorded report into `peer`, and stability only trims what every report covers, so
        // this does not ask a peer that holds the trimmed changes for a state transfer.)
        if position <= logBase && !peer.covers(logFloor) { return nil }
        let stop = min(end, logEnd)
        var out: [Change] = []
        var bytes = 0
        while i < stop {
            let c = log[i - logBase]
            i += 1
            if peer.contains(c.id) || (!skipping.isEmpty && skipping.contains(c.id.member)) { continue }
            out.append(c)
            bytes += c.approximateBytes
            if bytes >= maxBytes { break }
        }
        return (out, max(i, position))
    }

    // MARK: state transfer

    /// The state to send a member that lacks changes trimmed from the log: this replica without
    /// its causal buffer (changes not applied here are not part of its state).
    public func transferState() -> [UInt8] {
        var copy = self
        copy.buffer.removeAll()
        return copy.encodeState()
    }

    /// Replaces this replica's state by `transferred`, another member's state (a state
    /// transfer), keeping this replica's id, HLC (advanced past the other's), peer members and
    /// reports. Changes this replica applied that `transferred` lacks are all still in this
    /// replica's log (it only trims changes stable at every member); they are applied again on
    /// top, in log order, so nothing written here is lost. Buffered changes stay buffered.
    ///
    /// Throws `.transferBehind` — and changes nothing — when `transferred` does not cover this
    /// replica's log floor (it lacks changes this replica no longer holds), or when a change
    /// of this replica's log does not apply on top of it.
    ///
    /// Log positions continue past this replica's log end, so a peer feed reading from an older
    /// position reads the new log from its start (filtered by what the peer holds), once the
    /// peer is known to hold the new log floor.
    public mutating func install(transferred: Replica) throws(ReplicaError) {
        guard transferred.vector.covers(logFloor) else {
            throw .transferBehind("the transferred state's vector does not cover this replica's log floor")
        }
        var clock = self.clock
        clock.observe(transferred.clock.last)
        var next = Replica(member: member, mergeMode: mergeMode, clock: clock, vector: transferred.vector,
                           logFloor: transferred.logFloor, dags: transferred.dags, leaseTable: transferred.leaseTable,
                           memberTable: transferred.memberTable, authTable: transferred.authTable, log: transferred.log, buffer: buffer.emptied())
        // Past every position handed out so far, 0 included: every reader must then check that
        // its peer holds the new floor.
        next.logBase = logEnd + 1
        for change in log where !transferred.vector.contains(change.id) {
            let applied: [AppliedChange]
            do {
                applied = try next.apply(remote: change)
            } catch {
                throw .transferBehind("change \(change.id.member):\(change.id.seq) of this replica does not apply on it: \(error)")
            }
            guard !applied.isEmpty else {
                throw .transferBehind("change \(change.id.member):\(change.id.seq) of this replica lacks dependencies in it")
            }
        }
        for change in buffer.all where !next.vector.contains(change.id) {
            _ = try? next.apply(remote: change)
        }
        next.configuredPeers = configuredPeers
        next.localMember = localMember
        next.mergeCounters = mergeCounters
        next.peerReports = peerReports.filter { next.vector.covers($0.value) }
        self = next
    }

    // MARK: stability (what every member holds)

    /// Sets the other members of the cluster as configured, and (when not 0) this member's own
    /// id, which makes every member of the replicated membership count too. Once there is any
    /// other member, garbage collection needs a usable report from each of them: stability is
    /// never computed from this replica's own vector alone.
    public mutating func setPeerMembers(_ members: Set<UInt64>, local: UInt64 = 0) {
        configuredPeers = members
        localMember = local
        let current = peerMembers
        peerReports = peerReports.filter { current.contains($0.key) }
    }

    /// The other members whose reports decide stability: the configured ones and (with a local
    /// member id) every member of the replicated membership, each while it is not removed; a
    /// removed member until it has *departed*. Empty for a single member, whose own vector is
    /// then its stable point.
    ///
    /// A removed member departs once this replica and every remaining member (by its recorded
    /// report) hold a change that removed it. Why that is safe: a member that applied the
    /// removal no longer takes anything from the removed member (its links close, and a batch
    /// from a removed member is refused), and the batch that applies a removal ends by dropping
    /// the causal buffer (`dropPendingChanges`, done by the store); so
    /// every change of the removed member that will ever be applied was applied by some
    /// remaining member before its report covered the removal — and this replica records a
    /// report only once it applied everything the report names. No change of the removed
    /// member can arrive later with dependencies below the stable point.
    public var peerMembers: Set<UInt64> {
        var active = configuredPeers
        if localMember != 0 { active.formUnion(memberTable.records.keys) }
        active.remove(localMember)
        let removed = memberTable.removed
        if removed.isEmpty { return active }
        let remaining = active.filter { removed[$0] == nil }
        var out = remaining
        for (candidate, dot) in removed where candidate != localMember && (localMember != 0 || configuredPeers.contains(candidate)) {
            let departed = vector.contains(dot) && remaining.allSatisfy { peerReports[$0]?.contains(dot) == true }
            if !departed { out.insert(candidate) }
        }
        return out
    }

    /// Records `member`'s report of its durable vector. Kept only when this replica has applied
    /// every change the report names: then any change this replica has not applied yet is held
    /// by no member (as of its report), so it can only be created later — with deps covering
    /// the creator's report. A report that names changes missing here is ignored (the previous
    /// usable one stays; reports only grow). Returns whether it was recorded.
    @discardableResult
    public mutating func recordReport(from member: UInt64, vector report: VersionVector) -> Bool {
        guard peerMembers.contains(member), vector.covers(report) else { return false }
        if let previous = peerReports[member], !report.covers(previous) { return false }
        peerReports[member] = report
        return true
    }

    /// The recorded report of `member`: what it is known to hold.
    public func report(of member: UInt64) -> VersionVector? { peerReports[member] }

    /// Forgets `member`'s report (its data directory was replaced): stability waits for its
    /// next report, which may be smaller.
    public mutating func forgetReport(from member: UInt64) {
        peerReports[member] = nil
    }

    /// The largest vector garbage collection may treat as stable: this replica's vector for a
    /// single member; otherwise the pointwise minimum of it and every peer member's usable
    /// report, or nothing while some peer member has not reported.
    public var stableBound: VersionVector {
        let members = peerMembers
        if members.isEmpty { return vector }
        var stable = vector
        for member in members {
            guard let report = peerReports[member] else { return VersionVector() }
            for (m, s) in stable.entries { stable[m] = min(s, report[m]) }
        }
        return stable
    }

    // MARK: garbage collection

    /// Forgets what no replica can need any more, given a *stable vector*; never changes the
    /// visible state. Cost: O(keys with more than one version or with tombstones + log).
    ///
    /// Precondition on `stableVector` (it is clamped to `vector`): every change not yet applied
    /// here — buffered, in flight, or not yet created — has `deps` covering it. Then everything
    /// it covers is causally stable: every future change descends from it. A single node passes
    /// its own `vector`; a cluster member records its peers' reports (`recordReport`) and the
    /// collection is clamped to `stableBound`.
    ///
    /// Drops: keys whose heads are all stable tombstones; stable non-head versions that can no
    /// longer be a merge base (see `KeyVersionDAG`); log entries it covers. On a single node this
    /// leaves exactly one version per live key and no tombstones: memory like a plain map.
    ///
    /// The vector is also clamped to `stableBound`: with peer members, only what every one of
    /// them reported can be collected, whatever the caller passes (a replica of a cluster cannot
    /// be collected against its own vector).
    @discardableResult
    public mutating func collectGarbage(stableVector: VersionVector) -> GarbageCollectionStats {
        var stable = VersionVector()
        let bound = stableBound
        for (m, s) in stableVector.entries { stable[m] = min(s, bound[m]) }
        var stats = GarbageCollectionStats()
        let stableMoved = stable != lastStable
        lastStable = stable
        var visit = revisit
        revisit = []
        if stableMoved {
            for (m, s) in stable.entries {
                guard var queue = stabilityQueues[m], queue.minSeq.map({ $0 <= s }) == true else { continue }
                while let seq = queue.minSeq, seq <= s { visit.insert(queue.pop()) }
                stabilityQueues[m] = queue.isEmpty ? nil : queue
            }
        }
        for key in visit where collectable.contains(key) {
            let versions = dags[key]!.versions.count
            if versions > Replica.longHistory && !dags[key]!.collapses(stable: stable) {
                if let skip = collectionsToSkip[key], skip > 0 {
                    collectionsToSkip[key] = skip - 1
                    revisit.insert(key)
                    continue
                }
                collectionsToSkip[key] = versions / Replica.longHistory
            } else if !collectionsToSkip.isEmpty {
                collectionsToSkip[key] = nil
            }
            stats.visitedKeys += 1
            let (result, held, stillCollectable) = Replica.collect(&dags[key]!, stable: stable, mode: mergeMode, work: &stats.visitedVersions)
            switch result {
            case .removeKey:
                dags[key] = nil
                collectable.remove(key)
                collectionsToSkip[key] = nil
                stats.removedKeys += 1
                stats.droppedVersions += held
            case .shrunk(let dropped):
                stats.droppedVersions += dropped
                if !stillCollectable {
                    collectable.remove(key)
                    collectionsToSkip[key] = nil
                } else {
                    // A bounded number of passes ran: look again next time (it leaves once unchanged).
                    revisit.insert(key)
                }
            case .unchanged:
                break
            }
        }
        guard stableMoved else { return stats }
        // Only the stable prefix is trimmed, so log positions stay valid for peer feeds; a
        // stable entry behind an unstable one goes once the entries before it are stable.
        var dropped = 0
        while dropped < log.count, stable.contains(log[dropped].id) {
            let id = log[dropped].id
            if id.seq > logFloor[id.member] { logFloor[id.member] = id.seq }
            dropped += 1
        }
        if dropped > 0 {
            log.removeFirst(dropped)
            logBase += dropped
        }
        stats.droppedLogEntries = dropped
        return stats
    }

    private static func collect(_ dag: inout KeyVersionDAG, stable: VersionVector, mode: MergeMode, work: inout Int)
        -> (KeyVersionDAG.CollectionResult, held: Int, stillCollectable: Bool) {
        let held = dag.versions.count
        let result = dag.collectGarbage(stable: stable, mode: mode, work: &work)
        return (result, held, dag.isCollectable)
    }

    /// A stable vector for `collectGarbage` from the vectors the other members reported, as a
    /// pure function (a replica with peer members computes the same bound itself, from the
    /// reports it recorded: `stableBound`).
    ///
    /// `peers` must hold a report from every other current member (any member that may still
    /// create changes), each the member's own vector at the time it was sent. A report is only
    /// usable once this replica has applied the reporting member's own changes up to what the
    /// report claims (`local[X] >= report[X]`): then every change X creates later has deps
    /// covering the report. If any report is not yet usable, nothing is stable (empty vector).
    /// Otherwise the result is the pointwise minimum of `local` and the reports.
    public static func stableVector(local: VersionVector, localMember: UInt64, peers: [UInt64: VersionVector]) -> VersionVector {
        var stable = local
        for (peer, report) in peers where peer != localMember {
            if report[peer] > local[peer] { return VersionVector() }
            for (m, s) in stable.entries { stable[m] = min(s, report[m]) }
        }
        return stable
    }

    // MARK: state encoding (see ReplicaStateCodec)

    /// Assembles a replica from decoded parts (`ReplicaStateCodec`).
    init(member: UInt64, mergeMode: MergeMode, clock: HybridClock, vector: VersionVector, logFloor: VersionVector,
         dags: StoredKeyMap<KeyVersionDAG>, collectable: Set<StoredKey>? = nil, leaseTable: LeaseTable, memberTable: MemberTable,
         authTable: AuthTable, log: [Change], buffer: CausalBuffer) {
        self.member = member
        self.mergeMode = mergeMode
        self.clock = clock
        self.vector = vector
        self.logFloor = logFloor
        self.dags = dags
        // The keys whose DAG garbage collection could shrink (a decoder that saw every DAG passes them).
        self.collectable = collectable ?? Set(dags.lazy.filter { $0.value.isCollectable }.map(\.key))
        // Nothing is known to be stable yet: each version of a collectable key waits for its dot.
        for key in self.collectable {
            for v in dags[key]!.versions { stabilityQueues[v.dot.member, default: StabilityQueue()].push(seq: v.dot.seq, key: key) }
        }
        self.leaseTable = leaseTable
        self.memberTable = memberTable
        self.authTable = authTable
        self.log = log
        self.buffer = buffer
    }
}

/// A min-heap of (seq, key): the collectable keys waiting for a version by one author to become stable.
struct StabilityQueue: Sendable {
    private var seqs: [UInt64] = []
    private var keys: [StoredKey] = []

    var isEmpty: Bool { seqs.isEmpty }
    var minSeq: UInt64? { seqs.first }

    mutating func push(seq: UInt64, key: StoredKey) {
        seqs.append(seq)
        keys.append(key)
        var i = seqs.count - 1
        while i > 0 {
            let parent = (i - 1) / 2
            guard seqs[i] < seqs[parent] else { break }
            seqs.swapAt(i, parent); keys.swapAt(i, parent)
            i = parent
        }
    }

    /// Removes and returns the key with the smallest seq. Precondition: not empty.
    mutating func pop() -> StoredKey {
        let top = keys[0]
        let last = seqs.count - 1
        seqs.swapAt(0, last); keys.swapAt(0, last)
        seqs.removeLast(); keys.removeLast()
        var i = 0
        while true {
            let l = 2 * i + 1, r = l + 1
            var smallest = i
            if l < seqs.count && seqs[l] < seqs[smallest] { smallest = l }
            if r < seqs.count && seqs[r] < seqs[smallest] { smallest = r }
            if smallest == i { break }
            seqs.swapAt(i, smallest); keys.swapAt(i, smallest)
            i = smallest
        }
        return top
    }
}
