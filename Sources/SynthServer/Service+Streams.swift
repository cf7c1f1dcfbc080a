import Foundation
import SynthCore
import SynthEngine
import SynthProto
import SynthSpec
import SynthStore
import SynthWire

extension Service {
    static let recordBatch = 512

    /// Streams a job's records after `after_seq` and its progress, live, until the job ends.
    /// Every record goes exactly once and in order: the stream follows a cursor over the stored
    /// sequence numbers, so what it sends never depends on what was in memory.
    func watchJob(_ req: PBWatchJobRequest, _ ctx: CallContext) async throws {
        var job = try core.job(req.jobID, ctx.caller)
        let jobID = job.job.jobID
        let (wake, wakeUp) = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
        // Subscribe before the first read, so that no change can fall between a read and a wait.
        let changes = engine.hub.changes(of: jobID)
        let recheck = config.keyRecheckInterval
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                for await _ in changes { wakeUp.yield() }
            }
            group.addTask {
                // Wakes the loop now and then to re-check the key even when the job is quiet.
                while !Task.isCancelled {
                    try await Task.sleep(for: recheck)
                    wakeUp.yield()
                }
            }
            var cursor = req.afterSeq
            var lastSent: PBJob?
            var lastSentAt = ContinuousClock.now
            let keepalive = config.keepaliveInterval
            var lastKeyCheck = ContinuousClock.now
            // The key is checked again every `recheck`, also between batches of a long backlog.
            func recheckKey() throws {
                guard ContinuousClock.now - lastKeyCheck >= recheck else { return }
                try core.ensureKeyActive(ctx.caller)
                lastKeyCheck = .now
            }
            var wakes = wake.makeAsyncIterator()
            while true {
                try recheckKey()
                job = try core.job(jobID, ctx.caller)
                if !req.progressOnly, req.batchBytes > 0 {
                    let upTo = job.job.lastSeq
                    // An ended job's records are final: they go from its export file when it can be had.
                    if cursor < upTo, JobStatus(rawValue: job.job.status)?.isTerminal == true {
                        cursor = try await sendFromExport(jobID: jobID, after: cursor, upTo: upTo, batchBytes: req.batchBytes, ctx,
                                                          recheck: recheckKey)
                    }
                    while cursor < upTo {
                        let sent = try await ctx.bulk {
                            var batch = RecordBatchBuilder(allocator: ctx.writer.allocator, requested: req.batchBytes,
                                                           maxFrameSize: config.maxFrameSize)
                            try store.visitRecords(jobID: jobID, after: cursor) { seq, json in seq <= upTo && batch.add(seq: seq, json: json) }
                            if batch.count == 0 { return false }
                            cursor = batch.last
                            try await ctx.sendPayload(batch.payload(callID: ctx.callID, sequenced: true))
                            return true
                        }
                        if !sent { break }
                        try recheckKey()
                    }
                } else if !req.progressOnly {
                    while cursor < job.job.lastSeq {
                        // Only up to the snapshot just read: the progress sent next then never
                        // reports fewer records than were delivered.
                        let upTo = job.job.lastSeq
                        let sent = try await ctx.bulk {
                            let batch = try store.records(jobID: jobID, after: cursor, limit: Self.recordBatch).filter { $0.seq <= upTo }
                            if batch.isEmpty { return false }
                            try await ctx.sendRecords(batch)
                            cursor = batch.last!.seq
                            return true
                        }
                        if !sent { break }
                        try recheckKey()
                    }
                }
                // Unchanged, the snapshot still goes now and then: a keepalive, by which a peer
                // that vanished is found out.
                if lastSent != job.job || ContinuousClock.now - lastSentAt >= keepalive {
                    var p = PBWatchJobResponse()
                    p.progress = job.job
                    try await ctx.send(p)
                    lastSent = job.job
                    lastSentAt = .now
                }
                if let status = JobStatus(rawValue: job.job.status), status.isTerminal, req.progressOnly || cursor >= job.job.lastSeq {
                    break
                }
                guard await wakes.next() != nil else { throw CancellationError() }
            }
            group.cancelAll()
        }
    }

    /// Sends the records after `after`, up to `upTo`, of an ended job from its export
    /// (RecordExport): batches whose JSON lines go from the file to the socket with sendfile.
    /// Returns how far it got; when the export cannot be had, the caller goes on from there with
    /// records read from the database.
    func sendFromExport(jobID: String, after: UInt64, upTo: UInt64, batchBytes: UInt32, _ ctx: CallContext,
                        recheck: () throws -> Void) async throws -> UInt64 {
        let store = self.store
        // An export is made only for a read of at least half the job: a watcher a few records
        // behind when the job ended gets them from the database rather than wait for the whole.
        let make = upTo - after >= upTo / 2
        let found: RecordExport?
        do {
            // Loading is quick; making one reads every record, so it runs off the cooperative pool.
            found = try await withCheckedThrowingContinuation { done in
                DispatchQueue.global().async { done.resume(with: Result { try store.recordExport(jobID: jobID, count: upTo, make: make) }) }
            }
        } catch {
            logger.warning("no export of an ended job; its records are read from the database",
                           metadata: ["job": "\(jobID)", "error": "\(error)"])
            return after
        }
        guard let export = found else { return after }
        let limit = RecordBatchBuilder.limit(requested: batchBytes, maxFrameSize: config.maxFrameSize)
        var cursor = after
        while let r = export.range(after: cursor, upTo: upTo, maxBytes: limit) {
            let head = RecordBatchBuilder.head(callID: ctx.callID, first: r.first, last: r.last, count: r.last - r.first + 1, jsonlBytes: r.length)
            guard head.count + r.length <= config.maxFrameSize else {
                throw RPCError(.resourceExhausted, "record \(r.first) of job \(jobID) is larger than this connection's frame limit")
            }
            let fd: CInt
            do {
                fd = try export.open(covering: r.offset + r.length)
            } catch {
                store.forgetExport(jobID: jobID)
                logger.warning("an export went missing; the rest is read from the database", metadata: ["job": "\(jobID)", "error": "\(error)"])
                return cursor
            }
            try await ctx.bulk {
                try await ctx.sendPayload(ctx.writer.allocator.buffer(bytes: head), fileTail: FileSlice(descriptor: fd, offset: r.offset, length: r.length))
            }
            cursor = r.last
            try recheck()
        }
        return cursor
    }

    /// Streams a finished job's split files: for each split, its SplitInfo, then its records in
    /// file order.
    func fetchSplits(_ req: PBFetchSplitsRequest, _ ctx: CallContext) async throws {
        let job = try core.job(req.jobID, ctx.caller)
        guard job.job.status == JobStatus.succeeded.rawValue else {
            throw RPCError(.failedPrecondition, "job \(req.jobID) is \(job.job.status); splits exist once it succeeds")
        }
        let manifest = try store.manifest(jobID: job.job.jobID).flatMap { JSONValue.parse($0) }
        var hashes: [String: String] = [:]
        if case .array(let splits)? = manifest?["splits"] {
            for s in splits {
                if let n = s["name"]?.stringValue, let h = s["sha256"]?.stringValue { hashes[n] = h }
            }
        }
        let all = Splits.assign(count: Int(job.job.accepted), seed: job.seed, plan: job.plan.splits)
        let chosen = req.split.isEmpty ? all : all.filter { $0.name == req.split }
        guard !chosen.isEmpty else {
            throw RPCError.notFound("split \(String(req.split.prefix(64))) (this job has \(all.map(\.name).joined(separator: ", ")))")
        }
        for (name, seqs) in chosen {
            var head = PBFetchSplitsResponse()
            head.split.name = name
            head.split.count = Int64(seqs.count)
            head.split.sha256 = hashes[name] ?? ""
            try await ctx.send(head)
            var i = 0
            while req.batchBytes > 0, i < seqs.count {
                try await ctx.bulk {
                    var batch = RecordBatchBuilder(allocator: ctx.writer.allocator, requested: req.batchBytes, maxFrameSize: config.maxFrameSize)
                    try store.visitRecords(jobID: job.job.jobID, seqs: seqs[i...]) { seq, json in batch.add(seq: seq, json: json) }
                    i += Int(batch.count)
                    try await ctx.sendPayload(batch.payload(callID: ctx.callID, sequenced: false))
                }
            }
            while i < seqs.count {
                try await ctx.bulk {
                    let slice = seqs[i..<min(seqs.count, i + Self.recordBatch)]
                    let records = try store.records(jobID: job.job.jobID, seqs: slice)
                    try await ctx.sendRecords(zip(slice, records).map { (seq: $0.0, json: $0.1) })
                    i += slice.count
                }
            }
        }
    }
}
