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
/// 3. A fine sketch: the same, over four times the dimensions (each of the first's split in four),
///    stored per set but read only for the pairs the first lets through. On text with natural word
///    frequencies unrelated texts share more trigrams (a fourth of them against a fifth), and
///    about one pair in two hundred passes the first sketch; the fine one rules out nearly all of
///    those (on 100,000 Zipf-distributed texts, 4.4 million exact verifications became 15,000).
/// 4. The pairs left are verified exactly: y's trigrams are looked up in the probe's hash set,
///    stopping as soon as the overlap is reached or out of reach.
///
/// Prefix filtering (AllPairs, PPJoin: index each set's rarest tokens) does worse here, measured:
/// texts of a kilobyte have hundreds of distinct trigrams out of a vocabulary of only ten to fifty
/// thousand, so the 30% of a set's trigrams a prefix must hold at 0.7 reach postings of five to
/// eighteen times the number of texts per probe, and a two-collection join built that way took
/// 46-78 s where this one takes 0.6-0.8 s (10,000 x 10,000 texts).
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

    /// An index that works on the caller's thread only, as `duplicates(of:)` needs.
    public static func workingAlone(threshold: Threshold = .nearDuplicate) -> NearDuplicateIndex {
        NearDuplicateIndex(threshold: threshold, helperFrom: .max)
    }

    /// Every accepted text that `text` is a near-duplicate of (their positions among accepted
    /// texts, ascending). Does not add `text`. For an index with no helper thread (`helperFrom:
    /// .max`): the scan does not stop at the first.
    public func duplicates(of text: String) -> [Int] {
        precondition(helperFrom == .max && helper == nil, "duplicates(of:) needs an index that works alone")
        core.load(text)
        core.finishAdd()
        guard core.publish() != nil else { return [] }
        core.collectAll = true
        core.collected.removeAll(keepingCapacity: true)
        defer { core.collectAll = false }
        _ = core.run(&scratch)
        return core.collected.sorted()
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
    /// The fine sketches, by group, built only for groups where a pair passed the first.
    var fine: [ProbeSketch] = []
}

/// One loaded text. A class, so that the caller can load the next text into one while the
/// helper files the previous one from the other.
final class ProbeBox {
    var probe = ProbeTrigrams()
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
