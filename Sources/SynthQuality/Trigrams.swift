/// Character trigrams, the unit of the near-duplicate check.
///
/// The text is normalised first: letters lower-cased and every run of whitespace made one space,
/// trimmed at both ends. A trigram is three consecutive Unicode scalars of that text, packed
/// exactly (21 bits each) into one 64-bit value, so equal values are equal trigrams.
public enum Trigrams {
    /// The sorted, distinct trigrams of `text`. Texts shorter than three scalars have none.
    public static func set(_ text: String) -> [UInt64] {
        var out: [UInt64] = []
        out.reserveCapacity(text.utf8.count)
        var a: UInt64 = 0, b: UInt64 = 0
        var have = 0
        var pendingSpace = false
        func push(_ c: UInt64) {
            if have >= 2 { out.append(a << 42 | b << 21 | c) }
            a = b
            b = c
            have += 1
        }
        for scalar in text.unicodeScalars {
            let v = scalar.value
            if v == 0x20 || (v >= 0x09 && v <= 0x0D) || (v > 0x7F && scalar.properties.isWhitespace) {
                pendingSpace = have > 0
                continue
            }
            if pendingSpace {
                push(0x20)
                pendingSpace = false
            }
            if v < 0x80 {
                push(UInt64(v >= 0x41 && v <= 0x5A ? v + 0x20 : v))
            } else if scalar.properties.changesWhenLowercased {
                for l in scalar.properties.lowercaseMapping.unicodeScalars { push(UInt64(l.value)) }
            } else {
                push(UInt64(v))
            }
        }
        out.sort()
        var w = 0
        for i in 0..<out.count where i == 0 || out[i] != out[i - 1] {
            out[w] = out[i]
            w += 1
        }
        out.removeLast(out.count - w)
        return out
    }

    /// |a ∩ b| of two sorted, distinct arrays.
    public static func overlap(_ a: [UInt64], _ b: [UInt64]) -> Int {
        a.withUnsafeBufferPointer { x in b.withUnsafeBufferPointer { y in overlap(x, y) } }
    }

    @inline(__always)
    static func overlap<T: FixedWidthInteger>(_ x: UnsafeBufferPointer<T>, _ y: UnsafeBufferPointer<T>) -> Int {
        var i = 0, j = 0, n = 0
        let nx = x.count, ny = y.count
        while i < nx && j < ny {
            let a = x[i], b = y[j]
            if a == b { n += 1 }
            // Advance whichever is smaller (both when equal), without a branch per case.
            i += a <= b ? 1 : 0
            j += b <= a ? 1 : 0
        }
        return n
    }

    public static func jaccard(_ a: [UInt64], _ b: [UInt64]) -> Double {
        if a.isEmpty && b.isEmpty { return 1 }
        let o = overlap(a, b)
        return Double(o) / Double(a.count + b.count - o)
    }
}

/// A Jaccard threshold as an exact fraction, so that every decision is made in integers: the
/// similarity o / (n + m - o) exceeds num/den exactly when o·(den + num) > num·(n + m).
public struct Threshold: Sendable, Equatable {
    public let num: Int
    public let den: Int

    public init(_ num: Int, _ den: Int) {
        precondition(num > 0 && den > num, "a threshold is a fraction in (0, 1)")
        self.num = num
        self.den = den
    }

    /// The documentation's near-duplicate threshold: similarity above 0.7.
    public static let nearDuplicate = Threshold(7, 10)

    public var value: Double { Double(num) / Double(den) }

    /// Whether an overlap of `o` between sets of sizes n and m is a similarity above the threshold.
    @inline(__always) public func exceeded(overlap o: Int, _ n: Int, _ m: Int) -> Bool {
        o * (den + num) > num * (n + m)
    }

    /// The least overlap that exceeds the threshold for sets of sizes n and m.
    @inline(__always) public func minOverlap(_ n: Int, _ m: Int) -> Int {
        num * (n + m) / (den + num) + 1
    }

    /// Sizes that cannot reach a similarity above the threshold: min/max must exceed it.
    @inline(__always) public func lengthsCompatible(_ n: Int, _ m: Int) -> Bool {
        min(n, m) * den > num * max(n, m)
    }

    /// How many of a set's first tokens (in the global order) must be indexed and probed: any
    /// two sets above the threshold share a token within these prefixes. Above the threshold,
    /// the overlap is at least ⌈t·max(n, m)⌉, so a prefix of n − ⌈t·n⌉ + 1 suffices.
    @inline(__always) public func prefixLength(_ n: Int) -> Int {
        n - (num * n + den - 1) / den + 1
    }
}
