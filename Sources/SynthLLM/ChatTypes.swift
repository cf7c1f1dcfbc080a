import SynthSpec
/// One structured-output request: system and user text, and the JSON schema the answer must meet.
public struct ChatRequest: Sendable {
    public var model: String
    public var system: String
    public var user: String
    /// A JSON schema object, serialised.
    public var jsonSchema: String?
    public var schemaName: String
    public var maxTokens: Int
    public var temperature: Double
    /// Which budget the usage is counted under: generate, preference_scores, judge, invariants.
    public var stage: String
    /// A generation request's slot and variation (what a provider batch stores to resume it).
    public var origin: (slot: Int64, variation: Int64)?
    /// A generation request's temperature, unless the provider's config sets one.
    public static let generationTemperature = 0.9

    public init(model: String, system: String, user: String, jsonSchema: String?, schemaName: String = "record",
                maxTokens: Int = 1024, temperature: Double = ChatRequest.generationTemperature, stage: String = "generate") {
        self.model = model
        self.system = system
        self.user = user
        self.jsonSchema = jsonSchema
        self.schemaName = schemaName
        self.maxTokens = maxTokens
        self.temperature = temperature
        self.stage = stage
    }
}

/// The provider's answer.
public struct ChatCompletion: Sendable {
    /// The JSON text of the answer (from a tool call, a JSON-mode answer, or repaired free text).
    public var content: String
    /// "stop", "length", "refusal", ...
    public var finishReason: String
    public var promptTokens: Int
    public var completionTokens: Int
    /// The model that really answered, as the provider names it.
    public var model: String
    public var costUSD: Double
    /// How many HTTP attempts this answer took.
    public var attempts: Int
    /// The provider batch and item it came from (delivery "batch").
    public var batchItem: (batch: String, customID: String)?
    /// `content` read as one JSON object, when the client has read it already (so that it is
    /// read once per answer, not once per step).
    public var object: JSONValue?

    public init(content: String, finishReason: String = "stop", promptTokens: Int = 0, completionTokens: Int = 0, model: String,
                costUSD: Double = 0, attempts: Int = 1, object: JSONValue? = nil) {
        self.object = object
        self.content = content
        self.finishReason = finishReason
        self.promptTokens = promptTokens
        self.completionTokens = completionTokens
        self.model = model
        self.costUSD = costUSD
        self.attempts = attempts
    }
}

/// A provider failure that retrying will not mend, or retries ran out.
public struct ProviderError: Error, Sendable, CustomStringConvertible {
    public enum Kind: Sendable {
        /// 400, 401, 403, exhausted quota: the job cannot go on.
        case fatal
        /// Retries exhausted on a retryable failure.
        case exhausted
        /// The answer came but is not usable (malformed JSON, refusal); the caller may try again.
        case unusable
        /// No connection could be made (refused, no such host, a TLS failure), through every
        /// retry: nothing was answered, so nothing was rejected.
        case unreachable
        /// The request was not sent: it could pass a spend limit (the job's or its org's). The
        /// job ends with what it has.
        case capped
    }

    public var kind: Kind
    public var provider: String
    public var status: Int
    public var message: String

    public init(kind: Kind, provider: String, status: Int = 0, message: String) {
        self.kind = kind
        self.provider = provider
        self.status = status
        self.message = message
    }

    public var description: String {
        status > 0 ? "\(provider) answered \(status): \(message)" : "\(provider): \(message)"
    }
}
