import Foundation

/// Writing JSON text directly, for request bodies built on every call.
public enum JSONText {
    /// `text` as a JSON string literal, quotes included.
    static func quote(_ text: String) -> String {
        var out = [UInt8]()
        out.reserveCapacity(text.utf8.count + 16)
        out.append(UInt8(ascii: "\""))
        // Two appends per escape, never a temporary array: a system prompt has a line break in
        // every line and is quoted for every request.
        for b in text.utf8 {
            switch b {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"):
                out.append(UInt8(ascii: "\\"))
                out.append(b)
            case 0x0A:
                out.append(UInt8(ascii: "\\"))
                out.append(UInt8(ascii: "n"))
            case 0x0D:
                out.append(UInt8(ascii: "\\"))
                out.append(UInt8(ascii: "r"))
            case 0x09:
                out.append(UInt8(ascii: "\\"))
                out.append(UInt8(ascii: "t"))
            case 0..<0x20:
                let hex = "0123456789abcdef".utf8
                out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "u"), UInt8(ascii: "0"), UInt8(ascii: "0")])
                out.append(hex[hex.index(hex.startIndex, offsetBy: Int(b >> 4))])
                out.append(hex[hex.index(hex.startIndex, offsetBy: Int(b & 0xF))])
            default: out.append(b)
            }
        }
        out.append(UInt8(ascii: "\""))
        return String(decoding: out, as: UTF8.self)
    }

    /// A value from JSONSerialization written back as JSON text, object keys in code-point order.
    /// (JSONSerialization's own `.sortedKeys` builds a Locale on every call, which is slow and has
    /// crashed under concurrent use.)
    public static func write(_ value: Any) -> String {
        var out = ""
        write(value, into: &out)
        return out
    }

    /// `first`: keys written before the others, in this order (the rest follow in code-point
    /// order). A JSON schema's `properties` are written in the order of its `required` list, which
    /// is the order a model is asked to write them in: a grammar-constrained server follows the
    /// order of `properties`.
    static func write(_ value: Any, into out: inout String, first: [String] = []) {
        switch value {
        case let d as [String: Any]:
            out += "{"
            let leading = first.filter { d[$0] != nil }
            let rest = d.keys.filter { !leading.contains($0) }.sorted()
            let required = d["required"] as? [String] ?? []
            for (i, key) in (leading + rest).enumerated() {
                if i > 0 { out += "," }
                out += quote(key) + ":"
                write(d[key]!, into: &out, first: key == "properties" ? required : [])
            }
            out += "}"
        case let a as [Any]:
            out += "["
            for (i, v) in a.enumerated() {
                if i > 0 { out += "," }
                write(v, into: &out)
            }
            out += "]"
        case let s as String:
            out += quote(s)
        case let n as NSNumber:
            // The stored C type tells a JSON boolean ("c") and a float ("d", "f") from an integer.
            let type = String(cString: n.objCType)
            if type == "c" || type == "B" {
                out += n.boolValue ? "true" : "false"
            } else if type == "d" || type == "f" {
                let d = n.doubleValue
                out += d.isFinite ? (d == d.rounded() && abs(d) < 1e15 ? String(Int64(d)) : String(d)) : "null"
            } else {
                out += n.stringValue
            }
        case let b as Bool:
            out += b ? "true" : "false"
        case let i as Int:
            out += String(i)
        case let d as Double:
            out += d.isFinite ? String(d) : "null"
        default:
            out += "null"
        }
    }

    /// A JSON object written member by member, in the order they are added.
    struct Object {
        private var text = "{"

        mutating func add(_ key: String, raw: String) {
            if text.utf8.count > 1 { text += "," }
            text += JSONText.quote(key) + ":" + raw
        }

        mutating func add(_ key: String, string: String) { add(key, raw: JSONText.quote(string)) }

        /// A finite number; integral values are written without a fraction.
        mutating func add(_ key: String, number: Double) {
            guard number.isFinite else { return }
            if number == number.rounded(), abs(number) < 1e15 {
                add(key, raw: String(Int64(number)))
            } else {
                add(key, raw: String(number))
            }
        }

        var bytes: [UInt8] { Array((text + "}").utf8) }
    }
}
