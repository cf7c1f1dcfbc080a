/// The automatic checks every generated record goes through before it can be accepted. Pure: the
/// record's text fields in, a verdict out.
///
/// A record is given as its fields in roles: the prompt side (what the record asks) and the
/// response side (what it answers). Response constraints apply to the first response field.
public struct RecordText: Sendable {
    public var prompts: [(name: String, text: String)]
    public var responses: [(name: String, text: String)]

    public init(prompts: [(name: String, text: String)], responses: [(name: String, text: String)]) {
        self.prompts = prompts
        self.responses = responses
    }

    /// Everything, for the near-duplicate check.
    public var fullText: String { (prompts + responses).map(\.text).joined(separator: "\n") }
    /// The prompt side, for the cross-split leakage check.
    public var promptText: String { prompts.map(\.text).joined(separator: "\n") }
}

/// Why the format check refused a record. Each counts as `format_invalid` in the report; the
/// detail is logged and kept in the report's format breakdown.
public enum FormatProblem: String, Sendable, CaseIterable {
    case empty, placeholder, leakage, truncated, copyPaste = "copy_paste", tooShort = "too_short", tooLong = "too_long"
    /// Not a record at all: no JSON object, missing or mistyped fields, a refusal, cut off by
    /// the token limit.
    case unusable
}

public struct FormatChecker: Sendable {
    /// Sentences of our own instructions (system prompt, schema rules): a response quoting one of
    /// them is echoing its instructions.
    let instructionSentences: [[UInt8]]
    let minTokens: Int?
    let maxTokens: Int?

    /// Approximate token counts may miss by this share before a length bound rejects a record.
    public static let lengthSlack = 0.25

    public init(instructions: [String], minTokens: Int?, maxTokens: Int?) {
        var sentences: [[UInt8]] = []
        for text in instructions {
            for piece in text.split(whereSeparator: { ".!?\n".contains($0) }) {
                let s = Self.normalise(String(piece))
                if s.count >= 30 { sentences.append(Array(s.utf8)) }
            }
        }
        instructionSentences = sentences
        self.minTokens = minTokens
        self.maxTokens = maxTokens
    }

    /// Tokens as the documentation counts them: one token is about 0.75 words.
    public static func approximateTokens(_ text: String) -> Int {
        let words = FastText.wordCount(text)
        return Int((Double(words) / 0.75).rounded())
    }

    public func check(_ r: RecordText) -> FormatProblem? {
        // The first prompt-side field is the question itself and must be there; an instruction's
        // input may be empty.
        if let first = r.prompts.first, FastText.trimmed(first.text).isEmpty { return .empty }
        for (_, text) in r.responses {
            let t = FastText.trimmed(text)
            if t.isEmpty { return .empty }
            if Self.isPlaceholder(t) { return .placeholder }
        }
        for (_, text) in r.prompts {
            // An empty prompt-side field (an instruction's optional input) is allowed.
            let t = FastText.trimmed(text)
            if !t.isEmpty, Self.isPlaceholder(t) { return .placeholder }
        }
        for (_, text) in r.prompts + r.responses where leaks(text) { return .leakage }
        for (_, text) in r.responses where Self.looksTruncated(text) { return .truncated }
        if Self.copyPasted(r) { return .copyPaste }
        // response_constraints hold for every response of a record: a preference pair's rejected
        // answer and a conflict's second response as much as the first.
        for (_, text) in r.responses {
            let tokens = Self.approximateTokens(text)
            if let lo = minTokens, Double(tokens) < Double(lo) * (1 - Self.lengthSlack) { return .tooShort }
            if let hi = maxTokens, Double(tokens) > Double(hi) * (1 + Self.lengthSlack) { return .tooLong }
        }
        return nil
    }

    // MARK: - the individual checks

    static let placeholders: Set<String> = [
        "...", "…", "n/a", "na", "none", "null", "nil", "todo", "tbd", "string", "text", "output", "input", "response",
        "answer", "placeholder", "example", "lorem ipsum", "<output>", "[output]", "<response>", "[response]", "-", "?",
    ]
    static let placeholderMarkers = ["lorem ipsum", "[insert", "<insert", "{{", "}}", "your answer here", "your response here",
                                     "placeholder text", "[your ", "<your "]

    /// The bytes of `placeholderBare`'s characters ("…" is E2 80 A6). Trimming them byte by byte
    /// may cut more than trimming the characters would, never less, so what is left bounds the
    /// length of the trimmed text from below.
    static let placeholderBareBytes: Set<UInt8> = Set(" .\"'-?".utf8).union([0xE2, 0x80, 0xA6])
    static let placeholderMarkerBytes = placeholderMarkers.map { Array($0.utf8) }

    static let placeholderBare = CharacterSet(charactersIn: " .…\"'-?")
    /// Longer than every entry of `placeholders`.
    static let placeholderMaxBytes = 64

    static func isPlaceholder(_ text: String) -> Bool {
        let bytes = FastText.lowercasedBytes(text)
        // A text whose core is longer than every placeholder can only hold a marker.
        let coreStart = bytes.firstIndex { !placeholderBareBytes.contains($0) } ?? bytes.count
        let coreEnd = bytes.lastIndex { !placeholderBareBytes.contains($0) }.map { $0 + 1 } ?? coreStart
        if coreEnd - coreStart <= placeholderMaxBytes {
            let t = String(decoding: bytes, as: UTF8.self)
            let bare = t.trimmingCharacters(in: placeholderBare)
            if bare.isEmpty || placeholders.contains(t) || placeholders.contains(bare) { return true }
        }
        return placeholderMarkerBytes.contains { ByteSearch.contains(bytes, $0) }
    }

    /// Our task card's labels at the start of a line, schema names, JSON-schema syntax, talk about
    /// the task, or a sentence of our own instructions.
    /// The task card's labels, in the case the card spells them (a model echoing the card copies
    /// them as they are; "Domain:" in ordinary prose is left alone).
    static let directiveLabels = ["SCHEMA", "DOMAIN", "CATEGORY", "COVERAGE", "TECHNIQUE", "AXIS", "DRIVES", "DRIVE", "VARIATION",
                                  "LANGUAGE", "TONE", "DIFFICULTY", "LENGTH", "OVERRIDE LABELS"]
    static let metaPhrases = [
        "instruction_v1", "preference_v1", "eval_v1", "conflict_v1", "json schema", "\"type\": \"object\"", "\"type\":\"object\"",
        "\"properties\":", "here is the json", "here's the json", "here is a json", "here is the record", "here's the record",
        "here is the generated", "the following json", "as an ai language model", "the output field", "the instruction field",
        "additional instructions from the user",
    ]

    static let metaPhraseBytes = metaPhrases.map { Array($0.utf8) }

    static let directiveLabelBytes = directiveLabels.map { Array($0.utf8) }

    func leaks(_ text: String) -> Bool {
        let lower = FastText.lowercasedBytes(text)
        // Lines on UTF-8 bytes: a newline byte never occurs inside a multi-byte character.
        let colon = UInt8(ascii: ":"), space = UInt8(ascii: " "), tab = UInt8(ascii: "\t")
        for line in Array(text.utf8).split(separator: UInt8(ascii: "\n")) {
            let l = line.drop { $0 == space || $0 == tab }
            for (i, label) in Self.directiveLabelBytes.enumerated() where l.starts(with: label) {
                let rest = l.dropFirst(label.count)
                if rest.first == colon { return true }
                if Self.directiveLabels[i] == "DRIVE", rest.first == space, rest.contains(colon) { return true }
            }
        }
        if Self.metaPhraseBytes.contains(where: { ByteSearch.contains(lower, $0) }) { return true }
        if !instructionSentences.isEmpty {
            let norm = FastText.normalisedBytes(text)
            if instructionSentences.contains(where: { ByteSearch.contains(norm, $0) }) { return true }
        }
        return false
    }

    /// Cut off: an odd number of code fences, or prose (longer than a short answer) that stops
    /// on a letter, a comma or an opening bracket instead of the end of a sentence.
    static func looksTruncated(_ text: String) -> Bool {
        let t = FastText.trimmed(text)
        let fences = ByteSearch.count(Array(t.utf8), of: Array("```".utf8))
        if fences % 2 == 1 { return true }
        // Characters are never more than UTF-8 bytes: count them only when it can matter.
        guard t.utf8.count > 60, t.count > 60, let last = t.unicodeScalars.last else { return false }
        if fences > 0, t.hasSuffix("```") { return false }
        let props = last.properties
        if props.isAlphabetic { return true }
        return [",", "(", "[", "{", "-", "–", "—", "/", "&"].contains(Character(last))
    }

    /// The response is the prompt again, two responses are the same, or one contains the other.
    static func copyPasted(_ r: RecordText) -> Bool {
        let prompts = r.prompts.map { FastText.normalisedBytes($0.text) }.filter { !$0.isEmpty }
        let responses = r.responses.map { FastText.normalisedBytes($0.text) }
        for resp in responses where prompts.contains(resp) { return true }
        for i in responses.indices {
            for j in responses.indices where i != j {
                if responses[i] == responses[j] { return true }
                if responses[j].count >= 40, responses[i].count > responses[j].count, ByteSearch.contains(responses[i], responses[j]) { return true }
            }
        }
        return false
    }

    /// Lower-case with runs of whitespace made one space.
    static func normalise(_ text: String) -> String {
        text.lowercased().split(whereSeparator: { $0.isWhitespace }).joined(separator: " ")
    }
}

/// The text operations of the format check, on UTF-8 bytes when the text is ASCII (most model
/// output), with the same answers as the Unicode-aware `String` operations they stand for, which
/// run otherwise. For ASCII, Unicode's white space is exactly tab, line feed, vertical tab, form
/// feed, carriage return and space.
public enum FastText {
    static func isSpace(_ b: UInt8) -> Bool { b == 0x20 || (b >= 0x09 && b <= 0x0D) }

    static func isASCII(_ bytes: [UInt8]) -> Bool { !bytes.contains { $0 >= 0x80 } }

    /// `text.trimmingCharacters(in: .whitespacesAndNewlines)`.
    public static func trimmed(_ text: String) -> String {
        let bytes = Array(text.utf8)
        guard isASCII(bytes) else { return text.trimmingCharacters(in: .whitespacesAndNewlines) }
        guard let first = bytes.firstIndex(where: { !isSpace($0) }), let last = bytes.lastIndex(where: { !isSpace($0) }) else { return "" }
        if first == 0, last == bytes.count - 1 { return text }
        return String(decoding: bytes[first...last], as: UTF8.self)
    }

    /// `text.lowercased()` as bytes.
    static func lowercasedBytes(_ text: String) -> [UInt8] {
        let bytes = Array(text.utf8)
        guard isASCII(bytes) else { return Array(text.lowercased().utf8) }
        return bytes.map { $0 >= 0x41 && $0 <= 0x5A ? $0 | 0x20 : $0 }
    }

    /// `FormatChecker.normalise(text)` as bytes: lower case, runs of white space made one space.
    static func normalisedBytes(_ text: String) -> [UInt8] {
        let bytes = Array(text.utf8)
        guard isASCII(bytes) else { return Array(FormatChecker.normalise(text).utf8) }
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        var pendingSpace = false
        for b in bytes {
            if isSpace(b) {
                pendingSpace = !out.isEmpty
            } else {
                if pendingSpace { out.append(0x20); pendingSpace = false }
                out.append(b >= 0x41 && b <= 0x5A ? b | 0x20 : b)
            }
        }
        return out
    }

    /// `text.split(whereSeparator: { $0.isWhitespace }).count`.
    static func wordCount(_ text: String) -> Int {
        let bytes = Array(text.utf8)
        guard isASCII(bytes) else { return text.split(whereSeparator: { $0.isWhitespace }).count }
        var words = 0
        var inWord = false
        for b in bytes {
            if isSpace(b) { inWord = false } else if !inWord { inWord = true; words += 1 }
        }
        return words
    }
}

/// Substring search on UTF-8 bytes (`memchr` for the first byte, `memcmp` for the rest).
/// Foundation's `contains` on strings goes through CoreFoundation's locale-aware search, which
/// cost about a millisecond per record here. On normalised (already lower-cased) text a byte match
/// is the same answer.
enum ByteSearch {
    static func contains(_ haystack: [UInt8], _ needle: [UInt8]) -> Bool {
        if needle.isEmpty { return true }
        return count(haystack, of: needle, stopAtFirst: true) > 0
    }

    /// Non-overlapping occurrences of `needle`.
    static func count(_ haystack: [UInt8], of needle: [UInt8], stopAtFirst: Bool = false) -> Int {
        guard !needle.isEmpty, needle.count <= haystack.count else { return 0 }
        return haystack.withUnsafeBytes { h in
            needle.withUnsafeBytes { n in
                let base = h.baseAddress!
                let first = Int32(n[0])
                var found = 0
                var offset = 0
                while offset + n.count <= h.count {
                    guard let hit = memchr(base + offset, first, h.count - offset - n.count + 1) else { break }
                    let at = UnsafeRawPointer(hit) - base
                    if memcmp(hit, n.baseAddress!, n.count) == 0 {
                        found += 1
                        if stopAtFirst { break }
                        offset = at + n.count
                    } else {
                        offset = at + 1
                    }
                }
                return found
            }
        }
    }
}

/// preference_v1: the scores must be apart, and the two responses must differ in wording.
public enum PreferenceCheck {
    /// The least difference between the chosen and rejected scores.
    public static let minimumMargin = 2.0
    /// Chosen and rejected with a trigram Jaccard similarity above this are too similar.
    public static let similarity = Threshold(6, 10)

    public enum Problem: String, Sendable { case lowMargin = "low_margin", tooSimilar = "too_similar" }

    public static func check(chosen: String, rejected: String, chosenScore: Double, rejectedScore: Double) -> Problem? {
        if chosenScore - rejectedScore < minimumMargin { return .lowMargin }
        return tooSimilar(chosen: chosen, rejected: rejected) ? .tooSimilar : nil
    }

    /// Whether the two responses are worded too much alike (no scores needed, so it runs before
    /// the critic is asked for any).
    public static func tooSimilar(chosen: String, rejected: String) -> Bool {
        let a = Trigrams.set(chosen), b = Trigrams.set(rejected)
        return similarity.exceeded(overlap: Trigrams.overlap(a, b), a.count, b.count)
    }
}

import Foundation
