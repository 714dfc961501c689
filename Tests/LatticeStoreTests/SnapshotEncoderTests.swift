import XCTest
import EtcdAPI
import LatticeCore
import LatticeStore

/// Maintenance/Snapshot's stream: produced chunk by chunk from one captured revision, framed the
/// way etcd clients check it (payload, padding to 512 bytes, SHA-256 of everything before).
final class SnapshotEncoderTests: XCTestCase {
    func testChunksFrameTheKeyspaceAtTheCapturedRevisionAndEndWithItsChecksum() throws {
        let store = makeStore()
        // Values larger than a chunk, and many small ones.
        try store.put("big", String(repeating: "x", count: 100_000))
        for i in 0..<500 { try store.put("k\(i)", "v\(i)") }
        let capturedRevision = store.currentRevision
        let encoder = store.snapshotEncoder()
        // Writes after the capture are not in the stream.
        try store.put("later", "v")
        _ = try store.deleteRange(DeleteRangeRequest(key: b("k0")))

        var stream: [UInt8] = []
        var chunks = 0
        while let chunk = encoder.nextChunk(maxBytes: 4096) {
            XCTAssertLessThanOrEqual(chunk.count, 4096)
            stream += chunk
            chunks += 1
        }
        XCTAssertNil(encoder.nextChunk(maxBytes: 4096))
        XCTAssertEqual(stream.count, encoder.totalBytes)
        XCTAssertGreaterThan(chunks, 25)

        XCTAssertEqual(Array(stream[0..<8]), b("LATTICE1"))
        var length = 0
        for i in 0..<8 { length |= Int(stream[8 + i]) << (8 * i) }
        let body = stream.count - 32
        XCTAssertEqual(body % 512, 0)
        XCTAssertEqual(Array(stream[body...]), SHA256.hash(Array(stream[..<body])))
        XCTAssertTrue(stream[(16 + length)..<body].allSatisfy { $0 == 0 })

        let response = try RangeResponse(protoBytes: Array(stream[16..<(16 + length)]))
        XCTAssertEqual(response.header?.revision, capturedRevision)
        XCTAssertEqual(response.count, 501)
        XCTAssertEqual(response.kvs.count, 501)
        XCTAssertEqual(response.kvs.first { $0.key == b("big") }?.value.count, 100_000)
        XCTAssertNotNil(response.kvs.first { $0.key == b("k0") })
        XCTAssertNil(response.kvs.first { $0.key == b("later") })
        // The same bytes as the whole stream at once, taken at the same revision.
        let again = makeStore()
        try again.put("a", "1")
        XCTAssertEqual(again.snapshotBytes().count, again.snapshotEncoder().totalBytes)
    }

    func testAnEmptyKeyspaceIsStillAFramedStream() throws {
        let store = makeStore()
        let stream = store.snapshotBytes()
        XCTAssertEqual(stream.count, 512 + 32)
        XCTAssertEqual(Array(stream[512...]), SHA256.hash(Array(stream[..<512])))
    }
}
