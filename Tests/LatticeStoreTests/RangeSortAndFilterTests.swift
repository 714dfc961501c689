import XCTest
import EtcdAPI
import LatticeStore

/// Range sort_order / sort_target and the min/max mod/create revision filters
/// (applierV3backend.Range: filters and sorting fetch everything; count is taken before them).
final class RangeSortAndFilterTests: XCTestCase {
    // MARK: sorting

    /// a: create 3, mod 7, version 2, value "3"; b: create 4, mod 4, version 1, value "2";
    /// c: create 2, mod 6, version 3, value "1". Every target orders the keys differently.
    private func makeSortFixture() throws -> MVCCStore {
        let store = makeStore()
        try store.put("c", "c1")                                   // 2
        try store.put("a", "a1")                                   // 3
        try store.put("b", "2")                                    // 4
        try store.put("c", "c2")                                   // 5
        try store.put("c", "1")                                    // 6
        try store.put("a", "3")                                    // 7
        return store
    }

    private func sortedKeys(_ store: MVCCStore, _ target: RangeRequest.SortTarget, _ order: RangeRequest.SortOrder,
                            limit: Int64 = 0) throws -> [String] {
        var r = RangeRequest(key: [0], rangeEnd: [0], limit: limit)
        r.sortTarget = target
        r.sortOrder = order
        return try store.keys(r)
    }

    func testSortByEachTargetInBothOrders() throws {
        let store = try makeSortFixture()
        let expectedAscending: [(RangeRequest.SortTarget, [String])] = [
            (.key, ["a", "b", "c"]),
            (.create, ["c", "a", "b"]),
            (.mod, ["b", "c", "a"]),
            (.version, ["b", "a", "c"]),
            (.value, ["c", "b", "a"]),
        ]
        for (target, ascending) in expectedAscending {
            XCTAssertEqual(try sortedKeys(store, target, .ascend), ascending, "target \(target.rawValue) ascending")
            XCTAssertEqual(try sortedKeys(store, target, .descend), ascending.reversed(), "target \(target.rawValue) descending")
        }
    }

    func testSortOrderNoneWithKeyTargetKeepsKeyOrder() throws {
        let store = try makeSortFixture()
        XCTAssertEqual(try sortedKeys(store, .key, .none), ["a", "b", "c"])
    }

    func testSortOrderNoneWithNonKeyTargetSortsAscending() throws {
        let store = try makeSortFixture()
        XCTAssertEqual(try sortedKeys(store, .create, .none), ["c", "a", "b"])
        XCTAssertEqual(try sortedKeys(store, .mod, .none), ["b", "c", "a"])
        XCTAssertEqual(try sortedKeys(store, .version, .none), ["b", "a", "c"])
        XCTAssertEqual(try sortedKeys(store, .value, .none), ["c", "b", "a"])
    }

    func testSortIsAppliedBeforeLimit() throws {
        let store = try makeSortFixture()
        var r = RangeRequest(key: [0], rangeEnd: [0], limit: 2)
        r.sortTarget = .key
        r.sortOrder = .descend
        let response = try store.range(r)
        XCTAssertEqual(response.kvs.map(\.keyString), ["c", "b"], "the newest keys, not the first two sorted")
        XCTAssertTrue(response.more)
        XCTAssertEqual(response.count, 3)
        XCTAssertEqual(try sortedKeys(store, .mod, .descend, limit: 1), ["a"])
    }

    func testSortByValueComparesUnsignedBytes() throws {
        let store = makeStore()
        try store.put([0x01], [0xff])
        try store.put([0x02], [0x00, 0x01])
        try store.put([0x03], [0x7f])
        try store.put([0x04], [])
        var r = RangeRequest(key: [0], rangeEnd: [0])
        r.sortTarget = .value
        r.sortOrder = .ascend
        XCTAssertEqual(try store.range(r).kvs.map(\.key), [[0x04], [0x02], [0x03], [0x01]])
    }

    func testInvalidSortOptionsAreRejected() throws {
        let store = makeStore()
        for (order, target) in [(Int32(3), Int32(0)), (-1, 0), (0, 5), (1, -1), (0, 99)] {
            var r = RangeRequest(key: b("a"))
            r.sortOrder = .init(rawValue: order)
            r.sortTarget = .init(rawValue: target)
            assertThrows(.invalidSortOption) { try store.range(r) }
        }
        XCTAssertEqual(EtcdError.invalidSortOption.code, .invalidArgument)
        XCTAssertEqual(EtcdError.invalidSortOption.message, "etcdserver: invalid sort option")
    }

    // MARK: revision filters

    func testModRevisionFiltersApplyAfterCountIsTaken() throws {
        let store = try makeSortFixture()                          // mods: a 7, b 4, c 6
        var r = RangeRequest(key: [0], rangeEnd: [0])
        r.minModRevision = 5
        var response = try store.range(r)
        XCTAssertEqual(response.kvs.map(\.keyString), ["a", "c"])
        XCTAssertEqual(response.count, 3, "etcd takes count before filtering")

        r = RangeRequest(key: [0], rangeEnd: [0])
        r.maxModRevision = 6
        response = try store.range(r)
        XCTAssertEqual(response.kvs.map(\.keyString), ["b", "c"])
        XCTAssertEqual(response.count, 3)

        r.minModRevision = 5
        response = try store.range(r)
        XCTAssertEqual(response.kvs.map(\.keyString), ["c"])
        XCTAssertEqual(response.count, 3)
    }

    func testCreateRevisionFiltersApplyAfterCountIsTaken() throws {
        let store = try makeSortFixture()                          // creates: a 3, b 4, c 2
        var r = RangeRequest(key: [0], rangeEnd: [0])
        r.minCreateRevision = 3
        var response = try store.range(r)
        XCTAssertEqual(response.kvs.map(\.keyString), ["a", "b"])
        XCTAssertEqual(response.count, 3)

        r = RangeRequest(key: [0], rangeEnd: [0])
        r.maxCreateRevision = 3
        response = try store.range(r)
        XCTAssertEqual(response.kvs.map(\.keyString), ["a", "c"])
        XCTAssertEqual(response.count, 3)

        r.minCreateRevision = 3
        response = try store.range(r)
        XCTAssertEqual(response.kvs.map(\.keyString), ["a"])
    }

    func testFiltersWithLimitComputeMoreFromTheFilteredKeys() throws {
        let store = makeStore()
        for i in 1...6 { try store.put("k\(i)", "v") }             // mods 2...7
        var r = RangeRequest(key: [0], rangeEnd: [0], limit: 2)
        r.minModRevision = 4                                       // k3...k6 pass
        var response = try store.range(r)
        XCTAssertEqual(response.kvs.map(\.keyString), ["k3", "k4"])
        XCTAssertTrue(response.more)
        XCTAssertEqual(response.count, 6)

        r.minModRevision = 6                                       // k5, k6 pass: exactly the limit
        response = try store.range(r)
        XCTAssertEqual(response.kvs.map(\.keyString), ["k5", "k6"])
        XCTAssertFalse(response.more)
        XCTAssertEqual(response.count, 6)
    }
}
