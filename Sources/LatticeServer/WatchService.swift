import EtcdAPI
import GRPCWire
import LatticeStore
import NIOCore
import ProtoWire

/// `etcdserverpb.Watch/Watch`.
enum WatchService {
    static func register(on routes: inout GRPCRoutes, store: MVCCStore, settings: WatchSettings, gate: AuthGate? = nil) {
        routes.add(service: "etcdserverpb.Watch", method: "Watch", .streaming { context, sender in
            // As in etcd, the stream's token is what every watcher of the stream is checked
            // against; a watcher the caller may not read is cancelled when created.
            let permitted: @Sendable (WatchCreateRequest) -> Bool = { r in
                guard let gate else { return true }
                do throws(EtcdError) {
                    // The range as the watch reads it (an empty key watches from "\0").
                    let range = WatchRange(key: r.key, end: r.rangeEnd)
                    try gate.check(context) { (c: AuthCaller) throws(EtcdError) in try c.requireRead(range.key, range.end) }
                    return true
                } catch { return false }
            }
            return WatchStream(store: store, sender: sender, loop: context.eventLoop, settings: settings, permitted: permitted)
        })
    }
}

public struct WatchSettings: Sendable {
    /// `--experimental-watch-progress-notify-interval` (etcd default 10 minutes).
    public var progressNotifyInterval: TimeAmount = .minutes(10)
    /// Responses larger than this are split when the watcher asked for fragments
    /// (etcd uses `--max-request-bytes`).
    public var fragmentBytes = 1_572_864
    /// Revisions read from the event log per catch-up step. A watcher catching up gets the
    /// events of a step in one response, as etcd sends an unsynced watcher's history in
    /// responses of up to 1,000 revisions.
    public var catchUpRevisionsMax = 1_000
    /// Encoded catch-up events held before they are sent (all watchers of the stream).
    public var catchUpPendingBytesMax = 1 << 20

    public init() {}
}

/// One Watch stream: many watchers, created, cancelled and fed on the stream's event loop.
///
/// Every watcher has `nextRevision`, the first revision it has not been sent. A watcher is
/// *synced* when the hub's deliveries reach it directly, or *catching up* when it reads the
/// event log (it started in the past, or its client read too slowly). Both paths only ever send
/// revisions ≥ `nextRevision`, in order, so nothing is duplicated or skipped.
final class WatchStream: GRPCStreamingCall, WatchSubscriber, @unchecked Sendable {
    // @unchecked: all mutable state is confined to `loop`; the WatchSubscriber methods, which the
    // hub calls from the writer's thread, only hop onto `loop`.

    private struct Watcher {
        let id: Int64
        let range: WatchRange
        var nextRevision: Int64
        var catchingUp: Bool
        let prevKV: Bool
        let noPut: Bool
        let noDelete: Bool
        let progressNotify: Bool
        let fragment: Bool
        /// Whether an event was sent since the last periodic progress notification.
        var sentSinceProgress = false
    }

    private let store: MVCCStore
    private let sender: GRPCStreamSender
    private let loop: any EventLoop
    private let settings: WatchSettings
    /// Whether the stream's caller may watch a range (auth).
    private let permitted: @Sendable (WatchCreateRequest) -> Bool
    private var watchers: [Int64: Watcher] = [:]
    /// Watcher ids in ascending order, possibly with ids of removed watchers (skipped, and
    /// compacted away once they are the majority): creating and cancelling cost O(log n).
    private var orderedIDs: [Int64] = []
    /// The stream's watched ranges by watcher id: a delivery looks at the watchers it concerns.
    private var index = RangeIndex<Int64>()
    /// Watchers reading the event log rather than taking deliveries.
    private var catchingUpIDs = Set<Int64>()
    private var nextAutoID: Int64 = 0
    private var catchUpScheduled = false
    private var deferredProgress = false
    private var progressTimer: RepeatedTask?
    private var closedForGood = false

    private static let progressRequestToken = 1
    private static let periodicProgressToken = 2

    init(store: MVCCStore, sender: GRPCStreamSender, loop: any EventLoop, settings: WatchSettings,
         permitted: @escaping @Sendable (WatchCreateRequest) -> Bool = { _ in true }) {
        self.permitted = permitted
        self.store = store
        self.sender = sender
        self.loop = loop
        self.settings = settings
    }

    // MARK: GRPCStreamingCall (on loop)

    func received(_ message: [UInt8]) {
        let request: WatchRequest
        do {
            request = try WatchRequest(protoBytes: message)
        } catch {
            sender.finish(streamUnmarshalStatus(error, WatchRequest.self))
            return
        }
        switch request.requestUnion {
        case .createRequest(let create)?: self.create(create)
        case .cancelRequest(let cancel)?: self.cancel(cancel.watchID)
        case .progressRequest?: store.hub.requestProgress(self, token: Self.progressRequestToken)
        case nil: break
        }
    }

    func receivedEnd() {
        // etcd keeps sending events after the client half-closes; the stream ends with the call.
    }

    func writabilityChanged(_ isWritable: Bool) {
        if isWritable { scheduleCatchUp() }
    }

    func closed() {
        closedForGood = true
        progressTimer?.cancel()
        progressTimer = nil
        store.hub.remove(self)
        watchers.removeAll()
        orderedIDs.removeAll()
        index = RangeIndex()
        catchingUpIDs.removeAll()
    }

    // MARK: watcher bookkeeping

    private func addWatcher(_ w: Watcher) -> Int64 {
        watchers[w.id] = w
        if let last = orderedIDs.last, last >= w.id {
            var lo = 0, hi = orderedIDs.count
            while lo < hi {
                let mid = (lo + hi) / 2
                if orderedIDs[mid] < w.id { lo = mid + 1 } else { hi = mid }
            }
            if lo == orderedIDs.count || orderedIDs[lo] != w.id { orderedIDs.insert(w.id, at: lo) }
        } else {
            orderedIDs.append(w.id)
        }
        index.insert(w.range, w.id)
        return store.hub.add(self, range: w.range)
    }

    private func removeWatcher(_ id: Int64) -> Watcher? {
        guard let w = watchers.removeValue(forKey: id) else { return nil }
        index.remove(w.range, id)
        catchingUpIDs.remove(id)
        store.hub.remove(self, range: w.range)
        if orderedIDs.count > 2 * watchers.count + 64 { orderedIDs.removeAll { watchers[$0] == nil } }
        return w
    }

    private func setCatchingUp(_ id: Int64, _ value: Bool) {
        watchers[id]?.catchingUp = value
        if value { catchingUpIDs.insert(id) } else { catchingUpIDs.remove(id) }
    }

    // MARK: WatchSubscriber (any thread)

    func deliver(_ batch: RevisionEvents) {
        loop.execute { self.handleDelivery(batch) }
    }

    func progress(_ revision: Int64, _ token: Int) {
        loop.execute { self.handleProgress(revision, token: token) }
    }

    // MARK: requests

    private func create(_ r: WatchCreateRequest) {
        let range = WatchRange(key: r.key, end: r.rangeEnd)
        let headerRevision = store.currentRevision
        var id = r.watchID
        var failure: String?
        if !permitted(r) {
            // etcd's reason text is the gRPC error's whole string.
            var response = WatchResponse()
            response.header = store.header(revision: headerRevision)
            response.watchID = id
            response.created = true
            response.canceled = true
            response.cancelReason = "rpc error: code = PermissionDenied desc = etcdserver: permission denied"
            send(response)
            return
        }
        if range.isEmpty {
            failure = "mvcc: watcher range is empty"
        } else if id != 0 && watchers[id] != nil {
            failure = "mvcc: duplicate watch ID provided on the WatchStream"
        }
        if let failure {
            var response = WatchResponse()
            response.header = store.header(revision: headerRevision)
            response.watchID = -1
            response.created = true
            response.canceled = true
            response.cancelReason = failure
            send(response)
            return
        }
        if id == 0 {
            while watchers[nextAutoID] != nil { nextAutoID += 1 }
            id = nextAutoID
            nextAutoID += 1
        }
        let start = r.startRevision == 0 ? headerRevision + 1 : r.startRevision
        let watcher = Watcher(
            id: id, range: range, nextRevision: start, catchingUp: false, prevKV: r.prevKV,
            noPut: r.filters.contains(.noPut), noDelete: r.filters.contains(.noDelete),
            progressNotify: r.progressNotify, fragment: r.fragment)

        // The created response precedes any event of the watcher.
        var created = WatchResponse()
        created.header = store.header(revision: headerRevision)
        created.watchID = id
        created.created = true
        send(created)

        let lastPublished = addWatcher(watcher)
        if start <= lastPublished {
            setCatchingUp(id, true)
            scheduleCatchUp()
        }
        if r.progressNotify { startProgressTimerIfNeeded() }
    }

    private func cancel(_ id: Int64) {
        guard removeWatcher(id) != nil else { return }  // unknown id: no response, as etcd
        var response = WatchResponse()
        response.header = store.currentHeader()
        response.watchID = id
        response.canceled = true
        send(response)
    }

    // MARK: events

    /// The client is not reading fast enough: the stream's queue (bounded by the HTTP/2 stream's
    /// outbound high watermark) is full. Watchers then stop taking events from the hub and catch
    /// up from the event log when the stream becomes writable again, so memory per stream stays
    /// bounded and nothing is dropped.
    private var isBackedUp: Bool { !sender.isWritable }

    private func handleDelivery(_ batch: RevisionEvents) {
        var concerned = Set<Int64>()
        for event in batch.events {
            if let key = event.kv?.key { index.collect(key, into: &concerned) }
        }
        var encoded = EncodedEvents(batch)
        for id in concerned.sorted() {
            guard var w = watchers[id], !w.catchingUp, batch.revision >= w.nextRevision else { continue }
            if isBackedUp {
                // Stop taking events from the hub; read them from the log when the client catches
                // up. Synced, it was sent every earlier revision that concerned it, so the log
                // is read from this one (not from revisions long compacted).
                w.nextRevision = batch.revision
                watchers[id] = w
                setCatchingUp(id, true)
                continue
            }
            sendEvents(of: batch, to: &w, encoded: &encoded)
            watchers[id] = w
        }
        sender.flush()
        if !catchingUpIDs.isEmpty { scheduleCatchUp() }
    }

    /// The indices of `batch`'s events that `w` selects (nil when none), advancing it past the
    /// batch.
    private func selection(of batch: RevisionEvents, for w: inout Watcher) -> [Int]? {
        var selected: [Int] = []
        for (i, event) in batch.events.enumerated() {
            guard let key = event.kv?.key, w.range.contains(key) else { continue }
            if event.type == .put && w.noPut { continue }
            if event.type == .delete && w.noDelete { continue }
            selected.append(i)
        }
        w.nextRevision = batch.revision + 1
        guard !selected.isEmpty else { return nil }
        w.sentSinceProgress = true
        return selected
    }

    /// The encoded events of `batch` that `w` selects (nil when none), advancing it past the
    /// batch.
    private func selectedEvents(of batch: RevisionEvents, for w: inout Watcher, encoded: inout EncodedEvents) -> [UInt8]? {
        guard let selected = selection(of: batch, for: &w) else { return nil }
        return encoded.bytes(selected, prevKV: w.prevKV)
    }

    /// Sends the watcher's events of one revision (if any) and advances it past the revision.
    /// The events part of the response is encoded once per distinct selection of events and
    /// shared by every watcher that selects the same ones. The header carries `headerRevision`:
    /// the batch's revision for live events, the store's revision when the history was read for
    /// a watcher catching up (as etcd answers an unsynced watcher).
    private func sendEvents(of batch: RevisionEvents, to w: inout Watcher, encoded: inout EncodedEvents, headerRevision: Int64? = nil) {
        guard let selected = selection(of: batch, for: &w) else { return }
        var head = WatchResponse()
        head.header = store.header(revision: headerRevision ?? batch.revision)
        head.watchID = w.id
        let events = encoded.bytes(selected, prevKV: w.prevKV)
        if w.fragment && events.count > settings.fragmentBytes {
            var whole = head
            whole.events = selected.map { i in
                var e = batch.events[i]
                if !w.prevKV { e.prevKV = nil }
                return e
            }
            sendFragmented(whole)
        } else {
            // Concatenated encodings merge: the repeated `events` field appends to the head.
            sender.send(head.protoBytes() + events, flush: false)
        }
    }

    private func sendFragmented(_ whole: WatchResponse) {
        var chunk = whole
        chunk.events = []
        var size = chunk.protoSize
        var pending: [WatchResponse] = []
        for event in whole.events {
            let eventSize = event.protoSize + 6
            if !chunk.events.isEmpty && size + eventSize > settings.fragmentBytes {
                pending.append(chunk)
                chunk.events = []
                size = chunk.protoSize
            }
            chunk.events.append(event)
            size += eventSize
        }
        pending.append(chunk)
        for (i, var part) in pending.enumerated() {
            part.fragment = i < pending.count - 1
            send(part)
        }
    }

    private func scheduleCatchUp() {
        guard !catchUpScheduled, !closedForGood else { return }
        catchUpScheduled = true
        loop.execute { self.catchUp() }
    }

    /// One step of reading the event log for the watchers that are behind; reschedules itself
    /// until they are synced, and pauses while the client is not reading.
    private func catchUp() {
        catchUpScheduled = false
        guard !closedForGood else { return }
        let behindIDs = catchingUpIDs.sorted()
        guard let from = behindIDs.compactMap({ watchers[$0]?.nextRevision }).min() else { return }
        guard !isBackedUp else { return }  // resumed by writabilityChanged

        switch store.events(from: from, maxRevisions: settings.catchUpRevisionsMax) {
        case .compacted(let compactRevision):
            for id in behindIDs {
                guard let w = watchers[id], w.nextRevision < compactRevision else { continue }
                _ = removeWatcher(id)
                var response = WatchResponse()
                response.header = store.header(revision: 0)
                response.watchID = w.id
                response.canceled = true
                response.compactRevision = compactRevision
                send(response)
            }
        case .events(let batches, let current):
            let coveredThrough = batches.last?.revision ?? current
            var stoppedEarly = false
            // Each watcher's events of this step go out in one response (those of a watcher
            // that asked for fragments, revision by revision). The encodings are shared between
            // watchers until sent; past `catchUpPendingBytesMax` held, they are sent and the
            // stream's backlog is checked again, so a client that does not read stops the
            // catch-up within one watcher's events.
            var pending: [Int64: [[UInt8]]] = [:]
            var pendingBytes = 0
            func sendPending() {
                for id in pending.keys.sorted() {
                    var head = WatchResponse()
                    head.header = store.header(revision: current)
                    head.watchID = id
                    var message = head.protoBytes()
                    for part in pending[id]! { message += part }
                    sender.send(message, flush: false)
                }
                pending = [:]
                pendingBytes = 0
            }
            batches: for batch in batches {
                // A client that stops reading stops the catch-up; its watchers resume from
                // where they are when the stream drains.
                if isBackedUp {
                    stoppedEarly = true
                    break
                }
                var encoded = EncodedEvents(batch)
                for id in behindIDs {
                    guard var w = watchers[id], w.catchingUp, w.nextRevision <= batch.revision else { continue }
                    if w.fragment {
                        sendEvents(of: batch, to: &w, encoded: &encoded, headerRevision: current)
                    } else if let events = selectedEvents(of: batch, for: &w, encoded: &encoded) {
                        pending[id, default: []].append(events)
                        pendingBytes += events.count
                    }
                    watchers[id] = w
                    if pendingBytes > settings.catchUpPendingBytesMax {
                        sendPending()
                        if isBackedUp {
                            stoppedEarly = true
                            break batches
                        }
                    }
                }
            }
            sendPending()
            sender.flush()
            if stoppedEarly { return }
            for id in behindIDs {
                guard var w = watchers[id], w.catchingUp else { continue }
                if w.nextRevision <= coveredThrough { w.nextRevision = coveredThrough + 1 }
                watchers[id] = w
                // Everything up to `current` was in the log when it was read, and every later
                // revision reaches this stream from the hub.
                if coveredThrough >= current { setCatchingUp(id, false) }
            }
        }
        if !catchingUpIDs.isEmpty {
            scheduleCatchUp()
        } else if deferredProgress {
            deferredProgress = false
            store.hub.requestProgress(self, token: Self.progressRequestToken)
        }
    }

    // MARK: progress

    private func handleProgress(_ revision: Int64, token: Int) {
        guard !closedForGood else { return }
        let synced = catchingUpIDs.isEmpty
        if token == Self.progressRequestToken {
            // etcd 3.5.13+: answered only once every watcher has been sent all earlier events;
            // otherwise deferred until the stream has caught up.
            guard synced else { deferredProgress = true; return }
            var response = WatchResponse()
            response.header = store.header(revision: revision)
            response.watchID = -1
            send(response)
            return
        }
        for id in orderedIDs {
            guard var w = watchers[id], w.progressNotify, !w.catchingUp else { continue }
            if !w.sentSinceProgress {
                var response = WatchResponse()
                response.header = store.header(revision: revision)
                response.watchID = w.id
                send(response)
            }
            w.sentSinceProgress = false
            watchers[id] = w
        }
    }

    private func startProgressTimerIfNeeded() {
        guard progressTimer == nil else { return }
        let interval = settings.progressNotifyInterval
        progressTimer = loop.scheduleRepeatedTask(initialDelay: interval, delay: interval) { [weak self] _ in
            guard let self else { return }
            self.store.hub.requestProgress(self, token: Self.periodicProgressToken)
        }
    }

    private func send(_ response: WatchResponse) {
        sender.send(response.protoBytes())
    }
}

/// The encoded `events` field of a watch response for one revision, per selection of events and
/// prev_kv choice, computed at most once per delivery.
private struct EncodedEvents {
    let batch: RevisionEvents
    private var cache: [[Int]: [UInt8]] = [:]
    private var cacheWithoutPrev: [[Int]: [UInt8]] = [:]

    init(_ batch: RevisionEvents) { self.batch = batch }

    mutating func bytes(_ selected: [Int], prevKV: Bool) -> [UInt8] {
        if prevKV, let hit = cache[selected] { return hit }
        if !prevKV, let hit = cacheWithoutPrev[selected] { return hit }
        var only = WatchResponse()
        only.events = selected.map { i in
            var e = batch.events[i]
            if !prevKV { e.prevKV = nil }
            return e
        }
        let encoded = only.protoBytes()
        if prevKV { cache[selected] = encoded } else { cacheWithoutPrev[selected] = encoded }
        return encoded
    }
}
