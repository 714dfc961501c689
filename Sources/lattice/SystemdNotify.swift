#if canImport(Glibc)
import Glibc
#endif
import Dispatch

/// systemd's notification protocol without libsystemd: datagrams to `$NOTIFY_SOCKET`
/// (`READY=1` once serving, `STOPPING=1` on the way out, `WATCHDOG=1` at half of
/// `$WATCHDOG_USEC` when the unit has `WatchdogSec=`). Does nothing outside systemd.
final class SystemdNotifier: @unchecked Sendable {
    // @unchecked: `path` and `watchdog` are set in init / once from the serving task.
    private let path: String?
    private var watchdog: DispatchSourceTimer?

    init(environment: [String: String] = SystemdNotifier.environment()) {
        path = environment["NOTIFY_SOCKET"].flatMap { $0.isEmpty ? nil : $0 }
        watchdogInterval = environment["WATCHDOG_USEC"].flatMap(UInt64.init).map { $0 / 2 }
    }

    /// Half the watchdog period, in microseconds, when systemd asked for keep-alives.
    let watchdogInterval: UInt64?

    static func environment() -> [String: String] {
        var out: [String: String] = [:]
        for name in ["NOTIFY_SOCKET", "WATCHDOG_USEC"] {
            if let value = getenv(name) { out[name] = String(cString: value) }
        }
        return out
    }

    func notify(_ state: String) {
        guard let path else { return }
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        guard fd >= 0 else { return }
        defer { close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        // "@name" is an abstract socket: its address starts with a NUL byte.
        var bytes = Array(path.utf8)
        if bytes.first == UInt8(ascii: "@") { bytes[0] = 0 }
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard bytes.count < capacity else { return }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (i, b) in bytes.enumerated() { raw[i] = b }
        }
        let length = socklen_t(MemoryLayout<sa_family_t>.size + bytes.count)
        let message = Array(state.utf8)
        _ = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                message.withUnsafeBytes { sendto(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL), sa, length) }
            }
        }
    }

    func startWatchdog() {
        guard path != nil, let interval = watchdogInterval, interval > 0 else { return }
        let timer = DispatchSource.makeTimerSource(queue: .global())
        timer.schedule(deadline: .now(), repeating: .microseconds(Int(min(interval, UInt64(Int.max)))))
        timer.setEventHandler { [weak self] in self?.notify("WATCHDOG=1") }
        timer.resume()
        watchdog = timer
    }
}
