import Foundation

/// Where a synthd listens and a client connects: `unix:PATH` or `HOST:PORT`.
public enum Address: Sendable, Equatable, CustomStringConvertible {
    case unix(String)
    case tcp(host: String, port: Int)

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

    /// Parses `unix:PATH`, `unix://PATH`, a bare path, or `HOST:PORT` (`[::1]:PORT` for IPv6).
    public init?(_ text: String) {
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
        }
    }
}
