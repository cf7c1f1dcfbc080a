import Foundation
import SynthAPI
import SynthClient
import SynthEngine
import SynthProto
import SynthQuality
import SynthStore
import Testing

/// A job checked against others (`advanced.dedup_against`) and the comparison of two jobs
/// (CompareJobs), against brute force over every pair.
@Suite(.serialized) struct ContaminationTests {
    /// Every pair (seq a, seq b) whose whole text or prompt side is above the threshold, by
    /// comparing all pairs.
    static func bruteForce(_ h: Harness, _ a: String, _ b: String) throws -> Set<[UInt64]> {
        func texts(_ id: String) throws -> [(UInt64, [UInt64], [UInt64])] {
            let job = try #require(try h.store.job(id: id))
            return try h.store.records(jobID: id, after: 0, limit: 100_000).compactMap { r in
                RecordText.of(job.request.schema, storedJSON: r.json).map { (r.seq, Trigrams.set($0.fullText), Trigrams.set($0.promptText)) }
            }
        }
        let t = Threshold.nearDuplicate
        func above(_ x: [UInt64], _ y: [UInt64]) -> Bool {
            !x.isEmpty && !y.isEmpty && t.exceeded(overlap: Trigrams.overlap(x, y), x.count, y.count)
        }
        var out = Set<[UInt64]>()
        let tb = try texts(b)
        for (sa, fa, pa) in try texts(a) {
            for (sb, fb, pb) in tb where above(fa, fb) || above(pa, pb) { out.insert([sa, sb]) }
        }
        return out
    }

    static func compare(_ client: SynthClient, _ a: String, _ b: String, limit: Int32 = 10_000) async throws -> PBCompareJobsResponse {
        var req = PBCompareJobsRequest()
        req.jobA = a
        req.jobB = b
        req.limit = limit
        return try await client.unary(Methods.compareJobs, req)
    }

    @Test func aJobCheckedAgainstAnotherHasNoNearDuplicateOfItAndCompareFindsExactlyThePairs() async throws {
        // Half of the fake's answers repeat one of its earlier answers, more or less reworded: two
        // jobs of the same request then overlap, as a training set and an eval set made alike do.
        try await withHarness(fakeArgs: ["--near-dup-rate", "0.5"], seconds: 180) { h in
            let client = try await h.client(try h.org("acme"))
            let train = try await h.waitForEnd(client, try await h.generate(client, count: 120).jobID, seconds: 120)
            let plain = try await h.waitForEnd(client, try await h.generate(client, count: 120).jobID, seconds: 120)
            #expect(train.status == "succeeded" && plain.status == "succeeded")
            let overlap = try Self.bruteForce(h, train.jobID, plain.jobID)
            #expect(!overlap.isEmpty, "the two jobs made alike overlap")
            // CompareJobs finds exactly the pairs brute force finds, with their similarities.
            let found = try await Self.compare(client, train.jobID, plain.jobID)
            #expect(found.total == Int64(overlap.count) && Set(found.pairs.map { [$0.seqA, $0.seqB] }) == overlap,
                    "compare \(found.total), brute force \(overlap.count)")
            #expect(found.pairs.allSatisfy { ($0.similarity > 0.7 || $0.promptSimilarity > 0.7) && ["record", "prompt", "both"].contains($0.matched) })
            #expect(found.recordsA == 120 && found.recordsB == 120)
            // Either way round, the same pairs.
            let swapped = try await Self.compare(client, plain.jobID, train.jobID)
            #expect(Set(swapped.pairs.map { [$0.seqB, $0.seqA] }) == overlap)
            // A limit lists fewer and still counts all.
            let few = try await Self.compare(client, train.jobID, plain.jobID, limit: 1)
            #expect(few.pairs.count == 1 && few.total == Int64(overlap.count))

            // The same request checked against the training job: none of its records is a
            // near-duplicate of one of the training job's, and some answers were turned away.
            var checked = Harness.request(count: 120)
            checked.request.advanced.dedupAgainst = [train.jobID]
            let eval = try await h.waitForEnd(client, try await client.unary(Methods.generate, checked).job.jobID, seconds: 120)
            #expect(eval.status == "succeeded" && eval.accepted == 120, "\(eval)")
            #expect(try Self.bruteForce(h, train.jobID, eval.jobID).isEmpty)
            #expect(try await Self.compare(client, train.jobID, eval.jobID).total == 0)
            let stored = try #require(try h.store.job(id: eval.jobID))
            #expect((stored.rejections["near_duplicate"] ?? 0) > 0, "\(stored.rejections)")
            await client.close()
        }
    }

    @Test func theJobsNamedMustBeTheOrgsAndEnded() async throws {
        try await withHarness(fakeArgs: ["--latency-ms", "200"], seconds: 120) { h in
            let acme = try await h.client(try h.org("acme"))
            let other = try await h.client(try h.org("other"))
            let theirs = try await h.waitForEnd(other, try await h.generate(other, count: 5).jobID)
            let running = try await h.generate(acme, count: 2000)
            func refused(_ ids: [String]) async throws -> PBStatus? {
                var r = Harness.request(count: 10)
                r.request.advanced.dedupAgainst = ids
                do {
                    _ = try await acme.unary(Methods.generate, r)
                    return nil
                } catch let e as ClientError {
                    return e.status
                }
            }
            let notOurs = try await refused([theirs.jobID])
            #expect(notOurs?.code == .notFound && notOurs?.message.contains("advanced.dedup_against[0]") == true, "\(String(describing: notOurs))")
            let notEnded = try await refused([running.jobID])
            #expect(notEnded?.errorCode == "JOB_NOT_ENDED", "\(String(describing: notEnded))")
            let twice = try await refused(["job_a", "job_a"])
            #expect(twice?.errorCode == "VALIDATION_ERROR" && twice?.fieldErrors.contains { $0.field == "advanced.dedup_against[1]" } == true)
            // Nor can another org's job be compared.
            var req = PBCompareJobsRequest()
            req.jobA = theirs.jobID
            req.jobB = running.jobID
            await #expect(throws: ClientError.self) { _ = try await acme.unary(Methods.compareJobs, req) }
            var cancel = PBCancelJobRequest()
            cancel.jobID = running.jobID
            _ = try await acme.unary(Methods.cancelJob, cancel)
            await acme.close()
            await other.close()
        }
    }
}
