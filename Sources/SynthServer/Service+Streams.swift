import Foundation
import SynthCore
import SynthProto
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
        let changes = core.changes(of: job)
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
                    if cursor < upTo, JobService.hasEnded(job.job) {
                        cursor = try await sendFromExport(job, after: cursor, upTo: upTo, batchBytes: req.batchBytes, ctx,
                                                          recheck: recheckKey)
                    }
                    while cursor < upTo {
                        let sent = try await ctx.bulk {
                            var batch = RecordBatchBuilder(allocator: ctx.writer.allocator, requested: req.batchBytes,
                                                           maxFrameSize: config.maxFrameSize)
                            try core.visitRecords(of: job, after: cursor) { seq, json in seq <= upTo && batch.add(seq: seq, json: json) }
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
                            let batch = try core.records(of: job, after: cursor, limit: Self.recordBatch).filter { $0.seq <= upTo }
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
                if JobService.hasEnded(job.job), req.progressOnly || cursor >= job.job.lastSeq {
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
    func sendFromExport(_ job: PBStoredJob, after: UInt64, upTo: UInt64, batchBytes: UInt32, _ ctx: CallContext,
                        recheck: () throws -> Void) async throws -> UInt64 {
        let jobID = job.job.jobID
        // An export is made only for a read of at least half the job: a watcher a few records
        // behind when the job ended gets them from the database rather than wait for the whole.
        let make = upTo - after >= upTo / 2
        let found: JobExport?
        do {
            found = try await core.export(of: job, count: upTo, make: make)
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
                core.forgetExport(of: job)
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
        let chosen = try await core.splits(of: job, named: req.split)
        for split in chosen {
            let seqs = split.seqs
            var head = PBFetchSplitsResponse()
            head.split.name = split.name
            head.split.count = Int64(seqs.count)
            head.split.sha256 = split.sha256
            try await ctx.send(head)
            var i = 0
            while req.batchBytes > 0, i < seqs.count {
                try await ctx.bulk {
                    var batch = RecordBatchBuilder(allocator: ctx.writer.allocator, requested: req.batchBytes, maxFrameSize: config.maxFrameSize)
                    try core.visitRecords(of: job, seqs: seqs[i...]) { seq, json in batch.add(seq: seq, json: json) }
                    i += Int(batch.count)
                    try await ctx.sendPayload(batch.payload(callID: ctx.callID, sequenced: false))
                }
            }
            while i < seqs.count {
                try await ctx.bulk {
                    let slice = seqs[i..<min(seqs.count, i + Self.recordBatch)]
                    let records = try core.records(of: job, seqs: slice)
                    try await ctx.sendRecords(zip(slice, records).map { (seq: $0.0, json: $0.1) })
                    i += slice.count
                }
            }
        }
    }
}
