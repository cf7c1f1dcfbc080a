import Crypto
import SynthProto
import SwiftProtobuf

/// A key just made: the secret, shown once, and what is stored about it.
public struct IssuedKey: Sendable {
    public let key: String
    public let info: PBStoredKey
}

extension Store {
    /// At most this many keys may be active in one org.
    public static let maxActiveKeys = 10
    /// How stale `last_used` may get before an authenticated call rewrites it.
    static let lastUsedResolutionMillis: Int64 = 60_000

    static func digest(_ key: String) -> [UInt8] { Array(SHA256.hash(data: Array(key.utf8))) }

    /// Makes a key for `org`: `scope` "full" (or "") or "read", expiring at `expiresAtMs` (0:
    /// never). Only its SHA-256 digest is stored.
    public func createKey(org: String, name: String = "", scope: String = "", expiresAtMs: Int64 = 0) throws -> IssuedKey {
        try write { txn in
            guard try txn.get(.orgs, Keys.text(org)) != nil else {
                throw StoreError(.notFound, "org \(org) does not exist")
            }
            let now = Clock.nowMillis()
            let active = try keys(org: org, txn: txn).filter { !$0.revoked && !Self.isExpired($0, now: now) }.count
            guard active < Self.maxActiveKeys else {
                throw StoreError(.conflict, "org \(org) already has \(active) active keys, the maximum is \(Self.maxActiveKeys); revoke one first")
            }
            let secret = Identifiers.newAPIKey()
            var info = PBStoredKey()
            info.keyID = Identifiers.newKeyID()
            info.org = org
            info.prefix = String(secret.prefix(12))
            info.name = name
            info.scope = scope == "full" ? "" : scope
            info.expiresAtMs = expiresAtMs
            info.createdAtMs = Clock.nowMillis()
            let digest = Self.digest(secret)
            try txn.put(.keys, digest, try info.serializedBytes())
            try txn.put(.keyIDs, Keys.join(Keys.text(org), Keys.text(info.keyID)), digest)
            return IssuedKey(key: secret, info: info)
        }
    }

    /// The key record for `key` when it is known and not revoked.
    /// The key's record, or nil for an unknown or revoked key. A read only: `recordUse` notes
    /// when it was used, once `useIsDue` says so.
    public func authenticate(key: String) throws -> PBStoredKey? {
        let digest = Self.digest(key)
        let found: PBStoredKey? = try read { txn in
            guard let info = try txn.message(.keys, digest, as: PBStoredKey.self),
                  let recorded = try txn.get(.keyIDs, Keys.join(Keys.text(info.org), Keys.text(info.keyID)))
            else { return nil }
            // The lookup is by digest, so its timing says nothing about the secret; the digest the
            // key's own record holds is then compared in constant time as well.
            return constantTimeEquals(recorded, digest) ? info : nil
        }
        guard let info = found, !info.revoked else { return nil }
        return info
    }

    /// Whether a key's time is up.
    public static func isExpired(_ info: PBStoredKey, now: Int64 = Clock.nowMillis()) -> Bool {
        info.expiresAtMs > 0 && now >= info.expiresAtMs
    }

    /// Whether the key's last use is older than the resolution it is kept at.
    public static func useIsDue(_ info: PBStoredKey, now: Int64 = Clock.nowMillis()) -> Bool {
        now - info.lastUsedMs > lastUsedResolutionMillis
    }

    /// Notes that `key` was used now (a write transaction: call it off the cooperative pool).
    public func recordUse(key: String) throws {
        let digest = Self.digest(key)
        let now = Clock.nowMillis()
        try write { txn in
            // Re-read: a revoke may have landed in between.
            guard var current = try txn.message(.keys, digest, as: PBStoredKey.self), !current.revoked else { return }
            current.lastUsedMs = now
            try txn.put(.keys, digest, try current.serializedBytes())
        }
    }

    public func keys(org: String) throws -> [PBStoredKey] {
        try read { txn in try keys(org: org, txn: txn) }
    }

    func keys(org: String, txn: Transaction) throws -> [PBStoredKey] {
        var digests: [[UInt8]] = []
        try txn.scan(.keyIDs, prefix: Keys.text(org) + [0]) { _, v in
            digests.append(Array(v))
            return true
        }
        return try digests.compactMap { d in try txn.message(.keys, d, as: PBStoredKey.self) }
            .sorted { $0.createdAtMs < $1.createdAtMs }
    }

    /// Revokes one of `org`'s keys; nil when `org` has no such key.
    public func revokeKey(org: String, keyID: String) throws -> PBStoredKey? {
        try write { txn in
            guard let digest = try txn.get(.keyIDs, Keys.join(Keys.text(org), Keys.text(keyID))),
                  var info = try txn.message(.keys, digest, as: PBStoredKey.self)
            else { return nil }
            if !info.revoked {
                info.revoked = true
                info.revokedAtMs = Clock.nowMillis()
                try txn.put(.keys, digest, try info.serializedBytes())
            }
            return info
        }
    }

    /// Whether the key with this id is still active: not revoked, not expired (used to close the
    /// streams of a key that stopped working).
    public func isActive(org: String, keyID: String) throws -> Bool {
        try read { txn in
            guard let digest = try txn.get(.keyIDs, Keys.join(Keys.text(org), Keys.text(keyID))),
                  let info = try txn.message(.keys, digest, as: PBStoredKey.self)
            else { return false }
            return !info.revoked && !Self.isExpired(info)
        }
    }
}

/// Compares two byte strings in time that depends only on their lengths.
public func constantTimeEquals(_ a: [UInt8], _ b: [UInt8]) -> Bool {
    guard a.count == b.count else { return false }
    var diff: UInt8 = 0
    for i in 0..<a.count { diff |= a[i] ^ b[i] }
    return diff == 0
}
