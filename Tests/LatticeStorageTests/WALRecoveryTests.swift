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

    /// Tears the last batch the ways a crash can: unwritten from its start or from any sector
    /// boundary inside it (a power loss writes whole sectors, a killed process whole pages), and,
    /// as a cut-off file, at every byte. The
    /// batches before it survive, the torn one goes whole, and the log keeps working.
    private func checkTornTailAtEveryOffset(payloadBytes: Int) throws {
        let batches = [[entry(1, count: payloadBytes), entry(2, count: payloadBytes)],
                       (3...5).map { entry($0, count: payloadBytes) }]
        let (starts, end) = frameOffsets(batches)
        let last = starts[1]
        var cuts: [(Int, Bool)] = (last..<end).map { ($0, false) }   // (offset, zero-filled from there)
        cuts.append((last, true))
        cuts += stride(from: (last / 512 + 1) * 512, to: end, by: 512).map { ($0, true) }
        for (cut, zeroFilled) in cuts {
            let walDir = path("wal-\(cut)-\(zeroFilled)")
            let segment = walDir + "/" + segmentName(1)
            try writeLog(walDir, batches)
            if zeroFilled {
                modifyFile(segment) { for i in cut..<end { $0[i] = 0 } }
            } else {
                XCTAssertEqual(truncate(segment, off_t(cut)), 0)
            }
            let context = "unwritten from offset \(cut) (batch at \(last)), \(zeroFilled ? "zero-filled" : "file cut")"
            let (log, recovered, note) = try WriteAheadLog.open(directory: walDir, segmentBytes: 4096, fsync: false)
            XCTAssertEqual(recovered.map(\.entry), batches[0], context)
            if cut == last {
                XCTAssertNil(note, context)  // nothing of the batch was written: a clean end
            } else {
                XCTAssertTrue(note?.contains("at offset \(last) of \(segment)") ?? false, "\(context): \(note ?? "no note")")
            }
            XCTAssertEqual(fileSize(segment), 4096, context)
            XCTAssertEqual(try log.append([entry(99)]), 3, context)
            log.close()
            let (_, again, secondNote) = try WriteAheadLog.open(directory: walDir, segmentBytes: 4096, fsync: false)
            XCTAssertEqual(again.map(\.entry), batches[0] + [entry(99)], context)
            XCTAssertNil(secondNote, context)
            removeTemporaryDirectory(walDir)
        }
    }

    func testTornTailAtEveryOffsetOfTheLastBatchIsTruncated() throws {
        try checkTornTailAtEveryOffset(payloadBytes: 40)
    }

    func testTornTailAtEveryOffsetOfALastBatchCrossingSectors() throws {
        try checkTornTailAtEveryOffset(payloadBytes: 700)
    }

    /// A batch header that crosses a sector boundary, with the sector after it unwritten.
    func testTearInsideABatchHeaderCrossingASectorIsATornWrite() throws {
        let first = [entry(1, count: 439)]            // the second batch's header at 500..<528
        for tail in [[entry(2, count: 3)], [entry(2, count: 1000)]] {
            let walDir = path("wal-\(tail[0].payload.count)")
            try writeLog(walDir, [first, tail])
            XCTAssertEqual(frameOffsets([first, tail]).starts[1], 500)
            modifyFile(walDir + "/" + segmentName(1)) { for i in 512..<1024 { $0[i] = 0 } }
            let (_, recovered, note) = try WriteAheadLog.open(directory: walDir, segmentBytes: 4096)
            XCTAssertEqual(recovered.map(\.entry), first)
            XCTAssertTrue(note?.contains("torn write) at offset 500") ?? false, note ?? "no note")
        }
    }

    func testZeroFilledPreallocationIsNotMistakenForData() throws {
        let walDir = path("wal")
        let batches = [[entry(1)], [WALEntry(type: 0, payload: [])], [WALEntry(type: 0, payload: [0, 0])]]
        try writeLog(walDir, batches)
        let segment = readFile(walDir + "/" + segmentName(1))
        XCTAssertEqual(segment.count, 4096)
        XCTAssertTrue(segment[frameOffsets(batches).end...].allSatisfy { $0 == 0 })
        let (log, entries, note) = try WriteAheadLog.open(directory: walDir, segmentBytes: 4096)
        XCTAssertNil(note)
        XCTAssertEqual(entries.map(\.entry), batches.flatMap { $0 })
        XCTAssertEqual(try log.append([entry(4)]), 4, "appends continue right after the data, not after the zeros")
        log.close()
        XCTAssertEqual(try WriteAheadLog.open(directory: walDir, segmentBytes: 4096).entries.count, 4)
    }

    /// One flipped bit in batch 3 of 5 — in a record or in the batch header — stops startup at
    /// that batch.
    func testBitFlipInAMiddleBatchStopsStartupNamingFileAndOffset() throws {
        let batches = (1...5).map { [entry($0, count: 40)] }
        let frame = frameOffsets(batches).starts[2]
        let record = frame + 28
        let places = [("payload", record + 9 + 17, UInt8(0x04)), ("record checksum", record + 5, 0x80),
                      ("type", record + 8, 0x01), ("record length", record, 0x01),
                      ("batch magic", frame, 0x02), ("record count", frame + 4, 0x01),
                      ("batch length", frame + 8, 0x40), ("batch length past the file", frame + 10, 0x08),
                      ("zero-sector count", frame + 16, 0x01), ("batch checksum", frame + 21, 0x10),
                      ("header checksum", frame + 27, 0x80)]
        for (place, byte, mask) in places {
            let walDir = path("wal-\(place.filter(\.isLetter))")
            let segment = walDir + "/" + segmentName(1)
            try writeLog(walDir, batches)
            modifyFile(segment) { $0[byte] ^= mask }
            let error = assertStorageError { try WriteAheadLog.open(directory: walDir, segmentBytes: 4096) }
            XCTAssertEqual(error?.kind, .corruption, place)
            XCTAssertEqual(error?.path, segment, place)
            XCTAssertEqual(error?.offset, frame, place)
            XCTAssertTrue(error?.message.contains("offset \(frame) in \(segment)") ?? false, "\(place): \(error?.message ?? "")")
            XCTAssertTrue(error?.message.contains("entry 3") ?? false, "\(place): \(error?.message ?? "")")
            XCTAssertTrue(error?.message.contains("a valid batch follows at offset \(frameOffsets(batches).starts[3])") ?? false,
                          "\(place): \(error?.message ?? "")")
        }
    }

    /// The last batch was acknowledged like every other: a flipped bit there is damage, not the
    /// unfinished write of a crash, and startup stops rather than dropping it.
    func testBitFlipInTheLastBatchIsCorruptionNotATear() throws {
        let batches = (1...5).map { [entry($0, count: 40)] }
        let frame = frameOffsets(batches).starts[4]
        let record = frame + 28
        let places = [("payload", record + 9 + 39, UInt8(0x10)), ("record checksum", record + 4, 0x01),
                      ("type", record + 8, 0x02), ("record length", record + 1, 0x01),
                      ("record count", frame + 4, 0x02), ("batch length", frame + 8, 0x20),
                      ("batch length over the file", frame + 15, 0x40), ("batch checksum", frame + 20, 0x01),
                      ("header checksum", frame + 24, 0x04)]
        for (place, byte, mask) in places {
            let walDir = path("wal-\(place.filter(\.isLetter))")
            try writeLog(walDir, batches)
            modifyFile(walDir + "/" + segmentName(1)) { $0[byte] ^= mask }
            let error = assertStorageError { try WriteAheadLog.open(directory: walDir, segmentBytes: 4096) }
            XCTAssertEqual(error?.kind, .corruption, place)
            XCTAssertEqual(error?.offset, frame, place)
            XCTAssertTrue(error?.message.contains("entry 5") ?? false, "\(place): \(error?.message ?? "")")
        }
    }

    /// A value with a kilobyte of zeros (protobuf and JSON values have such runs): one flipped
    /// bit in the zeros is damage to an acknowledged batch, not a torn write — in the middle of
    /// the log and in its last batch.
    func testBitFlipInAValueFullOfZerosIsCorruption() throws {
        let zeros = WALEntry(type: 1, payload: [1, 2, 3] + [UInt8](repeating: 0, count: 1500) + [4, 5, 6])
        for batches in [[[entry(1)], [zeros], [entry(3)]], [[entry(1)], [zeros]]] {
            let walDir = path("wal-\(batches.count)")
            try writeLog(walDir, batches, segmentBytes: 8192)
            let frame = frameOffsets(batches).starts[1]
            modifyFile(walDir + "/" + segmentName(1)) { $0[frame + 28 + 9 + 800] ^= 0x08 }
            let error = assertStorageError { try WriteAheadLog.open(directory: walDir, segmentBytes: 8192) }
            XCTAssertEqual(error?.kind, .corruption, "\(batches.count) batches")
            XCTAssertEqual(error?.offset, frame, "\(batches.count) batches")
            XCTAssertTrue(error?.message.contains("entry 2") ?? false, error?.message ?? "")
        }
    }

    /// A power loss can leave any subset of an unfinished batch's sectors on disk: a sector of
    /// the last batch that reads as unwritten is a torn write, and the batch goes whole.
    func testUnwrittenSectorInsideTheLastBatchIsATornWrite() throws {
        let walDir = path("wal")
        let first = [(1...3).map { entry($0, count: 40) }]
        let batch = [entry(10, count: 1500), entry(11, count: 100), entry(12, count: 100)]
        try writeLog(walDir, first + [batch], segmentBytes: 8192)
        let batchOffset = frameOffsets(first + [batch]).starts[1]
        XCTAssertLessThan(batchOffset + 28, 512)
        modifyFile(walDir + "/" + segmentName(1)) { for i in 512..<1024 { $0[i] = 0 } }
        let (_, recovered, note) = try WriteAheadLog.open(directory: walDir, segmentBytes: 8192)
        XCTAssertEqual(recovered.map(\.entry), first[0])
        XCTAssertTrue(note?.contains("torn write) at offset \(batchOffset)") ?? false, note ?? "no note")
    }

    /// The same unwritten sector in a batch that is followed by a valid one is corruption: that
    /// batch was once complete and acknowledged.
    func testUnwrittenSectorFollowedByAValidBatchIsCorruption() throws {
        let walDir = path("wal")
        let batches = [[entry(1, count: 40)], [entry(10, count: 1500)], [entry(11, count: 100)]]
        try writeLog(walDir, batches, segmentBytes: 8192)
        let frames = frameOffsets(batches).starts
        modifyFile(walDir + "/" + segmentName(1)) { for i in 512..<1024 { $0[i] = 0 } }
        let error = assertStorageError { try WriteAheadLog.open(directory: walDir, segmentBytes: 8192) }
        XCTAssertEqual(error?.kind, .corruption)
        XCTAssertEqual(error?.offset, frames[1])
        XCTAssertTrue(error?.message.contains("a valid batch follows at offset \(frames[2])") ?? false, error?.message ?? "")
    }

    func testGarbageInsteadOfZerosInTheLastBatchIsCorruption() throws {
        let walDir = path("wal")
        let first = [(1...3).map { entry($0, count: 40) }]
        let batch = [entry(10, count: 1500), entry(11, count: 100), entry(12, count: 100)]
        try writeLog(walDir, first + [batch], segmentBytes: 8192)
        modifyFile(walDir + "/" + segmentName(1)) { $0[700] ^= 0xFF }
        let error = assertStorageError { try WriteAheadLog.open(directory: walDir, segmentBytes: 8192) }
        XCTAssertEqual(error?.kind, .corruption)
        XCTAssertEqual(error?.offset, frameOffsets(first + [batch]).starts[1])
    }

    /// Segments written by an earlier release (bare records) are read, and new entries go to a
    /// new, framed segment.
    func testAVersion1LogIsReadAndContinuedInAVersion2Segment() throws {
        let walDir = path("wal")
        try FileManager.default.createDirectory(atPath: walDir, withIntermediateDirectories: true)
        let old = (1...4).map { entry($0, count: 30) }
        var bytes = WALFormat.segmentHeader(firstIndex: 1, version: 1)
        for e in old { WALFormat.appendRecord(e, to: &bytes) }
        bytes += [UInt8](repeating: 0, count: 4096 - bytes.count)
        writeFile(walDir + "/" + segmentName(1), bytes)
        let (log, recovered, note) = try WriteAheadLog.open(directory: walDir, segmentBytes: 4096)
        XCTAssertEqual(recovered.map(\.entry), old)
        XCTAssertTrue(note?.contains("version 1 format") ?? false, note ?? "no note")
        XCTAssertEqual(try log.append([entry(5)]), 5)
        log.close()
        XCTAssertEqual(fileNames(walDir), [segmentName(1), segmentName(5)])
        XCTAssertEqual(Array(readFile(walDir + "/" + segmentName(5))[0..<8]), Array("LTWAL002".utf8))
        let (_, again, secondNote) = try WriteAheadLog.open(directory: walDir, segmentBytes: 4096)
        XCTAssertEqual(again.map(\.entry), old + [entry(5)])
        XCTAssertNil(secondNote)

        // An empty version 1 segment is simply replaced.
        let emptyDir = path("wal-empty")
        try FileManager.default.createDirectory(atPath: emptyDir, withIntermediateDirectories: true)
        writeFile(emptyDir + "/" + segmentName(7), WALFormat.segmentHeader(firstIndex: 7, version: 1) + [UInt8](repeating: 0, count: 4072))
        let (fresh, none, _) = try WriteAheadLog.open(directory: emptyDir, snapshotIndex: 6, segmentBytes: 4096)
        XCTAssertEqual(none, [])
        XCTAssertEqual(fileNames(emptyDir), [segmentName(7)])
        XCTAssertEqual(Array(readFile(emptyDir + "/" + segmentName(7))[0..<8]), Array("LTWAL002".utf8))
        XCTAssertEqual(try fresh.append([entry(7)]), 7)
    }

    func testDamageAtTheEndOfANonLastSegmentIsCorruption() throws {
        let walDir = path("wal")
        let entries = (1...100).map { [entry($0, count: 100)] }   // segments start at 1, 30, 59, 88
        try writeLog(walDir, entries)
        let lastOfFirst = frameOffsets(Array(entries[0..<29])).starts[28]
        for (what, damage) in [("bit flip", { (b: inout [UInt8]) in b[lastOfFirst + 50] ^= 1 }),
                               ("zero fill", { (b: inout [UInt8]) in for i in (lastOfFirst + 50)..<(lastOfFirst + 137) { b[i] = 0 } })] {
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
        try writeLog(walDir, (1...100).map { [entry($0, count: 100)] })   // segments 1, 30, 59, 88
        modifyFile(walDir + "/" + segmentName(1)) { $0[200] ^= 1 }        // damage where nothing is needed
        let entries = try WriteAheadLog.open(directory: walDir, snapshotIndex: 40, segmentBytes: 4096).entries
        XCTAssertEqual(entries.map(\.index), Array(41...100))
    }
}
