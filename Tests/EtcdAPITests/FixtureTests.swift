import Foundation
import XCTest
import EtcdAPI
import ProtoWire

/// Request messages recorded from etcdctl 3.5.1 talking to etcd 3.5.1
/// (scripts/capture-fixtures.py; Fixtures/README.md lists the commands).
final class FixtureTests: XCTestCase {

    static let fixturesURL: URL = Bundle.module.url(forResource: "Fixtures", withExtension: nil)!

    func fixture(_ name: String, file: StaticString = #filePath, line: UInt = #line) throws -> [UInt8] {
        let url = Self.fixturesURL.appendingPathComponent(name)
        return [UInt8](try Data(contentsOf: url))
    }

    /// Decodes a fixture as `M`, checks that re-encoding gives the recorded bytes back (Go's
    /// encoder, like ours, writes fields in number order and omits proto3 defaults), and returns
    /// the decoded message.
    func decode<M: ProtoMessage>(_ name: String, as type: M.Type, file: StaticString = #filePath, line: UInt = #line) throws -> M {
        let bytes = try fixture(name)
        let message = try M(protoBytes: bytes)
        XCTAssertEqual(message.protoBytes(), bytes, "\(name) re-encoded as \(M.self)", file: file, line: line)
        return message
    }

    struct Values: Decodable {
        var leaseID: Int64
    }

    // MARK: every fixture

    /// The request type of each etcd gRPC method, by method name.
    static let requestTypes: [String: any ProtoMessage.Type] = [
        "Range": RangeRequest.self, "Put": PutRequest.self, "DeleteRange": DeleteRangeRequest.self,
        "Txn": TxnRequest.self, "Compact": CompactionRequest.self,
        "Watch": WatchRequest.self,
        "LeaseGrant": LeaseGrantRequest.self, "LeaseRevoke": LeaseRevokeRequest.self,
        "LeaseKeepAlive": LeaseKeepAliveRequest.self, "LeaseTimeToLive": LeaseTimeToLiveRequest.self,
        "LeaseLeases": LeaseLeasesRequest.self,
        "MemberAdd": MemberAddRequest.self, "MemberRemove": MemberRemoveRequest.self,
        "MemberUpdate": MemberUpdateRequest.self, "MemberList": MemberListRequest.self,
        "MemberPromote": MemberPromoteRequest.self,
        "Alarm": AlarmRequest.self, "Status": StatusRequest.self, "Defragment": DefragmentRequest.self,
        "Hash": HashRequest.self, "HashKV": HashKVRequest.self, "Snapshot": SnapshotRequest.self,
        "MoveLeader": MoveLeaderRequest.self, "Downgrade": DowngradeRequest.self,
        "AuthEnable": AuthEnableRequest.self, "AuthDisable": AuthDisableRequest.self,
        "AuthStatus": AuthStatusRequest.self, "Authenticate": AuthenticateRequest.self,
        "UserAdd": AuthUserAddRequest.self, "UserGet": AuthUserGetRequest.self,
        "UserList": AuthUserListRequest.self, "UserDelete": AuthUserDeleteRequest.self,
        "UserChangePassword": AuthUserChangePasswordRequest.self, "UserGrantRole": AuthUserGrantRoleRequest.self,
        "UserRevokeRole": AuthUserRevokeRoleRequest.self, "RoleAdd": AuthRoleAddRequest.self,
        "RoleGet": AuthRoleGetRequest.self, "RoleList": AuthRoleListRequest.self,
        "RoleDelete": AuthRoleDeleteRequest.self, "RoleGrantPermission": AuthRoleGrantPermissionRequest.self,
        "RoleRevokePermission": AuthRoleRevokePermissionRequest.self,
    ]

    static func reencode<M: ProtoMessage>(_ type: M.Type, _ bytes: [UInt8]) throws -> [UInt8] {
        try M(protoBytes: bytes).protoBytes()
    }

    func testEveryFixtureDecodesAndReencodesIdentically() throws {
        let names = try FileManager.default.contentsOfDirectory(atPath: Self.fixturesURL.path)
            .filter { $0.hasSuffix(".bin") }
            .sorted()
        XCTAssertGreaterThanOrEqual(names.count, 17)
        for name in names {
            let method = String(name.prefix(while: { $0 != "-" }))
            guard let type = Self.requestTypes[method] else {
                XCTFail("\(name): no request type for method \(method)")
                continue
            }
            let bytes = try fixture(name)
            XCTAssertEqual(try Self.reencode(type, bytes), bytes, name)
        }
    }

    // MARK: KV

    func testPut() throws {
        XCTAssertEqual(try decode("Put-1.bin", as: PutRequest.self), PutRequest(key: b("foo"), value: b("bar")))
        XCTAssertEqual(try fixture("Put-1.bin"), hex("0a 03 666f6f 12 03 626172"))
        let withPrev = try decode("Put-2.bin", as: PutRequest.self)
        XCTAssertEqual(withPrev.key, b("foo"))
        XCTAssertEqual(withPrev.value, b("baz"))
        XCTAssertTrue(withPrev.prevKV)
        XCTAssertEqual(withPrev.lease, 0)
        XCTAssertFalse(withPrev.ignoreValue)
        XCTAssertFalse(withPrev.ignoreLease)
        XCTAssertEqual(try decode("Put-3.bin", as: PutRequest.self), PutRequest(key: b("foo2"), value: b("v2")))
    }

    func testRange() throws {
        // get foo --prefix --limit 2 --sort-by=MODIFY --order=DESCEND --rev 3
        let r = try decode("Range-1.bin", as: RangeRequest.self)
        XCTAssertEqual(r.key, b("foo"))
        XCTAssertEqual(r.rangeEnd, b("fop"))
        XCTAssertEqual(r.limit, 2)
        XCTAssertEqual(r.revision, 3)
        XCTAssertEqual(r.sortOrder, .descend)
        XCTAssertEqual(r.sortTarget, .mod)
        XCTAssertFalse(r.serializable)
        XCTAssertFalse(r.keysOnly)
        XCTAssertFalse(r.countOnly)
        // get a --from-key --keys-only --consistency=s
        let fromKey = try decode("Range-2.bin", as: RangeRequest.self)
        XCTAssertEqual(fromKey.key, b("a"))
        XCTAssertEqual(fromKey.rangeEnd, [0])
        XCTAssertTrue(fromKey.keysOnly)
        XCTAssertTrue(fromKey.serializable)
        XCTAssertEqual(fromKey.limit, 0)
        XCTAssertEqual(fromKey.sortOrder, .none)
    }

    func testTxn() throws {
        let txn = try decode("Txn-1.bin", as: TxnRequest.self)
        XCTAssertEqual(txn.compare, [
            Compare(key: b("foo"), target: .value, result: .equal, .value(b("baz"))),
            Compare(key: b("foo"), target: .mod, result: .greater, .modRevision(0)),
            Compare(key: b("foo2"), target: .version, result: .equal, .version(1)),
            Compare(key: b("foo2"), target: .create, result: .notEqual, .createRevision(0)),
        ])
        XCTAssertEqual(txn.success, [
            RequestOp(.put(PutRequest(key: b("foo"), value: b("qux")))),
            RequestOp(.range(RangeRequest(key: b("foo2")))),
        ])
        XCTAssertEqual(txn.failure, [RequestOp(.deleteRange(DeleteRangeRequest(key: b("foo2"))))])
        // The zero-valued oneof members are on the wire: 0x30 0x00 is mod_revision = 0.
        let bytes = try fixture("Txn-1.bin")
        XCTAssertNotNil(bytes.firstRange(of: hex("1a 03 666f6f 30 00")))
        XCTAssertNotNil(bytes.firstRange(of: hex("1a 04 666f6f32 28 00")))
    }

    func testDeleteRangeAndCompact() throws {
        XCTAssertEqual(
            try decode("DeleteRange-1.bin", as: DeleteRangeRequest.self),
            DeleteRangeRequest(key: b("foo"), rangeEnd: b("fop"), prevKV: true))
        XCTAssertEqual(try decode("Compact-1.bin", as: CompactionRequest.self), CompactionRequest(revision: 4, physical: true))
    }

    // MARK: Watch, Lease

    func testWatchCreate() throws {
        let w = try decode("Watch-1.bin", as: WatchRequest.self)
        guard case .createRequest(let create)? = w.requestUnion else {
            return XCTFail("expected a create request, got \(String(describing: w.requestUnion))")
        }
        XCTAssertEqual(create.key, b("foo"))
        XCTAssertEqual(create.rangeEnd, b("fop"))
        XCTAssertTrue(create.prevKV)
        XCTAssertEqual(create.startRevision, 0)
        XCTAssertEqual(create.filters, [])
        XCTAssertEqual(create.watchID, 0)
        XCTAssertFalse(create.progressNotify)
        XCTAssertFalse(create.fragment)
    }

    func testLease() throws {
        XCTAssertEqual(try decode("LeaseGrant-1.bin", as: LeaseGrantRequest.self), LeaseGrantRequest(ttl: 60))
        let values = try JSONDecoder().decode(Values.self, from: Data(contentsOf: Self.fixturesURL.appendingPathComponent("values.json")))
        let ttl = try decode("LeaseTimeToLive-1.bin", as: LeaseTimeToLiveRequest.self)
        XCTAssertEqual(ttl, LeaseTimeToLiveRequest(id: values.leaseID, keys: true))
        XCTAssertGreaterThan(ttl.id, 0)
    }

    // MARK: Cluster, Maintenance, Auth

    func testMemberListIsLinearizable() throws {
        XCTAssertEqual(try decode("MemberList-1.bin", as: MemberListRequest.self), MemberListRequest(linearizable: true))
    }

    func testEmptyRequests() throws {
        XCTAssertEqual(try fixture("Status-1.bin"), [])
        XCTAssertEqual(try decode("Status-1.bin", as: StatusRequest.self), StatusRequest())
        // alarm list: action GET, all members, any alarm: all defaults, so nothing on the wire.
        XCTAssertEqual(try fixture("Alarm-1.bin"), [])
        XCTAssertEqual(try decode("Alarm-1.bin", as: AlarmRequest.self), AlarmRequest(action: .get, memberID: 0, alarm: .none))
    }

    func testAuth() throws {
        // etcdctl always sends options, even when empty: 0x1a 0x00.
        let add = try decode("UserAdd-1.bin", as: AuthUserAddRequest.self)
        XCTAssertEqual(add, AuthUserAddRequest(name: "alice", password: "secret", options: UserAddOptions(noPassword: false)))
        XCTAssertEqual(Array(try fixture("UserAdd-1.bin").suffix(2)), [0x1a, 0x00])
        XCTAssertEqual(try decode("RoleAdd-1.bin", as: AuthRoleAddRequest.self), AuthRoleAddRequest(name: "reader"))
        XCTAssertEqual(
            try decode("RoleGrantPermission-1.bin", as: AuthRoleGrantPermissionRequest.self),
            AuthRoleGrantPermissionRequest(name: "reader", perm: Permission(permType: .readWrite, key: b("foo"), rangeEnd: b("fop"))))
    }
}
