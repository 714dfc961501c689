import XCTest
import LatticeCore

final class CausalDeliveryTests: XCTestCase {
    func testDependentChangeIsBufferedUntilItsDependencyArrives() throws {
        var a = Replica.test(1)
        var b = Replica.test(2)
        var c = Replica.test(3)
        a.put("/k1", "v1")
        let first = a.changes(since: VersionVector())!.last!
        _ = try b.apply(remote: first)
        b.put("/k2", "depends on k1")
        let dependent = b.changes(since: a.vector)!.last!

        XCTAssertEqual(try c.apply(remote: dependent).count, 0, "buffered: its dependency is missing")
        XCTAssertNil(c.get("/k2"), "a change is never visible before one it depends on")
        XCTAssertEqual(c.pendingCount, 1)

        let applied = try c.apply(remote: first)
        XCTAssertEqual(applied.map(\.change.id), [first.id, dependent.id], "the dependency, then what it released")
        XCTAssertEqual(c.get("/k1"), "v1")
        XCTAssertEqual(c.get("/k2"), "depends on k1")
        XCTAssertEqual(c.pendingCount, 0)
    }

    func testOriginOrderIsRespectedEvenWithoutKeyDependencies() throws {
        var a = Replica.test(1)
        var b = Replica.test(2)
        a.put("/x", "1")
        a.put("/y", "2")
        a.put("/z", "3")
        let changes = a.changes(since: VersionVector())!
        XCTAssertEqual(try b.apply(remote: changes[2]).count, 0)
        XCTAssertEqual(try b.apply(remote: changes[1]).count, 0)
        XCTAssertEqual(b.visibleKeyspace().count, 0)
        XCTAssertEqual(try b.apply(remote: changes[0]).map(\.change.id.seq), [1, 2, 3])
        XCTAssertEqual(b.stateHash(), a.stateHash())
    }

    func testDuplicatesAreIgnored() throws {
        var a = Replica.test(1)
        var b = Replica.test(2)
        a.put("/k", "v1")
        a.put("/k", "v2")
        let changes = a.changes(since: VersionVector())!
        XCTAssertEqual(try b.apply(remote: changes[1]).count, 0)
        XCTAssertEqual(try b.apply(remote: changes[1]).count, 0, "a duplicate of a buffered change")
        XCTAssertEqual(b.pendingCount, 1)
        XCTAssertEqual(try b.apply(remote: changes[0]).count, 2)
        let hash = b.stateHash()
        for c in changes + changes { XCTAssertEqual(try b.apply(remote: c).count, 0, "a duplicate of an applied change") }
        XCTAssertEqual(b.stateHash(), hash)
        XCTAssertEqual(b.log.count, 2)
    }

    func testChangesSinceReturnsWhatThePeerLacksInCausalOrder() throws {
        var a = Replica.test(1)
        var b = Replica.test(2)
        a.put("/a", "1")
        try b.sync(from: a)
        b.put("/b", "2")
        try a.sync(from: b)
        a.put("/c", "3")
        let all = a.changes(since: VersionVector())!
        XCTAssertEqual(all.map(\.id), [Dot(member: 1, seq: 1), Dot(member: 2, seq: 1), Dot(member: 1, seq: 2)])
        XCTAssertEqual(a.changes(since: b.vector)!.map(\.id), [Dot(member: 1, seq: 2)])
        XCTAssertEqual(a.changes(since: a.vector)!, [])
    }

    func testChangesSinceAsksForASnapshotOnceTheLogWasCollected() {
        var a = Replica.test(1)
        a.put("/a", "1")
        a.put("/a", "2")
        a.collectGarbage(stableVector: a.vector)
        XCTAssertEqual(a.log.count, 0)
        XCTAssertNil(a.changes(since: VersionVector()), "a newcomer lacks changes no longer in the log")
        XCTAssertEqual(a.changes(since: a.vector), [])
    }

    func testProtocolViolationsAreRejectedWithoutEffect() {
        var r = Replica.test(1)
        let hlc = HLC(wallMilliseconds: 1, logical: 0)
        let bad: [Change] = [
            Change(id: Dot(member: 0, seq: 1), deps: VersionVector(), hlc: hlc, ops: []),
            Change(id: Dot(member: 2, seq: 0), deps: VersionVector(), hlc: hlc, ops: []),
            Change(id: Dot(member: 2, seq: 1), deps: VersionVector([2: 1]), hlc: hlc, ops: []),
            Change(id: Dot(member: 2, seq: 1), deps: VersionVector(), hlc: hlc,
                   ops: [.put(key: bytes("/k"), value: [], lease: 0, parents: [Dot(member: 3, seq: 1)])]),
        ]
        for change in bad {
            XCTAssertThrowsError(try r.apply(remote: change)) { error in
                guard case ReplicaError.invalidChange = error else { return XCTFail("\(error)") }
            }
        }
        XCTAssertEqual(r.vector, VersionVector())
        XCTAssertEqual(r.pendingCount, 0)
    }

    func testAFullCausalBufferRefusesMoreChanges() throws {
        var a = Replica.test(1)
        var b = Replica(member: 2, wallClock: TestClock(), causalBufferLimit: 2)
        for i in 0..<4 { a.put("/k\(i)", "v") }
        let changes = a.changes(since: VersionVector())!
        XCTAssertEqual(try b.apply(remote: changes[3]).count, 0)
        XCTAssertEqual(try b.apply(remote: changes[2]).count, 0)
        XCTAssertThrowsError(try b.apply(remote: changes[1])) { error in
            XCTAssertEqual(error as? ReplicaError, .causalBufferFull(limit: 2))
        }
        XCTAssertEqual(try b.apply(remote: changes[0]).count, 1, "the missing one arrives: what was buffered still waits for seq 2")
        XCTAssertEqual(try b.apply(remote: changes[1]).count, 3)
        XCTAssertEqual(b.stateHash(), a.stateHash())
    }

    func testRemoteHLCAdvancesTheLocalClock() throws {
        let slow = TestClock(1_000)
        var a = Replica.test(1, clock: TestClock(5_000))
        var b = Replica.test(2, clock: slow)
        a.put("/k", "from a")
        try b.sync(from: a)
        b.put("/k", "from b, later by causality")
        let mine = b.changes(since: a.vector)!.last!
        XCTAssertGreaterThan(mine.hlc, a.changes(since: VersionVector())!.last!.hlc)
    }

    func testMultipleOpsOnOneKeyInOneChangeMakeOneVersion() throws {
        var a = Replica.test(1)
        a.put("/k", "old")
        let applied = a.makeChange([
            .put(key: bytes("/k"), value: bytes("first"), lease: 0, parents: []),
            .delete(key: bytes("/k"), parents: []),
            .put(key: bytes("/k"), value: bytes("last"), lease: 0, parents: []),
            .put(key: bytes("/other"), value: bytes("o"), lease: 0, parents: []),
        ])
        XCTAssertEqual(applied.effects.map { text($0.key)! }, ["/k", "/other"])
        XCTAssertEqual(a.get("/k"), "last")
        var b = Replica.test(2)
        try b.sync(from: a)
        XCTAssertEqual(b.stateHash(), a.stateHash())
        a.collectGarbage(stableVector: a.vector)
        XCTAssertEqual(a.dag(bytes("/k"))!.versions.count, 1)
    }
}
