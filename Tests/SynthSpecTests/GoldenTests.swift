import Crypto
import Foundation
import SwiftProtobuf
import Testing
import SynthProto

/// The repository's root, found from this file's path.
let repoRoot: URL = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

@Suite struct GoldenTests {
    static let methods: [(String, any SwiftProtobuf.Message.Type)] = [
        ("Generate", PBGenerateRequest.self), ("Plan", PBPlanRequest.self), ("GetJob", PBGetJobRequest.self),
        ("ListJobs", PBListJobsRequest.self), ("CancelJob", PBCancelJobRequest.self), ("WatchJob", PBWatchJobRequest.self),
        ("FetchSplits", PBFetchSplitsRequest.self), ("GetQualityReport", PBGetQualityReportRequest.self),
        ("GetManifest", PBGetManifestRequest.self), ("GetPricing", PBGetPricingRequest.self), ("Health", PBHealthRequest.self),
        ("CreateApiKey", PBCreateApiKeyRequest.self), ("ListApiKeys", PBListApiKeysRequest.self), ("RevokeApiKey", PBRevokeApiKeyRequest.self),
    ]

    /// Parses JSON into Foundation values for a field-by-field comparison.
    static func tree(_ data: Data) throws -> NSObject {
        try JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed]) as! NSObject
    }

    @Test(arguments: methods.map(\.0))
    func goldenFrameDecodesToItsJSON(method: String) throws {
        let type = Self.methods.first { $0.0 == method }!.1
        let dir = repoRoot.appendingPathComponent("proto/testdata")
        let bytes = try Data(contentsOf: dir.appendingPathComponent("\(method).frame"))
        let length = bytes.prefix(4).reduce(0) { $0 << 8 | Int($1) }
        #expect(length == bytes.count - 4)
        let frame = try PBFrame(serializedBytes: bytes.dropFirst(4))
        let envelope = try Self.tree(try Data(contentsOf: dir.appendingPathComponent("Frame.json"))) as! NSDictionary
        #expect(String(frame.callID) == envelope["call_id"] as? String)
        #expect(frame.open.method == method)
        #expect(frame.open.apiKey == envelope["api_key"] as? String)
        #expect(String(frame.open.timeoutMs) == envelope["timeout_ms"] as? String)
        let request = try type.init(serializedBytes: frame.open.request)
        var o = JSONEncodingOptions()
        o.preserveProtoFieldNames = true
        let ours = try Self.tree(Data(try request.jsonString(options: o).utf8))
        let expected = try Self.tree(try Data(contentsOf: dir.appendingPathComponent("\(method).json")))
        #expect(ours == expected, "\(method): \(ours) != \(expected)")
    }

    @Test func generatedCodeMatchesTheProtoFiles() throws {
        let record = try String(contentsOf: repoRoot.appendingPathComponent("proto/GENERATED.sha256"), encoding: .utf8)
        var recorded: [String: String] = [:]
        for line in record.split(separator: "\n") {
            let parts = line.split(separator: " ", omittingEmptySubsequences: true)
            if parts.count == 2 { recorded[String(parts[1])] = String(parts[0]) }
        }
        let protoDir = repoRoot.appendingPathComponent("proto")
        let files = FileManager.default.enumerator(atPath: protoDir.path)!.compactMap { $0 as? String }.filter { $0.hasSuffix(".proto") }.sorted()
        #expect(!files.isEmpty)
        #expect(Set(files) == Set(recorded.keys), "proto files and GENERATED.sha256 disagree: run tools/gen-proto")
        for f in files {
            let digest = SHA256.hash(data: try Data(contentsOf: protoDir.appendingPathComponent(f))).map { String(format: "%02x", $0) }.joined()
            #expect(recorded[f] == digest, "\(f) changed since the code was generated: run tools/gen-proto and commit its output")
        }
    }

    /// Every generated file (Swift messages, the gRPC service, C, Python, the request shape) is
    /// byte for byte what tools/gen-proto wrote from the protos above: a hand edit, or a file
    /// regenerated alone, fails here.
    @Test func generatedFilesAreTheOnesRecorded() throws {
        let record = try String(contentsOf: repoRoot.appendingPathComponent("proto/GENERATED.outputs.sha256"), encoding: .utf8)
        var recorded: [String: String] = [:]
        for line in record.split(separator: "\n") {
            let parts = line.split(separator: " ", omittingEmptySubsequences: true)
            if parts.count == 2 { recorded[String(parts[1])] = String(parts[0]) }
        }
        #expect(recorded.keys.contains("Sources/SynthGRPC/Generated/synthd_v1_service.grpc.swift"))
        let fm = FileManager.default
        var present: Set<String> = ["Sources/SynthSpec/RequestShape+Generated.swift"]
        for (dir, suffix) in [("Sources/SynthProto", ".pb.swift"), ("Sources/SynthGRPC/Generated", ".swift"), ("clients/c/gen", ""),
                              ("clients/python/synthd/v1", "_pb2.py")] {
            for f in fm.enumerator(atPath: repoRoot.appendingPathComponent(dir).path)!.compactMap({ $0 as? String })
            where f.hasSuffix(suffix) && !f.hasSuffix("/") {
                var isDir: ObjCBool = false
                if fm.fileExists(atPath: repoRoot.appendingPathComponent("\(dir)/\(f)").path, isDirectory: &isDir), !isDir.boolValue {
                    present.insert("\(dir)/\(f)")
                }
            }
        }
        #expect(present == Set(recorded.keys), "generated files and GENERATED.outputs.sha256 disagree: run tools/gen-proto")
        for (f, digest) in recorded {
            let data = try Data(contentsOf: repoRoot.appendingPathComponent(f))
            let actual = SHA256.hash(data: data).map { String(format: "%02x", $0) }.joined()
            #expect(actual == digest, "\(f) differs from what tools/gen-proto wrote: run it and commit its output")
        }
    }
}
