import Dispatch
#if canImport(Glibc)
import Glibc
#endif
import EtcdAPI
import LatticeCore
import LatticeStorage
import Synchronization

/// The node-local engine (docs/architecture.md): one writer, many readers, group commit.
///
/// Write requests go into a bounded queue. The writer thread takes everything queued as one
/// batch, evaluates each request in order against the index plus the batch's earlier (pending)
/// writes, turns each into a `Change` with the next local revision, appends the batch to the WAL
/// with one fdatasync, and only then applies it to the MVCC index (under the write lock, held
/// only for the in-memory apply), publishes it to watchers and answers the requests. While one
/// batch is being synced, the next one queues up. Reads take the read lock and never wait for an
/// evaluation or an fsync; they never see a change before it is durable.
public final class MVCCStore: Sendable {
    public struct Configuration: Sendable {
        public var memberID: UInt64
        public var clusterID: UInt64
        public var maxTxnOps = 128
        public var wallClock: any WallClock = SystemWallClock()
        /// Where the WAL and snapshots live; nil keeps everything in memory (tests).
        public var dataDirectory: String?
        /// `--unsafe-no-fsync`: write the WAL without fdatasync (benchmarks and tests only).
        public var unsafeNoFsync = false
        /// `--snapshot-count`: WAL entries between snapshots.
        public var snapshotCount = 100_000
        public var walSegmentBytes = 64 << 20
        /// Bounds of one group-commit batch and of the queue in front of the writer.
        public var batchRequestsMax = 1_000
        public var queueCapacity = 10_000
        /// Keep-alives of one lease are persisted (as a checkpoint change) at most this often,
        /// and at least every half TTL, so a restart keeps leases its clients kept alive.
        public var leaseCheckpointIntervalMilliseconds: Int64 = 5 * 60 * 1000
        /// `--merge`: how concurrent versions of one key from different members combine.
        public var mergeMode: MergeMode = .json
        /// Drop replicated history once it is causally stable. A single member is its own
        /// stable point; with `peerMemberIDs`, only what every peer reported is stable.
        public var collectGarbage = true
        /// The other members of the cluster (etcd member ids). With any, garbage collection waits
        /// for each one's report (`recordPeerReport`) and leases granted elsewhere are expired by
        /// their granting member (or taken over once overdue).
        public var peerMemberIDs: Set<UInt64> = []
        /// Whether this member takes part in replicated membership (it has a peer listener):
        /// then every member in the replicated member table counts for stability too, and
        /// membership changes are reported to `onMembershipChange` observers.
        public var replicatedMembership = false
        /// The id this store's changes carry (their dots' member). A data directory gets a random
        /// one when it is created and keeps it (its incarnation); a wiped or new data directory
        /// therefore never reuses another incarnation's dots. In memory: this value, or the
        /// member id when nil.
        public var replicaID: UInt64?
        /// Bounds of the causal buffer (changes waiting for their dependencies).
        public var causalBufferLimit = Replica.defaultCausalBufferLimit
        public var causalBufferBytes = 64 << 20
        /// Wraps the answering of a committed batch, so a transport can deliver all of its
        /// answers together (the gRPC layer: one socket write per connection per batch).
        public var answerBatch: @Sendable (() -> Void) -> Void = { $0() }
        /// The largest change a request may make (estimated encoded bytes): one WAL record holds a
        /// change, and a record larger than the WAL's bound would stop the store. A request
        /// above it fails alone; lease revocations and sweeps split themselves instead.
        public var maxChangeBytes = WriteAheadLog.maxPayloadBytes - (1 << 20)
        /// Called on the writer thread just before a batch is appended to the WAL (a test seam:
        /// lets a test hold a batch between evaluation and durability).
        public var willAppendBatch: (@Sendable () -> Void)?
        /// Test seam: makes a step of a WAL append fail with the errno returned (see
        /// `WriteAheadLog.injectFault`).
        public var walFault: (@Sendable (WriteAheadLog.FaultPoint) -> Int32?)?
        /// Called (on the snapshot thread) when a background snapshot could not be written; it
        /// is retried with backoff (1 s doubling to 60 s).
        public var snapshotFailed: (@Sendable (StorageError) -> Void)?
        /// Told of WAL syncs and snapshot saves and how long they took (metrics).
        public var storageObserver: StorageObserver?

        public init(memberID: UInt64, clusterID: UInt64) {
            self.memberID = memberID
            self.clusterID = clusterID
        }
    }

    /// State owned by the writer (the writer thread holds the mutex while evaluating a batch;
    /// lease reads take it briefly).
    struct WriterState: ~Copyable {
        /// The replicated (CRDT) state: key version DAGs, leases, members, version vector, HLC.
        var replica: Replica
        /// etcd's lessor view: expiry timers and attached keys at this member.
        var lessor = Lessor()
        /// Last persisted expiry checkpoint per lease (wall ms).
        var checkpointedAt: [Int64: Int64] = [:]
        /// Defragment requests of the batch being evaluated, answered once it is applied.
        var defragmentWaiters: [@Sendable (Result<Void, EtcdError>) -> Void] = []
        /// Keys a remote change left attached to a lease that is not live here (revoked
        /// concurrently, or revoked before the key arrived): the lease sweep deletes them.
        var deadLeaseKeys: Set<[UInt8]> = []
        /// Set by the batch being evaluated: a change altered the member table (`memberRemoved`:
        /// it removed a member). Reported to membership observers once the batch is durable.
        var membershipChanged = false
        var memberRemoved = false
        /// Set by the batch being evaluated: a change had auth operations. The store's
        /// `authState` is rebuilt once the batch is durable.
        var authChanged = false
        /// The encodings of the changes recently written to the WAL, for peer feeds.
        var encodings = RecentChangeEncodings()
    }

    /// What the index lock guards.
    struct Indexed: Sendable {
        var index = MVCCIndex()
        var log = EventLog()
    }

    public let configuration: Configuration
    let lock = RWLock()
    // Guarded by `lock`. nonisolated(unsafe): every access goes through `lock`.
    nonisolated(unsafe) var indexed = Indexed()
    let writer: Mutex<WriterState>
    public let hub: WatchHub
    /// How many times the whole replicated state was hashed (`replicatedStateHash`): O(keys)
    /// work that must only happen when asked for.
    public let stateHashesComputed = Atomic<Int>(0)
    /// Where the writer thread continues trimming history after a compaction (nil: nothing to
    /// trim). Writer thread only.
    nonisolated(unsafe) var trimCursor: [UInt8]? = nil {
        didSet { trimPending.store(trimCursor != nil, ordering: .relaxed) }
    }
    let trimPending = Atomic<Bool>(false)
    let queue: WriteQueue<QueuedWrite>
    /// Called (on the writer thread) after a batch made new changes durable.
    let durableObservers = Mutex<[@Sendable () -> Void]>([])
    let membershipObservers = Mutex<[@Sendable (_ removal: Bool) -> Void]>([])
    /// The durable auth state, rebuilt by the writer after a batch that changed it.
    let authCache = Mutex(AuthState())
    /// The replica's log end and vector as of the last durable batch: only changes below this end
    /// leave the member (`feedRead`), and this vector is what it reports. Written only
    /// while the writer lock is held, so a reader holding that lock sees it consistent with the
    /// replica's log; peer feeds and heartbeats read it alone, without waiting for the writer
    /// lock (held through evaluation).
    let durable = Mutex<(logEnd: Int, vector: VersionVector)>((0, VersionVector()))
    /// The writer holds its lock to evaluate a batch (`feedRead` does not wait for that).
    let evaluatingBatch = Atomic<Bool>(false)
    /// A feed found the writer's lock held (`feedRead`): the writer wakes the durable-change
    /// observers after its batch.
    let feedsDeferred = Atomic<Bool>(false)
    /// Peers' reports that arrived while the writer evaluated a batch (`recordPeerReport`),
    /// the latest per member.
    let waitingReports = Mutex<[UInt64: VersionVector]>([:])
    /// A garbage collection batch is queued (set by a report that moved the stable point).
    let collectionQueued = Atomic<Bool>(false)
    let storage: StorageOwner
    /// Set once the WAL failed: every later write fails with this error.
    let failure = Mutex<EtcdError?>(nil)
    let failureObservers = Mutex<[@Sendable (EtcdError) -> Void]>([])
    private let writerDone = DispatchSemaphore(value: 0)
    /// The id carried by this member's changes (its incarnation's dot id). Fixed once the store
    /// is open (a state transfer keeps it), so read without the writer's lock: peer feeds ask
    /// for it on every message, and the lock is held through each batch.
    public let replicaID: UInt64
    /// Raft term reported in headers: a single member elects itself once, in term 2, like etcd.
    public static let raftTerm: UInt64 = 2

    /// Opens the store: with a data directory, locks it, loads the newest snapshot and replays
    /// the WAL after it. Throws a clear error for a locked or damaged data directory.
    public init(configuration: Configuration) throws(StorageError) {
        self.configuration = configuration
        self.queue = WriteQueue(capacity: configuration.queueCapacity)
        var state = WriterState(replica: Replica(member: configuration.replicaID ?? configuration.memberID,
                                                 mergeMode: configuration.mergeMode, wallClock: configuration.wallClock,
                                                 causalBufferLimit: configuration.causalBufferLimit,
                                                 causalBufferBytes: configuration.causalBufferBytes))
        var indexed = Indexed()
        self.storage = StorageOwner()
        if let dir = configuration.dataDirectory {
            let recovered = try Recovery.open(dataDirectory: dir, configuration: configuration, state: &state, indexed: &indexed)
            storage.attach(recovered, walFault: configuration.walFault, observer: configuration.storageObserver)
            storage.fault = configuration.walFault
            Self.returnFreedMemory()
        }
        _ = Self.largeAllocationThresholdFixed
        state.replica.setPeerMembers(configuration.peerMemberIDs, local: configuration.replicatedMembership ? configuration.memberID : 0)
        // Conflicts met again while replaying the WAL were reported when they happened.
        _ = state.replica.drainConflicts()
        state.authChanged = false
        authCache.withLock { $0 = state.replica.authState }
        // Only a peer's change can leave a key attached to a lease that is not live, so a single
        // member skips this O(keys) scan at start-up.
        if !configuration.peerMemberIDs.isEmpty { state.deadLeaseKeys = Set(state.replica.keysWithDeadLeases()) }
        self.indexed = indexed
        self.hub = WatchHub(currentRevision: indexed.index.currentRevision)
        let durablePoint = (logEnd: state.replica.logEnd, vector: state.replica.vector)
        self.replicaID = state.replica.member
        self.writer = Mutex(state)
        self.durable.withLock { $0 = durablePoint }
        startWriter()
    }

    /// Stops the writer after the queued writes and closes the WAL.
    public func close() {
        queue.close()
        writerDone.wait()
        storage.close()
    }

    /// A note from recovery (a truncated torn tail, a damaged snapshot skipped), for the log.
    public var recoveryNotes: [String] { storage.notes }

    public var currentRevision: Int64 { lock.withReadLock { indexed.index.currentRevision } }
    public var compactRevision: Int64 { lock.withReadLock { indexed.index.compactRevision } }
    public var memberID: UInt64 { configuration.memberID }

    public func header(revision: Int64) -> ResponseHeader {
        ResponseHeader(clusterID: configuration.clusterID, memberID: configuration.memberID,
                       revision: revision, raftTerm: Self.raftTerm)
    }

    public func currentHeader() -> ResponseHeader { header(revision: currentRevision) }

    // MARK: reads

    public func range(_ r: RangeRequest) throws(EtcdError) -> RangeResponse { try range(validated(r)) }

    public func range(_ valid: Validated<RangeRequest>) throws(EtcdError) -> RangeResponse {
        let r = valid.request
        return try lock.withReadLock { () throws(EtcdError) -> RangeResponse in
            let index = indexed.index
            let current = index.currentRevision
            let rev = try RangeQuery.readRevision(r.revision, current: current, compacted: index.compactRevision)
            return RangeQuery.run(r, header: header(revision: current)) { limit, countOnly in
                let range = KeyRange(key: r.key, end: r.rangeEnd)
                if countOnly { return ([], index.count(in: range, at: rev)) }
                var kvs: [KeyValue] = []
                if limit > 0 {
                    // A page: its keys, then the count from the index's chunk statistics.
                    index.forEachVisible(in: range, at: rev) { key, v in
                        kvs.append(v.keyValue(key))
                        return kvs.count < limit
                    }
                    return (kvs, index.count(in: range, at: rev))
                }
                index.forEachVisible(in: range, at: rev) { key, v in
                    kvs.append(v.keyValue(key))
                    return true
                }
                return (kvs, kvs.count)
            }
        }
    }

    /// Events for watchers catching up: up to `maxRevisions` revisions from `revision`, and the
    /// current revision they were read at; or the compaction revision if `revision` is older.
    public func events(from revision: Int64, maxRevisions: Int) -> EventsRead {
        lock.withReadLock {
            let index = indexed.index
            if revision < index.compactRevision { return .compacted(index.compactRevision) }
            return .events(indexed.log.batches(from: revision, maxRevisions: maxRevisions, index: index), current: index.currentRevision)
        }
    }

    public enum EventsRead: Sendable {
        case events([RevisionEvents], current: Int64)
        case compacted(Int64)
    }

    /// Approximate bytes of live data and history (keys, values, per-version overhead), the
    /// store's "database size" for Status and the space quota.
    public var approximateSizeBytes: Int64 { lock.withReadLock { indexed.index.approximateBytes } }

    public var keyCount: Int { lock.withReadLock { indexed.index.liveKeyCount } }

    // MARK: KV writes (completion after durability; synchronous wrappers wait for it)

    /// A permission check on the keys a write touches besides its own, made on the writer when
    /// the write is evaluated (so on exactly the keys it sees); it refuses by throwing.
    public typealias KeysAllowed = @Sendable (_ keys: [[UInt8]]) throws(EtcdError) -> Void

    /// `authRevision`: the auth state's revision the caller's permissions were checked at (nil
    /// without auth); the put is refused with "revision of auth store is old" if it has moved by
    /// the time the writer evaluates it. `leaseKeysAllowed`, when given and the put names a
    /// lease, is asked on the writer about the keys already attached to that lease (etcd's check
    /// that the caller may write them).
    public func put(_ p: PutRequest, cancelled: (@Sendable () -> Bool)? = nil, authRevision: UInt64? = nil,
                    leaseKeysAllowed: KeysAllowed? = nil,
                    completion: @escaping @Sendable (Result<PutResponse, EtcdError>) -> Void) {
        checked(p, validated, completion) { put($0, cancelled: cancelled, authRevision: authRevision, leaseKeysAllowed: leaseKeysAllowed, completion: completion) }
    }

    public func put(_ valid: Validated<PutRequest>, cancelled: (@Sendable () -> Bool)? = nil, authRevision: UInt64? = nil,
                    leaseKeysAllowed: KeysAllowed? = nil,
                    completion: @escaping @Sendable (Result<PutResponse, EtcdError>) -> Void) {
        let p = valid.request
        submit({ (txn: inout WriteTxn, state: inout WriterState) throws(EtcdError) -> PutResponse in
            if p.lease != 0, let leaseKeysAllowed, let lease = state.lessor.lease(p.lease) {
                try leaseKeysAllowed(lease.keys.map(\.bytes))
            }
            // etcd checks a top-level put's lease before the key (inside a txn it is the other way).
            if p.lease != 0 && !txn.leaseExists(p.lease) { throw .leaseNotFound }
            if (p.ignoreValue || p.ignoreLease) && txn.current(p.key) == nil { throw .keyNotFound }
            return txn.put(p)
        }, cancelled: cancelled, authRevision: authRevision, completion: { [self] result in
            completion(result.map { var r = $0; r.header = header(revision: r.header?.revision ?? 0); return r })
        })
    }

    public func deleteRange(_ d: DeleteRangeRequest, cancelled: (@Sendable () -> Bool)? = nil, authRevision: UInt64? = nil,
                            completion: @escaping @Sendable (Result<DeleteRangeResponse, EtcdError>) -> Void) {
        checked(d, validated, completion) { deleteRange($0, cancelled: cancelled, authRevision: authRevision, completion: completion) }
    }

    public func deleteRange(_ valid: Validated<DeleteRangeRequest>, cancelled: (@Sendable () -> Bool)? = nil, authRevision: UInt64? = nil,
                            completion: @escaping @Sendable (Result<DeleteRangeResponse, EtcdError>) -> Void) {
        let d = valid.request
        submit({ (txn: inout WriteTxn, _: inout WriterState) throws(EtcdError) -> DeleteRangeResponse in txn.deleteRange(d) },
               cancelled: cancelled, authRevision: authRevision, completion: { [self] result in
            completion(result.map { var r = $0; r.header = header(revision: r.header?.revision ?? 0); return r })
        })
    }

    public func txn(_ t: TxnRequest, cancelled: (@Sendable () -> Bool)? = nil, authRevision: UInt64? = nil,
                    completion: @escaping @Sendable (Result<TxnResponse, EtcdError>) -> Void) {
        checked(t, validated, completion) { txn($0, cancelled: cancelled, authRevision: authRevision, completion: completion) }
    }

    public func txn(_ valid: Validated<TxnRequest>, cancelled: (@Sendable () -> Bool)? = nil, authRevision: UInt64? = nil,
                    completion: @escaping @Sendable (Result<TxnResponse, EtcdError>) -> Void) {
        let t = valid.request
        submit({ (txn: inout WriteTxn, _: inout WriterState) throws(EtcdError) -> TxnResponse in
            var r = try txn.txn(t, compactRevision: txn.pending.compactRevision)
            r.header = ResponseHeader(clusterID: 0, memberID: 0, revision: txn.readRevision, raftTerm: 0)
            return r
        }, cancelled: cancelled, authRevision: authRevision, completion: { [self] result in
            completion(result.map { var r = $0; r.header = header(revision: r.header?.revision ?? 0); return r })
        })
    }

    public func compact(_ c: CompactionRequest, completion: @escaping @Sendable (Result<CompactionResponse, EtcdError>) -> Void) {
        submit({ (txn: inout WriteTxn, _: inout WriterState) throws(EtcdError) -> CompactionResponse in
            if c.revision <= txn.base.compactRevision || c.revision <= txn.pending.compactRevision { throw .compacted }
            if c.revision > txn.beginRevision { throw .futureRevision }
            txn.compaction = c.revision
            return CompactionResponse()
        }, completion: { [self] result in
            completion(result.map { var r = $0; r.header = currentHeader(); return r })
        })
    }

    /// etcd's Defragment: rewrites the data directory to its smallest form — one snapshot of the
    /// current state and a fresh WAL segment; every older segment and snapshot is removed. Runs
    /// on the writer thread between two batches (writes wait meanwhile, as with etcd's defrag).
    /// In memory it has nothing to do.
    public func defragment(completion: @escaping @Sendable (Result<Void, EtcdError>) -> Void) {
        submit({ (_: inout WriteTxn, state: inout WriterState) throws(EtcdError) in
            state.defragmentWaiters.append(completion)
        }, completion: { result in
            // Success is answered by the defragmentation itself; a failed batch never reaches it.
            if case .failure(let error) = result { completion(.failure(error)) }
        })
    }

    public func defragment() throws(EtcdError) { try wait { defragment(completion: $0) } }

    public func put(_ p: PutRequest) throws(EtcdError) -> PutResponse { try wait { put(p, completion: $0) } }
    public func deleteRange(_ d: DeleteRangeRequest) throws(EtcdError) -> DeleteRangeResponse { try wait { deleteRange(d, completion: $0) } }
    public func txn(_ t: TxnRequest) throws(EtcdError) -> TxnResponse { try wait { txn(t, completion: $0) } }
    public func compact(_ c: CompactionRequest) throws(EtcdError) -> CompactionResponse { try wait { compact(c, completion: $0) } }
    /// etcd's request checks (the ones its gRPC layer makes before anything else, permission
    /// checks included), with its errors. The store's methods that take a `Validated` request do
    /// not make them again; those that take the plain request make them first.
    public func validated(_ r: RangeRequest) throws(EtcdError) -> Validated<RangeRequest> {
        try RangeQuery.validate(r)
        return Validated(r)
    }
    public func validated(_ p: PutRequest) throws(EtcdError) -> Validated<PutRequest> {
        try RequestValidation.check(p)
        return Validated(p)
    }
    public func validated(_ d: DeleteRangeRequest) throws(EtcdError) -> Validated<DeleteRangeRequest> {
        try RequestValidation.check(d)
        return Validated(d)
    }
    public func validated(_ t: TxnRequest) throws(EtcdError) -> Validated<TxnRequest> {
        try RequestValidation.check(t, maxTxnOps: configuration.maxTxnOps)
        return Validated(t)
    }

    /// Runs `body` with `request` validated, or fails `completion` with the check's error (the
    /// plain-request write methods).
    private func checked<Request, Response>(_ request: Request, _ check: (Request) throws(EtcdError) -> Validated<Request>,
                                            _ completion: (Result<Response, EtcdError>) -> Void,
                                            _ body: (Validated<Request>) -> Void) {
        let valid: Validated<Request>
        do throws(EtcdError) { valid = try check(request) } catch { return completion(.failure(error)) }
        body(valid)
    }

    /// Applies `ops` to the auth state as one durable change.
    public func changeAuth(_ ops: [AuthOp]) throws(EtcdError) { _ = try wait { changeAuth({ _ in ops }, completion: $0) } }

    /// Runs an asynchronous store call and waits for its completion (tests, tools; never on an
    /// event loop).
    func wait<R: Sendable>(_ start: (@escaping @Sendable (Result<R, EtcdError>) -> Void) -> Void) throws(EtcdError) -> R {
        let done = DispatchSemaphore(value: 0)
        let box = Mutex<Result<R, EtcdError>?>(nil)
        start { result in
            box.withLock { $0 = result }
            done.signal()
        }
        done.wait()
        return try box.withLock { $0! }.get()
    }

    // MARK: the write path

    /// A request waiting for the writer: evaluates itself against the batch, and later learns
    /// whether its batch became durable.
    struct QueuedWrite: Sendable {
        let evaluate: @Sendable (inout WriteTxn, inout WriterState) -> Void
        let finish: @Sendable (EtcdError?) -> Void
        /// Changes from a peer: applied through the replica instead of `evaluate`.
        var remote: [Change] = []
        /// The encoding each remote change arrived in, where known (parallel to `remote`, or empty).
        var remoteBytes: [[UInt8]?] = []
        var remoteApplied: (@Sendable ([RemoteApplyOutcome]) -> Void)? = nil
        /// The member the remote changes came from (0: unknown): refused once it is removed.
        var remoteSource: UInt64 = 0
        /// A state transfer from a peer: installed instead of `evaluate`; the data directory is
        /// rewritten to one snapshot before the batch is answered.
        var transfer: Replica? = nil
        var transferInstalled: (@Sendable (EtcdError?) -> Void)? = nil
        /// True once the client gave up on the write: if the writer has not evaluated it yet,
        /// it is dropped (a flood of reset requests does not become a flood of writes).
        var cancelled: (@Sendable () -> Bool)? = nil
    }

    /// Queues a write. `body` runs on the writer thread (against the index plus the batch's
    /// pending writes); `completion` runs after the batch is durable and applied, or with the
    /// error that stopped it.
    /// `authRevision`: the auth state's revision the request's permissions were checked at; if
    /// the auth state has changed since, the request is refused with etcd's "revision of auth
    /// store is old" instead of running on permissions that may have been taken away.
    func submit<R: Sendable>(_ body: @escaping @Sendable (inout WriteTxn, inout WriterState) throws(EtcdError) -> R,
                             cancelled: (@Sendable () -> Bool)? = nil, authRevision: UInt64? = nil,
                             completion: @escaping @Sendable (Result<R, EtcdError>) -> Void) {
        if let failed = failure.withLock({ $0 }) { return completion(.failure(failed)) }
        let outcome = Mutex<Result<R, EtcdError>?>(nil)
        let maxChangeBytes = configuration.maxChangeBytes
        let item = QueuedWrite(
            evaluate: { txn, state in
                do throws(EtcdError) {
                    if let authRevision, state.replica.authRevision != authRevision { throw .authOldRevision }
                    let r = try body(&txn, &state)
                    let bytes = txn.estimatedChangeBytes
                    if bytes > maxChangeBytes { throw .changeTooLarge(bytes: bytes, limit: maxChangeBytes) }
                    outcome.withLock { $0 = .success(r) }
                } catch {
                    outcome.withLock { $0 = .failure(error) }
                    txn.discard()
                }
            },
            finish: { batchError in
                let skipped: EtcdError = cancelled?() == true ? .canceled : .stopped
                let result = outcome.withLock { $0 } ?? .failure(batchError ?? skipped)
                if let batchError, case .success = result {
                    completion(.failure(batchError))
                } else {
                    completion(result)
                }
            })
        var queued = item
        queued.cancelled = cancelled
        if !queue.enqueue(queued) { completion(.failure(.tooManyRequests)) }
    }

    /// Records the storage failure that stops all writes, and tells whoever waits for one.
    private func failed(_ error: EtcdError) {
        failure.withLock { $0 = error }
        for observer in failureObservers.withLock({ o -> [@Sendable (EtcdError) -> Void] in defer { o = [] }; return o }) {
            observer(error)
        }
    }

    /// The storage failure that stops all writes, if one happened.
    public var storageFailure: EtcdError? { failure.withLock { $0 } }

    /// Calls `observer` once if the store's storage fails (the WAL cannot be written): from then
    /// on the store refuses every write until it is restarted and recovers.
    public func onStorageFailure(_ observer: @escaping @Sendable (EtcdError) -> Void) {
        if let error = failure.withLock({ $0 }) { return observer(error) }
        failureObservers.withLock { $0.append(observer) }
    }

    /// The writer runs on its own thread (it blocks in fdatasync; it must not take a thread
    /// from a shared pool).
    private func startWriter() {
        WriterThread.start { [self] in
            while true {
                // While a compaction's trim is pending, one batch of it after each commit and
                // after each `trimPause` without writes: the lock is held for one batch of keys
                // only, writes go first, and the trim takes a bounded share of a core rather
                // than all of one while clients wait for theirs.
                let trimming = trimCursor != nil
                guard let items = queue.takeBatch(max: configuration.batchRequestsMax, timeout: trimming ? Self.trimPause : nil) else { break }
                if !items.isEmpty { commit(items) }
                if let from = trimCursor {
                    trimCursor = lock.withWriteLock { indexed.index.compactBatch(from: from, maxKeys: Self.trimBatchKeys) }
                }
            }
            writerDone.signal()
        }
    }

    /// One group commit: evaluate, one WAL append + fdatasync, apply, publish, answer.
    private func commit(_ items: [QueuedWrite]) {
        if let failed = failure.withLock({ $0 }) {
            for item in items { item.finish(failed) }
            return
        }
        var evaluated: [EvaluatedWrite] = []
        var entries: [WALEntry] = []
        var defragmentWaiters: [@Sendable (Result<Void, EtcdError>) -> Void] = []
        var installedTransfer = false
        // The replica's log end and vector once this batch is evaluated: durable after the append.
        var logEnd = 0
        var vector = VersionVector()
        writer.withLock { state in
            evaluatingBatch.store(true, ordering: .releasing)
            recordWaitingReports(&state)
            // Peer feeds read the kept encodings; a member alone keeps none. Checked per batch:
            // a feed encodes any change it does not find kept.
            state.encodings.isKeeping = !state.replica.peerMembers.isEmpty
            defer {
                evaluatingBatch.store(false, ordering: .releasing)
                defragmentWaiters = state.defragmentWaiters
                state.defragmentWaiters = []
                logEnd = state.replica.logEnd
                vector = state.replica.vector
            }
            lock.withReadLock {
                var pending = PendingWrites(revision: indexed.index.currentRevision, compactRevision: indexed.index.compactRevision)
                for item in items {
                    if let transferred = item.transfer, let report = item.transferInstalled {
                        if item.remoteSource != 0, state.replica.isRemoved(item.remoteSource) {
                            report(EtcdError(.failedPrecondition, "lattice: state transfer refused: member \(String(item.remoteSource, radix: 16)) was removed from the cluster"))
                            continue
                        }
                        let refusal = installTransfer(transferred, state: &state, pending: &pending, evaluated: &evaluated)
                        if refusal == nil { installedTransfer = true }
                        report(refusal)
                        continue
                    }
                    if let report = item.remoteApplied {
                        if item.remoteSource != 0, state.replica.isRemoved(item.remoteSource) {
                            report(item.remote.map { _ in .rejected("member \(String(item.remoteSource, radix: 16)) was removed from the cluster") })
                            continue
                        }
                        report(item.remote.indices.map { i in
                            applyRemote(item.remote[i], encoding: i < item.remoteBytes.count ? item.remoteBytes[i] : nil,
                                        state: &state, pending: &pending, evaluated: &evaluated, entries: &entries)
                        })
                        continue
                    }
                    if let cancelled = item.cancelled, cancelled() { continue }  // finished with .canceled
                    let dot = Dot(member: state.replica.member, seq: state.replica.vector[state.replica.member] + 1)
                    let leases = state.lessor.leases
                    // The transaction shares `pending`'s dictionary: it ends inside this closure,
                    // before `pending` changes, or each request would copy the batch's versions.
                    let (ops, compaction, evaluatedWrite): ([Op], Int64?, EvaluatedWrite?) = {
                        var txn = WriteTxn(base: indexed.index, pending: pending, leaseExists: { leases[$0] != nil })
                        item.evaluate(&txn, &state)
                        if let compaction = txn.compaction { return ([], compaction, nil) }
                        return (txn.ops, nil, txn.ops.isEmpty ? nil : EvaluatedWrite(txn))
                    }()
                    if let compaction {
                        pending.compactRevision = compaction
                        entries.append(WALEntry(type: WALRecordType.compaction, payload: CompactionRecord(revision: compaction).protoBytes()))
                        evaluated.append(EvaluatedWrite(compaction: compaction))
                        continue
                    }
                    guard let write = evaluatedWrite else { continue }
                    // The replica stamps the change (this dot, deps, HLC, parents = current heads).
                    let applied = state.replica.makeChange(ops)
                    let change = applied.change
                    if !applied.membersChanged.isEmpty {
                        state.membershipChanged = true
                        if applied.removesMember { state.memberRemoved = true }
                    }
                    if applied.changesAuth { state.authChanged = true }
                    assert(change.id == dot, "the replica and the store agree on the next dot")
                    for (key, version) in write.versions {
                        state.lessor.reattach(key, from: write.previous[key]?.lease ?? 0, to: version.lease)
                        pending.versions[key] = version
                    }
                    if write.revision != 0 { pending.revision = write.revision }
                    entries.append(Self.walEntry(revision: write.revision, change: change, encodings: &state.encodings))
                    evaluated.append(write)
                }
                if state.memberRemoved {
                    // Changes still buffered would be applied after this member reports the
                    // removal, which `Replica.peerMembers` rules out; their senders resend
                    // what some member applied (the links ask for it after a removal).
                    state.replica.dropPendingChanges()
                }
                if configuration.collectGarbage {
                    _ = state.replica.collectGarbage(stableVector: state.replica.vector)
                }
            }
        }
        configuration.willAppendBatch?()
        do throws(StorageError) {
            try storage.append(entries)
        } catch {
            let failed = EtcdError.storageFailed(error.description)
            self.failed(failed)
            for item in items { item.finish(failed) }
            return
        }
        var batches: [RevisionEvents] = []
        lock.withWriteLock {
            for write in evaluated {
                if let batch = apply(write) { batches.append(batch) }
            }
        }
        if installedTransfer {
            // A transferred state is made durable as one snapshot of the whole store (it can be
            // larger than a WAL record); nothing of this batch is answered or shipped before.
            if case .failure(let error) = rewriteDataDirectory() {
                let failed = EtcdError.storageFailed("writing the snapshot of a state transfer: \(error)")
                self.failed(failed)
                for item in items { item.finish(failed) }
                return
            }
        }
        // Durable now: these changes may leave the member.
        let (shipped, membership, auth) = writer.withLock { state -> (Bool, (changed: Bool, removal: Bool), AuthState?) in
            defer {
                durable.withLock { $0 = (logEnd, vector) }
                state.membershipChanged = false
                state.memberRemoved = false
                state.authChanged = false
            }
            return (durable.withLock { $0.logEnd } != logEnd || installedTransfer,
                    (state.membershipChanged || installedTransfer, state.memberRemoved || installedTransfer),
                    state.authChanged || installedTransfer ? state.replica.authState : nil)
        }
        if let auth { authCache.withLock { $0 = auth } }
        for batch in batches { hub.publish(batch) }
        if !defragmentWaiters.isEmpty {
            let result = rewriteDataDirectory()
            for waiter in defragmentWaiters { waiter(result) }
        }
        configuration.answerBatch { for item in items { item.finish(nil) } }
        if feedsDeferred.exchange(false, ordering: .acquiringAndReleasing) || shipped { notifyDurable() }
        if membership.changed { notifyMembership(removal: membership.removal) }
        storage.collectFinishedSnapshot()
        if storage.needsSnapshot(every: configuration.snapshotCount) { takeSnapshot() }
    }

    /// The part of an evaluation that is applied once durable.
    struct EvaluatedWrite {
        var revision: Int64 = 0
        var versions: [([UInt8], KeyVersion)] = []
        var previous: VersionsByKey = [:]
        var compaction: Int64?

        init(_ txn: WriteTxn) {
            revision = txn.hasChanges ? txn.newRevision : 0
            versions = txn.writeOrder.map { ($0, txn.overlay[$0]!) }
            previous = txn.previous
        }

        init(compaction: Int64) { self.compaction = compaction }
        init(revision: Int64, versions: [([UInt8], KeyVersion)], previous: VersionsByKey) {
            self.revision = revision
            self.versions = versions
            self.previous = previous
        }
    }

    /// Applies one durable write to the index and the event log (caller holds the write lock).
    func apply(_ write: EvaluatedWrite) -> RevisionEvents? {
        if let compaction = write.compaction {
            // Reads below the compaction point fail from here on; the versions it made
            // unreachable are dropped in the background, a batch of keys at a time.
            indexed.index.beginCompaction(to: compaction)
            indexed.log.compact(to: compaction)
            // From the first key again: keys before a running trim's cursor were trimmed only
            // to the previous compaction point.
            trimCursor = []
            return nil
        }
        guard !write.versions.isEmpty else { return nil }
        return Self.applyReplayed(write, to: &indexed)
    }
}

extension MVCCStore {
    /// Keys per hold of the index's write lock when trimming history after a compaction (etcd
    /// compacts 1,000 keys per batch; 250 measured better here: put p99 during a 520k-revision
    /// compaction at a million keys 1.4 ms against 2.3 ms with 1,000, and 0.7 ms steady):
    /// reads and writes wait for at most one batch rather than for a pass over every key (a
    /// quarter of a second at a million keys). The writer thread runs the batches between
    /// commits: it is the only thread that takes the index's write lock (see `RWLock`).
    static let trimBatchKeys = 250
    /// The longest the trim waits for writes between two batches when none come (etcd pauses
    /// 10 ms per 1,000 keys): a million keys are trimmed in about 2 s when idle.
    static let trimPause = DispatchTimeInterval.microseconds(500)

    /// Whether a compaction's trim is still running (for tests).
    var isTrimmingHistory: Bool { trimPending.load(ordering: .relaxed) }

    /// Keeps glibc's threshold for serving an allocation with its own mapping at 128 KiB. By
    /// default glibc raises it (up to 32 MiB) each time a large mapped block is freed; after the
    /// first snapshot buffer was freed, the index's and replica's map shards (hundreds of KiB
    /// each at a million keys) came from the heap, and the copies a snapshot leaves behind
    /// stayed resident as free heap: 150 MiB more RSS at a million keys. Mapped, they go back
    /// to the system when freed. A process-wide setting: made once, by the first store.
    static let largeAllocationThresholdFixed: Void = {
        #if os(Linux)
        _ = glibcMallopt(-3 /* M_MMAP_THRESHOLD */, 128 * 1024)
        #endif
    }()

    /// Gives the pages of freed heap memory back to the system. Recovery frees hundreds of
    /// megabytes of temporaries (decoded messages, WAL records) in small blocks the allocator
    /// would otherwise keep: without this, a restarted member holds about 20 % more memory than
    /// one that wrote the same keys. Only before serving: it holds the allocator's lock while it
    /// walks the heap (a snapshot thread calling it stalled every write for ~100 ms).
    static func returnFreedMemory() {
        #if os(Linux)
        _ = glibcMallocTrim(0)
        #endif
    }
}

#if os(Linux)
/// glibc's `mallopt(int param, int value)` (not in the Glibc module's headers).
@_silgen_name("mallopt")
private func glibcMallopt(_ parameter: Int32, _ value: Int32) -> Int32

/// glibc's `gettid()` (not in the Glibc module's headers).
@_silgen_name("gettid")
private func glibcGettid() -> Int32

/// glibc's `malloc_trim(size_t pad)` (not in the Glibc module's headers).
@_silgen_name("malloc_trim")
private func glibcMallocTrim(_ pad: Int) -> Int32
#endif

/// A detached POSIX thread running one closure.
enum WriterThread {
    private final class Box {
        let body: () -> Void
        init(_ body: @escaping () -> Void) { self.body = body }
    }

    static func start(_ body: @escaping @Sendable () -> Void) {
        let box = Unmanaged.passRetained(Box(body)).toOpaque()
        var thread = pthread_t()
        let rc = pthread_create(&thread, nil, { arg in
            let box = Unmanaged<Box>.fromOpaque(arg!).takeRetainedValue()
            box.body()
            return nil
        }, box)
        precondition(rc == 0, "cannot start the store's writer thread (errno \(rc))")
        pthread_detach(thread)
    }

    /// Gives the calling thread a lower CPU priority (nice 10: about a tenth of a normal
    /// thread's share when both want the CPU; all of an idle one). Linux only.
    static func lowerPriority() {
        #if os(Linux)
        _ = setpriority(__priority_which_t(PRIO_PROCESS.rawValue), id_t(glibcGettid()), 10)
        #endif
    }
}


/// A value computed on a thread of its own while the caller does other work; `join` waits for it.
final class BackgroundResult<Value: Sendable>: Sendable {
    private let value = Mutex<Value?>(nil)
    private let done = DispatchSemaphore(value: 0)

    init(_ body: @escaping @Sendable () -> Value) {
        WriterThread.start { [self] in
            let result = body()
            value.withLock { $0 = result }
            done.signal()
        }
    }

    func join() -> Value {
        done.wait()
        return value.withLock { $0! }
    }
}

/// Timings of the store's storage, for metrics. Called on the writer thread (WAL) and the
/// snapshot thread: implementations only record.
public struct StorageObserver: Sendable {
    /// Each WAL batch: its fdatasync's duration (zero with `--unsafe-no-fsync`) and its bytes.
    public var walSynced: (@Sendable (_ fsync: Duration, _ bytes: Int) -> Void)?
    /// Each snapshot file written (temporary file, fsync, rename, directory fsync).
    public var snapshotSaved: (@Sendable (Duration) -> Void)?

    public init(walSynced: (@Sendable (_ fsync: Duration, _ bytes: Int) -> Void)? = nil,
                snapshotSaved: (@Sendable (Duration) -> Void)? = nil) {
        self.walSynced = walSynced
        self.snapshotSaved = snapshotSaved
    }
}

/// A request that passed etcd's request checks (`MVCCStore.validated(_:)`), so that they are
/// made once per request: only the store makes one.
public struct Validated<Request: Sendable>: Sendable {
    public let request: Request
    fileprivate init(_ request: Request) { self.request = request }
}
