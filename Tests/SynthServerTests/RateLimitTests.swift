import Foundation
import Logging
import Testing
@testable import SynthLLM

@Suite struct RateLimitHeaderTests {
    @Test func openAIDurations() {
        #expect(RateLimitHeaders.duration("850ms") == .milliseconds(850))
        #expect(RateLimitHeaders.duration("1s") == .seconds(1))
        #expect(RateLimitHeaders.duration("12.5s") == .milliseconds(12_500))
        #expect(RateLimitHeaders.duration("1m0s") == .seconds(60))
        #expect(RateLimitHeaders.duration("6m30.25s") == .milliseconds(390_250))
        #expect(RateLimitHeaders.duration("1h2m3s") == .seconds(3600))  // clamped to an hour
        for bad in ["", "abc", "12", "1x", "s", "1.2.3s", "-1s"] {
            #expect(RateLimitHeaders.duration(bad) == nil, "\(bad)")
        }
    }

    @Test func openAIHeaders() throws {
        let h = ["x-ratelimit-limit-requests": "500", "x-ratelimit-remaining-requests": "499", "x-ratelimit-reset-requests": "120ms",
                 "x-ratelimit-limit-tokens": "30000", "x-ratelimit-remaining-tokens": "29000", "x-ratelimit-reset-tokens": "2s"]
        let r = try #require(RateLimitHeaders.parse(h))
        #expect(r.requests == .init(limit: 500, remaining: 499, resetIn: .milliseconds(120)))
        #expect(r.tokens == .init(limit: 30000, remaining: 29000, resetIn: .seconds(2)))
        #expect(RateLimitHeaders.parse(["content-type": "application/json"]) == nil)
        #expect(RateLimitHeaders.parse(["x-ratelimit-remaining-requests": "nan"]) == nil)
    }

    @Test func anthropicHeaders() throws {
        let now = Date(timeIntervalSince1970: 1_800_000_000)
        let f = ISO8601DateFormatter()
        let h = ["anthropic-ratelimit-requests-limit": "50", "anthropic-ratelimit-requests-remaining": "0",
                 "anthropic-ratelimit-requests-reset": f.string(from: now.addingTimeInterval(3)),
                 "anthropic-ratelimit-tokens-limit": "40000", "anthropic-ratelimit-tokens-remaining": "100"]
        let r = try #require(RateLimitHeaders.parse(h, now: now))
        // Whole-second times are counted to the end of their second.
        #expect(r.requests == .init(limit: 50, remaining: 0, resetIn: .seconds(4)))
        #expect(r.tokens == .init(limit: 40000, remaining: 100, resetIn: nil))
    }

    @Test func configuredLimitPacesRequests() {
        let limiter = RateLimiter(requestsPerMinute: 600, tokensPerMinute: nil)  // 10 a second, a burst of 10
        let waits = (0..<30).map { _ in limiter.reserve(tokens: 100) }
        #expect(waits.prefix(10).allSatisfy { $0 < .milliseconds(50) })
        // The 30th waits for 20 more at 10 a second.
        #expect(waits[29] > .milliseconds(1_900) && waits[29] < .milliseconds(2_200))
        #expect(zip(waits, waits.dropFirst()).allSatisfy { $0 <= $1 })
    }

    @Test func tokenLimitSettlesOnRealUsage() {
        let limiter = RateLimiter(requestsPerMinute: nil, tokensPerMinute: 6000)  // 100 a second
        #expect(limiter.reserve(tokens: 100) < .milliseconds(10))
        #expect(limiter.reserve(tokens: 100) > .milliseconds(900))        // in debt by 100
        limiter.settle(estimated: 100, actual: 0)                           // the second used nothing
        #expect(limiter.reserve(tokens: 50) < .milliseconds(600))
    }

    @Test func reportedWindowHoldsRequestsUntilReset() {
        let limiter = RateLimiter(requestsPerMinute: nil, tokensPerMinute: nil, resetMargin: .milliseconds(100))
        #expect(limiter.reserve(tokens: 10) == .zero)
        limiter.observe(headers: ["x-ratelimit-limit-requests": "3", "x-ratelimit-remaining-requests": "2",
                                  "x-ratelimit-reset-requests": "1s"], inFlight: 0)
        #expect(limiter.reserve(tokens: 10) == .zero)
        #expect(limiter.reserve(tokens: 10) == .zero)
        let wait = limiter.reserve(tokens: 10)
        #expect(wait > .milliseconds(1_000) && wait < .milliseconds(1_200))
    }
}

/// One HTTP engine (one curl thread) for the tests that only need a client.
let sharedTestEngine = HTTPEngine()

/// The limits against the fake provider over real HTTP.
@Suite(.serialized) struct RateLimitProviderTests {
    func client(_ fake: FakeProvider, rpm: Int? = nil, kind: ProviderConfig.Kind = .openai) -> LLMClient {
        let base = kind == .openai ? "http://127.0.0.1:\(fake.port)/v1" : "http://127.0.0.1:\(fake.port)"
        let config = ProviderConfig(name: "fake", kind: kind, baseURL: base, apiKey: "k", maxInFlight: 4, maxRetries: 6,
                                    requestTimeoutSeconds: 20, requestsPerMinute: rpm)
        return LLMClient(config: config, engine: sharedTestEngine, logger: Logger(label: "test"))
    }

    func run(_ client: LLMClient, _ n: Int) async throws {
        try await withThrowingTaskGroup(of: Void.self) { g in
            for i in 0..<n {
                g.addTask {
                    _ = try await client.complete(ChatRequest(model: "m", system: "SCHEMA: instruction_v1", user: "request \(i)",
                                                              jsonSchema: nil, maxTokens: 400))
                }
            }
            try await g.waitForAll()
        }
    }

    func log(_ fake: FakeProvider) throws -> [[String: Any]] {
        try fake.stats()["log"] as? [[String: Any]] ?? []
    }

    @Test func configuredRequestsPerMinuteIsNeverExceeded() async throws {
        let fake = try await FakeProvider.start([])
        defer { fake.stop() }
        try await run(client(fake, rpm: 600), 40)
        let starts = try log(fake).compactMap { $0["t"] as? Double }.sorted()
        #expect(starts.count == 40)
        // 10 a second with a burst of 10: the limiter sends at most 10 + 10·w requests in any
        // window of w seconds. These are arrival times at the provider, so a send delayed in
        // transit (a loaded machine, the fake's own scheduling) can land in a later window: allow
        // up to 0.3 s of transit delay, 3 more requests (0.2 s was once exceeded by one request
        // while the whole suite ran on 2 cores). Without the limiter the 40 would arrive within a
        // fraction of a second, far above any of these bounds.
        let transitAllowance = 0.3
        for window in [0.5, 1.0, 2.0] {
            let bound = Int((10 + 10 * (window + transitAllowance)).rounded(.down))
            for (i, t) in starts.enumerated() {
                let inWindow = starts[i...].prefix { $0 < t + window }.count
                #expect(inWindow <= bound, "\(inWindow) requests within \(window) s from \(t); at most \(bound)")
            }
        }
        // The 30 beyond the burst are paced at 10 a second.
        #expect(starts.last! - starts.first! >= 2.8)
    }

    @Test(arguments: [ProviderConfig.Kind.openai, .anthropic])
    func reportedLimitsAvoid429s(kind: ProviderConfig.Kind) async throws {
        // 8 requests per 2-second window, told only through the rate-limit headers.
        let fake = try await FakeProvider.start(["--rpm-limit", "8", "--rpm-window", "2"])
        defer { fake.stop() }
        let started = ContinuousClock.now
        try await run(client(fake, kind: kind), 24)
        let entries = try log(fake)
        let limited = entries.filter { $0["fault"] as? String == "rpm_limit" }.count
        #expect(entries.count - limited == 24)
        #expect(limited == 0, "\(limited) requests were refused with 429")
        #expect(ContinuousClock.now - started >= .seconds(4))
    }
}
