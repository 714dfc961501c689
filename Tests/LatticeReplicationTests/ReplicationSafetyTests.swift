import Dispatch
import EtcdAPI
import Foundation
import LatticeCore
@testable import LatticeReplication
import Logging
import NIOPosix
@testable import LatticeStore
import LatticeTestSupport
import Synchronization
import XCTest

/// The store is safe to replicate: each test pins one way replicas could diverge or lose data
/// once a second member exists.
final class ReplicationSafetyTests: XCTestCase {
    private let temporary = TemporaryDirectories(prefix: "lattice-safety")

    override func tearDown() { temporary.removeAll() }

    private func tempDir() -> String { temporary.make() }

    private func store(_ id: UInt64, dir: String? = nil, peers: Set<UInt64> = [], snapshotCount: Int = 100_000,
                       willAppend: (@Sendable () -> Void)? = nil) throws -> MVCCStore {
        var c = MVCCStore.Configuration(memberID: id, clusterID: 9)
        c.dataDirectory = dir
        c.peerMemberIDs = peers
        c.snapshotCount = snapshotCount
        c.willAppendBatch = willAppend
        return try MVCCStore(configuration: c)
    }

    private func b(_ s: String) -> [UInt8] { Array(s.utf8) }

    /// The periodic peer-lag log line runs on an event loop every 30 s: it must not hash the
    /// whole replicated state (it did, and threw the result away: at a million keys that held
    /// one event loop for seconds and stalled writes for up to 4.6 s). Explicit status requests
    /// still hash it.
    func testThePeriodicLagLogDoesNotHashTheWholeState() async throws {
        let s = try store(1, peers: [2])
        defer { s.close() }
        for i in 0..<100 { _ = try s.put(PutRequest(key: b("k\(i)"), value: b("v"))) }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let configuration = ReplicationNode.Configuration(
            clusterID: 9, local: Member(id: 1, name: "a"), peers: [Member(id: 2, name: "b", peerURLs: ["http://127.0.0.1:9"])])
        let node = ReplicationNode(configuration: configuration, store: s, group: group, logger: Logger(label: "test"))
        let before = s.stateHashesComputed.load(ordering: .relaxed)
        node.logLag()
        XCTAssertEqual(s.stateHashesComputed.load(ordering: .relaxed), before, "the lag log hashed the whole state")
        XCTAssertFalse(node.status(stateHash: true).stateHash.isEmpty)
        XCTAssertEqual(s.stateHashesComputed.load(ordering: .relaxed), before + 1)
        try await group.shutdownGracefully()
    }

    /// A key rewritten many times while a peer is away keeps every replicated version (none is
    /// stable), and its MVCC history shares their values. A snapshot writes each shared value
    /// once and a restart takes it back from the replicated version with the same dot, for every
    /// revision — through a table for such a key (a scan per version was quadratic: 16,000
    /// versions took 11 s to write and 12 s to restore) and a scan for a key with a few.
    func testALongUncollectedHistoryIsWrittenAndRestoredRevisionByRevision() throws {
        let dir = tempDir()
        var expected: [(revision: Int64, key: String, value: String?)] = []
        do {
            let s = try store(1, dir: dir, peers: [2])
            for i in 0..<60 {
                let key = i % 20 == 0 ? "few" : "long"
                if i == 30 {
                    let r = try s.deleteRange(DeleteRangeRequest(key: b("long")))
                    expected.append((r.header!.revision, "long", nil))
                } else {
                    let r = try s.put(PutRequest(key: b(key), value: b("{\"n\":\(i)}")))
                    expected.append((r.header!.revision, key, "{\"n\":\(i)}"))
                }
            }
            XCTAssertEqual(s.changes(since: VersionVector())?.count, 60, "nothing is stable: every version is kept")
            try s.defragment()   // the whole state in one snapshot, the WAL emptied
            s.close()
        }
        let reopened = try store(1, dir: dir, peers: [2])
        defer { reopened.close() }
        for e in expected {
            let kvs = try reopened.range(RangeRequest(key: b(e.key), revision: e.revision)).kvs
            XCTAssertEqual(kvs.first.map { String(decoding: $0.value, as: UTF8.self) }, e.value, "\(e.key) at \(e.revision)")
            XCTAssertEqual(kvs.first?.modRevision, e.value == nil ? nil : e.revision, "\(e.key) at \(e.revision)")
        }
    }

    private func get(_ s: MVCCStore, _ key: String) throws -> String? {
        try s.range(RangeRequest(key: b(key))).kvs.first.map { String(decoding: $0.value, as: UTF8.self) }
    }

    // MARK: garbage collection needs every peer's report

    func testAClusterReplicaCannotBeCollectedAgainstItsOwnVector() {
        var a = Replica(member: 1)
        a.setPeerMembers([2])
        a.makeChange([.put(key: b("k"), value: b("{\"x\":1}"), lease: 0, parents: [])])
        a.makeChange([.put(key: b("k"), value: b("{\"x\":2}"), lease: 0, parents: [])])
        let stats = a.collectGarbage(stableVector: a.vector)
        XCTAssertEqual(stats.droppedVersions, 0, "without member 2's report nothing is stable")
        XCTAssertEqual(a.log.count, 2, "the change log is kept until every member holds it")
        XCTAssertEqual(a.dag(b("k"))?.versions.count, 2, "the merge base a concurrent edit needs is kept")

        XCTAssertFalse(a.recordReport(from: 2, vector: VersionVector([1: 1, 2: 5])), "a report naming changes we lack is unusable")
        XCTAssertTrue(a.recordReport(from: 2, vector: VersionVector([1: 1])))
        a.collectGarbage(stableVector: a.vector)
        XCTAssertEqual(a.log.map(\.id), [Dot(member: 1, seq: 2)], "only what member 2 reported is collected")
    }

    /// The case that made local-vector GC unsound: a concurrent edit arriving after the merge base
    /// was collected resurrected a field the other side had deleted.
    func testAConcurrentEditArrivingLateStillFindsItsMergeBase() throws {
        let a = try store(1, peers: [2]), c = try store(2, peers: [1])
        defer { a.close(); c.close() }
        _ = try a.put(PutRequest(key: b("obj"), value: b("{\"keep\":1,\"gone\":1}")))
        for ch in a.changes(since: c.versionVector)! { try c.applyRemote(ch) }
        _ = try a.put(PutRequest(key: b("obj"), value: b("{\"keep\":1}")))               // a deletes "gone"
        _ = try c.put(PutRequest(key: b("obj"), value: b("{\"keep\":1,\"gone\":1,\"new\":2}")))  // c adds "new"
        _ = try a.put(PutRequest(key: b("other"), value: b("x")))                        // a commits again (GC runs)
        for ch in c.changes(since: a.versionVector)! { try a.applyRemote(ch) }
        for ch in a.changes(since: c.versionVector)! { try c.applyRemote(ch) }
        XCTAssertEqual(try get(a, "obj"), "{\"keep\":1,\"new\":2}", "the delete and the add both survive")
        XCTAssertEqual(try get(c, "obj"), try get(a, "obj"))
    }

    // MARK: only durable changes leave the member

    func testAChangeIsNotShippedOrReportedBeforeItsWALRecordIsSynced() throws {
        let hold = DispatchSemaphore(value: 0)
        let entered = DispatchSemaphore(value: 0)
        let holding = Atomic<Bool>(false)
        let s = try store(1, dir: tempDir(), peers: [2], willAppend: {
            if holding.load(ordering: .acquiring) {
                entered.signal()
                hold.wait()
            }
        })
        defer { s.close() }
        _ = try s.put(PutRequest(key: b("durable"), value: b("1")))
        holding.store(true, ordering: .releasing)
        let done = DispatchSemaphore(value: 0)
        s.put(PutRequest(key: b("in-flight"), value: b("2"))) { _ in done.signal() }
        entered.wait()  // evaluated and applied to the replica, not yet appended
        XCTAssertEqual(s.changes(since: VersionVector())!.count, 1, "the unsynced change must not leave")
        XCTAssertEqual(s.versionVector[s.replicaID], 1, "nor be reported as held")
        holding.store(false, ordering: .releasing)
        hold.signal()
        done.wait()
        XCTAssertEqual(s.changes(since: VersionVector())!.count, 2)
        XCTAssertEqual(s.versionVector[s.replicaID], 2)
    }

    /// The puller counts the changes it receives and those it already held (relayed copies of a
    /// change it had from its author): what `cluster-status` and the metrics report.
    func testThePullerCountsReceivedAndDuplicateChanges() async throws {
        let author = try store(1, peers: [2])
        let receiver = try store(2, peers: [1])
        defer { author.close(); receiver.close() }
        for i in 0..<5 { _ = try author.put(PutRequest(key: b("k\(i)"), value: b("v"))) }
        var batch = SyncResponse()
        batch.changes = author.changes(since: VersionVector())!
        batch.batch = 1
        var pull = PullState(peer: 1)
        let first = try await pull.applyBatch(batch, store: receiver)
        XCTAssertFalse(first.resync)
        XCTAssertEqual([pull.changesReceived, pull.duplicatesReceived], [5, 0])
        batch.batch = 2
        _ = try await pull.applyBatch(batch, store: receiver)
        XCTAssertEqual([pull.changesReceived, pull.duplicatesReceived], [10, 5], "the second copy of each change is a duplicate")
        XCTAssertEqual(try get(receiver, "k4"), "v")
    }

    /// A feeder never sends a puller its own changes back, and does not relay the changes of an
    /// author the puller receives directly (they would arrive twice); its reports then name
    /// only what of that author the puller is known to hold; and once the puller's direct link
    /// drops (an ack without the author, asking for a resend), the feeder relays that author's
    /// changes again.
    func testAFeederSendsOnlyWhatThePullerDoesNotGetFromElsewhere() throws {
        let a = try store(1, peers: [2, 3])
        let bStore = try store(2, peers: [1, 3])
        let c = try store(3, peers: [1, 2])
        defer { a.close(); bStore.close(); c.close() }
        _ = try bStore.put(PutRequest(key: b("from-b"), value: b("1")))
        _ = try c.put(PutRequest(key: b("from-c"), value: b("1")))
        for change in bStore.changes(since: VersionVector())! + c.changes(since: VersionVector())! { try a.applyRemote(change) }
        _ = try a.put(PutRequest(key: b("from-a"), value: b("1")))
        let (ida, idb, idc) = (a.replicaID, bStore.replicaID, c.replicaID)

        // Member 2 (b) pulls from a, and says it receives c's changes from c.
        var cursor = FeedCursor(pullerVector: VersionVector(), puller: 2, pullerIncarnation: idb)
        var ack = PeerAck(vector: VersionVector(), processed: 0, resync: false)
        ack.direct = [idc]
        cursor.acknowledged(ack)
        guard case .send(let batch) = cursor.next(from: a) else { return XCTFail("no batch") }
        XCTAssertEqual(batch.changes.map(\.id.member), [ida], "neither b's own change nor c's is sent to b")
        guard case .send(let report) = cursor.next(from: a), let claimed = report.report else { return XCTFail("no report") }
        XCTAssertEqual(claimed, VersionVector([ida: 1, idb: 1]), "the report names nothing of c's that was not sent nor acknowledged")

        // The direct link to c dropped before c's change arrived: the ack no longer names c.
        cursor.acknowledged(PeerAck(vector: VersionVector([ida: 1, idb: 1]), processed: 1, resync: true))
        guard case .send(let resent) = cursor.next(from: a) else { return XCTFail("no resend") }
        XCTAssertEqual(resent.changes.map(\.id), [Dot(member: idc, seq: 1)], "c's change is relayed again")
        guard case .send(let full) = cursor.next(from: a) else { return XCTFail("no report") }
        XCTAssertEqual(full.report, VersionVector([ida: 1, idb: 1, idc: 1]))
    }

    /// A puller's hello names the authors it receives directly (its other live links): the
    /// feeder leaves their changes out from its first batch. Before, the first batches after
    /// every (re)connection relayed them until the first acknowledgement came back.
    func testAFeederToldInTheHelloDoesNotRelayFromItsFirstBatch() throws {
        let a = try store(1, peers: [2, 3])
        let c = try store(3, peers: [1, 2])
        defer { a.close(); c.close() }
        _ = try c.put(PutRequest(key: b("from-c"), value: b("1")))
        for change in c.changes(since: VersionVector())! { try a.applyRemote(change) }
        _ = try a.put(PutRequest(key: b("from-a"), value: b("1")))
        var hello = PeerHello()
        hello.memberID = 2
        hello.incarnation = 0xb
        hello.direct = [c.replicaID]
        var cursor = FeedCursor(hello: try PeerHello(protoBytes: hello.protoBytes()))
        guard case .send(let first) = cursor.next(from: a) else { return XCTFail("no batch") }
        XCTAssertEqual(first.changes.map(\.id.member), [a.replicaID], "c's change is not relayed in the first batch")
    }

    /// When a feeder's vector moves only by changes of an author the puller receives directly,
    /// its clamped report does not change; it is sent anyway, so the puller's acknowledgement
    /// tells the feeder what it holds and the next report names it. Without that, the puller's
    /// stable point waited for the feeder's heartbeat after every such change (a member's log
    /// kept a few entries all the time under steady writes).
    func testAFeederReportsAMovedVectorWithoutWaitingForTheHeartbeat() throws {
        let a = try store(1, peers: [2, 3])
        let c = try store(3, peers: [1, 2])
        defer { a.close(); c.close() }
        let idc = c.replicaID
        var cursor = FeedCursor(pullerVector: VersionVector(), puller: 2)
        var ack = PeerAck(vector: VersionVector(), processed: 0, resync: false)
        ack.direct = [idc]
        cursor.acknowledged(ack)
        guard case .send(let first) = cursor.next(from: a), first.report != nil else { return XCTFail("no first report") }
        XCTAssertEqual(cursor.next(from: a), .idle)

        _ = try c.put(PutRequest(key: b("from-c"), value: b("1")))
        for change in c.changes(since: VersionVector())! { try a.applyRemote(change) }
        guard case .send(let moved) = cursor.next(from: a), let clamped = moved.report else {
            return XCTFail("the moved vector is not reported before the heartbeat")
        }
        XCTAssertEqual(clamped, VersionVector(), "c's change is not named before the puller says it holds it")
        // The puller got c's change from c and acknowledges the report with its vector.
        ack = PeerAck(vector: VersionVector([idc: 1]), processed: 0, resync: false)
        ack.direct = [idc]
        cursor.acknowledged(ack)
        guard case .send(let named) = cursor.next(from: a) else { return XCTFail("no report naming c's change") }
        XCTAssertEqual(named.report, VersionVector([idc: 1]))
        XCTAssertEqual(cursor.next(from: a), .idle)
    }

    // MARK: incarnations

    func testEveryDataDirectoryHasItsOwnIncarnationAndKeepsIt() throws {
        let dir = tempDir()
        var first: MVCCStore? = try store(1, dir: dir)
        let id = first!.replicaID
        _ = try first!.put(PutRequest(key: b("k"), value: b("v")))
        first!.close()
        first = nil
        let reopened = try store(1, dir: dir)
        XCTAssertEqual(reopened.replicaID, id, "a restart keeps the incarnation")
        reopened.close()
        let other = try store(1, dir: tempDir())
        defer { other.close() }
        XCTAssertNotEqual(other.replicaID, id, "a new data directory of the same member is a new incarnation")
    }

    /// A member whose data directory was wiped must not reuse its old dots: the peer would
    /// silently ignore its new writes as duplicates.
    func testAWipedMembersNewWritesReachItsPeers() throws {
        let peer = try store(2, peers: [1])
        defer { peer.close() }
        var wipedDir = tempDir()
        var old: MVCCStore? = try store(1, dir: wipedDir, peers: [2])
        _ = try old!.put(PutRequest(key: b("a"), value: b("before")))
        for ch in old!.changes(since: peer.versionVector)! { try peer.applyRemote(ch) }
        old!.close()
        old = nil
        try? FileManager.default.removeItem(atPath: wipedDir)
        wipedDir = tempDir()
        let fresh = try store(1, dir: wipedDir, peers: [2])
        defer { fresh.close() }
        _ = try fresh.put(PutRequest(key: b("b"), value: b("after")))
        for ch in fresh.changes(since: peer.versionVector)! { try peer.applyRemote(ch) }
        XCTAssertEqual(try get(peer, "b"), "after")
        XCTAssertEqual(try get(peer, "a"), "before")
    }

    // MARK: replay is the runtime path

    /// A lease granted concurrently at two members survives a revoke that saw only one grant;
    /// a restart of a third member must keep it too.
    func testALeaseThatSurvivedAConcurrentRevokeSurvivesARestart() throws {
        let a = try store(1, peers: [2, 3]), c = try store(3, peers: [1, 2])
        defer { a.close(); c.close() }
        let dir = tempDir()
        var member2: MVCCStore? = try store(2, dir: dir, peers: [1, 3])
        _ = try a.leaseGrant(LeaseGrantRequest(ttl: 600, id: 77))
        _ = try c.leaseGrant(LeaseGrantRequest(ttl: 600, id: 77))
        _ = try a.leaseRevoke(LeaseRevokeRequest(id: 77))
        for ch in a.changes(since: member2!.versionVector)! { try member2!.applyRemote(ch) }
        for ch in c.changes(since: member2!.versionVector)! { try member2!.applyRemote(ch) }
        XCTAssertEqual(member2!.leaseLeases().leases.map(\.id), [77], "c's grant was not revoked")
        member2!.close()
        member2 = nil
        let reopened = try store(2, dir: dir, peers: [1, 3])
        defer { reopened.close() }
        XCTAssertEqual(reopened.leaseLeases().leases.map(\.id), [77], "replay keeps the lease the runtime kept")
    }

    /// A change buffered when a snapshot was taken, then released by its dependency: after a
    /// restart from that snapshot both must be in the index.
    func testAChangeReleasedFromTheBufferAfterASnapshotIsReplayed() throws {
        let a = try store(1, peers: [2])
        defer { a.close() }
        let dir = tempDir()
        var member2: MVCCStore? = try store(2, dir: dir, peers: [1], snapshotCount: 1)
        _ = try a.put(PutRequest(key: b("first"), value: b("1")))
        _ = try a.put(PutRequest(key: b("second"), value: b("2")))
        let changes = a.changes(since: VersionVector())!
        XCTAssertEqual(try member2!.applyRemote([changes[1]]).get(), [.buffered])
        _ = try member2!.put(PutRequest(key: b("local"), value: b("x")))  // a snapshot with the buffered change
        XCTAssertEqual(try member2!.applyRemote([changes[0]]).get(), [.applied(revisions: [3, 4])])
        member2!.close()
        member2 = nil
        let reopened = try store(2, dir: dir, peers: [1])
        defer { reopened.close() }
        XCTAssertEqual(try get(reopened, "first"), "1")
        XCTAssertEqual(try get(reopened, "second"), "2")
        XCTAssertEqual(reopened.currentRevision, 4)
    }

    // MARK: outcomes are reported

    /// A data directory copied from another member, or restored from an older copy of its own,
    /// would reuse sequence numbers already used: its hello is refused with the reason.
    func testACopiedOrRestoredDataDirectoryIsRefused() {
        var hello = PeerHello()
        hello.memberID = 2
        hello.name = "b"
        hello.incarnation = 77
        hello.vector = VersionVector([77: 5, 1: 3])
        XCTAssertNil(ReplicationNode.copiedDataDirectory(hello: hello, localIncarnation: 1, localVector: VersionVector([77: 5, 1: 9])),
                     "a peer that holds all of its own changes we hold is fine")
        let copy = ReplicationNode.copiedDataDirectory(hello: hello, localIncarnation: 77, localVector: VersionVector([77: 5]))
        XCTAssertTrue(copy?.contains("is a copy of this member's") == true, copy ?? "accepted")
        let restored = ReplicationNode.copiedDataDirectory(hello: hello, localIncarnation: 1, localVector: VersionVector([77: 6, 1: 9]))
        XCTAssertTrue(restored?.contains("restored from an older copy") == true, restored ?? "accepted")
    }

    func testEveryOutcomeOfARemoteChangeIsReported() throws {
        let a = try store(1, peers: [2]), member2 = try store(2, peers: [1])
        defer { a.close(); member2.close() }
        _ = try a.put(PutRequest(key: b("x"), value: b("1")))
        _ = try a.put(PutRequest(key: b("y"), value: b("2")))
        let changes = a.changes(since: VersionVector())!
        var broken = changes[0]
        broken.deps = VersionVector([broken.id.member: broken.id.seq])
        let outcomes = try member2.applyRemote([changes[1], broken, changes[0], changes[0]]).get()
        XCTAssertEqual(outcomes[0], .buffered)
        guard case .rejected = outcomes[1] else { return XCTFail("\(outcomes[1])") }
        XCTAssertEqual(outcomes[2], .applied(revisions: [2, 3]))
        XCTAssertEqual(outcomes[3], .duplicate)
    }

    // MARK: removing a member

    /// Once a member applied a removal it takes nothing more from the removed member, and the
    /// batch that applied it drops the causal buffer — at runtime and in WAL replay alike — so
    /// no change of the removed member is applied after this member reported the removal.
    func testAfterARemovalNothingMoreIsTakenFromTheRemovedMember() throws {
        let dir = tempDir()
        func open() throws -> MVCCStore {
            var c = MVCCStore.Configuration(memberID: 100, clusterID: 9)
            c.dataDirectory = dir
            c.replicatedMembership = true
            c.replicaID = 1
            return try MVCCStore(configuration: c)
        }
        var a = try open()
        let x = try store(300, peers: [100])
        defer { a.close(); x.close() }
        _ = try ClusterSimulationTests.Cluster.sync { done in
            a.changeMembership({ (_: Replica) throws(EtcdError) -> [Op] in
                [.memberAdd(Member(id: 100)), .memberAdd(Member(id: 300))]
            }, completion: done)
        }
        _ = try x.put(PutRequest(key: b("x1"), value: b("1")))
        _ = try x.put(PutRequest(key: b("x2"), value: b("2")))
        let fromX = x.changes(since: VersionVector())!
        // x2 arrives first: buffered, waiting for x1.
        XCTAssertEqual(try a.applyRemote([fromX[1]], from: 0).get(), [.buffered])
        XCTAssertEqual(a.replicationCounters.pendingChanges, 1)
        _ = try ClusterSimulationTests.Cluster.sync { done in
            a.changeMembership({ (_: Replica) throws(EtcdError) -> [Op] in [.memberRemove(id: 300)] }, completion: done)
        }
        XCTAssertEqual(a.replicationCounters.pendingChanges, 0, "the removal's batch dropped the causal buffer")
        guard case .rejected(let why) = try a.applyRemote([fromX[0]], from: 300).get().first else {
            return XCTFail("a batch from a removed member is refused")
        }
        XCTAssertTrue(why.contains("removed"), why)
        XCTAssertNil(try get(a, "x1"))
        // Nor a state transfer from it.
        let state = try ClusterSimulationTests.Cluster.sync { done in x.captureTransfer(completion: done) }
        XCTAssertThrowsError(try ClusterSimulationTests.Cluster.sync { done in a.installTransfer(state.replica, from: 300, completion: done) })
        XCTAssertNil(try get(a, "x1"))
        // Relayed by a member that took it before the removal, it is applied (and nothing waits).
        XCTAssertEqual(try a.applyRemote([fromX[0], fromX[1]], from: 0).get().count, 2)
        XCTAssertEqual(try get(a, "x2"), "2")
        a.close()
        a = try open()
        XCTAssertTrue(a.isRemoved(300), "the removal survives a restart")
        XCTAssertEqual(try get(a, "x2"), "2")
        XCTAssertEqual(a.replicationCounters.pendingChanges, 0)
    }

    /// Peer feeds and peer reports run on event loops that serve clients too: neither waits for
    /// the writer while it evaluates a batch (it holds its lock through it). A feed's read gives
    /// way and is woken once the batch is done — even a batch that made nothing new durable —
    /// and a report left meanwhile is recorded by the next holder of the lock.
    func testFeedsAndReportsNeverWaitForABatchBeingEvaluated() throws {
        let s = try store(1, peers: [2])
        defer { s.close() }
        let woken = Mutex(0)
        s.onDurableChanges { woken.withLock { $0 += 1 } }
        func wokenAtLeast(_ n: Int) -> Bool {
            let deadline = Date().addingTimeInterval(10)
            while woken.withLock({ $0 }) < n && Date() < deadline { usleep(1_000) }
            return woken.withLock { $0 } >= n
        }
        _ = try s.put(PutRequest(key: b("k"), value: b("v")))
        XCTAssertTrue(wokenAtLeast(1), "the put's batch wakes the feeds (after answering the put)")
        let entered = DispatchSemaphore(value: 0)
        let release = DispatchSemaphore(value: 0)
        let finished = DispatchSemaphore(value: 0)
        s.submit({ (_: inout WriteTxn, _: inout MVCCStore.WriterState) throws(EtcdError) -> Int in
            entered.signal()
            release.wait()
            return 0
        }, completion: { _ in finished.signal() })
        entered.wait()

        let answered = DispatchSemaphore(value: 0)
        let read = Mutex<MVCCStore.FeedRead??>(nil)
        let report = s.versionVector   // member 2 holds what this member wrote
        DispatchQueue.global().async {
            let r = s.feedRead(puller: 2, from: 0, lacking: VersionVector(), maxBytes: 1 << 20, skipping: [])
            read.withLock { $0 = .some(r) }
            s.recordPeerReport(member: 2, vector: report)
            answered.signal()
        }
        let gaveWay = answered.wait(timeout: .now() + 10) == .success
        XCTAssertTrue(gaveWay, "a feed read or a report waited for the batch")
        if gaveWay { XCTAssertNil(read.withLock { $0 } ?? nil, "the feed read gives way while the batch is evaluated") }
        release.signal()
        finished.wait()
        if !gaveWay { answered.wait() }
        XCTAssertTrue(wokenAtLeast(2), "the feeds are woken after a batch that shipped nothing")
        XCTAssertEqual(s.peerReport(member: 2), report, "the report left meanwhile is recorded")
        // Recording the report scheduled a collection batch, which a read may find running.
        var again: MVCCStore.FeedRead?
        let deadline = Date().addingTimeInterval(10)
        while again == nil && Date() < deadline {
            again = s.feedRead(puller: 2, from: 0, lacking: VersionVector(), maxBytes: 1 << 20, skipping: [])
            if again == nil { usleep(1_000) }
        }
        let page = try XCTUnwrap(again?.page)
        XCTAssertEqual(page.changes.count, 0, "the feed reads once the writer is done, knowing from the report that the puller holds the change")
    }

    /// A change is encoded once, by its author for its WAL record: feeds send those bytes, and a
    /// receiver writes the bytes it received to its own WAL and feeds them on. Shown with a
    /// field this version does not know (as a newer author would write): it survives the
    /// receiver's WAL record and its feed, and the change still replays after a restart.
    func testAChangeTravelsInTheBytesItsAuthorEncoded() async throws {
        let author = try store(1, dir: tempDir(), peers: [2, 3])
        let receiverDir = tempDir()
        var receiver = try store(2, dir: receiverDir, peers: [1, 3])
        defer { author.close() }
        _ = try author.put(PutRequest(key: b("k"), value: b("v")))

        var toReceiver = FeedCursor(pullerVector: VersionVector(), puller: 2)
        guard case .send(let sent) = toReceiver.next(from: author) else { return XCTFail("no batch") }
        let change = try XCTUnwrap(sent.changes.first)
        XCTAssertEqual(sent.changeBytes, [ChangeMessage(change).protoBytes()], "the feed sends the WAL record's encoding")
        var encodedAgain = sent
        encodedAgain.changeBytes = []
        XCTAssertEqual(sent.protoBytes(), encodedAgain.protoBytes(), "the same message either way")

        // What a newer author would send: the same change with an extra field (number 15).
        var newer = sent
        newer.changeBytes = [ChangeMessage(change).protoBytes() + [15 << 3, 7]]
        let received = try SyncResponse(protoBytes: newer.protoBytes())
        XCTAssertEqual(received.changes, [change])
        XCTAssertEqual(received.changeBytes, newer.changeBytes, "the receiver keeps the bytes it got")
        var pull = PullState(peer: 1)
        let ack = try await pull.applyBatch(received, store: receiver)
        XCTAssertFalse(ack.resync)

        var toThird = FeedCursor(pullerVector: VersionVector(), puller: 3)
        guard case .send(let relayed) = toThird.next(from: receiver) else { return XCTFail("no relay") }
        XCTAssertEqual(relayed.changes, [change])
        XCTAssertEqual(relayed.changeBytes, newer.changeBytes, "relayed in the bytes it arrived in, not encoded again")

        receiver.close()
        receiver = try store(2, dir: receiverDir, peers: [1, 3])
        defer { receiver.close() }
        XCTAssertEqual(try get(receiver, "k"), "v", "the record written from the received bytes replays")
        XCTAssertTrue(receiver.versionVector.contains(change.id))
    }

    /// The kept encodings match a plain model (a map by dot and a first-in first-out queue)
    /// through authors writing in sequence, repeats, gaps (a restart: the author's older ones
    /// go) and the byte budget dropping the oldest, with entries up to a third of the budget.
    func testKeptEncodingsMatchAPlainModel() {
        var rng = SplitMix64(seed: 7)
        var kept = RecentChangeEncodings()
        var model: [Dot: [UInt8]] = [:]
        var queue: [Dot] = []
        var next: [UInt64: UInt64] = [1: 1, 2: 1, 3: 1, 4: 1]
        var inserted: [Dot] = []
        for step in 0..<30_000 {
            let member = 1 + rng.next(upTo: 4)
            var seq = next[member]!
            switch rng.next(upTo: 100) {
            case 0..<3: seq += 1 + rng.next(upTo: 50)  // a gap
            case 3..<6: seq = max(1, seq - 1 - rng.next(upTo: 3))  // a repeat
            default: break
            }
            let size = rng.next(upTo: 200) == 0 ? RecentChangeEncodings.budgetBytes / 3 : 1 + Int(rng.next(upTo: 2_000))
            let dot = Dot(member: member, seq: seq)
            let encoding = [UInt8](repeating: UInt8(truncatingIfNeeded: step), count: size)
            kept.insert(dot, encoding)
            // The model: a repeat changes nothing; a gap drops the author's kept encodings.
            let end = next[member]!
            if seq >= end {
                if seq > end { for d in model.keys where d.member == member { model[d] = nil } }
                model[dot] = encoding
                queue.append(dot)
                next[member] = seq + 1
                inserted.append(dot)
            }
            var total = model.values.reduce(0) { $0 + $1.count }
            while total > RecentChangeEncodings.budgetBytes, !queue.isEmpty {
                if let gone = model.removeValue(forKey: queue.removeFirst()) { total -= gone.count }
            }
            XCTAssertEqual(kept.count, model.count, "step \(step)")
            XCTAssertEqual(kept.totalBytes, total, "step \(step)")
            if step % 97 == 0 {
                for d in inserted.suffix(400) { XCTAssertEqual(kept[d], model[d], "step \(step), \(d)") }
            }
        }
        XCTAssertGreaterThan(model.count, 20)
        XCTAssertGreaterThan(inserted.count, model.count + 10_000, "the budget dropped most of them")
    }

    /// A member without peers keeps no change encodings (nothing would read them); with a
    /// peer it keeps those it writes, and drops them once it has no peer left.
    func testOnlyAMemberWithPeersKeepsChangeEncodings() throws {
        let alone = try store(1, dir: tempDir(), peers: [])
        defer { alone.close() }
        for i in 0..<10 { _ = try alone.put(PutRequest(key: b("k\(i)"), value: b("v"))) }
        XCTAssertEqual(alone.keptEncodingCount, 0)

        let clustered = try store(1, dir: tempDir(), peers: [2])
        defer { clustered.close() }
        for i in 0..<10 { _ = try clustered.put(PutRequest(key: b("k\(i)"), value: b("v"))) }
        XCTAssertEqual(clustered.keptEncodingCount, 10)
        clustered.setPeerMembers([])
        _ = try clustered.put(PutRequest(key: b("after"), value: b("v")))
        XCTAssertEqual(clustered.keptEncodingCount, 0)
    }

    /// A WAL record made from a change's encoding is byte for byte the record made from the
    /// change, for every kind of change; the kept encodings stay within their byte budget.
    func testARecordMadeFromAnEncodingIsTheRecordOfTheChange() throws {
        let member = LatticeCore.Member(id: 7, name: "m", peerURLs: ["http://127.0.0.1:2380"], clientURLs: [], isLearner: false)
        let changes = [
            Change(id: Dot(member: 1, seq: 1), deps: VersionVector(), hlc: .zero, ops: []),
            Change(id: Dot(member: 1, seq: 2), deps: VersionVector([1: 1, 2: 300]), hlc: HLC(wallMilliseconds: 1_700_000_000_000, logical: 3),
                   ops: [.put(key: b("a"), value: [UInt8](repeating: 9, count: 300), lease: 5, parents: [Dot(member: 2, seq: 300)]),
                         .delete(key: b("b"), parents: []), .leaseGrant(id: 5, ttlSeconds: 60), .memberAdd(member)]),
        ]
        for change in changes {
            for revision: Int64 in [0, 1, 1 << 40] {
                XCTAssertEqual(ChangeRecord(revision: revision, encodedChange: ChangeMessage(change).protoBytes()).protoBytes(),
                               ChangeRecord(revision: revision, change: change).protoBytes())
            }
        }
        var kept = RecentChangeEncodings()
        let entry = [UInt8](repeating: 1, count: 100_000)
        for seq in 1...200 { kept.insert(Dot(member: 1, seq: UInt64(seq)), entry) }
        XCTAssertLessThanOrEqual(kept.totalBytes, RecentChangeEncodings.budgetBytes)
        XCTAssertEqual(kept.totalBytes, kept.count * entry.count)
        XCTAssertNil(kept[Dot(member: 1, seq: 1)], "the oldest go first")
        XCTAssertNotNil(kept[Dot(member: 1, seq: 200)])
    }
}

extension MVCCStore {
    /// Applies changes and waits (tests).
    func applyRemote(_ changes: [Change], from source: UInt64 = 0) throws -> Result<[RemoteApplyOutcome], EtcdError> {
        let done = DispatchSemaphore(value: 0)
        let box = Mutex<Result<[RemoteApplyOutcome], EtcdError>?>(nil)
        applyRemote(changes, from: source) { r in
            box.withLock { $0 = r }
            done.signal()
        }
        done.wait()
        return box.withLock { $0! }
    }
}
