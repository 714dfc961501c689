@testable import LatticeCore
import LatticeTestSupport
import XCTest

/// `CompactArray` holds the per-key histories of the replica and the index: it must behave as
/// an `[Element]` in every respect, and a single element must cost no allocation.
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

    func testShrinkingToOneElementHoldsItInlineAgain() {
        var compact: CompactArray<Int> = [1, 2, 3]
        compact = CompactArray(compact.suffix(1))
        guard case .one = compact.storage else { return XCTFail("one element is held inline") }
        compact.append(4)
        guard case .many = compact.storage else { return XCTFail("two elements are an array") }
    }

    /// Appending to (and setting in) an array held by one `CompactArray` changes it in place:
    /// its buffer moves only when it grows, not at every append as it would if each change
    /// copied it.
    func testAppendingToAUniquelyHeldArrayDoesNotCopyIt() {
        var compact = CompactArray<Int>()
        var moves = 0
        var base: UnsafePointer<Int>?
        for n in 0..<1_000 {
            compact.append(n)
            compact[0] = n
            let now = compact.array.withUnsafeBufferPointer { $0.baseAddress }
            if now != base { moves += 1 }
            base = now
        }
        XCTAssertLessThan(moves, 30, "the buffer moved \(moves) times in 1,000 appends")
        XCTAssertEqual(Array(compact), [999] + Array(1..<1_000))
    }

    /// The point of the type: a key with one version (the norm) costs no allocation, and the
    /// type is no larger than the version itself (the case lives in the version's spare bits).
    func testOneVersionIsHeldInlineWithoutATagByte() {
        XCTAssertEqual(MemoryLayout<CompactArray<KeyVersion>>.size, MemoryLayout<KeyVersion>.size)
        XCTAssertEqual(MemoryLayout<CompactArray<Int>>.size, MemoryLayout<Int>.size + 1,
                       "a type without spare bits needs a tag byte (so the check above can fail)")
        let version = KeyVersion(dot: Dot(member: 1, seq: 1), hlc: .zero, value: [1], lease: 0, parents: [])
        let compact: CompactArray<KeyVersion> = [version]
        guard case .one(let held) = compact.storage else { return XCTFail("one element is held inline") }
        XCTAssertEqual(held, version)
    }
}

extension Int: CompactArrayElement {
    public enum CompactStorage: CompactArrayStorage {
        case empty
        case one(Int)
        case many([Int])

        public var cases: CompactArrayCases<Int> {
            switch self {
            case .empty: return .empty
            case .one(let n): return .one(n)
            case .many(let a): return .many(a)
            }
        }
    }
}
