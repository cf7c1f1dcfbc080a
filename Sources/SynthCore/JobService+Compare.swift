import Foundation
import SynthConcurrency
import SynthEngine
import SynthProto
import SynthQuality
import SynthStore

extension JobService {
    /// The most trigrams the smaller job of a comparison may hold (each is 4 bytes in the join's
    /// index): about 25,000 records of a kilobyte.
    public static let compareMaxTrigrams = 25_000_000
    public static let compareDefaultLimit = 1_000
    public static let compareMaxLimit = 10_000

    /// Every near-duplicate pair between two jobs of the caller's org, by the in-job rule: the
    /// whole records' text, or their prompt sides, above the threshold.
    public func compareJobs(_ req: PBCompareJobsRequest, _ caller: Caller) async throws -> PBCompareJobsResponse {
        guard req.limit >= 0, req.limit <= Int32(Self.compareMaxLimit) else {
            throw RPCError.invalid("limit must be between 1 and \(Self.compareMaxLimit) (0 means \(Self.compareDefaultLimit)), got \(req.limit)")
        }
        let a = try job(req.jobA, caller), b = try job(req.jobB, caller)
        let limit = req.limit == 0 ? Self.compareDefaultLimit : Int(req.limit)
        let store = self.store
        return try await BlockingLane.compute.run {
            try Self.compare(a, b, limit: limit, store: store)
        }
    }

    /// The accepted records of a job, as (seq, text) read one batch at a time.
    static func visitTexts(_ job: PBStoredJob, store: Store, _ body: (UInt64, RecordText) throws -> Void) throws {
        var after: UInt64 = 0
        while true {
            let batch = try store.records(jobID: job.job.jobID, after: after, limit: 1000)
            guard let last = batch.last else { return }
            for r in batch {
                if let text = RecordText.of(job.request.schema, storedJSON: r.json) { try body(r.seq, text) }
            }
            after = last.seq
        }
    }

    static func compare(_ a: PBStoredJob, _ b: PBStoredJob, limit: Int, store: Store) throws -> PBCompareJobsResponse {
        // The smaller job is held in the join's index; the larger is read from the store, twice.
        let aIsLeft = a.job.accepted <= b.job.accepted
        let (small, large) = aIsLeft ? (a, b) : (b, a)
        var found: [Pair: (full: Double, prompt: Double)] = [:]
        for side in [Side.full, .prompt] {
            let join = SimilarityJoin()
            var seqs: [UInt64] = []
            try visitTexts(small, store: store) { seq, text in
                let set = Trigrams.set(side.text(text))
                join.addLeft(set)
                seqs.append(seq)
                if join.heldTrigrams > compareMaxTrigrams {
                    throw RPCError(.resourceExhausted, "job \(small.job.jobID) is too large to compare at once: the smaller job of a "
                                   + "comparison may hold \(compareMaxTrigrams / 1_000_000) million trigrams (about 25,000 records of 1 KB)")
                }
            }
            try visitTexts(large, store: store) { _, text in join.countRight(Trigrams.set(side.text(text))) }
            join.build()
            try visitTexts(large, store: store) { seq, text in
                for m in join.matches(Trigrams.set(side.text(text))) {
                    let pair = aIsLeft ? Pair(a: seqs[m.left], b: seq) : Pair(a: seq, b: seqs[m.left])
                    var both = found[pair] ?? (0, 0)
                    if side == .full { both.full = m.similarity } else { both.prompt = m.similarity }
                    found[pair] = both
                }
            }
        }
        var out = PBCompareJobsResponse()
        out.recordsA = a.job.accepted
        out.recordsB = b.job.accepted
        out.threshold = Threshold.nearDuplicate.value
        out.total = Int64(found.count)
        // Similarities of the side that did not match are worked out for the pairs listed only.
        let listed = found.sorted { ($0.key.b, $0.key.a) < ($1.key.b, $1.key.a) }.prefix(limit)
        var texts: [UInt64: RecordText] = [:], textsB: [UInt64: RecordText] = [:]
        let wantA = Set(listed.map(\.key.a)), wantB = Set(listed.map(\.key.b))
        try visitTexts(a, store: store) { seq, t in if wantA.contains(seq) { texts[seq] = t } }
        try visitTexts(b, store: store) { seq, t in if wantB.contains(seq) { textsB[seq] = t } }
        for (pair, sims) in listed {
            var p = PBNearDuplicatePair()
            p.seqA = pair.a
            p.seqB = pair.b
            p.similarity = sims.full
            p.promptSimilarity = sims.prompt
            if let x = texts[pair.a], let y = textsB[pair.b] {
                if sims.full == 0 { p.similarity = Trigrams.jaccard(Trigrams.set(x.fullText), Trigrams.set(y.fullText)) }
                if sims.prompt == 0 { p.promptSimilarity = Trigrams.jaccard(Trigrams.set(x.promptText), Trigrams.set(y.promptText)) }
            }
            p.matched = sims.full > 0 && sims.prompt > 0 ? "both" : sims.full > 0 ? "record" : "prompt"
            out.pairs.append(p)
        }
        return out
    }

    struct Pair: Hashable {
        var a: UInt64
        var b: UInt64
    }

    enum Side {
        case full, prompt
        func text(_ t: RecordText) -> String { self == .full ? t.fullText : t.promptText }
    }
}
