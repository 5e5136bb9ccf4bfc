import LockProtocol

/// libFuzzer entry point: one request line. The decoder must answer every input with a request
/// or a `LockError` (never crash, hang or leak), and whatever JSON it accepts must survive a
/// round trip through lockd's own serializer.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = UnsafeBufferPointer(start: data, count: size)
    _ = try? Request.decode(bytes)
    if let value = try? JSONValue.parse(bytes) {
        let again = try? JSONValue.parse(Array(value.serialized.utf8))
        // Foundation's decoder does not keep member order, so compare with members sorted.
        precondition(
            again.map(canonical) == canonical(value),
            "serializer round trip changed \(value) into \(String(describing: again))")
    }
    return 0
}

private func canonical(_ value: JSONValue) -> JSONValue {
    switch value {
    case .array(let items): .array(items.map(canonical))
    case .object(let members): .object(members.map { ($0.key, canonical($0.value)) }.sorted { $0.0 < $1.0 })
    default: value
    }
}

@_silgen_name("LLVMFuzzerRunDriver")
private func runDriver(
    _ argc: UnsafeMutablePointer<CInt>,
    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
    _ body: @convention(c) (UnsafePointer<UInt8>, Int) -> CInt
) -> CInt

/// SwiftPM links an executable's entry point as `<module>_main`; hand it to libFuzzer's driver.
@_cdecl("RequestFuzzer_main")
public func fuzzerMain(
    _ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?
) -> CInt {
    var count = argc
    var arguments = argv
    return runDriver(&count, &arguments) { data, size in fuzz(data, size) }
}
