import Foundation
import SynthAPI
import NIOCore
import Testing
import SynthClient
import SynthProto
import SynthStore
import SynthWire
import SynthSpec
@testable import SynthServer

@Suite(.serialized) struct ServerTests {
    @Test(arguments: ["unix", "tcp"])
    func fiftyConcurrentCallsOnOneConnection(transport: String) async throws {
        try await withHarness { h in
            let key = try h.org("acme")
            let client = try await h.client(key, over: transport == "unix" ? h.unix : h.tcp)
            var ids: [String] = []
            for _ in 0..<5 { ids.append(try await h.generate(client, count: 3).jobID) }
            let jobIDs = ids
            let results = try await withTimeout(30, "50 calls") {
                try await withThrowingTaskGroup(of: Bool.self) { g in
                    for i in 0..<50 {
                        g.addTask {
                            switch i % 3 {
                            case 0:
                                var r = PBGetJobRequest()
                                r.jobID = jobIDs[i % 5]
                                return try await client.unary(Methods.getJob, r).job.jobID == jobIDs[i % 5]
                            case 1:
                                return try await client.unary(Methods.health, PBHealthRequest()).status == "ok"
                            default:
                                return try await client.unary(Methods.listJobs, PBListJobsRequest()).jobs.count == 5
                            }
                        }
                    }
                    var all: [Bool] = []
                    for try await ok in g { all.append(ok) }
                    return all
                }
            }
            #expect(results.count == 50)
            #expect(results.allSatisfy { $0 })
            await client.close()
        }
    }

    @Test func openCallsEndUnavailableWhenTheServerStops() async throws {
        try await withHarness(fakeArgs: ["--latency-ms", "50"]) { h in
            let client = try await h.client(try h.org("acme"))
            let job = try await h.generate(client, count: 2000)
            var req = PBWatchJobRequest()
            req.jobID = job.jobID
            let watch = Task {
                var records = 0
                do {
                    for try await e in client.stream(Methods.watchJob, req) {
                        if case .record = e.event { records += 1 }
                    }
                    return (records, PBStatus())
                } catch let e as ClientError {
                    return (records, e.status)
                }
            }
            // Some records arrive, then the server stops under the open watch.
            try await withTimeout(30, "records to flow") {
                while (try h.store.job(id: job.jobID)?.job.accepted ?? 0) < 20 { try await Task.sleep(for: .milliseconds(20)) }
            }
            await h.stopServing()
            let (records, status) = try await withTimeout(10, "the watch to end") { try await watch.value }
            #expect(records > 0)
            #expect(status.code == .unavailable)
            #expect(status.errorCode == "SHUTTING_DOWN")
            #expect(status.message.contains("shutting down"))
            await client.close()
            try await h.restart()
        }
    }

    @Test func unknownMethodIsUnimplemented() async throws {
        try await withHarness { h in
            let client = try await h.client(try h.org("acme"))
            do {
                for try await _ in client.call("DropAllTables", request: PBHealthRequest()) {}
                Issue.record("an unknown method answered")
            } catch let e as ClientError {
                #expect(e.code == .unimplemented)
            }
            await client.close()
        }
    }

    @Test func plansKeepEachOrgInsideItsQuotaOrBalance() async throws {
        try await withHarness(seconds: 180) { h in
            func refused(_ client: SynthClient, _ req: PBGenerateRequest, _ code: PBStatusCode, _ errorCode: String, _ words: [String]) async {
                do {
                    _ = try await client.unary(Methods.generate, req)
                    Issue.record("a job past the plan was accepted: \(req.request.count) records")
                } catch let e as ClientError {
                    #expect(e.code == code)
                    #expect(e.status.errorCode == errorCode)
                    for w in words { #expect(e.status.message.contains(w), "\(e.status.message) lacks \(w)") }
                } catch {
                    Issue.record("\(error)")
                }
            }
            // Free: 100 records a month, running jobs included.
            let free = try await h.client(try h.org("free-org", plan: "free", quota: 100))
            let first = try await h.generate(free, count: 60)
            await refused(free, Harness.request(count: 50), .resourceExhausted, "INSUFFICIENT_BALANCE", ["50 records", "40 are left"])
            _ = try await h.waitForEnd(free, first.jobID)
            await refused(free, Harness.request(count: 41), .resourceExhausted, "INSUFFICIENT_BALANCE", ["40 are left"])
            _ = try await h.waitForEnd(free, try await h.generate(free, count: 40).jobID)
            #expect(try await free.unary(Methods.listJobs, PBListJobsRequest()).jobs.count == 2)

            // Subscription: a monthly quota in records, verified counts 1.5 each, deep is refused.
            let sub = try await h.client(try h.org("sub-org", plan: "subscription", quota: 100))
            var verified = Harness.request(count: 70)
            verified.request.verified = true
            await refused(sub, verified, .resourceExhausted, "INSUFFICIENT_BALANCE", ["105 quota records", "100 are left"])
            var deep = Harness.request(count: 5)
            deep.request.model = "deep"
            await refused(sub, deep, .permissionDenied, "PLAN_NOT_ALLOWED", ["pay-as-you-go"])
            _ = try await h.waitForEnd(sub, try await h.generate(sub, count: 70).jobID)
            verified.request.count = 20
            _ = try await h.waitForEnd(sub, try await sub.unary(Methods.generate, verified).job.jobID)
            await refused(sub, Harness.request(count: 1), .resourceExhausted, "INSUFFICIENT_BALANCE", ["0 of the monthly 100"])

            // Pay-as-you-go: $0.10 pays for 200 fast records ($0.50 per 1,000), not 1,000; the
            // accepted records are paid from the balance when the job succeeds.
            let pay = try await h.client(try h.org("pay-org", plan: "payg", balanceMicroUSD: 100_000))
            await refused(pay, Harness.request(count: 1000), .resourceExhausted, "INSUFFICIENT_BALANCE", ["$0.5000", "$0.1000"])
            _ = try await h.waitForEnd(pay, try await h.generate(pay, count: 100).jobID)
            #expect(try h.store.org(named: "pay-org")?.balanceMicroUsd == 50_000)
            await refused(pay, Harness.request(count: 101), .resourceExhausted, "INSUFFICIENT_BALANCE", ["$0.0500 left"])
            for c in [free, sub, pay] { await c.close() }
        }
    }

    @Test func theRateLimitLetsThroughBurstPlusRateAndOnlyForTheFloodingOrg() async throws {
        // 60 calls a minute with a burst of 10: a 10-second flood of 200 calls gets 10 + 10.
        try await withHarness(seconds: 60, rateLimit: (60, 10)) { h in
            let flood = try await h.client(try h.org("flood"))
            let calm = try await h.client(try h.org("calm"))
            let started = ContinuousClock.now
            var ok = 0, limited = 0, calmOK = 0
            var retryAfter: UInt64 = 0
            for i in 0..<200 {
                // One call every 50 ms for 10 seconds.
                try await Task.sleep(until: started + .milliseconds(50 * i))
                do {
                    _ = try await flood.unary(Methods.listJobs, PBListJobsRequest())
                    ok += 1
                } catch let e as ClientError {
                    #expect(e.code == .resourceExhausted && e.status.errorCode == "RATE_LIMITED")
                    retryAfter = max(retryAfter, e.status.retryAfterMs)
                    limited += 1
                }
                if i % 20 == 0 {
                    _ = try await calm.unary(Methods.listJobs, PBListJobsRequest())
                    calmOK += 1
                }
            }
            let elapsed = ContinuousClock.now - started
            let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
            let expected = 10 + Int(seconds)   // burst + rate x elapsed
            #expect(abs(ok - expected) <= 1, "\(ok) calls got through in \(seconds) s; expected \(expected)")
            #expect(ok + limited == 200)
            #expect(calmOK == 10)
            #expect(retryAfter > 0 && retryAfter <= 1000)
            // Health and GetPricing need no key and are not counted.
            _ = try await flood.unary(Methods.getPricing, PBGetPricingRequest())
            await flood.close()
            await calm.close()
        }
    }

    @Test func aMisspeltDomainIsQueriedBeforeAnyJobExists() async throws {
        try await withHarness { h in
            let client = try await h.client(try h.org("acme"))
            var req = Harness.request(count: 3)
            req.request.domain = "custmer suport for a SaaS product"
            for method in ["Generate", "Plan"] {
                do {
                    if method == "Generate" {
                        _ = try await client.unary(Methods.generate, req)
                    } else {
                        var plan = PBPlanRequest()
                        plan.request = req.request
                        _ = try await client.unary(Methods.plan, plan)
                    }
                    Issue.record("\(method) took a misspelt domain")
                } catch let e as ClientError {
                    #expect(e.code == .invalidArgument)
                    #expect(e.status.errorCode == "DOMAIN_SPELL_CHECK")
                    #expect(e.status.suggestions.map(\.word) == ["custmer", "suport"])
                    #expect(e.status.suggestions[1].suggestions.contains("support"))
                    #expect(e.status.message.contains("\"customer support for a SaaS product\""), "\(e.status.message)")
                }
            }
            #expect(try await client.unary(Methods.listJobs, PBListJobsRequest()).jobs.isEmpty)
            // Confirmed as spelt: the job is made.
            req.domainConfirmed = true
            let job = try await client.unary(Methods.generate, req).job
            #expect(job.domain == "custmer suport for a SaaS product")
            _ = try await h.waitForEnd(client, job.jobID)
            await client.close()
        }
    }

    @Test func keysAreRequiredExceptForHealthAndPricing() async throws {
        try await withHarness { h in
            _ = try h.org("acme")
            for key in ["", "sk_live_wrongwrongwrongwrongwrongwrongwrongwrong", "not-a-key", "sk_\u{0}"] {
                let client = try await h.client(key)
                #expect(try await client.unary(Methods.health, PBHealthRequest()).status == "ok")
                #expect(try await client.unary(Methods.getPricing, PBGetPricingRequest()).tiers.count == 4)
                for method in ["ListJobs", "GetJob", "Generate", "ListApiKeys"] {
                    do {
                        for try await _ in client.call(method, request: PBListJobsRequest()) {}
                        Issue.record("\(method) answered without a valid key")
                    } catch let e as ClientError {
                        #expect(e.code == .unauthenticated, "\(method) with key \(key.debugDescription)")
                    }
                }
                await client.close()
            }
        }
    }

    /// Every keyed method, with no key, a malformed key, a wrong key, a revoked key and another
    /// org's key: the first four get UNAUTHENTICATED; the last sees none of the first org's data.
    @Test func authMatrixOverEveryMethod() async throws {
        try await withHarness { h in
            _ = try h.org("a")
            let keyA = try h.store.createKey(org: "a")
            let owner = try await h.client(keyA.key)
            let job = try await h.generate(owner, count: 3, split: true)
            _ = try await h.waitForEnd(owner, job.jobID)
            let revoked = try h.store.createKey(org: "a")
            _ = try h.store.revokeKey(org: "a", keyID: revoked.info.keyID)
            let keyB = try h.org("b")
            var get = PBGetJobRequest(); get.jobID = job.jobID
            var watch = PBWatchJobRequest(); watch.jobID = job.jobID
            var cancel = PBCancelJobRequest(); cancel.jobID = job.jobID
            var splits = PBFetchSplitsRequest(); splits.jobID = job.jobID
            var manifest = PBGetManifestRequest(); manifest.jobID = job.jobID
            var report = PBGetQualityReportRequest(); report.jobID = job.jobID
            var revoke = PBRevokeApiKeyRequest(); revoke.keyID = keyA.info.keyID
            var plan = PBPlanRequest(); plan.request = Harness.request(count: 2).request
            let calls: [(String, any SwiftProtobuf.Message)] = [
                ("Generate", Harness.request(count: 2)), ("Plan", plan), ("GetJob", get), ("ListJobs", PBListJobsRequest()),
                ("CancelJob", cancel), ("WatchJob", watch), ("FetchSplits", splits), ("GetQualityReport", report),
                ("GetManifest", manifest), ("CreateApiKey", PBCreateApiKeyRequest()), ("ListApiKeys", PBListApiKeysRequest()),
                ("RevokeApiKey", revoke),
            ]
            let bad = ["": "no key", "sk_live_": "malformed", "not a key": "malformed",
                       "sk_live_" + String(keyA.key.dropFirst(8).reversed()): "wrong", revoked.key: "revoked"]
            for (key, what) in bad {
                let c = try await h.client(key)
                for (method, req) in calls {
                    do {
                        for try await _ in c.call(method, request: req) { Issue.record("\(method) sent a message with a \(what) key") }
                        Issue.record("\(method) answered with a \(what) key")
                    } catch let e as ClientError {
                        #expect(e.code == .unauthenticated, "\(method) with a \(what) key: \(e.code)")
                    }
                }
                await c.close()
            }
            // Org b's key: org a's job is not found, its lists hold only org b's, and org a's key
            // cannot be revoked from org b.
            let b = try await h.client(keyB)
            for (method, req) in calls where !["Generate", "Plan", "ListJobs", "CreateApiKey", "ListApiKeys"].contains(method) {
                var received = 0
                do {
                    for try await _ in b.call(method, request: req) { received += 1 }
                    Issue.record("org b could call \(method) on org a's \(method == "RevokeApiKey" ? "key" : "job")")
                } catch let e as ClientError {
                    #expect(e.code == .notFound, "\(method): \(e.code)")
                    #expect(!e.status.message.contains(keyA.info.keyID) || method == "RevokeApiKey")
                }
                #expect(received == 0, "\(method) sent org b \(received) messages")
            }
            #expect(try await b.unary(Methods.listJobs, PBListJobsRequest()).jobs.isEmpty)
            let keys = try await b.unary(Methods.listApiKeys, PBListApiKeysRequest())
            #expect(keys.keys.count == 1 && !keys.keys.contains { $0.keyID == keyA.info.keyID })
            // The owner's key still works, and its job is untouched.
            #expect(try await owner.unary(Methods.getJob, get).job.status == "succeeded")
            await owner.close()
            await b.close()
        }
    }

    @Test func unknownFieldsInsideABinaryRequestAreRefused() async throws {
        try await withHarness { h in
            let client = try await h.client(try h.org("acme"))
            func varint(_ n: Int) -> [UInt8] {
                var out: [UInt8] = [], x = n
                while x >= 0x80 { out.append(UInt8(x & 0x7F) | 0x80); x >>= 7 }
                return out + [UInt8(x)]
            }
            var req = Harness.request(count: 2, split: true)
            // Field 99 (varint 1) inside JobRequest.advanced (field 8) inside GenerateRequest.request (field 1).
            let advanced: [UInt8] = try req.request.advanced.serializedBytes() + [0x98, 0x06, 0x01]
            req.request.clearAdvanced()
            let job: [UInt8] = try req.request.serializedBytes() + [0x42] + varint(advanced.count) + advanced
            let body: [UInt8] = [0x0A] + varint(job.count) + job
            let tampered = try PBGenerateRequest(serializedBytes: body)   // keeps the unknown field
            do {
                _ = try await client.unary(Methods.generate, tampered)
                Issue.record("a nested unknown field was accepted")
            } catch let e as ClientError {
                #expect(e.code == .invalidArgument && e.status.message.contains("does not define"))
            }
            #expect(try await client.unary(Methods.listJobs, PBListJobsRequest()).jobs.isEmpty)
            await client.close()
        }
    }

    @Test func keysAreShownOnceAndListedWithoutTheSecret() async throws {
        try await withHarness { h in
            let first = try await h.client(try h.org("acme"))
            var create = PBCreateApiKeyRequest()
            create.name = "trainer"
            let made = try await first.unary(Methods.createApiKey, create)
            #expect(made.key.hasPrefix("sk_live_") && made.key.count > 30)
            // The new key works; its use is recorded.
            let second = try await h.client(made.key)
            _ = try await second.unary(Methods.listJobs, PBListJobsRequest())
            let listed = try await first.unary(Methods.listApiKeys, PBListApiKeysRequest())
            let info = try #require(listed.keys.first { $0.keyID == made.info.keyID })
            #expect(info.name == "trainer" && !info.createdAt.isEmpty && !info.lastUsedAt.isEmpty && !info.revoked)
            #expect(!info.prefix.isEmpty && made.key.hasPrefix(info.prefix) && info.prefix.count < made.key.count - 16)
            // Nothing in the listing carries the secret part.
            let secret = String(made.key.dropFirst(info.prefix.count))
            let bytes: [UInt8] = try listed.serializedBytes()
            #expect(!String(decoding: bytes, as: UTF8.self).contains(secret))
            // Revoked: refused on its next call, listed as revoked.
            var revoke = PBRevokeApiKeyRequest()
            revoke.keyID = made.info.keyID
            _ = try await first.unary(Methods.revokeApiKey, revoke)
            await #expect(throws: ClientError.self) { try await second.unary(Methods.listJobs, PBListJobsRequest()) }
            let after = try await first.unary(Methods.listApiKeys, PBListApiKeysRequest())
            #expect(after.keys.first { $0.keyID == made.info.keyID }?.revoked == true)
            await first.close()
            await second.close()
        }
    }

    @Test func anotherOrgsJobIsNotFound() async throws {
        try await withHarness { h in
            let a = try await h.client(try h.org("a"))
            let b = try await h.client(try h.org("b"))
            let job = try await h.generate(a, count: 5, split: true)
            _ = try await h.waitForEnd(a, job.jobID)
            var get = PBGetJobRequest(); get.jobID = job.jobID
            var watch = PBWatchJobRequest(); watch.jobID = job.jobID
            var cancel = PBCancelJobRequest(); cancel.jobID = job.jobID
            var splits = PBFetchSplitsRequest(); splits.jobID = job.jobID
            var manifest = PBGetManifestRequest(); manifest.jobID = job.jobID
            var report = PBGetQualityReportRequest(); report.jobID = job.jobID
            let calls: [(String, any SwiftProtobuf.Message)] = [("GetJob", get), ("WatchJob", watch), ("CancelJob", cancel), ("FetchSplits", splits),
                                                                 ("GetManifest", manifest), ("GetQualityReport", report)]
            for (method, req) in calls {
                var messages = 0
                do {
                    for try await _ in b.call(method, request: req) { messages += 1 }
                    Issue.record("org b could call \(method) on org a's job")
                } catch let e as ClientError {
                    #expect(e.code == .notFound, "\(method)")
                    #expect(!e.status.message.contains("org a") && !e.status.message.contains("\"a\""))
                }
                #expect(messages == 0, "\(method) sent org b \(messages) messages of org a's job")
                // The owner still can.
                for try await _ in a.call(method == "CancelJob" ? "GetJob" : method, request: req) {}
            }
            #expect(try await b.unary(Methods.listJobs, PBListJobsRequest()).jobs.isEmpty)
            // A page token is good only for the list it came from: garbage, or org a's token in
            // org b's hands, is refused rather than read as "from the start".
            var first = PBListJobsRequest()
            first.limit = 1
            _ = try await h.generate(a, count: 1)
            let token = try await a.unary(Methods.listJobs, first).nextPageToken
            #expect(!token.isEmpty)
            for (client, bad) in [(a, "garbage"), (b, token)] {
                var req = PBListJobsRequest()
                req.pageToken = bad
                do {
                    _ = try await client.unary(Methods.listJobs, req)
                    Issue.record("page token \(bad) was accepted")
                } catch let e as ClientError {
                    #expect(e.code == .invalidArgument)
                }
            }
            await a.close()
            await b.close()
        }
    }

    @Test func watchResumesAfterDisconnectWithEveryRecordOnceInOrder() async throws {
        try await withHarness(fakeArgs: ["--latency-ms", "30"], jobConcurrency: 8) { h in
            let key = try h.org("acme")
            let first = try await h.client(key)
            let job = try await h.generate(first, count: 120)
            var seen: [UInt64] = []
            var req = PBWatchJobRequest()
            req.jobID = job.jobID
            let firstReq = req
            try await withTimeout(60, "first watcher") {
                var got: [UInt64] = []
                for try await e in first.stream(Methods.watchJob, firstReq) {
                    if case .record(let r) = e.event { got.append(r.seq) }
                    if got.count == 25 { break }
                }
                return got
            }.forEach { seen.append($0) }
            await first.close()  // a dropped connection, mid-job
            let second = try await h.client(key)
            req.afterSeq = seen.last!
            let secondReq = req
            let rest = try await withTimeout(60, "second watcher") {
                var got: [UInt64] = []
                var lines: [Data] = []
                for try await e in second.stream(Methods.watchJob, secondReq) {
                    if case .record(let r) = e.event {
                        got.append(r.seq)
                        lines.append(r.json)
                    }
                }
                return (got, lines)
            }
            seen += rest.0
            #expect(seen == Array(1...120))
            // Records are the stored JSON lines, each a JSON object.
            #expect(rest.1.allSatisfy { (try? JSONSerialization.jsonObject(with: $0)) is [String: Any] })
            await second.close()
        }
    }

    @Test func cancelledWatchStopsStreaming() async throws {
        try await withHarness(fakeArgs: ["--latency-ms", "50"], jobConcurrency: 4) { h in
            let key = try h.org("acme")
            let client = try await h.client(key)
            let job = try await h.generate(client, count: 400)
            let raw = try await RawConnection(h.unix)
            var req = PBWatchJobRequest()
            req.jobID = job.jobID
            try await raw.open(9, "WatchJob", key: key, req)
            var records = 0
            while records < 3 {
                let f = try #require(try await raw.next())
                if case .message(let m) = f.kind, case .record = try PBWatchJobResponse(serializedBytes: m).event { records += 1 }
            }
            var cancel = PBFrame()
            cancel.callID = 9
            cancel.cancel = PBCancel()
            try await raw.send(cancel)
            // Frames already in flight may still arrive; then the final status, then nothing more.
            var status: PBStatus?
            while status == nil {
                let f = try #require(try await raw.next())
                if case .status(let s) = f.kind { status = s }
            }
            #expect(status?.code == .cancelled)
            // The connection still works, and call 9 sends nothing more.
            try await raw.open(10, "Health", key: "", PBHealthRequest())
            var after: [PBFrame] = []
            while true {
                let f = try #require(try await raw.next())
                after.append(f)
                if case .status = f.kind, f.callID == 10 { break }
            }
            #expect(after.allSatisfy { $0.callID == 10 })
            await raw.close()
            await client.close()
        }
    }

    @Test func deadlineExpires() async throws {
        try await withHarness(fakeArgs: ["--latency-ms", "200"], jobConcurrency: 2) { h in
            let client = try await h.client(try h.org("acme"))
            let job = try await h.generate(client, count: 200)
            var req = PBWatchJobRequest()
            req.jobID = job.jobID
            let started = ContinuousClock.now
            do {
                for try await _ in client.stream(Methods.watchJob, req, timeout: .milliseconds(400)) {}
                Issue.record("the watch ended without its deadline")
            } catch let e as ClientError {
                #expect(e.code == .deadlineExceeded)
            }
            #expect(ContinuousClock.now - started < .seconds(10 * testTimeScale))
            await client.close()
        }
    }

    @Test func badFramesGetAStatusAndACleanClose() async throws {
        try await withHarness(maxFrameSize: 1 << 20) { h in
            // Oversized: only the length is sent, and the answer comes before any body.
            var raw = try await RawConnection(h.tcp)
            try await raw.sendRaw([0x7F, 0xFF, 0xFF, 0xFF])
            var f = try #require(try await raw.next())
            #expect(f.callID == 0)
            #expect(f.status.code == .resourceExhausted)
            #expect(f.status.errorCode == "FRAME_TOO_LARGE")
            #expect(try await raw.next() == nil)
            // Zero length.
            raw = try await RawConnection(h.unix)
            try await raw.sendRaw([0, 0, 0, 0])
            f = try #require(try await raw.next())
            #expect(f.status.code == .invalidArgument)
            #expect(f.status.errorCode == "EMPTY_FRAME")
            #expect(try await raw.next() == nil)
            // Garbage that is not a Frame.
            raw = try await RawConnection(h.unix)
            try await raw.sendRaw([0, 0, 0, 5, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF])
            f = try #require(try await raw.next())
            #expect(f.status.errorCode == "MALFORMED_FRAME")
            #expect(try await raw.next() == nil)
            // Truncated, then the client hangs up: nothing to answer, nothing breaks.
            raw = try await RawConnection(h.unix)
            try await raw.sendRaw([0, 0, 0, 50, 1, 2, 3])
            await raw.close()
            // A frame kind a client may not send.
            raw = try await RawConnection(h.unix)
            var bogus = PBFrame()
            bogus.callID = 4
            bogus.status = PBStatus()
            try await raw.send(bogus)
            f = try #require(try await raw.next())
            #expect(f.callID == 4)
            #expect(f.status.code == .invalidArgument)
            // A request body that is not the method's message.
            var open = PBFrame()
            open.callID = 5
            open.open.method = "GetPricing"
            open.open.request = Data([0xFF, 0xFF, 0xFF])
            try await raw.send(open)
            f = try #require(try await raw.next())
            #expect(f.callID == 5)
            #expect(f.status.code == .invalidArgument)
            await raw.close()
            // The server is unharmed.
            let client = try await h.client("")
            #expect(try await client.unary(Methods.health, PBHealthRequest()).status == "ok")
            await client.close()
        }
    }

    @Test func idleConnectionsAreClosed() async throws {
        try await withHarness(idleTimeout: .milliseconds(400)) { h in
            let raw = try await RawConnection(h.unix)
            // No call and no traffic: the server closes it (next() returns nil rather than timing out).
            #expect(try await raw.next(seconds: 10) == nil)
        }
    }

    @Test func noRawKeyInTheDataDirectoryOrTheLogs() async throws {
        try await withHarness { h in
            let key = try h.org("acme")
            let client = try await h.client(key)
            let created = try await client.unary(Methods.createApiKey, PBCreateApiKeyRequest())
            let job = try await h.generate(client, count: 10, split: true)
            _ = try await h.waitForEnd(client, job.jobID)
            _ = try await client.unary(Methods.listApiKeys, PBListApiKeysRequest())
            _ = try? await (try h.client("sk_live_" + String(key.dropFirst(8).reversed()))).unary(Methods.listJobs, PBListJobsRequest())
            await client.close()
            h.store.sync()
            var bytes = Data()
            for name in try FileManager.default.contentsOfDirectory(atPath: h.dir + "/data") {
                bytes.append(try Data(contentsOf: URL(fileURLWithPath: h.dir + "/data/" + name)))
            }
            let logs = h.logs.text
            #expect(!logs.isEmpty)
            for secret in [key, created.key, Harness.providerSecret] {
                #expect(bytes.range(of: Data(secret.utf8)) == nil, "a secret is stored in the data directory")
                #expect(bytes.range(of: Data(secret.dropFirst(12).utf8)) == nil, "part of a secret is stored in the data directory")
                #expect(!logs.contains(secret) && !logs.contains(String(secret.dropFirst(12))), "a secret reached the logs")
            }
        }
    }

    @Test func revokedKeyEndsItsWatch() async throws {
        try await withHarness(fakeArgs: ["--latency-ms", "300"], jobConcurrency: 1) { h in
            let owner = try h.org("acme")
            let ownerClient = try await h.client(owner)
            let second = try await ownerClient.unary(Methods.createApiKey, PBCreateApiKeyRequest())
            let watcher = try await h.client(second.key)
            let job = try await h.generate(ownerClient, count: 100)
            var req = PBWatchJobRequest()
            req.jobID = job.jobID
            let stream = watcher.stream(Methods.watchJob, req)
            var revoke = PBRevokeApiKeyRequest()
            revoke.keyID = second.info.keyID
            _ = try await ownerClient.unary(Methods.revokeApiKey, revoke)
            let started = ContinuousClock.now
            let code = try await withTimeout(10, "the revoked watch to end") {
                do {
                    for try await _ in stream {}
                    return PBStatusCode.ok
                } catch let e as ClientError {
                    return e.code
                }
            }
            #expect(code == .unauthenticated)
            #expect(ContinuousClock.now - started < .seconds(5 * testTimeScale))
            await watcher.close()
            await ownerClient.close()
        }
    }

    @Test func shutdownMidJobResumesWithNothingLostOrDoubled() async throws {
        try await withHarness(fakeArgs: ["--latency-ms", "20"], jobConcurrency: 8) { h in
            let key = try h.org("acme")
            var client = try await h.client(key)
            let job = try await h.generate(client, count: 300, split: true)
            // Let some records land, then stop as SIGTERM would.
            var req = PBWatchJobRequest()
            req.jobID = job.jobID
            req.progressOnly = true
            let progressReq = req
            let firstClient = client
            try await withTimeout(60, "some records") {
                for try await e in firstClient.stream(Methods.watchJob, progressReq) {
                    if case .progress(let j) = e.event, j.accepted >= 40 { break }
                }
            }
            await client.close()
            await h.stopServing()
            let stopped = try #require(try h.store.job(id: job.jobID))
            #expect(stopped.job.status == "running")
            #expect(stopped.job.accepted < 300)
            try await h.restart()
            client = try await h.client(key)
            let final = try await h.waitForEnd(client, job.jobID)
            #expect(final.status == "succeeded")
            #expect(final.accepted == 300)
            let records = try h.store.records(jobID: job.jobID, after: 0, limit: 10_000)
            #expect(records.map(\.seq) == Array(1...300))
            let texts = records.map { String(decoding: $0.json, as: UTF8.self) }
            #expect(Set(texts).count == 300)
            // The splits add up to the job.
            var splits = PBFetchSplitsRequest()
            splits.jobID = job.jobID
            var counts: [String: Int] = [:]
            var lines: [String: [UInt8]] = [:]
            var current = ""
            for try await item in client.stream(Methods.fetchSplits, splits) {
                switch item.item {
                case .split(let s): current = s.name
                case .record(let r):
                    counts[current, default: 0] += 1
                    lines[current, default: []] += Array(r.json) + [0x0A]
                case .batch, nil: break
                }
            }
            #expect(counts == ["train": 240, "validation": 60])

            // The same splits in batches: the same bytes, no batch above the size unless it holds
            // one record, and the counts add up.
            splits.batchBytes = 4096
            var batched: [String: [UInt8]] = [:]
            var batchedCounts: [String: Int] = [:]
            for try await item in client.stream(Methods.fetchSplits, splits) {
                switch item.item {
                case .split(let s): current = s.name
                case .batch(let b):
                    #expect(b.count >= 1 && (b.jsonl.count <= 4096 || b.count == 1))
                    #expect(b.jsonl.filter { $0 == 0x0A }.count == Int(b.count) && b.jsonl.last == 0x0A)
                    #expect(b.firstSeq == 0 && b.lastSeq == 0)
                    batched[current, default: []] += Array(b.jsonl)
                    batchedCounts[current, default: 0] += Int(b.count)
                case .record: Issue.record("a record on a batched stream")
                case nil: break
                }
            }
            #expect(batchedCounts == counts)
            #expect(batched == lines)

            // WatchJob in batches, from the start and from the middle: every record once, in
            // order, byte for byte what the store holds.
            let stored: [UInt8] = records.flatMap { r -> [UInt8] in r.json + [0x0A] }
            for after: UInt64 in [0, 150] {
                let (got, batches, next, _) = try await h.watchBatches(client, job.jobID, after: after, batchBytes: 10)
                let expected: [UInt8] = records.filter { $0.seq > after }.flatMap { r -> [UInt8] in r.json + [0x0A] }
                #expect(got == expected)
                #expect(next == 301)
                // 10 bytes is below the least size (4096), which is used instead.
                #expect(batches > 1 && batches < Int(300 - after))
                if after == 0 { #expect(got == stored) }
            }
            await client.close()
        }
    }

    @Test func anEndedJobsBatchesComeFromItsExportAndADamagedExportIsNeverSent() async throws {
        try await withHarness { h in
            let key = try h.org("acme")
            let client = try await h.client(key)
            let tcpClient = try await h.client(key, over: h.tcp)
            let job = try await h.generate(client, count: 40)
            #expect(try await h.waitForEnd(client, job.jobID).status == "succeeded")
            let records = try h.store.records(jobID: job.jobID, after: 0, limit: 1000)
            func lines(after: UInt64) -> [UInt8] { records.filter { $0.seq > after }.flatMap { $0.json + [0x0A] } }
            // Every record after `after` once, in order, in batches of at most 4096 bytes (or one record).
            func watched(_ c: SynthClient, after: UInt64 = 0) async throws -> [UInt8] {
                let watch = try await h.watchBatches(c, job.jobID, after: after, batchBytes: 4096)
                #expect(watch.succeeded && watch.next == 41)
                return watch.jsonl
            }
            let base = h.dir + "/data/exports/" + job.jobID
            #expect(!FileManager.default.fileExists(atPath: base + ".jsonl"))
            // A read of less than half the job makes no export: its batches come from the database.
            #expect(try await watched(client, after: 30) == lines(after: 30))
            #expect(!FileManager.default.fileExists(atPath: base + ".jsonl"))
            #expect(try await watched(client) == lines(after: 0))
            // The first batched read of the ended job made its export: the same bytes.
            #expect(FileManager.default.contents(atPath: base + ".jsonl").map { Array($0) } == lines(after: 0))
            #expect(try await watched(tcpClient) == lines(after: 0))
            #expect(try await watched(client, after: 17) == lines(after: 17))
            #expect(try await watched(tcpClient, after: 39) == lines(after: 39))

            // Cut short under the running server: that read comes from the database, and the next
            // read makes the export again.
            #expect(truncate(base + ".jsonl", 300) == 0)
            #expect(!h.logs.text.contains("changed on disk"))
            #expect(try await watched(client) == lines(after: 0))
            #expect(h.logs.text.contains("changed on disk"))
            #expect(try await watched(client) == lines(after: 0))
            #expect(FileManager.default.contents(atPath: base + ".jsonl").map { Array($0) } == lines(after: 0))
            // Deleted: the same.
            try FileManager.default.removeItem(atPath: h.dir + "/data/exports")
            #expect(try await watched(tcpClient) == lines(after: 0))
            #expect(try await watched(client, after: 5) == lines(after: 5))
            // An index that lies about its file (as after a crash mid-write elsewhere) is not trusted.
            h.store.forgetExport(jobID: job.jobID)
            #expect(FileManager.default.createFile(atPath: base + ".jsonl", contents: Data(repeating: 0x41, count: lines(after: 0).count - 1)))
            #expect(try await watched(client) == lines(after: 0))
            #expect(FileManager.default.contents(atPath: base + ".jsonl").map { Array($0) } == lines(after: 0))
            await tcpClient.close()
            await client.close()
        }
    }

    @Test func idempotencyPlanAndValidationOverTheWire() async throws {
        try await withHarness { h in
            let client = try await h.client(try h.org("acme"))
            var r = Harness.request(count: 5)
            r.idempotencyKey = "nightly-2026-11-25"
            let a = try await client.unary(Methods.generate, r).job
            let b = try await client.unary(Methods.generate, r).job
            #expect(a.jobID == b.jobID)
            var changed = r
            changed.request.count = 6
            do {
                _ = try await client.unary(Methods.generate, changed)
                Issue.record("a reused idempotency key with another body made a job")
            } catch let e as ClientError {
                #expect(e.code == .failedPrecondition)
                #expect(e.status.errorCode == "IDEMPOTENCY_CONFLICT")
            }
            #expect(try await client.unary(Methods.listJobs, PBListJobsRequest()).jobs.count == 1)

            var plan = PBPlanRequest()
            plan.request = try RequestJSON.parse("""
            {"schema":"preference_v1","domain":"code review best practices","count":100,"model":"deep","verified":true,
             "advanced":{"categories":{"security":{"percentage":60},"style":{"percentage":40}},"output_split":{"train":90,"validation":10}}}
            """)
            let p = try await client.unary(Methods.plan, plan)
            #expect(p.plan.cells.map(\.count) == [60, 40])
            #expect(p.plan.splits.map(\.count) == [90, 10])
            // deep preference: $30/1K, verified +$5/1K.
            #expect(abs(p.cost.totalUsd - 3.5) < 1e-9)
            #expect(try await client.unary(Methods.listJobs, PBListJobsRequest()).jobs.count == 1)

            var bad = Harness.request(count: 0)
            bad.request.schema = "instruction_v2"
            do {
                _ = try await client.unary(Methods.generate, bad)
                Issue.record("an invalid request made a job")
            } catch let e as ClientError {
                #expect(e.code == .invalidArgument)
                #expect(e.status.errorCode == "VALIDATION_ERROR")
                #expect(Set(e.status.fieldErrors.map(\.field)) == ["schema", "count"])
            }
            await client.close()
        }
    }

    @Test func providerFaultsAreRetriedNeverBeforeRetryAfterAndUsageMatches() async throws {
        try await withHarness(fakeArgs: ["--rate-429", "0.3", "--retry-after", "1", "--rate-500", "0.1", "--rate-hang", "0.05", "--hang-seconds", "5"],
                              jobConcurrency: 64, providerTimeout: 1.5, maxRetries: 8, seconds: 400) { h in
            let client = try await h.client(try h.org("acme"))
            let job = try await h.generate(client, count: 2000)
            let final = try await h.waitForEnd(client, job.jobID, seconds: 380)
            #expect(final.status == "succeeded")
            #expect(final.accepted == 2000)
            let stats = try h.fake.stats()
            let log = stats["log"] as? [[String: Any]] ?? []
            #expect(log.count > 2000)
            // Every retry of a 429 came at or after the retry-after the fake sent.
            var byBody: [String: [[String: Any]]] = [:]
            for e in log where e["path"] as? String != "/v1/models" {
                byBody[e["body_sha"] as? String ?? "", default: []].append(e)
            }
            var checked = 0
            for (_, entries) in byBody {
                let ordered = entries.sorted { ($0["t"] as? Double ?? 0) < ($1["t"] as? Double ?? 0) }
                for (a, b) in zip(ordered, ordered.dropFirst()) where a["status"] as? Int == 429 {
                    let retryAfter = a["retry_after"] as? Double ?? 0
                    let sent = a["t_end"] as? Double ?? 0
                    #expect((b["t"] as? Double ?? 0) >= sent + retryAfter - 0.01, "a retry came before its retry-after")
                    checked += 1
                }
            }
            #expect(checked > 100)
            // The job's token counts are what the provider served.
            #expect(final.usage.promptTokens == stats["prompt_tokens"] as? Int64 ?? Int64(stats["prompt_tokens"] as? Int ?? -1))
            #expect(final.usage.completionTokens == stats["completion_tokens"] as? Int64 ?? Int64(stats["completion_tokens"] as? Int ?? -1))
            await client.close()
        }
    }

    @Test func aBadRequestIsNeverRetriedAndFailsTheJobWithTheProvidersAnswer() async throws {
        try await withHarness(fakeArgs: ["--rate-400", "1.0"], jobConcurrency: 4) { h in
            let client = try await h.client(try h.org("acme"))
            let job = try await h.generate(client, count: 20)
            let final = try await h.waitForEnd(client, job.jobID)
            #expect(final.status == "failed")
            #expect(final.error.contains("400"))
            #expect(!final.error.contains(Harness.providerSecret))
            let log = (try h.fake.stats()["log"] as? [[String: Any]] ?? []).filter { $0["path"] as? String != "/v1/models" }
            #expect(!log.isEmpty && log.count <= 4)
            #expect(Set(log.compactMap { $0["body_sha"] as? String }).count == log.count, "a 400 was retried")
            await client.close()
        }
    }
}

import SwiftProtobuf

/// The client against a peer that is not synthd: a raw Unix socket.
@Suite struct ClientConnectionTests {
    /// A server that dies in the middle of a frame (killed while writing) leaves the client's calls
    /// UNAVAILABLE, as a connection closed between frames does, so that `synth watch` and the
    /// other followers connect again instead of failing.
    @Test func aConnectionCutInTheMiddleOfAFrameIsUnavailable() async throws {
        let path = "/tmp/scc-\(UUID().uuidString.prefix(8)).sock"
        defer { unlink(path) }
        let listener = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        #expect(listener >= 0)
        defer { close(listener) }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { $0.copyBytes(from: Array(path.utf8)) }
        let bound = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        #expect(bound == 0)
        #expect(listen(listener, 1) == 0)
        let peer = Thread {
            let c = accept(listener, nil, nil)
            guard c >= 0 else { return }
            var call = [UInt8](repeating: 0, count: 65536)
            _ = read(c, &call, call.count)
            // A length prefix of 100 bytes, then 10 of them, then the end.
            let half: [UInt8] = [0, 0, 0, 100] + Array(repeating: 0x0A, count: 10)
            _ = write(c, half, half.count)
            close(c)
        }
        peer.start()
        let client = try await SynthClient.connect(.unix(path))
        do {
            _ = try await client.unary(Methods.health, PBHealthRequest(), timeout: .seconds(10))
            Issue.record("a half frame was taken for an answer")
        } catch let e as ClientError {
            #expect(e.code == .unavailable, "\(e.description)")
            #expect(e.status.message.contains("middle of a frame"), "\(e.description)")
        }
        await client.close()
    }
}
