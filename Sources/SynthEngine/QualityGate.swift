import Foundation
import Logging
import SynthConcurrency
import SynthLLM
import SynthProto
import SynthQuality
import SynthSpec
import SynthStore
import Synchronization

/// What the quality gate adds to an accepted record.
struct QualityExtras: Sendable {
    /// The judge's scores, for `provenance.quality` (verified jobs).
    var judge: [(String, JSONValue)]?
    var overall: Double?
    /// `llm_assessed` metadata values by field name.
    var assessed: [String: Double] = [:]
    /// Soft invariant rules the record broke, by rule text.
    var softFlags: [String] = []
    /// The invariant checker gave no answer, so the record passed unchecked (fail-open).
    var invariantCheckFailed = false
    /// The model that scored a preference pair's responses (the critic's, as it reported itself),
    /// for `provenance.scored_by`.
    var scoredBy: String?
}

/// The gate's answer for one generated record.
enum Verdict: Sendable {
    /// The record's fields as they ship (a preference pair's scores and reasoning are the
    /// critic's), and what the gate adds.
    case accept([(String, JSONValue)], QualityExtras)
    case reject(Rejection, FormatProblem?)
}

/// Runs the quality checks of one job on each generated record, in order of cost: format,
/// preference, a first near-duplicate look, the judge, the invariant check, and finally admission
/// to the near-duplicate index (under its lock, so that two similar records in flight at once
/// cannot both get in). The near-duplicate steps run on the compute lane's threads, never on
/// the cooperative pool's.
final class QualityGate: Sendable {
    let request: PBJobRequest
    let format: FormatChecker
    let critic: (any ChatModel)?
    let criticModel: String
    /// Whose critic calls these are: the scheduler counts them in the job's requests in flight,
    /// as it does generation requests. Nil: the critic schedules them alone.
    let requester: Requester?
    let logger: Logger
    let jobID: String
    /// Whole records, and the prompt side alone: a repeated question is a repeated example even
    /// with a new answer, and it would leak across splits.
    private struct Indexes {
        let records = NearDuplicateIndex()
        let prompts = NearDuplicateIndex()

        func duplicate(_ full: String, _ prompt: String) -> Bool {
            records.duplicate(of: full) != nil || prompts.duplicate(of: prompt) != nil
        }
    }

    private let indexes = Locked(Indexes())
    /// The accepted records of the jobs named in `advanced.dedup_against`: a new record near one
    /// of them is turned away as it would be near one of this job's own. Filled before the job's
    /// first check; never added to.
    private let reference = Locked<Indexes?>(nil)

    /// Adds the records of a job named in `dedup_against`. Call it on a lane, before any check.
    func addReference(_ texts: [RecordText]) {
        reference.withLock { ref in
            if ref == nil { ref = Indexes() }
            for text in texts {
                ref!.records.insert(text.fullText)
                ref!.prompts.insert(text.promptText)
            }
        }
    }

    /// Whether the text is a near-duplicate of this job's records or of the referenced jobs'.
    private func duplicate(_ full: String, _ prompt: String) -> Bool {
        if reference.withLock({ $0?.duplicate(full, prompt) ?? false }) { return true }
        return indexes.withLock { $0.duplicate(full, prompt) }
    }

    /// The judge's pass mark (the documentation's 6.0).
    static let judgePassMark = 6.0
    /// The critic's sampling: deterministic, with an answer budget per kind of call.
    static let criticTemperature = 0.0
    static let criticMaxTokens = ["judge": 300, "preference_scores": 300, "invariants": 400]

    init(request: PBJobRequest, system: [String], critic: (any ChatModel)?, criticModel: String, requester: Requester? = nil, jobID: String,
         logger: Logger) {
        self.request = request
        let bounds = PromptBuilder.lengthBounds(request)
        format = FormatChecker(instructions: system, minTokens: bounds?.0.map(Int.init), maxTokens: bounds?.1.map(Int.init))
        self.critic = critic
        self.criticModel = criticModel
        self.requester = requester
        self.jobID = jobID
        self.logger = logger
    }

    var assessedFields: [PBMetadataField] { request.advanced.metadataFields.filter { $0.type == "llm_assessed" } }
    var needsJudge: Bool { request.verified || !assessedFields.isEmpty }

    /// Adds accepted records of an earlier run (a resumed job rebuilds its index this way). Call
    /// it on a lane, not the cooperative pool.
    func restore(_ texts: [RecordText]) {
        indexes.withLock {
            for text in texts {
                $0.records.insert(text.fullText)
                $0.prompts.insert(text.promptText)
            }
        }
    }

    func check(_ generated: [(String, JSONValue)], usage: (ChatCompletion, String) -> Void) async throws -> Verdict {
        var content = generated
        let text = RecordText.of(request.schema, content)
        if let problem = format.check(text) { return .reject(.formatInvalid, problem) }
        let preference = request.schema == "preference_v1"
        if preference, PreferenceCheck.tooSimilar(chosen: text.responses[0].text, rejected: text.responses[1].text) {
            return .reject(.tooSimilar, nil)
        }
        let full = text.fullText, prompt = text.promptText
        // A first near-duplicate look saves the critic's calls on a record that would be turned
        // away anyway; with no critic to ask, the admission below is the one look it needs.
        let asksCritic = needsJudge || !request.advanced.invariants.isEmpty || (preference && critic != nil)
        if asksCritic, await BlockingLane.compute.run({ self.duplicate(full, prompt) }) {
            return .reject(.nearDuplicate, nil)
        }

        var extras = QualityExtras()
        if preference {
            // "Both responses are scored by a critic pass": the critic's scores and reasoning
            // replace the generator's. Only with no critic at all (an offline check) do the
            // generator's own scores stand.
            if critic != nil {
                guard let scored = try await scorePair(content, usage: usage) else { return .reject(.judgeRejected, nil) }
                content.set("chosen_score", .number(scored.chosen))
                content.set("rejected_score", .number(scored.rejected))
                content.set("reasoning", .string(scored.reasoning))
                extras.scoredBy = scored.model
            }
            if content.double("chosen_score") - content.double("rejected_score") < PreferenceCheck.minimumMargin {
                return .reject(.lowMargin, nil)
            }
        }
        if needsJudge {
            guard let verdict = try await judge(content, usage: usage) else { return .reject(.judgeRejected, nil) }
            extras.judge = verdict.scores
            extras.overall = verdict.overall
            extras.assessed = verdict.assessed
            if request.verified, verdict.overall < Self.judgePassMark { return .reject(.judgeRejected, nil) }
        }
        if !request.advanced.invariants.isEmpty {
            switch try await invariants(content, usage: usage) {
            case .strict: return .reject(.invariantViolated, nil)
            case .soft(let rules): extras.softFlags = rules
            case .clean: break
            case .checkerFailed: extras.invariantCheckFailed = true
            }
        }
        let admitted = await BlockingLane.compute.run {
            if self.reference.withLock({ $0?.duplicate(full, prompt) ?? false }) { return false }
            return self.indexes.withLock { indexes -> Bool in
                if indexes.duplicate(full, prompt) { return false }
                indexes.records.insert(full)
                indexes.prompts.insert(prompt)
                return true
            }
        }
        return admitted ? .accept(content, extras) : .reject(.nearDuplicate, nil)
    }

    // MARK: - the critic

    struct JudgeVerdict {
        var scores: [(String, JSONValue)]
        var overall: Double
        var assessed: [String: Double]
    }

    /// The card every critic call starts with, then the record as JSON.
    func card(_ kind: String, _ lines: [String], _ content: [(String, JSONValue)]) -> String {
        (["SCHEMA: \(kind)", "DOMAIN: \(request.domain)", "RECORD SCHEMA: \(request.schema)"] + lines
            + ["RECORD:", String(decoding: JSONValue.object(content).serialized(), as: UTF8.self)]).joined(separator: "\n")
    }

    /// One critic call, scheduled as one of the job's requests.
    private func ask(_ critic: any ChatModel, _ chat: ChatRequest) async throws -> ChatCompletion {
        if let requester { return try await critic.complete(chat, for: requester) }
        let scheduler = RequestScheduler()
        let pool = scheduler.addPool("critic", endpoints: critic.endpoints)
        let ticket = scheduler.join(org: "", limit: Int.max)
        defer { scheduler.leave(ticket) }
        return try await critic.complete(chat, for: Requester(scheduler: scheduler, ticket: ticket, pool: pool))
    }

    /// The request for one critic call of `kind` (judge, preference_scores, invariants): its
    /// prompt file and answer schema, the card's extra lines and the record shown.
    func criticRequest(_ kind: String, _ lines: [String], _ content: [(String, JSONValue)]) -> ChatRequest {
        ChatRequest(model: criticModel, system: PromptFiles.text(kind), user: card(kind, lines, content),
                    jsonSchema: PromptFiles.text("\(kind).schema"), schemaName: kind, maxTokens: Self.criticMaxTokens[kind] ?? 300,
                    temperature: Self.criticTemperature, stage: kind)
    }

    /// One critic call whose failure counts against the record: nil (logged) when the critic gave
    /// no answer; a fatal provider error still ends the job. Its usage is counted.
    func critique(_ kind: String, _ lines: [String], _ content: [(String, JSONValue)],
                  usage: (ChatCompletion, String) -> Void) async throws -> ChatCompletion? {
        guard let critic else { return nil }
        let answer: ChatCompletion
        do {
            answer = try await ask(critic, criticRequest(kind, lines, content))
        } catch let e as ProviderError where e.kind != .fatal && e.kind != .capped {
            logger.warning("the critic gave no answer", metadata: ["job": "\(jobID)", "call": "\(kind)", "error": "\(e.description)"])
            return nil
        }
        usage(answer, kind)
        return answer
    }

    /// The judge's scores, or nil when it gave no usable answer.
    func judge(_ content: [(String, JSONValue)], usage: (ChatCompletion, String) -> Void) async throws -> JudgeVerdict? {
        let lines = assessedFields.map { f in "ASSESS: \(f.name)" + (f.description_p.isEmpty ? "" : " - \(f.description_p)") }
        guard let answer = try await critique("judge", lines, content, usage: usage) else { return nil }
        guard let obj = JSONValue.parse(Array(answer.content.utf8)) else { return nil }
        var scores: [(String, JSONValue)] = []
        for k in ["relevance", "accuracy", "completeness", "overall"] {
            guard let v = obj[k]?.doubleValue, (0...10).contains(v) else { return nil }
            scores.append((k, .number(v)))
        }
        var assessed: [String: Double] = [:]
        for f in assessedFields {
            if let v = obj["assessments"]?[f.name]?.doubleValue, (0...10).contains(v) { assessed[f.name] = v }
        }
        scores.append(("judge_model", .string(answer.model)))
        return JudgeVerdict(scores: scores, overall: obj["overall"]?.doubleValue ?? 0, assessed: assessed)
    }

    struct PairScores {
        var chosen: Double
        var rejected: Double
        var reasoning: String
        var model: String
    }

    /// The critic's scores of a preference pair's two responses, from the prompt and the two
    /// responses alone (the generator's own scores are not shown to it); nil when it gave no
    /// usable answer.
    func scorePair(_ content: [(String, JSONValue)], usage: (ChatCompletion, String) -> Void) async throws -> PairScores? {
        let shown = content.filter { ["prompt", "chosen", "rejected"].contains($0.0) }
        guard let answer = try await critique("preference_scores", [], shown, usage: usage) else { return nil }
        guard let obj = JSONValue.parse(Array(answer.content.utf8)),
              let chosen = obj["chosen_score"]?.doubleValue, (1...10).contains(chosen),
              let rejected = obj["rejected_score"]?.doubleValue, (1...10).contains(rejected),
              let reasoning = obj["reasoning"]?.stringValue, !reasoning.isEmpty else { return nil }
        return PairScores(chosen: chosen, rejected: rejected, reasoning: String(reasoning.prefix(4000)), model: answer.model)
    }

    enum InvariantResult {
        case clean, strict, soft([String]), checkerFailed
    }

    func invariants(_ content: [(String, JSONValue)], usage: (ChatCompletion, String) -> Void) async throws -> InvariantResult {
        guard let critic else { return .checkerFailed }
        let rules = request.advanced.invariants
        let lines = rules.enumerated().map { "RULE \($0.offset): \($0.element.rule)" }
        let chat = criticRequest("invariants", lines, content)
        let answer: ChatCompletion
        do {
            answer = try await ask(critic, chat)
        } catch let e as ProviderError where e.kind != .capped {
            logger.warning("invariant check failed; the record passes", metadata: ["job": "\(jobID)", "error": "\(e.description)"])
            return .checkerFailed
        }
        usage(answer, "invariants")
        guard let obj = JSONValue.parse(Array(answer.content.utf8)), case .array(let violations)? = obj["violations"] else {
            return .checkerFailed
        }
        var soft: [String] = []
        for v in violations {
            guard let i = v["rule_index"]?.doubleValue.map(Int.init), rules.indices.contains(i) else { continue }
            if rules[i].enforcement == "soft" {
                if !soft.contains(rules[i].rule) { soft.append(rules[i].rule) }
            } else {
                return .strict
            }
        }
        return soft.isEmpty ? .clean : .soft(soft)
    }
}

extension RecordText {
    /// A record's text fields in their roles, from its schema fields (the `data` of conflict_v1).
    static func of(_ schema: String, _ content: [(String, JSONValue)]) -> RecordText {
        func s(_ k: String) -> String { content.first { $0.0 == k }?.1.stringValue ?? "" }
        switch schema {
        case "preference_v1":
            return RecordText(prompts: [("prompt", s("prompt"))], responses: [("chosen", s("chosen")), ("rejected", s("rejected"))])
        case "eval_v1":
            return RecordText(prompts: [("input", s("input"))], responses: [("ideal_output", s("ideal_output"))])
        case "conflict_v1":
            var responses: [(name: String, text: String)] = []
            if case .array(let items)? = content.first(where: { $0.0 == "responses" })?.1 {
                for (i, r) in items.enumerated() { responses.append(("responses[\(i)].output", r["output"]?.stringValue ?? "")) }
            }
            return RecordText(prompts: [("input", s("input"))], responses: responses)
        default:
            return RecordText(prompts: [("instruction", s("instruction")), ("input", s("input"))], responses: [("output", s("output"))])
        }
    }

    /// The same from a stored record's JSON line.
    public static func of(_ schema: String, storedJSON: [UInt8]) -> RecordText? {
        guard let obj = JSONValue.parse(storedJSON) else { return nil }
        let fields = schema == "conflict_v1" ? obj["data"] : obj
        guard case .object(let pairs)? = fields else { return nil }
        return of(schema, pairs)
    }
}

extension Array where Element == (String, JSONValue) {
    func double(_ key: String) -> Double { first { $0.0 == key }?.1.doubleValue ?? 0 }

    /// Replaces a key's value where it stands, or appends it.
    mutating func set(_ key: String, _ value: JSONValue) {
        if let i = firstIndex(where: { $0.0 == key }) { self[i].1 = value } else { append((key, value)) }
    }
}
