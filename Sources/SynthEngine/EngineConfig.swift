import Foundation
import SynthLLM
import SynthSpec

/// Providers, the tier map and the engine's limits. Loaded from the `engine` part of the config
/// file; environment variables override the keys and base URLs.
public struct EngineConfig: Sendable, Codable {
    public var providers: [String: ProviderConfig]
    public var tiers: [String: ModelRoute]
    public var critic: ModelRoute
    /// Requests in flight per job.
    public var jobConcurrency: Int
    /// A job gives up after this many attempts per planned record (plus `attemptSlack`).
    public var attemptsPerRecord: Double
    public var attemptSlack: Int
    /// Largest `count` a request may ask for.
    public var maxCount: Int64
    /// How often a job paused by a full store asks whether there is room again.
    public var spaceRecheckMilliseconds: Int64 = 2000
    /// How long a job waits for a provider that cannot be reached (no connection at all) before
    /// it ends with what it has, naming the provider and the last connection error.
    public var providerUnreachableTimeoutSeconds: Double = 600
    /// The tier a verbose `models.generator` that no tier routes to is priced at and held to.
    public var unlistedModelTier: Tier = .deep
    /// Jobs generating at once, all orgs together; more wait their turn (queued), and a freed
    /// place goes to the org with the fewest running jobs relative to its weight.
    public var maxRunningJobs: Int = 16
    /// Each org's share of provider capacity and of running places relative to the others (1 for
    /// an org not named).
    public var orgWeights: [String: Double] = [:]
    /// What each org may spend with providers in a calendar month, in dollars (`*`: every org not
    /// named); none when absent.
    public var orgProviderBudgets: [String: Double] = [:]

    enum CodingKeys: String, CodingKey {
        case providers, tiers, critic
        case jobConcurrency = "job_concurrency"
        case attemptsPerRecord = "attempts_per_record"
        case attemptSlack = "attempt_slack"
        case maxCount = "max_count"
        case providerUnreachableTimeoutSeconds = "provider_unreachable_timeout_seconds"
        case unlistedModelTier = "unlisted_model_tier"
        case maxRunningJobs = "max_running_jobs"
        case orgWeights = "org_weights"
        case orgProviderBudgets = "org_provider_budgets_usd"
    }

    public init(providers: [String: ProviderConfig], tiers: [String: ModelRoute], critic: ModelRoute,
                jobConcurrency: Int = 64, attemptsPerRecord: Double = 3, attemptSlack: Int = 50, maxCount: Int64 = 100_000) {
        self.providers = providers
        self.tiers = tiers
        self.critic = critic
        self.jobConcurrency = jobConcurrency
        self.attemptsPerRecord = attemptsPerRecord
        self.attemptSlack = attemptSlack
        self.maxCount = maxCount
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = EngineConfig.documented
        var providers = try c.decodeIfPresent([String: ProviderConfig].self, forKey: .providers) ?? d.providers
        for key in providers.keys where providers[key]!.name.isEmpty { providers[key]!.name = key }
        self.init(providers: providers,
                  tiers: try c.decodeIfPresent([String: ModelRoute].self, forKey: .tiers) ?? d.tiers,
                  critic: try c.decodeIfPresent(ModelRoute.self, forKey: .critic) ?? d.critic,
                  jobConcurrency: try c.decodeIfPresent(Int.self, forKey: .jobConcurrency) ?? d.jobConcurrency,
                  attemptsPerRecord: try c.decodeIfPresent(Double.self, forKey: .attemptsPerRecord) ?? d.attemptsPerRecord,
                  attemptSlack: try c.decodeIfPresent(Int.self, forKey: .attemptSlack) ?? d.attemptSlack,
                  maxCount: try c.decodeIfPresent(Int64.self, forKey: .maxCount) ?? d.maxCount)
        if let t = try c.decodeIfPresent(Double.self, forKey: .providerUnreachableTimeoutSeconds) {
            // Clamped: a second to a day (NaN and negatives become a second).
            providerUnreachableTimeoutSeconds = t.isNaN ? 1 : min(86_400, max(1, t))
        }
        if let n = try c.decodeIfPresent(Int.self, forKey: .maxRunningJobs) { maxRunningJobs = max(1, n) }
        orgWeights = try c.decodeIfPresent([String: Double].self, forKey: .orgWeights) ?? [:]
        orgProviderBudgets = try c.decodeIfPresent([String: Double].self, forKey: .orgProviderBudgets) ?? [:]
        if let t = try c.decodeIfPresent(String.self, forKey: .unlistedModelTier) {
            guard let tier = Tier(shorthand: t) else {
                throw DecodingError.dataCorruptedError(forKey: .unlistedModelTier, in: c, debugDescription: "must be fast, balanced, diverse or deep")
            }
            unlistedModelTier = tier
        }
    }

    /// The documentation's tier map: OpenAI for fast, balanced and diverse, Anthropic for deep,
    /// the small OpenAI model as critic.
    public static let documented = EngineConfig(
        providers: [
            "openai": ProviderConfig(name: "openai", kind: .openai, baseURL: ProviderConfig.vendorURL(.openai),
                                     pricesPerMillion: ["gpt-4o-mini": .init(prompt: 0.15, completion: 0.60),
                                                        "gpt-4.1-mini": .init(prompt: 0.40, completion: 1.60)]),
            "anthropic": ProviderConfig(name: "anthropic", kind: .anthropic, baseURL: ProviderConfig.vendorURL(.anthropic),
                                        pricesPerMillion: ["claude-sonnet-4-6": .init(prompt: 3, completion: 15)]),
        ],
        tiers: [
            "fast": ModelRoute(provider: "openai", model: "gpt-4o-mini"),
            "balanced": ModelRoute(provider: "openai", model: "gpt-4.1-mini"),
            "diverse": ModelRoute(provider: "openai", model: "gpt-5.4-mini"),
            "deep": ModelRoute(provider: "anthropic", model: "claude-sonnet-4-6"),
        ],
        critic: ModelRoute(provider: "openai", model: "gpt-4o-mini"))

    /// The providers and tier routes, as validation and pricing see them.
    public var catalog: ModelCatalog {
        var routes: [Tier: ModelRoute] = [:]
        for (name, r) in tiers {
            if let tier = Tier(shorthand: name) { routes[tier] = r }
        }
        return ModelCatalog(providers: Set(providers.keys), tiers: routes, critic: critic, unlistedTier: unlistedModelTier)
    }

    /// Applies OPENAI_API_KEY, OPENAI_BASE_URL, ANTHROPIC_API_KEY and ANTHROPIC_BASE_URL.
    public mutating func applyEnvironment(_ env: [String: String]) {
        for kind in [ProviderConfig.Kind.openai, .anthropic] {
            let prefix = ProviderConfig.environmentPrefix(kind)
            for name in providers.keys where providers[name]!.kind == kind && name == kind.rawValue {
                if let key = env["\(prefix)_API_KEY"], !key.isEmpty { providers[name]!.apiKey = key }
                if let url = env["\(prefix)_BASE_URL"], !url.isEmpty { providers[name]!.baseURL = url }
            }
        }
    }

    /// The route for a request: its verbose `models.generator`, or its tier.
    public func generatorRoute(tier: String, explicit: ModelRoute?) -> ModelRoute? {
        if let explicit, !explicit.model.isEmpty {
            return ModelRoute(provider: explicit.provider.isEmpty ? (tiers[tier]?.provider ?? "openai") : explicit.provider, model: explicit.model)
        }
        return tiers[Tier(shorthand: tier)?.rawValue ?? tier]
    }
}
