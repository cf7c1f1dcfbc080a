import Foundation
import SwiftProtobuf
import Testing
import SynthProto
@testable import SynthSpec
@testable import SynthEngine

@Suite struct PlannerTests {
    @Test func largestRemainderSumsExactly() {
        #expect(Planner.largestRemainder(50, [30, 25, 25, 20]) == [15, 13, 12, 10])
        #expect(Planner.largestRemainder(10, [1, 1, 1]) == [4, 3, 3])
        #expect(Planner.largestRemainder(7, [33.3, 33.3, 33.4]) == [2, 2, 3])
        for n in [1, 7, 99, 1000, 12345] as [Int64] {
            #expect(Planner.largestRemainder(n, [20, 20, 15, 25, 20]).reduce(0, +) == n)
        }
    }

    static func request(_ json: String) throws -> PBJobRequest { try RequestJSON.parse(json) }

    @Test func categoriesHardNegativesAndSplits() throws {
        let r = Planner.effective(try Self.request("""
        {"schema":"instruction_v1","domain":"x","count":500,"model":"deep",
         "advanced":{"categories":{"safety_critical":{"percentage":30},"social_conflict":{"percentage":25},"misinformation":{"percentage":25},"benign":{"percentage":20}},
         "hard_negatives":{"enabled":true,"percentage":20},"output_split":{"train":80,"validation":20}}}
        """))
        try Validator().validate(r)
        let plan = Planner.plan(r)
        #expect(Dictionary(uniqueKeysWithValues: plan.cells.map { ($0.category, $0.count) }) ==
                ["safety_critical": 150, "social_conflict": 125, "misinformation": 125, "benign": 100])
        #expect(plan.hardNegatives == 100)
        #expect(plan.techniques.count == 14)
        #expect(plan.techniques.map(\.count).reduce(0, +) == 100)
        #expect(plan.splits.map { "\($0.name)=\($0.count)" } == ["train=400", "validation=100"])
        // Slots reproduce the plan exactly.
        let slots = Slot.all(plan)
        #expect(slots.count == 500)
        #expect(slots.filter(\.hardNegative).count == 100)
        for t in plan.techniques { #expect(slots.filter { $0.technique == t.technique }.count == Int(t.count)) }
    }

    @Test func coverageGrid() throws {
        let r = Planner.effective(try Self.request("""
        {"schema":"eval_v1","domain":"AI fairness evaluation","count":200,"model":"diverse",
         "advanced":{"coverage":{"dimensions":[{"name":"difficulty","values":["easy","medium","hard"]},{"name":"topic","values":["safety","privacy","fairness","transparency"]},{"name":"persona","values":["expert","beginner"]}],"mode":"all_combinations","min_per_cell":2},
         "output_split":{"train":80,"test":20}}}
        """))
        try Validator().validate(r)
        let plan = Planner.plan(r)
        #expect(plan.cells.count == 24)
        #expect(plan.cells.map(\.count).reduce(0, +) == 200)
        #expect(plan.cells.allSatisfy { $0.count >= 8 && $0.count <= 9 })
        #expect(Set(plan.cells.map { $0.coverage["topic"]! }) == ["safety", "privacy", "fairness", "transparency"])
    }

    @Test func conflictAxesInBothShapes() throws {
        let r = Planner.effective(try Self.request("""
        {"schema":"conflict_v1","domain":"AI assistant alignment decisions","count":500,"model":"deep",
         "conflict_config":{"drive_pairs":[{"a":"safety","b":"autonomy"},{"a":"honesty","b":"helpfulness"},
         {"axis_name":"privacy_transparency","drives":[{"name":"privacy","description":"p"},{"name":"transparency","description":"t"}]}],
         "axis_distribution":{"safety_autonomy":40,"honesty_helpfulness":35,"privacy_transparency":25}}}
        """))
        try Validator().validate(r)
        #expect(r.conflictConfig.resolutionMode == "annotated")
        let plan = Planner.plan(r)
        #expect(plan.cells.map { "\($0.axis)=\($0.count)" } == ["safety_autonomy=200", "honesty_helpfulness=175", "privacy_transparency=125"])
    }

    @Test func splitsAreDeterministicAndDisjoint() {
        var a = PBSplitCount(), b = PBSplitCount()
        a.name = "train"; a.count = 70
        b.name = "test"; b.count = 30
        let one = Splits.assign(count: 100, seed: 42, plan: [a, b])
        let two = Splits.assign(count: 100, seed: 42, plan: [a, b])
        let other = Splits.assign(count: 100, seed: 43, plan: [a, b])
        #expect(one.map(\.seqs) == two.map(\.seqs))
        #expect(one.map(\.seqs) != other.map(\.seqs))
        #expect(Set(one[0].seqs + one[1].seqs) == Set(1...100))
        #expect(one[0].seqs.count == 70)
    }
}

@Suite struct ValidatorTests {
    func errors(_ json: String) -> [String] {
        do {
            try Validator(maxCount: 10_000).validate(try RequestJSON.parse(json))
            return []
        } catch let e as SpecError {
            return e.fieldErrors.map(\.field) + (e.code == .conflictingOptions ? ["CONFLICT"] : [])
        } catch {
            return ["\(error)"]
        }
    }

    @Test func quickStartRequestIsValid() {
        #expect(errors(#"{"schema":"instruction_v1","domain":"customer support for a SaaS product","count":50,"model":"balanced"}"#) == [])
    }

    @Test func legacyAliasesMapToTiers() throws {
        for (alias, tier) in [("economy", "fast"), ("standard", "balanced"), ("premium", "deep")] {
            let r = Planner.effective(try RequestJSON.parse(#"{"schema":"instruction_v1","domain":"d","count":1,"model":"\#(alias)"}"#))
            #expect(r.model == tier)
        }
    }

    @Test func everyViolationIsReportedAtOnce() {
        let fields = errors("""
        {"schema":"preference_v1","domain":"","count":0,"model":"fast","system_prompt":"\(String(repeating: "a", count: 4001))",
         "advanced":{"output_split":{"train":80,"validation":15},"hard_negatives":{"enabled":true,"percentage":0},
         "invariants":[{"rule":"short","enforcement":"maybe"}],"response_constraints":{"min_tokens":500,"max_tokens":100},
         "metadata_fields":[{"name":"x","type":"constant"},{"name":"x","type":"weird"}]}}
        """)
        for f in ["domain", "count", "model", "system_prompt", "advanced.output_split", "advanced.hard_negatives.percentage",
                  "advanced.invariants[0].rule", "advanced.invariants[0].enforcement", "advanced.response_constraints.min_tokens",
                  "advanced.metadata_fields[0].value", "advanced.metadata_fields[1].name", "advanced.metadata_fields[1].type"] {
            #expect(fields.contains(f), "expected an error on \(f), got \(fields)")
        }
    }

    @Test func categoriesAndCoverageAreExclusive() {
        #expect(errors("""
        {"schema":"instruction_v1","domain":"d","count":10,"model":"fast","advanced":{"categories":{"a":{"percentage":100}},
         "coverage":{"dimensions":[{"name":"x","values":["1"]}]}}}
        """) == ["advanced.coverage", "CONFLICT"])
    }

    @Test func unknownFieldsAreRefusedByName() {
        #expect(errors(#"{"schema":"instruction_v1","domain":"d","count":1,"model":"fast","colour":"red"}"#) == ["colour"])
        #expect(errors(#"{"schema":"instruction_v1","domain":"d","count":1,"model":"fast","advanced":{"categorys":{}}}"#) == ["advanced.categorys"])
    }

    @Test func conflictNeedsItsConfig() {
        #expect(errors(#"{"schema":"conflict_v1","domain":"d","count":1,"model":"deep"}"#) == ["conflict_config"])
        #expect(errors(#"{"schema":"conflict_v1","domain":"d","count":10,"model":"deep","conflict_config":{"drive_pairs":[{"a":"x","b":"y"}],"axis_distribution":{"nope":100}}}"#)
                == ["conflict_config.axis_distribution.nope", "conflict_config.axis_distribution"])
        // Every axis gets a share: one left out would get no records at all. 0 leaves it out on purpose.
        let two = #"{"schema":"conflict_v1","domain":"d","count":10,"model":"deep","conflict_config":{"drive_pairs":[{"a":"x","b":"y"},{"a":"p","b":"q"}],"axis_distribution":{"x_y":100"#
        #expect(errors(two + "}}}") == ["conflict_config.axis_distribution"])
        #expect(errors(two + #","p_q":0}}}"#) == [])
    }
}
