import Foundation
import Logging
import Testing
@testable import SynthLLM

/// The request bodies that go to providers.
@Suite struct LLMRequestTests {
    func client(_ kind: ProviderConfig.Kind, maxLength: Int? = nil) -> LLMClient {
        LLMClient(config: ProviderConfig(name: "p", kind: kind, baseURL: "http://127.0.0.1:1/v1/", apiKey: "sk-test-0123456789",
                                         sampling: ["top_p": 0.95, "frequency_penalty": 1], stringMaxLength: maxLength),
                  engine: sharedTestEngine, logger: Logger(label: "test"))
    }

    let hostile = "quote \" backslash \\ newline \n tab \t nul \u{0} bell \u{7} emoji 🙂 é </script>"
    let schema = #"{"type":"object","properties":{"a":{"type":"string"},"b":{"type":"string","enum":["x"]}},"required":["a","b"]}"#

    func json(_ r: HTTPRequest) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(r.body)) as? [String: Any])
    }

    @Test func aVendorEndpointWithoutItsKeyIsNotAProvider() {
        for kind in [ProviderConfig.Kind.openai, .anthropic] {
            var c = ProviderConfig(name: kind.rawValue, kind: kind, baseURL: ProviderConfig.vendorURL(kind))
            #expect(c.lacksItsKey)
            c.baseURL += "/"
            #expect(c.lacksItsKey)
            c.apiKey = "sk-test-0123456789"
            #expect(!c.lacksItsKey)
            // A self-hosted endpoint (vLLM, llama.cpp) needs no key.
            #expect(!ProviderConfig(name: "v", kind: kind, baseURL: "http://10.0.0.5:8000/v1").lacksItsKey)
        }
    }

    @Test func openAIBodyCarriesEverythingExactly() throws {
        let c = client(.openai, maxLength: 300)
        let req = ChatRequest(model: "m", system: hostile, user: hostile + "!", jsonSchema: schema, schemaName: "rec", maxTokens: 77, temperature: 0.7)
        let http = try c.build(req, mode: .jsonSchema)
        #expect(http.url == "http://127.0.0.1:1/v1/chat/completions")
        #expect(http.headers.contains("Authorization: Bearer sk-test-0123456789"))
        let body = try json(http)
        #expect(body["model"] as? String == "m")
        #expect(body["max_tokens"] as? Int == 77)
        #expect(body["temperature"] as? Double == 0.7)
        #expect(body["top_p"] as? Double == 0.95)
        #expect(body["frequency_penalty"] as? Int == 1)
        let messages = try #require(body["messages"] as? [[String: String]])
        #expect(messages == [["role": "system", "content": hostile], ["role": "user", "content": hostile + "!"]])
        let format = try #require(body["response_format"] as? [String: Any])
        let inner = try #require(format["json_schema"] as? [String: Any])
        #expect(inner["name"] as? String == "rec" && inner["strict"] as? Bool == true)
        let props = try #require((inner["schema"] as? [String: Any])?["properties"] as? [String: [String: Any]])
        #expect(props["a"]?["maxLength"] as? Int == 300)
        #expect(props["a"]?["minLength"] as? Int == 1)
        #expect(props["b"]?["maxLength"] == nil)  // enums are left alone
        // The same request gives the same bytes, so a retry is identical.
        #expect(try c.build(req, mode: .jsonSchema).body == http.body)
    }

    @Test func aStringFloorGoesOnEveryFreeTextString() throws {
        let c = LLMClient(config: ProviderConfig(name: "p", kind: .openai, baseURL: "http://127.0.0.1:1/v1", stringMaxLength: 400, stringMinLength: 12),
                          engine: sharedTestEngine, logger: Logger(label: "test"))
        let schema = #"{"type":"object","properties":{"a":{"type":"string"},"b":{"type":"string","enum":["x"]},"#
            + #""score":{"type":"number","minimum":1,"maximum":10},"confidence":{"type":"number","minimum":0,"maximum":1}}}"#
        let body = try json(try c.build(ChatRequest(model: "m", system: "s", user: "u", jsonSchema: schema), mode: .jsonSchema))
        let inner = try #require((body["response_format"] as? [String: Any])?["json_schema"] as? [String: Any])
        let props = try #require((inner["schema"] as? [String: Any])?["properties"] as? [String: [String: Any]])
        #expect(props["a"]?["minLength"] as? Int == 12 && props["a"]?["maxLength"] as? Int == 400)
        #expect(props["b"]?["minLength"] == nil)
        #expect(props["score"]?["type"] as? String == "integer" && props["score"]?["maximum"] as? Int == 10)
        #expect(props["confidence"]?["type"] as? String == "number")
        // A narrow range becomes 21 evenly spaced values, which a grammar can enforce.
        let steps = try #require(props["confidence"]?["enum"] as? [Double])
        #expect(steps.count == 21 && steps.first == 0 && steps.last == 1 && steps[1] == 0.05 && steps[7] == 0.35)
        #expect(props["score"]?["enum"] == nil)
    }

    @Test func oneItemPerValueIsATupleForGrammarServersAndUnseenByOthers() throws {
        let schema = #"{"type":"object","properties":{"z":{"type":"string","pattern":"^[a-z]+$"},"a":{"type":"array","minItems":2,"#
            + #""maxItems":2,"x-one-per-item":"drive","items":{"type":"object","properties":{"drive":{"type":"string","enum":["p","q"]},"#
            + #""out":{"type":"string"}},"required":["drive","out"]}}},"required":["z","a"]}"#
        func sent(_ config: ProviderConfig) throws -> (text: String, schema: [String: Any]) {
            let c = LLMClient(config: config, engine: sharedTestEngine, logger: Logger(label: "test"))
            let http = try c.build(ChatRequest(model: "m", system: "s", user: "u", jsonSchema: schema), mode: .jsonSchema)
            let body = try json(http)
            let inner = try #require((body["response_format"] as? [String: Any])?["json_schema"] as? [String: Any])
            return (String(decoding: http.body, as: UTF8.self), try #require(inner["schema"] as? [String: Any]))
        }
        let grammar = try sent(ProviderConfig(name: "p", kind: .openai, baseURL: "http://127.0.0.1:1/v1", stringMaxLength: 400))
        let a = try #require((grammar.schema["properties"] as? [String: Any])?["a"] as? [String: Any])
        let tuple = try #require(a["prefixItems"] as? [[String: Any]])
        #expect(tuple.count == 2 && a["items"] == nil && a["x-one-per-item"] == nil)
        let drives = tuple.map { (($0["properties"] as? [String: Any])?["drive"] as? [String: Any])?["enum"] as? [String] }
        #expect(drives == [["p"], ["q"]])
        #expect(((tuple[1]["properties"] as? [String: Any])?["out"] as? [String: Any])?["maxLength"] as? Int == 400)
        // A pattern is left to itself; properties go in the order of `required`.
        let z = try #require((grammar.schema["properties"] as? [String: Any])?["z"] as? [String: Any])
        #expect(z["maxLength"] == nil && z["pattern"] as? String == "^[a-z]+$")
        let zAt = try #require(grammar.text.range(of: #""z":{"#)), aAt = try #require(grammar.text.range(of: #""a":{"#))
        #expect(zAt.lowerBound < aAt.lowerBound)
        // Anyone else gets the plain array, without the mark.
        let plain = try sent(ProviderConfig(name: "p", kind: .openai, baseURL: "http://127.0.0.1:1/v1"))
        #expect(!plain.text.contains("x-one-per-item") && !plain.text.contains("prefixItems"))
        #expect(((plain.schema["properties"] as? [String: Any])?["a"] as? [String: Any])?["items"] != nil)
    }

    @Test func fallbackModesPutTheSchemaInThePrompt() throws {
        let c = client(.openai)
        let req = ChatRequest(model: "m", system: "sys", user: "u", jsonSchema: schema)
        let object = try json(try c.build(req, mode: .jsonObject))
        #expect((object["response_format"] as? [String: String]) == ["type": "json_object"])
        let prompt = try json(try c.build(req, mode: .prompt))
        #expect(prompt["response_format"] == nil)
        let system = (prompt["messages"] as? [[String: String]])?.first?["content"] ?? ""
        #expect(system.hasPrefix("sys\n\nAnswer with one JSON object") && system.hasSuffix(schema))
    }

    @Test func anthropicBodyUsesAForcedTool() throws {
        let c = client(.anthropic)
        let req = ChatRequest(model: "claude", system: hostile, user: "u", jsonSchema: schema, schemaName: "rec", temperature: 1.3)
        let http = try c.build(req, mode: .jsonSchema)
        #expect(http.url == "http://127.0.0.1:1/v1/v1/messages")
        #expect(http.headers.contains("x-api-key: sk-test-0123456789") && http.headers.contains("anthropic-version: 2023-06-01"))
        let body = try json(http)
        #expect(body["system"] as? String == hostile)
        #expect(body["temperature"] as? Double == 1.0)
        let tools = try #require(body["tools"] as? [[String: Any]])
        #expect(tools.count == 1 && tools[0]["name"] as? String == "rec" && tools[0]["input_schema"] is [String: Any])
        #expect((body["tool_choice"] as? [String: String]) == ["type": "tool", "name": "rec"])
        #expect((body["messages"] as? [[String: String]]) == [["role": "user", "content": "u"]])
    }

    @Test func aSchemaThatIsNotAnObjectIsRefused() {
        let c = client(.openai)
        #expect(throws: ProviderError.self) {
            try c.build(ChatRequest(model: "m", system: "s", user: "u", jsonSchema: "[1,2"), mode: .jsonSchema)
        }
    }
}

@Suite struct JSONTextTests {
    @Test func writesParsedJSONBackExactly() throws {
        let text = #"{"b":true,"a":[1,2.5,-3,false,null,"x\"y"],"c":{"z":0,"min":1,"max":10.0},"e":"é\n"}"#
        let object = try JSONSerialization.jsonObject(with: Data(text.utf8))
        #expect(JSONText.write(object) == #"{"a":[1,2.5,-3,false,null,"x\"y"],"b":true,"c":{"max":10,"min":1,"z":0},"e":"é\n"}"#)
    }
}

/// The object in a model's text: the first balanced `{...}` that parses, found within a bounded
/// amount of reading.
@Suite struct JSONRepairTests {
    @Test func findsTheFirstObjectThatParses() {
        #expect(JSONRepair.extractObject("Here it is:\n```json\n{\"a\": 1}\n```") == "{\"a\": 1}")
        #expect(JSONRepair.extractObject("{not json} then {\"b\": {\"c\": \"}\"}}") == "{\"b\": {\"c\": \"}\"}}")
        #expect(JSONRepair.extractObject("{\"open\": 1") == nil)
        #expect(JSONRepair.extractObject("no object") == nil)
    }

    /// Text of many `{` that never close made each start read to the end: quadratic (about 2·10^10
    /// steps for 200 KB of them). The reading is bounded by 8 times the text and 64 KiB, and past
    /// that there is no object, even one at the very end.
    @Test func aTextOfUnclosedBracesIsGivenUpOn() {
        let braces = String(repeating: "{", count: 200_000)
        #expect(JSONRepair.extractObject(braces + "{\"a\": 1}") == nil)
        // A few unclosed ones before the object are read through.
        #expect(JSONRepair.extractObject(String(repeating: "{", count: 5) + " {\"a\": 1}") == "{\"a\": 1}")
    }
}
