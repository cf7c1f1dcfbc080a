import Foundation

/// A JSON value whose objects keep their key order, so that records come out in the documented
/// field order, byte for byte the same every time.
public indirect enum JSONValue: Sendable, Equatable {
    case null
    case bool(Bool)
    case number(Double)
    case int(Int64)
    case string(String)
    case array([JSONValue])
    case object([(String, JSONValue)])

    public static func == (a: JSONValue, b: JSONValue) -> Bool { a.serialized() == b.serialized() }

    public subscript(key: String) -> JSONValue? {
        if case .object(let pairs) = self { return pairs.first { $0.0 == key }?.1 }
        return nil
    }

    public var stringValue: String? { if case .string(let s) = self { return s } else { return nil } }
    public var doubleValue: Double? {
        switch self {
        case .number(let d): return d
        case .int(let i): return Double(i)
        default: return nil
        }
    }

    /// Parses JSON text, keeping object key order; nil when it is not one JSON value.
    /// Lenient only in what models write: a bare control character inside a string (a raw line
    /// break) and an unknown escape are taken as they stand.
    public static func parse(_ bytes: [UInt8]) -> JSONValue? {
        var p = Parser(bytes: bytes, budget: Int.max)
        p.lenientStrings = true
        p.skipSpace()
        guard let v = p.value(depth: 0) else { return nil }
        p.skipSpace()
        return p.i == bytes.count ? v : nil
    }

    /// Why a text is not JSON, and where: line and column count from 1, the column in characters.
    public struct SyntaxError: Error, Sendable, CustomStringConvertible {
        public var line: Int
        public var column: Int
        public var problem: String
        public var description: String { "line \(line), column \(column): \(problem)" }
    }

    /// Parses JSON text (RFC 8259, strictly: no trailing commas, no leading `+` or zeros, no bare
    /// control characters in strings), nested at most 64 deep and holding at most `maxValues`
    /// values, so that what a hostile text costs is bounded by the caller's limits, not by its shape.
    public static func parse(_ bytes: [UInt8], maxValues: Int) throws(SyntaxError) -> JSONValue {
        var p = Parser(bytes: bytes, budget: maxValues)
        p.skipSpace()
        guard let v = p.value(depth: 0) else { throw p.syntaxError() }
        p.skipSpace()
        guard p.i == bytes.count else {
            p.fail("unexpected text after the JSON value")
            throw p.syntaxError()
        }
        return v
    }

    public func serialized() -> [UInt8] {
        var out: [UInt8] = []
        write(&out)
        return out
    }

    public var text: String { String(decoding: serialized(), as: UTF8.self) }

    func write(_ out: inout [UInt8]) {
        switch self {
        case .null: out += Array("null".utf8)
        case .bool(let b): out += Array((b ? "true" : "false").utf8)
        case .int(let i): out += Array(String(i).utf8)
        case .number(let d):
            if d.isFinite, d == d.rounded(), abs(d) < 1e15 { out += Array(String(Int64(d)).utf8) }
            else if d.isFinite { out += Array("\(d)".utf8) }
            else { out += Array("null".utf8) }
        case .string(let s): Self.writeString(s, &out)
        case .array(let items):
            out.append(UInt8(ascii: "["))
            for (i, v) in items.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                v.write(&out)
            }
            out.append(UInt8(ascii: "]"))
        case .object(let pairs):
            out.append(UInt8(ascii: "{"))
            for (i, (k, v)) in pairs.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                Self.writeString(k, &out)
                out.append(UInt8(ascii: ":"))
                v.write(&out)
            }
            out.append(UInt8(ascii: "}"))
        }
    }

    static func writeString(_ s: String, _ out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        for b in s.utf8 {
            switch b {
            case UInt8(ascii: "\""): out += [92, 34]
            case UInt8(ascii: "\\"): out += [92, 92]
            case 0x0A: out += [92, UInt8(ascii: "n")]
            case 0x0D: out += [92, UInt8(ascii: "r")]
            case 0x09: out += [92, UInt8(ascii: "t")]
            case 0..<0x20:
                out += Array(String(format: "\\u%04x", b).utf8)
            default: out.append(b)
            }
        }
        out.append(UInt8(ascii: "\""))
    }

    struct Parser {
        let bytes: [UInt8]
        var i = 0
        var budget: Int
        /// The first problem found, and where.
        var problem: String?
        var problemAt = 0
        var lenientStrings = false

        init(bytes: [UInt8], budget: Int) {
            self.bytes = bytes
            self.budget = budget
        }

        mutating func fail(_ what: String) {
            if problem == nil {
                problem = what
                problemAt = i
            }
        }

        /// The line and column (in characters) of the problem.
        func syntaxError() -> SyntaxError {
            let at = min(problemAt, bytes.count)
            var line = 1, lineStart = 0
            for k in 0..<at where bytes[k] == 0x0A {
                line += 1
                lineStart = k + 1
            }
            let column = String(decoding: bytes[lineStart..<at], as: UTF8.self).count + 1
            return SyntaxError(line: line, column: column, problem: problem ?? "not JSON")
        }

        /// What the byte at `i` is, for a message.
        var here: String {
            guard i < bytes.count else { return "the end of the text" }
            let b = bytes[i]
            return b >= 0x20 && b < 0x7F ? "'\(Character(Unicode.Scalar(b)))'" : String(format: "byte 0x%02x", b)
        }

        mutating func skipSpace() {
            while i < bytes.count, [0x20, 0x0A, 0x0D, 0x09].contains(bytes[i]) { i += 1 }
        }

        mutating func value(depth: Int) -> JSONValue? {
            guard depth < 64 else { fail("nested more than 64 deep"); return nil }
            guard budget > 0 else { fail("more values than any valid body holds"); return nil }
            budget -= 1
            guard i < bytes.count else { fail("the text ends where a value should be"); return nil }
            switch bytes[i] {
            case UInt8(ascii: "{"):
                i += 1
                var pairs: [(String, JSONValue)] = []
                skipSpace()
                if i < bytes.count, bytes[i] == UInt8(ascii: "}") { i += 1; return .object(pairs) }
                while true {
                    skipSpace()
                    guard i < bytes.count, bytes[i] == UInt8(ascii: "\"") else { fail("expected a quoted key, found \(here)"); return nil }
                    guard case .string(let k)? = string() else { return nil }
                    skipSpace()
                    guard i < bytes.count, bytes[i] == UInt8(ascii: ":") else { fail("expected ':' after a key, found \(here)"); return nil }
                    i += 1
                    skipSpace()
                    guard let v = value(depth: depth + 1) else { return nil }
                    pairs.append((k, v))
                    skipSpace()
                    guard i < bytes.count else { fail("the text ends inside an object"); return nil }
                    if bytes[i] == UInt8(ascii: ",") { i += 1; continue }
                    if bytes[i] == UInt8(ascii: "}") { i += 1; return .object(pairs) }
                    fail("expected ',' or '}' in an object, found \(here)")
                    return nil
                }
            case UInt8(ascii: "["):
                i += 1
                var items: [JSONValue] = []
                skipSpace()
                if i < bytes.count, bytes[i] == UInt8(ascii: "]") { i += 1; return .array(items) }
                while true {
                    skipSpace()
                    guard let v = value(depth: depth + 1) else { return nil }
                    items.append(v)
                    skipSpace()
                    guard i < bytes.count else { fail("the text ends inside a list"); return nil }
                    if bytes[i] == UInt8(ascii: ",") { i += 1; continue }
                    if bytes[i] == UInt8(ascii: "]") { i += 1; return .array(items) }
                    fail("expected ',' or ']' in a list, found \(here)")
                    return nil
                }
            case UInt8(ascii: "\""): return string()
            case UInt8(ascii: "t"): return literal("true", .bool(true))
            case UInt8(ascii: "f"): return literal("false", .bool(false))
            case UInt8(ascii: "n"): return literal("null", .null)
            case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return number()
            default:
                fail("expected a value, found \(here)")
                return nil
            }
        }

        mutating func literal(_ word: String, _ v: JSONValue) -> JSONValue? {
            let w = Array(word.utf8)
            guard i + w.count <= bytes.count, Array(bytes[i..<i + w.count]) == w else { fail("expected a value, found \(here)"); return nil }
            i += w.count
            return v
        }

        /// -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?
        mutating func number() -> JSONValue? {
            let start = i
            func digits() -> Int {
                let from = i
                while i < bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[i]) { i += 1 }
                return i - from
            }
            if bytes[i] == UInt8(ascii: "-") { i += 1 }
            let intStart = i
            guard digits() > 0 else { fail("a number needs digits"); return nil }
            if i - intStart > 1, bytes[intStart] == UInt8(ascii: "0") { i = intStart; fail("a number must not start with 0"); return nil }
            var integral = true
            if i < bytes.count, bytes[i] == UInt8(ascii: ".") {
                i += 1
                integral = false
                guard digits() > 0 else { fail("a number needs digits after '.'"); return nil }
            }
            if i < bytes.count, bytes[i] == UInt8(ascii: "e") || bytes[i] == UInt8(ascii: "E") {
                i += 1
                integral = false
                if i < bytes.count, bytes[i] == UInt8(ascii: "+") || bytes[i] == UInt8(ascii: "-") { i += 1 }
                guard digits() > 0 else { fail("a number needs digits in its exponent"); return nil }
            }
            let text = String(decoding: bytes[start..<i], as: UTF8.self)
            if integral, let n = Int64(text) { return .int(n) }
            guard let d = Double(text) else { i = start; fail("a number out of range"); return nil }
            return .number(d)
        }

        mutating func string() -> JSONValue? {
            guard i < bytes.count, bytes[i] == UInt8(ascii: "\"") else { fail("expected a string, found \(here)"); return nil }
            i += 1
            var out: [UInt8] = []
            while i < bytes.count {
                let c = bytes[i]
                if c < 0x20, !lenientStrings { fail("a control character inside a string (write it as an escape)"); return nil }
                i += 1
                if c == UInt8(ascii: "\"") {
                    return .string(String(decoding: out, as: UTF8.self))
                }
                if c != UInt8(ascii: "\\") { out.append(c); continue }
                guard i < bytes.count else { break }
                let e = bytes[i]
                i += 1
                switch e {
                case UInt8(ascii: "n"): out.append(0x0A)
                case UInt8(ascii: "t"): out.append(0x09)
                case UInt8(ascii: "r"): out.append(0x0D)
                case UInt8(ascii: "b"): out.append(0x08)
                case UInt8(ascii: "f"): out.append(0x0C)
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): out.append(e)
                case UInt8(ascii: "u"):
                    guard let cp = hex4() else { fail("\\u needs four hex digits"); return nil }
                    var scalar = cp
                    if (0xD800..<0xDC00).contains(cp), i + 6 <= bytes.count, bytes[i] == 92, bytes[i + 1] == UInt8(ascii: "u") {
                        i += 2
                        guard let low = hex4(), (0xDC00..<0xE000).contains(low) else { fail("a broken surrogate pair"); return nil }
                        scalar = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00)
                    }
                    out += Array(String(Unicode.Scalar(scalar).map(Character.init) ?? "\u{FFFD}").utf8)
                default:
                    if lenientStrings { out.append(e); continue }
                    i -= 1
                    fail("an unknown escape \\\(Character(Unicode.Scalar(e)))")
                    return nil
                }
            }
            fail("the text ends inside a string")
            return nil
        }

        mutating func hex4() -> UInt32? {
            guard i + 4 <= bytes.count, bytes[i..<i + 4].allSatisfy({ ($0 >= 48 && $0 <= 57) || ($0 | 0x20 >= 97 && $0 | 0x20 <= 102) }),
                  let v = UInt32(String(decoding: bytes[i..<i + 4], as: UTF8.self), radix: 16) else { return nil }
            i += 4
            return v
        }
    }
}
