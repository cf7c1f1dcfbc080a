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

    /// Domains of real technical work, written as people write them: none may be queried.
    static let technicalDomains = [
        "LLM evals for RAG pipelines", "pgvector similarity search in Postgres", "fine-tuning llama with qlora adapters",
        "kubernetes operators and helm charts", "pyspark etl jobs on databricks", "dbt models in snowflake and bigquery",
        "airflow dags for data ingestion", "kafka consumers and schema registry", "terraform modules for aws vpcs",
        "grafana dashboards for prometheus alerts", "opentelemetry tracing in microservices", "fastapi backends with pydantic models",
        "react frontends with typescript and vite", "nextjs server components", "rust async runtimes with tokio",
        "golang goroutines and channels", "jupyter notebooks for exploratory data analysis", "pandas dataframes and polars",
        "vllm inference serving with paged attention", "tokenizers and embeddings for multilingual retrieval",
        "reranking with cross-encoders", "hallucination detection in chatbots", "prompt injection and jailbreak defenses",
        "dpo and rlhf preference data", "synthetic data for sft", "mlops with mlflow and wandb", "feature stores with feast",
        "ci/cd pipelines with github actions", "gitops with argocd", "docker compose for local development",
        "postgresql replication and failover", "redis caching strategies", "elasticsearch relevance tuning",
        "graphql apis with apollo", "grpc services with protobuf", "oauth2 and oidc single sign-on", "jwt authentication",
        "siem alert triage", "ransomware incident response", "soc2 compliance automation", "gdpr data subject requests",
        "kyc and aml screening", "fhir interoperability for ehr systems", "iot telemetry with mqtt", "embedded firmware on esp32",
        "serverless functions on aws lambda", "azure devops pipelines", "gcp dataflow and pubsub", "clickhouse analytics queries",
        "duckdb and parquet files", "iceberg tables on s3", "delta lake merges", "spark structured streaming",
        "vector databases like qdrant and milvus", "langchain agents with tool calling", "llamaindex document retrieval",
        "huggingface transformers training loops", "pytorch distributed training with fsdp and deepspeed",
        "quantized gguf models with llama.cpp", "onnx runtime optimization", "cuda kernels for matrix multiplication",
        "sre on-call runbooks", "slo and error budget reviews", "chaos engineering experiments", "nginx reverse proxy configuration",
        "webassembly in the browser", "flutter mobile apps", "swiftui layouts", "kotlin coroutines", "django orm queries",
        "sqlalchemy migrations with alembic", "pytest fixtures and mocking", "playwright end-to-end tests",
        "semantic versioning and changelogs", "monorepo builds with bazel", "zero-downtime database migrations",
        "a/b testing with feature flags", "recommender systems with collaborative filtering", "time series forecasting with prophet",
        "anomaly detection on clickstream data", "ocr for scanned invoices", "speech recognition with whisper",
        "text-to-sql for business analysts", "customer churn prediction with xgboost", "tabular data with lightgbm and catboost",
    ]

    @Test func realTechnicalDomainsPassUnqueried() {
        var queried: [String: [String]] = [:]
        for domain in Self.technicalDomains {
            let words = check.suspects(in: domain).map(\.word)
            if !words.isEmpty { queried[domain] = words }
        }
        #expect(queried.isEmpty, "\(queried)")
        #expect(DomainSpellCheck.vocabulary.count > 2500, "\(DomainSpellCheck.vocabulary.count)")
        // The vocabulary does not hide typos of ordinary words.
        #expect(check.suspects(in: "custmer suport with pgvector").map(\.word) == ["custmer", "suport"])
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

    /// The byte table holds exactly the words a `Set<String>` of the lower-cased lines would.
    @Test func theWordTableHoldsEveryListedWordOnce() throws {
        let data = try Data(contentsOf: URL(fileURLWithPath: DomainSpellCheck.defaultPath))
        var expected = Set<String>()
        for line in data.split(separator: UInt8(ascii: "\n")) where !line.contains(UInt8(ascii: "'")) {
            expected.insert(String(decoding: line, as: UTF8.self).lowercased())
        }
        let table = WordTable(contentsOf: data)
        #expect(table.count == expected.count)
        #expect(expected.allSatisfy { table.contains($0) })
        for absent in ["custmer", "prodcut", "", "customerx", "zzzzq"] { #expect(!table.contains(absent)) }
        var fives = 0
        table.forEach(lengths: 5...5) { w in
            #expect(w.count == 5)
            fives += 1
        }
        #expect(fives == expected.filter { $0.count == 5 }.count)
        // A small list, and one with repeats and a non-ASCII word.
        let small = WordTable(contentsOf: Data("Apple\napple\nÉclair\nbob's\n\nzebra".utf8))
        #expect(small.count == 3)
        #expect(small.contains("apple") && small.contains("éclair") && small.contains("zebra") && !small.contains("bob's"))
    }

    /// The index finds exactly what measuring every listed word finds: typos of listed words
    /// (every kind of edit, one and two of them) and nonsense words.
    @Test func theIndexSuggestsWhatAFullScanSuggests() {
        var rng = SystemRandomNumberGenerator()
        var words: [String] = []
        check.words.forEach(lengths: 3...12) { if words.count < 4000 { words.append($0) } }
        let letters = Array("abcdefghijklmnopqrstuvwxyz")
        var queries: [String] = []
        for _ in 0..<150 {
            var w = Array(words.randomElement(using: &rng)!)
            for _ in 0..<Int.random(in: 1...2, using: &rng) {
                let i = Int.random(in: 0..<w.count, using: &rng)
                switch Int.random(in: 0..<4, using: &rng) {
                case 0: w.remove(at: i)
                case 1: w.insert(letters.randomElement(using: &rng)!, at: i)
                case 2: w[i] = letters.randomElement(using: &rng)!
                default: if i + 1 < w.count { w.swapAt(i, i + 1) }
                }
            }
            if w.count >= 3 { queries.append(String(w)) }
        }
        for _ in 0..<50 { queries.append(String((0..<Int.random(in: 3...14, using: &rng)).map { _ in letters.randomElement(using: &rng)! })) }
        queries += ["éclaire", "naïvety", String(repeating: "q", count: 60)]
        for q in queries {
            #expect(check.suggestions(for: q) == check.suggestionsByScan(for: q), "\(q)")
        }
    }

    /// A domain of 500 characters of nonsense words: every word is looked up, none is measured
    /// against the whole list.
    @Test func nonsenseDomainsAreCheckedWordByWord() {
        let letters = Array("bcdfghjklmnpqrstvwxz")
        var rng = SystemRandomNumberGenerator()
        var domain = ""
        while domain.count < 490 { domain += String((0..<Int.random(in: 3...9, using: &rng)).map { _ in letters.randomElement(using: &rng)! }) + " " }
        let s = check.suspects(in: domain)
        #expect(s.allSatisfy { $0.suggestions.count <= 3 && !$0.suggestions.isEmpty })
        // The work is the point: a full scan measures every listed word of a near length (tens of
        // thousands per word, 18 CPU seconds for such a domain); the index only its candidates.
        var measured = 0, scanned = 0
        let words = domain.split(separator: " ").map(String.init)
        for w in words {
            measured += check.suggestionsMeasuring(for: w).measured
            let limit = w.count <= 4 ? 1 : 2
            check.words.forEach(lengths: max(2, w.count - limit)...(w.count + limit)) { _ in scanned += 1 }
        }
        #expect(measured * 100 < scanned, "\(measured) measured against \(scanned) for a full scan")
        #expect(measured < 200 * words.count, "\(measured) distances for \(words.count) words")
    }
}
