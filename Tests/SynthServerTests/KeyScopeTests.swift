import Foundation
import SynthAPI
import SynthClient
import SynthProto
import SynthStore
import SwiftProtobuf
import Testing

/// Keys a training loader can safely hold: read-only keys and keys that expire, on every method.
@Suite(.serialized) struct KeyScopeTests {
    /// A request for `method` that a full key of the org gets an answer to (a job of its own).
    static func request(for method: MethodInfo, job: String) -> any SwiftProtobuf.Message {
        switch method.name {
        case "Generate": return Harness.request(count: 2)
        case "Plan": return PBPlanRequest.with { $0.request = Harness.request(count: 2).request }
        case "GetJob": return PBGetJobRequest.with { $0.jobID = job }
        case "ListJobs": return PBListJobsRequest()
        case "CancelJob": return PBCancelJobRequest.with { $0.jobID = job }
        case "WatchJob": return PBWatchJobRequest.with { $0.jobID = job }
        case "FetchSplits": return PBFetchSplitsRequest.with { $0.jobID = job }
        case "GetQualityReport": return PBGetQualityReportRequest.with { $0.jobID = job }
        case "GetManifest": return PBGetManifestRequest.with { $0.jobID = job }
        case "CreateApiKey": return PBCreateApiKeyRequest()
        case "RevokeApiKey": return PBRevokeApiKeyRequest.with { $0.keyID = "key_none" }
        case "DeleteJob": return PBDeleteJobRequest.with { $0.jobID = job }
        case "GetUsage": return PBGetUsageRequest()
        case "CompareJobs": return PBCompareJobsRequest.with { $0.jobA = job; $0.jobB = job }
        default: return PBHealthRequest()
        }
    }

    /// The status a call ends with (nil: OK).
    static func outcome(_ client: SynthClient, _ method: MethodInfo, job: String) async -> ClientError? {
        do {
            for try await _ in client.call(method.name, request: request(for: method, job: job)) {}
            return nil
        } catch let e as ClientError {
            return e
        } catch {
            Issue.record("\(method.name): \(error)")
            return nil
        }
    }

    @Test func aReadOnlyKeyCallsTheReadMethodsAndNothingElse() async throws {
        try await withHarness { h in
            let full = try await h.client(try h.org("acme"))
            let job = try await h.generate(full, count: 5, split: true)
            _ = try await h.waitForEnd(full, job.jobID)
            // Made over the API, as `synth keys create --read-only` does.
            let made = try await full.unary(Methods.createApiKey, PBCreateApiKeyRequest.with { $0.name = "loader"; $0.scope = "read" })
            #expect(made.info.scope == "read" && made.info.expiresAt.isEmpty)
            let reader = try await h.client(made.key)
            for method in Methods.all {
                let e = await Self.outcome(reader, method, job: job.jobID)
                switch method.scope {
                case .open, .read:
                    #expect(e == nil, "\(method.name) with a read-only key: \(String(describing: e))")
                case .write, .admin:
                    #expect(e?.code == .permissionDenied && e?.status.errorCode == "KEY_SCOPE", "\(method.name): \(String(describing: e))")
                    #expect(e?.status.message.contains("\(method.name) needs a full key") == true)
                }
            }
            // Nothing the read-only key tried changed anything: still one job, not cancelled.
            let jobs = try await full.unary(Methods.listJobs, PBListJobsRequest())
            #expect(jobs.jobs.count == 1 && jobs.jobs[0].status == "succeeded")
            // The full key may call everything (CancelJob of an ended job is refused for what it is, not for the key).
            for method in Methods.all {
                let e = await Self.outcome(full, method, job: job.jobID)
                #expect(e == nil || (e?.code != .permissionDenied && e?.code != .unauthenticated), "\(method.name) with a full key: \(String(describing: e))")
            }
            // A key request outside the rules is refused field by field.
            do {
                _ = try await full.unary(Methods.createApiKey, PBCreateApiKeyRequest.with { $0.scope = "write"; $0.expiresInSeconds = -5 })
                Issue.record("a key of scope write was made")
            } catch let e as ClientError {
                #expect(Set(e.status.fieldErrors.map(\.field)) == ["scope", "expires_in_seconds"], "\(e)")
            }
            await reader.close()
            await full.close()
        }
    }

    @Test func anExpiredKeyIsRefusedEverywhereAndEndsItsStreams() async throws {
        try await withHarness(fakeArgs: ["--latency-ms", "150"], jobConcurrency: 2) { h in
            let full = try await h.client(try h.org("acme"))
            let done = try await h.generate(full, count: 3)
            _ = try await h.waitForEnd(full, done.jobID)
            let running = try await h.generate(full, count: 400)
            let made = try await full.unary(Methods.createApiKey, PBCreateApiKeyRequest.with { $0.scope = "read"; $0.expiresInSeconds = 3 })
            #expect(!made.info.expiresAt.isEmpty && !made.info.expired)
            let reader = try await h.client(made.key)
            // Before it expires the key works, and a watch of the running job is open.
            #expect(try await reader.unary(Methods.getJob, PBGetJobRequest.with { $0.jobID = done.jobID }).job.status == "succeeded")
            let watch = Task { () -> ClientError? in
                do {
                    for try await _ in reader.stream(Methods.watchJob, PBWatchJobRequest.with { $0.jobID = running.jobID; $0.progressOnly = true }) {}
                    return nil
                } catch let e as ClientError {
                    return e
                } catch {
                    return ClientError(.unknown, "\(error)")
                }
            }
            // The stream ends when the key does (the server re-checks keys every half second here).
            let ended = await watch.value
            #expect(ended?.code == .unauthenticated, "\(String(describing: ended))")
            let stored = try #require(try h.store.keys(org: "acme").first { $0.keyID == made.info.keyID })
            #expect(Store.isExpired(stored))
            for method in Methods.all {
                let e = await Self.outcome(reader, method, job: done.jobID)
                if method.scope == .open {
                    #expect(e == nil, "\(method.name): \(String(describing: e))")
                } else {
                    #expect(e?.code == .unauthenticated && e?.status.errorCode == "KEY_EXPIRED", "\(method.name): \(String(describing: e))")
                }
            }
            let listed = try await full.unary(Methods.listApiKeys, PBListApiKeysRequest())
            #expect(listed.keys.first { $0.keyID == made.info.keyID }?.expired == true)
            _ = try await full.unary(Methods.cancelJob, PBCancelJobRequest.with { $0.jobID = running.jobID })
            await reader.close()
            await full.close()
        }
    }
}
