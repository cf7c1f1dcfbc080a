/// Online exact near-duplicate detection: each new text is checked against every text accepted
/// so far, and it is a near-duplicate when its trigram Jaccard similarity with any of them is above
/// the threshold. The answers are exactly those of comparing all pairs, found with a set-similarity
/// join instead:
///
/// 1. Tokens (trigrams) are ranked rarest first. Any two sets above the threshold share a token
///    among their first `prefixLength` tokens in that order, so only those prefixes are indexed
///    and probed, and rare tokens have short posting lists.
/// 2. Candidates whose sizes cannot reach the threshold are skipped (length filter), and so are
///    those whose first shared token comes too late in either set for the overlap to be reached
///    (positional filter).
/// 3. The rest are verified by an exact overlap count that stops as soon as the threshold is out
///    of reach.
///
/// All indexed sets must share one ranking, so the ranking is computed from the first
/// `sampleSize` accepted texts (document frequency, then first appearance) and everything is
/// indexed again under a fresh ranking each time the accepted count has grown fourfold. Until
/// the first ranking the few accepted texts are compared directly. Tokens the ranking never saw
/// rank rarest. Any ranking gives exact answers; a good one only makes them faster. A restarted
/// job rebuilds its index by inserting its accepted texts again.
///
/// Not thread-safe: one owner calls it.
public final class NearDuplicateIndex {
    public let threshold: Threshold
    public let sampleSize: Int

    /// Token ids by trigram, in order of first appearance.
    private var ids: [UInt64: UInt32] = [:]
    /// Frozen document frequency per token id (ids beyond it have frequency 0).
    private var frequency: [UInt32] = []
    private var frozen = false
    private var nextFreeze: Int
    /// Accepted sets, as token ids sorted ascending.
    private var sets: [[UInt32]] = []
    /// Posting lists of the indexed prefixes, by token id: the set, and the token's position in
    /// that set's ranked order.
    private var postings: [[Posting]] = []

    struct Posting {
        var set: UInt32
        var position: UInt32
    }
    /// Per accepted set, the probe number that last reached it (candidate de-duplication).
    private var stamp: [UInt32] = []
    private var probes: UInt32 = 0
    /// Per accepted set, the shared prefix tokens counted in the current probe (-1: dropped).
    private var counted: [Int32] = []
    /// Per accepted set, its size (kept flat for the probe loop).
    private var sizes: [UInt32] = []
    private var candidates: [UInt32] = []

    public private(set) var comparisons = 0

    public init(threshold: Threshold = .nearDuplicate, sampleSize: Int = 256) {
        self.threshold = threshold
        self.sampleSize = max(1, sampleSize)
        nextFreeze = self.sampleSize
    }

    public var count: Int { sets.count }

    /// The accepted text that `text` is a near-duplicate of (its position among accepted texts),
    /// or nil. Does not add `text`.
    public func duplicate(of text: String) -> Int? {
        duplicate(ofSet: tokens(Trigrams.set(text)))
    }

    /// Checks `text` and adds it when it is not a near-duplicate. True when it was added.
    @discardableResult
    public func admit(_ text: String) -> Bool {
        let set = tokens(Trigrams.set(text))
        if duplicate(ofSet: set) != nil { return false }
        add(set)
        return true
    }

    /// Adds `text` without checking it (rebuilding from texts that were accepted before).
    public func insert(_ text: String) {
        add(tokens(Trigrams.set(text)))
    }

    // MARK: - internals

    private func tokens(_ trigrams: [UInt64]) -> [UInt32] {
        var out = [UInt32]()
        out.reserveCapacity(trigrams.count)
        for t in trigrams {
            if let id = ids[t] {
                out.append(id)
            } else {
                let id = UInt32(ids.count)
                ids[t] = id
                out.append(id)
            }
        }
        out.sort()
        return out
    }

    /// The rank key of a token: rarer first, then first appearance.
    @inline(__always) private func key(_ id: UInt32) -> UInt64 {
        let f = Int(id) < frequency.count ? frequency[Int(id)] : 0
        return UInt64(f) << 32 | UInt64(id)
    }

    private func prefix(_ set: [UInt32]) -> ArraySlice<UInt32> {
        let p = min(set.count, threshold.prefixLength(set.count))
        guard p > 0 else { return [] }
        var ranked = set
        ranked.sort { key($0) < key($1) }
        return ranked[0..<p]
    }

    private func duplicate(ofSet x: [UInt32]) -> Int? {
        let n = x.count
        guard n > 0 else { return nil }
        if !frozen {
            for (j, y) in sets.enumerated() where threshold.lengthsCompatible(n, y.count) {
                comparisons += 1
                if verify(x, y) { return j }
            }
            return nil
        }
        probes &+= 1
        if probes == 0 {  // wrapped: clear the stamps once every 4 billion probes
            for i in stamp.indices { stamp[i] = 0 }
            probes = 1
        }
        // Each shared prefix token counts toward a candidate's overlap. At every one, the overlap
        // can be at most what was counted plus what is left after it in both orders; once that
        // is below what the threshold needs, the candidate is dropped for good.
        candidates.removeAll(keepingCapacity: true)
        let num = threshold.num, sum = threshold.num + threshold.den, den = threshold.den
        let p = prefix(x)
        sizes.withUnsafeBufferPointer { sizes in
            stamp.withUnsafeMutableBufferPointer { stamp in
                counted.withUnsafeMutableBufferPointer { counted in
                    for (i, token) in p.enumerated() where Int(token) < postings.count {
                        let left = n - i
                        postings[Int(token)].withUnsafeBufferPointer { list in
                            for entry in list {
                                let jj = Int(entry.set)
                                let m = Int(sizes[jj])
                                if stamp[jj] != probes {
                                    stamp[jj] = probes
                                    // Length filter: min/max must exceed the threshold.
                                    guard min(n, m) * den > num * max(n, m) else {
                                        counted[jj] = -1
                                        continue
                                    }
                                    counted[jj] = 0
                                    candidates.append(UInt32(jj))
                                }
                                let c = Int(counted[jj])
                                if c < 0 { continue }
                                // Reachable overlap o must satisfy o·(den + num) > num·(n + m).
                                let reachable = c + min(left, m - Int(entry.position))
                                counted[jj] = reachable * sum > num * (n + m) ? Int32(c + 1) : -1
                            }
                        }
                    }
                }
            }
        }
        for j in candidates where counted[Int(j)] > 0 {
            comparisons += 1
            if verify(x, sets[Int(j)]) { return Int(j) }
        }
        return nil
    }

    /// Whether the overlap of x and y exceeds the threshold; stops once it cannot.
    private func verify(_ x: [UInt32], _ y: [UInt32]) -> Bool {
        let need = threshold.minOverlap(x.count, y.count)
        var i = 0, j = 0, o = 0
        while i < x.count, j < y.count {
            if o + min(x.count - i, y.count - j) < need { return false }
            let a = x[i], b = y[j]
            if a == b {
                o += 1; i += 1; j += 1
                if o >= need { return true }
            } else if a < b {
                i += 1
            } else {
                j += 1
            }
        }
        return o >= need
    }

    private func add(_ set: [UInt32]) {
        sets.append(set)
        stamp.append(0)
        counted.append(0)
        sizes.append(UInt32(set.count))
        if sets.count >= nextFreeze {
            freeze()
            nextFreeze *= 4
        } else if frozen {
            index(UInt32(sets.count - 1))
        }
    }

    /// Ranks the tokens by their frequency among the accepted sets so far and indexes every set
    /// again. Done at 256 sets, then each time the count has grown fourfold, so the ranking keeps
    /// up with the job at a cost that stays proportional to the data.
    private func freeze() {
        frequency = [UInt32](repeating: 0, count: ids.count)
        for s in sets { for t in s { frequency[Int(t)] += 1 } }
        frozen = true
        postings = []
        for j in sets.indices { index(UInt32(j)) }
    }

    private func index(_ j: UInt32) {
        for (position, token) in prefix(sets[Int(j)]).enumerated() {
            let t = Int(token)
            if t >= postings.count { postings.append(contentsOf: repeatElement([], count: t - postings.count + 1)) }
            postings[t].append(Posting(set: j, position: UInt32(position)))
        }
    }
}

/// The reference answer: every new text compared with every accepted one.
public enum BruteForceNearDuplicates {
    /// For each text in order, whether it is a near-duplicate of an earlier accepted text.
    public static func decisions(_ texts: [String], threshold: Threshold = .nearDuplicate) -> [Bool] {
        var accepted: [[UInt64]] = []
        var out: [Bool] = []
        out.reserveCapacity(texts.count)
        for text in texts {
            let x = Trigrams.set(text)
            // Sizes that cannot reach the threshold are skipped first: that is exact, since the
            // similarity is at most min/max of the sizes.
            let dup = !x.isEmpty && accepted.contains { y in
                threshold.lengthsCompatible(x.count, y.count) && threshold.exceeded(overlap: Trigrams.overlap(x, y), x.count, y.count)
            }
            out.append(dup)
            if !dup { accepted.append(x) }
        }
        return out
    }
}
