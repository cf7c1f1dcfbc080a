/// The quality figures of a job and its grade, as the documentation defines them.
public struct QualityFigures: Sendable, Equatable {
    public var generated: Int64
    public var accepted: Int64
    /// Records removed by the diversity check.
    public var nearDuplicates: Int64
    /// Mean judge score of the accepted records; nil unless the job was verified.
    public var meanJudgeScore: Double?

    public init(generated: Int64, accepted: Int64, nearDuplicates: Int64, meanJudgeScore: Double?) {
        self.generated = generated
        self.accepted = accepted
        self.nearDuplicates = nearDuplicates
        self.meanJudgeScore = meanJudgeScore
    }

    /// Accepted records over generated records.
    public var passRate: Double { generated > 0 ? Double(accepted) / Double(generated) : 0 }

    /// The share of records that reached the diversity check and were unique: accepted over
    /// accepted plus near-duplicates, which is one minus the near-duplicate rate.
    public var diversityScore: Double {
        let checked = accepted + nearDuplicates
        return checked > 0 ? Double(accepted) / Double(checked) : 1
    }

    public static let diversityDefinition =
        "share of records reaching the diversity check that were unique: accepted / (accepted + near_duplicate), "
        + "where a near-duplicate has character-trigram Jaccard similarity above 0.7 with an accepted record; "
        + "equals 1 - near-duplicate rate"
    public static let gradeRule =
        "each measure gets the best letter whose bar it meets (A: pass rate >= 0.95, diversity >= 0.80, mean judge >= 8.0; "
        + "B: 0.85, 0.60, 7.0; C: 0.70, 0.40, 5.0; else D); the grade is the best letter that a majority of the measures "
        + "reach (both of two; two of three when verified)"

    /// The rubric's bars, best first.
    static let bars: [(grade: String, pass: Double, diversity: Double, judge: Double)] = [
        ("A", 0.95, 0.80, 8.0), ("B", 0.85, 0.60, 7.0), ("C", 0.70, 0.40, 5.0),
    ]

    /// The letter each measure reaches on its own.
    public var letters: [String: String] {
        func letter(_ value: Double, _ bar: KeyPath<(grade: String, pass: Double, diversity: Double, judge: Double), Double>) -> String {
            Self.bars.first { value >= $0[keyPath: bar] - 1e-9 }?.grade ?? "D"
        }
        var out = ["pass_rate": letter(passRate, \.pass), "diversity_score": letter(diversityScore, \.diversity)]
        if let m = meanJudgeScore { out["mean_judge_score"] = letter(m, \.judge) }
        return out
    }

    /// The overall grade: the best letter that a majority of the measures reach.
    public var grade: String {
        let reached = Array(letters.values)
        let majority = reached.count / 2 + 1
        for bar in Self.bars {
            let rank = Self.rank(bar.grade)
            if reached.filter({ Self.rank($0) <= rank }).count >= majority { return bar.grade }
        }
        return "D"
    }

    static func rank(_ letter: String) -> Int { ["A": 0, "B": 1, "C": 2, "D": 3][letter] ?? 3 }
}
