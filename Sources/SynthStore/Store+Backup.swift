import CLMDB
import Foundation

extension Store {
    /// A consistent, compacted copy of the store in `directory` (which must not hold one already):
    /// LMDB's copy reads one snapshot in a read transaction, so a running server goes on writing
    /// meanwhile, and the copy leaves out free pages. `synthd serve --data DIRECTORY` starts from it.
    /// Export files are not copied: they are made again from the records when read.
    public func backup(to directory: String) throws {
        let fm = FileManager.default
        if fm.fileExists(atPath: directory + "/data.mdb") {
            throw StoreError(.conflict, "\(directory) already holds a store (data.mdb); back up into a new directory")
        }
        try fm.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let rc = withEnvironment { env in mdb_env_copy2(env, directory, UInt32(MDB_CP_COMPACT)) }
        if rc != 0 {
            try? fm.removeItem(atPath: directory + "/data.mdb")
            throw StoreError(.lmdb(rc), "backup to \(directory): \(String(cString: mdb_strerror(rc)))")
        }
    }
}
