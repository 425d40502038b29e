// The client's one error type, shaped like grpc-swift's RPCError: a code programs switch
// on, a message for people, and the underlying cause.

public import AuthzWire

/// A call that did not produce an answer.
///
/// `code` is the server's status code when the server answered with an error, or one the
/// client chose: `unavailable` (cannot connect, connection lost: the call may be retried),
/// `deadlineExceeded` (no answer within the call timeout), `cancelled` (the calling task
/// was cancelled or the client closed), `internal` (the server's answer was unreadable).
public struct AuthzClientError: Error, Sendable, CustomStringConvertible {
    public var code: RPCCode
    public var message: String
    public var cause: (any Error)?

    public init(code: RPCCode, message: String, cause: (any Error)? = nil) {
        self.code = code
        self.message = message
        self.cause = cause
    }

    /// The error a non-OK response stands for.
    public init(status: WireStatus) {
        self.init(code: status.code, message: status.message)
    }

    public var description: String {
        var text = "\(code.name): \(message)"
        if let cause { text += " (\(cause))" }
        return text
    }
}
