import Foundation
import Testing
@testable import SynthSpec

@Suite struct SpellCheckTests {
    let check = DomainSpellCheck.shared

    @Test func theWordListIsInstalled() {
        #expect(check.isAvailable, "wamerican's /usr/share/dict/words is missing")
    }

    @Test func typosGetSuggestions() throws {
        let s = check.suspects(in: "custmer suport for a SaaS prodcut")
        #expect(s.map(\.word) == ["custmer", "suport", "prodcut"])
        #expect(s[0].suggestions.contains("customer"))
        #expect(s[0].suggestions.first == "customer")
        #expect(s[1].suggestions.first == "support")
        #expect(s[2].suggestions.contains("product"))   // a swap of neighbours is one edit
        #expect(s.allSatisfy { $0.suggestions.count <= 3 })
    }

    @Test(arguments: [
        "customer support for a SaaS product", "pytorch model quantization with QLoRA", "legal contract review",
        "Kubernetes troubleshooting for DevOps teams", "B2B invoicing disputes", "medical triage chatbots",
        "children's books", "GPT-4 evaluation", "onboarding emails", "the customers' billed accounts",
    ])
    func cleanDomainsPass(domain: String) {
        #expect(check.suspects(in: domain).isEmpty, "\(check.suspects(in: domain).map(\.word))")
    }

    @Test func everyDocumentedExampleDomainPasses() throws {
        let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("tools/examples")
        let files = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasSuffix(".json") }
        #expect(files.count >= 13)
        for f in files {
            let obj = try JSONSerialization.jsonObject(with: Data(contentsOf: dir.appendingPathComponent(f))) as? [String: Any]
            let domain = obj?["domain"] as? String ?? ""
            #expect(check.suspects(in: domain).isEmpty, "\(f): \(domain) -> \(check.suspects(in: domain).map(\.word))")
        }
    }

    @Test func distanceCountsASwapAsOne() {
        func d(_ a: String, _ b: String) -> Int { DomainSpellCheck.distance(Array(a.unicodeScalars), Array(b.unicodeScalars), limit: 3) }
        #expect(d("support", "suport") == 1)
        #expect(d("product", "prodcut") == 1)
        #expect(d("kitten", "sitting") == 3)
        #expect(d("", "abc") == 3)
        #expect(d("abc", "abc") == 0)
    }
}
