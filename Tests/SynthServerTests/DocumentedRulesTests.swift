import Foundation
import SynthAPI
import Testing
import SynthClient
import SynthProto

/// Rules of the documentation, each through the real server.
@Suite struct DocumentedRulesTests {
    /// Plans `request` and returns the refusal's field errors by field (nil when it was taken).
    static func refusal(_ client: SynthClient, _ request: PBJobRequest) async throws -> [String: PBFieldError]? {
        var plan = PBPlanRequest()
        plan.request = request
        plan.domainConfirmed = true
        do {
            _ = try await client.unary(Methods.plan, plan)
            return nil
        } catch let e as ClientError {
            #expect(e.code == .invalidArgument && e.status.errorCode == "VALIDATION_ERROR", "\(e)")
            return Dictionary(e.status.fieldErrors.map { ($0.field, $0) }, uniquingKeysWith: { a, _ in a })
        }
    }

    @Test func constraintsLanguageIsAnISO639_1Code() async throws {
        try await withHarness { h in
            let client = try await h.client(try h.org("acme"))
            for good in ["en", "zh", "es", "fr", "yo"] {
                var r = Harness.request(count: 10).request
                r.constraints.language = good
                #expect(try await Self.refusal(client, r) == nil, "\(good) was refused")
            }
            for bad in ["english", "EN", "en-US", "xx", "e", String(repeating: "a", count: 500)] {
                var r = Harness.request(count: 10).request
                r.constraints.language = bad
                r.count = 0  // a second error, reported with it
                let errors = try #require(try await Self.refusal(client, r), "\(bad.prefix(20)) was taken")
                #expect(errors["constraints.language"]?.rule.contains("ISO 639-1") == true, "\(bad.prefix(20)): \(errors)")
                #expect(errors["count"] != nil)
                #expect((errors["constraints.language"]?.value.count ?? 0) <= 100, "the value is quoted short")
            }
            await client.close()
        }
    }

    /// A metadata field may not take a key synthd writes itself (the record would hold it twice);
    /// `category` as `from_category`, the documentation's own example, writes the same value.
    @Test func metadataFieldsCannotTakeTheKeysSynthdWrites() async throws {
        try await withHarness { h in
            let client = try await h.client(try h.org("acme"))
            func field(_ name: String, _ type: String) -> PBMetadataField {
                var f = PBMetadataField()
                f.name = name
                f.type = type
                return f
            }
            var ok = Harness.request(count: 10).request
            ok.advanced.categories = ["billing": PBCategory.with { $0.percentage = 50 }, "access": PBCategory.with { $0.percentage = 50 }]
            ok.advanced.metadataFields = [field("category", "from_category"), field("run", "uuid")]
            #expect(try await Self.refusal(client, ok) == nil)
            for (name, type) in [("hard_negative", "uuid"), ("technique", "auto_increment"), ("invariant_soft_flags", "uuid"),
                                 ("coverage_region", "uuid"), ("category", "uuid")] {
                var r = Harness.request(count: 10).request
                r.advanced.metadataFields = [field("fine", "uuid"), field(name, type)]
                let errors = try #require(try await Self.refusal(client, r), "\(name) was taken")
                #expect(errors["advanced.metadata_fields[1].name"]?.rule.contains("synthd writes into metadata itself") == true, "\(name): \(errors)")
                #expect(errors.count == 1)
            }
            // The documented example runs, and its records hold each key once.
            let job = try await client.unary(Methods.generate, PBGenerateRequest.with { $0.request = ok }).job
            let done = try await h.waitForEnd(client, job.jobID)
            #expect(done.status == "succeeded" && done.accepted == 10)
            for r in try h.store.records(jobID: job.jobID, after: 0, limit: 100) {
                let text = String(decoding: r.json, as: UTF8.self)
                #expect(text.components(separatedBy: "\"category\"").count == 2, "\(text)")
            }
            await client.close()
        }
    }

    /// response_constraints hold for every response of a record: a preference pair whose
    /// rejected answer runs long is turned away (too_long) as one whose chosen answer does.
    @Test func responseConstraintsHoldForEveryResponse() async throws {
        try await withHarness(fakeArgs: ["--plant", "long_second:0.5", "--seed", "9"]) { h in
            let client = try await h.client(try h.org("acme"))
            var r = Harness.request(count: 12).request
            r.schema = "preference_v1"
            r.model = "balanced"
            r.advanced.responseConstraints.maxTokens.value = 300
            let job = try await client.unary(Methods.generate, PBGenerateRequest.with { $0.request = r }).job
            let done = try await h.waitForEnd(client, job.jobID)
            #expect(done.status == "succeeded" && done.accepted == 12, "\(done.status) \(done.accepted) \(done.detail)")
            // 300 tokens is about 225 words, 25% slack: no accepted response is longer.
            for rec in try h.store.records(jobID: job.jobID, after: 0, limit: 100) {
                let obj = try #require(try JSONSerialization.jsonObject(with: Data(rec.json)) as? [String: Any])
                for field in ["chosen", "rejected"] {
                    let words = (obj[field] as? String ?? "").split(whereSeparator: \.isWhitespace).count
                    #expect(words <= 282, "\(field) has \(words) words")
                }
            }
            let stored = try #require(try h.store.job(id: job.jobID))
            #expect(stored.formatProblems["too_long", default: 0] > 0, "\(stored.formatProblems)")
            await client.close()
        }
    }
}
