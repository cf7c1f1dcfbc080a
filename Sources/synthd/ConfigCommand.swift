import ArgumentParser
import Foundation

/// `synthd config check FILE` and `synthd config docs`.
struct ConfigCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "config",
        abstract: "Check a config file, or print the documentation of every key.",
        subcommands: [CheckFile.self, Docs.self])

    struct CheckFile: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "check",
            abstract: "Check a config file as `synthd serve --config` would, without starting anything.",
            discussion: "Prints every problem, one line each, naming its path, and exits 2; prints \"ok\" and exits 0 when there is none.")

        @Argument(help: "The JSON config file.") var file: String

        func run() throws {
            do {
                _ = try ConfigFile.load(file)
            } catch let e as ConfigError {
                FileHandle.standardError.write(Data("synthd: \(e)\n".utf8))
                throw ExitCode(2)
            }
            print("\(file): ok")
        }
    }

    struct Docs: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print docs/config.md: every key, its type, its default and what it does.")

        func run() {
            print(ConfigSchema.markdown(), terminator: "")
        }
    }
}
