import Foundation
import SynthConcurrency
import SynthProto

/// The domain spell check: a word of `domain` that is in neither the system word list (Debian's
/// wamerican, /usr/share/dict/words) nor a built-in technical vocabulary, and that is within a
/// small edit distance of a listed word, is a likely typo. The answer names each such word with
/// up to three suggestions, closest first.
///
/// Left alone: words of one or two letters, words with digits, acronyms and brand spellings
/// (any upper-case letter after the first: SaaS, QLoRA, iOS), and words that are listed once an
/// English ending (s, es, ed, ing, ly, 's) is taken off.
///
/// Suggestions come from a symmetric-delete index built once, with the word list (about a second
/// on 2 cores), so that a query costs microseconds whatever the domain holds; `suspects` runs on
/// a thread of the spell check's own, never on the threads that serve calls.
public final class DomainSpellCheck: Sendable {
    let words: WordTable
    let index: DeletionIndex
    /// One thread: a flood of nonsense domains costs one core at most.
    private static let lane = BlockingLane(name: "synthd-spell-check", threads: 1)

    public static let defaultPath = "/usr/share/dict/words"

    /// Terms of technical work that a general word list lacks (Vocabulary/technical-terms.txt:
    /// machine learning, data engineering, programming, cloud, security and product work, a
    /// few thousand of them).
    public static let vocabulary: Set<String> = {
        guard let url = Bundle.module.url(forResource: "technical-terms", withExtension: "txt", subdirectory: "Vocabulary"),
              let text = try? String(contentsOf: url, encoding: .utf8) else { return [] }
        var terms = Set<String>()
        for line in text.split(whereSeparator: \.isNewline) {
            let term = line.trimmingCharacters(in: .whitespaces).lowercased()
            if !term.isEmpty, !term.hasPrefix("#") { terms.insert(term) }
        }
        return terms
    }()

    public init(path: String = DomainSpellCheck.defaultPath) {
        words = WordTable(contentsOf: FileManager.default.contents(atPath: path) ?? Data())
        index = DeletionIndex(words: words)
    }

    /// Loads the word list and builds the index now, on a thread of its own, so that the first
    /// Generate does not wait for it.
    public static func warmUp() {
        lane.submit { _ = shared.isAvailable }
    }

    /// `suspects(in:)`, run on the spell check's own thread.
    public func suspectsOffPool(in domain: String) async -> [PBSpellingSuggestion] {
        await Self.lane.run { self.suspects(in: domain) }
    }

    /// Shared, loaded on first use.
    public static let shared = DomainSpellCheck()

    /// Whether a word list was found; without one the check passes everything.
    public var isAvailable: Bool { words.count > 0 }

    public func suspects(in domain: String) -> [PBSpellingSuggestion] {
        guard isAvailable else { return [] }
        var out: [PBSpellingSuggestion] = []
        var seen = Set<String>()
        for raw in domain.split(whereSeparator: { !($0.isLetter || $0.isNumber || $0 == "'" || $0 == "’") }) {
            let token = String(raw).replacingOccurrences(of: "’", with: "'")
            for part in token.split(separator: "'").prefix(1) {
                let word = String(part)
                guard word.count >= 3, !word.contains(where: \.isNumber), !word.dropFirst().contains(where: \.isUppercase) else { continue }
                let lower = word.lowercased()
                guard !seen.contains(lower), !known(lower) else { continue }
                seen.insert(lower)
                let close = suggestions(for: lower)
                if !close.isEmpty {
                    var s = PBSpellingSuggestion()
                    s.word = word
                    s.suggestions = close
                    out.append(s)
                }
            }
        }
        return out
    }

    func known(_ w: String) -> Bool {
        if words.contains(w) || Self.vocabulary.contains(w) { return true }
        for ending in ["s", "es", "ed", "ing", "ly", "er", "ers"] where w.hasSuffix(ending) && w.count > ending.count + 2 {
            let stem = String(w.dropLast(ending.count))
            if words.contains(stem) || words.contains(stem + "e") || Self.vocabulary.contains(stem) { return true }
        }
        return false
    }

    /// Listed words within 1 edit (words up to 4 letters) or 2 edits, at most 3.
    func suggestions(for w: String) -> [String] { suggestionsMeasuring(for: w).suggestions }

    /// The suggestions, and how many listed words were measured against `w` to find them.
    func suggestionsMeasuring(for w: String) -> (suggestions: [String], measured: Int) {
        let limit = w.count <= 4 ? 1 : 2
        var found: [(Int, String)] = []
        var measured = 0
        let chars = Array(w.unicodeScalars)
        let lengths = max(2, w.count - limit)...(w.count + limit)
        for k in index.candidates(of: chars.map(\.value), edits: limit) where lengths.contains(words.characterCount(of: k)) {
            let candidate = words.word(k)
            measured += 1
            let d = Self.distance(chars, Array(candidate.unicodeScalars), limit: limit)
            if d <= limit { found.append((d, candidate)) }
        }
        return (Self.best(found, for: w), measured)
    }

    /// `suggestions(for:)` the slow way, measuring every listed word: what the index must equal.
    func suggestionsByScan(for w: String) -> [String] {
        let limit = w.count <= 4 ? 1 : 2
        var found: [(Int, String)] = []
        let chars = Array(w.unicodeScalars)
        let lengths = max(2, w.count - limit)...(w.count + limit)
        words.forEach(lengths: lengths) { candidate in
            let d = Self.distance(chars, Array(candidate.unicodeScalars), limit: limit)
            if d <= limit { found.append((d, candidate)) }
        }
        return Self.best(found, for: w)
    }

    static func best(_ found: [(Int, String)], for w: String) -> [String] {
        // Closest first; among equals, a word at least as long (a dropped letter is the commonest
        // typo), then the same first letter, then alphabetical.
        func rank(_ c: String) -> (Int, Int) { (c.count >= w.count ? 0 : 1, c.first == w.first ? 0 : 1) }
        return found.sorted {
            if $0.0 != $1.0 { return $0.0 < $1.0 }
            let a = rank($0.1), b = rank($1.1)
            return a != b ? a < b : $0.1 < $1.1
        }.prefix(3).map(\.1)
    }

    /// Optimal string alignment distance (a swap of neighbours counts one), stopping early once
    /// every path is above `limit`.
    static func distance(_ a: [Unicode.Scalar], _ b: [Unicode.Scalar], limit: Int) -> Int {
        if abs(a.count - b.count) > limit { return limit + 1 }
        var prev2 = [Int](repeating: 0, count: b.count + 1)
        var prev = Array(0...b.count)
        var cur = [Int](repeating: 0, count: b.count + 1)
        for i in 1...max(1, a.count) where !a.isEmpty {
            cur[0] = i
            var rowMin = cur[0]
            for j in 1...max(1, b.count) where !b.isEmpty {
                let cost = a[i - 1] == b[j - 1] ? 0 : 1
                var v = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
                if i > 1, j > 1, a[i - 1] == b[j - 2], a[i - 2] == b[j - 1] { v = min(v, prev2[j - 2] + 1) }
                cur[j] = v
                rowMin = min(rowMin, v)
            }
            if rowMin > limit { return limit + 1 }
            (prev2, prev, cur) = (prev, cur, prev2)
        }
        return a.isEmpty ? b.count : prev[b.count]
    }
}

/// The word list as one buffer of lower-cased words and an open-addressing hash table of where
/// each starts: loading 100,000 words this way takes a few milliseconds, where a `Set<String>`
/// (a String and a hash per word) took about 100 ms, inside whichever Generate came first.
struct WordTable: Sendable {
    /// The lower-cased words, one after another.
    private let bytes: [UInt8]
    /// Per word: where it starts in `bytes`, its length in bytes and in characters.
    private let starts: [UInt32]
    private let byteLengths: [UInt16]
    private let charLengths: [UInt16]
    /// Word number + 1 by hash, 0 where empty; a power of two at least twice the word count.
    private let slots: [UInt32]

    var count: Int { starts.count }

    /// Lines with an apostrophe (possessives) are left out, as are repeats once lower-cased.
    init(contentsOf data: Data) {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(data.count)
        var starts: [UInt32] = [], byteLengths: [UInt16] = [], charLengths: [UInt16] = []
        let estimate = max(16, data.count / 8)
        var capacity = 16
        while capacity < 2 * estimate { capacity <<= 1 }
        var slots = [UInt32](repeating: 0, count: capacity)
        var mask = capacity - 1

        func insert(_ word: ArraySlice<UInt8>, chars: Int) {
            guard !word.isEmpty, word.count <= Int(UInt16.max) else { return }
            var h = Self.hash(word) & mask
            while slots[h] != 0 {
                let k = Int(slots[h] - 1)
                if Self.equal(bytes, Int(starts[k]), Int(byteLengths[k]), word) { return }
                h = (h + 1) & mask
            }
            slots[h] = UInt32(starts.count + 1)
            starts.append(UInt32(bytes.count))
            byteLengths.append(UInt16(word.count))
            charLengths.append(UInt16(min(chars, Int(UInt16.max))))
            bytes.append(contentsOf: word)
            if 2 * starts.count > capacity {
                // Grow: every word again into a table twice the size.
                capacity <<= 1
                mask = capacity - 1
                slots = [UInt32](repeating: 0, count: capacity)
                for k in starts.indices {
                    let s = Int(starts[k]), n = Int(byteLengths[k])
                    var h = Self.hash(bytes[s..<(s + n)]) & mask
                    while slots[h] != 0 { h = (h + 1) & mask }
                    slots[h] = UInt32(k + 1)
                }
            }
        }

        data.withUnsafeBytes { (raw: UnsafeRawBufferPointer) in
            let all = raw.bindMemory(to: UInt8.self)
            var lineStart = 0
            var lower: [UInt8] = []
            while lineStart < all.count {
                var end = lineStart
                var ascii = true, apostrophe = false
                while end < all.count, all[end] != 0x0A {
                    let b = all[end]
                    if b >= 0x80 { ascii = false } else if b == 0x27 { apostrophe = true }
                    end += 1
                }
                if !apostrophe, end > lineStart {
                    if ascii {
                        lower.removeAll(keepingCapacity: true)
                        for k in lineStart..<end {
                            let b = all[k]
                            lower.append(b >= 0x41 && b <= 0x5A ? b | 0x20 : b)
                        }
                        insert(lower[...], chars: lower.count)
                    } else {
                        let w = String(decoding: UnsafeBufferPointer(rebasing: all[lineStart..<end]), as: UTF8.self).lowercased()
                        insert(Array(w.utf8)[...], chars: w.count)
                    }
                }
                lineStart = end + 1
            }
        }
        self.bytes = bytes
        self.starts = starts
        self.byteLengths = byteLengths
        self.charLengths = charLengths
        self.slots = slots
    }

    static func hash(_ word: ArraySlice<UInt8>) -> Int {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in word { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01B3 }
        return Int(truncatingIfNeeded: h ^ (h >> 29))
    }

    static func equal(_ bytes: [UInt8], _ start: Int, _ length: Int, _ word: ArraySlice<UInt8>) -> Bool {
        guard length == word.count else { return false }
        var i = start
        for b in word {
            if bytes[i] != b { return false }
            i += 1
        }
        return true
    }

    /// Whether `word` (already lower-cased) is listed.
    func contains(_ word: String) -> Bool {
        guard !slots.isEmpty else { return false }
        let w = Array(word.utf8)[...]
        let mask = slots.count - 1
        var h = Self.hash(w) & mask
        while slots[h] != 0 {
            let k = Int(slots[h] - 1)
            if Self.equal(bytes, Int(starts[k]), Int(byteLengths[k]), w) { return true }
            h = (h + 1) & mask
        }
        return false
    }

    /// Word number `k`.
    func word(_ k: Int) -> String {
        let s = Int(starts[k])
        return String(decoding: bytes[s..<(s + Int(byteLengths[k]))], as: UTF8.self)
    }

    func characterCount(of k: Int) -> Int { Int(charLengths[k]) }

    /// The code points of word number `k`, into `out`.
    func scalars(of k: Int, into out: inout [UInt32]) {
        out.removeAll(keepingCapacity: true)
        let s = Int(starts[k]), n = Int(byteLengths[k])
        if bytes[s..<(s + n)].allSatisfy({ $0 < 0x80 }) {
            for b in bytes[s..<(s + n)] { out.append(UInt32(b)) }
        } else {
            for u in word(k).unicodeScalars { out.append(u.value) }
        }
    }

    /// Calls `body` with every listed word whose length in characters is in `lengths`.
    func forEach(lengths: ClosedRange<Int>, _ body: (String) -> Void) {
        for k in starts.indices where lengths.contains(Int(charLengths[k])) {
            let s = Int(starts[k])
            body(String(decoding: bytes[s..<(s + Int(byteLengths[k]))], as: UTF8.self))
        }
    }
}
