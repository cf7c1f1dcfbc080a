import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Logging
import NIOCore
import NIOSSL
import NIOCertificateReloading
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
    private let runTask = Mutex<Task<Void, Never>?>(nil)
    private let connections: ConnectionCount

    /// `address` is HOST:PORT (port 0 picks a free one); `gate` is the framed server's, so that
    /// the per-org rate counts calls of both.
    public init(address: String, config: ServerConfig, core: JobService, gate: CallGate, logger: Logger) throws {
        self.address = address
        self.config = config
        self.logger = logger
        try Server.checkTCPSecurity(address, config: config, logger: logger)
        let (host, port) = try Server.splitHostPort(address)
        tls = try config.tls.map { try CertificateFiles($0) }
        service = SynthdGRPCService(core: core, gate: gate, config: config, stop: StopSignal())

        var transportConfig = HTTP2ServerTransport.Posix.Config.defaults
        // The largest valid request, and room: a request above it is told so by the gate, in words.
        transportConfig.rpc.maxRequestPayloadSize = JobService.largestGenerateRequestBytes + 4096
        transportConfig.http2.maxConcurrentStreams = config.maxCallsPerConnection
        transportConfig.connection.maxIdleTime = config.idleTimeout
        let connections = ConnectionCount(max: config.maxConnections)
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

    /// Ends open streams with UNAVAILABLE (SHUTTING_DOWN, which clients retry), lets unary calls
    /// finish, and returns when the endpoint has stopped.
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
    private let current: Mutex<NIOSSLContextConfigurationOverride>

    init(_ files: TLSFiles) throws {
        self.files = files
        current = Mutex(try Self.load(files))
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

/// Counts open connections and closes one above the maximum as soon as it is accepted.
final class ConnectionCount: Sendable {
    let max: Int
    private let open = Atomic<Int>(0)

    init(max: Int) { self.max = max }

    var count: Int { open.load(ordering: .relaxed) }

    func admit(_ channel: any Channel) -> EventLoopFuture<Void> {
        let now = open.wrappingAdd(1, ordering: .relaxed).newValue
        channel.closeFuture.whenComplete { _ in self.open.wrappingSubtract(1, ordering: .relaxed) }
        if now > max {
            return channel.close()
        }
        return channel.eventLoop.makeSucceededVoidFuture()
    }
}

/// Fired once when the endpoint stops: every open stream ends with UNAVAILABLE.
final class StopSignal: Sendable {
    private struct State {
        var fired = false
        var waiters: [Int: CheckedContinuation<Void, Never>] = [:]
        var next = 0
    }

    private let state = Mutex(State())

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
