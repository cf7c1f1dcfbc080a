import ArgumentParser
import Foundation
import SynthProto
import SynthSpec

/// The request, from `--request FILE.json` (the documentation's JSON body as it stands) and/or
/// flags for the common fields; flags override the file.
struct RequestOptions: ParsableArguments {
    @Option(help: "A JSON request body, as in the documentation ('-' reads stdin).")
    var request: String?

    @Option(help: "instruction_v1, preference_v1, eval_v1 or conflict_v1.") var schema: String?
    @Option(help: "The subject area, in plain English.") var domain: String?
    @Option(help: "How many records.") var count: Int64?
    @Option(help: "fast, balanced, diverse or deep.") var model: String?
    @Option(help: "Instructions appended to the built-in prompt.") var systemPrompt: String?
    @Flag(help: "Score every record with the critic and drop those below 6.0.") var verified = false
    @Option(help: "License recorded in the manifest.") var license: String?
    @Option(help: "Category share, NAME=PERCENT; repeat for each.") var category: [String] = []
    @Option(help: "Output split, e.g. train=80,validation=20.") var split: String?
    @Option(help: "Hard-negative percentage (turns hard negatives on).") var hardNegatives: Double?
    @Option(help: "Language code, e.g. en, es.") var language: String?
    @Option(help: "Tone, e.g. formal.") var tone: String?
    @Option(help: "Difficulty, e.g. expert.") var difficulty: String?
    @Option(help: "online (default) or batch: through the provider's batch API, at its batch price (half), answers within hours.") var delivery: String?
    @Option(help: "The most the job may spend with its provider, in dollars; it ends with what it has there.") var maxProviderCostUsd: Double?

    /// The request to send: a request file goes as its JSON text (`request_json`), so that the
    /// server answers with every problem in it at once, with line and column for JSON syntax;
    /// flags given beside a file are set into its JSON first. Flags alone make the request here.
    enum Body {
        case request(PBJobRequest)
        case json(String)
    }

    func body() throws -> Body {
        guard let path = request else { return .request(try flagsOnly()) }
        let data = path == "-" ? FileHandle.standardInput.readDataToEndOfFile() : try readFile(path)
        var edits: [([String], JSONValue)] = []
        if let schema { edits.append((["schema"], .string(schema))) }
        if let domain { edits.append((["domain"], .string(domain))) }
        if let count { edits.append((["count"], .int(count))) }
        if let model { edits.append((["model"], .string(model))) }
        if let systemPrompt { edits.append((["system_prompt"], .string(systemPrompt))) }
        if verified { edits.append((["verified"], .bool(true))) }
        if let license { edits.append((["license"], .string(license))) }
        for (name, pct) in try categories() { edits.append((["advanced", "categories", name], .object([("percentage", .number(pct))]))) }
        for (name, pct) in try splits() { edits.append((["advanced", "output_split", name], .number(pct))) }
        if let hardNegatives {
            edits.append((["advanced", "hard_negatives", "enabled"], .bool(true)))
            edits.append((["advanced", "hard_negatives", "percentage"], .number(hardNegatives)))
        }
        if let language { edits.append((["constraints", "language"], .string(language))) }
        if let tone { edits.append((["constraints", "tone"], .string(tone))) }
        if let difficulty { edits.append((["constraints", "difficulty"], .string(difficulty))) }
        if let delivery { edits.append((["delivery"], .string(delivery))) }
        if let maxProviderCostUsd { edits.append((["max_provider_cost_usd"], .number(maxProviderCostUsd))) }
        if edits.isEmpty { return .json(String(decoding: data, as: UTF8.self)) }
        var root: JSONValue
        do {
            root = try JSONValue.parse(Array(data), maxValues: RequestLimits.requestJSONValues)
        } catch {
            throw ValidationError("--request \(path) is not JSON: \(error)")
        }
        guard case .object = root else { throw ValidationError("--request \(path) must hold one JSON object") }
        for (keys, value) in edits { root = Self.setting(root, keys[...], value) }
        return .json(root.text)
    }

    /// `root` with the value at `keys` replaced (objects made on the way where missing).
    static func setting(_ root: JSONValue, _ keys: ArraySlice<String>, _ value: JSONValue) -> JSONValue {
        guard let key = keys.first else { return value }
        guard case .object(var pairs) = root else { return .object([(key, setting(.object([]), keys.dropFirst(), value))]) }
        if let i = pairs.firstIndex(where: { $0.0 == key }) {
            pairs[i].1 = setting(pairs[i].1, keys.dropFirst(), value)
        } else {
            pairs.append((key, setting(.object([]), keys.dropFirst(), value)))
        }
        return .object(pairs)
    }

    func categories() throws -> [(String, Double)] {
        try category.map { c in
            let parts = c.split(separator: "=", maxSplits: 1)
            guard parts.count == 2, let pct = Double(parts[1]) else { throw ValidationError("--category must be NAME=PERCENT, got \(c)") }
            return (String(parts[0]), pct)
        }
    }

    func splits() throws -> [(String, Double)] {
        guard let split else { return [] }
        return try split.split(separator: ",").map { part in
            let kv = part.split(separator: "=", maxSplits: 1)
            guard kv.count == 2, let pct = Double(kv[1]) else { throw ValidationError("--split must be NAME=PERCENT,..., got \(split)") }
            return (String(kv[0]), pct)
        }
    }

    /// The request made from flags alone; it defaults to the balanced tier.
    func flagsOnly() throws -> PBJobRequest {
        var r = PBJobRequest()
        if let schema { r.schema = schema }
        if let domain { r.domain = domain }
        if let count { r.count = count }
        r.model = model ?? "balanced"
        if let systemPrompt { r.systemPrompt = systemPrompt }
        if verified { r.verified = true }
        if let license { r.license = license }
        if let delivery { r.delivery = delivery }
        if let maxProviderCostUsd { r.maxProviderCostUsd.value = maxProviderCostUsd }
        for (name, pct) in try categories() {
            var cat = PBCategory()
            cat.percentage = pct
            r.advanced.categories[name] = cat
        }
        for (name, pct) in try splits() { r.advanced.outputSplit[name] = pct }
        if let hardNegatives {
            r.advanced.hardNegatives.enabled = true
            r.advanced.hardNegatives.percentage.value = hardNegatives
        }
        if let language { r.constraints.language = language }
        if let tone { r.constraints.tone = tone }
        if let difficulty { r.constraints.difficulty = difficulty }
        return r
    }

    func readFile(_ path: String) throws -> Data {
        do {
            return try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw ValidationError("cannot read --request \(path): \(error.localizedDescription)")
        }
    }
}
