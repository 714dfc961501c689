import XCTest
@testable import LatticeStorage

/// Appending, reopening, rolling segments and dropping what a snapshot covers.
final class WriteAheadLogTests: StorageTestCase {
    var walDir: String { path("wal") }

    func testFreshLogIsEmptyAndStartsAtIndexOne() throws {
        let (log, entries, note) = try WriteAheadLog.open(directory: walDir, segmentBytes: 4096)
        XCTAssertEqual(entries, [])
        XCTAssertNil(note)
        XCTAssertEqual(log.lastIndex, 0)
        XCTAssertEqual(fileNames(walDir), [segmentName(1)])
        XCTAssertEqual(fileSize(path("wal/" + segmentName(1))), 4096, "segments are preallocated")
        XCTAssertEqual(log.bytesOnDisk, 4096)
    }

    func testAppendedEntriesComeBackInOrderWithTheirIndexes() throws {
        let (log, _, _) = try WriteAheadLog.open(directory: walDir, segmentBytes: 4096)
        XCTAssertEqual(try log.append([entry(1), entry(2, type: 9)]), 2)
        XCTAssertEqual(try log.append([entry(3, count: 0)]), 3)
        XCTAssertEqual(try log.append([]), 3, "an empty batch is a no-op")
        log.close()

        let (reopened, entries, note) = try WriteAheadLog.open(directory: walDir, segmentBytes: 4096)
        XCTAssertNil(note)
        XCTAssertEqual(entries.map(\.index), [1, 2, 3])
        XCTAssertEqual(entries.map(\.entry), [entry(1), entry(2, type: 9), entry(3, count: 0)])
        XCTAssertEqual(reopened.lastIndex, 3)
        XCTAssertEqual(try reopened.append([entry(4)]), 4, "indexes continue after a reopen")
        reopened.close()
        XCTAssertEqual(try WriteAheadLog.open(directory: walDir, segmentBytes: 4096).entries.map(\.index), [1, 2, 3, 4])
    }

    func testManyAppendsRollAcrossSmallSegmentsAndAllComeBackInOrder() throws {
        let (log, _, _) = try WriteAheadLog.open(directory: walDir, segmentBytes: 4096, fsync: false)
        var expected: [WALEntry] = []
        for i in 1...300 {
            let batch = (0..<(i % 4 + 1)).map { entry(i * 10 + $0, count: (i * 37 + $0 * 11) % 200) }
            try log.append(batch)
            expected += batch
        }
        XCTAssertEqual(log.lastIndex, UInt64(expected.count))
        let segments = fileNames(walDir)
        XCTAssertGreaterThan(segments.count, 5)
        XCTAssertEqual(segments, log.segmentPaths.map { String($0.split(separator: "/").last!) })
        XCTAssertEqual(log.bytesOnDisk, segments.count * 4096)
        log.close()

        let (reopened, entries, note) = try WriteAheadLog.open(directory: walDir, segmentBytes: 4096, fsync: false)
        XCTAssertNil(note)
        XCTAssertEqual(entries.map(\.entry), expected)
        XCTAssertEqual(entries.map(\.index), Array(1...UInt64(expected.count)))
        // Each segment is named after the index of its first entry.
        var index: UInt64 = 1
        for name in segments {
            XCTAssertEqual(name, segmentName(index))
            let bytes = readFile(walDir + "/" + name)
            let count = bytes.withUnsafeBytes { SegmentScanner.scan($0, firstIndex: index, keepAfter: 0).count }
            XCTAssertGreaterThan(count, 0)
            index += UInt64(count)
        }
        XCTAssertEqual(index, reopened.lastIndex + 1)
    }

    func testABatchLargerThanASegmentGetsASegmentOfItsOwnSize() throws {
        let (log, _, _) = try WriteAheadLog.open(directory: walDir, segmentBytes: 4096, fsync: false)
        try log.append([entry(1)])
        let big = (0..<3).map { entry(100 + $0, count: 3000) }
        try log.append(big)
        try log.append([entry(2)])
        XCTAssertEqual(fileNames(walDir), [segmentName(1), segmentName(2), segmentName(5)])
        XCTAssertEqual(fileSize(walDir + "/" + segmentName(2)), 24 + 28 + 3 * 3009, "segment header, batch header, records")
        log.close()
        let entries = try WriteAheadLog.open(directory: walDir, segmentBytes: 4096).entries
        XCTAssertEqual(entries.map(\.entry), [entry(1)] + big + [entry(2)])
    }

    func testAFirstBatchLargerThanTheSegmentGrowsTheEmptySegment() throws {
        let (log, _, _) = try WriteAheadLog.open(directory: walDir, segmentBytes: 4096, fsync: false)
        try log.append([entry(1, count: 5000)])
        XCTAssertEqual(fileNames(walDir), [segmentName(1)])
        XCTAssertEqual(fileSize(walDir + "/" + segmentName(1)), 24 + 28 + 5009)
        log.close()
        XCTAssertEqual(try WriteAheadLog.open(directory: walDir, segmentBytes: 4096).entries.map(\.entry),
                       [entry(1, count: 5000)])
    }

    func testOversizedPayloadIsRejectedAndTheLogStaysUsable() throws {
        let (log, _, _) = try WriteAheadLog.open(directory: walDir, segmentBytes: 4096, fsync: false)
        let tooBig = WALEntry(type: 1, payload: [UInt8](repeating: 1, count: WriteAheadLog.maxPayloadBytes + 1))
        let error = assertStorageError { try log.append([entry(1), tooBig]) }
        XCTAssertEqual(error?.kind, .invalidArgument)
        XCTAssertEqual(try log.append([entry(2)]), 1)
    }

    func testClosedLogRefusesAppends() throws {
        let (log, _, _) = try WriteAheadLog.open(directory: walDir, segmentBytes: 4096)
        log.close()
        XCTAssertEqual(assertStorageError { try log.append([entry(1)]) }?.kind, .logUnusable)
    }

    func testResetAfterSnapshotDeletesEveryOlderSegment() throws {
        let (log, _, _) = try WriteAheadLog.open(directory: walDir, segmentBytes: 4096, fsync: false)
        for i in 1...100 { try log.append([entry(i, count: 100)]) }
        XCTAssertGreaterThan(fileNames(walDir).count, 2)

        try log.resetAfterSnapshot(through: 100)
        XCTAssertEqual(fileNames(walDir), [segmentName(101)])
        XCTAssertEqual(log.bytesOnDisk, 4096)
        try log.append([entry(101)])
        log.close()

        let (_, entries, note) = try WriteAheadLog.open(directory: walDir, snapshotIndex: 100, segmentBytes: 4096)
        XCTAssertNil(note)
        XCTAssertEqual(entries, [WALRecord(index: 101, entry: entry(101))])
    }

    func testResetThroughAnOlderIndexKeepsTheSegmentsStillNeeded() throws {
        let (log, _, _) = try WriteAheadLog.open(directory: walDir, segmentBytes: 4096, fsync: false)
        for i in 1...100 { try log.append([entry(i, count: 100)]) }
        let before = fileNames(walDir)   // 137-byte batches (28 + 9 + 100): 29 per segment → 1, 30, 59, 88
        XCTAssertEqual(before, [segmentName(1), segmentName(30), segmentName(59), segmentName(88)])

        try log.resetAfterSnapshot(through: 40)
        XCTAssertEqual(fileNames(walDir), [segmentName(30), segmentName(59), segmentName(88)],
                       "entries 30…40 are covered, 41… are not")
        try log.resetAfterSnapshot(through: 74)
        XCTAssertEqual(fileNames(walDir), [segmentName(59), segmentName(88)])
        XCTAssertEqual(assertStorageError { try log.resetAfterSnapshot(through: 101) }?.kind, .invalidArgument)
        log.close()

        let entries = try WriteAheadLog.open(directory: walDir, snapshotIndex: 74, segmentBytes: 4096).entries
        XCTAssertEqual(entries.map(\.index), Array(75...100))
    }

    func testResetOnAnEmptyCurrentSegmentKeepsIt() throws {
        let (log, _, _) = try WriteAheadLog.open(directory: walDir, segmentBytes: 4096)
        try log.resetAfterSnapshot(through: 0)
        XCTAssertEqual(fileNames(walDir), [segmentName(1)])
        XCTAssertEqual(try log.append([entry(1)]), 1)
    }

    func testOpeningAfterASnapshotReturnsOnlyLaterEntries() throws {
        let (log, _, _) = try WriteAheadLog.open(directory: walDir, segmentBytes: 4096, fsync: false)
        for i in 1...100 { try log.append([entry(i, count: 100)]) }
        log.close()
        let (reopened, entries, note) = try WriteAheadLog.open(directory: walDir, snapshotIndex: 90, segmentBytes: 4096)
        XCTAssertNil(note)
        XCTAssertEqual(entries.map(\.index), Array(91...100))
        XCTAssertEqual(entries.map(\.entry), (91...100).map { entry($0, count: 100) })
        XCTAssertEqual(reopened.lastIndex, 100)
    }

    func testAFreshLogAfterASnapshotStartsAtTheNextIndex() throws {
        let (log, entries, _) = try WriteAheadLog.open(directory: walDir, snapshotIndex: 41, segmentBytes: 4096)
        XCTAssertEqual(entries, [])
        XCTAssertEqual(fileNames(walDir), [segmentName(42)])
        XCTAssertEqual(try log.append([entry(1)]), 42)
    }

    func testALogStartingAfterTheSnapshotIsAGap() throws {
        let (log, _, _) = try WriteAheadLog.open(directory: walDir, snapshotIndex: 50, segmentBytes: 4096)
        try log.append([entry(51)])
        log.close()
        let error = assertStorageError { try WriteAheadLog.open(directory: walDir, snapshotIndex: 10, segmentBytes: 4096) }
        XCTAssertEqual(error?.kind, .corruption)
        XCTAssertTrue(error?.message.contains("entries 11…50 are missing") ?? false, error?.message ?? "")
    }

    func testASnapshotAheadOfTheLogRestartsTheLogAfterIt() throws {
        let (log, _, _) = try WriteAheadLog.open(directory: walDir, segmentBytes: 4096)
        try log.append([entry(1), entry(2)])
        log.close()
        let (reopened, entries, note) = try WriteAheadLog.open(directory: walDir, snapshotIndex: 7, segmentBytes: 4096)
        XCTAssertEqual(entries, [])
        XCTAssertTrue(note?.contains("restarts at index 8") ?? false, note ?? "no note")
        XCTAssertEqual(fileNames(walDir), [segmentName(8)])
        XCTAssertEqual(try reopened.append([entry(8)]), 8)
    }

    func testAMissingMiddleSegmentStopsStartup() throws {
        let (log, _, _) = try WriteAheadLog.open(directory: walDir, segmentBytes: 4096, fsync: false)
        for i in 1...100 { try log.append([entry(i, count: 100)]) }
        log.close()
        try FileManager.default.removeItem(atPath: walDir + "/" + segmentName(30))   // segments 1, 30, 59, 88
        let error = assertStorageError { try WriteAheadLog.open(directory: walDir, segmentBytes: 4096) }
        XCTAssertEqual(error?.kind, .corruption)
        XCTAssertEqual(error?.path, walDir + "/" + segmentName(59))
        XCTAssertTrue(error?.message.contains("ends at index 29") ?? false, error?.message ?? "")
    }

    func testFsyncedAppendsAreReadableByAnIndependentReader() throws {
        let (log, _, _) = try WriteAheadLog.open(directory: walDir, segmentBytes: 4096, fsync: true)
        try log.append([entry(1), entry(2)])
        // Without closing the writer, a second reader sees both entries (they are in the file).
        let bytes = readFile(walDir + "/" + segmentName(1))
        let scan = bytes.withUnsafeBytes { SegmentScanner.scan($0, firstIndex: 1, keepAfter: 0) }
        XCTAssertEqual(scan.records.map(\.entry), [entry(1), entry(2)])
    }
}
