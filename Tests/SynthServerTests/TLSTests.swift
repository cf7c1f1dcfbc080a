import Foundation
import SynthAPI
import SynthClient
import SynthCore
import SynthProto
import SynthServer
import SynthSpec
import SynthStore
import SynthWire
import SynthConcurrency
import Testing

/// Certificates made for a test with openssl: a CA, a server certificate for localhost and
/// 127.0.0.1, a client certificate, and a second CA that signed neither.
struct TestPKI {
    let dir: String
    var ca: String { dir + "/ca.pem" }
    var serverCert: String { dir + "/server.pem" }
    var serverKey: String { dir + "/server.key" }
    var clientCert: String { dir + "/client.pem" }
    var clientKey: String { dir + "/client.key" }
    var otherCA: String { dir + "/other-ca.pem" }
    var strangerCert: String { dir + "/stranger.pem" }
    var strangerKey: String { dir + "/stranger.key" }
    /// A second server certificate, signed by the other CA: what a renewal swaps in.
    var renewedCert: String { dir + "/server2.pem" }
    var renewedKey: String { dir + "/server2.key" }

    static func openssl(_ args: [String], in dir: String) throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
        p.arguments = args
        p.currentDirectoryURL = URL(fileURLWithPath: dir)
        let err = Pipe()
        p.standardError = err
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        let text = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        if p.terminationStatus != 0 {
            throw CocoaError(.executableLoad, userInfo: [NSLocalizedDescriptionKey: "openssl \(args.joined(separator: " ")): \(String(decoding: text, as: UTF8.self))"])
        }
    }

    /// Makes every file in a new directory under `parent`.
    static func make(in parent: String) throws -> TestPKI {
        let dir = parent + "/pki"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        for name in ["ca", "other-ca"] {
            try openssl(["req", "-x509"] + ec + ["-keyout", "\(name).key", "-out", "\(name).pem", "-days", "2", "-subj", "/CN=synthd test \(name)",
                         "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"], in: dir)
        }
        try Data("subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n".utf8)
            .write(to: URL(fileURLWithPath: dir + "/server.ext"))
        try Data("extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n".utf8).write(to: URL(fileURLWithPath: dir + "/client.ext"))
        for (name, ca, ext) in [("server", "ca", "server.ext"), ("client", "ca", "client.ext"), ("stranger", "other-ca", "client.ext"),
                                ("server2", "other-ca", "server.ext")] {
            try openssl(["req"] + ec + ["-keyout", "\(name).key", "-out", "\(name).csr", "-subj", "/CN=\(name == "server" ? "localhost" : name)"], in: dir)
            try openssl(["x509", "-req", "-in", "\(name).csr", "-CA", "\(ca).pem", "-CAkey", "\(ca).key", "-CAcreateserial", "-out", "\(name).pem",
                         "-days", "2", "-extfile", ext], in: dir)
        }
        return TestPKI(dir: dir)
    }
}

/// A TCP relay that records every byte it carries, both ways: what someone on the network sees.
final class WireTap: @unchecked Sendable {
    let port: Int
    private let listener: Int32
    private let target: Int
    private let seen = Locked<[UInt8]>([])

    init(to target: Int) throws {
        self.target = target
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = 0
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) } }
        listen(fd, 8)
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        listener = fd
        port = Int(UInt16(bigEndian: addr.sin_port))
        let thread = Thread { [self] in acceptLoop() }
        thread.start()
    }

    var bytes: [UInt8] { seen.withLock { $0 } }

    func contains(_ needle: String) -> Bool {
        let n = Array(needle.utf8), hay = bytes
        guard !n.isEmpty, hay.count >= n.count else { return false }
        for i in 0...(hay.count - n.count) where hay[i] == n[0] && Array(hay[i..<i + n.count]) == n { return true }
        return false
    }

    func close() { shutdown(listener, Int32(SHUT_RDWR)); Glibc.close(listener) }

    private func acceptLoop() {
        while true {
            let client = accept(listener, nil, nil)
            if client < 0 { return }
            let upstream = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var addr = sockaddr_in()
            addr.sin_family = sa_family_t(AF_INET)
            addr.sin_addr.s_addr = inet_addr("127.0.0.1")
            addr.sin_port = UInt16(target).bigEndian
            let ok = withUnsafePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(upstream, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            if ok != 0 { Glibc.close(client); Glibc.close(upstream); continue }
            for (from, to) in [(client, upstream), (upstream, client)] {
                Thread { [self] in
                    var buffer = [UInt8](repeating: 0, count: 65536)
                    while true {
                        let n = read(from, &buffer, buffer.count)
                        if n <= 0 { break }
                        seen.withLock { $0 += buffer[0..<n] }
                        var off = 0
                        while off < n {
                            let w = buffer[off..<n].withUnsafeBytes { write(to, $0.baseAddress, n - off) }
                            if w <= 0 { break }
                            off += w
                        }
                    }
                    shutdown(to, Int32(SHUT_WR))
                }.start()
            }
        }
    }
}

@Suite(.serialized) struct TLSTests {
    static func withTLSHarness(mutual: Bool = false, _ body: @escaping @Sendable (Harness, TestPKI) async throws -> Void) async throws {
        let parent = "/tmp/tls-" + String(UUID().uuidString.prefix(8))
        try FileManager.default.createDirectory(atPath: parent, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: parent) }
        // openssl runs as child processes, waited for on the tests' own threads, never the
        // cooperative pool's (the in-process servers of the suites running beside need those).
        let pki = try await testThreads.run { try TestPKI.make(in: parent) }
        try await withHarness(server: { c in
            c.tls = TLSFiles(certificateChain: pki.serverCert, privateKey: pki.serverKey, clientCA: mutual ? pki.ca : nil)
        }) { h in try await body(h, pki) }
    }

    /// A job made and read back whole over TLS, by IP address and by name.
    @Test func callsAndStreamsRunOverTLS() async throws {
        try await Self.withTLSHarness { h, pki in
            let key = try h.org("acme")
            for host in ["127.0.0.1", "localhost"] {
                let client = try await SynthClient.connect(.tls(host: host, port: h.bound.tcpPort!), apiKey: key, tls: TLSOptions(caFile: pki.ca))
                let job = try await h.generate(client, count: 10)
                let done = try await h.waitForEnd(client, job.jobID)
                #expect(done.status == "succeeded" && done.accepted == 10)
                var records = 0
                for try await e in client.stream(Methods.watchJob, PBWatchJobRequest.with { $0.jobID = job.jobID }) {
                    if case .record = e.event { records += 1 }
                }
                #expect(records == 10)
                // An ended job's batches come from its export file: through TLS they are read, not sent with sendfile.
                var bytes = Data()
                for try await e in client.stream(Methods.watchJob, PBWatchJobRequest.with { $0.jobID = job.jobID; $0.batchBytes = 4096 }) {
                    if case .batch(let b) = e.event { bytes += b.jsonl }
                }
                let stored = try h.store.records(jobID: job.jobID, after: 0, limit: 100).map { Data($0.json) + Data([0x0A]) }.reduce(Data(), +)
                #expect(bytes == stored, "\(bytes.count) bytes by batch, \(stored.count) stored")
                await client.close()
            }
        }
    }

    @Test func aServerTheClientDoesNotTrustIsRefusedBeforeAnyKeyIsSent() async throws {
        try await Self.withTLSHarness { h, pki in
            let tap = try WireTap(to: h.bound.tcpPort!)
            defer { tap.close() }
            do {
                let c = try await SynthClient.connect(.tls(host: "127.0.0.1", port: tap.port), apiKey: "sk_live_never_sent", tls: TLSOptions(caFile: pki.otherCA))
                _ = try? await c.unary(Methods.health, PBHealthRequest())
                await c.close()
                Issue.record("a certificate signed by another CA was trusted")
            } catch let e as ClientError {
                #expect(e.code == .unavailable && e.status.message.contains("TLS handshake") && e.status.message.lowercased().contains("certificate"), "\(e)")
            }
            #expect(!tap.contains("sk_live_never_sent"))
            // Plain TCP against the TLS port gets nowhere either.
            let plain = try await SynthClient.connect(.tcp(host: "127.0.0.1", port: h.bound.tcpPort!))
            await #expect(throws: ClientError.self) { _ = try await plain.unary(Methods.health, PBHealthRequest(), timeout: .seconds(5)) }
            await plain.close()
        }
    }

    @Test func mutualTLSWantsACertificateFromTheRightCA() async throws {
        try await Self.withTLSHarness(mutual: true) { h, pki in
            let key = try h.org("acme")
            let address = Address.tls(host: "127.0.0.1", port: h.bound.tcpPort!)
            let good = try await SynthClient.connect(address, apiKey: key, tls: TLSOptions(caFile: pki.ca, certificateFile: pki.clientCert, privateKeyFile: pki.clientKey))
            #expect(try await good.unary(Methods.listJobs, PBListJobsRequest()).jobs.isEmpty)
            await good.close()
            for (name, options) in [("no certificate", TLSOptions(caFile: pki.ca)),
                                    ("a certificate of another CA", TLSOptions(caFile: pki.ca, certificateFile: pki.strangerCert, privateKeyFile: pki.strangerKey))] {
                do {
                    let c = try await SynthClient.connect(address, apiKey: key, tls: options)
                    defer { Task { await c.close() } }
                    _ = try await c.unary(Methods.listJobs, PBListJobsRequest(), timeout: .seconds(5))
                    Issue.record("\(name) was let in")
                } catch let e as ClientError {
                    // What the server said: it wants a certificate, or does not know the one shown.
                    let why = e.status.message.lowercased()
                    #expect(e.code == .unavailable && (why.contains("certificate") || why.contains("unknown_ca")), "\(name): \(e)")
                }
            }
            // A client certificate without its key is a usage error, said before connecting.
            await #expect(throws: ClientError.self) {
                _ = try await SynthClient.connect(address, apiKey: key, tls: TLSOptions(caFile: pki.ca, certificateFile: pki.clientCert))
            }
        }
    }

    /// What crosses the network: over TLS neither the key nor a record is in it; over plain TCP
    /// (the control) both are.
    @Test func noKeyAndNoRecordCrossTheWireInClearText() async throws {
        try await Self.withTLSHarness { h, pki in
            let key = try h.org("acme")
            let local = try await h.client(key)
            let job = try await h.generate(local, count: 5)
            _ = try await h.waitForEnd(local, job.jobID)
            let stored = try h.store.records(jobID: job.jobID, after: 0, limit: 10)
            let text = try #require(try JSONSerialization.jsonObject(with: Data(stored[0].json)) as? [String: Any])
            let output = String((text["output"] as? String ?? "").prefix(40))
            #expect(output.count == 40)
            await local.close()

            let tap = try WireTap(to: h.bound.tcpPort!)
            defer { tap.close() }
            let client = try await SynthClient.connect(.tls(host: "127.0.0.1", port: tap.port), apiKey: key, tls: TLSOptions(caFile: pki.ca))
            var lines = 0
            for try await e in client.stream(Methods.watchJob, PBWatchJobRequest.with { $0.jobID = job.jobID }) {
                if case .record = e.event { lines += 1 }
            }
            await client.close()
            #expect(lines == 5 && tap.bytes.count > 2000)
            #expect(!tap.contains(key) && !tap.contains(output) && !tap.contains("instruction"), "clear text on the wire")
        }
        // The control: the same watch over plain TCP shows both.
        try await withHarness { h in
            let key = try h.org("acme")
            let local = try await h.client(key)
            let job = try await h.generate(local, count: 2)
            _ = try await h.waitForEnd(local, job.jobID)
            await local.close()
            let tap = try WireTap(to: h.bound.tcpPort!)
            defer { tap.close() }
            let client = try await SynthClient.connect(.tcp(host: "127.0.0.1", port: tap.port), apiKey: key)
            for try await _ in client.stream(Methods.watchJob, PBWatchJobRequest.with { $0.jobID = job.jobID }) {}
            await client.close()
            #expect(tap.contains(key) && tap.contains("instruction"))
        }
    }

    /// Plain TCP on an address other machines reach is refused unless insecure_tcp says so.
    @Test func plainTCPOffLoopbackNeedsToBeAskedFor() async throws {
        try await withHarness { h in
            let logs = LogCapture()
            var config = h.serverConfig
            config.unixPath = nil
            config.tcp = "0.0.0.0:0"
            let core = JobService(store: h.store, engine: h.engine, validator: Validator(), logger: logs.logger())
            do {
                _ = try await Server(config: config, core: core, logger: logs.logger()).start()
                Issue.record("plain TCP on 0.0.0.0 started")
            } catch let e as ServerStartError {
                #expect(e.description.contains("without TLS") && e.description.contains("--insecure-tcp"), "\(e)")
            }
            config.insecureTCP = true
            let server = Server(config: config, core: core, logger: logs.logger())
            _ = try await server.start()
            #expect(logs.text.contains("without TLS (--insecure-tcp)"))
            await server.stop()
            // Loopback needs no TLS.
            config.insecureTCP = false
            config.tcp = "127.0.0.1:0"
            let loopback = Server(config: config, core: core, logger: logs.logger())
            _ = try await loopback.start()
            await loopback.stop()
        }
    }

    /// SIGHUP reloads the certificate: new connections get the new one, and a stream that was open
    /// on the old one carries on to its end.
    @Test func sighupReloadsTheCertificateWithoutDroppingStreams() async throws {
        let (dir, fake, config, key) = try await ProcessTests.setUp(latencyMs: 40, concurrency: 2)
        defer {
            fake.stop()
            try? FileManager.default.removeItem(atPath: dir)
        }
        let pki = try await testThreads.run { try TestPKI.make(in: dir) }
        let live = (cert: dir + "/live.pem", key: dir + "/live.key")
        try FileManager.default.copyItem(atPath: pki.serverCert, toPath: live.cert)
        try FileManager.default.copyItem(atPath: pki.serverKey, toPath: live.key)
        var file = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: config))) as? [String: Any])
        file["server"] = ["rate_limit_per_minute": 0, "tcp": "127.0.0.1:0",
                          "tls": ["certificate_chain": live.cert, "private_key": live.key]] as [String: Any]
        try JSONSerialization.data(withJSONObject: file).write(to: URL(fileURLWithPath: config))
        let synthd = try await ProcessTests.Synthd.start(data: dir + "/data", socket: dir + "/s.sock", config: config)
        let port = try #require(synthd.tcpPort)
        let address = Address.tls(host: "127.0.0.1", port: port)

        let client = try await SynthClient.connect(address, apiKey: key, tls: TLSOptions(caFile: pki.ca))
        let job = try await client.unary(Methods.generate, ProcessTests.supportJob(count: 150)).job
        let counted = Task { () throws -> Int in
            var n = 0
            for try await e in client.stream(Methods.watchJob, PBWatchJobRequest.with { $0.jobID = job.jobID }) {
                if case .record = e.event { n += 1 }
            }
            return n
        }
        try await Task.sleep(for: .milliseconds(500))
        // Renewal: new files in place, then SIGHUP.
        for (from, to) in [(pki.renewedCert, live.cert), (pki.renewedKey, live.key)] {
            try FileManager.default.removeItem(atPath: to)
            try FileManager.default.copyItem(atPath: from, toPath: to)
        }
        kill(synthd.process.processIdentifier, SIGHUP)
        let renewed = try await withTimeout(10, "the new certificate") {
            while true {
                if let c = try? await SynthClient.connect(address, apiKey: key, tls: TLSOptions(caFile: pki.otherCA)) { return c }
                try await Task.sleep(for: .milliseconds(100))
            }
        }
        #expect(try await renewed.unary(Methods.getJob, PBGetJobRequest.with { $0.jobID = job.jobID }).job.jobID == job.jobID)
        await renewed.close()
        await #expect(throws: ClientError.self) { _ = try await SynthClient.connect(address, apiKey: key, tls: TLSOptions(caFile: pki.ca)) }
        // The stream opened before the reload saw the whole job.
        #expect(try await counted.value == 150)
        await client.close()
        #expect(try await synthd.stop(SIGTERM) == 0)
    }

    /// On one machine: the data directory is the owner's alone, and the socket too unless a group
    /// is named for it.
    @Test func theDataDirectoryAndTheSocketAreOwnerOnlyUnlessAGroupIsNamed() async throws {
        let dir = "/tmp/sdm-" + String(UUID().uuidString.prefix(8))
        defer { try? FileManager.default.removeItem(atPath: dir) }
        _ = try Store(path: dir + "/fresh/data")
        var st = stat()
        #expect(stat(dir + "/fresh/data", &st) == 0 && st.st_mode & 0o777 == 0o700, "\(String(st.st_mode & 0o777, radix: 8))")
        let entry = try #require(getgrgid(getgid())).pointee
        let name = String(cString: entry.gr_name), gid = entry.gr_gid
        try await withHarness(server: { $0.unixGroup = name }) { h in
            var s = stat()
            #expect(stat(h.bound.unixPath!, &s) == 0 && s.st_mode & 0o777 == 0o660 && s.st_gid == gid)
        }
        try await withHarness { h in
            var s = stat()
            #expect(stat(h.bound.unixPath!, &s) == 0 && s.st_mode & 0o777 == 0o600)
            var config = h.serverConfig
            config.unixPath = dir + "/g.sock"
            config.tcp = nil
            config.unixGroup = "no-such-group-here"
            let core = JobService(store: h.store, engine: h.engine, validator: Validator(), logger: h.logs.logger())
            do {
                _ = try await Server(config: config, core: core, logger: h.logs.logger()).start()
                Issue.record("a socket group that does not exist was taken")
            } catch let e as ServerStartError {
                #expect(e.description.contains("no group no-such-group-here"))
            }
        }
    }
}
