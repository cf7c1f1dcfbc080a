/// The model shorthand.
public enum Tier: String, Sendable, CaseIterable, Comparable, Codable {
    case fast, balanced, diverse, deep

    /// Resolves a shorthand or a legacy alias.
    public init?(shorthand: String) {
        switch shorthand {
        case "economy": self = .fast
        case "standard": self = .balanced
        case "premium": self = .deep
        default: self.init(rawValue: shorthand)
        }
    }

    public static let legacyAliases = ["economy": "fast", "standard": "balanced", "premium": "deep"]

    var rank: Int { Tier.allCases.firstIndex(of: self)! }
    public static func < (a: Tier, b: Tier) -> Bool { a.rank < b.rank }
}

/// The four record schemas.
public enum Schema: String, Sendable, CaseIterable {
    case instruction = "instruction_v1"
    case preference = "preference_v1"
    case eval = "eval_v1"
    case conflict = "conflict_v1"

    /// preference_v1 and conflict_v1 need balanced or higher.
    public var minimumTier: Tier { self == .preference || self == .conflict ? .balanced : .fast }
}
