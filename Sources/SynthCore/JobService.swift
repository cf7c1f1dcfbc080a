import Crypto
import Foundation
import Logging
import SwiftProtobuf
import SynthAPI
import SynthConcurrency
import SynthLLM
import SynthEngine
import SynthProto
import SynthSpec
import SynthStore

/// The application: every operation the protocol offers, for a typed caller, with the policy that
/// goes with it (validation, the spell check, planning, admission and billing, job construction).
/// It knows nothing of frames or sockets: an edge decodes a call, authenticates it here, calls the
/// operation and encodes what it returns, and a second edge does the same with no behaviour of its own.
public final class JobService: Sendable {
    let store: Store
    let engine: Engine
    let validator: Validator
    let logger: Logger

    public init(store: Store, engine: Engine, validator: Validator, logger: Logger) {
        self.store = store
        self.engine = engine
        self.validator = validator
        self.logger = logger
    }

    /// The caller a key belongs to; UNAUTHENTICATED for a missing, malformed, unknown, revoked or
    /// expired key.
    public func authenticate(_ key: String) async throws -> Caller {
        guard !key.isEmpty else { throw RPCError.unauthenticated }
        guard key.hasPrefix("sk_"), key.count <= 200, key.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else {
            throw RPCError(.unauthenticated, "malformed API key: keys look like sk_live_...")
        }
        guard let info = try store.authenticate(key: key) else {
            throw RPCError(.unauthenticated, "invalid or revoked API key")
        }
        if Store.isExpired(info) {
            throw RPCError(.unauthenticated, "this API key expired at \(Clock.rfc3339(info.expiresAtMs)); make a new one", errorCode: "KEY_EXPIRED")
        }
        if Store.useIsDue(info) {
            let store = self.store
            try await BlockingLane.writes.run { try store.recordUse(key: key) }
        }
        // Any scope but full ("" on keys made before scopes) reads only: a scope this version does
        // not know never grants more.
        return Caller(org: info.org, keyID: info.keyID, readOnly: !(info.scope.isEmpty || info.scope == "full"))
    }

    /// PERMISSION_DENIED when the caller's key may not call a method of `scope`: a read-only key
    /// calls the read methods only.
    public func authorize(_ caller: Caller, method: String, scope: MethodScope) throws {
        guard caller.readOnly, scope != .read, scope != .open else { return }
        let reads = Methods.all.filter { $0.scope == .read }.map(\.name).joined(separator: ", ")
        throw RPCError(.permissionDenied, "this API key is read-only (it may call \(reads)); \(method) needs a full key",
                       errorCode: "KEY_SCOPE")
    }

    /// Throws UNAUTHENTICATED once the caller's key has been revoked or has expired (a long
    /// stream asks now and then).
    public func ensureKeyActive(_ caller: Caller) throws {
        guard try store.isActive(org: caller.org, keyID: caller.keyID) else {
            throw RPCError(.unauthenticated, "the API key of this call was revoked or has expired")
        }
    }

    // MARK: jobs

    public func job(_ id: String, _ caller: Caller) throws -> PBStoredJob {
        guard !id.isEmpty else { throw RPCError.invalid("job_id is required") }
        // No job id is this long (and LMDB keys are at most 511 bytes).
        guard id.utf8.count <= 128 else { throw RPCError.notFound("job \(String(id.prefix(64)))") }
        guard var job = try store.job(id: id, org: caller.org) else { throw RPCError.notFound("job \(String(id.prefix(64)))") }
        job.job = present(job)
        return job
    }

    /// The job as clients see it: its state as the enum as well as the string, and its detail
    /// (a running job paused by a full store, a failed job's reason).
    public func present(_ job: inout PBJob) {
        let status = JobStatus(rawValue: job.status)
        job.state = status?.state ?? .unspecified
        job.clearDetail()
        if status == .running, let why = engine.pauseReason(jobID: job.jobID) {
            job.detail.code = "PAUSED_STORAGE_FULL"
            job.detail.message = why
        } else if status == .running, let why = engine.waitingReason(jobID: job.jobID) {
            job.detail.code = "WAITING_FOR_PROVIDER"
            job.detail.message = why
        } else if status == .running, let why = engine.batchWaitReason(jobID: job.jobID) {
            job.detail.code = "WAITING_FOR_BATCH"
            job.detail.message = why
        } else if status == .queued, let (place, queued) = engine.queuePlace(jobID: job.jobID) {
            job.detail.code = "QUEUED"
            let where_ = place.map { "place \($0) of \(queued)" } ?? "more than \(AdmissionQueue.placesShown) places back of \(queued)"
            job.detail.message = "queued: \(where_) waiting to start; \(engine.runningJobs) jobs are running, "
                + "the most this server runs at once (max_running_jobs \(engine.config.maxRunningJobs))"
        } else if status == .failed, !job.error.isEmpty {
            job.detail.code = "FAILED"
            job.detail.message = job.error
        }
    }

    /// The same for a stored job, whose end may have a detail of its own (ENDED_SHORT, CANCELLED).
    public func present(_ stored: PBStoredJob) -> PBJob {
        var job = stored.job
        present(&job)
        if stored.hasEndDetail, !stored.endDetail.code.isEmpty {
            job.detail = stored.endDetail
        }
        return job
    }

    /// The validated, effective request and its plan.
    /// `validated` says the caller has validated `request` already (Generate validates it with
    /// its idempotency key, so that every error comes at once).
    func prepare(_ request: PBJobRequest, domainConfirmed: Bool, validated: Bool = false) async throws -> (PBJobRequest, PBPlan) {
        if !validated { try validator.validate(request) }
        if !domainConfirmed {
            let suspects = await DomainSpellCheck.shared.suspectsOffPool(in: request.domain)
            if !suspects.isEmpty {
                let list = suspects.map { "\($0.word) (did you mean \($0.suggestions.joined(separator: ", "))?)" }.joined(separator: "; ")
                // The whole domain with each suspect word replaced by its closest suggestion.
                var corrected = request.domain
                for s in suspects {
                    if let best = s.suggestions.first { corrected = corrected.replacingOccurrences(of: s.word, with: best) }
                }
                throw SpecError(.domainSpelling, "possible typo in domain: \(list). Did you mean \"\(corrected)\"? Correct it, or confirm "
                                + "the spelling with domain_confirmed (synth generate --confirm-domain)", suggestions: suspects)
            }
        }
        let effective = Planner.effective(request, catalog: engine.config.catalog)
        var plan = Planner.plan(effective)
        let routes = engine.routes(for: effective)
        // The validator has checked the providers a request names; a tier's own route names one
        // of the config's providers too (the config is checked at start).
        guard let generator = routes.generator, engine.config.providers[generator.provider] != nil else {
            throw RPCError(.failedPrecondition, "no provider is configured for model \(effective.model)")
        }
        if effective.delivery == "batch", !(engine.model(generator.provider) is LLMClient) {
            throw RPCError(.failedPrecondition, "delivery batch needs a provider with a batch API, and \(generator.provider) has none; "
                           + "leave delivery out (or online) for it")
        }
        plan.generator.provider = generator.provider
        plan.generator.model = generator.model
        plan.critic.provider = routes.critic.provider
        plan.critic.model = routes.critic.model
        return (effective, plan)
    }

    /// Whether the org's plan can take one more job of `request`: checked with the job's insert,
    /// in one transaction. Unfinished jobs count at their full estimate until they are billed.
    func admission(_ request: PBJobRequest, tier: String) -> @Sendable (PBStoredOrg?, PBStoredUsage, [PBStoredJob]) throws -> Void {
        let pricing = engine.pricing
        return { org, month, unfinished in
            guard let org else { return }
            let need = pricing.estimate(request)
            func refuse(_ what: String) -> RPCError {
                RPCError(.resourceExhausted, what, errorCode: "INSUFFICIENT_BALANCE")
            }
            switch org.plan {
            case "free":
                let limit = org.monthlyQuota > 0 ? org.monthlyQuota : 100
                let used = month.records + unfinished.reduce(0) { $0 + $1.job.count }
                let left = max(0, limit - used)
                if request.count > left {
                    throw refuse("this job needs \(request.count) records; the free plan has \(limit) a month and \(left) are left this month")
                }
            case "subscription":
                if tier == "deep" {
                    throw RPCError(.permissionDenied, "the deep tier is pay-as-you-go only; subscription plans cannot use it", errorCode: "PLAN_NOT_ALLOWED")
                }
                let used = month.quotaRecords + unfinished.reduce(0) { $0 + pricing.estimate($1.request).quotaRecords }
                let left = max(0, Double(org.monthlyQuota) - used)
                if need.quotaRecords > left + 1e-9 {
                    throw refuse("this job needs \(Self.figure(need.quotaRecords)) quota records (verified counts 1.5 each); "
                                 + "\(Self.figure(left)) of the monthly \(org.monthlyQuota) are left")
                }
            default:
                let reserved = unfinished.reduce(0) { $0 + Int64((pricing.estimate($1.request).totalUsd * 1_000_000).rounded(.up)) }
                let left = org.balanceMicroUsd - reserved
                let needed = Int64((need.totalUsd * 1_000_000).rounded(.up))
                if needed > left {
                    throw refuse(String(format: "this job costs up to $%.4f; the balance has $%.4f left after the jobs still running", Double(needed) / 1e6,
                                        Double(max(0, left)) / 1e6))
                }
            }
        }
    }

    /// The jobs a request names in `advanced.dedup_against`: each a job of the caller's org that
    /// has ended, together holding at most `engine.max_count` records: the check holds them all in
    /// memory while the job runs (about 5 bytes per character of text, twice: whole records and
    /// prompts), so they cost it no more than its own records can.
    func checkReferences(_ r: PBJobRequest, _ caller: Caller) throws {
        guard r.hasAdvanced, !r.advanced.dedupAgainst.isEmpty else { return }
        var total: Int64 = 0
        for (i, id) in r.advanced.dedupAgainst.enumerated() {
            guard let other = try store.job(id: id, org: caller.org) else {
                throw RPCError(.notFound, "advanced.dedup_against[\(i)]: job \(id) not found")
            }
            guard JobStatus(rawValue: other.job.status)?.isTerminal == true else {
                throw RPCError(.failedPrecondition, "advanced.dedup_against[\(i)]: job \(id) is \(other.job.status); name a job once it has "
                               + "ended, so that the records checked against are all of its records", errorCode: "JOB_NOT_ENDED")
            }
            total += other.job.accepted
        }
        if total > Int64(engine.config.maxCount) {
            throw RPCError(.failedPrecondition, "advanced.dedup_against: the jobs named hold \(total) records; at most "
                           + "\(engine.config.maxCount) together (the server's engine.max_count)")
        }
    }

    static func figure(_ v: Double) -> String { v == v.rounded() ? String(Int64(v)) : String(format: "%.1f", v) }

    /// The request of a Generate or Plan: `request`, or `request_json` read with every problem of
    /// its shape kept for the validator's one answer.
    func read(_ request: PBJobRequest, json: String, given: Bool) throws -> ParsedRequest {
        if json.isEmpty { return ParsedRequest(request) }
        if given {
            throw RPCError.invalid("set request or request_json, not both")
        }
        return try RequestJSON.read(Array(json.utf8))
    }

    public func generate(_ req: PBGenerateRequest, _ caller: Caller) async throws -> PBGenerateResponse {
        let parsed = try read(req.request, json: req.requestJson, given: req.hasRequest)
        try validator.validate(parsed, idempotencyKey: req.idempotencyKey)
        var req = req
        req.request = parsed.request
        req.requestJson = ""
        if let full = store.spaceProblem {
            throw RPCError(.resourceExhausted, "new jobs are refused while the server's storage is full (\(full)); running jobs wait for room",
                           errorCode: "STORAGE_FULL")
        }
        let (effective, plan) = try await prepare(req.request, domainConfirmed: req.domainConfirmed, validated: true)
        try checkReferences(effective, caller)
        // A cap is held in dollars at the model's price: without one it could not be held (Plan
        // shows this as `cost.provider.priced` false).
        if effective.hasMaxProviderCostUsd, let client = engine.model(plan.generator.provider) as? LLMClient,
           client.price(of: plan.generator.model) == nil {
            throw RPCError(.failedPrecondition, "max_provider_cost_usd needs the price of model \(plan.generator.model): set it in provider "
                           + "\(plan.generator.provider)'s prices_per_million in the server's config")
        }
        // Deterministic ordering: the same body must always hash the same, whatever its map order.
        var options = BinaryEncodingOptions()
        options.useDeterministicOrdering = true
        let body: [UInt8] = try req.request.serializedBytes(options: options)
        let digest = Array(SHA256.hash(data: body))
        var job = PBStoredJob()
        job.org = caller.org
        job.request = effective
        job.plan = plan
        job.seed = UInt64.random(in: 1...UInt64.max)
        job.idempotencyKey = req.idempotencyKey
        job.requestDigest = Data(digest)
        job.createdAtMs = Clock.nowMillis()
        job.job.jobID = Identifiers.newJobID()
        job.job.status = JobStatus.queued.rawValue
        job.job.schema = effective.schema
        job.job.domain = effective.domain
        job.job.tier = plan.tier
        job.job.count = effective.count
        job.job.createdAt = Clock.rfc3339(job.createdAtMs)
        let stored: PBStoredJob
        do {
            let store = self.store, admit = admission(effective, tier: plan.tier), job = job
            stored = try await BlockingLane.writes.run { try store.insertJob(job, admit: admit) }
        } catch let e as StoreError where e.code == .conflict {
            throw RPCError(.failedPrecondition, e.message, errorCode: "IDEMPOTENCY_CONFLICT")
        }
        if stored.job.jobID != job.job.jobID {
            // A repeat of an earlier Generate with the same idempotency key and body.
            var out = PBGenerateResponse()
            out.job = stored.job
            present(&out.job)
            return out
        }
        logger.info("job created", metadata: ["job": "\(job.job.jobID)", "org": "\(caller.org)", "count": "\(effective.count)"])
        engine.start(jobID: job.job.jobID)
        var out = PBGenerateResponse()
        out.job = job.job
        present(&out.job)
        return out
    }

    public func plan(_ req: PBPlanRequest, _ caller: Caller) async throws -> PBPlanResponse {
        let parsed = try read(req.request, json: req.requestJson, given: req.hasRequest)
        try validator.validate(parsed)
        let (effective, plan) = try await prepare(parsed.request, domainConfirmed: req.domainConfirmed, validated: true)
        try checkReferences(effective, caller)
        var out = PBPlanResponse()
        out.plan = plan
        out.cost = engine.pricing.estimate(effective)
        out.cost.provider = engine.providerEstimate(effective, plan: plan)
        out.effectiveRequest = effective
        return out
    }

    public func getJob(_ req: PBGetJobRequest, _ caller: Caller) throws -> PBGetJobResponse {
        var out = PBGetJobResponse()
        out.job = try job(req.jobID, caller).job
        return out
    }

    public func listJobs(_ req: PBListJobsRequest, _ caller: Caller) throws -> PBListJobsResponse {
        if !req.status.isEmpty, JobStatus(rawValue: req.status) == nil {
            throw RPCError.invalid("status must be one of \(JobStatus.allCases.map(\.rawValue).joined(separator: ", ")), got \(req.status.prefix(32))")
        }
        guard req.limit >= 0, req.limit <= 500 else { throw RPCError.invalid("limit must be between 1 and 500 (0 means 50), got \(req.limit)") }
        if !req.pageToken.isEmpty, !Store.isPageToken(req.pageToken, org: caller.org) {
            throw RPCError.invalid("page_token is not a token this server gave for this list; start again without one")
        }
        let page = try store.listJobs(org: caller.org, status: req.status.isEmpty ? nil : req.status,
                                      limit: req.limit == 0 ? 50 : Int(req.limit), pageToken: req.pageToken)
        var out = PBListJobsResponse()
        out.jobs = page.jobs.map(present)
        out.nextPageToken = page.next
        return out
    }

    public func cancelJob(_ req: PBCancelJobRequest, _ caller: Caller) async throws -> PBCancelJobResponse {
        let current = try job(req.jobID, caller)
        if let status = JobStatus(rawValue: current.job.status), status.isTerminal {
            throw RPCError(.failedPrecondition, "job \(req.jobID) already \(status.rawValue)")
        }
        var out = PBCancelJobResponse()
        let engine = self.engine
        out.job = present(try await BlockingLane.writes.run { try engine.cancel(jobID: req.jobID) })
        return out
    }

    /// Removes an ended job and everything of it (records, events, manifest, exports); a queued or
    /// running job must be cancelled first. What the org was billed stays in its usage.
    public func deleteJob(_ req: PBDeleteJobRequest, _ caller: Caller) async throws -> PBDeleteJobResponse {
        let current = try job(req.jobID, caller)
        if let status = JobStatus(rawValue: current.job.status), !status.isTerminal {
            throw RPCError(.failedPrecondition, "job \(req.jobID) is \(status.rawValue); cancel it first, then delete it", errorCode: "JOB_NOT_ENDED")
        }
        let store = self.store, id = req.jobID, org = caller.org
        let deleted: Store.Deleted
        do {
            deleted = try await BlockingLane.writes.run { try store.deleteJob(id: id, org: org) }
        } catch let e as StoreError where e.code == .notFound {
            throw RPCError.notFound("job \(String(id.prefix(64)))")
        } catch let e as StoreError where e.code == .conflict {
            throw RPCError(.failedPrecondition, e.message, errorCode: "JOB_NOT_ENDED")
        }
        logger.info("job deleted", metadata: ["job": "\(id)", "org": "\(org)", "records": "\(deleted.records)",
                                             "export_bytes": "\(deleted.exportBytes)"])
        var out = PBDeleteJobResponse()
        out.jobID = id
        out.recordsDeleted = deleted.records
        out.exportBytesDeleted = deleted.exportBytes
        return out
    }

    /// The caller's org: this month's billed records and dollars, and what its plan has left
    /// after the unfinished jobs (held at their full estimates, as admission holds them).
    public func usage(_ req: PBGetUsageRequest, _ caller: Caller) throws -> PBGetUsageResponse {
        let now = Clock.nowMillis()
        let month = Clock.month(now)
        guard let org = try store.org(named: caller.org) else { throw RPCError.notFound("org \(caller.org)") }
        let billed = try store.usage(org: caller.org, month: month) ?? PBStoredUsage()
        let unfinished = try store.unfinishedJobs(org: caller.org)
        let pricing = engine.pricing
        var out = PBGetUsageResponse()
        out.org = caller.org
        out.plan = org.plan
        out.month = month
        out.records = billed.records
        out.jobs = billed.jobs
        out.costUsd = Double(billed.costMicroUsd) / 1e6
        out.unfinishedJobs = Int64(unfinished.count)
        out.providerCostUsd = billed.providerCostUsd
        out.providerBudgetUsd = engine.config.orgProviderBudgets[caller.org] ?? engine.config.orgProviderBudgets["*"] ?? 0
        switch org.plan {
        case "free":
            let limit = org.monthlyQuota > 0 ? org.monthlyQuota : 100
            out.quota = Double(limit)
            out.quotaUsed = Double(billed.records)
            out.quotaLeft = Double(max(0, limit - billed.records - unfinished.reduce(0) { $0 + $1.job.count }))
        case "subscription":
            out.quota = Double(org.monthlyQuota)
            out.quotaUsed = billed.quotaRecords
            out.quotaLeft = max(0, Double(org.monthlyQuota) - billed.quotaRecords - unfinished.reduce(0) { $0 + pricing.estimate($1.request).quotaRecords })
        default:
            out.balanceUsd = Double(org.balanceMicroUsd) / 1e6
            let reserved = unfinished.reduce(0) { $0 + Int64((pricing.estimate($1.request).totalUsd * 1_000_000).rounded(.up)) }
            out.balanceLeftUsd = Double(max(0, org.balanceMicroUsd - reserved)) / 1e6
        }
        return out
    }

    public func qualityReport(_ req: PBGetQualityReportRequest, _ caller: Caller) throws -> PBGetQualityReportResponse {
        let job = try job(req.jobID, caller)
        var out = PBGetQualityReportResponse()
        out.report = Manifest.qualityReport(job)
        out.json = Data(Manifest.reportJSON(out.report).serialized())
        return out
    }

    public func manifest(_ req: PBGetManifestRequest, _ caller: Caller) async throws -> PBGetManifestResponse {
        let job = try job(req.jobID, caller)
        guard let bytes = try await engine.manifest(jobID: job.job.jobID) else {
            throw RPCError(.failedPrecondition, Self.hasEnded(job.job)
                ? "job \(req.jobID) ended \(job.job.status) with no records; there is no manifest"
                : "job \(req.jobID) is \(job.job.status); its manifest is written when it ends")
        }
        var out = PBGetManifestResponse()
        out.json = Data(bytes)
        return out
    }

    // MARK: public

    public func pricing() -> PBGetPricingResponse {
        var models: [Tier: (provider: String, model: String)] = [:]
        for tier in Tier.allCases {
            if let r = engine.config.tiers[tier.rawValue] { models[tier] = (r.provider, r.model) }
        }
        return engine.pricing.table(models: models)
    }

    public func health() -> PBHealthResponse {
        var out = PBHealthResponse()
        out.version = SynthVersion.current
        var storeHealth = PBComponentHealth()
        storeHealth.name = "store"
        do {
            _ = try store.read { _ in true }
            if let full = store.spaceProblem {
                storeHealth.status = "degraded"
                storeHealth.detail = "writes fail: \(full); \(engine.pausedJobs) jobs paused until there is room"
            } else {
                storeHealth.status = "ok"
            }
        } catch {
            storeHealth.status = "failing"
            storeHealth.detail = "the store cannot be read"
        }
        var engineHealth = PBComponentHealth()
        engineHealth.name = "engine"
        engineHealth.status = "ok"
        engineHealth.detail = "\(engine.runningJobs) running jobs, \(engine.queuedJobs) queued (max_running_jobs \(engine.config.maxRunningJobs))"
        out.components = [storeHealth, engineHealth]
        if let local = engine.localModel {
            var c = PBComponentHealth()
            c.name = "local_model"
            (c.status, c.detail) = local.health()
            out.components.append(c)
        }
        for (tier, route) in engine.config.tiers.sorted(by: { $0.key < $1.key }) {
            var c = PBComponentHealth()
            c.name = "tier:\(tier)"
            if let p = engine.config.providers[route.provider] {
                c.status = "ok"
                // The base URL is left out: Health is public, and a URL can carry credentials.
                c.detail = "\(route.provider) (\(p.kind.rawValue)) model \(route.model)"
                if let down = engine.model(route.provider)?.unreachable {
                    c.status = "unreachable"
                    c.detail += "; no connection for \(down.seconds) s: \(down.error)"
                }
            } else {
                c.status = "unconfigured"
                c.detail = "provider \(route.provider) is not configured"
            }
            out.components.append(c)
        }
        // Each server of each provider (no URL: host and port only).
        for e in engine.scheduler.endpointStatus() {
            var c = PBComponentHealth()
            c.name = "endpoint:\(e.pool)/\(e.label)"
            c.status = e.state.rawValue
            var detail = "\(e.outstanding) of \(e.capacity) in flight; \(e.answered) answered, \(e.failed) failed"
            if e.ejections > 0 { detail += "; taken out \(e.ejections) times" }
            if e.state == .ejected { detail += "; probed again in \(Int(e.backInSeconds.rounded(.up))) s" }
            if e.state != .inService, !e.lastError.isEmpty { detail += "; last error: \(e.lastError)" }
            c.detail = detail
            out.components.append(c)
        }
        out.status = out.components.allSatisfy { $0.status == "ok" } ? "ok" : "degraded"
        return out
    }

    // MARK: keys

    public static func info(_ k: PBStoredKey) -> PBApiKeyInfo {
        var i = PBApiKeyInfo()
        i.keyID = k.keyID
        i.prefix = k.prefix
        i.name = k.name
        i.createdAt = Clock.rfc3339(k.createdAtMs)
        i.lastUsedAt = Clock.rfc3339(k.lastUsedMs)
        i.revoked = k.revoked
        i.revokedAt = Clock.rfc3339(k.revokedAtMs)
        i.scope = k.scope.isEmpty ? "full" : k.scope
        i.expiresAt = Clock.rfc3339(k.expiresAtMs)
        i.expired = Store.isExpired(k)
        return i
    }

    /// The longest a key may be made to last: ten years.
    public static let maxKeyLifetimeSeconds: Int64 = 10 * 366 * 86_400

    public func createKey(_ req: PBCreateApiKeyRequest, _ caller: Caller) async throws -> PBCreateApiKeyResponse {
        var problems: [PBFieldError] = []
        if req.name.count > 100 { problems.append(PBFieldError("name", "at most 100 characters", "\(req.name.count) characters")) }
        if !["", "full", "read"].contains(req.scope) { problems.append(PBFieldError("scope", "must be full or read", String(req.scope.prefix(80)))) }
        if !(0...Self.maxKeyLifetimeSeconds).contains(req.expiresInSeconds) {
            problems.append(PBFieldError("expires_in_seconds", "0 (never) to \(Self.maxKeyLifetimeSeconds) (ten years)", "\(req.expiresInSeconds)"))
        }
        if !problems.isEmpty {
            var e = RPCError(.invalidArgument, "the key request has \(problems.count) invalid field\(problems.count == 1 ? "" : "s")",
                             errorCode: SpecError.Code.validation.rawValue)
            e.status.fieldErrors = problems
            throw e
        }
        let expiresAt = req.expiresInSeconds > 0 ? Clock.nowMillis() + req.expiresInSeconds * 1000 : 0
        let issued: IssuedKey
        do {
            let store = self.store, scope = req.scope
            issued = try await BlockingLane.writes.run { try store.createKey(org: caller.org, name: req.name, scope: scope, expiresAtMs: expiresAt) }
        } catch let e as StoreError where e.code == .conflict {
            throw RPCError(.resourceExhausted, e.message, errorCode: "KEY_LIMIT")
        }
        var out = PBCreateApiKeyResponse()
        out.key = issued.key
        out.info = Self.info(issued.info)
        return out
    }

    public func listKeys(_ caller: Caller) throws -> PBListApiKeysResponse {
        var out = PBListApiKeysResponse()
        out.keys = try store.keys(org: caller.org).map(Self.info)
        return out
    }

    public func revokeKey(_ req: PBRevokeApiKeyRequest, _ caller: Caller) async throws -> PBRevokeApiKeyResponse {
        let store = self.store
        guard req.keyID.utf8.count <= 128, let k = try await BlockingLane.writes.run({ try store.revokeKey(org: caller.org, keyID: req.keyID) }) else {
            throw RPCError.notFound("key \(String(req.keyID.prefix(64)))")
        }
        var out = PBRevokeApiKeyResponse()
        out.key = Self.info(k)
        return out
    }
}
