import EtcdAPI
import GRPCWire
import LatticeStore
import NIOCore
import XCTest

/// Leases (items 44–47) and Maintenance/Cluster answers.
final class LeaseAndMaintenanceTests: XCTestCase {
    private var h: ServerHarness!

    override func setUp() async throws {
        h = ServerHarness()
        try await h.start()
    }

    override func tearDown() async throws { try await h.stop() }

    /// etcd 3.5 answers Defragment with an empty message: no header.
    func testDefragmentAnswersWithAnEmptyResponseLikeEtcd() async throws {
        let bytes = try await h.client.unary(path: "/etcdserverpb.Maintenance/Defragment", request: DefragmentRequest().protoBytes())
        XCTAssertEqual(bytes, [])
        XCTAssertNil(try DefragmentResponse(protoBytes: bytes).header)
    }

    func testGrantGivesAServerChosenIDWithMemberBitsAndAttachesKeys() async throws {
        let lease = try await h.grant(ttl: 3660)
        XCTAssertNotEqual(lease.id, 0)
        XCTAssertEqual(UInt64(lease.id) >> 48, h.server.memberID & 0xFFFF)
        XCTAssertEqual(lease.ttl, 3660)
        try await h.put("/registry/events/e1", "v", lease: lease.id)
        let r = try await h.get("/registry/events/e1")
        XCTAssertEqual(r.kvs.first?.lease, lease.id)
    }

    func testShortTTLIsRaisedToEtcdsMinimumAndDuplicateIDIsRefused() async throws {
        let lease = try await h.grant(ttl: 1, id: 42)
        XCTAssertEqual(lease.id, 42)
        XCTAssertEqual(lease.ttl, 2)
        do {
            _ = try await h.grant(ttl: 10, id: 42)
            XCTFail("duplicate lease granted")
        } catch let status as GRPCStatus {
            XCTAssertEqual(status.message, "etcdserver: lease already exists")
        }
    }

    func testExpiryDeletesAttachedKeysNotEarlierThanTTL() async throws {
        let lease = try await h.grant(ttl: 15)
        try await h.put("k", "v", lease: lease.id)
        h.clock.advance(byMilliseconds: 14_999)
        XCTAssertEqual(h.server.store.expireLeases(), [])
        let before = try await h.get("k")
        XCTAssertEqual(before.kvs.count, 1)
        h.clock.advance(byMilliseconds: 1)
        XCTAssertEqual(h.server.store.expireLeases(), [lease.id])
        let after = try await h.get("k")
        XCTAssertTrue(after.kvs.isEmpty)
        XCTAssertEqual(after.header?.revision, 3, "one revision for the expiry")
    }

    func testKeyMovedOffALeaseSurvivesItsExpiry() async throws {
        let lease = try await h.grant(ttl: 5)
        try await h.put("a", "1", lease: lease.id)
        try await h.put("b", "1", lease: lease.id)
        try await h.put("a", "2")  // detaches
        let other = try await h.grant(ttl: 100)
        try await h.put("b", "2", lease: other.id)  // moves
        h.clock.advance(byMilliseconds: 5_000)
        h.server.store.expireLeases()
        let a = try await h.get("a")
        let b = try await h.get("b")
        XCTAssertEqual(a.kvs.first?.value, Array("2".utf8))
        XCTAssertEqual(b.kvs.first?.lease, other.id)
    }

    func testKeepAliveRenewsAndUnknownLeaseGetsTTLZero() async throws {
        let lease = try await h.grant(ttl: 10)
        let stream = try await h.client.openStream(path: "/etcdserverpb.Lease/LeaseKeepAlive")
        var it = stream.responses.makeAsyncIterator()
        h.clock.advance(byMilliseconds: 9_000)
        stream.send(LeaseKeepAliveRequest(id: lease.id).protoBytes())
        let renewed = try LeaseKeepAliveResponse(protoBytes: try await it.next()!)
        XCTAssertEqual(renewed.ttl, 10)
        h.clock.advance(byMilliseconds: 9_000)
        XCTAssertEqual(h.server.store.expireLeases(), [], "renewed 9 s ago with a 10 s TTL")
        stream.send(LeaseKeepAliveRequest(id: 12345).protoBytes())
        let unknown = try LeaseKeepAliveResponse(protoBytes: try await it.next()!)
        XCTAssertEqual(unknown.ttl, 0)
        stream.closeSend()
    }

    func testTimeToLiveListsKeysAndRevokeDeletesThem() async throws {
        let lease = try await h.grant(ttl: 60)
        try await h.put("t1", "v", lease: lease.id)
        try await h.put("t2", "v", lease: lease.id)
        h.clock.advance(byMilliseconds: 10_000)
        let ttl: LeaseTimeToLiveResponse = try await h.call("/etcdserverpb.Lease/LeaseTimeToLive", LeaseTimeToLiveRequest(id: lease.id, keys: true))
        XCTAssertEqual(ttl.grantedTTL, 60)
        XCTAssertEqual(ttl.ttl, 50)
        XCTAssertEqual(ttl.keys, [Array("t1".utf8), Array("t2".utf8)])
        let leases: LeaseLeasesResponse = try await h.call("/etcdserverpb.Lease/LeaseLeases", LeaseLeasesRequest())
        XCTAssertEqual(leases.leases.map(\.id), [lease.id])
        let _: LeaseRevokeResponse = try await h.call("/etcdserverpb.Lease/LeaseRevoke", LeaseRevokeRequest(id: lease.id))
        let remaining = try await h.get("t1", end: "t3")
        XCTAssertTrue(remaining.kvs.isEmpty)
        let gone: LeaseTimeToLiveResponse = try await h.call("/etcdserverpb.Lease/LeaseTimeToLive", LeaseTimeToLiveRequest(id: lease.id))
        XCTAssertEqual(gone.ttl, -1)
        do {
            let _: LeaseRevokeResponse = try await h.call("/etcdserverpb.Lease/LeaseRevoke", LeaseRevokeRequest(id: lease.id))
            XCTFail("revoked twice")
        } catch let status as GRPCStatus {
            XCTAssertEqual(status.code, .notFound)
            XCTAssertEqual(status.message, "etcdserver: requested lease not found")
        }
    }

    func testTxnPutWithUnknownLeaseAppliesNothing() async throws {
        let t = TxnRequest(compare: [], success: [
            RequestOp(.put(PutRequest(key: Array("x".utf8), value: [1]))),
            RequestOp(.put(PutRequest(key: Array("y".utf8), value: [1], lease: 777))),
        ])
        do {
            _ = try await h.txn(t)
            XCTFail("txn with unknown lease succeeded")
        } catch let status as GRPCStatus {
            XCTAssertEqual(status.code, .notFound)
        }
        let x = try await h.get("x")
        XCTAssertEqual(x.header?.revision, 1)
    }

    func testStatusReportsAVersionKubeAcceptsAndAPositiveDBSize() async throws {
        let s: StatusResponse = try await h.call("/etcdserverpb.Maintenance/Status", StatusRequest())
        let parts = s.version.split(separator: ".").compactMap { Int($0) }
        XCTAssertEqual(parts.count, 3)
        XCTAssertTrue(parts[0] == 3 && parts[1] == 5 && parts[2] >= 13, s.version)
        XCTAssertGreaterThan(s.dbSize, 0)
        XCTAssertEqual(s.leader, h.server.memberID)
        XCTAssertFalse(s.isLearner)
    }

    func testQuotaExceededRaisesNoSpaceAndRejectsPutsButAllowsDeletes() async throws {
        try await h.stop()
        h = ServerHarness()
        try await h.start { $0.quotaBackendBytes = 64 * 1024 }
        try await h.put("small", "v")
        do {
            try await h.put("large", String(repeating: "x", count: 100 * 1024))
            XCTFail("quota not enforced")
        } catch let status as GRPCStatus {
            XCTAssertEqual(status.code, .resourceExhausted)
            XCTAssertEqual(status.message, "etcdserver: mvcc: database space exceeded")
        }
        let alarms: AlarmResponse = try await h.call("/etcdserverpb.Maintenance/Alarm", AlarmRequest(action: .get))
        XCTAssertEqual(alarms.alarms.map(\.alarm), [.noSpace])
        try await h.delete("small")
        var disarm = AlarmRequest(action: .deactivate)
        disarm.alarm = .noSpace
        let _: AlarmResponse = try await h.call("/etcdserverpb.Maintenance/Alarm", disarm)
        try await h.put("small", "again")
    }

    /// Like etcd's (kept in its backend), a raised NOSPACE alarm survives a restart: the member
    /// comes back refusing writes until the alarm is disarmed, and stays clear after that.
    func testAlarmsSurviveARestart() async throws {
        try await h.stop()
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("lattice-alarms-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        func start() async throws {
            h = ServerHarness()
            try await h.start { $0.inMemory = false; $0.dataDir = dir }
        }
        try await start()
        var raise = AlarmRequest(action: .activate)
        raise.alarm = .noSpace
        let _: AlarmResponse = try await h.call("/etcdserverpb.Maintenance/Alarm", raise)
        try await h.stop()

        try await start()
        let after: AlarmResponse = try await h.call("/etcdserverpb.Maintenance/Alarm", AlarmRequest(action: .get))
        XCTAssertEqual(after.alarms.map(\.alarm), [.noSpace])
        do {
            try await h.put("k", "v")
            XCTFail("writes must stay refused while NOSPACE is raised")
        } catch let status as GRPCStatus {
            XCTAssertEqual(status.message, "etcdserver: mvcc: database space exceeded")
        }
        var disarm = AlarmRequest(action: .deactivate)
        disarm.alarm = .noSpace
        let _: AlarmResponse = try await h.call("/etcdserverpb.Maintenance/Alarm", disarm)
        try await h.stop()

        try await start()
        let cleared: AlarmResponse = try await h.call("/etcdserverpb.Maintenance/Alarm", AlarmRequest(action: .get))
        XCTAssertEqual(cleared.alarms, [])
        try await h.put("k", "v")
    }

    func testHashKVIsStableForEqualHistoryAndChangesWithWrites() async throws {
        try await h.put("h", "1")
        let a: HashKVResponse = try await h.call("/etcdserverpb.Maintenance/HashKV", HashKVRequest(revision: 0))
        let b: HashKVResponse = try await h.call("/etcdserverpb.Maintenance/HashKV", HashKVRequest(revision: 2))
        XCTAssertEqual(a.hash, b.hash)
        try await h.put("h", "2")
        let c: HashKVResponse = try await h.call("/etcdserverpb.Maintenance/HashKV", HashKVRequest(revision: 0))
        XCTAssertNotEqual(a.hash, c.hash)
        let again: HashKVResponse = try await h.call("/etcdserverpb.Maintenance/HashKV", HashKVRequest(revision: 2))
        XCTAssertEqual(again.hash, a.hash, "hash at a past revision does not change")
    }

    func testMemberListShowsThisMember() async throws {
        let r: MemberListResponse = try await h.call("/etcdserverpb.Cluster/MemberList", MemberListRequest())
        XCTAssertEqual(r.members.count, 1)
        XCTAssertEqual(r.members.first?.id, h.server.memberID)
        XCTAssertEqual(r.members.first?.name, "default")
        XCTAssertEqual(r.members.first?.peerURLs, ["http://localhost:2380"])
    }
}
