import SynthProto

/// How an edge sends a WatchJob stream: its encoding of records and progress. The stream's
/// policy (what goes when, the key re-check, keepalives, when it ends) is `JobService.watch`'s,
/// the same on every edge.
public protocol WatchSink: Sendable {
    /// Sends every record of `job` after `after`, up to and including `upTo`, in order, calling
    /// `recheck` between batches; returns the last sequence number sent. (Records are dense: the
    /// job's records are 1...last_seq.)
    func sendRecords(of job: PBStoredJob, after: UInt64, upTo: UInt64, recheck: () throws -> Void) async throws -> UInt64
    /// Sends the job's progress snapshot.
    func sendProgress(_ job: PBJob) async throws
}

/// How an edge sends a FetchSplits stream.
public protocol SplitSink: Sendable {
    /// Announces a split: the records that follow belong to it.
    func sendSplit(_ split: PBSplitInfo) async throws
    /// Sends the split's records, these sequence numbers in this order.
    func sendRecords(of job: PBStoredJob, seqs: [UInt64]) async throws
}

/// The stream's clocks: how often its key is checked again, and how often an unchanged job's
/// progress goes anyway.
public struct StreamTiming: Sendable {
    public var keyRecheck: Duration
    public var keepalive: Duration

    public init(keyRecheck: Duration, keepalive: Duration) {
        self.keyRecheck = keyRecheck
        self.keepalive = keepalive
    }
}

extension JobService {
    /// Streams a job's records after `after_seq` and its progress, live, until the job ends.
    /// Every record goes exactly once and in order: the stream follows a cursor over the stored
    /// sequence numbers, so what it sends never depends on what was in memory.
    public func watch(_ req: PBWatchJobRequest, _ caller: Caller, timing: StreamTiming, sink: some WatchSink) async throws {
        var job = try self.job(req.jobID, caller)
        let jobID = job.job.jobID
        let (wake, wakeUp) = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
        // Subscribe before the first read, so that no change can fall between a read and a wait.
        let changes = changes(of: job)
        let recheck = timing.keyRecheck
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
            var lastKeyCheck = ContinuousClock.now
            // The key is checked again every `recheck`, also between batches of a long backlog.
            func recheckKey() throws {
                guard ContinuousClock.now - lastKeyCheck >= recheck else { return }
                try ensureKeyActive(caller)
                lastKeyCheck = .now
            }
            var wakes = wake.makeAsyncIterator()
            while true {
                try recheckKey()
                job = try self.job(jobID, caller)
                // Only up to the snapshot just read: the progress sent next then never reports
                // fewer records than were delivered.
                if !req.progressOnly, cursor < job.job.lastSeq {
                    cursor = try await sink.sendRecords(of: job, after: cursor, upTo: job.job.lastSeq, recheck: recheckKey)
                }
                // Unchanged, the snapshot still goes now and then: a keepalive, by which a peer
                // that vanished is found out.
                if lastSent != job.job || ContinuousClock.now - lastSentAt >= timing.keepalive {
                    try await sink.sendProgress(job.job)
                    lastSent = job.job
                    lastSentAt = .now
                }
                if Self.hasEnded(job.job), req.progressOnly || cursor >= job.job.lastSeq {
                    break
                }
                guard await wakes.next() != nil else { throw CancellationError() }
            }
            group.cancelAll()
        }
    }

    /// Streams a finished job's split files: for each split, its SplitInfo, then its records in
    /// file order.
    public func fetchSplits(_ req: PBFetchSplitsRequest, _ caller: Caller, sink: some SplitSink) async throws {
        let job = try self.job(req.jobID, caller)
        for split in try await splits(of: job, named: req.split) {
            var head = PBSplitInfo()
            head.name = split.name
            head.count = Int64(split.seqs.count)
            head.sha256 = split.sha256
            try await sink.sendSplit(head)
            try await sink.sendRecords(of: job, seqs: split.seqs)
        }
    }
}
