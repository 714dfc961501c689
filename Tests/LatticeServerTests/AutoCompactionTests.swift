import EtcdAPI
import Logging
import XCTest
@testable import LatticeServer

/// `--auto-compaction-mode periodic|revision` with `--auto-compaction-retention`.
final class AutoCompactionTests: XCTestCase {
    private var h: ServerHarness!

    override func setUp() async throws {
        h = ServerHarness()
        try await h.start()
    }

    override func tearDown() async throws { try await h.stop() }

    private func waitForCompaction(to revision: Int64) async throws {
        let deadline = ContinuousClock.now + .seconds(5)
        while h.server.store.compactRevision != revision {
            if ContinuousClock.now > deadline { return XCTFail("not compacted to \(revision): \(h.server.store.compactRevision)") }
            try await Task.sleep(for: .milliseconds(5))
        }
    }

    func testPeriodicKeepsTheRetentionWindowOfHistory() async throws {
        let compactor = AutoCompactor(store: h.server.store, mode: .periodic(retentionMilliseconds: 3_600_000), logger: Logger(label: "test"))
        for i in 0..<5 { try await h.put("p", "\(i)") }         // revision 6
        XCTAssertNil(compactor.tick(), "nothing is an hour old yet")
        h.clock.advance(byMilliseconds: 1_800_000)
        for i in 0..<5 { try await h.put("p", "\(i)") }         // revision 11
        XCTAssertNil(compactor.tick())
        h.clock.advance(byMilliseconds: 1_800_000)
        XCTAssertEqual(compactor.tick(), 6, "the revision current an hour ago")
        try await waitForCompaction(to: 6)
        h.clock.advance(byMilliseconds: 1_800_000)
        XCTAssertEqual(compactor.tick(), 11)
        try await waitForCompaction(to: 11)
    }

    func testRevisionModeKeepsTheLastRevisions() async throws {
        let compactor = AutoCompactor(store: h.server.store, mode: .revision(revisions: 5), logger: Logger(label: "test"))
        for i in 0..<20 { try await h.put("r", "\(i)") }        // revision 21
        XCTAssertEqual(compactor.tick(), 16)
        try await waitForCompaction(to: 16)
        XCTAssertNil(compactor.tick(), "no new revisions, nothing to do")
    }
}
