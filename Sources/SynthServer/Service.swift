import Foundation
import Logging
import SwiftProtobuf
import SynthAPI
import SynthCore
import SynthProto
import Synchronization

/// The framed protocol's router: admits a call through the gate (authentication, scope, the
/// per-org rate limit), decodes its request as its method's type, calls the application
/// (`JobService`) and encodes the answer. The streams' framing (record batches, sendfile) is here too.
final class Service: Sendable {
    let core: JobService
    let config: ServerConfig
    let logger: Logger
    let gate: CallGate
    private let stopping = Atomic<Bool>(false)

    /// Set when the server begins to stop: calls still open end UNAVAILABLE, which clients retry.
    var isStopping: Bool {
        get { stopping.load(ordering: .acquiring) }
        set { stopping.store(newValue, ordering: .releasing) }
    }
    static let stoppingStatus = CallGate.stopping.status

    init(core: JobService, gate: CallGate, config: ServerConfig, logger: Logger) {
        self.core = core
        self.gate = gate
        self.config = config
        self.logger = logger
    }

    /// Runs one call. `authenticated` is told when the call's key proves valid.
    func handle(_ open: PBCallOpen, callID: UInt64, writer: FrameWriter, authenticated: @escaping @Sendable (Caller) -> Void = { _ in }) async throws {
        guard let method = Methods.named(open.method) else {
            throw RPCError(.unimplemented, "unknown method \(String(open.method.prefix(64)).debugDescription)")
        }
        let caller = try await gate.admit(method, apiKey: open.apiKey, authenticated: authenticated)
        let ctx = CallContext(callID: callID, method: method.name, caller: caller, writer: writer)
        let body = open.request
        let core = self.core
        switch method {
        case Methods.generate.info: try await unary(Methods.generate, body, ctx) { try await core.generate($0, caller) }
        case Methods.plan.info: try await unary(Methods.plan, body, ctx) { try await core.plan($0, caller) }
        case Methods.getJob.info: try await unary(Methods.getJob, body, ctx) { try core.getJob($0, caller) }
        case Methods.listJobs.info: try await unary(Methods.listJobs, body, ctx) { try core.listJobs($0, caller) }
        case Methods.cancelJob.info: try await unary(Methods.cancelJob, body, ctx) { try await core.cancelJob($0, caller) }
        case Methods.watchJob.info: try await watchJob(try CallGate.decode(body, for: method), ctx)
        case Methods.fetchSplits.info: try await fetchSplits(try CallGate.decode(body, for: method), ctx)
        case Methods.getQualityReport.info: try await unary(Methods.getQualityReport, body, ctx) { try core.qualityReport($0, caller) }
        case Methods.getManifest.info: try await unary(Methods.getManifest, body, ctx) { try await core.manifest($0, caller) }
        case Methods.getPricing.info: try await unary(Methods.getPricing, body, ctx) { _ in core.pricing() }
        case Methods.health.info: try await unary(Methods.health, body, ctx) { _ in core.health() }
        case Methods.createApiKey.info: try await unary(Methods.createApiKey, body, ctx) { try await core.createKey($0, caller) }
        case Methods.listApiKeys.info: try await unary(Methods.listApiKeys, body, ctx) { _ in try core.listKeys(caller) }
        case Methods.revokeApiKey.info: try await unary(Methods.revokeApiKey, body, ctx) { try await core.revokeKey($0, caller) }
        case Methods.deleteJob.info: try await unary(Methods.deleteJob, body, ctx) { try await core.deleteJob($0, caller) }
        case Methods.getUsage.info: try await unary(Methods.getUsage, body, ctx) { try core.usage($0, caller) }
        case Methods.compareJobs.info: try await unary(Methods.compareJobs, body, ctx) { try await core.compareJobs($0, caller) }
        default:
            // Every method of the table has a case above; a test calls each one.
            throw RPCError(.unimplemented, "\(method.name) has no handler")
        }
    }

    /// Decodes a unary call's request as the method's type, runs `body`, and sends its answer.
    func unary<Request, Response>(_ method: Method<Request, Response>, _ bytes: Data, _ ctx: CallContext,
                                  _ body: (Request) async throws -> Response) async throws {
        let request: Request = try CallGate.decode(bytes, for: method.info)
        try await ctx.send(await body(request))
    }
}

extension MethodInfo {
    /// What a call of the method runs at: the public probes first, so that Health answers
    /// promptly however many streams are busy; the streams last, behind every short call.
    var priority: TaskPriority {
        if scope == .open { return .high }
        return kind == .serverStreaming ? .low : .medium
    }
}
