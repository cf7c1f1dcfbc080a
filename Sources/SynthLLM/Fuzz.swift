/// The entry for fuzzing what a provider sends back (Sources/Fuzz, `make fuzz`): the HTTP body of
/// an OpenAI or Anthropic answer, read as LLMClient reads it. Returns the completion's text, or nil
/// when the answer is refused as unusable.
public enum LLMFuzz {
    public static func providerAnswer(_ body: [UInt8], anthropic: Bool) -> String? {
        let config = ProviderConfig(name: anthropic ? "anthropic" : "openai", kind: anthropic ? .anthropic : .openai, baseURL: "http://127.0.0.1:9")
        let request = ChatRequest(model: "fuzz-model", system: "", user: "", jsonSchema: nil)
        return try? LLMClient.parse(HTTPResponse(status: 200, headers: [:], body: body), request: request, config: config).content
    }
}
