import CLMDB
import Foundation
import SynthProto

extension Store {
    /// The map's size and the bytes of its pages in use (up to the last page written), for the metrics.
    public func mapUse() -> (mapSize: Int, used: Int) {
        var info = MDB_envinfo()
        var stat = MDB_stat()
        withEnvironment { env in
            mdb_env_info(env, &info)
            mdb_env_stat(env, &stat)
        }
        return (Int(info.me_mapsize), (Int(info.me_last_pgno) + 1) * Int(stat.ms_psize))
    }

    /// How many jobs the store holds in each status. Reads every job: the metrics call it at most
    /// every few seconds.
    public func jobCountsByStatus() throws -> [String: Int] {
        try read { txn in
            var counts: [String: Int] = [:]
            try txn.scan(.jobs, prefix: []) { _, value in
                if let job = try? PBStoredJob(serializedBytes: Array(value)) { counts[job.job.status, default: 0] += 1 }
                return true
            }
            return counts
        }
    }

    /// The bytes of the export files on disk.
    public func exportFileBytes() -> Int {
        let dir = path + "/exports"
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: dir) else { return 0 }
        var total = 0
        for name in names {
            var st = stat()
            if lstat(dir + "/" + name, &st) == 0 { total += Int(st.st_size) }
        }
        return total
    }
}
