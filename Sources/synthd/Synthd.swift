import ArgumentParser
import CoreMetrics
import Foundation
import Logging
import Prometheus
import ServiceLifecycle
import SynthConcurrency
import SynthCore
import SynthEngine
import SynthGRPC
import SynthProto
import SynthServer
import SynthSpec
import SynthStore
import SynthWire

@main
struct Synthd: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "synthd",
        abstract: "The synthd server: synthetic training data jobs over a framed protobuf protocol.",
        version: SynthVersion.current,
        subcommands: [Serve.self, Admin.self, Check.self, ConfigCommand.self],
        defaultSubcommand: Serve.self)
}

struct DataOption: ParsableArguments {
    @Option(name: .long, help: "The data directory (LMDB). Default: ~/.synthd/data, or $SYNTHD_DATA.")
    var data: String?

    var path: String { data ?? ProcessInfo.processInfo.environment["SYNTHD_DATA"] ?? Address.defaultDataDirectory }
}

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the server until SIGTERM or SIGINT.")

    @OptionGroup var data: DataOption

    @Option(help: "Unix socket path. Default: ~/.synthd/synthd.sock unless --tcp is given alone.")
    var unix: String?

    @Option(help: "TCP listen address HOST:PORT (port 0 picks a free one).")
    var tcp: String?

    @Option(help: "Standard gRPC (HTTP/2) listen address HOST:PORT, beside the framed protocol; same TLS and keys.")
    var grpc: String?

    @Option(help: "Prometheus metrics on HOST:PORT (GET /metrics, plain HTTP): bind it to an address only your monitoring reaches.")
    var metrics: String?

    @Option(help: "JSON config file: providers, tiers, critic and limits.")
    var config: String?

    @Option(help: "TLS on the TCP listener: the server's certificate chain (PEM).")
    var tlsCert: String?

    @Option(help: "TLS: the certificate's private key (PEM).")
    var tlsKey: String?

    @Option(help: "Mutual TLS: clients must show a certificate signed by this CA (PEM).")
    var tlsClientCa: String?

    @Flag(help: "Allow plain TCP on an address other machines can reach (keys and records in clear text).")
    var insecureTcp = false

    @Option(help: "trace, debug, info, notice, warning, error or critical.")
    var logLevel: String = "info"

    @Option(help: "text, or json: one JSON object a line (time, level, message, logger and the metadata: call, org, job, ...).")
    var logFormat: String = "text"

    func validate() throws {
        guard Logger.Level(rawValue: logLevel) != nil else {
            throw ValidationError("--log-level must be trace, debug, info, notice, warning, error or critical")
        }
        guard LogFormat(rawValue: logFormat) != nil else { throw ValidationError("--log-format must be text or json") }
    }

    func run() async throws {
        let format = LogFormat(rawValue: logFormat) ?? .text
        format.bootstrap(level: Logger.Level(rawValue: logLevel) ?? .info)
        let logger = Logger(label: "synthd")
        do {
            try await serve(format: format, logger: logger)
        } catch let e as ExitCode {
            throw e
        } catch where format == .json {
            // Under JSON, even the last words are a log line.
            logger.critical("synthd stopped", metadata: ["error": "\(error)"])
            throw ExitCode.failure
        }
    }

    private func serve(format: LogFormat, logger: Logger) async throws {
        var file: ConfigFile
        do {
            file = try ConfigFile.load(config)
        } catch let e as ConfigError {
            switch format {
            case .text: format.fail("\(e)", logger: logger)
            case .json: logger.critical("config file \(e.path) is not valid", metadata: ["problems": .array(e.problems.map { .string($0) })])
            }
            throw ExitCode(2)
        }
        file.engine.applyEnvironment(ProcessInfo.processInfo.environment)

        // Metrics only when they are served: otherwise swift-metrics stays a no-op.
        let registry = PrometheusCollectorRegistry()
        if metrics ?? file.server?.metrics != nil { MetricsSystem.bootstrap(SynthdMetricsFactory(registry: registry)) }

        var serverConfig = file.serverConfig
        if let tcp { serverConfig.tcp = tcp }
        if let grpc { serverConfig.grpc = grpc }
        if let unix { serverConfig.unixPath = unix }
        switch (tlsCert, tlsKey) {
        case (let cert?, let key?):
            serverConfig.tls = TLSFiles(certificateChain: cert, privateKey: key, clientCA: tlsClientCa ?? serverConfig.tls?.clientCA)
        case (nil, nil):
            if let ca = tlsClientCa {
                guard serverConfig.tls != nil else { throw ValidationError("--tls-client-ca needs --tls-cert and --tls-key (or server.tls)") }
                serverConfig.tls?.clientCA = ca
            }
        default:
            throw ValidationError("--tls-cert and --tls-key go together")
        }
        if insecureTcp { serverConfig.insecureTCP = true }
        // With no listener named anywhere, listen on the default socket, where `synth` looks.
        if serverConfig.unixPath == nil, serverConfig.tcp == nil {
            serverConfig.unixPath = Address.defaultSocketPath
        }

        let signals = Signals([SIGINT, SIGTERM])
        // SIGHUP reloads the TLS files (ReloadService); until it runs, one must not stop the process.
        signal(SIGHUP, SIG_IGN)
        // First of all: a second server on this directory would run the same jobs twice.
        let claim: DataDirectoryLock
        do {
            claim = try DataDirectoryLock(directory: data.path)
        } catch let e as StoreError {
            format.fail(e.message, logger: logger)
            throw ExitCode(3)
        }
        let store: Store
        do {
            store = try Store(path: data.path, initialMapSize: (file.server?.mapSizeMB).map { min(max(1, $0), 1 << 24) << 20 } ?? Store.defaultMapSize)
        } catch let e as StoreError {
            // A damaged store is reported, never served.
            format.fail("the store in \(data.path) cannot be used: \(e.message)", logger: logger)
            throw ExitCode(4)
        }
        if let m = store.migration {
            logger.notice("the store was brought to this synthd's format", metadata: ["data": "\(data.path)", "from": "\(m.from)", "to": "\(m.to)"])
        }
        var local: LocalModel?
        if let choice = file.localModelChoice(environment: ProcessInfo.processInfo.environment) {
            do {
                let model = try LocalModel(config: choice.config, dataDirectory: data.path, logger: logger)
                logger.info("starting the local model", metadata: ["server": "\(model.serverPath)", "model": "\(model.modelPath)",
                                                                   "slots": "\(model.parallel)", "log": "\(data.path)/local-model.log"])
                try await model.start()
                file.engine = model.engineConfig(over: file.engine, keepRoutes: file.hasEngine)
                local = model
            } catch let e as LocalModelError where !choice.explicit {
                logger.warning("no cloud provider key (OPENAI_API_KEY, ANTHROPIC_API_KEY) and no local model: jobs will fail until one is configured",
                               metadata: ["local_model": "\(e.message)"])
            }
        }
        let engine = Engine(store: store, config: file.engine, pricing: file.pricing, localModel: local, logger: logger)
        let core = JobService(store: store, engine: engine, validator: Validator(maxCount: file.engine.maxCount, catalog: file.engine.catalog), logger: logger)
        let server = Server(config: serverConfig, core: core, logger: logger)
        let grpcEndpoint = try serverConfig.grpc.map { try GRPCEndpoint(address: $0, config: serverConfig, core: core, gate: server.gate, logger: logger) }
        let metricsEndpoint = try (metrics ?? file.server?.metrics).map {
            try MetricsEndpoint(address: $0, registry: registry, store: store, engine: engine, logger: logger)
        }
        // Stopped in the reverse of this order: the listeners first (open calls end with a status
        // that says to retry), then the engine's runners, the local model, and the store last.
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = [
            .init(service: StoreService(store: store), serviceName: "store"),
        ]
        if let local { services.append(.init(service: LocalModelService(model: local), serviceName: "local-model")) }
        services += [
            .init(service: EngineService(engine: engine, logger: logger), serviceName: "engine"),
            .init(service: ListenerService(server: server, grpc: grpcEndpoint, metrics: metricsEndpoint, dataPath: data.path, logger: logger),
                  serviceName: "listeners"),
            .init(service: ReloadService(server: server, grpc: grpcEndpoint), serviceName: "tls-reload"),
            .init(service: RetentionService(store: store, jobDays: file.server?.retentionDays, exportDays: file.server?.exportRetentionDays,
                                            interval: .milliseconds(Int64(min(86_400, max(0.1, file.server?.retentionSweepSeconds ?? 3600)) * 1000)),
                                            logger: logger), serviceName: "retention"),
            .init(service: SignalService(signals: signals, logger: logger), successTerminationBehavior: .gracefullyShutdownGroup,
                  serviceName: "signals"),
        ]
        try await ServiceGroup(configuration: ServiceGroupConfiguration(services: services, logger: logger)).run()
        logger.info("stopped; running jobs resume at the next start")
        withExtendedLifetime(claim) {}
    }
}

/// Catches signals from the moment it is made, with their default action turned off, so that a
/// SIGTERM that comes as soon as the server says it listens still shuts it down cleanly.
final class Signals: Sendable {
    private let stream: AsyncStream<Int32>
    private let sources: Locked<[any DispatchSourceSignal]>

    init(_ signals: [Int32]) {
        let (stream, continuation) = AsyncStream<Int32>.makeStream()
        self.stream = stream
        sources = Locked(signals.map { s in
            Foundation.signal(s, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: s, queue: .global())
            source.setEventHandler { continuation.yield(s) }
            source.resume()
            return source
        })
    }

    /// The first signal caught; nil when the waiting task is cancelled first.
    func first() async -> Int32? {
        var it = stream.makeAsyncIterator()
        let got = await it.next()
        sources.withLock { for s in $0 { s.cancel() } }
        return got
    }
}

struct Admin: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Manage orgs and keys directly in the data directory (works while the server runs).",
        subcommands: [CreateOrg.self, SetPlan.self, TopUp.self, ListOrgs.self, CreateKey.self, ListKeys.self, RevokeKey.self, Backup.self,
                      Verify.self])

    struct Backup: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Copy the store (consistent and compacted, while the server runs) into a new directory that `synthd serve --data` starts from.")
        @OptionGroup var data: DataOption
        @Argument(help: "The directory for the copy (new, or without a data.mdb).") var directory: String

        func run() throws {
            let store = try Store(path: data.path)
            do {
                try store.backup(to: directory)
            } catch let e as StoreError {
                throw ValidationError(e.message)
            }
            let size = (try? FileManager.default.attributesOfItem(atPath: directory + "/data.mdb")[.size] as? Int) ?? 0
            print("backed up \(data.path) to \(directory) (\(size) bytes, format \(Store.formatVersion))")
        }
    }

    struct Verify: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check every table of the data directory and report what is damaged (exit status 1 if anything is).")
        @OptionGroup var data: DataOption

        func run() throws {
            let report: VerifyReport
            do {
                report = try Store(path: data.path).verify()
            } catch let e as StoreError {
                print("damaged: \(e.message)")
                throw ExitCode(1)
            }
            for (table, n) in report.entries { print("\(table)\t\(n) entries") }
            for p in report.problems { print("damaged: \(p)") }
            if report.more > 0 { print("damaged: \(report.more) more problems not listed") }
            if report.isClean {
                print("ok: every table reads back whole")
            } else {
                throw ExitCode(1)
            }
        }
    }

    struct CreateOrg: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "create-org", abstract: "Create an org.")
        @OptionGroup var data: DataOption
        @Argument(help: "The org's name.") var name: String
        @Option(help: "free, subscription or payg.") var plan: String = "payg"
        @Option(help: "Monthly record quota (subscription).") var quota: Int64 = 0
        @Option(help: "Starting balance in dollars (payg).") var balanceUsd: Double = 100

        func run() throws {
            guard ["free", "subscription", "payg"].contains(plan) else {
                throw ValidationError("--plan must be free, subscription or payg")
            }
            guard !name.isEmpty, name.count <= 100, !name.contains("\0") else { throw ValidationError("the org name must be 1 to 100 characters") }
            let store = try Store(path: data.path)
            let quota = plan == "free" ? 100 : quota
            do {
                let org = try store.createOrg(name: name, plan: plan, monthlyQuota: quota, balanceMicroUSD: Int64(balanceUsd * 1_000_000))
                print("created org \(org.name) (plan \(org.plan))")
            } catch let e as StoreError where e.code == .conflict {
                throw ValidationError(e.message)
            }
        }
    }

    struct CreateKey: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "create-key", abstract: "Create an API key; it is printed once.")
        @OptionGroup var data: DataOption
        @Option(help: "The org the key belongs to.") var org: String
        @Option(help: "A label for the key.") var name: String = ""
        @Flag(help: "The key may only read (jobs, watch, splits, reports, manifests).") var readOnly = false
        @Option(help: "The key stops working after this long: 90s, 45m, 12h, 30d, 8w.") var expires: String?

        func run() throws {
            var expiresAt: Int64 = 0
            if let expires {
                guard let seconds = Lifetime.seconds(expires), seconds <= JobService.maxKeyLifetimeSeconds else {
                    throw ValidationError("--expires must be a number and s, m, h, d or w, at most ten years (30d), got \(expires)")
                }
                expiresAt = Clock.nowMillis() + seconds * 1000
            }
            let store = try Store(path: data.path)
            do {
                let issued = try store.createKey(org: org, name: name, scope: readOnly ? "read" : "", expiresAtMs: expiresAt)
                FileHandle.standardError.write(Data("created key \(issued.info.keyID) for org \(org); it is shown only this once:\n".utf8))
                print(issued.key)
            } catch let e as StoreError {
                throw ValidationError(e.message)
            }
        }
    }

    struct RevokeKey: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "revoke-key", abstract: "Revoke a key by its id.")
        @OptionGroup var data: DataOption
        @Option(help: "The org the key belongs to.") var org: String
        @Option(help: "The key id (key_...).") var keyID: String

        func run() throws {
            let store = try Store(path: data.path)
            guard let key = try store.revokeKey(org: org, keyID: keyID) else {
                throw ValidationError("org \(org) has no key \(keyID)")
            }
            print("revoked \(key.keyID)")
        }
    }

    struct ListOrgs: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "list-orgs", abstract: "List the orgs with their plans and this month's usage.")
        @OptionGroup var data: DataOption
        @Flag(help: "One JSON object per org, one a line.") var json = false

        func run() throws {
            let store = try Store(path: data.path)
            let month = Clock.month(Clock.nowMillis())
            var rows: [[String]] = []
            for org in try store.orgs() {
                let u = try store.usage(org: org.name, month: month) ?? PBStoredUsage()
                let keys = try store.keys(org: org.name).filter { !$0.revoked && !Store.isExpired($0) }.count
                if json {
                    let o: [String: Any] = ["org": org.name, "plan": org.plan, "monthly_quota": org.monthlyQuota,
                                            "balance_usd": Double(org.balanceMicroUsd) / 1e6, "month": month, "records": u.records,
                                            "jobs": u.jobs, "cost_usd": Double(u.costMicroUsd) / 1e6, "active_keys": keys]
                    print(String(decoding: try JSONSerialization.data(withJSONObject: o, options: [.sortedKeys]), as: UTF8.self))
                } else {
                    rows.append([org.name, org.plan, org.plan == "payg" ? "-" : String(org.monthlyQuota),
                                 org.plan == "payg" ? String(format: "$%.2f", Double(org.balanceMicroUsd) / 1e6) : "-",
                                 String(u.records), String(u.jobs), String(format: "$%.4f", Double(u.costMicroUsd) / 1e6), String(keys)])
                }
            }
            if !json {
                print(AdminTable.render(["ORG", "PLAN", "QUOTA", "BALANCE", "RECORDS \(month)", "JOBS", "BILLED", "KEYS"], rows))
            }
        }
    }

    struct SetPlan: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "set-plan", abstract: "Change an org's plan or monthly quota (works while the server runs).")
        @OptionGroup var data: DataOption
        @Argument(help: "The org.") var org: String
        @Option(help: "free, subscription or payg.") var plan: String?
        @Option(help: "Monthly record quota (free: default 100; subscription: quota records).") var quota: Int64?

        func run() throws {
            if let plan, !["free", "subscription", "payg"].contains(plan) { throw ValidationError("--plan must be free, subscription or payg") }
            if let quota, quota < 0 { throw ValidationError("--quota must be 0 or more") }
            guard plan != nil || quota != nil else { throw ValidationError("give --plan, --quota or both") }
            let store = try Store(path: data.path)
            do {
                let org = try store.updateOrg(org) { o in
                    if let plan { o.plan = plan }
                    if let quota { o.monthlyQuota = quota }
                }
                print("org \(org.name): plan \(org.plan), monthly quota \(org.monthlyQuota)")
            } catch let e as StoreError where e.code == .notFound {
                throw ValidationError(e.message)
            }
        }
    }

    struct TopUp: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "top-up", abstract: "Add dollars to a pay-as-you-go org's balance (works while the server runs).")
        @OptionGroup var data: DataOption
        @Argument(help: "The org.") var org: String
        @Option(help: "Dollars to add (negative to take back).") var usd: Double

        func run() throws {
            guard usd.isFinite, abs(usd) <= 1e9 else { throw ValidationError("--usd must be a number of dollars") }
            let store = try Store(path: data.path)
            do {
                let org = try store.updateOrg(org) { o in
                    let next = o.balanceMicroUsd + Int64((usd * 1_000_000).rounded())
                    guard next >= 0 else { throw ValidationError("the balance would go below zero") }
                    o.balanceMicroUsd = next
                }
                print(String(format: "org %@: balance $%.2f", org.name, Double(org.balanceMicroUsd) / 1e6))
            } catch let e as StoreError where e.code == .notFound {
                throw ValidationError(e.message)
            }
        }
    }

    struct ListKeys: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "list-keys", abstract: "List an org's keys (ids and prefixes; a key itself is never stored).")
        @OptionGroup var data: DataOption
        @Option(help: "The org.") var org: String

        func run() throws {
            let store = try Store(path: data.path)
            guard try store.org(named: org) != nil else { throw ValidationError("org \(org) not found") }
            let rows = try store.keys(org: org).map { k -> [String] in
                let state = k.revoked ? "revoked" : Store.isExpired(k) ? "expired" : "active"
                return [k.keyID, k.prefix + "...", k.name.isEmpty ? "-" : k.name, k.scope.isEmpty ? "full" : k.scope, state,
                        k.expiresAtMs > 0 ? Clock.rfc3339(k.expiresAtMs) : "never", k.lastUsedMs > 0 ? Clock.rfc3339(k.lastUsedMs) : "never"]
            }
            print(AdminTable.render(["KEY ID", "PREFIX", "NAME", "SCOPE", "STATE", "EXPIRES", "LAST USED"], rows))
        }
    }
}

/// Left-aligned columns for the admin tables.
enum AdminTable {
    static func render(_ header: [String], _ rows: [[String]]) -> String {
        var widths = header.map(\.count)
        for r in rows { for (i, c) in r.enumerated() where i < widths.count { widths[i] = max(widths[i], c.count) } }
        func line(_ cells: [String]) -> String {
            cells.enumerated().map { i, c in i == cells.count - 1 ? c : c.padding(toLength: widths[i], withPad: " ", startingAt: 0) }
                .joined(separator: "  ")
        }
        return ([line(header)] + rows.map(line)).joined(separator: "\n")
    }
}
