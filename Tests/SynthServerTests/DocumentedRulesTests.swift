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
}
