import XCTest
import LatticeCore

/// The conflict rules users rely on (docs/consistency.md), one example each.
final class ConflictRuleTests: XCTestCase {
    let pod = "/registry/pods/default/web"

    /// Two replicas that both saw `initial`, then each write concurrently.
    private func fork(_ initial: String, clockA: TestClock = TestClock(), clockB: TestClock = TestClock())
        throws -> (Replica, Replica) {
        var a = Replica.test(1, clock: clockA)
        var b = Replica.test(2, clock: clockB)
        a.put(pod, initial)
        try b.sync(from: a)
        return (a, b)
    }

    private func exchange(_ a: inout Replica, _ b: inout Replica) throws {
        let fromA = a.changes(since: b.vector)!
        let fromB = b.changes(since: a.vector)!
        for c in fromB { _ = try a.apply(remote: c) }
        for c in fromA { _ = try b.apply(remote: c) }
        XCTAssertEqual(a.stateHash(), b.stateHash())
    }

    func testConcurrentLabelAdditionsOnTwoReplicasBothSurvive() throws {
        var (a, b) = try fork(#"{"metadata":{"name":"web","labels":{"app":"web"}},"spec":{"replicas":1}}"#)
        a.put(pod, #"{"metadata":{"name":"web","labels":{"app":"web","tier":"frontend"}},"spec":{"replicas":1}}"#)
        b.put(pod, #"{"metadata":{"name":"web","labels":{"app":"web","zone":"eu-1"}},"spec":{"replicas":1}}"#)
        try exchange(&a, &b)
        let expected = canonical(#"{"metadata":{"name":"web","labels":{"app":"web","tier":"frontend","zone":"eu-1"}},"spec":{"replicas":1}}"#)
        XCTAssertEqual(a.get(pod), expected)
        XCTAssertEqual(b.get(pod), expected)
    }

    func testSpecChangeAndStatusChangeBothSurvive() throws {
        var (a, b) = try fork(#"{"metadata":{"name":"web"},"spec":{"image":"nginx:1.25"},"status":{"phase":"Pending"}}"#)
        a.put(pod, #"{"metadata":{"name":"web"},"spec":{"image":"nginx:1.27"},"status":{"phase":"Pending"}}"#)
        b.put(pod, #"{"metadata":{"name":"web"},"spec":{"image":"nginx:1.25"},"status":{"phase":"Running","podIP":"10.0.0.7"}}"#)
        try exchange(&a, &b)
        XCTAssertEqual(a.get(pod), canonical(#"{"metadata":{"name":"web"},"spec":{"image":"nginx:1.27"},"status":{"phase":"Running","podIP":"10.0.0.7"}}"#))
    }

    func testPutWinsOverConcurrentDelete() throws {
        let clockA = TestClock(), clockB = TestClock()
        var (a, b) = try fork(#"{"v":1}"#, clockA: clockA, clockB: clockB)
        clockA.now += 1000 // the delete is even the later write by the clock: add-wins regardless
        a.delete(pod)
        b.put(pod, #"{"v": 2}"#)
        let effects = try a.apply(remote: b.changes(since: a.vector)!.last!)
        XCTAssertEqual(effects.first?.effects.first?.outcome, .put(VisibleValue(value: bytes(#"{"v": 2}"#), lease: 0)))
        try exchange(&a, &b)
        XCTAssertEqual(a.get(pod), #"{"v": 2}"#, "a single live head shows the exact bytes written")
        XCTAssertEqual(b.get(pod), #"{"v": 2}"#)
    }

    func testConcurrentCreatesOfOneNameAreMerged() throws {
        let clockA = TestClock(), clockB = TestClock()
        clockB.now += 5 // b's create is the later one: it wins the conflicting field
        var a = Replica.test(1, clock: clockA)
        var b = Replica.test(2, clock: clockB)
        a.put(pod, #"{"metadata":{"name":"web","labels":{"app":"web"}},"spec":{"replicas":1}}"#)
        b.put(pod, #"{"metadata":{"name":"web","annotations":{"owner":"team-b"}},"spec":{"replicas":3}}"#)
        try exchange(&a, &b)
        XCTAssertEqual(a.get(pod), canonical(
            #"{"metadata":{"name":"web","labels":{"app":"web"},"annotations":{"owner":"team-b"}},"spec":{"replicas":3}}"#))
    }

    func testConflictingFieldWithEqualHLCGoesToGreaterMemberID() throws {
        // Fresh replicas on the same wall clock write concurrently: equal HLCs, so the greater
        // member id (2) wins the conflicting field.
        var a = Replica.test(1)
        var b = Replica.test(2)
        a.put(pod, #"{"spec":{"replicas":5},"a":1}"#)
        b.put(pod, #"{"spec":{"replicas":7},"b":1}"#)
        XCTAssertEqual(a.changes(since: VersionVector())!.last!.hlc, b.changes(since: VersionVector())!.last!.hlc)
        try exchange(&a, &b)
        XCTAssertEqual(a.get(pod), #"{"a":1,"b":1,"spec":{"replicas":7}}"#)
    }

    func testNonJSONConflictGoesToGreaterHLC() throws {
        let clockA = TestClock(), clockB = TestClock()
        var (a, b) = try fork("k8s\0\u{1}v1", clockA: clockA, clockB: clockB)
        clockA.now += 10
        a.put(pod, "k8s\0\u{1}from-a", lease: 0)
        b.put(pod, "k8s\0\u{1}from-b")
        try exchange(&a, &b)
        XCTAssertEqual(a.get(pod), "k8s\0\u{1}from-a")
        XCTAssertEqual(b.get(pod), "k8s\0\u{1}from-a")
    }

    func testNonJSONConflictWithEqualHLCGoesToGreaterMemberID() throws {
        var a = Replica.test(7)
        var b = Replica.test(3)
        a.put(pod, "k8s\0\u{1}from-7")
        b.put(pod, "k8s\0\u{1}from-3")
        XCTAssertEqual(a.changes(since: VersionVector())!.last!.hlc, b.changes(since: VersionVector())!.last!.hlc)
        try exchange(&a, &b)
        XCTAssertEqual(a.get(pod), "k8s\0\u{1}from-7")
        XCTAssertEqual(b.get(pod), "k8s\0\u{1}from-7")
    }

    func testJSONAgainstNonJSONIsLastWriterWins() throws {
        let clockA = TestClock(), clockB = TestClock()
        var (a, b) = try fork(#"{"a":1}"#, clockA: clockA, clockB: clockB)
        clockB.now += 1
        a.put(pod, #"{"a":1,"b":2}"#)
        b.put(pod, "[1,2,3]")
        try exchange(&a, &b)
        XCTAssertEqual(a.get(pod), "[1,2,3]")
    }

    func testLWWModeNeverMergesFields() throws {
        let clockA = TestClock(), clockB = TestClock()
        var a = Replica.test(1, clock: clockA, mode: .lww)
        var b = Replica.test(2, clock: clockB, mode: .lww)
        a.put(pod, #"{"a":1}"#)
        try b.sync(from: a)
        clockA.now += 1
        a.put(pod, #"{"a":1, "x":1}"#)
        b.put(pod, #"{"a":1,"y":1}"#)
        try exchange(&a, &b)
        XCTAssertEqual(a.get(pod), #"{"a":1, "x":1}"#)
    }

    func testSequentialWritesOfOneReplicaReturnExactBytes() throws {
        var a = Replica.test(1)
        var b = Replica.test(2)
        let values = [#"{"b":1, "a":2}"#, "{ \"a\" : 1.0 ,\"b\":[1e3, -0] }\n", #"{"a":1,"a":2}"#, "not json", "k8s\0\u{2}proto"]
        for v in values {
            a.put(pod, v)
            XCTAssertEqual(a.get(pod), v)
            try b.sync(from: a)
            XCTAssertEqual(b.get(pod), v, "a remote replica shows the same bytes")
        }
    }

    func testLocalWriteAfterAMergeShowsExactBytesAgain() throws {
        var (a, b) = try fork(#"{"x":0}"#)
        a.put(pod, #"{"x":0,"a":1}"#)
        b.put(pod, #"{"x":0,"b":1}"#)
        try exchange(&a, &b)
        XCTAssertEqual(a.get(pod), #"{"a":1,"b":1,"x":0}"#, "merged: canonical")
        a.put(pod, #"{ "x" : 9 }"#)
        XCTAssertEqual(a.get(pod), #"{ "x" : 9 }"#, "the local write supersedes both heads")
        try b.sync(from: a)
        XCTAssertEqual(b.get(pod), #"{ "x" : 9 }"#)
        XCTAssertEqual(b.dag(bytes(pod))!.heads.count, 1)
    }

    /// Both replicas merge the same two concurrent versions x and y, then write concurrently
    /// again: the new heads have two latest common ancestors, and their base is the merge of
    /// both (what both writers saw), not either one alone.
    func testCrissCrossMergeUsesTheMergeOfBothCommonAncestorsAsBase() throws {
        let clockA = TestClock(), clockB = TestClock()
        var (a, b) = try fork(#"{"n":0}"#, clockA: clockA, clockB: clockB)
        a.put(pod, #"{"n":0,"a":1}"#)
        b.put(pod, #"{"n":0,"b":1}"#)
        try exchange(&a, &b)
        XCTAssertEqual(a.get(pod), #"{"a":1,"b":1,"n":0}"#)
        clockA.now += 100 // a's next write is the later one
        a.put(pod, #"{"a":1,"b":1,"n":1}"#)
        b.put(pod, #"{"a":1,"b":2,"n":0}"#)
        try exchange(&a, &b)
        XCTAssertEqual(a.dag(bytes(pod))!.heads.count, 2)
        // With x = {"n":0,"a":1} alone as the base, b=1 would look like a's change and win.
        XCTAssertEqual(a.get(pod), #"{"a":1,"b":2,"n":1}"#)
    }

    func testRemoteEffectsReportVisibleOutcomes() throws {
        let clockA = TestClock(), clockB = TestClock()
        var (a, b) = try fork("k8s\0old", clockA: clockA, clockB: clockB)
        clockB.now += 10
        b.put(pod, "k8s\0newer")
        a.put(pod, "k8s\0older") // concurrent and earlier: loses LWW
        let fromA = try b.apply(remote: a.changes(since: b.vector)!.last!)
        XCTAssertEqual(fromA.first?.effects.first?.outcome, .unchanged, "b keeps showing its own, later value")
        XCTAssertTrue(fromA.first!.visibleChanges.isEmpty)
        let fromB = try a.apply(remote: b.changes(since: a.vector)!.last!)
        XCTAssertEqual(fromB.first?.effects.first?.outcome, .put(VisibleValue(value: bytes("k8s\0newer"), lease: 0)))
        b.delete(pod)
        let deletion = try a.apply(remote: b.changes(since: a.vector)!.last!)
        XCTAssertEqual(deletion.first?.effects.first?.outcome, .deleted)
    }
}

/// The lease of a value made of several heads: a key one side keeps without a lease is not
/// deleted with a lease the other side attached (over-replication), whichever side wins.
final class MergedLeaseTests: XCTestCase {
    func testAMergedValueKeepsNoLeaseIfAnySideHadNone() throws {
        for leasedSideWins in [false, true] {
            var a = Replica.test(1)
            var b = Replica.test(2)
            a.put("/obj", #"{"x":0,"y":0}"#)
            try b.sync(from: a)
            // The side whose change has the greater HLC wins last-writer-wins.
            if leasedSideWins {
                a.put("/obj", #"{"x":1,"y":0}"#)
                b.put("/obj", #"{"x":0,"y":1}"#, lease: 7)
            } else {
                a.put("/obj", #"{"x":1,"y":0}"#, lease: 7)
                b.put("/obj", #"{"x":0,"y":1}"#)
            }
            try a.sync(from: b)
            try b.sync(from: a)
            XCTAssertEqual(a.get("/obj"), #"{"x":1,"y":1}"#)
            XCTAssertEqual(a.visible(bytes("/obj"))?.lease, 0, "kept without a lease (leased side wins: \(leasedSideWins))")
            XCTAssertEqual(b.visible(bytes("/obj")), a.visible(bytes("/obj")))
        }
    }

    func testAMergedValueOfLeasedHeadsKeepsTheWinnersLease() throws {
        var a = Replica.test(1)
        var b = Replica.test(2)
        a.put("/obj", #"{"x":0,"y":0}"#, lease: 5)
        try b.sync(from: a)
        a.put("/obj", #"{"x":1,"y":0}"#, lease: 5)
        b.put("/obj", #"{"x":0,"y":1}"#, lease: 9)
        try a.sync(from: b)
        // Same clock on both: the HLCs tie and the greater member id (b) wins.
        XCTAssertEqual(a.visible(bytes("/obj"))?.lease, 9)
        XCTAssertEqual(a.get("/obj"), #"{"x":1,"y":1}"#)
    }

    func testANonJSONValueKeepsTheWinnersWholeWrite() throws {
        var a = Replica.test(1)
        var b = Replica.test(2)
        a.put("/bin", "k8s\0base")
        try b.sync(from: a)
        a.put("/bin", "k8s\0from-a")
        b.put("/bin", "k8s\0from-b", lease: 7)
        try a.sync(from: b)
        // Same clock on both: the HLCs tie and the greater member id (b) wins, value and lease.
        XCTAssertEqual(a.visible(bytes("/bin")), VisibleValue(value: bytes("k8s\0from-b"), lease: 7))
    }
}

/// What concurrent writes overwrote is counted and recorded (key, winning and losing change
/// ids), so an operator can see it in the log and in `lattice cluster-status`.
final class ConflictReportTests: XCTestCase {
    func testResolutionsAreCountedAndWhatWasOverwrittenIsRecorded() throws {
        let clockA = TestClock(), clockB = TestClock(1_700_000_000_009)
        var a = Replica.test(1, clock: clockA)
        var b = Replica.test(2, clock: clockB)
        // Plain values: last writer wins (b's clock is later).
        a.put("/plain", "from-a")
        b.put("/plain", "from-b")
        try a.sync(from: b)
        XCTAssertEqual(a.get("/plain"), "from-b")
        XCTAssertEqual(a.mergeCounters.lastWriterWins, 1)
        var drained = a.drainConflicts()
        XCTAssertEqual(drained.records.map { text($0.key) }, ["/plain"])
        XCTAssertEqual(drained.records.first?.resolution.kind, .lastWriterWins)
        XCTAssertEqual(drained.records.first?.resolution.winner, b.log.last!.id)
        XCTAssertEqual(drained.records.first?.resolution.others, [a.log.first { $0.id.member == 1 }!.id])
        XCTAssertTrue(a.drainConflicts().records.isEmpty, "drained once")

        // JSON: a clean merge is counted but overwrote nothing; a field both changed is recorded.
        try b.sync(from: a)
        a.put("/obj", #"{"x":1,"y":1}"#)
        try b.sync(from: a)
        a.put("/obj", #"{"x":2,"y":1}"#)
        b.put("/obj", #"{"x":1,"y":3}"#)
        try a.sync(from: b)
        XCTAssertEqual(a.mergeCounters.merges, 1)
        XCTAssertEqual(a.mergeCounters.mergeConflicts, 0)
        XCTAssertTrue(a.drainConflicts().records.isEmpty, "nothing was overwritten")
        try b.sync(from: a)
        a.put("/obj", #"{"x":5,"y":3}"#)
        b.put("/obj", #"{"x":7,"y":3}"#)
        try a.sync(from: b)
        XCTAssertEqual(canonical(a.get("/obj")!), #"{"x":7,"y":3}"#)
        XCTAssertEqual(a.mergeCounters.mergeConflicts, 1)
        drained = a.drainConflicts()
        XCTAssertEqual(drained.records.first?.resolution.kind, .merged(conflicts: 1))
        XCTAssertEqual(drained.dropped, 0)
    }
}
