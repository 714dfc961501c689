import LatticeTestSupport
import XCTest
import LatticeCore

final class GarbageCollectionTests: XCTestCase {
    func testSingleReplicaKeepsExactlyOneVersionPerLiveKeyAndNoTombstones() {
        var r = Replica.test(1)
        var rng = SplitMix64(seed: 42)
        var expected: [String: String] = [:]
        for i in 0..<500 {
            let key = "/registry/k\(rng.int(0...40))"
            if rng.chance(0.3) {
                r.delete(key)
                expected[key] = nil
            } else {
                let value = #"{"n": \#(i)}"#
                r.put(key, value)
                expected[key] = value
            }
            if rng.chance(0.1) { r.collectGarbage(stableVector: r.vector) }
        }
        let stats = r.collectGarbage(stableVector: r.vector)
        XCTAssertGreaterThan(stats.droppedVersions, 0)
        XCTAssertEqual(r.storedKeyCount, expected.count)
        XCTAssertEqual(r.storedVersionCount, expected.count, "one version per live key")
        XCTAssertEqual(r.storedTombstoneCount, 0)
        XCTAssertEqual(r.log.count, 0)
        for entry in r.visibleKeyspace() {
            XCTAssertEqual(text(entry.value.value), expected[text(entry.key)!])
            XCTAssertEqual(r.dag(entry.key)!.versions[0].parents, [], "no edges to forgotten versions")
        }
        // Collecting again finds nothing.
        XCTAssertEqual(r.collectGarbage(stableVector: r.vector), GarbageCollectionStats())
    }

    func testNothingIsCollectedBeforeItIsStable() throws {
        var a = Replica.test(1)
        var b = Replica.test(2)
        a.put("/k", "1")
        a.put("/k", "2")
        try b.sync(from: a)
        // b has not reported back: nothing a holds is stable yet.
        let stable = Replica.stableVector(local: a.vector, localMember: 1, peers: [2: VersionVector()])
        let stats = a.collectGarbage(stableVector: stable)
        XCTAssertEqual([stats.droppedVersions, stats.removedKeys, stats.droppedLogEntries], [0, 0, 0])
        XCTAssertEqual(a.dag(bytes("/k"))!.versions.count, 2)
        // Once b's report covers both changes, the old version goes.
        let acknowledged = Replica.stableVector(local: a.vector, localMember: 1, peers: [2: b.vector])
        XCTAssertEqual(a.collectGarbage(stableVector: acknowledged).droppedVersions, 1)
        XCTAssertEqual(a.dag(bytes("/k"))!.versions.count, 1)
    }

    func testAReportIsUnusableUntilThePeersOwnChangesArrived() throws {
        var a = Replica.test(1)
        var b = Replica.test(2)
        a.put("/k", "1")
        try b.sync(from: a)
        b.put("/k", "b's, concurrent with anything a writes next")
        // b reports a vector including its own change, which a has not received: a must not treat
        // anything as stable, or it could drop the base b's change needs.
        XCTAssertEqual(Replica.stableVector(local: a.vector, localMember: 1, peers: [2: b.vector]), VersionVector())
    }

    func testMergeBaseOfConcurrentHeadsIsKeptWhileTheyAreConcurrent() throws {
        var a = Replica.test(1)
        var b = Replica.test(2)
        a.put("/k", #"{"base":1}"#)
        a.put("/k", #"{"base":2}"#)
        try b.sync(from: a)
        a.put("/k", #"{"base":2,"a":1}"#)
        b.put("/k", #"{"base":2,"b":1}"#)
        try a.sync(from: b)
        try b.sync(from: a)
        let merged = a.get("/k")
        XCTAssertEqual(merged, #"{"a":1,"b":1,"base":2}"#)
        // Everything is stable: the first version goes, the base of the two heads stays.
        a.collectGarbage(stableVector: a.vector)
        XCTAssertEqual(a.dag(bytes("/k"))!.versions.count, 3)
        XCTAssertEqual(a.get("/k"), merged)
        // A write that supersedes both heads: nothing goes until b has it too, then one version stays.
        a.put("/k", #"{"done":true}"#)
        a.collectGarbage(stableVector: Replica.stableVector(local: a.vector, localMember: 1, peers: [2: b.vector]))
        XCTAssertEqual(a.dag(bytes("/k"))!.versions.count, 4, "b has not acknowledged the new write")
        try b.sync(from: a)
        a.collectGarbage(stableVector: Replica.stableVector(local: a.vector, localMember: 1, peers: [2: b.vector]))
        XCTAssertEqual(a.dag(bytes("/k"))!.versions.count, 1)
    }

    func testATombstoneWithALiveConcurrentSiblingIsKept() throws {
        var a = Replica.test(1)
        var b = Replica.test(2)
        a.put("/k", "v1")
        try b.sync(from: a)
        a.delete("/k")
        b.put("/k", "v2")
        try a.sync(from: b)
        try b.sync(from: a)
        a.collectGarbage(stableVector: a.vector)
        XCTAssertEqual(a.get("/k"), "v2")
        XCTAssertEqual(a.storedTombstoneCount, 1, "the tombstone is a head beside the live version")
        b.delete("/k")
        try a.sync(from: b)
        a.collectGarbage(stableVector: Replica.stableVector(local: a.vector, localMember: 1, peers: [2: b.vector]))
        XCTAssertEqual(a.storedKeyCount, 0, "all heads are stable tombstones: the key is forgotten")
    }

    func testCollectedAndUncollectedReplicasAgreeOnLaterMerges() throws {
        var a = Replica.test(1)
        var b = Replica.test(2)
        var c = Replica.test(3)
        for v in 0..<5 { a.put("/k", #"{"v":\#(v)}"#) }
        try b.sync(from: a)
        try c.sync(from: a)
        let stable = a.vector // all three hold a's five changes and made none
        a.collectGarbage(stableVector: stable)
        b.collectGarbage(stableVector: stable)
        b.put("/k", #"{"v":4,"b":true}"#)
        c.put("/k", #"{"v":4,"c":true}"#)
        for _ in 0..<2 {
            try a.sync(from: b); try a.sync(from: c)
            try b.sync(from: a); try c.sync(from: a)
        }
        XCTAssertEqual(a.get("/k"), #"{"b":true,"c":true,"v":4}"#)
        XCTAssertEqual(a.stateHash(), b.stateHash())
        XCTAssertEqual(a.stateHash(), c.stateHash())
    }

    /// Two members keep writing one key concurrently on top of the same merged pair: every round
    /// nests the merge base one level deeper ("criss-cross ladder"). Merges stay exact within
    /// `maxMergeBaseDepth`, stay bounded beyond it, and a replica that collected garbage and one
    /// that received everything late in reverse order agree.
    func testCrissCrossLadderStaysBoundedAndConvergent() throws {
        var a = Replica.test(1)
        var b = Replica.test(2)
        var all: [Change] = []
        a.put("/k", #"{"a":0,"b":0}"#)
        all += a.log
        try b.sync(from: a)
        for round in 1...100 {
            var docA = JSONValue.parseObject(a.visible(bytes("/k"))!.value)!
            docA[bytes("a")] = .number(literal: bytes(String(round)))
            var docB = JSONValue.parseObject(b.visible(bytes("/k"))!.value)!
            docB[bytes("b")] = .number(literal: bytes(String(round)))
            all.append(a.makeChange([.put(key: bytes("/k"), value: JSONValue.object(docA).canonicalBytes(), lease: 0, parents: [])]).change)
            all.append(b.makeChange([.put(key: bytes("/k"), value: JSONValue.object(docB).canonicalBytes(), lease: 0, parents: [])]).change)
            try a.sync(from: b)
            try b.sync(from: a)
            XCTAssertEqual(a.get("/k"), b.get("/k"))
            if round < KeyVersionDAG.maxMergeBaseDepth {
                XCTAssertEqual(a.get("/k"), #"{"a":\#(round),"b":\#(round)}"#, "round \(round)")
            }
            if round % 7 == 0 {
                a.collectGarbage(stableVector: Replica.stableVector(local: a.vector, localMember: 1, peers: [2: b.vector]))
            }
        }
        XCTAssertEqual(a.dag(bytes("/k"))!.heads.count, 2)
        var late = Replica.test(3)
        for change in all.reversed() { _ = try late.apply(remote: change) }
        XCTAssertEqual(late.pendingCount, 0)
        XCTAssertEqual(late.get("/k"), a.get("/k"))
        XCTAssertEqual(late.stateHash(), b.stateHash())
    }

    /// A hot key written at two members that exchange with a lag, while a third is cut off and
    /// writes alone as long: thousands of versions with many diamonds. One collection's work
    /// stays linear in the versions held (a descent check used to walk the whole history, which
    /// made a collection quadratic and held the writer for minutes after a long partition); it
    /// never changes what is visible; once everything is stable the key collapses to one version.
    func testCollectingALongConcurrentHistoryTakesLinearWork() throws {
        var a = Replica.test(1)
        var b = Replica.test(2)
        var c = Replica.test(3)
        for i in 0..<1200 {
            a.put("/hot", "a\(i)")
            b.put("/hot", "b\(i)")
            if i % 5 == 4 {
                try a.sync(from: b)
                try b.sync(from: a)
            }
            c.put("/hot", "c\(i)")
        }
        // Healed: everyone holds the whole history; a and b go on writing concurrently, so the
        // key's heads are not stable and the general collection runs.
        try a.sync(from: c)
        try b.sync(from: a)
        try c.sync(from: a)
        let reports: [UInt64: VersionVector] = [2: b.vector, 3: c.vector]
        a.put("/hot", "a-after")
        b.put("/hot", "b-after")
        try a.sync(from: b)
        let held = a.dag(bytes("/hot"))!.versions.count
        XCTAssertGreaterThan(held, 3_000)
        let visible = a.get("/hot")
        let stable = Replica.stableVector(local: a.vector, localMember: 1, peers: reports)
        let stats = a.collectGarbage(stableVector: stable)
        XCTAssertLessThanOrEqual(stats.visitedVersions, 20 * held, "linear in the versions held, not quadratic")
        XCTAssertGreaterThan(stats.droppedVersions, 0)
        XCTAssertEqual(a.get("/hot"), visible)

        try b.sync(from: a)
        try c.sync(from: a)
        a.put("/hot", "last")
        try b.sync(from: a)
        try c.sync(from: a)
        for _ in 0..<3 {
            a.collectGarbage(stableVector: Replica.stableVector(local: a.vector, localMember: 1, peers: [2: b.vector, 3: c.vector]))
        }
        XCTAssertEqual(a.dag(bytes("/hot"))!.versions.count, 1, "everything stable: one version left")
        XCTAssertEqual(a.get("/hot"), "last")
    }

    /// While a member is away its report does not move, so nothing can become stable: a key
    /// written all that time must not be rescanned by every collection (it was, once per batch,
    /// which made a partition quadratic on the writer for a hot key).
    func testNothingIsVisitedWhileTheStablePointStandsStill() {
        var a = Replica.test(1)
        a.setPeerMembers([2])
        XCTAssertTrue(a.recordReport(from: 2, vector: a.vector))
        var visited = 0
        for i in 0..<300 {
            a.put("/hot", "v\(i)")
            visited += a.collectGarbage(stableVector: a.vector).visitedVersions
        }
        XCTAssertEqual(visited, 0, "no key is visited while the stable point stands still")
        XCTAssertEqual(a.dag(bytes("/hot"))!.versions.count, 300, "nothing is stable while member 2 is away")

        // Member 2 comes back and reports everything: the key collapses.
        XCTAssertTrue(a.recordReport(from: 2, vector: a.vector))
        let stats = a.collectGarbage(stableVector: a.vector)
        XCTAssertEqual(stats.droppedVersions, 299)
        XCTAssertEqual(a.get("/hot"), "v299")
    }

    /// Keys that stay collectable because they hold a version a lagging member has not reported
    /// (member 3 here) must not be revisited by every collection: only the keys one of whose
    /// versions just became stable are. Each collection used to visit every collectable key, so
    /// a long partition of one member made each batch's collection O(keys touched since).
    func testACollectionVisitsOnlyKeysWhoseVersionsJustBecameStable() throws {
        var a = Replica.test(1)
        var b = Replica.test(2)
        a.setPeerMembers([2, 3])
        let keys = 400
        for i in 0..<keys {
            a.put("/k\(i)", "a")
            b.put("/k\(i)", "b, concurrent")
        }
        try a.sync(from: b)
        // Member 3 holds only a's writes: b's versions are not stable, every /k key keeps two heads.
        let lagging = VersionVector([1: a.vector[1]])
        XCTAssertTrue(a.recordReport(from: 3, vector: lagging))
        var visited = 0
        for j in 0..<keys {
            a.put("/x\(j)", "1")
            a.put("/x\(j)", "2")
            XCTAssertTrue(a.recordReport(from: 2, vector: a.vector))
            XCTAssertTrue(a.recordReport(from: 3, vector: VersionVector([1: a.vector[1]])))
            let stats = a.collectGarbage(stableVector: a.vector)
            visited += stats.visitedKeys
            XCTAssertEqual(a.dag(bytes("/x\(j)"))!.versions.count, 1, "the overwritten version went")
        }
        XCTAssertLessThanOrEqual(visited, 4 * keys, "each key visited about once, not once per collection")
        XCTAssertEqual(a.dag(bytes("/k0"))!.heads.count, 2, "b's version is kept while member 3 lacks it")

        // Member 3 catches up: the /k keys' other versions become stable and they are visited.
        XCTAssertTrue(a.recordReport(from: 3, vector: a.vector))
        let stats = a.collectGarbage(stableVector: a.vector)
        XCTAssertEqual(stats.visitedKeys, keys)
        XCTAssertEqual(a.dag(bytes("/k0"))!.heads.count, 2, "still two concurrent heads: both are kept")
    }
}
