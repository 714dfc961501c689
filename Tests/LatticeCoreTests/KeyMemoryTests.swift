import XCTest
@testable import LatticeCore

/// What a key costs the replica. At a million keys every word per key is about 8 MiB: a key's
/// DAG is its versions (one of them inline) and one reference that is set only while it has
/// several heads (the heads, the value decided among them and the merge cache live behind it).
final class KeyMemoryTests: XCTestCase {
    func testAKeysDAGIsExactlyOneVersion() {
        // Versions and the several-heads state share one enum: no word of its own for the
        // rare state (8 bytes a key, about 10 MiB at a million keys).
        XCTAssertEqual(MemoryLayout<KeyVersionDAG>.size, MemoryLayout<KeyVersion>.size)
    }

    func testSeveralHeadsAreHeldUntilAWriteSupersedesThem() throws {
        var a = Replica.test(1)
        var b = Replica.test(2)
        a.put("/k", #"{"a":1}"#)
        try b.sync(from: a)
        a.put("/k", #"{"a":1,"x":1}"#)
        b.put("/k", #"{"a":1,"y":2}"#)
        try a.sync(from: b)
        let concurrent = try XCTUnwrap(a.dag(bytes("/k")))
        XCTAssertEqual(concurrent.heads, [Dot(member: 1, seq: 2), Dot(member: 2, seq: 1)])
        XCTAssertEqual(concurrent.visible?.value, bytes(#"{"a":1,"x":1,"y":2}"#))
        // Decoding rebuilds the same heads and value.
        let restored = try Replica(decodingState: a.encodeState(), wallClock: TestClock())
        XCTAssertEqual(restored.dag(bytes("/k"))?.heads, concurrent.heads)
        XCTAssertEqual(restored.dag(bytes("/k"))?.visible, concurrent.visible)
        // A write that saw both heads is the only head again: the last version.
        a.put("/k", "plain")
        let single = try XCTUnwrap(a.dag(bytes("/k")))
        XCTAssertEqual(single.heads, [single.versions.last!.dot])
        XCTAssertEqual(single.visible?.value, bytes("plain"))
        a.delete("/k")
        XCTAssertNil(a.dag(bytes("/k"))?.visible)
        XCTAssertEqual(a.dag(bytes("/k"))?.heads.count, 1)
    }

    /// After garbage collection a key keeps one version: held inline, not in an array buffer.
    func testACollectedKeysVersionIsHeldInline() throws {
        var a = Replica.test(1)
        a.put("/k", "1")
        a.put("/k", "2")
        _ = a.collectGarbage(stableVector: a.vector)
        let dag = try XCTUnwrap(a.dag(bytes("/k")))
        XCTAssertEqual(dag.versions.count, 1)
        guard case .one = dag.versions.storage else { return XCTFail("a single version is held inline") }
    }

    func testADecodedVersionNamingItselfIsRefused() {
        let dot = Dot(member: 1, seq: 1)
        let v = KeyVersion(dot: dot, hlc: .zero, value: [1], lease: 0, parents: [dot])
        XCTAssertNil(KeyVersionDAG(versions: [v], mode: .json))
        XCTAssertNotNil(KeyVersionDAG(versions: [KeyVersion(dot: dot, hlc: .zero, value: [1], lease: 0, parents: [Dot(member: 2, seq: 9)])],
                                      mode: .json), "a parent no longer held is fine")
    }
}
