// Helpers of the AuthzWire tests: encode/decode shortcuts. The protobuf oracle (`PB`) is
// in WireTestSupport; seeded randomness is AuthzWorkloads.SplitMix64.

import AuthzWire

/// The payload of the single frame `bytes` must hold.
func framePayload(_ bytes: [UInt8], maxPayloadLength: Int = Int(UInt32.max)) -> [UInt8]? {
    bytes.withUnsafeBytes { buffer in
        guard case .frame(let frame) = FrameParser(maxPayloadLength: maxPayloadLength).parse(buffer),
            frame.length == bytes.count
        else { return nil }
        return Array(bytes[frame.payload])
    }
}

func frame(_ request: WireRequest) -> [UInt8] {
    var bytes: [UInt8] = []
    request.append(to: &bytes)
    return bytes
}

func frame(_ response: WireResponse) -> [UInt8] {
    var bytes: [UInt8] = []
    response.append(to: &bytes)
    return bytes
}

/// Decodes a request payload: the request, or the error.
func decodeRequest(
    _ payload: [UInt8], maxBatchChecks: Int = WireRequest.defaultMaxBatchChecks
) -> Result<WireRequest, WireRequestError> {
    payload.withUnsafeBytes { buffer in
        do throws(WireRequestError) {
            return .success(try WireRequest(decoding: buffer, maxBatchChecks: maxBatchChecks))
        } catch {
            return .failure(error)
        }
    }
}

/// The error decoding a request payload gives, nil when it decodes.
func requestError(_ payload: [UInt8], maxBatchChecks: Int = WireRequest.defaultMaxBatchChecks) -> WireRequestError? {
    if case .failure(let error) = decodeRequest(payload, maxBatchChecks: maxBatchChecks) { return error }
    return nil
}

func decodeResponse(_ payload: [UInt8]) -> Result<WireResponse, WireError> {
    payload.withUnsafeBytes { buffer in
        do throws(WireError) {
            return .success(try WireResponse(decoding: buffer))
        } catch {
            return .failure(error)
        }
    }
}

/// The protobuf payload of an encoded request or response (the frame minus its header).
func payload(of request: WireRequest) -> [UInt8] { Array(frame(request).dropFirst(FrameHeader.size)) }
func payload(of response: WireResponse) -> [UInt8] { Array(frame(response).dropFirst(FrameHeader.size)) }
