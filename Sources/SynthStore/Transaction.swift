import CLMDB
import SwiftProtobuf

/// A live LMDB transaction. Only valid inside the `Store.read` / `Store.write` closure that made it.
public struct Transaction {
    let store: Store
    let txn: OpaquePointer

    init(store: Store, txn: OpaquePointer) {
        self.store = store
        self.txn = txn
    }

    /// The value stored under `key`, copied out; nil when there is none.
    public func get(_ table: Store.Table, _ key: [UInt8]) throws -> [UInt8]? {
        try withValue(table, key) { Array($0) }
    }

    /// Calls `body` with the value stored under `key`, in place (borrowed for the call only);
    /// nil when there is none.
    public func withValue<T>(_ table: Store.Table, _ key: [UInt8], _ body: (UnsafeRawBufferPointer) throws -> T) throws -> T? {
        try key.withUnsafeBytes { kb in
            var k = MDB_val(mv_size: kb.count, mv_data: UnsafeMutableRawPointer(mutating: kb.baseAddress))
            var v = MDB_val()
            let rc = mdb_get(txn, store.dbi(table), &k, &v)
            if rc == MDB_NOTFOUND { return nil }
            try StoreError.check(rc, "mdb_get \(table.rawValue)")
            return try body(UnsafeRawBufferPointer(start: v.mv_data, count: v.mv_size))
        }
    }

    /// The message stored under `key`, decoded; nil when there is none. Bytes that do not decode
    /// are `StoreError(.corrupt)` naming the table and the key, never a half-read message.
    public func message<M: SwiftProtobuf.Message>(_ table: Store.Table, _ key: [UInt8], as type: M.Type) throws -> M? {
        // A key's entry is named by what it is: its key is the digest of a secret.
        try withValue(table, key) { try Store.decode(M.self, $0, table == .keys ? "an API key entry" : "the \(table.rawValue) entry \(Keys.printable(key))") }
    }

    public func put(_ table: Store.Table, _ key: [UInt8], _ value: [UInt8]) throws {
        try key.withUnsafeBytes { kb in
            try value.withUnsafeBytes { vb in
                var k = MDB_val(mv_size: kb.count, mv_data: UnsafeMutableRawPointer(mutating: kb.baseAddress))
                var v = MDB_val(mv_size: vb.count, mv_data: UnsafeMutableRawPointer(mutating: vb.baseAddress))
                try StoreError.check(mdb_put(txn, store.dbi(table), &k, &v, 0), "mdb_put \(table.rawValue)")
            }
        }
    }

    /// Removes `key`; returns whether it was there.
    @discardableResult
    public func delete(_ table: Store.Table, _ key: [UInt8]) throws -> Bool {
        try key.withUnsafeBytes { kb in
            var k = MDB_val(mv_size: kb.count, mv_data: UnsafeMutableRawPointer(mutating: kb.baseAddress))
            let rc = mdb_del(txn, store.dbi(table), &k, nil)
            if rc == MDB_NOTFOUND { return false }
            try StoreError.check(rc, "mdb_del \(table.rawValue)")
            return true
        }
    }

    /// Visits the entries whose key starts with `prefix`, from the first key at or after `start`
    /// (default: `prefix`), in key order, until `body` returns false. Keys and values are borrowed:
    /// copy what must outlive the call.
    public func scan(
        _ table: Store.Table,
        prefix: [UInt8],
        from start: [UInt8]? = nil,
        _ body: (UnsafeRawBufferPointer, UnsafeRawBufferPointer) throws -> Bool
    ) throws {
        var cursor: OpaquePointer?
        try StoreError.check(mdb_cursor_open(txn, store.dbi(table), &cursor), "mdb_cursor_open \(table.rawValue)")
        defer { mdb_cursor_close(cursor) }
        let first = start ?? prefix
        try first.withUnsafeBytes { sb in
            var k = MDB_val(mv_size: sb.count, mv_data: UnsafeMutableRawPointer(mutating: sb.baseAddress))
            var v = MDB_val()
            var rc = sb.count == 0 ? mdb_cursor_get(cursor, &k, &v, MDB_FIRST) : mdb_cursor_get(cursor, &k, &v, MDB_SET_RANGE)
            while rc == 0 {
                let key = UnsafeRawBufferPointer(start: k.mv_data, count: k.mv_size)
                guard key.starts(with: prefix) else { return }
                let value = UnsafeRawBufferPointer(start: v.mv_data, count: v.mv_size)
                guard try body(key, value) else { return }
                rc = mdb_cursor_get(cursor, &k, &v, MDB_NEXT)
            }
            if rc != MDB_NOTFOUND { try StoreError.check(rc, "mdb_cursor_get \(table.rawValue)") }
        }
    }
}
