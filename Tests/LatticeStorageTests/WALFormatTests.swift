import XCTest
@testable import LatticeStorage

/// The byte layout of segments and records (docs/storage.md), read back by the scanner from
/// memory, without files.
final class WALFormatTests: XCTestCase {
    func testRecordLayoutIsLengthCrcTypePayloadLittleEndian() {
        var bytes: [UInt8] = []
        WALFormat.appendRecord(WALEntry(type: 7, payload: [0xAA, 0xBB, 0xCC]), to: &bytes)
        let crc = CRC32C.checksum([7, 0xAA, 0xBB, 0xCC])
        XCTAssertEqual(bytes, [3, 0, 0, 0,
                               UInt8(crc & 0xff), UInt8((crc >> 8) & 0xff), UInt8((crc >> 16) & 0xff), UInt8(crc >> 24),
                               7, 0xAA, 0xBB, 0xCC])
    }

    func testSegmentHeaderLayout() {
        let header = WALFormat.segmentHeader(firstIndex: 0x0102_0304_0506_0708)
        XCTAssertEqual(header.count, 24)
        XCTAssertEqual(Array(header[0..<8]), Array("LTWAL002".utf8))
        XCTAssertEqual(Array(header[8..<16]), [8, 7, 6, 5, 4, 3, 2, 1])
        let crc = CRC32C.checksum(Array(header[0..<16]))
        XCTAssertEqual(Array(header[16..<20]), [UInt8(crc & 0xff), UInt8((crc >> 8) & 0xff),
                                                UInt8((crc >> 16) & 0xff), UInt8(crc >> 24)])
        XCTAssertEqual(Array(header[20..<24]), [0, 0, 0, 0])
        XCTAssertEqual(header.withUnsafeBytes { try? WALFormat.parseSegmentHeader($0).get() }, 0x0102_0304_0506_0708)
        let old = WALFormat.segmentHeader(firstIndex: 9, version: 1)
        XCTAssertEqual(Array(old[0..<8]), Array("LTWAL001".utf8))
        XCTAssertEqual(old.withUnsafeBytes { try? WALFormat.parseSegmentHeaderAndVersion($0).get().version }, 1)
        XCTAssertEqual(header.withUnsafeBytes { try? WALFormat.parseSegmentHeaderAndVersion($0).get().version }, 2)
    }

    func testBatchFrameLayout() {
        let entries = [WALEntry(type: 7, payload: [0xAA, 0xBB, 0xCC]), WALEntry(type: 1, payload: [])]
        var frame: [UInt8] = []
        WALFormat.appendFrame(entries, fileOffset: 24, to: &frame)
        var body: [UInt8] = []
        for e in entries { WALFormat.appendRecord(e, to: &body) }
        XCTAssertEqual(frame.count, 28 + body.count)
        XCTAssertEqual(Array(frame[0..<4]), Array("LTBF".utf8))
        XCTAssertEqual(Array(frame[4..<8]), [2, 0, 0, 0], "record count")
        XCTAssertEqual(Array(frame[8..<16]), [UInt8(body.count), 0, 0, 0, 0, 0, 0, 0], "body length")
        XCTAssertEqual(Array(frame[16..<20]), [0, 0, 0, 0], "no sector of this body is all zeros")
        XCTAssertEqual(Array(frame[20..<24]), le(CRC32C.checksum(body)))
        XCTAssertEqual(Array(frame[24..<28]), le(CRC32C.checksum(Array(frame[0..<24]))))
        XCTAssertEqual(Array(frame[28...]), body)
    }

    /// The count depends on where the body lands: sectors are the file's.
    func testZeroSectorCountCountsTheBodysShareOfEachFileSector() {
        var body = [UInt8](repeating: 0, count: 1500)
        let count = { (offset: Int) in body.withUnsafeBytes { WALFormat.zeroSectorCount($0, fileOffset: offset) } }
        XCTAssertEqual(count(0), 3, "sectors 0, 1 and the first 476 bytes of 2")
        XCTAssertEqual(count(100), 4, "412 bytes of sector 0, sectors 1 and 2, 64 bytes of sector 3")
        body[600] = 1
        XCTAssertEqual(count(0), 2)
        XCTAssertEqual(count(100), 3, "file offset 700 is in sector 1")
        body[1499] = 1
        XCTAssertEqual(count(100), 2)
    }

    func testVersion1SegmentsAreReadAsBareRecords() {
        let entries = [entry(1), entry(2, count: 700), entry(3)]
        let scan = scanSegment(entries, firstIndex: 5, padTo: 4096, version: 1)
        XCTAssertNil(scan.damage)
        XCTAssertEqual(scan.records.map(\.entry), entries)
        XCTAssertEqual(scan.records.map(\.index), [5, 6, 7])
        XCTAssertEqual(scan.end, recordOffsetsVersion1(entries).last! + 9 + 20)
    }

    func testSegmentNamesAreSixteenHexDigitsOfTheFirstIndex() {
        XCTAssertEqual(WALFormat.segmentName(firstIndex: 1), "0000000000000001.wal")
        XCTAssertEqual(WALFormat.segmentName(firstIndex: 0xABCDEF), "0000000000abcdef.wal")
        XCTAssertEqual(WALFormat.firstIndex(ofSegmentName: "0000000000abcdef.wal"), 0xABCDEF)
        XCTAssertNil(WALFormat.firstIndex(ofSegmentName: "abcdef.wal"))
        XCTAssertNil(WALFormat.firstIndex(ofSegmentName: "0000000000abcdef.wal.tmp"))
        XCTAssertNil(WALFormat.firstIndex(ofSegmentName: "000000000000000g.wal"))
    }

    func testFramingRoundTripIncludingEmptyAndTypeZeroEntries() {
        let entries = [WALEntry(type: 0, payload: []), WALEntry(type: 255, payload: [0]),
                       WALEntry(type: 1, payload: payload(1, count: 1000)), WALEntry(type: 0, payload: [0, 0, 0])]
        let scan = scanSegment(entries, firstIndex: 41, padTo: 4096)
        XCTAssertNil(scan.damage)
        XCTAssertEqual(scan.count, 4)
        XCTAssertEqual(scan.records.map(\.index), [41, 42, 43, 44])
        XCTAssertEqual(scan.records.map(\.entry), entries)
        XCTAssertEqual(scan.end, WALFormat.segmentHeaderBytes + 28 + entries.reduce(0) { $0 + 9 + $1.payload.count })
    }

    func testScanKeepsOnlyEntriesAfterTheSnapshotIndex() {
        let scan = scanSegment((1...5).map { entry($0) }, firstIndex: 10, padTo: 1024, keepAfter: 12)
        XCTAssertEqual(scan.count, 5)
        XCTAssertEqual(scan.records.map(\.index), [13, 14])
    }

    func testSegmentEndingExactlyAfterTheLastRecordIsClean() {
        let scan = scanSegment([entry(1), entry(2)], firstIndex: 1, padTo: nil)
        XCTAssertNil(scan.damage)
        XCTAssertEqual(scan.count, 2)
    }

    func testLengthOverTheBoundIsDamageInAVersion1Segment() {
        var bytes = WALFormat.segmentHeader(firstIndex: 1, version: 1)
        bytes.appendLE(UInt32(WALFormat.maxPayloadBytes + 1))
        bytes.appendLE(UInt32(1))
        bytes.append(1)
        bytes += [UInt8](repeating: 0, count: 100)
        let scan = bytes.withUnsafeBytes { SegmentScanner.scan($0, firstIndex: 1, keepAfter: 0) }
        XCTAssertEqual(scan.count, 0)
        XCTAssertEqual(scan.damage?.offset, 24)
        XCTAssertTrue(scan.damage?.problem.contains("exceeds the 64 MiB bound") ?? false, "\(String(describing: scan.damage))")
    }

    func testOneFlippedLengthBitIsRecognisedByTheChecksum() {
        var bytes = segmentBytes([entry(1, count: 300), entry(2)], firstIndex: 1, padTo: 2048, version: 1)
        bytes[24 + 1] ^= 0x40  // length 300 → 300 + 0x4000
        let corrected = bytes.withUnsafeBytes { SegmentScanner.correctedLength($0, at: 24) }
        XCTAssertEqual(corrected, 300)
    }

    func testUnwrittenSectorDetection() {
        var bytes = [UInt8](repeating: 1, count: 2048)
        let check = { (range: Range<Int>) in bytes.withUnsafeBytes { SegmentScanner.hasUnwrittenSector($0, range) } }
        XCTAssertFalse(check(100..<2000))
        for i in 1024..<1100 { bytes[i] = 0 }  // zeros at a sector start, then data: not a tear
        XCTAssertFalse(check(100..<1100))
        XCTAssertFalse(check(100..<2000))
        for i in 1100..<1536 { bytes[i] = 0 }  // the whole sector 1024..<1536
        XCTAssertTrue(check(100..<2000))
        XCTAssertTrue(check(1030..<1031), "zero from the record start to the sector end")
        XCTAssertFalse(check(100..<1000), "the range must reach the sector")
        for i in 1900..<2048 { bytes[i] = 0 }  // the last, partial-file sector, from the record start
        XCTAssertTrue(check(1950..<2000))
        XCTAssertFalse(check(1800..<2000))
    }

    private func le(_ v: UInt32) -> [UInt8] { [UInt8(v & 0xff), UInt8((v >> 8) & 0xff), UInt8((v >> 16) & 0xff), UInt8(v >> 24)] }

    /// A segment holding `entries`: one batch frame (version 2) or bare records (version 1).
    private func segmentBytes(_ entries: [WALEntry], firstIndex: UInt64, padTo: Int?, version: Int = 2) -> [UInt8] {
        var bytes = WALFormat.segmentHeader(firstIndex: firstIndex, version: version)
        if version == 1 {
            for entry in entries { WALFormat.appendRecord(entry, to: &bytes) }
        } else {
            WALFormat.appendFrame(entries, fileOffset: bytes.count, to: &bytes)
        }
        if let padTo, bytes.count < padTo { bytes += [UInt8](repeating: 0, count: padTo - bytes.count) }
        return bytes
    }

    private func scanSegment(_ entries: [WALEntry], firstIndex: UInt64, padTo: Int?, keepAfter: UInt64 = 0,
                             version: Int = 2) -> SegmentScan {
        segmentBytes(entries, firstIndex: firstIndex, padTo: padTo, version: version).withUnsafeBytes {
            SegmentScanner.scan($0, firstIndex: firstIndex, keepAfter: keepAfter)
        }
    }
}
