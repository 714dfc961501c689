import XCTest
@testable import LatticeStorage

final class CRC32CTests: XCTestCase {
    func testCheckValueOf123456789() {
        XCTAssertEqual(CRC32C.checksum(Array("123456789".utf8)), 0xE306_9283)
    }

    func testEmptyInputIsZero() {
        XCTAssertEqual(CRC32C.checksum([UInt8]()), 0)
    }

    /// RFC 3720 (iSCSI) appendix B.4 test vectors.
    func testRFC3720Vectors() {
        XCTAssertEqual(CRC32C.checksum([UInt8](repeating: 0, count: 32)), 0x8A91_36AA)
        XCTAssertEqual(CRC32C.checksum([UInt8](repeating: 0xFF, count: 32)), 0x62A8_AB43)
        XCTAssertEqual(CRC32C.checksum((0..<32).map { UInt8($0) }), 0x46DD_794E)
        XCTAssertEqual(CRC32C.checksum((0..<32).reversed().map { UInt8($0) }), 0x113F_DB5C)
    }

    func testSingleZeroByteIsNotZeroSoNoRecordLooksLikeTheEndMarker() {
        XCTAssertNotEqual(CRC32C.checksum([0]), 0)
    }

    /// Slicing-by-8 against the plain bit-at-a-time definition, for every length up to 80 and
    /// every start alignment, and chained updates against one pass.
    func testSlicingMatchesBitwiseReferenceAtEveryLengthAndAlignment() {
        let data = (0..<96).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ 11) }
        for start in 0..<8 {
            for length in 0...80 where start + length <= data.count {
                let slice = Array(data[start..<(start + length)])
                XCTAssertEqual(CRC32C.checksum(slice), bitwiseCRC32C(slice), "start \(start) length \(length)")
                let split = length / 3
                let chained = CRC32C.update(CRC32C.checksum(Array(slice[..<split])), Array(slice[split...]))
                XCTAssertEqual(chained, CRC32C.checksum(slice), "chained at \(split) of \(length)")
            }
        }
    }

    /// The CPU's instruction (where this machine has one) and the tables agree at every length
    /// and alignment, from a resumed register too.
    func testTheInstructionAndTheTablesAgree() throws {
        try XCTSkipUnless(CRC32C.hardware, "no CRC-32C instruction on this CPU")
        var generator = SystemRandomNumberGenerator()
        let data = (0..<4_200).map { _ in UInt8.random(in: 0...255, using: &generator) }
        data.withUnsafeBytes { all in
            for start in 0..<9 {
                for length in [0, 1, 7, 8, 9, 15, 16, 17, 63, 64, 65, 1_000, 4_096] where start + length <= all.count {
                    let slice = UnsafeRawBufferPointer(rebasing: all[start..<(start + length)])
                    XCTAssertEqual(CRC32C.update(0, slice), CRC32C.softwareUpdate(0, slice), "start \(start) length \(length)")
                    XCTAssertEqual(CRC32C.update(0x1234_5678, slice), CRC32C.softwareUpdate(0x1234_5678, slice))
                }
            }
        }
    }

    private func bitwiseCRC32C(_ bytes: [UInt8]) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in bytes {
            crc ^= UInt32(byte)
            for _ in 0..<8 { crc = (crc & 1) != 0 ? (crc >> 1) ^ 0x82F6_3B78 : crc >> 1 }
        }
        return ~crc
    }
}
