// authz.v1.Request <-> WireRequest with protobuf-c. The server decodes; clients encode.

internal import AuthzEngine
internal import CAuthzProto
internal import CProtobufC

// MARK: - Decoding (server side)

extension WireRequest {
    /// Decodes and validates a request payload (the bytes after the frame header).
    ///
    /// Errors (each with the request's `call_id` when it could be read, also from a payload
    /// protobuf-c rejects, as long as the field came before the damage):
    /// - `invalidArgument`: the payload is not an `authz.v1.Request`; no method (or a batch
    ///   check with no kind) is set; an id holds a NUL byte (checked in the raw payload:
    ///   protobuf-c would cut it short), is empty where not allowed, longer than 128 bytes
    ///   or has a byte outside `A-Z a-z 0-9 . _ : @ -`; `required_level` or
    ///   `required_access` is a value this build does not know.
    /// - `resourceExhausted`: a batch has more than `maxBatchChecks` checks.
    /// - `unimplemented`: no method is set but the request carries an unknown field numbered
    ///   10 or more: a method of a newer protocol version.
    public init(
        decoding payload: UnsafeRawBufferPointer,
        maxBatchChecks: Int = WireRequest.defaultMaxBatchChecks
    ) throws(WireRequestError) {
        let bytes = payload.baseAddress?.assumingMemoryBound(to: UInt8.self)
        guard let message = authz__v1__request__unpack(nil, payload.count, bytes) else {
            throw WireRequestError(
                callId: Self.salvageCallId(payload),
                error: .invalidArgument("the payload is not a valid authz.v1.Request protobuf message"))
        }
        defer { authz__v1__request__free_unpacked(message, nil) }
        let request = message.pointee
        // protobuf-c cut every string at its first NUL: the raw bytes tell.
        if NulScan.mayHoldNul(payload), let nul = NulScan.find(in: payload, of: request.base.descriptor) {
            throw WireRequestError(callId: request.call_id, error: .invalidArgument(nul.message))
        }
        do {
            self.init(
                callId: request.call_id,
                minSnapshotVersion: request.min_snapshot_version,
                deadlineMs: request.deadline_ms,
                explain: request.explain != 0,
                method: try Self.decodeMethod(request, maxBatchChecks: maxBatchChecks))
        } catch {
            throw WireRequestError(callId: request.call_id, error: error)
        }
    }

    private static func decodeMethod(_ request: Authz__V1__Request, maxBatchChecks: Int) throws(WireError) -> Method {
        let top = FieldPath()
        switch request.method_case {
        case AUTHZ__V1__REQUEST__METHOD_CAN_USE:
            return .check(.canUse(try decodeCanUse(request.can_use, top)))
        case AUTHZ__V1__REQUEST__METHOD_EFFECTIVE_PERMISSION:
            return .check(.effectivePermission(try decodeEffectivePermission(request.effective_permission, top)))
        case AUTHZ__V1__REQUEST__METHOD_SEAT_TYPE:
            return .check(.seatType(user: try decodeUser(request.seat_type?.pointee.user, top("seat_type.user"))))
        case AUTHZ__V1__REQUEST__METHOD_CAPABILITIES:
            return .check(.capabilities(user: try decodeUser(request.capabilities?.pointee.user, top("capabilities.user"))))
        case AUTHZ__V1__REQUEST__METHOD_BATCH:
            guard let batch = request.batch?.pointee else { return .batch([]) }
            guard batch.n_checks <= maxBatchChecks else {
                throw .resourceExhausted(
                    "batch.checks: \(batch.n_checks) checks; the limit is \(maxBatchChecks) per batch")
            }
            var checks: [Check] = []
            checks.reserveCapacity(batch.n_checks)
            for index in 0..<batch.n_checks {
                checks.append(try decodeCheck(batch.checks[index]?.pointee, FieldPath(checkIndex: index)))
            }
            return .batch(checks)
        case AUTHZ__V1__REQUEST__METHOD_STATUS:
            return .status
        case AUTHZ__V1__REQUEST__METHOD_RELOAD:
            return .reload
        case AUTHZ__V1__REQUEST__METHOD_LIST_PROJECTS:
            let query = request.list_projects?.pointee
            return .lookup(
                .projects(
                    ListProjects(
                        user: try decodeIdentifier(query?.user, allowEmpty: true, field: "list_projects.user"),
                        minLevel: try decodeMinimum(
                            query?.min_level, below: .canViewApp, field: "list_projects.min_level"),
                        pageSize: query?.page_size ?? 0,
                        pageToken: decodePageToken(query?.page_token))))
        case AUTHZ__V1__REQUEST__METHOD_LIST_PROJECT_ACCESS:
            let query = request.list_project_access?.pointee
            return .lookup(
                .projectAccess(
                    ListProjectAccess(
                        project: try decodeIdentifier(
                            query?.project, allowEmpty: false, field: "list_project_access.project"),
                        minLevel: try decodeMinimum(
                            query?.min_level, below: .canViewApp, field: "list_project_access.min_level"),
                        pageSize: query?.page_size ?? 0,
                        pageToken: decodePageToken(query?.page_token))))
        case AUTHZ__V1__REQUEST__METHOD_LIST_ASSETS:
            let query = request.list_assets?.pointee
            let project = try decodeIdentifier(query?.project, allowEmpty: true, field: "list_assets.project")
            return .lookup(
                .assets(
                    ListAssets(
                        user: try decodeIdentifier(query?.user, allowEmpty: true, field: "list_assets.user"),
                        project: project.isEmpty ? nil : project,
                        minAccess: try decodeMinimum(query?.min_access, below: .view, field: "list_assets.min_access"),
                        pageSize: query?.page_size ?? 0,
                        pageToken: decodePageToken(query?.page_token))))
        default:
            if let field = firstUnknownField(of: request.base, numberedAtLeast: 10) {
                throw .unimplemented("request method field \(field) is not implemented by this server")
            }
            throw .invalidArgument("the request has no method set")
        }
    }

    private static func decodeCheck(_ check: Authz__V1__Check?, _ path: FieldPath) throws(WireError) -> Check {
        guard let check else { throw .invalidArgument(path("kind") + ": no check kind set") }
        switch check.kind_case {
        case AUTHZ__V1__CHECK__KIND_CAN_USE:
            return .canUse(try decodeCanUse(check.can_use, path))
        case AUTHZ__V1__CHECK__KIND_EFFECTIVE_PERMISSION:
            return .effectivePermission(try decodeEffectivePermission(check.effective_permission, path))
        case AUTHZ__V1__CHECK__KIND_SEAT_TYPE:
            return .seatType(user: try decodeUser(check.seat_type?.pointee.user, path("seat_type.user")))
        case AUTHZ__V1__CHECK__KIND_CAPABILITIES:
            return .capabilities(user: try decodeUser(check.capabilities?.pointee.user, path("capabilities.user")))
        default:
            if let field = firstUnknownField(of: check.base) {
                throw .unimplemented(path("kind") + ": check kind field \(field) is not implemented by this server")
            }
            throw .invalidArgument(path("kind") + ": no check kind set")
        }
    }

    private static func decodeUser(_ user: UnsafeMutablePointer<CChar>?, _ field: @autoclosure () -> String)
        throws(WireError) -> String
    {
        try decodeIdentifier(user, allowEmpty: true, field: field())
    }

    private static func decodeCanUse(_ message: UnsafeMutablePointer<Authz__V1__CanUse>?, _ path: FieldPath)
        throws(WireError) -> CanUse
    {
        guard let query = message?.pointee else {
            throw .invalidArgument(path("can_use.asset") + ": the id is empty")
        }
        let project = try decodeIdentifier(query.project, allowEmpty: true, field: path("can_use.project"))
        return CanUse(
            user: try decodeUser(query.user, path("can_use.user")),
            asset: try decodeIdentifier(query.asset, allowEmpty: false, field: path("can_use.asset")),
            project: project.isEmpty ? nil : project,
            requiredAccess: try decodeOptionalEnum(
                query.required_access, as: Access.self, field: path("can_use.required_access")))
    }

    private static func decodeEffectivePermission(
        _ message: UnsafeMutablePointer<Authz__V1__EffectivePermission>?, _ path: FieldPath
    ) throws(WireError) -> EffectivePermission {
        guard let query = message?.pointee else {
            throw .invalidArgument(path("effective_permission.project") + ": the id is empty")
        }
        return EffectivePermission(
            user: try decodeUser(query.user, path("effective_permission.user")),
            project: try decodeIdentifier(
                query.project, allowEmpty: false, field: path("effective_permission.project")),
            requiredLevel: try decodeOptionalEnum(
                query.required_level, as: Level.self, field: path("effective_permission.required_level")))
    }

    /// A lookup's optional minimum: UNSPECIFIED is nil; an unknown value or one below `least`
    /// (RULES.md §8) is an error.
    private static func decodeMinimum<E: ProtoMappedEnum & Comparable & NamedEnum>(
        _ value: E.Proto?, below least: E, field: @autoclosure () -> String
    ) throws(WireError) -> E? {
        guard let value, let minimum = try decodeOptionalEnum(value, as: E.self, field: field()) else { return nil }
        func spelled(_ value: E) -> String { "\(E.protoName.uppercased())_\(value.name.uppercased())" }
        guard minimum >= least else {
            throw .invalidArgument(
                "\(field()): \(spelled(minimum)) is below \(spelled(least)), the least a listing can ask for")
        }
        return minimum
    }

    /// A page token as the engine reads it: opaque text, checked there (a token is
    /// base64url, so any other byte makes it malformed; invalid UTF-8 becomes U+FFFD).
    private static func decodePageToken(_ data: ProtobufCBinaryData?) -> String {
        guard let data, data.len > 0, let bytes = data.data else { return "" }
        return String(decoding: UnsafeBufferPointer(start: bytes, count: data.len), as: UTF8.self)
    }

    /// The `call_id` of a payload protobuf-c rejected: the last top-level field 1 read as a
    /// varint before the first malformed field (protobuf's last-one-wins rule).
    static func salvageCallId(_ payload: UnsafeRawBufferPointer) -> UInt64? {
        var reader = WireFormatReader(payload)
        var callId: UInt64?
        while !reader.isAtEnd {
            guard let tag = reader.varint(), tag >> 3 != 0 else { break }
            let field = tag >> 3
            switch tag & 7 {
            case 0:
                guard let value = reader.varint() else { return callId }
                if field == 1 { callId = value }
            case 1:
                guard reader.skip(8) else { return callId }
            case 2:
                guard let length = reader.varint(), reader.skip(length) else { return callId }
            case 5:
                guard reader.skip(4) else { return callId }
            default:
                return callId
            }
        }
        return callId
    }
}

// MARK: - Encoding (client side)

extension WireRequest: FrameEncodable {
    /// Builds the protobuf-c message once, then calls `body` with the length of the framed
    /// request and a function writing the frame at the start of a buffer holding at least
    /// that many bytes (it returns the bytes written). For writing straight into an output
    /// buffer, e.g. with NIO:
    ///
    ///     request.withFrameWriter { length, write in
    ///         buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: length, write)
    ///     }
    public func withFrameWriter<R>(
        _ body: (_ frameLength: Int, _ write: (UnsafeMutableRawBufferPointer) -> Int) -> R
    ) -> R {
        FrameEncoder.withFrameWriter({ arena in messageBase(build(in: &arena)) }, body)
    }

    private func build(in arena: inout ScratchArena) -> UnsafeMutablePointer<Authz__V1__Request> {
        let request = arena.allocate(Authz__V1__Request.self)
        authz__v1__request__init(request)
        request.pointee.call_id = callId
        request.pointee.min_snapshot_version = minSnapshotVersion
        request.pointee.deadline_ms = deadlineMs
        request.pointee.explain = explain ? 1 : 0
        switch method {
        case .check(.canUse(let query)):
            request.pointee.method_case = AUTHZ__V1__REQUEST__METHOD_CAN_USE
            request.pointee.can_use = Self.build(query, in: &arena)
        case .check(.effectivePermission(let query)):
            request.pointee.method_case = AUTHZ__V1__REQUEST__METHOD_EFFECTIVE_PERMISSION
            request.pointee.effective_permission = Self.build(query, in: &arena)
        case .check(.seatType(let user)):
            request.pointee.method_case = AUTHZ__V1__REQUEST__METHOD_SEAT_TYPE
            request.pointee.seat_type = Self.buildSeatType(user, in: &arena)
        case .check(.capabilities(let user)):
            request.pointee.method_case = AUTHZ__V1__REQUEST__METHOD_CAPABILITIES
            request.pointee.capabilities = Self.buildCapabilities(user, in: &arena)
        case .batch(let checks):
            let batch = arena.allocate(Authz__V1__Batch.self)
            authz__v1__batch__init(batch)
            batch.pointee.n_checks = checks.count
            batch.pointee.checks = arena.pointerArray(checks, Self.build)
            request.pointee.method_case = AUTHZ__V1__REQUEST__METHOD_BATCH
            request.pointee.batch = batch
        case .status:
            let status = arena.allocate(Authz__V1__Status.self)
            authz__v1__status__init(status)
            request.pointee.method_case = AUTHZ__V1__REQUEST__METHOD_STATUS
            request.pointee.status = status
        case .reload:
            let reload = arena.allocate(Authz__V1__Reload.self)
            authz__v1__reload__init(reload)
            request.pointee.method_case = AUTHZ__V1__REQUEST__METHOD_RELOAD
            request.pointee.reload = reload
        case .lookup(.projects(let query)):
            let message = arena.allocate(Authz__V1__ListProjects.self)
            authz__v1__list_projects__init(message)
            arena.set(&message.pointee.user, toBytesOf: query.user)
            if let minimum = query.minLevel { message.pointee.min_level = minimum.proto }
            message.pointee.page_size = query.pageSize
            arena.set(&message.pointee.page_token, toBytesOf: query.pageToken)
            request.pointee.method_case = AUTHZ__V1__REQUEST__METHOD_LIST_PROJECTS
            request.pointee.list_projects = message
        case .lookup(.projectAccess(let query)):
            let message = arena.allocate(Authz__V1__ListProjectAccess.self)
            authz__v1__list_project_access__init(message)
            arena.set(&message.pointee.project, toBytesOf: query.project)
            if let minimum = query.minLevel { message.pointee.min_level = minimum.proto }
            message.pointee.page_size = query.pageSize
            arena.set(&message.pointee.page_token, toBytesOf: query.pageToken)
            request.pointee.method_case = AUTHZ__V1__REQUEST__METHOD_LIST_PROJECT_ACCESS
            request.pointee.list_project_access = message
        case .lookup(.assets(let query)):
            let message = arena.allocate(Authz__V1__ListAssets.self)
            authz__v1__list_assets__init(message)
            arena.set(&message.pointee.user, toBytesOf: query.user)
            arena.set(&message.pointee.project, toBytesOf: query.project ?? "")
            if let minimum = query.minAccess { message.pointee.min_access = minimum.proto }
            message.pointee.page_size = query.pageSize
            arena.set(&message.pointee.page_token, toBytesOf: query.pageToken)
            request.pointee.method_case = AUTHZ__V1__REQUEST__METHOD_LIST_ASSETS
            request.pointee.list_assets = message
        }
        return request
    }

    private static func build(_ check: Check, in arena: inout ScratchArena) -> UnsafeMutablePointer<Authz__V1__Check> {
        let message = arena.allocate(Authz__V1__Check.self)
        authz__v1__check__init(message)
        switch check {
        case .canUse(let query):
            message.pointee.kind_case = AUTHZ__V1__CHECK__KIND_CAN_USE
            message.pointee.can_use = build(query, in: &arena)
        case .effectivePermission(let query):
            message.pointee.kind_case = AUTHZ__V1__CHECK__KIND_EFFECTIVE_PERMISSION
            message.pointee.effective_permission = build(query, in: &arena)
        case .seatType(let user):
            message.pointee.kind_case = AUTHZ__V1__CHECK__KIND_SEAT_TYPE
            message.pointee.seat_type = buildSeatType(user, in: &arena)
        case .capabilities(let user):
            message.pointee.kind_case = AUTHZ__V1__CHECK__KIND_CAPABILITIES
            message.pointee.capabilities = buildCapabilities(user, in: &arena)
        }
        return message
    }

    private static func build(_ query: CanUse, in arena: inout ScratchArena) -> UnsafeMutablePointer<Authz__V1__CanUse> {
        let message = arena.allocate(Authz__V1__CanUse.self)
        authz__v1__can_use__init(message)
        arena.set(&message.pointee.user, to: query.user)
        arena.set(&message.pointee.asset, to: query.asset)
        arena.set(&message.pointee.project, to: query.project ?? "")
        if let required = query.requiredAccess { message.pointee.required_access = required.proto }
        return message
    }

    private static func build(
        _ query: EffectivePermission, in arena: inout ScratchArena
    ) -> UnsafeMutablePointer<Authz__V1__EffectivePermission> {
        let message = arena.allocate(Authz__V1__EffectivePermission.self)
        authz__v1__effective_permission__init(message)
        arena.set(&message.pointee.user, to: query.user)
        arena.set(&message.pointee.project, to: query.project)
        if let required = query.requiredLevel { message.pointee.required_level = required.proto }
        return message
    }

    private static func buildSeatType(_ user: String, in arena: inout ScratchArena) -> UnsafeMutablePointer<Authz__V1__SeatType> {
        let message = arena.allocate(Authz__V1__SeatType.self)
        authz__v1__seat_type__init(message)
        arena.set(&message.pointee.user, to: user)
        return message
    }

    private static func buildCapabilities(
        _ user: String, in arena: inout ScratchArena
    ) -> UnsafeMutablePointer<Authz__V1__Capabilities> {
        let message = arena.allocate(Authz__V1__Capabilities.self)
        authz__v1__capabilities__init(message)
        arena.set(&message.pointee.user, to: user)
        return message
    }
}
