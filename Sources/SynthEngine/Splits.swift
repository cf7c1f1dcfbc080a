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
/// then cut into the planned sizes. The same seed and plan always give the same files.
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
        var out: [(String, [UInt64])] = []
        var start = 0
        for s in plan {
            let end = min(seqs.count, start + Int(s.count))
            out.append((s.name, Array(seqs[start..<end])))
            start = end
        }
        return out
    }
}
