import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Testing
import SynthAPI
import SynthCore
@testable import SynthGRPC
import SynthProto
import SynthSpec

/// The gRPC endpoint through grpc-swift's own client and the code generated from service.proto
/// (tools/grpc_interop tests it with grpcio over mutual TLS).
@Suite(.serialized) struct GRPCTests {
    /// Every method of the table has a handler on the gRPC router, under the service's name.
    @Test func everyMethodIsRegistered() async throws {
        try await withHarness { h in
            let service = SynthdGRPCService(core: h.core, gate: h.server.gate, config: h.serverConfig, stop: StopSignal(), logger: h.logs.logger())
            var router = RPCRouter<HTTP2ServerTransport.Posix>()
            service.registerMethods(with: &router)
            #expect(router.methods.count == Methods.all.count)
            for method in Methods.all {
                #expect(router.hasHandler(forMethod: MethodDescriptor(fullyQualifiedService: "synthd.v1.Synthd", method: method.name)), "\(method.name)")
            }
        }
    }

    @Test func aJobThroughTheGeneratedClient() async throws {
        try await withHarness { h in
            let key = try h.org("grpc")
            let endpoint = try GRPCEndpoint(address: "127.0.0.1:0", config: h.serverConfig, core: h.core, gate: h.server.gate, logger: h.logs.logger())
            let port = try await endpoint.start()
            let transport = try HTTP2ClientTransport.Posix(target: .ipv4(address: "127.0.0.1", port: port), transportSecurity: .plaintext)
            try await withGRPCClient(transport: transport) { grpc in
                let client = PBSynthd.Client(wrapping: grpc)
                let auth: Metadata = ["authorization": "Bearer \(key)"]
                #expect(try await client.health(PBHealthRequest()).status == "ok")

                // The framed protocol's status, code and field errors, in the trailers.
                var bad = PBGenerateRequest()
                bad.requestJson = #"{"schema": "instruction_v1", "domain": "customer support", "count": 0, "model": "quick"}"#
                do {
                    _ = try await client.generate(bad, metadata: auth)
                    Issue.record("an invalid request was accepted")
                } catch let e as GRPCCore.RPCError {
                    #expect(e.code == .invalidArgument)
                    #expect(Array(e.metadata[stringValues: TrailerKeys.errorCode]) == ["VALIDATION_ERROR"])
                    let bytes = try #require(Array(e.metadata[binaryValues: TrailerKeys.status]).first)
                    let status = try PBStatus(serializedBytes: bytes)
                    #expect(Set(status.fieldErrors.map(\.field)) == ["count", "model"])
                }
                do {
                    _ = try await client.listJobs(PBListJobsRequest())
                    Issue.record("a call without a key was answered")
                } catch let e as GRPCCore.RPCError {
                    #expect(e.code == .unauthenticated)
                }

                let job = try await client.generate(Harness.request(count: 40), metadata: auth).job
                var watch = PBWatchJobRequest()
                watch.jobID = job.jobID
                let (seqs, final) = try await client.watchJob(watch, metadata: auth) { response in
                    var seqs: [UInt64] = [], final = PBJob()
                    for try await event in response.messages {
                        switch event.event {
                        case .record(let r): seqs.append(r.seq)
                        case .progress(let p): final = p
                        default: break
                        }
                    }
                    return (seqs, final)
                }
                #expect(final.status == "succeeded" && final.accepted == 40)
                #expect(seqs == Array(1...40))
                grpc.beginGracefulShutdown()
            }
            await endpoint.stop()
        }
    }

    /// A watch open when the endpoint stops ends UNAVAILABLE (SHUTTING_DOWN), which clients retry.
    @Test func stoppingEndsOpenStreamsUnavailable() async throws {
        try await withHarness(fakeArgs: ["--latency-ms", "200"], jobConcurrency: 2) { h in
            let key = try h.org("grpc")
            let endpoint = try GRPCEndpoint(address: "127.0.0.1:0", config: h.serverConfig, core: h.core, gate: h.server.gate, logger: h.logs.logger())
            let port = try await endpoint.start()
            let transport = try HTTP2ClientTransport.Posix(target: .ipv4(address: "127.0.0.1", port: port), transportSecurity: .plaintext)
            try await withGRPCClient(transport: transport) { grpc in
                let client = PBSynthd.Client(wrapping: grpc)
                let auth: Metadata = ["authorization": "Bearer \(key)"]
                let job = try await client.generate(Harness.request(count: 500), metadata: auth).job
                var watch = PBWatchJobRequest()
                watch.jobID = job.jobID
                do {
                    try await client.watchJob(watch, metadata: auth) { response in
                        var first = true
                        for try await _ in response.messages where first {
                            first = false
                            Task { await endpoint.stop() }
                        }
                    }
                    Issue.record("the watch ended without an error")
                } catch let e as GRPCCore.RPCError {
                    #expect(e.code == .unavailable, "\(e)")
                    #expect(Array(e.metadata[stringValues: TrailerKeys.errorCode]) == ["SHUTTING_DOWN"])
                }
                grpc.beginGracefulShutdown()
            }
        }
    }
}

extension GRPCTests {
    /// The trailers a gRPC client reads are the ones the README and proto/README.md name.
    @Test func theTrailersAreDocumented() throws {
        for doc in ["README.md", "proto/README.md"] {
            let text = try String(contentsOf: repoRoot.appendingPathComponent(doc), encoding: .utf8)
            for key in [TrailerKeys.errorCode, TrailerKeys.retryAfterMs, TrailerKeys.status, "authorization: Bearer"] {
                #expect(text.contains("`\(key)"), "\(doc) does not name \(key)")
            }
        }
    }
}
