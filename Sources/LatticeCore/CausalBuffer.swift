/// Changes received before their causal dependencies, held until they can be applied
/// (docs/consistency.md, "Across nodes: causal order").
///
/// A change `c` is *deliverable* against a vector `v` when `v[c.id.member] == c.id.seq - 1` (it
/// is its origin's next change) and `v` covers `c.deps` (everything its origin had applied when
/// creating it has been applied here).
///
/// Bounded: at most `limit` changes and `limitBytes` bytes (`Change.approximateBytes`); `insert`
/// refuses more, and the caller reports it to the sender, which resends from the receiver's
/// vector later (nothing is lost: a refused change was never counted as received).
/// Deterministic: deliverable changes come out in ascending member id order, whatever the
/// arrival order, so replaying the same inputs gives the same application order.
struct CausalBuffer: Sendable {
    let limit: Int
    let limitBytes: Int
    /// member → seq → change.
    private var pending: [UInt64: [UInt64: Change]] = [:]
    private(set) var count = 0
    private(set) var bytes = 0

    init(limit: Int, limitBytes: Int = 64 << 20) {
        self.limit = limit
        self.limitBytes = limitBytes
    }

    var isEmpty: Bool { count == 0 }
    var isFull: Bool { count >= limit || bytes >= limitBytes }

    func contains(_ dot: Dot) -> Bool { pending[dot.member]?[dot.seq] != nil }

    /// Adds a change; false if it is already held or the buffer is full.
    mutating func insert(_ change: Change) -> Bool {
        let size = change.approximateBytes
        guard !isFull, bytes + size <= limitBytes || count == 0, !contains(change.id) else { return false }
        pending[change.id.member, default: [:]][change.id.seq] = change
        count += 1
        bytes += size
        return true
    }

    /// Removes and returns the next change deliverable against `vector`, if any.
    mutating func popDeliverable(_ vector: VersionVector) -> Change? {
        for member in pending.keys.sorted() {
            let next = vector[member] &+ 1
            guard let change = pending[member]?[next], vector.covers(change.deps) else { continue }
            remove(change.id)
            return change
        }
        return nil
    }

    private mutating func remove(_ dot: Dot) {
        guard let removed = pending[dot.member]?.removeValue(forKey: dot.seq) else { return }
        if pending[dot.member]!.isEmpty { pending[dot.member] = nil }
        count -= 1
        bytes -= removed.approximateBytes
    }

    /// An empty buffer with the same bounds.
    func emptied() -> CausalBuffer { CausalBuffer(limit: limit, limitBytes: limitBytes) }

    mutating func removeAll() {
        pending = [:]
        count = 0
        bytes = 0
    }

    /// All held changes, ascending by dot (for encoding and inspection).
    var all: [Change] {
        pending.keys.sorted().flatMap { member in
            pending[member]!.keys.sorted().map { pending[member]![$0]! }
        }
    }
}
