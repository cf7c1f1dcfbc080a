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
                      Report.self, ManifestCommand.self, Cancel.self, Delete.self, Usage.self, PricingCommand.self, HealthCommand.self,
                      Keys.self, Compare.self])
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
        do {
            return try await SynthClient.connect(addr, apiKey: apiKey ?? env["SYNTH_API_KEY"] ?? "", tls: tls)
        } catch let e as ClientError where e.code == .unavailable {
            // Say where it looked and what to do, not only that it failed.
            let said = e.status.message.hasPrefix("cannot connect") ? e.status.message : "cannot connect to synthd at \(text): \(e.status.message)"
            throw ClientError(.unavailable, "\(said). Start it with `synthd serve` "
                              + "(it listens on unix:~/.synthd/synthd.sock unless told otherwise), or point --address or "
                              + "$SYNTH_ADDRESS at the one that runs", errorCode: "CANNOT_CONNECT")
        }
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
            if json { Output.error(Output.errorJSON(e.status)) } else { Output.error(e.description) }
            throw ExitCode(Output.exitCode(e.code))
        } catch let e as SpecError {
            var status = PBStatus()
            status.code = .invalidArgument
            status.errorCode = e.code.rawValue
            status.message = e.message
            status.fieldErrors = e.fieldErrors
            if json { Output.error(Output.errorJSON(status)) } else { Output.error(ClientError(status).description) }
            throw ExitCode(2)
        } catch let e as TrainerFormat.Refused {
            var status = PBStatus()
            status.code = .invalidArgument
            status.errorCode = "FORMAT_REFUSED"
            status.message = e.description
            if json { Output.error(Output.errorJSON(status)) } else { Output.error("error: \(e.description)") }
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

    /// A message as JSON for scripts: field names as in the .proto, 64-bit numbers as numbers (not
    /// the strings proto3's JSON mapping uses). Fields at their default value are left out, as
    /// that mapping does; list commands print their lists themselves (`list`), so that an empty one
    /// is `[]`.
    static func json(_ m: some SwiftProtobuf.Message) -> String {
        var o = JSONEncodingOptions()
        o.preserveProtoFieldNames = true
        o.alwaysPrintInt64sAsNumbers = true
        return (try? m.jsonString(options: o)) ?? "{}"
    }

    /// `{"NAME": [item, ...], more...}`: a list response whose list is there when it is empty.
    static func list(_ name: String, _ items: [some SwiftProtobuf.Message], _ more: [(String, String)] = []) -> String {
        var out = "{\"\(name)\": [" + items.map { json($0) }.joined(separator: ", ") + "]"
        for (k, v) in more { out += ", \"\(k)\": \(Output.quoted(v))" }
        return out + "}"
    }

    static func quoted(_ s: String) -> String {
        (try? String(decoding: JSONSerialization.data(withJSONObject: [s], options: [.withoutEscapingSlashes]), as: UTF8.self))
            .map { String($0.dropFirst().dropLast()) } ?? "\"\""
    }

    /// An error under --json: `{"error": {"code": "NOT_FOUND", "error_code": ..., "message": ..., ...}}`.
    static func errorJSON(_ status: PBStatus) -> String {
        var out = "{\"error\": {\"code\": \"\(ClientError.name(status.code))\""
        if !status.errorCode.isEmpty { out += ", \"error_code\": \(quoted(status.errorCode))" }
        out += ", \"message\": \(quoted(status.message))"
        if !status.fieldErrors.isEmpty {
            out += ", \"field_errors\": [" + status.fieldErrors.map {
                "{\"field\": \(quoted($0.field)), \"rule\": \(quoted($0.rule)), \"value\": \(quoted($0.value))}"
            }.joined(separator: ", ") + "]"
        }
        if !status.suggestions.isEmpty {
            out += ", \"suggestions\": [" + status.suggestions.map {
                "{\"word\": \(quoted($0.word)), \"suggestions\": [" + $0.suggestions.map(quoted).joined(separator: ", ") + "]}"
            }.joined(separator: ", ") + "]"
        }
        if status.retryAfterMs > 0 { out += ", \"retry_after_ms\": \(status.retryAfterMs)" }
        return out + "}}"
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
