import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Loopback ports for servers synthd starts itself (the local model).
public enum Loopback {
    /// A loopback TCP port free at this moment (the kernel's choice for a socket bound to port 0).
    /// Another process may take it before the caller's server binds it: a caller retries with a
    /// new port when its server cannot bind.
    public static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw HTTPError(code: -1, message: "cannot open a socket to find a free loopback port (errno \(errno))") }
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = 0
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                bind(fd, sa, len) == 0 && getsockname(fd, sa, &len) == 0
            }
        }
        guard ok else { throw HTTPError(code: -1, message: "cannot find a free loopback port (errno \(errno))") }
        return Int(UInt16(bigEndian: addr.sin_port))
    }
}
