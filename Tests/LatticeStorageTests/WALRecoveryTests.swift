import XCTest
@testable import LatticeStorage

/// Startup after crashes and damage: a crash's unfinished tail is truncated (and noted); damage
/// followed by more data stops startup with an error naming the file and offset.
final class WALRecoveryTests: StorageTestCase {
    /// Writes `batches` to a new log in `directory` and closes it.
    private func writeLog(_ directory: String, _ batches: [[WALEntry]], segmentBytes: Int = 4096) throws {
        let (log, _, _) = try WriteAheadLog.open(directory: directory, segmentBytes: segmentBytes, fsync: false)
        for batch in batches { try log.append(batch) }
        log.close()
    }

    private enum Tear: CaseIterable { case zeroFilled, fileCut }

    /// Tears the last record at every byte offset, both as a preallocated file would show it (the
    /// rest zero) and as a cut-off file; the entries before it survive and the log keeps working.
    private func checkTornTailAtEveryOffset(payloadBytes: Int) throws {
        let entries = (1...5).map { entry($0, count: payloadBytes) }
        let lastOffset = recordOffsets(entries)[4]
        let recordBytes = 9 + payloadBytes
        for cut in 0..<recordBytes {
            for tear in Tear.allCases {
                let walDir = path("wal-\(cut)-\(tear)")
                let segment = walDir + "/" + segmentName(1)
                try writeLog(walDir, [Array(entries[0..<2]), Array(entries[2...])])
                switch tear {
                case .zeroFilled: modifyFile(segment) { for i in (lastOffset + cut)..<(lastOffset + recordBytes) { $0[i] = 0 } }
                case .fileCut: XCTAssertEqual(truncate(segment, off_t(lastOffset + cut)), 0)
                }
                let context = "cut at \(cut) of the last record, \(tear)"
                let (log, recovered, note) = try WriteAheadLog.open(directory: walDir, segmentBytes: 4096, fsync: false)
                XCTAssertEqual(recovered.map(\.entry), Array(entries[0..<4]), context)
                if cut == 0 {
                    XCTAssertNil(note, context)  // nothing of the record was written: a clean end
                } else {
                    XCTAssertTrue(note?.contains("at offset \(lastOffset) of \(segment)") ?? false, "\(context): \(note ?? "no note")")
                }
                XCTAssertEqual(fileSize(segment), 4096, context)
                XCTAssertEqual(try log.append([entry(99)]), 5, context)
                log.close()
                let (_, again, secondNote) = try WriteAheadLog.open(directory: walDir, segmentBytes: 4096, fsync: false)
                XCTAssertEqual(again.map(\.entry), Array(entries[0..<4]) + [entry(99)], context)
                XCTAssertNil(secondNote, context)
                removeTemporaryDirectory(walDir)
            }
        }
    }

    func testTornTailAtEveryByteOffsetOfTheLastRecordIsTruncated() throws {
        try checkTornTailAtEveryOffset(payloadBytes: 40)
    }

    func testTornTailAtEveryByteOffsetOfALastRecordCrossingSectors() throws {
        try checkTornTailAtEveryOffset(payloadBytes: 700)
    }

    func testZeroFilledPreallocationIsNotMistakenForData() throws {
        let walDir = path("wal")
        try writeLog(walDir, [[entry(1)], [WALEntry(type: 0, payload: [])], [WALEntry(type: 0, payload: [0, 0])]])
        let segment = readFile(walDir + "/" + segmentName(1))
        XCTAssertEqual(segment.count, 4096)
        let end = recordOffsets([entry(1), WALEntry(type: 0, payload: []), WALEntry(type: 0, payload: [0, 0])]).last! + 11
        XCTAssertTrue(segment[end...].allSatisfy { $0 == 0 })
        let (log, entries, note) = try WriteAheadLog.open(directory: walDir, segmentBytes: 4096)
        XCTAssertNil(note)
        XCTAssertEqual(entries.map(\.entry), [entry(1), WALEntry(type: 0, payload: []), WALEntry(type: 0, payload: [0, 0])])
        XCTAssertEqual(try log.append([entry(4)]), 4, "appends continue right after the data, not after the zeros")
        log.close()
        XCTAssertEqual(try WriteAheadLog.open(directory: walDir, segmentBytes: 4096).entries.count, 4)
    }

    /// Flips one bit in record 3 of 5 at several places of the record.
    func testBitFlipInAMiddleRecordStopsStartupNamingFileAndOffset() throws {
        let entries = (1...5).map { entry($0, count: 40) }
        let offset = recordOffsets(entries)[2]
        let places = [("payload", offset + 9 + 17, UInt8(0x04)), ("checksum", offset + 5, 0x80), ("type", offset + 8, 0x01),
                      ("length low bit", offset, 0x01), ("length to 40+64", offset, 0x40),
                      ("length past the file", offset + 2, 0x08), ("length over the bound", offset + 3, 0x80)]
        for (place, byte, mask) in places {
            let walDir = path("wal-\(place.filter(\.isLetter))")
            let segment = walDir + "/" + segmentName(1)
            try writeLog(walDir, [entries])
            modifyFile(segment) { $0[byte] ^= mask }
            let error = assertStorageError { try WriteAheadLog.open(directory: walDir, segmentBytes: 4096) }
            XCTAssertEqual(error?.kind, .corruption, place)
            XCTAssertEqual(error?.path, segment, place)
            XCTAssertEqual(error?.offset, offset, place)
            XCTAssertTrue(error?.message.contains("offset \(offset) in \(segment)") ?? false, "\(place): \(error?.message ?? "")")
            XCTAssertTrue(error?.message.contains("entry 3") ?? false, "\(place): \(error?.message ?? "")")
        }
    }

    func testBitFlipInTheLastRecordIsTruncatedAsTheTail() throws {
        let entries = (1...5).map { entry($0, count: 40) }
        let offset = recordOffsets(entries)[4]
        let places = [("payload", offset + 9 + 39, UInt8(0x10)), ("checksum", offset + 4, 0x01), ("type", offset + 8, 0x02),
                      ("length down", offset, 0x20), ("length up", offset + 1, 0x01), ("length over the bound", offset + 3, 0x40)]
        for (place, byte, mask) in places {
            let walDir = path("wal-\(place.filter(\.isLetter))")
            try writeLog(walDir, [entries])
            modifyFile(walDir + "/" + segmentName(1)) { $0[byte] ^= mask }
            let (log, recovered, note) = try WriteAheadLog.open(directory: walDir, segmentBytes: 4096)
            XCTAssertEqual(recovered.map(\.entry), Array(entries[0..<4]), place)
            XCTAssertTrue(note?.contains("damaged last record at offset \(offset)") ?? false, "\(place): \(note ?? "no note")")
            XCTAssertEqual(try log.append([entry(6)]), 5, place)
        }
    }

    /// A power loss can leave any subset of an unfinished batch's sectors on disk: a zero sector
    /// inside it is a torn write, and the records after it (same batch) go too.
    func testZeroSectorInsideTheLastBatchIsATornWriteEvenWithRecordsAfterIt() throws {
        let walDir = path("wal")
        let first = (1...3).map { entry($0, count: 40) }
        let batch = [entry(10, count: 1500), entry(11, count: 100), entry(12, count: 100)]
        try writeLog(walDir, [first, batch], segmentBytes: 8192)
        let batchOffset = recordOffsets(first + batch)[3]
        XCTAssertLessThan(batchOffset + 9, 512)
        modifyFile(walDir + "/" + segmentName(1)) { for i in 512..<1024 { $0[i] = 0 } }
        let (_, recovered, note) = try WriteAheadLog.open(directory: walDir, segmentBytes: 8192)
        XCTAssertEqual(recovered.map(\.entry), first)
        XCTAssertTrue(note?.contains("torn write at offset \(batchOffset)") ?? false, note ?? "no note")
    }

    func testGarbageInsteadOfZerosInTheSameRecordIsCorruption() throws {
        let walDir = path("wal")
        let first = (1...3).map { entry($0, count: 40) }
        let batch = [entry(10, count: 1500), entry(11, count: 100), entry(12, count: 100)]
        try writeLog(walDir, [first, batch], segmentBytes: 8192)
        modifyFile(walDir + "/" + segmentName(1)) { $0[700] ^= 0xFF }
        let error = assertStorageError { try WriteAheadLog.open(directory: walDir, segmentBytes: 8192) }
        XCTAssertEqual(error?.kind, .corruption)
        XCTAssertEqual(error?.offset, recordOffsets(first + batch)[3])
    }

    func testDamageAtTheEndOfANonLastSegmentIsCorruption() throws {
        let walDir = path("wal")
        let entries = (1...100).map { entry($0, count: 100) }   // segments start at 1, 38, 75
        try writeLog(walDir, entries.map { [$0] })
        let lastOfFirst = recordOffsets(Array(entries[0..<37]))[36]
        for (what, damage) in [("bit flip", { (b: inout [UInt8]) in b[lastOfFirst + 50] ^= 1 }),
                               ("zero fill", { (b: inout [UInt8]) in for i in (lastOfFirst + 50)..<(lastOfFirst + 109) { b[i] = 0 } })] {
            let copy = path("copy-\(what.filter(\.isLetter))")
            try FileManager.default.copyItem(atPath: walDir, toPath: copy)
            modifyFile(copy + "/" + segmentName(1), damage)
            let error = assertStorageError { try WriteAheadLog.open(directory: copy, segmentBytes: 4096) }
            XCTAssertEqual(error?.kind, .corruption, what)
            XCTAssertEqual(error?.path, copy + "/" + segmentName(1), what)
            XCTAssertEqual(error?.offset, lastOfFirst, what)
            XCTAssertTrue(error?.message.contains("later segments hold more entries") ?? false, error?.message ?? "")
        }
    }

    func testLeftoverTemporarySegmentIsRemoved() throws {
        let walDir = path("wal")
        try writeLog(walDir, [[entry(1)]])
        writeFile(walDir + "/" + segmentName(2) + ".tmp", [UInt8](repeating: 0, count: 100))
        let (_, entries, _) = try WriteAheadLog.open(directory: walDir, segmentBytes: 4096)
        XCTAssertEqual(entries.count, 1)
        XCTAssertEqual(fileNames(walDir), [segmentName(1)])
    }

    func testLastSegmentWhoseCreationNeverCompletedIsReplaced() throws {
        let walDir = path("wal")
        try writeLog(walDir, [[entry(1)], [entry(2)]])
        writeFile(walDir + "/" + segmentName(3), [UInt8](repeating: 0, count: 4096))
        let (log, entries, note) = try WriteAheadLog.open(directory: walDir, segmentBytes: 4096)
        XCTAssertEqual(entries.map(\.entry), [entry(1), entry(2)])
        XCTAssertTrue(note?.contains("creation never completed") ?? false, note ?? "no note")
        XCTAssertEqual(try log.append([entry(3)]), 3)
        log.close()
        XCTAssertEqual(try WriteAheadLog.open(directory: walDir, segmentBytes: 4096).entries.map(\.entry),
                       [entry(1), entry(2), entry(3)])
    }

    func testDamagedSegmentHeaderIsCorruption() throws {
        let walDir = path("wal")
        try writeLog(walDir, [[entry(1)]])
        modifyFile(walDir + "/" + segmentName(1)) { $0[3] ^= 1 }
        let error = assertStorageError { try WriteAheadLog.open(directory: walDir, segmentBytes: 4096) }
        XCTAssertEqual(error?.kind, .corruption)
        XCTAssertEqual(error?.offset, 0)
        XCTAssertTrue(error?.message.contains("invalid segment header") ?? false, error?.message ?? "")
    }

    func testSegmentHeaderDisagreeingWithItsNameIsCorruption() throws {
        let walDir = path("wal")
        try writeLog(walDir, [[entry(1)]])
        try FileManager.default.moveItem(atPath: walDir + "/" + segmentName(1), toPath: walDir + "/" + segmentName(5))
        let error = assertStorageError { try WriteAheadLog.open(directory: walDir, snapshotIndex: 4, segmentBytes: 4096) }
        XCTAssertEqual(error?.kind, .corruption)
        XCTAssertTrue(error?.message.contains("first index 1 in its header, 5 in its name") ?? false, error?.message ?? "")
    }

    func testSegmentsCoveredBySnapshotAreNotRead() throws {
        let walDir = path("wal")
        try writeLog(walDir, (1...100).map { [entry($0, count: 100)] })   // segments 1, 38, 75
        modifyFile(walDir + "/" + segmentName(1)) { $0[200] ^= 1 }        // damage where nothing is needed
        let entries = try WriteAheadLog.open(directory: walDir, snapshotIndex: 40, segmentBytes: 4096).entries
        XCTAssertEqual(entries.map(\.index), Array(41...100))
    }
}
