/// A key as the replica's maps hold it. `[UInt8]`'s own `Hashable` feeds the hasher one byte at
/// a time; this feeds all bytes in one call, several times faster for etcd-length keys. Equality
/// is byte equality, as for `[UInt8]`.
struct StoredKey: Hashable, Sendable {
    let bytes: [UInt8]

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    static func == (a: StoredKey, b: StoredKey) -> Bool { a.bytes == b.bytes }

    func hash(into hasher: inout Hasher) {
        bytes.withUnsafeBytes { hasher.combine(bytes: $0) }
    }
}
