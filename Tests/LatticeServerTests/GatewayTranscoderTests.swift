import EtcdAPI
@testable import LatticeServer
import LatticeCore
import XCTest

/// etcd's gateway JSON ↔ the protobuf messages the gRPC handlers take and give: int64 as
/// strings or numbers, bytes as base64, enums by name or number, original or camelCase names,
/// unknown fields ignored, zero values left out of answers except oneof members.
final class GatewayTranscoderTests: XCTestCase {
    private func encode(_ json: String, as message: String) throws -> [UInt8] {
        try GatewaySchema.encode(try JSONValue(parsing: json), as: message)
    }

    func testRequestsDecodeAsTheGRPCMessages() throws {
        let range = try RangeRequest(protoBytes: try encode("""
            {"key":"Zm9v","rangeEnd":"Zm9w","limit":"10","revision":7,"sort_order":"DESCEND","sort_target":3,
             "serializable":true,"bogus":{"x":1}}
            """, as: "etcdserverpb.RangeRequest"))
        XCTAssertEqual(range.key, Array("foo".utf8))
        XCTAssertEqual(range.rangeEnd, Array("fop".utf8))
        XCTAssertEqual(range.limit, 10)
        XCTAssertEqual(range.revision, 7)
        XCTAssertEqual(range.sortOrder, .descend)
        XCTAssertEqual(range.sortTarget, .mod)
        XCTAssertTrue(range.serializable)

        let txn = try TxnRequest(protoBytes: try encode("""
            {"compare":[{"target":"MOD","result":"LESS","key":"YQ==","mod_revision":"0"}],
             "success":[{"request_put":{"key":"YQ==","value":"Yg=="}}],
             "failure":[{"request_txn":{"success":[{"request_delete_range":{"key":"YQ=="}}]}}]}
            """, as: "etcdserverpb.TxnRequest"))
        XCTAssertEqual(txn.compare.first?.target, .mod)
        XCTAssertEqual(txn.compare.first?.result, .less)
        XCTAssertEqual(txn.success.count, 1)
        guard case .txn(let nested)? = txn.failure.first?.request else { return XCTFail("nested txn lost") }
        XCTAssertEqual(nested.success.count, 1)

        let watch = try WatchRequest(protoBytes: try encode("""
            {"create_request":{"key":"YQ==","filters":["NOPUT","NODELETE"],"start_revision":"-1"}}
            """, as: "etcdserverpb.WatchRequest"))
        guard case .createRequest(let create)? = watch.requestUnion else { return XCTFail("create request lost") }
        XCTAssertEqual(create.filters, [WatchCreateRequest.FilterType.noPut, .noDelete])
        XCTAssertEqual(create.startRevision, -1)
    }

    func testBadValuesAreEtcdsGatewayErrors() {
        let cases: [(String, String)] = [
            (#"{"key":123}"#, "json: cannot unmarshal number into Go value of type []uint8"),
            (#"{"key":"Zm9v","limit":true}"#, "json: cannot unmarshal bool into Go value of type int64"),
            (#"{"key":"Zm9v","limit":"ten"}"#, "json: cannot unmarshal string into Go value of type int64"),
            (#"{"key":"Zm9v","serializable":"yes"}"#, "json: cannot unmarshal string into Go value of type bool"),
            (#"{"key":"Zm9v","sort_order":"SIDEWAYS"}"#, "unknown value \"SIDEWAYS\" for enum etcdserverpb.RangeRequest_SortOrder"),
            (#"{"key":"!!"}"#, "illegal base64 data at input byte 0"),
        ]
        for (json, message) in cases {
            XCTAssertThrowsError(try encode(json, as: "etcdserverpb.RangeRequest"), json) { error in
                XCTAssertEqual((error as? GatewayError)?.message, message, json)
            }
        }
    }

    func testAnswersAreEtcdsGatewayJSON() throws {
        var response = RangeResponse()
        response.header = ResponseHeader(clusterID: UInt64.max, memberID: 2, revision: 9, raftTerm: 0)
        response.kvs = [KeyValue(key: Array("a".utf8), createRevision: 2, modRevision: 9, version: 3, value: [0xFF, 0, 1], lease: 0)]
        response.count = 1
        XCTAssertEqual(String(decoding: try GatewaySchema.render(response.protoBytes(), as: "etcdserverpb.RangeResponse"), as: UTF8.self),
                       #"{"header":{"cluster_id":"18446744073709551615","member_id":"2","revision":"9"},"#
                       + #""kvs":[{"key":"YQ==","create_revision":"2","mod_revision":"9","version":"3","value":"/wAB"}],"count":"1"}"#)
        var event = Event(type: .delete, kv: KeyValue(key: Array("a".utf8), createRevision: 0, modRevision: 4, version: 0, value: [], lease: 0))
        var watch = WatchResponse()
        watch.events = [event]
        event.type = .put
        watch.events.append(event)
        XCTAssertEqual(String(decoding: try GatewaySchema.render(watch.protoBytes(), as: "etcdserverpb.WatchResponse"), as: UTF8.self),
                       #"{"events":[{"type":"DELETE","kv":{"key":"YQ==","mod_revision":"4"}},{"kv":{"key":"YQ==","mod_revision":"4"}}]}"#)
    }

    func testBase64TakesBothAlphabetsAndOptionalPadding() {
        for (text, bytes) in [("", [UInt8]()), ("YQ==", [0x61]), ("YQ", [0x61]), ("YWI=", [0x61, 0x62]), ("-_8=", [0xFB, 0xFF]),
                              ("+/8=", [0xFB, 0xFF])] {
            XCTAssertEqual(Base64.decode(Array(text.utf8)), bytes, text)
        }
        XCTAssertNil(Base64.decode(Array("Y".utf8)))
        XCTAssertNil(Base64.decode(Array("YQ==YQ==".utf8)))
        XCTAssertEqual(String(decoding: Base64.encode([0xFB, 0xFF, 0x00, 0x61]), as: UTF8.self), "+/8AYQ==")
    }
}
