import Foundation
import XCTest
@testable import LatticeStorage

final class DataDirectoryTests: StorageTestCase {
    func testCreatesWalAndSnapWithOwnerOnlyMode() throws {
        let dataDir = path("a/b/data")
        let directory = try DataDirectory.open(dataDir)
        XCTAssertEqual(directory.walPath, dataDir + "/wal")
        XCTAssertEqual(directory.snapPath, dataDir + "/snap")
        for sub in ["", "/wal", "/snap"] {
            var info = stat()
            XCTAssertEqual(stat(dataDir + sub, &info), 0)
            XCTAssertEqual(info.st_mode & 0o777, 0o700, "mode of \(dataDir + sub)")
        }
        XCTAssertEqual(String(decoding: readFile(dataDir + "/lock"), as: UTF8.self), "\(getpid())\n")
        directory.close()
    }

    func testASecondOpenerFailsFastWithAClearMessage() throws {
        let dataDir = path("data")
        let first = try DataDirectory.open(dataDir)
        // flock locks belong to an open file description, so this process's second open conflicts.
        let error = assertStorageError { try DataDirectory.open(dataDir) }
        XCTAssertEqual(error?.kind, .dataDirectoryInUse)
        XCTAssertEqual(error?.message,
                       "data directory \(dataDir) is in use by another lattice process (lock file \(dataDir)/lock)")
        first.close()
        XCTAssertNoThrow(try DataDirectory.open(dataDir).close(), "closing releases the lock")
    }

    func testTheLockExcludesAnotherProcess() throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/flock") else {
            throw XCTSkip("/usr/bin/flock is not installed (util-linux)")
        }
        let dataDir = path("data")
        var directory: DataDirectory? = try DataDirectory.open(dataDir)
        XCTAssertEqual(try flockInChild(dataDir + "/lock"), 1, "flock -n fails while lattice holds the lock")
        directory?.close()
        directory = nil
        XCTAssertEqual(try flockInChild(dataDir + "/lock"), 0, "and succeeds once it is released")
    }

    func testTheLockIsReleasedWhenTheObjectGoesAway() throws {
        let dataDir = path("data")
        do { _ = try DataDirectory.open(dataDir) }
        XCTAssertNoThrow(try DataDirectory.open(dataDir))
    }

    func testAFileInTheWayIsAnError() throws {
        writeFile(path("data"), [1])
        let error = assertStorageError { try DataDirectory.open(path("data/sub")) }
        XCTAssertEqual(error?.kind, .io(errno: ENOTDIR))
    }

    /// Exit status of `flock -n <lock> true` in a child process.
    private func flockInChild(_ lockPath: String) throws -> Int32 {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/flock")
        process.arguments = ["-n", lockPath, "true"]
        try process.run()
        process.waitUntilExit()
        return process.terminationStatus
    }
}
