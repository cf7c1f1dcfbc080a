import SynthProto

/// SplitMix64: small, fast and the same on every platform, so a seed always gives the same shuffle.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Which records go in which split: sequence numbers 1...count shuffled with the job's seed,
/// then cut into the planned sizes. A job that ended short of its plan (fewer records than the
/// splits' sizes add up to) has its records cut in the planned proportions instead (largest
/// remainders first). The same seed, plan and count always give the same files.
public enum Splits {
    public static func assign(count: Int, seed: UInt64, plan: [PBSplitCount]) -> [(name: String, seqs: [UInt64])] {
        var seqs = (1...max(1, count)).map(UInt64.init)
        if count == 0 { seqs = [] }
        var rng = SplitMix64(seed: seed)
        // Fisher-Yates with our own generator (Array.shuffle's algorithm is not promised stable).
        if seqs.count > 1 {
            for i in stride(from: seqs.count - 1, to: 0, by: -1) {
                let j = Int(rng.next() % UInt64(i + 1))
                seqs.swapAt(i, j)
            }
        }
        guard !plan.isEmpty else { return [("all", seqs)] }
        let sizes = sizes(of: plan, for: seqs.count)
        var out: [(String, [UInt64])] = []
        var start = 0
        for (s, size) in zip(plan, sizes) {
            let end = min(seqs.count, start + size)
            out.append((s.name, Array(seqs[start..<end])))
            start = end
        }
        return out
    }

    /// The split sizes for `n` records: as planned when `n` covers the plan, else in proportion.
    static func sizes(of plan: [PBSplitCount], for n: Int) -> [Int] {
        let planned = plan.reduce(0) { $0 + max(0, Int($1.count)) }
        guard planned > 0, n < planned else { return plan.map { Int($0.count) } }
        // Integer shares: each split's floor of count * n / planned, then one more record to the
        // largest remainders (the earlier split first on a tie) until all n are placed.
        var sizes = plan.map { max(0, Int($0.count)) * n / planned }
        let remainders = plan.map { max(0, Int($0.count)) * n % planned }
        var left = n - sizes.reduce(0, +)
        for i in remainders.indices.sorted(by: { remainders[$0] != remainders[$1] ? remainders[$0] > remainders[$1] : $0 < $1 }) where left > 0 {
            sizes[i] += 1
            left -= 1
        }
        return sizes
    }
}
