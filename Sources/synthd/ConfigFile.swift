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
            case unix, tcp, grpc, tls
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

    static func load(_ path: String?) throws -> ConfigFile {
        guard let path else { return ConfigFile() }
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        do {
            return try JSONDecoder().decode(ConfigFile.self, from: data)
        } catch {
            throw ConfigError(message: "config file \(path) is not valid: \(error)")
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
    var message: String
    var description: String { message }
}
