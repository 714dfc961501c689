import GRPCWire
import LatticeCore
import NIOConcurrencyHelpers
import NIOCore

/// etcd's gRPC gateway: the v3 API as JSON over HTTP/1.1 on the client port (`POST /v3/kv/put`
/// …, also under `/v3beta/`). Each request is transcoded to the gRPC method's protobuf message
/// and served by the very handler gRPC clients reach, so semantics and errors are the same;
/// the answer is transcoded back (`GatewaySchema`). Streaming methods (watch, lease keep-alive,
/// snapshot) answer with one `{"result":…}` line per message, as grpc-gateway does.
struct JSONGateway: HTTPGateway {
    struct Route: Sendable {
        let grpcPath: String
        let request: String
        let response: String
        let streaming: Bool
    }

    let routes: GRPCRoutes
    let maxBodyBytes: Int
    /// Whether auth is enabled now (requests identified by a client certificate are refused
    /// then, see `serve`).
    var authEnabled: @Sendable () -> Bool = { false }

    var peerIdentity: (@Sendable (any Channel) -> String?)? { routes.peerIdentity }

    /// Path (after the `/v3/` or `/v3beta/` prefix) → method, as etcd 3.5's rpc.proto binds them.
    static let table: [String: Route] = {
        var t: [String: Route] = [:]
        func add(_ paths: [String], _ service: String, _ method: String, _ request: String, _ response: String, streaming: Bool = false) {
            let route = Route(grpcPath: "/etcdserverpb.\(service)/\(method)", request: "etcdserverpb.\(request)",
                              response: "etcdserverpb.\(response)", streaming: streaming)
            for path in paths { t[path] = route }
        }
        add(["kv/range"], "KV", "Range", "RangeRequest", "RangeResponse")
        add(["kv/put"], "KV", "Put", "PutRequest", "PutResponse")
        add(["kv/deleterange"], "KV", "DeleteRange", "DeleteRangeRequest", "DeleteRangeResponse")
        add(["kv/txn"], "KV", "Txn", "TxnRequest", "TxnResponse")
        add(["kv/compaction"], "KV", "Compact", "CompactionRequest", "CompactionResponse")
        add(["watch"], "Watch", "Watch", "WatchRequest", "WatchResponse", streaming: true)
        add(["lease/grant"], "Lease", "LeaseGrant", "LeaseGrantRequest", "LeaseGrantResponse")
        add(["lease/revoke", "kv/lease/revoke"], "Lease", "LeaseRevoke", "LeaseRevokeRequest", "LeaseRevokeResponse")
        add(["lease/keepalive"], "Lease", "LeaseKeepAlive", "LeaseKeepAliveRequest", "LeaseKeepAliveResponse", streaming: true)
        add(["lease/timetolive", "kv/lease/timetolive"], "Lease", "LeaseTimeToLive", "LeaseTimeToLiveRequest", "LeaseTimeToLiveResponse")
        add(["lease/leases", "kv/lease/leases"], "Lease", "LeaseLeases", "LeaseLeasesRequest", "LeaseLeasesResponse")
        add(["cluster/member/add"], "Cluster", "MemberAdd", "MemberAddRequest", "MemberAddResponse")
        add(["cluster/member/remove"], "Cluster", "MemberRemove", "MemberRemoveRequest", "MemberRemoveResponse")
        add(["cluster/member/update"], "Cluster", "MemberUpdate", "MemberUpdateRequest", "MemberUpdateResponse")
        add(["cluster/member/list"], "Cluster", "MemberList", "MemberListRequest", "MemberListResponse")
        add(["cluster/member/promote"], "Cluster", "MemberPromote", "MemberPromoteRequest", "MemberPromoteResponse")
        add(["maintenance/alarm"], "Maintenance", "Alarm", "AlarmRequest", "AlarmResponse")
        add(["maintenance/status"], "Maintenance", "Status", "StatusRequest", "StatusResponse")
        add(["maintenance/defragment"], "Maintenance", "Defragment", "DefragmentRequest", "DefragmentResponse")
        // etcd 3.5 binds Hash and HashKV to the same path; Hash answers it.
        add(["maintenance/hash"], "Maintenance", "Hash", "HashRequest", "HashResponse")
        add(["maintenance/snapshot"], "Maintenance", "Snapshot", "SnapshotRequest", "SnapshotResponse", streaming: true)
        add(["maintenance/transfer-leadership"], "Maintenance", "MoveLeader", "MoveLeaderRequest", "MoveLeaderResponse")
        add(["maintenance/downgrade"], "Maintenance", "Downgrade", "DowngradeRequest", "DowngradeResponse")
        add(["auth/enable"], "Auth", "AuthEnable", "AuthEnableRequest", "AuthEnableResponse")
        add(["auth/disable"], "Auth", "AuthDisable", "AuthDisableRequest", "AuthDisableResponse")
        add(["auth/status"], "Auth", "AuthStatus", "AuthStatusRequest", "AuthStatusResponse")
        add(["auth/authenticate"], "Auth", "Authenticate", "AuthenticateRequest", "AuthenticateResponse")
        for (path, method, message) in [("add", "UserAdd", "UserAdd"), ("get", "UserGet", "UserGet"), ("list", "UserList", "UserList"),
                                        ("delete", "UserDelete", "UserDelete"), ("changepw", "UserChangePassword", "UserChangePassword"),
                                        ("grant", "UserGrantRole", "UserGrantRole"), ("revoke", "UserRevokeRole", "UserRevokeRole")] {
            add(["auth/user/\(path)"], "Auth", method, "Auth\(message)Request", "Auth\(message)Response")
        }
        for (path, method, message) in [("add", "RoleAdd", "RoleAdd"), ("get", "RoleGet", "RoleGet"), ("list", "RoleList", "RoleList"),
                                        ("delete", "RoleDelete", "RoleDelete"), ("grant", "RoleGrantPermission", "RoleGrantPermission"),
                                        ("revoke", "RoleRevokePermission", "RoleRevokePermission")] {
            add(["auth/role/\(path)"], "Auth", method, "Auth\(message)Request", "Auth\(message)Response")
        }
        return t
    }()

    func accepts(_ request: HTTPRequestLine) -> Bool {
        request.path.hasPrefix("/v3/") || request.path.hasPrefix("/v3beta/")
    }

    /// grpc-gateway's HTTP status for a gRPC code.
    static func httpStatus(_ code: GRPCStatus.Code) -> Int {
        switch code {
        case .ok: return 200
        case .cancelled: return 408
        case .invalidArgument, .failedPrecondition, .outOfRange: return 400
        case .deadlineExceeded: return 504
        case .notFound: return 404
        case .alreadyExists, .aborted: return 409
        case .permissionDenied: return 403
        case .unauthenticated: return 401
        case .resourceExhausted: return 429
        case .unimplemented: return 501
        case .unavailable: return 503
        default: return 500
        }
    }

    static let successHeaders = HTTPService.cors + [("Grpc-Metadata-Content-Type", "application/grpc")]

    static func errorReply(_ code: GRPCStatus.Code, _ message: String) -> HTTPReply {
        let text = HTTPService.jsonString(message)
        return HTTPReply(status: httpStatus(code), contentType: "application/json",
                         text: "{\"error\":\(text),\"code\":\(code.rawValue),\"message\":\(text)}", headers: HTTPService.cors)
    }

    /// A streamed call's error, as grpc-gateway writes it into the stream.
    static func streamError(_ code: GRPCStatus.Code, _ message: String) -> [UInt8] {
        let status = httpStatus(code)
        return Array("{\"error\":{\"grpc_code\":\(code.rawValue),\"http_code\":\(status),\"message\":\(HTTPService.jsonString(message)),\"http_status\":\(HTTPService.jsonString(statusText(status)))}}\n".utf8)
    }

    static func statusText(_ status: Int) -> String {
        switch status {
        case 400: return "Bad Request"
        case 401: return "Unauthorized"
        case 403: return "Forbidden"
        case 404: return "Not Found"
        case 408: return "Request Timeout"
        case 409: return "Conflict"
        case 429: return "Too Many Requests"
        case 501: return "Not Implemented"
        case 503: return "Service Unavailable"
        case 504: return "Gateway Timeout"
        default: return "Internal Server Error"
        }
    }

    func serve(_ request: HTTPRequestLine, body: [UInt8]?, exchange: HTTPExchange) {
        let path = request.path
        // A call through the gateway is never made by the user a client certificate names (only
        // a token names one here): with auth enabled, a request over a connection whose verified
        // certificate carries a common name is refused rather than served as someone else, as
        // etcd refuses it.
        if let commonName = request.peerIdentity, !commonName.isEmpty, authEnabled() {
            return exchange.reply(HTTPReply(status: 400, contentType: "text/plain; charset=utf-8",
                                            text: "CommonName of client sending a request against gateway will be ignored and not used as expected\n",
                                            headers: [("X-Content-Type-Options", "nosniff")]))
        }
        let suffix = path.hasPrefix("/v3/") ? path.dropFirst(4) : path.dropFirst(8)
        guard let route = Self.table[String(suffix)] else {
            return exchange.reply(HTTPReply(status: 404, contentType: "text/plain; charset=utf-8", text: "Not Found\n",
                                            headers: HTTPService.cors + [("X-Content-Type-Options", "nosniff")]))
        }
        guard request.method == "POST" else {
            return exchange.reply(HTTPReply(status: 405, contentType: "text/plain; charset=utf-8", text: "Method Not Allowed\n",
                                            headers: HTTPService.cors + [("X-Content-Type-Options", "nosniff")]))
        }
        guard let handler = routes.handlers[route.grpcPath] else {
            // A service Lattice declares without this method (as gRPC answers it).
            let parts = route.grpcPath.dropFirst().split(separator: "/")
            return exchange.reply(Self.errorReply(.unimplemented, "unknown method \(parts[1]) for service \(parts[0])"))
        }
        guard let body else {
            return exchange.reply(Self.errorReply(.resourceExhausted, "request body larger than \(maxBodyBytes) bytes"))
        }
        let messages: [[UInt8]]
        do {
            let values = try JSONValue.parseSequence(body)
            // An empty body is an empty message.
            messages = try (values.isEmpty ? [.object([:])] : values).map { value throws(GatewayError) in
                try GatewaySchema.encode(value, as: route.request)
            }
        } catch {
            // A stream's request that does not decode fails the stream as grpc-gateway's does
            // (code Unknown); a unary one is an invalid argument.
            let message = (error as? GatewayError)?.message ?? "invalid character in JSON: \(error)"
            return exchange.reply(Self.errorReply(route.streaming ? .unknown : .invalidArgument, message))
        }
        let cancellation = GRPCCancellation()
        // grpc-gateway passes the Authorization header on as metadata, where etcd reads the token.
        let metadata = request.authorization.map { [("authorization", $0)] } ?? []
        let context = GRPCCallContext(path: route.grpcPath, headers: metadata, eventLoop: exchange.eventLoop, cancellation: cancellation)
        exchange.onClose.withLockedValue { $0 = { cancellation.cancel() } }
        switch handler {
        case .unary(let call):
            guard !route.streaming else { return }
            call(messages[0], context, GRPCResponder { result in
                switch result {
                case .success(let bytes):
                    do throws(GatewayError) {
                        let json = try GatewaySchema.render(bytes, as: route.response)
                        exchange.reply(HTTPReply(status: 200, contentType: "application/json", body: json, headers: Self.successHeaders))
                    } catch {
                        exchange.reply(Self.errorReply(.internal, error.message))
                    }
                case .failure(let status):
                    exchange.reply(Self.errorReply(status.code, status.message))
                }
            })
        case .streaming(let factory):
            exchange.startStream(status: 200, headers: [("Content-Type", "application/json")] + Self.successHeaders)
            let sink = GatewayStreamSink(exchange: exchange, response: route.response)
            let call = factory(context, GRPCStreamSender(sink: sink, eventLoop: exchange.eventLoop))
            let bound = NIOLoopBound(call, eventLoop: exchange.eventLoop)
            exchange.onWritable.withLockedValue { $0 = { bound.value.writabilityChanged(true) } }
            exchange.onClose.withLockedValue {
                $0 = {
                    cancellation.cancel()
                    bound.value.closed()
                }
            }
            for message in messages { call.received(message) }
            call.receivedEnd()
        }
    }
}

/// A streaming call's responses, written as grpc-gateway writes them: `{"result":…}` and a
/// newline per message; an error status as `{"error":{…}}`; then the end of the body.
final class GatewayStreamSink: GRPCStreamSink {
    private let exchange: HTTPExchange
    private let response: String
    private var finished = false

    init(exchange: HTTPExchange, response: String) {
        self.exchange = exchange
        self.response = response
    }

    func sendStreamMessage(_ message: [UInt8], flush: Bool) {
        guard !finished else { return }
        do throws(GatewayError) {
            let json = try GatewaySchema.render(message, as: response)
            exchange.send(Array("{\"result\":".utf8) + json + Array("}\n".utf8))
        } catch {
            finishStream(GRPCStatus(.internal, error.message))
        }
    }

    func flushStream() {}

    func finishStream(_ status: GRPCStatus) {
        guard !finished else { return }
        finished = true
        if status.code != .ok { exchange.send(JSONGateway.streamError(status.code, status.message)) }
        exchange.finish()
    }

    func admitStreaming(_ body: @escaping () -> Void) {
        if !finished { body() }
    }

    func hold(bytes: Int) -> () -> Void { {} }

    var isWritable: Bool { exchange.isWritable }
}
