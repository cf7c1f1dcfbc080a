import CoreMetrics
import SynthConcurrency

/// What synthd counts, through swift-metrics: the libraries record here, and the `synthd`
/// executable chooses the backend (Prometheus, on `--metrics HOST:PORT`). With no backend chosen
/// (the tests in process, the tools) every call is a no-op.
///
/// Labels stay few and bounded: methods, status codes, providers and models from the config,
/// rejection reasons and job statuses; never an org, a job or a key.
public enum SynthMetrics {
    public enum Kind: String, Sendable {
        case counter, gauge, histogram
    }

    /// One metric family: its name, kind and the help line it is served with.
    public struct Family: Sendable {
        public let name: String
        public let kind: Kind
        public let help: String
    }

    public static let calls = Family(name: "synthd_calls_total", kind: .counter,
                                     help: "Calls answered, by method and status code (framed protocol and gRPC together).")
    public static let callSeconds = Family(name: "synthd_call_duration_seconds", kind: .histogram,
                                           help: "Time from a call's open to its status, by method (streams: until they end).")
    public static let jobs = Family(name: "synthd_jobs", kind: .gauge, help: "Jobs in the store, by status.")
    public static let recordsAccepted = Family(name: "synthd_records_accepted_total", kind: .counter,
                                               help: "Records accepted and committed, all jobs together.")
    public static let recordsRejected = Family(name: "synthd_records_rejected_total", kind: .counter,
                                               help: "Answers rejected by the quality checks, by reason.")
    public static let providerRequests = Family(name: "synthd_provider_requests_total", kind: .counter,
                                                help: "HTTP requests to providers, by provider, model and outcome (ok, http_4xx, http_429, http_5xx, connect_error, error).")
    public static let providerSeconds = Family(name: "synthd_provider_request_duration_seconds", kind: .histogram,
                                               help: "Time for one provider request, by provider.")
    public static let providerTokens = Family(name: "synthd_provider_tokens_total", kind: .counter,
                                              help: "Tokens the providers counted, by provider, model and kind (prompt, completion).")
    public static let providerDollars = Family(name: "synthd_provider_cost_dollars_total", kind: .counter,
                                               help: "What the provider requests cost at the configured prices, by provider and model.")
    public static let providerInFlight = Family(name: "synthd_provider_requests_in_flight", kind: .gauge,
                                                help: "Requests in flight to each provider.")
    public static let endpointUp = Family(name: "synthd_provider_endpoint_up", kind: .gauge,
                                          help: "1 while a provider endpoint is in service, 0 while it is taken out (or probed), by provider and endpoint (host:port).")
    public static let endpointInFlight = Family(name: "synthd_provider_endpoint_requests_in_flight", kind: .gauge,
                                                help: "Requests outstanding at each provider endpoint.")
    public static let endpointEjections = Family(name: "synthd_provider_endpoint_ejections_total", kind: .counter,
                                                 help: "Times a provider endpoint was taken out of its pool after failing requests in a row.")
    public static let requestsWaiting = Family(name: "synthd_scheduler_requests_waiting", kind: .gauge,
                                               help: "Provider requests waiting for the scheduler's grant, by provider.")
    public static let jobsQueued = Family(name: "synthd_jobs_waiting_to_start", kind: .gauge,
                                          help: "Jobs waiting for a running place (max_running_jobs).")
    public static let storeMapBytes = Family(name: "synthd_store_map_size_bytes", kind: .gauge, help: "The LMDB map's size.")
    public static let storeUsedBytes = Family(name: "synthd_store_used_bytes", kind: .gauge, help: "LMDB pages in use, in bytes.")
    public static let exportBytes = Family(name: "synthd_export_bytes_total", kind: .counter, help: "Bytes written to export files.")
    public static let exportFileBytes = Family(name: "synthd_export_files_bytes", kind: .gauge, help: "Export files on disk, in bytes.")

    public static let families: [Family] = [
        calls, callSeconds, jobs, recordsAccepted, recordsRejected, providerRequests, providerSeconds, providerTokens,
        providerDollars, providerInFlight, endpointUp, endpointInFlight, endpointEjections, requestsWaiting, jobsQueued, storeMapBytes, storeUsedBytes, exportBytes, exportFileBytes,
    ]

    /// Help lines by name, for the backend.
    public static let help: [String: String] = Dictionary(uniqueKeysWithValues: families.map { ($0.name, $0.help) })

    /// Model names are the one label a request can choose (a verbose `models.generator`) or a
    /// provider can answer with: the first `modelLabelLimit` distinct names are labels, any later
    /// one is `other`, so that no caller can grow the series without bound.
    public static let modelLabelLimit = 64
    private static let models = Locked<Set<String>>([])

    public static func modelLabel(_ model: String) -> String {
        let name = String(model.prefix(128))
        return models.withLock { seen in
            if seen.contains(name) { return name }
            guard seen.count < modelLabelLimit else { return "other" }
            seen.insert(name)
            return name
        }
    }

    // MARK: - events

    /// A call ended with `code` (the status code's name, e.g. OK or NOT_FOUND).
    public static func call(method: String, code: String, took: Duration) {
        Counter(label: calls.name, dimensions: [("method", method), ("code", code)]).increment()
        Timer(label: callSeconds.name, dimensions: [("method", method)]).recordNanoseconds(nanoseconds(took))
    }

    /// One HTTP request to a provider.
    public static func providerRequest(provider: String, model: String, outcome: String, took: Duration) {
        Counter(label: providerRequests.name, dimensions: [("provider", provider), ("model", model), ("outcome", outcome)]).increment()
        Timer(label: providerSeconds.name, dimensions: [("provider", provider)]).recordNanoseconds(nanoseconds(took))
    }

    /// What one answer cost.
    public static func providerUsage(provider: String, model: String, promptTokens: Int, completionTokens: Int, dollars: Double) {
        Counter(label: providerTokens.name, dimensions: [("provider", provider), ("model", model), ("kind", "prompt")])
            .increment(by: Int64(max(0, promptTokens)))
        Counter(label: providerTokens.name, dimensions: [("provider", provider), ("model", model), ("kind", "completion")])
            .increment(by: Int64(max(0, completionTokens)))
        if dollars > 0, dollars.isFinite {
            FloatingPointCounter(label: providerDollars.name, dimensions: [("provider", provider), ("model", model)]).increment(by: dollars)
        }
    }

    /// A commit: records stored, and the answers rejected since the last one, by reason.
    public static func committed(accepted: Int, rejections: [String: Int64]) {
        if accepted > 0 { Counter(label: recordsAccepted.name).increment(by: Int64(accepted)) }
        for (reason, n) in rejections where n > 0 {
            Counter(label: recordsRejected.name, dimensions: [("reason", reason)]).increment(by: n)
        }
    }

    /// A provider endpoint was taken out of its pool.
    public static func endpointEjected(provider: String, endpoint: String) {
        Counter(label: endpointEjections.name, dimensions: [("provider", provider), ("endpoint", endpoint)]).increment()
    }

    public static func exportWritten(bytes: Int) {
        if bytes > 0 { Counter(label: exportBytes.name).increment(by: Int64(bytes)) }
    }

    /// A gauge's value now (the scrape sets these just before it reads them).
    public static func set(_ family: Family, _ dimensions: [(String, String)] = [], to value: Double) {
        Gauge(label: family.name, dimensions: dimensions).record(value)
    }

    /// A status code's gRPC name (0 is OK, 5 NOT_FOUND, ...); UNKNOWN for any other number.
    public static func codeName(_ raw: Int) -> String {
        let names = ["OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS",
                     "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED",
                     "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED"]
        return names.indices.contains(raw) ? names[raw] : "UNKNOWN"
    }

    static func nanoseconds(_ d: Duration) -> Int64 {
        let (s, atto) = d.components
        return s.multipliedReportingOverflow(by: 1_000_000_000).overflow ? .max : s * 1_000_000_000 + atto / 1_000_000_000
    }
}
