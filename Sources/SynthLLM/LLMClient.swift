import Foundation
import Logging
import Synchronization
import SynthConcurrency
import SynthMetrics
import SynthSpec

/// Talks to one configured provider: builds the wire request for its format, bounds how many
/// requests are in flight, retries what is worth retrying, and parses the answer.
public final class LLMClient: Sendable {
    /// How structured output is asked for. Tried in this order; what worked is remembered.
    public enum OutputMode: Int, Sendable {
        case jsonSchema = 0, jsonObject = 1, prompt = 2
    }

    public let config: ProviderConfig
    let engine: HTTPEngine
    /// The servers requests go to (`config.pool`), each with its own rate limits.
    let pool: [ProviderConfig.Endpoint]
    private let limiters: [RateLimiter]
    /// The configured and observed limits of the first endpoint (the only one, unless a fleet).
    public var limiter: RateLimiter { limiters[0] }
    private let inFlight = Atomic<Int>(0)
    /// Requests on the wire now (the metrics' gauge).
    public var requestsInFlight: Int { inFlight.load(ordering: .relaxed) }
    private let logger: Logger
    /// The way of asking for JSON that works with this endpoint, as far as is known.
    private let mode = Locked<OutputMode>(.jsonSchema)
    /// Output schemas as sent, by their text.
    private let schemas = Locked<[String: String]>([:])
    /// Since when no connection could be made, and why (nil since: the last request got an answer).
    let reachability = Locked<(since: Date?, lastError: String)>((nil, ""))
    /// The sampling fields in name order (so that the bytes never vary).
    private let sampling: [(String, Double)]
    /// For a client used on its own (not through an engine): a scheduler of its own.
    private let standalone: Requester

    public init(config: ProviderConfig, engine: HTTPEngine, logger: Logger) {
        self.config = config
        self.engine = engine
        self.pool = config.pool
        self.sampling = config.sampling.sorted { $0.key < $1.key }
        self.limiters = config.pool.map { _ in
            RateLimiter(requestsPerMinute: config.requestsPerMinute, tokensPerMinute: config.tokensPerMinute)
        }
        self.logger = logger
        let scheduler = RequestScheduler()
        let index = scheduler.addPool(config.name, endpoints: Self.endpointSpecs(config), policy: Self.ejectionPolicy(config))
        standalone = Requester(scheduler: scheduler, ticket: scheduler.join(org: "", limit: Int.max), pool: index)
    }

    public var outputMode: OutputMode { mode.withLock { $0 } }

    /// The ejection rules of this provider's endpoints, for the scheduler that serves it.
    public var ejectionPolicy: RequestScheduler.EjectionPolicy { Self.ejectionPolicy(config) }

    static func ejectionPolicy(_ config: ProviderConfig) -> RequestScheduler.EjectionPolicy {
        RequestScheduler.EjectionPolicy(afterFailures: config.ejectAfterFailures, firstSeconds: config.ejectSeconds,
                                        maxSeconds: config.ejectMaxSeconds)
    }

    /// A provider's servers as the scheduler sees them.
    static func endpointSpecs(_ config: ProviderConfig) -> [RequestScheduler.EndpointSpec] {
        config.pool.map { RequestScheduler.EndpointSpec(label: $0.label, capacity: $0.maxInFlight ?? config.maxInFlight, weight: $0.weight) }
    }

    /// One completion, scheduled by this client alone.
    public func complete(_ request: ChatRequest) async throws -> ChatCompletion {
        try await complete(request, for: standalone)
    }

    /// One completion, retried on timeouts, resets, 408, 429, 5xx and 529 with exponential
    /// backoff and jitter, never sooner than the provider's retry-after. Each try waits for its
    /// grant; a retry after a failure goes to another endpoint when the pool has one in service,
    /// at once.
    public func complete(_ request: ChatRequest, for requester: Requester) async throws -> ChatCompletion {
        var attempt = 0
        var avoid: Int?
        let estimate = RateLimiter.estimateTokens(request)
        while true {
            attempt += 1
            let currentMode = outputMode
            let outcome: Result<HTTPResponse, Error>
            let grant = try await requester.acquire(avoiding: avoid)
            let endpoint = grant.endpoint
            // The most this try can cost is held against the job's spend limits until its answer
            // says what it did cost; a try that could pass one is not sent.
            var held = 0.0
            if let spend = requester.spend {
                held = worstCost(request)
                do {
                    try await spend.hold(held, provider: config.name)
                } catch let e as ProviderError {
                    requester.halt?.set(e)
                    requester.scheduler.release(grant, .unknown)
                    throw e
                }
            }
            var spentNow = 0.0
            defer { requester.spend?.settle(held: held, spent: spentNow) }
            let sent: Result<HTTPResponse, Error>
            do {
                let http = try build(request, mode: currentMode, endpoint: pool[endpoint])
                sent = .success(try await send(http, endpoint: endpoint, estimate: estimate, model: request.model))
            } catch {
                sent = .failure(error)
            }
            switch sent {
            case .success(let response):
                if let fatal = fatal(response, mode: currentMode) {
                    // Halted before the grant goes back: the job's waiting requests never send.
                    requester.halt?.set(fatal)
                    requester.scheduler.release(grant, .answered)
                    limiters[endpoint].settle(estimated: estimate, actual: 0)
                    throw fatal
                }
                requester.scheduler.release(grant, response.status >= 500 ? .failed("HTTP \(response.status)") : .answered)
                outcome = .success(response)
            case .failure(let error) where error is CancellationError || error is ProviderError:
                // Nothing reached the provider (or nothing it counted is known): no tokens spent.
                limiters[endpoint].settle(estimated: estimate, actual: 0)
                if let fatal = error as? ProviderError, fatal.kind == .fatal { requester.halt?.set(fatal) }
                requester.scheduler.release(grant, .unknown)
                throw error
            case .failure(let error):
                limiters[endpoint].settle(estimated: estimate, actual: 0)
                requester.scheduler.release(grant, .failed(Redact.secrets("\(error)")))
                outcome = .failure(error)
            }
            // Which server this try's failure rules out for the next (a 5xx or a lost request).
            avoid = nil
            var retryAfter: Duration?
            if case .success = outcome { reachability.withLock { $0.since = nil } }
            switch outcome {
            case .success(let response) where response.status == 200:
                var completion: ChatCompletion
                do {
                    completion = try parse(response, request: request)
                } catch {
                    // Paid for, at a cost the answer does not say: the most it could have been.
                    spentNow = held
                    throw error
                }
                spentNow = completion.costUSD
                completion.attempts = attempt
                SynthMetrics.providerUsage(provider: config.name, model: SynthMetrics.modelLabel(completion.model),
                                           promptTokens: completion.promptTokens, completionTokens: completion.completionTokens,
                                           dollars: completion.costUSD)
                limiters[endpoint].settle(estimated: estimate, actual: completion.promptTokens + completion.completionTokens)
                return completion
            case .success(let response):
                limiters[endpoint].settle(estimated: estimate, actual: 0)
                let message = redacted(Self.errorMessage(response.body))
                if response.status == 400, currentMode != .prompt, Self.mentionsStructuredOutput(message) {
                    // The endpoint does not take this way of asking for JSON: step down and remember.
                    mode.withLock { if $0 == currentMode { $0 = OutputMode(rawValue: currentMode.rawValue + 1)! } }
                    logger.info("provider does not support structured output mode, falling back", metadata: ["provider": "\(config.name)", "mode": "\(currentMode)"])
                    attempt -= 1
                    continue
                }
                retryAfter = Self.retryAfter(response.headers)
                if attempt > config.maxRetries {
                    throw ProviderError(kind: .exhausted, provider: config.name, status: response.status, message: "gave up after \(attempt) attempts: \(message)")
                }
                if response.status >= 500 { avoid = endpoint }
            case .failure(let error):
                let connect = (error as? HTTPError)?.isConnectFailure == true
                if connect {
                    reachability.withLock {
                        if $0.since == nil { $0.since = Date() }
                        $0.lastError = "\(error)"
                    }
                }
                if attempt > config.maxRetries {
                    throw ProviderError(kind: connect ? .unreachable : .exhausted, provider: config.name, status: 0,
                                        message: connect ? "no connection after \(attempt) attempts: \(error)" : "gave up after \(attempt) attempts: \(error)")
                }
                avoid = endpoint
            }
            // A failure of one server of a fleet is retried on another at once (once per server:
            // past that the whole fleet is failing, and backing off is what helps); a server
            // asking to wait (429, retry-after) or the only one is waited for.
            if let avoid, retryAfter == nil, attempt <= pool.count, requester.scheduler.hasOther(pool: requester.pool, than: avoid) {
                continue
            }
            requester.spend?.settle(held: held, spent: spentNow)
            held = 0
            let delay = Self.backoff(attempt: attempt, retryAfter: retryAfter)
            try await Task.sleep(for: delay)
        }
    }

    /// The price of `model` per million tokens (or of `*`), if the config has one.
    public func price(of model: String) -> ProviderConfig.TokenPrice? {
        config.pricesPerMillion[model] ?? config.pricesPerMillion["*"]
    }

    /// The most a request can cost: its prompt (estimated generously, a token per 3 bytes) and its
    /// whole `max_tokens` of answer, at the model's price; 0 when the model has no price.
    public func worstCost(_ request: ChatRequest, factor: Double = 1) -> Double {
        guard let price = price(of: request.model) else { return 0 }
        let prompt = Double(request.system.utf8.count + request.user.utf8.count + (request.jsonSchema?.utf8.count ?? 0)) / 3 + 16
        return (prompt * price.prompt + Double(request.maxTokens) * price.completion) * factor / 1_000_000
    }

    /// The error of an answer that ends the job (400, 401, 403, an exhausted quota: never retried),
    /// or nil. A 400 about structured output is not one: the client asks another way.
    private func fatal(_ response: HTTPResponse, mode: OutputMode) -> ProviderError? {
        guard response.status != 200 else { return nil }
        let message = redacted(Self.errorMessage(response.body))
        if response.status == 400, mode != .prompt, Self.mentionsStructuredOutput(message) { return nil }
        let quota = message.lowercased().contains("insufficient_quota") || message.lowercased().contains("exceeded your current quota")
        guard !Self.isRetryable(response.status) || quota else { return nil }
        return ProviderError(kind: .fatal, provider: config.name, status: response.status, message: message)
    }

    /// `text` without any of the pool's keys.
    private func redacted(_ text: String) -> String {
        var out = text
        for key in Set(pool.map(\.apiKey)) where !key.isEmpty { out = out.replacingOccurrences(of: key, with: "[redacted]") }
        return out
    }

    /// Waits for the endpoint's rate limits, sends, and reads its rate-limit headers.
    private func send(_ http: HTTPRequest, endpoint: Int, estimate: Int, model: String) async throws -> HTTPResponse {
        let limiter = limiters[endpoint]
        let wait = limiter.reserve(tokens: estimate)
        if wait > .zero { try await Task.sleep(for: wait) }
        inFlight.wrappingAdd(1, ordering: .relaxed)
        RequestLog.shared?.append(http.body)
        let sentAt = ContinuousClock.now
        let response: HTTPResponse
        do {
            response = try await engine.send(http)
        } catch {
            inFlight.wrappingSubtract(1, ordering: .relaxed)
            let outcome = (error as? HTTPError)?.isConnectFailure == true ? "connect_error" : "error"
            SynthMetrics.providerRequest(provider: config.name, model: SynthMetrics.modelLabel(model), outcome: outcome,
                                         took: ContinuousClock.now - sentAt)
            throw error
        }
        let status = response.status
        let outcome = status == 200 ? "ok" : status == 429 ? "http_429" : status >= 500 ? "http_5xx" : "http_4xx"
        SynthMetrics.providerRequest(provider: config.name, model: SynthMetrics.modelLabel(model), outcome: outcome,
                                     took: ContinuousClock.now - sentAt)
        let others = inFlight.wrappingSubtract(1, ordering: .relaxed).newValue
        limiter.observe(headers: response.headers, inFlight: others, sentAt: sentAt)
        return response
    }

    static func isRetryable(_ status: Int) -> Bool {
        status == 408 || status == 409 || status == 425 || status == 429 || status >= 500
    }

    /// Full jitter on an exponential base (0.25 s doubling, capped at 20 s), but never below the
    /// provider's retry-after.
    static func backoff(attempt: Int, retryAfter: Duration?) -> Duration {
        let cap = min(20.0, 0.25 * pow(2.0, Double(attempt - 1)))
        let jittered = Duration.milliseconds(Int64(Double.random(in: 0.5...1.0) * cap * 1000))
        guard let retryAfter else { return jittered }
        return max(retryAfter, jittered)
    }

    /// The provider's retry-after, from `retry-after-ms` or `retry-after` (seconds), clamped to
    /// 0...120 s; anything else (an HTTP date, "inf", garbage) is ignored.
    static func retryAfter(_ headers: [String: String]) -> Duration? {
        func clamp(_ ms: Double) -> Duration? {
            guard ms.isFinite, ms >= 0 else { return nil }
            return .milliseconds(Int64(min(ms, 120_000).rounded(.up)))
        }
        if let ms = headers["retry-after-ms"].flatMap(Double.init), let d = clamp(ms) { return d }
        if let s = headers["retry-after"].flatMap(Double.init), let d = clamp(s * 1000) { return d }
        // Or an HTTP date (RFC 9110: "Wed, 21 Oct 2015 07:28:00 GMT"): the wait until then.
        if let text = headers["retry-after"], let date = httpDate(text) {
            return clamp(max(0, date.timeIntervalSinceNow * 1000))
        }
        return nil
    }

    /// An HTTP date in its preferred form (IMF-fixdate), or nil.
    static func httpDate(_ text: String) -> Date? {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "GMT")
        f.dateFormat = "EEE, dd MMM yyyy HH:mm:ss 'GMT'"
        return f.date(from: text.trimmingCharacters(in: .whitespaces))
    }

    static func mentionsStructuredOutput(_ message: String) -> Bool {
        let m = message.lowercased()
        return m.contains("response_format") || m.contains("json_schema") || m.contains("json mode") || m.contains("tool")
    }

    /// The provider's own error message, without anything that could be a credential.
    static func errorMessage(_ body: [UInt8]) -> String {
        let text = String(decoding: body.prefix(2000), as: UTF8.self)
        if let obj = try? JSONSerialization.jsonObject(with: Data(body)) as? [String: Any] {
            if let err = obj["error"] as? [String: Any] {
                let msg = err["message"] as? String ?? ""
                let code = (err["code"] as? String) ?? (err["type"] as? String) ?? ""
                return Redact.secrets(code.isEmpty ? msg : "\(code): \(msg)")
            }
            if let msg = obj["message"] as? String { return Redact.secrets(msg) }
        }
        return Redact.secrets(text.isEmpty ? "(empty body)" : text)
    }

    /// The request's wire form. The body is written directly, in a fixed field order, so that a
    /// retry sends the very same bytes; the output schema is prepared once per distinct schema.
    func build(_ r: ChatRequest, mode: OutputMode) throws -> HTTPRequest {
        try build(r, mode: mode, endpoint: pool[0])
    }

    /// The same, for one endpoint of the pool (its URL and key).
    func build(_ r: ChatRequest, mode: OutputMode, endpoint: ProviderConfig.Endpoint) throws -> HTTPRequest {
        let apiKey = endpoint.apiKey
        let base = endpoint.baseURL.hasSuffix("/") ? String(endpoint.baseURL.dropLast()) : endpoint.baseURL
        var headers = ["Content-Type: application/json"]
        let schema = try r.jsonSchema.map(preparedSchema)
        var body = JSONText.Object()
        body.add("model", string: r.model)
        body.add("max_tokens", raw: String(r.maxTokens))
        let url: String
        switch config.kind {
        case .openai:
            url = base + "/chat/completions"
            if !apiKey.isEmpty { headers.append("Authorization: Bearer \(apiKey)") }
            // The provider's sampling settings win over the request's (one key each: a body with a
            // key twice is read differently by different servers).
            if config.sampling["temperature"] == nil { body.add("temperature", number: r.temperature) }
            for (k, v) in sampling { body.add(k, number: v) }
            var system = r.system
            if let schema, mode == .jsonSchema {
                body.add("response_format", raw: #"{"type":"json_schema","json_schema":{"name":"# + JSONText.quote(r.schemaName)
                         + #","schema":"# + schema + #","strict":true}}"#)
            } else if mode == .jsonObject {
                body.add("response_format", raw: #"{"type":"json_object"}"#)
                if let s = r.jsonSchema { system += "\n\nAnswer with one JSON object that matches this JSON schema:\n\(s)" }
            } else if let s = r.jsonSchema {
                system += "\n\nAnswer with one JSON object that matches this JSON schema, and nothing else:\n\(s)"
            }
            body.add("messages", raw: #"[{"role":"system","content":"# + JSONText.quote(system) + #"},{"role":"user","content":"#
                     + JSONText.quote(r.user) + "}]")
        case .anthropic:
            url = base + "/v1/messages"
            if !apiKey.isEmpty { headers.append("x-api-key: \(apiKey)") }
            headers.append("anthropic-version: 2023-06-01")
            if config.sampling["temperature"] == nil { body.add("temperature", number: min(1.0, r.temperature)) }
            for (k, v) in sampling { body.add(k, number: v) }
            var system = r.system
            if let schema, mode != .prompt {
                body.add("tools", raw: #"[{"name":"# + JSONText.quote(r.schemaName) + #","description":"Record the answer.","input_schema":"#
                         + schema + "}]")
                body.add("tool_choice", raw: #"{"type":"tool","name":"# + JSONText.quote(r.schemaName) + "}")
            } else if let s = r.jsonSchema {
                system += "\n\nAnswer with one JSON object that matches this JSON schema, and nothing else:\n\(s)"
            }
            body.add("system", string: system)
            body.add("messages", raw: #"[{"role":"user","content":"# + JSONText.quote(r.user) + "}]")
        }
        return HTTPRequest(url: url, headers: headers, body: body.bytes,
                           connectTimeout: .milliseconds(Int64(config.connectTimeoutSeconds * 1000)),
                           totalTimeout: .milliseconds(Int64(config.requestTimeoutSeconds * 1000)))
    }


    /// The output schema as sent: checked once, with string caps when configured, serialised once.
    private func preparedSchema(_ text: String) throws -> String {
        if let done = schemas.withLock({ $0[text] }) { return done }
        guard var object = try? JSONSerialization.jsonObject(with: Data(text.utf8)), object is [String: Any] else {
            throw ProviderError(kind: .fatal, provider: config.name, status: 0, message: "the output schema is not a JSON object")
        }
        if let limit = config.stringMaxLength {
            object = Self.capStrings(object, limit, min: config.stringMinLength ?? 1)
        } else {
            object = Self.dropOnePerItem(object)
        }
        let prepared = JSONText.write(object)
        schemas.withLock { $0[text] = prepared }
        return prepared
    }

    /// Marks an array whose items take one each of the values of the named property's enum.
    /// Only grammar-constrained servers are told (as a tuple); for the others it is dropped.
    public static let onePerItem = "x-one-per-item"

    static func dropOnePerItem(_ schema: Any) -> Any {
        if var obj = schema as? [String: Any] {
            obj.removeValue(forKey: onePerItem)
            for (k, v) in obj where v is [String: Any] || v is [Any] { obj[k] = dropOnePerItem(v) }
            return obj
        }
        if let arr = schema as? [Any] { return arr.map(dropOnePerItem) }
        return schema
    }

    /// For grammar-constrained servers: the schema with `maxLength` (and `minLength`, 1 unless
    /// given) on every free-text string, and wide-ranged numbers as integers.
    static func capStrings(_ schema: Any, _ limit: Int, min: Int = 1) -> Any {
        if var obj = schema as? [String: Any] {
            for (k, v) in obj where k == "properties" || k == "items" || v is [String: Any] || v is [Any] {
                obj[k] = capStrings(v, limit, min: min)
            }
            if obj["type"] as? String == "string", obj["enum"] == nil, obj["pattern"] == nil {
                if obj["maxLength"] == nil { obj["maxLength"] = limit }
                if obj["minLength"] == nil { obj["minLength"] = Swift.min(min, limit) }
            }
            // "x-one-per-item": "drive" on an array of n items whose `drive` has n allowed values
            // means one item per value. A grammar can hold a model to that as a tuple, each item
            // with its own value, in the order of the values.
            if let key = obj.removeValue(forKey: Self.onePerItem) as? String, var item = obj["items"] as? [String: Any],
               var props = item["properties"] as? [String: Any], let values = (props[key] as? [String: Any])?["enum"] as? [Any],
               obj["minItems"] as? Int == values.count, obj["maxItems"] as? Int == values.count {
                obj["prefixItems"] = values.map { value -> Any in
                    props[key] = ["enum": [value]]
                    item["properties"] = props
                    return item
                }
                obj.removeValue(forKey: "items")
            }
            // Grammar-constrained servers enforce the range of an integer but not of a number: a
            // score of 1 to 10 is asked for as an integer there, and a narrow range (a confidence
            // of 0 to 1) as one of 21 evenly spaced values, which the grammar enforces as an enum.
            if obj["type"] as? String == "number", obj["enum"] == nil {
                if let lo = obj["minimum"] as? Int, let hi = obj["maximum"] as? Int, hi - lo >= 2 {
                    obj["type"] = "integer"
                } else if let lo = obj["minimum"] as? Double, let hi = obj["maximum"] as? Double, hi > lo {
                    obj["enum"] = (0...20).map { step -> Double in ((lo + (hi - lo) * Double(step) / 20) * 1000).rounded() / 1000 }
                }
            }
            return obj
        }
        if let arr = schema as? [Any] { return arr.map { capStrings($0, limit, min: min) } }
        return schema
    }

    func parse(_ response: HTTPResponse, request: ChatRequest) throws -> ChatCompletion {
        try Self.parse(response, request: request, config: config)
    }

    /// A provider's answer (its wire format by `config.kind`) as a completion; UNUSABLE when it is
    /// not one. Static, so that the fuzz target reads answers as the client does.
    static func parse(_ response: HTTPResponse, request: ChatRequest, config: ProviderConfig) throws -> ChatCompletion {
        func unusable(_ why: String) -> ProviderError {
            ProviderError(kind: .unusable, provider: config.name, status: response.status, message: why)
        }
        // The project's own JSON reader: one pass, no Foundation objects (an answer is read for
        // every record, and this was a tenth of synthd's CPU through JSONSerialization).
        guard let obj = JSONValue.parse(response.body), case .object = obj else {
            throw unusable("the answer is not JSON")
        }
        func count(_ v: JSONValue?) -> Int {
            switch v {
            case .int(let i)?: return Int(clamping: i)
            case .number(let d)? where d.isFinite && d == d.rounded() && abs(d) < 1e15: return Int(d)
            default: return 0
            }
        }
        var content = ""
        var object: JSONValue?
        var finish = ""
        var promptTokens = 0, completionTokens = 0
        let model = obj["model"]?.stringValue ?? request.model
        switch config.kind {
        case .openai:
            guard case .array(let choices)? = obj["choices"], let choice = choices.first, let message = choice["message"],
                  case .object = message else {
                throw unusable("the answer has no choices[0].message")
            }
            finish = choice["finish_reason"]?.stringValue ?? ""
            if let refusal = message["refusal"]?.stringValue, !refusal.isEmpty {
                content = ""
                finish = "refusal"
            } else {
                content = message["content"]?.stringValue ?? ""
            }
            promptTokens = count(obj["usage"]?["prompt_tokens"])
            completionTokens = count(obj["usage"]?["completion_tokens"])
        case .anthropic:
            var blocks: [JSONValue] = []
            if case .array(let b)? = obj["content"] { blocks = b }
            if let tool = blocks.first(where: { $0["type"]?.stringValue == "tool_use" }), let input = tool["input"], case .object = input {
                content = String(decoding: input.serialized(), as: UTF8.self)
                object = input
            } else {
                content = blocks.compactMap { $0["type"]?.stringValue == "text" ? $0["text"]?.stringValue : nil }.joined()
            }
            finish = obj["stop_reason"]?.stringValue ?? ""
            if finish == "max_tokens" { finish = "length" }
            promptTokens = count(obj["usage"]?["input_tokens"])
            completionTokens = count(obj["usage"]?["output_tokens"])
        }
        let price = config.pricesPerMillion[model] ?? config.pricesPerMillion[request.model] ?? config.pricesPerMillion["*"]
        let cost = price.map { (Double(promptTokens) * $0.prompt + Double(completionTokens) * $0.completion) / 1_000_000 } ?? 0
        if object == nil, let (text, value) = JSONRepair.extract(content) {
            content = text
            object = value
        }
        return ChatCompletion(content: content, finishReason: finish, promptTokens: promptTokens, completionTokens: completionTokens,
                              model: model, costUSD: cost, attempts: 1, object: object)
    }
}

/// Removes what looks like a credential from text that may be shown to a user.
public enum Redact {
    public static func secrets(_ text: String) -> String {
        var out = text
        for pattern in [#"sk-[A-Za-z0-9_\-]{8,}"#, #"sk_live_[A-Za-z0-9]{8,}"#, #"sk-ant-[A-Za-z0-9_\-]{8,}"#, #"(?i)bearer\s+[A-Za-z0-9._\-]{8,}"#] {
            out = out.replacingOccurrences(of: pattern, with: "[redacted]", options: .regularExpression)
        }
        return out
    }
}

/// Tolerant extraction of one JSON object from model text: code fences, chatter around it.
public enum JSONRepair {
    /// The first balanced `{...}` in `text` that parses as JSON, or nil. Each `{` is a start to try,
    /// and each try reads on from it: on text of many `{` that never close (what a model gone wrong
    /// can send) that is quadratic, so the bytes read and parsed in all tries are bounded by a
    /// multiple of the text's length; past it there is no object.
    public static func extractObject(_ text: String) -> String? {
        extract(text)?.text
    }

    /// The same, with the object as read.
    public static func extract(_ text: String) -> (text: String, object: JSONValue)? {
        let bytes = Array(text.utf8)
        // The usual answer: one object and nothing else, which reads once.
        if bytes.first == UInt8(ascii: "{"), bytes.last == UInt8(ascii: "}"), let v = JSONValue.parse(bytes), case .object = v {
            return (text, v)
        }
        var start = 0
        var budget = 8 * bytes.count + 65536
        while let open = bytes[start...].firstIndex(of: UInt8(ascii: "{")) {
            var depth = 0, inString = false, escaped = false
            for i in open..<bytes.count {
                budget -= 1
                if budget < 0 { return nil }
                let c = bytes[i]
                if inString {
                    if escaped { escaped = false } else if c == UInt8(ascii: "\\") { escaped = true } else if c == UInt8(ascii: "\"") { inString = false }
                    continue
                }
                if c == UInt8(ascii: "\"") { inString = true } else if c == UInt8(ascii: "{") { depth += 1 } else if c == UInt8(ascii: "}") {
                    depth -= 1
                    if depth == 0 {
                        let candidate = Array(bytes[open...i])
                        budget -= candidate.count
                        if budget < 0 { return nil }
                        if let v = JSONValue.parse(candidate), case .object = v {
                            return (String(decoding: candidate, as: UTF8.self), v)
                        }
                        break
                    }
                }
            }
            start = open + 1
        }
        return nil
    }
}

/// With SYNTHD_REQUEST_LOG=FILE in the environment, every request body sent to a provider is
/// appended to FILE, one JSON document per line (bodies only: headers, and so keys, never). For
/// replaying a job's exact requests straight at a provider (tools/bench-local) and for debugging
/// prompts.
final class RequestLog: Sendable {
    static let shared: RequestLog? = ProcessInfo.processInfo.environment["SYNTHD_REQUEST_LOG"].flatMap { RequestLog(path: $0) }

    private let handle: Locked<FileHandle>

    init?(path: String) {
        guard !path.isEmpty, FileManager.default.createFile(atPath: path, contents: nil, attributes: [.posixPermissions: 0o600]),
              let h = FileHandle(forWritingAtPath: path) else { return nil }
        handle = Locked(h)
    }

    func append(_ body: [UInt8]) {
        var line = body.filter { $0 != 0x0A }
        line.append(0x0A)
        handle.withLock { $0.write(Data(line)) }
    }
}
