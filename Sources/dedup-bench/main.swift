// dedup-bench: runs synthd's near-duplicate join over texts, one per line of a file, in order, as a
// job's records arrive, and reports which were near-duplicates and how long it took. With
// --brute N it instead compares all pairs among the first N texts. Used by tools/bench-dedup.
//
//   dedup-bench TEXTS_FILE OUT_FILE [--brute N]
//
// OUT_FILE gets the 0-based line numbers of the near-duplicates, one per line. The time in
// seconds is printed on stdout.
import Foundation
import SynthQuality

/// User and system CPU time of the process so far (all threads), in seconds.
func cpuSeconds() -> Double {
    var t = timespec()
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t)
    return Double(t.tv_sec) + Double(t.tv_nsec) / 1e9
}

let args = CommandLine.arguments
guard args.count >= 3, let data = FileManager.default.contents(atPath: args[1]) else {
    FileHandle.standardError.write(Data("usage: dedup-bench TEXTS_FILE OUT_FILE [--brute N]\n".utf8))
    exit(2)
}
var texts = String(decoding: data, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
if texts.last == "" { texts.removeLast() }
var duplicates: [Int] = []
let clock = ContinuousClock()
let took: Duration
if args.count >= 4, args[3] == "--compare" {
    // Two collections (the first half and the second half of the texts): every pair above the
    // threshold, by the sketch index's all-matches scan (CompareJobs' join) and by brute force on
    // the first 2,000 of each half.
    let half = texts.count / 2
    let left = Array(texts[..<half]), right = Array(texts[half...])
    var start = clock.now
    let index = NearDuplicateIndex.workingAlone()
    for t in left { index.insert(t) }
    var pairsA = 0
    for t in right { pairsA += index.duplicates(of: t).count }
    let sketchTook = clock.now - start
    let sample = 2_000
    let small = NearDuplicateIndex.workingAlone()
    for t in left.prefix(sample) { small.insert(t) }
    let l = left.prefix(sample).map(Trigrams.set)
    var same = true
    for t in right.prefix(sample) {
        let y = Trigrams.set(t)
        let brute = l.indices.filter { i in
            !l[i].isEmpty && !y.isEmpty && Threshold.nearDuplicate.lengthsCompatible(l[i].count, y.count)
                && Threshold.nearDuplicate.exceeded(overlap: Trigrams.overlap(l[i], y), l[i].count, y.count)
        }
        if small.duplicates(of: t) != brute { same = false }
    }
    print("every pair between \(left.count) and \(right.count) texts: \(pairsA) pairs in \(sketchTook); identical to brute force on \(sample) x \(sample): \(same)")
    exit(0)
} else if args.count >= 5, args[3] == "--brute", let n = Int(args[4]) {
    let sample = Array(texts.prefix(n))
    let start = clock.now
    let decisions = BruteForceNearDuplicates.decisions(sample)
    took = clock.now - start
    duplicates = decisions.indices.filter { decisions[$0] }
} else {
    let index = NearDuplicateIndex()
    let cpu0 = cpuSeconds()
    let start = clock.now
    for (i, text) in texts.enumerated() where !index.admit(text) { duplicates.append(i) }
    took = clock.now - start
    let cpu = cpuSeconds() - cpu0
    FileHandle.standardError.write(Data(("\(index.sketchComparisons) length-compatible pairs sketch-compared, \(index.comparisons) verified"
        + String(format: ", %.2f s CPU", cpu) + ", the helper thread shared \(index.helperChecks) of \(index.checks) checks\n").utf8))
}
try! Data(duplicates.map(String.init).joined(separator: "\n").utf8).write(to: URL(fileURLWithPath: args[2]))
let seconds = Double(took.components.seconds) + Double(took.components.attoseconds) / 1e18
print(String(format: "%.4f", seconds))
