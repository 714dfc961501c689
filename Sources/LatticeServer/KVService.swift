import EtcdAPI
import GRPCWire
import LatticeStore
import NIOPosix
import ProtoWire

/// `etcdserverpb.KV`: a thin translator from gRPC to the store (decode → store → encode).
enum KVService {
    static func register(on routes: inout GRPCRoutes, store: MVCCStore, limits: RequestLimits, gate: AuthGate, metrics: LatticeMetrics? = nil) {
        let service = "etcdserverpb.KV"
        // One key is a lookup, served on the connection's event loop; a range costs in
        // proportion to the keys it covers, so it runs on the read pool.
        routes.add(service: service, method: "Range", asyncUnary(limits: nil, RangeResponse.self) { (r: RangeRequest, call, done) in
            metrics?.ranges.increment()
            // etcd validates a request before it checks permissions (so a bad request gets its
            // own error, and a huge Txn is refused before its operations are walked).
            let valid: Validated<RangeRequest>
            do throws(EtcdError) {
                valid = try store.validated(r)
                try gate.check(call) { (c: AuthCaller) throws(EtcdError) in try c.requireRead(r.key, r.rangeEnd) }
            } catch { return done(.failure(error)) }
            guard !r.rangeEnd.isEmpty else {
                do throws(EtcdError) { return done(.success(try store.range(valid))) } catch { return done(.failure(error)) }
            }
            ReadPool.run(call) { () throws(EtcdError) in try store.range(valid) } done: { done($0) }
        })
        // A write whose client reset the call before the writer reached it is dropped.
        routes.add(service: service, method: "Put", asyncUnary(limits: limits, PutResponse.self) { (r: PutRequest, call, done) in
            var leaseKeysAllowed: MVCCStore.KeysAllowed?
            var authRevision: UInt64?
            let valid: Validated<PutRequest>
            do throws(EtcdError) {
                valid = try store.validated(r)
                if let c = try gate.caller(call) {
                    authRevision = c.state.revision
                    try c.requireWrite(r.key)
                    if r.prevKV { try c.requireRead(r.key) }
                    // Attaching a key to a lease needs write access to the keys already on it:
                    // asked by the writer, about the keys attached when the put is evaluated.
                    if r.lease != 0 {
                        leaseKeysAllowed = { (keys: [[UInt8]]) throws(EtcdError) in for key in keys { try c.requireWrite(key) } }
                    }
                }
                try limits.checkSpace(r.protoSize)
            } catch { return done(.failure(error)) }
            store.put(valid, cancelled: { call.cancellation.isCancelled }, authRevision: authRevision, leaseKeysAllowed: leaseKeysAllowed) { result in
                if case .success = result { metrics?.puts.increment() }
                done(result)
            }
        })
        routes.add(service: service, method: "DeleteRange", asyncUnary(limits: limits, DeleteRangeResponse.self) {
            (r: DeleteRangeRequest, call, done) in
            var authRevision: UInt64?
            let valid: Validated<DeleteRangeRequest>
            do throws(EtcdError) {
                valid = try store.validated(r)
                if let c = try gate.caller(call) {
                    authRevision = c.state.revision
                    try c.requireWrite(r.key, r.rangeEnd)
                    if r.prevKV { try c.requireRead(r.key, r.rangeEnd) }
                }
            } catch { return done(.failure(error)) }
            store.deleteRange(valid, cancelled: { call.cancellation.isCancelled }, authRevision: authRevision) { result in
                if case .success = result { metrics?.deletes.increment() }
                done(result)
            }
        })
        routes.add(service: service, method: "Txn", asyncUnary(limits: limits, TxnResponse.self) { (r: TxnRequest, call, done) in
            var authRevision: UInt64?
            let valid: Validated<TxnRequest>
            do throws(EtcdError) {
                valid = try store.validated(r)
                if let c = try gate.caller(call) {
                    // A Txn that names no key checks no permission in etcd, so no revision.
                    if !(r.compare.isEmpty && r.success.isEmpty && r.failure.isEmpty) { authRevision = c.state.revision }
                    try c.requireTxn(r)
                }
                if r.hasPuts { try limits.checkSpace(r.protoSize) }
            } catch { return done(.failure(error)) }
            store.txn(valid, cancelled: { call.cancellation.isCancelled }, authRevision: authRevision) { result in
                if case .success(let response) = result, let metrics { metrics.count(r, succeeded: response.succeeded) }
                done(result)
            }
        })
        routes.add(service: service, method: "Compact", asyncUnary(limits: limits, CompactionResponse.self) { (r: CompactionRequest, call, done) in
            store.compact(r, completion: done)
        })
    }
}

/// Threads for reads whose cost grows with the keyspace (ranges, hashes), so that they never
/// hold an event loop and the other connections on it. A call abandoned while it waited
/// (reset, deadline, connection closed) is not run.
enum ReadPool {
    static func run<Response>(_ call: GRPCCallContext, _ body: @escaping @Sendable () throws(EtcdError) -> Response,
                              done: @escaping @Sendable (Result<Response, EtcdError>) -> Void) {
        // Admitted like a response of unknown size: a few at a time per connection, and only
        // while the connection's client takes what it is sent.
        call.longWork.start { finished in
            NIOThreadPool.singleton.submit { _ in
                defer { finished() }
                guard !call.cancellation.isCancelled else { return done(.failure(.canceled)) }
                do throws(EtcdError) { done(.success(try body())) } catch { done(.failure(error)) }
            }
        }
    }
}

/// Limits etcd applies to requests that go through its apply path (writes).
struct RequestLimits: Sendable {
    /// `--max-request-bytes`: larger write requests fail with "etcdserver: request is too large".
    var maxRequestBytes: Int
    /// `--quota-backend-bytes`.
    var quotaBytes: Int64
    let store: MVCCStore
    let alarms: Alarms

    /// etcd's quota check for requests that add data (puts, txns with puts, lease grants): with
    /// the NOSPACE alarm active, or when the request would take the store past the quota (which
    /// raises the alarm), it fails with "etcdserver: mvcc: database space exceeded".
    func checkSpace(_ requestBytes: Int) throws(EtcdError) {
        if alarms.noSpace { throw .noSpace }
        if store.approximateSizeBytes + Int64(requestBytes) > quotaBytes {
            alarms.activate(.noSpace)
            throw .noSpace
        }
    }
}

extension LatticeMetrics {
    /// Counts the operations of the branch a Txn ran, as etcd counts them: each range, put and
    /// delete, and the Txn itself when it ran more than one operation.
    func count(_ txn: TxnRequest, succeeded: Bool) {
        var n = (ranges: 0, puts: 0, deletes: 0)
        func walk(_ ops: [RequestOp]) {
            for op in ops {
                switch op.request {
                case .range?: n.ranges += 1
                case .put?: n.puts += 1
                case .deleteRange?: n.deletes += 1
                // A nested Txn's branch is not known here: count its operations of both.
                case .txn(let nested)?: walk(nested.success + nested.failure)
                case nil: break
                }
            }
        }
        walk(succeeded ? txn.success : txn.failure)
        ranges.increment(by: Int64(n.ranges))
        puts.increment(by: Int64(n.puts))
        deletes.increment(by: Int64(n.deletes))
        if n.ranges + n.puts + n.deletes > 1 { txns.increment() }
    }
}

extension TxnRequest {
    var hasPuts: Bool {
        (success + failure).contains { op in
            switch op.request {
            case .put?: return true
            case .txn(let nested)?: return nested.hasPuts
            default: return false
            }
        }
    }
}

/// Wraps a synchronous store call (reads) as a unary gRPC method; see `asyncUnary`.
func unary<Request: ProtoMessage, Response: ProtoMessage>(
    limits: RequestLimits?, _ body: @escaping @Sendable (Request) throws(EtcdError) -> Response
) -> GRPCMethodHandler {
    asyncUnary(limits: limits, Response.self) { request, done in
        do throws(EtcdError) { done(.success(try body(request))) } catch { done(.failure(error)) }
    }
}

/// A unary gRPC method over a store call that completes later (writes answer once durable):
/// checks the request size for writes (`limits`), decodes the request (a malformed one is
/// answered like grpc-go answers it: INTERNAL "grpc: error unmarshalling request: …"), and maps
/// `EtcdError` to its gRPC status.
func asyncUnary<Request: ProtoMessage, Response: ProtoMessage>(
    limits: RequestLimits?, _ response: Response.Type,
    _ body: @escaping @Sendable (Request, _ done: @escaping @Sendable (Result<Response, EtcdError>) -> Void) -> Void
) -> GRPCMethodHandler {
    asyncUnary(limits: limits, response) { request, _, done in body(request, done) }
}

/// As above, with the call's context (its cancellation) passed to `body`.
func asyncUnary<Request: ProtoMessage, Response: ProtoMessage>(
    limits: RequestLimits?, _ response: Response.Type,
    _ body: @escaping @Sendable (Request, GRPCCallContext, _ done: @escaping @Sendable (Result<Response, EtcdError>) -> Void) -> Void
) -> GRPCMethodHandler {
    .unary { bytes, call, responder in
        if let limits, bytes.count > limits.maxRequestBytes {
            responder.fail(EtcdError.requestTooLarge.grpcStatus)
            return
        }
        let request: Request
        do {
            request = try Request(protoBytes: bytes)
        } catch {
            responder.fail(GRPCStatus(.internal, "grpc: error unmarshalling request: \(unmarshalText(error, Request.self))"))
            return
        }
        body(request, call) { result in
            switch result {
            case .success(let response): responder.succeed(response.protoBytes())
            case .failure(let error): responder.fail(error.grpcStatus)
            }
        }
    }
}

extension EtcdError {
    var grpcStatus: GRPCStatus {
        let code: GRPCStatus.Code
        switch self.code {
        case .invalidArgument: code = .invalidArgument
        case .outOfRange: code = .outOfRange
        case .notFound: code = .notFound
        case .resourceExhausted: code = .resourceExhausted
        case .failedPrecondition: code = .failedPrecondition
        case .unavailable: code = .unavailable
        case .alreadyExists: code = .alreadyExists
        case .internal: code = .internal
        case .unknown: code = .unknown
        case .cancelled: code = .cancelled
        case .permissionDenied: code = .permissionDenied
        case .unauthenticated: code = .unauthenticated
        }
        return GRPCStatus(code, message)
    }
}

/// What etcd's decoders say about a malformed request of type `type` (see
/// `ProtoDecodingError.goText`).
func unmarshalText<T>(_ error: any Error, _ type: T.Type) -> String {
    (error as? ProtoDecodingError)?.goText(messageName: String(describing: type)) ?? "\(error)"
}

/// How grpc-go ends a streaming call whose next request does not decode.
func streamUnmarshalStatus<T>(_ error: any Error, _ type: T.Type) -> GRPCStatus {
    GRPCStatus(.internal, "grpc: failed to unmarshal the received message \(unmarshalText(error, type))")
}
