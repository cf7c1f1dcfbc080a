import Foundation
/// One configured LLM endpoint.
public struct ProviderConfig: Sendable, Codable, Equatable {
    public enum Kind: String, Sendable, Codable {
        /// Chat Completions: OpenAI, vLLM, llama.cpp's server, Ollama and other compatible servers.
        case openai
        /// The Messages API.
        case anthropic
    }

    public var name: String
    public var kind: Kind
    public var baseURL: String
    /// Never logged, stored or echoed; read from the environment or the config file.
    public var apiKey: String
    public var maxInFlight: Int
    public var maxRetries: Int
    public var connectTimeoutSeconds: Double
    public var requestTimeoutSeconds: Double
    /// Dollars per million tokens, by model name; "*" matches any model.
    public var pricesPerMillion: [String: TokenPrice]
    /// Extra numeric sampling fields sent with every request (e.g. frequency_penalty, top_p,
    /// repeat_penalty for llama.cpp's server).
    public var sampling: [String: Double]
    /// When set, every string in the structured-output schema gets this maxLength. Small local
    /// models otherwise tend to repeat themselves until the token limit; grammar-constrained
    /// servers (llama.cpp, vLLM) enforce it. Leave unset for OpenAI, whose strict mode refuses it.
    public var stringMaxLength: Int?
    /// minLength on those strings (default 1): a small model otherwise answers a field with one
    /// word. Only applied together with `stringMaxLength`.
    public var stringMinLength: Int?
    /// Requests and tokens per minute this provider allows; nil leaves only the limits that the
    /// provider reports in its rate-limit headers.
    public var requestsPerMinute: Int?
    public var tokensPerMinute: Int?
    /// Several servers behind this one provider (a model fleet): each request goes to the one with
    /// the fewest outstanding requests relative to its capacity. Empty: the one at `baseURL`.
    public var endpoints: [Endpoint] = []
    /// An endpoint that fails this many requests in a row (no connection, a 5xx, a lost answer) is
    /// taken out of the pool for `ejectSeconds`, doubled at each further ejection up to
    /// `ejectMaxSeconds`, then sent one probe request; an answer brings it back.
    public var ejectAfterFailures: Int = 3
    public var ejectSeconds: Double = 1
    public var ejectMaxSeconds: Double = 60
    /// Delivery "batch": the provider's batch price as a share of its standard price (both
    /// OpenAI's Batch API and Anthropic's Message Batches charge half), how often a pending batch
    /// is asked about, and the most requests one batch holds.
    public var batchPriceFactor: Double = 0.5
    public var batchPollSeconds: Double = 30
    public var batchMaxRequests: Int = 10_000

    /// One server of a provider's pool.
    public struct Endpoint: Sendable, Codable, Equatable {
        public var baseURL: String
        /// Its own key; empty: the provider's.
        public var apiKey: String
        /// Requests in flight to it at most; nil: the provider's `max_in_flight`.
        public var maxInFlight: Int?
        /// How much it is preferred relative to its capacity (1: by capacity alone).
        public var weight: Double

        public init(baseURL: String, apiKey: String = "", maxInFlight: Int? = nil, weight: Double = 1) {
            self.baseURL = baseURL
            self.apiKey = apiKey
            self.maxInFlight = maxInFlight
            self.weight = weight
        }

        enum CodingKeys: String, CodingKey {
            case baseURL = "base_url"
            case apiKey = "api_key"
            case maxInFlight = "max_in_flight"
            case weight
        }

        public init(from decoder: Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            self.init(baseURL: try c.decode(String.self, forKey: .baseURL), apiKey: try c.decodeIfPresent(String.self, forKey: .apiKey) ?? "",
                      maxInFlight: try c.decodeIfPresent(Int.self, forKey: .maxInFlight),
                      weight: try c.decodeIfPresent(Double.self, forKey: .weight) ?? 1)
        }

        public func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(baseURL, forKey: .baseURL)
            // The key is deliberately never encoded.
            try c.encodeIfPresent(maxInFlight, forKey: .maxInFlight)
            try c.encode(weight, forKey: .weight)
        }

        /// `host:port` of its URL, without user, password, path or query: what Health, logs
        /// and metrics show (a URL can carry credentials).
        public var label: String {
            guard let u = URLComponents(string: baseURL), let host = u.host, !host.isEmpty else { return "endpoint" }
            let port = u.port ?? (u.scheme == "https" ? 443 : 80)
            return host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
        }
    }

    /// The servers requests go to: `endpoints`, or the one at `baseURL`, each with its capacity
    /// and key resolved.
    public var pool: [Endpoint] {
        guard !endpoints.isEmpty else { return [Endpoint(baseURL: baseURL, apiKey: apiKey, maxInFlight: max(1, maxInFlight))] }
        return endpoints.map { e in
            Endpoint(baseURL: e.baseURL, apiKey: e.apiKey.isEmpty ? apiKey : e.apiKey, maxInFlight: max(1, e.maxInFlight ?? maxInFlight),
                     weight: e.weight.isFinite && e.weight > 0 ? e.weight : 1)
        }
    }

    /// The prefix of the environment variables that configure the documented provider of a
    /// wire format: OPENAI_API_KEY, ANTHROPIC_BASE_URL and so on.
    public static func environmentPrefix(_ kind: Kind) -> String { kind.rawValue.uppercased() }

    /// The vendor's own endpoint for each wire format, where a key is always required.
    public static func vendorURL(_ kind: Kind) -> String {
        switch kind {
        case .openai: "https://api.openai.com/v1"
        case .anthropic: "https://api.anthropic.com"
        }
    }

    /// True for a provider that still points at its vendor's endpoint but has no API key: every
    /// request would be refused (or, offline, never arrive), so a job that needs it fails at once.
    public var lacksItsKey: Bool {
        pool.contains { $0.apiKey.isEmpty && $0.baseURL.trimmingCharacters(in: CharacterSet(charactersIn: "/")) == Self.vendorURL(kind) }
    }

    public struct TokenPrice: Sendable, Codable, Equatable {
        public var prompt: Double
        public var completion: Double
        public init(prompt: Double, completion: Double) {
            self.prompt = prompt
            self.completion = completion
        }
    }

    public init(name: String, kind: Kind, baseURL: String, apiKey: String = "", maxInFlight: Int = 64, maxRetries: Int = 8,
                connectTimeoutSeconds: Double = 10, requestTimeoutSeconds: Double = 120, pricesPerMillion: [String: TokenPrice] = [:],
                sampling: [String: Double] = [:], stringMaxLength: Int? = nil, requestsPerMinute: Int? = nil,
                tokensPerMinute: Int? = nil, stringMinLength: Int? = nil) {
        self.stringMinLength = stringMinLength
        self.name = name
        self.kind = kind
        self.baseURL = baseURL
        self.apiKey = apiKey
        self.maxInFlight = maxInFlight
        self.maxRetries = maxRetries
        self.connectTimeoutSeconds = connectTimeoutSeconds
        self.requestTimeoutSeconds = requestTimeoutSeconds
        self.pricesPerMillion = pricesPerMillion
        self.sampling = sampling
        self.stringMaxLength = stringMaxLength
        self.requestsPerMinute = requestsPerMinute
        self.tokensPerMinute = tokensPerMinute
    }

    enum CodingKeys: String, CodingKey {
        case name, kind
        case baseURL = "base_url"
        case apiKey = "api_key"
        case maxInFlight = "max_in_flight"
        case maxRetries = "max_retries"
        case connectTimeoutSeconds = "connect_timeout_seconds"
        case requestTimeoutSeconds = "request_timeout_seconds"
        case pricesPerMillion = "prices_per_million"
        case sampling
        case stringMaxLength = "string_max_length"
        case stringMinLength = "string_min_length"
        case requestsPerMinute = "requests_per_minute"
        case tokensPerMinute = "tokens_per_minute"
        case endpoints
        case ejectAfterFailures = "eject_after_failures"
        case ejectSeconds = "eject_seconds"
        case ejectMaxSeconds = "eject_max_seconds"
        case batchPriceFactor = "batch_price_factor"
        case batchPollSeconds = "batch_poll_seconds"
        case batchMaxRequests = "batch_max_requests"
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init(
            name: try c.decodeIfPresent(String.self, forKey: .name) ?? "",
            kind: try c.decode(Kind.self, forKey: .kind),
            baseURL: try c.decodeIfPresent(String.self, forKey: .baseURL) ?? "",
            apiKey: try c.decodeIfPresent(String.self, forKey: .apiKey) ?? "",
            maxInFlight: try c.decodeIfPresent(Int.self, forKey: .maxInFlight) ?? 64,
            maxRetries: try c.decodeIfPresent(Int.self, forKey: .maxRetries) ?? 8,
            connectTimeoutSeconds: try c.decodeIfPresent(Double.self, forKey: .connectTimeoutSeconds) ?? 10,
            requestTimeoutSeconds: try c.decodeIfPresent(Double.self, forKey: .requestTimeoutSeconds) ?? 120,
            pricesPerMillion: try c.decodeIfPresent([String: TokenPrice].self, forKey: .pricesPerMillion) ?? [:],
            sampling: try c.decodeIfPresent([String: Double].self, forKey: .sampling) ?? [:],
            stringMaxLength: try c.decodeIfPresent(Int.self, forKey: .stringMaxLength),
            requestsPerMinute: try c.decodeIfPresent(Int.self, forKey: .requestsPerMinute),
            tokensPerMinute: try c.decodeIfPresent(Int.self, forKey: .tokensPerMinute),
            stringMinLength: try c.decodeIfPresent(Int.self, forKey: .stringMinLength))
        endpoints = try c.decodeIfPresent([Endpoint].self, forKey: .endpoints) ?? []
        if baseURL.isEmpty, endpoints.isEmpty {
            throw DecodingError.dataCorruptedError(forKey: .baseURL, in: c, debugDescription: "a provider needs base_url or endpoints")
        }
        ejectAfterFailures = max(1, try c.decodeIfPresent(Int.self, forKey: .ejectAfterFailures) ?? 3)
        ejectSeconds = try c.decodeIfPresent(Double.self, forKey: .ejectSeconds) ?? 1
        ejectMaxSeconds = max(ejectSeconds, try c.decodeIfPresent(Double.self, forKey: .ejectMaxSeconds) ?? 60)
        batchPriceFactor = try c.decodeIfPresent(Double.self, forKey: .batchPriceFactor) ?? 0.5
        batchPollSeconds = try c.decodeIfPresent(Double.self, forKey: .batchPollSeconds) ?? 30
        batchMaxRequests = max(1, try c.decodeIfPresent(Int.self, forKey: .batchMaxRequests) ?? 10_000)
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(name, forKey: .name)
        try c.encode(kind, forKey: .kind)
        try c.encode(baseURL, forKey: .baseURL)
        // The key is deliberately never encoded.
        try c.encode(maxInFlight, forKey: .maxInFlight)
        try c.encode(maxRetries, forKey: .maxRetries)
        try c.encode(pricesPerMillion, forKey: .pricesPerMillion)
        try c.encode(sampling, forKey: .sampling)
        try c.encodeIfPresent(stringMaxLength, forKey: .stringMaxLength)
        try c.encodeIfPresent(stringMinLength, forKey: .stringMinLength)
        try c.encodeIfPresent(requestsPerMinute, forKey: .requestsPerMinute)
        try c.encodeIfPresent(tokensPerMinute, forKey: .tokensPerMinute)
        if !endpoints.isEmpty { try c.encode(endpoints, forKey: .endpoints) }
    }
}
