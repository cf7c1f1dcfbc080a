#if canImport(Darwin)
import Darwin
#elseif canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CSketch
import Synchronization

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
///    Σcx + Σcy − 2·Σmin(cx, cy); both are the same number. On unrelated texts this leaves about
///    one pair in ten thousand. (This is close to the least sketch that works here: unrelated
///    texts share about 40% of their trigrams, and with D a fifth of the size instead of a quarter
///    sixty times as many pairs reach verification.)
/// 3. The pairs left are verified exactly: y's trigrams are looked up in the probe's hash set,
///    stopping as soon as the overlap is reached or out of reach.
///
/// A check scans the compatible bins in one order, from x's own size outwards (so that a
/// near-copy, usually of about the same size, is found early). Once the index holds `helperFrom`
/// texts and the machine has a second core, a helper thread shares each check: the caller takes
/// runs of bins from the front of the order and the helper from the back, each run a quarter of
/// the work left, so they meet near the middle at about the same time, and each builds the
/// probe's sketch only for the groups it reaches. The helper also files each accepted text while
/// the caller reads the next one. A near-duplicate found stops the scanning of later bins; every
/// earlier bin is still scanned, so the answer is the one a single thread would give. Nothing depends on the order texts came in or on
/// statistics of them, so a restarted job rebuilds the same index by inserting its accepted texts
/// again.
///
/// Not thread-safe: one owner calls it.
public final class NearDuplicateIndex {
    public let threshold: Threshold
    /// Kept for source compatibility: the sketch join needs no sample of the data to rank tokens.
    public let sampleSize: Int
    private let core: JoinCore
    private var scratch = ProbeSketches()
    private var helper: JoinHelper?
    /// Whether starting the helper was tried (it is not retried when the thread could not start).
    private var helperTried = false
    /// Where the helper's slot comes from: the process's, unless a test gives its own.
    let slots: HelperSlots
    /// The number of accepted texts from which a helper thread shares the work.
    let helperFrom: Int
    /// The least work (sketch vectors) for which a check wakes a sleeping helper.
    let wakeWork: Int
    let shareEveryCheck: Bool

    /// Below this many accepted texts a check is a few microseconds, less than waking a thread.
    static let defaultHelperFrom = 2_000

    public convenience init(threshold: Threshold = .nearDuplicate, sampleSize: Int = 256) {
        self.init(threshold: threshold, sampleSize: sampleSize, helperFrom: Self.defaultHelperFrom)
    }

    /// `helperFrom`: Int.max for one thread only; 0 for a helper from the first text (tests).
    /// `leastRun`: the least work a thread takes at once (tests make it small, so that the two
    /// threads share even small checks).
    /// `firstCheck`: where the count of checks starts (tests start it near where the number
    /// the helper sees wraps).
    /// `shareEveryCheck`: the caller lets the helper take the first run of every check, so that
    /// tests exercise the two threads together whatever the timing.
    /// `slots`: the pool of helper threads this index may take one from.
    init(threshold: Threshold, sampleSize: Int = 256, helperFrom: Int, wakeWork: Int = JoinHelper.wakeWork,
         leastRun: Int = JoinCore.leastRun, firstCheck: Int = 0, shareEveryCheck: Bool = false, slots: HelperSlots = .process) {
        self.threshold = threshold
        self.slots = slots
        self.sampleSize = max(1, sampleSize)
        self.helperFrom = helperFrom
        self.wakeWork = wakeWork
        self.shareEveryCheck = shareEveryCheck
        core = JoinCore(threshold: threshold, leastRun: leastRun, firstCheck: firstCheck)
    }

    deinit {
        if let helper {
            helper.stop()
            slots.give()
        }
    }

    public var count: Int { core.count }
    /// Pairs verified exactly.
    public var comparisons: Int { core.comparisons.load(ordering: .relaxed) }
    /// Pairs compared by sketch (those that passed the length filter).
    public var sketchComparisons: Int { core.scanned.load(ordering: .relaxed) }
    /// Whether a helper thread is sharing the work.
    var helped: Bool { helper != nil }
    /// Checks the helper thread took part in (it takes a run of a check's bins when there is one
    /// left by the time it looks).
    public var helperChecks: Int { core.helperChecks.load(ordering: .relaxed) }
    /// Checks that had accepted texts of a compatible size to compare with.
    public var checks: Int { core.checks }

    /// The accepted text that `text` is a near-duplicate of (its position among accepted texts),
    /// or nil. Does not add `text`.
    public func duplicate(of text: String) -> Int? {
        core.load(text)
        return check()
    }

    /// Checks `text` and adds it when it is not a near-duplicate. True when it was added.
    @discardableResult
    public func admit(_ text: String) -> Bool {
        core.load(text)
        if check() != nil { return false }
        add()
        return true
    }

    /// Adds `text` without checking it (rebuilding from texts that were accepted before).
    public func insert(_ text: String) {
        core.load(text)
        add()
    }

    private func check() -> Int? {
        core.finishAdd()
        // A helper when the process has a core to spare for one: while other indexes hold every
        // slot, this one works alone and asks again at its next check.
        if !helperTried, core.count >= helperFrom, JoinHelper.cores > 1, slots.take() {
            helperTried = true
            helper = JoinHelper(core: core)
            if helper == nil { slots.give() }
        }
        guard let work = core.publish() else { return nil }
        if work >= wakeWork { helper?.wake() }
        return core.run(&scratch, afterHelper: shareEveryCheck && helper != nil)
    }

    /// A polling helper files the text at once; a sleeping one is not woken for it (the next
    /// check files it first).
    private func add() {
        core.postAdd()
    }
}

/// The probe's sketch for one group of bins: its counts one a byte, their sum, and the same
/// counts laid out for the byte-sum kernel: per packed vector v, the counts of its low nibbles,
/// then those of its high nibbles times 16.
struct ProbeSketch {
    var counts: [SIMD16<UInt8>] = []
    var sad: [SIMD16<UInt8>] = []
    var sum = 0
    /// The check it was built for, when it is a probe's.
    var check = 0

    mutating func build(_ hashes: [UInt32], dimensions dims: Int) {
        counts.removeAll(keepingCapacity: true)
        counts.append(contentsOf: repeatElement(SIMD16<UInt8>(), count: dims / 16))
        let sum = counts.withUnsafeMutableBytes { counts in
            hashes.withUnsafeBufferPointer { hashes in
                Int(csketch_build(hashes.baseAddress, hashes.count, dims, counts.baseAddress!.assumingMemoryBound(to: UInt8.self)))
            }
        }
        self.sum = sum
        sad.removeAll(keepingCapacity: true)
        for v in 0..<dims / 32 {
            sad.append(counts[2 * v])
            sad.append(counts[2 * v + 1] &<< 4)
        }
    }

    /// The counts packed two a byte, as a bin stores them.
    var packed: [SIMD16<UInt8>] {
        (0..<counts.count / 2).map { v in counts[2 * v] | counts[2 * v + 1] &<< 4 }
    }
}

/// One thread's sketches of the probe, by group, each built once per check (`check` says which).
struct ProbeSketches {
    var byGroup: [ProbeSketch] = []
}

/// One loaded text. A class, so that the caller can load the next text into one while the
/// helper files the previous one from the other.
final class ProbeBox: @unchecked Sendable {
    var probe = ProbeTrigrams()
}

/// The index's state, shared by the caller and the helper thread. Who may touch what, when:
/// - `load`, `publish`, `postAdd` and the fields they write are the caller's alone;
/// - the accepted sets (`bins`, `codes`, `wide`, `spans`) are written only by `performAdd`, which
///   runs on one thread at a time (claimed through `addState`) and never during a check: the
///   caller finishes any pending add before it publishes a check;
/// - during a check, both threads only read, and each task's result goes through atomics.
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
                                if m >= lo && m <= hi && threshold.lengthsCompatible(n, m) {
                                    result.comparisons += 1
                                    let j = Int(sets[e])
                                    if verify(probe, j, threshold.minOverlap(n, m)) {
                                        result.found = t << 32 | j
                                        return
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

/// Accepted sets' narrow codes, in chunks that never move (so a set's codes are read through a
/// pointer, and growing never copies what is there).
struct CodeStore {
    private var chunks: [UnsafeMutablePointer<UInt32>] = []
    private var capacity = 0
    private var used = 0
    static let chunkSize = 1 << 22

    /// Room for `m` codes, written by the caller and kept by `commit(m)`.
    mutating func reserve(_ m: Int) -> UnsafeMutablePointer<UInt32> {
        if chunks.isEmpty || used + m > capacity {
            capacity = max(Self.chunkSize, m)
            chunks.append(UnsafeMutablePointer<UInt32>.allocate(capacity: capacity))
            used = 0
        }
        return chunks[chunks.count - 1] + used
    }

    mutating func commit(_ m: Int) {
        used += m
    }

    func free() {
        for chunk in chunks { chunk.deallocate() }
    }
}

/// How many helper threads may run at once. The process's pool has one fewer than its cores, so
/// that several large indexes (jobs) at once never put more join threads than cores to work: two
/// joins on two cores, each with a helper, spent about a quarter of their time spinning.
final class HelperSlots: Sendable {
    let limit: Int
    private let taken = Atomic<Int>(0)

    init(limit: Int) {
        self.limit = limit
    }

    static let process = HelperSlots(limit: max(0, JoinHelper.cores - 1))

    /// Takes a slot; false when all are taken.
    func take() -> Bool {
        var n = taken.load(ordering: .relaxed)
        while n < limit {
            let r = taken.compareExchange(expected: n, desired: n + 1, ordering: .acquiringAndReleasing)
            if r.exchanged { return true }
            n = r.original
        }
        return false
    }

    func give() {
        taken.wrappingSubtract(1, ordering: .acquiringAndReleasing)
    }

    var inUse: Int { taken.load(ordering: .relaxed) }
}

/// The thread that shares an index's work with its owner: it takes tasks of each published check
/// and files accepted texts. Between calls it polls for a short while, then sleeps until woken.
final class JoinHelper: @unchecked Sendable {
    let core: JoinCore
    private let stopping = Atomic<Bool>(false)
    private let sleeping = Atomic<Bool>(false)
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let cond = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    #if canImport(Darwin)
    private var thread: pthread_t?
    #else
    private var thread = pthread_t()
    #endif
    private var started = false

    /// Online processors.
    static let cores = Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))
    /// A check with less sketch work than this (in vectors; about 30 microseconds on one
    /// thread) does not wake a sleeping helper: it would be done before the helper got going. A
    /// helper still polling takes part in any check.
    static let wakeWork = 100_000
    /// Polls before sleeping: about 60 microseconds (a pause is about 30 ns here), several times
    /// the gap between back-to-back checks, short enough that a job whose records arrive one by
    /// one does not keep a core busy.
    static let polls = 2_000

    /// Nil when the thread could not be started.
    init?(core: JoinCore) {
        self.core = core
        // Read here, before the owner publishes its next check, so the helper takes part in it.
        firstSeen = core.published
        mutex.initialize(to: pthread_mutex_t())
        cond.initialize(to: pthread_cond_t())
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(cond, nil)
        let box = Unmanaged.passRetained(self).toOpaque()
        started = pthread_create(&thread, nil, { arg in
            let helper = Unmanaged<JoinHelper>.fromOpaque((arg as UnsafeMutableRawPointer?)!).takeRetainedValue()
            helper.loop()
            return nil
        }, box) == 0
        guard started else {
            Unmanaged<JoinHelper>.fromOpaque(box).release()
            return nil
        }
        Self.live.wrappingAdd(1, ordering: .relaxed)
    }

    /// The check last published when the helper was made.
    private let firstSeen: Int

    /// Helper threads running, in the whole process.
    static let live = Atomic<Int>(0)

    deinit {
        pthread_cond_destroy(cond)
        pthread_mutex_destroy(mutex)
        cond.deallocate()
        mutex.deallocate()
    }

    /// Ends the thread (after any task or add it has taken) and waits for it.
    func stop() {
        stopping.store(true, ordering: .sequentiallyConsistent)
        pthread_mutex_lock(mutex)
        pthread_cond_signal(cond)
        pthread_mutex_unlock(mutex)
        #if canImport(Darwin)
        if started, let thread { pthread_join(thread, nil) }
        #else
        if started { pthread_join(thread, nil) }
        #endif
    }

    /// Wakes the thread if it sleeps.
    func wake() {
        guard sleeping.load(ordering: .sequentiallyConsistent) else { return }
        pthread_mutex_lock(mutex)
        pthread_cond_signal(cond)
        pthread_mutex_unlock(mutex)
    }

    private func loop() {
        var scratch = ProbeSketches()
        var seen = firstSeen
        // The helper's own stamp for its probe sketches, one per check it joins.
        var stamp = 0
        var idle = 0
        while !stopping.load(ordering: .acquiring) {
            if core.tryAdd() {
                idle = 0
                continue
            }
            let s = core.published
            if s != seen {
                seen = s
                stamp += 1
                core.helperInWork.store(true, ordering: .sequentiallyConsistent)
                if core.work(s, stamp: stamp, fromFront: false, &scratch) { core.helperChecks.wrappingAdd(1, ordering: .relaxed) }
                core.helperInWork.store(false, ordering: .releasing)
                idle = 0
                continue
            }
            idle += 1
            if idle < Self.polls {
                csketch_pause()
                continue
            }
            pthread_mutex_lock(mutex)
            sleeping.store(true, ordering: .sequentiallyConsistent)
            if !stopping.load(ordering: .sequentiallyConsistent) && !core.pending(after: seen) {
                pthread_cond_wait(cond, mutex)
            }
            sleeping.store(false, ordering: .relaxed)
            pthread_mutex_unlock(mutex)
            idle = 0
        }
        Self.live.wrappingAdd(-1, ordering: .relaxed)
    }
}

/// Waiting for another thread: a pause, and every thousandth time the processor is given up, so
/// that a waiter does not hold a core from the thread it waits for.
struct Spin {
    private var n = 0

    @inline(__always) mutating func pause() {
        n += 1
        if n & 1023 == 0 {
            sched_yield()
        } else {
            csketch_pause()
        }
    }
}

/// A bin's sketches and their sums, and the probe's sketch and what a pair's sums and minima must
/// reach (`base`): the portable kernel's input.
struct SketchSet {
    let sketches: UnsafePointer<SIMD16<UInt8>>, sums: UnsafePointer<UInt32>
    let x: UnsafePointer<SIMD16<UInt8>>, base: Int
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
    static func next(_ k: SketchSet, _ from: Int, _ count: Int, _ length: Int = 0) -> Int {
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
