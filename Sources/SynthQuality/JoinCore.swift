#if canImport(Darwin)
import Darwin
#elseif canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CSketch
import Synchronization

/// The index's state, shared by the caller and the helper thread. Who may touch what, when:
/// - `load`, `publish`, `postAdd` and the fields they write are the caller's alone;
/// - the accepted sets (`bins`, `codes`, `wide`, `spans`) are written only by `performAdd`, which
///   runs on one thread at a time (claimed through `addState`) and never during a check: the
///   caller finishes any pending add before it publishes a check;
/// - during a check, both threads only read, and each task's result goes through atomics.
///
/// Unchecked: the compiler cannot see this protocol (plain fields read by the helper thread while
/// the caller spins on atomics); the join tests, which share every check with the helper, exercise it.
final class JoinCore: @unchecked Sendable {
    let threshold: Threshold

    // MARK: loaded texts (caller only)

    let buffers = [ProbeBox(), ProbeBox()]
    /// The buffer holding the loaded text.
    private var current = 0
    private var loaded: String?
    /// Accepted texts, including one whose add is pending.
    private(set) var count = 0

    // MARK: accepted sets

    /// Accepted sets by size bin (`bin(_:)`).
    private var bins: [Bin] = []

    struct Bin {
        /// Per set, its sketch: `dimensions(g) / 32` vectors (g the bin's group), whose byte k
        /// of vector v holds the capped counts of dimensions 32v + k (low four bits) and
        /// 32v + 16 + k (high four).
        var sketches: [SIMD16<UInt8>] = []
        /// Per set, its fine sketch: the same over `fineDimensions(g)` (each dimension of the
        /// first split in four), read only for the pairs the first lets through.
        var fine: [SIMD16<UInt8>] = []
        /// Per set, the sum of its capped counts.
        var sums: [UInt32] = []
        /// Per set, its size.
        var sizes: [UInt32] = []
        /// Per set, its position among the accepted sets.
        var sets: [UInt32] = []
    }

    /// Accepted sets' trigrams: as `narrow` codes in `codes` when all of a set's trigrams have
    /// one (as ASCII text's all do), else packed in `wide`.
    private var codes = CodeStore()
    private var wide: [UInt64] = []
    private var spans: [Span] = []

    struct Span {
        /// The set's narrow codes, or nil when they are in `wide` from `start`.
        var narrow: UnsafePointer<UInt32>?
        var start: Int
        var count: Int
    }

    // MARK: the pending add

    /// 0: none; 1: posted (`addBuffer` holds the text); 2: being filed.
    private let addState = Atomic<Int>(0)
    private var addBuffer = 0
    private var addSketch = ProbeSketch()
    private var addFine = ProbeSketch()

    // MARK: the published check

    /// The check's number (bits 40 and up), and the positions of its scan order not yet taken:
    /// from `front` (bits 20-39) to `back` (bits 0-19). The caller takes runs from the front, the
    /// helper from the back.
    private let word = Atomic<Int>(0)
    /// Checks published so far (the caller's stamp for its probe sketches); the word holds it
    /// modulo 2^23, so that bit 63 stays clear.
    private var seq = 0
    static let checkMask = 0x7F_FFFF
    /// Set by the helper while it is in `work`, which reads `before` before claiming a run.
    let helperInWork = Atomic<Bool>(false)
    /// Positions scanned (or skipped) in the current check.
    private let done = Atomic<Int>(0)
    /// The earliest near-duplicate found: its position << 32 | its accepted set, or Int.max.
    private let found = Atomic<Int>(Int.max)
    /// The check's compatible bins in scan order, and the work (sketch vectors) before each
    /// position (one more entry: the whole).
    private var order: [Int] = []
    private var before: [Int] = []
    /// Per bin, its number of sets (read without touching the bins).
    private var binCounts: [Int] = []
    private var probeBuffer = 0
    private var probeN = 0, probeLo = 0, probeHi = 0

    let comparisons = Atomic<Int>(0)
    let scanned = Atomic<Int>(0)
    let helperChecks = Atomic<Int>(0)
    private let firstCheck: Int
    /// Checks published (caller only).
    var checks: Int { seq - firstCheck }

    /// Every near-duplicate of a check is wanted, not only the first (`collected`): one thread
    /// only, the caller's.
    var collectAll = false
    var collected: [Int] = []

    init(threshold: Threshold, leastRun: Int = JoinCore.leastRun, firstCheck: Int = 0) {
        self.threshold = threshold
        self.leastRun = max(1, leastRun)
        seq = max(0, firstCheck)
        self.firstCheck = seq
    }

    deinit {
        codes.free()
    }

    // MARK: caller

    /// Loads `text` as the probe, unless it is already (the engine checks a text, then adds it).
    func load(_ text: String) {
        // Byte for byte: String's == would equate canonically equivalent texts whose scalars,
        // and so trigrams, differ.
        if let loaded, loaded.utf8.elementsEqual(text.utf8) { return }
        let target = 1 - current
        // A pending add may still be reading the other buffer.
        if addState.load(ordering: .acquiring) != 0 && addBuffer == target { finishAdd() }
        buffers[target].probe.load(text)
        current = target
        loaded = text
    }

    /// Files the loaded text as the next accepted set: at once on the helper thread when there is
    /// one, else at the start of the next call.
    func postAdd() {
        finishAdd()
        addBuffer = current
        count += 1
        // Sequentially consistent, as the helper's going to sleep is: either it sees this, or
        // `wake` sees it sleeping.
        addState.store(1, ordering: .sequentiallyConsistent)
    }

    /// Makes sure no add is pending: files it here unless the helper already is, then waits.
    func finishAdd() {
        if tryAdd() { return }
        var spin = Spin()
        while addState.load(ordering: .acquiring) != 0 { spin.pause() }
    }

    /// Files the pending add, if there is one and no other thread has taken it.
    @discardableResult
    func tryAdd() -> Bool {
        guard addState.load(ordering: .relaxed) == 1,
              addState.compareExchange(expected: 1, desired: 2, ordering: .acquiring).exchanged else { return false }
        performAdd()
        addState.store(0, ordering: .releasing)
        return true
    }

    /// Sets up the check of the loaded text: its compatible bins in scan order, and the work
    /// before each. Nil when no accepted set has a compatible size; else the work (sketch vectors
    /// to compare). No add may be pending.
    func publish() -> Int? {
        let n = buffers[current].probe.count
        guard n > 0 else { return nil }
        let num = threshold.num, den = threshold.den
        // Compatible sizes m: min(n, m)·den > num·max(n, m).
        let lo = num * n / den + 1
        let hi = (n * den - 1) / num
        let first = Self.bin(lo), last = min(Self.bin(hi), binCounts.count - 1)
        guard first <= last else { return nil }
        let own = min(Self.bin(n), last)
        // The helper may still be looking at the last check's runs (it reads `before` before it
        // claims); wait until it is out.
        var spin = Spin()
        while helperInWork.load(ordering: .sequentiallyConsistent) { spin.pause() }
        order.removeAll(keepingCapacity: true)
        before.removeAll(keepingCapacity: true)
        var work = 0
        @inline(__always) func take(_ i: Int, _ low: Int, _ high: Int) {
            guard i >= low && i <= high && binCounts[i] > 0 else { return }
            order.append(i)
            before.append(work)
            work += binCounts[i] * Self.dimensions(Self.group(i)) / 32
        }
        // Groups from n's outwards (so that a near-copy, usually of about the same size, comes
        // early); in each, its compatible bins nearest n's first.
        let gFirst = Self.group(first), gLast = Self.group(last), gOwn = Self.group(own)
        var down = gOwn, up = gOwn + 1
        while down >= gFirst || up <= gLast {
            let g: Int
            if up > gLast || (down >= gFirst && gOwn - down <= up - gOwn) {
                g = down
                down -= 1
            } else {
                g = up
                up += 1
            }
            let low = max(4 * g, first), high = min(4 * g + 3, last)
            if g < gOwn {
                for i in stride(from: high, through: low, by: -1) { take(i, low, high) }
            } else if g > gOwn {
                for i in stride(from: low, through: high, by: 1) { take(i, low, high) }
            } else {
                take(own, low, high)
                for d in 1...3 {
                    take(own - d, low, high)
                    take(own + d, low, high)
                }
            }
        }
        before.append(work)
        guard !order.isEmpty else { return nil }
        precondition(order.count < 1 << 20)
        probeBuffer = current
        probeN = n
        probeLo = lo
        probeHi = hi
        seq += 1
        done.store(0, ordering: .relaxed)
        found.store(Int.max, ordering: .relaxed)
        // Sequentially consistent, as the helper's going to sleep is: either it sees this, or
        // `wake` sees it sleeping.
        word.store((seq & Self.checkMask) << 40 | order.count, ordering: .sequentiallyConsistent)
        return work
    }

    /// Scans the published check from the front until nothing is left, waits for what the helper
    /// took, and gives the answer.
    /// `afterHelper`: first wait until the helper has taken a run.
    func run(_ scratch: inout ProbeSketches, afterHelper: Bool = false) -> Int? {
        if afterHelper {
            var spin = Spin()
            while word.load(ordering: .acquiring) & 0xF_FFFF == order.count { spin.pause() }
        }
        work(seq & Self.checkMask, stamp: seq, fromFront: true, &scratch)
        let positions = order.count
        var spin = Spin()
        while done.load(ordering: .acquiring) < positions { spin.pause() }
        let f = found.load(ordering: .acquiring)
        return f == Int.max ? nil : f & 0xFFFF_FFFF
    }

    // MARK: either thread

    /// The published check's number, to tell the helper whether there is a new one.
    var published: Int { word.load(ordering: .acquiring) >> 40 }

    /// Whether the helper has anything to do after check `seen`.
    func pending(after seen: Int) -> Bool {
        addState.load(ordering: .sequentiallyConsistent) == 1 || word.load(ordering: .sequentiallyConsistent) >> 40 != seen
    }

    /// The least work a thread takes at once, in sketch vectors (about a microsecond).
    static let leastRun = 3_000
    let leastRun: Int

    /// Takes runs of positions of check `s`, from the front (the caller) or from the back (the
    /// helper), and scans them, while any are left; true when it took any. Each run is a quarter of the work left, or at
    /// least `leastRun`, so the two threads take few runs and end close together.
    @discardableResult
    func work(_ s: Int, stamp: Int, fromFront: Bool, _ scratch: inout ProbeSketches) -> Bool {
        var took = false
        while true {
            let w = word.load(ordering: .acquiring)
            guard w >> 40 == s else { return took }
            let front = w >> 20 & 0xF_FFFF, back = w & 0xF_FFFF
            guard front < back else { return took }
            let (start, end): (Int, Int)
            let target = max(leastRun, (before[back] - before[front]) / 4)
            if fromFront {
                var t = front + 1
                while t < back && before[t] - before[front] < target { t += 1 }
                (start, end) = (front, t)
            } else {
                var t = back - 1
                while t > front && before[back] - before[t] < target { t -= 1 }
                (start, end) = (t, back)
            }
            guard word.compareExchange(expected: w, desired: fromFront ? s << 40 | end << 20 | back : s << 40 | front << 20 | start,
                                       ordering: .acquiring).exchanged else { continue }
            took = true
            let r = scan(start..<end, stamp, &scratch)
            if let position = r.found { foundAt(position) }
            if collectAll { collected += r.all }
            comparisons.wrappingAdd(r.comparisons, ordering: .relaxed)
            scanned.wrappingAdd(r.scanned, ordering: .relaxed)
            done.wrappingAdd(end - start, ordering: .releasing)
        }
    }

    private func foundAt(_ value: Int) {
        var f = found.load(ordering: .relaxed)
        while value < f {
            let r = found.compareExchange(expected: f, desired: value, ordering: .releasing)
            if r.exchanged { return }
            f = r.original
        }
    }

    struct ScanResult {
        /// The near-duplicate found: its position in the scan order << 32 | its accepted set.
        var found: Int?
        /// With `collectAll`: every near-duplicate found.
        var all: [Int] = []
        var comparisons = 0
        var scanned = 0
    }

    /// Scans the bins at `positions` of the scan order, up to the first near-duplicate or until
    /// one is found at an earlier position. The probe's sketch for each group is built once per
    /// check and thread.
    private func scan(_ positions: Range<Int>, _ stamp: Int, _ mine: inout ProbeSketches) -> ScanResult {
        let probe = buffers[probeBuffer].probe
        var result = ScanResult()
        let n = probeN, lo = probeLo, hi = probeHi
        let num = threshold.num, den = threshold.den
        for t in positions {
            if found.load(ordering: .relaxed) < t << 32 { break }
            let i = order[t]
            let g = Self.group(i)
            let dims = Self.dimensions(g)
            if mine.byGroup.count <= g {
                mine.byGroup.append(contentsOf: repeatElement(ProbeSketch(), count: g + 1 - mine.byGroup.count))
            }
            if mine.byGroup[g].check != stamp {
                mine.byGroup[g].build(probe.hashes, dimensions: dims)
                mine.byGroup[g].check = stamp
            }
            let vectors = dims / 32
            // Above the threshold, |x Δ y| = n + m − 2·overlap ≤ n + m − 2·minOverlap(n, m),
            // which is below (n + m)(den − num)/(den + num), so at most `slack` for every m in
            // the bin. Kept when Σcx + Σcy − 2·Σmin(cx, cy) ≤ slack, i.e. (the portable kernel's
            // form) 2·Σmin ≥ base + Σcy with base = Σcx − slack.
            let slack = (n + min(Self.binMax(i), hi)) * (den - num) / (den + num)
            bins[i].sketches.withUnsafeBufferPointer { sketches in
                bins[i].sums.withUnsafeBufferPointer { sums in
                    bins[i].sizes.withUnsafeBufferPointer { sizes in
                        bins[i].sets.withUnsafeBufferPointer { sets in
                            let count = sets.count
                            result.scanned += count
                            var entry = 0
                            while entry < count {
                                #if arch(x86_64)
                                let e = mine.byGroup[g].sad.withUnsafeBytes { x in
                                    csketch_next_within(UnsafeRawPointer(sketches.baseAddress!).assumingMemoryBound(to: UInt8.self),
                                                        x.baseAddress!.assumingMemoryBound(to: UInt8.self), slack, entry, count, vectors)
                                }
                                #else
                                let base = mine.byGroup[g].sum - slack
                                let e = mine.byGroup[g].counts.withUnsafeBufferPointer { x in
                                    let s = SketchSet(sketches: sketches.baseAddress!, sums: sums.baseAddress!, x: x.baseAddress!, base: base)
                                    return Self.nextCandidate(s, entry, count, vectors)
                                }
                                #endif
                                if e >= count { break }
                                let m = Int(sizes[e])
                                if m >= lo && m <= hi && threshold.lengthsCompatible(n, m) && fineWithin(i, g, e, slack, stamp, &mine) {
                                    result.comparisons += 1
                                    let j = Int(sets[e])
                                    if verify(probe, j, threshold.minOverlap(n, m)) {
                                        if collectAll {
                                            result.all.append(j)
                                        } else {
                                            result.found = t << 32 | j
                                            return
                                        }
                                    }
                                }
                                entry = e + 1
                            }
                        }
                    }
                }
            }
            if result.found != nil { break }
        }
        return result
    }

    /// Whether entry e of bin i (of group g) is within `slack` of the probe by the fine sketch.
    /// The probe's fine sketch for the group is built once per check and thread, when first needed.
    @inline(__always)
    private func fineWithin(_ i: Int, _ g: Int, _ e: Int, _ slack: Int, _ stamp: Int, _ mine: inout ProbeSketches) -> Bool {
        let dims = Self.fineDimensions(g)
        if mine.fine.count <= g {
            mine.fine.append(contentsOf: repeatElement(ProbeSketch(), count: g + 1 - mine.fine.count))
        }
        if mine.fine[g].check != stamp {
            mine.fine[g].build(buffers[probeBuffer].probe.hashes, dimensions: dims)
            mine.fine[g].check = stamp
        }
        let vectors = dims / 32
        return bins[i].fine.withUnsafeBytes { fine in
            mine.fine[g].sad.withUnsafeBytes { x in
                csketch_next_within(fine.baseAddress!.assumingMemoryBound(to: UInt8.self) + e * vectors * 16,
                                    x.baseAddress!.assumingMemoryBound(to: UInt8.self), slack, 0, 1, vectors) == 0
            }
        }
    }

    /// Whether accepted set j shares at least `need` trigrams with the probe; stops once it does
    /// or cannot.
    private func verify(_ probe: ProbeTrigrams, _ j: Int, _ need: Int) -> Bool {
        let span = spans[j]
        var o = 0
        var left = span.count
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
        if let narrow = span.narrow {
            if let shares = probe.sharesAtLeast(narrow, span.count, need) { return shares }
            for code in UnsafeBufferPointer(start: narrow, count: span.count) {
                if let r = count(probe.contains(Self.wide(code))) { return r }
            }
        } else {
            for trigram in wide[span.start..<span.start + span.count] {
                if let r = count(probe.contains(trigram)) { return r }
            }
        }
        return false
    }

    /// Files the text in `addBuffer` as accepted set `spans.count`.
    private func performAdd() {
        let probe = buffers[addBuffer].probe
        let m = probe.count
        let j = UInt32(spans.count)
        let out = codes.reserve(m)
        var allNarrow = true
        for (k, key) in probe.keys.enumerated() {
            let c = Self.narrow(key)
            if c == .max {
                allNarrow = false
                break
            }
            out[k] = c
        }
        if allNarrow {
            codes.commit(m)
            spans.append(Span(narrow: UnsafePointer(out), start: 0, count: m))
        } else {
            spans.append(Span(narrow: nil, start: wide.count, count: m))
            wide.append(contentsOf: probe.keys)
        }
        guard m > 0 else { return }
        let i = Self.bin(m)
        if bins.count <= i {
            bins.append(contentsOf: repeatElement(Bin(), count: i + 1 - bins.count))
            binCounts.append(contentsOf: repeatElement(0, count: i + 1 - binCounts.count))
        }
        binCounts[i] += 1
        addSketch.build(probe.hashes, dimensions: Self.dimensions(Self.group(i)))
        bins[i].sketches.append(contentsOf: addSketch.packed)
        addFine.build(probe.hashes, dimensions: Self.fineDimensions(Self.group(i)))
        bins[i].fine.append(contentsOf: addFine.packed)
        bins[i].sums.append(UInt32(addSketch.sum))
        bins[i].sizes.append(UInt32(m))
        bins[i].sets.append(j)
    }

    // MARK: sizes and sketch shapes

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

    /// The fine sketch's dimensions: four times the first's, so that each of its dimensions is
    /// split in four (a hash goes to dimension (h·d) >> 32 of either). Unrelated texts of natural
    /// word frequencies share enough trigrams that about one pair in two hundred passes the first
    /// sketch (on uniformly drawn words, one in ten thousand); the fine one rules out nearly all
    /// of those before the exact verification, which costs a hundred times as much.
    @inline(__always) static func fineDimensions(_ g: Int) -> Int { 4 * dimensions(g) }

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

    /// The first entry in from..<count whose sketch does not rule it out, or `count`.
    /// `vectors`: the sketches' length.
    @inline(__always)
    static func nextCandidate(_ k: SketchSet, _ from: Int, _ count: Int, _ vectors: Int) -> Int {
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
}
