import FuzzSupport
import EtcdAPI
import LatticeCore
import ProtoWire

/// Decodes the input as one etcd request or response (the first byte picks the type), and
/// checks that whatever decodes survives an encode/decode round trip unchanged.
func check<M: ProtoMessage & Equatable>(_ type: M.Type, _ bytes: [UInt8]) {
    guard let message = try? M(protoBytes: bytes) else { return }
    let again: M
    do {
        again = try M(protoBytes: message.protoBytes())
    } catch {
        fatalError("\(M.self): re-encoding a decoded message does not decode: \(error)")
    }
    precondition(again == message, "\(M.self): round trip changed the message")
}

let types: [@Sendable ([UInt8]) -> Void] = [
    { check(RangeRequest.self, $0) }, { check(RangeResponse.self, $0) },
    { check(PutRequest.self, $0) }, { check(PutResponse.self, $0) },
    { check(DeleteRangeRequest.self, $0) }, { check(DeleteRangeResponse.self, $0) },
    { check(TxnRequest.self, $0) }, { check(TxnResponse.self, $0) },
    { check(CompactionRequest.self, $0) },
    { check(WatchRequest.self, $0) }, { check(WatchResponse.self, $0) },
    { check(LeaseGrantRequest.self, $0) }, { check(LeaseKeepAliveRequest.self, $0) },
    { check(LeaseTimeToLiveRequest.self, $0) }, { check(LeaseTimeToLiveResponse.self, $0) },
    { check(LeaseLeasesResponse.self, $0) },
    { check(MemberAddRequest.self, $0) }, { check(MemberListResponse.self, $0) },
    { check(MemberUpdateRequest.self, $0) },
    { check(AlarmRequest.self, $0) }, { check(StatusResponse.self, $0) },
    { check(HashKVRequest.self, $0) }, { check(SnapshotResponse.self, $0) },
    { check(AuthenticateRequest.self, $0) }, { check(AuthRoleGrantPermissionRequest.self, $0) },
    { bytes in
        guard let change = try? Change(protoBytes: bytes) else { return }
        guard let again = try? Change(protoBytes: change.protoBytes()) else { fatalError("Change: round trip does not decode") }
        precondition(again == change, "Change: round trip changed the change")
    },
]

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size > 0 else { return 0 }
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    types[Int(bytes[0]) % types.count](Array(bytes.dropFirst()))
    return 0
}

@_cdecl("FuzzEtcdMessages_main")
public func fuzzMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    runFuzzer(argc, argv, fuzzOne)
}
