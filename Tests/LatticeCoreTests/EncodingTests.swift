import LatticeTestSupport
import XCTest
import ProtoWire
@testable import LatticeCore

final class ChangeEncodingTests: XCTestCase {
    static let sample = Change(
        id: Dot(member: 0xFEED_FACE_CAFE_BEEF, seq: 42),
        deps: VersionVector([0xFEED_FACE_CAFE_BEEF: 41, 7: 3, 1: 1]),
        hlc: HLC(wallMilliseconds: 1_700_000_000_123, logical: 9),
        ops: [
            .put(key: bytes("/registry/pods/default/web"), value: bytes("k8s\0\u{1}\u{2}"), lease: 0x7A11,
                 parents: [Dot(member: 7, seq: 3), Dot(member: 1, seq: 1)]),
            .put(key: bytes("/empty-value"), value: [], lease: 0, parents: []),
            .delete(key: bytes("/gone"), parents: [Dot(member: 7, seq: 2)]),
            .leaseGrant(id: 0x7A11, ttlSeconds: 60),
            .leaseRevoke(id: -5),
            .leaseCheckpoint(id: 0x7A11, expiresAtMilliseconds: 1_700_000_060_000),
            .memberAdd(Member(id: 99, name: "edge-1", peerURLs: ["https://10.0.0.1:2380", "https://[::1]:2380"],
                              clientURLs: ["https://10.0.0.1:2379"], isLearner: true)),
            .memberUpdate(Member(id: 99, name: "ëdge", peerURLs: [])),
            .memberRemove(id: 98),
            .auth(AuthOp(set: .enabled, to: .enabled(true))),
            .auth(AuthOp(set: .user("ålice"), to: .user(passwordHash: "$2a$10$abc", noPassword: true))),
            .auth(AuthOp(remove: .role("reader"))),
            .auth(AuthOp(set: .userRole(user: "bob", role: "root"))),
            .auth(AuthOp(set: .permission(role: "r", key: bytes("/a\0"), rangeEnd: [0]), to: .permission(.readwrite))),
            .auth(AuthOp(remove: .permission(role: "r", key: bytes("/b"), rangeEnd: []))),
        ])

    func testRoundTripOfEveryOpKind() throws {
        let encoded = Self.sample.protoBytes()
        XCTAssertEqual(try Change(protoBytes: encoded), Self.sample)
        XCTAssertEqual(try Change(protoBytes: encoded).protoBytes(), encoded)
    }

    func testEmptyChangeRoundTrips() throws {
        let change = Change(id: Dot(member: 1, seq: 1), deps: VersionVector(), hlc: .zero, ops: [])
        XCTAssertEqual(try Change(protoBytes: change.protoBytes()), change)
    }

    /// Unknown fields are skipped, but a change carrying an op kind this version does not know
    /// (from a newer version) is refused whole: dropping the op would make this member hold,
    /// and relay, a different change under the same dot.
    func testUnknownFieldsAreSkippedAndOpsOfUnknownKindsRefused() throws {
        let encoded = Change(id: Dot(member: 1, seq: 1), deps: VersionVector(), hlc: .zero, ops: [.leaseRevoke(id: 3)]).protoBytes()
        // An unknown field 99.
        XCTAssertEqual(try Change(protoBytes: encoded + [0x98, 0x06, 0x01]).ops, [.leaseRevoke(id: 3)])
        // An op of a future kind 42 (field 5 = { kind: 42, key: "x" }).
        XCTAssertThrowsError(try Change(protoBytes: encoded + [0x2A, 0x05, 0x08, 0x2A, 0x12, 0x01, 0x78])) { error in
            XCTAssertEqual(error as? ProtoDecodingError, .unsupported("change op of unknown kind 42"))
        }
    }

    func testEveryTruncationDecodesOrThrowsWithoutTrapping() {
        let encoded = Self.sample.protoBytes()
        var errors = 0
        for n in 0..<encoded.count {
            do { _ = try Change(protoBytes: Array(encoded[0..<n])) } catch { errors += 1 }
        }
        // Cuts at field boundaries decode (protobuf cannot tell); cuts inside a field do not.
        XCTAssertGreaterThan(errors, encoded.count / 2)
        XCTAssertThrowsError(try Change(protoBytes: Array(encoded.dropLast())))
    }

    func testRandomDamageNeverTraps() {
        let encoded = Self.sample.protoBytes()
        var rng = SplitMix64(seed: 2024)
        for _ in 0..<20_000 {
            var damaged = encoded
            for _ in 0..<rng.int(1...4) {
                switch rng.int(0...2) {
                case 0: damaged[rng.int(0...(damaged.count - 1))] = UInt8(truncatingIfNeeded: rng.next())
                case 1: damaged.insert(UInt8(truncatingIfNeeded: rng.next()), at: rng.int(0...damaged.count))
                default: if damaged.count > 1 { damaged.remove(at: rng.int(0...(damaged.count - 1))) }
                }
            }
            if let change = try? Change(protoBytes: damaged) {
                // Whatever decodes is either applied or rejected by a replica, never a trap.
                var r = Replica.test(5)
                _ = try? r.apply(remote: change)
            }
        }
    }

    func testInvalidUTF8InAMemberNameIsAnError() {
        // Change { ops: [Op { kind: MEMBER_ADD, name: 0xFF }] }
        let encoded: [UInt8] = [0x2A, 0x05, 0x08, 0x06, 0x4A, 0x01, 0xFF]
        XCTAssertThrowsError(try Change(protoBytes: encoded)) { error in
            XCTAssertEqual(error as? ProtoDecodingError, .invalidUTF8(field: 9))
        }
    }
}

final class ReplicaStateEncodingTests: XCTestCase {
    /// A replica with concurrent heads, a merged value, tombstones, leases, members, a partly
    /// collected log and a buffered change.
    static func busyReplica() throws -> Replica {
        let clockA = TestClock(), clockB = TestClock(1_700_000_000_007)
        var a = Replica.test(1, clock: clockA)
        var b = Replica.test(2, clock: clockB)
        a.makeChange([.leaseGrant(id: 11, ttlSeconds: 30), .memberAdd(Member(id: 1, name: "a", peerURLs: ["http://a:2380"])),
                      .memberPublish(Member(id: 1, name: "site-a", clientURLs: ["http://a:2379"]))])
        a.put("/pod", #"{"metadata":{"labels":{"x":"1"}}}"#, lease: 11)
        a.put("/gone", "soon")
        try b.sync(from: a)
        a.put("/pod", #"{"metadata":{"labels":{"x":"1","a":"2"}}}"#)
        b.put("/pod", #"{"metadata":{"labels":{"x":"1","b":"3"}}}"#)
        b.delete("/gone")
        b.makeChange([.leaseCheckpoint(id: 11, expiresAtMilliseconds: 1_800_000_000_000), .memberRemove(id: 77)])
        try a.sync(from: b)
        // A third member that has a's first changes (so what a collects below is stable for it too).
        var c = Replica.test(3)
        for change in a.changes(since: VersionVector())!.prefix(2) { _ = try c.apply(remote: change) }
        a.collectGarbage(stableVector: Replica.stableVector(local: a.vector, localMember: 1,
                                                            peers: [2: VersionVector([1: 2]), 3: c.vector]))
        XCTAssertGreaterThan(a.logFloor[1], 0)
        // c's second change reaches a before its first: buffered.
        c.put("/c", "1")
        c.put("/c", "2")
        _ = try a.apply(remote: c.changes(since: VersionVector())!.last!)
        XCTAssertEqual(a.pendingCount, 1)
        XCTAssertEqual(a.get("/pod"), #"{"metadata":{"labels":{"a":"2","b":"3","x":"1"}}}"#)
        return a
    }

    /// Found by fuzzing (FuzzReplicaState): a state in the older form, listing a removed member
    /// without its removing change, decoded, but its re-encoding did not — so a data directory
    /// from before removal dots became unreadable after its next snapshot.
    func testAnOlderFormRemovalSurvivesReencoding() throws {
        // member 622591; removed members, older form (field 8): [47].
        let body = Array("LTRS".utf8) + [1] + [0x08, 0xFF, 0xFF, 0x25, 0x40, 0x2F]
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in body { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01b3 }
        let framed = body + (0..<8).map { UInt8(truncatingIfNeeded: h >> UInt64(8 * $0)) }
        let replica = try Replica(decodingState: framed, wallClock: TestClock())
        XCTAssertTrue(replica.isRemoved(47))
        let again = try Replica(decodingState: replica.encodeState(), wallClock: TestClock())
        XCTAssertTrue(again.isRemoved(47))
        XCTAssertEqual(again.encodeState(), replica.encodeState())
    }

    func testRoundTripPreservesEverything() throws {
        let a = try Self.busyReplica()
        let encoded = a.encodeState()
        let restored = try Replica(decodingState: encoded, wallClock: TestClock())
        XCTAssertEqual(restored.encodeState(), encoded)
        XCTAssertEqual(restored.stateHash(), a.stateHash())
        XCTAssertEqual(restored.visibleKeyspace(), a.visibleKeyspace())
        XCTAssertEqual(restored.vector, a.vector)
        XCTAssertEqual(restored.logFloor, a.logFloor)
        XCTAssertEqual(restored.log, a.log)
        XCTAssertEqual(restored.pendingChanges, a.pendingChanges)
        XCTAssertEqual(restored.leases, a.leases)
        XCTAssertEqual(restored.members, a.members)
        XCTAssertEqual(restored.removedMembers, a.removedMembers)
        XCTAssertEqual(restored.members.first?.clientURLs, ["http://a:2379"], "published attributes survive encoding")
        XCTAssertEqual(restored.members.first?.name, "site-a")
        XCTAssertEqual(restored.clock.last, a.clock.last)
        for entry in a.visibleKeyspace() { XCTAssertEqual(restored.dag(entry.key)?.versions, a.dag(entry.key)?.versions) }
    }

    func testRestoredReplicaContinuesItsSequenceAndClock() throws {
        var a = Replica.test(1)
        a.put("/k", "1")
        let last = a.clock.last
        var restored = try Replica(decodingState: a.encodeState(), wallClock: TestClock(0)) // wall clock went back
        let next = restored.put("/k", "2").change
        XCTAssertEqual(next.id, Dot(member: 1, seq: 2))
        XCTAssertGreaterThan(next.hlc, last)
    }

    func testEveryTruncationAndEverySingleByteChangeIsAnError() throws {
        let encoded = try Self.busyReplica().encodeState()
        for n in 0..<encoded.count {
            XCTAssertThrowsError(try Replica(decodingState: Array(encoded[0..<n])), "truncated to \(n)")
        }
        for i in 0..<encoded.count {
            var damaged = encoded
            damaged[i] ^= 0x20
            XCTAssertThrowsError(try Replica(decodingState: damaged), "byte \(i) flipped")
        }
    }

    /// Well-formed payloads with a valid checksum that break invariants are rejected too.
    func testInconsistentStatesAreRejected() throws {
        func wrap(_ message: ReplicaStateMessage) -> [UInt8] {
            var out = Array("LTRS".utf8) + [1] + message.protoBytes()
            let h = ReplicaStateCodec.fnv1a64(out)
            for i in 0..<8 { out.append(UInt8(truncatingIfNeeded: h >> UInt64(8 * i))) }
            return out
        }
        let busy = try Self.busyReplica()
        let good = ReplicaStateMessage(busy, sortedDAGs: busy.sortedDAGs())
        XCTAssertNoThrow(try Replica(decodingState: wrap(good)))

        var zeroMember = good; zeroMember.member = 0
        var notApplied = good; notApplied.vector = VersionVector([1: 1])
        var duplicateKey = good; duplicateKey.keys.append(duplicateKey.keys[0])
        var outOfOrder = good
        let multi = outOfOrder.keys.firstIndex { $0.versions.count > 1 }!
        outOfOrder.keys[multi].versions.reverse()
        var appliedPending = good; appliedPending.pending.append(good.log.last!)
        var emptyKey = good; emptyKey.keys[0].versions = []
        var keysOutOfOrder = good; keysOutOfOrder.keys.swapAt(0, 1)
        for (name, bad) in [("zero member", zeroMember), ("versions not applied", notApplied), ("duplicate key", duplicateKey),
                            ("keys out of order", keysOutOfOrder),
                            ("versions out of causal order", outOfOrder), ("applied change buffered", appliedPending),
                            ("key without versions", emptyKey)] {
            XCTAssertThrowsError(try Replica(decodingState: wrap(bad)), name) { error in
                guard case ReplicaStateDecodingError.inconsistent = error else { return XCTFail("\(name): \(error)") }
            }
        }
        XCTAssertThrowsError(try Replica(decodingState: Array("NOPE".utf8) + [1] + [UInt8](repeating: 0, count: 8))) { error in
            XCTAssertEqual(error as? ReplicaStateDecodingError, .notAReplicaState)
        }
    }
}

/// A JSON object edited at two members through a long partition: when one branch is applied
/// onto the other, every applied version makes a merge, and its merge base (the fork point) is
/// searched for once — not once per version, which walked the whole history each time and made
/// catching up quadratic (3,000 versions a side took 30 s). The result equals a replica that
/// applied the same changes in another order.
final class MergeCatchUpTests: XCTestCase {
    func testCatchingUpALongJSONBranchSearchesTheMergeBaseOnce() throws {
        var a = Replica.test(1)
        var b = Replica.test(2)
        a.put("/obj", #"{"spec":{"r":0},"status":{"n":0}}"#)
        try b.sync(from: a)
        for i in 1...1500 {
            a.put("/obj", #"{"spec":{"r":0},"status":{"n":\#(i),"a":1}}"#)
            b.put("/obj", #"{"spec":{"r":\#(i)},"status":{"n":0}}"#)
        }
        let bChanges = b.log
        try a.sync(from: b)
        XCTAssertEqual(a.dag(bytes("/obj"))!.heads.count, 2)
        XCTAssertEqual(a.dag(bytes("/obj"))!.mergeBaseSearches, 1, "one search for the whole branch")
        XCTAssertEqual(a.get("/obj"), #"{"spec":{"r":1500},"status":{"a":1,"n":1500}}"#, "both sides' edits")

        // The other order: b's branch first, then a's, on a fresh replica.
        var c = Replica.test(3)
        for change in bChanges { _ = try c.apply(remote: change) }
        for change in a.log where !c.vector.contains(change.id) { _ = try c.apply(remote: change) }
        XCTAssertEqual(c.get("/obj"), a.get("/obj"))
        XCTAssertEqual(c.stateHash(), a.stateHash())
    }
}
