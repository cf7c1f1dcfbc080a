import Dispatch
#if canImport(Darwin)
import Darwin
#elseif canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CSketch

/// Online exact near-duplicate detection: each new text is checked against every text accepted
/// so far, and it is a near-duplicate when its trigram Jaccard similarity with any of them is above
/// the threshold. The answers are exactly those of comparing all pairs.
///
/// Signature schemes (prefix, positional, partition filters) do poorly here: texts of a few
/// hundred characters have hundreds of trigrams, and even the rarest 5% of a text's trigrams are
/// each in a few percent of all texts, so every probe still reaches most accepted texts, one
/// posting at a time. Instead every accepted text of a compatible size is ruled out by a sketch a
/// few dozen bytes long, compared sixteen counts per SIMD instruction (a count version of the
/// bitmap filter of Sandes et al.):
///
/// 1. Length filter: similarity above t = num/den needs min/max of the sizes above t. Accepted
///    sets are kept in bins of nearly equal size (32 per octave) and only compatible bins are read.
/// 2. Sketch filter: a hash of each trigram picks one of D parts (D a multiple of 32, about a
///    quarter of the bin's set size), and a set is summarised by how many of its trigrams fall in
///    each part, capped at 15. A trigram in the symmetric difference of x and y changes one
///    part's count by one and capping only brings counts closer, so L = Σ|cx − cy| ≤ |x Δ y| =
///    n + m − 2·overlap. Above the threshold, overlap ≥ minOverlap(n, m), so
///    |x Δ y| ≤ n + m − 2·minOverlap(n, m) < (n + m)(den − num)/(den + num); any pair with L
///    above that is ruled out. L is computed directly with byte sums of absolute differences
///    (PSADBW, two vectors at a time with AVX2; CSketch) on x86-64, elsewhere as
///    Σcx + Σcy − 2·Σmin(cx, cy); both are the same number. On
///    unrelated texts this leaves about one pair in ten thousand. (This is close to the least
///    sketch that works here: unrelated texts share about 40% of their trigrams, and with D a
///    fifth of the size instead of a quarter sixty times as many pairs reach verification.)
/// 3. The pairs left are verified exactly: y's trigrams are looked up in the probe's hash set,
///    stopping as soon as the overlap is reached or out of reach.
///
/// Bins are scanned from x's own size outwards, so a near-copy is usually found first; when there
/// is much to scan, the bins are cut into runs that the calling thread and Dispatch's workers
/// take in turn (the answer is the one a single thread would give). Nothing depends on the order texts came in or on statistics of them, so a restarted job
/// rebuilds the same index by inserting its accepted texts again.
///
/// Not thread-safe: one owner calls it.
public final class NearDuplicateIndex {
    public let threshold: Threshold
    /// Kept for source compatibility: the sketch join needs no sample of the data to rank tokens.
    public let sampleSize: Int
    private var join: SketchJoin

    public init(threshold: Threshold = .nearDuplicate, sampleSize: Int = 256) {
        self.threshold = threshold
        self.sampleSize = max(1, sampleSize)
        join = SketchJoin(threshold: threshold)
    }

    public var count: Int { join.count }
    /// Pairs verified exactly.
    public var comparisons: Int { join.comparisons }
    /// Pairs compared by sketch (those that passed the length filter).
    public var sketchComparisons: Int { join.sketchComparisons }

    /// The accepted text that `text` is a near-duplicate of (its position among accepted texts),
    /// or nil. Does not add `text`.
    public func duplicate(of text: String) -> Int? {
        join.load(text)
        return join.duplicateOfLoaded()
    }

    /// Checks `text` and adds it when it is not a near-duplicate. True when it was added.
    @discardableResult
    public func admit(_ text: String) -> Bool {
        join.admit(text)
    }

    /// Adds `text` without checking it (rebuilding from texts that were accepted before).
    public func insert(_ text: String) {
        join.load(text)
        join.addLoaded()
    }
}

/// The state and work of `NearDuplicateIndex`, kept in a struct so that the hot loops touch it
/// without dynamic exclusivity checks.
struct SketchJoin {
    let threshold: Threshold
    /// The text being checked or added.
    private var probe = ProbeTrigrams()
    /// Accepted sets' trigrams, one set after another: in `narrow` as `Self.narrow` codes when
    /// all of a set's trigrams have one (as ASCII text's all do), else in `wide` as packed.
    private var narrow: [UInt32] = []
    private var wide: [UInt64] = []
    private var spans: [Span] = []

    struct Span {
        var start: Int
        var end: Int
        var wide: Bool
    }
    /// Accepted sets by size bin (`bin(_:)`).
    private var bins: [Bin] = []

    struct Bin {
        /// Per set, its sketch: `dimensions(g) / 32` vectors (g the bin's group), whose byte k
        /// of vector v holds the capped counts of dimensions 32v + k (low four bits) and
        /// 32v + 16 + k (high four).
        var sketches: [SIMD16<UInt8>] = []
        /// Per set, the sum of its capped counts.
        var sums: [UInt32] = []
        /// Per set, its size.
        var sizes: [UInt32] = []
        /// Per set, its position among the accepted sets.
        var sets: [UInt32] = []
    }

    /// The loaded text's sketches by bin group, one count per byte, valid where `probeLoad` is
    /// `loads`.
    private var probeSketches: [[SIMD16<UInt8>]] = []
    private var probeSums: [Int] = []
    /// The same counts as compared with a packed sketch by byte sums of absolute differences:
    /// per packed vector v, the counts of its low nibbles (`probeSketches[g][2v]`), then those of
    /// its high nibbles times 16 (`probeSketches[g][2v + 1] << 4`).
    private var probeSAD: [[SIMD16<UInt8>]] = []
    private var probeLoad: [UInt64] = []
    /// How many texts have been loaded, and the last one.
    private var loads: UInt64 = 0
    private var loaded: String?

    private(set) var comparisons = 0
    private(set) var sketchComparisons = 0

    init(threshold: Threshold) {
        self.threshold = threshold
    }

    var count: Int { spans.count }

    /// Loads `text` as the probe, unless it is already (the engine checks a text, then adds it).
    mutating func load(_ text: String) {
        // Byte for byte: String's == would equate canonically equivalent texts whose scalars,
        // and so trigrams, differ.
        if let loaded, loaded.utf8.elementsEqual(text.utf8) { return }
        probe.load(text)
        loaded = text
        loads += 1
    }

    mutating func admit(_ text: String) -> Bool {
        load(text)
        if duplicateOfLoaded() != nil { return false }
        addLoaded()
        return true
    }

    /// Size bins: one per size below 64, then 32 per octave, so that a bin never straddles a
    /// power of two.
    @inline(__always) static func bin(_ m: Int) -> Int {
        if m < 64 { return m }
        let b = Int.bitWidth - 1 - m.leadingZeroBitCount
        return 32 * (b - 4) + ((m - (1 << b)) >> (b - 5))
    }

    /// The largest size in bin i.
    @inline(__always) static func binMax(_ i: Int) -> Int {
        if i < 64 { return i }
        let b = i / 32 + 4
        return (1 << b) + ((i % 32 + 1) << (b - 5)) - 1
    }

    /// Bins share their sketch dimensions by fours (eight groups per octave of sizes).
    @inline(__always) static func group(_ bin: Int) -> Int { bin / 4 }

    /// The number of sketch dimensions for bin group g: a multiple of 32 of about a quarter of
    /// the group's largest size, and at least 64. Any choice is exact; this one rules out nearly
    /// all unrelated pairs with the fewest bytes to read.
    @inline(__always) static func dimensions(_ g: Int) -> Int {
        max(64, (binMax(4 * g + 3) / 4 + 31) / 32 * 32)
    }

    /// The loaded text's sketch for bin group g (built once per text), and its sum.
    private mutating func probeSketch(_ g: Int) -> Int {
        if probeLoad.count <= g {
            let more = g + 1 - probeLoad.count
            probeLoad.append(contentsOf: repeatElement(0, count: more))
            probeSums.append(contentsOf: repeatElement(0, count: more))
            probeSketches.append(contentsOf: repeatElement([], count: more))
            probeSAD.append(contentsOf: repeatElement([], count: more))
        }
        if probeLoad[g] != loads {
            probeLoad[g] = loads
            let dims = Self.dimensions(g)
            probeSketches[g].removeAll(keepingCapacity: true)
            probeSketches[g].append(contentsOf: repeatElement(SIMD16<UInt8>(), count: dims / 16))
            var sum = 0
            let d64 = UInt64(dims)
            probeSketches[g].withUnsafeMutableBytes { counts in
                for h in probe.hashes {
                    let d = Int(truncatingIfNeeded: (UInt64(h) &* d64) >> 32)
                    if counts[d] < 15 {
                        counts[d] += 1
                        sum += 1
                    }
                }
            }
            probeSums[g] = sum
            probeSAD[g].removeAll(keepingCapacity: true)
            for v in 0..<dims / 32 {
                probeSAD[g].append(probeSketches[g][2 * v])
                probeSAD[g].append(probeSketches[g][2 * v + 1] &<< 4)
            }
        }
        return probeSums[g]
    }

    /// A packed trigram (three 21-bit scalars) in 30 bits when all three scalars are below 1024,
    /// else `.max`.
    @inline(__always) static func narrow(_ trigram: UInt64) -> UInt32 {
        let a = trigram >> 42, b = trigram >> 21 & 0x1F_FFFF, c = trigram & 0x1F_FFFF
        return a | b | c < 1024 ? UInt32(truncatingIfNeeded: a << 20 | b << 10 | c) : .max
    }

    @inline(__always) static func wide(_ code: UInt32) -> UInt64 {
        let c = UInt64(code)
        return (c >> 20) << 42 | (c >> 10 & 0x3FF) << 21 | c & 0x3FF
    }

    /// The loaded text's sketch for bin group g packed two counts a byte, as stored.
    private mutating func packedSketch(_ g: Int) -> [SIMD16<UInt8>] {
        _ = probeSketch(g)
        let x = probeSketches[g]
        return (0..<x.count / 2).map { v in x[2 * v] | x[2 * v + 1] &<< 4 }
    }

    /// Below this much sketch work (16-byte vectors to compare) a probe runs on the calling
    /// thread alone; above it, the compatible bins are shared with a second thread.
    static let parallelWork = 60_000

    mutating func duplicateOfLoaded() -> Int? {
        let n = probe.count
        guard n > 0 else { return nil }
        let num = threshold.num, den = threshold.den
        // Compatible sizes m: min(n, m)·den > num·max(n, m).
        let lo = num * n / den + 1
        let hi = (n * den - 1) / num
        let first = Self.bin(lo), last = min(Self.bin(hi), bins.count - 1)
        guard first <= last else { return nil }
        // Bins from n's outwards, so that a near-copy (usually of about the same size) comes early.
        var order: [Int] = []
        var work = 0
        let own = min(Self.bin(n), last)
        var down = own, up = own + 1
        while down >= first || up <= last {
            let i: Int
            if up > last || (down >= first && own - down <= up - own) {
                i = down
                down -= 1
            } else {
                i = up
                up += 1
            }
            if bins[i].sets.isEmpty { continue }
            order.append(i)
            _ = probeSketch(Self.group(i))
            work += bins[i].sets.count * Self.dimensions(Self.group(i)) / 32
        }
        if work >= Self.parallelWork {
            return inParallel(order, work, n, lo, hi)
        }
        let r = context(n, lo, hi).scan(order)
        comparisons += r.comparisons
        sketchComparisons += r.scanned
        return r.found?.set
    }

    /// Scans the bins in `order` on the threads Dispatch gives, the calling one included. The bins
    /// are cut into runs of about equal work, which the threads take in turn, so that a thread
    /// the system holds back (the machine is shared) leaves its runs to the other. A run that
    /// finds a near-duplicate stops the runs after it; the runs before it are all scanned, so the
    /// answer is the one a single thread would give.
    private mutating func inParallel(_ order: [Int], _ work: Int, _ n: Int, _ lo: Int, _ hi: Int) -> Int? {
        var runs: [[Int]] = [[]]
        var load = 0
        let target = max(1, work / Self.parallelRuns)
        for i in order {
            if load >= target {
                runs.append([])
                load = 0
            }
            runs[runs.count - 1].append(i)
            load += bins[i].sets.count * Self.dimensions(Self.group(i)) / 32
        }
        let context = context(n, lo, hi), parts = runs
        let shared = SharedScan()
        DispatchQueue.concurrentPerform(iterations: parts.count) { k in
            for i in parts[k] {
                if shared.stopped(after: k) { return }
                let r = context.scan(CollectionOfOne(i))
                shared.add(k, r)
                if r.found != nil { return }
            }
        }
        let r = shared.result()
        comparisons += r.comparisons
        sketchComparisons += r.scanned
        return r.found?.set
    }

    /// How many runs a probe's bins are cut into when it is scanned in parallel.
    static let parallelRuns = 24

    /// The runs' shared answer: the near-duplicate of the earliest run that found one, and the
    /// counts, under a mutex.
    private final class SharedScan: @unchecked Sendable {
        private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
        /// The earliest run that found a near-duplicate, or Int.max.
        private var first = Int.max
        private var total = ScanContext.Result()

        init() {
            mutex.initialize(to: pthread_mutex_t())
            pthread_mutex_init(mutex, nil)
        }

        deinit {
            pthread_mutex_destroy(mutex)
            mutex.deinitialize(count: 1)
            mutex.deallocate()
        }

        /// Whether a run before run k has found a near-duplicate, so that k need not go on.
        func stopped(after k: Int) -> Bool {
            pthread_mutex_lock(mutex)
            defer { pthread_mutex_unlock(mutex) }
            return first < k
        }

        func add(_ k: Int, _ r: ScanContext.Result) {
            pthread_mutex_lock(mutex)
            defer { pthread_mutex_unlock(mutex) }
            total.comparisons += r.comparisons
            total.scanned += r.scanned
            if let found = r.found, k < first {
                first = k
                total.found = found
            }
        }

        func result() -> ScanContext.Result {
            pthread_mutex_lock(mutex)
            defer { pthread_mutex_unlock(mutex) }
            return total
        }
    }

    private func context(_ n: Int, _ lo: Int, _ hi: Int) -> ScanContext {
        ScanContext(threshold: threshold, n: n, lo: lo, hi: hi, bins: bins, probeSketches: probeSketches, probeSums: probeSums, probeSAD: probeSAD,
                    probe: probe, narrow: narrow, wide: wide, spans: spans)
    }

    mutating func addLoaded() {
        let m = probe.count
        let j = UInt32(count)
        let codes = probe.keys.map(Self.narrow)
        if codes.allSatisfy({ $0 != .max }) {
            spans.append(Span(start: narrow.count, end: narrow.count + m, wide: false))
            narrow.append(contentsOf: codes)
        } else {
            spans.append(Span(start: wide.count, end: wide.count + m, wide: true))
            wide.append(contentsOf: probe.keys)
        }
        guard m > 0 else { return }
        let i = Self.bin(m)
        if bins.count <= i { bins.append(contentsOf: repeatElement(Bin(), count: i + 1 - bins.count)) }
        let g = Self.group(i)
        let sum = probeSketch(g)
        bins[i].sketches.append(contentsOf: packedSketch(g))
        bins[i].sums.append(UInt32(sum))
        bins[i].sizes.append(UInt32(m))
        bins[i].sets.append(j)
    }
}

/// One probe's read-only view of the index, which two threads can scan at once.
struct ScanContext: Sendable {
    let threshold: Threshold
    /// The probe's size, and the compatible sizes.
    let n: Int, lo: Int, hi: Int
    let bins: [SketchJoin.Bin]
    let probeSketches: [[SIMD16<UInt8>]]
    let probeSums: [Int]
    let probeSAD: [[SIMD16<UInt8>]]
    let probe: ProbeTrigrams
    let narrow: [UInt32]
    let wide: [UInt64]
    let spans: [SketchJoin.Span]

    struct Result: Sendable {
        /// The near-duplicate found: its bin, and its position among the accepted sets.
        var found: (bin: Int, set: Int)?
        var comparisons = 0
        var scanned = 0
    }

    /// Scans the bins in `order` and verifies the pairs their sketches leave, up to the first
    /// near-duplicate.
    func scan<Order: Sequence<Int>>(_ order: Order) -> Result {
        var result = Result()
        let num = threshold.num, den = threshold.den
        for i in order {
            let bin = bins[i]
            let g = SketchJoin.group(i)
            // Above the threshold, |x Δ y| = n + m − 2·overlap ≤ n + m − 2·minOverlap(n, m),
            // which is below (n + m)(den − num)/(den + num), so at most `slack` for every m in
            // the bin. Kept when Σcx + Σcy − 2·Σmin(cx, cy) ≤ slack, i.e. 2·Σmin ≥ base + Σcy.
            let slack = (n + min(SketchJoin.binMax(i), hi)) * (den - num) / (den + num)
            let base = probeSums[g] - slack
            let vectors = SketchJoin.dimensions(g) / 32
            let count = bin.sets.count
            result.scanned += count
            var entry = 0
            while entry < count {
                let e = bin.sketches.withUnsafeBufferPointer { sketches in
                    #if arch(x86_64)
                    probeSAD[g].withUnsafeBytes { x in
                        csketch_next_within(UnsafeRawPointer(sketches.baseAddress!).assumingMemoryBound(to: UInt8.self),
                                            x.baseAddress!.assumingMemoryBound(to: UInt8.self), slack, entry, count, vectors)
                    }
                    #else
                    bin.sums.withUnsafeBufferPointer { sums in
                        probeSketches[g].withUnsafeBufferPointer { x in
                            let k = Sketches(sketches: sketches.baseAddress!, sums: sums.baseAddress!, x: x.baseAddress!, base: base)
                            return Self.nextCandidate(k, entry, count, vectors)
                        }
                    }
                    #endif
                }
                if e >= count { break }
                let m = Int(bin.sizes[e])
                if m >= lo && m <= hi && threshold.lengthsCompatible(n, m) {
                    result.comparisons += 1
                    let j = Int(bin.sets[e])
                    if verify(j, threshold.minOverlap(n, m)) {
                        result.found = (i, j)
                        return result
                    }
                }
                entry = e + 1
            }
        }
        return result
    }

    /// A bin's sketches and their sums, and the probe's sketch and what a pair's sums and
    /// minima must reach (`base`).
    struct Sketches {
        let sketches: UnsafePointer<SIMD16<UInt8>>, sums: UnsafePointer<UInt32>
        let x: UnsafePointer<SIMD16<UInt8>>, base: Int
    }

    /// The first entry in from..<count whose sketch does not rule it out, or `count`.
    /// `vectors`: the sketches' length.
    @inline(__always)
    private static func nextCandidate(_ k: Sketches, _ from: Int, _ count: Int, _ vectors: Int) -> Int {
        // Fixed lengths let the compiler unroll the loops.
        switch vectors {
        case 2: return Kernel<Vectors2>.next(k, from, count)
        case 3: return Kernel<Vectors3>.next(k, from, count)
        case 4: return Kernel<Vectors4>.next(k, from, count)
        case 5: return Kernel<Vectors5>.next(k, from, count)
        case 6: return Kernel<Vectors6>.next(k, from, count)
        case 7: return Kernel<Vectors7>.next(k, from, count)
        case 8: return Kernel<Vectors8>.next(k, from, count)
        case 9: return Kernel<Vectors9>.next(k, from, count)
        case 10: return Kernel<Vectors10>.next(k, from, count)
        case 11: return Kernel<Vectors11>.next(k, from, count)
        case 12: return Kernel<Vectors12>.next(k, from, count)
        case 13: return Kernel<Vectors13>.next(k, from, count)
        case 14: return Kernel<Vectors14>.next(k, from, count)
        case 15: return Kernel<Vectors15>.next(k, from, count)
        case 16: return Kernel<Vectors16>.next(k, from, count)
        default: return Kernel<AnyVectors>.next(k, from, count, vectors)
        }
    }


    /// Whether accepted set j shares at least `need` trigrams with the probe; stops once it does
    /// or cannot.
    private func verify(_ j: Int, _ need: Int) -> Bool {
        let span = spans[j]
        var o = 0
        var left = span.end - span.start
        @inline(__always) func count(_ shared: Bool) -> Bool? {
            left -= 1
            if shared {
                o += 1
                if o >= need { return true }
            } else if o + left < need {
                return false
            }
            return nil
        }
        if span.wide {
            for trigram in wide[span.start..<span.end] {
                if let r = count(probe.contains(trigram)) { return r }
            }
        } else {
            for code in narrow[span.start..<span.end] {
                if let r = count(probe.contains(SketchJoin.wide(code))) { return r }
            }
        }
        return false
    }
}

/// A sketch length in vectors, fixed at compile time so that loops over it unroll.
fileprivate protocol SketchLength { static var vectors: Int { get } }
fileprivate enum Vectors2: SketchLength { static var vectors: Int { 2 } }
fileprivate enum Vectors3: SketchLength { static var vectors: Int { 3 } }
fileprivate enum Vectors4: SketchLength { static var vectors: Int { 4 } }
fileprivate enum Vectors5: SketchLength { static var vectors: Int { 5 } }
fileprivate enum Vectors6: SketchLength { static var vectors: Int { 6 } }
fileprivate enum Vectors7: SketchLength { static var vectors: Int { 7 } }
fileprivate enum Vectors8: SketchLength { static var vectors: Int { 8 } }
fileprivate enum Vectors9: SketchLength { static var vectors: Int { 9 } }
fileprivate enum Vectors10: SketchLength { static var vectors: Int { 10 } }
fileprivate enum Vectors11: SketchLength { static var vectors: Int { 11 } }
fileprivate enum Vectors12: SketchLength { static var vectors: Int { 12 } }
fileprivate enum Vectors13: SketchLength { static var vectors: Int { 13 } }
fileprivate enum Vectors14: SketchLength { static var vectors: Int { 14 } }
fileprivate enum Vectors15: SketchLength { static var vectors: Int { 15 } }
fileprivate enum Vectors16: SketchLength { static var vectors: Int { 16 } }
/// Any other length, given at run time.
fileprivate enum AnyVectors: SketchLength { static var vectors: Int { 0 } }

/// The sketch comparison: Σ min(cx, cy) over packed counts, against what the pair needs.
fileprivate enum Kernel<Length: SketchLength> {
    @inline(__always)
    static func next(_ k: ScanContext.Sketches, _ from: Int, _ count: Int, _ length: Int = 0) -> Int {
        let vectors = Length.vectors > 0 ? Length.vectors : length
        var e = from
        var p = k.sketches + e * vectors
        while e < count {
            if 2 * sumOfMinima(p, k.x, vectors) >= k.base + Int(k.sums[e]) { return e }
            e += 1
            p += vectors
        }
        return count
    }

    /// Σ min(cx, cy) over a packed sketch of `vectors` vectors (Length.vectors when fixed),
    /// whose byte k of vector v holds the counts of dimensions 32v + k (low four bits) and
    /// 32v + 16 + k (high four), and the probe's counts one a byte.
    @inline(__always)
    static func sumOfMinima(_ p: UnsafePointer<SIMD16<UInt8>>, _ x: UnsafePointer<SIMD16<UInt8>>, _ vectors: Int) -> Int {
        var total = 0
        var acc = SIMD16<UInt8>()
        for v in 0..<(Length.vectors > 0 ? Length.vectors : vectors) {
            let y = p[v]
            let lo = y & 0x0F, hi = (y &>> 4) & 0x0F
            let a = x[2 * v], b = x[2 * v + 1]
            acc &+= lo.replacing(with: a, where: a .< lo)
            acc &+= hi.replacing(with: b, where: b .< hi)
            // Each lane adds at most 16 minima of counts capped at 15 before this: at most 240.
            if v & 7 == 7 {
                total += horizontalSum(acc)
                acc = SIMD16<UInt8>()
            }
        }
        return total + horizontalSum(acc)
    }

    @inline(__always) static func horizontalSum(_ v: SIMD16<UInt8>) -> Int {
        let w = unsafeBitCast(v, to: SIMD2<UInt64>.self)
        let m: UInt64 = 0x00FF_00FF_00FF_00FF
        // Four 16-bit lanes of at most 4·255, then their sum in the top lane.
        let s = (w[0] & m) &+ ((w[0] &>> 8) & m) &+ (w[1] & m) &+ ((w[1] &>> 8) & m)
        return Int(truncatingIfNeeded: (s &* 0x0001_0001_0001_0001) &>> 48)
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
