import SynthWire

/// Listeners and per-connection limits.
public struct ServerConfig: Sendable {
    /// A Unix socket path; nil for none.
    public var unixPath: String?
    /// "HOST:PORT"; port 0 picks a free port. nil for none.
    public var tcp: String?
    public var maxFrameSize: Int
    /// A connection with no open call and no traffic for this long is closed.
    public var idleTimeout: Duration
    public var maxCallsPerConnection: Int
    /// How often a watch stream re-checks that its key is still valid.
    public var keyRecheckInterval: Duration
    /// Calls per org per minute (0: no limit), and how many may come at once.
    public var rateLimitPerMinute: Int
    public var rateLimitBurst: Int

    public init(unixPath: String? = nil, tcp: String? = nil, maxFrameSize: Int = FrameDecoder.defaultMaxFrameSize,
                idleTimeout: Duration = .seconds(300), maxCallsPerConnection: Int = 1024, keyRecheckInterval: Duration = .seconds(2),
                rateLimitPerMinute: Int = 60, rateLimitBurst: Int = 60) {
        self.unixPath = unixPath
        self.tcp = tcp
        self.maxFrameSize = maxFrameSize
        self.idleTimeout = idleTimeout
        self.maxCallsPerConnection = maxCallsPerConnection
        self.keyRecheckInterval = keyRecheckInterval
        self.rateLimitPerMinute = rateLimitPerMinute
        self.rateLimitBurst = rateLimitBurst
    }
}
