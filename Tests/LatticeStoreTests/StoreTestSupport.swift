import XCTest
import EtcdAPI
import LatticeStore

// Shared vocabulary for the LatticeStore tests: a fresh store, byte helpers, request builders and
// response accessors, so each test reads as the etcd request it issues.

/// A fresh single-member store, as the tests construct it everywhere.
func makeStore(maxTxnOps: Int? = nil) -> MVCCStore {
    var configuration = MVCCStore.Configuration(memberID: 1, clusterID: 2)
    if let maxTxnOps { configuration.maxTxnOps = maxTxnOps }
    return try! MVCCStore(configuration: configuration)  // in memory: cannot fail
}

/// The UTF-8 bytes of `s`.
func b(_ s: String) -> [UInt8] { Array(s.utf8) }

/// etcd's `GetPrefixRangeEnd`: the key with its last byte incremented (trailing 0xff bytes dropped);
/// `[0]` (every key) when nothing can be incremented.
func prefixEnd(_ key: [UInt8]) -> [UInt8] {
    var end = key
    while let last = end.last {
        if last < 0xff {
            end[end.count - 1] = last + 1
            return end
        }
        end.removeLast()
    }
    return [0]
}

func prefixEnd(_ key: String) -> [UInt8] { prefixEnd(b(key)) }

/// Range end meaning "every key ≥ key".
let fromKey: [UInt8] = [0]

/// Asserts that `body` throws exactly `expected` (same gRPC code and message).
func assertThrows<T>(_ expected: EtcdError, file: StaticString = #filePath, line: UInt = #line,
                     _ body: () throws -> T) {
    do {
        let result = try body()
        XCTFail("expected \"\(expected)\", got \(result)", file: file, line: line)
    } catch let error as EtcdError {
        XCTAssertEqual(error, expected, file: file, line: line)
    } catch {
        XCTFail("expected \"\(expected)\", got a non-etcd error \(error)", file: file, line: line)
    }
}

// MARK: store shorthands

extension MVCCStore {
    /// Puts `value` at `key` and returns the revision the put was written at.
    @discardableResult
    func put(_ key: String, _ value: String) throws(EtcdError) -> Int64 {
        try put(b(key), b(value))
    }

    @discardableResult
    func put(_ key: [UInt8], _ value: [UInt8]) throws(EtcdError) -> Int64 {
        let response = try put(PutRequest(key: key, value: value))
        return response.header!.revision
    }

    /// The kv visible at `key` (at `revision`, 0 = latest), or nil.
    func get(_ key: String, revision: Int64 = 0) throws(EtcdError) -> KeyValue? {
        try range(RangeRequest(key: b(key), revision: revision)).kvs.first
    }

    /// Keys (as strings) returned by a range request.
    func keys(_ r: RangeRequest) throws(EtcdError) -> [String] {
        try range(r).kvs.map { String(decoding: $0.key, as: UTF8.self) }
    }

    @discardableResult
    func delete(_ key: String, rangeEnd: [UInt8] = []) throws(EtcdError) -> DeleteRangeResponse {
        try deleteRange(DeleteRangeRequest(key: b(key), rangeEnd: rangeEnd))
    }
}

// MARK: request builders

extension RequestOp {
    static func put(_ key: String, _ value: String, lease: Int64 = 0) -> RequestOp {
        RequestOp(.put(PutRequest(key: b(key), value: b(value), lease: lease)))
    }

    static func put(_ p: PutRequest) -> RequestOp { RequestOp(.put(p)) }

    static func range(_ key: String, rangeEnd: [UInt8] = [], limit: Int64 = 0, revision: Int64 = 0) -> RequestOp {
        RequestOp(.range(RangeRequest(key: b(key), rangeEnd: rangeEnd, limit: limit, revision: revision)))
    }

    static func range(_ r: RangeRequest) -> RequestOp { RequestOp(.range(r)) }

    static func delete(_ key: String, rangeEnd: [UInt8] = [], prevKV: Bool = false) -> RequestOp {
        RequestOp(.deleteRange(DeleteRangeRequest(key: b(key), rangeEnd: rangeEnd, prevKV: prevKV)))
    }

    static func txn(_ t: TxnRequest) -> RequestOp { RequestOp(.txn(t)) }
}

extension Compare {
    static func mod(_ key: String, _ result: CompareResult, _ revision: Int64, rangeEnd: [UInt8] = []) -> Compare {
        Compare(key: b(key), target: .mod, result: result, .modRevision(revision), rangeEnd: rangeEnd)
    }

    static func create(_ key: String, _ result: CompareResult, _ revision: Int64, rangeEnd: [UInt8] = []) -> Compare {
        Compare(key: b(key), target: .create, result: result, .createRevision(revision), rangeEnd: rangeEnd)
    }

    static func version(_ key: String, _ result: CompareResult, _ version: Int64, rangeEnd: [UInt8] = []) -> Compare {
        Compare(key: b(key), target: .version, result: result, .version(version), rangeEnd: rangeEnd)
    }

    static func value(_ key: String, _ result: CompareResult, _ value: [UInt8], rangeEnd: [UInt8] = []) -> Compare {
        Compare(key: b(key), target: .value, result: result, .value(value), rangeEnd: rangeEnd)
    }

    static func lease(_ key: String, _ result: CompareResult, _ lease: Int64, rangeEnd: [UInt8] = []) -> Compare {
        Compare(key: b(key), target: .lease, result: result, .lease(lease), rangeEnd: rangeEnd)
    }
}

// MARK: response accessors

extension ResponseOp {
    var range: RangeResponse? {
        if case .range(let r)? = response { return r }
        return nil
    }

    var put: PutResponse? {
        if case .put(let r)? = response { return r }
        return nil
    }

    var deleteRange: DeleteRangeResponse? {
        if case .deleteRange(let r)? = response { return r }
        return nil
    }

    var txn: TxnResponse? {
        if case .txn(let r)? = response { return r }
        return nil
    }
}

extension KeyValue {
    var keyString: String { String(decoding: key, as: UTF8.self) }
    var valueString: String { String(decoding: value, as: UTF8.self) }
}
