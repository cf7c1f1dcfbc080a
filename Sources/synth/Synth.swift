import ArgumentParser
import Foundation
import SwiftProtobuf
import SynthClient
import SynthProto
import SynthSpec
import SynthWire

@main
struct Synth: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "synth",
        abstract: "The synthd command-line client.",
        version: SynthVersion.current,
        subcommands: [Generate.self, PlanCommand.self, Jobs.self, JobCommand.self, Watch.self, Results.self, SplitsCommand.self,
                      Report.self, ManifestCommand.self, Cancel.self, PricingCommand.self, HealthCommand.self, Keys.self])
}

/// Options every command takes.
struct Common: ParsableArguments {
    @Option(help: "unix:PATH, HOST:PORT, or tls:HOST:PORT for TLS. Default: $SYNTH_ADDRESS, else unix:~/.synthd/synthd.sock.")
    var address: String?

    @Option(help: "TLS: the CA certificate (PEM) that signed synthd's certificate. Default: $SYNTH_TLS_CA, else the system's roots.")
    var tlsCa: String?

    @Option(help: "Mutual TLS: this client's certificate (PEM). Default: $SYNTH_TLS_CERT.")
    var tlsCert: String?

    @Option(help: "Mutual TLS: the client certificate's private key (PEM). Default: $SYNTH_TLS_KEY.")
    var tlsKey: String?

    @Option(help: "API key. Default: $SYNTH_API_KEY.")
    var apiKey: String?

    @Flag(help: "Print machine-readable JSON instead of tables.")
    var json = false

    @Option(help: "Deadline for unary calls, in seconds.")
    var timeout: Double = 60

    func connect() async throws -> SynthClient {
        // A closed pipe is an error to handle, not a signal that kills the process.
        signal(SIGPIPE, SIG_IGN)
        let env = ProcessInfo.processInfo.environment
        let text = address ?? env["SYNTH_ADDRESS"] ?? Address.default.description
        guard let addr = Address(text) else {
            throw ValidationError("--address must be unix:PATH, HOST:PORT or tls:HOST:PORT, got \(text)")
        }
        var tls = TLSOptions()
        if case .tls = addr {
            tls = TLSOptions(caFile: tlsCa ?? env["SYNTH_TLS_CA"], certificateFile: tlsCert ?? env["SYNTH_TLS_CERT"],
                             privateKeyFile: tlsKey ?? env["SYNTH_TLS_KEY"])
        } else if tlsCa != nil || tlsCert != nil || tlsKey != nil {
            throw ValidationError("--tls-ca, --tls-cert and --tls-key need a tls:HOST:PORT address, got \(text)")
        }
        return try await SynthClient.connect(addr, apiKey: apiKey ?? env["SYNTH_API_KEY"] ?? "", tls: tls)
    }

    var deadline: Duration { .milliseconds(Int64(timeout * 1000)) }

    /// Runs `body` with a connection; any RPC failure is printed in full and exits non-zero.
    func run(_ body: (SynthClient) async throws -> Void) async throws {
        do {
            let client = try await connect()
            do {
                try await body(client)
            } catch {
                await client.close()
                throw error
            }
            await client.close()
        } catch let e as ClientError {
            Output.error(e.description)
            throw ExitCode(Output.exitCode(e.code))
        } catch let e as SpecError {
            Output.error("status: INVALID_ARGUMENT\nerror code: \(e.code.rawValue)\nmessage: \(e.message)" +
                e.fieldErrors.map { "\nfield \($0.field): \($0.rule)" + ($0.value.isEmpty ? "" : " (got \($0.value))") }.joined())
            throw ExitCode(2)
        } catch let e as TrainerFormat.Refused {
            Output.error("error: \(e.description)")
            throw ExitCode(2)
        }
    }
}

enum Output {
    static func error(_ text: String) {
        FileHandle.standardError.write(Data((text + "\n").utf8))
    }

    static func exitCode(_ code: PBStatusCode) -> Int32 {
        switch code {
        case .invalidArgument, .failedPrecondition, .outOfRange: return 2
        case .unauthenticated, .permissionDenied: return 3
        case .notFound: return 4
        case .resourceExhausted: return 5
        case .unavailable, .deadlineExceeded: return 6
        default: return 1
        }
    }

    static func json(_ m: some SwiftProtobuf.Message) -> String {
        var o = JSONEncodingOptions()
        o.preserveProtoFieldNames = true
        return (try? m.jsonString(options: o)) ?? "{}"
    }

    /// Left-aligned columns.
    static func table(_ header: [String], _ rows: [[String]]) -> String {
        var widths = header.map(\.count)
        for r in rows { for (i, c) in r.enumerated() where i < widths.count { widths[i] = max(widths[i], c.count) } }
        func line(_ cells: [String]) -> String {
            cells.enumerated().map { i, c in i == cells.count - 1 ? c : c.padding(toLength: widths[i], withPad: " ", startingAt: 0) }
                .joined(separator: "  ")
        }
        return ([line(header)] + rows.map(line)).joined(separator: "\n")
    }

    static func money(_ v: Double) -> String { String(format: "$%.4f", v) }
}
