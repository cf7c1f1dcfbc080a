import SynthSpec

/// Every key the config file may hold: its type, its default and what it does. One table serves
/// three ends: `synthd config check` and `synthd serve` reject a file with an unknown key, a wrong
/// type or a missing field, naming its path (all problems at once); `synthd config docs` writes
/// docs/config.md from it (a test holds the file to it); and nothing else lists the keys, so the
/// reader, the check and the documentation cannot drift apart.
enum ConfigSchema {
    indirect enum Shape: Sendable {
        case object([Key])
        /// An object whose keys are names the operator picks (`placeholder` in the docs).
        case map(placeholder: String, Shape)
        case string
        case choice([String])
        case integer(least: Int64)
        case number(least: Double)
        case boolean
        case strings
        /// A list of values of one shape, at most `most` of them.
        case list(Shape, most: Int)
        /// The shape, or null.
        case orNull(Shape)
    }

    struct Key: Sendable {
        var name: String
        var shape: Shape
        var required = false
        /// The default as the docs give it; empty for none.
        var defaultText: String
        var doc: String
    }

    static func key(_ name: String, _ shape: Shape, default d: String = "", required: Bool = false, _ doc: String) -> Key {
        Key(name: name, shape: shape, required: required, defaultText: d, doc: doc)
    }

    static let tierNames = ["fast", "balanced", "diverse", "deep"]

    static let root: Shape = .object([
        key("server", .object(server), "Listeners, limits and TLS."),
        key("engine", .object(engine), "Providers, the models behind each tier, the critic and the engine's limits. Without it (and with no cloud key in the environment) synthd runs the bundled local model."),
        key("pricing", .object(pricing), "The price list, per 1,000 accepted records (the documented prices by default)."),
        key("local_model", .object(localModel), "A llama.cpp server that synthd starts, watches and stops itself."),
    ])

    static let server: [Key] = [
        key("unix", .string, default: "~/.synthd/synthd.sock", "Unix socket path. Used when no listener is named at all; `--unix` overrides it."),
        key("tcp", .string, "TCP listener, `HOST:PORT` (port 0 picks a free one). Plain TCP only on a loopback address unless `insecure_tcp`; `--tcp` overrides it."),
        key("grpc", .string, "Standard gRPC (HTTP/2) listener, `HOST:PORT`, beside the framed protocol: same keys, TLS and limits."),
        key("metrics", .string, "Prometheus metrics listener, `HOST:PORT`: `GET /metrics`, plain HTTP, no key. Bind it to an address only your monitoring reaches. `--metrics` overrides it."),
        key("retention_days", .number(least: 0.000001), default: "none (kept forever)", "Ended jobs (succeeded, failed, cancelled) that finished longer ago than this are deleted with their records, events, manifests and exports, as DeleteJob does. What orgs were billed stays."),
        key("export_retention_days", .number(least: 0.000001), default: "none", "Export files not written for this long are removed (an ended job's export is made again when it is next read). Export files of deleted jobs are always removed."),
        key("retention_sweep_seconds", .number(least: 0.1), default: "3600", "How often the retention sweep runs (when `retention_days` or `export_retention_days` is set)."),
        key("max_frame_size", .integer(least: 1024), default: "16777216", "Largest frame in bytes, either way."),
        key("idle_timeout_seconds", .number(least: 0.1), default: "300", "A connection with no open call and no traffic for this long is closed."),
        key("rate_limit_per_minute", .integer(least: 0), default: "60", "Calls per org per minute over both listeners; 0 for no limit."),
        key("rate_limit_burst", .integer(least: 1), default: "60", "How many of an org's calls may come at once."),
        key("max_connections", .integer(least: 1), default: "256", "Connections open at once; one more is told so and closed."),
        key("max_calls_per_connection", .integer(least: 1), default: "64", "Calls open at once on one connection."),
        key("unauthenticated_idle_timeout_seconds", .number(least: 0.1), default: "10", "A connection that has not authenticated a call closes after this long with no open call."),
        key("map_size_mb", .integer(least: 1), default: "4096", "The LMDB map the store starts with, in MiB; it doubles whenever it fills."),
        key("tls", .object(tls), "TLS on the TCP and gRPC listeners (PEM files). `--tls-cert`, `--tls-key` and `--tls-client-ca` override it. SIGHUP reloads the files."),
        key("insecure_tcp", .boolean, default: "false", "Allow plain TCP on an address other machines can reach (keys and records cross the network in clear text)."),
        key("unix_group", .string, "A group whose members may use the Unix socket too (mode 0660); without it, the owner only (0600)."),
    ]

    static let tls: [Key] = [
        key("certificate_chain", .string, required: true, "The server's certificate chain (PEM file)."),
        key("private_key", .string, required: true, "The certificate's private key (PEM file)."),
        key("client_ca", .string, "Turns on mutual TLS: clients must show a certificate signed by this CA (PEM file)."),
    ]

    static let route: [Key] = [
        key("provider", .string, required: true, "A provider named under `engine.providers`."),
        key("model", .string, required: true, "The model's name as the provider knows it."),
    ]

    static let engine: [Key] = [
        key("providers", .map(placeholder: "<provider>", .object(provider)), default: "openai and anthropic at their vendors' URLs",
            "The model servers synthd sends requests to, by a name of your choice. A provider named `openai` or `anthropic` takes its key (and base URL) from `OPENAI_API_KEY`/`OPENAI_BASE_URL` or `ANTHROPIC_API_KEY`/`ANTHROPIC_BASE_URL` when set."),
        key("tiers", .map(placeholder: "<tier>", .object(route)), default: "fast, balanced, diverse: openai; deep: anthropic",
            "The provider and model behind each tier (fast, balanced, diverse, deep)."),
        key("critic", .object(route), default: "openai, gpt-4o-mini", "The model that judges records (verified, invariants, llm_assessed)."),
        key("job_concurrency", .integer(least: 1), default: "64", "Requests in flight per job."),
        key("attempts_per_record", .number(least: 1), default: "3", "A job gives up after this many requests per planned record (plus `attempt_slack`), ending with what it has."),
        key("attempt_slack", .integer(least: 0), default: "50", "Requests a job may spend beyond `attempts_per_record` times its count."),
        key("max_count", .integer(least: 1), default: "100000", "The largest `count` a request may ask for."),
        key("provider_unreachable_timeout_seconds", .number(least: 1), default: "600", "How long a job waits for a provider it cannot connect to at all before it ends with what it has, naming the provider and the last error. Clamped to a day."),
        key("unlisted_model_tier", .choice(tierNames), default: "deep", "The tier a request's `models.generator` that no tier routes to is priced at and held to."),
        key("max_running_jobs", .integer(least: 1), default: "16", "Jobs generating at once, all orgs together. More wait (queued, their place in the job's detail); a freed place goes to the org with the fewest running jobs relative to its weight, then to its oldest queued job."),
        key("org_weights", .map(placeholder: "<org>", .number(least: 0.000001)), default: "1 for every org", "Each org's share relative to the others: of every provider's capacity (requests in flight) and of running places. An org not named has weight 1."),
        key("org_provider_budgets_usd", .map(placeholder: "<org>", .number(least: 0)), default: "none", "What each org's jobs may spend with providers in a calendar month (UTC), in dollars at the providers' `prices_per_million`; `*` for every org not named. A job stops sending when its next request could pass it, and ends with what it has."),
    ]

    static let provider: [Key] = [
        key("kind", .choice(["openai", "anthropic"]), required: true, "The wire format: `openai` (Chat Completions: OpenAI, vLLM, SGLang, llama.cpp's server, TGI, Ollama) or `anthropic` (the Messages API)."),
        key("base_url", .string, default: "required unless `endpoints`", "The API's base URL, e.g. `https://api.openai.com/v1` or `http://10.0.0.5:8000/v1`."),
        key("endpoints", .list(.object(endpoint), most: 256), default: "one: `base_url`", "Several servers behind this provider (a model fleet: vLLM, SGLang, llama.cpp's server, TGI), instead of `base_url`. Each request goes to the endpoint with the fewest outstanding requests relative to its `max_in_flight` times its `weight`; one that fails requests in a row is taken out and probed back in."),
        key("eject_after_failures", .integer(least: 1), default: "3", "An endpoint that fails this many requests in a row (no connection, a 5xx, a lost answer) is taken out of the pool."),
        key("eject_seconds", .number(least: 0.01), default: "1", "How long an endpoint is first taken out; doubled each time it fails its probe, up to `eject_max_seconds`. Then one probe request: an answer brings it back."),
        key("eject_max_seconds", .number(least: 0.01), default: "60", "The longest an endpoint is taken out at a time."),
        key("api_key", .string, "The provider's key. Never logged, stored or sent anywhere but to this provider. Prefer the environment variables for `openai` and `anthropic`."),
        key("name", .string, default: "the key's name", "The provider's name in records' provenance."),
        key("max_in_flight", .integer(least: 1), default: "64", "Requests in flight to this provider, all jobs together (with `endpoints`: to each endpoint that sets none)."),
        key("max_retries", .integer(least: 0), default: "8", "Retries of a request that failed on the way (429, 5xx, a lost connection), with backoff."),
        key("connect_timeout_seconds", .number(least: 0.1), default: "10", "Time to connect."),
        key("request_timeout_seconds", .number(least: 0.1), default: "120", "Time for a whole answer."),
        key("prices_per_million", .map(placeholder: "<model>", .object(tokenPrice)), default: "{}", "What the provider charges per million tokens, by model: the provider cost in usage and reports, and what spend caps and budgets are measured in. A key `*` prices every model not named."),
        key("batch_price_factor", .number(least: 0), default: "0.5", "Delivery `batch`: the provider's batch price as a share of its standard price (OpenAI's Batch API and Anthropic's Message Batches charge half)."),
        key("batch_poll_seconds", .number(least: 0.01), default: "30", "Delivery `batch`: how often a pending batch is asked about."),
        key("batch_max_requests", .integer(least: 1), default: "10000", "Delivery `batch`: the most requests one batch holds (the providers take up to 50,000 and 100,000)."),
        key("sampling", .map(placeholder: "<field>", .number(least: -1e9)), default: "{}", "Sampling fields sent with every request, e.g. `{\"temperature\": 0.9}`."),
        key("string_max_length", .integer(least: 1), "maxLength put on every string of the structured-output schema (for small local models)."),
        key("string_min_length", .integer(least: 0), "minLength put on every string of the structured-output schema."),
        key("requests_per_minute", .integer(least: 1), "The provider's request rate limit; synthd stays under it."),
        key("tokens_per_minute", .integer(least: 1), "The provider's token rate limit; synthd stays under it."),
    ]

    static let endpoint: [Key] = [
        key("base_url", .string, required: true, "The server's base URL, e.g. `http://10.0.0.5:8000/v1`."),
        key("api_key", .string, default: "the provider's", "Its own key, when it has one."),
        key("max_in_flight", .integer(least: 1), default: "the provider's `max_in_flight`", "Requests in flight to this server at most."),
        key("weight", .number(least: 0.000001), default: "1", "How much it is preferred relative to its capacity: it gets requests while its outstanding requests over `max_in_flight × weight` are the fewest."),
    ]

    static let tokenPrice: [Key] = [
        key("prompt", .number(least: 0), required: true, "Dollars per million prompt tokens."),
        key("completion", .number(least: 0), required: true, "Dollars per million completion tokens."),
    ]

    static let pricing: [Key] = [
        key("tiers", .map(placeholder: "<tier>", .object(tierPrice)), default: "the documented prices",
            "Per tier (fast, balanced, diverse, deep); a tier or field left out keeps its documented price."),
        key("verified_per_1k", .number(least: 0), default: "5.00", "The `verified` surcharge per 1,000 records."),
        key("invariants_per_1k", .number(least: 0), default: "0.04", "The invariants surcharge per 1,000 records."),
        key("llm_assessed_per_1k", .number(least: 0), default: "5.00", "The `llm_assessed` surcharge per 1,000 records (waived with `verified`)."),
        key("subscription_verified_multiplier", .number(least: 0), default: "1.5", "How many quota records a verified record counts for on a subscription."),
    ]

    static let tierPrice: [Key] = [
        key("instruction_per_1k", .number(least: 0), default: "fast 0.50, balanced 3.00, diverse 8.00, deep 25.00", "instruction_v1 and eval_v1, per 1,000 records."),
        key("preference_per_1k", .orNull(.number(least: 0)), default: "fast null, balanced 4.00, diverse 10.00, deep 30.00", "preference_v1 and conflict_v1, per 1,000 records; null where the tier cannot run them."),
        key("in_subscription", .boolean, default: "true, deep false", "Whether subscriptions include the tier."),
    ]

    static let localModel: [Key] = [
        key("enabled", .boolean, default: "true", "`false` turns the local model off even when no cloud key is configured."),
        key("server", .string, default: "llama-server in .venv-local", "The `llama-server` binary."),
        key("model", .string, default: "the bundled SmolLM2 GGUF in .venv-local", "The GGUF model file."),
        key("model_name", .string, default: "the GGUF file's name", "The model's name in requests and records."),
        key("parallel", .integer(least: 1), default: "two per core, at most 8", "Parallel decoding slots."),
        key("context_size", .integer(least: 1), default: "llama-server's own", "llama-server's `--ctx-size`, shared by the slots."),
        key("startup_timeout_seconds", .number(least: 1), default: "120", "How long synthd waits for the model server's health check at start."),
        key("extra_args", .strings, default: "[]", "More llama-server arguments, passed as they are."),
        key("sampling", .map(placeholder: "<field>", .number(least: -1e9)), default: "temperature 0.8, min_p 0.1, repeat_penalty 1.1 over 64 tokens", "Sampling fields sent with every request."),
        key("string_max_length", .integer(least: 1), default: "400", "maxLength on every string of the structured-output schema."),
        key("string_min_length", .integer(least: 0), default: "12", "minLength on every string of the structured-output schema."),
        key("attempts_per_record", .number(least: 1), default: "12", "Requests per planned record before a job gives up."),
        key("stand_in_for", .strings, default: "[]", "Providers the local model answers for, by name (say `[\"openai\", \"anthropic\"]`), so that requests naming them run offline."),
    ]

    // MARK: - checking a file

    /// Every problem with `value` as a config file, each as `path: sentence`, in file order.
    static func problems(in value: JSONValue) -> [String] {
        var out: [String] = []
        check(value, .object(rootKeys), path: "", &out)
        return out
    }

    private static var rootKeys: [Key] {
        if case .object(let keys) = root { return keys }
        return []
    }

    private static func check(_ value: JSONValue, _ shape: Shape, path: String, _ out: inout [String]) {
        let at = path.isEmpty ? "the file" : path
        switch shape {
        case .object(let keys):
            guard case .object(let pairs) = value else {
                out.append("\(at): must be an object ({...}); found \(describe(value))")
                return
            }
            var seen = Set<String>()
            for (name, v) in pairs {
                let p = path.isEmpty ? name : "\(path).\(name)"
                guard seen.insert(name).inserted else {
                    out.append("\(p): given twice")
                    continue
                }
                guard let key = keys.first(where: { $0.name == name }) else {
                    let near = keys.map(\.name).filter { distance($0, name) <= 2 }
                    let hint = near.isEmpty ? "the keys here are \(list(keys.map(\.name)))" : "did you mean \(near[0])?"
                    out.append("\(p): unknown key; \(hint)")
                    continue
                }
                check(v, key.shape, path: p, &out)
            }
            for key in keys where key.required && !seen.contains(key.name) {
                let p = path.isEmpty ? key.name : "\(path).\(key.name)"
                out.append("\(p): missing; it is required (\(lowercasedFirst(key.doc)))")
            }
        case .map(_, let inner):
            guard case .object(let pairs) = value else {
                out.append("\(at): must be an object ({...}); found \(describe(value))")
                return
            }
            var seen = Set<String>()
            for (name, v) in pairs {
                let p = "\(path).\(name)"
                guard seen.insert(name).inserted else {
                    out.append("\(p): given twice")
                    continue
                }
                if path.hasSuffix("tiers"), !tierNames.contains(name) {
                    out.append("\(p): unknown tier; the tiers are \(list(tierNames))")
                    continue
                }
                check(v, inner, path: p, &out)
            }
        case .string:
            if case .string = value { return }
            out.append("\(at): must be a string; found \(describe(value))")
        case .choice(let options):
            guard case .string(let s) = value else {
                out.append("\(at): must be one of \(list(options)); found \(describe(value))")
                return
            }
            if !options.contains(s) { out.append("\(at): must be one of \(list(options)); found \(describe(value))") }
        case .integer(let least):
            let n: Int64
            switch value {
            case .int(let i): n = i
            case .number(let d) where d.isFinite && d == d.rounded() && abs(d) < 9e18: n = Int64(d)
            default:
                out.append("\(at): must be a whole number; found \(describe(value))")
                return
            }
            if n < least { out.append("\(at): must be at least \(least); found \(n)") }
        case .number(let least):
            guard let d = value.doubleValue, d.isFinite else {
                out.append("\(at): must be a number; found \(describe(value))")
                return
            }
            if d < least { out.append("\(at): must be at least \(trim(least)); found \(trim(d))") }
        case .boolean:
            if case .bool = value { return }
            out.append("\(at): must be true or false; found \(describe(value))")
        case .strings:
            guard case .array(let items) = value else {
                out.append("\(at): must be a list of strings; found \(describe(value))")
                return
            }
            for (i, item) in items.enumerated() {
                if case .string = item { continue }
                out.append("\(at)[\(i)]: must be a string; found \(describe(item))")
            }
        case .list(let inner, let most):
            guard case .array(let items) = value else {
                out.append("\(at): must be a list ([...]); found \(describe(value))")
                return
            }
            if items.isEmpty { out.append("\(at): must not be empty") }
            if items.count > most { out.append("\(at): at most \(most) entries; found \(items.count)") }
            for (i, item) in items.prefix(most).enumerated() { check(item, inner, path: "\(path)[\(i)]", &out) }
        case .orNull(let inner):
            if case .null = value { return }
            check(value, inner, path: path, &out)
        }
    }

    /// What a value is, for an error: its kind, and a short quote of it.
    static func describe(_ v: JSONValue) -> String {
        switch v {
        case .null: return "null"
        case .bool(let b): return b ? "true" : "false"
        case .int(let i): return "the number \(i)"
        case .number(let d): return "the number \(trim(d))"
        case .string(let s):
            let short = s.count > 40 ? String(s.prefix(40)) + "..." : s
            return "the string \"\(short)\""
        case .array: return "a list"
        case .object: return "an object"
        }
    }

    static func trim(_ d: Double) -> String {
        d == d.rounded() && abs(d) < 1e15 ? String(Int64(d)) : "\(d)"
    }

    static func list(_ names: [String]) -> String {
        guard names.count > 1 else { return names.first ?? "" }
        return names.dropLast().joined(separator: ", ") + " or " + names.last!
    }

    static func lowercasedFirst(_ s: String) -> String {
        let t = s.hasSuffix(".") ? String(s.dropLast()) : s
        guard let f = t.first else { return t }
        return f.lowercased() + t.dropFirst()
    }

    /// Edit distance, for "did you mean": keys are short, so the plain table is enough.
    static func distance(_ a: String, _ b: String) -> Int {
        let x = Array(a.utf8), y = Array(b.utf8)
        guard x.count < 64 && y.count < 64 else { return Int.max }
        var row = Array(0...y.count)
        for i in 1...max(1, x.count) where !x.isEmpty {
            var prev = row[0]
            row[0] = i
            for j in 1...max(1, y.count) where !y.isEmpty {
                let cur = row[j]
                row[j] = min(row[j] + 1, row[j - 1] + 1, prev + (x[i - 1] == y[j - 1] ? 0 : 1))
                prev = cur
            }
        }
        return row[y.count]
    }

    // MARK: - the documentation

    /// docs/config.md.
    static func markdown() -> String {
        var out = """
            # synthd's config file

            `synthd serve --config FILE` reads one JSON object. Every part and every key is optional unless
            marked required; a key left out takes its default. An unknown key, a value of the wrong type or a
            missing required field stops synthd at start with one line per problem naming its path, and
            `synthd config check FILE` gives the same verdict without starting anything. Command-line options
            (`--unix`, `--tcp`, `--grpc`, `--tls-*`) override the file.

            This page is written by `synthd config docs` from the table synthd checks files against.

            ```json
            {"server": {"tcp": "127.0.0.1:7070", "rate_limit_per_minute": 600},
             "engine": {"providers": {"vllm": {"kind": "openai", "base_url": "http://10.0.0.5:8000/v1", "max_in_flight": 128}},
                        "tiers": {"fast": {"provider": "vllm", "model": "Qwen2.5-7B-Instruct"}},
                        "critic": {"provider": "vllm", "model": "Qwen2.5-7B-Instruct"}}}
            ```

            """
        func section(_ title: String, _ intro: String, _ keys: [Key]) {
            out += "\n## `\(title)`\n\n\(intro)\n\n| Key | Type | Default | Meaning |\n|---|---|---|---|\n"
            for k in keys {
                let def = k.required ? "required" : (k.defaultText.isEmpty ? "none" : k.defaultText)
                out += "| `\(k.name)` | \(typeName(k.shape)) | \(def) | \(k.doc) |\n"
            }
            for k in keys {
                switch k.shape {
                case .object(let inner):
                    section("\(title).\(k.name)", k.doc, inner)
                case .map(let placeholder, .object(let inner)):
                    section("\(title).\(k.name).\(placeholder)", k.doc, inner)
                case .list(.object(let inner), _):
                    section("\(title).\(k.name)[]", k.doc, inner)
                default: break
                }
            }
        }
        for k in rootKeys {
            if case .object(let inner) = k.shape { section(k.name, k.doc, inner) }
        }
        return out
    }

    static func typeName(_ s: Shape) -> String {
        switch s {
        case .object: return "object"
        case .map(let placeholder, let inner): return "object of \(placeholder) → \(typeName(inner))"
        case .string: return "string"
        case .choice(let options): return options.map { "`\($0)`" }.joined(separator: " or ")
        case .integer(let least): return "integer ≥ \(least)"
        case .number(let least): return least <= -1e9 ? "number" : "number ≥ \(trim(least))"
        case .boolean: return "boolean"
        case .strings: return "list of strings"
        case .list(let inner, let most): return "list of \(typeName(inner)) (at most \(most))"
        case .orNull(let inner): return "\(typeName(inner)) or null"
        }
    }
}
