import XCTest
@testable import LatticeStorage

final class LargeBufferTests: XCTestCase {
    /// A released buffer is empty, and another owner of the same storage keeps every byte (its
    /// pages are not the ones given back).
    func testAReleasedBufferIsEmptyAndAnotherOwnerKeepsItsBytes() {
        let count = LargeBuffer.gradualReleaseBytes + 12_345
        var bytes = [UInt8](repeating: 0, count: count)
        for i in stride(from: 0, to: count, by: 4_096) { bytes[i] = UInt8(truncatingIfNeeded: i / 4_096 &+ 1) }
        let other = bytes
        LargeBuffer.release(&bytes)
        XCTAssertTrue(bytes.isEmpty)
        XCTAssertEqual(other.count, count)
        for i in stride(from: 0, to: count, by: 4_096) {
            XCTAssertEqual(other[i], UInt8(truncatingIfNeeded: i / 4_096 &+ 1), "byte \(i)")
        }
        var small: [UInt8] = [1, 2, 3]
        LargeBuffer.release(&small)
        XCTAssertTrue(small.isEmpty)
    }
}
