import XCTest
import LatticeCore

final class LeaseAndMemberStateTests: XCTestCase {
    func testGrantCheckpointAndRevoke() throws {
        let clock = TestClock(10_000)
        var a = Replica.test(1, clock: clock)
        let grant = a.makeChange([.leaseGrant(id: 7, ttlSeconds: 30)])
        XCTAssertEqual(grant.leasesChanged, [7])
        XCTAssertEqual(a.lease(7), LeaseInfo(id: 7, ttlSeconds: 30, expiresAtMilliseconds: 40_000))
        a.makeChange([.leaseCheckpoint(id: 7, expiresAtMilliseconds: 90_000)])
        a.makeChange([.leaseCheckpoint(id: 7, expiresAtMilliseconds: 50_000)])
        XCTAssertEqual(a.lease(7)?.expiresAtMilliseconds, 90_000, "expiry is a max-register")

        a.put("/lock", "holder", lease: 7)
        a.put("/other", "x")
        XCTAssertEqual(a.keys(attachedTo: 7), [bytes("/lock")])
        let revoke = a.makeChange(a.revokeOps(lease: 7))
        XCTAssertEqual(revoke.visibleChanges.map(\.outcome), [.deleted])
        XCTAssertNil(a.lease(7))
        XCTAssertNil(a.get("/lock"))
        XCTAssertEqual(a.get("/other"), "x")
        XCTAssertEqual(a.leases, [])
    }

    func testARevokedIDCanBeGrantedAgain() {
        var a = Replica.test(1)
        a.makeChange([.leaseGrant(id: 5, ttlSeconds: 10)])
        a.makeChange([.leaseRevoke(id: 5)])
        XCTAssertNil(a.lease(5))
        a.makeChange([.leaseGrant(id: 5, ttlSeconds: 20)])
        XCTAssertEqual(a.lease(5)?.ttlSeconds, 20)
    }

    func testGrantConcurrentWithRevokeSurvivesIt() throws {
        var a = Replica.test(1)
        var b = Replica.test(2)
        a.makeChange([.leaseGrant(id: 5, ttlSeconds: 10)])
        try b.sync(from: a)
        a.makeChange([.leaseRevoke(id: 5)])
        b.makeChange([.leaseGrant(id: 5, ttlSeconds: 60)]) // b had not seen the revoke
        try a.sync(from: b)
        try b.sync(from: a)
        XCTAssertEqual(a.lease(5)?.ttlSeconds, 60)
        XCTAssertEqual(a.leases, b.leases)
    }

    func testKeyAttachedConcurrentlyWithARevokeSurvivesAndIsFoundBySweep() throws {
        var a = Replica.test(1)
        var b = Replica.test(2)
        a.makeChange([.leaseGrant(id: 9, ttlSeconds: 10)])
        a.put("/seen", "v", lease: 9)
        try b.sync(from: a)
        a.makeChange(a.revokeOps(lease: 9))
        b.put("/unseen", "v", lease: 9) // concurrent with the revoke
        try a.sync(from: b)
        try b.sync(from: a)
        XCTAssertNil(a.get("/seen"))
        XCTAssertEqual(a.get("/unseen"), "v", "the revoke deletes only the keys it had seen")
        XCTAssertEqual(a.keysWithDeadLeases(), [bytes("/unseen")])
        XCTAssertEqual(b.keysWithDeadLeases(), [bytes("/unseen")])
        XCTAssertEqual(a.stateHash(), b.stateHash())
    }

    func testCheckpointConcurrentWithRevokeDoesNotResurrect() throws {
        var a = Replica.test(1)
        var b = Replica.test(2)
        a.makeChange([.leaseGrant(id: 3, ttlSeconds: 10)])
        try b.sync(from: a)
        a.makeChange([.leaseRevoke(id: 3)])
        b.makeChange([.leaseCheckpoint(id: 3, expiresAtMilliseconds: Int64.max)])
        try a.sync(from: b)
        try b.sync(from: a)
        XCTAssertNil(a.lease(3))
        XCTAssertNil(b.lease(3))
    }

    func testMembersAreLastWriterWinsAndRemovalIsForever() throws {
        let clockA = TestClock(), clockB = TestClock()
        var a = Replica.test(1, clock: clockA)
        var b = Replica.test(2, clock: clockB)
        a.makeChange([.memberAdd(Member(id: 10, name: "n1", peerURLs: ["http://10.0.0.1:2380"]))])
        try b.sync(from: a)
        clockB.now += 5
        a.makeChange([.memberUpdate(Member(id: 10, name: "n1", peerURLs: ["http://10.0.0.2:2380"]))])
        b.makeChange([.memberUpdate(Member(id: 10, name: "n1", peerURLs: ["http://10.0.0.3:2380"]))])
        try a.sync(from: b)
        try b.sync(from: a)
        XCTAssertEqual(a.members.map(\.peerURLs), [["http://10.0.0.3:2380"]])
        XCTAssertEqual(a.members, b.members)

        a.makeChange([.memberRemove(id: 10)])
        b.makeChange([.memberUpdate(Member(id: 10, name: "back?"))]) // concurrent: removal wins
        try a.sync(from: b)
        try b.sync(from: a)
        XCTAssertEqual(a.members, [])
        XCTAssertEqual(b.removedMembers, [10])
        b.makeChange([.memberAdd(Member(id: 10, name: "again"))])
        XCTAssertEqual(b.members, [], "a removed id never comes back")
    }

    func testHugeTTLFromAPeerDoesNotTrap() throws {
        var a = Replica.test(1)
        var b = Replica.test(2)
        a.makeChange([.leaseGrant(id: 1, ttlSeconds: Int64.max), .leaseGrant(id: 2, ttlSeconds: Int64.min)])
        try b.sync(from: a)
        XCTAssertEqual(b.lease(1)?.expiresAtMilliseconds, Int64.max)
        XCTAssertEqual(b.lease(2)?.expiresAtMilliseconds, Int64.min)
    }

    /// A member's own attributes (name, client URLs) are published by it and survive adds and
    /// updates written elsewhere later — what MemberList shows for every member.
    func testPublishedAttributesSurviveLaterAddsAndUpdates() throws {
        let clockA = TestClock(), clockB = TestClock(1_700_000_000_000)
        var a = Replica.test(1, clock: clockA)
        var b = Replica.test(2, clock: clockB)
        a.makeChange([.memberAdd(Member(id: 10, name: "n1", peerURLs: ["http://10.0.0.1:2380"])),
                      .memberPublish(Member(id: 10, name: "site-1", clientURLs: ["http://10.0.0.1:2379"]))])
        clockB.now += 10
        // Another bootstrapping member adds the same member later (no client URLs in its add).
        b.makeChange([.memberAdd(Member(id: 10, name: "n1", peerURLs: ["http://10.0.0.1:2380"]))])
        try a.sync(from: b)
        try b.sync(from: a)
        XCTAssertEqual(a.members, b.members)
        XCTAssertEqual(a.members, [Member(id: 10, name: "site-1", peerURLs: ["http://10.0.0.1:2380"], clientURLs: ["http://10.0.0.1:2379"])])
        b.makeChange([.memberUpdate(Member(id: 10, name: "n1", peerURLs: ["http://10.0.0.9:2380"]))])
        try a.sync(from: b)
        XCTAssertEqual(a.member(10)?.peerURLs, ["http://10.0.0.9:2380"])
        XCTAssertEqual(a.member(10)?.clientURLs, ["http://10.0.0.1:2379"], "an update elsewhere keeps the published client URLs")
        // A bootstrap add written later from old flags (a member starting for the first time
        // after the update) does not undo the update.
        clockB.now += 10
        b.makeChange([.memberAdd(Member(id: 10, name: "n1", peerURLs: ["http://10.0.0.1:2380"]))])
        try a.sync(from: b)
        XCTAssertEqual(a.member(10)?.peerURLs, ["http://10.0.0.9:2380"], "an update beats any add")
        XCTAssertEqual(try Replica(decodingState: a.encodeState(), wallClock: TestClock()).members, a.members, "and survives encoding")
        // Publishing for a removed member does nothing.
        a.makeChange([.memberRemove(id: 10)])
        a.makeChange([.memberPublish(Member(id: 10, name: "late", clientURLs: ["http://x:1"]))])
        XCTAssertNil(a.member(10))
        XCTAssertTrue(a.isRemoved(10))
    }

    /// With replicated membership every member of the table counts for stability; a removed
    /// member stops counting only once this replica and every remaining member hold the removal.
    func testRemovedMemberLeavesStabilityOnlyWhenEveryRemainingMemberHoldsTheRemoval() throws {
        var a = Replica.test(1)
        var b = Replica.test(2)
        // Members 100 (a), 200 (b), 300 (a member that then goes away).
        a.makeChange([.memberAdd(Member(id: 100, peerURLs: ["http://a"])), .memberAdd(Member(id: 200, peerURLs: ["http://b"])),
                      .memberAdd(Member(id: 300, peerURLs: ["http://c"]))])
        a.setPeerMembers([], local: 100)
        b.setPeerMembers([], local: 200)
        try b.sync(from: a)
        XCTAssertEqual(a.peerMembers, [200, 300], "members of the table count for stability")
        a.put("/k", "1")
        try b.sync(from: a)
        XCTAssertTrue(a.recordReport(from: 200, vector: b.vector))
        XCTAssertEqual(a.stableBound, VersionVector(), "300 never reported: nothing is stable")

        a.makeChange([.memberRemove(id: 300)])
        XCTAssertEqual(a.peerMembers, [200, 300], "b has not reported the removal yet")
        XCTAssertEqual(a.stableBound, VersionVector())
        try b.sync(from: a)
        XCTAssertTrue(a.recordReport(from: 200, vector: b.vector))
        XCTAssertEqual(a.peerMembers, [200], "every remaining member holds the removal: 300 departed")
        XCTAssertEqual(a.stableBound, a.vector)
        XCTAssertTrue(a.collectGarbage(stableVector: a.vector).droppedLogEntries > 0)

        // Without a local member id (no replicated membership), the table does not count.
        var c = Replica.test(3)
        c.makeChange([.memberAdd(Member(id: 100, peerURLs: ["http://a"]))])
        XCTAssertEqual(c.peerMembers, [])
    }
}
