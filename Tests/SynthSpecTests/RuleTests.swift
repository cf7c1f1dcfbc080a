import Foundation
import Testing
@testable import SynthSpec

/// Each documented rule broken alone gives exactly one field error, on that field; ten broken at
/// once give ten.
@Suite struct RuleTests {
    static let base = #""schema":"instruction_v1","domain":"customer support","count":100,"model":"fast""#
    static let conflict = #""schema":"conflict_v1","domain":"alignment","count":100,"model":"deep""#

    static func fieldErrors(_ json: String) -> [String] {
        do {
            try Validator(maxCount: 10_000).validate(try RequestJSON.parse(json))
            return []
        } catch let e as SpecError {
            return e.fieldErrors.map(\.field) + (e.code == .conflictingOptions && e.fieldErrors.isEmpty ? ["CONFLICT"] : [])
        } catch {
            return ["\(error)"]
        }
    }

    static let cases: [(String, String, String)] = [
        ("schema missing", #"{"domain":"d","count":1,"model":"fast"}"#, "schema"),
        ("domain missing", #"{"schema":"instruction_v1","count":1,"model":"fast"}"#, "domain"),
        ("domain empty", #"{"schema":"instruction_v1","domain":" ","count":1,"model":"fast"}"#, "domain"),
        ("count missing", #"{"schema":"instruction_v1","domain":"d","model":"fast"}"#, "count"),
        ("count zero", #"{"schema":"instruction_v1","domain":"d","count":0,"model":"fast"}"#, "count"),
        ("count negative", #"{"schema":"instruction_v1","domain":"d","count":-3,"model":"fast"}"#, "count"),
        ("count above the ceiling", #"{"schema":"instruction_v1","domain":"d","count":10001,"model":"fast"}"#, "count"),
        ("unknown schema", #"{"schema":"instruction_v9","domain":"d","count":1,"model":"fast"}"#, "schema"),
        ("no model", #"{"schema":"instruction_v1","domain":"d","count":1}"#, "model"),
        ("unknown tier", #"{"schema":"instruction_v1","domain":"d","count":1,"model":"turbo"}"#, "model"),
        ("preference on fast", #"{"schema":"preference_v1","domain":"d","count":1,"model":"fast"}"#, "model"),
        ("conflict on fast", #"{"schema":"conflict_v1","domain":"d","count":10,"model":"fast","conflict_config":{"drive_pairs":[{"a":"x","b":"y"}]}}"#, "model"),
        ("system prompt too long", #"{\#(base),"system_prompt":"\#(String(repeating: "x", count: 4001))"}"#, "system_prompt"),
        ("categories not 100", #"{\#(base),"advanced":{"categories":{"a":{"percentage":30},"b":{"percentage":30}}}}"#, "advanced.categories"),
        ("six dimensions", #"{\#(base),"advanced":{"coverage":{"dimensions":[\#((1...6).map { #"{"name":"d\#($0)","values":["a"]}"# }.joined(separator: ","))]}}}"#, "advanced.coverage.dimensions"),
        ("21 values", #"{\#(base),"advanced":{"coverage":{"dimensions":[{"name":"d","values":[\#((1...21).map { "\"v\($0)\"" }.joined(separator: ","))]}]}}}"#, "advanced.coverage.dimensions[0].values"),
        ("over 100 cells", #"{\#(base),"advanced":{"coverage":{"mode":"all_combinations","dimensions":[{"name":"a","values":[\#((1...11).map { "\"v\($0)\"" }.joined(separator: ","))]},{"name":"b","values":[\#((1...10).map { "\"w\($0)\"" }.joined(separator: ","))]}]}}}"#, "advanced.coverage"),
        ("min per cell too high", #"{\#(base),"advanced":{"coverage":{"mode":"all_combinations","min_per_cell":30,"dimensions":[{"name":"a","values":["x","y","z","w"]}]}}}"#, "advanced.coverage.min_per_cell"),
        ("split not 100", #"{\#(base),"advanced":{"output_split":{"train":80,"test":10}}}"#, "advanced.output_split"),
        ("one split", #"{\#(base),"advanced":{"output_split":{"train":100}}}"#, "advanced.output_split"),
        ("six splits", #"{\#(base),"advanced":{"output_split":{"a":20,"b":20,"c":20,"d":20,"e":10,"f":10}}}"#, "advanced.output_split"),
        ("fractional split", #"{\#(base),"advanced":{"output_split":{"train":80.5,"test":19.5}}}"#, "advanced.output_split"),
        ("eleven invariants", #"{\#(base),"advanced":{"invariants":[\#((1...11).map { _ in #"{"rule":"Never reveal a customer's card number","enforcement":"strict"}"# }.joined(separator: ","))]}}"#, "advanced.invariants"),
        ("rule too short", #"{\#(base),"advanced":{"invariants":[{"rule":"short","enforcement":"strict"}]}}"#, "advanced.invariants[0].rule"),
        ("rule too long", #"{\#(base),"advanced":{"invariants":[{"rule":"\#(String(repeating: "r", count: 501))","enforcement":"strict"}]}}"#, "advanced.invariants[0].rule"),
        ("unknown enforcement", #"{\#(base),"advanced":{"invariants":[{"rule":"Never reveal a card number","enforcement":"maybe"}]}}"#, "advanced.invariants[0].enforcement"),
        ("hard negatives 0%", #"{\#(base),"advanced":{"hard_negatives":{"enabled":true,"percentage":0}}}"#, "advanced.hard_negatives.percentage"),
        ("hard negatives 101%", #"{\#(base),"advanced":{"hard_negatives":{"enabled":true,"percentage":101}}}"#, "advanced.hard_negatives.percentage"),
        ("unknown technique", #"{\#(base),"advanced":{"hard_negatives":{"enabled":true,"techniques":["mind_control"]}}}"#, "advanced.hard_negatives.techniques[0]"),
        ("min tokens 0", #"{\#(base),"advanced":{"response_constraints":{"min_tokens":0}}}"#, "advanced.response_constraints.min_tokens"),
        ("max tokens 10001", #"{\#(base),"advanced":{"response_constraints":{"max_tokens":10001}}}"#, "advanced.response_constraints.max_tokens"),
        ("min above max", #"{\#(base),"advanced":{"response_constraints":{"min_tokens":300,"max_tokens":100}}}"#, "advanced.response_constraints.min_tokens"),
        ("unknown metadata type", #"{\#(base),"advanced":{"metadata_fields":[{"name":"x","type":"random"}]}}"#, "advanced.metadata_fields[0].type"),
        ("constant without value", #"{\#(base),"advanced":{"metadata_fields":[{"name":"x","type":"constant"}]}}"#, "advanced.metadata_fields[0].value"),
        ("duplicate metadata name", #"{\#(base),"advanced":{"metadata_fields":[{"name":"x","type":"uuid"},{"name":"x","type":"uuid"}]}}"#, "advanced.metadata_fields[1].name"),
        ("conflict without config", #"{\#(conflict)}"#, "conflict_config"),
        ("three drives in a pair", #"{\#(conflict),"conflict_config":{"drive_pairs":[{"drives":[{"name":"a"},{"name":"b"},{"name":"c"}]}]}}"#, "conflict_config.drive_pairs[0]"),
        ("21 drive pairs", #"{\#(conflict),"conflict_config":{"drive_pairs":[\#((1...21).map { #"{"a":"x\#($0)","b":"y\#($0)"}"# }.joined(separator: ","))]}}"#, "conflict_config.drive_pairs"),
        ("axis shares not 100", #"{\#(conflict),"conflict_config":{"drive_pairs":[{"a":"x","b":"y"},{"a":"p","b":"q"}],"axis_distribution":{"x_y":30,"p_q":30}}}"#, "conflict_config.axis_distribution"),
        ("unknown resolution mode", #"{\#(conflict),"conflict_config":{"drive_pairs":[{"a":"x","b":"y"}],"resolution_mode":"vibes"}}"#, "conflict_config.resolution_mode"),
        ("51 override words", #"{\#(conflict),"conflict_config":{"drive_pairs":[{"a":"x","b":"y"}],"override_vocabulary":[\#((1...51).map { "\"w\($0)\"" }.joined(separator: ","))]}}"#, "conflict_config.override_vocabulary"),
        ("unknown top-level field", #"{\#(base),"colour":"red"}"#, "colour"),
        ("unknown nested field", #"{\#(base),"advanced":{"output_split":{"train":80,"test":20},"shuffle":true}}"#, "advanced.shuffle"),
    ]

    @Test(arguments: cases.map { [$0.0, $0.1, $0.2] })
    func eachRuleBrokenAlone(_ c: [String]) {
        let errors = Self.fieldErrors(c[1])
        // Fractional percentages that still sum to 100 break the rule in two values at once, and
        // each is named.
        #expect(errors.count == (c[0] == "fractional split" ? 2 : 1), "\(c[0]): \(errors)")
        #expect(!errors.isEmpty && errors.allSatisfy { $0 == c[2] || $0.hasPrefix(c[2] + ".") || $0.hasPrefix(c[2] + "[") },
                "\(c[0]): \(errors)")
    }

    @Test func tenBrokenAtOnceGiveTenErrors() {
        let json = """
        {"schema":"instruction_v1","domain":"","count":0,"model":"turbo","system_prompt":"\(String(repeating: "x", count: 4001))",
         "advanced":{"metadata_fields":[{"name":"x","type":"random"}],"output_split":{"train":80,"test":10},"hard_negatives":{"enabled":true,"percentage":0},
         "invariants":[{"rule":"short","enforcement":"maybe"}],"response_constraints":{"min_tokens":0}}}
        """
        let errors = Self.fieldErrors(json)
        #expect(Set(errors) == ["domain", "count", "model", "system_prompt", "advanced.metadata_fields[0].type", "advanced.output_split",
                                "advanced.hard_negatives.percentage", "advanced.invariants[0].rule", "advanced.invariants[0].enforcement",
                                "advanced.response_constraints.min_tokens"], "\(errors)")
        #expect(errors.count == 10)
    }
}

@Suite struct PricingConfigTests {
    @Test func thePriceTableIsConfigurationWithTheDocumentedDefaults() throws {
        let none = try JSONDecoder().decode(Pricing.self, from: Data("{}".utf8))
        #expect(none.tiers[.fast]?.instructionPer1K == 0.50 && none.tiers[.deep]?.preferencePer1K == 30 && none.verifiedPer1K == 5)
        let some = try JSONDecoder().decode(Pricing.self, from: Data(#"""
            {"tiers": {"fast": {"instruction_per_1k": 0.75, "preference_per_1k": 1.5}, "deep": {"in_subscription": true}},
             "verified_per_1k": 4}
            """#.utf8))
        #expect(some.tiers[.fast]?.instructionPer1K == 0.75 && some.tiers[.fast]?.preferencePer1K == 1.5)
        #expect(some.tiers[.deep]?.inSubscription == true && some.tiers[.deep]?.instructionPer1K == 25)
        #expect(some.verifiedPer1K == 4 && some.invariantsPer1K == 0.04)
        var r = try RequestJSON.parse(#"{"schema":"instruction_v1","domain":"d","count":1000,"model":"fast","verified":true}"#)
        #expect(abs(some.estimate(r).totalUsd - 4.75) < 1e-9)
        r.verified = false
        #expect(abs(Pricing.documented.estimate(r).totalUsd - 0.50) < 1e-9)
        for bad in [#"{"tiers": {"turbo": {}}}"#, #"{"verified_per_1k": -1}"#, #"{"tiers": {"fast": {"instruction_per_1k": "cheap"}}}"#] {
            #expect(throws: DecodingError.self) { try JSONDecoder().decode(Pricing.self, from: Data(bad.utf8)) }
        }
    }
}
