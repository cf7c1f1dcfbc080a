import SynthProto

/// Counts the items of every list of a serialized Generate or Plan request before it is decoded.
///
/// A request may be no larger than the largest valid one (about 1.9 MB), but 1.9 MB of empty
/// list items is 900,000 messages, and decoding them takes half a gigabyte. This walk of the wire
/// format costs nothing beside that: it reads tags and lengths only, and refuses a list that holds
/// more than `factor` times its maximum. A list over its maximum by less is decoded as usual, so
/// that the validator reports it with every other error of the request.
public enum RequestPrescan {
    /// A message's lists (by field number: their path and maximum) and the fields to walk into.
    struct Shape: Sendable {
        var lists: [Int: (path: String, max: Int)] = [:]
        var children: [Int: (path: String, shape: Shape)] = [:]
    }

    public static let factor = 4

    static let jobRequest: Shape = {
        let l = RequestLimits.self
        var coverage = Shape()
        var dimension = Shape()
        dimension.lists[2] = ("values", l.coverageValues)
        coverage.lists[1] = ("dimensions", l.coverageDimensions)
        coverage.children[1] = ("dimensions[]", dimension)
        var hardNegatives = Shape()
        hardNegatives.lists[3] = ("techniques", l.techniques)
        var advanced = Shape()
        advanced.lists = [1: ("categories", l.categories), 3: ("invariants", l.invariants), 4: ("response_policy", l.policySections),
                          5: ("style_rules", l.styleRules), 7: ("output_split", l.splits.upperBound), 8: ("metadata_fields", l.metadataFields)]
        advanced.children = [2: ("coverage", coverage), 6: ("hard_negatives", hardNegatives)]
        var pair = Shape()
        pair.lists[3] = ("drives", 2)
        var conflict = Shape()
        conflict.lists = [1: ("drive_pairs", l.drivePairs), 2: ("axis_distribution", l.drivePairs), 4: ("override_vocabulary", l.overrideVocabulary)]
        conflict.children[1] = ("drive_pairs[]", pair)
        var request = Shape()
        request.children = [8: ("advanced", advanced), 9: ("conflict_config", conflict)]
        return request
    }()

    /// Throws `SpecError(.validation)` naming each list that is far over its maximum; returns
    /// quietly for bytes it cannot walk (the decoder then says what is wrong with them).
    public static func check(generateOrPlan bytes: [UInt8]) throws {
        var outer = Shape()
        outer.children[1] = ("", jobRequest)
        var errors: [PBFieldErrorDraft] = []
        bytes.withUnsafeBufferPointer { b in
            _ = walk(b, 0, b.count, outer, path: "", &errors)
        }
        guard !errors.isEmpty else { return }
        throw SpecError(.validation, "the request has \(errors.count) invalid field\(errors.count == 1 ? "" : "s") (found before decoding it)",
                        fieldErrors: errors.map { PBFieldError($0.field, "at most \($0.max) items", "\($0.count)") })
    }

    struct PBFieldErrorDraft {
        var field: String
        var max: Int
        var count: Int
    }

    /// Walks one message in `b[start..<end]`; false when the bytes are not a well-formed message.
    static func walk(_ b: UnsafeBufferPointer<UInt8>, _ start: Int, _ end: Int, _ shape: Shape, path: String,
                     _ errors: inout [PBFieldErrorDraft]) -> Bool {
        var counts: [Int: Int] = [:]
        var i = start
        func varint() -> UInt64? {
            var v: UInt64 = 0, shift: UInt64 = 0
            while i < end, shift < 64 {
                let byte = b[i]
                i += 1
                v |= UInt64(byte & 0x7F) << shift
                if byte < 0x80 { return v }
                shift += 7
            }
            return nil
        }
        while i < end {
            guard let tag = varint() else { return false }
            let field = Int(truncatingIfNeeded: tag >> 3)
            switch tag & 7 {
            case 0: guard varint() != nil else { return false }
            case 1: i += 8
            case 5: i += 4
            case 2:
                guard let n = varint(), n <= UInt64(end - i) else { return false }
                let body = i
                i += Int(n)
                if shape.lists[field] != nil { counts[field, default: 0] += 1 }
                if let child = shape.children[field] {
                    let childPath = path.isEmpty ? child.path : path + "." + child.path
                    guard walk(b, body, i, child.shape, path: childPath, &errors) else { return false }
                }
            default: return false
            }
            guard i <= end else { return false }
        }
        for (field, count) in counts.sorted(by: { $0.key < $1.key }) {
            guard let list = shape.lists[field], count > list.max * factor else { continue }
            let name = path.replacingOccurrences(of: "[]", with: "")
            errors.append(PBFieldErrorDraft(field: name.isEmpty ? list.path : name + "." + list.path, max: list.max, count: count))
        }
        return true
    }
}
