import LatticeTestSupport
import LatticeCore

/// A seeded, reproducible simulation of N replicas (FoundationDB/Automerge style): random local
/// writes (puts of JSON objects, other JSON and binary values, deletes, multi-key changes, lease
/// and member operations), delivered to every other replica in random order, duplicated and
/// delayed, with anti-entropy rounds, restarts from encoded state and garbage collection with
/// valid stable vectors. Invariants are checked along the way; after full delivery every replica
/// must show the identical keyspace, leases, members and state hash.
struct ConvergenceSimulation {
    struct Failure: Error, CustomStringConvertible {
        let seed: UInt64
        let step: Int
        let message: String
        var description: String { "seed \(seed) (0x\(String(seed, radix: 16))), step \(step): \(message)" }
    }

    /// Counts, to see what a run exercised.
    struct Stats {
        var changes = 0
        var deliveries = 0
        var duplicates = 0
        var buffered = 0
        var restarts = 0
        var collections = 0
        var mergedKeys = 0
        var antiEntropyRounds = 0
        /// How the replicas resolved concurrent heads (`Replica.mergeCounters`): field-level
        /// merges (three-way when the heads share a base), values both sides changed (same-field
        /// conflicts), whole values by last writer wins.
        var fieldMerges = 0
        var sameFieldConflicts = 0
        var lastWriterWins = 0
        /// Histories whose replicas' clocks are minutes apart.
        var skewedMinutes = 0
        /// Deliveries refused because the causal buffer was full (redelivered later).
        var bufferFull = 0
        /// Merges whose base is itself a merge of several common ancestors (criss-cross), and
        /// array regions where the sides' insertions and removals met (adjacent edits).
        var crissCrossMerges = 0
        var adjacentArrayEdits = 0
        var sharedBaseMerges = 0
    }

    let seed: UInt64
    private var rng: SplitMix64
    private var replicas: [Replica] = []
    private var clocks: [TestClock] = []
    private var members: [UInt64] = []
    private var mode: MergeMode
    /// The causal buffer's bound: sometimes tiny, so deliveries are refused when it is full.
    private var bufferLimit = Replica.defaultCausalBufferLimit
    /// Undelivered messages: (target replica index, change).
    private var inFlight: [(to: Int, change: Change)] = []
    /// Every change ever created, by dot.
    private var created: [Dot: Change] = [:]
    /// Per replica, the vector the simulation expects (advanced by each applied change).
    private var shadow: [VersionVector] = []
    private var nextLeaseCounter: [Int64] = []
    /// Per replica, the dots delivered to it so far (applied or buffered).
    private var delivered: [Set<Dot>] = []
    private var step = 0
    private(set) var stats = Stats()

    static let keys = ["/registry/pods/default/web", "/registry/pods/default/db", "/registry/configmaps/kube-system/c",
                       "/registry/leases/kube-node-lease/n1", "/registry/events/e"].map(bytes)

    init(seed: UInt64) {
        self.seed = seed
        var rng = SplitMix64(seed: seed)
        mode = rng.chance(0.1) ? .lww : .json
        if rng.chance(0.2) { bufferLimit = rng.int(1...3) }
        let n = rng.int(3...7)
        var ids = Set<UInt64>()
        while ids.count < n {
            // Mostly large random ids; sometimes small ones, so member-id tie-breaks are exercised.
            ids.insert(rng.chance(0.3) ? UInt64(rng.int(1...9)) : rng.next() | 1)
        }
        members = ids.sorted()
        let base: Int64 = 1_700_000_000_000
        // Sometimes clocks minutes apart (a site whose clock is wrong), else a few ms.
        let skewMinutes = rng.chance(0.15)
        if skewMinutes { stats.skewedMinutes = 1 }
        for m in members {
            // Skewed wall clocks, sometimes identical (HLC ties broken by member id).
            let skew = skewMinutes ? Int64(rng.int(-10...10)) * 60_000 : Int64(rng.int(-5...5))
            let clock = TestClock(base + (rng.chance(0.5) ? 0 : skew))
            clocks.append(clock)
            replicas.append(Replica(member: m, mergeMode: mode, wallClock: clock, causalBufferLimit: bufferLimit))
            shadow.append(VersionVector())
            nextLeaseCounter.append(0)
            delivered.append([])
        }
        self.rng = rng
    }

    mutating func run() throws(Failure) -> Stats {
        // Mostly short histories; one in ten long, for deep DAGs and criss-cross merges.
        let steps = rng.chance(0.1) ? rng.int(60...150) : rng.int(15...45)
        for s in 0..<steps {
            step = s
            let roll = rng.int(0...99)
            switch roll {
            case 0..<42: try localWrite()
            case 42..<84: try deliverOne()
            case 84..<89: try antiEntropy()
            case 89..<94: try restart(rng.int(0...(replicas.count - 1)))
            default: try collect(rng.int(0...(replicas.count - 1)), useOracle: rng.chance(0.5))
            }
        }
        step = steps
        while !inFlight.isEmpty { try deliverOne() }
        try checkConverged(stage: "after full delivery")
        // Everything is delivered and acknowledged: everything is stable.
        for i in replicas.indices where rng.chance(0.7) { try collect(i, useOracle: false) }
        if rng.chance(0.5) { try restart(rng.int(0...(replicas.count - 1))) }
        try checkConverged(stage: "after garbage collection")
        try checkOracle()
        return stats
    }

    private func fail(_ message: String) -> Failure { Failure(seed: seed, step: step, message: message) }

    // MARK: actions

    private mutating func localWrite() throws(Failure) {
        let r = rng.int(0...(replicas.count - 1))
        clocks[r].now += Int64(rng.int(0...3))
        var ops: [Op] = []
        let count = rng.chance(0.2) ? rng.int(2...3) : 1
        for _ in 0..<count { ops.append(contentsOf: randomOps(r)) }
        if ops.isEmpty { return }
        let applied = replicas[r].makeChange(ops)
        try checkCausal(r, [applied])
        stats.changes += 1
        created[applied.change.id] = applied.change
        // A local write always shows exactly what was written last for each key.
        var last: [[UInt8]: Op] = [:]
        for op in ops { if let k = op.key { last[k] = op } }
        for (key, op) in last {
            let visible = replicas[r].visible(key)
            switch op {
            case .put(_, let value, let lease, _):
                if visible != VisibleValue(value: value, lease: lease) {
                    throw fail("local put of \(text(key)!) shows \(text(visible?.value) ?? "nil") instead of the exact bytes")
                }
            default:
                if visible != nil { throw fail("local delete of \(text(key)!) still visible") }
            }
        }
        for to in replicas.indices where to != r {
            inFlight.append((to, applied.change))
            if rng.chance(0.1) { inFlight.append((to, applied.change)); stats.duplicates += 1 }
        }
    }

    private mutating func randomOps(_ r: Int) -> [Op] {
        let replica = replicas[r]
        let key = rng.pick(Self.keys)
        switch rng.int(0...99) {
        case 0..<6:
            return [.auth(randomAuthOp(replica.authState))]
        case 6..<45:
            // JSON object: an edit of what this replica sees, or a fresh object.
            let doc: JSONValue
            if let current = replica.visible(key), let members = JSONValue.parseObject(current.value), rng.chance(0.8) {
                doc = JSONGenerator.edit(.object(members), &rng)
            } else {
                doc = JSONGenerator.document(&rng, name: text(key)!)
            }
            return [.put(key: key, value: JSONWriter.write(doc, &rng, pretty: rng.chance(0.5)), lease: randomLease(r), parents: [])]
        case 45..<55:
            var value: [UInt8] = rng.chance(0.5) ? bytes("k8s\0") : []
            for _ in 0..<rng.int(0...6) { value.append(UInt8(truncatingIfNeeded: rng.next())) }
            return [.put(key: key, value: value, lease: randomLease(r), parents: [])]
        case 55..<59:
            let value = rng.pick(["[1,2]", "\"text\"", "12", "null", "{\"a\":1", "{} {}", "{\"a\":1,\"a\":2}", ""])
            return [.put(key: key, value: bytes(value), lease: 0, parents: [])]
        case 59..<75:
            return [.delete(key: key, parents: [])]
        case 75..<81:
            nextLeaseCounter[r] += 1
            let id = Int64(r + 1) << 40 | nextLeaseCounter[r]
            return [.leaseGrant(id: id, ttlSeconds: Int64(rng.int(1...60)))]
        case 81..<87:
            guard let lease = replica.leases.isEmpty ? nil : rng.pick(replica.leases) else { return [] }
            return [.leaseCheckpoint(id: lease.id, expiresAtMilliseconds: clocks[r].now + Int64(rng.int(0...90_000)))]
        case 87..<92:
            guard let lease = replica.leases.isEmpty ? nil : rng.pick(replica.leases) else { return [] }
            return replica.revokeOps(lease: lease.id)
        case 92..<95:
            // Re-grant of an id another replica may have revoked (etcd allows re-granting an id).
            guard let lease = replica.leases.isEmpty ? nil : rng.pick(replica.leases) else { return [] }
            return [.leaseGrant(id: lease.id, ttlSeconds: Int64(rng.int(1...60)))]
        case 95..<98:
            let id = rng.pick(members)
            let m = Member(id: id, name: "m\(id % 100)", peerURLs: ["http://10.0.0.\(rng.int(1...9)):2380"],
                           clientURLs: ["http://10.0.0.1:2379"], isLearner: rng.chance(0.2))
            return [rng.pick([.memberAdd(m), .memberUpdate(m), .memberPublish(m)])]
        default:
            return [.memberRemove(id: UInt64(rng.int(1...9)))]
        }
    }

    /// An auth operation on a small set of names, mostly one that is valid where it is written
    /// (as the Auth API only writes those), so that concurrent grants, revokes and deletions of
    /// the same user, role and permission meet.
    private mutating func randomAuthOp(_ auth: AuthState) -> AuthOp {
        let user = rng.pick(["root", "alice", "bob"]), role = rng.pick(["root", "reader", "writer"])
        let key = bytes(rng.pick(["/a", "/b", "/registry/"])), end = rng.pick([[], [0], bytes("/c")])
        switch rng.int(0...9) {
        case 0: return AuthOp(set: .user(user), to: .user(passwordHash: "$2a$04$hash\(rng.int(0...9))", noPassword: rng.chance(0.2)))
        case 1: return AuthOp(remove: .user(user))
        case 2: return AuthOp(set: .role(role))
        case 3: return AuthOp(remove: .role(role))
        case 4, 5: return AuthOp(set: .userRole(user: user, role: role))
        case 6: return AuthOp(remove: .userRole(user: user, role: role))
        case 7: return AuthOp(set: .permission(role: role, key: key, rangeEnd: end), to: .permission(rng.pick([.read, .write, .readwrite])))
        case 8: return AuthOp(remove: .permission(role: role, key: key, rangeEnd: end))
        default: return AuthOp(set: .enabled, to: .enabled(rng.chance(0.5) && auth.users["root"] != nil))
        }
    }

    private mutating func randomLease(_ r: Int) -> Int64 {
        let live = replicas[r].leases
        guard !live.isEmpty, rng.chance(0.25) else { return 0 }
        return rng.pick(live).id
    }

    private mutating func deliverOne() throws(Failure) {
        guard !inFlight.isEmpty else { return }
        let i = rng.int(0...(inFlight.count - 1))
        let (to, change) = inFlight[i]
        inFlight.swapAt(i, inFlight.count - 1)
        inFlight.removeLast()
        if rng.chance(0.05) { inFlight.append((to, change)); stats.duplicates += 1 }
        try deliver(change, to: to)
    }

    private mutating func deliver(_ change: Change, to r: Int) throws(Failure) {
        stats.deliveries += 1
        let wasApplied = replicas[r].vector.contains(change.id)
        let wasPending = !wasApplied && delivered[r].contains(change.id)
        delivered[r].insert(change.id)
        let applied: [AppliedChange]
        let countersBefore = replicas[r].mergeCounters
        do {
            applied = try replicas[r].apply(remote: change)
        } catch .causalBufferFull {
            // Refused, not received: the sender tries again later.
            if wasApplied || wasPending { throw fail("a duplicate was refused as if new") }
            delivered[r].remove(change.id)
            inFlight.append((r, change))
            stats.bufferFull += 1
            return
        } catch {
            throw fail("apply(remote:) threw \(error)")
        }
        let countersAfter = replicas[r].mergeCounters
        stats.crissCrossMerges += countersAfter.crissCrossMerges - countersBefore.crissCrossMerges
        stats.adjacentArrayEdits += countersAfter.adjacentArrayEdits - countersBefore.adjacentArrayEdits
        stats.sharedBaseMerges += countersAfter.sharedBaseMerges - countersBefore.sharedBaseMerges
        stats.fieldMerges += countersAfter.merges - countersBefore.merges
        stats.sameFieldConflicts += countersAfter.mergeConflicts - countersBefore.mergeConflicts
        stats.lastWriterWins += countersAfter.lastWriterWins - countersBefore.lastWriterWins
        if (wasApplied || wasPending) && !applied.isEmpty { throw fail("a duplicate was applied again") }
        if wasPending, !replicas[r].vector.contains(change.id), !replicas[r].pendingChanges.contains(where: { $0.id == change.id }) {
            throw fail("a buffered change was lost")
        }
        if !wasApplied && !wasPending && applied.isEmpty { stats.buffered += 1 }
        try checkCausal(r, applied)
        stats.mergedKeys += applied.flatMap(\.effects).filter { effect in
            (replicas[r].dag(effect.key)?.heads.count ?? 0) > 1
        }.count
    }

    /// Applied changes come out in causal order, each exactly once.
    private mutating func checkCausal(_ r: Int, _ applied: [AppliedChange]) throws(Failure) {
        for a in applied {
            let id = a.change.id
            if shadow[r][id.member] != id.seq - 1 { throw fail("change \(id) applied out of order at replica \(r)") }
            if !shadow[r].covers(a.change.deps) { throw fail("change \(id) applied before its dependencies at replica \(r)") }
            shadow[r][id.member] = id.seq
        }
        if shadow[r] != replicas[r].vector { throw fail("replica \(r) vector differs from the applied changes") }
    }

    private mutating func antiEntropy() throws(Failure) {
        let a = rng.int(0...(replicas.count - 1))
        let b = rng.int(0...(replicas.count - 1))
        guard a != b else { return }
        stats.antiEntropyRounds += 1
        // With valid stable vectors, a member never lags behind another's log floor.
        guard let missing = replicas[b].changes(since: replicas[a].vector) else {
            throw fail("changes(since:) asks for a snapshot although replica \(a) is a member")
        }
        for c in missing where !replicas[a].vector.contains(c.id) {
            if c.id.member == replicas[a].member { throw fail("a replica lacks one of its own changes") }
        }
        for c in missing { try deliver(c, to: a) }
    }

    private mutating func restart(_ r: Int) throws(Failure) {
        stats.restarts += 1
        let encoded = replicas[r].encodeState()
        let restored: Replica
        do {
            restored = try Replica(decodingState: encoded, mergeMode: mode, wallClock: clocks[r], causalBufferLimit: bufferLimit)
        } catch {
            throw fail("decoding the state of replica \(r) failed: \(error)")
        }
        if restored.encodeState() != encoded { throw fail("state encoding does not round-trip") }
        if VisibleState(restored) != VisibleState(replicas[r]) { throw fail("restart changed the visible state") }
        if restored.vector != replicas[r].vector || restored.pendingCount != replicas[r].pendingCount {
            throw fail("restart changed the vector or the buffer")
        }
        replicas[r] = restored
    }

    /// Garbage collection with a stable vector that satisfies the precondition: either the
    /// oracle's (pointwise minimum of every replica's vector and of the deps of every change
    /// not yet applied at `r`) or `Replica.stableVector` over everyone's current vectors.
    private mutating func collect(_ r: Int, useOracle: Bool) throws(Failure) {
        stats.collections += 1
        var stable: VersionVector
        if useOracle {
            stable = replicas[r].vector
            func lower(_ v: VersionVector) {
                for (m, s) in stable.entries where v[m] < s { stable[m] = v[m] }
            }
            for x in replicas { lower(x.vector) }
            for c in created.values where !replicas[r].vector.contains(c.id) { lower(c.deps) }
        } else {
            var reports: [UInt64: VersionVector] = [:]
            for x in replicas { reports[x.member] = x.vector }
            stable = Replica.stableVector(local: replicas[r].vector, localMember: replicas[r].member, peers: reports)
        }
        let before = VisibleState(replicas[r])
        replicas[r].collectGarbage(stableVector: stable)
        if VisibleState(replicas[r]) != before { throw fail("garbage collection changed the visible state of replica \(r)") }
    }

    // MARK: final checks

    private func describe(_ r: Replica) -> String {
        r.visibleKeyspace().map { "\(text($0.key)!)=\(text($0.value.value)!)@\($0.value.lease)" }.joined(separator: "; ")
            + " leases=\(r.leases.map { "\($0.id):\($0.ttlSeconds):\($0.expiresAtMilliseconds)" }) members=\(r.members.map(\.id)) removed=\(r.removedMembers.sorted()) auth=\(r.authState)"
    }

    private func checkConverged(stage: String) throws(Failure) {
        var all = VersionVector()
        for c in created.keys where all[c.member] < c.seq { all[c.member] = c.seq }
        for (i, r) in replicas.enumerated() {
            if r.vector != all { throw fail("\(stage): replica \(i) did not apply everything (pending \(r.pendingCount))") }
            if r.pendingCount != 0 { throw fail("\(stage): replica \(i) still buffers changes") }
        }
        let reference = VisibleState(replicas[0])
        let referenceHash = replicas[0].stateHash()
        for (i, r) in replicas.enumerated().dropFirst() {
            if VisibleState(r) != reference {
                throw fail("\(stage): replica \(i) diverged\n  replica 0: \(describe(replicas[0]))\n  replica \(i): \(describe(r))")
            }
            if r.stateHash() != referenceHash { throw fail("\(stage): state hashes differ with equal state") }
        }
    }

    /// A fresh replica fed every change in one arbitrary order agrees too.
    private func checkOracle() throws(Failure) {
        var oracle = Replica(member: UInt64.max, mergeMode: mode, wallClock: TestClock())
        let all = created.values.sorted { ($0.id.seq, $0.id.member) > ($1.id.seq, $1.id.member) }
        do {
            for c in all { _ = try oracle.apply(remote: c) }
        } catch {
            throw fail("oracle: \(error)")
        }
        if oracle.pendingCount != 0 { throw fail("oracle still buffers \(oracle.pendingCount) changes") }
        if VisibleState(oracle) != VisibleState(replicas[0]) {
            throw fail("oracle diverged\n  oracle: \(describe(oracle))\n  replica 0: \(describe(replicas[0]))")
        }
    }
}

/// Everything a replica shows: what must be identical on converged replicas.
struct VisibleState: Equatable {
    let keyspace: [VisibleEntry]
    let leases: [LeaseInfo]
    let members: [Member]
    let removedMembers: Set<UInt64>
    /// Users, roles, permissions and the enabled flag (not the auth revision, a per-member count).
    let auth: AuthState

    init(_ r: Replica) {
        keyspace = r.visibleKeyspace()
        leases = r.leases
        members = r.members
        removedMembers = r.removedMembers
        var auth = r.authState
        auth.revision = 0
        self.auth = auth
    }
}
