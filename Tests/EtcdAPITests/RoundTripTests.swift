import Foundation
import XCTest
import EtcdAPI
import ProtoWire

// MARK: helpers

func hex(_ s: String) -> [UInt8] {
    let digits = s.filter { !$0.isWhitespace }
    var out: [UInt8] = []
    var i = digits.startIndex
    while i < digits.endIndex {
        let j = digits.index(i, offsetBy: 2)
        out.append(UInt8(digits[i..<j], radix: 16)!)
        i = j
    }
    return out
}

func b(_ s: String) -> [UInt8] { Array(s.utf8) }

/// Names of the stored properties of `value` that hold their proto3 default (zero, false, empty,
/// nil, or an enum whose raw value is 0).
func defaultFields(of value: Any) -> [String] {
    Mirror(reflecting: value).children.compactMap { child in
        isDefault(child.value) ? (child.label ?? "?") : nil
    }
}

func isDefault(_ value: Any) -> Bool {
    let mirror = Mirror(reflecting: value)
    switch mirror.displayStyle {
    case .optional?, .collection?: return mirror.children.isEmpty
    case .enum?: return false  // a oneof that is set
    default: break
    }
    if let v = value as? Bool { return !v }
    if let v = value as? String { return v.isEmpty }
    if let v = value as? any BinaryInteger { return v.trailingZeroBitCount == v.bitWidth }
    // RawRepresentable enum structs: default when the raw value is 0.
    if let raw = mirror.children.first(where: { $0.label == "rawValue" }), mirror.children.count == 1 {
        return isDefault(raw.value)
    }
    return false
}

/// Encodes, decodes and re-encodes `message`, which must set every one of its fields.
///
/// With `LATTICE_PROTO_DUMP=<dir>` in the environment, also writes the encoding to
/// `<dir>/<Type>[-n].bin`, for `scripts/check-protos.py` to check against Protos/etcd.
func assertRoundTrips<M: ProtoMessage & Hashable>(
    _ message: M, allFieldsSet: Bool = true, file: StaticString = #filePath, line: UInt = #line
) {
    if allFieldsSet {
        XCTAssertEqual(defaultFields(of: message), [], "\(M.self) has fields left at their default", file: file, line: line)
    }
    let bytes = message.protoBytes()
    XCTAssertEqual(bytes.count, message.protoSize, "\(M.self).protoSize", file: file, line: line)
    do {
        let decoded = try M(protoBytes: bytes)
        XCTAssertEqual(decoded, message, "\(M.self) round trip", file: file, line: line)
        XCTAssertEqual(decoded.protoBytes(), bytes, "\(M.self) re-encoding", file: file, line: line)
    } catch {
        XCTFail("\(M.self): \(error)", file: file, line: line)
    }
    dumpEncoding(bytes, as: "\(M.self)")
}

nonisolated(unsafe) var dumpCounts: [String: Int] = [:]

func dumpEncoding(_ bytes: [UInt8], as name: String) {
    guard let dir = ProcessInfo.processInfo.environment["LATTICE_PROTO_DUMP"] else { return }
    let n = (dumpCounts[name] ?? 0) + 1
    dumpCounts[name] = n
    let url = URL(fileURLWithPath: dir).appendingPathComponent(n == 1 ? "\(name).bin" : "\(name)-\(n).bin")
    try? Data(bytes).write(to: url)
}

func assertDecodeThrows<M: ProtoMessage>(
    _ type: M.Type, _ bytes: [UInt8], _ expected: ProtoDecodingError,
    file: StaticString = #filePath, line: UInt = #line
) {
    do {
        _ = try M(protoBytes: bytes)
        XCTFail("\(M.self) decoded; expected \(expected)", file: file, line: line)
    } catch {
        XCTAssertEqual(error, expected, file: file, line: line)
    }
}

// MARK: sample values

let header = ResponseHeader(clusterID: 0x1234_5678_9abc_def0, memberID: 0xfedc_ba98_7654_3210, revision: 42, raftTerm: 7)
let keyValue = KeyValue(key: b("key"), createRevision: 2, modRevision: 3, version: 4, value: b("value"), lease: 0x694d_7d1f_0a3c_8a05)
let prevKeyValue = KeyValue(key: b("key"), createRevision: 2, modRevision: 2, version: 3, value: b("old"), lease: 9)
let member = Member(
    id: 0x8e9e_05c5_2164_694d, name: "infra1",
    peerURLs: ["http://127.0.0.1:2380", "http://10.0.0.1:2380"], clientURLs: ["http://127.0.0.1:2379"],
    isLearner: true)

func fullRangeRequest() -> RangeRequest {
    var m = RangeRequest(key: b("a"), rangeEnd: b("z"), limit: 10, revision: 5)
    m.sortOrder = .descend
    m.sortTarget = .mod
    m.serializable = true
    m.keysOnly = true
    m.countOnly = true
    m.minModRevision = 1
    m.maxModRevision = 100
    m.minCreateRevision = 2
    m.maxCreateRevision = 200
    return m
}

func fullRangeResponse() -> RangeResponse {
    var m = RangeResponse()
    m.header = header
    m.kvs = [keyValue, prevKeyValue]
    m.more = true
    m.count = 1000
    return m
}

func fullPutRequest() -> PutRequest {
    var m = PutRequest(key: b("foo"), value: b("bar"), lease: 77, prevKV: true)
    m.ignoreValue = true
    m.ignoreLease = true
    return m
}

func fullPutResponse() -> PutResponse {
    var m = PutResponse()
    m.header = header
    m.prevKV = prevKeyValue
    return m
}

func fullDeleteRangeResponse() -> DeleteRangeResponse {
    var m = DeleteRangeResponse()
    m.header = header
    m.deleted = 2
    m.prevKVs = [keyValue, prevKeyValue]
    return m
}

func fullTxnRequest() -> TxnRequest {
    TxnRequest(
        compare: [
            Compare(key: b("foo"), target: .value, result: .notEqual, .value(b("bar")), rangeEnd: b("fop")),
            Compare(key: b("foo"), target: .mod, result: .greater, .modRevision(0)),
        ],
        success: [RequestOp(.put(fullPutRequest())), RequestOp(.range(fullRangeRequest()))],
        failure: [RequestOp(.deleteRange(DeleteRangeRequest(key: b("foo"), rangeEnd: b("\0"), prevKV: true)))])
}

func fullTxnResponse() -> TxnResponse {
    var m = TxnResponse()
    m.header = header
    m.succeeded = true
    m.responses = [ResponseOp(.put(fullPutResponse())), ResponseOp(.range(fullRangeResponse()))]
    return m
}

/// `depth` transactions nested inside each other through `RequestOp.txn`, with a put at the bottom.
func nestedTxn(depth: Int) -> TxnRequest {
    var txn = TxnRequest(compare: [], success: [RequestOp(.put(PutRequest(key: b("leaf"), value: b("v"))))])
    for level in 1..<max(depth, 1) {
        txn = TxnRequest(
            compare: [Compare(key: b("k\(level)"), target: .version, result: .equal, .version(Int64(level)))],
            success: [RequestOp(.txn(txn))])
    }
    return txn
}

final class RoundTripTests: XCTestCase {

    // MARK: every message type, every field set

    func testKVMessages() {
        assertRoundTrips(header)
        assertRoundTrips(keyValue)
        assertRoundTrips(Event(type: .delete, kv: keyValue, prevKV: prevKeyValue))
        assertRoundTrips(fullRangeRequest())
        assertRoundTrips(fullRangeResponse())
        assertRoundTrips(fullPutRequest())
        assertRoundTrips(fullPutResponse())
        assertRoundTrips(DeleteRangeRequest(key: b("a"), rangeEnd: b("b"), prevKV: true))
        assertRoundTrips(fullDeleteRangeResponse())
        assertRoundTrips(RequestOp(.range(fullRangeRequest())))
        assertRoundTrips(RequestOp(.put(fullPutRequest())))
        assertRoundTrips(RequestOp(.deleteRange(DeleteRangeRequest(key: b("a"), rangeEnd: b("b"), prevKV: true))))
        assertRoundTrips(RequestOp(.txn(fullTxnRequest())))
        assertRoundTrips(ResponseOp(.range(fullRangeResponse())))
        assertRoundTrips(ResponseOp(.put(fullPutResponse())))
        assertRoundTrips(ResponseOp(.deleteRange(fullDeleteRangeResponse())))
        assertRoundTrips(ResponseOp(.txn(fullTxnResponse())))
        assertRoundTrips(Compare(key: b("k"), target: .lease, result: .less, .version(3), rangeEnd: b("l")))
        assertRoundTrips(Compare(key: b("k"), target: .create, result: .greater, .createRevision(4), rangeEnd: b("l")))
        assertRoundTrips(Compare(key: b("k"), target: .mod, result: .notEqual, .modRevision(5), rangeEnd: b("l")))
        assertRoundTrips(Compare(key: b("k"), target: .value, result: .greater, .value(b("v")), rangeEnd: b("l")))
        assertRoundTrips(Compare(key: b("k"), target: .lease, result: .less, .lease(6), rangeEnd: b("l")))
        assertRoundTrips(fullTxnRequest())
        assertRoundTrips(fullTxnResponse())
        assertRoundTrips(CompactionRequest(revision: 99, physical: true))
        var compaction = CompactionResponse()
        compaction.header = header
        assertRoundTrips(compaction)
    }

    func testWatchMessages() {
        let create = WatchCreateRequest(
            key: b("foo"), rangeEnd: b("fop"), startRevision: 12, progressNotify: true,
            filters: [.noPut, .noDelete], prevKV: true, watchID: 3, fragment: true)
        assertRoundTrips(create)
        assertRoundTrips(WatchCancelRequest(watchID: 3))
        assertRoundTrips(WatchProgressRequest())
        assertRoundTrips(WatchRequest(.createRequest(create)))
        assertRoundTrips(WatchRequest(.cancelRequest(WatchCancelRequest(watchID: 3))))
        assertRoundTrips(WatchRequest(.progressRequest(WatchProgressRequest())))
        var response = WatchResponse(header: header, watchID: 3, events: [
            Event(type: .put, kv: keyValue, prevKV: prevKeyValue),
            Event(type: .delete, kv: KeyValue(key: b("key"), createRevision: 0, modRevision: 9, version: 0, value: [], lease: 0)),
        ])
        response.created = true
        response.canceled = true
        response.compactRevision = 5
        response.cancelReason = "mvcc: required revision has been compacted"
        response.fragment = true
        assertRoundTrips(response)
    }

    func testLeaseMessages() {
        assertRoundTrips(LeaseGrantRequest(ttl: 60, id: 0x694d_7d1f_0a3c_8a05))
        assertRoundTrips(LeaseGrantResponse(header: header, id: 0x694d_7d1f_0a3c_8a05, ttl: 60, error: "none"))
        assertRoundTrips(LeaseRevokeRequest(id: 1))
        assertRoundTrips(LeaseRevokeResponse(header: header))
        assertRoundTrips(LeaseCheckpoint(id: 1, remainingTTL: 30))
        assertRoundTrips(LeaseCheckpointRequest(checkpoints: [LeaseCheckpoint(id: 1, remainingTTL: 30), LeaseCheckpoint(id: 2, remainingTTL: 1)]))
        assertRoundTrips(LeaseCheckpointResponse(header: header))
        assertRoundTrips(LeaseKeepAliveRequest(id: 5))
        assertRoundTrips(LeaseKeepAliveResponse(header: header, id: 5, ttl: 60))
        assertRoundTrips(LeaseTimeToLiveRequest(id: 5, keys: true))
        assertRoundTrips(LeaseTimeToLiveResponse(header: header, id: 5, ttl: -1, grantedTTL: 60, keys: [b("a"), [], [0, 0xff]]))
        assertRoundTrips(LeaseLeasesRequest())
        assertRoundTrips(LeaseStatus(id: 5))
        assertRoundTrips(LeaseLeasesResponse(header: header, leases: [LeaseStatus(id: 5), LeaseStatus(id: 6)]))
    }

    func testClusterMessages() {
        var other = member
        other.id = 2
        other.isLearner = false
        assertRoundTrips(member)
        assertRoundTrips(MemberAddRequest(peerURLs: ["http://10.0.0.2:2380"], isLearner: true))
        assertRoundTrips(MemberAddResponse(header: header, member: member, members: [member, other]))
        assertRoundTrips(MemberRemoveRequest(id: member.id))
        assertRoundTrips(MemberRemoveResponse(header: header, members: [other]))
        assertRoundTrips(MemberUpdateRequest(id: member.id, peerURLs: ["http://10.0.0.3:2380", "http://10.0.0.4:2380"]))
        assertRoundTrips(MemberUpdateResponse(header: header, members: [member]))
        assertRoundTrips(MemberListRequest(linearizable: true))
        assertRoundTrips(MemberListResponse(header: header, members: [member, other]))
        assertRoundTrips(MemberPromoteRequest(id: member.id))
        assertRoundTrips(MemberPromoteResponse(header: header, members: [member]))
    }

    func testMaintenanceMessages() {
        assertRoundTrips(AlarmRequest(action: .deactivate, memberID: member.id, alarm: .noSpace))
        assertRoundTrips(AlarmMember(memberID: member.id, alarm: .corrupt))
        assertRoundTrips(AlarmResponse(header: header, alarms: [AlarmMember(memberID: 1, alarm: .noSpace), AlarmMember(memberID: 2, alarm: .corrupt)]))
        assertRoundTrips(StatusRequest())
        var status = StatusResponse()
        status.header = header
        status.version = "3.5.1"
        status.dbSize = 20480
        status.leader = member.id
        status.raftIndex = 100
        status.raftTerm = 2
        status.raftAppliedIndex = 99
        status.errors = ["memberID:1 alarm:NOSPACE"]
        status.dbSizeInUse = 16384
        status.isLearner = true
        status.storageVersion = "3.6.0"
        status.dbSizeQuota = 2 << 30
        status.downgradeInfo = DowngradeInfo(enabled: true, targetVersion: "3.5.0")
        assertRoundTrips(status)
        assertRoundTrips(DowngradeInfo(enabled: true, targetVersion: "3.5.0"))
        assertRoundTrips(DefragmentRequest())
        assertRoundTrips(DefragmentResponse(header: header))
        assertRoundTrips(HashRequest())
        assertRoundTrips(HashResponse(header: header, hash: UInt32.max))
        assertRoundTrips(HashKVRequest(revision: 10))
        assertRoundTrips(HashKVResponse(header: header, hash: 0xdead_beef, compactRevision: 4, hashRevision: 10))
        assertRoundTrips(SnapshotRequest())
        assertRoundTrips(SnapshotResponse(header: header, remainingBytes: 1 << 20, blob: Array(repeating: 0xab, count: 300), version: "3.6.0"))
        assertRoundTrips(MoveLeaderRequest(targetID: member.id))
        assertRoundTrips(MoveLeaderResponse(header: header))
        assertRoundTrips(DowngradeRequest(action: .cancel, version: "3.4"))
        assertRoundTrips(DowngradeResponse(header: header, version: "3.5"))
    }

    func testAuthMessages() {
        let perm = Permission(permType: .readWrite, key: b("foo"), rangeEnd: b("fop"))
        assertRoundTrips(AuthEnableRequest())
        assertRoundTrips(AuthDisableRequest())
        assertRoundTrips(AuthStatusRequest())
        assertRoundTrips(AuthenticateRequest(name: "root", password: "pässwörd"))
        assertRoundTrips(AuthUserAddRequest(name: "alice", password: "secret", options: UserAddOptions(noPassword: true), hashedPassword: "$2a$10$abc"))
        assertRoundTrips(AuthUserGetRequest(name: "alice"))
        assertRoundTrips(AuthUserDeleteRequest(name: "alice"))
        assertRoundTrips(AuthUserChangePasswordRequest(name: "alice", password: "new", hashedPassword: "$2a$10$def"))
        assertRoundTrips(AuthUserGrantRoleRequest(user: "alice", role: "reader"))
        assertRoundTrips(AuthUserRevokeRoleRequest(name: "alice", role: "reader"))
        assertRoundTrips(AuthRoleAddRequest(name: "reader"))
        assertRoundTrips(AuthRoleGetRequest(role: "reader"))
        assertRoundTrips(AuthUserListRequest())
        assertRoundTrips(AuthRoleListRequest())
        assertRoundTrips(AuthRoleDeleteRequest(role: "reader"))
        assertRoundTrips(AuthRoleGrantPermissionRequest(name: "reader", perm: perm))
        assertRoundTrips(AuthRoleRevokePermissionRequest(role: "reader", key: b("foo"), rangeEnd: b("fop")))
        assertRoundTrips(AuthEnableResponse(header: header))
        assertRoundTrips(AuthDisableResponse(header: header))
        assertRoundTrips(AuthStatusResponse(header: header, enabled: true, authRevision: 12))
        assertRoundTrips(AuthenticateResponse(header: header, token: "abc.123"))
        assertRoundTrips(AuthUserAddResponse(header: header))
        assertRoundTrips(AuthUserGetResponse(header: header, roles: ["reader", "writer"]))
        assertRoundTrips(AuthUserDeleteResponse(header: header))
        assertRoundTrips(AuthUserChangePasswordResponse(header: header))
        assertRoundTrips(AuthUserGrantRoleResponse(header: header))
        assertRoundTrips(AuthUserRevokeRoleResponse(header: header))
        assertRoundTrips(AuthRoleAddResponse(header: header))
        assertRoundTrips(AuthRoleGetResponse(header: header, perm: [perm, Permission(permType: .write, key: b("x"), rangeEnd: b("\0"))]))
        assertRoundTrips(AuthRoleListResponse(header: header, roles: ["reader", "root"]))
        assertRoundTrips(AuthUserListResponse(header: header, users: ["alice", "root"]))
        assertRoundTrips(AuthRoleDeleteResponse(header: header))
        assertRoundTrips(AuthRoleGrantPermissionResponse(header: header))
        assertRoundTrips(AuthRoleRevokePermissionResponse(header: header))
    }

    func testAuthPBMessages() {
        assertRoundTrips(UserAddOptions(noPassword: true))
        assertRoundTrips(User(name: b("alice"), password: b("$2a$10$hash"), roles: ["reader", "writer"], options: UserAddOptions(noPassword: true)))
        assertRoundTrips(Permission(permType: .write, key: b("foo"), rangeEnd: b("fop")))
        assertRoundTrips(Role(name: b("reader"), keyPermission: [
            Permission(permType: .readWrite, key: b("a"), rangeEnd: b("b")),
            Permission(permType: .write, key: b("c"), rangeEnd: b("\0")),
        ]))
    }

    // MARK: byte-exact encodings

    func testPutRequestBytes() throws {
        let put = PutRequest(key: b("foo"), value: b("bar"))
        XCTAssertEqual(put.protoBytes(), hex("0a 03 666f6f 12 03 626172"))
        XCTAssertEqual(try PutRequest(protoBytes: hex("0a03666f6f1203626172")), put)
        XCTAssertEqual(PutRequest().protoBytes(), [])
    }

    func testOneofZeroValuesAreStillEmitted() throws {
        // mod_revision = 0 is a real comparison ("the key does not exist"); field 6 must be there.
        let cmp = Compare(key: b("foo"), target: .mod, result: .equal, .modRevision(0))
        XCTAssertEqual(cmp.protoBytes(), hex("10 02 1a 03 666f6f 30 00"))
        XCTAssertEqual(try Compare(protoBytes: cmp.protoBytes()).targetUnion, .modRevision(0))
        // An empty value, and version 0.
        XCTAssertEqual(Compare(key: b("k"), target: .value, result: .equal, .value([])).protoBytes(), hex("10 03 1a 01 6b 3a 00"))
        XCTAssertEqual(Compare(key: b("k"), target: .version, result: .equal, .version(0)).protoBytes(), hex("1a 01 6b 20 00"))
        // No target_union at all: nothing for fields 4–8.
        var none = Compare()
        none.key = b("k")
        XCTAssertEqual(none.protoBytes(), hex("1a 01 6b"))
        XCTAssertNil(try Compare(protoBytes: none.protoBytes()).targetUnion)
        // An empty message in a oneof is still written (as a zero-length field).
        XCTAssertEqual(RequestOp(.range(RangeRequest())).protoBytes(), hex("0a 00"))
        XCTAssertEqual(WatchRequest(.progressRequest(WatchProgressRequest())).protoBytes(), hex("1a 00"))
        XCTAssertEqual(try WatchRequest(protoBytes: hex("1a 00")).requestUnion, .progressRequest(WatchProgressRequest()))
        XCTAssertEqual(try WatchRequest(protoBytes: hex("12 00")).requestUnion, .cancelRequest(WatchCancelRequest(watchID: 0)))
        // The last oneof member on the wire wins.
        XCTAssertEqual(try Compare(protoBytes: hex("20 05 30 07")).targetUnion, .modRevision(7))
    }

    func testWatchFiltersArePackedAndReadEitherWay() throws {
        let create = WatchCreateRequest(key: b("a"), filters: [.noPut, .noDelete])
        XCTAssertEqual(create.protoBytes(), hex("0a 01 61 2a 02 00 01"))
        XCTAssertEqual(try WatchCreateRequest(protoBytes: hex("0a 01 61 28 00 28 01")), create)
        XCTAssertEqual(try WatchCreateRequest(protoBytes: hex("0a 01 61 28 00 2a 01 01")), create)
        // An unknown filter value survives a round trip.
        let odd = WatchCreateRequest(key: b("a"), filters: [WatchCreateRequest.FilterType(rawValue: 7)])
        XCTAssertEqual(try WatchCreateRequest(protoBytes: odd.protoBytes()).filters.map(\.rawValue), [7])
        assertDecodeThrows(WatchCreateRequest.self, hex("2d 00000000"), .wrongWireType(field: 5, wireType: 5))
    }

    func testMoreKnownEncodings() throws {
        XCTAssertEqual(LeaseGrantRequest(ttl: 60).protoBytes(), hex("08 3c"))
        XCTAssertEqual(LeaseTimeToLiveRequest(id: 1, keys: true).protoBytes(), hex("08 01 10 01"))
        XCTAssertEqual(
            Member(id: 1, name: "a", peerURLs: ["p", "q"], clientURLs: ["c"], isLearner: true).protoBytes(),
            hex("08 01 12 01 61 1a 01 70 1a 01 71 22 01 63 28 01"))
        XCTAssertEqual(MemberListRequest(linearizable: true).protoBytes(), hex("08 01"))
        XCTAssertEqual(HashKVResponse(header: nil, hash: 1, compactRevision: 2, hashRevision: 3).protoBytes(), hex("10 01 18 02 20 03"))
        var status = StatusResponse()
        status.isLearner = true
        status.storageVersion = "3.6"
        status.dbSizeQuota = 1
        status.downgradeInfo = DowngradeInfo()
        XCTAssertEqual(status.protoBytes(), hex("50 01 5a 03 332e36 60 01 6a 00"))
        XCTAssertEqual(AlarmRequest(action: .activate, memberID: 5, alarm: .noSpace).protoBytes(), hex("08 01 10 05 18 01"))
        XCTAssertEqual(
            AuthRoleGrantPermissionRequest(name: "r", perm: Permission(permType: .readWrite, key: b("k"))).protoBytes(),
            hex("0a 01 72 12 05 08 02 12 01 6b"))
        XCTAssertEqual(AuthUserAddRequest(name: "u", password: "", options: UserAddOptions()).protoBytes(), hex("0a 01 75 1a 00"))
        XCTAssertEqual(User(name: b("u"), password: [], roles: ["r"]).protoBytes(), hex("0a 01 75 1a 01 72"))
        // TTL -1 ("expired") is a 10-byte varint.
        XCTAssertEqual(LeaseTimeToLiveResponse(header: nil, id: 0, ttl: -1, grantedTTL: 0).protoBytes(), hex("18 ffffffffffffffffff01"))
        // Header: uint64 ids, int64 revision.
        XCTAssertEqual(
            ResponseHeader(clusterID: UInt64.max, memberID: 1, revision: 2, raftTerm: 3).protoBytes(),
            hex("08 ffffffffffffffffff01 10 01 18 02 20 03"))
    }

    func testUnknownEnumValuesAndFieldsSurvive() throws {
        var range = RangeRequest(key: b("a"))
        range.sortOrder = RangeRequest.SortOrder(rawValue: 9)
        range.sortTarget = RangeRequest.SortTarget(rawValue: -1)
        let decoded = try RangeRequest(protoBytes: range.protoBytes())
        XCTAssertEqual(decoded.sortOrder.rawValue, 9)
        XCTAssertEqual(decoded.sortTarget.rawValue, -1)
        XCTAssertEqual(try AlarmMember(protoBytes: hex("10 05")).alarm, AlarmType(rawValue: 5))
        XCTAssertEqual(try Permission(protoBytes: hex("08 03")).permType.rawValue, 3)
        // Fields from a newer etcd are skipped.
        let newer = hex("0a 03 666f6f  b8 06 01  12 03 626172  c2 3e 02 0102")
        XCTAssertEqual(try PutRequest(protoBytes: newer), PutRequest(key: b("foo"), value: b("bar")))
        XCTAssertEqual(try MemberListRequest(protoBytes: hex("08 01 10 01")), MemberListRequest(linearizable: true))
    }

    func testMalformedEtcdMessages() {
        assertDecodeThrows(PutRequest.self, hex("0a 05 666f6f"), .lengthOutOfBounds)
        assertDecodeThrows(PutRequest.self, hex("08 01"), .wrongWireType(field: 1, wireType: 0))
        assertDecodeThrows(Member.self, hex("12 02 c328"), .invalidUTF8(field: 2))
        assertDecodeThrows(LeaseTimeToLiveResponse.self, hex("2a 02 61"), .lengthOutOfBounds)
        assertDecodeThrows(WatchRequest.self, hex("0a 02 0a"), .lengthOutOfBounds)
        assertDecodeThrows(WatchRequest.self, hex("0f"), .invalidTag(0x0f))
        assertDecodeThrows(StatusResponse.self, hex("00 00"), .invalidTag(0))
        // A truncated transaction throws at every cut.
        let bytes = fullTxnRequest().protoBytes()
        let wrapped = RequestOp(.txn(fullTxnRequest())).protoBytes()
        for cut in 1..<wrapped.count {
            XCTAssertThrowsError(try RequestOp(protoBytes: Array(wrapped[..<cut])), "RequestOp cut at \(cut)")
        }
        for cut in 0...bytes.count {
            _ = try? TxnRequest(protoBytes: Array(bytes[..<cut]))  // must not trap
        }
    }

    // MARK: nesting

    func testDeeplyNestedTxnRoundTrips() throws {
        let txn = nestedTxn(depth: 30)
        let bytes = txn.protoBytes()
        XCTAssertEqual(txn.protoSize, bytes.count)
        XCTAssertEqual(try TxnRequest(protoBytes: bytes), txn)
        XCTAssertEqual(try TxnRequest(protoBytes: bytes).protoBytes(), bytes)
        // 30 transactions put the leaf put at message depth 2 * 29 + 2 = 60 < 64.
        var depth = 0
        var cur = try TxnRequest(protoBytes: bytes)
        while case .txn(let inner)? = cur.success.first?.request {
            depth += 1
            cur = inner
        }
        XCTAssertEqual(depth, 29)
    }

    func testTxnNestedBeyondTheBoundIsRejected() {
        let bytes = nestedTxn(depth: 100).protoBytes()
        assertDecodeThrows(TxnRequest.self, bytes, .nestingTooDeep)
        assertDecodeThrows(RequestOp.self, RequestOp(.txn(nestedTxn(depth: 32))).protoBytes(), .nestingTooDeep)
        // A larger bound accepts it.
        XCTAssertEqual(try TxnRequest(protoBytes: bytes, maxDepth: 256), nestedTxn(depth: 100))
    }
}
