import Foundation
import SynthCore
import SynthProto
import SynthWire

extension Service {
    static let recordBatch = 512

    /// WatchJob on the framed protocol: the application's stream, in frames.
    func watchJob(_ req: PBWatchJobRequest, _ ctx: CallContext) async throws {
        let timing = StreamTiming(keyRecheck: config.keyRecheckInterval, keepalive: config.keepaliveInterval)
        try await core.watch(req, ctx.caller, timing: timing, sink: FramedWatch(service: self, ctx: ctx, batchBytes: req.batchBytes))
    }

    /// FetchSplits on the framed protocol.
    func fetchSplits(_ req: PBFetchSplitsRequest, _ ctx: CallContext) async throws {
        try await core.fetchSplits(req, ctx.caller, sink: FramedSplits(service: self, ctx: ctx, batchBytes: req.batchBytes))
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
}

/// A WatchJob stream's records and progress as frames: records one to a message, or in batches
/// of JSON lines built in place; an ended job's batches go from its export file with sendfile.
struct FramedWatch: WatchSink {
    let service: Service
    let ctx: CallContext
    let batchBytes: UInt32

    func sendProgress(_ job: PBJob) async throws {
        var p = PBWatchJobResponse()
        p.progress = job
        try await ctx.send(p)
    }

    func sendRecords(of job: PBStoredJob, after: UInt64, upTo: UInt64, recheck: () throws -> Void) async throws -> UInt64 {
        let core = service.core, ctx = self.ctx
        var cursor = after
        if batchBytes > 0 {
            // An ended job's records are final: they go from its export file when it can be had.
            if JobService.hasEnded(job.job) {
                cursor = try await service.sendFromExport(job, after: cursor, upTo: upTo, batchBytes: batchBytes, ctx, recheck: recheck)
            }
            while cursor < upTo {
                let sent = try await ctx.bulk {
                    var batch = RecordBatchBuilder(allocator: ctx.writer.allocator, requested: batchBytes, maxFrameSize: service.config.maxFrameSize)
                    try core.visitRecords(of: job, after: cursor) { seq, json in seq <= upTo && batch.add(seq: seq, json: json) }
                    if batch.count == 0 { return false }
                    cursor = batch.last
                    try await ctx.sendPayload(batch.payload(callID: ctx.callID, sequenced: true))
                    return true
                }
                if !sent { break }
                try recheck()
            }
        } else {
            while cursor < upTo {
                let sent = try await ctx.bulk {
                    let batch = try core.records(of: job, after: cursor, limit: Service.recordBatch).filter { $0.seq <= upTo }
                    if batch.isEmpty { return false }
                    try await ctx.sendRecords(batch)
                    cursor = batch.last!.seq
                    return true
                }
                if !sent { break }
                try recheck()
            }
        }
        return cursor
    }
}

/// A FetchSplits stream as frames.
struct FramedSplits: SplitSink {
    let service: Service
    let ctx: CallContext
    let batchBytes: UInt32

    func sendSplit(_ split: PBSplitInfo) async throws {
        var head = PBFetchSplitsResponse()
        head.split = split
        try await ctx.send(head)
    }

    func sendRecords(of job: PBStoredJob, seqs: [UInt64]) async throws {
        let core = service.core, ctx = self.ctx, maxFrame = service.config.maxFrameSize, batchBytes = self.batchBytes
        var i = 0
        while batchBytes > 0, i < seqs.count {
            try await ctx.bulk {
                var batch = RecordBatchBuilder(allocator: ctx.writer.allocator, requested: batchBytes, maxFrameSize: maxFrame)
                try core.visitRecords(of: job, seqs: seqs[i...]) { seq, json in batch.add(seq: seq, json: json) }
                i += Int(batch.count)
                try await ctx.sendPayload(batch.payload(callID: ctx.callID, sequenced: false))
            }
        }
        while i < seqs.count {
            try await ctx.bulk {
                let slice = seqs[i..<min(seqs.count, i + Service.recordBatch)]
                let records = try core.records(of: job, seqs: slice)
                try await ctx.sendRecords(zip(slice, records).map { (seq: $0.0, json: $0.1) })
                i += slice.count
            }
        }
    }
}
