// authz.v1.Response <-> WireResponse with protobuf-c. The server encodes; clients decode.

internal import AuthzEngine
internal import CAuthzProto
internal import CProtobufC

// MARK: - Encoding (server side)

extension WireResponse: FrameEncodable {
    /// Builds the protobuf-c message once, then calls `body` with the length of the framed
    /// response and a function writing the frame at the start of a buffer holding at least
    /// that many bytes (it returns the bytes written). For writing straight into an output
    /// buffer, e.g. with NIO:
    ///
    ///     response.withFrameWriter { length, write in
    ///         buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: length, write)
    ///     }
    public func withFrameWriter<R>(
        _ body: (_ frameLength: Int, _ write: (UnsafeMutableRawBufferPointer) -> Int) -> R
    ) -> R {
        // A listing page is written by hand (ListingEncoding.swift): sized by arithmetic,
        // written in one pass, byte-identical to protobuf-c's packing (tested).
        if case .lookup(let result) = answer { return ListingEncoder(self, result).withFrameWriter(body) }
        return FrameEncoder.withFrameWriter({ arena in messageBase(build(in: &arena)) }, body)
    }

    private func build(in arena: inout ScratchArena) -> UnsafeMutablePointer<Authz__V1__Response> {
        let response = arena.allocate(Authz__V1__Response.self)
        authz__v1__response__init(response)
        response.pointee.call_id = callId
        response.pointee.snapshot_version = snapshotVersion

        let rpcStatus = arena.allocate(Authz__V1__RpcStatus.self)
        authz__v1__rpc_status__init(rpcStatus)
        rpcStatus.pointee.code = status.code.rawValue
        arena.set(&rpcStatus.pointee.message, to: status.message)
        response.pointee.status = rpcStatus

        switch answer {
        case nil:
            break
        case .check(.canUse(let result)):
            response.pointee.result_case = AUTHZ__V1__RESPONSE__RESULT_CAN_USE_RESULT
            response.pointee.can_use_result = Self.build(result, in: &arena)
        case .check(.effectivePermission(let result)):
            response.pointee.result_case = AUTHZ__V1__RESPONSE__RESULT_EFFECTIVE_PERMISSION_RESULT
            response.pointee.effective_permission_result = Self.build(result, in: &arena)
        case .check(.seatType(let result)):
            response.pointee.result_case = AUTHZ__V1__RESPONSE__RESULT_SEAT_TYPE_RESULT
            response.pointee.seat_type_result = Self.build(result, in: &arena)
        case .check(.capabilities(let capabilities)):
            response.pointee.result_case = AUTHZ__V1__RESPONSE__RESULT_CAPABILITIES_RESULT
            response.pointee.capabilities_result = Self.build(capabilities, in: &arena)
        case .batch(let results):
            let batch = arena.allocate(Authz__V1__BatchResult.self)
            authz__v1__batch_result__init(batch)
            batch.pointee.n_results = results.count
            batch.pointee.results = arena.pointerArray(results, Self.build)
            response.pointee.result_case = AUTHZ__V1__RESPONSE__RESULT_BATCH_RESULT
            response.pointee.batch_result = batch
        case .status(let result):
            response.pointee.result_case = AUTHZ__V1__RESPONSE__RESULT_STATUS_RESULT
            response.pointee.status_result = Self.build(result, in: &arena)
        case .reload(let result):
            let reload = arena.allocate(Authz__V1__ReloadResult.self)
            authz__v1__reload_result__init(reload)
            reload.pointee.snapshot_version = result.snapshotVersion
            response.pointee.result_case = AUTHZ__V1__RESPONSE__RESULT_RELOAD_RESULT
            response.pointee.reload_result = reload
        case .lookup:
            preconditionFailure("listings are encoded by ListingEncoder")
        }
        return response
    }

    private static func build(
        _ result: CheckResult, in arena: inout ScratchArena
    ) -> UnsafeMutablePointer<Authz__V1__CheckResult> {
        let message = arena.allocate(Authz__V1__CheckResult.self)
        authz__v1__check_result__init(message)
        switch result {
        case .canUse(let result):
            message.pointee.kind_case = AUTHZ__V1__CHECK_RESULT__KIND_CAN_USE_RESULT
            message.pointee.can_use_result = build(result, in: &arena)
        case .effectivePermission(let result):
            message.pointee.kind_case = AUTHZ__V1__CHECK_RESULT__KIND_EFFECTIVE_PERMISSION_RESULT
            message.pointee.effective_permission_result = build(result, in: &arena)
        case .seatType(let result):
            message.pointee.kind_case = AUTHZ__V1__CHECK_RESULT__KIND_SEAT_TYPE_RESULT
            message.pointee.seat_type_result = build(result, in: &arena)
        case .capabilities(let capabilities):
            message.pointee.kind_case = AUTHZ__V1__CHECK_RESULT__KIND_CAPABILITIES_RESULT
            message.pointee.capabilities_result = build(capabilities, in: &arena)
        }
        return message
    }

    private static func build(
        _ result: CanUseResult, in arena: inout ScratchArena
    ) -> UnsafeMutablePointer<Authz__V1__CanUseResult> {
        let message = arena.allocate(Authz__V1__CanUseResult.self)
        authz__v1__can_use_result__init(message)
        message.pointee.access = result.access.proto
        message.pointee.reason = result.reason.proto
        message.pointee.allowed = result.allowed ? 1 : 0
        return message
    }

    private static func build(
        _ result: EffectivePermissionResult, in arena: inout ScratchArena
    ) -> UnsafeMutablePointer<Authz__V1__EffectivePermissionResult> {
        let message = arena.allocate(Authz__V1__EffectivePermissionResult.self)
        authz__v1__effective_permission_result__init(message)
        message.pointee.level = result.level.proto
        message.pointee.reason = result.reason.proto
        message.pointee.allowed = result.allowed ? 1 : 0
        if !result.steps.isEmpty {
            message.pointee.n_steps = result.steps.count
            message.pointee.steps = arena.pointerArray(result.steps) { step, arena in
                let message = arena.allocate(Authz__V1__Step.self)
                authz__v1__step__init(message)
                message.pointee.reason = step.reason.proto
                message.pointee.level = step.level.proto
                arena.set(&message.pointee.subject, to: step.subject)
                return message
            }
        }
        return message
    }

    private static func build(
        _ result: SeatTypeResult, in arena: inout ScratchArena
    ) -> UnsafeMutablePointer<Authz__V1__SeatTypeResult> {
        let message = arena.allocate(Authz__V1__SeatTypeResult.self)
        authz__v1__seat_type_result__init(message)
        message.pointee.seat = result.seat.proto
        message.pointee.paid = result.paid ? 1 : 0
        if let role = result.role { message.pointee.role = role.proto }
        if let source = result.roleSource { message.pointee.role_source = source.proto }
        message.pointee.plan_downgrade = result.planDowngrade ? 1 : 0
        return message
    }

    private static func build(
        _ capabilities: [Capability], in arena: inout ScratchArena
    ) -> UnsafeMutablePointer<Authz__V1__CapabilitiesResult> {
        let message = arena.allocate(Authz__V1__CapabilitiesResult.self)
        authz__v1__capabilities_result__init(message)
        if !capabilities.isEmpty {
            let values = arena.allocate(Authz__V1__Capability.self, count: capabilities.count)
            for index in capabilities.indices {
                (values + index).initialize(to: capabilities[index].proto)
            }
            message.pointee.n_capabilities = capabilities.count
            message.pointee.capabilities = values
        }
        return message
    }

    private static func build(
        _ result: StatusResult, in arena: inout ScratchArena
    ) -> UnsafeMutablePointer<Authz__V1__StatusResult> {
        let message = arena.allocate(Authz__V1__StatusResult.self)
        authz__v1__status_result__init(message)
        message.pointee.snapshot_version = result.snapshotVersion
        message.pointee.loaded_at_unix_ms = result.loadedAtUnixMs
        message.pointee.users = result.users
        message.pointee.groups = result.groups
        message.pointee.assets = result.assets
        message.pointee.projects = result.projects
        message.pointee.grants = result.grants
        arena.set(&message.pointee.last_load_error, to: result.lastLoadError)
        message.pointee.last_load_attempt_unix_ms = result.lastLoadAttemptUnixMs
        message.pointee.stale_for_ms = result.staleForMs
        message.pointee.uptime_ms = result.uptimeMs
        message.pointee.connections_open = result.connectionsOpen
        message.pointee.requests_served = result.requestsServed
        arena.set(&message.pointee.last_load_method, to: result.lastLoadMethod)
        message.pointee.watching = protobuf_c_boolean(result.watching ? 1 : 0)
        return message
    }
}

// MARK: - Decoding (client side)

extension WireResponse {
    /// Decodes a response payload (the bytes after the frame header).
    ///
    /// Throws `internal` when the payload is not an `authz.v1.Response`, or an answer
    /// carries an UNSPECIFIED or unknown enum value. An absent status is OK; a status code
    /// outside gRPC's range is `unknown`.
    public init(decoding payload: UnsafeRawBufferPointer) throws(WireError) {
        let bytes = payload.baseAddress?.assumingMemoryBound(to: UInt8.self)
        guard let message = authz__v1__response__unpack(nil, payload.count, bytes) else {
            throw .internal("the payload is not a valid authz.v1.Response protobuf message")
        }
        defer { authz__v1__response__free_unpacked(message, nil) }
        let response = message.pointee
        let status =
            response.status.map {
                WireStatus(code: RPCCode(wireValue: $0.pointee.code), message: swiftString($0.pointee.message))
            } ?? .ok
        self.init(
            callId: response.call_id, status: status, snapshotVersion: response.snapshot_version,
            answer: try Self.decodeAnswer(response))
    }

    private static func decodeAnswer(_ response: Authz__V1__Response) throws(WireError) -> Answer? {
        switch response.result_case {
        case AUTHZ__V1__RESPONSE__RESULT_CAN_USE_RESULT:
            return .check(.canUse(try decode(response.can_use_result, "can_use_result")))
        case AUTHZ__V1__RESPONSE__RESULT_EFFECTIVE_PERMISSION_RESULT:
            return .check(
                .effectivePermission(try decode(response.effective_permission_result, "effective_permission_result")))
        case AUTHZ__V1__RESPONSE__RESULT_SEAT_TYPE_RESULT:
            return .check(.seatType(try decode(response.seat_type_result, "seat_type_result")))
        case AUTHZ__V1__RESPONSE__RESULT_CAPABILITIES_RESULT:
            return .check(.capabilities(try decode(response.capabilities_result, "capabilities_result")))
        case AUTHZ__V1__RESPONSE__RESULT_BATCH_RESULT:
            guard let batch = response.batch_result?.pointee else { return .batch([]) }
            var results: [CheckResult] = []
            results.reserveCapacity(batch.n_results)
            for index in 0..<batch.n_results {
                results.append(try decode(batch.results[index]?.pointee, "batch_result.results[\(index)]"))
            }
            return .batch(results)
        case AUTHZ__V1__RESPONSE__RESULT_STATUS_RESULT:
            guard let result = response.status_result?.pointee else { return .status(StatusResult()) }
            return .status(
                StatusResult(
                    snapshotVersion: result.snapshot_version,
                    loadedAtUnixMs: result.loaded_at_unix_ms,
                    users: result.users,
                    groups: result.groups,
                    assets: result.assets,
                    projects: result.projects,
                    grants: result.grants,
                    lastLoadError: swiftString(result.last_load_error),
                    lastLoadAttemptUnixMs: result.last_load_attempt_unix_ms,
                    staleForMs: result.stale_for_ms,
                    uptimeMs: result.uptime_ms,
                    connectionsOpen: result.connections_open,
                    requestsServed: result.requests_served,
                    lastLoadMethod: swiftString(result.last_load_method),
                    watching: result.watching != 0))
        case AUTHZ__V1__RESPONSE__RESULT_RELOAD_RESULT:
            return .reload(ReloadResult(snapshotVersion: response.reload_result?.pointee.snapshot_version ?? 0))
        case AUTHZ__V1__RESPONSE__RESULT_LIST_PROJECTS_RESULT:
            return .lookup(.projects(try decode(response.list_projects_result, "list_projects_result")))
        case AUTHZ__V1__RESPONSE__RESULT_LIST_PROJECT_ACCESS_RESULT:
            return .lookup(.projectAccess(try decode(response.list_project_access_result, "list_project_access_result")))
        case AUTHZ__V1__RESPONSE__RESULT_LIST_ASSETS_RESULT:
            return .lookup(.assets(try decode(response.list_assets_result, "list_assets_result")))
        default:
            return nil
        }
    }

    private static func decode(
        _ message: UnsafeMutablePointer<Authz__V1__LevelListing>?, _ field: @autoclosure () -> String
    ) throws(WireError) -> Listing<LevelItem> {
        guard let listing = message?.pointee else { throw .internal("\(field()): missing") }
        var items: [LevelItem] = []
        items.reserveCapacity(listing.n_items)
        for index in 0..<listing.n_items {
            guard let item = listing.items[index]?.pointee else { throw .internal("\(field()).items[\(index)]: missing") }
            items.append(
                LevelItem(
                    id: swiftString(item.id),
                    level: try decodeRequiredEnum(item.level, field: field() + ".items[\(index)].level"),
                    reason: try decodeRequiredEnum(item.reason, field: field() + ".items[\(index)].reason")))
        }
        return Listing(
            items: items, nextPageToken: swiftString(listing.next_page_token),
            snapshotChanged: listing.snapshot_changed != 0, pageSize: listing.page_size,
            pageSizeClamped: listing.page_size_clamped != 0,
            reason: listing.reason.rawValue == 0 ? nil : try decodeRequiredEnum(listing.reason, field: field() + ".reason"))
    }

    private static func decode(
        _ message: UnsafeMutablePointer<Authz__V1__AccessListing>?, _ field: @autoclosure () -> String
    ) throws(WireError) -> Listing<AccessItem> {
        guard let listing = message?.pointee else { throw .internal("\(field()): missing") }
        var items: [AccessItem] = []
        items.reserveCapacity(listing.n_items)
        for index in 0..<listing.n_items {
            guard let item = listing.items[index]?.pointee else { throw .internal("\(field()).items[\(index)]: missing") }
            items.append(
                AccessItem(
                    id: swiftString(item.id),
                    access: try decodeRequiredEnum(item.access, field: field() + ".items[\(index)].access"),
                    reason: try decodeRequiredEnum(item.reason, field: field() + ".items[\(index)].reason")))
        }
        return Listing(
            items: items, nextPageToken: swiftString(listing.next_page_token),
            snapshotChanged: listing.snapshot_changed != 0, pageSize: listing.page_size,
            pageSizeClamped: listing.page_size_clamped != 0,
            reason: listing.reason.rawValue == 0 ? nil : try decodeRequiredEnum(listing.reason, field: field() + ".reason"))
    }

    private static func decode(_ message: Authz__V1__CheckResult?, _ field: @autoclosure () -> String)
        throws(WireError) -> CheckResult
    {
        switch message?.kind_case {
        case AUTHZ__V1__CHECK_RESULT__KIND_CAN_USE_RESULT:
            return .canUse(try decode(message?.can_use_result, field() + ".can_use_result"))
        case AUTHZ__V1__CHECK_RESULT__KIND_EFFECTIVE_PERMISSION_RESULT:
            return .effectivePermission(
                try decode(message?.effective_permission_result, field() + ".effective_permission_result"))
        case AUTHZ__V1__CHECK_RESULT__KIND_SEAT_TYPE_RESULT:
            return .seatType(try decode(message?.seat_type_result, field() + ".seat_type_result"))
        case AUTHZ__V1__CHECK_RESULT__KIND_CAPABILITIES_RESULT:
            return .capabilities(try decode(message?.capabilities_result, field() + ".capabilities_result"))
        default:
            throw .internal("\(field()): no result kind set")
        }
    }

    private static func decode(
        _ message: UnsafeMutablePointer<Authz__V1__CanUseResult>?, _ field: @autoclosure () -> String
    ) throws(WireError) -> CanUseResult {
        guard let result = message?.pointee else { throw .internal("\(field()): missing") }
        return CanUseResult(
            access: try decodeRequiredEnum(result.access, field: field() + ".access"),
            reason: try decodeRequiredEnum(result.reason, field: field() + ".reason"),
            allowed: result.allowed != 0)
    }

    private static func decode(
        _ message: UnsafeMutablePointer<Authz__V1__EffectivePermissionResult>?, _ field: @autoclosure () -> String
    ) throws(WireError) -> EffectivePermissionResult {
        guard let result = message?.pointee else { throw .internal("\(field()): missing") }
        var steps: [Step] = []
        steps.reserveCapacity(result.n_steps)
        for index in 0..<result.n_steps {
            guard let step = result.steps[index]?.pointee else { throw .internal("\(field()).steps[\(index)]: missing") }
            steps.append(
                Step(
                    reason: try decodeRequiredEnum(step.reason, field: field() + ".steps[\(index)].reason"),
                    level: try decodeRequiredEnum(step.level, field: field() + ".steps[\(index)].level"),
                    subject: swiftString(step.subject)))
        }
        return EffectivePermissionResult(
            level: try decodeRequiredEnum(result.level, field: field() + ".level"),
            reason: try decodeRequiredEnum(result.reason, field: field() + ".reason"),
            steps: steps,
            allowed: result.allowed != 0)
    }

    private static func decode(
        _ message: UnsafeMutablePointer<Authz__V1__SeatTypeResult>?, _ field: @autoclosure () -> String
    ) throws(WireError) -> SeatTypeResult {
        guard let result = message?.pointee else { throw .internal("\(field()): missing") }
        // Role and source are UNSPECIFIED (nil) for seat none; unknown values are errors.
        func optional<E: ProtoMappedEnum>(_ value: E.Proto, _ name: String) throws(WireError) -> E? {
            value.rawValue == 0 ? nil : try decodeRequiredEnum(value, field: field() + name)
        }
        return SeatTypeResult(
            seat: try decodeRequiredEnum(result.seat, field: field() + ".seat"),
            paid: result.paid != 0,
            role: try optional(result.role, ".role"),
            roleSource: try optional(result.role_source, ".role_source"),
            planDowngrade: result.plan_downgrade != 0)
    }

    private static func decode(
        _ message: UnsafeMutablePointer<Authz__V1__CapabilitiesResult>?, _ field: @autoclosure () -> String
    ) throws(WireError) -> [Capability] {
        guard let result = message?.pointee else { throw .internal("\(field()): missing") }
        var capabilities: [Capability] = []
        capabilities.reserveCapacity(result.n_capabilities)
        for index in 0..<result.n_capabilities {
            capabilities.append(
                try decodeRequiredEnum(result.capabilities[index], field: field() + ".capabilities[\(index)]"))
        }
        return capabilities
    }
}
