import Foundation
import Testing
@testable import SynthQuality

@Suite struct RecordCheckTests {
    let checker = FormatChecker(instructions: ["You write one record of a synthetic dataset used to train language models."],
                                minTokens: nil, maxTokens: nil)
    let answer = "Open Settings, choose Billing and press Update card. The new card is charged from the next invoice on."

    func record(_ output: String, q instruction: String = "How do I change the card on my account?") -> RecordText {
        RecordText(prompts: [("instruction", instruction), ("input", "")], responses: [("output", output)])
    }

    @Test func aGoodRecordPasses() {
        #expect(checker.check(record(answer)) == nil)
        // Short answers need no final full stop; neither does a closed code block.
        #expect(checker.check(record("Paris", q: "What is the capital of France?")) == nil)
        #expect(checker.check(record("Use this:\n```json\n{\"retries\": 3}\n```", q: "Show the config")) == nil)
        // Ordinary prose that happens to say "Domain:" in its own words is no echo.
        #expect(checker.check(record("Domain: example.org is the one your invoices are sent from, as set in Settings.", q: "Which domain?")) == nil)
    }

    @Test(arguments: [
        ("", FormatProblem.empty), ("   \n ", .empty), ("...", .placeholder), ("TODO", .placeholder), ("N/A", .placeholder),
        ("Lorem ipsum dolor sit amet, this is the answer for now.", .placeholder),
        ("[Insert the steps to update a card here]", .placeholder),
        ("SCHEMA: instruction_v1\nDOMAIN: billing\nOpen Settings and press Update card.", .leakage),
        ("Here is the JSON record you asked for: open Settings and press Update card.", .leakage),
        ("Sure. You write one record of a synthetic dataset used to train language models, so: open Settings.", .leakage),
        ("Open Settings, choose Billing and press Update card. The new card is charged from the next", .truncated),
        ("Open Settings, choose Billing and press Update card, then confirm it with the code we send you,", .truncated),
        ("Run this:\n```bash\nsynth billing update --card", .truncated),
        ("How do I change the card on my account?", .copyPaste),
    ] as [(String, FormatProblem)])
    func eachProblemIsFound(output: String, problem: FormatProblem) {
        #expect(checker.check(record(output)) == problem)
    }

    /// The byte fast paths answer exactly what the Unicode-aware String operations answer.
    @Test(arguments: [
        "", "   ", "\t\n\r\u{0B}\u{0C} ", "Plain ASCII text.", "  Mixed   CASE\tand\r\nlines \n", "x",
        "Caf\u{E9} au lait \u{00A0}with a no-break space\u{2003}", "\u{2028}line separator\u{2029}", "\u{0085}next line\u{0085}",
        "\u{00C9}COLE NORMALE", "\u{0130}stanbul", "emoji \u{1F600} end", "e\u{301} combining", "...", "\u{2026}", " .\u{2026}?- ",
        "\u{1C}\u{1D}unit separators\u{1F}",
    ])
    func fastTextMatchesStringOperations(_ text: String) {
        #expect(FastText.trimmed(text) == text.trimmingCharacters(in: .whitespacesAndNewlines))
        #expect(FastText.lowercasedBytes(text) == Array(text.lowercased().utf8))
        #expect(FastText.normalisedBytes(text) == Array(FormatChecker.normalise(text).utf8))
        #expect(FastText.wordCount(text) == text.split(whereSeparator: { $0.isWhitespace }).count)
    }

    @Test func byteSearchFindsAndCounts() {
        let hay = Array("a```b```c``` and ``` more ````".utf8)
        #expect(ByteSearch.count(hay, of: Array("```".utf8)) == 5)
        #expect(ByteSearch.contains(hay, Array("and".utf8)))
        #expect(!ByteSearch.contains(hay, Array("andx".utf8)))
        #expect(ByteSearch.contains(Array("abc".utf8), Array("abc".utf8)))
        #expect(!ByteSearch.contains(Array("ab".utf8), Array("abc".utf8)))
        #expect(ByteSearch.count(Array("aaaa".utf8), of: Array("aa".utf8)) == 2)
    }

    @Test func longPunctuationAroundAPlaceholderIsStillAPlaceholder() {
        #expect(FormatChecker.isPlaceholder(String(repeating: ".", count: 80) + "N/A" + String(repeating: "\u{2026}", count: 30)))
        #expect(FormatChecker.isPlaceholder(String(repeating: "\u{2026}", count: 40)))
        #expect(!FormatChecker.isPlaceholder(String(repeating: "word ", count: 30)))
        #expect(FormatChecker.isPlaceholder(String(repeating: "word ", count: 30) + "[Insert details]"))
    }

    @Test func responsesCopiedIntoEachOther() {
        let same = RecordText(prompts: [("prompt", "Q?")], responses: [("chosen", answer), ("rejected", answer.uppercased())])
        #expect(checker.check(same) == .copyPaste)
        let nested = RecordText(prompts: [("prompt", "Q?")], responses: [("chosen", answer + " Then log out."), ("rejected", answer)])
        #expect(checker.check(nested) == .copyPaste)
    }

    @Test func lengthBoundsWithSlack() {
        let c = FormatChecker(instructions: [], minTokens: 40, maxTokens: 80)
        func words(_ n: Int) -> String { (Array(repeating: "word", count: n).joined(separator: " ")) + "." }
        // 40 tokens is 30 words; 25% slack lets 23 words (31 tokens) pass and 22 (29) fail.
        #expect(c.check(record(words(23))) == nil)
        #expect(c.check(record(words(22))) == .tooShort)
        // 80 tokens is 60 words; up to 100 tokens (75 words) pass.
        #expect(c.check(record(words(75))) == nil)
        #expect(c.check(record(words(76))) == .tooLong)
        #expect(FormatChecker.approximateTokens("one two three") == 4)
    }

    @Test func preferenceChecks() {
        let chosen = "Refund the duplicate charge today and confirm by email; the customer keeps the annual discount."
        let rejected = "Tell the customer that duplicate charges happen and that they should wait for next month."
        #expect(PreferenceCheck.check(chosen: chosen, rejected: rejected, chosenScore: 8, rejectedScore: 6) == nil)
        #expect(PreferenceCheck.check(chosen: chosen, rejected: rejected, chosenScore: 8, rejectedScore: 6.5) == .lowMargin)
        #expect(PreferenceCheck.check(chosen: chosen, rejected: rejected, chosenScore: 4, rejectedScore: 8) == .lowMargin)
        let reworded = "Refund the duplicate charge today and confirm by email; the customer keeps their annual discount."
        #expect(PreferenceCheck.check(chosen: chosen, rejected: reworded, chosenScore: 9, rejectedScore: 3) == .tooSimilar)
    }

    @Test func gradesFollowTheRubric() {
        // The documentation's example: pass rate 0.921 (B), diversity and judge at A: A.
        let doc = QualityFigures(generated: 215, accepted: 198, nearDuplicates: 7, meanJudgeScore: 8.3)
        #expect(abs(doc.passRate - 0.921) < 0.001)
        #expect(doc.letters == ["pass_rate": "B", "diversity_score": "A", "mean_judge_score": "A"])
        #expect(doc.grade == "A")
        // Unverified: both measures must reach a letter.
        #expect(QualityFigures(generated: 100, accepted: 96, nearDuplicates: 1, meanJudgeScore: nil).grade == "A")
        #expect(QualityFigures(generated: 100, accepted: 90, nearDuplicates: 1, meanJudgeScore: nil).grade == "B")
        // 75 of 100 pass (C); diversity 75/(75+25) = 0.75 (B): C.
        #expect(QualityFigures(generated: 100, accepted: 75, nearDuplicates: 25, meanJudgeScore: nil).grade == "C")
        #expect(QualityFigures(generated: 100, accepted: 50, nearDuplicates: 0, meanJudgeScore: nil).grade == "D")
        // Verified, two of three at C or better, none better than C for two: C.
        #expect(QualityFigures(generated: 100, accepted: 72, nearDuplicates: 60, meanJudgeScore: 9).grade == "C")
        #expect(QualityFigures(generated: 100, accepted: 60, nearDuplicates: 50, meanJudgeScore: 4.0).grade == "D")
        // Bars are inclusive.
        #expect(QualityFigures(generated: 100, accepted: 95, nearDuplicates: 0, meanJudgeScore: 8.0).grade == "A")
        #expect(QualityFigures(generated: 0, accepted: 0, nearDuplicates: 0, meanJudgeScore: nil).diversityScore == 1)
    }
}
