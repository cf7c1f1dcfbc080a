import Foundation
import Logging
import SynthProto
import SynthQuality
import SynthSpec

/// A job's automatic checks, run on records that did not come from a job: the format checks, the
/// preference checks and the near-duplicate check, with the same code and in the same order as a
/// job runs them. `synthd check` uses it on a JSONL file, and bench-local on the answers of its
/// direct calls, so that a record means the same thing on both sides.
///
/// The critic's checks (the judge of `verified` jobs and the invariants) need a model and are not
/// run here.
public final class OfflineCheck: Sendable {
    let request: PBJobRequest
    let plan: PBPlan
    let gate: QualityGate
    let drives: [String: (String, String)]

    /// What happened to one record.
    public struct Outcome: Sendable, Equatable {
        /// nil when the record was accepted.
        public var rejection: String?
        /// The format problem of a `format_invalid` rejection.
        public var detail: String?
    }

    /// `request` as a client would send it: it is validated, and its defaults are filled in.
    public convenience init(request: PBJobRequest) throws {
        try self.init(request: ParsedRequest(request))
    }

    /// A request read from JSON: its unknown fields and wrong types are refused with its rules.
    /// The documented tier map stands in for a server's config.
    public init(request parsed: ParsedRequest) throws {
        var catalog = EngineConfig.documented.catalog
        catalog.providers.insert("local")
        try Validator(catalog: catalog).validate(parsed)
        let request = parsed.request
        var effective = Planner.effective(request, catalog: catalog)
        // No critic here: nothing may wait for one.
        effective.verified = false
        effective.advanced.invariants = []
        effective.advanced.metadataFields.removeAll { $0.type == "llm_assessed" }
        self.request = effective
        plan = Planner.plan(effective)
        let prompts = PromptBuilder(request: effective, plan: plan)
        let first = Slot(index: 0, cell: 0, hardNegative: false)
        gate = QualityGate(request: effective, system: [prompts.system(for: first)], critic: nil, criticModel: "", jobID: "check",
                           logger: Logger(label: "synthd.check"))
        drives = prompts.drivesByAxis
    }

    /// Checks one record: a JSON object with the schema's fields (a model's answer, or a record
    /// as synthd writes it; other fields are ignored). An accepted record joins the set later
    /// records are compared with for near-duplicates.
    public func check(_ line: String) async throws -> Outcome {
        let bytes = Array(line.utf8)
        var text = line
        var axis = plan.cells.first?.axis ?? ""
        // A conflict record as synthd writes it keeps its fields under `data`, with its axis.
        if request.schema == "conflict_v1", let obj = JSONValue.parse(bytes) {
            let fields = obj["data"] ?? obj
            if let a = fields["axis"]?.stringValue, !a.isEmpty { axis = a }
            if obj["data"] != nil { text = String(decoding: fields.serialized(), as: UTF8.self) }
        }
        let slot = Slot(index: 0, cell: plan.cells.firstIndex { $0.axis == axis } ?? 0, hardNegative: false)
        switch RecordShape.content(request.schema, text, finishReason: "stop", slot: slot, axis: axis, drives: drives[axis],
                                   resolutionMode: request.conflictConfig.resolutionMode) {
        case .failure(let reason):
            return Outcome(rejection: reason.rawValue, detail: FormatProblem.unusable.rawValue)
        case .success(let content):
            switch try await gate.check(content, usage: { _, _ in }) {
            case .accept: return Outcome(rejection: nil, detail: nil)
            case .reject(let reason, let problem): return Outcome(rejection: reason.rawValue, detail: problem?.rawValue)
            }
        }
    }
}
