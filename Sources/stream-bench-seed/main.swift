// stream-bench-seed: stores one finished instruction_v1 job of N records straight into a data
// directory, through the same Store calls the engine makes (records and their events in batches,
// then the manifest), and writes the same record bytes as JSONL for the local-file baselines of
// tools/bench-stream. Generating a million records through a provider would take hours; what the
// stream benchmark measures is reading them back.
//
//   stream-bench-seed DATA_DIR RECORDS JSONL_OUT [BYTES_PER_RECORD]
//
// Prints "JOB <id>" and "KEY <api key>" (a new key of org "bench") on stdout.
import Foundation
import SynthEngine
import SynthProto
import SynthSpec
import SynthStore

let args = CommandLine.arguments
guard args.count >= 4, let total = Int(args[2]), total > 0 else {
    FileHandle.standardError.write(Data("usage: stream-bench-seed DATA_DIR RECORDS JSONL_OUT [BYTES_PER_RECORD]\n".utf8))
    exit(2)
}
let target = args.count >= 5 ? Int(args[4]) ?? 500 : 500
let store = try Store(path: args[1])
if try store.org(named: "bench") == nil { _ = try store.createOrg(name: "bench", plan: "payg", balanceMicroUSD: 1_000_000_000) }
let key = try store.createKey(org: "bench", name: "stream-bench").key

var request = PBJobRequest()
request.schema = "instruction_v1"
request.domain = "customer support for a SaaS product"
request.count = Int64(total)
request.model = "fast"
let effective = Planner.effective(request)
var job = PBStoredJob()
job.org = "bench"
job.request = effective
job.plan = Planner.plan(effective)
job.seed = 7
job.createdAtMs = Clock.nowMillis()
job.job.jobID = Identifiers.newJobID()
job.job.status = JobStatus.running.rawValue
job.job.schema = effective.schema
job.job.domain = effective.domain
job.job.tier = job.plan.tier
job.job.count = effective.count
job.job.createdAt = Clock.rfc3339(job.createdAtMs)
let jobID = job.job.jobID
_ = try store.insertJob(job)

let words = ["account", "billing", "invoice", "password", "reset", "subscription", "upgrade", "export", "report", "dashboard",
             "customer", "ticket", "refund", "integration", "webhook", "workspace", "permission", "admin", "login", "email"]
func text(_ seq: Int, _ part: Int, _ length: Int) -> String {
    var s = ""
    var i = seq &* 31 &+ part &* 7
    while s.utf8.count < length {
        s += words[i % words.count] + " "
        i = i &* 1_103_515_245 &+ 12345
        i &= 0x7fff_ffff
    }
    return String(s.prefix(length))
}
func record(_ seq: UInt64) -> [UInt8] {
    let n = Int(seq)
    // Sized so that the whole line comes to about `target` bytes.
    let body = max(60, target - 280)
    let line = "{\"instruction\":\"How do I \(text(n, 0, body / 4))?\",\"input\":\"\(text(n, 1, body / 4))\","
        + "\"output\":\"\(text(n, 2, body / 2)).\",\"metadata\":{\"category\":\"general\"},"
        + "\"provenance\":{\"job_id\":\"\(jobID)\",\"schema\":\"instruction_v1\",\"domain\":\"customer support for a SaaS product\","
        + "\"generated_at\":\"2026-11-25T00:00:00Z\",\"model\":\"bench\",\"seq\":\(seq)}}"
    return Array(line.utf8)
}

_ = FileManager.default.createFile(atPath: args[3], contents: nil)
let out = try FileHandle(forWritingTo: URL(fileURLWithPath: args[3]))
var written = 0
while written < total {
    let n = min(1000, total - written)
    var lines: [UInt8] = []
    try store.appendRecords(jobID: jobID, count: n, build: { _, seq in
        let r = record(seq)
        lines += r
        lines.append(10)
        return r
    }) { job, _ in
        job.job.accepted += Int64(n)
        job.job.generated += Int64(n)
    }
    out.write(Data(lines))
    written += n
}
try out.close()
let finished = try store.job(id: jobID)!
let splits = try Manifest.splitInfos(job: finished, store: store)
try store.endJob(id: jobID, { job in
    job.job.status = JobStatus.succeeded.rawValue
    job.finishedAtMs = Clock.nowMillis()
    job.job.finishedAt = Clock.rfc3339(job.finishedAtMs)
}, manifest: { job in Manifest.build(job: job, splits: splits.map(\.info)) },
   bill: { job in (job.job.accepted, 0, 0) })
store.sync()
print("JOB \(jobID)")
print("KEY \(key)")
