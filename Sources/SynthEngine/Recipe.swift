import Crypto
import SynthLLM
import SynthProto
import SynthSpec

/// How a job's records are made, as its manifest records it (`made_with`): the synthd version, a
/// hash of each prompt template the job uses, the generator and critic with the sampling they are
/// asked with, and the config values that shape a job. Two jobs with equal recipes (and equal
/// requests and seeds) were made the same way.
enum Recipe {
    /// The prompt templates a request uses, by name.
    static func templates(_ r: PBJobRequest) -> [String] {
        var names = ["system", r.schema, "\(r.schema).schema"]
        if r.advanced.hardNegatives.enabled { names.append("hard_negative") }
        if !r.systemPrompt.isEmpty { names.append("user_instructions") }
        if r.schema == Schema.preference.rawValue { names += ["preference_scores", "preference_scores.schema"] }
        if r.verified || r.advanced.metadataFields.contains(where: { $0.type == "llm_assessed" }) { names += ["judge", "judge.schema"] }
        if !r.advanced.invariants.isEmpty { names += ["invariants", "invariants.schema"] }
        return names
    }

    /// The critic's kinds of call a request makes.
    static func criticCalls(_ r: PBJobRequest) -> [String] {
        var calls: [String] = []
        if r.schema == Schema.preference.rawValue { calls.append("preference_scores") }
        if r.verified || r.advanced.metadataFields.contains(where: { $0.type == "llm_assessed" }) { calls.append("judge") }
        if !r.advanced.invariants.isEmpty { calls.append("invariants") }
        return calls
    }

    static func sha256(_ text: String) -> String {
        SHA256.hash(data: Array(text.utf8)).map { String(format: "%02x", $0) }.joined()
    }

    /// The temperature a provider is asked with for a request temperature: its own config's if
    /// set; Anthropic takes at most 1.
    static func temperature(_ asked: Double, _ provider: ProviderConfig?) -> Double {
        if let fixed = provider?.sampling["temperature"] { return fixed }
        return provider?.kind == .anthropic ? min(1, asked) : asked
    }

    static func sampling(_ provider: ProviderConfig?) -> JSONValue {
        .object((provider?.sampling ?? [:]).filter { $0.key != "temperature" }.sorted { $0.key < $1.key }.map { ($0.key, .number($0.value)) })
    }

    /// The recipe of a job, as JSON bytes (keys in a fixed order, so equal recipes are equal bytes).
    static func json(request r: PBJobRequest, plan: PBPlan, generator: ModelRoute, critic: ModelRoute, config: EngineConfig) -> [UInt8] {
        let prompts = PromptBuilder(request: r, plan: plan)
        let g = config.providers[generator.provider], c = config.providers[critic.provider]
        var made: [(String, JSONValue)] = [
            ("synthd_version", .string(SynthVersion.current)),
            ("prompt_templates", .object(templates(r).map { ($0, .string("sha256:" + sha256(PromptFiles.text($0)))) })),
            ("generator", .object([
                ("provider", .string(generator.provider)), ("model", .string(generator.model)),
                ("temperature", .number(temperature(ChatRequest.generationTemperature, g))),
                ("max_tokens", .int(Int64(prompts.maxTokens))),
                ("sampling", sampling(g)),
            ])),
        ]
        let calls = criticCalls(r)
        made.append(("critic", calls.isEmpty ? .null : .object([
            ("provider", .string(critic.provider)), ("model", .string(critic.model)),
            ("temperature", .number(temperature(QualityGate.criticTemperature, c))),
            ("max_tokens", .object(calls.map { ($0, .int(Int64(QualityGate.criticMaxTokens[$0] ?? 0))) })),
            ("sampling", sampling(c)),
        ])))
        made.append(("config", .object([
            ("attempts_per_record", .number(config.attemptsPerRecord)),
            ("attempt_slack", .int(Int64(config.attemptSlack))),
            ("job_concurrency", .int(Int64(max(1, min(config.jobConcurrency, g.map { $0.pool.reduce(0) { $0 + ($1.maxInFlight ?? 0) } } ?? config.jobConcurrency))))),
            ("provider_max_retries", .int(Int64(g?.maxRetries ?? 0))),
            ("provider_request_timeout_seconds", .number(g?.requestTimeoutSeconds ?? 0)),
            ("provider_unreachable_timeout_seconds", .number(config.providerUnreachableTimeoutSeconds)),
        ])))
        return JSONValue.object(made).serialized()
    }
}
