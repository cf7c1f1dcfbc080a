import SynthCore
import SynthWire

/// The files of the server's TLS: its certificate chain and private key, and for mutual TLS the
/// CA certificate(s) a client's certificate must be signed by.
public struct TLSFiles: Sendable, Equatable {
    public var certificateChain: String
    public var privateKey: String
    public var clientCA: String?

    public init(certificateChain: String, privateKey: String, clientCA: String? = nil) {
        self.certificateChain = certificateChain
        self.privateKey = privateKey
        self.clientCA = clientCA
    }
}

/// Listeners and per-connection limits.
public struct ServerConfig: Sendable {
    /// A Unix socket path; nil for none.
    public var unixPath: String?
    /// "HOST:PORT"; port 0 picks a free port. nil for none.
    public var tcp: String?
    /// The standard gRPC endpoint's "HOST:PORT" (HTTP/2; same TLS, same limits); nil for none.
    public var grpc: String?
    public var maxFrameSize: Int
    /// A connection with no open call and no traffic for this long is closed.
    public var idleTimeout: Duration
    public var maxCallsPerConnection: Int
    /// Connections open at once; one more is told so on call 0 and closed.
    public var maxConnections: Int
    /// A connection that has not authenticated a call closes after this long with no open call
    /// and no frame: it holds a socket and a partial frame for nothing.
    public var unauthenticatedIdleTimeout: Duration
    /// How often a watch stream that has nothing new sends its progress again, so that a peer
    /// gone without a word is found out by a failed write.
    public var keepaliveInterval: Duration
    /// How often a watch stream re-checks that its key is still valid.
    public var keyRecheckInterval: Duration
    /// Calls per org per minute (0: no limit), and how many may come at once.
    public var rateLimitPerMinute: Int
    public var rateLimitBurst: Int
    /// TLS on the TCP listener (PEM files); nil: plain TCP, allowed on a loopback address only
    /// unless `insecureTCP` says otherwise.
    public var tls: TLSFiles?
    public var insecureTCP = false
    /// A group whose members may use the Unix socket too (mode 0660); nil: the owner only (0600).
    public var unixGroup: String?

    public init(unixPath: String? = nil, tcp: String? = nil, maxFrameSize: Int = FrameDecoder.defaultMaxFrameSize,
                idleTimeout: Duration = .seconds(300), maxCallsPerConnection: Int = 64, keyRecheckInterval: Duration = .seconds(2),
                rateLimitPerMinute: Int = 60, rateLimitBurst: Int = 60, maxConnections: Int = 256,
                unauthenticatedIdleTimeout: Duration = .seconds(10), keepaliveInterval: Duration = .seconds(15)) {
        self.unixPath = unixPath
        self.tcp = tcp
        self.maxFrameSize = maxFrameSize
        self.idleTimeout = idleTimeout
        self.maxCallsPerConnection = maxCallsPerConnection
        self.keyRecheckInterval = keyRecheckInterval
        self.rateLimitPerMinute = rateLimitPerMinute
        self.rateLimitBurst = rateLimitBurst
        self.maxConnections = maxConnections
        self.unauthenticatedIdleTimeout = unauthenticatedIdleTimeout
        self.keepaliveInterval = keepaliveInterval
    }

    /// The frame limit of a connection that has not authenticated yet: the largest valid request
    /// and room for the call around it (method, key, deadline), never above `maxFrameSize`.
    public var unauthenticatedMaxFrameSize: Int {
        min(maxFrameSize, JobService.largestGenerateRequestBytes + 4096)
    }
}
