import CLMDB
import SwiftProtobuf

/// A storage failure: an LMDB return code with LMDB's own text, or stored bytes that do not decode.
public struct StoreError: Error, Sendable, CustomStringConvertible {
    public enum Code: Sendable, Equatable {
        case lmdb(Int32)
        case corrupt
        case conflict
        case notFound
        /// A file beside the database (an export) could not be read or written.
        case io
        /// Another server holds the data directory.
        case locked
        /// A write found no room: the file system is full (ENOSPC, EDQUOT) or the map cannot grow.
        case noSpace
        /// The store was written by a newer synthd, in a format this one does not know.
        case newerFormat
    }

    public var code: Code
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }

    /// The one place an LMDB return code becomes a Swift error.
    static func check(_ rc: Int32, _ what: @autoclosure () -> String) throws {
        guard rc != 0 else { return }
        throw StoreError(.lmdb(rc), "\(what()): \(String(cString: mdb_strerror(rc)))")
    }
}

extension Store {
    /// Decodes a stored message; bytes that do not decode are `.corrupt`, naming `what`.
    static func decode<M: SwiftProtobuf.Message>(_ type: M.Type, _ bytes: UnsafeRawBufferPointer, _ what: @autoclosure () -> String) throws -> M {
        do {
            return try M(serializedBytes: Array(bytes))
        } catch {
            throw StoreError(.corrupt, "\(what()) is damaged: it does not decode as \(M.protoMessageName)")
        }
    }
}
