import SynthProto

/// Which provider and model answer for a tier or the critic.
public struct ModelRoute: Sendable, Codable, Hashable {
    public var provider: String
    public var model: String

    public init(provider: String, model: String) {
        self.provider = provider
        self.model = model
    }
}

/// What the server's config says about models: the providers it defines, the model each tier
/// uses, the default critic, and the tier a generator no tier uses is priced at. A verbose
/// `models.generator` is priced at, and held to the rules of, the tier whose model it is, not the
/// shorthand written beside it.
public struct ModelCatalog: Sendable {
    public typealias Route = ModelRoute

    public var providers: Set<String>
    public var tiers: [Tier: Route]
    public var critic: Route
    /// The tier of a generator that no tier routes to (a model the operator did not list).
    public var unlistedTier: Tier

    public init(providers: Set<String>, tiers: [Tier: Route], critic: Route, unlistedTier: Tier) {
        self.providers = providers
        self.tiers = tiers
        self.critic = critic
        self.unlistedTier = unlistedTier
    }

    /// The verbose generator of a request, its provider filled in (the shorthand tier's provider,
    /// else openai); nil when the request names none.
    public func explicitGenerator(_ r: PBJobRequest) -> Route? {
        guard r.hasModels, r.models.hasGenerator, !r.models.generator.model.isEmpty else { return nil }
        let provider = r.models.generator.provider.isEmpty
            ? (Tier(shorthand: r.model).flatMap { tiers[$0]?.provider } ?? "openai") : r.models.generator.provider
        return Route(provider: provider, model: r.models.generator.model)
    }

    /// The lowest tier that routes to exactly this model, else `unlistedTier`.
    public func tier(of generator: Route) -> Tier {
        Tier.allCases.first { tiers[$0] == generator } ?? unlistedTier
    }

    /// The tier a request is priced at and held to: its verbose generator's, else its shorthand's.
    public func priceTier(_ r: PBJobRequest) -> Tier? {
        if let g = explicitGenerator(r) { return tier(of: g) }
        return Tier(shorthand: r.model)
    }
}
