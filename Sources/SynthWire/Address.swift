import Foundation

/// Where a synthd listens and a client connects: `unix:PATH`, `HOST:PORT`, or `tls:HOST:PORT`
/// for TCP with TLS.
public enum Address: Sendable, Equatable, CustomStringConvertible {
    case unix(String)
    case tcp(host: String, port: Int)
    case tls(host: String, port: Int)

    /// `~/.synthd/synthd.sock`: what `synthd serve` binds and `synth` dials when told nothing.
    public static var defaultSocketPath: String {
        let home = ProcessInfo.processInfo.environment["HOME"] ?? "/tmp"
        return home + "/.synthd/synthd.sock"
    }

    /// `~/.synthd/data`.
    public static var defaultDataDirectory: String {
        let home = ProcessInfo.processInfo.environment["HOME"] ?? "/tmp"
        return home + "/.synthd/data"
    }

    public static var `default`: Address { .unix(defaultSocketPath) }

    /// Parses `unix:PATH`, `unix://PATH`, a bare path, `HOST:PORT` (`[::1]:PORT` for IPv6), or
    /// `tls:HOST:PORT` (`tls://HOST:PORT`).
    public init?(_ text: String) {
        for prefix in ["tls://", "tls:"] where text.hasPrefix(prefix) {
            guard case .tcp(let host, let port)? = Address(String(text.dropFirst(prefix.count))) else { return nil }
            self = .tls(host: host, port: port)
            return
        }
        if text.hasPrefix("unix://") {
            self = .unix(String(text.dropFirst(7)))
        } else if text.hasPrefix("unix:") {
            self = .unix(String(text.dropFirst(5)))
        } else if text.hasPrefix("/") || text.hasPrefix(".") {
            self = .unix(text)
        } else if let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]), (0...65535).contains(port) {
            var host = String(text[..<colon])
            if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
            guard !host.isEmpty else { return nil }
            self = .tcp(host: host, port: port)
        } else {
            return nil
        }
        if case .unix(let p) = self, p.isEmpty { return nil }
    }

    public var description: String {
        switch self {
        case .unix(let p): return "unix:\(p)"
        case .tcp(let h, let p): return h.contains(":") ? "[\(h)]:\(p)" : "\(h):\(p)"
        case .tls(let h, let p): return "tls:" + Address.tcp(host: h, port: p).description
        }
    }
}
