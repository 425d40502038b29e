import AuthzDocument
import Testing

@Suite("JSON serializer")
struct JSONSerializerTests {
    @Test func compact() {
        let value: JSONValue = ["b": 1, "a": [true, false, .null, "x"], "c": [:], "d": [], "e": -2.5]
        #expect(value.serialized() == #"{"b":1,"a":[true,false,null,"x"],"c":{},"d":[],"e":-2.5}"#)
        #expect(value.description == value.serialized())
    }

    @Test func pretty() {
        let value: JSONValue = ["b": 1, "a": [true, ["k": "v"]], "c": [:], "d": []]
        let expected = """
            {
              "b": 1,
              "a": [
                true,
                {
                  "k": "v"
                }
              ],
              "c": {},
              "d": []
            }
            """
        #expect(value.serialized(pretty: true) == expected)
        #expect(JSONValue.array([]).serialized(pretty: true) == "[]")
        #expect(JSONValue.number(3).serialized(pretty: true) == "3")
    }

    @Test func numbers() {
        let cases: [(Double, String)] = [
            (0, "0"), (-0.0, "0"), (1, "1"), (-1, "-1"), (42, "42"), (1.5, "1.5"), (-0.25, "-0.25"),
            (0.1, "0.1"), (1e-7, "1e-07"), (9_007_199_254_740_992, "9007199254740992"),
            (-9_007_199_254_740_992, "-9007199254740992"), (1e18, "1000000000000000000"),
            (-9_223_372_036_854_775_808, "-9223372036854775808"), (1e20, "1e+20"), (1.5e300, "1.5e+300"),
            (.leastNonzeroMagnitude, "5e-324"), (.infinity, "null"), (-.infinity, "null"), (.nan, "null"),
        ]
        for (number, text) in cases {
            #expect(JSONValue.number(number).serialized() == text, "\(number)")
        }
    }

    @Test func stringEscapes() {
        #expect(JSONValue.string("plain").serialized() == #""plain""#)
        #expect(JSONValue.string("a\"b\\c/d").serialized() == #""a\"b\\c/d""#)
        #expect(JSONValue.string("\n\r\t\u{8}\u{C}").serialized() == #""\n\r\t\b\f""#)
        #expect(JSONValue.string("\u{0}\u{1}\u{1F}\u{7F}").serialized() == "\"\\u0000\\u0001\\u001f\u{7F}\"")
        #expect(JSONValue.string("é 😀 中文").serialized() == "\"é 😀 中文\"")
        #expect(JSONValue.object(["k\"ey": "v"]).serialized() == #"{"k\"ey":"v"}"#)
    }

    @Test func appendVariants() {
        let value: JSONValue = ["a": [1, 2]]
        var bytes: [UInt8] = Array("x=".utf8)
        value.append(to: &bytes)
        #expect(String(decoding: bytes, as: UTF8.self) == #"x={"a":[1,2]}"#)
        var text = "y="
        value.append(to: &text)
        #expect(text == #"y={"a":[1,2]}"#)
    }

    @Test func roundTrips() throws {
        let values: [JSONValue] = [
            .null, true, false, 0, -1, 0.1, 1e-7, 1.7976931348623157e308, .number(.leastNonzeroMagnitude), 9_007_199_254_740_992,
            "", "text with \"quotes\", \\ and \n\t\u{0}\u{1F} and é😀",
            [], [:], [[[]]], ["a": ["b": ["c": [1, "2", .null]]]],
            .object(JSONObject([(key: "dup", value: 1), (key: "dup", value: 2)])),
        ]
        for value in values {
            for pretty in [false, true] {
                let text = value.serialized(pretty: pretty)
                #expect(try JSONValue.parse(text) == value, "\(text)")
            }
        }
        // Text → value → text is the identity on compact canonical text.
        let text = #"{"z":[1,2.5,-3e-05,"s\u0001",{"k":null}],"a":true}"#
        #expect(try JSONValue.parse(text).serialized() == text)
    }

    @Test func objectEditing() {
        var object: JSONObject = ["a": 1, "b": 2]
        object["a"] = 10
        object["c"] = 3
        #expect(object.keys == ["a", "b", "c"])
        #expect(object["a"] == 10)
        object.append("a", 11)
        #expect(object.duplicateKeyIndices == [3])
        object["a"] = nil
        #expect(object.keys == ["b", "c"])
        #expect(object != ["c": 3, "b": 2])  // order matters
        #expect(object == ["b": 2, "c": 3])
    }
}
