import Foundation
import Logging
import SwiftProtobuf
import SynthAPI
import SynthCore
import SynthProto
import Synchronization

/// The framed protocol's router: decodes a call's request as its method's type, runs the
/// interceptors (authentication, the per-org rate limit), calls the application (`JobService`) and
/// encodes the answer. The streams' framing (record batches, sendfile) is here too.
final class Service: Sendable {
    let core: JobService
    let config: ServerConfig
    let logger: Logger
    let interceptors: [any CallInterceptor]
    private let stopping = Atomic<Bool>(false)

    /// Set when the server begins to stop: calls still open end UNAVAILABLE, which clients retry.
    var isStopping: Bool {
        get { stopping.load(ordering: .acquiring) }
        set { stopping.store(newValue, ordering: .releasing) }
    }
    static let stoppingStatus = RPCError(.unavailable, "the server is shutting down; retry the call (a watch resumes with after_seq)",
                                         errorCode: "SHUTTING_DOWN").status

    init(core: JobService, config: ServerConfig, logger: Logger) {
        self.core = core
        self.config = config
        self.logger = logger
        var interceptors: [any CallInterceptor] = [Authentication(core: core)]
        if let limiter = OrgRateLimiter(perMinute: config.rateLimitPerMinute, burst: config.rateLimitBurst) {
            interceptors.append(RateLimit(limiter: limiter, perMinute: config.rateLimitPerMinute))
        }
        self.interceptors = interceptors
    }

    /// Runs one call. `authenticated` is told when the call's key proves valid.
    func handle(_ open: PBCallOpen, callID: UInt64, writer: FrameWriter, authenticated: @escaping @Sendable (Caller) -> Void = { _ in }) async throws {
        guard let method = Methods.named(open.method) else {
            throw RPCError(.unimplemented, "unknown method \(String(open.method.prefix(64)).debugDescription)")
        }
        var call = InboundCall(method: method, apiKey: open.apiKey, authenticated: authenticated)
        for interceptor in interceptors { try await interceptor.intercept(&call) }
        let caller = call.caller ?? Caller(org: "", keyID: "")
        let ctx = CallContext(callID: callID, method: method.name, caller: caller, writer: writer)
        let body = open.request
        // Refused before it is decoded: a request larger than any valid one would only cost memory.
        let most = method.largestRequest
        guard body.count <= most else {
            throw RPCError(.invalidArgument, "the \(method.name) request is \(body.count) bytes; no valid one is larger than \(most) bytes",
                           errorCode: "REQUEST_TOO_LARGE")
        }
        if method == Methods.generate.info || method == Methods.plan.info {
            // Lists of hundreds of thousands of empty items are refused before they are decoded.
            try JobService.prescanGenerateOrPlan(Array(body))
        }
        let core = self.core
        switch method {
        case Methods.generate.info: try await unary(Methods.generate, body, ctx) { try await core.generate($0, caller) }
        case Methods.plan.info: try await unary(Methods.plan, body, ctx) { try await core.plan($0, caller) }
        case Methods.getJob.info: try await unary(Methods.getJob, body, ctx) { try core.getJob($0, caller) }
        case Methods.listJobs.info: try await unary(Methods.listJobs, body, ctx) { try core.listJobs($0, caller) }
        case Methods.cancelJob.info: try await unary(Methods.cancelJob, body, ctx) { try await core.cancelJob($0, caller) }
        case Methods.watchJob.info: try await watchJob(try decode(body), ctx)
        case Methods.fetchSplits.info: try await fetchSplits(try decode(body), ctx)
        case Methods.getQualityReport.info: try await unary(Methods.getQualityReport, body, ctx) { try core.qualityReport($0, caller) }
        case Methods.getManifest.info: try await unary(Methods.getManifest, body, ctx) { try await core.manifest($0, caller) }
        case Methods.getPricing.info: try await unary(Methods.getPricing, body, ctx) { _ in core.pricing() }
        case Methods.health.info: try await unary(Methods.health, body, ctx) { _ in core.health() }
        case Methods.createApiKey.info: try await unary(Methods.createApiKey, body, ctx) { try await core.createKey($0, caller) }
        case Methods.listApiKeys.info: try await unary(Methods.listApiKeys, body, ctx) { _ in try core.listKeys(caller) }
        case Methods.revokeApiKey.info: try await unary(Methods.revokeApiKey, body, ctx) { try await core.revokeKey($0, caller) }
        default:
            // Every method of the table has a case above; a test calls each one.
            throw RPCError(.unimplemented, "\(method.name) has no handler")
        }
    }

    /// Decodes a unary call's request as the method's type, runs `body`, and sends its answer.
    func unary<Request, Response>(_ method: Method<Request, Response>, _ bytes: Data, _ ctx: CallContext,
                                  _ body: (Request) async throws -> Response) async throws {
        let request: Request = try decode(bytes)
        try await ctx.send(await body(request))
    }

    func decode<M: SwiftProtobuf.Message>(_ bytes: Data) throws -> M {
        let message: M
        do {
            message = try M(serializedBytes: bytes)
        } catch {
            throw RPCError.invalid("the request is not a valid \(M.protoMessageName)")
        }
        guard message.unknownFields.data.isEmpty else {
            throw RPCError.invalid("the request has fields that \(M.protoMessageName) does not define")
        }
        // Unknown fields deeper down survive a decode too: decoding again without them and
        // comparing sizes finds them wherever they are.
        var options = BinaryDecodingOptions()
        options.discardUnknownFields = true
        if let stripped = try? M(serializedBytes: bytes, options: options),
           let a: [UInt8] = try? stripped.serializedBytes(), let b: [UInt8] = try? message.serializedBytes(), a.count != b.count {
            throw RPCError.invalid("the request has fields inside it that \(M.protoMessageName) does not define")
        }
        return message
    }
}

extension MethodInfo {
    /// What a call of the method runs at: the public probes first, so that Health answers
    /// promptly however many streams are busy; the streams last, behind every short call.
    var priority: TaskPriority {
        if scope == .open { return .high }
        return kind == .serverStreaming ? .low : .medium
    }

    /// The largest request body the method can validly take.
    var largestRequest: Int {
        // Ids, a page token, a status, a key name: a few hundred bytes at most.
        self == Methods.generate.info || self == Methods.plan.info ? JobService.largestGenerateRequestBytes : 8192
    }
}
