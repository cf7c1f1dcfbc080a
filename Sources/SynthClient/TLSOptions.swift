import NIOCore
import NIOSSL
import NIOTLS

/// How a client checks synthd over TLS, and proves itself for mutual TLS: PEM files.
public struct TLSOptions: Sendable, Equatable {
    /// The CA certificate(s) that signed the server's certificate; nil: the system's trust roots.
    public var caFile: String?
    /// A client certificate chain and its private key, for a server that asks for one.
    public var certificateFile: String?
    public var privateKeyFile: String?

    public init(caFile: String? = nil, certificateFile: String? = nil, privateKeyFile: String? = nil) {
        self.caFile = caFile
        self.certificateFile = certificateFile
        self.privateKeyFile = privateKeyFile
    }

    /// The TLS context: TLS 1.2 or newer, the server's certificate checked against the CA and
    /// the host name (or IP address) dialled.
    func context() throws -> NIOSSLContext {
        var config = TLSConfiguration.makeClientConfiguration()
        config.minimumTLSVersion = .tlsv12
        config.certificateVerification = .fullVerification
        do {
            if let caFile { config.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(caFile)) }
            switch (certificateFile, privateKeyFile) {
            case (let cert?, let key?):
                config.certificateChain = try NIOSSLCertificate.fromPEMFile(cert).map { .certificate($0) }
                config.privateKey = .privateKey(try NIOSSLPrivateKey(file: key, format: .pem))
            case (nil, nil):
                break
            default:
                throw ClientError(.invalidArgument, "a client certificate needs its private key, and a key its certificate")
            }
            return try NIOSSLContext(configuration: config)
        } catch let e as ClientError {
            throw e
        } catch {
            throw ClientError(.invalidArgument, "cannot load the TLS files (\(describe)): \(error)")
        }
    }

    var describe: String {
        [caFile.map { "CA \($0)" }, certificateFile.map { "certificate \($0)" }, privateKeyFile.map { "key \($0)" }]
            .compactMap { $0 }.joined(separator: ", ")
    }
}

/// Completes its promise when the TLS handshake is done, or fails it with why it was not.
final class TLSHandshakeWatcher: ChannelInboundHandler, RemovableChannelHandler, Sendable {
    typealias InboundIn = NIOAny
    let promise: EventLoopPromise<Void>

    init(promise: EventLoopPromise<Void>) { self.promise = promise }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case TLSUserEvent.handshakeCompleted = event { promise.succeed() }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        promise.fail(error)
        context.fireErrorCaught(error)
    }

    func channelInactive(context: ChannelHandlerContext) {
        promise.fail(ClientError(.unavailable, "the connection closed during the TLS handshake"))
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        promise.fail(ClientError(.unavailable, "the connection closed during the TLS handshake"))
    }
}

extension String {
    /// Whether this is an IPv4 or IPv6 address rather than a name.
    var isIPAddress: Bool { (try? SocketAddress(ipAddress: self, port: 0)) != nil }
}
