import Foundation
import SwiftProtobuf
import Testing
@testable import SynthProto
@testable import SynthSpec

/// Every list and free-text field has a maximum; what a request may cost is bounded by them.
@Suite struct LimitTests {
    static let base = RuleTests.base
    static func long(_ n: Int, _ c: String = "x") -> String { String(repeating: c, count: n) }
    static func list(_ n: Int, _ item: (Int) -> String) -> String { (0..<n).map(item).joined(separator: ",") }

    static let cases: [(String, String, String)] = [
        ("domain of white space and a tab", #"{"schema":"instruction_v1","domain":" \t ","count":1,"model":"fast"}"#, "domain"),
        ("domain with a control character", #"{"schema":"instruction_v1","domain":"customer\u0007support","count":1,"model":"fast"}"#, "domain"),
        ("domain with a line break", #"{"schema":"instruction_v1","domain":"customer\nsupport","count":1,"model":"fast"}"#, "domain"),
        ("license too long", #"{\#(base),"license":"\#(long(201))"}"#, "license"),
        ("tone too long", #"{\#(base),"constraints":{"tone":"\#(long(201))"}}"#, "constraints.tone"),
        ("system prompt with a NUL", #"{\#(base),"system_prompt":"be kind\u0000"}"#, "system_prompt"),
        ("21 style rules", #"{\#(base),"advanced":{"style_rules":[\#(list(21) { "\"rule \($0)\"" })]}}"#, "advanced.style_rules"),
        ("style rule too long", #"{\#(base),"advanced":{"style_rules":["\#(long(501))"]}}"#, "advanced.style_rules[0]"),
        ("empty style rule", #"{\#(base),"advanced":{"style_rules":["  "]}}"#, "advanced.style_rules[0]"),
        ("21 policy sections", #"{\#(base),"advanced":{"response_policy":{\#(list(21) { "\"s\($0)\":\"text\"" })}}}"#, "advanced.response_policy"),
        ("policy text too long", #"{\#(base),"advanced":{"response_policy":{"safe":"\#(long(2001))"}}}"#, "advanced.response_policy.safe"),
        ("101 categories", #"{\#(base),"advanced":{"categories":{\#(list(101) { "\"c\($0)\":{\"percentage\":1}" })}}}"#, "advanced.categories"),
        ("category description too long", #"{\#(base),"advanced":{"categories":{"a":{"percentage":50,"description":"\#(long(1001))"},"b":{"percentage":50}}}}"#,
         "advanced.categories.a.description"),
        ("category name too long", #"{\#(base),"advanced":{"categories":{"\#(long(101))":{"percentage":50},"b":{"percentage":50}}}}"#, "advanced.categories"),
        ("coverage value too long", #"{\#(base),"advanced":{"coverage":{"dimensions":[{"name":"d","values":["\#(long(101))"]}]}}}"#,
         "advanced.coverage.dimensions[0].values[0]"),
        ("empty coverage value", #"{\#(base),"advanced":{"coverage":{"dimensions":[{"name":"d","values":[""]}]}}}"#,
         "advanced.coverage.dimensions[0].values[0]"),
        ("51 metadata fields", #"{\#(base),"advanced":{"metadata_fields":[\#(list(51) { "{\"name\":\"f\($0)\",\"type\":\"uuid\"}" })]}}"#,
         "advanced.metadata_fields"),
        ("constant too long", #"{\#(base),"advanced":{"metadata_fields":[{"name":"x","type":"constant","value":"\#(long(1001))"}]}}"#,
         "advanced.metadata_fields[0].value"),
        ("51 techniques", #"{\#(base),"advanced":{"hard_negatives":{"enabled":true,"techniques":[\#(list(51) { _ in "\"edge_cases\"" })]}}}"#,
         "advanced.hard_negatives.techniques"),
        ("technique description too long", #"{\#(base),"advanced":{"hard_negatives":{"enabled":true,"techniques":[{"name":"x","description":"\#(long(1001))"}]}}}"#,
         "advanced.hard_negatives.techniques[0].description"),
        ("NaN hard-negative share", #"{\#(base),"advanced":{"hard_negatives":{"enabled":true,"percentage":"NaN"}}}"#, "advanced.hard_negatives.percentage"),
        ("NaN category share", #"{\#(base),"advanced":{"categories":{"a":{"percentage":"NaN"},"b":{"percentage":100}}}}"#, "advanced.categories.a.percentage"),
        ("infinite split", #"{\#(base),"advanced":{"output_split":{"train":"Infinity","test":20}}}"#, "advanced.output_split.train"),
        ("NaN axis share", #"{\#(RuleTests.conflict),"conflict_config":{"drive_pairs":[{"a":"x","b":"y"}],"axis_distribution":{"x_y":"NaN"}}}"#,
         "conflict_config.axis_distribution.x_y"),
        ("axis share above 100", #"{\#(RuleTests.conflict),"conflict_config":{"drive_pairs":[{"a":"x","b":"y"},{"a":"p","b":"q"}],"axis_distribution":{"x_y":150,"p_q":-50}}}"#,
         "conflict_config.axis_distribution"),
        ("override word too long", #"{\#(RuleTests.conflict),"conflict_config":{"drive_pairs":[{"a":"x","b":"y"}],"override_vocabulary":["\#(long(101))"]}}"#,
         "conflict_config.override_vocabulary[0]"),
        ("drive description too long", #"{\#(RuleTests.conflict),"conflict_config":{"drive_pairs":[{"axis_name":"s_a","drives":[{"name":"s","description":"\#(long(1001))"},{"name":"a"}]}]}}"#,
         "conflict_config.drive_pairs[0].drives[0].description"),
    ]

    @Test(arguments: cases.map { [$0.0, $0.1, $0.2] })
    func eachLimitBrokenAlone(_ c: [String]) {
        let errors = RuleTests.fieldErrors(c[1])
        let expected = c[0] == "axis share above 100" ? 2 : 1
        #expect(errors.count == expected, "\(c[0]): \(errors)")
        #expect(!errors.isEmpty && errors.allSatisfy { $0 == c[2] || $0.hasPrefix(c[2] + ".") || $0.hasPrefix(c[2] + "[") }, "\(c[0]): \(errors)")
    }

    @Test func atTheLimitsARequestIsValid() throws {
        let json = #"""
        {"schema":"instruction_v1","domain":"\#(Self.long(500, "d"))","count":10,"model":"fast","license":"\#(Self.long(200))",
         "system_prompt":"line one\nline\ttwo","advanced":{"style_rules":[\#(Self.list(20) { "\"rule \($0)\"" })],
         "response_policy":{\#(Self.list(20) { "\"s\($0)\":\"\(Self.long(2000))\"" })}}}
        """#
        #expect(RuleTests.fieldErrors(json).isEmpty)
    }

    /// The largest request the limits allow (categories and coverage each in turn, as only one may
    /// be given) is valid, and the bound used for frames before authentication covers it.
    @Test func theLargestRequestIsValidAndBoundsTheFrameLimit() throws {
        let largest = RequestLimits.largestRequest()
        let size = (try largest.serializedBytes() as [UInt8]).count
        #expect(size <= RequestLimits.largestGenerateRequestBytes)
        #expect(size > 500_000 && size < 2_000_000, "\(size)")
        // The same request as a JSON body (request_json), with its key, fits the bound too.
        var asJSON = PBGenerateRequest()
        asJSON.requestJson = RequestJSON.render(largest.request)
        asJSON.idempotencyKey = largest.idempotencyKey
        let jsonSize = (try asJSON.serializedBytes() as [UInt8]).count
        #expect(jsonSize <= RequestLimits.largestGenerateRequestBytes && asJSON.requestJson.utf8.count <= RequestLimits.requestJSONBytes)
        #expect(RequestLimits.largestGenerateRequestBytes < 3_000_000, "\(RequestLimits.largestGenerateRequestBytes)")
        for drop in ["categories", "coverage"] {
            var g = largest
            if drop == "categories" { g.request.advanced.categories = [:] } else { g.request.advanced.clearCoverage() }
            do {
                try Validator(maxCount: 1_000_000).validate(g)
            } catch let e as SpecError {
                Issue.record("without \(drop): \(e.description)")
            }
            #expect((try g.serializedBytes() as [UInt8]).count <= size)
        }
    }

    @Test func fieldErrorsAreCappedAndTheRestCounted() throws {
        var r = try RequestJSON.parse(#"{\#(Self.base)}"#)
        // 200,000 empty metadata fields: one error for the list, then the first 50 each break
        // their name (required, then unique) and type.
        r.advanced.metadataFields = Array(repeating: PBMetadataField(), count: 200_000)
        do {
            try Validator().validate(r)
            Issue.record("expected a validation error")
        } catch let e as SpecError {
            #expect(e.code == .validation)
            #expect(e.fieldErrors.count == RequestLimits.fieldErrors)
            #expect(e.fieldErrors.first?.field == "advanced.metadata_fields")
            #expect(e.message.contains("the request has 150 invalid fields"), "\(e.message)")
            #expect(e.message.contains("50 more are not"), "\(e.message)")
        }
    }

    @Test func refusedValuesAreQuotedShort() throws {
        let r = try RequestJSON.parse(#"{"schema":"\#(Self.long(100_000, "s"))","domain":"d","count":1,"model":"fast"}"#)
        do {
            try Validator().validate(r)
            Issue.record("expected a validation error")
        } catch let e as SpecError {
            #expect(e.fieldErrors.map(\.field) == ["schema"])
            #expect(e.fieldErrors[0].value.count <= RequestLimits.quotedValue + 3)
        }
    }

    @Test func aNaNConstantIsRefused() throws {
        var r = try RequestJSON.parse(#"{\#(Self.base),"advanced":{"metadata_fields":[{"name":"x","type":"constant","value":1}]}}"#)
        r.advanced.metadataFields[0].value = Google_Protobuf_Value(numberValue: .nan)
        #expect(throws: SpecError.self) { try Validator().validate(r) }
        r.advanced.metadataFields[0].value = Google_Protobuf_Value(numberValue: -.infinity)
        #expect(throws: SpecError.self) { try Validator().validate(r) }
        r.advanced.metadataFields[0].value = Google_Protobuf_Value(numberValue: 2.5)
        #expect(throws: Never.self) { try Validator().validate(r) }
    }

    @Test func anIdempotencyKeyOver255BytesIsAFieldErrorBesideTheOthers() throws {
        var g = PBGenerateRequest()
        g.request = try RequestJSON.parse(#"{"schema":"instruction_v1","domain":"d","count":0,"model":"fast"}"#)
        g.idempotencyKey = Self.long(255)
        do {
            try Validator().validate(g)
        } catch let e as SpecError {
            #expect(e.fieldErrors.map(\.field) == ["count"])
        }
        g.idempotencyKey = Self.long(128, "é")   // 256 bytes
        do {
            try Validator().validate(g)
            Issue.record("expected a validation error")
        } catch let e as SpecError {
            #expect(e.fieldErrors.map(\.field) == ["count", "idempotency_key"])
        }
    }

    /// The walk before decoding counts each list where it stands, refuses only lists far over
    /// their maximum, and leaves bytes it cannot walk to the decoder.
    @Test func listsFarOverTheirMaximumAreCountedBeforeDecoding() throws {
        func generate(_ r: PBJobRequest) throws -> [UInt8] {
            var g = PBGenerateRequest()
            g.request = r
            return try g.serializedBytes()
        }
        var r = try RequestJSON.parse(#"{\#(Self.base)}"#)
        r.advanced.styleRules = Array(repeating: "be brief", count: 80)        // 4x the maximum: decoded, validated
        r.advanced.coverage.dimensions = [PBCoverageDimension.with { $0.name = "d"; $0.values = Array(repeating: "v", count: 80) }]
        #expect(throws: Never.self) { try RequestPrescan.check(generateOrPlan: try generate(r)) }
        r.advanced.styleRules.append("one more")
        r.advanced.coverage.dimensions[0].values.append("v")
        do {
            try RequestPrescan.check(generateOrPlan: try generate(r))
            Issue.record("81 style rules and 81 values passed the count")
        } catch let e as SpecError {
            #expect(e.fieldErrors.map(\.field) == ["advanced.coverage.dimensions.values", "advanced.style_rules"])
            #expect(e.fieldErrors.map(\.value) == ["81", "81"])
        }
        var c = try RequestJSON.parse(#"{\#(RuleTests.conflict),"conflict_config":{"drive_pairs":[{"a":"x","b":"y"}]}}"#)
        c.conflictConfig.overrideVocabulary = Array(repeating: "w", count: 201)
        #expect(throws: SpecError.self) { try RequestPrescan.check(generateOrPlan: try generate(c)) }
        // Not a message at all: left to the decoder.
        #expect(throws: Never.self) { try RequestPrescan.check(generateOrPlan: [0x0A, 0xFF, 0xFF, 0x07]) }
        #expect(throws: Never.self) { try RequestPrescan.check(generateOrPlan: []) }
    }
}
