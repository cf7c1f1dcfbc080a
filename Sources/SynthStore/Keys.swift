import Foundation

/// How table keys are spelt. Text parts are separated by a 0 byte, numbers are big-endian so
/// that byte order is numeric order.
enum Keys {
    static func text(_ s: String) -> [UInt8] { Array(s.utf8) }

    static func join(_ parts: [UInt8]...) -> [UInt8] {
        var out: [UInt8] = []
        for (i, p) in parts.enumerated() {
            if i > 0 { out.append(0) }
            out.append(contentsOf: p)
        }
        return out
    }

    static func u64(_ v: UInt64) -> [UInt8] {
        withUnsafeBytes(of: v.bigEndian) { Array($0) }
    }

    static func readU64(_ bytes: UnsafeRawBufferPointer, at offset: Int) -> UInt64 {
        var v: UInt64 = 0
        for i in 0..<8 { v = v << 8 | UInt64(bytes[offset + i]) }
        return v
    }

    /// records and events: job id, 0, sequence.
    static func sequenced(_ jobID: String, _ seq: UInt64) -> [UInt8] { join(text(jobID), u64(seq)) }
    static func jobPrefix(_ jobID: String) -> [UInt8] { text(jobID) + [0] }

    /// A key for a message: text as it is, the separator as "/", the 8 bytes of a sequence
    /// number after it as a number, anything else in hex; at most 120 characters.
    static func printable(_ key: [UInt8]) -> String {
        var out = ""
        var i = 0
        while i < key.count, out.count < 120 {
            let b = key[i]
            if b == 0, key.count - i - 1 == 8 {
                out += "/\(key[(i + 1)...].reduce(UInt64(0)) { $0 << 8 | UInt64($1) })"
                break
            }
            out += b == 0 ? "/" : (0x20..<0x7F).contains(b) ? String(UnicodeScalar(b)) : String(format: "\\x%02x", b)
            i += 1
        }
        return out
    }
}

/// Random identifiers and secrets.
public enum Identifiers {
    static let alphabet = Array("abcdefghijklmnopqrstuvwxyz0123456789".utf8)
    static let keyAlphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789".utf8)

    /// `count` characters from `alphabet`, from the system's CSPRNG, without modulo bias.
    static func random(_ count: Int, from alphabet: [UInt8]) -> String {
        var rng = SystemRandomNumberGenerator()
        var out: [UInt8] = []
        out.reserveCapacity(count)
        for _ in 0..<count {
            out.append(alphabet[Int.random(in: 0..<alphabet.count, using: &rng)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    public static func newJobID() -> String { "syn_job_" + random(20, from: alphabet) }
    public static func newKeyID() -> String { "key_" + random(16, from: alphabet) }
    /// 40 characters of base62: about 238 bits.
    public static func newAPIKey() -> String { "sk_live_" + random(40, from: keyAlphabet) }
}

/// Milliseconds since the epoch, and RFC 3339 text.
public enum Clock {
    public static func nowMillis() -> Int64 { Int64(Date().timeIntervalSince1970 * 1000) }

    public static func rfc3339(_ millis: Int64) -> String {
        guard millis > 0 else { return "" }
        var seconds = time_t(millis / 1000)
        var t = tm()
        guard gmtime_r(&seconds, &t) != nil else { return "" }
        func two(_ v: Int32) -> String { v < 10 ? "0\(v)" : "\(v)" }
        return "\(t.tm_year + 1900)-\(two(t.tm_mon + 1))-\(two(t.tm_mday))T\(two(t.tm_hour)):\(two(t.tm_min)):\(two(t.tm_sec))Z"
    }

    public static func month(_ millis: Int64) -> String {
        String(rfc3339(millis).prefix(7))
    }
}
