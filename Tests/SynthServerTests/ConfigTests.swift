import Foundation
import Testing

/// The config file as an operator meets it: the real synthd binary checks it (`synthd config
/// check`, and `synthd serve` at start) and writes its documentation (`synthd config docs`).
@Suite struct ConfigTests {
    static func write(_ text: String) throws -> (dir: String, file: String) {
        let dir = "/tmp/sdcfg-" + String(UUID().uuidString.prefix(8))
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let file = dir + "/config.json"
        try Data(text.utf8).write(to: URL(fileURLWithPath: file))
        return (dir, file)
    }

    /// A fleet's endpoints, the running limit and org weights are checked like every other key.
    @Test func fleetsAndSharesAreCheckedToo() async throws {
        let (dir, file) = try Self.write("""
            {"engine": {"providers": {"fleet": {"kind": "openai", "base_url": "http://x/v1",
                                                "endpoints": [{"base_url": "http://10.0.0.5:8000/v1", "max_in_flight": 0, "wieght": 2}, 5]},
                                      "none": {"kind": "openai"},
                                      "empty": {"kind": "openai", "endpoints": []}},
                        "max_running_jobs": 0, "org_weights": {"acme": -1}}}
            """)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let r = try await ProcessTests.runSynthd(["config", "check", file])
        #expect(r.status == 2)
        let expected = [
            "engine.providers.fleet.endpoints[0].max_in_flight: must be at least 1; found 0",
            "engine.providers.fleet.endpoints[0].wieght: unknown key; did you mean weight?",
            "engine.providers.fleet.endpoints[1]: must be an object ({...}); found the number 5",
            "engine.providers.empty.endpoints: must not be empty",
            "engine.max_running_jobs: must be at least 1; found 0",
            "engine.org_weights.acme: must be at least",
            "engine.providers.fleet: give base_url or endpoints, not both",
            "engine.providers.none: needs base_url (one server) or endpoints (several)",
        ]
        for line in expected { #expect(r.err.contains(line), "missing \(line) in:\n\(r.err)") }
        #expect(r.err.contains("has \(expected.count) problems"), "\(r.err)")
        // A good fleet passes.
        let (dir2, good) = try Self.write("""
            {"engine": {"providers": {"fleet": {"kind": "openai", "max_in_flight": 32,
                                                "endpoints": [{"base_url": "http://10.0.0.5:8000/v1"},
                                                              {"base_url": "http://10.0.0.6:8000/v1", "max_in_flight": 128, "weight": 2}]}},
                        "tiers": {"fast": {"provider": "fleet", "model": "m"}}, "critic": {"provider": "fleet", "model": "m"},
                        "max_running_jobs": 4, "org_weights": {"acme": 2.5}}}
            """)
        defer { try? FileManager.default.removeItem(atPath: dir2) }
        let ok = try await ProcessTests.runSynthd(["config", "check", good])
        #expect(ok.status == 0, "\(ok.err)")
    }

    @Test func everyProblemIsNamedByItsPathAtOnce() async throws {
        let (dir, file) = try Self.write("""
            {"server": {"tcp": "127.0.0.1:0", "max_connections": "many", "rate_limit_per_minut": 10},
             "engine": {"providers": {"vllm": {"kind": "openai", "max_inflight": 8},
                                      "other": {"kind": "azure", "base_url": "http://127.0.0.1:1/v1"}},
                        "tiers": {"fast": {"provider": "vllm", "model": "m"}, "quick": {"provider": "vllm", "model": "m"}},
                        "critic": {"provider": "nowhere", "model": "m"},
                        "job_concurrency": 0},
             "pricing": {"tiers": {"fast": {"preference_per_1k": null, "instruction_per_1k": -1}}},
             "logging": {}}
            """)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let r = try await ProcessTests.runSynthd(["config", "check", file])
        #expect(r.status == 2)
        let expected = [
            "server.max_connections: must be a whole number; found the string \"many\"",
            "server.rate_limit_per_minut: unknown key; did you mean rate_limit_per_minute?",
            "engine.providers.vllm.max_inflight: unknown key; did you mean max_in_flight?",
            "engine.providers.vllm: needs base_url (one server) or endpoints (several)",
            "engine.providers.other.kind: must be one of openai or anthropic; found the string \"azure\"",
            "engine.tiers.quick: unknown tier; the tiers are fast, balanced, diverse or deep",
            "engine.job_concurrency: must be at least 1; found 0",
            "engine.critic.provider: names \"nowhere\", which is not defined under engine.providers (defined: other or vllm)",
            "pricing.tiers.fast.instruction_per_1k: must be at least 0; found -1",
            "logging: unknown key; the keys here are server, engine, pricing or local_model",
        ]
        for line in expected { #expect(r.err.contains(line), "missing \(line) in:\n\(r.err)") }
        #expect(r.err.contains("has \(expected.count) problems"), "\(r.err)")
        // No decoder dump: every line is a path and a sentence.
        #expect(!r.err.contains("CodingKeys") && !r.err.contains("Swift.DecodingError"), "\(r.err)")

        // `serve` refuses the same file at start, with the same lines, before it listens.
        let serve = try await ProcessTests.runSynthd(["serve", "--data", dir + "/data", "--unix", dir + "/s.sock", "--config", file])
        #expect(serve.status == 2)
        for line in expected { #expect(serve.err.contains(line), "missing \(line) in:\n\(serve.err)") }
        #expect(!FileManager.default.fileExists(atPath: dir + "/s.sock"))
    }

    @Test func routesMustNameADefinedProviderAndSyntaxErrorsHaveALine() async throws {
        let (dir, file) = try Self.write("""
            {"engine": {"providers": {"vllm": {"kind": "openai", "base_url": "http://127.0.0.1:1/v1"}},
                        "tiers": {"fast": {"provider": "vlm", "model": "m"}},
                        "critic": {"provider": "vllm", "model": "m"}}}
            """)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let r = try await ProcessTests.runSynthd(["config", "check", file])
        #expect(r.status == 2)
        #expect(r.err.contains("engine.tiers.fast.provider: names \"vlm\", which is not defined under engine.providers (defined: vllm)"), "\(r.err)")

        // The README's example, word for word.
        try Data("""
            {"engine": {"providers": {"vllm": {"kind": "openai", "base_url": "http://10.0.0.5:8000/v1", "max_inflight": 128}},
                        "tiers": {"fast": {"provider": "vlm", "model": "m"}}}}
            """.utf8).write(to: URL(fileURLWithPath: dir + "/config.json"))
        let example = try await ProcessTests.runProcess("synthd", ["config", "check", "config.json"], directory: dir)
        let readme = try String(contentsOf: repoRoot.appendingPathComponent("README.md"), encoding: .utf8)
        #expect(example.status == 2)
        #expect(readme.contains("$ synthd config check config.json\n" + example.err), "README shows another output than:\n\(example.err)")

        try Data("{\"server\": {\"tcp\": \"127.0.0.1:0\",}\n}".utf8).write(to: URL(fileURLWithPath: file))
        let bad = try await ProcessTests.runSynthd(["config", "check", file])
        #expect(bad.status == 2)
        #expect(bad.err.contains("is not valid JSON at line 1, column"), "\(bad.err)")

        let missing = try await ProcessTests.runSynthd(["config", "check", dir + "/nope.json"])
        #expect(missing.status == 2 && missing.err.contains("nope.json: cannot be read"), "\(missing.err)")
    }

    @Test func theConfigsTheProjectShipsAndUsesAreValid() async throws {
        // A file with every key passes.
        let (dir, file) = try Self.write("""
            {"server": {"unix": "/tmp/x.sock", "tcp": "127.0.0.1:0", "grpc": "127.0.0.1:0", "max_frame_size": 1048576,
                        "idle_timeout_seconds": 60, "rate_limit_per_minute": 0, "rate_limit_burst": 5, "max_connections": 10,
                        "max_calls_per_connection": 4, "unauthenticated_idle_timeout_seconds": 2, "map_size_mb": 64,
                        "tls": {"certificate_chain": "c.pem", "private_key": "k.pem", "client_ca": "ca.pem"},
                        "insecure_tcp": false, "unix_group": "synthd"},
             "engine": {"providers": {"vllm": {"kind": "openai", "base_url": "http://127.0.0.1:1/v1", "api_key": "sk-x",
                                               "name": "vllm", "max_in_flight": 8, "max_retries": 2, "connect_timeout_seconds": 1,
                                               "request_timeout_seconds": 30, "prices_per_million": {"m": {"prompt": 0.1, "completion": 0.2}},
                                               "sampling": {"temperature": 0.7}, "string_max_length": 400, "string_min_length": 1,
                                               "requests_per_minute": 600, "tokens_per_minute": 100000}},
                        "tiers": {"fast": {"provider": "vllm", "model": "m"}}, "critic": {"provider": "local", "model": "m"},
                        "job_concurrency": 16, "attempts_per_record": 4, "attempt_slack": 10, "max_count": 1000,
                        "provider_unreachable_timeout_seconds": 30, "unlisted_model_tier": "balanced"},
             "pricing": {"tiers": {"fast": {"instruction_per_1k": 0.5, "preference_per_1k": null, "in_subscription": true}},
                         "verified_per_1k": 5, "invariants_per_1k": 0.04, "llm_assessed_per_1k": 5, "subscription_verified_multiplier": 1.5},
             "local_model": {"enabled": true, "server": "/x/llama-server", "model": "/x/m.gguf", "model_name": "m", "parallel": 2,
                             "context_size": 4096, "startup_timeout_seconds": 60, "extra_args": ["--threads", "2"],
                             "sampling": {"temperature": 0.8}, "string_max_length": 400, "string_min_length": 12,
                             "attempts_per_record": 12, "stand_in_for": ["openai"]}}
            """)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let full = try await ProcessTests.runSynthd(["config", "check", file])
        #expect(full.status == 0 && full.out.contains("ok"), "\(full.err)")

        // Every config the README shows (its JSON blocks whose keys are the file's parts) passes.
        let readme = try String(contentsOf: repoRoot.appendingPathComponent("README.md"), encoding: .utf8)
        let parts: Set<String> = ["server", "engine", "pricing", "local_model"]
        var checked = 0
        for block in readme.components(separatedBy: "```json\n").dropFirst() {
            let text = block.components(separatedBy: "```")[0]
            guard let object = try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any],
                  !object.isEmpty, Set(object.keys).isSubset(of: parts) else { continue }
            try Data(text.utf8).write(to: URL(fileURLWithPath: file))
            let r = try await ProcessTests.runSynthd(["config", "check", file])
            #expect(r.status == 0, "README config:\n\(text)\n\(r.err)")
            checked += 1
        }
        #expect(checked >= 2, "README config blocks checked: \(checked)")
    }

    @Test func docsConfigMdIsWhatSynthdWritesAndNamesEveryKey() async throws {
        let r = try await ProcessTests.runSynthd(["config", "docs"])
        #expect(r.status == 0)
        let committed = try String(contentsOf: repoRoot.appendingPathComponent("docs/config.md"), encoding: .utf8)
        #expect(committed == r.out, "docs/config.md differs from `synthd config docs`: regenerate it with `.build/debug/synthd config docs > docs/config.md`")
        // The keys an operator asked after are there, with their defaults.
        for row in ["| `api_key` | string |", "| `attempts_per_record` | number ≥ 1 | 3 |", "| `max_count` | integer ≥ 1 | 100000 |",
                    "## `engine.providers.<provider>`", "| `rate_limit_per_minute` | integer ≥ 0 | 60 |"] {
            #expect(r.out.contains(row), "\(row)")
        }
    }
}
