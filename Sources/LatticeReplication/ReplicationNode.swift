import Dispatch
import EtcdAPI
import GRPCWire
import LatticeCore
import LatticeStore
import Logging
import NIOCore
import NIOPosix
import Synchronization

/// One member's replication: the peer server (feeds changes to members that dial in) and one
/// link per other member (dials it and pulls what this member lacks). Every link reconnects with
/// jittered backoff; nothing here is on the write path: local writes never wait for a peer.
public final class ReplicationNode: Sendable {
    public struct Configuration: Sendable {
        public var clusterID: UInt64
        /// This member as configured (`--initial-cluster`), with its advertised client URLs.
        public var local: LatticeCore.Member
        /// The other members as configured (with replicated membership, the member table adds to them).
        public var peers: [LatticeCore.Member]
        /// Outgoing peer connections are made from this host (the peer listen host), so a
        /// member's connections are recognisable by their source address.
        public var dialFromHost: String?
        public var heartbeatInterval: TimeAmount = .seconds(1)
        public var backoffInitial: TimeAmount = .milliseconds(100)
        /// Short enough that a healed link is used again within about half a second.
        public var backoffMax: TimeAmount = .milliseconds(500)
        /// Peers follow the store's replicated member table (`member add/remove/update`), not
        /// only the configured list.
        public var replicatedMembership = false
        /// Sets up TLS on a connection dialled to an `https://` peer URL (given the peer's
        /// host); nil: only `http://` peer URLs are dialled.
        public var secureDial: (@Sendable (any Channel, String) throws -> Void)?

        public init(clusterID: UInt64, local: LatticeCore.Member, peers: [LatticeCore.Member]) {
            self.clusterID = clusterID
            self.local = local
            self.peers = peers
        }
    }

    /// What this member knows of a peer.
    struct PeerState: Sendable {
        /// As configured, or as the member table has it.
        var member: LatticeCore.Member
        var connected = false
        /// The peer's data directory incarnation, as last announced (0: not yet).
        var incarnation: UInt64 = 0
        var report = VersionVector()
        /// When our vector last covered the peer's report (nil: never yet).
        var caughtUpAt: ContinuousClock.Instant?
        /// The peer just dialed this member: the path between them works again, so a link
        /// waiting out its backoff dials at once.
        var dialedIn = false
        /// When the pull link from the peer last delivered a message.
        var lastHeard: ContinuousClock.Instant?
    }

    let configuration: Configuration
    let store: MVCCStore
    let group: any EventLoopGroup
    let logger: Logger
    let peers: Mutex<[UInt64: PeerState]>
    let feeds = FeedRegistry()
    private let links = Mutex<[UInt64: Task<Void, Never>]>([:])
    private let running = Mutex<Bool>(false)
    private let reconciling = Mutex<Void>(())
    /// Link tasks cancelled before shutdown (a removed peer): awaited by `shutdown`, so none
    /// touches the store after it closes.
    private let retired = Mutex<[Task<Void, Never>]>([])
    /// Bumped by every removal: each link then asks its feeder to resend (`PeerAck.resync`).
    let resyncGeneration = Atomic<Int>(0)
    /// Changes received from peers since start, and how many were already held here.
    let changesReceived = Atomic<Int>(0)
    let duplicatesReceived = Atomic<Int>(0)
    private let lagLogger = Mutex<RepeatedTask?>(nil)
    private let conflictLogger = Mutex<RepeatedTask?>(nil)

    public init(configuration: Configuration, store: MVCCStore, group: any EventLoopGroup, logger: Logger) {
        self.configuration = configuration
        self.store = store
        self.group = group
        self.logger = logger
        var states: [UInt64: PeerState] = [:]
        for p in configuration.peers { states[p.id] = PeerState(member: p) }
        self.peers = Mutex(states)
        store.onDurableChanges { [feeds] in feeds.wakeAll() }
        if configuration.replicatedMembership {
            store.onMembershipChange { [weak self] removal in
                // On the writer thread: reconcile elsewhere.
                guard let node = self else { return }
                DispatchQueue.global().async { node.reconcile(removal: removal) }
            }
        }
    }

    /// Adds the peer service (Sync and Status) to `routes`.
    public func register(on routes: inout GRPCRoutes) {
        routes.add(service: PeerMethod.service, method: "Sync", .streaming { [self] context, sender in
            PeerFeedStream(node: self, sender: sender, loop: context.eventLoop)
        })
        registerStatus(on: &routes)
    }

    /// Adds only `Status` (the client port serves it too, for `lattice cluster-status`).
    public func registerStatus(on routes: inout GRPCRoutes) {
        routes.add(service: PeerMethod.service, method: "Status", .unary { [self] request, _, responder in
            guard let r = try? PeerStatusRequest(protoBytes: request) else {
                return responder.fail(GRPCStatus(.invalidArgument, "lattice: malformed status request"))
            }
            // The state hash is O(keys): computed off the event loop.
            DispatchQueue.global().async { responder.succeed(self.status(stateHash: !r.skipStateHash).protoBytes()) }
        })
    }

    /// Starts one link per peer, and a periodic lag log line. With replicated membership the
    /// links follow the member table: a member added gets a link, a removed one loses it.
    public func start() {
        running.withLock { $0 = true }
        reconcile(removal: false)
        let task = group.next().scheduleRepeatedTask(initialDelay: .seconds(30), delay: .seconds(30)) { [self] _ in logLag() }
        lagLogger.withLock { $0 = task }
        let conflicts = group.next().scheduleRepeatedTask(initialDelay: .seconds(1), delay: .seconds(1)) { [self] _ in logConflicts() }
        conflictLogger.withLock { $0 = conflicts }
    }

    /// Logs what concurrent writes overwrote since the last call: per key, the winning change
    /// and the others (at most 20 lines a second; the rest as a count).
    func logConflicts() {
        let (records, dropped) = store.drainConflicts()
        for r in records.prefix(20) {
            let how: String
            switch r.resolution.kind {
            case .lastWriterWins: how = "last writer wins"
            case .merged(let conflicts): how = "merged field by field, \(conflicts) value(s) from the last writer"
            }
            logger.info("concurrent writes resolved", metadata: [
                "key": "\(String(decoding: r.key, as: UTF8.self))", "resolution": "\(how)",
                "winner": "\(hex(r.resolution.winner.member)):\(r.resolution.winner.seq)",
                "overwritten": "\(r.resolution.others.map { "\(hex($0.member)):\($0.seq)" }.joined(separator: ","))",
            ])
        }
        let more = max(0, records.count - 20) + dropped
        if more > 0 { logger.info("concurrent writes resolved", metadata: ["more": "\(more)"]) }
    }

    public func shutdown() async {
        lagLogger.withLock { $0?.cancel() }
        conflictLogger.withLock { $0?.cancel() }
        let tasks = links.withLock { l -> [Task<Void, Never>] in
            running.withLock { $0 = false }
            defer { l = [:] }
            return Array(l.values)
        } + retired.withLock { r in
            defer { r = [] }
            return r
        }
        for t in tasks { t.cancel() }
        for t in tasks { await t.value }
        feeds.finishAll()
    }

    /// The peers this member should link to: the configured ones and (with replicated
    /// membership) every member of the table, except itself and removed members.
    func wantedPeers() -> [UInt64: LatticeCore.Member] {
        var wanted: [UInt64: LatticeCore.Member] = [:]
        for p in configuration.peers { wanted[p.id] = p }
        if configuration.replicatedMembership {
            for m in store.members { wanted[m.id] = m }
        }
        wanted[configuration.local.id] = nil
        for id in wanted.keys where store.isRemoved(id) { wanted[id] = nil }
        return wanted
    }

    /// Brings peers and links in line with the membership. After a removal every link asks its
    /// feeder to resend from this member's vector (the causal buffer was dropped).
    func reconcile(removal: Bool) {
        // One at a time, each reading the table afresh: a late call with an older view must not
        // undo a newer one.
        reconciling.withLock { _ in reconcileSerially(removal: removal) }
    }

    private func reconcileSerially(removal: Bool) {
        if removal { resyncGeneration.add(1, ordering: .relaxed) }
        if store.isRemoved(configuration.local.id) {
            wasRemoved()
            return
        }
        if isRemovedFromCluster { return }
        let wanted = wantedPeers()
        let (gone, added): ([UInt64], [LatticeCore.Member]) = peers.withLock { p in
            var gone: [UInt64] = []
            var added: [LatticeCore.Member] = []
            for id in p.keys where wanted[id] == nil { gone.append(id); p[id] = nil }
            for (id, m) in wanted {
                if p[id] == nil {
                    p[id] = PeerState(member: m)
                    added.append(m)
                } else {
                    p[id]!.member.peerURLs = m.peerURLs
                    if !m.name.isEmpty { p[id]!.member.name = m.name }
                    if !m.clientURLs.isEmpty { p[id]!.member.clientURLs = m.clientURLs }
                }
            }
            return (gone, added)
        }
        links.withLock { l in
            guard running.withLock({ $0 }) else { return }
            for id in gone {
                if let task = l.removeValue(forKey: id) {
                    task.cancel()
                    retired.withLock { $0.append(task) }
                }
            }
            for id in wanted.keys where l[id] == nil {
                l[id] = Task { [self] in await runLink(to: id) }
            }
        }
        for id in gone {
            feeds.finish(peer: id)
            logger.info("peer removed from the cluster", metadata: ["member-id": "\(hex(id))"])
        }
        for m in added where !configuration.peers.contains(where: { $0.id == m.id }) {
            logger.info("peer added to the cluster", metadata: ["member-id": "\(hex(m.id))", "peer-urls": "\(m.peerURLs)"])
        }
    }

    /// This member was removed: it stops replicating (as etcd, it leaves the cluster for good).
    private func wasRemoved() {
        guard removed.open() else { return }
        logger.error("the member has been permanently removed from the cluster")
        links.withLock { l in
            for t in l.values { t.cancel() }
            retired.withLock { $0.append(contentsOf: l.values) }
            l = [:]
        }
        feeds.finishAll()
        // A member removed while it was joining stops waiting (it exits).
        markSynced()
    }

    private let removed = Latch()

    /// Returns once this member learns that it was removed from the cluster.
    public func waitUntilRemoved() async { await removed.wait() }

    public var isRemovedFromCluster: Bool { removed.isOpen }

    var localHello: PeerHello {
        var h = PeerHello()
        h.clusterID = configuration.clusterID
        h.memberID = configuration.local.id
        h.name = configuration.local.name
        h.incarnation = store.replicaID
        h.vector = store.versionVector
        h.peerURLs = configuration.local.peerURLs
        h.clientURLs = configuration.local.clientURLs
        return h
    }

    /// The hello of a pull link to `feeder`: it names the authors this member receives from
    /// directly now, so that the feeder's first batches after a (re)connection do not relay
    /// their changes (before, they did until the first acknowledgement came back).
    func hello(to feeder: UInt64) -> PeerHello {
        var h = localHello
        h.direct = directAuthors(excluding: feeder).sorted()
        return h
    }

    static let removedMarker = "the member has been permanently removed from the cluster"

    /// Checks a peer's hello: same cluster, a known member. Returns the refusal, if any.
    func refusal(of hello: PeerHello) -> String? {
        if hello.clusterID != configuration.clusterID {
            return "lattice: peer \(hex(hello.memberID)) belongs to cluster \(hex(hello.clusterID)), this member to cluster \(hex(configuration.clusterID)) (check --initial-cluster and --initial-cluster-token)"
        }
        if store.isRemoved(hello.memberID) {
            return "lattice: member \(hex(hello.memberID)) (\(hello.name)) was removed from cluster \(hex(configuration.clusterID)): \(Self.removedMarker)"
        }
        if peers.withLock({ $0[hello.memberID] == nil }) {
            return "lattice: member \(hex(hello.memberID)) (\(hello.name)) is not a member of cluster \(hex(configuration.clusterID))"
        }
        return Self.copiedDataDirectory(hello: hello, localIncarnation: store.replicaID, localVector: store.versionVector)
    }

    /// A data directory copied from another member, or restored from an older copy of its own,
    /// would reuse sequence numbers its changes already used: peers refuse it, and it says so.
    /// Returns the reason, nil when `hello` is consistent with what this member holds.
    public static func copiedDataDirectory(hello: PeerHello, localIncarnation: UInt64, localVector: VersionVector) -> String? {
        if hello.incarnation == localIncarnation {
            return "lattice: member \(hex(hello.memberID)) (\(hello.name)) has this member's incarnation \(hex(localIncarnation)): its data directory is a copy of this member's; give it a fresh data directory and start it with --initial-cluster-state existing"
        }
        let held = localVector[hello.incarnation]
        if held > hello.vector[hello.incarnation] {
            return "lattice: member \(hex(hello.memberID)) (\(hello.name)) holds \(hello.vector[hello.incarnation]) of its own changes but this member holds \(held): its data directory was restored from an older copy; give it a fresh data directory and start it with --initial-cluster-state existing"
        }
        return nil
    }

    /// A peer whose data directory changed (wiped, or restored from a backup) may hold less
    /// than it reported before: its old report no longer says what it holds, so garbage
    /// collection waits for a report from the new incarnation.
    func forgetReportIfNewIncarnation(_ hello: PeerHello) {
        let changed = peers.withLock { p -> Bool in
            guard let known = p[hello.memberID]?.incarnation else { return false }
            p[hello.memberID]?.incarnation = hello.incarnation
            if known != hello.incarnation { p[hello.memberID]?.report = VersionVector() }
            return known != 0 && known != hello.incarnation
        }
        if changed {
            logger.warning("peer has a new data directory", metadata: ["member-id": "\(hex(hello.memberID))", "incarnation": "\(hex(hello.incarnation))"])
            store.forgetPeerReport(member: hello.memberID)
        }
    }

    // MARK: joining

    private let synced = Latch()

    /// Whether this member has caught up with a peer at least once since it started (received
    /// everything a peer had, or a state transfer).
    public var hasSynced: Bool { synced.isOpen }

    /// Returns once this member has caught up with some peer (a member joining an existing
    /// cluster waits for this before serving clients).
    public func waitUntilSynced() async { await synced.wait() }

    func markSynced() { synced.open() }

    /// The incarnations (dot authors) of the peers other than `feeder` that this member receives
    /// from directly: a greeted pull link that delivered something within three heartbeats (a
    /// feeder reports at least every heartbeat, so a link gone silent without closing stops
    /// counting). Sent in each ack so the feeder does not relay their changes.
    func directAuthors(excluding feeder: UInt64) -> Set<UInt64> {
        let now = ContinuousClock.now
        let window = Duration.nanoseconds(configuration.heartbeatInterval.nanoseconds * 3)
        return peers.withLock { p in
            var out = Set<UInt64>()
            for (id, s) in p where id != feeder && s.connected && s.incarnation != 0 {
                if let heard = s.lastHeard, now - heard < window { out.insert(s.incarnation) }
            }
            return out
        }
    }

    func recordReport(from peer: UInt64, _ report: VersionVector) {
        let local = store.versionVector
        peers.withLock { p in
            p[peer]?.report = report
            if local.covers(report) { p[peer]?.caughtUpAt = .now }
        }
    }

    // MARK: status

    /// `stateHash`: also hash the whole replicated state (O(keys); never on an event loop).
    public func status(stateHash: Bool) -> PeerStatusResponse {
        var s = PeerStatusResponse()
        s.clusterID = configuration.clusterID
        s.memberID = configuration.local.id
        s.name = configuration.local.name
        s.incarnation = store.replicaID
        s.revision = store.currentRevision
        if stateHash { s.stateHash = store.replicatedStateHash }
        s.vector = store.versionVector
        let counters = store.replicationCounters
        s.pendingChanges = UInt64(counters.pendingChanges)
        s.logEntries = UInt64(counters.logEntries)
        s.lastWriterWins = UInt64(counters.merges.lastWriterWins)
        s.merges = UInt64(counters.merges.merges)
        s.mergeConflicts = UInt64(counters.merges.mergeConflicts)
        s.changesReceived = UInt64(changesReceived.load(ordering: .relaxed))
        s.duplicatesReceived = UInt64(duplicatesReceived.load(ordering: .relaxed))
        s.keys = Int64(store.keyCount)
        s.members = configuration.replicatedMembership ? store.members : ([configuration.local] + configuration.peers).sorted { $0.id < $1.id }
        let now = ContinuousClock.now
        let local = s.vector
        s.peers = peers.withLock { p in
            p.values.sorted { $0.member.id < $1.member.id }.map { state in
                var m = PeerStatusMessage()
                m.memberID = state.member.id
                m.name = state.member.name
                m.connected = state.connected
                m.vector = state.report
                m.lagChanges = state.report.changesAhead(of: local)
                if m.lagChanges > 0, let at = state.caughtUpAt {
                    let d = now - at
                    m.lagSeconds = Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
                }
                return m
            }
        }
        return s
    }

    /// Every 30 s, on an event loop: only what is cheap. The state hash reads the whole
    /// keyspace (seconds at a million keys), so it is left to explicit status requests.
    func logLag() {
        let s = status(stateHash: false)
        for p in s.peers {
            logger.info("peer replication", metadata: [
                "peer": "\(p.name)", "connected": "\(p.connected)", "lag-changes": "\(p.lagChanges)",
                "lag-seconds": "\(Int(p.lagSeconds))",
            ])
        }
    }

    // MARK: links (this member pulls from each peer)

    private func runLink(to id: UInt64) async {
        var backoff = configuration.backoffInitial
        while !Task.isCancelled {
            // Read each time: `member update` may have changed its peer URLs.
            guard let peer = peers.withLock({ $0[id]?.member }) else { return }
            peers.withLock { $0[id]?.dialedIn = false }
            let greeted = await pullOnce(from: peer)
            peers.withLock { $0[peer.id]?.connected = false }
            if Task.isCancelled { break }
            if greeted { backoff = configuration.backoffInitial }
            // Jitter: 50–150 % of the current backoff; cut short when the peer dials in (after
            // a partition heals, both directions resume as soon as one side got through).
            let nanos = backoff.nanoseconds
            let jittered = nanos / 2 + Int64.random(in: 0...max(1, nanos))
            let until = ContinuousClock.now + .nanoseconds(jittered)
            while ContinuousClock.now < until && !Task.isCancelled {
                if peers.withLock({ $0[id]?.dialedIn ?? false }) {
                    backoff = configuration.backoffInitial
                    break
                }
                try? await Task.sleep(for: min(.milliseconds(20), until - ContinuousClock.now))
            }
            backoff = .nanoseconds(min(backoff.nanoseconds * 2, configuration.backoffMax.nanoseconds))
        }
    }

    /// One connection to `peer`: hello, then apply what it sends until the stream ends. Returns
    /// whether the peer accepted the hello.
    private func pullOnce(from peer: LatticeCore.Member) async -> Bool {
        let secureDial = configuration.secureDial
        guard let (host, port, secure) = peer.peerURLs.lazy.compactMap({ Self.hostPort($0, tls: secureDial != nil) }).first else {
            logger.error(secureDial == nil ? "peer has no http:// URL (https:// peer URLs need --peer-cert-file and --peer-key-file)"
                                           : "peer has no http:// or https:// URL",
                         metadata: ["peer": "\(peer.name)", "urls": "\(peer.peerURLs)"])
            return false
        }
        var greeted = false
        let client: GRPCClient
        do {
            let local = try configuration.dialFromHost.map { try SocketAddress(ipAddress: $0, port: 0) }
            var limits = GRPCConnectionLimits()
            limits.maxReceiveMessageBytes = 16 << 20
            var tls: (@Sendable (any Channel) throws -> Void)?
            if secure, let secureDial {
                tls = { @Sendable (channel: any Channel) throws -> Void in try secureDial(channel, host) }
            }
            client = try await GRPCClient.connect(host: host, port: port, group: group, limits: limits, localAddress: local,
                                                  connectTimeout: .seconds(2), secure: tls)
        } catch {
            logger.debug("cannot reach peer", metadata: ["peer": "\(peer.name)", "error": "\(error)"])
            return false
        }
        do {
            let stream = try await client.openStream(path: PeerMethod.sync, bufferedResponsesMax: 4096)
            let hello = hello(to: peer.id)
            stream.send(SyncRequest(hello: hello).protoBytes())
            /// The authors this feeder was last told not to relay (from the hello on).
            var directSent = Set(hello.direct)
            var pull = PullState(peer: peer.id)
            var resyncSeen = resyncGeneration.load(ordering: .relaxed)
            /// After a removal, the next ack asks the feeder to resend what this member lacks.
            func resyncIfRemoved(_ ack: PeerAck) -> PeerAck {
                let generation = resyncGeneration.load(ordering: .relaxed)
                guard generation != resyncSeen else { return ack }
                resyncSeen = generation
                var ack = ack
                ack.resync = true
                ack.vector = store.versionVector
                return ack
            }
            /// Every ack names the authors received directly now; one that no longer names an
            /// author named before (its link went down or silent) asks for a resend, so the
            /// feeder relays what this member lacks of that author's changes.
            func withDirectAuthors(_ ack: PeerAck) -> PeerAck {
                var ack = resyncIfRemoved(ack)
                let direct = directAuthors(excluding: peer.id)
                if !directSent.isSubset(of: direct) {
                    ack.resync = true
                    ack.vector = store.versionVector
                }
                directSent = direct
                ack.direct = direct.sorted()
                return ack
            }
            for try await bytes in stream.responses {
                if Task.isCancelled { break }
                let response = try SyncResponse(protoBytes: bytes)
                if let hello = response.hello {
                    if hello.memberID != peer.id || hello.clusterID != configuration.clusterID {
                        logger.error("peer answered with another identity", metadata: [
                            "peer": "\(peer.name)", "member-id": "\(hex(hello.memberID))", "cluster-id": "\(hex(hello.clusterID))",
                        ])
                        break
                    }
                    if let conflict = Self.copiedDataDirectory(hello: hello, localIncarnation: store.replicaID, localVector: store.versionVector) {
                        logger.error("peer's data directory conflicts with this member's changes", metadata: ["peer": "\(peer.name)", "reason": "\(conflict)"])
                        break
                    }
                    greeted = true
                    forgetReportIfNewIncarnation(hello)
                    peers.withLock { $0[peer.id]?.connected = true }
                    logger.info("connected to peer", metadata: ["peer": "\(peer.name)", "member-id": "\(hex(peer.id))"])
                    continue
                }
                guard greeted else { break }
                peers.withLock { $0[peer.id]?.lastHeard = .now }
                if response.state != nil {
                    if let ack = try await pull.applyStateChunk(response, store: store) {
                        logger.info("installed a state transfer", metadata: ["peer": "\(peer.name)", "revision": "\(store.currentRevision)"])
                        stream.send(SyncRequest(ack: ack).protoBytes())
                        markSynced()
                    }
                    continue
                }
                if !response.changes.isEmpty {
                    let (received, duplicates) = (pull.changesReceived, pull.duplicatesReceived)
                    let ack = try await pull.applyBatch(response, store: store, directAuthors: true)
                    changesReceived.add(pull.changesReceived - received, ordering: .relaxed)
                    duplicatesReceived.add(pull.duplicatesReceived - duplicates, ordering: .relaxed)
                    if ack.resync { logger.warning("peer change refused; asking for a resend", metadata: ["peer": "\(peer.name)"]) }
                    stream.send(SyncRequest(ack: withDirectAuthors(ack)).protoBytes())
                }
                if let report = response.report {
                    let ack = pull.applyReport(report, store: store)
                    recordReport(from: peer.id, report)
                    stream.send(SyncRequest(ack: withDirectAuthors(ack)).protoBytes())
                    markSynced()
                }
            }
            stream.cancel()
        } catch {
            if greeted {
                logger.info("peer stream ended", metadata: ["peer": "\(peer.name)", "reason": "\(error)"])
            } else if let status = error as? GRPCStatus, status.code == .failedPrecondition {
                logger.warning("peer refused the stream", metadata: ["peer": "\(peer.name)", "reason": "\(error)"])
                // A peer of this cluster that holds this member's removal says so (the removal
                // itself cannot reach a member nobody feeds any more).
                if status.message.contains(Self.removedMarker) && status.message.contains("member \(hex(configuration.local.id)) ") {
                    await client.close()
                    wasRemoved()
                    return false
                }
            } else {
                // Unreachable (down, or cut off): retried with backoff; not worth a line each time.
                logger.debug("cannot reach peer", metadata: ["peer": "\(peer.name)", "error": "\(error)"])
            }
        }
        await client.close()
        return greeted
    }

    /// Where to dial a peer URL, and whether over TLS: http://, and https:// when this member
    /// has peer TLS (`tls`); an https:// peer is never dialled in cleartext.
    public static func hostPort(_ url: String, tls: Bool) -> (host: String, port: Int, secure: Bool)? {
        guard let parsed = try? ServerURL(parsing: url) else { return nil }
        switch parsed.scheme {
        case "http": return (parsed.host, parsed.port, false)
        case "https" where tls: return (parsed.host, parsed.port, true)
        default: return nil
        }
    }
}

func hex(_ v: UInt64) -> String { String(v, radix: 16) }

/// A condition that becomes true once and stays true; waiters resume when it does.
final class Latch: Sendable {
    private let state = Mutex<(open: Bool, waiters: [CheckedContinuation<Void, Never>])>((false, []))

    var isOpen: Bool { state.withLock { $0.open } }

    /// Opens the latch; returns whether this call opened it.
    @discardableResult
    func open() -> Bool {
        let (first, waiters) = state.withLock { s -> (Bool, [CheckedContinuation<Void, Never>]) in
            guard !s.open else { return (false, []) }
            s.open = true
            defer { s.waiters = [] }
            return (true, s.waiters)
        }
        for w in waiters { w.resume() }
        return first
    }

    func wait() async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let ready = state.withLock { s -> Bool in
                if s.open { return true }
                s.waiters.append(c)
                return false
            }
            if ready { c.resume() }
        }
    }
}

/// The feed streams currently open (peers that dialed this member), woken when changes become
/// durable.
final class FeedRegistry: Sendable {
    private let feeds = Mutex<[ObjectIdentifier: PeerFeedStream]>([:])

    func add(_ feed: PeerFeedStream) { feeds.withLock { $0[ObjectIdentifier(feed)] = feed } }
    func remove(_ feed: PeerFeedStream) { feeds.withLock { _ = $0.removeValue(forKey: ObjectIdentifier(feed)) } }
    func wakeAll() { for f in feeds.withLock({ Array($0.values) }) { f.wake() } }
    /// Ends the feeds to `peer` (it was removed).
    func finish(peer: UInt64) { for f in feeds.withLock({ Array($0.values) }) where f.puller == peer { f.finish() } }
    func finishAll() { for f in feeds.withLock({ Array($0.values) }) { f.finish() } }
}

/// The feeder side of one Sync stream (a peer dialed this member). Confined to its event loop;
/// `wake` and `finish` hop onto it.
final class PeerFeedStream: GRPCStreamingCall, @unchecked Sendable {
    // @unchecked: all mutable state is touched on `loop` only; `wakePending` is atomic.
    private let node: ReplicationNode
    private let sender: GRPCStreamSender
    private let loop: any EventLoop
    private var cursor: FeedCursor?
    private var peer: UInt64 = 0
    /// The puller's member id, once it said hello (read from any thread: set once, before the
    /// feed is registered).
    var puller: UInt64 { pullerID.load(ordering: .acquiring) }
    private let pullerID = Atomic<UInt64>(0)
    private var heartbeat: RepeatedTask?
    private var heartbeatDue = false
    private var done = false
    private let wakePending = Atomic<Bool>(false)
    /// A state transfer: being captured (nil state) or being sent from `offset`.
    private var transfer: (state: [UInt8]?, offset: Int, logEnd: Int, vector: VersionVector)?

    init(node: ReplicationNode, sender: GRPCStreamSender, loop: any EventLoop) {
        self.node = node
        self.sender = sender
        self.loop = loop
    }

    func received(_ message: [UInt8]) {
        guard !done else { return }
        guard let request = try? SyncRequest(protoBytes: message) else {
            return fail(GRPCStatus(.invalidArgument, "lattice: malformed peer message"))
        }
        if let hello = request.hello {
            guard cursor == nil else { return fail(GRPCStatus(.invalidArgument, "lattice: second hello on a peer stream")) }
            if let refusal = node.refusal(of: hello) {
                node.logger.warning("refused a peer", metadata: ["reason": "\(refusal)"])
                return fail(GRPCStatus(.failedPrecondition, refusal))
            }
            peer = hello.memberID
            pullerID.store(hello.memberID, ordering: .releasing)
            node.peers.withLock { $0[hello.memberID]?.dialedIn = true }
            node.forgetReportIfNewIncarnation(hello)
            node.store.recordPeerReport(member: peer, vector: hello.vector)
            cursor = FeedCursor(hello: hello)
            var r = SyncResponse()
            r.hello = node.localHello
            sender.send(r.protoBytes())
            node.feeds.add(self)
            let bound = NIOLoopBound(self, eventLoop: loop)
            heartbeat = loop.scheduleRepeatedTask(initialDelay: node.configuration.heartbeatInterval,
                                                  delay: node.configuration.heartbeatInterval) { _ in
                bound.value.heartbeatDue = true
                bound.value.pump()
            }
            pump()
            return
        }
        guard cursor != nil else { return fail(GRPCStatus(.invalidArgument, "lattice: peer stream without hello")) }
        if let ack = request.ack {
            cursor!.acknowledged(ack)
            node.store.recordPeerReport(member: peer, vector: ack.vector)
            pump()
        }
    }

    func receivedEnd() { finishOnLoop(.ok) }
    func writabilityChanged(_ isWritable: Bool) { if isWritable { pump() } }

    func closed() {
        done = true
        heartbeat?.cancel()
        node.feeds.remove(self)
    }

    /// New durable changes: pump on the loop (coalesced).
    func wake() {
        guard !wakePending.exchange(true, ordering: .acquiringAndReleasing) else { return }
        loop.execute { [self] in
            wakePending.store(false, ordering: .releasing)
            pump()
        }
    }

    func finish() {
        loop.execute { [self] in finishOnLoop(.ok) }
    }

    private func pump() {
        guard !done, cursor != nil else { return }
        var sent = false
        while sender.isWritable {
            if let t = transfer {
                // A state transfer is sent whole before anything else.
                guard let state = t.state else { break }
                let isLast = t.offset + Self.stateChunkBytes >= state.count
                let batch = isLast ? cursor!.transferred(logEnd: t.logEnd, vector: t.vector) : 0
                sender.send(FeedCursor.stateChunk(state, at: t.offset, chunkBytes: Self.stateChunkBytes, batch: batch).protoBytes(), flush: false)
                sent = true
                if isLast {
                    transfer = nil
                    node.logger.info("sent a state transfer", metadata: ["peer": "\(hex(peer))", "bytes": "\(state.count)"])
                } else {
                    transfer!.offset += Self.stateChunkBytes
                }
                continue
            }
            switch cursor!.next(from: node.store, heartbeat: heartbeatDue) {
            case .send(let response):
                if response.report != nil { heartbeatDue = false }
                sender.send(response.protoBytes(), flush: false)
                sent = true
                continue
            case .idle:
                break
            case .needsStateTransfer:
                node.logger.info("peer lacks changes trimmed from the log: sending a state transfer", metadata: ["peer": "\(hex(peer))"])
                startTransfer()
            }
            break
        }
        if sent { sender.flush() }
    }

    static let stateChunkBytes = 1 << 20

    /// Captures and encodes the state off the event loop, then sends it from `pump`.
    private func startTransfer() {
        transfer = (nil, 0, 0, VersionVector())
        let bound = NIOLoopBound(self, eventLoop: loop)
        let loop = self.loop
        let store = node.store
        Task {
            let result: Result<(state: [UInt8], logEnd: Int, vector: VersionVector), any Error>
            do { result = .success(try await store.captureTransferEncoded()) } catch { result = .failure(error) }
            loop.execute {
                let feed = bound.value
                guard !feed.done else { return }
                switch result {
                case .success(let captured):
                    feed.transfer = (captured.state, 0, captured.logEnd, captured.vector)
                    feed.pump()
                case .failure(let error):
                    feed.fail(GRPCStatus(.unavailable, "lattice: cannot capture the state to transfer: \(error)"))
                }
            }
        }
    }

    private func fail(_ status: GRPCStatus) { finishOnLoop(status) }

    private func finishOnLoop(_ status: GRPCStatus) {
        guard !done else { return }
        done = true
        heartbeat?.cancel()
        node.feeds.remove(self)
        sender.finish(status)
    }
}
