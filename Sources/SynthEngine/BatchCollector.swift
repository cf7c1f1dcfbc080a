import Foundation
import Logging
import SynthConcurrency
import SynthLLM
import SynthProto
import SynthStore

/// Delivery "batch": one job's requests to one provider, gathered into provider batches. To the
/// job it is a model like any other: `complete` returns the answer, however long the batch takes.
/// Requests that come within `gather` of each other go in one batch (so a round of the job's
/// attempts is one batch, and the critic's calls on its answers the next); each batch is polled
/// until it ends, and its answers go to the requests waiting for them.
///
/// A batch of generation requests is stored with the job (`StoredJob.batches`: its id and, for
/// each request, the slot and variation) as soon as the provider has it, and each request is
/// settled in the commit of its outcome; so a restarted synthd asks the same batch for the
/// answers it still needs (`resume`) instead of paying for them again.
final class BatchCollector: ChatModel, Sendable {
    let client: LLMClient
    let jobID: String
    let provider: String
    let engine: Engine
    let gather: Duration

    private struct Waiter {
        var customID: String
        var request: ChatRequest
        var held: Double
        var spend: SpendGuard?
        var continuation: CheckedContinuation<ChatCompletion, Error>
        var token: Int
    }

    private struct State {
        var gathering: [Waiter] = []
        var flushing = false
        /// Waiters by batch id (the batch sent, or one resumed), then by custom id.
        var waiting: [String: [String: Waiter]] = [:]
        var polling: Set<String> = []
        var tasks: [Int: Task<Void, Never>] = [:]
        var nextTask = 0
        var nextToken = 0
        var nextCritic = 0
        /// What each pending batch last said, for the job's detail.
        var said: [String: String] = [:]
        var stopped = false
    }

    private let state = Locked(State())

    init(client: LLMClient, jobID: String, provider: String, engine: Engine, gather: Duration = .milliseconds(100)) {
        self.client = client
        self.jobID = jobID
        self.provider = provider
        self.engine = engine
        self.gather = gather
    }

    var endpoints: [RequestScheduler.EndpointSpec] { client.endpoints }
    var unavailableReason: String? { client.unavailableReason }
    var factor: Double { client.config.batchPriceFactor }
    /// The most bytes of answers one batch may bring back (under the HTTP engine's 64 MiB read).
    static let maxAnswerBytes = 48 << 20

    /// The answer to `request`, from the next batch.
    func complete(_ request: ChatRequest, for requester: Requester) async throws -> ChatCompletion {
        if let fatal = requester.halt?.error { throw fatal }
        let held = requester.spend == nil ? 0 : client.worstCost(request, factor: factor)
        if let spend = requester.spend {
            do {
                try await spend.hold(held, provider: provider)
            } catch let e as ProviderError {
                requester.halt?.set(e)
                throw e
            }
        }
        let customID: String = state.withLock { s in
            if let o = request.origin { return "g\(o.slot)-\(o.variation)" }
            s.nextCritic += 1
            return "c\(s.nextCritic)-" + String(UInt32.random(in: 0...UInt32.max), radix: 36)
        }
        return try await wait(customID: customID, batch: nil, request: request, held: held, spend: requester.spend)
    }

    /// The answer to a request of a batch sent before a restart.
    func resume(batch: String, customID: String, spend: SpendGuard?) async throws -> ChatCompletion {
        let stand = ChatRequest(model: "", system: "", user: "", jsonSchema: nil)
        return try await wait(customID: customID, batch: batch, request: stand, held: 0, spend: spend)
    }

    private func wait(customID: String, batch: String?, request: ChatRequest, held: Double, spend: SpendGuard?) async throws -> ChatCompletion {
        let token = state.withLock { s -> Int in
            s.nextToken += 1
            return s.nextToken
        }
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (c: CheckedContinuation<ChatCompletion, Error>) in
                let waiter = Waiter(customID: customID, request: request, held: held, spend: spend, continuation: c, token: token)
                var startFlush = false, startPoll = false, refuse = false
                state.withLock { s in
                    if s.stopped || Task.isCancelled {
                        refuse = true
                        return
                    }
                    if let batch {
                        s.waiting[batch, default: [:]][customID] = waiter
                        startPoll = s.polling.insert(batch).inserted
                    } else {
                        s.gathering.append(waiter)
                        if !s.flushing {
                            s.flushing = true
                            startFlush = true
                        }
                    }
                }
                if refuse {
                    spend?.settle(held: held, spent: 0)
                    c.resume(throwing: CancellationError())
                    return
                }
                if startFlush { spawn { await self.flushSoon() } }
                if startPoll, let batch { spawn { await self.poll(batch, model: "") } }
            }
        } onCancel: {
            let gone: Waiter? = state.withLock { s in
                if let i = s.gathering.firstIndex(where: { $0.token == token }) { return s.gathering.remove(at: i) }
                for (b, items) in s.waiting {
                    if let w = items.first(where: { $0.value.token == token })?.value {
                        s.waiting[b]?.removeValue(forKey: w.customID)
                        return w
                    }
                }
                return nil
            }
            if let gone {
                gone.spend?.settle(held: gone.held, spent: 0)
                gone.continuation.resume(throwing: CancellationError())
            }
        }
    }

    /// Runs `body` as a task of this collector (cancelled by `stop`).
    private func spawn(_ body: @escaping @Sendable () async -> Void) {
        state.withLock { s in
            let id = s.nextTask
            s.nextTask += 1
            s.tasks[id] = Task {
                await body()
                _ = self.state.withLock { $0.tasks.removeValue(forKey: id) }
            }
        }
    }

    /// Waits for the requests that come together, then sends them as batches of at most
    /// `batch_max_requests` (and of at most `batchMaxBytes`, by their prompts' size).
    private func flushSoon() async {
        try? await Task.sleep(for: gather)
        let taken: [Waiter] = state.withLock { s in
            s.flushing = false
            defer { s.gathering = [] }
            return s.gathering
        }
        guard !taken.isEmpty else { return }
        let most = client.config.batchMaxRequests
        var chunk: [Waiter] = []
        var bytes = 0, answerBytes = 0
        for w in taken {
            let size = w.request.system.utf8.count + w.request.user.utf8.count + (w.request.jsonSchema?.utf8.count ?? 0) + 512
            // The most its answer's line can take in the output file (a token is rarely more than 8
            // bytes of JSON): the file is read whole, and a read is bounded.
            let answer = w.request.maxTokens * 8 + 2048
            if !chunk.isEmpty, chunk.count >= most || bytes + size > LLMClient.batchMaxBytes || answerBytes + answer > Self.maxAnswerBytes {
                let send = chunk
                spawn { await self.send(send) }
                chunk = []
                bytes = 0
                answerBytes = 0
            }
            chunk.append(w)
            bytes += size
            answerBytes += answer
        }
        await send(chunk)
    }

    /// Creates one batch, stores it with the job, and polls it.
    private func send(_ waiters: [Waiter]) async {
        let model = waiters.first?.request.model ?? ""
        let created: (id: String, inputFileID: String)
        do {
            created = try await client.createBatch(waiters.map { ($0.customID, $0.request) }, metadata: ["synthd_job": jobID])
        } catch {
            for w in waiters { finish(w, .failure(error)) }
            return
        }
        engine.logger.info("provider batch sent", metadata: ["job": "\(jobID)", "provider": "\(provider)", "batch": "\(created.id)",
                                                              "requests": "\(waiters.count)"])
        var stored = PBStoredBatch()
        stored.provider = provider
        stored.batchID = created.id
        stored.inputFileID = created.inputFileID
        stored.createdAtMs = Clock.nowMillis()
        for w in waiters {
            guard let o = w.request.origin else { continue }
            var item = PBStoredBatchItem()
            item.customID = w.customID
            item.slot = o.slot
            item.variation = o.variation
            stored.items.append(item)
        }
        if !stored.items.isEmpty {
            let jobID = self.jobID, store = engine.store, record = stored
            _ = try? await BlockingLane.writes.run {
                try store.updateJob(id: jobID) { job in
                    guard let status = JobStatus(rawValue: job.job.status), !status.isTerminal else { return }
                    job.batches.append(record)
                }
            }
        }
        state.withLock { s in
            for w in waiters { s.waiting[created.id, default: [:]][w.customID] = w }
            s.polling.insert(created.id)
            s.said[created.id] = "sent, \(waiters.count) requests"
        }
        showWait()
        await poll(created.id, model: model)
    }

    /// Asks about a batch every `batch_poll_seconds` until it ends, then hands out its answers.
    private func poll(_ id: String, model: String) async {
        var failures = 0
        var status: BatchStatus?
        while !Task.isCancelled {
            do {
                let now = try await client.batchStatus(id)
                failures = 0
                state.withLock { $0.said[id] = "\(now.status), \(now.done) of \(now.total) requests done" }
                showWait()
                if now.ended {
                    status = now
                    break
                }
            } catch let e as ProviderError where e.kind == .fatal || failures >= 5 {
                // The provider no longer knows the batch (or refuses to say): its requests go again.
                endBatch(id, with: ProviderError(kind: .exhausted, provider: provider, message: "batch \(id): \(e.message)"))
                return
            } catch {
                failures += 1
            }
            try? await Task.sleep(for: .milliseconds(Int64(client.config.batchPollSeconds * 1000)))
        }
        guard let status else { return }
        if let failure = status.failure {
            endBatch(id, with: ProviderError(kind: .fatal, provider: provider, message: "batch \(id): \(failure)"))
            return
        }
        let results: [String: Result<ChatCompletion, ProviderError>]
        do {
            results = try await client.batchResults(status, factor: factor, model: model)
        } catch {
            endBatch(id, with: error)
            return
        }
        let waiters: [Waiter] = state.withLock { s in
            s.polling.remove(id)
            s.said.removeValue(forKey: id)
            return Array((s.waiting.removeValue(forKey: id) ?? [:]).values)
        }
        engine.logger.info("provider batch ended", metadata: [
            "job": "\(jobID)", "batch": "\(id)", "status": "\(status.status)",
            "answered": "\(results.values.filter { if case .success = $0 { true } else { false } }.count)", "of": "\(waiters.count)"])
        var unanswered: [String] = []
        for w in waiters {
            let result = results[w.customID] ?? .failure(ProviderError(kind: .exhausted, provider: provider,
                                                                      message: "batch \(id) has no answer for request \(w.customID)"))
            if case .failure = result, w.request.origin != nil || w.request.model.isEmpty { unanswered.append(w.customID) }
            finish(w, result.mapError { $0 as Error })
        }
        forget(id, unanswered)
        showWait()
    }

    /// Every request of a batch that will not answer fails with `error`; its stored requests are
    /// settled (their slots are asked for again, in a new batch).
    private func endBatch(_ id: String, with error: Error) {
        let waiters: [Waiter] = state.withLock { s in
            s.polling.remove(id)
            s.said.removeValue(forKey: id)
            return Array((s.waiting.removeValue(forKey: id) ?? [:]).values)
        }
        for w in waiters { finish(w, .failure(error)) }
        forget(id, waiters.map(\.customID))
        showWait()
    }

    private func finish(_ w: Waiter, _ result: Result<ChatCompletion, Error>) {
        switch result {
        case .success(let c): w.spend?.settle(held: w.held, spent: c.costUSD)
        case .failure: w.spend?.settle(held: w.held, spent: 0)
        }
        w.continuation.resume(with: result)
    }

    /// Takes requests that got no answer out of the job's stored batches (they go again).
    private func forget(_ batch: String, _ customIDs: [String]) {
        guard !customIDs.isEmpty else { return }
        let jobID = self.jobID, store = engine.store, gone = Set(customIDs)
        Task {
            _ = try? await BlockingLane.writes.run {
                try store.updateJob(id: jobID) { job in BatchCollector.settle(&job, batch: batch, items: gone) }
            }
        }
    }

    /// Removes settled requests from a job's stored batches, and batches left with none.
    static func settle(_ job: inout PBStoredJob, batch: String, items: Set<String>) {
        guard let i = job.batches.firstIndex(where: { $0.batchID == batch }) else { return }
        job.batches[i].items.removeAll { items.contains($0.customID) }
        if job.batches[i].items.isEmpty { job.batches.remove(at: i) }
    }

    /// The job's detail while it waits for batches.
    private func showWait() {
        let said = state.withLock { $0.said }
        guard let (id, what) = said.min(by: { $0.key < $1.key }) else {
            engine.setBatchWait(jobID, provider: provider, nil)
            return
        }
        let more = said.count > 1 ? "; \(said.count) batches pending" : ""
        engine.setBatchWait(jobID, provider: provider, "waiting for provider batch \(id) (\(provider)): \(what)\(more)")
    }

    /// Stops polling; every request still waiting ends as cancelled. With `cancelAtProvider`
    /// (the job has ended), the provider is asked to cancel what is still pending.
    func stop(cancelAtProvider: Bool) async {
        let (tasks, waiters, pending): ([Task<Void, Never>], [Waiter], [String]) = state.withLock { s in
            s.stopped = true
            let w = s.gathering + s.waiting.values.flatMap(\.values)
            let p = Array(s.polling)
            s.gathering = []
            s.waiting = [:]
            s.said = [:]
            return (Array(s.tasks.values), w, p)
        }
        for t in tasks { t.cancel() }
        for w in waiters { finish(w, .failure(CancellationError())) }
        engine.setBatchWait(jobID, provider: provider, nil)
        if cancelAtProvider, !pending.isEmpty {
            // Not in this (perhaps cancelled) task: the provider is asked whatever ended the job.
            let client = self.client, jobID = self.jobID, logger = engine.logger
            Task {
                for id in pending {
                    await client.cancelBatch(id)
                    logger.info("provider batch cancelled", metadata: ["job": "\(jobID)", "batch": "\(id)"])
                }
            }
        }
    }
}
