import Foundation
import Synchronization
import XCTest
@testable import LatticeStore

/// The store's readers–writer lock lets a waiting writer in even while readers keep
/// overlapping (a reader-preferring lock starves the writer for as long as they do).
final class RWLockTests: XCTestCase {
    func testAWriterGetsInWhileReadersKeepOverlapping() {
        let lock = RWLock()
        let stop = Atomic<Bool>(false)
        let reading = Atomic<Int>(0)
        let readersDone = DispatchGroup()
        for _ in 0..<3 {
            readersDone.enter()
            Thread.detachNewThread {
                reading.add(1, ordering: .relaxed)
                while !stop.load(ordering: .relaxed) {
                    lock.withReadLock { usleep(2_000) }
                }
                readersDone.leave()
            }
        }
        while reading.load(ordering: .relaxed) < 3 { sched_yield() }
        let wrote = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            lock.withWriteLock {}
            wrote.signal()
        }
        let result = wrote.wait(timeout: .now() + 5)
        stop.store(true, ordering: .relaxed)
        readersDone.wait()
        XCTAssertEqual(result, .success, "the writer waited more than 5 s behind overlapping readers")
    }
}
