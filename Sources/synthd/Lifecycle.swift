import Foundation
import Logging
import ServiceLifecycle
import SynthConcurrency
import SynthEngine
import SynthGRPC
import SynthServer
import SynthStore

// The parts of a running synthd as services of one ServiceGroup (see `Serve.run`). Each runs until
// the group shuts down gracefully, then stops its part; the group stops them one at a time, in
// the reverse of the order they were given.

/// The first SIGINT or SIGTERM (caught from the process's first moments by `Signals`) shuts the
/// group down gracefully.
struct SignalService: Service {
    let signals: Signals
    let logger: Logger

    func run() async throws {
        let signals = self.signals
        if let caught = await cancelWhenGracefulShutdown({ await signals.first() }) {
            logger.info("shutting down", metadata: ["signal": "\(caught)"])
        }
    }
}

/// SIGHUP reads the TLS files again: new connections get the new certificate, open ones (and their
/// streams) keep the one they started with.
struct ReloadService: Service {
    let server: Server
    let grpc: GRPCEndpoint?

    func run() async throws {
        let (hangups, hangup) = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
        let source = DispatchSource.makeSignalSource(signal: SIGHUP, queue: .global())
        source.setEventHandler { hangup.yield() }
        source.resume()
        let server = self.server, grpc = self.grpc
        await cancelWhenGracefulShutdown {
            for await _ in hangups {
                server.reloadTLS()
                grpc?.reloadTLS()
            }
        }
        source.cancel()
    }
}

/// The listeners: bound at start, with the one machine-readable LISTENING line once they are;
/// at shutdown no new connection is taken and open calls end with a status that says to retry.
struct ListenerService: Service {
    let server: Server
    let grpc: GRPCEndpoint?
    let metrics: MetricsEndpoint?
    let dataPath: String
    let logger: Logger

    func run() async throws {
        let bound = try await server.start()
        var parts: [String] = []
        if let p = bound.unixPath { parts.append("unix=\(p)") }
        if let p = bound.tcpPort { parts.append("tcp=\(p)") }
        var grpcPort: Int?
        if let grpc {
            do {
                grpcPort = try await grpc.start()
            } catch {
                await server.stop()
                throw error
            }
            parts.append("grpc=\(grpcPort!)")
        }
        var metricsPort: Int?
        if let metrics {
            do {
                metricsPort = try await metrics.start()
            } catch {
                await grpc?.stop()
                await server.stop()
                throw error
            }
            parts.append("metrics=\(metricsPort!)")
        }
        logger.info("synthd listening", metadata: ["unix": "\(bound.unixPath ?? "-")", "tcp": "\(bound.tcpPort.map(String.init) ?? "-")",
                                                   "grpc": "\(grpcPort.map(String.init) ?? "-")",
                                                   "metrics": "\(metricsPort.map(String.init) ?? "-")",
                                                   "data": "\(dataPath)"])
        // For scripts and tests that start synthd.
        FileHandle.standardOutput.write(Data(("LISTENING " + parts.joined(separator: " ") + "\n").utf8))
        try? await gracefulShutdown()
        await metrics?.stop()
        await grpc?.stop()
        await server.stop()
        if let p = bound.unixPath { unlink(p) }
    }
}

/// The engine: resumes the jobs the last process left unfinished, and at shutdown stops every
/// runner (their jobs stay `running` in the store and resume at the next start).
struct EngineService: Service {
    let engine: Engine
    let logger: Logger

    func run() async throws {
        let resumed = try engine.resumeUnfinished()
        if resumed > 0 { logger.info("resuming unfinished jobs", metadata: ["jobs": "\(resumed)"]) }
        try? await gracefulShutdown()
        await engine.shutdown()
    }
}

/// The local model, started (and awaited) before the group runs: stopped after the engine.
struct LocalModelService: Service {
    let model: LocalModel

    func run() async throws {
        try? await gracefulShutdown()
        await model.stop()
    }
}

/// The store, last: everything committed is flushed to disk.
struct StoreService: Service {
    let store: Store

    func run() async throws {
        try? await gracefulShutdown()
        store.sync()
    }
}

/// Retention: every `interval`, ended jobs that finished more than `jobDays` ago are deleted (as
/// DeleteJob does), and export files are removed when their job is gone or they have not been
/// written for `exportDays` (an ended job's export is made again when it is next read).
struct RetentionService: Service {
    let store: Store
    let jobDays: Double?
    let exportDays: Double?
    let interval: Duration
    let logger: Logger

    func run() async throws {
        guard jobDays != nil || exportDays != nil else {
            try? await gracefulShutdown()
            return
        }
        while !Task.isCancelledOrShuttingDown {
            let (store, jobDays, exportDays, logger) = (store, jobDays, exportDays, logger)
            await BlockingLane.writes.run { Self.sweep(store, jobDays: jobDays, exportDays: exportDays, logger: logger) }
            _ = try? await cancelOnGracefulShutdown { try await Task.sleep(for: interval) }
        }
    }

    static func sweep(_ store: Store, jobDays: Double?, exportDays: Double?, logger: Logger) {
        let now = Clock.nowMillis()
        if let jobDays {
            let before = now - Int64(jobDays * 86_400_000)
            do {
                for job in try store.endedJobs(finishedBefore: before) {
                    let d = try store.deleteJob(id: job.job.jobID, org: job.org)
                    logger.info("job deleted by retention", metadata: ["job": "\(job.job.jobID)", "org": "\(job.org)",
                                                                      "records": "\(d.records)", "retention_days": "\(jobDays)"])
                }
            } catch {
                logger.error("retention sweep failed", metadata: ["error": "\(error)"])
            }
        }
        let removed = store.sweepExports(unwrittenFor: exportDays.map { .milliseconds(Int64($0 * 86_400_000)) })
        if removed.files > 0 {
            logger.info("export files removed", metadata: ["files": "\(removed.files)", "bytes": "\(removed.bytes)"])
        }
    }
}

extension Task where Success == Never, Failure == Never {
    static var isCancelledOrShuttingDown: Bool { Task.isCancelled || Task.isShuttingDownGracefully }
}
