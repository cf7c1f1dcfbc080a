import Foundation
import Testing
import SynthAPI
import SynthClient
import SynthProto

/// The method table is the protocol's list of methods, and the server answers every one.
@Suite struct MethodTableTests {
    /// `rpc Name(Request) returns (stream? Response);` lines of `service Synthd`.
    static func serviceBlock() throws -> [(name: String, request: String, stream: Bool, response: String)] {
        let text = try String(contentsOf: repoRoot.appendingPathComponent("proto/synthd/v1/service.proto"), encoding: .utf8)
        let start = try #require(text.range(of: "service Synthd {"))
        let body = text[start.upperBound...].prefix { $0 != "}" }
        let rpc = /rpc\s+(\w+)\((\w+)\)\s+returns\s+\((stream\s+)?(\w+)\);/
        return body.matches(of: rpc).map { m in (String(m.output.1), String(m.output.2), m.output.3 != nil, String(m.output.4)) }
    }

    @Test func theTableIsTheServiceOfTheProto() throws {
        let rpcs = try Self.serviceBlock()
        #expect(rpcs.count == 17)
        #expect(rpcs.map(\.name) == Methods.all.map(\.name))
        for (rpc, info) in zip(rpcs, Methods.all) {
            #expect(info.requestType == "synthd.v1." + rpc.request, "\(info.name)")
            #expect(info.responseType == "synthd.v1." + rpc.response, "\(info.name)")
            #expect((info.kind == .serverStreaming) == rpc.stream, "\(info.name)")
        }
        #expect(Set(Methods.all.filter { $0.scope == .open }.map(\.name)) == ["Health", "GetPricing"])
        #expect(Methods.named("GetJob") == Methods.getJob.info && Methods.named("getJob") == nil)
    }

    /// Every method of the table reaches a handler: none is UNIMPLEMENTED.
    @Test func everyMethodHasAHandler() async throws {
        try await withHarness { h in
            let client = try await h.client(try h.org("acme"))
            for method in Methods.all {
                do {
                    for try await _ in client.call(method.name, request: PBHealthRequest()) {}
                } catch let e as ClientError {
                    #expect(e.code != .unimplemented, "\(method.name): \(e)")
                }
            }
            await client.close()
        }
    }
}
