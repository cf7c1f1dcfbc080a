import SynthLLM
import SynthQuality

/// The entry for fuzzing what a model answers (Sources/Fuzz, `make fuzz`): the provider's HTTP
/// body read as LLMClient reads it, then the completion's text read into each schema's fields
/// (RecordShape) and put through the format checks, as a job does with every answer.
public enum EngineFuzz {
    static let schemas = ["instruction_v1", "preference_v1", "eval_v1", "conflict_v1"]
    static let checker = FormatChecker(instructions: ["Answer with one JSON object.", "Write the record for the category below."],
                                       minTokens: nil, maxTokens: nil)

    /// The first byte picks the wire format (OpenAI or Anthropic), the schema and the conflict
    /// resolution mode; the rest is the provider's HTTP body. Reads text that is not a provider
    /// body as a model's text too, so that both layers are reached.
    public static func answer(_ data: [UInt8]) {
        guard let first = data.first else { return }
        let body = Array(data.dropFirst())
        let schema = schemas[Int(first & 3)]
        let mode = ["annotated", "graded", "none"][Int((first >> 3) % 3)]
        let texts = [LLMFuzz.providerAnswer(body, anthropic: first & 4 != 0), String(decoding: body, as: UTF8.self)].compactMap { $0 }
        for text in texts {
            let slot = Slot(index: 0, cell: 0, hardNegative: first & 0x40 != 0, technique: nil)
            let drives: (String, String)? = first & 0x80 != 0 ? ("safety", "autonomy") : nil
            switch RecordShape.content(schema, text, finishReason: "stop", slot: slot, axis: "safety_autonomy", drives: drives,
                                       resolutionMode: mode) {
            case .success(let fields):
                _ = checker.check(RecordText.of(schema, fields))
            case .failure:
                break
            }
        }
    }
}
