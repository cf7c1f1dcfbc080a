import CSketch
import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Testing
@testable import SynthQuality

/// A small deterministic generator, so that the planted data is the same on every run.
struct Rand {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func int(_ n: Int) -> Int { Int(next() % UInt64(n)) }
}

/// Texts with a planted mix: fresh ones, near-copies, and variants edited until their similarity
/// to their source sits just above or just below 0.7.
struct Corpus {
    var texts: [String] = []
    var justAbove = 0
    var justBelow = 0
    var copies = 0

    init(count: Int, words: ClosedRange<Int>, seed: UInt64) {
        var r = Rand(state: seed)
        // Enough syllables for thousands of distinct trigrams, as real text has.
        let letters = Array("abcdefghijklmnopqrstuvwxyz")
        let syllables = (0..<150).map { _ in String((0..<(2 + r.int(2))).map { _ in letters[r.int(26)] }) }
        func word() -> String { (0..<(2 + r.int(3))).map { _ in syllables[r.int(syllables.count)] }.joined() }
        func fresh() -> [String] { (0..<(words.lowerBound + r.int(words.count))).map { _ in word() } }
        var sources: [[String]] = []
        while texts.count < count {
            let roll = r.int(100)
            if sources.isEmpty || roll < 50 {
                let w = fresh()
                sources.append(w)
                texts.append(w.joined(separator: " "))
            } else if roll < 65 {
                var w = sources[r.int(sources.count)]
                w[r.int(w.count)] = word()
                copies += 1
                texts.append(w.joined(separator: " "))
            } else {
                // Edit a copy word by word until its similarity falls to 0.70 or below; keep the
                // last version above 0.7 or the first at or below, at random.
                let source = sources[r.int(sources.count)]
                let sourceSet = Trigrams.set(source.joined(separator: " "))
                var w = source
                var previous = w
                var sim = 1.0
                var guardSteps = 0
                while sim > 0.7, guardSteps < 200 {
                    previous = w
                    w[r.int(w.count)] = word()
                    sim = Trigrams.jaccard(sourceSet, Trigrams.set(w.joined(separator: " ")))
                    guardSteps += 1
                }
                let above = r.int(2) == 0
                let chosen = above ? previous : w
                let s = Trigrams.jaccard(sourceSet, Trigrams.set(chosen.joined(separator: " ")))
                if s > 0.7 && s <= 0.75 { justAbove += 1 }
                if s <= 0.7 && s >= 0.65 { justBelow += 1 }
                texts.append(chosen.joined(separator: " "))
            }
        }
    }
}

@Suite struct TrigramTests {
    @Test func normalisationAndPacking() {
        #expect(Trigrams.set("ab") == [])
        #expect(Trigrams.set("ABC") == Trigrams.set("abc"))
        #expect(Trigrams.set("a  b\n\tc") == Trigrams.set("a b c"))
        #expect(Trigrams.set("  abc  ") == Trigrams.set("abc"))
        #expect(Trigrams.set("abcabc").count == 3)            // abc, bca, cab
        #expect(Trigrams.set("ÉCOLE") == Trigrams.set("école"))
        #expect(Trigrams.set("日本語") != Trigrams.set("日本人"))
        #expect(Trigrams.jaccard(Trigrams.set("the cat sat"), Trigrams.set("the cat sat")) == 1)
    }

    @Test func thresholdArithmeticIsExact() {
        let t = Threshold.nearDuplicate
        // 7/10 exactly is not above the threshold; one more shared trigram is.
        // n = m = 17, o = 14: J = 14/20 = 0.7.
        #expect(!t.exceeded(overlap: 14, 17, 17))
        #expect(t.exceeded(overlap: 15, 17, 17))
        for n in 1...60 {
            for m in 1...60 {
                for o in 0...min(n, m) {
                    let exact = Double(o) / Double(n + m - o)
                    #expect(t.exceeded(overlap: o, n, m) == (o * 10 > 7 * (n + m - o)))
                    #expect((o >= t.minOverlap(n, m)) == t.exceeded(overlap: o, n, m))
                    if t.exceeded(overlap: o, n, m) {
                        #expect(t.lengthsCompatible(n, m))
                        #expect(exact > 0.7 - 1e-12)
                    }
                }
            }
        }
    }
}

/// Serialized: `helperThreadsEndWithTheirIndex` counts the process's helper threads.
@Suite(.serialized) struct NearDuplicateTests {
    @Test func joinEqualsBruteForceOnFiveThousandPlantedRecords() {
        let corpus = Corpus(count: 5000, words: 8...40, seed: 42)
        // The plants really straddle the threshold.
        #expect(corpus.justAbove >= 200, "\(corpus.justAbove) pairs just above 0.7")
        #expect(corpus.justBelow >= 200, "\(corpus.justBelow) pairs just below 0.7")
        #expect(corpus.copies >= 500)
        let clock = ContinuousClock()
        let t0 = clock.now
        let expected = BruteForceNearDuplicates.decisions(corpus.texts)
        let t1 = clock.now
        let index = NearDuplicateIndex()
        let got = corpus.texts.map { !index.admit($0) }
        print("brute force \(t1 - t0), join \(clock.now - t1)")
        #expect(got == expected)
        // The same on one thread, and with the helper thread sharing every check from the first.
        let alone = NearDuplicateIndex(threshold: .nearDuplicate, helperFrom: .max)
        #expect(corpus.texts.map { !alone.admit($0) } == expected)
        #expect(!alone.helped)
        // Runs of any size, and the helper woken for any check, so that it shares even these
        // small checks.
        let helped = NearDuplicateIndex(threshold: .nearDuplicate, helperFrom: 0, wakeWork: 0, leastRun: 1, shareEveryCheck: true,
                                        slots: HelperSlots(limit: 1))
        #expect(corpus.texts.map { !helped.admit($0) } == expected)
        #expect(helped.helped == (JoinHelper.cores > 1))
        if JoinHelper.cores > 1 { #expect(helped.helperChecks > 0) }
        #expect(helped.count == expected.filter { !$0 }.count)
        let duplicates = expected.filter { $0 }.count
        #expect(duplicates > 1000 && duplicates < 4000, "\(duplicates) near-duplicates")
        // The join compared far fewer pairs than all of them.
        let allPairs = 5000 * 4999 / 2
        #expect(index.comparisons < allPairs / 20, "\(index.comparisons) verifications")
    }

    @Test func rebuildingFromAcceptedTextsGivesTheSameAnswers() {
        let corpus = Corpus(count: 1500, words: 8...30, seed: 7)
        let whole = NearDuplicateIndex(sampleSize: 100)
        let decisions = corpus.texts.map { !whole.admit($0) }
        // Restart after 700 texts: a new index rebuilt from the accepted ones, then the rest.
        let rebuilt = NearDuplicateIndex(sampleSize: 100)
        for (text, dup) in zip(corpus.texts.prefix(700), decisions.prefix(700)) where !dup { rebuilt.insert(text) }
        let rest = corpus.texts.dropFirst(700).map { !rebuilt.admit($0) }
        #expect(rest == Array(decisions.dropFirst(700)))
    }

    /// The engine's way: look first, add later (each text loaded once, its add filed by the
    /// helper while the next text is read), with the answers of brute force and the same
    /// accepted positions as one thread gives.
    @Test func lookingThenInsertingWithTheHelperGivesBruteForcesAnswers() {
        let corpus = Corpus(count: 3000, words: 8...40, seed: 5)
        let expected = BruteForceNearDuplicates.decisions(corpus.texts)
        for helperFrom in [0, 500, Int.max] {
            let index = NearDuplicateIndex(threshold: .nearDuplicate, helperFrom: helperFrom, wakeWork: 0, leastRun: 1, shareEveryCheck: true,
                                           slots: HelperSlots(limit: 1))
            var got: [Bool] = []
            var positions: [Int] = []
            for text in corpus.texts {
                if let j = index.duplicate(of: text) {
                    got.append(true)
                    positions.append(j)
                } else {
                    index.insert(text)
                    got.append(false)
                    // The text just inserted is found as itself.
                    #expect(index.duplicate(of: text) == index.count - 1)
                }
            }
            #expect(got == expected, "helper from \(helperFrom)")
            let reference = NearDuplicateIndex(threshold: .nearDuplicate, helperFrom: .max)
            var referencePositions: [Int] = []
            for text in corpus.texts {
                if let j = reference.duplicate(of: text) { referencePositions.append(j) } else { reference.insert(text) }
            }
            #expect(positions == referencePositions, "helper from \(helperFrom)")
        }
    }

    /// The helper sees each check's number modulo 2^23; across the wrap the answers stay
    /// brute force's, and the helper keeps sharing checks.
    @Test func answersHoldAcrossTheWrapOfTheCheckNumber() {
        let corpus = Corpus(count: 1200, words: 8...30, seed: 9)
        let expected = BruteForceNearDuplicates.decisions(corpus.texts)
        let index = NearDuplicateIndex(threshold: .nearDuplicate, helperFrom: 0, wakeWork: 0, leastRun: 1,
                                       firstCheck: JoinCore.checkMask - 300, shareEveryCheck: true, slots: HelperSlots(limit: 1))
        #expect(corpus.texts.map { !index.admit($0) } == expected)
        if JoinHelper.cores > 1 { #expect(index.helperChecks > 0) }
    }

    /// An index's helper thread starts once it holds `helperFrom` texts, sleeps when there is
    /// nothing to do, and ends with the index.
    @Test func helperThreadsEndWithTheirIndex() throws {
        try #require(JoinHelper.cores > 1, "one core: no helper threads")
        let before = JoinHelper.live.load(ordering: .relaxed)
        let corpus = Corpus(count: 400, words: 8...30, seed: 3)
        do {
            // `a` wakes its helper for any check. A pool of their own, with room for both.
            let pool = HelperSlots(limit: 2)
            let a = NearDuplicateIndex(threshold: .nearDuplicate, helperFrom: 0, wakeWork: 0, leastRun: 1, shareEveryCheck: true,
                                        slots: pool)
            let b = NearDuplicateIndex(threshold: .nearDuplicate, helperFrom: 100, slots: pool)
            for text in corpus.texts.prefix(100) {
                a.admit(text)
                b.admit(text)
            }
            #expect(a.helped && !b.helped)
            #expect(JoinHelper.live.load(ordering: .relaxed) == before + 1)
            // Long enough for the helper to go to sleep; a sleeping helper is woken and helps.
            usleep(50_000)
            let checks = a.helperChecks
            var expected: [Bool] = []
            for text in corpus.texts.dropFirst(100) {
                expected.append(b.admit(text))
                #expect(a.admit(text) == expected.last)
            }
            #expect(a.helperChecks > checks)
            #expect(b.helped)
            #expect(JoinHelper.live.load(ordering: .relaxed) == before + 2)
        }
        #expect(JoinHelper.live.load(ordering: .relaxed) == before)
    }

    /// A pool with one helper: a second large index works alone (with the same answers) until the
    /// first is gone, then takes the slot at its next check. The process's pool has one fewer
    /// slots than cores.
    @Test func aSecondIndexWaitsForAHelperSlot() throws {
        #expect(HelperSlots.process.limit == max(0, JoinHelper.cores - 1))
        try #require(JoinHelper.cores > 1, "one core: no helper threads")
        let pool = HelperSlots(limit: 1)
        let corpus = Corpus(count: 300, words: 8...30, seed: 4)
        let expected = BruteForceNearDuplicates.decisions(corpus.texts)
        let b = NearDuplicateIndex(threshold: .nearDuplicate, helperFrom: 0, slots: pool)
        var got: [Bool] = []
        do {
            let a = NearDuplicateIndex(threshold: .nearDuplicate, helperFrom: 0, slots: pool)
            for text in corpus.texts.prefix(150) {
                a.admit(text)
                got.append(!b.admit(text))
            }
            #expect(a.helped && !b.helped)
            #expect(pool.inUse == 1)
        }
        #expect(pool.inUse == 0)
        for text in corpus.texts.dropFirst(150) { got.append(!b.admit(text)) }
        #expect(b.helped)
        #expect(pool.inUse == 1)
        #expect(got == expected)
    }

    @Test func duplicateOfNamesTheAcceptedTextAndAddsNothing() {
        let index = NearDuplicateIndex(sampleSize: 2)
        #expect(index.admit("the quick brown fox jumps over the lazy dog"))
        #expect(index.admit("an entirely different sentence about tax returns"))
        #expect(index.admit("a third text, on gardening in dry summers"))
        #expect(index.duplicate(of: "The quick brown fox jumps over the lazy dog!") == 0)
        #expect(index.duplicate(of: "an entirely different sentence about tax return") == 1)
        #expect(index.duplicate(of: "nothing like the others at all") == nil)
        #expect(index.count == 3)
        #expect(!index.admit("THE QUICK BROWN FOX JUMPS OVER THE LAZY DOG"))
        #expect(index.count == 3)
    }
}

/// The sketch filter's vector kernels (SSE2, AVX2 where the processor has it) against the portable
/// one, count by count, on random sketches of every length from 1 to 20 vectors and slacks around
/// the distances that occur.
@Suite struct SketchKernelTests {
    @Test func everyKernelFindsTheSameEntries() {
        var r = Rand(state: 99)
        var checked = 0
        for vectors in 1...20 {
            let count = 200
            var sketches = [UInt8](repeating: 0, count: count * vectors * 16)
            var probe = [UInt8](repeating: 0, count: 2 * vectors * 16)
            // Counts 0...15 in every nibble, some entries close to the probe.
            var lows = [UInt8](), highs = [UInt8]()
            for _ in 0..<(vectors * 16) {
                lows.append(UInt8(r.int(16)))
                highs.append(UInt8(r.int(16)))
            }
            for v in 0..<vectors {
                for k in 0..<16 {
                    probe[32 * v + k] = lows[16 * v + k]
                    probe[32 * v + 16 + k] = highs[16 * v + k] << 4
                }
            }
            for e in 0..<count {
                let near = r.int(3) == 0
                for i in 0..<(vectors * 16) {
                    let lo = near ? min(15, max(0, Int(lows[i]) + r.int(3) - 1)) : r.int(16)
                    let hi = near ? min(15, max(0, Int(highs[i]) + r.int(3) - 1)) : r.int(16)
                    sketches[e * vectors * 16 + i] = UInt8(lo | hi << 4)
                }
            }
            for slack in [0, vectors * 8, vectors * 16, vectors * 24, vectors * 160] {
                var from = 0
                while from < count {
                    let reference = csketch_next_within_using(0, sketches, probe, slack, from, count, vectors)
                    #expect(csketch_next_within_using(1, sketches, probe, slack, from, count, vectors) == reference)
                    #expect(csketch_next_within_using(2, sketches, probe, slack, from, count, vectors) == reference)
                    #expect(csketch_next_within(sketches, probe, slack, from, count, vectors) == reference)
                    checked += 1
                    from = reference + 1
                }
            }
        }
        #expect(checked > 1000)
        #if arch(x86_64)
        #expect(csketch_kernel() >= 1)
        #endif
    }
}

/// The probe side of the join (CSketch's ASCII reader, shared-trigram count and sketch builder)
/// against `Trigrams.set` and direct counts.
@Suite struct ProbeTests {
    /// ASCII and not, every kind of whitespace and case, control characters, texts too short for a
    /// trigram, one after another in the same probe (so that each load must clear the last).
    static func texts() -> [String] {
        var r = Rand(state: 7)
        var out = ["", "a", "ab", "abc", "  ab  ", " \t\n\u{0B}\u{0C}\r ", "A  B\t\tC\r\nd", "ABCabcABC", "\u{0}\u{1}\u{7F}x y",
                   "école ÉCOLE", "abc\u{80}def", "日本語のテキスト", "mixed ascii then é at the end", "é first then ascii",
                   "tabs\tand\nnewlines\u{0B}and\u{0C}feeds", "{\"json\": [1, 2, 3], \"key\": \"VALUE\"}", String(repeating: "ab ", count: 400)]
        let alphabet = Array("aAbBzZ09 \t\n\r\u{0B}\u{0C}.,;:!?-_'\"{}[]\u{0}\u{1F}\u{7F}")
        for _ in 0..<300 {
            var s = String((0..<r.int(200)).map { _ in alphabet[r.int(alphabet.count)] })
            if r.int(10) == 0 { s.insert("ß", at: s.index(s.startIndex, offsetBy: r.int(s.count + 1))) }
            out.append(s)
        }
        return out
    }

    @Test func loadingGivesTrigramsSetsTrigrams() {
        var probe = ProbeTrigrams()
        for text in Self.texts() {
            probe.load(text)
            let expected = Trigrams.set(text)
            #expect(probe.keys.count == expected.count, "\(text.debugDescription)")
            #expect(Set(probe.keys) == Set(expected), "\(text.debugDescription)")
            #expect(probe.hashes == probe.keys.map { UInt32(truncatingIfNeeded: ProbeTrigrams.mix($0)) })
            for trigram in expected { #expect(probe.contains(trigram)) }
        }
    }

    @Test func sharedCountsMatchMembership() {
        var r = Rand(state: 11)
        var probe = ProbeTrigrams()
        let texts = Self.texts().filter { Trigrams.set($0).count > 3 }
        var decided = 0
        for (i, text) in texts.enumerated() {
            probe.load(text)
            // Codes of another text, some of them the probe's own, some not ASCII at all.
            var codes = Trigrams.set(texts[(i + 1) % texts.count]).map(JoinCore.narrow).filter { $0 != .max }
            codes += Trigrams.set(text).map(JoinCore.narrow).filter { $0 != .max && r.int(2) == 0 }
            codes.append(JoinCore.narrow(Trigrams.set("ééé")[0]))
            // Codes whose first scalar is 128 above one of the probe's: not the probe's, though
            // their low seven bits are.
            codes += Trigrams.set(text).prefix(5).map { JoinCore.narrow($0 | 0x80 << 42) }
            let shared = codes.filter { probe.contains(JoinCore.wide($0)) }.count
            for need in 0...(codes.count + 1) {
                guard let answer = codes.withUnsafeBufferPointer({ probe.sharesAtLeast($0.baseAddress!, $0.count, need) }) else { continue }
                #expect(answer == (shared >= need), "\(text.debugDescription) need \(need)")
                decided += 1
            }
        }
        #expect(decided > 1000)
    }

    /// The bitmap is followed by unreadable memory: a code with a scalar of 128 or more (an
    /// accepted text that is not ASCII, against an ASCII probe) must not make the count read past
    /// it. A read there ends the test process.
    @Test func sharedCountsReadNothingPastTheBitmap() throws {
        let bitmapBytes = (1 << 21) / 8, guardBytes = 4 << 20
        let region = try #require(mmap(nil, bitmapBytes + guardBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0))
        #expect(region != MAP_FAILED)
        defer { munmap(region, bitmapBytes + guardBytes) }
        #expect(mprotect(region + bitmapBytes, guardBytes, PROT_NONE) == 0)
        let seen = region.bindMemory(to: UInt64.self, capacity: bitmapBytes / 8)
        let scalars: [UInt32] = [0, 32, 97, 127, 128, 233, 511, 1023]
        var codes: [UInt32] = []
        var shared = 0
        for a in scalars {
            for b in scalars {
                for c in scalars {
                    codes.append(a << 20 | b << 10 | c)
                    // Every ASCII trigram here is the probe's.
                    if a < 128 && b < 128 && c < 128 {
                        let bit = Int(a << 14 | b << 7 | c)
                        seen[bit >> 6] |= 1 << UInt64(bit & 63)
                        shared += 1
                    }
                }
            }
        }
        for need in [0, 1, shared / 2, shared, shared + 1, codes.count] {
            #expect(csketch_shares_at_least(codes, codes.count, seen, need) == (shared >= need ? 1 : 0), "need \(need)")
        }
    }

    @Test func sketchesCountEachDimensionCappedAtFifteen() {
        var r = Rand(state: 5)
        var sketch = ProbeSketch()
        for dims in [64, 96, 224, 512] {
            for n in [0, 1, 50, dims, 20 * dims] {
                // Hashes bunched into a few dimensions, so that caps are reached.
                let hashes = (0..<n).map { _ in r.int(4) == 0 ? UInt32(r.int(8)) << 29 : UInt32(truncatingIfNeeded: r.next()) }
                var counts = [Int](repeating: 0, count: dims)
                for h in hashes { counts[Int((UInt64(h) * UInt64(dims)) >> 32)] += 1 }
                let capped = counts.map { min(15, $0) }
                sketch.build(hashes, dimensions: dims)
                let built = sketch.counts.flatMap { v in (0..<16).map { Int(v[$0]) } }
                #expect(built == capped)
                #expect(sketch.sum == capped.reduce(0, +))
                #expect(sketch.sad.count == dims / 16)
            }
        }
    }
}

/// Every match of a text, not only the first (CompareJobs' join).
@Suite struct AllMatchesTests {
    /// An index of one half of a planted corpus, asked for every match of each text of the other
    /// half: exactly brute force's pairs, the near-copies straddling 0.7 among them.
    @Test func everyMatchEqualsBruteForce() async {
        // On a thread of its own: brute force takes seconds in a debug build, and on the
        // cooperative pool it would stall the in-process servers of the tests running beside it.
        await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
            Thread {
                Self.everyMatch()
                done.resume()
            }.start()
        }
    }

    static func everyMatch() {
        let corpus = Corpus(count: 2400, words: 8...40, seed: 7)
        let left = Array(corpus.texts[..<1200]), right = Array(corpus.texts[1200...])
        let l = left.map(Trigrams.set)
        let t = Threshold.nearDuplicate
        let index = NearDuplicateIndex.workingAlone()
        for text in left { index.insert(text) }
        var pairs = 0, nearThreshold = 0
        for text in right {
            let y = Trigrams.set(text)
            let expected = l.indices.filter { i in
                !l[i].isEmpty && !y.isEmpty && t.exceeded(overlap: Trigrams.overlap(l[i], y), l[i].count, y.count)
            }
            #expect(index.duplicates(of: text) == expected)
            pairs += expected.count
            nearThreshold += expected.filter { Trigrams.jaccard(l[$0], y) < 0.75 }.count
        }
        #expect(pairs > 200 && nearThreshold > 0, "\(pairs) pairs, \(nearThreshold) just above 0.7")
        // Checking adds nothing; there is a first match exactly when there are any.
        #expect(index.count == 1200)
        for text in right.prefix(200) {
            let all = index.duplicates(of: text)
            #expect(all.isEmpty == (index.duplicate(of: text) == nil))
        }
    }
}
