import SynthProto

/// The price list, per 1,000 accepted records, with the documented values as defaults.
public struct Pricing: Sendable {
    public struct TierPrice: Sendable {
        public var instructionPer1K: Double   // instruction_v1, eval_v1
        public var preferencePer1K: Double?   // preference_v1, conflict_v1; nil where the tier cannot run them
        public var inSubscription: Bool
    }

    public var tiers: [Tier: TierPrice]
    public var verifiedPer1K: Double
    public var invariantsPer1K: Double
    public var llmAssessedPer1K: Double
    public var subscriptionVerifiedMultiplier: Double

    public static let documented = Pricing(
        tiers: [
            .fast: TierPrice(instructionPer1K: 0.50, preferencePer1K: nil, inSubscription: true),
            .balanced: TierPrice(instructionPer1K: 3.00, preferencePer1K: 4.00, inSubscription: true),
            .diverse: TierPrice(instructionPer1K: 8.00, preferencePer1K: 10.00, inSubscription: true),
            .deep: TierPrice(instructionPer1K: 25.00, preferencePer1K: 30.00, inSubscription: false),
        ],
        verifiedPer1K: 5.00, invariantsPer1K: 0.04, llmAssessedPer1K: 5.00, subscriptionVerifiedMultiplier: 1.5)

    /// What `count` accepted records of this request cost. A request with the verbose `models`
    /// object and no tier is priced as `balanced`.
    public func estimate(_ r: PBJobRequest, records: Int64? = nil) -> PBCostEstimate {
        let n = Double(records ?? r.count)
        let tier = Tier(shorthand: r.model) ?? .balanced
        let price = tiers[tier]!
        let isPair = r.schema == Schema.preference.rawValue || r.schema == Schema.conflict.rawValue
        let per1K = isPair ? (price.preferencePer1K ?? price.instructionPer1K) : price.instructionPer1K
        var e = PBCostEstimate()
        e.baseUsd = per1K * n / 1000
        if r.verified { e.verifiedUsd = verifiedPer1K * n / 1000 }
        if r.hasAdvanced, !r.advanced.invariants.isEmpty { e.invariantsUsd = invariantsPer1K * n / 1000 }
        if !r.verified, r.hasAdvanced, r.advanced.metadataFields.contains(where: { $0.type == "llm_assessed" }) {
            e.llmAssessedUsd = llmAssessedPer1K * n / 1000
        }
        e.totalUsd = e.baseUsd + e.verifiedUsd + e.invariantsUsd + e.llmAssessedUsd
        e.quotaRecords = n * (r.verified ? subscriptionVerifiedMultiplier : 1)
        return e
    }

    public func table(models: [Tier: (provider: String, model: String)]) -> PBGetPricingResponse {
        var out = PBGetPricingResponse()
        for tier in Tier.allCases {
            guard let p = tiers[tier] else { continue }
            var t = PBTierPrice()
            t.tier = tier.rawValue
            t.provider = models[tier]?.provider ?? ""
            t.model = models[tier]?.model ?? ""
            t.instructionPer1KUsd = p.instructionPer1K
            t.preferencePer1KUsd = p.preferencePer1K ?? 0
            t.subscription = p.inSubscription
            out.tiers.append(t)
        }
        out.verifiedPer1KUsd = verifiedPer1K
        out.invariantsPer1KUsd = invariantsPer1K
        out.llmAssessedPer1KUsd = llmAssessedPer1K
        out.subscriptionVerifiedMultiplier = subscriptionVerifiedMultiplier
        return out
    }
}

extension Pricing: Decodable {
    /// The `pricing` part of the config file; whatever it leaves out keeps its documented value:
    /// `{"tiers": {"fast": {"instruction_per_1k": 0.5, "preference_per_1k": null}}, "verified_per_1k": 5,
    /// "invariants_per_1k": 0.04, "llm_assessed_per_1k": 5, "subscription_verified_multiplier": 1.5}`.
    enum CodingKeys: String, CodingKey {
        case tiers
        case verifiedPer1K = "verified_per_1k"
        case invariantsPer1K = "invariants_per_1k"
        case llmAssessedPer1K = "llm_assessed_per_1k"
        case subscriptionVerifiedMultiplier = "subscription_verified_multiplier"
    }

    enum TierKeys: String, CodingKey {
        case instructionPer1K = "instruction_per_1k"
        case preferencePer1K = "preference_per_1k"
        case inSubscription = "in_subscription"
    }

    public init(from decoder: Decoder) throws {
        var p = Pricing.documented
        let c = try decoder.container(keyedBy: CodingKeys.self)
        if c.contains(.tiers) {
            let tiers = try c.nestedContainer(keyedBy: DynamicKey.self, forKey: .tiers)
            for key in tiers.allKeys {
                guard let tier = Tier(rawValue: key.stringValue) else {
                    throw DecodingError.dataCorruptedError(forKey: key, in: tiers,
                                                           debugDescription: "unknown tier \(key.stringValue): fast, balanced, diverse or deep")
                }
                let t = try tiers.nestedContainer(keyedBy: TierKeys.self, forKey: key)
                var price = p.tiers[tier]!
                if let v = try t.decodeIfPresent(Double.self, forKey: .instructionPer1K) { price.instructionPer1K = try Self.price(v) }
                if t.contains(.preferencePer1K) {
                    price.preferencePer1K = try t.decodeNil(forKey: .preferencePer1K) ? nil : try Self.price(t.decode(Double.self, forKey: .preferencePer1K))
                }
                if let v = try t.decodeIfPresent(Bool.self, forKey: .inSubscription) { price.inSubscription = v }
                p.tiers[tier] = price
            }
        }
        if let v = try c.decodeIfPresent(Double.self, forKey: .verifiedPer1K) { p.verifiedPer1K = try Self.price(v) }
        if let v = try c.decodeIfPresent(Double.self, forKey: .invariantsPer1K) { p.invariantsPer1K = try Self.price(v) }
        if let v = try c.decodeIfPresent(Double.self, forKey: .llmAssessedPer1K) { p.llmAssessedPer1K = try Self.price(v) }
        if let v = try c.decodeIfPresent(Double.self, forKey: .subscriptionVerifiedMultiplier) { p.subscriptionVerifiedMultiplier = try Self.price(v) }
        self = p
    }

    static func price(_ v: Double) throws -> Double {
        guard v.isFinite, v >= 0 else {
            throw DecodingError.dataCorrupted(.init(codingPath: [], debugDescription: "a price must be a number of dollars, 0 or more"))
        }
        return v
    }

    struct DynamicKey: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init?(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }
}
