import SwiftProtobuf
import SynthProto

/// Checks a request against every documented rule and every limit of `RequestLimits`, and reports
/// all violations at once (the first `RequestLimits.fieldErrors` of them, and how many more).
///
/// The work is bounded by the limits too: a list longer than its maximum is one error, and only its
/// first maximum items are looked at.
public struct Validator: Sendable {
    public var maxCount: Int64
    /// The server's providers and tier routes; without it (an offline check) provider names are
    /// checked for form only and a verbose generator is not held to a tier.
    public var catalog: ModelCatalog?
    public static let maxSystemPrompt = RequestLimits.systemPrompt

    public init(maxCount: Int64 = 100_000, catalog: ModelCatalog? = nil) {
        self.maxCount = maxCount
        self.catalog = catalog
    }

    /// The field errors found so far: at most `RequestLimits.fieldErrors` kept, all counted.
    struct Errors {
        var kept: [PBFieldError] = []
        var total = 0
        /// advanced.categories and advanced.coverage were both given: the answer's code is
        /// CONFLICTING_OPTIONS (the documentation's 400), and it still lists everything else.
        var conflicting = false
        /// Paths the body's shape refused (a wrong type, a repeated key): a rule about the same
        /// field, or one inside or around it, would only repeat the problem.
        var refused: [String] = []

        mutating func add(_ field: String, _ rule: String, _ value: String) {
            total += 1
            if kept.count < RequestLimits.fieldErrors { kept.append(PBFieldError(field, rule, Validator.quote(value))) }
        }

        /// A rule violation, unless the shape already refused that field.
        mutating func rule(_ field: String, _ rule: String, _ value: String) {
            if refused.contains(where: { Self.related($0, field) }) { return }
            add(field, rule, value)
        }

        static func related(_ a: String, _ b: String) -> Bool {
            func under(_ x: String, _ y: String) -> Bool { x.hasPrefix(y) && (x.dropFirst(y.count).first == "." || x.dropFirst(y.count).first == "[") }
            return a == b || under(a, b) || under(b, a)
        }

        func thrown() -> SpecError? {
            guard total > 0 else { return nil }
            var message = "the request has \(total) invalid field\(total == 1 ? "" : "s")"
            if total > kept.count { message += " (the first \(kept.count) are listed; \(total - kept.count) more are not)" }
            if conflicting {
                message = "advanced.categories and advanced.coverage are mutually exclusive: pass one or the other"
                    + (total > 1 ? "; \(message)" : "")
                return SpecError(.conflictingOptions, message, fieldErrors: kept)
            }
            return SpecError(.validation, message, fieldErrors: kept)
        }
    }

    /// Throws `SpecError(.validation)` listing every violation (`.conflictingOptions` when
    /// categories and coverage are both given, the documentation's 400, still listing the rest).
    public func validate(_ r: PBJobRequest) throws {
        if let error = check(ParsedRequest(r)).thrown() { throw error }
    }

    /// Validates a request read from JSON: its shape's errors and the rules', together.
    public func validate(_ parsed: ParsedRequest) throws {
        if let error = check(parsed).thrown() { throw error }
    }

    /// Validates a Generate call: its request and its idempotency key, together.
    public func validate(_ g: PBGenerateRequest) throws {
        try validate(ParsedRequest(g.request), idempotencyKey: g.idempotencyKey)
    }

    /// Validates a Generate call whose request was read from JSON.
    public func validate(_ parsed: ParsedRequest, idempotencyKey: String) throws {
        var errors = check(parsed)
        if idempotencyKey.utf8.count > RequestLimits.idempotencyKeyBytes {
            errors.add("idempotency_key", "at most \(RequestLimits.idempotencyKeyBytes) bytes", "\(idempotencyKey.utf8.count) bytes")
        }
        if idempotencyKey.unicodeScalars.contains(where: Self.isControl) {
            errors.add("idempotency_key", "must not contain control characters", idempotencyKey)
        }
        if let error = errors.thrown() { throw error }
    }

    /// The field errors of a request: its shape's first, then every rule's.
    func check(_ parsed: ParsedRequest) -> Errors {
        let r = parsed.request
        var errors = Errors()
        errors.refused = parsed.refusedPaths
        for e in parsed.shapeErrors { errors.add(e.field, e.rule, e.value) }
        func fail(_ field: String, _ rule: String, _ value: String) { errors.rule(field, rule, value) }

        if r.hasAdvanced, !r.advanced.categories.isEmpty, r.advanced.hasCoverage {
            errors.conflicting = true
            fail("advanced.coverage", "cannot be combined with advanced.categories (CONFLICTING_OPTIONS)", "both given")
        }
        for path in ["advanced.invariants", "advanced.output_split", "advanced.categories"] where parsed.emptyLists.contains(path) {
            switch path {
            case "advanced.invariants": fail(path, "1 to \(RequestLimits.invariants) invariants (leave it out for none)", "0")
            case "advanced.output_split": fail(path, "\(RequestLimits.splits.lowerBound) to \(RequestLimits.splits.upperBound) named splits (leave it out for none)", "0")
            default: fail(path, "at least one category (leave it out for none)", "0")
            }
        }

        let schema = Schema(rawValue: r.schema)
        if r.schema.isEmpty {
            fail("schema", "required", "")
        } else if schema == nil {
            fail("schema", "must be one of instruction_v1, preference_v1, eval_v1, conflict_v1", r.schema)
        }
        if r.domain.unicodeScalars.allSatisfy(\.properties.isWhitespace) {
            fail("domain", "required (and not only white space)", r.domain)
        } else {
            text("domain", r.domain, max: RequestLimits.domain, lines: false, fail)
        }
        if r.count <= 0 {
            fail("count", "must be a positive integer", "\(r.count)")
        } else if r.count > maxCount {
            fail("count", "at most \(maxCount) per job", "\(r.count)")
        }
        checkModels(r, schema: schema, fail)
        text("system_prompt", r.systemPrompt, max: RequestLimits.systemPrompt, lines: true, fail)
        text("license", r.license, max: RequestLimits.shortText, lines: false, fail)
        if !r.delivery.isEmpty, !["online", "batch"].contains(r.delivery) {
            fail("delivery", "must be online or batch", r.delivery)
        }
        if r.hasMaxProviderCostUsd {
            let cap = r.maxProviderCostUsd.value
            if !(cap > 0) || cap > RequestLimits.maxProviderCostUSD {
                fail("max_provider_cost_usd", "a number of dollars above 0 and at most \(Int(RequestLimits.maxProviderCostUSD))", "\(cap)")
            }
        }
        if r.hasConstraints {
            let c = r.constraints
            if !c.language.isEmpty, !LanguageCodes.iso639_1.contains(c.language) {
                fail("constraints.language", "must be an ISO 639-1 code (two lower-case letters, such as en, es, fr, zh)", c.language)
            }
            text("constraints.tone", c.tone, max: RequestLimits.shortText, lines: false, fail)
            text("constraints.difficulty", c.difficulty, max: RequestLimits.shortText, lines: false, fail)
            checkTokens("constraints", c.hasMinTokens ? c.minTokens.value : nil, c.hasMaxTokens ? c.maxTokens.value : nil, fail)
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
        return errors
    }

    /// The model: a tier shorthand, the verbose generator, or both (the generator wins); a
    /// verbose critic alone beside a shorthand. The tier floor of a schema holds for the
    /// generator actually used.
    func checkModels(_ r: PBJobRequest, schema: Schema?, _ fail: (String, String, String) -> Void) {
        if !r.model.isEmpty, Tier(shorthand: r.model) == nil {
            fail("model", "must be fast, balanced, diverse or deep (or economy, standard, premium)", r.model)
        }
        let hasGenerator = r.hasModels && r.models.hasGenerator
        if r.model.isEmpty, !hasGenerator {
            fail("model", r.hasModels ? "required unless models.generator is given" : "required unless models is given", "")
        }
        if r.hasModels {
            for (name, present, ref) in [("generator", r.models.hasGenerator, r.models.generator), ("critic", r.models.hasCritic, r.models.critic)] where present {
                if ref.model.unicodeScalars.allSatisfy(\.properties.isWhitespace) {
                    fail("models.\(name).model", "required when models.\(name) is given", ref.model)
                } else {
                    text("models.\(name).model", ref.model, max: RequestLimits.name, lines: false, fail)
                }
                guard !ref.provider.isEmpty else { continue }
                if let catalog {
                    if !catalog.providers.contains(ref.provider) {
                        fail("models.\(name).provider", "must be a provider the server defines (\(catalog.providers.sorted().joined(separator: ", ")))", ref.provider)
                    }
                } else {
                    self.name("models.\(name).provider", ref.provider, fail)
                }
            }
        }
        guard let schema else { return }
        if let catalog, let generator = catalog.explicitGenerator(r) {
            let tier = catalog.tier(of: generator)
            if tier < schema.minimumTier {
                fail("models.generator.model", "\(schema.rawValue) needs balanced or higher; \(generator.provider)/\(generator.model) is the \(tier.rawValue) tier's model",
                     generator.model)
            }
        } else if !hasGenerator, let tier = Tier(shorthand: r.model), tier < schema.minimumTier {
            fail("model", "\(schema.rawValue) needs balanced or higher", r.model)
        }
    }

    /// Whether a code point is a control character: C0 (tab and line breaks included), DEL and C1.
    static func isControl(_ u: Unicode.Scalar) -> Bool { u.value < 0x20 || (0x7F...0x9F).contains(u.value) }

    /// A free-text field: at most `max` characters, and no control characters but tab and line
    /// breaks where `lines` allows them.
    func text(_ field: String, _ s: String, max: Int, lines: Bool, _ fail: (String, String, String) -> Void) {
        var n = 0, control = false
        for u in s.unicodeScalars {
            n += 1
            if Self.isControl(u), !(lines && (u == "\n" || u == "\t" || u == "\r")) { control = true }
        }
        if n > max { fail(field, "at most \(max) characters", "\(n) characters") }
        if control { fail(field, lines ? "must not contain control characters other than tab and line breaks" : "must not contain control characters", s) }
    }

    /// A name: required, not only white space, at most `RequestLimits.name` characters, one line.
    /// `what` names it in the rule when `field` is the list that holds it (a map key).
    func name(_ field: String, _ s: String, _ fail: (String, String, String) -> Void, what: String? = nil) {
        withoutActuallyEscaping(fail) { fail in
            let say: (String, String, String) -> Void = { f, rule, v in fail(f, what.map { "\($0): \(rule)" } ?? rule, v) }
            if s.unicodeScalars.allSatisfy(\.properties.isWhitespace) {
                say(field, s.isEmpty ? (what == nil ? "required" : "must not be empty") : "must not be only white space", s)
            } else {
                text(field, s, max: RequestLimits.name, lines: false, say)
            }
        }
    }

    /// A list's length: over `max` is one error, and the caller looks at the first `max` only.
    func count(_ field: String, _ n: Int, max: Int, _ fail: (String, String, String) -> Void) -> Int {
        if n > max { fail(field, "at most \(max) items", "\(n)") }
        return Swift.min(n, max)
    }

    /// A number that must be finite (NaN and the infinities are refused everywhere).
    func finite(_ field: String, _ v: Double, _ fail: (String, String, String) -> Void) -> Bool {
        if v.isFinite { return true }
        fail(field, "must be a finite number", Self.number(v))
        return false
    }

    func checkTokens(_ path: String, _ min: Int64?, _ max: Int64?, _ fail: (String, String, String) -> Void) {
        for (name, v) in [("min_tokens", min), ("max_tokens", max)] {
            if let v, !(1...10_000).contains(v) { fail("\(path).\(name)", "must be between 1 and 10000", "\(v)") }
        }
        if let min, let max, min > max { fail("\(path).min_tokens", "must not be above max_tokens (\(max))", "\(min)") }
    }

    func validateAdvanced(_ a: PBAdvanced, count: Int64, _ fail: (String, String, String) -> Void) {
        if !a.dedupAgainst.isEmpty {
            let n = self.count("advanced.dedup_against", a.dedupAgainst.count, max: RequestLimits.dedupAgainst, fail)
            var seen = Set<String>()
            for (i, id) in a.dedupAgainst.prefix(n).enumerated() {
                if id.isEmpty || id.utf8.count > RequestLimits.jobIDBytes || !id.unicodeScalars.allSatisfy({ $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || $0 == "_" || $0 == "-") }) {
                    fail("advanced.dedup_against[\(i)]", "a job id (letters, digits, _ and -, at most \(RequestLimits.jobIDBytes))", String(id.prefix(64)))
                } else if !seen.insert(id).inserted {
                    fail("advanced.dedup_against[\(i)]", "each job at most once", id)
                }
            }
        }
        if !a.categories.isEmpty {
            let n = self.count("advanced.categories", a.categories.count, max: RequestLimits.categories, fail)
            var sum = 0.0
            for (name, c) in a.categories.sorted(by: { $0.key < $1.key }).prefix(n) {
                let path = "advanced.categories.\(Self.quote(name))"
                self.name("advanced.categories", name, fail, what: "category names")
                if finite("\(path).percentage", c.percentage, fail), !(c.percentage > 0 && c.percentage <= 100) {
                    fail("\(path).percentage", "must be above 0 and at most 100", Self.number(c.percentage))
                }
                text("\(path).description", c.description_p, max: RequestLimits.description, lines: true, fail)
                sum += c.percentage
            }
            if sum.isFinite, n == a.categories.count, abs(sum - 100) > 1 { fail("advanced.categories", "percentages must sum to about 100 (99-101)", Self.number(sum)) }
        }
        if a.hasCoverage {
            let cov = a.coverage
            if cov.dimensions.isEmpty || cov.dimensions.count > RequestLimits.coverageDimensions {
                fail("advanced.coverage.dimensions", "1 to \(RequestLimits.coverageDimensions) dimensions", "\(cov.dimensions.count)")
            }
            var names = Set<String>()
            var cells = 1
            for (i, d) in cov.dimensions.prefix(RequestLimits.coverageDimensions).enumerated() {
                let path = "advanced.coverage.dimensions[\(i)]"
                name("\(path).name", d.name, fail)
                if !names.insert(d.name).inserted { fail("\(path).name", "dimension names must be unique", d.name) }
                if d.values.isEmpty || d.values.count > RequestLimits.coverageValues {
                    fail("\(path).values", "1 to \(RequestLimits.coverageValues) values", "\(d.values.count)")
                }
                let values = d.values.prefix(RequestLimits.coverageValues)
                for (j, v) in values.enumerated() { name("\(path).values[\(j)]", v, fail) }
                if Set(values).count != values.count {
                    fail("\(path).values", "values must be unique", values.joined(separator: ","))
                }
                cells *= Swift.max(1, values.count)
            }
            let mode = cov.mode.isEmpty ? "all_combinations" : cov.mode
            if !["all_combinations", "each_value"].contains(mode) {
                fail("advanced.coverage.mode", "must be all_combinations or each_value", cov.mode)
            }
            // Counted, not built: 5 dimensions of 20 values would be 3.2 million cells.
            if mode == "each_value" { cells = cov.dimensions.prefix(RequestLimits.coverageDimensions).map(\.values.count).max() ?? 0 }
            if mode == "all_combinations", cells > RequestLimits.coverageCells {
                fail("advanced.coverage", "all_combinations makes at most \(RequestLimits.coverageCells) cells", "\(cells) cells")
            }
            let minPer = cov.hasMinPerCell ? cov.minPerCell.value : 1
            if minPer < 1 { fail("advanced.coverage.min_per_cell", "must be at least 1", "\(minPer)") }
            let (need, overflow) = minPer.multipliedReportingOverflow(by: Int64(cells))
            if count > 0, cells <= RequestLimits.coverageCells, minPer >= 1, overflow || need > count {
                fail("advanced.coverage.min_per_cell", "min_per_cell x cells (\(minPer) x \(cells)) must not exceed count", "\(count)")
            }
        }
        if !a.invariants.isEmpty {
            let n = self.count("advanced.invariants", a.invariants.count, max: RequestLimits.invariants, fail)
            for (i, inv) in a.invariants.prefix(n).enumerated() {
                let length = inv.rule.unicodeScalars.count
                if !RequestLimits.invariantRule.contains(length) {
                    fail("advanced.invariants[\(i)].rule", "\(RequestLimits.invariantRule.lowerBound) to \(RequestLimits.invariantRule.upperBound) characters",
                         "\(length) characters")
                } else {
                    text("advanced.invariants[\(i)].rule", inv.rule, max: RequestLimits.invariantRule.upperBound, lines: true, fail)
                }
                if !["strict", "soft"].contains(inv.enforcement) {
                    fail("advanced.invariants[\(i)].enforcement", "must be strict or soft", inv.enforcement)
                }
            }
        }
        if !a.responsePolicy.isEmpty {
            let n = self.count("advanced.response_policy", a.responsePolicy.count, max: RequestLimits.policySections, fail)
            for (key, value) in a.responsePolicy.sorted(by: { $0.key < $1.key }).prefix(n) {
                name("advanced.response_policy", key, fail, what: "section names")
                text("advanced.response_policy.\(Self.quote(key))", value, max: RequestLimits.policyText, lines: true, fail)
            }
        }
        if !a.styleRules.isEmpty {
            let n = self.count("advanced.style_rules", a.styleRules.count, max: RequestLimits.styleRules, fail)
            for (i, rule) in a.styleRules.prefix(n).enumerated() {
                if rule.unicodeScalars.allSatisfy(\.properties.isWhitespace) {
                    fail("advanced.style_rules[\(i)]", "must not be empty", rule)
                } else {
                    text("advanced.style_rules[\(i)]", rule, max: RequestLimits.styleRule, lines: true, fail)
                }
            }
        }
        if a.hasHardNegatives {
            let hn = a.hardNegatives
            if hn.hasPercentage, !(1...100).contains(hn.percentage.value) {
                fail("advanced.hard_negatives.percentage", "must be between 1 and 100", Self.number(hn.percentage.value))
            }
            let n = self.count("advanced.hard_negatives.techniques", hn.techniques.count, max: RequestLimits.techniques, fail)
            for (i, t) in hn.techniques.prefix(n).enumerated() {
                let path = "advanced.hard_negatives.techniques[\(i)]"
                switch t.kind {
                case .stringValue(let name):
                    if !Techniques.builtIn.keys.contains(name) {
                        fail(path, "unknown technique; use a built-in name or {name, description}", name)
                    }
                case .structValue(let s):
                    let name = s.fields["name"]?.stringValue ?? ""
                    let desc = s.fields["description"]?.stringValue ?? ""
                    self.name("\(path).name", name, fail)
                    if desc.isEmpty {
                        fail("\(path).description", "required for a custom technique", "")
                    } else {
                        text("\(path).description", desc, max: RequestLimits.description, lines: true, fail)
                    }
                    let extra = s.fields.keys.filter { $0 != "name" && $0 != "description" }
                    if !extra.isEmpty {
                        fail(path, "a custom technique has only name and description", extra.sorted().prefix(5).joined(separator: ", "))
                    }
                default:
                    fail(path, "must be a technique name or {name, description}", Self.kind(t))
                }
            }
        }
        if !a.outputSplit.isEmpty {
            if !RequestLimits.splits.contains(a.outputSplit.count) {
                fail("advanced.output_split", "\(RequestLimits.splits.lowerBound) to \(RequestLimits.splits.upperBound) named splits", "\(a.outputSplit.count)")
            }
            var sum = 0.0
            for (name, v) in a.outputSplit.sorted(by: { $0.key < $1.key }).prefix(RequestLimits.splits.upperBound) {
                if !v.isFinite || v <= 0 || v != v.rounded() {
                    fail("advanced.output_split.\(Self.quote(name))", "must be a positive integer", Self.number(v))
                }
                if name.isEmpty || name.contains("/") || name.hasPrefix(".") {
                    fail("advanced.output_split", "split names must be plain file names", name)
                } else {
                    self.name("advanced.output_split", name, fail, what: "split names")
                }
                sum += v
            }
            if sum != 100, sum.isFinite, a.outputSplit.count <= RequestLimits.splits.upperBound { fail("advanced.output_split", "percentages must sum to exactly 100", Self.number(sum)) }
        }
        if a.hasResponseConstraints {
            let rc = a.responseConstraints
            checkTokens("advanced.response_constraints", rc.hasMinTokens ? rc.minTokens.value : nil, rc.hasMaxTokens ? rc.maxTokens.value : nil, fail)
        }
        var fieldNames = Set<String>()
        let fields = self.count("advanced.metadata_fields", a.metadataFields.count, max: RequestLimits.metadataFields, fail)
        for (i, f) in a.metadataFields.prefix(fields).enumerated() {
            let path = "advanced.metadata_fields[\(i)]"
            name("\(path).name", f.name, fail)
            if !fieldNames.insert(f.name).inserted { fail("\(path).name", "names must be unique", f.name) }
            if Self.reservedMetadata.contains(f.name) || f.name.hasPrefix("coverage_"), !(f.name == "category" && f.type == "from_category") {
                fail("\(path).name", "is a key synthd writes into metadata itself (\(Self.reservedMetadata.sorted().joined(separator: ", ")), "
                     + "coverage_*; category only as from_category); choose another name", f.name)
            }
            text("\(path).prefix", f.prefix, max: RequestLimits.description, lines: false, fail)
            text("\(path).description", f.description_p, max: RequestLimits.description, lines: true, fail)
            switch f.type {
            case "auto_increment", "from_category", "uuid", "llm_assessed": break
            case "constant":
                switch f.value.kind {
                case .stringValue(let v): text("\(path).value", v, max: RequestLimits.description, lines: true, fail)
                case .numberValue(let v): _ = finite("\(path).value", v, fail)
                case .boolValue: break
                default: fail("\(path).value", "constant needs a string, number or bool value", f.hasValue ? Self.kind(f.value) : "missing")
                }
            default:
                fail("\(path).type", "must be auto_increment, from_category, uuid, constant or llm_assessed", f.type)
            }
        }
    }

    /// The keys synthd writes into a record's `metadata` itself, which a metadata field may not
    /// take (nor any `coverage_` name; `category` only as a `from_category` field, which writes
    /// the same value).
    public static let reservedMetadata: Set<String> = ["category", "hard_negative", "technique", "invariant_soft_flags"]

    func validateConflict(_ c: PBConflictConfig, _ fail: (String, String, String) -> Void) {
        if c.drivePairs.isEmpty || c.drivePairs.count > RequestLimits.drivePairs {
            fail("conflict_config.drive_pairs", "1 to \(RequestLimits.drivePairs) drive pairs", "\(c.drivePairs.count)")
        }
        let pairs = Array(c.drivePairs.prefix(RequestLimits.drivePairs))
        for (i, p) in pairs.enumerated() {
            let path = "conflict_config.drive_pairs[\(i)]"
            let short = !p.a.isEmpty || !p.b.isEmpty
            if short {
                if p.a.isEmpty || p.b.isEmpty { fail(path, "the short form needs both a and b", "a=\(Self.quote(p.a)) b=\(Self.quote(p.b))") }
                if !p.drives.isEmpty { fail(path, "use either {a, b} or {axis_name, drives}, not both", "") }
                if !p.a.isEmpty { name("\(path).a", p.a, fail) }
                if !p.b.isEmpty { name("\(path).b", p.b, fail) }
            } else {
                if p.drives.count != 2 { fail("\(path).drives", "exactly 2 drives", "\(p.drives.count)") }
                for (j, d) in p.drives.prefix(2).enumerated() {
                    name("\(path).drives[\(j)].name", d.name, fail)
                    text("\(path).drives[\(j)].description", d.description_p, max: RequestLimits.description, lines: true, fail)
                }
            }
            if !p.axisName.isEmpty { name("\(path).axis_name", p.axisName, fail) }
            text("\(path).description", p.description_p, max: RequestLimits.description, lines: true, fail)
        }
        var limited = c
        limited.drivePairs = pairs
        let axes = Planner.axes(limited)
        if Set(axes).count != axes.count { fail("conflict_config.drive_pairs", "axis names must be unique", axes.joined(separator: ",")) }
        if !c.axisDistribution.isEmpty {
            var sum = 0.0
            let n = count("conflict_config.axis_distribution", c.axisDistribution.count, max: RequestLimits.drivePairs, fail)
            for (axis, v) in c.axisDistribution.sorted(by: { $0.key < $1.key }).prefix(n) {
                let path = "conflict_config.axis_distribution.\(Self.quote(axis))"
                if !axes.contains(axis) { fail(path, "must name an axis of drive_pairs (\(axes.joined(separator: ", ")))", axis) }
                if finite(path, v, fail), v < 0 || v > 100 { fail(path, "must be between 0 and 100", Self.number(v)) }
                sum += v
            }
            if sum.isFinite, n == c.axisDistribution.count, abs(sum - 100) > 1 { fail("conflict_config.axis_distribution", "percentages must sum to about 100 (99-101)", Self.number(sum)) }
            // An axis left out would get no records at all: say so rather than drop it quietly.
            let missing = axes.filter { c.axisDistribution[$0] == nil }
            if !missing.isEmpty {
                fail("conflict_config.axis_distribution", "must give every axis of drive_pairs a share (0 to leave one out on purpose)",
                     missing.joined(separator: ", "))
            }
        }
        if !c.resolutionMode.isEmpty, !["annotated", "graded", "none"].contains(c.resolutionMode) {
            fail("conflict_config.resolution_mode", "must be annotated, graded or none", c.resolutionMode)
        }
        let words = count("conflict_config.override_vocabulary", c.overrideVocabulary.count, max: RequestLimits.overrideVocabulary, fail)
        for (i, w) in c.overrideVocabulary.prefix(words).enumerated() { name("conflict_config.override_vocabulary[\(i)]", w, fail) }
    }

    /// At most `RequestLimits.quotedValue` characters of a refused value, so that an error about
    /// a huge field is not itself huge.
    static func quote(_ s: String) -> String {
        var out = String.UnicodeScalarView()
        for (i, u) in s.unicodeScalars.enumerated() {
            if i == RequestLimits.quotedValue { return String(out) + "..." }
            out.append(isControl(u) ? "?" : u)
        }
        return String(out)
    }

    /// What kind of JSON value a `Value` is, without printing it.
    static func kind(_ v: Google_Protobuf_Value) -> String {
        switch v.kind {
        case .nullValue: "null"
        case .numberValue(let n): number(n)
        case .stringValue: "a string"
        case .boolValue(let b): "\(b)"
        case .structValue: "an object"
        case .listValue: "a list"
        case nil: "missing"
        }
    }

    static func number(_ v: Double) -> String {
        v == v.rounded() && abs(v) < 1e15 ? String(Int64(v)) : String(v)
    }
}

import Foundation
