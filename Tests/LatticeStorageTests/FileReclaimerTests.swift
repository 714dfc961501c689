import XCTest
@testable import LatticeStorage

final class FileReclaimerTests: XCTestCase {
    private var directory = ""

    override func setUpWithError() throws {
        directory = NSTemporaryDirectory() + "reclaimer-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(atPath: directory)
    }

    private func makeFile(_ name: String, bytes: Int) throws -> String {
        let path = directory + "/" + name
        XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: Data(repeating: 7, count: bytes)))
        return path
    }

    /// A large file's name is gone when `remove` returns; its blocks are freed in steps of at
    /// most `stepBytes` (each its own small journal commit), all of them.
    func testALargeFileGoesAtOnceAndItsBlocksInBoundedSteps() throws {
        let size = 3 * FileReclaimer.stepBytes + 12_345
        let path = try makeFile("big.snap", bytes: size)
        let reclaimer = FileReclaimer()
        try reclaimer.remove(path)
        XCTAssertFalse(FileManager.default.fileExists(atPath: path))
        reclaimer.waitUntilIdle()
        let counts = reclaimer.counts
        XCTAssertEqual(counts.files, 1)
        XCTAssertEqual(counts.steps, 4)
        XCTAssertEqual(counts.freedBytes, size)
        XCTAssertLessThanOrEqual(counts.largestStep, FileReclaimer.stepBytes)
    }

    /// A small file is unlinked outright; a missing one is not an error; what cannot be
    /// removed (a directory) is, with the path in the message.
    func testSmallMissingAndUnremovablePaths() throws {
        let reclaimer = FileReclaimer()
        let small = try makeFile("small.wal", bytes: 4_096)
        try reclaimer.remove(small)
        XCTAssertFalse(FileManager.default.fileExists(atPath: small))
        try reclaimer.remove(directory + "/never-was")
        reclaimer.waitUntilIdle()
        XCTAssertEqual(reclaimer.counts, FileReclaimer.Counts())
        let sub = directory + "/sub"
        try FileManager.default.createDirectory(atPath: sub, withIntermediateDirectories: false)
        XCTAssertThrowsError(try reclaimer.remove(sub)) { error in
            XCTAssertTrue("\(error)".contains(sub), "\(error)")
        }
    }

    /// Pruning snapshots removes through the reclaimer: an old snapshot of a million keys is
    /// hundreds of megabytes.
    func testPruningALargeSnapshotFreesItInSteps() throws {
        let payload = [UInt8](repeating: 1, count: 2 * FileReclaimer.stepBytes)
        try SnapshotFile.save(directory: directory, index: 10, bytes: payload)
        try SnapshotFile.save(directory: directory, index: 20, bytes: [1, 2, 3])
        let before = FileReclaimer.shared.counts
        try SnapshotFile.prune(directory: directory, keep: 1)
        FileReclaimer.shared.waitUntilIdle()
        let after = FileReclaimer.shared.counts
        XCTAssertGreaterThanOrEqual(after.files - before.files, 1)
        XCTAssertGreaterThanOrEqual(after.freedBytes - before.freedBytes, payload.count)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasPrefix("snap-") }.count, 1)
    }
}
