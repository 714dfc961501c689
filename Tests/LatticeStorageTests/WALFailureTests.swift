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

    /// fsyncgate: after a failed fdatasync Linux keeps the batch's pages in the page cache,
    /// marked clean, so a restart without a reboot would read the failed batch back — and a
    /// later reboot would lose it again with everything appended after it. The failed batch is
    /// cut off the file: a restart finds exactly what was acknowledged, and appends continue.
    func testFailedFdatasyncLeavesNoTraceOfTheFailedBatch() throws {
        let walDir = path("wal")
        let segment = walDir + "/" + segmentName(1)
        let (log, _, _) = try WriteAheadLog.open(directory: walDir, segmentBytes: 4096)
        try log.append([entry(1), entry(2)])
        let durableEnd = frameOffsets([[entry(1), entry(2)]]).end
        log.injectFault = { $0 == .sync ? EIO : nil }   // the write reached the page cache
        let error = assertStorageError { try log.append([entry(3, count: 300)]) }
        XCTAssertEqual(error?.kind, .io(errno: EIO))
        XCTAssertTrue(error?.message.contains("fdatasync \(segment) failed: Input/output error") ?? false,
                      error?.message ?? "")
        log.injectFault = nil
        XCTAssertEqual(assertStorageError { try log.append([entry(4)]) }?.kind, .logUnusable)
        XCTAssertEqual(log.lastIndex, 2)
        XCTAssertEqual(fileSize(segment), durableEnd, "the file ends where the durable data ends")
        log.close()

        let (reopened, recovered, note) = try WriteAheadLog.open(directory: walDir, segmentBytes: 4096)
        XCTAssertEqual(recovered.map(\.entry), [entry(1), entry(2)], "no revived batch, no lost acknowledged one")
        XCTAssertNil(note)
        XCTAssertEqual(try reopened.append([entry(5)]), 3)
        reopened.close()
        XCTAssertEqual(try WriteAheadLog.open(directory: walDir, segmentBytes: 4096).entries.map(\.entry),
                       [entry(1), entry(2), entry(5)])
    }

    func testShortWriteThenFailureLeavesNothingOfTheBatch() throws {
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
        XCTAssertNil(note, "the half-written batch was cut off when the write failed")
        XCTAssertEqual(try reopened.append([entry(6)]), 3)
    }

    /// When even cutting the failed batch off fails, the report says the batch may come back.
    func testAFailedCutIsReported() throws {
        let walDir = path("wal")
        let (log, _, _) = try WriteAheadLog.open(directory: walDir, segmentBytes: 4096)
        try log.append([entry(1)])
        log.injectFault = { $0 == .sync || $0 == .truncate ? EIO : nil }
        XCTAssertEqual(assertStorageError { try log.append([entry(2)]) }?.kind, .io(errno: EIO))
        log.injectFault = nil
        let later = assertStorageError { try log.append([entry(3)]) }
        XCTAssertEqual(later?.kind, .logUnusable)
        XCTAssertTrue(later?.message.contains("cutting the failed batch off at offset") ?? false, later?.message ?? "")
        XCTAssertTrue(later?.message.contains("may reappear after a restart") ?? false, later?.message ?? "")
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
