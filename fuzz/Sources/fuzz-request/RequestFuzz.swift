// Fuzz target `request`: the two request decoders on arbitrary payloads (the bytes after a
// frame header).
//
// The epoll transport answers plain checks on its fast path (`FastPathDecoder`, answers by
// `FastPathEncoder`) and everything else on the general path (`WireRequest(decoding:)`,
// answers by `WireResponse`). For every input:
//
// - the fast path answers or declines; when it answers, the general path decodes the same
//   request (same call id, version, check, ids byte for byte, required level/access) and
//   the fast path's framed answer is byte-identical to the general path's; it declines
//   nothing the general path decodes as a plain check (a small payload);
// - a fast decoder with a tiny arena answers the same or declines; a check decoded earlier
//   with `keepingEarlier` stays intact;
// - the general path's errors are INVALID_ARGUMENT, RESOURCE_EXHAUSTED or UNIMPLEMENTED
//   with a message; a smaller batch limit changes only batches over it;
// - what the general path decodes re-encodes (Swift encoder) to the same request, and its
//   answer (or error answer) decodes back to the same response.

import AuthzEngine
import AuthzWire
import AuthzWorkloads
import FuzzSupport

/// The snapshot answers come from: the demo workspace (the seeds use its ids).
let snapshot = Snapshot(workspace: DemoWorkspace.workspace, version: 7)
nonisolated(unsafe) let decoder = FastPathDecoder()
nonisolated(unsafe) let smallDecoder = FastPathDecoder(arenaBytes: 256)

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzRequest(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    check(UnsafeRawBufferPointer(start: data, count: size))
    return 0
}

@_cdecl("LLVMFuzzerInitialize")
public func initialize(_ argc: UnsafeMutablePointer<CInt>?, _ argv: UnsafeMutableRawPointer?) -> CInt {
    Fuzz.initialize(seeds: seeds()) { seed in seed.withUnsafeBytes { check($0) } }
    return 0
}

func seeds() -> [(name: String, bytes: [UInt8])] {
    Seeds.requests.map { ($0.name, Array($0.request.frameBytes.dropFirst(FrameHeader.size))) }
        + Seeds.payloads.map { ($0.name, $0.payload) }
}

/// Plain checks decline only when unpacking needs more than the arena (256 KiB): never for
/// payloads this small (every field protobuf-c keeps, even a repeated submessage merged
/// into the first, takes at most ~100 bytes of arena and at least 2 bytes of payload).
let plainChecksAlwaysFastUpTo = 1024

func decodeGeneral(_ payload: UnsafeRawBufferPointer, maxBatchChecks: Int = WireRequest.defaultMaxBatchChecks)
    -> Result<WireRequest, WireRequestError>
{
    Result { () throws(WireRequestError) -> WireRequest in
        try WireRequest(decoding: payload, maxBatchChecks: maxBatchChecks)
    }
}

func check(_ payload: UnsafeRawBufferPointer) {
    let general = decodeGeneral(payload)
    checkGeneral(general, payload)

    let fast = decoder.decode(payload)
    if let fast {
        let request = Answers.request(fast)
        guard case .success(let decoded) = general else {
            Fuzz.fail("the fast path decoded \(request); the general path refused it: \(general)")
        }
        Fuzz.require(decoded == request, "the fast path decoded \(request); the general path \(decoded)")
        checkIdBytes(fast, decoded)
        let fastFrame = Answers.fastFrame(fast, in: snapshot)
        let generalFrame = Answers.general(general, from: snapshot)!.frameBytes
        Fuzz.require(
            fastFrame == generalFrame,
            "answers differ for \(request):\n fast    \(fastFrame)\n general \(generalFrame)")

        // A second decode keeping the first: the first check's bytes stay as they were.
        if decoder.decode(payload, keepingEarlier: true) != nil {
            Fuzz.require(Answers.request(fast) == request, "a decode with keepingEarlier changed an earlier check")
        }
    } else if case .success(let decoded) = general, isPlain(decoded), payload.count <= plainChecksAlwaysFastUpTo {
        Fuzz.fail("the fast path declined the plain check \(decoded) (\(payload.count) bytes)")
    }

    // A tiny arena: the same answer, or a decline (never a partial decode).
    if let small = smallDecoder.decode(payload) {
        Fuzz.require(fast != nil, "only the small-arena decoder answered")
        Fuzz.require(
            Answers.request(small) == Answers.request(fast!), "the small-arena decoder decoded another request")
    }
}

/// The fast path's id bytes are exactly the general path's strings (no lossy decoding).
func checkIdBytes(_ fast: FastCheck, _ decoded: WireRequest) {
    func same(_ bytes: UnsafeRawBufferPointer, _ text: String) -> Bool { Array(bytes).elementsEqual(text.utf8) }
    switch (fast.kind, decoded.method) {
    case (.effectivePermission(let user, let project, _), .check(.effectivePermission(let query))):
        Fuzz.require(same(user, query.user) && same(project, query.project), "id bytes differ")
    case (.canUse(let user, let asset, let project, _), .check(.canUse(let query))):
        Fuzz.require(same(user, query.user) && same(asset, query.asset), "id bytes differ")
        Fuzz.require(
            project.map { same($0, query.project ?? "") } ?? (query.project == nil), "project id bytes differ")
    case (.seatType(let user), .check(.seatType(let query))):
        Fuzz.require(same(user, query), "id bytes differ")
    default:
        Fuzz.fail("the fast path decoded another kind of check than the general path: \(decoded)")
    }
}

/// A request the fast path documents it answers.
func isPlain(_ request: WireRequest) -> Bool {
    guard !request.explain else { return false }
    switch request.method {
    case .check(.effectivePermission), .check(.canUse), .check(.seatType): return true
    default: return false
    }
}

func checkGeneral(_ general: Result<WireRequest, WireRequestError>, _ payload: UnsafeRawBufferPointer) {
    switch general {
    case .failure(let failure):
        let allowed: [RPCCode] = [.invalidArgument, .resourceExhausted, .unimplemented]
        Fuzz.require(allowed.contains(failure.error.code), "unexpected error code: \(failure)")
        Fuzz.require(!failure.error.message.isEmpty, "an error without a message: \(failure)")
    case .success(let request):
        // What the decoder accepted is valid: it survives the Swift encoder unchanged.
        let reencoded = request.frameBytes
        let again = reencoded.withUnsafeBytes { decodeGeneral(UnsafeRawBufferPointer(rebasing: $0[FrameHeader.size...])) }
        guard case .success(let roundTripped) = again, roundTripped == request else {
            Fuzz.fail("\(request) re-encoded decodes as \(again)")
        }
    }

    // A smaller batch limit changes only the answer to batches over it.
    let limit = 2
    let limited = decodeGeneral(payload, maxBatchChecks: limit)
    switch (general, limited) {
    case (.success(let request), .success(let same)):
        Fuzz.require(request == same, "the batch limit changed a decoded request")
    case (.success(let request), .failure(let failure)):
        guard case .batch(let checks) = request.method, checks.count > limit,
            failure.error.code == .resourceExhausted, failure.callId == request.callId
        else { Fuzz.fail("a batch limit of \(limit) refused \(request): \(failure)") }
    case (.failure(let failure), .failure(let same)):
        Fuzz.require(
            failure.callId == same.callId && (same.error.code == .resourceExhausted || same.error.message == failure.error.message),
            "the batch limit changed an error: \(failure) vs \(same)")
    case (.failure(let failure), .success(let request)):
        Fuzz.fail("a smaller batch limit accepted \(request) refused with \(failure)")
    }

    // The answer (or error answer) survives the response codec.
    if let response = Answers.general(general, from: snapshot) {
        let bytes = response.frameBytes
        let decoded = bytes.withUnsafeBytes { buffer in
            Result { () throws(WireError) -> WireResponse in
                try WireResponse(decoding: UnsafeRawBufferPointer(rebasing: buffer[FrameHeader.size...]))
            }
        }
        guard case .success(let same) = decoded, same == response else {
            Fuzz.fail("the response \(response) decodes as \(decoded)")
        }
    }
}
