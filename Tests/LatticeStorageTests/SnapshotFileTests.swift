import XCTest
@testable import LatticeStorage

final class SnapshotFileTests: StorageTestCase {
    func testSaveThenLoadRoundTrip() throws {
        let bytes = payload(1, count: 10_000)
        try SnapshotFile.save(directory: dir, index: 42, bytes: bytes)
        XCTAssertEqual(fileNames(dir), ["snap-000000000000002a.snap"])
        XCTAssertEqual(fileSize(path("snap-000000000000002a.snap")), 40 + 10_000)
        let (snapshot, note) = try SnapshotFile.loadNewest(directory: dir)
        XCTAssertEqual(snapshot, Snapshot(index: 42, bytes: bytes))
        XCTAssertNil(note)
    }

    func testHeaderLayout() throws {
        try SnapshotFile.save(directory: dir, index: 0x0102, bytes: [9, 8, 7])
        let file = readFile(path("snap-0000000000000102.snap"))
        XCTAssertEqual(Array(file[0..<8]), Array("LTSNAP01".utf8))
        XCTAssertEqual(Array(file[8..<16]), [2, 0, 0, 0, 0, 0, 0, 0], "version 2, flags 0")
        XCTAssertEqual(Array(file[16..<24]), [2, 1, 0, 0, 0, 0, 0, 0])
        XCTAssertEqual(Array(file[24..<32]), [3, 0, 0, 0, 0, 0, 0, 0])
        let payloadCRC = CRC32C.checksum([9, 8, 7])
        XCTAssertEqual(file[32..<36].withUnsafeBytes { $0.loadLE32(0) }, payloadCRC)
        XCTAssertEqual(file[36..<40].withUnsafeBytes { $0.loadLE32(0) }, CRC32C.checksum(Array(file[0..<36])))
        XCTAssertEqual(Array(file[40...]), [9, 8, 7])
    }

    func testEmptyPayloadAndMissingDirectory() throws {
        try SnapshotFile.save(directory: dir, index: 1, bytes: [])
        XCTAssertEqual(try SnapshotFile.loadNewest(directory: dir).snapshot, Snapshot(index: 1, bytes: []))
        let (none, note) = try SnapshotFile.loadNewest(directory: path("missing"))
        XCTAssertNil(none)
        XCTAssertNil(note)
        XCTAssertNil(try SnapshotFile.loadNewest(directory: path("missing")).snapshot)
    }

    func testNewestByIndexIsLoadedNotNewestByName() throws {
        for index: UInt64 in [9, 0x10, 3] { try SnapshotFile.save(directory: dir, index: index, bytes: payload(Int(index), count: 10)) }
        XCTAssertEqual(try SnapshotFile.loadNewest(directory: dir).snapshot?.index, 0x10)
        XCTAssertEqual(try SnapshotFile.indexes(directory: dir), [3, 9, 0x10])
    }

    func testSavingTheSameIndexAgainReplacesIt() throws {
        try SnapshotFile.save(directory: dir, index: 5, bytes: [1])
        try SnapshotFile.save(directory: dir, index: 5, bytes: [2, 2])
        XCTAssertEqual(try SnapshotFile.loadNewest(directory: dir).snapshot, Snapshot(index: 5, bytes: [2, 2]))
        XCTAssertEqual(fileNames(dir), ["snap-0000000000000005.snap"])
    }

    func testDamagedNewestSnapshotFallsBackToThePreviousOne() throws {
        let older = payload(1, count: 3000)
        try SnapshotFile.save(directory: dir, index: 10, bytes: older)
        try SnapshotFile.save(directory: dir, index: 20, bytes: payload(2, count: 3000))
        let newest = path("snap-0000000000000014.snap")
        modifyFile(newest) { $0[1234] ^= 0x01 }

        let (snapshot, note) = try SnapshotFile.loadNewest(directory: dir)
        XCTAssertEqual(snapshot, Snapshot(index: 10, bytes: older))
        XCTAssertTrue(note?.contains("\(newest) is damaged (payload checksum mismatch") ?? false, note ?? "no note")
        XCTAssertEqual(fileNames(dir), ["snap-000000000000000a.snap", "snap-0000000000000014.snap.broken"])
        // Pruning afterwards cannot pick the damaged one over the good one.
        try SnapshotFile.prune(directory: dir, keep: 1)
        XCTAssertEqual(try SnapshotFile.loadNewest(directory: dir).snapshot?.index, 10)
    }

    func testEveryKindOfDamageIsDetected() throws {
        let damages: [(String, (inout [UInt8]) -> Void, String)] = [
            ("truncated payload", { $0.removeLast() }, "but the header says"),
            ("extra bytes", { $0.append(0) }, "but the header says"),
            ("shorter than header", { $0.removeLast($0.count - 39) }, "shorter than the 40-byte header"),
            ("magic", { $0[0] ^= 1 }, "bad magic"),
            ("index field", { $0[16] ^= 1 }, "header checksum mismatch"),
            ("length field", { $0[24] ^= 1 }, "header checksum mismatch"),
            ("payload checksum field", { $0[33] ^= 1 }, "header checksum mismatch"),
            ("payload", { $0[40] ^= 0x80 }, "payload checksum mismatch"),
        ]
        for (what, damage, expected) in damages {
            let snapDir = path("snap-\(what.filter(\.isLetter))")
            XCTAssertEqual(mkdir(snapDir, 0o700), 0)
            try SnapshotFile.save(directory: snapDir, index: 7, bytes: payload(7, count: 100))
            modifyFile(snapDir + "/snap-0000000000000007.snap", damage)
            let (snapshot, note) = try SnapshotFile.loadNewest(directory: snapDir)
            XCTAssertNil(snapshot, what)
            XCTAssertTrue(note?.contains(expected) ?? false, "\(what): \(note ?? "no note")")
        }
    }

    func testSnapshotWhoseHeaderNamesAnotherIndexIsDamaged() throws {
        try SnapshotFile.save(directory: dir, index: 7, bytes: [1, 2, 3])
        try FileManager.default.moveItem(atPath: path("snap-0000000000000007.snap"), toPath: path("snap-0000000000000008.snap"))
        let (snapshot, note) = try SnapshotFile.loadNewest(directory: dir)
        XCTAssertNil(snapshot)
        XCTAssertTrue(note?.contains("its header says index 7") ?? false, note ?? "no note")
    }

    func testUnknownFormatVersionStopsRatherThanFallingBack() throws {
        try SnapshotFile.save(directory: dir, index: 1, bytes: [1])
        try SnapshotFile.save(directory: dir, index: 2, bytes: [2])
        modifyFile(path("snap-0000000000000002.snap")) { bytes in
            bytes[8] = 3
            let crc = CRC32C.checksum(Array(bytes[0..<36]))
            withUnsafeBytes(of: crc.littleEndian) { for i in 0..<4 { bytes[36 + i] = $0[i] } }
        }
        let error = assertStorageError { try SnapshotFile.loadNewest(directory: dir) }
        XCTAssertTrue(error?.message.contains("format version 3") ?? false, error?.message ?? "")
    }

    func testLeftoverTemporaryFilesAreRemovedOnLoad() throws {
        try SnapshotFile.save(directory: dir, index: 1, bytes: [1])
        writeFile(path("snap-0000000000000002.snap.tmp"), [1, 2, 3])
        XCTAssertEqual(try SnapshotFile.loadNewest(directory: dir).snapshot?.index, 1)
        XCTAssertEqual(fileNames(dir), ["snap-0000000000000001.snap"])
    }

    func testPruneKeepsTheNewest() throws {
        for index: UInt64 in 1...5 { try SnapshotFile.save(directory: dir, index: index, bytes: [UInt8(index)]) }
        writeFile(path("unrelated"), [1])
        try SnapshotFile.prune(directory: dir, keep: 2)
        XCTAssertEqual(fileNames(dir), ["snap-0000000000000004.snap", "snap-0000000000000005.snap", "unrelated"])
        try SnapshotFile.prune(directory: dir, keep: 5)
        XCTAssertEqual(try SnapshotFile.indexes(directory: dir), [4, 5])
        XCTAssertEqual(assertStorageError { try SnapshotFile.prune(directory: dir, keep: 0) }?.kind, .invalidArgument)
    }

    func testSaveIntoAMissingDirectoryNamesIt() {
        let error = assertStorageError { try SnapshotFile.save(directory: path("missing"), index: 1, bytes: [1]) }
        XCTAssertEqual(error?.kind, .io(errno: ENOENT))
        XCTAssertTrue(error?.message.contains(path("missing/snap-0000000000000001.snap.tmp")) ?? false, error?.message ?? "")
    }
}
