import CLMDB
import Foundation
import SynthConcurrency

/// One LMDB environment: the data directory's `data.mdb` and its named tables.
///
/// Transactions are synchronous closures: they commit when the closure returns and abort when it
/// throws, so they can never span an `await`. Writes are serialised by one lock; reads run in
/// parallel (the environment is opened with MDB_NOTLS, so a read transaction is not tied to a thread).
///
/// Unchecked: the LMDB environment and the map's resize lock are C pointers, which LMDB and
/// pthreads make safe to share across threads under the rules above; `dbis` is set once in init.
public final class Store: @unchecked Sendable {
    /// The named tables. `mdb_stat -a DATADIR` lists them.
    public enum Table: String, CaseIterable, Sendable {
        case meta, orgs, keys, keyIDs = "key_ids", jobs, jobIndex = "job_index", records, events, usage
        case idempotency, manifests
    }

    public let path: String
    private let env: OpaquePointer
    private var dbis: [Table: MDB_dbi] = [:]
    private let writeLock = NSLock()
    /// Exports of finished jobs loaded lately (RecordExport.swift).
    let exports = ExportCache()
    // Readers hold it shared; a map resize holds it exclusively (LMDB requires no live transaction
    // in this process while the map size changes).
    private let resizeLock = UnsafeMutablePointer<pthread_rwlock_t>.allocate(capacity: 1)
    /// Why writes fail for lack of room, from the last failed write until one succeeds.
    private let full = Locked<String?>(nil)

    /// 4 GiB of address space; the file grows only as data is written, and the map doubles when full.
    public static let defaultMapSize = 4 << 30

    /// Opens (creating if needed) the environment in directory `path`.
    public init(path: String, initialMapSize: Int = Store.defaultMapSize) throws {
        self.path = path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        var env: OpaquePointer?
        try StoreError.check(mdb_env_create(&env), "mdb_env_create")
        guard let env else { throw StoreError(.lmdb(-1), "mdb_env_create returned no environment") }
        self.env = env
        resizeLock.initialize(to: pthread_rwlock_t())
        pthread_rwlock_init(resizeLock, nil)
        // From here on a failure throws and deinit closes the environment.
        try StoreError.check(mdb_env_set_maxdbs(env, 32), "mdb_env_set_maxdbs")
        try StoreError.check(mdb_env_set_maxreaders(env, 510), "mdb_env_set_maxreaders")
        // Never shrink a map another process already grew.
        let existing = (try? FileManager.default.attributesOfItem(atPath: path + "/data.mdb")[.size] as? Int) ?? 0
        try StoreError.check(mdb_env_set_mapsize(env, max(initialMapSize, existing)), "mdb_env_set_mapsize")
        try StoreError.check(mdb_env_open(env, path, UInt32(MDB_NOTLS), 0o600), "mdb_env_open \(path)")
        // A file shorter than its own meta pages say would be served until the first read of a
        // page past its end, which ends the process (SIGBUS): refuse it now.
        try Self.checkLength(env, file: path + "/data.mdb")
        // Readers left behind by a killed process would pin old pages forever.
        var dead: Int32 = 0
        mdb_reader_check(env, &dead)
        try write { txn in
            for table in Table.allCases {
                var dbi = MDB_dbi()
                try StoreError.check(mdb_dbi_open(txn.txn, table.rawValue, UInt32(MDB_CREATE), &dbi), "mdb_dbi_open \(table.rawValue)")
                self.dbis[table] = dbi
            }
        }
        migration = try migrate()
    }

    // MARK: - the stored format

    /// The format this synthd writes and reads. Each change of what is stored adds one, with its
    /// step in `migrations`; an older store is brought up to it at open, in one transaction.
    ///
    /// 1: the first, which did not record its version (every store written before 0.3.0).
    /// 2: the version is recorded (`meta` / `format_version`).
    public static let formatVersion: UInt32 = 2

    /// The steps, by the version they start from: each brings the store one version up.
    static let migrations: [UInt32: @Sendable (Transaction) throws -> Void] = [
        // 1 -> 2: nothing to rewrite; the version is recorded from now on.
        1: { _ in },
    ]

    static let formatKey = Array("format_version".utf8)

    /// What opening did: nil when the store was already in this format (or new), else the
    /// versions it was brought from and to.
    public private(set) var migration: (from: UInt32, to: UInt32)?

    /// The store's recorded format version; a store that has data and no record is version 1.
    public func storedFormatVersion() throws -> UInt32 {
        try read { txn in try Self.recordedVersion(txn) ?? (try Self.isEmpty(txn) ? Self.formatVersion : 1) }
    }

    static func recordedVersion(_ txn: Transaction) throws -> UInt32? {
        guard let bytes = try txn.get(.meta, formatKey), bytes.count == 4 else { return nil }
        return bytes.withUnsafeBytes { UInt32(bigEndian: $0.loadUnaligned(as: UInt32.self)) }
    }

    static func isEmpty(_ txn: Transaction) throws -> Bool {
        for table in [Table.orgs, .jobs, .keys] {
            var any = false
            try txn.scan(table, prefix: []) { _, _ in
                any = true
                return false
            }
            if any { return false }
        }
        return true
    }

    /// Brings the store to `formatVersion`, or refuses one written by a newer synthd.
    private func migrate() throws -> (from: UInt32, to: UInt32)? {
        try write { txn in
            let recorded = try Self.recordedVersion(txn)
            let from = try recorded ?? (Self.isEmpty(txn) ? Self.formatVersion : 1)
            if from > Self.formatVersion {
                throw StoreError(.newerFormat, "it is in store format \(from), written by a newer synthd; this synthd reads formats up to "
                                 + "\(Self.formatVersion). Run the newer synthd, or restore a backup made by this one")
            }
            var v = from
            while v < Self.formatVersion {
                guard let step = Self.migrations[v] else { throw StoreError(.corrupt, "no migration from store format \(v)") }
                try step(txn)
                v += 1
            }
            if recorded != Self.formatVersion {
                try txn.put(.meta, Self.formatKey, withUnsafeBytes(of: Self.formatVersion.bigEndian) { Array($0) })
            }
            return from < Self.formatVersion ? (from, Self.formatVersion) : nil
        }
    }

    /// Compares `data.mdb`'s length with the last page its newest meta page (as LMDB read it) uses.
    static func checkLength(_ env: OpaquePointer, file: String) throws {
        var info = MDB_envinfo()
        var stat = MDB_stat()
        try StoreError.check(mdb_env_info(env, &info), "mdb_env_info")
        try StoreError.check(mdb_env_stat(env, &stat), "mdb_env_stat")
        let needed = (Int(info.me_last_pgno) + 1) * Int(stat.ms_psize)
        guard let size = (try? FileManager.default.attributesOfItem(atPath: file))?[.size] as? Int else { return }
        if size < needed {
            throw StoreError(.corrupt, "\(file) is damaged: it is \(size) bytes, but its meta page says it uses \(needed) "
                             + "(\(info.me_last_pgno + 1) pages of \(stat.ms_psize) bytes); it was cut short. Restore it from a backup")
        }
    }

    deinit {
        mdb_env_close(env)
        pthread_rwlock_destroy(resizeLock)
        resizeLock.deallocate()
    }

    func dbi(_ table: Table) -> MDB_dbi { dbis[table]! }

    /// Runs `body` with the environment, outside any map resize.
    func withEnvironment<T>(_ body: (OpaquePointer) -> T) -> T {
        pthread_rwlock_rdlock(resizeLock)
        defer { pthread_rwlock_unlock(resizeLock) }
        return body(env)
    }

    /// Runs `body` in a read-only transaction.
    public func read<T>(_ body: (Transaction) throws -> T) throws -> T {
        pthread_rwlock_rdlock(resizeLock)
        defer { pthread_rwlock_unlock(resizeLock) }
        let txn = try begin(flags: UInt32(MDB_RDONLY))
        defer { mdb_txn_abort(txn) }
        return try body(Transaction(store: self, txn: txn))
    }

    /// Runs `body` in the write transaction; commits when it returns, aborts when it throws.
    /// A full map is grown and the whole closure run again, so `body` must not have side effects
    /// outside the transaction.
    public func write<T>(_ body: (Transaction) throws -> T) throws -> T {
        writeLock.lock()
        defer { writeLock.unlock() }
        while true {
            do {
                pthread_rwlock_rdlock(resizeLock)
                defer { pthread_rwlock_unlock(resizeLock) }
                let txn = try begin(flags: 0)
                let result: T
                do {
                    result = try body(Transaction(store: self, txn: txn))
                } catch {
                    mdb_txn_abort(txn)
                    throw error
                }
                // mdb_txn_commit frees the transaction whether or not it succeeds: never abort it after.
                try StoreError.check(mdb_txn_commit(txn), "mdb_txn_commit")
                full.withLock { $0 = nil }
                return result
            } catch let error as StoreError where error.code == .lmdb(MDB_MAP_FULL) {
                do {
                    try grow()
                } catch {
                    throw noSpace("the database map is full and cannot grow (\(error))")
                }
            } catch let error as StoreError where error.code == .lmdb(ENOSPC) || error.code == .lmdb(EDQUOT) {
                throw noSpace("no space is left on the data directory's file system (\(error.code == .lmdb(ENOSPC) ? "ENOSPC" : "EDQUOT"))")
            } catch let error as StoreError where error.code == .lmdb(EIO) {
                // LMDB reports a short write as EIO: on a full file system the last pages do not fit.
                // Either way the commit left nothing behind, and waiting is the safe answer.
                throw noSpace(freeBytes() < 4 << 20 ? "no space is left on the data directory's file system (a short write)"
                                                     : "a write to the data directory failed (EIO)")
            }
        }
    }

    private func noSpace(_ why: String) -> StoreError {
        full.withLock { $0 = why }
        return StoreError(.noSpace, why)
    }

    /// Bytes free on the data directory's file system for this user.
    func freeBytes() -> Int {
        var s = statvfs()
        guard statvfs(path, &s) == 0 else { return Int.max }
        return Int(s.f_bavail) &* Int(s.f_frsize)
    }

    /// Why writes are failing for lack of room, or nil when the last write went through.
    public var spaceProblem: String? { full.withLock { $0 } }

    /// Whether a write of `bytes` goes through now: a probe entry written and removed again, each
    /// in its own commit. A paused job asks this before it tries again.
    public func hasRoom(for bytes: Int = 256 << 10) -> Bool {
        let key = Keys.text("space_probe")
        do {
            _ = try write { txn in try txn.put(.meta, key, [UInt8](repeating: 0, count: bytes)) }
            try write { txn in try txn.delete(.meta, key) }
            return true
        } catch {
            return false
        }
    }

    private func begin(flags: UInt32) throws -> OpaquePointer {
        var txn: OpaquePointer?
        var rc = mdb_txn_begin(env, nil, flags, &txn)
        if rc == MDB_MAP_RESIZED {
            // Another process grew the map: adopt its size and try again.
            mdb_env_set_mapsize(env, 0)
            rc = mdb_txn_begin(env, nil, flags, &txn)
        }
        try StoreError.check(rc, "mdb_txn_begin")
        return txn!
    }

    private func grow() throws {
        pthread_rwlock_wrlock(resizeLock)
        defer { pthread_rwlock_unlock(resizeLock) }
        var info = MDB_envinfo()
        mdb_env_info(env, &info)
        try StoreError.check(mdb_env_set_mapsize(env, info.me_mapsize * 2), "mdb_env_set_mapsize")
    }

    /// Flushes to disk; commits already are durable, this is for shutdown.
    public func sync() {
        mdb_env_sync(env, 1)
    }
}
