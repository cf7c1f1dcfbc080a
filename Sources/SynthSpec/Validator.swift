import SwiftProtobuf
import SynthProto

/// Checks a request against every documented rule and reports all violations at once.
public struct Validator: Sendable {
    public var maxCount: Int64
    public static let maxSystemPrompt = 4_000

    public init(maxCount: Int64 = 100_000) {
        self.maxCount = maxCount
    }

    /// Throws `SpecError(.validation)` listing every violation, or `.conflictingOptions` when
    /// categories and coverage are both given (the documentation's 400).
    public func validate(_ r: PBJobRequest) throws {
        if let advanced = r.hasAdvanced ? r.advanced : nil, !advanced.categories.isEmpty, advanced.hasCoverage {
            throw SpecError(.conflictingOptions, "advanced.categories and advanced.coverage are mutually exclusive: pass one or the other",
                            fieldErrors: [PBFieldError("advanced.coverage", "cannot be combined with advanced.categories", "both given")])
        }
        var errors: [PBFieldError] = []
        func fail(_ field: String, _ rule: String, _ value: String) { errors.append(PBFieldError(field, rule, value)) }

        let schema = Schema(rawValue: r.schema)
        if r.schema.isEmpty {
            fail("schema", "required", "")
        } else if schema == nil {
            fail("schema", "must be one of instruction_v1, preference_v1, eval_v1, conflict_v1", r.schema)
        }
        if r.domain.trimmingCharacters(in: .whitespaces).isEmpty {
            fail("domain", "required", r.domain)
        } else if r.domain.count > 500 {
            fail("domain", "at most 500 characters", "\(r.domain.count) characters")
        }
        if r.count <= 0 {
            fail("count", "must be a positive integer", "\(r.count)")
        } else if r.count > maxCount {
            fail("count", "at most \(maxCount) per job", "\(r.count)")
        }

        // The model: a tier shorthand or the verbose object, not neither.
        var tier: Tier?
        if !r.model.isEmpty {
            tier = Tier(shorthand: r.model)
            if tier == nil { fail("model", "must be fast, balanced, diverse or deep (or economy, standard, premium)", r.model) }
        }
        if r.hasModels {
            if !r.models.hasGenerator || r.models.generator.model.isEmpty {
                fail("models.generator.model", "required when models is given", "")
            }
            for (name, ref) in [("generator", r.models.generator), ("critic", r.models.critic)] where !ref.provider.isEmpty {
                if !["openai", "anthropic", "local"].contains(ref.provider) {
                    fail("models.\(name).provider", "must be openai, anthropic or local", ref.provider)
                }
            }
        } else if r.model.isEmpty {
            fail("model", "required unless models is given", "")
        }
        if let schema, let tier, tier < schema.minimumTier {
            fail("model", "\(schema.rawValue) needs balanced or higher", r.model)
        }
        if r.systemPrompt.count > Self.maxSystemPrompt {
            fail("system_prompt", "at most \(Self.maxSystemPrompt) characters", "\(r.systemPrompt.count) characters")
        }
        if r.hasConstraints {
            checkTokens("constraints", r.constraints.hasMinTokens ? r.constraints.minTokens.value : nil,
                        r.constraints.hasMaxTokens ? r.constraints.maxTokens.value : nil, fail)
        }
        if r.hasAdvanced { validateAdvanced(r.advanced, count: r.count, fail) }
        if schema == .conflict {
            if !r.hasConflictConfig {
                fail("conflict_config", "required for conflict_v1", "")
            } else {
                validateConflict(r.conflictConfig, fail)
            }
        } else if r.hasConflictConfig, schema != nil {
            fail("conflict_config", "only for conflict_v1", r.schema)
        }
        if !errors.isEmpty {
            throw SpecError(.validation, "the request has \(errors.count) invalid field\(errors.count == 1 ? "" : "s")", fieldErrors: errors)
        }
    }

    func checkTokens(_ path: String, _ min: Int64?, _ max: Int64?, _ fail: (String, String, String) -> Void) {
        for (name, v) in [("min_tokens", min), ("max_tokens", max)] {
            if let v, !(1...10_000).contains(v) { fail("\(path).\(name)", "must be between 1 and 10000", "\(v)") }
        }
        if let min, let max, min > max { fail("\(path).min_tokens", "must not be above max_tokens (\(max))", "\(min)") }
    }

    func validateAdvanced(_ a: PBAdvanced, count: Int64, _ fail: (String, String, String) -> Void) {
        if !a.categories.isEmpty {
            var sum = 0.0
            for (name, c) in a.categories.sorted(by: { $0.key < $1.key }) {
                if name.isEmpty { fail("advanced.categories", "category names must not be empty", "\"\"") }
                if !(c.percentage > 0 && c.percentage <= 100) {
                    fail("advanced.categories.\(name).percentage", "must be above 0 and at most 100", Self.number(c.percentage))
                }
                sum += c.percentage
            }
            if abs(sum - 100) > 1 { fail("advanced.categories", "percentages must sum to about 100 (99-101)", Self.number(sum)) }
        }
        if a.hasCoverage {
            let cov = a.coverage
            if !(1...5).contains(cov.dimensions.count) {
                fail("advanced.coverage.dimensions", "1 to 5 dimensions", "\(cov.dimensions.count)")
            }
            var names = Set<String>()
            for (i, d) in cov.dimensions.enumerated() {
                if d.name.isEmpty { fail("advanced.coverage.dimensions[\(i)].name", "required", "") }
                if !names.insert(d.name).inserted { fail("advanced.coverage.dimensions[\(i)].name", "dimension names must be unique", d.name) }
                if !(1...20).contains(d.values.count) {
                    fail("advanced.coverage.dimensions[\(i)].values", "1 to 20 values", "\(d.values.count)")
                }
                if Set(d.values).count != d.values.count {
                    fail("advanced.coverage.dimensions[\(i)].values", "values must be unique", d.values.joined(separator: ","))
                }
            }
            let mode = cov.mode.isEmpty ? "all_combinations" : cov.mode
            if !["all_combinations", "each_value"].contains(mode) {
                fail("advanced.coverage.mode", "must be all_combinations or each_value", cov.mode)
            }
            let cells = Planner.coverageCells(cov).count
            if mode == "all_combinations", cells > 100 {
                fail("advanced.coverage", "all_combinations makes at most 100 cells", "\(cells) cells")
            }
            let minPer = cov.hasMinPerCell ? cov.minPerCell.value : 1
            if minPer < 1 { fail("advanced.coverage.min_per_cell", "must be at least 1", "\(minPer)") }
            if count > 0, cells <= 100, minPer >= 1, minPer * Int64(cells) > count {
                fail("advanced.coverage.min_per_cell", "min_per_cell x cells (\(minPer) x \(cells)) must not exceed count", "\(count)")
            }
        }
        if !a.invariants.isEmpty || false {
            if a.invariants.count > 10 { fail("advanced.invariants", "1 to 10 rules", "\(a.invariants.count)") }
            for (i, inv) in a.invariants.enumerated() {
                if !(10...500).contains(inv.rule.count) {
                    fail("advanced.invariants[\(i)].rule", "10 to 500 characters", "\(inv.rule.count) characters")
                }
                if !["strict", "soft"].contains(inv.enforcement) {
                    fail("advanced.invariants[\(i)].enforcement", "must be strict or soft", inv.enforcement)
                }
            }
        }
        if a.hasHardNegatives {
            let hn = a.hardNegatives
            if hn.hasPercentage, !(1...100).contains(hn.percentage.value) {
                fail("advanced.hard_negatives.percentage", "must be between 1 and 100", Self.number(hn.percentage.value))
            }
            for (i, t) in hn.techniques.enumerated() {
                switch t.kind {
                case .stringValue(let name):
                    if !Techniques.builtIn.keys.contains(name) {
                        fail("advanced.hard_negatives.techniques[\(i)]", "unknown technique; use a built-in name or {name, description}", name)
                    }
                case .structValue(let s):
                    let name = s.fields["name"]?.stringValue ?? ""
                    let desc = s.fields["description"]?.stringValue ?? ""
                    if name.isEmpty { fail("advanced.hard_negatives.techniques[\(i)].name", "required", "") }
                    if desc.isEmpty { fail("advanced.hard_negatives.techniques[\(i)].description", "required for a custom technique", "") }
                    for key in s.fields.keys where key != "name" && key != "description" {
                        fail("advanced.hard_negatives.techniques[\(i)].\(key)", "unknown field", key)
                    }
                default:
                    fail("advanced.hard_negatives.techniques[\(i)]", "must be a technique name or {name, description}", "\(t)")
                }
            }
        }
        if !a.outputSplit.isEmpty {
            if !(2...5).contains(a.outputSplit.count) {
                fail("advanced.output_split", "2 to 5 named splits", "\(a.outputSplit.count)")
            }
            var sum = 0.0
            for (name, v) in a.outputSplit.sorted(by: { $0.key < $1.key }) {
                if v <= 0 || v != v.rounded() {
                    fail("advanced.output_split.\(name)", "must be a positive integer", Self.number(v))
                }
                if name.isEmpty || name.contains("/") || name.hasPrefix(".") {
                    fail("advanced.output_split", "split names must be plain file names", name)
                }
                sum += v
            }
            if sum != 100 { fail("advanced.output_split", "percentages must sum to exactly 100", Self.number(sum)) }
        }
        if a.hasResponseConstraints {
            let rc = a.responseConstraints
            checkTokens("advanced.response_constraints", rc.hasMinTokens ? rc.minTokens.value : nil, rc.hasMaxTokens ? rc.maxTokens.value : nil, fail)
        }
        var fieldNames = Set<String>()
        for (i, f) in a.metadataFields.enumerated() {
            let path = "advanced.metadata_fields[\(i)]"
            if f.name.isEmpty { fail("\(path).name", "required", "") }
            if !fieldNames.insert(f.name).inserted { fail("\(path).name", "names must be unique", f.name) }
            switch f.type {
            case "auto_increment", "from_category", "uuid", "llm_assessed": break
            case "constant":
                switch f.value.kind {
                case .stringValue, .numberValue, .boolValue: break
                default: fail("\(path).value", "constant needs a string, number or bool value", f.hasValue ? "\(f.value)" : "missing")
                }
            default:
                fail("\(path).type", "must be auto_increment, from_category, uuid, constant or llm_assessed", f.type)
            }
        }
    }

    func validateConflict(_ c: PBConflictConfig, _ fail: (String, String, String) -> Void) {
        if !(1...20).contains(c.drivePairs.count) {
            fail("conflict_config.drive_pairs", "1 to 20 drive pairs", "\(c.drivePairs.count)")
        }
        for (i, p) in c.drivePairs.enumerated() {
            let path = "conflict_config.drive_pairs[\(i)]"
            let short = !p.a.isEmpty || !p.b.isEmpty
            if short {
                if p.a.isEmpty || p.b.isEmpty { fail(path, "the short form needs both a and b", "a=\(p.a) b=\(p.b)") }
                if !p.drives.isEmpty { fail(path, "use either {a, b} or {axis_name, drives}, not both", "") }
            } else {
                if p.drives.count != 2 { fail("\(path).drives", "exactly 2 drives", "\(p.drives.count)") }
                for (j, d) in p.drives.enumerated() where d.name.isEmpty {
                    fail("\(path).drives[\(j)].name", "required", "")
                }
            }
        }
        let axes = Planner.axes(c)
        if Set(axes).count != axes.count { fail("conflict_config.drive_pairs", "axis names must be unique", axes.joined(separator: ",")) }
        if !c.axisDistribution.isEmpty {
            var sum = 0.0
            for (axis, v) in c.axisDistribution.sorted(by: { $0.key < $1.key }) {
                if !axes.contains(axis) { fail("conflict_config.axis_distribution.\(axis)", "must name an axis of drive_pairs (\(axes.joined(separator: ", ")))", axis) }
                if v < 0 { fail("conflict_config.axis_distribution.\(axis)", "must not be negative", Self.number(v)) }
                sum += v
            }
            if abs(sum - 100) > 1 { fail("conflict_config.axis_distribution", "percentages must sum to about 100 (99-101)", Self.number(sum)) }
        }
        if !c.resolutionMode.isEmpty, !["annotated", "graded", "none"].contains(c.resolutionMode) {
            fail("conflict_config.resolution_mode", "must be annotated, graded or none", c.resolutionMode)
        }
        if c.overrideVocabulary.count > 50 {
            fail("conflict_config.override_vocabulary", "at most 50 items", "\(c.overrideVocabulary.count)")
        }
    }

    static func number(_ v: Double) -> String {
        v == v.rounded() && abs(v) < 1e15 ? String(Int64(v)) : String(v)
    }
}

import Foundation
