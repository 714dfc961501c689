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

    public enum Next: Sendable, Equatable {
        case send(SyncResponse)
        /// Nothing to send until new changes are durable, an ack arrives or a heartbeat is due.
        case idle
        /// The puller lacks changes that were trimmed from the log.
        case needsStateTransfer
    }

    public init(pullerVector: VersionVector) { self.lacking = pullerVector }

    /// The next message for the puller. With `heartbeat`, a report is sent even if unchanged.
    public mutating func next(from store: MVCCStore, heartbeat: Bool = false) -> Next {
        guard sentBatches - processedBatches < Self.batchesInFlightMax else { return .idle }
        let (end, vector) = store.durablePoint
        guard let page = store.changes(from: position, lacking: lacking, maxBytes: Self.batchBytesMax) else {
            return .needsStateTransfer
        }
        position = page.next
        if !page.changes.isEmpty {
            sentBatches += 1
            var r = SyncResponse()
            r.changes = page.changes
            r.batch = sentBatches
            return .send(r)
        }
        guard position >= end, heartbeat || lastReport != vector else { return .idle }
        lastReport = vector
        var r = SyncResponse()
        r.report = vector
        return .send(r)
    }

    /// Applies the puller's acknowledgement. `resync` restarts from the start of the log,
    /// skipping what the puller's vector covers (it refused a change).
    public mutating func acknowledged(_ ack: PeerAck) {
        processedBatches = max(processedBatches, min(ack.processed, sentBatches))
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

    public init(peer: UInt64) { self.peer = peer }

    /// Applies a batch (once durable) and returns the ack. A refused or buffered change asks the
    /// feeder to resend from this member's vector: on one causal stream neither should happen,
    /// so it means something was lost on the way.
    public mutating func applyBatch(_ response: SyncResponse, store: MVCCStore) async throws -> PeerAck {
        let outcomes = try await store.applyRemote(response.changes)
        processedBatches = max(processedBatches, response.batch)
        let refused = outcomes.filter {
            switch $0 {
            case .rejected, .buffered: return true
            default: return false
            }
        }.count
        refusedChanges += refused
        return PeerAck(vector: store.versionVector, processed: processedBatches, resync: refused > 0)
    }

    /// Records the feeder's report and returns the ack that tells the feeder our vector.
    public func applyReport(_ report: VersionVector, store: MVCCStore) -> PeerAck {
        store.recordPeerReport(member: peer, vector: report)
        return PeerAck(vector: store.versionVector, processed: processedBatches, resync: false)
    }
}

extension MVCCStore {
    /// Applies changes from a peer and waits until they are durable.
    public func applyRemote(_ changes: [Change]) async throws -> [RemoteApplyOutcome] {
        try await withCheckedThrowingContinuation { (c: CheckedContinuation<[RemoteApplyOutcome], any Error>) in
            applyRemote(changes) { result in
                switch result {
                case .success(let outcomes): c.resume(returning: outcomes)
                case .failure(let error): c.resume(throwing: error)
                }
            }
        }
    }
}
