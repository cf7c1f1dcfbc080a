import Foundation
import SynthConcurrency
import SynthEngine
import SynthProto
import SynthQuality
import SynthStore

extension JobService {
    /// The most characters of text the smaller job of a comparison may hold (the index keeps about
    /// 5 bytes per trigram, a trigram per character): about 25,000 records of a kilobyte.
    public static let compareMaxCharacters = 25_000_000
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
        // The smaller job is held in an index; each record of the larger is checked against all of
        // it (the in-job check's exact join, asked for every match instead of the first).
        let aIsLeft = a.job.accepted <= b.job.accepted
        let (small, large) = aIsLeft ? (a, b) : (b, a)
        let full = NearDuplicateIndex.workingAlone(), prompt = NearDuplicateIndex.workingAlone()
        var seqs: [UInt64] = []
        var held = 0
        try visitTexts(small, store: store) { seq, text in
            held += text.fullText.utf8.count
            if held > compareMaxCharacters {
                throw RPCError(.resourceExhausted, "job \(small.job.jobID) is too large to compare at once: the smaller job of a "
                               + "comparison may hold \(compareMaxCharacters / 1_000_000) million characters of text (about 25,000 records of 1 KB)")
            }
            full.insert(text.fullText)
            prompt.insert(text.promptText)
            seqs.append(seq)
        }
        var found: [Pair: Matched] = [:]
        try visitTexts(large, store: store) { seq, text in
            try Task.checkCancellation()
            for (side, index, t) in [(Matched.record, full, text.fullText), (.prompt, prompt, text.promptText)] {
                for i in index.duplicates(of: t) {
                    let pair = aIsLeft ? Pair(a: seqs[i], b: seq) : Pair(a: seq, b: seqs[i])
                    found[pair] = found[pair].map { $0 == side ? side : .both } ?? side
                }
            }
        }
        var out = PBCompareJobsResponse()
        out.recordsA = a.job.accepted
        out.recordsB = b.job.accepted
        out.threshold = Threshold.nearDuplicate.value
        out.total = Int64(found.count)
        // The similarities of the pairs listed, worked out from their texts.
        let listed = found.sorted { ($0.key.b, $0.key.a) < ($1.key.b, $1.key.a) }.prefix(limit)
        var textsA: [UInt64: RecordText] = [:], textsB: [UInt64: RecordText] = [:]
        let wantA = Set(listed.map(\.key.a)), wantB = Set(listed.map(\.key.b))
        try visitTexts(a, store: store) { seq, t in if wantA.contains(seq) { textsA[seq] = t } }
        try visitTexts(b, store: store) { seq, t in if wantB.contains(seq) { textsB[seq] = t } }
        for (pair, matched) in listed {
            var p = PBNearDuplicatePair()
            p.seqA = pair.a
            p.seqB = pair.b
            if let x = textsA[pair.a], let y = textsB[pair.b] {
                p.similarity = Trigrams.jaccard(Trigrams.set(x.fullText), Trigrams.set(y.fullText))
                p.promptSimilarity = Trigrams.jaccard(Trigrams.set(x.promptText), Trigrams.set(y.promptText))
            }
            p.matched = matched.rawValue
            out.pairs.append(p)
        }
        return out
    }

    enum Matched: String {
        case record, prompt, both
    }

    struct Pair: Hashable {
        var a: UInt64
        var b: UInt64
    }
}
