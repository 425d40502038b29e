// JSON serialization. No Foundation.
//
// - Object members are written in stored order.
// - An integral number with magnitude below 2^63 is written as an integer ("3", not
//   "3.0"); other numbers use Swift's shortest round-tripping form ("0.1", "1e-07",
//   "1.5e+300"). A non-finite number, which JSON cannot express, is written as `null`.
// - Strings escape '"', '\' and control characters (as \n, \t, ... or \u00XX); everything
//   else, including non-ASCII text, is written as UTF-8.
// - Pretty output indents by two spaces, puts every element and member on its own line,
//   writes empty containers as `[]`/`{}` and has no trailing newline.

extension JSONValue {
    /// The JSON text of this value.
    public func serialized(pretty: Bool = false) -> String {
        var output: [UInt8] = []
        output.reserveCapacity(128)
        append(to: &output, pretty: pretty)
        return String(decoding: output, as: UTF8.self)
    }

    /// Appends the JSON text of this value, as UTF-8, to `output`.
    public func append(to output: inout [UInt8], pretty: Bool = false) {
        JSONWriter.write(self, to: &output, pretty: pretty, indent: 0)
    }

    /// Appends the JSON text of this value to `output`.
    public func append(to output: inout String, pretty: Bool = false) {
        var bytes: [UInt8] = []
        append(to: &bytes, pretty: pretty)
        output += String(decoding: bytes, as: UTF8.self)
    }
}

enum JSONWriter {
    static func write(_ value: JSONValue, to output: inout [UInt8], pretty: Bool, indent: Int) {
        switch value {
        case .null:
            appendASCII("null", to: &output)
        case .bool(let flag):
            appendASCII(flag ? "true" : "false", to: &output)
        case .number(let number):
            appendNumber(number, to: &output)
        case .string(let string):
            appendString(string, to: &output)
        case .array(let elements):
            guard !elements.isEmpty else {
                appendASCII("[]", to: &output)
                return
            }
            output.append(UInt8(ascii: "["))
            for (index, element) in elements.enumerated() {
                if index > 0 { output.append(UInt8(ascii: ",")) }
                if pretty { newline(indent + 1, to: &output) }
                write(element, to: &output, pretty: pretty, indent: indent + 1)
            }
            if pretty { newline(indent, to: &output) }
            output.append(UInt8(ascii: "]"))
        case .object(let object):
            guard !object.members.isEmpty else {
                appendASCII("{}", to: &output)
                return
            }
            output.append(UInt8(ascii: "{"))
            for (index, member) in object.members.enumerated() {
                if index > 0 { output.append(UInt8(ascii: ",")) }
                if pretty { newline(indent + 1, to: &output) }
                appendString(member.key, to: &output)
                output.append(UInt8(ascii: ":"))
                if pretty { output.append(UInt8(ascii: " ")) }
                write(member.value, to: &output, pretty: pretty, indent: indent + 1)
            }
            if pretty { newline(indent, to: &output) }
            output.append(UInt8(ascii: "}"))
        }
    }

    private static func newline(_ indent: Int, to output: inout [UInt8]) {
        output.append(UInt8(ascii: "\n"))
        output.append(contentsOf: repeatElement(UInt8(ascii: " "), count: indent * 2))
    }

    private static func appendASCII(_ text: StaticString, to output: inout [UInt8]) {
        text.withUTF8Buffer { output.append(contentsOf: $0) }
    }

    static func appendNumber(_ number: Double, to output: inout [UInt8]) {
        guard number.isFinite else {
            appendASCII("null", to: &output)
            return
        }
        if number == number.rounded(.towardZero), number >= -9_223_372_036_854_775_808.0,
            number < 9_223_372_036_854_775_808.0
        {
            appendInteger(Int64(number), to: &output)
        } else {
            output.append(contentsOf: number.description.utf8)
        }
    }

    static func appendInteger(_ value: Int64, to output: inout [UInt8]) {
        if value < 0 { output.append(UInt8(ascii: "-")) }
        var magnitude = value.magnitude
        // 20 digits hold any UInt64.
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 20) { buffer in
            var index = buffer.count
            repeat {
                index -= 1
                buffer[index] = UInt8(ascii: "0") + UInt8(magnitude % 10)
                magnitude /= 10
            } while magnitude > 0
            output.append(contentsOf: UnsafeBufferPointer(rebasing: buffer[index...]))
        }
    }

    static func appendString(_ string: String, to output: inout [UInt8]) {
        output.append(UInt8(ascii: "\""))
        appendEscapedContent(string, to: &output)
        output.append(UInt8(ascii: "\""))
    }

    /// Appends `string` escaped for the inside of a JSON string literal.
    static func appendEscapedContent(_ string: String, to output: inout [UInt8]) {
        let done: Void? = string.utf8.withContiguousStorageIfAvailable { bytes in
            appendEscaped(bytes, to: &output)
        }
        if done == nil {
            ContiguousArray(string.utf8).withUnsafeBufferPointer { appendEscaped($0, to: &output) }
        }
    }

    private static func appendEscaped(_ bytes: UnsafeBufferPointer<UInt8>, to output: inout [UInt8]) {
        var runStart = 0
        for index in 0..<bytes.count {
            let byte = bytes[index]
            guard byte < 0x20 || byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") else { continue }
            if runStart < index {
                output.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[runStart..<index]))
            }
            runStart = index + 1
            output.append(UInt8(ascii: "\\"))
            switch byte {
            case UInt8(ascii: "\""): output.append(UInt8(ascii: "\""))
            case UInt8(ascii: "\\"): output.append(UInt8(ascii: "\\"))
            case 0x0A: output.append(UInt8(ascii: "n"))
            case 0x0D: output.append(UInt8(ascii: "r"))
            case 0x09: output.append(UInt8(ascii: "t"))
            case 0x08: output.append(UInt8(ascii: "b"))
            case 0x0C: output.append(UInt8(ascii: "f"))
            default:
                let hexDigits: StaticString = "0123456789abcdef"
                output.append(contentsOf: [UInt8(ascii: "u"), UInt8(ascii: "0"), UInt8(ascii: "0")])
                hexDigits.withUTF8Buffer { table in
                    output.append(table[Int(byte >> 4)])
                    output.append(table[Int(byte & 0x0F)])
                }
            }
        }
        if runStart < bytes.count {
            output.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[runStart..<bytes.count]))
        }
    }
}
