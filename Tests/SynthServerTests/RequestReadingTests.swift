import Foundation
import SynthAPI
import SynthClient
import SynthEngine
import SynthLLM
import SynthProto
import SynthSpec
import Testing

/// A request body read by the real server (`request_json`): every problem in one answer, and the
/// model rules that follow the generator actually used.
@Suite(.serialized) struct RequestReadingTests {
    /// Plans a JSON body; the refusal (nil when it was taken).
    static func plan(_ client: SynthClient, _ json: String) async throws -> (PBPlanResponse?, ClientError?) {
        var plan = PBPlanRequest()
        plan.requestJson = json
        plan.domainConfirmed = true
        do {
            return (try await client.unary(Methods.plan, plan), nil)
        } catch let e as ClientError {
            return (nil, e)
        }
    }

    static func fields(_ e: ClientError?) -> [String: PBFieldError] {
        Dictionary((e?.status.fieldErrors ?? []).map { ($0.field, $0) }, uniquingKeysWith: { a, _ in a })
    }

    @Test func everyProblemOfABodyComesInOneAnswer() async throws {
        try await withHarness { h in
            let client = try await h.client(try h.org("acme"))
            // An unknown field at the top and one deep down, wrong types at three depths, a key
            // given twice, an empty invariants list and a rule broken: all of them, each by path.
            let body = """
                {"schema": "instruction_v1", "domian": "support", "count": "ten", "model": "fast",
                 "constraints": {"language": "english"},
                 "advanced": {"invariants": [], "hard_negatives": {"enabled": true, "percentage": "lots", "colour": 1},
                              "output_split": {"train": 80, "train": 10, "test": [20]}},
                 "verified": "yes"}
                """
            let (ok, e) = try await Self.plan(client, body)
            #expect(ok == nil)
            #expect(e?.code == .invalidArgument && e?.status.errorCode == "VALIDATION_ERROR", "\(String(describing: e))")
            let f = Self.fields(e)
            #expect(f["domian"]?.rule.contains("unknown field") == true && f["domian"]?.rule.contains("did you mean domain?") == true, "\(f)")
            #expect(f["advanced.hard_negatives.colour"]?.rule.contains("unknown field") == true, "\(f)")
            #expect(f["count"]?.rule == "must be an integer" && f["count"]?.value == "\"ten\"", "\(f)")
            #expect(f["verified"]?.rule == "must be true or false", "\(f)")
            #expect(f["advanced.hard_negatives.percentage"]?.rule == "must be a number", "\(f)")
            #expect(f["advanced.output_split.train"]?.rule == "given more than once", "\(f)")
            #expect(f["advanced.output_split.test"]?.rule == "must be a number", "\(f)")
            #expect(f["advanced.invariants"]?.rule.contains("1 to 10") == true, "\(f)")
            #expect(f["constraints.language"]?.rule.contains("ISO 639-1") == true, "\(f)")
            #expect(f["domain"]?.rule.contains("required") == true, "\(f)")
            // A wrong-typed field is not also reported as missing, nor its map as summing wrong.
            #expect(e?.status.fieldErrors.filter { $0.field == "count" }.count == 1)
            #expect(f["advanced.output_split"] == nil, "\(f)")
            #expect(e?.status.fieldErrors.count == 10, "\(e?.status.fieldErrors.map(\.field) ?? [])")

            // Categories with coverage: the documented CONFLICTING_OPTIONS, with everything else.
            let both = """
                {"schema": "instruction_v1", "domain": "support", "count": 0, "model": "fastest",
                 "advanced": {"categories": {"a": {"percentage": 100}}, "coverage": {"dimensions": [{"name": "d", "values": ["x"]}]}}}
                """
            let (_, c) = try await Self.plan(client, both)
            #expect(c?.status.errorCode == "CONFLICTING_OPTIONS", "\(String(describing: c))")
            #expect(Set(Self.fields(c).keys) == ["advanced.coverage", "count", "model"], "\(Self.fields(c))")
            await client.close()
        }
    }

    @Test func jsonSyntaxIsReportedWithLineAndColumn() async throws {
        try await withHarness { h in
            let client = try await h.client(try h.org("acme"))
            for (body, line, column) in [("{\"schema\": \"instruction_v1\",\n  \"count\": 10,\n}", 3, 1),
                                         ("{\"domain\": \"caf\u{e9} \u{1F600}\", \"count\": 01}", 1, 31),
                                         ("[1, 2]", 0, 0), ("  ", 1, 3), ("{\"a\": tru}", 1, 7)] {
                let (ok, e) = try await Self.plan(client, body)
                #expect(ok == nil)
                #expect(e?.status.errorCode == "MALFORMED_REQUEST", "\(body): \(String(describing: e))")
                if line > 0 {
                    #expect(e?.status.fieldErrors.first?.value == "line \(line), column \(column)", "\(body): \(String(describing: e))")
                }
            }
            // request and request_json together are one too many.
            var plan = PBPlanRequest()
            plan.request = Harness.request(count: 5).request
            plan.requestJson = "{}"
            await #expect(throws: ClientError.self) { _ = try await client.unary(Methods.plan, plan) }
            await client.close()
        }
    }

    /// The largest and most crowded bodies cost what the limits say, not what their bytes ask.
    @Test func oversizedAndCrowdedBodiesAreRefusedCheaply() async throws {
        try await withHarness { h in
            let client = try await h.client(try h.org("acme"))
            let tooLong = "{\"domain\": \"" + String(repeating: "a", count: RequestLimits.requestJSONBytes) + "\"}"
            let (_, long) = try await Self.plan(client, tooLong)
            #expect(long?.status.errorCode == "MALFORMED_REQUEST" && long?.status.fieldErrors.first?.rule.contains("at most") == true,
                    "\(String(describing: long))")
            // More tiny values than any valid body has, well under the byte limit: stopped by the value budget.
            let crowded = "{\"advanced\": {\"style_rules\": [" + Array(repeating: "0", count: RequestLimits.requestJSONValues).joined(separator: ",") + "]}}"
            #expect(crowded.utf8.count < RequestLimits.requestJSONBytes)
            let (_, many) = try await Self.plan(client, crowded)
            #expect(many?.status.errorCode == "MALFORMED_REQUEST" && many?.status.fieldErrors.first?.rule.contains("more values") == true,
                    "\(String(describing: many))")
            // The largest valid request, as JSON, is taken.
            var largest = RequestLimits.largestRequest().request
            largest.advanced.clearCoverage()
            largest.count = 1000
            largest.clearModels()
            // The jobs it names to check against must exist (another rule, tested with the
            // contamination check): its ten longest ids are refused as not found.
            let (_, missing) = try await Self.plan(client, RequestJSON.render(largest))
            #expect(missing?.status.code == .notFound && missing?.status.message.contains("advanced.dedup_against[0]") == true,
                    "\(String(describing: missing))")
            largest.advanced.dedupAgainst = []
            let (fine, e) = try await Self.plan(client, RequestJSON.render(largest))
            #expect(e == nil && fine != nil, "\(String(describing: e))")
            await client.close()
        }
    }

    /// The spell check knows the trade's terms ("LLM evals" was queried as "evans", "pgvector" as
    /// "vector") and still queries a typo.
    @Test func technicalDomainsAreNotQueried() async throws {
        try await withHarness { h in
            let client = try await h.client(try h.org("acme"))
            for (domain, queried) in [("LLM evals for RAG pipelines", []), ("pgvector similarity search in Postgres", []),
                                      ("airflow dags feeding a dbt lakehouse", []), ("custmer suport for pgvector", ["custmer", "suport"])] {
                var plan = PBPlanRequest()
                plan.requestJson = #"{"schema":"instruction_v1","domain":"\#(domain)","count":10,"model":"fast"}"#
                do {
                    _ = try await client.unary(Methods.plan, plan)
                    #expect(queried.isEmpty, "\(domain) was not queried")
                } catch let e as ClientError {
                    #expect(e.status.errorCode == "DOMAIN_SPELL_CHECK" && e.status.suggestions.map(\.word) == queried,
                            "\(domain): \(e)")
                }
            }
            await client.close()
        }
    }

    /// Tiers that route to different models, as a real config does, and a provider of its own name.
    static func tiers(_ c: inout EngineConfig) {
        var vllm = c.providers["openai"]!
        vllm.name = "vllm"
        c.providers["vllm"] = vllm
        c.tiers = ["fast": ModelRoute(provider: "openai", model: "small-model"), "balanced": ModelRoute(provider: "openai", model: "mid-model"),
                   "diverse": ModelRoute(provider: "openai", model: "wide-model"), "deep": ModelRoute(provider: "openai", model: "big-model")]
    }

    @Test func theGeneratorUsedDecidesTierFloorAndPrice() async throws {
        try await withHarness(engine: Self.tiers) { h in
            let client = try await h.client(try h.org("acme"))
            // The deep tier's model under "model": "fast" is priced, and planned, as deep.
            let (deep, e1) = try await Self.plan(client, """
                {"schema": "instruction_v1", "domain": "support", "count": 1000, "model": "fast",
                 "models": {"generator": {"provider": "openai", "model": "big-model"}}}
                """)
            #expect(e1 == nil, "\(String(describing: e1))")
            #expect(deep?.plan.tier == "deep" && deep?.cost.baseUsd == 25.0, "\(String(describing: deep?.plan)) \(String(describing: deep?.cost))")
            #expect(deep?.plan.generator.model == "big-model")
            // preference_v1 needs balanced or higher, also when the generator is named.
            let (_, e2) = try await Self.plan(client, """
                {"schema": "preference_v1", "domain": "support", "count": 10,
                 "models": {"generator": {"provider": "openai", "model": "small-model"}}}
                """)
            #expect(Self.fields(e2)["models.generator.model"]?.rule.contains("balanced or higher") == true, "\(String(describing: e2))")
            // A critic alone, beside a tier.
            let (critic, e3) = try await Self.plan(client, """
                {"schema": "preference_v1", "domain": "support", "count": 10, "model": "balanced",
                 "models": {"critic": {"provider": "vllm", "model": "judge-model"}}}
                """)
            #expect(e3 == nil, "\(String(describing: e3))")
            #expect(critic?.plan.critic.provider == "vllm" && critic?.plan.critic.model == "judge-model" && critic?.plan.generator.model == "mid-model")
            // Any provider the config defines; a model no tier uses is priced at the unlisted tier (deep).
            let (pool, e4) = try await Self.plan(client, """
                {"schema": "instruction_v1", "domain": "support", "count": 1000,
                 "models": {"generator": {"provider": "vllm", "model": "llama-70b"}}}
                """)
            #expect(e4 == nil && pool?.plan.tier == "deep" && pool?.plan.generator.provider == "vllm", "\(String(describing: e4))")
            let (_, e5) = try await Self.plan(client, """
                {"schema": "instruction_v1", "domain": "support", "count": 10,
                 "models": {"generator": {"provider": "nowhere", "model": "m"}, "critic": {"provider": "elsewhere", "model": ""}}}
                """)
            let f5 = Self.fields(e5)
            #expect(f5["models.generator.provider"]?.rule.contains("openai, vllm") == true, "\(f5)")
            #expect(f5["models.critic.provider"] != nil && f5["models.critic.model"] != nil, "\(f5)")
            await client.close()

            // A subscription may not use the deep tier's model, whatever the shorthand says.
            let sub = try await h.client(try h.org("subs", plan: "subscription", quota: 10_000))
            var g = PBGenerateRequest()
            g.requestJson = """
                {"schema": "instruction_v1", "domain": "support", "count": 10, "model": "fast",
                 "models": {"generator": {"provider": "openai", "model": "big-model"}}}
                """
            g.domainConfirmed = true
            do {
                _ = try await sub.unary(Methods.generate, g)
                Issue.record("a subscription ran the deep tier's model")
            } catch let e as ClientError {
                #expect(e.status.errorCode == "PLAN_NOT_ALLOWED", "\(e)")
            }
            await sub.close()
        }
    }
}
