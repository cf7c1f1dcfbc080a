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
        apiKey.isEmpty && baseURL.trimmingCharacters(in: CharacterSet(charactersIn: "/")) == Self.vendorURL(kind)
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
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init(
            name: try c.decodeIfPresent(String.self, forKey: .name) ?? "",
            kind: try c.decode(Kind.self, forKey: .kind),
            baseURL: try c.decode(String.self, forKey: .baseURL),
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
    }
}
