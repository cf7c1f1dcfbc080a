import Foundation
import SynthProto
import SynthQuality
import SynthSpec

/// Why a generated answer was not accepted, under the documentation's reason names.
public enum Rejection: String, Sendable, Error, CaseIterable {
    case formatInvalid = "format_invalid"
    case nearDuplicate = "near_duplicate"
    case lowMargin = "low_margin"
    case tooSimilar = "too_similar"
    case judgeRejected = "judge_rejected"
    case invariantViolated = "invariant_violated"
}

/// Reads a model's answer into the schema's fields, in the documented order. Empty texts pass
/// here; the format check rejects them as `empty`.
enum RecordShape {
    /// The schema's own fields of the record, or why they are unusable.
    /// `parsed`: `text` as already read, when it was.
    static func content(_ schema: String, _ text: String, parsed: JSONValue? = nil, finishReason: String, slot: Slot, axis: String,
                        drives: (String, String)?, resolutionMode: String) -> Result<[(String, JSONValue)], Rejection> {
        if finishReason == "length" || finishReason == "refusal" { return .failure(.formatInvalid) }
        guard let obj = parsed ?? JSONValue.parse(Array(text.utf8)) else { return .failure(.formatInvalid) }
        func str(_ k: String, allowEmpty: Bool = false) -> String? {
            guard let s = obj[k]?.stringValue.map(FastText.trimmed) else { return nil }
            return s.isEmpty && !allowEmpty ? nil : s
        }
        switch schema {
        case "instruction_v1":
            guard let instruction = str("instruction", allowEmpty: true), let output = str("output", allowEmpty: true) else { return .failure(.formatInvalid) }
            return .success([("instruction", .string(instruction)), ("input", .string(str("input", allowEmpty: true) ?? "")), ("output", .string(output))])
        case "preference_v1":
            guard let prompt = str("prompt", allowEmpty: true), let chosen = str("chosen", allowEmpty: true),
                  let rejected = str("rejected", allowEmpty: true),
                  let cs = obj["chosen_score"]?.doubleValue, let rs = obj["rejected_score"]?.doubleValue,
                  (0...10).contains(cs), (0...10).contains(rs), let reasoning = str("reasoning")
            else { return .failure(.formatInvalid) }
            return .success([("prompt", .string(prompt)), ("chosen", .string(chosen)), ("rejected", .string(rejected)),
                             ("chosen_score", .number(cs)), ("rejected_score", .number(rs)), ("reasoning", .string(reasoning))])
        case "eval_v1":
            guard let input = str("input", allowEmpty: true), let ideal = str("ideal_output", allowEmpty: true), case .array(let m)? = obj["metrics"] else { return .failure(.formatInvalid) }
            let metrics = m.compactMap(\.stringValue).filter { !$0.isEmpty }
            guard !metrics.isEmpty else { return .failure(.formatInvalid) }
            return .success([("input", .string(input)), ("ideal_output", .string(ideal)), ("metrics", .array(metrics.map { .string($0) }))])
        case "conflict_v1":
            guard let input = str("input", allowEmpty: true), case .array(let responses)? = obj["responses"], responses.count == 2 else { return .failure(.formatInvalid) }
            var outResponses: [JSONValue] = []
            for r in responses {
                guard let drive = r["drive"]?.stringValue, let output = r["output"]?.stringValue else { return .failure(.formatInvalid) }
                var viable = true
                if case .bool(let v)? = r["viable"] { viable = v }
                outResponses.append(.object([("drive", .string(drive)), ("output", .string(output)), ("viable", .bool(viable))]))
            }
            // The two responses argue the axis' two drives, one each.
            if let drives {
                let named = responses.compactMap { $0["drive"]?.stringValue }
                if Set(named) != Set([drives.0, drives.1]) || named.count != 2 || named[0] == named[1] { return .failure(.formatInvalid) }
            }
            var data: [(String, JSONValue)] = [("input", .string(input)), ("axis", .string(axis)),
                                               ("tension_type", .string(str("tension_type") ?? "\(axis)_tension")),
                                               ("responses", .array(outResponses))]
            if resolutionMode != "none" {
                guard let res = obj["resolution"], let preferred = res["preferred_drive"]?.stringValue, let losing = res["losing_drive"]?.stringValue,
                      let confidence = res["confidence"]?.doubleValue, (0...1).contains(confidence),
                      let reasoning = res["reasoning"]?.stringValue, !reasoning.isEmpty,
                      // annotated and graded resolutions say when the losing drive would win.
                      let override = res["override_condition"]?.stringValue.map(FastText.trimmed), !override.isEmpty
                else { return .failure(.formatInvalid) }
                if let drives, Set([preferred, losing]) != Set([drives.0, drives.1]) { return .failure(.formatInvalid) }
                var resolution: [(String, JSONValue)] = [("preferred_drive", .string(preferred)), ("losing_drive", .string(losing)),
                                                         ("confidence", .number(confidence)),
                                                         ("override_condition", .string(override)),
                                                         ("reasoning", .string(reasoning))]
                if resolutionMode == "graded" {
                    // Graded adds numeric scores: the winning drive's strength is the confidence.
                    resolution.append(("scores", .object([(preferred, .number((confidence * 100).rounded() / 100)),
                                                          (losing, .number(((1 - confidence) * 100).rounded() / 100))])))
                }
                data.append(("resolution", .object(resolution)))
            }
            return .success(data)
        default:
            return .failure(.formatInvalid)
        }
    }
}
