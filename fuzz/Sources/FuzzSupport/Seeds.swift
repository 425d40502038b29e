// Requests the seed corpora are made of: every method from the Swift encoder, with the ids
// of the demo workspace (the snapshot the request target answers from), and hand-made
// payloads for the errors the encoder cannot produce.

public import AuthzWire

public enum Seeds {
    /// Valid requests of every method and option, named.
    public static let requests: [(name: String, request: WireRequest)] = [
        ("ep-owner", WireRequest(callId: 1, method: .check(.effectivePermission(.init(user: "linus", project: "revenue-dashboard"))))),
        ("ep-required", WireRequest(callId: 2, method: .check(.effectivePermission(.init(user: "radia", project: "payroll-audit", requiredLevel: .canEdit))))),
        ("ep-anonymous", WireRequest(callId: 3, method: .check(.effectivePermission(.init(user: "", project: "public-covid-tracker", requiredLevel: .canViewApp))))),
        ("ep-unknown", WireRequest(callId: 4, method: .check(.effectivePermission(.init(user: "nobody", project: "no-such-project"))))),
        ("ep-explain", WireRequest(callId: 5, explain: true, method: .check(.effectivePermission(.init(user: "radia", project: "payroll-audit"))))),
        ("ep-deadline-version", WireRequest(callId: 6, minSnapshotVersion: 7, deadlineMs: 250, method: .check(.effectivePermission(.init(user: "ken", project: "growth-experiments"))))),
        ("ep-min-version", WireRequest(callId: .max, minSnapshotVersion: 1, method: .check(.effectivePermission(.init(user: "margaret", project: "quarterly-close"))))),
        ("cu-project", WireRequest(callId: 7, method: .check(.canUse(.init(user: "margaret", asset: "dc-finance", project: "quarterly-close", requiredAccess: .use))))),
        ("cu-no-project", WireRequest(callId: 8, method: .check(.canUse(.init(user: "hedy", asset: "sec-openai"))))),
        ("cu-public", WireRequest(callId: 9, method: .check(.canUse(.init(user: "", asset: "s3-public-datasets", requiredAccess: .view))))),
        ("cu-guest", WireRequest(callId: 10, method: .check(.canUse(.init(user: "carla-contractor", asset: "dc-interviews", project: "candidate-take-home"))))),
        ("st-admin", WireRequest(callId: 11, method: .check(.seatType(user: "alan")))),
        ("st-inactive", WireRequest(callId: 12, method: .check(.seatType(user: "edsger")))),
        ("st-anonymous", WireRequest(callId: 0, method: .check(.seatType(user: "")))),
        ("caps-explorer", WireRequest(callId: 13, method: .check(.capabilities(user: "donald")))),
        ("caps-anonymous", WireRequest(callId: 14, method: .check(.capabilities(user: "")))),
        ("batch-mixed", WireRequest(callId: 15, explain: true, method: .batch([
            .canUse(.init(user: "margaret", asset: "dc-payroll", project: "payroll-audit", requiredAccess: .view)),
            .effectivePermission(.init(user: "frances", project: "payroll-audit", requiredLevel: .fullAccess)),
            .seatType(user: "katherine"),
            .capabilities(user: "sophie"),
        ]))),
        ("batch-empty", WireRequest(callId: 16, method: .batch([]))),
        ("status", WireRequest(callId: 17, method: .status)),
        ("reload", WireRequest(callId: 18, method: .reload)),
        // Invalid ids: the general path's errors.
        ("bad-id-space", WireRequest(callId: 19, method: .check(.effectivePermission(.init(user: "linus torvalds", project: "revenue-dashboard"))))),
        ("bad-id-empty-project", WireRequest(callId: 20, method: .check(.effectivePermission(.init(user: "linus", project: ""))))),
        ("bad-id-empty-asset", WireRequest(callId: 21, method: .check(.canUse(.init(user: "linus", asset: ""))))),
        ("bad-id-long", WireRequest(callId: 22, method: .check(.seatType(user: String(repeating: "x", count: 129))))),
        ("bad-id-in-batch", WireRequest(callId: 23, method: .batch([.seatType(user: "ada"), .capabilities(user: "a/b")]))),
        ("batch-over-limit", WireRequest(callId: 24, method: .batch(Array(repeating: .seatType(user: "ada"), count: WireRequest.defaultMaxBatchChecks + 1)))),
    ]

    /// Hand-made request payloads: what the Swift encoder never writes.
    public static let payloads: [(name: String, payload: [UInt8])] = [
        ("raw-empty", []),
        ("raw-garbage", [0xFF, 0xFF, 0x01]),
        ("raw-truncated-after-call-id", PB.varint(1, 77) + [0x5A, 0x10, 0x0A]),
        ("raw-unknown-level", PB.varint(1, 3) + PB.bytes(11, PB.string(1, "linus") + PB.string(2, "revenue-dashboard") + PB.enumValue(3, 99))),
        ("raw-unknown-access", PB.varint(1, 3) + PB.bytes(10, PB.string(1, "linus") + PB.string(2, "dc-warehouse") + PB.enumValue(4, 42))),
        ("raw-negative-enum", PB.varint(1, 3) + PB.bytes(11, PB.string(1, "linus") + PB.string(2, "revenue-dashboard") + PB.enumValue(3, -1))),
        ("raw-newer-method", PB.varint(1, 3) + PB.bytes(20, [])),
        ("raw-newer-check-kind", PB.varint(1, 4) + PB.bytes(14, PB.bytes(1, PB.bytes(9, [])))),
        ("raw-check-without-kind", PB.varint(1, 4) + PB.bytes(14, PB.bytes(1, []))),
        ("raw-no-method", PB.varint(1, 5) + PB.varint(2, 9)),
        ("raw-nul-in-user", PB.varint(1, 6) + PB.bytes(11, Array("linus\u{0}junk".utf8).withPrefix(field: 1) + PB.string(2, "revenue-dashboard"))),
        ("raw-nul-in-project", PB.varint(1, 6) + PB.bytes(10, PB.string(1, "linus") + PB.string(2, "dc-warehouse") + PB.bytes(3, Array("quarterly-close\u{0}x".utf8)))),
        ("raw-two-methods", PB.varint(1, 8) + PB.bytes(12, PB.string(1, "ada")) + PB.bytes(11, PB.string(1, "ada") + PB.string(2, "scratchpad"))),
        ("raw-repeated-submessage", PB.varint(1, 9) + PB.bytes(11, PB.string(1, "ada")) + PB.bytes(11, PB.string(2, "scratchpad"))),
        ("raw-unknown-fields", PB.varint(1, 10) + PB.varint(99, 1) + PB.bytes(12, PB.string(1, "ada") + PB.bytes(7, [1, 2, 3])) + PB.bytes(98, [0])),
        ("raw-utf8-id", PB.varint(1, 11) + PB.bytes(12, PB.string(1, "zoë"))),
        ("raw-call-id-max", PB.varint(1, .max) + PB.varint(2, .max) + PB.varint(3, UInt64(UInt32.max)) + PB.bytes(12, PB.string(1, "ada"))),
    ]
}

extension [UInt8] {
    /// These bytes as length-delimited field `field`.
    func withPrefix(field: UInt64) -> [UInt8] { PB.bytes(field, self) }
}
