import Dispatch
import EtcdAPI
import LatticeCore
import LatticeStorage
import ProtoWire
import Synchronization

#if canImport(Glibc)
/// glibc's `malloc_trim` (not exported by the Glibc module): returns free heap pages to the kernel.
@_silgen_name("malloc_trim")
private func mallocTrim(_ pad: Int) -> Int32
#endif

/// The data directory and WAL of a store. Only the writer thread appends and snapshots; `close`
/// runs after the writer stopped.
final class StorageOwner: @unchecked Sendable {
    // @unchecked: `wal`, `entriesSinceSnapshot` and `lastSnapshotIndex` are touched by the writer
    // thread only (and by init/close before it starts / after it stopped); `notes` is set before
    // the writer starts; the snapshot thread only touches `snapshots` (a mutex) and the snap
    // directory.
    private(set) var directory: DataDirectory?
    private var wal: WriteAheadLog?
    private var entriesSinceSnapshot = 0
    private var lastSnapshotIndex: UInt64 = 0
    private(set) var notes: [String] = []

    /// The background snapshot: at most one runs; a finished one is picked up by the writer.
    private struct SnapshotProgress {
        var running = false
        var finished: UInt64?
        /// After a failed snapshot: when to try again (backoff doubling from 1 s to 60 s).
        var retryAt: ContinuousClock.Instant?
        var failures = 0
    }
    private let snapshots = Mutex(SnapshotProgress())
    /// Entered while a snapshot is being written.
    private let snapshotWriting = DispatchGroup()

    func attach(_ r: Recovery.Opened, walFault: (@Sendable (WriteAheadLog.FaultPoint) -> Int32?)?,
                observer: StorageObserver?) {
        directory = r.directory
        wal = r.wal
        wal?.injectFault = walFault
        wal?.observeSync = observer?.walSynced
        self.observer = observer
        notes = r.notes
        lastSnapshotIndex = r.snapshotIndex
        entriesSinceSnapshot = r.replayed
    }

    /// Appends a batch with one fdatasync; no-op in memory.
    func append(_ entries: [WALEntry]) throws(StorageError) {
        guard let wal, !entries.isEmpty else { return }
        _ = try wal.append(entries)
        entriesSinceSnapshot += entries.count
    }

    func needsSnapshot(every count: Int) -> Bool {
        guard wal != nil else { return false }
        if entriesSinceSnapshot >= count { return true }
        return snapshots.withLock { p in
            guard let retryAt = p.retryAt, !p.running, ContinuousClock.now >= retryAt else { return false }
            p.retryAt = nil
            return true
        }
    }

    /// Test seam for snapshot writes (`FaultPoint.snapshot`).
    var fault: (@Sendable (WriteAheadLog.FaultPoint) -> Int32?)?
    private var observer: StorageObserver?

    /// Writer thread: claims the next snapshot, covering the WAL up to its last index, unless
    /// one is still being written. Returns that index and the snapshot directory.
    func beginSnapshot() -> (index: UInt64, directory: String)? {
        guard let wal, let directory else { return nil }
        let claimed = snapshots.withLock { p -> Bool in
            guard !p.running else { return false }
            p.running = true
            return true
        }
        guard claimed else { return nil }
        snapshotWriting.enter()
        entriesSinceSnapshot = 0
        return (wal.lastIndex, directory.snapPath)
    }

    /// Snapshot thread: writes the snapshot file (temp file, fsync, rename, directory fsync) and
    /// prunes to the newest two. A failure loses nothing (the WAL still has every entry): it is
    /// returned for the caller to report, and the snapshot is tried again after a backoff
    /// (1 s doubling to 60 s) or another `--snapshot-count` entries, whichever comes first.
    func writeSnapshot(_ bytes: [UInt8], index: UInt64, directory: String) -> StorageError? {
        var saved = false
        var failure: StorageError?
        do throws(StorageError) {
            if let code = fault?(.snapshot) {
                throw .system("write snapshot in", path: directory, errno: code)
            }
            let started = ContinuousClock.now
            try SnapshotFile.save(directory: directory, index: index, bytes: bytes)
            observer?.snapshotSaved?(ContinuousClock.now - started)
            saved = true
            try SnapshotFile.prune(directory: directory, keep: 2)
        } catch {
            failure = error
        }
        snapshots.withLock { p in
            p.running = false
            if saved {
                p.finished = index
                p.failures = 0
                p.retryAt = nil
            } else {
                p.failures += 1
                p.retryAt = .now + .seconds(min(60, 1 << min(p.failures - 1, 6)))
            }
        }
        snapshotWriting.leave()
        return saved ? nil : failure
    }

    /// Writer thread, after each batch: once a snapshot is on disk, drops the WAL segments the
    /// previous snapshot already covered (keeping two snapshots, so a damaged newest one falls
    /// back to the older one plus the WAL after it).
    func collectFinishedSnapshot() {
        guard let wal, let index = snapshots.withLock({ p -> UInt64? in
            defer { p.finished = nil }
            return p.finished
        }) else { return }
        try? wal.resetAfterSnapshot(through: lastSnapshotIndex)
        lastSnapshotIndex = index
    }

    /// Writer thread (Defragment): replaces every snapshot and WAL segment by one snapshot at the
    /// WAL's last index and a fresh segment. Waits for a background snapshot first.
    func rewrite(snapshot bytes: [UInt8]) throws(StorageError) {
        guard let wal, let directory else { return }
        waitForSnapshot()
        collectFinishedSnapshot()
        let index = wal.lastIndex
        try SnapshotFile.save(directory: directory.snapPath, index: index, bytes: bytes)
        try wal.resetAfterSnapshot(through: index)
        try SnapshotFile.prune(directory: directory.snapPath, keep: 1)
        lastSnapshotIndex = index
        entriesSinceSnapshot = 0
    }

    var hasDataDirectory: Bool { wal != nil }

    /// Waits for a snapshot being written (before the data directory is closed).
    func waitForSnapshot() {
        snapshotWriting.wait()
    }

    func close() {
        waitForSnapshot()
        wal?.close()
        wal = nil
        directory?.close()
        directory = nil
    }
}

/// Opening a data directory: lock, newest valid snapshot, WAL replay.
enum Recovery {
    struct Opened {
        let directory: DataDirectory
        let wal: WriteAheadLog
        let snapshotIndex: UInt64
        let replayed: Int
        let notes: [String]
    }

    static func open(dataDirectory path: String, configuration: MVCCStore.Configuration,
                     state: inout MVCCStore.WriterState, indexed: inout MVCCStore.Indexed) throws(StorageError) -> Opened {
        let directory = try DataDirectory.open(path)
        var notes: [String] = []
        var snapshotIndex: UInt64 = 0
        // The incarnation: the id this data directory's changes carry. A directory written before
        // incarnations existed keeps the member id its changes already carry.
        let replicaID: UInt64
        if let existing = try directory.readIncarnation() {
            replicaID = existing
        } else {
            let hasData = try directory.holdsData()
            replicaID = hasData ? configuration.memberID : (configuration.replicaID ?? UInt64.random(in: 1...UInt64.max))
            try directory.writeIncarnation(replicaID)
        }
        state.replica = Replica(member: replicaID, mergeMode: configuration.mergeMode, wallClock: configuration.wallClock,
                                causalBufferLimit: configuration.causalBufferLimit, causalBufferBytes: configuration.causalBufferBytes)
        let loaded = try SnapshotFile.loadNewest(directory: directory.snapPath)
        func replicaStateError(_ error: ReplicaStateDecodingError) -> StorageError {
            StorageError(.corruption, "snapshot \(SnapshotFile.fileName(index: loaded.snapshot?.index ?? 0)): replicated state does not decode: \(error)",
                         path: directory.snapPath)
        }
        if let note = loaded.note { notes.append(note) }
        if let snapshot = loaded.snapshot {
            func undecodable(_ error: ProtoDecodingError) -> StorageError {
                StorageError(.corruption, "snapshot \(SnapshotFile.fileName(index: snapshot.index)) does not decode: \(error)",
                             path: directory.snapPath)
            }
            let bytes = snapshot.bytes
            let stateRange: Range<Int>
            do { stateRange = try StoreSnapshot.replicaStateRange(in: bytes) } catch { throw undecodable(error) }
            // The replicated state decodes on a thread of its own while the histories decode here
            // (at a million keys, about 1.8 s and 0.4 s).
            let (mergeMode, wallClock) = (configuration.mergeMode, configuration.wallClock)
            let (bufferLimit, bufferBytes) = (configuration.causalBufferLimit, configuration.causalBufferBytes)
            let decodingParts = stateRange.isEmpty ? nil : BackgroundResult { () -> Result<ReplicaStateParts, ReplicaStateDecodingError> in
                Result { () throws(ReplicaStateDecodingError) in
                    try ReplicaStateCodec.decodeParts(bytes, range: stateRange, mergeMode: mergeMode, wallClock: wallClock,
                                                      causalBufferLimit: bufferLimit, causalBufferBytes: bufferBytes, verified: true)
                }
            }
            let decodedSnapshot = Result { () throws(ProtoDecodingError) in try StoreSnapshot(protoBytes: bytes) }
            let decodedParts = decodingParts?.join()
            let decoded: StoreSnapshot
            do { decoded = try decodedSnapshot.get() } catch { throw undecodable(error) }
            var parts: ReplicaStateParts?
            if let decodedParts {
                do { parts = try decodedParts.get() } catch { throw replicaStateError(error) }
            }
            if let parts {
                guard parts.member == replicaID else {
                    throw StorageError(.corruption, "snapshot \(SnapshotFile.fileName(index: snapshot.index)) belongs to replica \(String(parts.member, radix: 16)), the data directory to \(String(replicaID, radix: 16))",
                                       path: directory.snapPath)
                }
                // Two independent builds over the same keys: the replica's key map on a thread of
                // its own, the index here (at a million keys each is about a second).
                let assembling = BackgroundResult { () -> Result<Replica, ReplicaStateDecodingError> in
                    Result { () throws(ReplicaStateDecodingError) in try parts.assemble() }
                }
                let restored = Result { () throws(StorageError) in
                    try restore(decoded, replicaKeys: parts.keys, state: &state, indexed: &indexed, path: directory.snapPath)
                }
                let assembled = assembling.join()
                try restored.get()
                var replica: Replica
                do { replica = try assembled.get() } catch { throw replicaStateError(error) }
                // Buffered changes were never written to the WAL; counting them as received after
                // a restart would make replay differ from what ran. Their senders resend them.
                replica.dropPendingChanges()
                state.replica = replica
            } else {
                try restore(decoded, replicaKeys: [], state: &state, indexed: &indexed, path: directory.snapPath)
            }
            snapshotIndex = snapshot.index
        }
        // Before anything can collect garbage: with peers, only their reports make changes stable.
        state.replica.setPeerMembers(configuration.peerMemberIDs, local: configuration.replicatedMembership ? configuration.memberID : 0)
        let (wal, records, note) = try WriteAheadLog.open(
            directory: directory.walPath, snapshotIndex: snapshotIndex,
            segmentBytes: configuration.walSegmentBytes, fsync: !configuration.unsafeNoFsync)
        if let note { notes.append(note) }
        for record in records {
            try replay(record, state: &state, indexed: &indexed, path: directory.walPath)
        }
        if configuration.collectGarbage {
            _ = state.replica.collectGarbage(stableVector: state.replica.vector)
        }
        // Leases whose expiry passed while the member was down expire right after it is back.
        let now = configuration.wallClock.nowMilliseconds()
        state.lessor.extendExpiries(toAtLeast: now + 1_000)
        return Opened(directory: directory, wal: wal, snapshotIndex: snapshotIndex, replayed: records.count, notes: notes)
    }

    /// Re-applies one WAL record: the change's ops against the state so far, giving the same
    /// versions, revisions and events the original write produced.
    static func replay(_ record: WALRecord, state: inout MVCCStore.WriterState, indexed: inout MVCCStore.Indexed, path: String) throws(StorageError) {
        func damaged(_ why: String) -> StorageError {
            StorageError(.corruption, "WAL entry \(record.index) in \(path): \(why)", path: path)
        }
        switch record.entry.type {
        case WALRecordType.compaction:
            guard let c = try? CompactionRecord(protoBytes: record.entry.payload) else { throw damaged("compaction record does not decode") }
            indexed.index.compact(to: c.revision)
            indexed.log.compact(to: c.revision)
        case WALRecordType.change:
            guard let r = try? ChangeRecord(protoBytes: record.entry.payload) else { throw damaged("change record does not decode") }
            let change = r.change.change
            if r.revision != 0 && r.revision != indexed.index.currentRevision + 1 {
                throw damaged("revision \(r.revision) does not follow \(indexed.index.currentRevision)")
            }
            let applied: [AppliedChange]
            do {
                applied = try state.replica.apply(remote: change)
            } catch {
                throw damaged("the replica refuses the change: \(error)")
            }
            // At runtime every logged change was applied when it was written, in this order, so
            // replay must apply exactly it (never buffer it, never release others).
            guard applied.count == 1, applied[0].change.id == change.id else {
                throw damaged("change \(change.id.member):\(change.id.seq) does not apply in WAL order")
            }
            // As at runtime: the batch that applied a removal dropped the causal buffer.
            if applied[0].removesMember { state.replica.dropPendingChanges() }
            var versions: [([UInt8], KeyVersion)] = []
            var previous: VersionsByKey = [:]
            if change.id.member == state.replica.member {
                // Own change: exactly what the etcd evaluation wrote (a re-put of the same bytes
                // is a new version in etcd, although the replica calls it unchanged).
                for op in change.ops {
                    switch op {
                    case .put(let key, let value, let lease, _):
                        let prev = indexed.index.visible(key, at: indexed.index.currentRevision)
                        if let prev { previous[key] = prev }
                        versions.append((key, KeyVersion.put(at: r.revision, over: prev, value: value, lease: lease)))
                    case .delete(let key, _):
                        if let prev = indexed.index.visible(key, at: indexed.index.currentRevision) { previous[key] = prev }
                        versions.append((key, KeyVersion.tombstone(at: r.revision)))
                    default:
                        break
                    }
                }
            } else if let a = applied.first {
                (versions, previous) = MVCCStore.versions(for: a, revision: r.revision) { key in
                    indexed.index.visible(key, at: indexed.index.currentRevision)
                }
            }
            MVCCStore.applyLeaseOps(change, replica: state.replica, state: &state)
            for (key, version) in versions {
                state.lessor.reattach(key, from: previous[key]?.lease ?? 0, to: version.lease)
            }
            if !versions.isEmpty {
                guard r.revision != 0 else { throw damaged("key change without a revision") }
                _ = MVCCStore.applyReplayed(MVCCStore.EvaluatedWrite(revision: r.revision, versions: versions, previous: previous), to: &indexed)
            }
        default:
            throw damaged("unknown record type \(record.entry.type)")
        }
    }

    /// Rebuilds the index, the event log and the leases from a snapshot. `replicaKeys` are the
    /// replicated state's keys with their versions, ascending (as the snapshot's histories are):
    /// a key's bytes and the values the snapshot shares with the replicated state are taken from
    /// there, walking both lists side by side, so each is held once.
    static func restore(_ s: StoreSnapshot, replicaKeys: [(key: StoredKey, dag: KeyVersionDAG)], state: inout MVCCStore.WriterState,
                        indexed: inout MVCCStore.Indexed, path: String) throws(StorageError) {
        var histories: [(key: [UInt8], versions: CompactArray<KeyVersion>)] = []
        histories.reserveCapacity(s.histories.count)
        var logged: [(revision: Int64, key: [UInt8])] = []
        var next = 0
        for h in s.histories {
            var versions = h.versions
            let entry = Replica.dag(of: h.key, in: replicaKeys, from: &next)
            let key = entry?.key.bytes ?? h.key
            if !h.sharedValues.isEmpty {
                guard let dag = entry?.dag else {
                    throw StorageError(.corruption, "snapshot: the value of a key's version is the replicated state's, which lacks the key", path: path)
                }
                let replicated = ReplicatedValues(dag, lookups: versions.count)
                for (i, dot) in h.sharedValues {
                    guard i < versions.count, let value = replicated.value(at: dot) else {
                        throw StorageError(.corruption, "snapshot: the value of a key's version is the replicated state's, which lacks the version", path: path)
                    }
                    versions[i].value = value
                }
            }
            for v in versions where v.modRevision >= s.compactRevision { logged.append((v.modRevision, key)) }
            histories.append((key, versions))
        }
        guard let index = MVCCIndex(restoring: histories, currentRevision: s.currentRevision, compactRevision: s.compactRevision) else {
            throw StorageError(.corruption, "snapshot: key histories out of order", path: path)
        }
        indexed = MVCCStore.Indexed(index: index, log: EventLog.rebuilding(from: logged))
        for l in s.leases {
            state.lessor.grant(id: l.id, ttlSeconds: l.ttl, nowMilliseconds: 0)
            state.lessor.checkpoint(l.id, expiresAtMilliseconds: l.expiresAt)
        }
        for (key, versions) in histories {
            if let last = versions.last, !last.isTombstone, last.lease != 0 {
                state.lessor.reattach(key, from: 0, to: last.lease)
            }
        }
    }
}

extension MVCCStore {
    static func applyReplayed(_ write: EvaluatedWrite, to indexed: inout Indexed) -> RevisionEvents? {
        var events: [Event] = []
        for (key, version) in write.versions {
            indexed.index.append(key, version)
            events.append(version.event(key, previous: write.previous[key]))
        }
        indexed.index.advance(to: write.revision)
        indexed.log.append(revision: write.revision, keys: write.versions.map(\.0))
        return RevisionEvents(revision: write.revision, events: events)
    }

    /// Starts a snapshot of the whole state (on the writer thread, between batches). The state
    /// is captured here, as copy-on-write values (constant time; the writer's next changes copy
    /// what they touch), and encoded and written on a thread of its own, so writes do not stall
    /// for the encoding: the snapshot covers exactly the WAL up to the captured index.
    func takeSnapshot() {
        guard let (walIndex, directory) = storage.beginSnapshot() else { return }
        let captured = CapturedBox(captureState())
        let storage = self.storage
        let report = configuration.snapshotFailed
        WriterThread.start {
            // Below the writer and the event loops: encoding a large state takes seconds of a
            // core, which requests need more.
            WriterThread.lowerPriority()
            var bytes = Self.encodeSnapshot(captured.state!)
            // Dropped before the file is written: the writer's maps merge their overlays at the
            // next change, and the state's old values are freed.
            captured.state = nil
            let error = storage.writeSnapshot(bytes, index: walIndex, directory: directory)
            LargeBuffer.release(&bytes)
            if let error { report?(error) }
            // Encoding allocated and freed a message per key on this thread, and the snapshot
            // freed what the writer replaced since the capture: at a million keys filled in one
            // go, about 20 MiB of the heap then lies free between live allocations, which glibc
            // returns to the kernel only when asked (whole free pages, wherever they are).
            #if canImport(Glibc)
            _ = mallocTrim(0)
            #endif
        }
    }

    /// Defragment (writer thread, between batches): the data directory becomes one snapshot of
    /// the current state plus a fresh WAL segment.
    func rewriteDataDirectory() -> Result<Void, EtcdError> {
        guard storage.hasDataDirectory else { return .success(()) }
        // Defragmenting finishes a compaction's trim at once: the new data directory and the
        // reported size hold only what is reachable.
        lock.withWriteLock { indexed.index.compact(to: indexed.index.compactRevision) }
        trimCursor = nil
        do throws(StorageError) {
            try storage.rewrite(snapshot: Self.encodeSnapshot(captureState()))
            return .success(())
        } catch {
            // A snapshot that could not be written loses nothing (the WAL still has every entry);
            // a WAL that could not be reset refuses every later append itself.
            return .failure(.defragmentFailed(error.description))
        }
    }

    typealias CapturedState = (replica: Replica, index: MVCCIndex, leases: [Int64: LeaseState])

    /// The captured state, for the snapshot thread to drop as soon as it is encoded.
    final class CapturedBox: @unchecked Sendable {
        // @unchecked: handed to the snapshot thread, which alone touches it from then on.
        var state: CapturedState?
        init(_ state: CapturedState) { self.state = state }
    }

    /// The state a snapshot holds, in constant time: copy-on-write values, the two per-key maps
    /// captured so that the writer's next changes go to overlays instead of copying them.
    func captureState() -> CapturedState {
        writer.withLock { state in
            lock.withWriteLock { (state.replica.capture(), indexed.index.capture(), state.lessor.leases) }
        }
    }

    /// The replica's keys with their DAGs in byte order, taken in the order of the index's sorted
    /// keys (sorting a million keys by their bytes took two seconds of every snapshot, each
    /// comparison a cache miss); only keys the replica holds and the index does not (deleted,
    /// compacted away, not yet collected by the replica) are sorted, and merged in.
    static func sortedDAGs(of replica: Replica, index: MVCCIndex) -> [(key: StoredKey, dag: KeyVersionDAG)] {
        var inOrder: [(key: StoredKey, dag: KeyVersionDAG)] = []
        inOrder.reserveCapacity(replica.storedKeyCount)
        for key in index.sortedKeys {
            if let dag = replica.dag(key) { inOrder.append((StoredKey(key), dag)) }
        }
        if inOrder.count == replica.storedKeyCount { return inOrder }
        let only = replica.sortedDAGs(where: { index.history($0.bytes) == nil })
        var merged: [(key: StoredKey, dag: KeyVersionDAG)] = []
        merged.reserveCapacity(inOrder.count + only.count)
        var i = 0, j = 0
        while i < inOrder.count || j < only.count {
            if j == only.count || (i < inOrder.count && bytesLess(inOrder[i].key.bytes, only[j].key.bytes)) {
                merged.append(inOrder[i])
                i += 1
            } else {
                merged.append(only[j])
                j += 1
            }
        }
        return merged
    }

    static func encodeSnapshot(_ c: CapturedState) -> [UInt8] {
        var s = StoreSnapshot()
        s.currentRevision = c.index.currentRevision
        s.compactRevision = c.index.compactRevision
        let dags = sortedDAGs(of: c.replica, index: c.index)
        s.replicaState = ReplicaStateCodec.encode(c.replica, sortedDAGs: dags)
        var next = 0
        s.histories = c.index.sortedKeys.map { key in
            let history = c.index.history(key) ?? []
            let kept = c.index.retained(history)
            // The index's own storage unless compaction left versions to drop.
            let versions = kept.count == history.count ? history : CompactArray(kept)
            // A value the replicated state holds for the same key is written once, there.
            // Both lists ascend: the key's DAG is found by walking beside them, not looked up.
            var shared = SharedValues()
            if let dag = Replica.dag(of: key, in: dags, from: &next)?.dag {
                let holders = ReplicatedValueHolders(dag, lookups: versions.count)
                for (i, v) in versions.enumerated() where !v.isTombstone && !v.value.isEmpty {
                    if let dot = holders.dot(holding: v.value) { shared.append(i, dot: dot) }
                }
            }
            return KeyHistoryRecord(key: key, versions: versions, sharedValues: shared)
        }
        s.leases = c.leases.values.sorted { $0.id < $1.id }.map { ($0.id, $0.ttlSeconds, $0.expiresAtMilliseconds) }
        let encoded = s.protoBytes()
        var state = s.replicaState
        s.replicaState = []
        LargeBuffer.release(&state)
        return encoded
    }
}

/// Which of a key's replicated versions holds the bytes of a version of its MVCC history, for a
/// snapshot to write them once. The index and the replicated state share a value's storage from
/// the write that made it (and again after a restart), so a match is usually the same buffer,
/// which compares in constant time. A key with few versions is scanned, comparing bytes; one
/// with many (kept while a peer was away) gets a table by buffer, so a copy with equal bytes is
/// then written twice — correct, only larger.
struct ReplicatedValueHolders {
    private let dag: KeyVersionDAG
    private let table: [UnsafeRawPointer: Dot]?

    /// `lookups`: how many lookups will be made at most.
    init(_ dag: KeyVersionDAG, lookups: Int = .max) {
        self.dag = dag
        guard dag.versions.count > ReplicatedValues.scanLimit && lookups > 1 else {
            table = nil
            return
        }
        var table: [UnsafeRawPointer: Dot] = [:]
        for v in dag.versions {
            guard let value = v.value, let storage = Self.storage(of: value) else { continue }
            table[storage] = v.dot
        }
        self.table = table
    }

    /// An array's storage (the captured state keeps every value alive meanwhile; empty arrays,
    /// which may all share one, are never looked up).
    private static func storage(of value: [UInt8]) -> UnsafeRawPointer? {
        value.withUnsafeBufferPointer { $0.baseAddress.map(UnsafeRawPointer.init) }
    }

    /// The dot of a replicated version holding exactly `value`, or nil.
    func dot(holding value: [UInt8]) -> Dot? {
        if let table { return Self.storage(of: value).flatMap { table[$0] } }
        return dag.versions.last { $0.value == value }?.dot
    }
}

/// The values a key's replicated versions hold, by dot: looked up once per version of the key's
/// MVCC history when a snapshot is written and restored. A key usually has a version or two and
/// is scanned; one rewritten many times while a peer was away keeps every version until they
/// are stable (tens of thousands after a long partition), and a scan per version made writing
/// and restoring it quadratic (100,000 versions: 3.6 s to write, 4.2 s to restore), so it
/// gets a table — when it is looked up more than once (a compacted history of one version
/// is one scan, cheaper than building the table).
struct ReplicatedValues {
    private let dag: KeyVersionDAG
    private let table: [Dot: [UInt8]?]?
    static let scanLimit = 16

    /// `lookups`: how many lookups will be made at most.
    init(_ dag: KeyVersionDAG, lookups: Int = .max) {
        self.dag = dag
        table = dag.versions.count > Self.scanLimit && lookups > 1
            ? Dictionary(dag.versions.lazy.map { ($0.dot, $0.value) }, uniquingKeysWith: { first, _ in first }) : nil
    }

    /// The value of the version with `dot`; nil when there is none or it is a tombstone.
    func value(at dot: Dot) -> [UInt8]? {
        if let table { return table[dot] ?? nil }
        return dag.versions.first { $0.dot == dot }?.value
    }
}
