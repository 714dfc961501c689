import Foundation
import XCTest
@testable import LatticeStorage

// Shared helpers for the LatticeStorage tests: real files in a fresh temporary directory per test,
// removed afterwards, and byte-level access to those files for damaging them on purpose.

/// A fresh empty directory under the system temp dir; removed by `removeTemporaryDirectory`.
func makeTemporaryDirectory(_ name: String = #function) -> String {
    let safe = name.filter { $0.isLetter || $0.isNumber }
    var template = Array("\(NSTemporaryDirectory())/lattice-storage-\(safe)-XXXXXX".utf8CString)
    let path = template.withUnsafeMutableBufferPointer { buffer -> String in
        guard let result = mkdtemp(buffer.baseAddress!) else { fatalError("mkdtemp failed: \(errno)") }
        return String(cString: result)
    }
    return path
}

func removeTemporaryDirectory(_ path: String) {
    try? FileManager.default.removeItem(atPath: path)
}

/// A test case that gets a temporary directory in `dir` and removes it after the test.
class StorageTestCase: XCTestCase {
    var dir = ""

    override func setUp() {
        super.setUp()
        dir = makeTemporaryDirectory(name)
    }

    override func tearDown() {
        removeTemporaryDirectory(dir)
        super.tearDown()
    }

    func path(_ name: String) -> String { dir + "/" + name }
}

func readFile(_ path: String) -> [UInt8] {
    guard let data = FileManager.default.contents(atPath: path) else {
        XCTFail("cannot read \(path)")
        return []
    }
    return [UInt8](data)
}

func writeFile(_ path: String, _ bytes: [UInt8]) {
    XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: Data(bytes)), "cannot write \(path)")
}

/// Applies `change` to the bytes of the file at `path` in place (its length may change).
func modifyFile(_ path: String, _ change: (inout [UInt8]) -> Void) {
    var bytes = readFile(path)
    change(&bytes)
    writeFile(path, bytes)
}

func fileSize(_ path: String) -> Int {
    (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? -1
}

func fileNames(_ directory: String) -> [String] {
    ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).sorted()
}

/// A payload of `count` bytes that is different for every `seed` and contains no zero byte, so
/// zeroed regions in tests are unambiguous.
func payload(_ seed: Int, count: Int) -> [UInt8] {
    (0..<count).map { UInt8(truncatingIfNeeded: (seed &* 131 &+ $0 &* 7) % 255 + 1) }
}

func entry(_ seed: Int, count: Int = 20, type: UInt8 = 1) -> WALEntry {
    WALEntry(type: type, payload: payload(seed, count: count))
}

/// Byte offset of each record in a version 1 segment that holds `entries` from its start.
func recordOffsetsVersion1(_ entries: [WALEntry]) -> [Int] {
    var offsets: [Int] = []
    var offset = WALFormat.segmentHeaderBytes
    for entry in entries {
        offsets.append(offset)
        offset += WALFormat.recordHeaderBytes + entry.payload.count
    }
    return offsets
}

/// Byte offset of each batch frame in a segment that holds `batches` (one append each) from its
/// start, and the offset just past the last one.
func frameOffsets(_ batches: [[WALEntry]]) -> (starts: [Int], end: Int) {
    var starts: [Int] = []
    var offset = WALFormat.segmentHeaderBytes
    for batch in batches {
        starts.append(offset)
        offset += WALFormat.framedBytes(batch)
    }
    return (starts, offset)
}

func segmentName(_ firstIndex: UInt64) -> String { WALFormat.segmentName(firstIndex: firstIndex) }

/// Asserts that `body` throws a StorageError and returns it.
@discardableResult
func assertStorageError<T>(file: StaticString = #filePath, line: UInt = #line,
                           _ body: () throws -> T) -> StorageError? {
    do {
        _ = try body()
        XCTFail("expected a StorageError, nothing was thrown", file: file, line: line)
    } catch let error as StorageError {
        return error
    } catch {
        XCTFail("expected a StorageError, got \(error)", file: file, line: line)
    }
    return nil
}
