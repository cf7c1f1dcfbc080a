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

    func build() throws -> PBJobRequest {
        var r = PBJobRequest()
        if let path = request {
            let data = path == "-" ? FileHandle.standardInput.readDataToEndOfFile() : try readFile(path)
            r = try RequestJSON.parse(Array(data))
        }
        if let schema { r.schema = schema }
        if let domain { r.domain = domain }
        if let count { r.count = count }
        if let model { r.model = model }
        if let systemPrompt { r.systemPrompt = systemPrompt }
        if verified { r.verified = true }
        if let license { r.license = license }
        for c in category {
            let parts = c.split(separator: "=", maxSplits: 1)
            guard parts.count == 2, let pct = Double(parts[1]) else { throw ValidationError("--category must be NAME=PERCENT, got \(c)") }
            var cat = PBCategory()
            cat.percentage = pct
            r.advanced.categories[String(parts[0])] = cat
        }
        if let split {
            for part in split.split(separator: ",") {
                let kv = part.split(separator: "=", maxSplits: 1)
                guard kv.count == 2, let pct = Double(kv[1]) else { throw ValidationError("--split must be NAME=PERCENT,..., got \(split)") }
                r.advanced.outputSplit[String(kv[0])] = pct
            }
        }
        if let hardNegatives {
            r.advanced.hardNegatives.enabled = true
            r.advanced.hardNegatives.percentage.value = hardNegatives
        }
        if let language { r.constraints.language = language }
        if let tone { r.constraints.tone = tone }
        if let difficulty { r.constraints.difficulty = difficulty }
        // Flags alone default to the balanced tier; a request file must say what it wants.
        if request == nil, r.model.isEmpty, !r.hasModels { r.model = "balanced" }
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
