// The hot path of the wire format: a single check decoded without building Swift values
// (ids stay bytes inside the unpacked message; protobuf-c allocates from a bump arena
// instead of malloc), and its answer packed straight into the output buffer with one
// protobuf-c pass. Anything unusual (a batch, explain, an invalid id or enum value, an id
// holding a NUL byte, Status, Reload, a payload protobuf-c rejects) is not handled here: the caller
// falls back to `WireRequest(decoding:)`, which produces the exact errors. The answers are
// byte-identical to `WireResponse` encodings of the same results (tested).

public import AuthzEngine
internal import CAuthzProto
internal import CProtobufC

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A single check as the fast path decodes it. The byte buffers point into the message
/// unpacked in a `FastPathDecoder`'s arena: valid until its next `decode`.
public struct FastCheck {
    public enum Kind {
        case effectivePermission(user: UnsafeRawBufferPointer, project: UnsafeRawBufferPointer, required: Level?)
        case canUse(
            user: UnsafeRawBufferPointer, asset: UnsafeRawBufferPointer, project: UnsafeRawBufferPointer?,
            required: Access?)
        case seatType(user: UnsafeRawBufferPointer)
    }

    public var callId: UInt64
    public var minSnapshotVersion: UInt64
    /// The request's `deadline_ms` (0: none). It bounds waiting only: the caller answers a
    /// check whose deadline passed while it was queued the general way (DEADLINE_EXCEEDED).
    public var deadlineMs: UInt32
    public var kind: Kind
}

/// Decodes single checks for one thread, reusing one arena for every message.
public final class FastPathDecoder {
    /// Arena layout: `used`, `capacity` (two Ints), then the bytes handed out.
    private let arena: UnsafeMutableRawPointer
    // One thread's decoder, never re-entered: no dynamic exclusivity checks (Package.swift).
    @exclusivity(unchecked) private var allocator: ProtobufCAllocator
    @exclusivity(unchecked) private var message: UnsafeMutablePointer<Authz__V1__Request>?

    private static let headerSize = 16

    /// - Parameter arenaBytes: room for one unpacked request; a payload needing more falls
    ///   back to the general decoder. Unpacking needs at most a few times the payload size.
    public init(arenaBytes: Int = 256 * 1024) {
        arena = malloc(Self.headerSize + arenaBytes)!
        arena.storeBytes(of: 0, as: Int.self)
        arena.storeBytes(of: arenaBytes, toByteOffset: 8, as: Int.self)
        allocator = ProtobufCAllocator(
            alloc: { data, size in
                guard let data else { return nil }
                let used = data.load(as: Int.self)
                let capacity = data.load(fromByteOffset: 8, as: Int.self)
                let start = (used + 15) & ~15
                guard start + size <= capacity else { return nil }
                data.storeBytes(of: start + size, as: Int.self)
                return data + FastPathDecoder.headerSize + start
            },
            free: { _, _ in },
            allocator_data: arena)
    }

    deinit {
        free(arena)
    }

    /// The check in `payload` if it is one the fast path answers: CanUse,
    /// EffectivePermission or SeatType, not explained, valid ids and enums. The caller checks
    /// the consistency token and the deadline (`deadlineMs`) before it answers.
    /// Nil otherwise (use `WireRequest(decoding:)`). Checks decoded earlier stay valid if
    /// `keepingEarlier` (for answering a run of checks together, until the arena is full);
    /// otherwise their memory is reused.
    public func decode(_ payload: UnsafeRawBufferPointer, keepingEarlier: Bool = false) -> FastCheck? {
        if !keepingEarlier { arena.storeBytes(of: 0, as: Int.self) }
        let bytes = payload.baseAddress?.assumingMemoryBound(to: UInt8.self)
        guard let message = withUnsafeMutablePointer(to: &allocator, { authz__v1__request__unpack($0, payload.count, bytes) })
        else { return nil }
        let request = message.pointee
        guard request.explain == 0 else { return nil }
        // An id cut short at a NUL by protobuf-c: the general path names it.
        if NulScan.mayHoldNul(payload), NulScan.find(in: payload, of: request.base.descriptor) != nil { return nil }
        let kind: FastCheck.Kind
        switch request.method_case {
        case AUTHZ__V1__REQUEST__METHOD_EFFECTIVE_PERMISSION:
            guard let query = request.effective_permission?.pointee,
                let user = Self.id(query.user, allowEmpty: true),
                let project = Self.id(query.project, allowEmpty: false)
            else { return nil }
            var required: Level?
            if query.required_level.rawValue != 0 {
                guard let level = Level(proto: query.required_level) else { return nil }
                required = level
            }
            kind = .effectivePermission(user: user, project: project, required: required)
        case AUTHZ__V1__REQUEST__METHOD_CAN_USE:
            guard let query = request.can_use?.pointee,
                let user = Self.id(query.user, allowEmpty: true),
                let asset = Self.id(query.asset, allowEmpty: false),
                let project = Self.id(query.project, allowEmpty: true)
            else { return nil }
            var required: Access?
            if query.required_access.rawValue != 0 {
                guard let access = Access(proto: query.required_access) else { return nil }
                required = access
            }
            kind = .canUse(user: user, asset: asset, project: project.isEmpty ? nil : project, required: required)
        case AUTHZ__V1__REQUEST__METHOD_SEAT_TYPE:
            guard let query = request.seat_type?.pointee, let user = Self.id(query.user, allowEmpty: true) else {
                return nil
            }
            kind = .seatType(user: user)
        default:
            return nil
        }
        return FastCheck(
            callId: request.call_id, minSnapshotVersion: request.min_snapshot_version, deadlineMs: request.deadline_ms,
            kind: kind)
    }

    /// An id's bytes if valid (`Identifier` rules; empty only where allowed), else nil.
    private static func id(_ text: UnsafeMutablePointer<CChar>?, allowEmpty: Bool) -> UnsafeRawBufferPointer? {
        guard let text else { return allowEmpty ? UnsafeRawBufferPointer(start: nil, count: 0) : nil }
        let count = strlen(text)
        let bytes = UnsafeRawBufferPointer(start: text, count: count)
        if count == 0 { return allowEmpty ? bytes : nil }
        guard count <= Identifier.maxLength else { return nil }
        var valid = true
        Self.allowed.withUnsafeBufferPointer { table in
            for byte in bytes where table[Int(byte)] == 0 {
                valid = false
                break
            }
        }
        return valid ? bytes : nil
    }

    /// `Identifier.isAllowed` as a table: 1 for a byte allowed in ids.
    private static let allowed: [UInt8] = (0..<256).map { Identifier.isAllowed(UInt8($0)) ? 1 : 0 }
}

/// A decision to send back, for `FastPathEncoder`.
public enum FastAnswer {
    case permission(PermissionDecision, allowed: Bool)
    case access(AccessDecision, allowed: Bool)
    case seat(SeatDecision)
}

public enum FastPathEncoder {
    /// The most bytes `encode` writes.
    public static let maxFrameLength = 96

    /// Writes the framed OK response (header included) at `destination`, which must hold
    /// `maxFrameLength` bytes; returns the bytes written.
    public static func encode(
        callId: UInt64, snapshotVersion: UInt64, answer: FastAnswer, into destination: UnsafeMutableRawPointer
    ) -> Int {
        var response = Authz__V1__Response()
        authz__v1__response__init(&response)
        response.call_id = callId
        response.snapshot_version = snapshotVersion
        var status = Authz__V1__RpcStatus()
        authz__v1__rpc_status__init(&status)
        var permission = Authz__V1__EffectivePermissionResult()
        var access = Authz__V1__CanUseResult()
        var seat = Authz__V1__SeatTypeResult()
        return withUnsafeMutablePointer(to: &status) { status in
            response.status = status
            switch answer {
            case .permission(let decision, let allowed):
                authz__v1__effective_permission_result__init(&permission)
                permission.level = decision.level.proto
                permission.reason = decision.reason.proto
                permission.allowed = allowed ? 1 : 0
                return withUnsafeMutablePointer(to: &permission) { result in
                    response.result_case = AUTHZ__V1__RESPONSE__RESULT_EFFECTIVE_PERMISSION_RESULT
                    response.effective_permission_result = result
                    return pack(&response, destination)
                }
            case .access(let decision, let allowed):
                authz__v1__can_use_result__init(&access)
                access.access = decision.access.proto
                access.reason = decision.reason.proto
                access.allowed = allowed ? 1 : 0
                return withUnsafeMutablePointer(to: &access) { result in
                    response.result_case = AUTHZ__V1__RESPONSE__RESULT_CAN_USE_RESULT
                    response.can_use_result = result
                    return pack(&response, destination)
                }
            case .seat(let decision):
                authz__v1__seat_type_result__init(&seat)
                seat.seat = decision.seat.proto
                seat.paid = decision.paid ? 1 : 0
                if let role = decision.role { seat.role = role.proto }
                if let source = decision.roleSource { seat.role_source = source.proto }
                seat.plan_downgrade = decision.planDowngrade ? 1 : 0
                return withUnsafeMutablePointer(to: &seat) { result in
                    response.result_case = AUTHZ__V1__RESPONSE__RESULT_SEAT_TYPE_RESULT
                    response.seat_type_result = result
                    return pack(&response, destination)
                }
            }
        }
    }

    private static func pack(_ response: inout Authz__V1__Response, _ destination: UnsafeMutableRawPointer) -> Int {
        let length = withUnsafePointer(to: &response) { response in
            response.withMemoryRebound(to: ProtobufCMessage.self, capacity: 1) { message in
                protobuf_c_message_pack(message, destination.assumingMemoryBound(to: UInt8.self) + FrameHeader.size)
            }
        }
        FrameHeader.write(
            payloadLength: length, to: UnsafeMutableRawBufferPointer(start: destination, count: FrameHeader.size))
        return FrameHeader.size + length
    }
}
