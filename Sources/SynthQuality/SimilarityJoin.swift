/// Every pair of texts, one from each of two collections, whose trigram Jaccard similarity is above
/// a threshold: an exact join by prefix filtering over tokens ordered by rarity (AllPairs, Bayardo,
/// Ma and Srikant 2007; the ordering and the filters as surveyed by Mann, Augsten and Bouros 2016).
///
/// Trigrams are ranked by how many texts of both collections hold them, rarest first, and each set
/// is kept as its sorted ranks. Two sets of sizes n and m above the threshold t share at least
/// ⌈t·max(n, m)⌉ trigrams, so they share one within the first n − ⌈t·n⌉ + 1 ranks of each (any
/// total order would do; rarest first makes those prefixes' postings short, most of all on text,
/// whose trigram frequencies are skewed). The left collection's prefixes are indexed; each right
/// set probes with its prefix, skipping left sets of sizes that cannot reach t, and each candidate is
/// verified exactly by merging the two rank lists, giving up as soon as the needed overlap is out
/// of reach. The answer is exactly that of comparing all pairs.
///
/// Only the left collection is held: the right one is read twice (once to count, once to probe),
/// so a caller can stream it from the store.
public final class SimilarityJoin {
    public struct Match: Sendable, Equatable {
        public var left: Int
        public var overlap: Int
        /// |x ∩ y| / |x ∪ y|.
        public var similarity: Double
    }

    public let threshold: Threshold
    private var counts: [UInt64: Int32] = [:]
    private var leftRaw: [[UInt64]] = []
    private var rank: [UInt64: UInt32] = [:]
    private var left: [[UInt32]] = []
    private var start: [Int32] = []
    private var postings: [Int32] = []
    private var seen: [Int32] = []
    private var probes: Int32 = 0
    /// Trigrams of the left collection held (what the join's memory grows with).
    public private(set) var heldTrigrams = 0

    public init(threshold: Threshold = .nearDuplicate) {
        self.threshold = threshold
    }

    /// Adds a set of the left collection (its index is the order of adding).
    public func addLeft(_ set: [UInt64]) {
        for g in set { counts[g, default: 0] += 1 }
        heldTrigrams += set.count
        leftRaw.append(set)
    }

    /// Counts a set of the right collection (every one, before the first probe).
    public func countRight(_ set: [UInt64]) {
        for g in set { counts[g, default: 0] += 1 }
    }

    /// Ranks the trigrams and indexes the left prefixes; call once, after the counting.
    public func build() {
        let order = counts.sorted { $0.value != $1.value ? $0.value < $1.value : $0.key < $1.key }
        counts = [:]
        rank = [UInt64: UInt32](minimumCapacity: order.count)
        for (r, entry) in order.enumerated() { rank[entry.key] = UInt32(r) }
        left = leftRaw.map { set in set.map { rank[$0]! }.sorted() }
        leftRaw = []
        start = [Int32](repeating: 0, count: order.count + 1)
        for set in left where !set.isEmpty {
            for k in 0..<threshold.prefixLength(set.count) { start[Int(set[k]) + 1] += 1 }
        }
        for i in 0..<order.count { start[i + 1] += start[i] }
        var fill = start
        postings = [Int32](repeating: 0, count: Int(start[order.count]))
        for (i, set) in left.enumerated() where !set.isEmpty {
            for k in 0..<threshold.prefixLength(set.count) {
                let t = Int(set[k])
                postings[Int(fill[t])] = Int32(i)
                fill[t] += 1
            }
        }
        seen = [Int32](repeating: -1, count: left.count)
    }

    /// The left sets above the threshold with `set` (a right set counted before `build`), in
    /// left order. A trigram never counted matches nothing.
    public func matches(_ set: [UInt64]) -> [Match] {
        guard !set.isEmpty else { return [] }
        var y: [UInt32] = []
        y.reserveCapacity(set.count)
        // Uncounted trigrams are ranked past all others: still distinct, never in a left set.
        var extra = UInt32(start.count)
        for g in set {
            if let r = rank[g] { y.append(r) } else {
                y.append(extra)
                extra += 1
            }
        }
        y.sort()
        probes &+= 1
        let stamp = probes
        let m = y.count
        var candidates: [Int32] = []
        for k in 0..<threshold.prefixLength(m) {
            let t = Int(y[k])
            guard t + 1 < start.count else { break }
            for p in Int(start[t])..<Int(start[t + 1]) {
                let i = postings[p]
                if seen[Int(i)] == stamp { continue }
                seen[Int(i)] = stamp
                if threshold.lengthsCompatible(left[Int(i)].count, m) { candidates.append(i) }
            }
        }
        candidates.sort()
        var out: [Match] = []
        for i in candidates {
            let x = left[Int(i)]
            if let o = Self.overlapReaching(x, y, threshold.minOverlap(x.count, m)) {
                out.append(Match(left: Int(i), overlap: o, similarity: Double(o) / Double(x.count + m - o)))
            }
        }
        return out
    }

    /// |x ∩ y| when it is at least `need`, else nil; gives up as soon as `need` is out of reach.
    @inline(__always) static func overlapReaching(_ x: [UInt32], _ y: [UInt32], _ need: Int) -> Int? {
        var i = 0, j = 0, o = 0
        let n = x.count, m = y.count
        while i < n && j < m {
            if o + min(n - i, m - j) < need { return nil }
            let a = x[i], b = y[j]
            if a == b { o += 1 }
            i += a <= b ? 1 : 0
            j += b <= a ? 1 : 0
        }
        return o >= need ? o : nil
    }

    /// Every pair above the threshold between two collections held in memory: (left, right,
    /// match) in right-then-left order.
    public static func pairs(_ left: [[UInt64]], _ right: [[UInt64]], threshold: Threshold = .nearDuplicate) -> [(Int, Int, Match)] {
        let join = SimilarityJoin(threshold: threshold)
        for s in left { join.addLeft(s) }
        for s in right { join.countRight(s) }
        join.build()
        var out: [(Int, Int, Match)] = []
        for (j, s) in right.enumerated() {
            for m in join.matches(s) { out.append((m.left, j, m)) }
        }
        return out
    }
}
