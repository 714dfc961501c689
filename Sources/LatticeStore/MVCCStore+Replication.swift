import EtcdAPI
import LatticeCore
import LatticeStorage
import Synchronization

/// Changes from peers: the same path as local writes (writer → WAL → index → watchers), with the
/// visible outcome decided by the replica (merge, add-wins, LWW). Each applied change that alters
/// what readers see takes the next *local* revision and produces watch events in this member's
/// numbering: PUT with the merged value, DELETE when the key disappeared, nothing when the
/// visible value did not change.
extension MVCCStore {
    /// Applies a change from a peer (buffered until its causal dependencies are applied;
    /// duplicates are ignored). Completes, once durable, with the local revisions it produced
    /// (possibly none, possibly several when it released buffered changes).
    public func applyRemote(_ change: Change, completion: @escaping @Sendable (Result<[Int64], EtcdError>) -> Void) {
        if let failed = failure.withLock({ $0 }) { return completion(.failure(failed)) }
        let revisions = Mutex<[Int64]>([])
        var item = QueuedWrite(
            evaluate: { _, _ in },
            finish: { error in
                if let error { completion(.failure(error)) } else { completion(.success(revisions.withLock { $0 })) }
            })
        item.remote = change
        item.remoteApplied = { produced in revisions.withLock { $0 = produced } }
        if !queue.enqueue(item) { completion(.failure(.tooManyRequests)) }
    }

    @discardableResult
    public func applyRemote(_ change: Change) throws(EtcdError) -> [Int64] { try wait { applyRemote(change, completion: $0) } }

    /// What a peer whose vector is `vector` lacks, in causal order (nil: it needs a snapshot).
    public func changes(since vector: VersionVector) -> [Change]? {
        writer.withLock { $0.replica.changes(since: vector) }
    }

    public var versionVector: VersionVector { writer.withLock { $0.replica.vector } }

    /// Deterministic hash of the replicated state (visible keyspace and leases): equal on every
    /// member that applied the same changes.
    public var replicatedStateHash: [UInt8] { writer.withLock { $0.replica.stateHash() } }

    /// Runs on the writer during a batch: applies a remote change to the replica and turns each
    /// applied change into key versions at the next local revision.
    func applyRemote(_ change: Change, state: inout WriterState, pending: inout PendingWrites,
                     evaluated: inout [EvaluatedWrite], entries: inout [WALEntry]) -> [Int64] {
        guard let applied = try? state.replica.apply(remote: change) else { return [] }
        var revisions: [Int64] = []
        for a in applied {
            let revision = pending.revision + 1
            let (versions, previous) = Self.versions(for: a, revision: revision) { key in
                if let v = pending.versions[key] { return v.isTombstone ? nil : v }
                return indexed.index.visible(key, at: indexed.index.currentRevision)
            }
            Self.applyLeaseOps(a.change, replica: state.replica, lessor: &state.lessor)
            for (key, version) in versions {
                state.lessor.reattach(key, from: previous[key]?.lease ?? 0, to: version.lease)
                pending.versions[key] = version
            }
            let write = EvaluatedWrite(revision: versions.isEmpty ? 0 : revision, versions: versions, previous: previous)
            if !versions.isEmpty {
                pending.revision = revision
                revisions.append(revision)
            }
            entries.append(WALEntry(type: WALRecordType.change,
                                    payload: ChangeRecord(revision: write.revision, change: a.change).protoBytes()))
            evaluated.append(write)
        }
        return revisions
    }

    /// The key versions an applied remote change produces at `revision`.
    static func versions(for a: AppliedChange, revision: Int64, current: ([UInt8]) -> KeyVersion?)
        -> (versions: [([UInt8], KeyVersion)], previous: [[UInt8]: KeyVersion]) {
        var versions: [([UInt8], KeyVersion)] = []
        var previous: [[UInt8]: KeyVersion] = [:]
        for effect in a.visibleChanges {
            let prev = current(effect.key)
            if let prev { previous[effect.key] = prev }
            switch effect.outcome {
            case .put(let v):
                versions.append((effect.key, KeyVersion.put(at: revision, over: prev, value: v.value, lease: v.lease, dot: a.change.id)))
            case .deleted:
                guard prev != nil else { continue }
                versions.append((effect.key, KeyVersion.tombstone(at: revision, dot: a.change.id)))
            case .unchanged:
                continue
            }
        }
        return (versions, previous)
    }

    /// Mirrors a change's lease operations into the lessor (expiry from the replica's lease table).
    static func applyLeaseOps(_ change: Change, replica: Replica, lessor: inout Lessor) {
        for op in change.ops {
            switch op {
            case .leaseGrant(let id, let ttl):
                if let info = replica.lease(id) {
                    if !lessor.exists(id) { lessor.grant(id: id, ttlSeconds: ttl, nowMilliseconds: 0) }
                    lessor.checkpoint(id, expiresAtMilliseconds: info.expiresAtMilliseconds)
                }
            case .leaseRevoke(let id):
                if replica.lease(id) == nil { lessor.remove(id) }
            case .leaseCheckpoint(let id, let expiresAt):
                lessor.checkpoint(id, expiresAtMilliseconds: expiresAt)
            default:
                break
            }
        }
    }
}
