import SynthSpec

/// Records in the formats trainers take; the same definitions as the Python client's
/// `synthd.formats` (clients/python/README.md has the table).
///
/// - the pair (prompt, response): instruction_v1 is instruction (+ "\n\n" + input when there is
///   one) and output; preference_v1 prompt and chosen; eval_v1 input and ideal_output; conflict_v1
///   data.input and the preferred drive's output.
/// - the triple (prompt, chosen, rejected): preference_v1 as it is; conflict_v1 with the preferred
///   and the losing drive's outputs. instruction_v1 and eval_v1 have none.
enum TrainerFormat: String, CaseIterable {
    case trlMessages = "trl-messages"
    case trlPromptCompletion = "trl-prompt-completion"
    case trlDPO = "trl-dpo"
    case alpaca
    case sharegpt
    case openaiChat = "openai-chat"

    struct Refused: Error, CustomStringConvertible {
        var description: String
    }

    static var names: String { allCases.map(\.rawValue).joined(separator: ", ") }

    /// Checked before anything is fetched.
    func check(system: String?) throws {
        if system != nil, self == .trlPromptCompletion || self == .trlDPO {
            throw Refused(description: "\(rawValue) has no place for a system prompt; use trl-messages, openai-chat, sharegpt or alpaca")
        }
    }

    func convert(_ line: [UInt8], system: String?) throws -> [UInt8] {
        guard let record = JSONValue.parse(line) else { throw Refused(description: "a record is not JSON") }
        let schema = record["provenance"]?["schema"]?.stringValue ?? record["schema"]?.stringValue ?? ""
        func s(_ v: JSONValue?, _ key: String) -> String { v?[key]?.stringValue ?? "" }
        func chat(_ prompt: String, _ response: String, role: String, text: String, names: (String, String, String)) -> JSONValue {
            var turns: [JSONValue] = []
            if let system, !system.isEmpty { turns.append(.object([(role, .string(names.0)), (text, .string(system))])) }
            turns.append(.object([(role, .string(names.1)), (text, .string(prompt))]))
            turns.append(.object([(role, .string(names.2)), (text, .string(response))]))
            return .array(turns)
        }
        let out: JSONValue
        switch self {
        case .trlDPO:
            let (p, c, r) = try triple(record, schema)
            out = .object([("prompt", .string(p)), ("chosen", .string(c)), ("rejected", .string(r))])
        case .alpaca:
            var pairs: [(String, JSONValue)]
            if schema == "instruction_v1" {
                pairs = [("instruction", .string(s(record, "instruction"))), ("input", .string(s(record, "input"))),
                         ("output", .string(s(record, "output")))]
            } else {
                let (p, r) = try pair(record, schema)
                pairs = [("instruction", .string(p)), ("input", .string("")), ("output", .string(r))]
            }
            if let system, !system.isEmpty { pairs.append(("system", .string(system))) }
            out = .object(pairs)
        case .trlPromptCompletion:
            let (p, r) = try pair(record, schema)
            out = .object([("prompt", .string(p)), ("completion", .string(r))])
        case .sharegpt:
            let (p, r) = try pair(record, schema)
            out = .object([("conversations", chat(p, r, role: "from", text: "value", names: ("system", "human", "gpt")))])
        case .trlMessages, .openaiChat:
            let (p, r) = try pair(record, schema)
            out = .object([("messages", chat(p, r, role: "role", text: "content", names: ("system", "user", "assistant")))])
        }
        return out.serialized()
    }

    func pair(_ r: JSONValue, _ schema: String) throws -> (String, String) {
        func s(_ key: String) -> String { r[key]?.stringValue ?? "" }
        switch schema {
        case "instruction_v1":
            let input = s("input")
            return (s("instruction") + (input.isEmpty ? "" : "\n\n" + input), s("output"))
        case "preference_v1": return (s("prompt"), s("chosen"))
        case "eval_v1": return (s("input"), s("ideal_output"))
        case "conflict_v1":
            let (p, c, _) = try conflict(r)
            return (p, c)
        default: throw Refused(description: "a record of unknown schema \(schema)")
        }
    }

    func triple(_ r: JSONValue, _ schema: String) throws -> (String, String, String) {
        switch schema {
        case "preference_v1":
            return (r["prompt"]?.stringValue ?? "", r["chosen"]?.stringValue ?? "", r["rejected"]?.stringValue ?? "")
        case "conflict_v1":
            return try conflict(r)
        default:
            throw Refused(description: "trl-dpo needs a chosen and a rejected response: preference_v1 or conflict_v1 records, not \(schema)")
        }
    }

    func conflict(_ r: JSONValue) throws -> (String, String, String) {
        let data = r["data"]
        guard let res = data?["resolution"], let preferred = res["preferred_drive"]?.stringValue,
              let losing = res["losing_drive"]?.stringValue else {
            throw Refused(description: "a conflict_v1 record without a resolution (resolution_mode \"none\") has no preferred response to train on")
        }
        var outputs: [String: String] = [:]
        if case .array(let items)? = data?["responses"] {
            for item in items {
                if let d = item["drive"]?.stringValue { outputs[d] = item["output"]?.stringValue ?? "" }
            }
        }
        guard let c = outputs[preferred], let l = outputs[losing] else {
            throw Refused(description: "a conflict_v1 record whose resolution names drives without a response")
        }
        return (data?["input"]?.stringValue ?? "", c, l)
    }
}
