import XCTest
@testable import LatticeStorage

/// I/O failures during appends: the failing append throws, every later one throws too (nothing
/// after a failure may be acknowledged), and a restart recovers what is on disk.
final class WALFailureTests: StorageTestCase {
    /// A real ENOSPC: a 64 KiB tmpfs (needs root; skipped where mounting is not allowed) fills
    /// up when the log rolls to a new preallocated segment.
    func testRunningOutOfSpaceFailsTheAppendAndEveryLaterOne() throws {
        #if !os(Linux)
        throw XCTSkip("mounts a Linux tmpfs")
        #else
        let mountPoint = path("tmpfs")
        XCTAssertEqual(mkdir(mountPoint, 0o700), 0)
        guard mount("tmpfs", mountPoint, "tmpfs", 0, "size=64k") == 0 else {
            throw XCTSkip("cannot mount a tmpfs here (errno \(errno)); ENOSPC is covered by injected faults only")
        }
        defer { XCTAssertEqual(umount2(mountPoint, Int32(MNT_DETACH)), 0) }
        let walDir = mountPoint + "/wal"

        let (log, _, _) = try WriteAheadLog.open(directory: walDir, segmentBytes: 16384)
        var acknowledged: [WALEntry] = []
        var failure: StorageError?
        for i in 0..<200 {
            let next = entry(i, count: 1000)
            do {
                try log.append([next])
                acknowledged.append(next)
            } catch {
                failure = error
                break
            }
        }
        XCTAssertEqual(failure?.kind, .io(errno: ENOSPC))
        XCTAssertTrue(failure?.message.contains("No space left on device") ?? false, failure?.message ?? "")
        XCTAssertGreaterThan(acknowledged.count, 10)

        let later = assertStorageError { try log.append([entry(1000, count: 1)]) }
        XCTAssertEqual(later?.kind, .logUnusable)
        XCTAssertTrue(later?.message.contains("No space left on device") ?? false, later?.message ?? "")
        XCTAssertEqual(assertStorageError { try log.resetAfterSnapshot(through: 1) }?.kind, .logUnusable)
        log.close()

        XCTAssertFalse(fileNames(walDir).contains { $0.hasSuffix(".tmp") }, "the failed segment's temp file is gone")
        let (_, recovered, note) = try WriteAheadLog.open(directory: walDir, segmentBytes: 16384)
        XCTAssertNil(note)
        XCTAssertEqual(recovered.map(\.entry), acknowledged)
        #endif
    }

    func testFailedFdatasyncMakesTheLogUnusable() throws {
        let walDir = path("wal")
        let (log, _, _) = try WriteAheadLog.open(directory: walDir, segmentBytes: 4096)
        try log.append([entry(1), entry(2)])
        log.injectFault = { $0 == .sync ? EIO : nil }
        let error = assertStorageError { try log.append([entry(3)]) }
        XCTAssertEqual(error?.kind, .io(errno: EIO))
        XCTAssertTrue(error?.message.contains("fdatasync \(walDir)/\(segmentName(1)) failed: Input/output error") ?? false,
                      error?.message ?? "")
        log.injectFault = nil
        XCTAssertEqual(assertStorageError { try log.append([entry(4)]) }?.kind, .logUnusable)
        XCTAssertEqual(log.lastIndex, 2)
        log.close()

        // The failed batch may or may not be on disk; what was acknowledged always is.
        let recovered = try WriteAheadLog.open(directory: walDir, segmentBytes: 4096).entries.map(\.entry)
        XCTAssertEqual(Array(recovered.prefix(2)), [entry(1), entry(2)])
        XCTAssertLessThanOrEqual(recovered.count, 3)
    }

    func testShortWriteThenFailureLeavesATailThatRecoveryTruncates() throws {
        let walDir = path("wal")
        let (log, _, _) = try WriteAheadLog.open(directory: walDir, segmentBytes: 4096)
        try log.append([entry(1), entry(2)])
        log.injectFault = { $0 == .write ? ENOSPC : nil }
        XCTAssertEqual(assertStorageError { try log.append([entry(3, count: 300)]) }?.kind,
                       .io(errno: ENOSPC))
        log.injectFault = nil
        XCTAssertEqual(assertStorageError { try log.append([entry(5)]) }?.kind, .logUnusable)
        log.close()

        let (reopened, recovered, note) = try WriteAheadLog.open(directory: walDir, segmentBytes: 4096)
        XCTAssertEqual(recovered.map(\.entry), [entry(1), entry(2)])
        XCTAssertTrue(note?.contains("damaged last record at offset \(recordOffsets([entry(1), entry(2)])[1] + 29)") ?? false,
                      note ?? "no note: the half-written record should be reported")
        XCTAssertEqual(try reopened.append([entry(6)]), 3)
    }

    func testFailureToCreateTheNextSegmentWritesNothingOfTheBatch() throws {
        let walDir = path("wal")
        let (log, _, _) = try WriteAheadLog.open(directory: walDir, segmentBytes: 4096)
        let first = (1...30).map { entry($0, count: 100) }
        try log.append(first)
        log.injectFault = { $0 == .createSegment ? ENOSPC : nil }
        XCTAssertEqual(assertStorageError { try log.append((31...40).map { entry($0, count: 100) }) }?.kind,
                       .io(errno: ENOSPC))
        log.close()
        let (_, recovered, note) = try WriteAheadLog.open(directory: walDir, segmentBytes: 4096)
        XCTAssertNil(note)
        XCTAssertEqual(recovered.map(\.entry), first)
        XCTAssertEqual(fileNames(walDir), [segmentName(1)])
    }
}
