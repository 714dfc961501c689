import EtcdAPI
import LatticeCore
import LatticeStore
import XCTest

/// One WAL record holds one change, and a record over the WAL's bound would stop the store. So a
/// request that would make a larger change fails alone, and the store's own multi-key changes
/// (lease revocation and expiry, the dead-lease sweep) split themselves. (The bound is lowered
/// here so a thousand keys exceed it.)
final class LargeChangeTests: XCTestCase {
    private let clock = ManualWallClock()

    private func store() -> MVCCStore {
        var c = MVCCStore.Configuration(memberID: 1, clusterID: 2)
        c.maxChangeBytes = 16 << 10
        c.wallClock = clock
        return try! MVCCStore(configuration: c)
    }

    private func count(_ s: MVCCStore) throws -> Int64 {
        var r = RangeRequest(key: b("/big/"), rangeEnd: prefixEnd("/big/"))
        r.countOnly = true
        return try s.range(r).count
    }

    private func fill(_ s: MVCCStore, lease: Int64 = 0) throws {
        for i in 0..<1_000 { _ = try s.put(PutRequest(key: b("/big/key-\(i)"), value: b("v"), lease: lease)) }
    }

    func testADeleteRangeTooLargeForOneChangeFailsAloneAndTheStoreGoesOn() throws {
        let s = store()
        defer { s.close() }
        try fill(s)
        do {
            _ = try s.deleteRange(DeleteRangeRequest(key: b("/big/"), rangeEnd: prefixEnd("/big/")))
            XCTFail("a change larger than one WAL record must be refused")
        } catch {
            XCTAssertEqual(error.code, .invalidArgument)
            XCTAssertTrue(error.message.contains("split it into smaller requests"), error.message)
        }
        XCTAssertEqual(try count(s), 1_000, "nothing was deleted")
        _ = try s.put(PutRequest(key: b("/after"), value: b("1")))
        XCTAssertEqual(try s.deleteRange(DeleteRangeRequest(key: b("/big/key-1"), rangeEnd: b("/big/key-2"))).deleted, 111, "smaller ranges work")
    }

    func testALeaseWithMoreKeysThanOneChangeHoldsIsRevokedInSeveralChanges() throws {
        let s = store()
        defer { s.close() }
        let lease = try s.leaseGrant(LeaseGrantRequest(ttl: 60, id: 0))
        try fill(s, lease: lease.id)
        let before = s.currentRevision
        _ = try s.leaseRevoke(LeaseRevokeRequest(id: lease.id))
        XCTAssertEqual(try count(s), 0)
        XCTAssertGreaterThan(s.currentRevision - before, 1, "the keys went in several changes")
        XCTAssertEqual(s.leaseTimeToLive(LeaseTimeToLiveRequest(id: lease.id)).ttl, -1, "the lease is gone")
        _ = try s.put(PutRequest(key: b("/after"), value: b("1")))
    }

    func testAnExpiredLeaseWithManyKeysExpires() throws {
        let s = store()
        defer { s.close() }
        let lease = try s.leaseGrant(LeaseGrantRequest(ttl: 5, id: 0))
        try fill(s, lease: lease.id)
        clock.advance(byMilliseconds: 6_000)
        XCTAssertEqual(s.expireLeases(), [lease.id])
        XCTAssertEqual(try count(s), 0)
        _ = try s.put(PutRequest(key: b("/after"), value: b("1")))
    }
}
