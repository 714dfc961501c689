import EtcdAPI
import Foundation
import LatticeCore
import LatticeReplication
import LatticeStore
import LatticeTestSupport
import XCTest

/// A member behind the collected log (its data directory was wiped or replaced) gets the
/// replicated state instead of the changes, keeps what it wrote itself, and its watchers see
/// every key the transfer changed.
final class StateTransferTests: XCTestCase {
    private let temporary = TemporaryDirectories(prefix: "lattice-transfer")

    override func tearDown() { temporary.removeAll() }

    private func tempDir() -> String { temporary.make() }

    private func store(_ id: UInt64, dir: String?, peers: Set<UInt64>) throws -> MVCCStore {
        var c = MVCCStore.Configuration(memberID: id, clusterID: 9)
        c.dataDirectory = dir
        c.peerMemberIDs = peers
        return try MVCCStore(configuration: c)
    }

    private func b(_ s: String) -> [UInt8] { Array(s.utf8) }

    private func get(_ s: MVCCStore, _ key: String) throws -> String? {
        try s.range(RangeRequest(key: b(key))).kvs.first.map { String(decoding: $0.value, as: UTF8.self) }
    }

    /// Member A's log is collected (B reported everything); B then loses its data directory and
    /// writes before it reaches A. A's feed finds B behind the log and sends its state.
    func testAMemberBehindTheCollectedLogGetsTheStateAndKeepsItsOwnWrites() async throws {
        let a = try store(1, dir: tempDir(), peers: [2])
        defer { a.close() }
        _ = try a.put(PutRequest(key: b("/k/json"), value: b("{\"x\":1,\"y\":2}")))
        _ = try a.put(PutRequest(key: b("/k/plain"), value: b("v1")))
        _ = try a.put(PutRequest(key: b("/k/gone"), value: b("soon")))
        _ = try a.deleteRange(DeleteRangeRequest(key: b("/k/gone")))
        let lease = try a.leaseGrant(LeaseGrantRequest(ttl: 600)).id
        _ = try a.put(PutRequest(key: b("/k/leased"), value: b("l"), lease: lease))
        // B held all of it once: A collects its log.
        a.recordPeerReport(member: 2, vector: a.versionVector)
        _ = try await a.applyRemote([])
        XCTAssertEqual(a.replicationCounters.logEntries, 0, "the stable log is collected")

        // B comes back with a fresh directory (a new incarnation) and writes on its own.
        let bDir = tempDir()
        var bStore: MVCCStore? = try store(2, dir: bDir, peers: [1])
        _ = try bStore!.put(PutRequest(key: b("/k/plain"), value: b("from-b")))
        _ = try bStore!.put(PutRequest(key: b("/k/only-b"), value: b("b")))
        let watchFrom = bStore!.currentRevision + 1

        // Its hello names a new incarnation: A forgets B's old report (B no longer holds it).
        XCTAssertNotEqual(bStore!.replicaID, 2)
        a.forgetPeerReport(member: 2)
        var cursor = FeedCursor(pullerVector: bStore!.versionVector, puller: 2)
        XCTAssertEqual(cursor.next(from: a), .needsStateTransfer, "B lacks changes A no longer holds as changes")
        let (state, logEnd, vector) = try await a.captureTransferEncoded()
        _ = cursor.transferred(logEnd: logEnd, vector: vector)
        try await bStore!.installTransfer(encoded: state)

        XCTAssertTrue(bStore!.versionVector.covers(a.versionVector), "B holds everything A had")
        XCTAssertEqual(try get(bStore!, "/k/json"), "{\"x\":1,\"y\":2}")
        XCTAssertEqual(try get(bStore!, "/k/leased"), "l")
        XCTAssertNil(try get(bStore!, "/k/gone"))
        XCTAssertEqual(try get(bStore!, "/k/only-b"), "b", "B's own write, which A never had, is kept")
        XCTAssertEqual(try get(bStore!, "/k/plain"), "from-b", "B's later put, concurrent with A's, wins last-writer-wins")
        XCTAssertEqual(bStore!.leaseTimeToLive(LeaseTimeToLiveRequest(id: lease, keys: true)).keys, [b("/k/leased")],
                       "the lessor mirrors the transferred lease with its key")

        // Watchers on B see the transfer as one revision of events, in key order.
        guard case .events(let batches, _) = bStore!.events(from: watchFrom, maxRevisions: 10) else { return XCTFail("compacted") }
        XCTAssertEqual(batches.count, 1)
        XCTAssertEqual(batches.first?.events.map { String(decoding: $0.kv?.key ?? [], as: UTF8.self) }, ["/k/json", "/k/leased"],
                       "a PUT for each key the transfer changed, none for keys it did not")

        // A's feed goes on from the transferred state: nothing is sent twice.
        if case .send(let r) = cursor.next(from: a, heartbeat: true) {
            XCTAssertTrue(r.changes.isEmpty, "the feed continues after the transferred state")
        }

        // B's own changes reach A, and both show the same state.
        var back = FeedCursor(pullerVector: a.versionVector, puller: 1)
        while case .send(let r) = back.next(from: bStore!), !r.changes.isEmpty {
            _ = try await a.applyRemote(r.changes)
        }
        XCTAssertEqual(a.replicatedStateHash, bStore!.replicatedStateHash)
        XCTAssertEqual(try get(a, "/k/only-b"), "b")

        // The transferred state is durable: a restart of B shows it unchanged.
        let hash = bStore!.replicatedStateHash
        let revision = bStore!.currentRevision
        bStore!.close()
        bStore = try store(2, dir: bDir, peers: [1])
        defer { bStore!.close() }
        XCTAssertEqual(bStore!.replicatedStateHash, hash)
        XCTAssertEqual(bStore!.currentRevision, revision)
        XCTAssertEqual(try get(bStore!, "/k/json"), "{\"x\":1,\"y\":2}")
    }

    /// A state that lacks changes this member already collected would lose them: refused, and
    /// nothing changes.
    func testAStateLackingCollectedChangesIsRefused() throws {
        var p = Replica(member: 1)
        p.setPeerMembers([2])
        p.makeChange([.put(key: b("k"), value: b("p"), lease: 0, parents: [])])
        XCTAssertTrue(p.recordReport(from: 2, vector: p.vector))
        p.collectGarbage(stableVector: p.vector)
        XCTAssertEqual(p.log.count, 0)
        let before = p.stateHash()

        let q = Replica(member: 2)
        XCTAssertThrowsError(try p.install(transferred: q)) { error in
            guard case ReplicaError.transferBehind = error else { return XCTFail("\(error)") }
        }
        XCTAssertEqual(p.stateHash(), before)
        XCTAssertEqual(p.visible(b("k"))?.value, b("p"))
    }

    /// A feed from a member restarted from a snapshot (its log collected before the restart)
    /// to a member that lacks the collected changes: a state transfer, never a stream of
    /// changes whose dependencies the puller does not have.
    func testARestartedFeederStillSendsAStateToAMemberBehindItsCollectedLog() async throws {
        let dir = tempDir()
        var a: MVCCStore? = try store(1, dir: dir, peers: [2])
        _ = try a!.put(PutRequest(key: b("k1"), value: b("1")))
        a!.recordPeerReport(member: 2, vector: a!.versionVector)
        _ = try await a!.applyRemote([])
        XCTAssertEqual(a!.replicationCounters.logEntries, 0)
        try a!.defragment()  // the collected state is in the snapshot
        a!.close()
        a = try store(1, dir: dir, peers: [2])
        defer { a!.close() }
        _ = try a!.put(PutRequest(key: b("k2"), value: b("2")))

        var cursor = FeedCursor(pullerVector: VersionVector(), puller: 2)
        XCTAssertEqual(cursor.next(from: a!), .needsStateTransfer)
    }
}
