import Foundation
import SynthLLM
import SynthProto
import SynthSpec

/// The prompt files under Prompts/, loaded once.
enum PromptFiles {
    static let texts: [String: String] = {
        var out: [String: String] = [:]
        let names = ["system", "instruction_v1", "preference_v1", "eval_v1", "conflict_v1", "hard_negative", "user_instructions",
                     "instruction_v1.schema", "preference_v1.schema", "eval_v1.schema", "conflict_v1.schema",
                     "judge", "judge.schema", "invariants", "invariants.schema", "preference_scores", "preference_scores.schema"]
        for name in names {
            let ext = name.hasSuffix(".schema") ? "json" : "txt"
            if let url = Bundle.module.url(forResource: name, withExtension: ext, subdirectory: "Prompts"),
               let text = try? String(contentsOf: url, encoding: .utf8) {
                out[name] = text.trimmingCharacters(in: .whitespacesAndNewlines)
            }
        }
        return out
    }()

    static func text(_ name: String) -> String { texts[name] ?? "" }
}

/// Builds the system and user messages for one slot of a job.
public struct PromptBuilder: Sendable {
    let request: PBJobRequest
    let plan: PBPlan
    private let systemPlain: String
    private let systemHardNegative: String

    public init(request: PBJobRequest, plan: PBPlan) {
        self.request = request
        self.plan = plan
        systemPlain = Self.system(request, hardNegative: false)
        systemHardNegative = Self.system(request, hardNegative: true)
    }

    public var jsonSchema: String { PromptFiles.text("\(request.schema).schema") }

    /// The schema for one slot. For conflict_v1 the drive fields may only name the slot's two
    /// drives, which grammar-constrained servers then enforce token by token.
    public func jsonSchema(for slot: Slot) -> String {
        guard request.schema == Schema.conflict.rawValue, let pair = drivePair(axis: plan.cells[slot.cell].axis),
              var root = try? JSONSerialization.jsonObject(with: Data(jsonSchema.utf8)) as? [String: Any],
              var props = root["properties"] as? [String: Any],
              var responses = props["responses"] as? [String: Any], var item = responses["items"] as? [String: Any],
              var itemProps = item["properties"] as? [String: Any],
              var resolution = props["resolution"] as? [String: Any], var resProps = resolution["properties"] as? [String: Any]
        else { return jsonSchema }
        let drives: [String: Any] = ["type": "string", "enum": [pair.0.name, pair.1.name]]
        itemProps["drive"] = drives
        item["properties"] = itemProps
        responses["items"] = item
        responses[LLMClient.onePerItem] = "drive"
        props["axis"] = ["type": "string", "enum": [plan.cells[slot.cell].axis]]
        props["responses"] = responses
        resProps["preferred_drive"] = drives
        resProps["losing_drive"] = drives
        resolution["properties"] = resProps
        props["resolution"] = resolution
        root["properties"] = props
        return JSONText.write(root)
    }

    public func system(for slot: Slot) -> String {
        slot.hardNegative ? systemHardNegative : systemPlain
    }

    /// The system prompt: the format and safety rules, the schema's rules, the hard-negative rules
    /// when asked, the response policy and style rules, then the user's own instructions.
    static func system(_ request: PBJobRequest, hardNegative: Bool) -> String {
        var rules = [PromptFiles.text(request.schema)]
        if hardNegative { rules.append(PromptFiles.text("hard_negative")) }
        let a = request.advanced
        if !a.responsePolicy.isEmpty {
            rules.append("Response policy:\n" + a.responsePolicy.sorted { $0.key < $1.key }.map { "[\($0.key)] \($0.value)" }.joined(separator: "\n"))
        }
        if !a.styleRules.isEmpty {
            rules.append("Style rules:\n" + a.styleRules.map { "- \($0)" }.joined(separator: "\n"))
        }
        var text = PromptFiles.text("system").replacingOccurrences(of: "{{SCHEMA_RULES}}", with: rules.joined(separator: "\n\n"))
        if !request.systemPrompt.isEmpty {
            text += "\n\n" + PromptFiles.text("user_instructions").replacingOccurrences(of: "{{TEXT}}", with: request.systemPrompt)
        }
        return text
    }

    /// The task card: one labelled line per fact about this slot.
    public func user(for slot: Slot, variation: Int) -> String {
        let cell = plan.cells[slot.cell]
        var lines = ["SCHEMA: \(request.schema)", "DOMAIN: \(request.domain)"]
        if !cell.category.isEmpty {
            let desc = request.advanced.categories[cell.category]?.description_p ?? ""
            lines.append("CATEGORY: \(cell.category)" + (desc.isEmpty ? "" : " (\(desc))"))
        }
        if !cell.coverage.isEmpty {
            lines.append("COVERAGE: " + cell.coverage.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: "; "))
        }
        if !cell.axis.isEmpty, let pair = drivePair(axis: cell.axis) {
            lines.append("AXIS: \(cell.axis)")
            if let about = axisDescription(cell.axis), !about.isEmpty { lines.append("AXIS DESCRIPTION: \(Self.oneLine(about))") }
            lines.append("DRIVES: \(pair.0.name),\(pair.1.name)")
            for d in [pair.0, pair.1] where !d.description_p.isEmpty { lines.append("DRIVE \(d.name): \(Self.oneLine(d.description_p))") }
            if !request.conflictConfig.overrideVocabulary.isEmpty {
                lines.append("OVERRIDE LABELS: " + request.conflictConfig.overrideVocabulary.joined(separator: ", "))
            }
        }
        if let technique = slot.technique {
            lines.append("TECHNIQUE: \(technique) (\(techniqueDescription(technique)))")
        }
        let c = request.constraints
        if !c.language.isEmpty { lines.append("LANGUAGE: \(c.language)") }
        if !c.tone.isEmpty { lines.append("TONE: \(c.tone)") }
        if !c.difficulty.isEmpty { lines.append("DIFFICULTY: \(c.difficulty)") }
        if let (lo, hi) = lengthBounds() {
            switch (lo.map { $0 * 3 / 4 }, hi.map { $0 * 3 / 4 }) {
            case let (l?, h?): lines.append("LENGTH: responses of \(l) to \(h) words")
            case let (l?, nil): lines.append("LENGTH: responses of at least \(l) words")
            case let (nil, h?): lines.append("LENGTH: responses of at most \(h) words")
            case (nil, nil): break
            }
        }
        lines.append("VARIATION: \(variation)")
        return lines.joined(separator: "\n")
    }

    func lengthBounds() -> (Int64?, Int64?)? { Self.lengthBounds(request) }

    /// The response length bounds in tokens: `advanced.response_constraints`, else `constraints`.
    static func lengthBounds(_ request: PBJobRequest) -> (Int64?, Int64?)? {
        let rc = request.advanced.responseConstraints
        let c = request.constraints
        let lo = rc.hasMinTokens ? rc.minTokens.value : (c.hasMinTokens ? c.minTokens.value : nil)
        let hi = rc.hasMaxTokens ? rc.maxTokens.value : (c.hasMaxTokens ? c.maxTokens.value : nil)
        return lo == nil && hi == nil ? nil : (lo, hi)
    }

    /// Each conflict axis of the plan with the names of its two drives: how answers are read.
    var drivesByAxis: [String: (String, String)] {
        Dictionary(plan.cells.compactMap { cell in drivePair(axis: cell.axis).map { (cell.axis, ($0.0.name, $0.1.name)) } },
                   uniquingKeysWith: { a, _ in a })
    }

    /// A description may hold line breaks; on the task card it stays on its own line, so that it
    /// cannot pass for another of the card's labelled lines.
    static func oneLine(_ text: String) -> String {
        text.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }.joined(separator: " ")
    }

    /// The drive pair's own description of an axis.
    func axisDescription(_ axis: String) -> String? {
        let axes = Planner.axes(request.conflictConfig)
        guard let i = axes.firstIndex(of: axis) else { return nil }
        return request.conflictConfig.drivePairs[i].description_p
    }

    func drivePair(axis: String) -> (PBDrive, PBDrive)? {
        let axes = Planner.axes(request.conflictConfig)
        guard let i = axes.firstIndex(of: axis) else { return nil }
        let p = request.conflictConfig.drivePairs[i]
        if p.drives.count == 2 { return (p.drives[0], p.drives[1]) }
        var a = PBDrive(), b = PBDrive()
        a.name = p.a
        b.name = p.b
        return (a, b)
    }

    func techniqueDescription(_ name: String) -> String {
        if let d = Techniques.builtIn[name] { return d }
        for t in request.advanced.hardNegatives.techniques {
            if case .structValue(let s) = t.kind, s.fields["name"]?.stringValue == name {
                return s.fields["description"]?.stringValue ?? name
            }
        }
        return name
    }

    /// The token budget to ask the provider for.
    public var maxTokens: Int {
        let hi = lengthBounds()?.1 ?? 600
        let multiplier: Int64 = request.schema == "instruction_v1" || request.schema == "eval_v1" ? 2 : 4
        return Int(min(16_000, hi * multiplier + 400))
    }
}
