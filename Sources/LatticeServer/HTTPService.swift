import GRPCWire
import LatticeStore

/// The HTTP/1.1 endpoints etcd serves beside gRPC on its client port (and, the health and
/// metrics ones, on `--listen-metrics-urls`), with etcd's status codes, bodies and headers.
enum HTTPService {
    /// etcd's headers on every client-port reply.
    static let cors: [(String, String)] = [
        ("Access-Control-Allow-Headers", "accept, content-type, authorization"),
        ("Access-Control-Allow-Methods", "POST, GET, OPTIONS, PUT, DELETE"),
        ("Access-Control-Allow-Origin", "*"),
    ]

    /// The cluster version `/version` reports (etcd 3.5 reports its minor version, patch 0).
    static let clusterVersion = "3.5.0"

    /// The endpoints of a client URL (`metricsOnly`: of a metrics URL: /health and /metrics).
    static func endpoints(health: HealthCheck, metrics: LatticeMetrics, sources: LatticeMetrics.Sources,
                          metricsOnly: Bool) -> HTTPEndpoints {
        let extra = metricsOnly ? [] : cors
        return { request in
            let get = request.method == "GET"
            switch request.path {
            case "/health":
                guard get else { return methodNotAllowed(extra) }
                let (healthy, reason) = health.check(excluding: Set(request.query("exclude")))
                if healthy { metrics.healthSuccess.increment() } else { metrics.healthFailures.increment() }
                let body = "{\"health\":\"\(healthy)\",\"reason\":\(jsonString(reason))}"
                return HTTPReply(status: healthy ? 200 : 503, contentType: "text/plain; charset=utf-8", text: body,
                                 headers: extra + (healthy ? [] : [("X-Content-Type-Options", "nosniff")]))
            case "/metrics":
                guard get else { return methodNotAllowed(extra) }
                return HTTPReply(status: 200, contentType: "text/plain; version=0.0.4; charset=utf-8",
                                 body: metrics.render(sources), headers: extra)
            case "/livez" where !metricsOnly, "/readyz" where !metricsOnly:
                // Liveness: the process answers. Readiness: it can take writes (no alarm, WAL
                // usable) — what `/health` checks.
                guard get else { return methodNotAllowed(extra) }
                if request.path == "/readyz" {
                    let (healthy, reason) = health.check(excluding: [])
                    if !healthy {
                        return HTTPReply(status: 503, contentType: "text/plain; charset=utf-8",
                                         text: "[-]data_corruption failed: \(reason)\nreadyz check failed\n", headers: extra)
                    }
                }
                return HTTPReply(status: 200, contentType: "text/plain; charset=utf-8", text: "ok", headers: extra)
            case "/version" where !metricsOnly:
                guard get else { return methodNotAllowed(extra) }
                let body = "{\"etcdserver\":\"\(EtcdCompatibility.version)\",\"etcdcluster\":\"\(clusterVersion)\"}"
                return HTTPReply(status: 200, contentType: "application/json", text: body, headers: extra)
            default:
                return HTTPReply(status: 404, contentType: "text/plain; charset=utf-8", text: "404 page not found\n",
                                 headers: extra + [("X-Content-Type-Options", "nosniff")])
            }
        }
    }

    static func methodNotAllowed(_ extra: [(String, String)]) -> HTTPReply {
        HTTPReply(status: 405, contentType: "text/plain; charset=utf-8", text: "Method Not Allowed\n",
                  headers: extra + [("Allow", "GET"), ("X-Content-Type-Options", "nosniff")])
    }

    /// A JSON string literal (Go's encoding/json escapes).
    static func jsonString(_ s: String) -> String {
        quotedString(s) { scalar in
            switch scalar {
            case "\"": return "\\\""
            case "\\": return "\\\\"
            case "\n": return "\\n"
            case "\r": return "\\r"
            case "\t": return "\\t"
            case "<": return "\\u003c"
            case ">": return "\\u003e"
            case "&": return "\\u0026"
            default:
                guard scalar.value < 0x20 else { return nil }
                let hex = String(scalar.value, radix: 16)
                return "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            }
        }
    }
}

/// What `/health` reports, as etcd decides it: unhealthy while an alarm is raised (`?exclude=`
/// names alarms to ignore), reason "ALARM <name>"; and — Lattice has no leader to lose — while
/// the WAL cannot be written.
final class HealthCheck: Sendable {
    private let alarms: Alarms
    private let store: MVCCStore

    init(alarms: Alarms, store: MVCCStore) {
        self.alarms = alarms
        self.store = store
    }

    func check(excluding excluded: Set<String>) -> (healthy: Bool, reason: String) {
        for alarm in alarms.active where !excluded.contains(alarm.name) {
            return (false, "ALARM \(alarm.name)")
        }
        if let failure = store.storageFailure {
            return (false, "WAL FAILED: \(failure.message)")
        }
        return (true, "")
    }
}
