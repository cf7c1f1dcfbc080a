import Foundation
import SynthAPI
import Testing
import Logging
import NIOCore
import NIOPosix
import SynthClient
import SynthConcurrency
import SynthCore
import SynthEngine
import SynthLLM
import SynthProto
import SynthServer
import SynthSpec
import SynthStore
import SynthWire

let repoRoot: URL = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

struct TimeoutError: Error, CustomStringConvertible {
    var what: String
    var description: String { "timed out: \(what)" }
}

/// What every wait of the tests is multiplied by: `SYNTHD_TEST_TIME_SCALE`, else 1. `make
/// test-sanitize` sets it, since under ThreadSanitizer everything runs several times slower.
let testTimeScale: Double = ProcessInfo.processInfo.environment["SYNTHD_TEST_TIME_SCALE"].flatMap(Double.init).map { min(max(1, $0), 100) } ?? 1

/// Runs `body`, failing if it takes longer than `seconds` (times `testTimeScale`).
func withTimeout<T: Sendable>(_ seconds: Double, _ what: String = "operation", _ body: @escaping @Sendable () async throws -> T) async throws -> T {
    try await withThrowingTaskGroup(of: T.self) { g in
        g.addTask { try await body() }
        g.addTask {
            try await Task.sleep(for: .milliseconds(Int64(seconds * testTimeScale * 1000)))
            throw TimeoutError(what: what)
        }
        let r = try await g.next()!
        g.cancelAll()
        return r
    }
}

/// Threads for the tests' own blocking work (starting child processes and waiting for their first
/// line): done on the cooperative pool, it would stall every in-process server of the tests
/// running beside it, and their timings with them.
let testThreads = BlockingLane(name: "tests-blocking", threads: 4)

/// The fake provider from tools/, as a real HTTP server on loopback.
final class FakeProvider: @unchecked Sendable {
    /// Starts one, waiting for it off the cooperative pool.
    static func start(_ args: [String] = []) async throws -> FakeProvider {
        try await testThreads.run { try FakeProvider(args) }
    }

    let process = Process()
    let port: Int

    init(_ args: [String] = []) throws {
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", repoRoot.appendingPathComponent("tools/fake_provider/server.py").path, "--port", "0", "--seed", "7"] + args
        let out = Pipe()
        process.standardOutput = out
        process.standardError = FileHandle.nullDevice
        try process.run()
        // The first line is "LISTENING <port>".
        var line = Data()
        while !line.contains(0x0A) {
            let chunk = out.fileHandleForReading.availableData
            if chunk.isEmpty { break }
            line.append(chunk)
        }
        let text = String(decoding: line, as: UTF8.self)
        guard let p = text.split(separator: " ").last.flatMap({ Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) }) else {
            process.terminate()
            throw TimeoutError(what: "fake provider did not start: \(text)")
        }
        port = p
    }

    func stop() {
        if process.isRunning {
            // SIGKILL: the fake keeps nothing worth flushing, and a blocked SIGTERM must not hang a test.
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
    }

    deinit { stop() }

    /// GET /stats: counters and the per-request log.
    func stats() throws -> [String: Any] {
        let data = try http("GET", "/stats", nil)
        return (try JSONSerialization.jsonObject(with: data) as? [String: Any]) ?? [:]
    }

    /// POSTs JSON to the fake's control endpoints.
    func post(_ path: String, _ json: String) throws {
        _ = try http("POST", path, Array(json.utf8))
    }

    /// One HTTP/1.0 exchange over a plain socket (no child process: Foundation's Process is not
    /// safe to use from many test tasks at once).
    func http(_ method: String, _ path: String, _ body: [UInt8]?) throws -> Data {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TimeoutError(what: "socket") }
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let ok = withUnsafePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard ok == 0 else { throw TimeoutError(what: "connect to the fake provider") }
        var request = Array("\(method) \(path) HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: \(body?.count ?? 0)\r\n\r\n".utf8)
        request += body ?? []
        var sent = 0
        while sent < request.count {
            let n = request[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) }
            guard n > 0 else { throw TimeoutError(what: "send to the fake provider") }
            sent += n
        }
        var response = [UInt8]()
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { break }
            response += buf[0..<n]
        }
        guard let end = response.firstRange(of: [13, 10, 13, 10]) else { throw TimeoutError(what: "an HTTP answer from the fake provider") }
        return Data(response[end.upperBound...])
    }
}

/// Collects every log line, so that tests can check what reached the logs.
final class LogCapture: @unchecked Sendable {
    private let lock = NSLock()
    private var lines: [String] = []

    func append(_ s: String) { lock.withLock { lines.append(s) } }
    var text: String { lock.withLock { lines.joined(separator: "\n") } }

    func logger() -> Logger {
        var l = Logger(label: "synthd-test") { _ in CaptureHandler(capture: self) }
        l.logLevel = .trace
        return l
    }

    struct CaptureHandler: LogHandler {
        let capture: LogCapture
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }
        func log(level: Logger.Level, message: Logger.Message, metadata: Logger.Metadata?, source: String, file: String, function: String, line: UInt) {
            capture.append("\(level) \(message) \(metadata ?? [:]) \(self.metadata)")
        }
    }
}

/// A real synthd: LMDB in a temp directory, listeners on a short Unix path and a TCP port 0,
/// the engine talking to the fake provider over HTTP.
final class Harness: @unchecked Sendable {
    let dir: String
    let store: Store
    var engine: Engine
    var server: Server
    /// The application the server serves (another edge, the gRPC endpoint, can serve it too).
    var core: JobService
    var bound: Server.Bound
    let fake: FakeProvider
    let logs = LogCapture()
    let config: EngineConfig
    let serverConfig: ServerConfig

    static let providerSecret = "sk-provider-secret-never-logged-0123456789"

    init(fakeArgs: [String] = [], idleTimeout: Duration = .seconds(300), maxFrameSize: Int = FrameDecoder.defaultMaxFrameSize,
         jobConcurrency: Int = 16, providerTimeout: Double = 20, maxRetries: Int = 4,
         rateLimit: (perMinute: Int, burst: Int) = (0, 1), server configure: (inout ServerConfig) -> Void = { _ in },
         engine configureEngine: (inout EngineConfig) -> Void = { _ in }, mapSize: Int = Store.defaultMapSize,
         prepareData: (String) throws -> Void = { _ in }) async throws {
        dir = "/tmp/sd-" + String(UUID().uuidString.prefix(8))
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        fake = try await FakeProvider.start(fakeArgs)
        let provider = ProviderConfig(name: "openai", kind: .openai, baseURL: "http://127.0.0.1:\(fake.port)/v1", apiKey: Self.providerSecret,
                                      maxInFlight: 64, maxRetries: maxRetries, requestTimeoutSeconds: providerTimeout,
                                      sampling: ["frequency_penalty": 0.8], stringMaxLength: 2000)
        let route = ModelRoute(provider: "openai", model: "fake-model")
        var config = EngineConfig(providers: ["openai": provider], tiers: ["fast": route, "balanced": route, "diverse": route, "deep": route],
                              critic: route, jobConcurrency: jobConcurrency)
        configureEngine(&config)
        self.config = config
        try FileManager.default.createDirectory(atPath: dir + "/data", withIntermediateDirectories: true)
        try prepareData(dir + "/data")
        store = try Store(path: dir + "/data", initialMapSize: mapSize)
        var serverConfig = ServerConfig(unixPath: dir + "/s.sock", tcp: "127.0.0.1:0", maxFrameSize: maxFrameSize, idleTimeout: idleTimeout,
                                    keyRecheckInterval: .milliseconds(500), rateLimitPerMinute: rateLimit.perMinute, rateLimitBurst: rateLimit.burst)
        configure(&serverConfig)
        self.serverConfig = serverConfig
        let logger = logs.logger()
        engine = Engine(store: store, config: config, logger: logger)
        core = JobService(store: store, engine: engine, validator: Validator(maxCount: config.maxCount, catalog: config.catalog), logger: logger)
        server = Server(config: serverConfig, core: core, logger: logger)
        bound = try await server.start()
    }

    var unix: Address { .unix(bound.unixPath!) }
    var tcp: Address { .tcp(host: "127.0.0.1", port: bound.tcpPort!) }

    /// Stops the server and the engine as SIGTERM would.
    func stopServing() async {
        await server.stop()
        await engine.shutdown()
    }

    /// Starts a new engine and server on the same store, as the next process start would.
    func restart() async throws {
        let logger = logs.logger()
        engine = Engine(store: store, config: config, logger: logger)
        core = JobService(store: store, engine: engine, validator: Validator(maxCount: config.maxCount, catalog: config.catalog), logger: logger)
        server = Server(config: serverConfig, core: core, logger: logger)
        bound = try await server.start()
        _ = try engine.resumeUnfinished()
    }

    func shutdown() async {
        await stopServing()
        fake.stop()
        try? FileManager.default.removeItem(atPath: dir)
    }

    /// An org with one key.
    func org(_ name: String, plan: String = "payg", quota: Int64 = 0, balanceMicroUSD: Int64 = 1_000_000_000) throws -> String {
        _ = try store.createOrg(name: name, plan: plan, monthlyQuota: quota, balanceMicroUSD: balanceMicroUSD)
        return try store.createKey(org: name).key
    }

    func client(_ key: String, over address: Address? = nil) async throws -> SynthClient {
        try await SynthClient.connect(address ?? unix, apiKey: key)
    }

    static func request(count: Int64, split: Bool = false) -> PBGenerateRequest {
        var r = PBGenerateRequest()
        r.request.schema = "instruction_v1"
        r.request.domain = "customer support for a SaaS product"
        r.request.count = count
        r.request.model = "fast"
        if split {
            r.request.advanced.outputSplit = ["train": 80, "validation": 20]
        }
        return r
    }

    func generate(_ client: SynthClient, count: Int64, split: Bool = false) async throws -> PBJob {
        try await client.unary(Methods.generate, Self.request(count: count, split: split)).job
    }

    /// Watches a job in record batches after `after` until the stream ends, checking each batch:
    /// it follows the one before in sequence, holds `count` whole lines, and stays within the
    /// batch size (at least 4096 bytes) unless it holds a single record.
    func watchBatches(_ client: SynthClient, _ jobID: String, after: UInt64, batchBytes: UInt32)
        async throws -> (jsonl: [UInt8], batches: Int, next: UInt64, succeeded: Bool) {
        var watch = PBWatchJobRequest()
        watch.jobID = jobID
        watch.afterSeq = after
        watch.batchBytes = batchBytes
        var got: [UInt8] = []
        var next = after + 1
        var batches = 0
        var succeeded = false
        for try await event in client.stream(Methods.watchJob, watch) {
            switch event.event {
            case .batch(let b):
                #expect(b.firstSeq == next && b.lastSeq == b.firstSeq + UInt64(b.count) - 1)
                #expect(b.jsonl.count <= max(Int(batchBytes), 4096) || b.count == 1)
                #expect(b.jsonl.filter { $0 == 0x0A }.count == Int(b.count) && b.jsonl.last == 0x0A)
                next = b.lastSeq + 1
                got += Array(b.jsonl)
                batches += 1
            case .progress(let p): succeeded = p.status == "succeeded"
            default: Issue.record("unexpected event on a batched watch: \(event)")
            }
        }
        return (got, batches, next, succeeded)
    }

    /// Waits (by watching, not polling) until the job ends.
    func waitForEnd(_ client: SynthClient, _ jobID: String, seconds: Double = 60) async throws -> PBJob {
        try await followToEnd(client, jobID, seconds: seconds)
    }
}

/// Watches a job's progress until it ends; returns the last snapshot.
func followToEnd(_ client: SynthClient, _ jobID: String, seconds: Double = 60) async throws -> PBJob {
    try await withTimeout(seconds, "job \(jobID) to end") {
        var req = PBWatchJobRequest()
        req.jobID = jobID
        req.progressOnly = true
        var last = PBJob()
        for try await e in client.stream(Methods.watchJob, req) {
            if case .progress(let j) = e.event { last = j }
        }
        return last
    }
}

/// Runs `body` against a fresh harness and always shuts it down, within a time limit.
func withHarness(fakeArgs: [String] = [], idleTimeout: Duration = .seconds(300), maxFrameSize: Int = FrameDecoder.defaultMaxFrameSize,
                 jobConcurrency: Int = 16, providerTimeout: Double = 20, maxRetries: Int = 4, seconds: Double = 120,
                 rateLimit: (perMinute: Int, burst: Int) = (0, 1), server configure: (inout ServerConfig) -> Void = { _ in },
                 engine configureEngine: (inout EngineConfig) -> Void = { _ in }, mapSize: Int = Store.defaultMapSize,
                 prepareData: (String) throws -> Void = { _ in },
                 _ body: @escaping @Sendable (Harness) async throws -> Void) async throws {
    let h = try await Harness(fakeArgs: fakeArgs, idleTimeout: idleTimeout, maxFrameSize: maxFrameSize, jobConcurrency: jobConcurrency,
                              providerTimeout: providerTimeout, maxRetries: maxRetries, rateLimit: rateLimit, server: configure,
                              engine: configureEngine, mapSize: mapSize, prepareData: prepareData)
    do {
        try await withTimeout(seconds, "test body") { try await body(h) }
    } catch {
        _ = try? await withTimeout(30, "shutdown") { await h.shutdown() }
        throw error
    }
    try await withTimeout(30, "shutdown") { await h.shutdown() }
}

/// A bare framed connection, for what the Swift client would never send.
final class RawConnection: @unchecked Sendable {
    let channel: NIOAsyncChannel<ByteBuffer, ByteBuffer>
    var iterator: NIOAsyncChannelInboundStream<ByteBuffer>.AsyncIterator
    let outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>

    /// No frame encoder on the way out, so that tests can write any bytes.
    init(_ address: Address) async throws {
        let bootstrap = ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
        let initializer: @Sendable (Channel) -> EventLoopFuture<NIOAsyncChannel<ByteBuffer, ByteBuffer>> = { ch in
            ch.eventLoop.makeCompletedFuture {
                try ch.pipeline.syncOperations.addHandler(ByteToMessageHandler(FrameDecoder()))
                return try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: ch)
            }
        }
        switch address {
        case .unix(let p): channel = try await bootstrap.connect(unixDomainSocketPath: p, channelInitializer: initializer)
        case .tcp(let h, let port): channel = try await bootstrap.connect(host: h, port: port, channelInitializer: initializer)
        case .tls: throw ClientError(.invalidArgument, "the raw test connection speaks plain TCP or Unix only")
        }
        iterator = channel.inbound.makeAsyncIterator()
        outbound = channel.outbound
    }

    func sendRaw(_ bytes: [UInt8]) async throws {
        try await outbound.write(ByteBuffer(bytes: bytes))
    }

    func send(_ frame: PBFrame) async throws {
        let body: [UInt8] = try frame.serializedBytes()
        var out: [UInt8] = withUnsafeBytes(of: UInt32(body.count).bigEndian) { Array($0) }
        out += body
        try await sendRaw(out)
    }

    func open(_ id: UInt64, _ method: String, key: String, _ request: some SwiftProtobuf.Message, timeoutMs: UInt64 = 0) async throws {
        var f = PBFrame()
        f.callID = id
        f.open.method = method
        f.open.apiKey = key
        f.open.timeoutMs = timeoutMs
        f.open.request = try request.serializedData()
        try await send(f)
    }

    /// The next frame, or nil when the server closed the connection. Fails after `seconds`.
    func next(seconds: Double = 10) async throws -> PBFrame? {
        let ch = channel.channel
        let fired = TimerFlag()
        let timer = Task {
            try await Task.sleep(for: .milliseconds(Int64(seconds * testTimeScale * 1000)))
            fired.set()
            try? await ch.close()
        }
        defer { timer.cancel() }
        let b: ByteBuffer?
        do {
            b = try await iterator.next()
        } catch {
            if fired.isSet { throw TimeoutError(what: "next frame") }
            return nil
        }
        if fired.isSet { throw TimeoutError(what: "next frame") }
        return try b.map { try PBFrame(serializedBytes: Array($0.readableBytesView)) }
    }

    func close() async {
        outbound.finish()
        try? await channel.channel.close()
    }

    /// Closes the sending side only, as a client does that has sent its last call and still reads.
    func halfClose() async throws {
        try await channel.channel.close(mode: .output)
    }

    deinit { outbound.finish() }
}

import SwiftProtobuf

final class TimerFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    func set() { lock.withLock { value = true } }
    var isSet: Bool { lock.withLock { value } }
}
