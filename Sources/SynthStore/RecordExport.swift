import Foundation
import SynthConcurrency
import SynthMetrics
#if canImport(Glibc)
import Glibc
#endif

/// A finished job's records as one JSONL file in sequence order, beside an index of where each
/// record starts: `<data>/exports/<job>.jsonl` and `<job>.idx`.
///
/// It is derived data, made once a job's records can no longer change (the job has ended), and
/// LMDB stays the truth: an export that is missing, cut short or does not match the job's record
/// count is made again from LMDB, and the whole `exports/` folder may be deleted at any time. A
/// reader of a finished job is then sent the file's bytes from the page cache (sendfile), without
/// a copy of each record out of the database.
public final class RecordExport: Sendable {
    public let path: String
    /// offsets[i] is where the record with sequence number i+1 starts; offsets[count] is the size.
    let offsets: [UInt64]

    init(path: String, offsets: [UInt64]) {
        self.path = path
        self.offsets = offsets
    }

    /// How many records the file holds (sequence numbers 1...count).
    public var count: UInt64 { UInt64(offsets.count - 1) }
    /// The file's size in bytes.
    public var size: UInt64 { offsets[offsets.count - 1] }

    /// The records after `after` and at most `upTo` that fit in `maxBytes` (always at least one),
    /// and where their lines lie in the file; nil when none is left.
    public func range(after: UInt64, upTo: UInt64, maxBytes: Int) -> (first: UInt64, last: UInt64, offset: Int, length: Int)? {
        let end = Int(min(upTo, count))
        guard after < UInt64(end) else { return nil }
        let start = offsets[Int(after)]
        var lo = Int(after) + 1, hi = end
        while lo < hi {
            let mid = (lo + hi + 1) / 2
            if offsets[mid] - start <= UInt64(maxBytes) { lo = mid } else { hi = mid - 1 }
        }
        return (after + 1, UInt64(lo), Int(start), Int(offsets[lo] - start))
    }

    /// A new read-only descriptor of the file, which must still hold at least `end` bytes (a file
    /// cut short under a running server would otherwise stall sendfile); the caller closes it.
    public func open(covering end: Int) throws -> CInt {
        let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw StoreError(.io, "cannot open the export \(path): \(String(cString: strerror(errno)))") }
        var st = stat()
        guard fstat(fd, &st) == 0, Int(st.st_size) >= end, UInt64(st.st_size) == size else {
            close(fd)
            throw StoreError(.io, "the export \(path) changed on disk")
        }
        return fd
    }

    static let magic: [UInt8] = Array("SYNTHIDX".utf8)
}

/// The exports loaded lately, one lock under which exports are made, and the jobs whose export
/// could not be made lately.
final class ExportCache: Sendable {
    private let loaded = Locked<[(String, RecordExport)]>([])
    private let making = Locked<Void>(())
    private let failed = Locked<[String: ContinuousClock.Instant]>([:])
    static let keep = 4
    /// How long a job whose export could not be made is not tried again.
    static let retryAfter = Duration.seconds(60)

    func get(_ jobID: String) -> RecordExport? {
        loaded.withLock { list in list.first { $0.0 == jobID }?.1 }
    }

    func put(_ jobID: String, _ export: RecordExport) {
        loaded.withLock { list in
            list.removeAll { $0.0 == jobID }
            list.insert((jobID, export), at: 0)
            if list.count > Self.keep { list.removeLast(list.count - Self.keep) }
        }
    }

    func drop(_ jobID: String) {
        loaded.withLock { list in list.removeAll { $0.0 == jobID } }
    }

    /// Runs `body` holding the making lock; nil at once when another export is being made.
    func whileMaking<T>(_ body: () throws -> T) throws -> T? {
        try making.withLockIfAvailable { _ in try body() }
    }

    func recentlyFailed(_ jobID: String) -> Bool {
        failed.withLock { f in
            guard let at = f[jobID] else { return false }
            if ContinuousClock.now - at < Self.retryAfter { return true }
            f[jobID] = nil
            return false
        }
    }

    func noteFailure(_ jobID: String) {
        failed.withLock { f in
            if f.count > 1000 { f.removeAll() }
            f[jobID] = .now
        }
    }
}

extension Store {
    var exportDirectory: String { path + "/exports" }

    /// The export of a job whose `count` records are final (the job has ended): the one loaded
    /// lately or on disk when it is whole and holds exactly `count` records; else, when `make`,
    /// a new one made from the database. Nil when there is none to be had now: `make` is false,
    /// another export is being made, or making this one failed less than a minute ago.
    public func recordExport(jobID: String, count: UInt64, make: Bool = true) throws -> RecordExport? {
        if let e = exports.get(jobID), e.count == count { return e }
        guard !jobID.isEmpty, jobID.utf8.allSatisfy({ ($0 >= 0x61 && $0 <= 0x7A) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x5F }) else {
            throw StoreError(.corrupt, "job id \(jobID.prefix(64)) cannot name an export file")
        }
        let base = exportDirectory + "/" + jobID
        if let e = Self.loadExport(base: base, count: count) {
            exports.put(jobID, e)
            return e
        }
        guard make, !exports.recentlyFailed(jobID) else { return nil }
        return try exports.whileMaking {
            if let e = exports.get(jobID), e.count == count { return e }
            do {
                let export = try makeExport(jobID: jobID, base: base, count: count)
                exports.put(jobID, export)
                return export
            } catch {
                exports.noteFailure(jobID)
                throw error
            }
        }
    }

    /// Forgets a loaded export (its file went missing, say), so the next use loads or makes it again.
    public func forgetExport(jobID: String) {
        exports.drop(jobID)
    }

    /// The export at `base` when its index and file are whole and hold `count` records.
    static func loadExport(base: String, count: UInt64) -> RecordExport? {
        guard let index = FileManager.default.contents(atPath: base + ".idx"),
              index.count == 16 + 8 * (Int(count) + 1), index.prefix(8).elementsEqual(RecordExport.magic) else { return nil }
        var offsets = [UInt64](repeating: 0, count: Int(count) + 1)
        let stored = index.withUnsafeBytes { raw -> UInt64 in
            offsets.withUnsafeMutableBytes { out in out.copyMemory(from: UnsafeRawBufferPointer(rebasing: raw[16...])) }
            return UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
        }
        for i in offsets.indices { offsets[i] = UInt64(littleEndian: offsets[i]) }
        // Every line holds at least its newline, so the offsets rise; a damaged index is not used.
        for i in 1..<offsets.count where offsets[i] <= offsets[i - 1] { return nil }
        guard stored == count, offsets[0] == 0, offsets[Int(count)] < UInt64(Int.max),
              let size = (try? FileManager.default.attributesOfItem(atPath: base + ".jsonl"))?[.size] as? UInt64,
              size == offsets[Int(count)] else { return nil }
        return RecordExport(path: base + ".jsonl", offsets: offsets)
    }

    /// Writes the job's records 1...count, in order, to new files that replace the old ones only
    /// once they are whole and on disk.
    func makeExport(jobID: String, base: String, count: UInt64) throws -> RecordExport {
        try FileManager.default.createDirectory(atPath: exportDirectory, withIntermediateDirectories: true)
        // What a process killed while making this export left behind.
        let stale = (try? FileManager.default.contentsOfDirectory(atPath: exportDirectory)) ?? []
        for name in stale where name.hasPrefix(jobID + ".") && name.contains(".tmp.") { unlink(exportDirectory + "/" + name) }
        let tmp = "\(base).\(getpid()).tmp"
        let out = try ExportWriter(path: tmp + ".jsonl")
        var offsets: [UInt64] = [0]
        offsets.reserveCapacity(Int(count) + 1)
        var seq: UInt64 = 0
        do {
            while seq < count {
                // A read transaction per few thousand records: a long export never pins old pages.
                let before = seq
                try visitRecords(jobID: jobID, after: seq) { s, json in
                    guard s == seq + 1, s <= count else { return false }
                    try out.appendLine(json)
                    offsets.append(out.written)
                    seq = s
                    return s - before < 8192
                }
                guard seq > before else { throw StoreError(.corrupt, "job \(jobID) has no record \(seq + 1) of \(count)") }
            }
            try out.finish()
            var index = RecordExport.magic
            withUnsafeBytes(of: count.littleEndian) { index += $0 }
            offsets.withUnsafeBytes { raw in
                // Little-endian on every platform this runs on; checked, not assumed.
                precondition(UInt16(1).littleEndian == 1)
                index += raw
            }
            let ix = try ExportWriter(path: tmp + ".idx")
            try index.withUnsafeBytes { try ix.appendBytes($0) }
            try ix.finish()
            // The file first, then its index: an index on disk always describes a whole file.
            try Self.rename(tmp + ".jsonl", base + ".jsonl")
            try Self.rename(tmp + ".idx", base + ".idx")
        } catch {
            out.abandon()
            unlink(tmp + ".jsonl")
            unlink(tmp + ".idx")
            throw error
        }
        return RecordExport(path: base + ".jsonl", offsets: offsets)
    }

    static func rename(_ from: String, _ to: String) throws {
        guard Glibc.rename(from, to) == 0 else {
            throw StoreError(.io, "cannot rename \(from) to \(to): \(String(cString: strerror(errno)))")
        }
    }
}

/// Appends bytes to a new file through a 4 MiB buffer; `finish` flushes and fsyncs it.
final class ExportWriter {
    private var fd: CInt
    private var buffer: [UInt8] = []
    let path: String
    private(set) var written: UInt64 = 0

    init(path: String) throws {
        self.path = path
        fd = Glibc.open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw StoreError(.io, "cannot create \(path): \(String(cString: strerror(errno)))") }
        buffer.reserveCapacity(4 << 20)
    }

    /// Appends one line: `json` and a newline.
    func appendLine(_ json: UnsafeRawBufferPointer) throws {
        buffer.append(contentsOf: json)
        buffer.append(0x0A)
        written += UInt64(json.count + 1)
        if buffer.count >= 4 << 20 { try flush() }
    }

    /// Appends bytes as they are.
    func appendBytes(_ bytes: UnsafeRawBufferPointer) throws {
        buffer.append(contentsOf: bytes)
        written += UInt64(bytes.count)
        try flush()
    }

    private func flush() throws {
        try buffer.withUnsafeBytes { raw in
            var done = 0
            while done < raw.count {
                let n = Glibc.write(fd, raw.baseAddress! + done, raw.count - done)
                if n < 0, errno == EINTR { continue }
                guard n > 0 else { throw StoreError(.io, "cannot write \(path): \(String(cString: strerror(errno)))") }
                done += n
            }
        }
        SynthMetrics.exportWritten(bytes: buffer.count)
        buffer.removeAll(keepingCapacity: true)
    }

    func finish() throws {
        try flush()
        guard fsync(fd) == 0 else { throw StoreError(.io, "cannot sync \(path): \(String(cString: strerror(errno)))") }
        close(fd)
        fd = -1
    }

    func abandon() {
        if fd >= 0 { close(fd) }
        fd = -1
    }

    deinit { abandon() }
}
