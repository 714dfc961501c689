import EtcdAPI
import LatticeCore
import LatticeStore
import Logging
import NIOCore
import Synchronization

/// etcd's `--auto-compaction-mode` / `--auto-compaction-retention`.
public enum AutoCompaction: Sendable, Equatable {
    case off
    /// Keep `retentionMilliseconds` of history: compact to the revision that was current that
    /// long ago (checked every tenth of the retention, at most hourly, at least every second).
    case periodic(retentionMilliseconds: Int64)
    /// Keep the last `revisions` revisions (checked every 5 minutes, as etcd).
    case revision(revisions: Int64)
}

/// Runs the configured auto-compaction on a timer; decisions use the store's wall clock, so
/// tests drive them with `tick()`.
final class AutoCompactor: Sendable {
    private let store: MVCCStore
    private let mode: AutoCompaction
    private let logger: Logger
    /// (wall ms, revision) samples for periodic mode, oldest first.
    private let samples = Mutex<[(Int64, Int64)]>([])
    private let lastCompacted = Mutex<Int64>(0)

    init(store: MVCCStore, mode: AutoCompaction, logger: Logger) {
        self.store = store
        self.mode = mode
        self.logger = logger
    }

    var checkInterval: TimeAmount? {
        switch mode {
        case .off: return nil
        case .periodic(let retention): return .milliseconds(min(3_600_000, max(1_000, retention / 10)))
        case .revision: return .minutes(5)
        }
    }

    /// One check: compacts when the retention allows it. Returns the revision it compacted to.
    @discardableResult
    func tick() -> Int64? {
        let now = store.configuration.wallClock.nowMilliseconds()
        let current = store.currentRevision
        let target: Int64?
        switch mode {
        case .off:
            target = nil
        case .periodic(let retention):
            target = samples.withLock { s -> Int64? in
                s.append((now, current))
                // The newest sample at least `retention` old gives the revision to keep from.
                guard let index = s.lastIndex(where: { now - $0.0 >= retention }) else { return nil }
                let revision = s[index].1
                s.removeFirst(index)
                return revision
            }
        case .revision(let keep):
            target = current - keep
        }
        guard let target, target > 1 else { return nil }
        let floor = max(lastCompacted.withLock { $0 }, store.compactRevision)
        guard target > floor else { return nil }
        lastCompacted.withLock { $0 = target }
        let logger = self.logger
        store.compact(CompactionRequest(revision: target)) { result in
            switch result {
            case .success: logger.info("auto compaction", metadata: ["revision": "\(target)"])
            case .failure(let error): logger.debug("auto compaction skipped", metadata: ["revision": "\(target)", "reason": "\(error)"])
            }
        }
        return target
    }
}
