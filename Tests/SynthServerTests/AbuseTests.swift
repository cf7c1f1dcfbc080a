import Foundation
import SynthAPI
import Testing
import NIOCore
import SwiftProtobuf
import SynthClient
import SynthProto
import SynthServer
import SynthSpec
import SynthWire

/// What a key holder, or anyone who can connect, may try: each answer is a clear status, and
/// what each call may cost is bounded.
@Suite struct AbuseTests {
    /// The status a unary call ended with.
    static func status(_ body: () async throws -> Void) async -> PBStatus? {
        do {
            try await body()
            return nil
        } catch let e as ClientError {
            return e.status
        } catch {
            Issue.record("unexpected error \(error)")
            return nil
        }
    }

    @Test func anIdempotencyKeyOver255BytesIsAValidationError() async throws {
        try await withHarness { h in
            let client = try await h.client(try h.org("acme"))
            var gen = Harness.request(count: 3)
            gen.idempotencyKey = String(repeating: "k", count: 300)
            let s = await Self.status { _ = try await client.unary(Methods.generate, gen) }
            #expect(s?.code == .invalidArgument)
            #expect(s?.errorCode == "VALIDATION_ERROR")
            #expect(s?.fieldErrors.map(\.field) == ["idempotency_key"])
            #expect(s?.fieldErrors.first?.rule.contains("255 bytes") == true)
            // At the limit it works, and a repeat gives the same job.
            gen.idempotencyKey = String(repeating: "k", count: 255)
            let a = try await client.unary(Methods.generate, gen).job
            let b = try await client.unary(Methods.generate, gen).job
            #expect(a.jobID == b.jobID)
            await client.close()
        }
    }

    @Test func anAnswerTooLargeForAFrameIsResourceExhaustedAndLogged() async throws {
        try await withHarness(maxFrameSize: 8192) { h in
            let client = try await h.client(try h.org("acme"))
            for _ in 0..<60 { _ = try await h.generate(client, count: 1) }
            var list = PBListJobsRequest()
            list.limit = 60
            let s = await Self.status { _ = try await client.unary(Methods.listJobs, list) }
            #expect(s?.code == .resourceExhausted)
            #expect(s?.errorCode == "RESPONSE_TOO_LARGE")
            #expect(s?.message.contains("8192") == true, "\(s?.message ?? "")")
            #expect(h.logs.text.contains("an answer was too large for a frame"))
            // The connection is fine: a smaller page goes through.
            list.limit = 5
            #expect(try await client.unary(Methods.listJobs, list).jobs.count == 5)
            await client.close()
        }
    }

    /// A Generate of n empty metadata fields, built as bytes: JobRequest.advanced (8) holding
    /// Advanced.metadata_fields (8) n times.
    static func emptyMetadataFields(_ n: Int) -> Data {
        var advanced = [UInt8]()
        advanced.reserveCapacity(2 * n)
        for _ in 0..<n { advanced += [0x42, 0x00] }
        func varint(_ v: Int) -> [UInt8] {
            var out: [UInt8] = [], x = UInt64(v)
            while x >= 0x80 { out.append(UInt8(x & 0x7F) | 0x80); x >>= 7 }
            return out + [UInt8(x)]
        }
        var request: [UInt8] = try! Harness.request(count: 10).request.serializedBytes()
        request += [0x42] + varint(advanced.count) + advanced
        return Data([0x0A] + varint(request.count) + request)
    }

    @Test func hugeRequestsAreRefusedBeforeDecodingAndValidationErrorsAreCapped() async throws {
        try await withHarness { h in
            let key = try h.org("acme")
            let raw = try await RawConnection(h.unix)
            try await raw.open(1, "ListJobs", key: key, PBListJobsRequest())
            #expect(try await raw.next()?.message != nil)
            #expect(try await raw.next()?.status.code == .ok)
            // 8 MB of empty metadata fields: larger than any valid request.
            var open = PBFrame()
            open.callID = 2
            open.open.method = "Generate"
            open.open.apiKey = key
            open.open.request = Self.emptyMetadataFields(4_000_000)
            try await raw.send(open)
            let refused = try #require(try await raw.next(seconds: 30))
            #expect(refused.callID == 2)
            #expect(refused.status.code == .invalidArgument)
            #expect(refused.status.errorCode == "REQUEST_TOO_LARGE")
            // 400 KB of them fit in a valid request's size, but are counted before they are decoded.
            open.callID = 3
            open.open.request = Self.emptyMetadataFields(200_000)
            try await raw.send(open)
            let counted = try #require(try await raw.next(seconds: 30))
            #expect(counted.callID == 3)
            #expect(counted.status.errorCode == "VALIDATION_ERROR")
            #expect(counted.status.fieldErrors.map(\.field) == ["advanced.metadata_fields"])
            #expect(counted.status.fieldErrors.first?.value == "200000")
            // 150 are decoded and validated: the answer lists 100 errors and counts the rest.
            open.callID = 4
            open.open.request = Self.emptyMetadataFields(150)
            try await raw.send(open)
            let capped = try #require(try await raw.next(seconds: 30))
            #expect(capped.callID == 4)
            #expect(capped.status.errorCode == "VALIDATION_ERROR")
            #expect(capped.status.fieldErrors.count == 100)
            #expect(capped.status.message.contains("the request has 150 invalid fields"), "\(capped.status.message)")
            #expect(capped.status.message.contains("more are not"), "\(capped.status.message)")
            await raw.close()
        }
    }

    @Test func beforeAuthenticationAFrameHoldsOnlyTheLargestValidRequest() async throws {
        try await withHarness { h in
            let key = try h.org("acme")
            let limit = h.serverConfig.unauthenticatedMaxFrameSize
            #expect(limit < 4 << 20 && limit >= RequestLimits.largestGenerateRequestBytes)
            // A header announcing 4 MiB, before any call: refused at once, body unsent.
            var raw = try await RawConnection(h.tcp)
            try await raw.sendRaw([0x00, 0x40, 0x00, 0x00])
            let f = try #require(try await raw.next())
            #expect(f.callID == 0 && f.status.errorCode == "FRAME_TOO_LARGE")
            #expect(f.status.message.contains("authenticated"), "\(f.status.message)")
            #expect(try await raw.next() == nil)
            // After an authenticated call the full limit holds: the same 4 MiB is read, and the
            // call is refused for what it is.
            raw = try await RawConnection(h.tcp)
            try await raw.open(1, "ListJobs", key: key, PBListJobsRequest())
            _ = try await raw.next()
            _ = try await raw.next()
            var big = PBFrame()
            big.callID = 2
            big.open.method = "GetJob"
            big.open.apiKey = key
            big.open.request = Data(count: 4 << 20)
            try await raw.send(big)
            let answer = try #require(try await raw.next(seconds: 30))
            #expect(answer.callID == 2 && answer.status.errorCode == "REQUEST_TOO_LARGE")
            await raw.close()
            // A public call does not raise the limit: it proves no key.
            raw = try await RawConnection(h.unix)
            try await raw.open(1, "Health", key: "", PBHealthRequest())
            _ = try await raw.next()
            _ = try await raw.next()
            try await raw.sendRaw([0x00, 0x40, 0x00, 0x00])
            #expect(try await raw.next()?.status.errorCode == "FRAME_TOO_LARGE")
            await raw.close()
        }
    }

    @Test func connectionsAreCappedAndASlotFreesWhenOneCloses() async throws {
        // No idle timeout while the test opens its connections (slow under a sanitizer): a connection
        // closed for idling would free a slot for the fifth.
        try await withHarness(server: { $0.maxConnections = 4; $0.unauthenticatedIdleTimeout = .seconds(600) }) { h in
            var open: [RawConnection] = []
            for _ in 0..<4 {
                let raw = try await RawConnection(h.unix)
                try await raw.open(1, "Health", key: "", PBHealthRequest())
                _ = try await raw.next()
                _ = try await raw.next()
                open.append(raw)
            }
            let fifth = try await RawConnection(h.unix)
            let f = try #require(try await fifth.next())
            #expect(f.callID == 0 && f.status.code == .resourceExhausted && f.status.errorCode == "TOO_MANY_CONNECTIONS")
            let after = try await fifth.next()
            #expect(after == nil, "after TOO_MANY_CONNECTIONS: \(String(describing: after))")
            await open.removeFirst().close()
            // The server sees the close a moment later; then a new connection is served.
            var served = false
            for _ in 0..<50 where !served {
                let again = try await RawConnection(h.unix)
                try await again.open(1, "Health", key: "", PBHealthRequest())
                served = try await again.next()?.message != nil
                await again.close()
                if !served { try await Task.sleep(for: .milliseconds(100)) }
            }
            #expect(served)
            for c in open { await c.close() }
        }
    }

    @Test func sixtyFiveCallsOnOneConnectionMeetTheDefaultLimitOf64() async throws {
        try await withHarness(fakeArgs: ["--latency-ms", "200"]) { h in
            let key = try h.org("acme")
            let client = try await h.client(key)
            let job = try await h.generate(client, count: 2000)
            #expect(ServerConfig().maxCallsPerConnection == 64)
            let raw = try await RawConnection(h.unix)
            var watch = PBWatchJobRequest()
            watch.jobID = job.jobID
            watch.progressOnly = true
            for id in 1...65 { try await raw.open(UInt64(id), "WatchJob", key: key, watch) }
            var refused: PBFrame?
            while refused == nil, let f = try await raw.next() {
                if case .status(let s) = f.kind, s.code == .resourceExhausted { refused = f }
            }
            #expect(refused?.callID == 65)
            #expect(refused?.status.message.contains("at most 64") == true)
            await raw.close()
            _ = try await client.unary(Methods.cancelJob, PBCancelJobRequest.with { $0.jobID = job.jobID })
            await client.close()
        }
    }

    @Test func anUnauthenticatedConnectionIsClosedSoonAnAuthenticatedOneStays() async throws {
        // Slower under a sanitizer: the authenticated client must make its call within the timeout.
        let timeout = Int64(300 * testTimeScale)
        try await withHarness(server: { $0.unauthenticatedIdleTimeout = .milliseconds(timeout) }) { h in
            let key = try h.org("acme")
            // Half a frame, then nothing: the partial frame does not keep it open.
            let lurker = try await RawConnection(h.tcp)
            try await lurker.sendRaw([0x00, 0x00, 0x10, 0x00, 1, 2, 3])
            let started = ContinuousClock.now
            #expect(try await lurker.next(seconds: 10) == nil)
            #expect(ContinuousClock.now - started < .seconds(5 * testTimeScale))
            // An authenticated connection with no call open outlives that timeout.
            let client = try await h.client(key)
            _ = try await client.unary(Methods.listJobs, PBListJobsRequest())
            try await Task.sleep(for: .milliseconds(4 * timeout))
            _ = try await client.unary(Methods.listJobs, PBListJobsRequest())
            await client.close()
        }
    }

    @Test func aHalfClosedClientGetsItsAnswersAndATruncatedFrameIsNamed() async throws {
        try await withHarness { h in
            let key = try h.org("acme")
            var raw = try await RawConnection(h.unix)
            try await raw.open(1, "GetPricing", key: "", PBGetPricingRequest())
            try await raw.open(2, "ListJobs", key: key, PBListJobsRequest())
            try await raw.halfClose()
            var statuses: [UInt64: PBStatusCode] = [:]
            while let f = try await raw.next() {
                if case .status(let s) = f.kind { statuses[f.callID] = s.code }
            }
            #expect(statuses == [1: .ok, 2: .ok])
            await raw.close()
            // Part of a frame, then the client closes its side: TRUNCATED_FRAME on call 0.
            raw = try await RawConnection(h.tcp)
            try await raw.sendRaw([0, 0, 0, 50, 1, 2, 3])
            try await raw.halfClose()
            let f = try #require(try await raw.next())
            #expect(f.callID == 0 && f.status.errorCode == "TRUNCATED_FRAME")
            #expect(try await raw.next() == nil)
            await raw.close()
        }
    }

    /// Job.state carries what Job.status says, in every answer that holds a job.
    @Test func theJobStateEnumMatchesTheStatusEverywhere() async throws {
        try await withHarness(fakeArgs: ["--latency-ms", "50"]) { h in
            let client = try await h.client(try h.org("acme"))
            let first = try await h.generate(client, count: 3)
            #expect(first.state == .queued && first.status == "queued")
            let done = try await h.waitForEnd(client, first.jobID)
            #expect(done.state == .succeeded && !done.hasDetail)
            let long = try await h.generate(client, count: 5000)
            let cancelled = try await client.unary(Methods.cancelJob, PBCancelJobRequest.with { $0.jobID = long.jobID }).job
            #expect(cancelled.state == .cancelled)
            let states: [String: PBJobState] = ["queued": .queued, "running": .running, "succeeded": .succeeded, "failed": .failed,
                                                "cancelled": .cancelled]
            for j in try await client.unary(Methods.listJobs, PBListJobsRequest()).jobs {
                #expect(states[j.status] == j.state, "\(j.status) \(j.state)")
            }
            await client.close()
        }
    }
}
