#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Wall-clock time in milliseconds since the Unix epoch. Every timer and timestamp in Lattice
/// reads one of these, so tests can drive time by hand.
public protocol WallClock: Sendable {
    func nowMilliseconds() -> Int64
}

public struct SystemWallClock: WallClock {
    public init() {}
    public func nowMilliseconds() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
    }
}

/// Hybrid logical clock timestamp: wall milliseconds plus a logical counter. Orders
/// last-writer-wins ties; never used for safety.
public struct HLC: Hashable, Comparable, Sendable {
    public var wallMilliseconds: Int64
    public var logical: UInt32

    public init(wallMilliseconds: Int64, logical: UInt32) {
        self.wallMilliseconds = wallMilliseconds
        self.logical = logical
    }

    public static let zero = HLC(wallMilliseconds: 0, logical: 0)

    public static func < (a: HLC, b: HLC) -> Bool {
        (a.wallMilliseconds, a.logical) < (b.wallMilliseconds, b.logical)
    }

    /// The next timestamp after this one. Never traps, whatever a peer sent: a logical counter at
    /// its maximum carries into the wall part (and the wall part saturates at `Int64.max`).
    public var successor: HLC {
        if logical < UInt32.max { return HLC(wallMilliseconds: wallMilliseconds, logical: logical + 1) }
        if wallMilliseconds < Int64.max { return HLC(wallMilliseconds: wallMilliseconds + 1, logical: 0) }
        return self
    }
}

/// Issues HLC timestamps: monotonic even when the wall clock steps back, and advanced past every
/// timestamp received from a peer. Not thread-safe: owned by the store's writer.
public struct HybridClock: Sendable {
    public let wall: any WallClock
    public private(set) var last = HLC.zero

    public init(wall: any WallClock) { self.wall = wall }

    /// A clock resuming after `last` (restored state): every timestamp it issues is greater.
    public init(wall: any WallClock, last: HLC) {
        self.wall = wall
        self.last = last
    }

    /// A timestamp for a new local change.
    public mutating func tick() -> HLC {
        let now = wall.nowMilliseconds()
        if now > last.wallMilliseconds {
            last = HLC(wallMilliseconds: now, logical: 0)
        } else {
            last = last.successor
        }
        return last
    }

    /// Advances past a timestamp seen on a remote change.
    public mutating func observe(_ remote: HLC) {
        let now = wall.nowMilliseconds()
        let maxWall = max(now, last.wallMilliseconds, remote.wallMilliseconds)
        if maxWall == last.wallMilliseconds && maxWall == remote.wallMilliseconds {
            last = HLC(wallMilliseconds: maxWall, logical: max(last.logical, remote.logical)).successor
        } else if maxWall == last.wallMilliseconds {
            last = last.successor
        } else if maxWall == remote.wallMilliseconds {
            last = remote.successor
        } else {
            last = HLC(wallMilliseconds: maxWall, logical: 0)
        }
    }
}

/// A wall clock that only moves when told to: for tests of leases and timers.
public final class ManualWallClock: WallClock, @unchecked Sendable {
    // @unchecked: `now` is only accessed under `lock`.
    private let lock = ManualWallClockLock()
    private var now: Int64

    public init(startMilliseconds: Int64 = 1_700_000_000_000) { now = startMilliseconds }

    public func nowMilliseconds() -> Int64 { lock.locked { now } }

    public func advance(byMilliseconds delta: Int64) { lock.locked { now += delta } }
}

private final class ManualWallClockLock: @unchecked Sendable {
    // @unchecked: a pthread mutex; allocated once, never moved.
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    init() { mutex = .allocate(capacity: 1); pthread_mutex_init(mutex, nil) }
    deinit { pthread_mutex_destroy(mutex); mutex.deallocate() }
    func locked<T>(_ body: () -> T) -> T {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return body()
    }
}
