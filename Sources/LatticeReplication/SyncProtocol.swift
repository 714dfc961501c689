import EtcdAPI
import LatticeCore
import LatticeStore

/// The feeder's side of one Sync stream, without I/O: which changes to send next, when a report
/// may be sent, and what an acknowledgement changes. The network stream (`PeerFeedStream`) and
/// the multi-member simulation in the tests drive this same logic.
///
/// Invariants:
/// - changes go out in log order (a causal order) and only once they are durable here;
/// - at most `batchesInFlightMax` batches are unacknowledged (the puller's buffer is bounded);
/// - a report (this member's durable vector) is sent only when every change it names was sent
///   on this stream or is already held by the puller — so a puller that applied the stream in
///   order holds everything the report names, which is what makes it usable for stability.
public struct FeedCursor: Sendable {
    public static let batchBytesMax = 256 * 1024
    public static let batchesInFlightMax: UInt64 = 8

    /// What the puller holds, as far as this feeder knows (its hello and acks).
    public private(set) var lacking: VersionVector
    /// Absolute log position to read from next.
    public private(set) var position = 0
    public private(set) var sentBatches: UInt64 = 0
    public private(set) var processedBatches: UInt64 = 0
    private var lastReport: VersionVector?
    /// The durable vector when the last report was sent (before clamping).
    private var lastReportedVector: VersionVector?
    /// Authors the puller receives from directly (its hello, then its last ack): their changes
    /// are not relayed.
    public private(set) var direct: Set<UInt64> = []

    public enum Next: Sendable, Equatable {
        case send(SyncResponse)
        /// Nothing to send until new changes are durable, an ack arrives or a heartbeat is due.
        case idle
        /// The puller lacks changes that were trimmed from the log.
        case needsStateTransfer
    }

    /// The puller's member id (0: unknown): its reports recorded by the store also say what it
    /// holds.
    public let puller: UInt64
    /// The puller's incarnation (the author id of its changes; 0: unknown): its own changes are
    /// never sent back to it (it holds every one of them that ever left it).
    public let pullerIncarnation: UInt64

    public init(pullerVector: VersionVector, puller: UInt64 = 0, pullerIncarnation: UInt64 = 0, direct: Set<UInt64> = []) {
        self.lacking = pullerVector
        self.puller = puller
        self.pullerIncarnation = pullerIncarnation
        self.direct = direct
    }

    /// The cursor for a puller's hello.
    public init(hello: PeerHello) {
        self.init(pullerVector: hello.vector, puller: hello.memberID, pullerIncarnation: hello.incarnation, direct: Set(hello.direct))
    }

    /// The next message for the puller. With `heartbeat`, a report is sent even if unchanged.
    public mutating func next(from store: MVCCStore, heartbeat: Bool = false) -> Next {
        guard sentBatches - processedBatches < Self.batchesInFlightMax else { return .idle }
        let (end, vector) = store.durablePoint
        var direct = self.direct
        if !direct.isEmpty { direct.remove(store.replicaID) }
        var skipping = direct
        if pullerIncarnation != 0 { skipping.insert(pullerIncarnation) }
        // Busy while the writer evaluates a batch: it wakes the feed once that is done.
        guard let read = store.feedRead(puller: puller, from: position, lacking: lacking, maxBytes: Self.batchBytesMax,
                                        skipping: skipping) else { return .idle }
        // What the puller reported on other streams (e.g. changes it got from a third member)
        // is held by it too; without this a collected log could look like a gap.
        if let report = read.report, !lacking.covers(report) { lacking = lacking.merged(with: report) }
        guard let page = read.page else { return .needsStateTransfer }
        position = page.next
        if !page.changes.isEmpty {
            sentBatches += 1
            var r = SyncResponse()
            r.changes = page.changes
            r.changeBytes = page.encodings
            r.batch = sentBatches
            return .send(r)
        }
        // A report names only what was sent here or what the puller holds: for a skipped author,
        // what the puller acknowledged holding (or an earlier report's claim, so reports never
        // shrink).
        var report = vector
        for m in direct where m != pullerIncarnation && report[m] > lacking[m] {
            report[m] = min(vector[m], max(lacking[m], lastReport?[m] ?? 0))
        }
        // A vector that moved is reported even when the clamped report did not: the puller's
        // acknowledgement then says what it holds, and the next report names it (otherwise
        // that would wait for the heartbeat, and stability with it).
        guard position >= end, heartbeat || lastReport != report || lastReportedVector != vector else { return .idle }
        lastReport = report
        lastReportedVector = vector
        var r = SyncResponse()
        r.report = report
        return .send(r)
    }

    /// A state transfer was sent in full as batch number (the result): the puller will hold
    /// everything up to `vector`, so the feed continues from `logEnd`, the log position after
    /// the transferred state's last change.
    public mutating func transferred(logEnd: Int, vector: VersionVector) -> UInt64 {
        sentBatches += 1
        position = logEnd
        lacking = lacking.merged(with: vector)
        lastReport = nil
        lastReportedVector = nil
        return sentBatches
    }

    /// The chunk of a state transfer starting at `offset` (at most `chunkBytes`); the last one
    /// carries `batch`.
    public static func stateChunk(_ state: [UInt8], at offset: Int, chunkBytes: Int = 1 << 20, batch: UInt64) -> SyncResponse {
        let end = min(state.count, offset + chunkBytes)
        var chunk = StateChunk()
        chunk.data = Array(state[offset..<end])
        chunk.totalBytes = UInt64(state.count)
        chunk.last = end == state.count
        var r = SyncResponse()
        if chunk.last { r.batch = batch }
        r.state = chunk
        return r
    }

    /// Applies the puller's acknowledgement. `resync` restarts from the start of the log,
    /// skipping what the puller's vector covers (it refused a change).
    public mutating func acknowledged(_ ack: PeerAck) {
        processedBatches = max(processedBatches, min(ack.processed, sentBatches))
        direct = Set(ack.direct)
        if ack.resync {
            lacking = ack.vector
            position = 0
            processedBatches = sentBatches
        } else {
            lacking = lacking.merged(with: ack.vector)
        }
    }
}

/// The puller's side of one Sync stream, without I/O: applies what the feeder sends and says
/// what to acknowledge.
public struct PullState: Sendable {
    public let peer: UInt64
    public private(set) var processedBatches: UInt64 = 0
    public private(set) var refusedChanges = 0
    /// Changes received in batches on this stream, and how many of them this member already held.
    public private(set) var changesReceived = 0
    public private(set) var duplicatesReceived = 0
    /// A state transfer being received (its chunks so far).
    private var state: [UInt8] = []
    /// The largest state transfer accepted.
    public static let stateBytesMax: UInt64 = 8 << 30

    public init(peer: UInt64) { self.peer = peer }

    /// Adds a chunk of a state transfer; on the last one, installs the state (once durable)
    /// and returns the ack. Throws for a transfer over `stateBytesMax`, one whose chunks do
    /// not add up, and a state this member refuses (see `Replica.install(transferred:)`).
    public mutating func applyStateChunk(_ response: SyncResponse, store: MVCCStore) async throws -> PeerAck? {
        guard let chunk = response.state else { return nil }
        guard chunk.totalBytes <= Self.stateBytesMax else {
            throw StateTransferError("a state transfer of \(chunk.totalBytes) bytes is over the \(Self.stateBytesMax >> 30) GiB bound")
        }
        if state.isEmpty { state.reserveCapacity(Int(min(chunk.totalBytes, 64 << 20))) }
        state.append(contentsOf: chunk.data)
        guard UInt64(state.count) <= chunk.totalBytes else { throw StateTransferError("state transfer chunks exceed the announced size") }
        guard chunk.last else { return nil }
        guard UInt64(state.count) == chunk.totalBytes else { throw StateTransferError("state transfer ended short of the announced size") }
        let bytes = state
        state = []
        try await store.installTransfer(encoded: bytes, from: peer)
        processedBatches = max(processedBatches, response.batch)
        return PeerAck(vector: store.versionVector, processed: processedBatches, resync: false)
    }

    /// Applies a batch (once durable) and returns the ack. A refused or buffered change asks the
    /// feeder to resend from this member's vector: on one causal stream neither should happen,
    /// so it means something was lost on the way. Except with `directAuthors` (this member
    /// tells its feeders which authors it receives directly, `PeerAck.direct`): a feeder that
    /// skips those authors' changes sends changes that may wait in the causal buffer for one of
    /// theirs, which comes on the direct link; when that link fails or goes silent, the next
    /// ack no longer names the author and asks for a resend, so the feeder relays it again.
    public mutating func applyBatch(_ response: SyncResponse, store: MVCCStore, directAuthors: Bool = false) async throws -> PeerAck {
        let outcomes = try await store.applyRemote(response.changes, encodings: response.changeBytes, from: peer)
        processedBatches = max(processedBatches, response.batch)
        let refused = outcomes.filter {
            switch $0 {
            case .rejected: return true
            case .buffered: return !directAuthors
            default: return false
            }
        }.count
        refusedChanges += refused
        changesReceived += outcomes.count
        duplicatesReceived += outcomes.reduce(0) { if case .duplicate = $1 { return $0 + 1 } else { return $0 } }
        return PeerAck(vector: store.versionVector, processed: processedBatches, resync: refused > 0)
    }

    /// Records the feeder's report and returns the ack that tells the feeder our vector.
    public func applyReport(_ report: VersionVector, store: MVCCStore) -> PeerAck {
        store.recordPeerReport(member: peer, vector: report)
        return PeerAck(vector: store.versionVector, processed: processedBatches, resync: false)
    }
}

public struct StateTransferError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

extension MVCCStore {
    /// Decodes a transferred state and installs it (see `installTransfer(_:completion:)`).
    public func installTransfer(encoded bytes: [UInt8], from source: UInt64 = 0) async throws {
        let transferred: Replica
        do {
            transferred = try Replica(decodingState: bytes, mergeMode: configuration.mergeMode, wallClock: configuration.wallClock,
                                      causalBufferLimit: configuration.causalBufferLimit,
                                      causalBufferBytes: configuration.causalBufferBytes)
        } catch {
            throw StateTransferError("the transferred state does not decode: \(error)")
        }
        try await withCheckedThrowingContinuation { (c: CheckedContinuation<Void, any Error>) in
            installTransfer(transferred, from: source) { c.resume(with: $0) }
        }
    }

    /// Captures the replicated state for a state transfer, encoded, with the log position
    /// the feed continues from and the vector the state covers.
    public func captureTransferEncoded() async throws -> (state: [UInt8], logEnd: Int, vector: VersionVector) {
        let (replica, logEnd) = try await withCheckedThrowingContinuation { (c: CheckedContinuation<(replica: Replica, logEnd: Int), any Error>) in
            captureTransfer { c.resume(with: $0) }
        }
        return (replica.transferState(), logEnd, replica.vector)
    }

    /// Applies changes from a peer and waits until they are durable.
    public func applyRemote(_ changes: [Change], encodings: [[UInt8]?] = [], from source: UInt64 = 0) async throws -> [RemoteApplyOutcome] {
        try await withCheckedThrowingContinuation { (c: CheckedContinuation<[RemoteApplyOutcome], any Error>) in
            applyRemote(changes, encodings: encodings, from: source) { result in
                switch result {
                case .success(let outcomes): c.resume(returning: outcomes)
                case .failure(let error): c.resume(throwing: error)
                }
            }
        }
    }
}
