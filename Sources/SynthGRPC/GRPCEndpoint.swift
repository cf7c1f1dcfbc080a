import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Logging
import NIOCore
import NIOSSL
import NIOCertificateReloading
import SynthConcurrency
import Synchronization
import SynthCore
import SynthServer

/// synthd as a standard gRPC service (HTTP/2, grpc-swift's NIO transport): the same methods, the
/// same application and the same gate as the framed protocol, with the same TLS and limits.
public final class GRPCEndpoint: Sendable {
    let address: String
    let config: ServerConfig
    let logger: Logger
    let service: SynthdGRPCService
    let tls: CertificateFiles?
    private let server: GRPCServer<HTTP2ServerTransport.Posix>
    private let runTask = Locked<Task<Void, Never>?>(nil)
    private let connections: Connections

    /// `address` is HOST:PORT (port 0 picks a free one); `gate` is the framed server's, so that
    /// the per-org rate counts calls of both.
    public init(address: String, config: ServerConfig, core: JobService, gate: CallGate, logger: Logger) throws {
        self.address = address
        self.config = config
        self.logger = logger
        try Server.checkTCPSecurity(address, config: config, logger: logger)
        let (host, port) = try Server.splitHostPort(address)
        tls = try config.tls.map { try CertificateFiles($0) }

        var transportConfig = HTTP2ServerTransport.Posix.Config.defaults
        // The largest valid request, and room: a request above it is told so by the gate, in words.
        transportConfig.rpc.maxRequestPayloadSize = JobService.largestGenerateRequestBytes + 4096
        transportConfig.http2.maxConcurrentStreams = config.maxCallsPerConnection
        transportConfig.connection.maxIdleTime = config.idleTimeout
        // A connection told to go (idle, or the server stopping) has this long to close by itself
        // once the client has answered the GOAWAY's PING (Connections closes it after its grace
        // time if the client never does).
        transportConfig.connection.maxGraceTime = .seconds(10)
        let connections = Connections(max: config.maxConnections, budget: JobService.largestGenerateRequestBytes + 65536,
                                      idle: config.unauthenticatedIdleTimeout, authenticatedIdle: config.idleTimeout)
        self.connections = connections
        transportConfig.channelDebuggingCallbacks.onAcceptTCPConnection = { channel in connections.admit(channel) }
        let security: HTTP2ServerTransport.Posix.TransportSecurity
        if let tls, let files = config.tls {
            // The files as they are now; the reloader gives every new connection the latest.
            security = .tls(.defaults(certificateChain: [.file(path: files.certificateChain, format: .pem)],
                                      privateKey: .file(path: files.privateKey, format: .pem)) { c in
                c.certificateReloader = tls
                if let ca = files.clientCA {
                    // Mutual TLS: a client must show a certificate signed by this CA (its host name is not checked).
                    c.clientCertificateVerification = .noHostnameVerification
                    c.trustRoots = .certificates([.file(path: ca, format: .pem)])
                }
            })
        } else {
            security = .plaintext
        }
        let socket: GRPCNIOTransportCore.SocketAddress = host.contains(":") ? .ipv6(host: host, port: port) : .ipv4(host: host, port: port)
        service = SynthdGRPCService(core: core, gate: gate, config: config, stop: StopSignal(), logger: logger, connections: connections)
        let transport = HTTP2ServerTransport.Posix(address: socket, transportSecurity: security, config: transportConfig)
        server = GRPCServer(transport: transport, services: [service])
    }

    /// Starts listening; returns the port bound.
    public func start() async throws -> Int {
        let server = self.server, logger = self.logger
        let task = Task {
            do {
                try await server.serve()
            } catch {
                logger.error("the gRPC endpoint stopped", metadata: ["error": "\(error)"])
            }
        }
        runTask.withLock { $0 = task }
        do {
            let bound = try await server.listeningAddress
            if let p = bound?.ipv4?.port ?? bound?.ipv6?.port { return p }
            throw ServerStartError("the gRPC endpoint on \(address) has no TCP port")
        } catch {
            task.cancel()
            throw ServerStartError("cannot serve gRPC on \(address): \(error)")
        }
    }

    /// Ends open calls with UNAVAILABLE (SHUTTING_DOWN, which clients retry), tells every
    /// connection to go, and returns when the endpoint has stopped (at most 5 seconds).
    public func stop() async {
        service.stop.fire()
        server.beginGracefulShutdown()
        let task = runTask.withLock { $0 }
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await task?.value }
            group.addTask { try? await Task.sleep(for: .seconds(5)) }
            await group.next()
            group.cancelAll()
        }
        task?.cancel()
        await task?.value
    }

    /// Reads the TLS files again (SIGHUP): new connections get the new certificate.
    public func reloadTLS() {
        guard let tls else { return }
        do {
            try tls.reload()
            logger.notice("gRPC TLS certificate reloaded")
        } catch {
            logger.error("gRPC TLS reload failed; the previous certificate stays in use", metadata: ["error": "\(error)"])
        }
    }

    /// Connections open now.
    public var connectionCount: Int { connections.count }
}

/// The certificate and key the gRPC endpoint offers, read from the TLS files and read again on
/// reload (grpc-swift's transport asks for them at every new connection).
final class CertificateFiles: CertificateReloader, Sendable {
    let files: TLSFiles
    private let current: Locked<NIOSSLContextConfigurationOverride>

    init(_ files: TLSFiles) throws {
        self.files = files
        current = Locked(try Self.load(files))
    }

    static func load(_ files: TLSFiles) throws -> NIOSSLContextConfigurationOverride {
        do {
            var o = NIOSSLContextConfigurationOverride()
            o.certificateChain = try NIOSSLCertificate.fromPEMFile(files.certificateChain).map { .certificate($0) }
            o.privateKey = .privateKey(try NIOSSLPrivateKey(file: files.privateKey, format: .pem))
            return o
        } catch {
            throw ServerStartError("cannot use the TLS files (certificate \(files.certificateChain), key \(files.privateKey)): \(error)")
        }
    }

    func reload() throws {
        let o = try Self.load(files)
        current.withLock { $0 = o }
    }

    var sslContextConfigurationOverride: NIOSSLContextConfigurationOverride { current.withLock { $0 } }
}

/// The endpoint's connections, by the peer address grpc-swift names them with (`ipv4:HOST:PORT`),
/// and what each may do before it has authenticated a call: as on the framed protocol, a
/// connection that has not shown a valid key may send no more than the largest valid request (and a
/// little), and is closed once it has had no open call and sent nothing for the unauthenticated
/// idle time (with GOAWAY if it ever spoke, so that a client opens its next call elsewhere). Above the
/// maximum number of connections, a new one is closed as it is accepted.
final class Connections: Sendable {
    let max: Int
    /// Bytes (as they come off the socket, TLS included) a connection may send before it authenticates.
    let budget: Int
    /// Before a call has shown a valid key, and after.
    let idle: Duration
    let authenticatedIdle: Duration
    /// How long a connection told to go (GOAWAY) has before it is closed.
    static let grace = TimeAmount.seconds(10)
    private let table = Locked<[String: ConnectionState]>([:])

    init(max: Int, budget: Int, idle: Duration, authenticatedIdle: Duration) {
        self.max = max
        self.budget = budget
        self.idle = idle
        self.authenticatedIdle = authenticatedIdle
    }

    static func amount(_ d: Duration) -> TimeAmount {
        .nanoseconds(Int64(d.components.seconds) * 1_000_000_000 + d.components.attoseconds / 1_000_000_000)
    }

    var count: Int { table.withLock { $0.count } }

    /// The connection a call came on, from its ServerContext.remotePeer.
    func state(ofPeer peer: String) -> ConnectionState? { table.withLock { $0[peer] } }

    /// grpc-swift's name for a TCP peer (Channel.remoteAddressInfo).
    static func peer(_ address: NIOCore.SocketAddress?) -> String {
        switch address {
        case .v4(let a)?: return "ipv4:\(a.host):\(address!.port!)"
        case .v6(let a)?: return "ipv6:[\(a.host)]:\(address!.port!)"
        default: return "<unknown>"
        }
    }

    func admit(_ channel: any Channel) -> EventLoopFuture<Void> {
        let peer = Self.peer(channel.remoteAddress)
        // Calls find their connection by its peer address: one without one cannot be told apart.
        guard peer != "<unknown>" else { return channel.close() }
        let state = ConnectionState()
        let open = table.withLock { t -> Int in
            t[peer] = state
            return t.count
        }
        channel.closeFuture.whenComplete { _ in
            self.table.withLock { t in
                if t[peer] === state { t.removeValue(forKey: peer) }
            }
        }
        guard open <= max else { return channel.close() }
        let counter = InboundBudget(state: state, budget: budget)
        do {
            try channel.pipeline.syncOperations.addHandler(counter, position: .first)
        } catch {
            return channel.close()
        }
        // Checked every second (or sooner): a connection with no open call that has sent
        // nothing for its idle time (the short one until a call shows a valid key) is told to go
        // with GOAWAY, so that a client (a Health probe, say) opens its next call elsewhere rather
        // than lose one sent meanwhile, and closed after the grace time whatever it does (grpc-swift's
        // own grace timer waits for the client's PING answer, which a client that went quiet never
        // sends). One that never sent a byte is closed at once.
        let idleBefore = Self.amount(idle), idleAfterAuth = Self.amount(authenticatedIdle)
        let every = min(idleBefore, idleAfterAuth, .seconds(1))
        let check = channel.eventLoop.scheduleRepeatedTask(initialDelay: every, delay: every) { task in
            let limit = state.authenticated.load(ordering: .acquiring) ? idleAfterAuth : idleBefore
            guard state.openCalls.load(ordering: .acquiring) == 0, NIODeadline.now() - counter.lastRead >= limit else { return }
            task.cancel()
            if counter.received == 0 {
                channel.close(promise: nil)
            } else {
                channel.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent())
                channel.eventLoop.scheduleTask(in: Self.grace) { channel.close(promise: nil) }
            }
        }
        channel.closeFuture.whenComplete { _ in check.cancel() }
        return channel.eventLoop.makeSucceededVoidFuture()
    }
}

/// One connection: whether a call on it has shown a valid key, and its calls open now.
final class ConnectionState: Sendable {
    let authenticated = Atomic<Bool>(false)
    let openCalls = Atomic<Int>(0)
}

/// Counts what a connection sends until it authenticates, and closes it past the budget. Its
/// counters are touched on the connection's event loop only (the idle check runs there too).
final class InboundBudget: ChannelInboundHandler, RemovableChannelHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    let state: ConnectionState
    let budget: Int
    /// Read on the channel's event loop only.
    private(set) var received = 0
    /// When the connection last sent anything.
    private(set) var lastRead = NIODeadline.now()

    init(state: ConnectionState, budget: Int) {
        self.state = state
        self.budget = budget
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        lastRead = .now()
        if !state.authenticated.load(ordering: .relaxed) {
            received += unwrapInboundIn(data).readableBytes
            if received > budget {
                context.close(promise: nil)
                return
            }
        }
        context.fireChannelRead(data)
    }
}

/// Fired once when the endpoint stops: every open stream ends with UNAVAILABLE.
final class StopSignal: Sendable {
    private struct State {
        var fired = false
        var waiters: [Int: CheckedContinuation<Void, Never>] = [:]
        var next = 0
    }

    private let state = Locked(State())

    var isFired: Bool { state.withLock { $0.fired } }

    func fire() {
        let waiters = state.withLock { s -> [CheckedContinuation<Void, Never>] in
            s.fired = true
            defer { s.waiters = [:] }
            return Array(s.waiters.values)
        }
        for w in waiters { w.resume() }
    }

    /// Returns once fired, or once the waiting task is cancelled.
    func wait() async {
        let id = state.withLock { s -> Int in
            s.next += 1
            return s.next
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                let now = state.withLock { s -> Bool in
                    if s.fired || Task.isCancelled { return true }
                    s.waiters[id] = c
                    return false
                }
                if now { c.resume() }
            }
        } onCancel: {
            let w = state.withLock { $0.waiters.removeValue(forKey: id) }
            w?.resume()
        }
    }
}
