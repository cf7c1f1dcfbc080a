import Foundation
import SynthProto
import SynthQuality
import SynthSpec
import SynthStore

/// Puts an accepted record together: the schema's fields, then `metadata`, then `provenance`.
/// Runs inside the commit, where the record's sequence number is known.
enum RecordAssembler {
    static func assemble(_ r: Accepted, seq: UInt64, jobID: String, request: PBJobRequest, plan: PBPlan?) -> [UInt8] {
        var top: [(String, JSONValue)]
        if request.schema == "conflict_v1" {
            top = [("record_id", .string("rec_\(jobID.dropFirst("syn_job_".count))_\(seq)")), ("schema", .string("conflict_v1")),
                   ("data", .object(r.content))]
        } else {
            top = r.content
        }
        top.append(("metadata", .object(metadata(r, seq: seq, request: request))))
        top.append(("provenance", .object([
            ("job_id", .string(jobID)),
            ("schema", .string(request.schema)),
            ("domain", .string(request.domain)),
            ("generated_at", .string(Clock.rfc3339(r.atMillis))),
            ("model", .string(r.model)),
        ] + (r.extras.scoredBy.map { [("scored_by", JSONValue.string($0))] } ?? [])
          + (r.extras.judge.map { [("quality", JSONValue.object($0))] } ?? []))))
        return JSONValue.object(top).serialized()
    }

    static func metadata(_ r: Accepted, seq: UInt64, request: PBJobRequest) -> [(String, JSONValue)] {
        var out: [(String, JSONValue)] = []
        let cellInfo = r.slot
        for f in request.advanced.metadataFields {
            switch f.type {
            case "auto_increment":
                out.append((f.name, f.prefix.isEmpty ? .int(Int64(seq)) : .string("\(f.prefix)\(String(format: "%03d", seq))")))
            case "from_category":
                out.append((f.name, r.category.map { .string($0) } ?? .null))
            case "uuid":
                out.append((f.name, .string(UUID().uuidString.lowercased())))
            case "constant":
                switch f.value.kind {
                case .stringValue(let s): out.append((f.name, .string(s)))
                case .numberValue(let d): out.append((f.name, .number(d)))
                case .boolValue(let b): out.append((f.name, .bool(b)))
                default: out.append((f.name, .null))
                }
            case "llm_assessed":
                // From the judge pass; null when the judge gave no score for it.
                out.append((f.name, r.extras.assessed[f.name].map { .number($0) } ?? .null))
            default:
                break
            }
        }
        // synthd's own keys. Validation refuses metadata fields of these names (but `category` as
        // `from_category`, the same value); one that got in anyway (a job stored before the rule)
        // takes synthd's value in its place, so that no key is ever written twice.
        func put(_ k: String, _ v: JSONValue) {
            if let i = out.firstIndex(where: { $0.0 == k }) {
                out[i].1 = v
            } else {
                out.append((k, v))
            }
        }
        if let category = r.category { put("category", .string(category)) }
        for (k, v) in r.coverage.sorted(by: { $0.key < $1.key }) { put("coverage_\(k)", .string(v)) }
        if request.advanced.invariants.contains(where: { $0.enforcement == "soft" }) {
            put("invariant_soft_flags", .array(r.extras.softFlags.map { .string($0) }))
        }
        if request.advanced.hardNegatives.enabled {
            put("hard_negative", .bool(cellInfo.hardNegative))
            if let t = cellInfo.technique { put("technique", .string(t)) }
        }
        return out
    }
}

extension Accepted {
    var category: String? { cell.category.isEmpty ? nil : cell.category }
    var coverage: [String: String] { cell.coverage }
}
