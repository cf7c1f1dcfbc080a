import CoreMetrics
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import Prometheus
import SynthConcurrency
import SynthEngine
import SynthMetrics
import SynthStore

/// swift-metrics' backend for synthd: swift-prometheus's registry, with each family's help line
/// (SynthMetrics.help) and duration buckets from a millisecond to two minutes (a provider request
/// of a large model takes tens of seconds; a Health call a fraction of a millisecond).
struct SynthdMetricsFactory: MetricsFactory {
    let registry: PrometheusCollectorRegistry

    static let durationBuckets: [Duration] = [
        .milliseconds(1), .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100),
        .milliseconds(250), .milliseconds(500), .seconds(1), .milliseconds(2500), .seconds(5), .seconds(10), .seconds(30),
        .seconds(60), .seconds(120),
    ]

    /// The family's full name as given, with its help line.
    private func name(_ label: String) -> MetricNameDescriptor {
        MetricNameDescriptor(metricName: label, unitName: "", helpText: SynthMetrics.help[label] ?? "")
    }

    func makeCounter(label: String, dimensions: [(String, String)]) -> any CounterHandler {
        registry.makeCounter(descriptor: name(label), labels: dimensions)
    }

    func makeFloatingPointCounter(label: String, dimensions: [(String, String)]) -> any FloatingPointCounterHandler {
        registry.makeCounter(descriptor: name(label), labels: dimensions)
    }

    func makeRecorder(label: String, dimensions: [(String, String)], aggregate: Bool) -> any RecorderHandler {
        registry.makeGauge(descriptor: name(label), labels: dimensions)
    }

    func makeMeter(label: String, dimensions: [(String, String)]) -> any MeterHandler {
        registry.makeGauge(descriptor: name(label), labels: dimensions)
    }

    func makeTimer(label: String, dimensions: [(String, String)]) -> any TimerHandler {
        registry.makeDurationHistogram(descriptor: name(label), labels: dimensions, buckets: Self.durationBuckets)
    }

    func destroyCounter(_ handler: any CounterHandler) {}
    func destroyFloatingPointCounter(_ handler: any FloatingPointCounterHandler) {}
    func destroyRecorder(_ handler: any RecorderHandler) {}
    func destroyMeter(_ handler: any MeterHandler) {}
    func destroyTimer(_ handler: any TimerHandler) {}
}

/// `--metrics HOST:PORT`: `GET /metrics` in Prometheus's text format over plain HTTP/1.1. The
/// gauges that describe a state (jobs by status, requests in flight, the store's size) are read
/// when a scrape comes; the counters and histograms as things happen.
///
/// Bounded like the other listeners: at most `maxConnections` open, a request's head at most
/// NIO's default 80 KiB, a body (which no scrape sends) read and dropped, and a connection idle
/// for `idleTimeout` closed.
final class MetricsEndpoint: Sendable {
    let host: String
    let port: Int
    let registry: PrometheusCollectorRegistry
    let store: Store
    let engine: Engine
    let logger: Logger
    static let maxConnections = 16
    static let idleTimeout = TimeAmount.seconds(30)
    private let channel = Locked<(any Channel)?>(nil)
    private let open = Locked(0)
    /// The job counts, read at most every few seconds (they cost a read of every job).
    private let jobCounts = Locked<(at: ContinuousClock.Instant, counts: [String: Int])?>(nil)

    init(address: String, registry: PrometheusCollectorRegistry, store: Store, engine: Engine, logger: Logger) throws {
        guard let colon = address.lastIndex(of: ":"), let port = Int(address[address.index(after: colon)...]), (0...65535).contains(port) else {
            throw ConfigError(path: "--metrics", problems: ["\(address) is not HOST:PORT"])
        }
        var host = String(address[..<colon])
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        self.host = host.isEmpty ? "127.0.0.1" : host
        self.port = port
        self.registry = registry
        self.store = store
        self.engine = engine
        self.logger = logger
    }

    /// Binds and serves; returns the port.
    func start() async throws -> Int {
        let bootstrap = ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.backlog, value: 64)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { [self] channel in
                let admitted = open.withLock { n -> Bool in
                    guard n < Self.maxConnections else { return false }
                    n += 1
                    return true
                }
                guard admitted else { return channel.close() }
                channel.closeFuture.whenComplete { [self] _ in open.withLock { $0 -= 1 } }
                return channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(IdleStateHandler(allTimeout: Self.idleTimeout))
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(ScrapeHandler(endpoint: self))
                }
            }
        let server = try await bootstrap.bind(host: host, port: port).get()
        channel.withLock { $0 = server }
        return server.localAddress?.port ?? port
    }

    func stop() async {
        let server = channel.withLock { c -> (any Channel)? in
            defer { c = nil }
            return c
        }
        try? await server?.close()
    }

    /// The exposition, with the state gauges read now.
    func scrape() -> [UInt8] {
        let now = ContinuousClock.now
        let counts = jobCounts.withLock { cached -> [String: Int]? in
            if let cached, now - cached.at < .seconds(5) { return cached.counts }
            return nil
        } ?? {
            let fresh = (try? store.jobCountsByStatus()) ?? [:]
            jobCounts.withLock { $0 = (now, fresh) }
            return fresh
        }()
        for status in Set(JobStatus.allCases.map(\.rawValue)).union(counts.keys).sorted() {
            SynthMetrics.set(SynthMetrics.jobs, [("status", status)], to: Double(counts[status] ?? 0))
        }
        for (provider, n) in engine.providerRequestsInFlight {
            SynthMetrics.set(SynthMetrics.providerInFlight, [("provider", provider)], to: Double(n))
        }
        for e in engine.scheduler.endpointStatus() {
            let labels = [("provider", e.pool), ("endpoint", e.label)]
            SynthMetrics.set(SynthMetrics.endpointUp, labels, to: e.state == .inService ? 1 : 0)
            SynthMetrics.set(SynthMetrics.endpointInFlight, labels, to: Double(e.outstanding))
        }
        for (provider, n) in engine.scheduler.waiting() {
            SynthMetrics.set(SynthMetrics.requestsWaiting, [("provider", provider)], to: Double(n))
        }
        SynthMetrics.set(SynthMetrics.jobsQueued, to: Double(engine.queuedJobs))
        let map = store.mapUse()
        SynthMetrics.set(SynthMetrics.storeMapBytes, to: Double(map.mapSize))
        SynthMetrics.set(SynthMetrics.storeUsedBytes, to: Double(map.used))
        SynthMetrics.set(SynthMetrics.exportFileBytes, to: Double(store.exportFileBytes()))
        return registry.emitToBuffer()
    }
}

/// One connection's requests: `GET /metrics` answers the exposition, anything else 404 or 405.
final class ScrapeHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    let endpoint: MetricsEndpoint
    private var head: HTTPRequestHead?

    init(endpoint: MetricsEndpoint) {
        self.endpoint = endpoint
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let h): head = h
        case .body: break
        case .end:
            guard let head else { return }
            self.head = nil
            let path = head.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? head.uri
            let keepAlive = head.isKeepAlive
            guard path == "/metrics" else { return respond(context, .notFound, "not found; the metrics are at /metrics\n", keepAlive) }
            guard head.method == .GET || head.method == .HEAD else {
                return respond(context, .methodNotAllowed, "GET /metrics\n", keepAlive)
            }
            // The scrape reads the store: off the event loop.
            let endpoint = self.endpoint, loop = context.eventLoop, isHead = head.method == .HEAD
            let bound = NIOLoopBound((self, context), eventLoop: loop)
            BlockingLane.compute.submit {
                let body = endpoint.scrape()
                loop.execute {
                    let (handler, context) = bound.value
                    handler.respond(context, .ok, body, keepAlive, contentType: "text/plain; version=0.0.4; charset=utf-8", omitBody: isHead)
                }
            }
        }
    }

    func respond(_ context: ChannelHandlerContext, _ status: HTTPResponseStatus, _ text: String, _ keepAlive: Bool) {
        respond(context, status, Array(text.utf8), keepAlive, contentType: "text/plain; charset=utf-8", omitBody: false)
    }

    func respond(_ context: ChannelHandlerContext, _ status: HTTPResponseStatus, _ body: [UInt8], _ keepAlive: Bool,
                 contentType: String, omitBody: Bool) {
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: contentType)
        headers.add(name: "Content-Length", value: String(body.count))
        if !keepAlive { headers.add(name: "Connection", value: "close") }
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))), promise: nil)
        if !omitBody {
            context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(bytes: body)))), promise: nil)
        }
        let written = context.writeAndFlush(wrapOutboundOut(.end(nil)))
        if !keepAlive { written.assumeIsolated().whenComplete { _ in context.close(promise: nil) } }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent {
            context.close(promise: nil)
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }
}
