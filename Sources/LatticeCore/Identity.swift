/// Member and cluster ids, derived as etcd derives them, so a Lattice member started with the
/// same flags as an etcd member reports ids of the same shape.
public enum ClusterIdentity {
    /// etcd `computeMemberId`: SHA-1 of the sorted peer URLs joined, then the cluster token;
    /// the first 8 bytes big-endian. Never zero.
    public static func memberID(peerURLs: [String], clusterToken: String) -> UInt64 {
        let material = Array((peerURLs.sorted().joined() + clusterToken).utf8)
        return nonZero(firstUInt64(SHA1.hash(material)))
    }

    /// etcd `genID`: SHA-1 of the sorted member ids, 8 bytes big-endian each.
    public static func clusterID(memberIDs: [UInt64]) -> UInt64 {
        var material: [UInt8] = []
        for id in memberIDs.sorted() {
            for shift in stride(from: 56, through: 0, by: -8) { material.append(UInt8(truncatingIfNeeded: id >> UInt64(shift))) }
        }
        return nonZero(firstUInt64(SHA1.hash(material)))
    }

    private static func firstUInt64(_ bytes: [UInt8]) -> UInt64 {
        var v: UInt64 = 0
        for i in 0..<8 { v = v << 8 | UInt64(bytes[i]) }
        return v
    }

    private static func nonZero(_ v: UInt64) -> UInt64 { v == 0 ? 1 : v }
}
