import FuzzSupport
import LatticeCore

/// A replica's saved state (what snapshots and state transfers carry), with a valid frame and
/// checksum around fuzzed contents so that the decoder itself is exercised. Whatever decodes
/// must encode and decode again to the same state.
func fnv1a64(_ bytes: [UInt8]) -> UInt64 {
    var h: UInt64 = 0xcbf2_9ce4_8422_2325
    for b in bytes { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01b3 }
    return h
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let input = Array(UnsafeBufferPointer(start: data, count: size))
    // As given (header and checksum fuzzed too), and framed with a correct checksum.
    _ = try? Replica(decodingState: input)
    let body = Array("LTRS".utf8) + [1] + input
    var framed = body
    let sum = fnv1a64(body)
    for i in 0..<8 { framed.append(UInt8(truncatingIfNeeded: sum >> UInt64(8 * i))) }
    if let replica = try? Replica(decodingState: framed) {
        guard let again = try? Replica(decodingState: replica.encodeState()) else {
            fatalError("a decoded replica state does not decode after encoding")
        }
        precondition(again.encodeState() == replica.encodeState(), "replica state round trip differs")
    }
    return 0
}

@_cdecl("FuzzReplicaState_main")
public func fuzzMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    runFuzzer(argc, argv, fuzzOne)
}
