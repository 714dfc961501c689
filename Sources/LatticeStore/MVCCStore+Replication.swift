import EtcdAPI
import LatticeCore
import LatticeStorage
import Synchronization

/// What became of one change received from a peer. Nothing is swallowed: the replication layer
/// reports every outcome back to the sender.
public enum RemoteApplyOutcome: Sendable, Equatable {
    /// Applied (with any buffered changes it released); the local revisions its visible effects
    /// took, possibly none (e.g. it lost last-writer-wins).
    case applied(revisions: [Int64])
    /// Held until its causal dependencies arrive. Not counted as received: the vector does not
    /// cover it, so it is sent again if it is lost (e.g. by a restart).
    case buffered
    /// Already applied or already buffered.
    case duplicate
    /// Refused: it breaks the protocol, or the causal buffer is full. The sender resends from
    /// this member's vector later.
    case rejected(String)
}

/// Changes from peers: the same path as local writes (writer → WAL → index → watchers), with the
/// visible outcome decided by the replica (merge, add-wins, LWW). Each applied change that alters
/// what readers see takes the next *local* revision and produces watch events in this member's
/// numbering: PUT with the merged value, DELETE when the key disappeared, nothing when the
/// visible value did not change.
///
/// Only durable changes leave the member: `changes(…)` and `versionVector` stop at the last
/// batch whose WAL append was fsync'd.
extension MVCCStore {
    /// Applies changes from a peer, in order, in one group commit. Completes, once durable, with
    /// one outcome per change.
    /// `source` is the member they came from (0: unknown): once it is removed from the cluster,
    /// nothing more is taken from it (see `Replica.peerMembers`).
    /// `encodings`: the bytes each change arrived in where known (parallel to `changes`, or
    /// empty), written to the WAL as they are.
    public func applyRemote(_ changes: [Change], encodings: [[UInt8]?] = [], from source: UInt64 = 0,
                            completion: @escaping @Sendable (Result<[RemoteApplyOutcome], EtcdError>) -> Void) {
        if let failed = failure.withLock({ $0 }) { return completion(.failure(failed)) }
        let outcomes = Mutex<[RemoteApplyOutcome]>([])
        var item = QueuedWrite(
            evaluate: { _, _ in },
            finish: { error in
                if let error { completion(.failure(error)) } else { completion(.success(outcomes.withLock { $0 })) }
            })
        item.remote = changes
        item.remoteBytes = encodings
        item.remoteSource = source
        item.remoteApplied = { produced in outcomes.withLock { $0 = produced } }
        if !queue.enqueue(item) { completion(.failure(.tooManyRequests)) }
    }

    /// A copy of the replicated state for a peer that needs a state transfer, and the log
    /// position after its last change: the peer's feed continues from there. Captured on the
    /// writer and handed out only once everything it holds is durable.
    public func captureTransfer(completion: @escaping @Sendable (Result<(replica: Replica, logEnd: Int), EtcdError>) -> Void) {
        if let failed = failure.withLock({ $0 }) { return completion(.failure(failed)) }
        let captured = Mutex<(replica: Replica, logEnd: Int)?>(nil)
        let item = QueuedWrite(
            evaluate: { _, state in captured.withLock { $0 = (state.replica.capture(), state.replica.logEnd) } },
            finish: { error in
                if let error { return completion(.failure(error)) }
                guard let c = captured.withLock({ $0 }) else { return completion(.failure(.stopped)) }
                completion(.success(c))
            })
        if !queue.enqueue(item) { completion(.failure(.tooManyRequests)) }
    }

    /// Installs another member's replicated state (a state transfer; see
    /// `Replica.install(transferred:)`): the index gets, at one new local revision, a PUT for
    /// every key whose visible value changed and a DELETE for every key that disappeared, so
    /// watchers see every change. Completes once the data directory holds it (one snapshot).
    /// `source` is the member it came from (0: unknown): refused once that member is removed.
    public func installTransfer(_ transferred: Replica, from source: UInt64 = 0,
                                completion: @escaping @Sendable (Result<Void, EtcdError>) -> Void) {
        if let failed = failure.withLock({ $0 }) { return completion(.failure(failed)) }
        let refusal = Mutex<EtcdError?>(nil)
        var item = QueuedWrite(
            evaluate: { _, _ in },
            finish: { error in
                if let error = error ?? refusal.withLock({ $0 }) { completion(.failure(error)) } else { completion(.success(())) }
            })
        item.transfer = transferred
        item.remoteSource = source
        item.transferInstalled = { error in refusal.withLock { $0 = error } }
        if !queue.enqueue(item) { completion(.failure(.tooManyRequests)) }
    }

    /// Runs on the writer during a batch: installs a transferred state and turns the difference
    /// in visible keys into versions at the next local revision. Returns the refusal, if any.
    func installTransfer(_ transferred: Replica, state: inout WriterState, pending: inout PendingWrites,
                         evaluated: inout [EvaluatedWrite]) -> EtcdError? {
        let removedBefore = state.replica.removedMembers
        do {
            try state.replica.install(transferred: transferred)
        } catch {
            return EtcdError(.failedPrecondition, "lattice: state transfer refused: \(error)")
        }
        // A removal that came with the state is applied here as it would be by a change: the
        // batch ends by dropping the causal buffer (see `Replica.peerMembers`).
        if !state.replica.removedMembers.isSubset(of: removedBefore) { state.memberRemoved = true }
        let replica = state.replica
        let index = indexed.index
        func current(_ key: [UInt8]) -> KeyVersion? {
            if let v = pending.versions[key] { return v.isTombstone ? nil : v }
            return index.visible(key, at: index.currentRevision)
        }
        var keys = Set(index.sortedKeys)
        keys.formUnion(pending.versions.keys)
        for entry in replica.visibleKeyspace() { keys.insert(entry.key) }
        let revision = pending.revision + 1
        var versions: [([UInt8], KeyVersion)] = []
        var previous: VersionsByKey = [:]
        for key in keys.sorted(by: bytesLess) {
            let before = current(key)
            let after = replica.visible(key)
            if let before, after == nil {
                previous[key] = before
                versions.append((key, KeyVersion.tombstone(at: revision)))
            } else if let after, before == nil || before!.value != after.value || before!.lease != after.lease {
                if let before { previous[key] = before }
                versions.append((key, KeyVersion.put(at: revision, over: before, value: after.value, lease: after.lease)))
            }
        }
        // The lessor mirrors the replica's lease table.
        for id in Set(state.lessor.leases.keys).union(replica.leases.map(\.id)) {
            Self.mirrorLease(id, replica: replica, state: &state)
        }
        for (key, version) in versions {
            state.lessor.reattach(key, from: previous[key]?.lease ?? 0, to: version.lease)
            pending.versions[key] = version
        }
        state.deadLeaseKeys.formUnion(replica.keysWithDeadLeases())
        if !versions.isEmpty {
            pending.revision = revision
            evaluated.append(EvaluatedWrite(revision: revision, versions: versions, previous: previous))
        }
        return nil
    }

    /// Applies one change and returns the local revisions it produced ([] when buffered or a
    /// duplicate); throws when it was rejected (tests, tools).
    @discardableResult
    public func applyRemote(_ change: Change) throws(EtcdError) -> [Int64] {
        let outcome = try wait { applyRemote([change], completion: $0) }.first ?? .duplicate
        switch outcome {
        case .applied(let revisions): return revisions
        case .buffered, .duplicate: return []
        case .rejected(let why): throw EtcdError(.failedPrecondition, "lattice: change rejected: \(why)")
        }
    }

    /// Every durable change a peer whose vector is `vector` lacks, in causal order (nil: some
    /// were trimmed from the log; it needs a state transfer).
    public func changes(since vector: VersionVector) -> [Change]? {
        writer.withLock { state in
            state.replica.changes(from: 0, to: durable.withLock { $0.logEnd }, lacking: vector, maxBytes: .max)?.changes
        }
    }

    /// What a peer feed reads for its next message, in one hold of the writer's lock: the
    /// puller's recorded report (what it holds, also from other streams) and a page of durable
    /// changes from `position` that it lacks — `lacking` merged with that report — up to about
    /// `maxBytes`, leaving out the authors in `skipping`, with the encoding of each change where
    /// it is still kept (page nil: the puller needs a state transfer).
    ///
    /// Never waits for a batch being evaluated (the writer holds the lock through it, and a feed
    /// runs on an event loop that serves clients too): returns nil instead, and the writer wakes
    /// the durable-change observers once that batch is done, so the feed reads again then.
    public func feedRead(puller: UInt64, from position: Int, lacking: VersionVector, maxBytes: Int,
                         skipping: Set<UInt64>) -> FeedRead? {
        func read(_ state: inout WriterState) -> FeedRead {
            recordWaitingReports(&state)
            let report = puller == 0 ? nil : state.replica.report(of: puller)
            var lacking = lacking
            if let report, !lacking.covers(report) { lacking = lacking.merged(with: report) }
            guard let page = state.replica.changes(from: position, to: durable.withLock { $0.logEnd }, lacking: lacking,
                                                   maxBytes: maxBytes, skipping: skipping) else { return FeedRead(report: report, page: nil) }
            let encodings = page.changes.map { state.encodings[$0.id] }
            return FeedRead(report: report, page: (page.changes, encodings, page.next))
        }
        if let result = writer.withLockIfAvailable({ read(&$0) }) { return result }
        // Announced, then tried again: a writer that finished its batch before it could see the
        // announcement has released the lock by now.
        feedsDeferred.store(true, ordering: .releasing)
        if let result = writer.withLockIfAvailable({ read(&$0) }) { return result }
        // Held by another short reader, not by a batch: wait for it.
        guard evaluatingBatch.load(ordering: .acquiring) else { return writer.withLock { read(&$0) } }
        return nil
    }

    /// What `feedRead` read: the puller's report, and the page of changes with their encodings
    /// where kept (nil: the puller needs a state transfer).
    public struct FeedRead: Sendable {
        public var report: VersionVector?
        public var page: (changes: [Change], encodings: [[UInt8]?], next: Int)?
    }

    /// The log position after the last durable change and the vector of durable changes, read
    /// together.
    public var durablePoint: (logEnd: Int, vector: VersionVector) {
        durable.withLock { $0 }
    }

    /// The vector of durable changes: what this member reports to its peers.
    public var versionVector: VersionVector { durable.withLock { $0.vector } }

    /// How many change encodings are kept for peer feeds (tests).
    var keptEncodingCount: Int { writer.withLock { $0.encodings.count } }

    /// Records a peer member's report of its durable vector (see `Replica.recordReport`): what
    /// garbage collection may treat as held everywhere. Returns whether it was usable (true for
    /// a report left for the writer).
    /// A report that moves the stable point schedules a collection on the writer (a batch with
    /// no write), at most one at a time.
    /// Never waits for a batch being evaluated (reports arrive on event loops): the report is
    /// then left in a mailbox that the next holder of the writer's lock records first.
    @discardableResult
    public func recordPeerReport(member: UInt64, vector: VersionVector) -> Bool {
        func record(_ state: inout WriterState) -> Bool {
            recordWaitingReports(&state)
            let before = state.replica.stableBound
            let recorded = state.replica.recordReport(from: member, vector: vector)
            if recorded && state.replica.stableBound != before { scheduleCollection() }
            return recorded
        }
        if let recorded = writer.withLockIfAvailable({ record(&$0) }) { return recorded }
        guard evaluatingBatch.load(ordering: .acquiring) else { return writer.withLock { record(&$0) } }
        waitingReports.withLock { $0[member] = vector }
        return true
    }

    /// Records the reports left while the writer was busy (`recordPeerReport`). Run by every
    /// holder of the writer's lock that reads or moves the reports, and by the writer before
    /// each batch.
    func recordWaitingReports(_ state: inout WriterState) {
        let waiting = waitingReports.withLock { r -> [UInt64: VersionVector] in defer { r = [:] }; return r }
        guard !waiting.isEmpty else { return }
        let before = state.replica.stableBound
        var recorded = false
        for (member, vector) in waiting where state.replica.recordReport(from: member, vector: vector) { recorded = true }
        if recorded && state.replica.stableBound != before { scheduleCollection() }
    }

    /// Queues a batch with no write that collects what became stable (at most one at a time).
    private func scheduleCollection() {
        guard configuration.collectGarbage, !collectionQueued.exchange(true, ordering: .acquiringAndReleasing) else { return }
        let item = QueuedWrite(evaluate: { [self] _, _ in collectionQueued.store(false, ordering: .releasing) }, finish: { _ in })
        if !queue.enqueue(item) { collectionQueued.store(false, ordering: .releasing) }
    }

    /// The recorded report of a peer member: what it is known to hold.
    public func peerReport(member: UInt64) -> VersionVector? {
        writer.withLock { state in
            recordWaitingReports(&state)
            return state.replica.report(of: member)
        }
    }

    /// Drops a peer member's report (its data directory changed): nothing more becomes stable
    /// until it reports again.
    public func forgetPeerReport(member: UInt64) {
        writer.withLock { state in
            recordWaitingReports(&state)
            state.replica.forgetReport(from: member)
        }
    }

    /// Changes the configured member set whose reports stability needs.
    public func setPeerMembers(_ members: Set<UInt64>) {
        let local = configuration.replicatedMembership ? configuration.memberID : 0
        writer.withLock { $0.replica.setPeerMembers(members, local: local) }
    }

    // MARK: membership

    /// The replicated member table: current members ascending by id.
    public var members: [LatticeCore.Member] { writer.withLock { $0.replica.members } }

    /// Whether `id` was removed from the cluster (for good).
    public func isRemoved(_ id: UInt64) -> Bool { writer.withLock { $0.replica.isRemoved(id) } }

    /// Writes membership ops as one local change, after `check` accepted the current table (run
    /// on the writer, so checks and the change are atomic). Completes once durable with the
    /// members after it.
    public func changeMembership(_ check: @escaping @Sendable (Replica) throws(EtcdError) -> [Op],
                                 completion: @escaping @Sendable (Result<[LatticeCore.Member], EtcdError>) -> Void) {
        submit({ (txn: inout WriteTxn, state: inout WriterState) throws(EtcdError) -> Void in
            for op in try check(state.replica) { txn.append(op) }
        }, completion: { [self] result in
            completion(result.map { members })
        })
    }

    /// The durable auth state: users, roles, permissions and whether auth is enabled. Constant
    /// time (a copy-on-write value rebuilt by the writer when an auth change becomes durable).
    public var authState: AuthState { authCache.withLock { $0 } }

    /// Applies auth operations as one change: `check` runs on the writer against the current
    /// auth state (etcd's validation: it throws etcd's errors) and returns the operations;
    /// `completion` gets the auth state once the change is durable.
    public func changeAuth(_ check: @escaping @Sendable (AuthState) throws(EtcdError) -> [AuthOp],
                           completion: @escaping @Sendable (Result<AuthState, EtcdError>) -> Void) {
        submit({ (txn: inout WriteTxn, state: inout WriterState) throws(EtcdError) -> Void in
            for op in try check(state.replica.authState) { txn.append(.auth(op)) }
        }, completion: { [self] result in
            completion(result.map { authState })
        })
    }

    /// Calls `observer` (on the writer thread; it must only schedule work) after every durable
    /// batch that changed the member table, with whether a member was removed (or a state
    /// transfer replaced the table).
    public func onMembershipChange(_ observer: @escaping @Sendable (_ removal: Bool) -> Void) {
        membershipObservers.withLock { $0.append(observer) }
    }

    func notifyMembership(removal: Bool) {
        for observer in membershipObservers.withLock({ $0 }) { observer(removal) }
    }

    /// Counts for operators and tests: buffered changes and retained log entries (constant time).
    public var replicationCounters: ReplicationCounters {
        writer.withLock {
            ReplicationCounters(pendingChanges: $0.replica.pendingCount, logEntries: $0.replica.log.count, merges: $0.replica.mergeCounters)
        }
    }

    /// The records of concurrent writes resolved since the last call that overwrote something
    /// (key, winning and losing change ids), and how many more were not kept.
    public func drainConflicts() -> (records: [Replica.ConflictRecord], dropped: Int) {
        writer.withLock { $0.replica.drainConflicts() }
    }

    /// Calls `observer` on the writer thread after every batch that made new changes durable
    /// (it must only schedule work, never block).
    public func onDurableChanges(_ observer: @escaping @Sendable () -> Void) {
        durableObservers.withLock { $0.append(observer) }
    }

    func notifyDurable() {
        for observer in durableObservers.withLock({ $0 }) { observer() }
    }

    /// Deterministic hash of the replicated state (visible keyspace and leases): equal on every
    /// member that applied the same changes.
    /// Computed on a capture taken under the writer lock (constant time; the writer's changes go
    /// to an overlay meanwhile instead of copying the key map), so hashing a large keyspace never
    /// holds up writes.
    public var replicatedStateHash: [UInt8] {
        let replica = writer.withLock { $0.replica.capture() }
        stateHashesComputed.add(1, ordering: .relaxed)
        return replica.stateHash()
    }

    /// Runs on the writer during a batch: applies a remote change to the replica and turns each
    /// applied change into key versions at the next local revision.
    func applyRemote(_ change: Change, encoding: [UInt8]?, state: inout WriterState, pending: inout PendingWrites,
                     evaluated: inout [EvaluatedWrite], entries: inout [WALEntry]) -> RemoteApplyOutcome {
        if state.replica.vector.contains(change.id) || state.replica.isPending(change.id) { return .duplicate }
        let applied: [AppliedChange]
        do {
            applied = try state.replica.apply(remote: change)
        } catch {
            return .rejected("\(error)")
        }
        if applied.isEmpty { return .buffered }
        var revisions: [Int64] = []
        for a in applied {
            if !a.membersChanged.isEmpty {
                state.membershipChanged = true
                if a.removesMember { state.memberRemoved = true }
            }
            if a.changesAuth { state.authChanged = true }
            let revision = pending.revision + 1
            let (versions, previous) = Self.versions(for: a, revision: revision) { key in
                if let v = pending.versions[key] { return v.isTombstone ? nil : v }
                return indexed.index.visible(key, at: indexed.index.currentRevision)
            }
            Self.applyLeaseOps(a.change, replica: state.replica, state: &state)
            for (key, version) in versions {
                state.lessor.reattach(key, from: previous[key]?.lease ?? 0, to: version.lease)
                pending.versions[key] = version
                if version.lease != 0 && state.replica.lease(version.lease) == nil { state.deadLeaseKeys.insert(key) }
            }
            let write = EvaluatedWrite(revision: versions.isEmpty ? 0 : revision, versions: versions, previous: previous)
            if !versions.isEmpty {
                pending.revision = revision
                revisions.append(revision)
            }
            // Changes released from the causal buffer by this one are encoded here.
            entries.append(Self.walEntry(revision: write.revision, change: a.change,
                                         encoding: a.change.id == change.id ? encoding : nil, encodings: &state.encodings))
            evaluated.append(write)
        }
        return .applied(revisions: revisions)
    }

    /// A change's WAL entry at `revision`, made from its encoding (`encoding`: the bytes it
    /// arrived in, if known), which is kept for the peer feeds.
    static func walEntry(revision: Int64, change: Change, encoding: [UInt8]? = nil,
                         encodings: inout RecentChangeEncodings) -> WALEntry {
        let bytes = encoding ?? ChangeMessage(change).protoBytes()
        encodings.insert(change.id, bytes)
        return WALEntry(type: WALRecordType.change, payload: ChangeRecord(revision: revision, encodedChange: bytes).protoBytes())
    }

    /// The key versions an applied remote change produces at `revision`.
    static func versions(for a: AppliedChange, revision: Int64, current: ([UInt8]) -> KeyVersion?)
        -> (versions: [([UInt8], KeyVersion)], previous: VersionsByKey) {
        var versions: [([UInt8], KeyVersion)] = []
        var previous: VersionsByKey = [:]
        for effect in a.visibleChanges {
            let prev = current(effect.key)
            if let prev { previous[effect.key] = prev }
            switch effect.outcome {
            case .put(let v):
                versions.append((effect.key, KeyVersion.put(at: revision, over: prev, value: v.value, lease: v.lease)))
            case .deleted:
                guard prev != nil else { continue }
                versions.append((effect.key, KeyVersion.tombstone(at: revision)))
            case .unchanged:
                continue
            }
        }
        return (versions, previous)
    }

    /// Mirrors a change's lease operations into the lessor, from the replica's lease table (the
    /// replicated truth): a grant makes the lease exist with the replica's expiry, a revoke
    /// removes it only when no grant survives (a concurrent grant elsewhere keeps it). The one
    /// path for remote changes at runtime and for every change in WAL replay. Keys still
    /// attached to a lease that died become candidates for the dead-lease sweep.
    static func applyLeaseOps(_ change: Change, replica: Replica, state: inout WriterState) {
        for op in change.ops {
            switch op {
            case .leaseGrant(let id, _), .leaseRevoke(let id):
                mirrorLease(id, replica: replica, state: &state)
            case .leaseCheckpoint(let id, let expiresAt):
                state.lessor.checkpoint(id, expiresAtMilliseconds: expiresAt)
            default:
                break
            }
        }
    }

    /// Makes the lessor's view of lease `id` match the replica's lease table: a live lease
    /// exists with the replica's TTL and expiry; a lease that is not live is removed, and the
    /// keys still attached to it become candidates for the dead-lease sweep.
    static func mirrorLease(_ id: Int64, replica: Replica, state: inout WriterState) {
        if let info = replica.lease(id) {
            if !state.lessor.exists(id) { state.lessor.grant(id: id, ttlSeconds: info.ttlSeconds, nowMilliseconds: 0) }
            state.lessor.checkpoint(id, expiresAtMilliseconds: info.expiresAtMilliseconds)
        } else if let removed = state.lessor.remove(id) {
            state.deadLeaseKeys.formUnion(removed.keys.lazy.map(\.bytes))
            state.checkpointedAt[id] = nil
        }
    }
}

/// Replication counters of one member.
public struct ReplicationCounters: Sendable, Equatable {
    public var pendingChanges: Int
    public var logEntries: Int
    /// How concurrent writes were resolved since start (see `Replica.MergeCounters`).
    public var merges = Replica.MergeCounters()
}
