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
    let instructionSentences: [String]
    let minTokens: Int?
    let maxTokens: Int?

    /// Approximate token counts may miss by this share before a length bound rejects a record.
    public static let lengthSlack = 0.25

    public init(instructions: [String], minTokens: Int?, maxTokens: Int?) {
        var sentences: [String] = []
        for text in instructions {
            for piece in text.split(whereSeparator: { ".!?\n".contains($0) }) {
                let s = Self.normalise(String(piece))
                if s.count >= 30 { sentences.append(s) }
            }
        }
        instructionSentences = sentences
        self.minTokens = minTokens
        self.maxTokens = maxTokens
    }

    /// Tokens as the documentation counts them: one token is about 0.75 words.
    public static func approximateTokens(_ text: String) -> Int {
        let words = text.split(whereSeparator: { $0.isWhitespace }).count
        return Int((Double(words) / 0.75).rounded())
    }

    public func check(_ r: RecordText) -> FormatProblem? {
        // The first prompt-side field is the question itself and must be there; an instruction's
        // input may be empty.
        if let first = r.prompts.first, first.text.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty { return .empty }
        for (_, text) in r.responses {
            let t = text.trimmingCharacters(in: .whitespacesAndNewlines)
            if t.isEmpty { return .empty }
            if Self.isPlaceholder(t) { return .placeholder }
        }
        for (_, text) in r.prompts {
            // An empty prompt-side field (an instruction's optional input) is allowed.
            let t = text.trimmingCharacters(in: .whitespacesAndNewlines)
            if !t.isEmpty, Self.isPlaceholder(t) { return .placeholder }
        }
        for (_, text) in r.prompts + r.responses where leaks(text) { return .leakage }
        for (_, text) in r.responses where Self.looksTruncated(text) { return .truncated }
        if Self.copyPasted(r) { return .copyPaste }
        if let first = r.responses.first {
            let tokens = Self.approximateTokens(first.text)
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

    static func isPlaceholder(_ text: String) -> Bool {
        let t = text.lowercased()
        let bare = t.trimmingCharacters(in: CharacterSet(charactersIn: " .…\"'-?"))
        if bare.isEmpty || placeholders.contains(t) || placeholders.contains(bare) { return true }
        return placeholderMarkers.contains { t.contains($0) }
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

    func leaks(_ text: String) -> Bool {
        let lower = text.lowercased()
        for line in text.split(separator: "\n") {
            let l = line.drop { $0 == " " || $0 == "\t" }
            for label in Self.directiveLabels where l.hasPrefix(label) {
                let rest = l.dropFirst(label.count)
                if rest.hasPrefix(":") || (label == "DRIVE" && rest.hasPrefix(" ") && rest.contains(":")) { return true }
            }
        }
        if Self.metaPhrases.contains(where: { lower.contains($0) }) { return true }
        if !instructionSentences.isEmpty {
            let norm = Self.normalise(text)
            if instructionSentences.contains(where: { norm.contains($0) }) { return true }
        }
        return false
    }

    /// Cut off: an odd number of code fences, or prose (longer than a short answer) that stops
    /// on a letter, a comma or an opening bracket instead of the end of a sentence.
    static func looksTruncated(_ text: String) -> Bool {
        let t = text.trimmingCharacters(in: .whitespacesAndNewlines)
        var fences = 0
        var rest = Substring(t)
        while let r = rest.range(of: "```") {
            fences += 1
            rest = rest[r.upperBound...]
        }
        if fences % 2 == 1 { return true }
        guard t.count > 60, let last = t.unicodeScalars.last else { return false }
        if fences > 0, t.hasSuffix("```") { return false }
        let props = last.properties
        if props.isAlphabetic { return true }
        return [",", "(", "[", "{", "-", "–", "—", "/", "&"].contains(Character(last))
    }

    /// The response is the prompt again, two responses are the same, or one contains the other.
    static func copyPasted(_ r: RecordText) -> Bool {
        let prompts = r.prompts.map { normalise($0.text) }.filter { !$0.isEmpty }
        let responses = r.responses.map { normalise($0.text) }
        for resp in responses where prompts.contains(resp) { return true }
        for i in responses.indices {
            for j in responses.indices where i != j {
                if responses[i] == responses[j] { return true }
                if responses[j].count >= 40, responses[i].count > responses[j].count, responses[i].contains(responses[j]) { return true }
            }
        }
        return false
    }

    /// Lower-case with runs of whitespace made one space.
    static func normalise(_ text: String) -> String {
        text.lowercased().split(whereSeparator: { $0.isWhitespace }).joined(separator: " ")
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
        let a = Trigrams.set(chosen), b = Trigrams.set(rejected)
        if similarity.exceeded(overlap: Trigrams.overlap(a, b), a.count, b.count) { return .tooSimilar }
        return nil
    }
}

import Foundation
