import EtcdAPI
import GRPCWire
import LatticeStore
import NIOCore
import ProtoWire

/// `etcdserverpb.Lease`.
enum LeaseService {
    static func register(on routes: inout GRPCRoutes, store: MVCCStore, limits: RequestLimits, gate: AuthGate? = nil) {
        let service = "etcdserverpb.Lease"
        routes.add(service: service, method: "LeaseGrant", asyncUnary(limits: limits, LeaseGrantResponse.self) { (r: LeaseGrantRequest, done) in
            do throws(EtcdError) { try limits.checkSpace(r.protoSize) } catch { return done(.failure(error)) }
            store.leaseGrant(r, completion: done)
        })
        routes.add(service: service, method: "LeaseRevoke", asyncUnary(limits: limits, LeaseRevokeResponse.self) { (r: LeaseRevokeRequest, call, done) in
            // Revoking deletes the lease's keys: the caller must be allowed to write each, as
            // the writer finds them (a key attached after the request arrived included). A
            // lease without keys may be revoked by anyone, as in etcd; an invalid token is
            // refused either way.
            let caller: Result<AuthCaller?, EtcdError>
            do throws(EtcdError) {
                caller = .success(try gate?.caller(call) ?? nil)
            } catch where error == .userEmpty {
                caller = .failure(error)
            } catch { return done(.failure(error)) }
            let authRevision = (try? caller.get())??.state.revision
            store.leaseRevoke(r, authRevision: authRevision, keysAllowed: { (keys: [[UInt8]]) throws(EtcdError) in
                guard !keys.isEmpty, let c = try caller.get() else { return }
                for key in keys { try c.requireWrite(key) }
            }, completion: done)
        })
        // Listing a lease's keys, or every lease, costs in proportion to them: read pool.
        routes.add(service: service, method: "LeaseTimeToLive", asyncUnary(limits: nil, LeaseTimeToLiveResponse.self) {
            (r: LeaseTimeToLiveRequest, call, done) in
            guard r.keys else { return done(.success(store.leaseTimeToLive(r))) }
            // Listing the keys needs read access to each (etcd 3.5.9's check, CVE-2023-32082;
            // 3.5.1 lists them to anyone). The caller is known here; the keys are checked on the
            // read pool, on exactly the keys the answer lists (one pass over the keyspace, and a
            // key attached in between is never listed unchecked).
            let caller: AuthCaller?
            do throws(EtcdError) { caller = try gate?.caller(call) ?? nil } catch { return done(.failure(error)) }
            ReadPool.run(call) { () throws(EtcdError) in
                let response = store.leaseTimeToLive(r)
                if let caller { for key in response.keys { try caller.requireRead(key) } }
                return response
            } done: { done($0) }
        })
        routes.add(service: service, method: "LeaseLeases", asyncUnary(limits: nil, LeaseLeasesResponse.self) {
            (_: LeaseLeasesRequest, call, done) in
            ReadPool.run(call) { () throws(EtcdError) in store.leaseLeases() } done: { done($0) }
        })
        routes.add(service: service, method: "LeaseKeepAlive", .streaming { _, sender in
            KeepAliveStream(store: store, sender: sender)
        })
    }
}

/// `LeaseKeepAlive`: each request renews one lease and is answered with its TTL (0 if the lease
/// does not exist, as etcd answers).
final class KeepAliveStream: GRPCStreamingCall {
    private let store: MVCCStore
    private let sender: GRPCStreamSender

    init(store: MVCCStore, sender: GRPCStreamSender) {
        self.store = store
        self.sender = sender
    }

    func received(_ message: [UInt8]) {
        let request: LeaseKeepAliveRequest
        do {
            request = try LeaseKeepAliveRequest(protoBytes: message)
        } catch {
            sender.finish(streamUnmarshalStatus(error, LeaseKeepAliveRequest.self))
            return
        }
        let ttl = store.leaseKeepAlive(request.id)
        sender.send(LeaseKeepAliveResponse(header: store.currentHeader(), id: request.id, ttl: ttl).protoBytes())
    }

    func receivedEnd() { sender.finish(.ok) }
    func writabilityChanged(_ isWritable: Bool) {}
    func closed() {}
}
