import XCTest
import Dispatch
import Foundation
import EtcdAPI
import LatticeStore
import LatticeCore

/// A value shared by the worker threads of one test.
/// @unchecked Sendable: every access goes through `lock`.
private final class Locked<Value>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Value

    init(_ value: Value) { self.value = value }

    func mutate(_ body: (inout Value) -> Void) {
        lock.lock()
        defer { lock.unlock() }
        body(&value)
    }

    var current: Value {
        lock.lock()
        defer { lock.unlock() }
        return value
    }
}

/// Many threads at once: one writer at a time, readers never see a half-applied write.
final class ConcurrencyTests: XCTestCase {
    func testConcurrentPutsAndRangesKeepRevisionsDenseAndReadsConsistent() throws {
        let store = makeStore()
        let writers = 4
        let putsPerWriter = 150
        let readers = 3
        let readsPerReader = 150
        let writtenRevisions = Locked<[[Int64]]>([])
        let problems = Locked<[String]>([])
        let prefix = b("c/")

        DispatchQueue.concurrentPerform(iterations: writers + readers) { worker in
            func report(_ message: String) { problems.mutate { $0.append("worker \(worker): \(message)") } }
            if worker < writers {
                var revisions: [Int64] = []
                for i in 0..<putsPerWriter {
                    do {
                        revisions.append(try store.put("c/w\(worker)/\(1000 + i)", "\(i)"))
                    } catch {
                        report("put failed: \(error)")
                    }
                }
                writtenRevisions.mutate { $0.append(revisions) }
                return
            }
            for i in 0..<readsPerReader {
                do {
                    // Every put creates a new key, so the snapshot at revision R holds exactly the
                    // R − 1 keys written at revisions 2...R.
                    let response = try store.range(RangeRequest(key: prefix, rangeEnd: prefixEnd(prefix)))
                    let revision = response.header!.revision
                    if response.kvs.count != Int(revision - 1) || response.count != revision - 1 {
                        report("at revision \(revision) saw \(response.kvs.count) keys, count \(response.count)")
                    }
                    let expectedMods: Set<Int64> = revision >= 2 ? Set(2...revision) : []
                    if Set(response.kvs.map(\.modRevision)) != expectedMods {
                        report("at revision \(revision) mod revisions are not exactly 2...\(revision)")
                    }
                    // Each writer writes its keys in order: what a reader sees is a prefix of them.
                    for w in 0..<writers {
                        let values = response.kvs.filter { $0.key.starts(with: b("c/w\(w)/")) }.map { Int($0.valueString)! }
                        if values != Array(0..<values.count) {
                            report("writer \(w)'s keys seen out of order at revision \(revision)")
                        }
                    }
                    // A historical read of the same range is just as consistent.
                    let past = max(1, revision - Int64(i % 7))
                    let old = try store.range(RangeRequest(key: prefix, rangeEnd: prefixEnd(prefix), revision: past))
                    if old.kvs.count != Int(past - 1) || old.kvs.contains(where: { $0.modRevision > past }) {
                        report("historical read at \(past) saw \(old.kvs.count) keys")
                    }
                } catch {
                    report("range failed: \(error)")
                }
            }
        }

        XCTAssertEqual(problems.current, [])
        let perWriter = writtenRevisions.current
        XCTAssertEqual(perWriter.count, writers)
        for revisions in perWriter {
            XCTAssertEqual(revisions, revisions.sorted(), "one writer's revisions increase")
        }
        let all = perWriter.flatMap { $0 }.sorted()
        let total = writers * putsPerWriter
        XCTAssertEqual(all, Array(2...Int64(1 + total)), "revisions are dense and each is used once")
        XCTAssertEqual(store.currentRevision, Int64(1 + total))
        XCTAssertEqual(try store.range(RangeRequest(key: prefix, rangeEnd: prefixEnd(prefix))).count, Int64(total))
    }

    func testConcurrentCompareAndSwapIncrementsLoseNoUpdate() throws {
        let store = makeStore()
        try store.put("counter", "0")                              // 2
        let threads = 4
        let incrementsPerThread = 50
        let problems = Locked<[String]>([])

        DispatchQueue.concurrentPerform(iterations: threads) { _ in
            var done = 0
            while done < incrementsPerThread {
                do {
                    let current = try store.get("counter")!
                    let next = Int(current.valueString)! + 1
                    let response = try store.txn(TxnRequest(compare: [.mod("counter", .equal, current.modRevision)],
                                                             success: [.put("counter", "\(next)")],
                                                             failure: [.range("counter")]))
                    if response.succeeded { done += 1 }
                } catch {
                    problems.mutate { $0.append("\(error)") }
                    return
                }
            }
        }

        XCTAssertEqual(problems.current, [])
        let total = threads * incrementsPerThread
        let kv = try XCTUnwrap(store.get("counter"))
        XCTAssertEqual(kv.valueString, "\(total)")
        XCTAssertEqual(kv.version, Int64(total + 1))
        XCTAssertEqual(store.currentRevision, Int64(2 + total), "failed compares never bump the revision")
    }

    func testConcurrentCreatesOfOneKeyHaveExactlyOneWinner() throws {
        let store = makeStore()
        let contenders = 8
        let winners = Locked<[Int]>([])
        let losersSawWinner = Locked(0)

        DispatchQueue.concurrentPerform(iterations: contenders) { worker in
            guard let response = try? store.txn(TxnRequest(compare: [.mod("/registry/leases/leader", .equal, 0)],
                                                           success: [.put("/registry/leases/leader", "\(worker)")],
                                                           failure: [.range("/registry/leases/leader")])) else { return }
            if response.succeeded {
                winners.mutate { $0.append(worker) }
            } else if response.responses.first?.range?.kvs.count == 1 {
                losersSawWinner.mutate { $0 += 1 }
            }
        }

        XCTAssertEqual(winners.current.count, 1)
        XCTAssertEqual(losersSawWinner.current, contenders - 1)
        XCTAssertEqual(try store.get("/registry/leases/leader")?.valueString, "\(winners.current[0])")
        XCTAssertEqual(store.currentRevision, 2)
    }
}

/// Permission checks made when a request arrives hold when the writer evaluates it: the keys
/// attached to a lease are checked by the writer, on the keys it finds then (a key attached
/// while the request waited in the writer's queue is checked too), and a request checked before
/// an auth change evaluated after it is refused as etcd refuses it ("revision of auth store is
/// old"; etcd's clients take a new token and retry).
final class LeaseKeyCheckTests: XCTestCase {
    /// A store whose writer can be held inside a batch, so requests queue up behind it.
    private final class HeldWriter: @unchecked Sendable {
        // @unchecked: the semaphores are thread-safe, `armed` is read and written under `holding`,
        // and `store` is set once, in `init`.
        let hold = DispatchSemaphore(value: 0)
        let entered = DispatchSemaphore(value: 0)
        private let holding = NSLock()
        private var armed = false
        var store: MVCCStore!

        init() throws {
            var c = MVCCStore.Configuration(memberID: 1, clusterID: 2)
            c.willAppendBatch = { [unowned self] in
                holding.lock()
                let wait = armed
                armed = false
                holding.unlock()
                if wait {
                    entered.signal()
                    hold.wait()
                }
            }
            store = try MVCCStore(configuration: c)
        }

        /// Runs a put and holds the writer inside its batch until `release`.
        func holdWriter() {
            holding.lock()
            armed = true
            holding.unlock()
            store.put(PutRequest(key: b("unrelated"), value: b("x"))) { _ in }
            entered.wait()
        }

        func release() { hold.signal() }
    }

    private func result<R: Sendable>(_ start: (@escaping @Sendable (Result<R, EtcdError>) -> Void) -> Void) -> () -> Result<R, EtcdError> {
        let done = DispatchSemaphore(value: 0)
        let box = NSLock()
        nonisolated(unsafe) var value: Result<R, EtcdError>?
        start { r in
            box.lock(); value = r; box.unlock()
            done.signal()
        }
        return {
            done.wait()
            box.lock(); defer { box.unlock() }
            return value!
        }
    }

    /// A caller allowed to write only `/a`: the writer asks about every key the lease holds.
    private let onlyA: MVCCStore.KeysAllowed = { (keys: [[UInt8]]) throws(EtcdError) in
        for key in keys where key != b("/a") { throw .permissionDenied }
    }

    /// A lease holding `/a`, and the writer held with another client's attach of `/b` to it
    /// queued: the request a test queues next is evaluated after that attach.
    private func leaseWithAnAttachQueued() throws -> (w: HeldWriter, lease: Int64, attached: () -> Result<PutResponse, EtcdError>) {
        let w = try HeldWriter()
        let lease = try w.store.leaseGrant(LeaseGrantRequest(ttl: 60)).id
        _ = try w.store.put(PutRequest(key: b("/a"), value: b("1"), lease: lease))
        w.holdWriter()
        let attached = result { w.store.put(PutRequest(key: b("/b"), value: b("2"), lease: lease), completion: $0) }
        return (w, lease, attached)
    }

    func testARevocationIsCheckedOnTheKeysAttachedWhileItWaited() throws {
        let (w, lease, attached) = try leaseWithAnAttachQueued()
        defer { w.store.close() }
        let revoked = result { w.store.leaseRevoke(LeaseRevokeRequest(id: lease), keysAllowed: onlyA, completion: $0) }
        w.release()
        XCTAssertNoThrow(try attached().get())
        XCTAssertEqual(revoked().error, .permissionDenied, "/b was attached before the revocation was evaluated")
        XCTAssertEqual(try w.store.range(RangeRequest(key: b("/"), rangeEnd: b("0"))).kvs.map(\.key), [b("/a"), b("/b")],
                       "nothing was deleted")
        XCTAssertNoThrow(try w.store.leaseRevoke(LeaseRevokeRequest(id: lease)), "the lease is still there")
    }

    func testAPutWithALeaseIsCheckedOnTheKeysAttachedWhileItWaited() throws {
        let (w, lease, attached) = try leaseWithAnAttachQueued()
        defer { w.store.close() }
        let put = result { w.store.put(PutRequest(key: b("/a"), value: b("3"), lease: lease), leaseKeysAllowed: onlyA, completion: $0) }
        w.release()
        XCTAssertNoThrow(try attached().get())
        XCTAssertEqual(put().error, .permissionDenied, "/b was attached before the put was evaluated")
        XCTAssertEqual(try w.store.range(RangeRequest(key: b("/a"))).kvs.first?.value, b("1"))
        // With only /a on the lease, the same caller may attach to it.
        let fresh = try w.store.leaseGrant(LeaseGrantRequest(ttl: 60)).id
        _ = try w.store.put(PutRequest(key: b("/a"), value: b("4"), lease: fresh))
        let allowed = result { w.store.put(PutRequest(key: b("/a"), value: b("5"), lease: fresh), leaseKeysAllowed: onlyA, completion: $0) }
        XCTAssertNoThrow(try allowed().get())
    }
}

extension LeaseKeyCheckTests {
    func testARequestCheckedBeforeAnAuthChangeIsRefusedWhenEvaluatedAfterIt() throws {
        let w = try HeldWriter()
        defer { w.store.close() }
        let lease = try w.store.leaseGrant(LeaseGrantRequest(ttl: 60)).id
        let keyless = try w.store.leaseGrant(LeaseGrantRequest(ttl: 60)).id
        _ = try w.store.put(PutRequest(key: b("/a"), value: b("1"), lease: lease))
        let checkedAt = w.store.authState.revision
        XCTAssertNoThrow(try result { w.store.put(PutRequest(key: b("/a"), value: b("2"), lease: lease), authRevision: checkedAt, completion: $0) }().get(),
                         "checked at the current revision")
        w.holdWriter()
        // Queued behind the held batch: an auth change, then requests checked before it.
        let changed = result { w.store.changeAuth({ _ in [AuthOp(set: .role("r"))] }, completion: $0) }
        let put = result { w.store.put(PutRequest(key: b("/a"), value: b("3")), authRevision: checkedAt, completion: $0) }
        let delete = result { w.store.deleteRange(DeleteRangeRequest(key: b("/a")), authRevision: checkedAt, completion: $0) }
        let txn = result { w.store.txn(TxnRequest(compare: [], success: [.put(PutRequest(key: b("/a"), value: b("4")))], failure: []),
                                      authRevision: checkedAt, completion: $0) }
        let revoke = result { w.store.leaseRevoke(LeaseRevokeRequest(id: lease), authRevision: checkedAt, completion: $0) }
        // etcd checks no permission (so no revision) to revoke a lease without keys.
        let revokeKeyless = result { w.store.leaseRevoke(LeaseRevokeRequest(id: keyless), authRevision: checkedAt, completion: $0) }
        w.release()
        XCTAssertNoThrow(try changed().get())
        XCTAssertGreaterThan(w.store.authState.revision, checkedAt)
        XCTAssertEqual(put().error, EtcdError.authOldRevision)
        XCTAssertEqual(delete().error, EtcdError.authOldRevision)
        XCTAssertEqual(txn().error, EtcdError.authOldRevision)
        XCTAssertEqual(revoke().error, EtcdError.authOldRevision)
        XCTAssertNoThrow(try revokeKeyless().get())
        XCTAssertEqual(try w.store.range(RangeRequest(key: b("/a"))).kvs.first?.value, b("2"), "none of them ran")
        XCTAssertEqual(EtcdError.authOldRevision.description, "etcdserver: revision of auth store is old")
    }
}

private extension Result {
    var error: Failure? { if case .failure(let e) = self { return e } else { return nil } }
}
