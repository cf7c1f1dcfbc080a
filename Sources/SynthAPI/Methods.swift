import SwiftProtobuf
import SynthProto

/// Whether a method answers once or streams.
public enum MethodKind: Sendable, Hashable {
    case unary, serverStreaming
}

/// What a key must be allowed to do to call a method.
public enum MethodScope: String, Sendable, Hashable {
    /// No key needed.
    case open
    /// Reads an org's jobs and their data: what a training loader needs.
    case read
    /// Creates or changes jobs.
    case write
    /// Manages the org's keys.
    case admin
}

/// A method without its Swift types: what a router looks up by the name on the wire.
public struct MethodInfo: Sendable, Hashable, CustomStringConvertible {
    public let name: String
    public let kind: MethodKind
    public let scope: MethodScope
    /// The request's and the response's full protobuf names (`synthd.v1.GetJobRequest`).
    public let requestType: String
    public let responseType: String

    public var description: String { name }
}

/// One RPC: its name on the wire, its kind, its scope, and its request and response types.
public struct Method<Request: SwiftProtobuf.Message, Response: SwiftProtobuf.Message>: Sendable {
    public let info: MethodInfo

    init(_ name: String, _ kind: MethodKind, _ scope: MethodScope) {
        info = MethodInfo(name: name, kind: kind, scope: scope, requestType: Request.protoMessageName, responseType: Response.protoMessageName)
    }
}

/// Every method of the protocol: the one place their names are written. The server's router and
/// `SynthClient` both use it, and a test holds it to `service Synthd` in proto/synthd/v1/service.proto.
public enum Methods {
    public static let generate = Method<PBGenerateRequest, PBGenerateResponse>("Generate", .unary, .write)
    public static let plan = Method<PBPlanRequest, PBPlanResponse>("Plan", .unary, .write)
    public static let getJob = Method<PBGetJobRequest, PBGetJobResponse>("GetJob", .unary, .read)
    public static let listJobs = Method<PBListJobsRequest, PBListJobsResponse>("ListJobs", .unary, .read)
    public static let cancelJob = Method<PBCancelJobRequest, PBCancelJobResponse>("CancelJob", .unary, .write)
    public static let watchJob = Method<PBWatchJobRequest, PBWatchJobResponse>("WatchJob", .serverStreaming, .read)
    public static let fetchSplits = Method<PBFetchSplitsRequest, PBFetchSplitsResponse>("FetchSplits", .serverStreaming, .read)
    public static let getQualityReport = Method<PBGetQualityReportRequest, PBGetQualityReportResponse>("GetQualityReport", .unary, .read)
    public static let getManifest = Method<PBGetManifestRequest, PBGetManifestResponse>("GetManifest", .unary, .read)
    public static let getPricing = Method<PBGetPricingRequest, PBGetPricingResponse>("GetPricing", .unary, .open)
    public static let health = Method<PBHealthRequest, PBHealthResponse>("Health", .unary, .open)
    public static let createApiKey = Method<PBCreateApiKeyRequest, PBCreateApiKeyResponse>("CreateApiKey", .unary, .admin)
    public static let listApiKeys = Method<PBListApiKeysRequest, PBListApiKeysResponse>("ListApiKeys", .unary, .admin)
    public static let revokeApiKey = Method<PBRevokeApiKeyRequest, PBRevokeApiKeyResponse>("RevokeApiKey", .unary, .admin)
    public static let deleteJob = Method<PBDeleteJobRequest, PBDeleteJobResponse>("DeleteJob", .unary, .write)
    public static let getUsage = Method<PBGetUsageRequest, PBGetUsageResponse>("GetUsage", .unary, .read)
    public static let compareJobs = Method<PBCompareJobsRequest, PBCompareJobsResponse>("CompareJobs", .unary, .read)

    public static let all: [MethodInfo] = [
        generate.info, plan.info, getJob.info, listJobs.info, cancelJob.info, watchJob.info, fetchSplits.info, getQualityReport.info,
        getManifest.info, getPricing.info, health.info, createApiKey.info, listApiKeys.info, revokeApiKey.info, deleteJob.info,
        getUsage.info, compareJobs.info,
    ]

    private static let byName: [String: MethodInfo] = Dictionary(uniqueKeysWithValues: all.map { ($0.name, $0) })

    /// The method a call names, or nil for a name the protocol does not have.
    public static func named(_ name: String) -> MethodInfo? { byName[name] }

    private static let requestTypes: [String: any SwiftProtobuf.Message.Type] = [
        generate.info.name: PBGenerateRequest.self, plan.info.name: PBPlanRequest.self, getJob.info.name: PBGetJobRequest.self,
        listJobs.info.name: PBListJobsRequest.self, cancelJob.info.name: PBCancelJobRequest.self, watchJob.info.name: PBWatchJobRequest.self,
        fetchSplits.info.name: PBFetchSplitsRequest.self, getQualityReport.info.name: PBGetQualityReportRequest.self,
        getManifest.info.name: PBGetManifestRequest.self, getPricing.info.name: PBGetPricingRequest.self, health.info.name: PBHealthRequest.self,
        createApiKey.info.name: PBCreateApiKeyRequest.self, listApiKeys.info.name: PBListApiKeysRequest.self,
        revokeApiKey.info.name: PBRevokeApiKeyRequest.self, deleteJob.info.name: PBDeleteJobRequest.self,
        getUsage.info.name: PBGetUsageRequest.self, compareJobs.info.name: PBCompareJobsRequest.self,
    ]

    /// The method's request type, for code that handles every method alike (the fuzz target).
    public static func requestType(_ method: MethodInfo) -> (any SwiftProtobuf.Message.Type)? { requestTypes[method.name] }
}
