/// How concurrent live versions of one key are combined (`--merge json|lww`). Every member of a
/// cluster must use the same mode, or their visible values can differ.
public enum MergeMode: String, Sendable, CaseIterable {
    /// Field-level three-way merge when every concurrent live version is a JSON object;
    /// last-writer-wins otherwise. The default.
    case json
    /// Always last-writer-wins by (HLC, member id).
    case lww
}

/// What a key shows to readers: the bytes and the lease of its visible version (or of its merge).
public struct VisibleValue: Hashable, Sendable {
    public var value: [UInt8]
    public var lease: Int64

    public init(value: [UInt8], lease: Int64) {
        self.value = value
        self.lease = lease
    }
}

/// One version of a key: written by the change `dot` (a change writes at most one version per
/// key). `value == nil` is a tombstone (a delete).
public struct KeyVersion: Hashable, Sendable {
    public let dot: Dot
    public let hlc: HLC
    public let value: [UInt8]?
    public let lease: Int64
    /// Versions this one supersedes: the heads its writer saw, ascending. Garbage collection
    /// rewires them past dropped versions and forgets the ones no longer held, so they are the
    /// nearest *retained* ancestors; reachability among retained versions never changes.
    public internal(set) var parents: [Dot]

    public init(dot: Dot, hlc: HLC, value: [UInt8]?, lease: Int64, parents: [Dot]) {
        self.dot = dot
        self.hlc = hlc
        self.value = value
        self.lease = lease
        self.parents = parents
    }

    public var isTombstone: Bool { value == nil }

    /// Last-writer-wins order: by HLC, then member id, then seq (total, the same on every node).
    static func lwwLess(_ a: KeyVersion, _ b: KeyVersion) -> Bool {
        if a.hlc != b.hlc { return a.hlc < b.hlc }
        return a.dot < b.dot
    }
}

extension KeyVersion: CompactArrayElement {
    /// A key's versions in its DAG: most keys hold one, inline (`CompactArray`).
    public enum CompactStorage: CompactArrayStorage, Sendable {
        case empty
        case one(KeyVersion)
        case many([KeyVersion])

        @inlinable public var cases: CompactArrayCases<KeyVersion> {
            switch self {
            case .empty: return .empty
            case .one(let version): return .one(version)
            case .many(let versions): return .many(versions)
            }
        }
    }
}

/// The versions of one key as a DAG (docs/architecture.md; visibility rules in docs/consistency.md).
///
/// Invariants:
/// - `versions` is in a causal (topological) order: every parent a version names is either
///   earlier in the array or not held at all (never seen here, or garbage collected). Causal
///   delivery guarantees it: a writer's parents are covered by its change's `deps`.
/// - `heads` = the held versions no other held version names as a parent, ascending by dot.
/// - `visible` is a pure function of the held versions and edges, and garbage collection never
///   changes it — which is what makes every replica agree whatever it has collected.
///
/// Visible value: tombstone heads are ignored when any live head exists (add-wins); no live
/// head → absent; one live head → its bytes exactly as written (no parsing); several → with
/// `MergeMode.json` and all of them JSON objects, the field-level merge (`JSONMerge`) against
/// the document of their latest common ancestors, serialised canonically — unless the merged
/// document equals one of the heads (identical concurrent writes, or one side's edit already
/// contains the other's), then the exact bytes of the highest-priority such head; otherwise the
/// last-writer-wins head. Priority is (HLC, member id, seq). The lease of a value resolved
/// last-writer-wins (not JSON objects, or `MergeMode.lww`) is the winner's; a value made of
/// several JSON heads (merged, or equal bytes) has no lease if any live head had none, else the
/// winner's.
///
/// The document of a set of versions (used for merge bases): no live version or no common
/// ancestor → `{}`; one → its object (or `{}` if it is not a JSON object); several → their merge,
/// recursively against *their* latest common ancestors (so criss-cross histories use the merge of
/// all their latest common ancestors, like git's recursive strategy; bounded by
/// `maxMergeBaseDepth`). A tombstone as a base is the same as no base: both mean `{}`.
///
/// Garbage collection never drops a version that is a latest common ancestor at any level of
/// that recursion, so replicas that collected different amounts compute the same bases.
public struct KeyVersionDAG: Sendable {
    /// How many merge bases deep the document of several latest common ancestors is computed
    /// recursively. Only repeated rounds of concurrent writes on top of the same concurrent
    /// versions ("criss-cross") nest bases; this bounds the recursion and the work per merge.
    /// Below it, several common ancestors merge against `{}`. Part of the merge semantics: every
    /// replica must use the same value.
    public static let maxMergeBaseDepth = 32

    /// The versions, and the several-heads state while there is one, in one enum: one version
    /// — most keys — is held inline, with no allocation, and the DAG is exactly as large as a
    /// version (56 bytes: a separate optional reference for the rare several-heads state cost
    /// 8 more per key, 8 MiB of RSS at a million keys).
    private var storage: Storage = .empty

    private enum Storage {
        case empty
        case one(KeyVersion)
        /// Two or more versions, at most one head.
        case many([KeyVersion])
        /// Several heads (concurrent writes not yet superseded): the versions, and the heads, the
        /// visible value decided among them and the merge cache. Otherwise — the norm — the key
        /// has at most one head, which is then its last version (every other version is one of
        /// its ancestors, and causal order puts ancestors first), and its visible value is that
        /// version's. Keeping the rare case behind one reference keeps the common one small: at
        /// a million keys a heads array per key and the inline value and cache cost about 110 MiB.
        case concurrent([KeyVersion], Concurrent)
    }

    /// The held versions, in causal order.
    public var versions: CompactArray<KeyVersion> {
        switch storage {
        case .empty: return []
        case .one(let version): return CompactArray(single: version)
        case .many(let versions), .concurrent(let versions, _): return CompactArray(versions)
        }
    }

    /// The last version (the head, unless there are several), read without wrapping the storage.
    private var lastVersion: KeyVersion? {
        switch storage {
        case .empty: return nil
        case .one(let version): return version
        case .many(let versions), .concurrent(let versions, _): return versions.last
        }
    }

    private var concurrent: Concurrent? {
        if case .concurrent(_, let state) = storage { return state }
        return nil
    }

    /// Holds `versions`, with `concurrent` when the key has several heads.
    private mutating func hold(_ versions: CompactArray<KeyVersion>, concurrent: Concurrent?) {
        if let concurrent {
            storage = .concurrent(versions.array, concurrent)
            return
        }
        switch versions.count {
        case 0: storage = .empty
        case 1: storage = .one(versions[0])
        default: storage = .many(versions.array)
        }
    }

    /// The versions, taken out so that a change to them is made in place (the DAG is left
    /// empty until they are held again).
    private mutating func takeVersions() -> CompactArray<KeyVersion> {
        defer { storage = .empty }
        return versions
    }

    /// The several-heads state; immutable, replaced whole.
    final class Concurrent: Sendable {
        /// Ascending by dot; at least two.
        let heads: [Dot]
        let visible: VisibleValue?
        let cache: MergeCache?

        init(heads: [Dot], visible: VisibleValue?, cache: MergeCache?) {
            self.heads = heads
            self.visible = visible
            self.cache = cache
        }
    }

    /// The held versions no other held version names as a parent, ascending by dot.
    public var heads: [Dot] {
        if let concurrent { return concurrent.heads }
        return lastVersion.map { [$0.dot] } ?? []
    }

    /// What the key shows to readers (nil: absent).
    public var visible: VisibleValue? {
        if let concurrent { return concurrent.visible }
        guard let last = lastVersion, let value = last.value else { return nil }
        return VisibleValue(value: value, lease: last.lease)
    }

    private var mergeCache: MergeCache? { concurrent?.cache }

    /// Whether every head satisfies `predicate` (without building the heads array).
    private func allHeads(_ predicate: (Dot) -> Bool) -> Bool {
        if let concurrent { return concurrent.heads.allSatisfy(predicate) }
        return lastVersion.map { predicate($0.dot) } ?? true
    }

    /// Whether `dots` are exactly the heads.
    private func areHeads(_ dots: [Dot]) -> Bool {
        if let concurrent { return dots == concurrent.heads }
        guard let last = lastVersion else { return dots.isEmpty }
        return dots.count == 1 && dots[0] == last.dot
    }

    public init() {}

    /// Rebuilds a DAG from versions in causal order (decoded state); nil if they are not.
    init?(versions: CompactArray<KeyVersion>, mode: MergeMode) {
        if versions.count == 1 {
            // The norm after garbage collection: one version, which can name only versions not
            // held.
            if versions[0].parents.contains(versions[0].dot) { return nil }
            hold(versions, concurrent: nil)
            return
        }
        var seen = Set<Dot>()
        var all = Set<Dot>()
        for v in versions { if !all.insert(v.dot).inserted { return nil } }
        for v in versions {
            // A parent must be earlier in the array or not held at all.
            for p in v.parents where all.contains(p) && !seen.contains(p) { return nil }
            seen.insert(v.dot)
        }
        hold(versions, concurrent: nil)
        var named = Set<Dot>()
        for v in versions { named.formUnion(v.parents) }
        let heads = versions.map(\.dot).filter { !named.contains($0) }.sorted()
        if heads.count > 1 {
            var noCache: MergeCache?
            let visible = visible(heads: heads, mode: mode, cache: &noCache, keep: false)
            hold(versions, concurrent: Concurrent(heads: heads, visible: visible, cache: nil))
        } else if heads.first != versions.last?.dot {
            return nil
        }
    }

    public var isEmpty: Bool { versions.isEmpty }

    /// Whether garbage collection could shrink this key: more than one version, a tombstone, or
    /// edges to versions no longer held.
    var isCollectable: Bool {
        versions.count > 1 || versions.first.map { $0.isTombstone || !$0.parents.isEmpty } ?? false
    }

    public func version(_ dot: Dot) -> KeyVersion? {
        // Small DAGs are the norm (one version after GC): a linear scan from the newest is fastest.
        switch storage {
        case .empty: return nil
        case .one(let version): return version.dot == dot ? version : nil
        case .many(let versions), .concurrent(let versions, _): return versions.last(where: { $0.dot == dot })
        }
    }

    /// Adds a version written by a change applied in causal order (so it names no version that
    /// is not yet held and no held version names it) and recomputes the visible value.
    /// Returns how the visible value was decided when several live heads disagree.
    @discardableResult
    mutating func add(_ version: KeyVersion, mode: MergeMode) -> Resolution? {
        if areHeads(version.parents) {
            // The writer saw every head (always so for local writes): one head again.
            var versions = takeVersions()
            versions.append(version)
            hold(versions, concurrent: nil)
            return nil
        }
        var heads = self.heads
        heads.removeAll { version.parents.contains($0) }
        heads.append(version.dot)
        heads.sort()
        var cache = mergeCache
        var versions = takeVersions()
        versions.append(version)
        hold(versions, concurrent: nil)
        guard heads.count > 1 else {
            // The new version superseded every head: it is the only one.
            return nil
        }
        var resolution: Resolution?
        let visible = visible(heads: heads, mode: mode, cache: &cache, keep: true, resolution: &resolution)
        hold(takeVersions(), concurrent: Concurrent(heads: heads, visible: visible, cache: cache))
        return resolution
    }

    /// How the visible value of a key with several live, differing heads was decided: what an
    /// operator needs to see what a concurrent write overwrote.
    public struct Resolution: Sendable, Equatable {
        public enum Kind: Sendable, Equatable {
            /// One head's value whole (not all JSON objects, or `MergeMode.lww`).
            case lastWriterWins
            /// Field by field; `conflicts` values were changed differently by several heads and
            /// taken from the winner (0: every head's changes are in the result).
            case merged(conflicts: Int)
        }
        public var kind: Kind
        /// The highest-priority live head.
        public var winner: Dot
        /// The other live heads, ascending.
        public var others: [Dot]
        /// The merge base was itself a merge of several common ancestors (criss-cross history).
        public var crissCross = false
        /// The heads had a common ancestor document (a three-way merge, not a creation).
        public var sharedBase = false
        /// Array regions both sides changed differently, merged element by element.
        public var adjacentArrayEdits = 0
    }

    // MARK: visible value

    func computeVisible(mode: MergeMode) -> VisibleValue? {
        var noCache: MergeCache?
        return visible(heads: heads, mode: mode, cache: &noCache, keep: false)
    }

    /// What a merge of several live heads can reuse for the next one: the heads merged (by
    /// dot), their versions and the document of their latest common ancestors. When a long
    /// branch is applied onto another (a partition heals), each new version replaces its only
    /// parent among the heads; the common ancestors of the heads are then unchanged, so neither
    /// they nor their document are searched for again (that search walks the whole history:
    /// done per applied change it made catching up quadratic). Not part of the DAG's value;
    /// dropped whenever garbage collection changes the graph.
    struct MergeCache: Sendable {
        var heads: [Dot]
        var versions: [Dot: KeyVersion]
        var base: [[UInt8]: JSONValue]
        /// Merge-base searches since the cache was last dropped (for tests: catching up a
        /// branch takes one).
        var searches: Int
    }

    /// How many merge-base searches the current cache has seen (0 without one).
    var mergeBaseSearches: Int { mergeCache?.searches ?? 0 }

    /// The visible value, using and (with `keep`) refreshing `cache`.
    private func visible(heads: [Dot], mode: MergeMode, cache: inout MergeCache?, keep: Bool) -> VisibleValue? {
        var resolution: Resolution?
        return visible(heads: heads, mode: mode, cache: &cache, keep: keep, resolution: &resolution)
    }

    private func visible(heads: [Dot], mode: MergeMode, cache: inout MergeCache?, keep: Bool,
                         resolution: inout Resolution?) -> VisibleValue? {
        if heads.count == 1 {
            guard let v = version(heads[0]), let value = v.value else { return nil }
            return VisibleValue(value: value, lease: v.lease)
        }
        let live = heads.compactMap { dot -> KeyVersion? in
            guard let v = cache?.versions[dot] ?? version(dot), !v.isTombstone else { return nil }
            return v
        }
        if live.isEmpty { return nil }
        if live.count == 1 { return VisibleValue(value: live[0].value!, lease: live[0].lease) }
        let ordered = live.sorted(by: KeyVersion.lwwLess)
        let winner = ordered[ordered.count - 1]
        let lww = VisibleValue(value: winner.value!, lease: winner.lease)
        // With `.json`, a value made of several heads keeps no lease if any of them had none: a
        // key one side wrote to stay is not deleted with a lease the other side attached (over-
        // rather than under-replication). Otherwise the winner's lease.
        let lease = mode == .json && live.contains { $0.lease == 0 } ? 0 : winner.lease
        // Identical concurrent writes overwrite nothing.
        if ordered.allSatisfy({ $0.value == winner.value }) { return VisibleValue(value: winner.value!, lease: lease) }
        let others = live.map(\.dot).filter { $0 != winner.dot }.sorted()
        resolution = Resolution(kind: .lastWriterWins, winner: winner.dot, others: others)
        guard mode == .json else { return lww }
        var docs: [[[UInt8]: JSONValue]] = []
        docs.reserveCapacity(ordered.count)
        for v in ordered {
            guard let doc = JSONValue.parseObject(v.value!) else { return lww }
            docs.append(doc)
        }
        let dots = live.map(\.dot).sorted()
        let base: [[UInt8]: JSONValue]
        var searches = cache?.searches ?? 0
        var crissCross = false
        if let c = cache, c.heads == dots || stepsOneHead(from: c.heads, to: dots) {
            base = c.base
        } else {
            var context = MergeContext(dag: self)
            base = context.baseDocument(of: ordered.map(\.dot), level: 1)
            crissCross = context.nestedMerges > 0
            searches += 1
        }
        if keep {
            cache = MergeCache(heads: dots, versions: Dictionary(uniqueKeysWithValues: live.map { ($0.dot, $0) }), base: base,
                               searches: searches)
        }
        var report = JSONMerge.Report()
        let merged = JSONMerge.merge(base: base, heads: docs, report: &report)
        resolution = Resolution(kind: .merged(conflicts: report.conflicts), winner: winner.dot, others: others,
                                crissCross: crissCross, sharedBase: !base.isEmpty, adjacentArrayEdits: report.adjacentArrayEdits)
        if let i = docs.lastIndex(where: { $0 == merged }) {
            return VisibleValue(value: ordered[i].value!, lease: lease)
        }
        return VisibleValue(value: JSONValue.object(merged).canonicalBytes(), lease: lease)
    }

    /// Whether `new` is `old` with one head replaced by a version whose only parent is that
    /// head: then both sets have the same common ancestors (the new version is no ancestor of
    /// the other heads, so it adds none).
    private func stepsOneHead(from old: [Dot], to new: [Dot]) -> Bool {
        guard old.count == new.count else { return false }
        let added = new.filter { !old.contains($0) }
        let removed = old.filter { !new.contains($0) }
        guard added.count == 1, removed.count == 1, let v = version(added[0]) else { return false }
        return v.parents == removed
    }

    /// Ancestry queries over the held versions, with memoised documents for merge bases.
    struct MergeContext {
        /// The DAG's versions, read once (the DAG's `versions` wraps its storage at each read).
        let versions: CompactArray<KeyVersion>
        let position: [Dot: Int]
        var documents: [[Dot]: [[UInt8]: JSONValue]] = [:]
        /// Merges of several common ancestors computed for bases (criss-cross histories).
        var nestedMerges = 0

        init(dag: KeyVersionDAG) {
            self.versions = dag.versions
            var position: [Dot: Int] = [:]
            for (i, v) in versions.enumerated() { position[v.dot] = i }
            self.position = position
        }

        /// Held ancestors of `dot`, itself included, as positions.
        func ancestors(_ dot: Dot) -> Set<Int> {
            guard let start = position[dot] else { return [] }
            var seen: Set<Int> = [start]
            var stack = [start]
            while let i = stack.popLast() {
                for p in versions[i].parents {
                    if let j = position[p], seen.insert(j).inserted { stack.append(j) }
                }
            }
            return seen
        }

        /// The maximal common ancestors of `dots`, ascending by dot.
        func latestCommonAncestors(_ dots: [Dot]) -> [Dot] {
            guard var common = dots.first.map(ancestors) else { return [] }
            for d in dots.dropFirst() {
                common.formIntersection(ancestors(d))
                if common.isEmpty { return [] }
            }
            // The common ancestors are closed under "ancestor of", so the non-maximal ones are
            // exactly those named as a parent by another common ancestor.
            var named = Set<Dot>()
            for i in common { named.formUnion(versions[i].parents) }
            return common.map { versions[$0].dot }.filter { !named.contains($0) }.sorted()
        }

        mutating func baseDocument(of dots: [Dot], level: Int) -> [[UInt8]: JSONValue] {
            document(of: latestCommonAncestors(dots), level: level)
        }

        /// The document of a set of mutually concurrent versions (see the type's doc comment).
        /// `level` counts how many merge bases deep this is; at `maxMergeBaseDepth` several
        /// versions merge against `{}` instead of against their own common ancestors.
        mutating func document(of dots: [Dot], level: Int) -> [[UInt8]: JSONValue] {
            if let cached = documents[dots] { return cached }
            let live = dots.compactMap { d -> KeyVersion? in
                guard let i = position[d], !versions[i].isTombstone else { return nil }
                return versions[i]
            }.sorted(by: KeyVersion.lwwLess)
            let result: [[UInt8]: JSONValue]
            if live.isEmpty {
                result = [:]
            } else if live.count == 1 {
                result = JSONValue.parseObject(live[0].value!) ?? [:]
            } else {
                var docs: [[[UInt8]: JSONValue]] = []
                for v in live {
                    guard let doc = JSONValue.parseObject(v.value!) else { break }
                    docs.append(doc)
                }
                if docs.count < live.count {
                    result = JSONValue.parseObject(live[live.count - 1].value!) ?? [:]
                } else {
                    let base = level < KeyVersionDAG.maxMergeBaseDepth ? baseDocument(of: live.map(\.dot), level: level + 1) : [:]
                    result = JSONMerge.merge(base: base, heads: docs)
                    nestedMerges += 1
                }
            }
            documents[dots] = result
            return result
        }
    }

    // MARK: garbage collection

    /// What `collectGarbage` did to one key.
    enum CollectionResult {
        case unchanged
        case shrunk(dropped: Int)
        /// Every head is a stable tombstone: the whole key can be forgotten.
        case removeKey
    }

    /// Drops the versions no future merge can need, given `stable`: a vector such that every
    /// change not yet applied here causally follows everything it covers (see
    /// `Replica.collectGarbage(stableVector:)`).
    ///
    /// - If every head is a stable tombstone, the key is dropped entirely (a tombstone base and
    ///   no base are the same to the merge, and there is no live value to keep).
    /// - A stable non-head version `v` is dropped when one of its children `s` is stable and
    ///   every other child of `v` descends from `s`. Then every held and every future version
    ///   that descends from `v` also descends from `s`, so `v` can never again be a latest
    ///   common ancestor: it is not needed as a merge base. Its children are rewired to its
    ///   parents, keeping reachability among the versions that remain.
    /// Heads are never dropped otherwise; `visible` is unchanged.
    /// Whether a collection against `stable` takes a shortcut (every head is stable and either
    /// there is one, or all are tombstones): the key collapses or goes, without the general
    /// search.
    func collapses(stable: VersionVector) -> Bool {
        guard allHeads({ stable.contains($0) }) else { return false }
        return concurrent == nil || allHeads { version($0)?.isTombstone ?? true }
    }

    /// `work` counts the versions visited (each pass's scan and every step of a descent
    /// check): linear in the versions held, per pass.
    mutating func collectGarbage(stable: VersionVector, mode: MergeMode, work: inout Int) -> CollectionResult {
        if allHeads({ stable.contains($0) && (version($0)?.isTombstone ?? true) }) {
            return .removeKey
        }
        if concurrent == nil, var head = lastVersion, stable.contains(head.dot) {
            // One stable live head: everything else is a stable ancestor of it (the stable vector
            // is causally closed), and every future version descends from it. Collapse to it.
            if versions.count == 1 && head.parents.isEmpty { return .unchanged }
            let dropped = versions.count - 1
            head.parents = []
            storage = .one(head)
            return .shrunk(dropped: dropped)
        }
        if case .one(var only) = storage {
            if only.parents.isEmpty { return .unchanged }
            only.parents = []
            storage = .one(only)
            return .shrunk(dropped: 0)
        }
        // Dropping a version can make its ancestors droppable (the base of a diamond whose sides
        // were both dropped): repeat until nothing changes. Chains collapse in one pass.
        var total = 0
        var rewired = false
        var passes = 0
        while passes < Self.collectionPassesMax, let dropped = collectOnce(stable: stable, work: &work) {
            total += dropped
            rewired = true
            passes += 1
        }
        guard rewired else { return .unchanged }
        if let c = concurrent, c.cache != nil {
            hold(takeVersions(), concurrent: Concurrent(heads: c.heads, visible: c.visible, cache: nil))
        }
        assert(computeVisible(mode: mode) == visible, "garbage collection changed a visible value")
        return .shrunk(dropped: total)
    }

    /// One pass: drops the versions droppable in the current graph and rewires, or returns nil if
    /// there was nothing to drop and no edge to a version no longer held.
    private mutating func collectOnce(stable: VersionVector, work: inout Int) -> Int? {
        let versions = self.versions  // read once: the property wraps the storage at each read
        work += versions.count
        var position: [Dot: Int] = [:]
        for (i, v) in versions.enumerated() { position[v.dot] = i }
        var children = [[Int]](repeating: [], count: versions.count)
        for (i, v) in versions.enumerated() {
            for p in v.parents { if let j = position[p] { children[j].append(i) } }
        }
        var dropped = [Bool](repeating: false, count: versions.count)
        var droppedCount = 0
        for (i, v) in versions.enumerated() where !children[i].isEmpty && stable.contains(v.dot) {
            if hasStableBottleneck(children[i], stable: stable, position: position, work: &work) {
                dropped[i] = true
                droppedCount += 1
            }
        }
        let dangling = versions.contains { $0.parents.contains { position[$0] == nil } }
        if droppedCount == 0 && !dangling { return nil }

        // Rewire: each retained version's parents become its nearest retained ancestors.
        // Versions are in causal order, so a dropped parent's replacement is already known.
        var replacement: [Int: [Dot]] = [:]
        var kept: [KeyVersion] = []
        kept.reserveCapacity(versions.count - droppedCount)
        for (i, v) in versions.enumerated() {
            var parents: [Dot] = []
            for p in v.parents {
                guard let j = position[p] else { continue }
                if dropped[j] { parents.append(contentsOf: replacement[j] ?? []) } else { parents.append(p) }
            }
            parents = Array(Set(parents)).sorted()
            if dropped[i] {
                replacement[i] = parents
            } else {
                var copy = v
                copy.parents = parents
                kept.append(copy)
            }
        }
        hold(CompactArray(kept), concurrent: concurrent)
        return droppedCount
    }

    /// Whether one of `children` (positions) is stable and all the others descend from it. Only
    /// the earliest child can be that one (an ancestor comes first in causal order).
    private func hasStableBottleneck(_ children: [Int], stable: VersionVector, position: [Dot: Int], work: inout Int) -> Bool {
        let versions = self.versions
        guard let s = children.min(), stable.contains(versions[s].dot) else { return false }
        for c in children where c != s {
            if !descends(c, from: s, in: versions, position: position, work: &work) { return false }
        }
        return true
    }

    /// How many versions one descent check may visit before it answers "not known to descend"
    /// (keeping a version is always safe; a later collection, after more rewiring, or the
    /// single-stable-head collapse, drops it).
    static let descentCheckBudget = 64
    /// Passes per collection (each O(versions)); what is left is collected next time.
    static let collectionPassesMax = 8

    /// Whether the version at position `c` descends from the one at position `s`, as far as a
    /// bounded walk can tell. Versions are held in causal order, so every version on a path from
    /// `s` to `c` lies between them: the backward walk never goes below `s`. (An unbounded walk
    /// per check made collecting a key with a long concurrent history quadratic.)
    private func descends(_ c: Int, from s: Int, in versions: CompactArray<KeyVersion>, position: [Dot: Int],
                          work: inout Int) -> Bool {
        guard c > s else { return false }
        var seen: Set<Int> = [c]
        var stack = [c]
        while let i = stack.popLast() {
            work += 1
            for p in versions[i].parents {
                guard let j = position[p] else { continue }
                if j == s { return true }
                if j > s, seen.insert(j).inserted {
                    if seen.count > Self.descentCheckBudget { return false }
                    stack.append(j)
                }
            }
        }
        return false
    }
}
