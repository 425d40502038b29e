// Status codes and errors of the wire protocol (proto/README.md "Status codes").

/// gRPC's status codes, with gRPC's numeric values (the `RpcStatus.code` of a response).
///
/// The server uses `ok`, `invalidArgument`, `deadlineExceeded`, `permissionDenied`,
/// `resourceExhausted`, `failedPrecondition`, `unimplemented`, `internal` and
/// `unavailable`; the others exist so that every code a peer may send has a value.
public enum RPCCode: UInt32, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    case ok = 0
    case cancelled = 1
    case unknown = 2
    case invalidArgument = 3
    case deadlineExceeded = 4
    case notFound = 5
    case alreadyExists = 6
    case permissionDenied = 7
    case resourceExhausted = 8
    case failedPrecondition = 9
    case aborted = 10
    case outOfRange = 11
    case unimplemented = 12
    case `internal` = 13
    case unavailable = 14
    case dataLoss = 15
    case unauthenticated = 16

    /// The code a received numeric value stands for: values outside gRPC's range are
    /// `unknown`, as gRPC clients treat them.
    public init(wireValue: UInt32) {
        self = RPCCode(rawValue: wireValue) ?? .unknown
    }

    /// gRPC's spelling, e.g. `INVALID_ARGUMENT`.
    public var name: String {
        switch self {
        case .ok: "OK"
        case .cancelled: "CANCELLED"
        case .unknown: "UNKNOWN"
        case .invalidArgument: "INVALID_ARGUMENT"
        case .deadlineExceeded: "DEADLINE_EXCEEDED"
        case .notFound: "NOT_FOUND"
        case .alreadyExists: "ALREADY_EXISTS"
        case .permissionDenied: "PERMISSION_DENIED"
        case .resourceExhausted: "RESOURCE_EXHAUSTED"
        case .failedPrecondition: "FAILED_PRECONDITION"
        case .aborted: "ABORTED"
        case .outOfRange: "OUT_OF_RANGE"
        case .unimplemented: "UNIMPLEMENTED"
        case .internal: "INTERNAL"
        case .unavailable: "UNAVAILABLE"
        case .dataLoss: "DATA_LOSS"
        case .unauthenticated: "UNAUTHENTICATED"
        }
    }

    public var description: String { name }
}

/// A request that cannot be answered, or a peer that broke the protocol.
///
/// `code` and `message` go on the wire (`RpcStatus`); `cause` is for logs only.
public struct WireError: Error, Sendable, CustomStringConvertible {
    public var code: RPCCode
    public var message: String
    public var cause: (any Error)?

    public init(_ code: RPCCode, _ message: String, cause: (any Error)? = nil) {
        self.code = code
        self.message = message
        self.cause = cause
    }

    public var description: String {
        var text = "\(code.name): \(message)"
        if let cause { text += " (cause: \(cause))" }
        return text
    }

    static func invalidArgument(_ message: String) -> WireError { WireError(.invalidArgument, message) }
    static func resourceExhausted(_ message: String) -> WireError { WireError(.resourceExhausted, message) }
    static func unimplemented(_ message: String) -> WireError { WireError(.unimplemented, message) }
    static func `internal`(_ message: String) -> WireError { WireError(.internal, message) }
}

/// A request payload that could not be decoded, with the request's `call_id` when it could
/// be read, so the server can still answer the call (`WireResponse(callId:error:)`).
public struct WireRequestError: Error, Sendable, CustomStringConvertible {
    /// The request's `call_id`, or nil when the payload did not yield one.
    public var callId: UInt64?
    public var error: WireError

    public init(callId: UInt64?, error: WireError) {
        self.callId = callId
        self.error = error
    }

    public var description: String {
        "call \(callId.map(String.init) ?? "?"): \(error)"
    }
}
