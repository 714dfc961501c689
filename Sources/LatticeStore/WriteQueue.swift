import Dispatch
import Synchronization

/// The bounded queue between request handlers and the writer. Handlers enqueue without waiting;
/// the writer takes everything queued so far as one batch. Full → "etcdserver: too many requests".
final class WriteQueue<Item: Sendable>: Sendable {
    private struct State: ~Copyable {
        var items: [Item] = []
        var closed = false
    }

    private let state = Mutex(State())
    private let signal = DispatchSemaphore(value: 0)
    let capacity: Int

    init(capacity: Int) { self.capacity = capacity }

    /// False when full or closed.
    func enqueue(_ item: Item) -> Bool {
        let accepted = state.withLock { s -> Bool in
            guard !s.closed, s.items.count < capacity else { return false }
            s.items.append(item)
            return true
        }
        if accepted { signal.signal() }
        return accepted
    }

    /// Waits for at least one item, then returns up to `max` of them (nil once closed and empty).
    /// With `wait: false`, returns at once: empty when nothing is queued; with `timeout`, waits
    /// at most that long (empty when nothing came).
    func takeBatch(max: Int, wait: Bool = true, timeout: DispatchTimeInterval? = nil) -> [Item]? {
        while true {
            let taken = state.withLock { s -> [Item]? in
                if s.items.isEmpty { return s.closed ? nil : [] }
                let n = Swift.min(max, s.items.count)
                let batch = Array(s.items.prefix(n))
                s.items.removeFirst(n)
                return batch
            }
            guard let taken else { return nil }
            if !taken.isEmpty || !wait { return taken }
            if let timeout {
                if signal.wait(timeout: .now() + timeout) == .timedOut { return [] }
            } else {
                signal.wait()
            }
        }
    }

    func close() {
        state.withLock { $0.closed = true }
        signal.signal()
    }
}
