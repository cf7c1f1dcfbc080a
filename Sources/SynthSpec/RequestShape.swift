import SynthProto

/// The JSON shape of a request body: every message `JobRequest` reaches, with each field's names
/// (the proto name and the lowerCamel JSON name, both accepted as protobuf's JSON mapping does),
/// its kind and whether it is one value, a list or a map. The table is generated from
/// `proto/synthd/v1/request.proto` by `tools/gen-proto` (RequestShape+Generated.swift).
///
/// Walking a parsed body against it finds every unknown field, wrong type and repeated key at
/// once, each with its path, and leaves a body that decodes: so the validator can report the rule
/// violations of the same request in the same answer.
public enum RequestShape {
    indirect enum Kind: Sendable {
        case string, bool, double, int64, int32, uint64, uint32
        /// google.protobuf.Value: any JSON.
        case anyValue
        case message(String)
    }

    enum Cardinality: Sendable {
        case single(Kind)
        case repeated(Kind)
        case map(Kind)
    }

    struct Field: Sendable {
        let name: String
        let jsonName: String
        let cardinality: Cardinality

        init(_ name: String, _ jsonName: String, _ cardinality: Cardinality) {
            self.name = name
            self.jsonName = jsonName
            self.cardinality = cardinality
        }
    }

    /// Each message's fields by both of their names.
    static let index: [String: [String: Field]] = messages.mapValues { fields in
        var byName: [String: Field] = [:]
        for f in fields {
            byName[f.name] = f
            byName[f.jsonName] = f
        }
        return byName
    }

    /// What a walk found.
    struct Walk {
        /// Unknown fields, wrong types and repeated keys: (path, rule, value).
        var errors: [(String, String, String)] = []
        /// The paths of wrong types and repeated keys: the validator says nothing more about them
        /// (a wrong-typed `count` is not also a missing one).
        var refused: [String] = []
        /// Lists and maps present in the body but empty (`"invariants": []`), which a decoded
        /// message cannot tell from absent ones.
        var emptyLists: Set<String> = []

        mutating func refuse(_ path: String, _ rule: String, _ value: String) {
            errors.append((path, rule, value))
            refused.append(path)
        }
    }

    /// The body with everything the shape refuses taken out, each refusal recorded in `walk`.
    static func clean(_ root: JSONValue, _ walk: inout Walk) -> JSONValue {
        clean(root, .message(Self.root), "", &walk) ?? .object([])
    }

    static func join(_ path: String, _ key: String) -> String { path.isEmpty ? key : path + "." + key }

    static func clean(_ value: JSONValue, _ kind: Kind, _ path: String, _ walk: inout Walk) -> JSONValue? {
        switch kind {
        case .message(let name):
            guard case .object(let pairs) = value else {
                walk.refuse(path.isEmpty ? "(body)" : path, "must be an object", describe(value))
                return nil
            }
            let fields = index[name] ?? [:]
            var out: [(String, JSONValue)] = []
            var seen = Set<String>()
            for (key, v) in pairs {
                let here = join(path, key)
                guard let field = fields[key] else {
                    walk.errors.append((here, "unknown field: not part of the request" + suggestion(key, messages[name] ?? []), key))
                    continue
                }
                guard seen.insert(field.name).inserted else {
                    walk.refuse(join(path, field.name), "given more than once", key)
                    continue
                }
                if case .null = v { continue }   // null is the field's default, as in protobuf's JSON
                if let kept = cleanField(v, field.cardinality, join(path, field.name), &walk) { out.append((field.name, kept)) }
            }
            return .object(out)
        case .anyValue:
            return value
        case .string:
            if case .string = value { return value }
            walk.refuse(path, "must be a string", describe(value))
        case .bool:
            if case .bool = value { return value }
            walk.refuse(path, "must be true or false", describe(value))
        case .double:
            switch value {
            case .int: return value
            case .number(let d):
                // 1e400 reads as infinity: refused here, or it would arrive as "not given".
                if d.isFinite { return value }
                walk.refuse(path, "must be a finite number", "out of range")
                return nil
            case .string(let s):
                if ["NaN", "Infinity", "-Infinity"].contains(s) { return value }
                if let d = Double(s), d.isFinite { return .number(d) }
            default: break
            }
            walk.refuse(path, "must be a number", describe(value))
        case .int64, .int32, .uint64, .uint32:
            if let n = integer(value, kind) { return n }
            walk.refuse(path, "must be an integer" + range(kind), describe(value))
        }
        return nil
    }

    static func cleanField(_ value: JSONValue, _ cardinality: Cardinality, _ path: String, _ walk: inout Walk) -> JSONValue? {
        switch cardinality {
        case .single(let kind):
            return clean(value, kind, path, &walk)
        case .repeated(let kind):
            guard case .array(let items) = value else {
                walk.refuse(path, "must be a list", describe(value))
                return nil
            }
            if items.isEmpty { walk.emptyLists.insert(path) }
            var out: [JSONValue] = []
            for (i, item) in items.enumerated() {
                // A null item has no default in a list: protobuf refuses it, and so do we.
                if case .null = item, case .anyValue = kind { out.append(item); continue }
                if case .null = item { walk.refuse("\(path)[\(i)]", "must not be null", "null"); continue }
                if let kept = clean(item, kind, "\(path)[\(i)]", &walk) { out.append(kept) }
            }
            return .array(out)
        case .map(let kind):
            guard case .object(let pairs) = value else {
                walk.refuse(path, "must be an object", describe(value))
                return nil
            }
            if pairs.isEmpty { walk.emptyLists.insert(path) }
            var out: [(String, JSONValue)] = []
            var seen = Set<String>()
            for (key, v) in pairs {
                let here = path + "." + Validator.quote(key)
                guard seen.insert(key).inserted else {
                    walk.refuse(here, "given more than once", Validator.quote(key))
                    continue
                }
                if case .null = v { walk.refuse(here, "must not be null", "null"); continue }
                if let kept = clean(v, kind, here, &walk) { out.append((key, kept)) }
            }
            return .object(out)
        }
    }

    /// An integer for an integer field: a JSON integer, a number with no fraction, or a quoted
    /// integer (protobuf's JSON writes 64-bit integers as strings), within the field's range.
    static func integer(_ value: JSONValue, _ kind: Kind) -> JSONValue? {
        let n: Int64?
        switch value {
        case .int(let i): n = i
        case .number(let d): n = d == d.rounded() && abs(d) < 9.2e18 ? Int64(d) : nil
        case .string(let s): n = Int64(s)
        default: n = nil
        }
        guard let n else { return nil }
        switch kind {
        case .int32: return Int32(exactly: n) == nil ? nil : .int(n)
        case .uint32: return UInt32(exactly: n) == nil ? nil : .int(n)
        case .uint64: return n < 0 ? nil : .int(n)
        default: return .int(n)
        }
    }

    static func range(_ kind: Kind) -> String {
        switch kind {
        case .int32: " (32-bit)"
        case .uint32: " (unsigned, 32-bit)"
        case .uint64: " (unsigned)"
        default: ""
        }
    }

    /// What a refused value is, briefly: its text for short scalars, its kind for the rest.
    static func describe(_ v: JSONValue) -> String {
        switch v {
        case .null: "null"
        case .bool(let b): "\(b)"
        case .int(let i): "\(i)"
        case .number(let d): Validator.number(d)
        case .string(let s): "\"\(Validator.quote(s))\""
        case .array: "a list"
        case .object: "an object"
        }
    }

    /// " (did you mean X?)" for a key one or two edits from a field of the message.
    static func suggestion(_ key: String, _ fields: [Field]) -> String {
        guard key.utf8.count <= 64 else { return "" }
        let lower = Array(key.lowercased().utf8)
        var best: (String, Int)?
        for f in fields {
            let d = editDistance(lower, Array(f.name.utf8))
            if d <= 2, d < (best?.1 ?? Int.max) { best = (f.name, d) }
        }
        return best.map { " (did you mean \($0.0)?)" } ?? ""
    }

    static func editDistance(_ a: [UInt8], _ b: [UInt8]) -> Int {
        if a.isEmpty { return b.count }
        var row = Array(0...b.count)
        for i in 1...a.count {
            var prev = row[0]
            row[0] = i
            for j in stride(from: 1, through: b.count, by: 1) {
                let keep = row[j]
                row[j] = Swift.min(row[j] + 1, row[j - 1] + 1, prev + (a[i - 1] == b[j - 1] ? 0 : 1))
                prev = keep
            }
        }
        return row[b.count]
    }
}
