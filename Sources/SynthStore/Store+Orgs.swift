import SynthProto
import SwiftProtobuf

extension Store {
    /// Creates an org; fails with `.conflict` when the name is taken.
    public func createOrg(name: String, plan: String = "payg", monthlyQuota: Int64 = 0, balanceMicroUSD: Int64 = 0) throws -> PBStoredOrg {
        try write { txn in
            if try txn.get(.orgs, Keys.text(name)) != nil {
                throw StoreError(.conflict, "org \(name) already exists")
            }
            var org = PBStoredOrg()
            org.name = name
            org.plan = plan
            org.monthlyQuota = monthlyQuota
            org.balanceMicroUsd = balanceMicroUSD
            org.createdAtMs = Clock.nowMillis()
            try txn.put(.orgs, Keys.text(name), try org.serializedBytes())
            return org
        }
    }

    public func org(named name: String) throws -> PBStoredOrg? {
        try read { txn in try txn.message(.orgs, Keys.text(name), as: PBStoredOrg.self) }
    }

    /// What an org was billed in a calendar month ("2026-12"), or nil when nothing was.
    public func usage(org: String, month: String) throws -> PBStoredUsage? {
        try read { txn in try txn.message(.usage, Keys.join(Keys.text(org), Keys.text(month)), as: PBStoredUsage.self) }
    }

    public func orgs() throws -> [PBStoredOrg] {
        try read { txn in
            var out: [PBStoredOrg] = []
            try txn.scan(.orgs, prefix: []) { _, v in
                out.append(try Store.decode(PBStoredOrg.self, v, "an org"))
                return true
            }
            return out
        }
    }
}

extension Store {
    /// Changes an org in one transaction; `.notFound` when there is none of that name.
    @discardableResult
    public func updateOrg(_ name: String, _ change: (inout PBStoredOrg) throws -> Void) throws -> PBStoredOrg {
        try write { txn in
            guard var org = try txn.message(.orgs, Keys.text(name), as: PBStoredOrg.self) else {
                throw StoreError(.notFound, "org \(name) not found")
            }
            try change(&org)
            try txn.put(.orgs, Keys.text(name), try org.serializedBytes())
            return org
        }
    }
}
