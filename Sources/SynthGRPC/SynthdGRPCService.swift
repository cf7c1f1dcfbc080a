import Foundation
import GRPCCore
import Logging
import Synchronization
import GRPCProtobuf
import SwiftProtobuf
import SynthAPI
import SynthCore
import SynthMetrics
import SynthProto
import SynthServer

/// The methods of `service Synthd` on gRPC, registered from the generated descriptors. It does not
/// use the generated registration: that decodes requests with plain protobuf, and this edge decodes
/// them as the framed one does (the gate's bounds before decoding, unknown fields refused), after
/// the call is admitted (requests are decoded lazily, when the handler reads them).
struct SynthdGRPCService: RegistrableRPCService {
    let core: JobService
    let gate: CallGate
    let config: ServerConfig
    let stop: StopSignal
    let logger: Logger
    /// nil in tests that register the methods without an endpoint.
    var connections: Connections? = nil

    func registerMethods<Transport: ServerTransport>(with router: inout RPCRouter<Transport>) {
        let core = self.core
        unary(&router, Methods.generate, PBSynthd.Method.Generate.descriptor) { try await core.generate($0, $1) }
        unary(&router, Methods.plan, PBSynthd.Method.Plan.descriptor) { try await core.plan($0, $1) }
        unary(&router, Methods.getJob, PBSynthd.Method.GetJob.descriptor) { try core.getJob($0, $1) }
        unary(&router, Methods.listJobs, PBSynthd.Method.ListJobs.descriptor) { try core.listJobs($0, $1) }
        unary(&router, Methods.cancelJob, PBSynthd.Method.CancelJob.descriptor) { try await core.cancelJob($0, $1) }
        unary(&router, Methods.getQualityReport, PBSynthd.Method.GetQualityReport.descriptor) { try core.qualityReport($0, $1) }
        unary(&router, Methods.getManifest, PBSynthd.Method.GetManifest.descriptor) { try await core.manifest($0, $1) }
        unary(&router, Methods.getPricing, PBSynthd.Method.GetPricing.descriptor) { _, _ in core.pricing() }
        unary(&router, Methods.health, PBSynthd.Method.Health.descriptor) { _, _ in core.health() }
        unary(&router, Methods.createApiKey, PBSynthd.Method.CreateApiKey.descriptor) { try await core.createKey($0, $1) }
        unary(&router, Methods.listApiKeys, PBSynthd.Method.ListApiKeys.descriptor) { _, caller in try core.listKeys(caller) }
        unary(&router, Methods.revokeApiKey, PBSynthd.Method.RevokeApiKey.descriptor) { try await core.revokeKey($0, $1) }
        unary(&router, Methods.deleteJob, PBSynthd.Method.DeleteJob.descriptor) { try await core.deleteJob($0, $1) }
        unary(&router, Methods.getUsage, PBSynthd.Method.GetUsage.descriptor) { try core.usage($0, $1) }
        unary(&router, Methods.compareJobs, PBSynthd.Method.CompareJobs.descriptor) { try await core.compareJobs($0, $1) }

        let timing = StreamTiming(keyRecheck: config.keyRecheckInterval, keepalive: config.keepaliveInterval)
        let maxMessage = config.maxFrameSize
        stream(&router, Methods.watchJob, PBSynthd.Method.WatchJob.descriptor) { req, caller, writer in
            try await core.watch(req, caller, timing: timing, sink: GRPCWatch(core: core, writer: writer, batchBytes: req.batchBytes, maxMessage: maxMessage))
        }
        stream(&router, Methods.fetchSplits, PBSynthd.Method.FetchSplits.descriptor) { req, caller, writer in
            try await core.fetchSplits(req, caller, sink: GRPCSplits(core: core, writer: writer, batchBytes: req.batchBytes, maxMessage: maxMessage))
        }
    }

    /// A method that answers once.
    func unary<Request, Response, Transport: ServerTransport>(
        _ router: inout RPCRouter<Transport>, _ method: SynthAPI.Method<Request, Response>, _ descriptor: MethodDescriptor,
        _ body: @escaping @Sendable (Request, Caller) async throws -> Response
    ) {
        let stop = self.stop
        router.registerHandler(forMethod: descriptor, deserializer: StrictDeserializer<Request>(method: method.info),
                               serializer: ProtobufSerializer<Response>()) { request, context in
            let call = self.begin(context, request.metadata)
            defer { call.end() }
            return try await self.translating(method.info) {
                try await call.bounded(stop: stop) {
                    let (req, caller) = try await self.open(request, method.info, call)
                    return StreamingServerResponse(single: ServerResponse(message: try await body(req, caller)))
                }
            }
        }
    }

    /// A server-streaming method: admitted and decoded before the response starts, so that a
    /// refusal is a status alone. Like a unary call, it ends UNAVAILABLE (SHUTTING_DOWN) when the
    /// endpoint stops, as the framed protocol's open calls do.
    func stream<Request, Response, Transport: ServerTransport>(
        _ router: inout RPCRouter<Transport>, _ method: SynthAPI.Method<Request, Response>, _ descriptor: MethodDescriptor,
        _ body: @escaping @Sendable (Request, Caller, RPCWriter<Response>) async throws -> Void
    ) {
        let stop = self.stop
        router.registerHandler(forMethod: descriptor, deserializer: StrictDeserializer<Request>(method: method.info),
                               serializer: ProtobufSerializer<Response>()) { request, context in
            // Ended when the response is done, or dropped unproduced (grpc-swift does not run the
            // producer when the client has gone before the headers could be written).
            let call = self.begin(context, request.metadata)
            let started = ContinuousClock.now
            let (req, caller) = try await self.translating(method.info, countSuccess: false) {
                try await call.bounded(stop: stop) { try await self.open(request, method.info, call) }
            }
            return StreamingServerResponse { writer in
                defer { call.end() }
                try await self.translating(method.info, started: started) {
                    try await call.bounded(stop: stop) { try await body(req, caller, writer) }
                }
                return [:]
            }
        }
    }

    /// A call begins: counted on its connection, with its deadline from `grpc-timeout`.
    func begin(_ context: ServerContext, _ metadata: Metadata) -> GRPCCall {
        let connection = connections?.state(ofPeer: context.remotePeer)
        let timeout = metadata[stringValues: "grpc-timeout"].first(where: { _ in true }).flatMap(GRPCCall.parseTimeout)
        return GRPCCall(context: context, open: OpenCall(connection), deadline: timeout.map { ContinuousClock.now + $0 },
                        readLimit: config.unauthenticatedIdleTimeout, stop: stop)
    }

    /// Admits the call by its `authorization` metadata, then reads its one request (which must
    /// arrive within the unauthenticated idle time: a request that never comes holds nothing long).
    func open<Request>(_ request: StreamingServerRequest<Request>, _ method: MethodInfo, _ call: GRPCCall) async throws -> (Request, Caller) {
        let key = try Self.apiKey(request.metadata, method)
        // The connection counts as authenticated as soon as the key proves valid (before its scope
        // and the org's rate), as on the framed protocol.
        let connection = call.open.connection
        let caller = try await gate.admit(method, apiKey: key) { _ in connection?.authenticated.store(true, ordering: .releasing) }
        let limit = call.readLimit
        let single = try await call.bounded(until: .now + limit, expired: SynthCore.RPCError(
            .deadlineExceeded, "the request message did not arrive within \(limit.components.seconds) s of the call's headers")) {
            try await ServerRequest(stream: request)
        }
        return (single.message, caller)
    }

    /// The key of `authorization: Bearer sk_live_...`; "" when there is none (an open method needs none).
    static func apiKey(_ metadata: Metadata, _ method: MethodInfo) throws -> String {
        let values = Array(metadata[stringValues: "authorization"])
        guard let value = values.first else {
            guard method.scope == .open else {
                throw SynthCore.RPCError(.unauthenticated, "missing API key: send it as metadata `authorization: Bearer sk_live_...`")
            }
            return ""
        }
        let key = value.hasPrefix("Bearer ") ? String(value.dropFirst("Bearer ".count)).trimmingCharacters(in: .whitespaces) : ""
        guard values.count == 1, !key.isEmpty else {
            throw SynthCore.RPCError(.unauthenticated, "the authorization metadata must be one value, `Bearer sk_live_...`")
        }
        return key
    }

    /// Runs `body`, turning every error into the gRPC status the framed protocol would send, with
    /// synthd's error code, field errors and retry-after in the trailing metadata. A server fault is
    /// logged with its cause, which the client never sees.
    /// Every call is counted once in the metrics: a stream's opening only when it fails (its body's
    /// end counts it, timed from `started`).
    func translating<T>(_ method: MethodInfo, started: ContinuousClock.Instant = .now, countSuccess: Bool = true,
                        _ body: () async throws -> T) async throws -> T {
        do {
            let value = try await body()
            if countSuccess { SynthMetrics.call(method: method.name, code: "OK", took: ContinuousClock.now - started) }
            return value
        } catch let e as GRPCCore.RPCError {
            SynthMetrics.call(method: method.name, code: SynthMetrics.codeName(e.code.rawValue), took: ContinuousClock.now - started)
            throw e
        } catch {
            let failure = SynthCore.RPCError.from(error)
            SynthMetrics.call(method: method.name, code: SynthMetrics.codeName(failure.status.code.rawValue), took: ContinuousClock.now - started)
            if failure.isServerFault {
                logger.error("call failed", metadata: [
                    "method": "\(method.name)", "edge": "grpc", "status": "\(failure.status.code)", "message": "\(failure.status.message)",
                    "cause": "\(failure.cause.map { "\($0)" } ?? "-")"])
            }
            throw Self.grpcError(failure.status)
        }
    }

    static func grpcError(_ status: PBStatus) -> GRPCCore.RPCError {
        var metadata: Metadata = [:]
        if !status.errorCode.isEmpty { metadata.addString(status.errorCode, forKey: TrailerKeys.errorCode) }
        if status.retryAfterMs > 0 { metadata.addString(String(status.retryAfterMs), forKey: TrailerKeys.retryAfterMs) }
        if let bytes: [UInt8] = try? status.serializedBytes() { metadata.addBinary(bytes, forKey: TrailerKeys.status) }
        let code = GRPCCore.RPCError.Code(GRPCCore.Status.Code(rawValue: status.code.rawValue) ?? .unknown) ?? .unknown
        return GRPCCore.RPCError(code: code, message: status.message, metadata: metadata)
    }
}

/// One call on the gRPC endpoint: its connection, its deadline, and the races that bound it.
struct GRPCCall: Sendable {
    let context: ServerContext
    let open: OpenCall
    let deadline: ContinuousClock.Instant?
    let readLimit: Duration
    let stop: StopSignal

    func end() { open.end() }

    private enum Outcome<T: Sendable>: Sendable {
        case value(T)
        case cancelled, stopped, expired
    }

    /// Runs `body` until it ends, the call's deadline passes (DEADLINE_EXCEEDED), gRPC cancels the
    /// call (the client went away: CANCELLED), or `stop` fires (UNAVAILABLE, SHUTTING_DOWN). gRPC
    /// tells a handler of these through its cancellation handle, not by cancelling its task.
    func bounded<T: Sendable>(stop: StopSignal?, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
        try await bounded(until: deadline, expired: SynthCore.RPCError(.deadlineExceeded, "the call's deadline (grpc-timeout) passed"),
                          stop: stop, body)
    }

    func bounded<T: Sendable>(until limit: ContinuousClock.Instant?, expired: SynthCore.RPCError, stop: StopSignal? = nil,
                              _ body: @escaping @Sendable () async throws -> T) async throws -> T {
        let cancellation = context.cancellation
        let outcome: Outcome<T> = try await withThrowingTaskGroup(of: Outcome<T>.self) { group in
            group.addTask { .value(try await body()) }
            group.addTask {
                try await cancellation.cancelled
                return .cancelled
            }
            if let stop {
                group.addTask {
                    await stop.wait()
                    return .stopped
                }
            }
            if let limit {
                group.addTask {
                    try await Task.sleep(until: limit, clock: .continuous)
                    return .expired
                }
            }
            let first = try await group.next()!
            group.cancelAll()
            return first
        }
        switch outcome {
        case .value(let v): return v
        case .stopped: throw CallGate.stopping
        case .expired: throw expired
        case .cancelled:
            // gRPC cancels every call when the endpoint stops (after `stop` fired), and a call
            // whose grpc-timeout passed (its own timer starts a little before ours).
            if self.stop.isFired { throw CallGate.stopping }
            if let deadline, ContinuousClock.now >= deadline - .milliseconds(100) {
                throw SynthCore.RPCError(.deadlineExceeded, "the call's deadline (grpc-timeout) passed")
            }
            throw SynthCore.RPCError(.cancelled, "call cancelled")
        }
    }

    /// `grpc-timeout`: at most 8 digits and a unit (H, M, S, m, u, n).
    static func parseTimeout(_ text: String) -> Duration? {
        guard let unit = text.last, (2...9).contains(text.count), let n = Int64(text.dropLast()), n >= 0 else { return nil }
        switch unit {
        case "H": return .seconds(n * 3600)
        case "M": return .seconds(n * 60)
        case "S": return .seconds(n)
        case "m": return .milliseconds(n)
        case "u": return .microseconds(n)
        case "n": return .nanoseconds(n)
        default: return nil
        }
    }
}

/// A call counted open on its connection until `end`, which runs once however often it is called,
/// and at the latest when the last reference goes.
final class OpenCall: Sendable {
    let connection: ConnectionState?
    private let ended = Atomic<Bool>(false)

    init(_ connection: ConnectionState?) {
        self.connection = connection
        connection?.openCalls.wrappingAdd(1, ordering: .acquiringAndReleasing)
    }

    func end() {
        guard !ended.exchange(true, ordering: .acquiringAndReleasing) else { return }
        connection?.openCalls.wrappingSubtract(1, ordering: .acquiringAndReleasing)
    }

    deinit { end() }
}

/// The trailing metadata of a failed call (proto/README.md).
public enum TrailerKeys {
    /// The documented error code (VALIDATION_ERROR, RATE_LIMITED, ...), when there is one.
    public static let errorCode = "synthd-error-code"
    /// RATE_LIMITED: milliseconds to wait before calling again.
    public static let retryAfterMs = "synthd-retry-after-ms"
    /// The whole synthd.v1.Status, serialized: field errors and spelling suggestions included.
    public static let status = "synthd-status-bin"
}

/// Decodes a request as the framed protocol does (CallGate.decode).
struct StrictDeserializer<Message: SwiftProtobuf.Message>: MessageDeserializer {
    let method: MethodInfo

    func deserialize<Bytes: GRPCContiguousBytes>(_ serializedMessageBytes: Bytes) throws -> Message {
        try serializedMessageBytes.withUnsafeBytes { raw in try CallGate.decode(raw, for: method) }
    }
}

/// A WatchJob stream's records and progress as gRPC messages.
struct GRPCWatch: WatchSink {
    let core: JobService
    let writer: RPCWriter<PBWatchJobResponse>
    let batchBytes: UInt32
    let maxMessage: Int

    func sendProgress(_ job: PBJob) async throws {
        var r = PBWatchJobResponse()
        r.progress = job
        try await writer.write(r)
    }

    func sendRecords(of job: PBStoredJob, after: UInt64, upTo: UInt64, recheck: () throws -> Void) async throws -> UInt64 {
        var cursor = after
        if batchBytes > 0 {
            let limit = RecordBatchBuilder.limit(requested: batchBytes, maxFrameSize: maxMessage)
            while cursor < upTo {
                var batch = JSONLBatch(limit: limit)
                try core.visitRecords(of: job, after: cursor) { seq, json in seq <= upTo && batch.add(seq: seq, json: json) }
                guard batch.count > 0 else { break }
                var r = PBWatchJobResponse()
                r.batch = try batch.message(sequenced: true, maxMessage: maxMessage)
                try await writer.write(r)
                cursor = batch.last
                try recheck()
            }
        } else {
            while cursor < upTo {
                let records = try core.records(of: job, after: cursor, limit: 512).filter { $0.seq <= upTo }
                guard let last = records.last else { break }
                for r in records { try JSONLBatch.fits(r.json.count, seq: r.seq, maxMessage) }
                try await writer.write(contentsOf: records.map { rec in
                    var r = PBWatchJobResponse()
                    r.record.seq = rec.seq
                    r.record.json = Data(rec.json)
                    return r
                })
                cursor = last.seq
                try recheck()
            }
        }
        return cursor
    }
}

/// A FetchSplits stream as gRPC messages.
struct GRPCSplits: SplitSink {
    let core: JobService
    let writer: RPCWriter<PBFetchSplitsResponse>
    let batchBytes: UInt32
    let maxMessage: Int

    func sendSplit(_ split: PBSplitInfo) async throws {
        var r = PBFetchSplitsResponse()
        r.split = split
        try await writer.write(r)
    }

    func sendRecords(of job: PBStoredJob, seqs: [UInt64]) async throws {
        var i = 0
        if batchBytes > 0 {
            let limit = RecordBatchBuilder.limit(requested: batchBytes, maxFrameSize: maxMessage)
            while i < seqs.count {
                var batch = JSONLBatch(limit: limit)
                try core.visitRecords(of: job, seqs: seqs[i...]) { seq, json in batch.add(seq: seq, json: json) }
                guard batch.count > 0 else { break }
                var r = PBFetchSplitsResponse()
                r.batch = try batch.message(sequenced: false, maxMessage: maxMessage)
                try await writer.write(r)
                i += Int(batch.count)
            }
        } else {
            while i < seqs.count {
                let slice = seqs[i..<min(seqs.count, i + 512)]
                let records = try core.records(of: job, seqs: slice)
                for (seq, json) in zip(slice, records) { try JSONLBatch.fits(json.count, seq: seq, maxMessage) }
                try await writer.write(contentsOf: zip(slice, records).map { seq, json in
                    var r = PBFetchSplitsResponse()
                    r.record.seq = seq
                    r.record.json = Data(json)
                    return r
                })
                i += slice.count
            }
        }
    }
}

/// Consecutive records as JSON lines, up to a size (a record above it travels alone).
struct JSONLBatch {
    /// Refuses (RESOURCE_EXHAUSTED, RESPONSE_TOO_LARGE, as on the framed protocol) a record, or a
    /// batch of one, larger than a message may be.
    static func fits(_ bytes: Int, seq: UInt64, _ maxMessage: Int) throws {
        guard bytes + RecordBatchBuilder.headroom > maxMessage else { return }
        throw SynthCore.RPCError(.resourceExhausted, "record \(seq) is \(bytes) bytes, above the message limit of \(maxMessage) bytes (server.max_frame_size)",
                                 errorCode: "RESPONSE_TOO_LARGE")
    }

    let limit: Int
    var jsonl = Data()
    var first: UInt64 = 0
    var last: UInt64 = 0
    var count: UInt32 = 0

    init(limit: Int) {
        self.limit = limit
        jsonl.reserveCapacity(limit + 1024)
    }

    mutating func add(seq: UInt64, json: UnsafeRawBufferPointer) -> Bool {
        if count > 0, jsonl.count + json.count + 1 > limit { return false }
        jsonl.append(contentsOf: json)
        jsonl.append(0x0A)
        if count == 0 { first = seq }
        last = seq
        count += 1
        return true
    }

    /// The batch as a message, refused (RESOURCE_EXHAUSTED, RESPONSE_TOO_LARGE, as on the framed
    /// protocol) when a record alone is larger than a message may be.
    func message(sequenced: Bool, maxMessage: Int) throws -> PBRecordBatch {
        try Self.fits(jsonl.count, seq: first, maxMessage)
        var b = PBRecordBatch()
        if sequenced {
            b.firstSeq = first
            b.lastSeq = last
        }
        b.count = count
        b.jsonl = jsonl
        return b
    }
}
