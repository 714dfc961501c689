import FuzzSupport
import LatticeCore

/// JSON parsing and the three-way merge of concurrent writes. The input is split at 0xFF bytes
/// into a base and up to three concurrent versions. Parsing never traps; the merge never traps
/// and keeps its basic promises: one version merges to itself, unchanged versions merge to the
/// base, a version merged with unchanged ones (in either priority order) wins whole, and two
/// identical versions merge to that version.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let input = Array(UnsafeBufferPointer(start: data, count: size))
    let parts = input.split(separator: 0xFF, omittingEmptySubsequences: false).prefix(4).map(Array.init)
    let objects = parts.compactMap(JSONValue.parseObject)
    guard let base = objects.first else { return 0 }
    let heads = Array(objects.dropFirst())
    precondition(JSONMerge.merge(base: base, heads: [base, base]) == base, "merging unchanged versions changed the base")
    guard let first = heads.first else { return 0 }
    precondition(JSONMerge.merge(base: base, heads: [first]) == first, "one version did not merge to itself")
    precondition(JSONMerge.merge(base: base, heads: [base, first]) == first, "an unchanged version changed the merge")
    precondition(JSONMerge.merge(base: base, heads: [first, base]) == first, "an unchanged version changed the merge")
    precondition(JSONMerge.merge(base: base, heads: [first, first]) == first, "two identical versions merged to something else")
    if heads.count >= 2 { _ = JSONMerge.merge(base: base, heads: heads) }
    return 0
}

@_cdecl("FuzzJSONMerge_main")
public func fuzzMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    runFuzzer(argc, argv, fuzzOne)
}
