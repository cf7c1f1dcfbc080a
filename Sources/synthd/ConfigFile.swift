import Foundation
import SynthEngine
import SynthSpec
import SynthServer
import SynthWire

/// The config file: `{"server": {...}, "engine": {...}}`, both parts optional.
struct ConfigFile: Decodable {
    struct ServerPart: Decodable {
        var unix: String?
        var tcp: String?
        var grpc: String?
        var metrics: String?
        var retentionDays: Double?
        var exportRetentionDays: Double?
        var retentionSweepSeconds: Double?
        var maxFrameSize: Int?
        var idleTimeoutSeconds: Double?
        var rateLimitPerMinute: Int?
        var rateLimitBurst: Int?
        var maxConnections: Int?
        var maxCallsPerConnection: Int?
        var unauthenticatedIdleTimeoutSeconds: Double?
        var mapSizeMB: Int?
        var tls: TLSPart?
        var insecureTCP: Bool?
        var unixGroup: String?

        /// `{"certificate_chain": PEM, "private_key": PEM, "client_ca": PEM}`; client_ca turns on mutual TLS.
        struct TLSPart: Decodable {
            var certificateChain: String
            var privateKey: String
            var clientCA: String?

            enum CodingKeys: String, CodingKey {
                case certificateChain = "certificate_chain"
                case privateKey = "private_key"
                case clientCA = "client_ca"
            }
        }

        enum CodingKeys: String, CodingKey {
            case unix, tcp, grpc, metrics, tls
            case retentionDays = "retention_days"
            case exportRetentionDays = "export_retention_days"
            case retentionSweepSeconds = "retention_sweep_seconds"
            case insecureTCP = "insecure_tcp"
            case unixGroup = "unix_group"
            case maxFrameSize = "max_frame_size"
            case idleTimeoutSeconds = "idle_timeout_seconds"
            case rateLimitPerMinute = "rate_limit_per_minute"
            case rateLimitBurst = "rate_limit_burst"
            case maxConnections = "max_connections"
            case maxCallsPerConnection = "max_calls_per_connection"
            case unauthenticatedIdleTimeoutSeconds = "unauthenticated_idle_timeout_seconds"
            case mapSizeMB = "map_size_mb"
        }
    }

    var server: ServerPart?
    var engine: EngineConfig
    var pricing: Pricing
    /// The local model synthd runs itself (see LocalModel).
    var localModel: LocalModelConfig?
    /// Whether the file has an `engine` part: without one, and with no cloud key in the
    /// environment, synthd runs the bundled local model.
    var hasEngine = false

    enum CodingKeys: String, CodingKey {
        case server, engine, pricing
        case localModel = "local_model"
    }

    init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        server = try c.decodeIfPresent(ServerPart.self, forKey: .server)
        let engine = try c.decodeIfPresent(EngineConfig.self, forKey: .engine)
        hasEngine = engine != nil
        self.engine = engine ?? .documented
        pricing = try c.decodeIfPresent(Pricing.self, forKey: .pricing) ?? .documented
        localModel = try c.decodeIfPresent(LocalModelConfig.self, forKey: .localModel)
    }

    /// The local model to run: the one the file configures (unless `enabled` is false), or, when
    /// the file configures no providers and the environment holds no cloud key or base URL, the
    /// bundled one. `explicit` tells whether the file asked for it (then a missing model is an error).
    func localModelChoice(environment env: [String: String]) -> (config: LocalModelConfig, explicit: Bool)? {
        if let local = localModel { return local.enabled == false ? nil : (local, true) }
        let cloud = ["OPENAI_API_KEY", "ANTHROPIC_API_KEY", "OPENAI_BASE_URL", "ANTHROPIC_BASE_URL"].contains { !(env[$0] ?? "").isEmpty }
        return hasEngine || cloud ? nil : (LocalModelConfig(), false)
    }

    init() {
        server = nil
        engine = .documented
        pricing = .documented
    }

    /// The largest config file read: far above any real one, small enough that a wrong path (a
    /// disk image, /dev/zero) costs nothing.
    static let maxFileBytes = 4 << 20

    /// Reads and checks the file: every problem (syntax, unknown keys, types, missing fields, routes
    /// to providers that are not defined) is reported at once, one line each, naming its path.
    static func load(_ path: String?) throws -> ConfigFile {
        guard let path else { return ConfigFile() }
        guard let handle = FileHandle(forReadingAtPath: path) else {
            throw ConfigError(path: path, problems: ["cannot be read (no such file, or no permission)"])
        }
        defer { try? handle.close() }
        let data = (try? handle.read(upToCount: maxFileBytes + 1)) ?? Data()
        guard data.count <= maxFileBytes else {
            throw ConfigError(path: path, problems: ["is larger than \(maxFileBytes >> 20) MiB; a config file is a few KiB"])
        }
        return try parse(Array(data), path: path)
    }

    static func parse(_ bytes: [UInt8], path: String) throws -> ConfigFile {
        let value: JSONValue
        do {
            value = try JSONValue.parse(bytes, maxValues: 100_000)
        } catch {
            throw ConfigError(path: path, problems: ["is not valid JSON at \(error)"])
        }
        // Every problem at once: the routes are read from the text, so a type error elsewhere
        // does not hide them.
        let problems = ConfigSchema.problems(in: value) + routeProblems(value)
        guard problems.isEmpty else { throw ConfigError(path: path, problems: problems) }
        do {
            return try JSONDecoder().decode(ConfigFile.self, from: Data(bytes))
        } catch let e as DecodingError {
            // The checks above have passed the file; what is left is a rule of one value.
            throw ConfigError(path: path, problems: [Self.sentence(e)])
        }
    }

    /// The tiers and the critic the file routes must name a provider it defines (or the documented
    /// ones, when it defines none; or the local model's). Routes it leaves to their defaults are
    /// not held to it: a file that defines only `openai` still starts, as it always has.
    static func routeProblems(_ file: JSONValue) -> [String] {
        guard case .object(let engine)? = file["engine"] else { return [] }
        func part(_ name: String) -> JSONValue? { engine.first { $0.0 == name }?.1 }
        var known: Set<String>
        if case .object(let providers)? = part("providers") {
            known = Set(providers.map(\.0))
        } else {
            known = Set(EngineConfig.documented.providers.keys)
        }
        if let local = file["local_model"], local["enabled"] != .bool(false) {
            known.insert("local")
            if case .array(let names)? = local["stand_in_for"] { known.formUnion(names.compactMap(\.stringValue)) }
        }
        let names = ConfigSchema.list(known.sorted())
        var out: [String] = []
        func check(_ path: String, _ route: JSONValue) {
            guard let provider = route["provider"]?.stringValue, !known.contains(provider) else { return }
            out.append("\(path).provider: names \"\(provider)\", which is not defined under engine.providers (defined: \(names))")
        }
        if case .object(let tiers)? = part("tiers") {
            for (tier, route) in tiers { check("engine.tiers.\(tier)", route) }
        }
        if let critic = part("critic") { check("engine.critic", critic) }
        // A provider needs somewhere to send: base_url, or endpoints; not both.
        if case .object(let providers)? = part("providers") {
            for (name, p) in providers {
                guard case .object = p else { continue }
                let hasBase = p["base_url"] != nil, hasEndpoints = p["endpoints"] != nil
                if !hasBase && !hasEndpoints {
                    out.append("engine.providers.\(name): needs base_url (one server) or endpoints (several)")
                } else if hasBase && hasEndpoints {
                    out.append("engine.providers.\(name): give base_url or endpoints, not both")
                }
            }
        }
        return out
    }

    /// A decoder's error as one line: the path, then the rule.
    static func sentence(_ e: DecodingError) -> String {
        func path(_ p: [CodingKey]) -> String { p.map(\.stringValue).joined(separator: ".") }
        switch e {
        case .dataCorrupted(let c): return "\(path(c.codingPath)): \(c.debugDescription)"
        case .keyNotFound(let k, let c): return "\(path(c.codingPath + [k])): missing"
        case .typeMismatch(_, let c), .valueNotFound(_, let c): return "\(path(c.codingPath)): \(c.debugDescription)"
        @unknown default: return "\(e)"
        }
    }

    var serverConfig: ServerConfig {
        var c = ServerConfig()
        c.unixPath = server?.unix
        c.tcp = server?.tcp
        c.grpc = server?.grpc
        if let m = server?.maxFrameSize { c.maxFrameSize = m }
        // Clamped: a huge or NaN figure in the file must not trap when it becomes a Duration.
        func seconds(_ t: Double, least: Double) -> Duration { .milliseconds(Int64((t.isFinite ? min(max(least, t), 1e7) : least) * 1000)) }
        if let t = server?.idleTimeoutSeconds { c.idleTimeout = seconds(t, least: 0.1) }
        if let r = server?.rateLimitPerMinute { c.rateLimitPerMinute = max(0, r) }
        if let b = server?.rateLimitBurst { c.rateLimitBurst = max(1, b) }
        if let n = server?.maxConnections { c.maxConnections = max(1, n) }
        if let n = server?.maxCallsPerConnection { c.maxCallsPerConnection = max(1, n) }
        if let t = server?.unauthenticatedIdleTimeoutSeconds { c.unauthenticatedIdleTimeout = seconds(t, least: 0.1) }
        if let t = server?.tls { c.tls = TLSFiles(certificateChain: t.certificateChain, privateKey: t.privateKey, clientCA: t.clientCA) }
        c.insecureTCP = server?.insecureTCP ?? false
        c.unixGroup = server?.unixGroup
        return c
    }
}

struct ConfigError: Error, CustomStringConvertible {
    var path: String
    var problems: [String]
    var description: String {
        problems.count == 1 ? "config file \(path): \(problems[0])"
            : "config file \(path) has \(problems.count) problems:\n" + problems.map { "  \($0)" }.joined(separator: "\n")
    }
}
