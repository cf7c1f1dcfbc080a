import Foundation
import Logging
import SynthConcurrency
import SynthLLM
import SynthProto
import SynthQuality
import SynthSpec
import SynthStore
import Synchronization
import SynthMetrics

/// Generates one job: every planned slot gets exactly one accepted record, unless the job ends short
/// of its count (its attempt budget spent, its provider gone or refusing it) with what it accepted.
final class JobRunner: Sendable {
    let jobID: String
    let engine: Engine

    init(jobID: String, engine: Engine) {
        self.jobID = jobID
        self.engine = engine
    }

    var store: Store { engine.store }
    var logger: Logger { engine.logger }

    func run() async {
        while !Task.isCancelled {
            do {
                try await generate()
            } catch is CancellationError {
                // Cancelled or shutting down: what was committed stays; status was set by whoever cancelled.
            } catch let e as StoreError where e.code == .noSpace {
                // A full store is not the job's fault: it waits, as a restart would find it, and
                // goes on from what was committed once there is room. Nothing half-written: the
                // commit that failed left no trace.
                logger.error("job paused: the store is full", metadata: ["job": "\(jobID)", "error": "\(e.message)"])
                engine.setPaused(jobID, "paused: the server's storage is full (\(e.message)); the job goes on by itself once there is room")
                while !Task.isCancelled, await !BlockingLane.writes.run({ self.store.hasRoom() }) {
                    try? await Task.sleep(for: engine.spaceRecheck)
                }
                engine.setPaused(jobID, nil)
                if !Task.isCancelled { logger.info("job resumed: the store has room again", metadata: ["job": "\(jobID)"]) }
                continue
            } catch {
                await end(error)
            }
            break
        }
        engine.setWaiting(jobID, nil)
        engine.hub.publish(jobID)
    }

    /// Ends a job that cannot go on. Quality never blocks delivery: with records accepted, the
    /// job succeeds short of its count (its records delivered, billed, with manifest, splits and
    /// the report that shows why) and the reason goes in its detail; with none, it fails.
    func end(_ error: Error) async {
        let message: String
        switch error {
        case let e as ProviderError where e.kind == .capped: message = e.message
        case let e as ProviderError: message = "generation stopped: \(e.description)"
        case let e as EngineError: message = e.message
        default: message = "generation stopped: \(error)"
        }
        let jobID = self.jobID
        if let job = try? store.job(id: jobID), job.job.accepted > 0 {
            do {
                try await finish(short: message)
                return
            } catch {
                logger.error("a job that ended short could not be finished", metadata: ["job": "\(jobID)", "error": "\(error)"])
            }
        }
        logger.error("job failed", metadata: ["job": "\(jobID)", "error": "\(message)"])
        let engine = self.engine
        _ = try? await BlockingLane.writes.run {
            try self.store.endJob(id: jobID, detail: message, { job in
                job.job.status = JobStatus.failed.rawValue
                job.job.error = message
                job.batches.removeAll()
                job.finishedAtMs = Clock.nowMillis()
                job.job.finishedAt = Clock.rfc3339(job.finishedAtMs)
                job.job.costUsd = engine.pricing.estimate(job.request, records: job.job.accepted).totalUsd
            }, bill: engine.bill)
        }
    }

    func generate() async throws {
        guard var job = try store.job(id: jobID), let status = JobStatus(rawValue: job.job.status), !status.isTerminal else { return }
        let resumed = status == .running
        let jobID = self.jobID
        let starting = engine.routes(for: job.request)
        let recipe = starting.generator.map { Recipe.json(request: job.request, plan: job.plan, generator: $0, critic: starting.critic, config: engine.config) }
        job = try await BlockingLane.writes.run {
            try self.store.updateJob(id: jobID, event: resumed ? "resumed" : "started") { job in
                // A cancel may have landed since the read above: never bring a finished job back.
                guard let now = JobStatus(rawValue: job.job.status), !now.isTerminal else { return }
                if let recipe, job.recipes.last.map(Array.init) != recipe { job.recipes.append(Data(recipe)) }
                job.job.status = JobStatus.running.rawValue
                if job.startedAtMs == 0 {
                    job.startedAtMs = Clock.nowMillis()
                    job.job.startedAt = Clock.rfc3339(job.startedAtMs)
                }
            }
        }
        engine.hub.publish(jobID)
        guard job.job.status == JobStatus.running.rawValue else { return }
        logger.info(resumed ? "job resumed" : "job running", metadata: [
            "job": "\(jobID)", "count": "\(job.job.count)", "accepted": "\(job.job.accepted)"])

        let request = job.request
        let plan = job.plan
        let slots = Slot.all(plan)
        let filled = SlotBits(Array(job.filled), count: slots.count)
        let pending = slots.filter { !filled.contains($0.index) }
        let routes = engine.routes(for: request)
        guard let route = routes.generator, let client = engine.client(route.provider) else {
            throw EngineError(.providerNotConfigured, "no configured provider answers for model \(request.model.isEmpty ? request.models.generator.model : request.model)")
        }
        if let why = client.unavailableReason {
            throw EngineError(.providerNotConfigured, why)
        }
        // Delivery "batch": the generator's requests (and the critic's, when its provider has a
        // batch API too) go through provider batches, gathered per provider.
        var collectors: [String: BatchCollector] = [:]
        if request.delivery == "batch" {
            guard let http = client as? LLMClient else {
                throw EngineError(.providerNotConfigured, "delivery batch needs a provider with a batch API, and \(route.provider) has none")
            }
            collectors[route.provider] = BatchCollector(client: http, jobID: jobID, provider: route.provider, engine: engine)
            if collectors[routes.critic.provider] == nil, let critic = engine.client(routes.critic.provider) as? LLMClient {
                collectors[routes.critic.provider] = BatchCollector(client: critic, jobID: jobID, provider: routes.critic.provider, engine: engine)
            }
        }
        do {
            let short = try await generate(job: job, slots: slots, pending: pending, route: route, client: collectors[route.provider] ?? client,
                                           critic: collectors[routes.critic.provider] ?? engine.client(routes.critic.provider),
                                           collectors: collectors)
            for c in collectors.values { await c.stop(cancelAtProvider: !engine.isStopping) }
            try await finish(short: short)
        } catch {
            for c in collectors.values { await c.stop(cancelAtProvider: !engine.isStopping && !(error is CancellationError && !isCancelledByUser)) }
            throw error
        }
    }

    /// Whether the job was cancelled (rather than the server stopping).
    var isCancelledByUser: Bool {
        (try? store.job(id: jobID))?.map { $0.job.status == JobStatus.cancelled.rawValue } ?? false
    }

    /// Generates the job's open slots; nil when every one is filled, or why it stopped short.
    func generate(job: PBStoredJob, slots: [Slot], pending: [Slot], route: ModelRoute, client: any ChatModel, critic: (any ChatModel)?,
                  collectors: [String: BatchCollector]) async throws -> String? {
        let request = job.request
        let plan = job.plan
        let jobID = self.jobID
        let routes = engine.routes(for: request)
        let prompts = PromptBuilder(request: request, plan: plan)
        // `concurrency` bounds the job's requests in flight, the critic's included (the scheduler
        // holds it to that, and shares the providers' capacity fairly among orgs and jobs); an
        // attempt gives its grant back as soon as its answer is in, so the next request leaves
        // while the answer is still being checked. Up to twice as many attempts exist at once:
        // the others are being checked or waiting.
        let concurrency = max(1, min(engine.config.jobConcurrency, client.capacity))
        let batchSize = (client as? BatchCollector)?.client.config.batchMaxRequests
        let ticket = engine.scheduler.join(org: job.org, limit: concurrency)
        defer { engine.scheduler.leave(ticket) }
        // Set by the first fatal answer (400, 401, 403, quota): requests still waiting for a
        // grant then never send, so a job that cannot go on stops at once.
        let halted = HaltFlag()
        let spend = engine.spendGuard(for: job)
        guard let requester = engine.requester(route.provider, ticket, halt: halted, spend: spend) else {
            throw EngineError(.providerNotConfigured, "provider \(route.provider) is not configured")
        }
        let gate = QualityGate(request: request, system: [prompts.system(for: slots.first ?? Slot(index: 0, cell: 0, hardNegative: false))],
                               critic: critic, criticModel: routes.critic.model,
                               requester: engine.requester(routes.critic.provider, ticket, halt: halted, spend: spend), jobID: jobID, logger: logger)
        if job.job.accepted > 0 {
            let accepted = job.job.accepted
            try await BlockingLane.compute.run { try self.restore(gate, schema: request.schema, accepted: accepted) }
        }
        if request.hasAdvanced, !request.advanced.dedupAgainst.isEmpty {
            let others = request.advanced.dedupAgainst, org = job.org
            try await BlockingLane.compute.run { try self.reference(gate, jobs: others, org: org) }
        }
        let budget = Int64(Double(plan.count) * engine.config.attemptsPerRecord) + Int64(engine.config.attemptSlack)
        let priorAttempts = job.attempts
        let startVariation = Int(job.job.generated) + Int(job.attempts)
        let queue = CommitQueue()
        // In batch delivery a round's requests wait together in the provider's batch: as many as
        // one batch holds are made at once.
        let attemptsAtOnce = batchSize ?? 2 * concurrency
        // Requests of batches sent before a restart: asked of the same batch, not sent again.
        var resumable: [(Slot, BatchCollector, String, String)] = []
        if !collectors.isEmpty, !job.batches.isEmpty {
            var open = Set(pending.map(\.index))
            var filledItems: [(String, String)] = []
            for b in job.batches {
                for item in b.items {
                    if let collector = collectors[b.provider], open.remove(Int(item.slot)) != nil {
                        resumable.append((slots[Int(item.slot)], collector, b.batchID, item.customID))
                    } else {
                        filledItems.append((b.batchID, item.customID))
                    }
                }
            }
            if !filledItems.isEmpty {
                let store = self.store, filledItems = filledItems
                _ = try await BlockingLane.writes.run {
                    try store.updateJob(id: jobID) { job in
                        for (b, c) in filledItems { BatchCollector.settle(&job, batch: b, items: [c]) }
                    }
                }
            }
        }
        let resumedSlots = Set(resumable.map(\.0.index)), resumed = resumable
        let drives = prompts.drivesByAxis
        // Whether the generator can be reached; the job ends once it has not been for this long.
        let reach = Reachability(jobID: jobID, provider: route.provider, engine: engine)
        let unreachableLimit = Duration.milliseconds(Int64(engine.config.providerUnreachableTimeoutSeconds * 1000))

        // The committer and the generators are siblings: if a commit fails (a full disk, say),
        // the group ends and the generators stop paying for answers that could not be kept.
        // The generators' task ends with nil once every slot is filled, or with why it stopped
        // short (the attempt budget is spent); the committer's with nil.
        let short: String? = try await withThrowingTaskGroup(of: String?.self) { outer in
            outer.addTask {
                try await self.commitLoop(queue, request: request)
                return nil
            }
            outer.addTask {
                defer { queue.finish() }
                var todo = pending.filter { !resumedSlots.contains($0.index) }
                var attempts = priorAttempts
                return try await withThrowingTaskGroup(of: AttemptStep.self) { group -> String? in
                    var inFlight = 0
                    var variation = startVariation
                    func launch(_ slot: Slot) {
                        variation += 1
                        attempts += 1
                        inFlight += 1
                        let v = variation
                        // Requests go at a higher priority than the checks of answers: a permit
                        // given back wakes the next request at once, not behind the checking
                        // work queued before it.
                        group.addTask(priority: .high) {
                            try await self.send(slot, variation: v, request: request, prompts: prompts, route: route, client: client,
                                                requester: requester, halted: halted, queue: queue, reach: reach)
                        }
                    }
                    for (slot, collector, batch, customID) in resumed {
                        attempts += 1
                        inFlight += 1
                        group.addTask(priority: .high) {
                            try await self.attempt(slot, halted: halted, queue: queue, reach: reach) {
                                try await collector.resume(batch: batch, customID: customID, spend: spend)
                            }
                        }
                    }
                    while inFlight < attemptsAtOnce, !todo.isEmpty { launch(todo.removeFirst()) }
                    while let step = try await group.next() {
                        switch step {
                        case .answered(let slot, let completion):
                            group.addTask(priority: .medium) {
                                try await self.check(slot, completion, request: request, plan: plan, drives: drives, gate: gate, queue: queue)
                            }
                        case .unreached(let slot):
                            inFlight -= 1
                            attempts -= 1
                            todo.append(slot)
                            if let since = reach.since, ContinuousClock.now - since > unreachableLimit {
                                group.cancelAll()
                                throw EngineError(.providerUnreachable, "provider \(route.provider) could not be reached for "
                                                  + "\(Int(self.engine.config.providerUnreachableTimeoutSeconds)) s: \(reach.lastError)")
                            }
                            while inFlight < attemptsAtOnce, !todo.isEmpty { launch(todo.removeFirst()) }
                        case .done(let slot, let ok):
                            inFlight -= 1
                            if !ok { todo.append(slot) }
                            if !todo.isEmpty, attempts >= budget {
                                // What is still in flight is let go; the slots it had stay open.
                                group.cancelAll()
                                return "the attempt budget (\(attempts) attempts for \(plan.count) records) was spent: "
                                    + "too many answers were rejected (the quality report says why)"
                            }
                            while inFlight < attemptsAtOnce, !todo.isEmpty { launch(todo.removeFirst()) }
                        }
                    }
                    return nil
                }
            }
            var short: String?
            for try await reason in outer where reason != nil { short = reason }
            return short
        }
        return short
    }

    /// Where an attempt is: its request answered (to be checked), or over (true when it
    /// produced an accepted record).
    enum AttemptStep: Sendable {
        case answered(Slot, ChatCompletion)
        case done(Slot, Bool)
        /// The provider could not be reached: the slot goes back, and the attempt does not count.
        case unreached(Slot)
    }

    /// The request of one attempt at one slot, sent when the scheduler grants it.
    func send(_ slot: Slot, variation: Int, request: PBJobRequest, prompts: PromptBuilder, route: ModelRoute, client: any ChatModel,
              requester: Requester, halted: HaltFlag, queue: CommitQueue, reach: Reachability) async throws -> AttemptStep {
        var chat = ChatRequest(model: route.model, system: prompts.system(for: slot), user: prompts.user(for: slot, variation: variation),
                               jsonSchema: prompts.jsonSchema(for: slot), schemaName: request.schema, maxTokens: prompts.maxTokens)
        chat.origin = (Int64(slot.index), Int64(variation))
        return try await attempt(slot, halted: halted, queue: queue, reach: reach) { try await client.complete(chat, for: requester) }
    }

    /// One attempt at a slot: `ask` gets its answer (a request sent now, or one of a batch).
    func attempt(_ slot: Slot, halted: HaltFlag, queue: CommitQueue, reach: Reachability,
                 _ ask: () async throws -> ChatCompletion) async throws -> AttemptStep {
        let completion: ChatCompletion
        do {
            if let fatal = halted.error { throw fatal }
            do {
                completion = try await ask()
            } catch let e as ProviderError where e.kind == .fatal || e.kind == .capped {
                halted.set(e)
                throw e
            }
            reach.answered()
        } catch let e as ProviderError where e.kind == .unreachable {
            // Nothing was answered, so nothing was rejected. The slot waits (without a permit)
            // before it goes back, longer while the provider stays away.
            let wait = reach.failed(e.message)
            try await Task.sleep(for: wait)
            return .unreached(slot)
        } catch let e as ProviderError where e.kind == .unusable {
            queue.add(nil) { $0.generated += 1; $0.reject(.formatInvalid, .unusable, cell: slot.cell) }
            return .done(slot, false)
        } catch let e as ProviderError where e.kind == .exhausted {
            // Transient failures outlasted the retries of this one request: the slot goes back in
            // the queue (the attempt budget bounds how often). Only fatal answers fail the job.
            engine.logger.warning("request gave up, slot requeued", metadata: ["job": "\(jobID)", "error": "\(e.description)"])
            return .done(slot, false)
        }
        return .answered(slot, completion)
    }

    /// Shapes and checks the answer of one attempt; true when it produced an accepted record.
    func check(_ slot: Slot, _ completion: ChatCompletion, request: PBJobRequest, plan: PBPlan, drives: [String: (String, String)],
               gate: QualityGate, queue: CommitQueue) async throws -> AttemptStep {
        let axis = plan.cells[slot.cell].axis
        let shaped = RecordShape.content(request.schema, completion.content, parsed: completion.object, finishReason: completion.finishReason, slot: slot,
                                         axis: axis, drives: drives[axis], resolutionMode: request.conflictConfig.resolutionMode)
        switch shaped {
        case .success(let content):
            queue.add(nil) { $0.add(completion, stage: "generate") }
            let verdict = try await gate.check(content) { answer, stage in queue.add(nil) { $0.add(answer, stage: stage) } }
            switch verdict {
            case .accept(let shipped, let extras):
                var record = Accepted(slot: slot, cell: plan.cells[slot.cell], content: shipped, model: completion.model,
                                      atMillis: Clock.nowMillis())
                record.extras = extras
                queue.add(record) {
                    $0.settle(completion)
                    $0.generated += 1
                    if let overall = extras.overall {
                        $0.judgeSum += overall
                        $0.judgeCount += 1
                    }
                    if extras.invariantCheckFailed { $0.invariantCheckFailures += 1 }
                }
                return .done(slot, true)
            case .reject(let reason, let problem):
                logRejection(reason, problem, completion)
                queue.add(nil) {
                    $0.settle(completion)
                    $0.generated += 1
                    $0.reject(reason, problem, cell: slot.cell)
                }
                return .done(slot, false)
            }
        case .failure(let reason):
            let problem: FormatProblem = completion.finishReason == "length" ? .truncated : .unusable
            logRejection(reason, problem, completion)
            queue.add(nil) {
                $0.settle(completion)
                $0.generated += 1
                $0.reject(reason, problem, cell: slot.cell)
                $0.add(completion, stage: "generate")
            }
            return .done(slot, false)
        }
    }

    /// At debug level, why an answer was rejected and how it began: what to look at when a model
    /// gets few records through.
    func logRejection(_ reason: Rejection, _ problem: FormatProblem?, _ completion: ChatCompletion) {
        guard logger.logLevel <= .debug else { return }
        logger.debug("answer rejected", metadata: [
            "job": "\(jobID)", "reason": "\(reason.rawValue)", "detail": "\(problem?.rawValue ?? "-")",
            "finish": "\(completion.finishReason)", "answer": "\(completion.content.prefix(600))",
        ])
    }

    /// Puts the accepted records of the jobs named in `dedup_against` (of the job's own org) into
    /// the gate's reference check. A job deleted since Generate is skipped, and logged.
    func reference(_ gate: QualityGate, jobs: [String], org: String) throws {
        for id in jobs {
            guard let other = try store.job(id: id, org: org) else {
                logger.warning("a job named in dedup_against no longer exists", metadata: ["job": "\(jobID)", "other": "\(id)"])
                continue
            }
            var seq: UInt64 = 0
            while true {
                let batch = try store.records(jobID: id, after: seq, limit: 1000)
                guard let last = batch.last else { break }
                gate.addReference(batch.compactMap { RecordText.of(other.request.schema, storedJSON: $0.json) })
                seq = last.seq
            }
            logger.info("records of another job are checked against", metadata: ["job": "\(jobID)", "other": "\(id)", "records": "\(other.job.accepted)"])
        }
    }

    /// Puts the accepted records of an earlier run back into the near-duplicate check.
    func restore(_ gate: QualityGate, schema: String, accepted: Int64) throws {
        var seq: UInt64 = 0
        while true {
            let batch = try store.records(jobID: jobID, after: seq, limit: 1000)
            guard let last = batch.last else { break }
            gate.restore(batch.compactMap { RecordText.of(schema, storedJSON: $0.json) })
            seq = last.seq
        }
        logger.info("near-duplicate check restored", metadata: ["job": "\(jobID)", "records": "\(accepted)"])
    }

    func commitLoop(_ queue: CommitQueue, request: PBJobRequest) async throws {
        for await _ in queue.signal {
            let batch = queue.take()
            try await BlockingLane.writes.run { try self.commit(batch, request: request) }
        }
        let batch = queue.take()
        try await BlockingLane.writes.run { try self.commit(batch, request: request) }
    }

    func commit(_ batch: ([Accepted], StatsDelta), request: PBJobRequest) throws {
        let (records, stats) = batch
        guard !records.isEmpty || !stats.isEmpty else { return }
        let jobID = self.jobID
        var built: [[UInt8]] = []
        let spent = stats.stages.values.reduce(0) { $0 + $1.providerCostUsd }
        try store.appendRecords(jobID: jobID, count: records.count, providerCostUSD: spent, build: { i, seq in
            let bytes = RecordAssembler.assemble(records[i], seq: seq, jobID: jobID, request: request, plan: nil)
            built.append(bytes)
            return bytes
        }) { job, _ in
            var bits = SlotBits(Array(job.filled), count: Int(job.plan.count))
            for r in records { bits.insert(r.slot.index) }
            job.filled = Data(bits.bytes)
            job.job.accepted += Int64(records.count)
            job.attempts += stats.generated
            stats.apply(to: &job)
        }
        SynthMetrics.committed(accepted: records.count, rejections: stats.rejections)
        engine.hub.publish(jobID)
    }

    /// Marks the job succeeded, with its manifest and its bill, in one transaction. `short`: why
    /// it ends with fewer records than its count (in its detail).
    func finish(short: String? = nil) async throws {
        try Task.checkCancellation()
        guard let done = try store.job(id: jobID), done.job.status == JobStatus.running.rawValue else { return }
        // Every record is committed by now, so the split files can be hashed before the final write.
        let store = self.store, jobID = self.jobID, engine = self.engine
        let (splits, leaks) = try await BlockingLane.compute.run {
            let splits = try Manifest.splitInfos(job: done, store: store)
            return (splits, try Manifest.crossSplitLeaks(job: done, splits: splits, store: store))
        }
        let pricing = engine.pricing
        let (ended, _) = try await BlockingLane.writes.run {
            try store.endJob(id: jobID, detail: short ?? "", { job in
                job.job.status = JobStatus.succeeded.rawValue
                job.batches.removeAll()
                job.crossSplitLeaks = leaks
                job.job.grade = Manifest.qualityReport(job).overallGrade
                job.finishedAtMs = Clock.nowMillis()
                job.job.finishedAt = Clock.rfc3339(job.finishedAtMs)
                job.job.costUsd = pricing.estimate(job.request, records: job.job.accepted).totalUsd
                if let short, job.job.accepted < job.job.count {
                    job.endDetail.code = "ENDED_SHORT"
                    job.endDetail.message = "\(job.job.accepted) of \(job.job.count) records: \(short)"
                }
            }, manifest: { job in
                Manifest.build(job: job, splits: splits.map(\.info))
            }, bill: engine.bill)
        }
        logger.info("job ended", metadata: ["job": "\(jobID)", "status": "\(ended.job.status)", "accepted": "\(ended.job.accepted)",
                                            "count": "\(ended.job.count)", "rejected": "\(ended.job.rejected)",
                                            "generated": "\(ended.job.generated)", "grade": "\(ended.job.grade)",
                                            "cost_usd": "\(ended.job.costUsd)", "short": "\(short ?? "-")"])
    }
}
