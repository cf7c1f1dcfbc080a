#if canImport(Darwin)
import Darwin
#elseif canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CSketch
import Synchronization

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
