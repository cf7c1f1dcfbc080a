import Foundation
import SynthMetrics
import SynthSpec

/// A provider batch as the provider reports it.
public struct BatchStatus: Sendable {
    public var id: String
    /// The provider's own word for where it is (validating, in_progress, finalizing, completed,
    /// expired, cancelled, failed; Anthropic: in_progress, canceling, ended).
    public var status: String
    public var ended: Bool
    /// Requests answered or failed so far, of all.
    public var done: Int
    public var total: Int
    /// OpenAI: the output and error files, once ended.
    public var outputFileID: String?
    public var errorFileID: String?
    /// Why the whole batch failed (OpenAI's `failed`: its input was refused), if it did.
    public var failure: String?
}

/// The providers' batch APIs: OpenAI's Files and Batches (a JSONL file of requests, `/batches`,
/// output and error files) and Anthropic's Message Batches (`/v1/messages/batches`, results as
/// JSONL). Requests are built exactly as they are sent on their own, so answers read the same.
/// Batches go to the provider's first endpoint (batch APIs are the hosted providers'); the key is
/// sent to that base URL only: a results URL the provider names is not followed.
extension LLMClient {
    /// The most bytes of requests one batch file holds (the providers take 200 and 256 MB).
    public static let batchMaxBytes = 100 << 20

    private var batchBase: (base: String, headers: [String]) {
        let endpoint = pool[0]
        let base = endpoint.baseURL.hasSuffix("/") ? String(endpoint.baseURL.dropLast()) : endpoint.baseURL
        switch config.kind {
        case .openai:
            return (base, endpoint.apiKey.isEmpty ? [] : ["Authorization: Bearer \(endpoint.apiKey)"])
        case .anthropic:
            return (base + "/v1/messages/batches", (endpoint.apiKey.isEmpty ? [] : ["x-api-key: \(endpoint.apiKey)"]) + ["anthropic-version: 2023-06-01"])
        }
    }

    /// One call of the batch API, retried on what is worth retrying (a lost connection, 408, 429,
    /// 5xx) as a completion is; anything else refused is fatal for the job.
    private func batchCall(_ what: String, _ url: String, headers: [String] = [], body: [UInt8]? = nil) async throws -> [UInt8] {
        let (_, auth) = batchBase
        let request = HTTPRequest(url: url, headers: auth + headers, body: body ?? [],
                                  connectTimeout: .milliseconds(Int64(config.connectTimeoutSeconds * 1000)),
                                  totalTimeout: .milliseconds(Int64(max(config.requestTimeoutSeconds, 300) * 1000)),
                                  method: body == nil ? .get : .post)
        var attempt = 0
        while true {
            attempt += 1
            var retryAfter: Duration?
            let failure: String
            do {
                let response = try await engine.send(request)
                if response.status == 200 { return response.body }
                let message = Self.errorMessage(response.body)
                if !Self.isRetryable(response.status) {
                    throw ProviderError(kind: .fatal, provider: config.name, status: response.status, message: "\(what): \(message)")
                }
                retryAfter = Self.retryAfter(response.headers)
                failure = "HTTP \(response.status): \(message)"
            } catch let e as ProviderError {
                throw e
            } catch is CancellationError {
                throw CancellationError()
            } catch {
                failure = Redact.secrets("\(error)")
            }
            if attempt > config.maxRetries {
                throw ProviderError(kind: .exhausted, provider: config.name, message: "\(what): gave up after \(attempt) attempts: \(failure)")
            }
            try await Task.sleep(for: Self.backoff(attempt: attempt, retryAfter: retryAfter))
        }
    }

    /// Sends `items` as one batch; its id, and the input file's (OpenAI).
    public func createBatch(_ items: [(customID: String, request: ChatRequest)], metadata: [String: String] = [:]) async throws
        -> (id: String, inputFileID: String) {
        let mode = outputMode
        let (base, _) = batchBase
        var lines: [UInt8] = []
        for (i, item) in items.enumerated() {
            let body = try build(item.request, mode: mode, endpoint: pool[0]).body
            switch config.kind {
            case .openai:
                lines += Array(#"{"custom_id":"#.utf8) + Array(JSONText.quote(item.customID).utf8)
                    + Array(#","method":"POST","url":"/v1/chat/completions","body":"#.utf8) + body + [UInt8(ascii: "}"), 0x0A]
            case .anthropic:
                if i > 0 { lines.append(UInt8(ascii: ",")) }
                lines += Array(#"{"custom_id":"#.utf8) + Array(JSONText.quote(item.customID).utf8) + Array(#","params":"#.utf8) + body
                    + [UInt8(ascii: "}")]
            }
        }
        switch config.kind {
        case .openai:
            let boundary = "synthd-" + UUID().uuidString
            var form: [UInt8] = []
            form += Array("--\(boundary)\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n".utf8)
            form += Array(("--\(boundary)\r\nContent-Disposition: form-data; name=\"file\"; filename=\"batch.jsonl\"\r\n"
                           + "Content-Type: application/jsonl\r\n\r\n").utf8)
            form += lines
            form += Array("\r\n--\(boundary)--\r\n".utf8)
            let file = try await batchCall("uploading the batch file", base + "/files", headers: ["Content-Type: multipart/form-data; boundary=\(boundary)"],
                                            body: form)
            guard let fileID = JSONValue.parse(file)?["id"]?.stringValue, !fileID.isEmpty else {
                throw ProviderError(kind: .exhausted, provider: config.name, message: "the file upload's answer has no id")
            }
            var create = JSONText.Object()
            create.add("input_file_id", string: fileID)
            create.add("endpoint", string: "/v1/chat/completions")
            create.add("completion_window", string: "24h")
            if !metadata.isEmpty {
                var meta = JSONText.Object()
                for (k, v) in metadata.sorted(by: { $0.key < $1.key }) { meta.add(k, string: v) }
                create.add("metadata", raw: String(decoding: meta.bytes, as: UTF8.self))
            }
            let created = try await batchCall("creating the batch", base + "/batches", headers: ["Content-Type: application/json"], body: create.bytes)
            guard let id = JSONValue.parse(created)?["id"]?.stringValue, !id.isEmpty else {
                throw ProviderError(kind: .exhausted, provider: config.name, message: "the batch's answer has no id")
            }
            return (id, fileID)
        case .anthropic:
            let body = Array(#"{"requests":["#.utf8) + lines + Array("]}".utf8)
            let created = try await batchCall("creating the batch", base, headers: ["Content-Type: application/json"], body: body)
            guard let id = JSONValue.parse(created)?["id"]?.stringValue, !id.isEmpty else {
                throw ProviderError(kind: .exhausted, provider: config.name, message: "the batch's answer has no id")
            }
            return (id, "")
        }
    }

    /// Where a batch is.
    public func batchStatus(_ id: String) async throws -> BatchStatus {
        let (base, _) = batchBase
        let path = config.kind == .openai ? base + "/batches/" + Self.pathSafe(id) : base + "/" + Self.pathSafe(id)
        guard let obj = JSONValue.parse(try await batchCall("asking about batch \(id)", path)) else {
            throw ProviderError(kind: .exhausted, provider: config.name, message: "the batch's status is not JSON")
        }
        func int(_ v: JSONValue?) -> Int { v?.doubleValue.map { Int(clamping: Int64($0)) } ?? 0 }
        let counts = obj["request_counts"]
        switch config.kind {
        case .openai:
            let status = obj["status"]?.stringValue ?? ""
            var failure: String?
            if status == "failed" {
                var why = "the provider refused the batch"
                if case .array(let errors)? = obj["errors"]?["data"], let first = errors.first?["message"]?.stringValue { why += ": " + first }
                failure = Redact.secrets(why)
            }
            return BatchStatus(id: id, status: status, ended: ["completed", "failed", "expired", "cancelled"].contains(status),
                               done: int(counts?["completed"]) + int(counts?["failed"]), total: int(counts?["total"]),
                               outputFileID: obj["output_file_id"]?.stringValue, errorFileID: obj["error_file_id"]?.stringValue, failure: failure)
        case .anthropic:
            let status = obj["processing_status"]?.stringValue ?? ""
            let done = ["succeeded", "errored", "canceled", "expired"].reduce(0) { $0 + int(counts?[$1]) }
            return BatchStatus(id: id, status: status, ended: status == "ended", done: done, total: done + int(counts?["processing"]))
        }
    }

    /// The answers of an ended batch by custom id: a completion (its cost at `factor` of the
    /// standard price), or why that request has none. Lines that are not a result are skipped.
    public func batchResults(_ status: BatchStatus, factor: Double, model: String) async throws -> [String: Result<ChatCompletion, ProviderError>] {
        let (base, _) = batchBase
        var out: [String: Result<ChatCompletion, ProviderError>] = [:]
        let stand = ChatRequest(model: model, system: "", user: "", jsonSchema: nil)
        func answer(_ customID: String, _ body: JSONValue?) {
            guard let body else { return }
            let response = HTTPResponse(status: 200, headers: [:], body: body.serialized())
            do {
                var completion = try Self.parse(response, request: stand, config: config)
                completion.costUSD *= factor
                completion.batchItem = (status.id, customID)
                SynthMetrics.providerUsage(provider: config.name, model: SynthMetrics.modelLabel(completion.model),
                                           promptTokens: completion.promptTokens, completionTokens: completion.completionTokens,
                                           dollars: completion.costUSD)
                out[customID] = .success(completion)
            } catch let e as ProviderError {
                out[customID] = .failure(e)
            } catch {
                out[customID] = .failure(ProviderError(kind: .unusable, provider: config.name, message: "\(error)"))
            }
        }
        func failed(_ customID: String, _ status: Int, _ why: String) {
            // An item refused as a request would be (400, 401, 403, 404) ends the job as that request
            // would; one the provider could not run (expired, cancelled, a 5xx) is tried again.
            let fatal = (400...404).contains(status)
            out[customID] = .failure(ProviderError(kind: fatal ? .fatal : .exhausted, provider: config.name, status: status,
                                                   message: Redact.secrets("in batch \(status == 0 ? "" : "(\(status)) ")\(why)")))
        }
        func lines(_ bytes: [UInt8], _ each: (JSONValue) -> Void) {
            var start = 0
            for i in 0...bytes.count where i == bytes.count || bytes[i] == 0x0A {
                if i > start, let v = JSONValue.parse(Array(bytes[start..<i])) { each(v) }
                start = i + 1
            }
        }
        switch config.kind {
        case .openai:
            for fileID in [status.outputFileID, status.errorFileID].compactMap({ $0 }) where !fileID.isEmpty {
                let bytes = try await batchCall("reading the results of batch \(status.id)", base + "/files/" + Self.pathSafe(fileID) + "/content")
                lines(bytes) { line in
                    guard let customID = line["custom_id"]?.stringValue else { return }
                    let code = line["response"]?["status_code"]?.doubleValue.map { Int($0) } ?? 0
                    if code == 200 {
                        answer(customID, line["response"]?["body"])
                    } else if let error = line["error"], case .object = error {
                        failed(customID, 0, (error["code"]?.stringValue ?? "") + ": " + (error["message"]?.stringValue ?? ""))
                    } else {
                        let body = line["response"]?["body"].map { Self.errorMessage($0.serialized()) } ?? "no answer"
                        failed(customID, code, body)
                    }
                }
            }
        case .anthropic:
            let bytes = try await batchCall("reading the results of batch \(status.id)", base + "/" + Self.pathSafe(status.id) + "/results")
            lines(bytes) { line in
                guard let customID = line["custom_id"]?.stringValue, let result = line["result"] else { return }
                switch result["type"]?.stringValue {
                case "succeeded": answer(customID, result["message"])
                case "errored":
                    let error = result["error"]
                    let type = error?["error"]?["type"]?.stringValue ?? error?["type"]?.stringValue ?? ""
                    let message = error?["error"]?["message"]?.stringValue ?? error?["message"]?.stringValue ?? "errored"
                    failed(customID, type == "invalid_request_error" ? 400 : 0, "\(type): \(message)")
                case let other: failed(customID, 0, other ?? "no result")
                }
            }
        }
        return out
    }

    /// Asks the provider to cancel a batch; what it says is not waited for beyond one try.
    public func cancelBatch(_ id: String) async {
        let (base, _) = batchBase
        let url = config.kind == .openai ? base + "/batches/" + Self.pathSafe(id) + "/cancel" : base + "/" + Self.pathSafe(id) + "/cancel"
        let request = HTTPRequest(url: url, headers: batchBase.headers + ["Content-Type: application/json"], body: Array("{}".utf8),
                                  connectTimeout: .seconds(5), totalTimeout: .seconds(20))
        _ = try? await engine.send(request)
    }

    /// An id as a path segment: only the characters providers use in ids.
    static func pathSafe(_ id: String) -> String {
        String(id.unicodeScalars.filter { $0.isASCII && (CharacterSet.alphanumerics.contains($0) || $0 == "_" || $0 == "-") }.prefix(200))
    }
}
