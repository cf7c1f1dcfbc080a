import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The exclusive claim of one `synthd serve` on a data directory: an `flock` on `synthd.lock`
/// inside it, held for as long as this value lives (the kernel lets it go when the process ends,
/// however it ends). A second server on the same directory would resume the same running jobs
/// and double their records and their bills; it is refused instead, naming the holder's pid.
///
/// Only the server takes it. `synthd admin` and other readers of the store open it beside a
/// running server as before: LMDB serialises their writes.
public final class DataDirectoryLock: Sendable {
    public static let fileName = "synthd.lock"
    private let fd: Int32

    /// Takes the lock, or throws `StoreError(.locked)` saying which process holds it.
    public init(directory: String) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let path = directory + "/" + Self.fileName
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            throw StoreError(.io, "cannot open \(path): \(String(cString: strerror(errno)))")
        }
        if flock(fd, LOCK_EX | LOCK_NB) != 0 {
            let why = errno
            let holder = Self.readPID(fd)
            close(fd)
            guard why == EWOULDBLOCK else {
                throw StoreError(.io, "cannot lock \(path): \(String(cString: strerror(why)))")
            }
            let who = holder.map { "synthd (pid \($0))" } ?? "another synthd"
            throw StoreError(.locked, "\(who) is already serving the data directory \(directory); stop it first, or give this one "
                             + "another --data directory")
        }
        // The holder's pid, for the message a second server prints.
        let text = Array("\(getpid())\n".utf8)
        _ = ftruncate(fd, 0)
        _ = text.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
        self.fd = fd
    }

    deinit {
        flock(fd, LOCK_UN)
        close(fd)
    }

    /// The pid written by the holder; nil when the file holds none (a holder still starting).
    static func readPID(_ fd: Int32) -> Int32? {
        var buf = [UInt8](repeating: 0, count: 32)
        let n = buf.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, 0) }
        guard n > 0 else { return nil }
        return Int32(String(decoding: buf[0..<n], as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines))
    }
}
