/// A key as the replica's and the index's maps hold it. `[UInt8]`'s own `Hashable` feeds the hasher one byte at
/// a time; this feeds all bytes in one call, several times faster for etcd-length keys. Equality
/// is byte equality, as for `[UInt8]`.
public struct StoredKey: Hashable, Sendable {
    public let bytes: [UInt8]

    @inlinable
    public init(_ bytes: [UInt8]) { self.bytes = bytes }

    @inlinable
    public static func == (a: StoredKey, b: StoredKey) -> Bool { a.bytes == b.bytes }

    @inlinable
    public func hash(into hasher: inout Hasher) {
        bytes.withUnsafeBytes { hasher.combine(bytes: $0) }
    }
}
