@testable import LatticeCore
import LatticeTestSupport
import XCTest

/// glibc's size of an allocation (not exported by the Glibc module).
@_silgen_name("malloc_usable_size")
private func mallocUsableSize(_ pointer: UnsafeMutableRawPointer?) -> Int

/// `CompactArray` holds the per-key histories of the replica and the index: it must behave as
/// an `[Element]` in every respect, and a single element must cost less than an array buffer.
final class CompactArrayTests: XCTestCase {
    func testBehavesLikeAnArrayThroughRandomEdits() {
        var rng = SplitMix64(seed: 0xC0FFEE)
        var compact = CompactArray<Int>()
        var model: [Int] = []
        var copies: [(CompactArray<Int>, [Int])] = []
        for step in 0..<20_000 {
            switch rng.int(0...5) {
            case 0, 1:
                let x = rng.int(0...1_000)
                compact.append(x)
                model.append(x)
            case 2 where !model.isEmpty:
                let i = rng.int(0...(model.count - 1))
                let x = rng.int(0...1_000)
                compact[i] = x
                model[i] = x
            case 3:
                // Rebuilt from an array of 0, 1 or several elements (a trim, a decode).
                let n = rng.int(0...3)
                model = Array(model.suffix(n))
                compact = CompactArray(model)
            case 4:
                // A copy keeps its value whatever happens to the original afterwards.
                copies.append((compact, model))
                if copies.count > 8 { copies.removeFirst() }
            default:
                break
            }
            XCTAssertEqual(Array(compact), model, "step \(step)")
            XCTAssertEqual(compact.count, model.count)
            XCTAssertEqual(compact.isEmpty, model.isEmpty)
            XCTAssertEqual(compact.first, model.first)
            XCTAssertEqual(compact.last, model.last)
            XCTAssertEqual(compact.array, model)
            for (copy, expected) in copies { XCTAssertEqual(Array(copy), expected, "step \(step)") }
        }
    }

    func testShrinkingToOneElementBoxesItAgain() {
        var compact: CompactArray<Int> = [1, 2, 3]
        compact = CompactArray(compact.suffix(1))
        guard case .one = compact.storage else { return XCTFail("one element is held in a box") }
        compact.append(4)
        guard case .many = compact.storage else { return XCTFail("two elements are an array") }
    }

    /// The point of the type: a key with one version (the norm) is a smaller allocation than an
    /// array of one version, and the type is no larger than an array reference.
    func testOneVersionCostsLessThanAnArrayOfOne() {
        XCTAssertEqual(MemoryLayout<CompactArray<KeyVersion>>.size, MemoryLayout<[KeyVersion]>.size)
        let version = KeyVersion(dot: Dot(member: 1, seq: 1), hlc: .zero, value: [1], lease: 0, parents: [])
        let compact: CompactArray<KeyVersion> = [version]
        guard case .one(let box) = compact.storage else { return XCTFail("one element is held in a box") }
        let boxBytes = mallocUsableSize(Unmanaged.passUnretained(box).toOpaque())
        // An array buffer of one element: a 32-byte header and the element.
        let arrayBufferBytes = 32 + MemoryLayout<KeyVersion>.stride
        XCTAssertLessThan(boxBytes, arrayBufferBytes)
    }
}
