/// The spell check's candidate index (symmetric delete): every word of the list, and every string
/// made from it by deleting one or two of its characters, hashed. Two words within two edits of
/// each other (insertions, deletions, substitutions, swaps of neighbours) become the same string
/// after at most two deletions from each, so the words within two edits of a query are among those
/// that share a hash with one of the query's own deletions, and only those are measured. A query
/// then costs a few hundred binary searches instead of a distance to each of 100,000 words.
///
/// A 32-bit hash may collide; a collision only adds a candidate, which the exact distance drops.
struct DeletionIndex: Sendable {
    /// `hash << 32 | word number`, sorted.
    private let entries: [UInt64]
    /// The longest word, in code points: a longer query has no word within two edits.
    let longest: Int

    init(words: WordTable) {
        var entries: [UInt64] = []
        var longest = 0
        var scalars: [UInt32] = []
        for k in 0..<words.count {
            words.scalars(of: k, into: &scalars)
            longest = max(longest, scalars.count)
            Self.forEachDeletion(of: scalars, upTo: 2) { entries.append(UInt64($0) << 32 | UInt64(k)) }
        }
        entries.sort()
        var unique: [UInt64] = []
        unique.reserveCapacity(entries.count)
        for e in entries where unique.last != e { unique.append(e) }
        self.entries = unique
        self.longest = longest
    }

    var count: Int { entries.count }

    /// The numbers of the words that may be within `edits` (1 or 2) of `query`.
    func candidates(of query: [UInt32], edits: Int) -> Set<Int> {
        var out = Set<Int>()
        guard query.count <= longest + edits else { return out }
        Self.forEachDeletion(of: query, upTo: edits) { hash in
            var i = lowerBound(UInt64(hash) << 32)
            while i < entries.count, entries[i] >> 32 == UInt64(hash) {
                out.insert(Int(entries[i] & 0xFFFF_FFFF))
                i += 1
            }
        }
        return out
    }

    private func lowerBound(_ key: UInt64) -> Int {
        var lo = 0, hi = entries.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if entries[mid] < key { lo = mid + 1 } else { hi = mid }
        }
        return lo
    }

    /// Calls `body` with the hash of `s` and of every string made by deleting up to `upTo` (at
    /// most 2) of its code points.
    static func forEachDeletion(of s: [UInt32], upTo: Int, _ body: (UInt32) -> Void) {
        let n = s.count
        body(hash(s, skipping: -1, -1))
        guard upTo >= 1 else { return }
        for i in 0..<n {
            body(hash(s, skipping: i, -1))
            guard upTo >= 2 else { continue }
            for j in (i + 1)..<max(i + 1, n) { body(hash(s, skipping: i, j)) }
        }
    }

    /// FNV-1a over the code points of `s` but those at `a` and `b`.
    static func hash(_ s: [UInt32], skipping a: Int, _ b: Int) -> UInt32 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for (i, c) in s.enumerated() where i != a && i != b {
            h = (h ^ UInt64(c)) &* 0x0000_0100_0000_01B3
        }
        return UInt32(truncatingIfNeeded: h ^ (h >> 32))
    }
}
