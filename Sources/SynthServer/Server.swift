import Foundation
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import SynthCore
import SynthProto
import SynthWire
import SynthConcurrency

/// The synthd server: Unix and TCP listeners speaking the framed protocol, dispatching calls to
/// the service.
public final class Server: Sendable {
    public struct Bound: Sendable {
        public var unixPath: String?
        public var tcpPort: Int?
    }

    let config: ServerConfig
    let service: Service
    let logger: Logger
    let group: MultiThreadedEventLoopGroup
    private struct State {
        var runTask: Task<Void, Never>?
        var listeners: [NIOAsyncChannel<Accepted, Never>] = []
        var connections: [ObjectIdentifier: ConnectionState] = [:]
    }

    private let state = Locked(State())
    /// The TLS context new TCP connections get; replaced by `reloadTLS` (open connections keep theirs).
    private let tlsContext = Locked<NIOSSLContext?>(nil)

    /// A new connection and its frame limit, which rises once it authenticates.
    struct Accepted: Sendable {
        let channel: NIOAsyncChannel<ByteBuffer, OutboundFrame>
        let limit: FrameSizeLimit
    }

    /// Counts the connection in, unless `maxConnections` are open already.
    func register(_ state: ConnectionState) -> Bool {
        let max = config.maxConnections
        return self.state.withLock {
            guard $0.connections.count < max else { return false }
            $0.connections[ObjectIdentifier(state)] = state
            return true
        }
    }

    func unregister(_ state: ConnectionState) { _ = self.state.withLock { $0.connections.removeValue(forKey: ObjectIdentifier(state)) } }

    /// Connections open now.
    public var connectionCount: Int { state.withLock { $0.connections.count } }

    /// What every call passes first; a gRPC endpoint beside this server shares it, so that an
    /// org's calls count once against its rate whichever way they come.
    public let gate: CallGate

    /// Serves `core`, the application, over the framed protocol.
    public init(config: ServerConfig, core: JobService, logger: Logger, group: MultiThreadedEventLoopGroup = .singleton) {
        self.config = config
        self.logger = logger
        self.group = group
        gate = CallGate(core: core, perMinute: config.rateLimitPerMinute, burst: config.rateLimitBurst)
        self.service = Service(core: core, gate: gate, config: config, logger: logger)
    }

    /// Binds the configured listeners and starts serving. Returns the real addresses (a TCP port
    /// of 0 becomes the port the kernel chose).
    public func start() async throws -> Bound {
        // Load the domain spell check's word list and index now, on its own thread, rather than
        // inside the first Generate.
        JobService.warmUp()
        var bound = Bound()
        if config.tcp != nil {
            try checkTCPSecurity()
            if let files = config.tls { try installTLS(files) }
        }
        let maxFrame = config.maxFrameSize, firstFrames = config.unauthenticatedMaxFrameSize
        let initializer: @Sendable (Channel, Bool) -> EventLoopFuture<Accepted> = { [self] child, secure in
            child.eventLoop.makeCompletedFuture {
                let tls = secure ? self.tlsContext.withLock({ $0 }) : nil
                if let tls {
                    try child.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: tls))
                }
                // Until a call authenticates, a frame may hold the largest valid request and no more.
                let limit = FrameSizeLimit(firstFrames, full: maxFrame)
                try child.pipeline.syncOperations.addHandler(ByteToMessageHandler(FrameDecoder(limit: limit)))
                try child.pipeline.syncOperations.addHandler(FrameOutboundHandler(maxFrameSize: maxFrame, sendFile: tls == nil))
                return Accepted(channel: try NIOAsyncChannel<ByteBuffer, OutboundFrame>(wrappingChannelSynchronously: child), limit: limit)
            }
        }
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            // A larger send buffer lets a stream of record batches reach a fast reader in fewer
            // wake-ups (the kernel caps it at net.core.wmem_max).
            .childChannelOption(.socketOption(.so_sndbuf), value: 2 << 20)
            // A client that closes its side after its last call still gets its answers.
            .childChannelOption(.allowRemoteHalfClosure, value: true)
        var listeners: [NIOAsyncChannel<Accepted, Never>] = []
        do {
            if let path = config.unixPath {
                try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
                let l = try await bootstrap.bind(unixDomainSocketPath: path, cleanupExistingSocketFile: true,
                                                 childChannelInitializer: { initializer($0, false) })
                try Self.secureSocket(path, group: config.unixGroup)
                listeners.append(l)
                bound.unixPath = path
            }
            if let tcp = config.tcp {
                let (host, port) = try Self.splitHostPort(tcp)
                let secure = config.tls != nil
                let l = try await bootstrap.bind(host: host, port: port, childChannelInitializer: { initializer($0, secure) })
                listeners.append(l)
                bound.tcpPort = l.channel.localAddress?.port
            }
        } catch {
            for l in listeners { try? await l.channel.close() }
            throw error
        }
        let ready = listeners
        let task = Task { await self.serve(ready) }
        state.withLock {
            $0.listeners = ready
            $0.runTask = task
        }
        return bound
    }

    /// Plain TCP carries API keys and records in clear text: it is refused on an address other
    /// machines can reach unless the config says `insecure_tcp`, and then it is warned about.
    func checkTCPSecurity() throws {
        guard let tcp = config.tcp else { return }
        try Self.checkTCPSecurity(tcp, config: config, logger: logger)
    }

    /// The same rule for any TCP listener of this config (the gRPC endpoint's too).
    public static func checkTCPSecurity(_ tcp: String, config: ServerConfig, logger: Logger) throws {
        guard config.tls == nil else { return }
        let (host, _) = try Self.splitHostPort(tcp)
        if Self.isLoopback(host) { return }
        guard config.insecureTCP else {
            throw ServerStartError("refusing to listen on \(tcp) without TLS: API keys and records would cross the network in clear text. "
                                   + "Give a certificate and key (--tls-cert/--tls-key, server.tls), or --insecure-tcp to accept that")
        }
        logger.warning("listening on \(tcp) without TLS (--insecure-tcp): API keys and records cross the network in clear text")
    }

    /// Whether a host is this machine only: 127.0.0.0/8, ::1 or localhost.
    static func isLoopback(_ host: String) -> Bool {
        if host == "localhost" || host == "::1" { return true }
        if let a = try? SocketAddress(ipAddress: host, port: 0), case .v4 = a { return host.hasPrefix("127.") }
        return false
    }

    /// Builds the TLS context from its files and makes it the one new connections get.
    func installTLS(_ files: TLSFiles) throws {
        var c: TLSConfiguration
        do {
            let chain = try NIOSSLCertificate.fromPEMFile(files.certificateChain).map { NIOSSLCertificateSource.certificate($0) }
            let key = try NIOSSLPrivateKey(file: files.privateKey, format: .pem)
            c = TLSConfiguration.makeServerConfiguration(certificateChain: chain, privateKey: .privateKey(key))
            c.minimumTLSVersion = .tlsv12
            if let ca = files.clientCA {
                // Mutual TLS: a client must show a certificate signed by this CA (its host name is not checked).
                c.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(ca))
                c.certificateVerification = .noHostnameVerification
            }
            let context = try NIOSSLContext(configuration: c)
            tlsContext.withLock { $0 = context }
        } catch {
            throw ServerStartError("cannot use the TLS files (certificate \(files.certificateChain), key \(files.privateKey)"
                                   + (files.clientCA.map { ", client CA \($0)" } ?? "") + "): \(error)")
        }
    }

    /// Reads the TLS files again (SIGHUP): new connections get the new certificate; open ones,
    /// and their streams, carry on with the one they started with. A file that does not load
    /// leaves the old certificate in place.
    public func reloadTLS() {
        guard let files = config.tls else { return }
        do {
            try installTLS(files)
            logger.notice("TLS certificate reloaded", metadata: ["certificate": "\(files.certificateChain)"])
        } catch {
            logger.error("TLS reload failed; the previous certificate stays in use", metadata: ["error": "\(error)"])
        }
    }

    /// The socket's mode: 0600, or 0660 for `group`'s members.
    static func secureSocket(_ path: String, group: String?) throws {
        guard let group else {
            chmod(path, 0o600)
            return
        }
        guard let entry = getgrnam(group) else {
            throw ServerStartError("server.unix_group: there is no group \(group)")
        }
        guard chown(path, uid_t.max, entry.pointee.gr_gid) == 0 else {
            throw ServerStartError("cannot give the socket \(path) to group \(group): \(String(cString: strerror(errno)))")
        }
        chmod(path, 0o660)
    }

    public static func splitHostPort(_ text: String) throws -> (String, Int) {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]), (0...65535).contains(port) else {
            throw RPCError.invalid("TCP address must be HOST:PORT, got \(text)")
        }
        var host = String(text[..<colon])
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        return (host.isEmpty ? "127.0.0.1" : host, port)
    }

    private func serve(_ listeners: [NIOAsyncChannel<Accepted, Never>]) async {
        await withDiscardingTaskGroup { group in
            for listener in listeners {
                group.addTask {
                    do {
                        try await listener.executeThenClose { inbound in
                            try await withThrowingDiscardingTaskGroup { connections in
                                for try await connection in inbound {
                                    // Reading frames is brief and comes before any call's work.
                                    connections.addTask(priority: .high) {
                                        await Connection(channel: connection.channel, limit: connection.limit, server: self).run()
                                    }
                                }
                            }
                        }
                    } catch {
                        self.logger.debug("listener ended", metadata: ["error": "\(error)"])
                    }
                }
            }
        }
    }

    /// Stops accepting, ends every connection (open calls end UNAVAILABLE, SHUTTING_DOWN) and
    /// returns when all are closed.
    public func stop() async {
        service.isStopping = true
        let (task, listeners) = state.withLock { ($0.runTask, $0.listeners) }
        for l in listeners { try? await l.channel.close() }
        // Open calls end with a status that tells the client to retry; the connections close once
        // those statuses are written (or after 2 seconds, for a client that does not read).
        let open = state.withLock { Array($0.connections.values) }
        for c in open { c.endCallsForShutdown() }
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                for c in open { await c.waitForCalls() }
            }
            group.addTask { try? await Task.sleep(for: .seconds(2)) }
            await group.next()
            group.cancelAll()
        }
        task?.cancel()
        await task?.value
    }

    /// Returns when the server has stopped.
    public func wait() async {
        let task = state.withLock { $0.runTask }
        await task?.value
    }
}

/// Why the server cannot start as configured.
public struct ServerStartError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
