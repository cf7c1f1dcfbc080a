import Foundation
import Logging
import Synchronization
import SynthConcurrency
import SynthLLM
import SynthProto
import SynthSpec
import SynthStore

/// Runs jobs: one runner task per running job, all sharing the HTTP engine and the providers.
public final class Engine: Sendable {
    public let store: Store
    public let config: EngineConfig
    public let pricing: Pricing
    public let hub = JobHub()
    /// The llama.cpp server synthd runs itself, when it does (shown by Health).
    public let localModel: LocalModel?
    let logger: Logger
    let http: HTTPEngine
    /// The models by provider name: an `LLMClient` each, or what the caller gave.
    let clients: [String: any ChatModel]
    /// Decides which request goes next and where, over every job and every provider.
    public let scheduler: RequestScheduler
    /// Each provider's pool in the scheduler.
    let pools: [String: Int]
    private struct State {
        var runners: [String: Task<Void, Never>] = [:]
        /// Jobs waiting for a running place.
        var queue = AdmissionQueue()
        /// Running jobs by org.
        var runningByOrg: [String: Int] = [:]
        var orgOf: [String: String] = [:]
        var stopping = false
        /// Why each paused job is paused.
        var paused: [String: String] = [:]
        /// Jobs waiting for a provider that cannot be reached, and what they say.
        var waiting: [String: String] = [:]
        /// What jobs' provider batches wait for, by job and provider.
        var batchWaits: [String: [String: String]] = [:]
        /// Manifests being made now, by job: a second caller waits for the first one's.
        var making: [String: Task<[UInt8]?, Error>] = [:]
    }

    private let state = Locked(State())
    /// Each org's monthly provider budget, once a job of it has run.
    private let budgets = Locked<[String: SpendLimit]>([:])

    /// `models`, when given, answers for the providers it names instead of HTTP clients built from
    /// the config (the engine's tests give scripted ones).
    public init(store: Store, config: EngineConfig, pricing: Pricing = .documented, localModel: LocalModel? = nil, logger: Logger,
                models: [String: any ChatModel]? = nil) {
        self.localModel = localModel
        self.store = store
        self.config = config
        self.pricing = pricing
        self.logger = logger
        let http = HTTPEngine()
        self.http = http
        var clients: [String: any ChatModel] = [:]
        for (name, provider) in config.providers {
            var p = provider
            p.name = name
            clients[name] = LLMClient(config: p, engine: http, logger: logger)
        }
        for (name, model) in models ?? [:] { clients[name] = model }
        self.clients = clients
        let scheduler = RequestScheduler(orgWeights: config.orgWeights)
        var pools: [String: Int] = [:]
        for (name, model) in clients.sorted(by: { $0.key < $1.key }) {
            pools[name] = scheduler.addPool(name, endpoints: model.endpoints,
                                            policy: (model as? LLMClient)?.ejectionPolicy ?? RequestScheduler.EjectionPolicy())
        }
        self.scheduler = scheduler
        self.pools = pools
    }

    /// A job's requester for a provider's pool.
    func requester(_ provider: String, _ ticket: RequestScheduler.Ticket, halt: HaltFlag? = nil, spend: SpendGuard? = nil) -> Requester? {
        pools[provider].map { Requester(scheduler: scheduler, ticket: ticket, pool: $0, halt: halt, spend: spend) }
    }

    /// What a job is likely to spend with its generator's provider, by the config's prices: one
    /// generation request at most (its first slot's prompt and max_tokens of answer), and count
    /// of them; at the batch price for delivery "batch".
    public func providerEstimate(_ request: PBJobRequest, plan: PBPlan) -> PBProviderCostEstimate {
        var out = PBProviderCostEstimate()
        out.delivery = request.delivery == "batch" ? "batch" : "online"
        out.capUsd = request.hasMaxProviderCostUsd ? request.maxProviderCostUsd.value : 0
        guard let route = routes(for: request).generator, let client = clients[route.provider] as? LLMClient else { return out }
        out.priceFactor = out.delivery == "batch" ? client.config.batchPriceFactor : 1
        out.priced = client.price(of: route.model) != nil
        let prompts = PromptBuilder(request: request, plan: plan)
        guard let slot = Slot.all(plan).first else { return out }
        let chat = ChatRequest(model: route.model, system: prompts.system(for: slot), user: prompts.user(for: slot, variation: 1),
                               jsonSchema: prompts.jsonSchema(for: slot), schemaName: request.schema, maxTokens: prompts.maxTokens)
        out.perRequestUsd = client.worstCost(chat, factor: out.priceFactor)
        out.allFirstTryUsd = out.perRequestUsd * Double(plan.count)
        return out
    }

    /// The spend limits a job's provider requests count against: its `max_provider_cost_usd`
    /// and its org's monthly provider budget; nil when it has neither.
    func spendGuard(for job: PBStoredJob) -> SpendGuard? {
        var limits: [SpendLimit] = []
        if job.request.hasMaxProviderCostUsd {
            limits.append(SpendLimit(name: "the job's max_provider_cost_usd", dollars: job.request.maxProviderCostUsd.value,
                                     spent: job.job.usage.providerCostUsd))
        }
        if let budget = orgBudget(job.org) { limits.append(budget) }
        return limits.isEmpty ? nil : SpendGuard(limits)
    }

    /// An org's monthly provider budget, shared by all its jobs: what the store says it spent this
    /// month, then what its requests spend.
    func orgBudget(_ org: String) -> SpendLimit? {
        guard let dollars = config.orgProviderBudgets[org] ?? config.orgProviderBudgets["*"] else { return nil }
        if let known = budgets.withLock({ $0[org] }) { return known }
        let month = Clock.month(Clock.nowMillis())
        let spent = (try? store.usage(org: org, month: month))??.providerCostUsd ?? 0
        let limit = SpendLimit(name: "org \(org)'s monthly provider budget", dollars: dollars, spent: spent,
                               period: { Clock.month(Clock.nowMillis()) })
        return budgets.withLock { known in
            if let first = known[org] { return first }
            known[org] = limit
            return limit
        }
    }

    func client(_ provider: String) -> (any ChatModel)? { clients[provider] }

    /// The model that answers for a provider (to ask whether it can be reached).
    public func model(_ provider: String) -> (any ChatModel)? { clients[provider] }

    /// Requests on the wire to each HTTP provider, by name (the metrics' gauge).
    public var providerRequestsInFlight: [(provider: String, requests: Int)] {
        clients.sorted { $0.key < $1.key }.compactMap { name, model in
            (model as? LLMClient).map { (name, $0.requestsInFlight) }
        }
    }

    /// The provider and model that answer for a request.
    public func routes(for request: PBJobRequest) -> (generator: ModelRoute?, critic: ModelRoute) {
        let explicit = request.hasModels && request.models.hasGenerator
            ? ModelRoute(provider: request.models.generator.provider, model: request.models.generator.model) : nil
        var critic = config.critic
        if request.hasModels, request.models.hasCritic, !request.models.critic.model.isEmpty {
            critic = ModelRoute(provider: request.models.critic.provider.isEmpty ? config.critic.provider : request.models.critic.provider,
                                model: request.models.critic.model)
        }
        return (config.generatorRoute(tier: request.model, explicit: explicit), critic)
    }

    /// Starts (or resumes) the runner of a stored job, or queues it while `max_running_jobs` run.
    public func start(jobID: String) {
        guard let job = try? store.job(id: jobID) else {
            logger.error("a job to start could not be read", metadata: ["job": "\(jobID)"])
            return
        }
        start(jobID: jobID, org: job.org)
    }

    func start(jobID: String, org: String) {
        state.withLock { state in
            guard !state.stopping, state.runners[jobID] == nil, !state.queue.contains(jobID) else { return }
            state.orgOf[jobID] = org
            if state.runners.count < config.maxRunningJobs {
                launch(jobID, org: org, &state)
            } else {
                state.queue.append(jobID, org: org)
            }
        }
        hub.publish(jobID)
    }

    /// Starts a runner (under the state's lock).
    private func launch(_ jobID: String, org: String, _ state: inout State) {
        let runner = JobRunner(jobID: jobID, engine: self)
        state.runningByOrg[org, default: 0] += 1
        state.runners[jobID] = Task {
            await runner.run()
            self.ended(jobID)
        }
    }

    /// A runner has ended: its place goes to the next queued job.
    private func ended(_ jobID: String) {
        let started: [String] = state.withLock { s in
            guard s.runners.removeValue(forKey: jobID) != nil else { return [] }
            let org = s.orgOf.removeValue(forKey: jobID) ?? ""
            s.runningByOrg[org, default: 1] -= 1
            if s.runningByOrg[org] == 0 { s.runningByOrg.removeValue(forKey: org) }
            var out: [String] = []
            while !s.stopping, s.runners.count < config.maxRunningJobs,
                  let (next, nextOrg) = s.queue.popNext(running: s.runningByOrg, weights: config.orgWeights) {
                launch(next, org: nextOrg, &s)
                out.append(next)
            }
            return out
        }
        // Queued watchers hear their place changed.
        for id in started { hub.publish(id) }
        for id in state.withLock({ $0.queue.ids }) { hub.publish(id) }
    }

    /// A queued job's place (1 for the next to start; nil past the first
    /// `AdmissionQueue.placesShown`), and how many are queued.
    public func queuePlace(jobID: String) -> (place: Int?, queued: Int)? {
        state.withLock { s in
            guard s.queue.contains(jobID) else { return nil }
            return (s.queue.place(of: jobID, running: s.runningByOrg, weights: config.orgWeights), s.queue.count)
        }
    }

    /// Resumes every job that was queued or running when the last process stopped: the running
    /// ones first, then the queued in the order they came.
    public func resumeUnfinished() throws -> Int {
        let jobs = try store.unfinishedJobs().sorted { a, b in
            let ar = a.job.status == JobStatus.running.rawValue, br = b.job.status == JobStatus.running.rawValue
            return ar != br ? ar : a.createdAtMs < b.createdAtMs
        }
        for job in jobs { start(jobID: job.job.jobID, org: job.org) }
        return jobs.count
    }

    /// Marks a job cancelled and stops its runner. What was accepted stays, is billed in the
    /// transaction that ends the job, and gets its manifest and splits as a finished job does.
    public func cancel(jobID: String) throws -> PBStoredJob {
        let (job, ended) = try store.endJob(id: jobID, { job in
            job.job.status = JobStatus.cancelled.rawValue
            job.batches.removeAll()
            job.finishedAtMs = Clock.nowMillis()
            job.job.finishedAt = Clock.rfc3339(job.finishedAtMs)
            job.job.costUsd = pricing.estimate(job.request, records: job.job.accepted).totalUsd
            job.endDetail.code = "CANCELLED"
            job.endDetail.message = "cancelled with \(job.job.accepted) of \(job.job.count) records accepted; those are delivered and billed"
        }, bill: bill)
        let (task, behind): (Task<Void, Never>?, [String]) = state.withLock { s in
            var behind: [String] = []
            if s.queue.remove(jobID) {
                s.orgOf.removeValue(forKey: jobID)
                behind = s.queue.ids
            }
            return (s.runners[jobID], behind)
        }
        task?.cancel()
        hub.publish(jobID)
        // The jobs still queued have new places.
        for id in behind { hub.publish(id) }
        if ended {
            logger.info("job cancelled", metadata: ["job": "\(jobID)", "accepted": "\(job.job.accepted)", "count": "\(job.job.count)"])
            // Its manifest and split hashes come once the runner has let go (off the call's path).
            if job.job.accepted > 0 {
                Task {
                    await task?.value
                    do {
                        _ = try await self.manifest(jobID: jobID)
                    } catch {
                        self.logger.warning("no manifest for a cancelled job yet", metadata: ["job": "\(jobID)", "error": "\(error)"])
                    }
                }
            }
        }
        return job
    }

    /// What a job's accepted records cost its org.
    func bill(_ job: PBStoredJob) -> Store.Bill {
        guard job.job.accepted > 0 else { return (0, 0, 0) }
        let cost = pricing.estimate(job.request, records: job.job.accepted)
        return (job.job.accepted, cost.quotaRecords, Int64((cost.totalUsd * 1_000_000).rounded()))
    }

    /// The manifest of an ended job; made now (split hashes over its accepted records, on the
    /// compute lane) when the job ended without one, as a cancelled job does. Nil while the job
    /// runs, or when it ended with no records.
    public func manifest(jobID: String) async throws -> [UInt8]? {
        if let bytes = try store.manifest(jobID: jobID) { return bytes }
        guard let job = try store.job(id: jobID), JobStatus(rawValue: job.job.status)?.isTerminal == true, job.job.accepted > 0 else {
            return nil
        }
        // One reading of the records per job, however many ask at once.
        let store = self.store
        let task: Task<[UInt8]?, Error> = state.withLock { s in
            if let running = s.making[jobID] { return running }
            let t = Task {
                defer { self.state.withLock { _ = $0.making.removeValue(forKey: jobID) } }
                let (splits, leaks) = try await BlockingLane.compute.run {
                    let splits = try Manifest.splitInfos(job: job, store: store)
                    return (splits, try Manifest.crossSplitLeaks(job: job, splits: splits, store: store))
                }
                return try await BlockingLane.writes.run {
                    try store.putManifest(jobID: jobID, { job in
                        job.crossSplitLeaks = leaks
                        job.job.grade = Manifest.qualityReport(job).overallGrade
                    }, manifest: { job in Manifest.build(job: job, splits: splits.map(\.info)) })
                }
            }
            s.making[jobID] = t
            return t
        }
        return try await task.value
    }

    public var runningJobs: Int { state.withLock { $0.runners.count } }

    /// Jobs waiting for a running place.
    public var queuedJobs: Int { state.withLock { $0.queue.count } }

    /// Why a running job is paused (its store is full), or nil when it is not.
    public func pauseReason(jobID: String) -> String? { state.withLock { $0.paused[jobID] } }

    /// The jobs paused now.
    public var pausedJobs: Int { state.withLock { $0.paused.count } }

    /// Why a running job is waiting for its provider (it cannot be reached), or nil.
    public func waitingReason(jobID: String) -> String? { state.withLock { $0.waiting[jobID] } }

    /// Notes (or clears, with nil) that a job waits for its provider; watchers hear of a change.
    func setWaiting(_ jobID: String, _ reason: String?) {
        let changed = state.withLock { s -> Bool in
            let before = s.waiting[jobID]
            s.waiting[jobID] = reason
            return (before == nil) != (reason == nil)
        }
        if changed { hub.publish(jobID) }
    }

    /// Why a running job waits for provider batches, or nil.
    public func batchWaitReason(jobID: String) -> String? {
        state.withLock { $0.batchWaits[jobID].map { $0.sorted { $0.key < $1.key }.map(\.value).joined(separator: "; ") } }
    }

    /// Notes (or clears, with nil) what a job's batches to a provider wait for; watchers hear.
    func setBatchWait(_ jobID: String, provider: String, _ reason: String?) {
        let changed = state.withLock { s -> Bool in
            let before = s.batchWaits[jobID]?[provider]
            if let reason { s.batchWaits[jobID, default: [:]][provider] = reason } else {
                s.batchWaits[jobID]?.removeValue(forKey: provider)
                if s.batchWaits[jobID]?.isEmpty == true { s.batchWaits.removeValue(forKey: jobID) }
            }
            return before != reason
        }
        if changed { hub.publish(jobID) }
    }

    func setPaused(_ jobID: String, _ reason: String?) {
        state.withLock { $0.paused[jobID] = reason }
        hub.publish(jobID)
    }

    /// How often a paused job asks the store whether it has room again.
    var spaceRecheck: Duration { .milliseconds(config.spaceRecheckMilliseconds) }

    /// Stops every runner; their jobs stay `running` in the store and resume at the next start.
    public func shutdown() async {
        let tasks: [Task<Void, Never>] = state.withLock {
            $0.stopping = true
            for id in $0.queue.ids { $0.orgOf.removeValue(forKey: id) }
            $0.queue.removeAll()
            return Array($0.runners.values)
        }
        for t in tasks { t.cancel() }
        for t in tasks { await t.value }
        http.shutdown()
    }

    var isStopping: Bool { state.withLock { $0.stopping } }
}
