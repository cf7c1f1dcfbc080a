import Foundation
import SynthConcurrency
import SynthEngine
import SynthLLM

/// A stand-in for the external LLM, in process: it writes clean instruction_v1 records of its own
/// (distinct sentences from a small vocabulary, seeded by the request number), and a script
/// decides, request by request, whether to answer, wait, or fail as a provider would.
final class ScriptedModel: ChatModel {
    enum Step: Sendable {
        case answer
        case fail(ProviderError.Kind)
        /// A reply that is not a record (a model that talks instead of answering).
        case garbage
    }

    let maxInFlight: Int
    var endpoints: [RequestScheduler.EndpointSpec] { [RequestScheduler.EndpointSpec(label: "scripted", capacity: maxInFlight)] }
    let unavailableReason: String? = nil
    let latency: Duration
    private let script: @Sendable (Int) -> Step
    private let calls = Locked<(count: Int, at: [ContinuousClock.Instant])>((0, []))

    init(maxInFlight: Int = 16, latency: Duration = .zero, script: @escaping @Sendable (Int) -> Step = { _ in .answer }) {
        self.maxInFlight = maxInFlight
        self.latency = latency
        self.script = script
    }

    /// Requests made so far.
    var count: Int { calls.withLock { $0.count } }

    /// When each request came, in order.
    var times: [ContinuousClock.Instant] { calls.withLock { $0.at } }

    /// One answer, holding the scheduler's grant for it as a provider's request does.
    func complete(_ request: ChatRequest, for requester: Requester) async throws -> ChatCompletion {
        try await requester.withGrant { _ in try await self.answer(request) }
    }

    func answer(_ request: ChatRequest) async throws -> ChatCompletion {
        let n = calls.withLock { c in
            c.count += 1
            c.at.append(.now)
            return c.count
        }
        if latency > .zero { try await Task.sleep(for: latency) }
        switch script(n) {
        case .answer:
            return ChatCompletion(content: Self.record(n), promptTokens: 100, completionTokens: 80, model: "scripted")
        case .garbage:
            return ChatCompletion(content: "Sure! Here is what you asked for.", model: "scripted")
        case .fail(let kind):
            throw ProviderError(kind: kind, provider: "scripted", status: kind == .fatal ? 401 : kind == .unreachable ? 0 : 503,
                                message: "scripted failure at request \(n)")
        }
    }

    static let subjects = ["the invoice", "my account", "the billing page", "our team plan", "the export", "a refund", "the mobile app",
                           "two-factor sign-in", "the shared folder", "my subscription", "the weekly report", "a password reset",
                           "the admin console", "our storage quota", "the api token", "a seat upgrade", "the renewal date", "the trial"]
    static let verbs = ["change", "cancel", "move", "restore", "download", "update", "check", "share", "pause", "merge", "split", "renew"]
    static let details = ["after the last update", "before the end of the month", "without losing any data", "for a new colleague",
                          "on a phone", "from another country", "while travelling", "for the finance team", "during a migration",
                          "after a failed payment", "once the trial ends", "with a different card"]
    static let places = ["settings page", "billing tab", "admin console", "profile menu", "help centre", "mobile app", "team page", "order history"]
    static let syllables = ["ka", "lo", "mi", "ru", "te", "sa", "no", "vi", "pe", "do", "ra", "shi", "gu", "fe", "zo", "bel"]

    /// A clean record, different for every `n`: template sentences with many slots, and names made
    /// of syllables, so that two records rarely share most of their trigrams.
    static func record(_ n: Int) -> String {
        var rng = SplitMix64(seed: UInt64(n))
        func pick(_ a: [String]) -> String { a[Int(rng.next() % UInt64(a.count))] }
        func name() -> String {
            let s = (0..<3).map { _ in pick(syllables) }.joined()
            return s.prefix(1).uppercased() + s.dropFirst()
        }
        let workspace = name(), person = name()
        let instruction = "How do I \(pick(verbs)) \(pick(subjects)) in the \(workspace) workspace \(pick(details)), "
            + "and what happens to \(pick(subjects))?"
        var sentences: [String] = []
        for _ in 0..<4 {
            sentences.append("Open the \(pick(places)) of \(workspace), \(pick(verbs)) \(pick(subjects)) \(pick(details)), "
                             + "then \(pick(verbs)) \(pick(subjects)) so that \(person) sees it.")
        }
        let output = sentences.joined(separator: " ") + " Keep reference \(workspace.lowercased())-\(n) for \(person)."
        let obj = ["instruction": instruction, "input": "", "output": output]
        return String(decoding: try! JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys]), as: UTF8.self)
    }
}

