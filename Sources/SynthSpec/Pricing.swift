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
