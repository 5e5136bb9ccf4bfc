import LockCore
import NIOCore

/// Splits the byte stream into lines (without the newline; a trailing CR is dropped), refuses a
/// line longer than `limits.maxLineBytes` before buffering more of it, and gives up on a line that
/// stays incomplete for `limits.lineTimeout` (slowloris). Limits are read per call, so a
/// configuration reload reaches connections that are already open.
struct LineFrameDecoder: ByteToMessageDecoder {
    typealias InboundOut = ByteBuffer

    struct LineTooLong: Error {}
    struct LineTimedOut: Error {}

    /// The timer of the current incomplete line; a class so the scheduled task can see it.
    private final class PartialLine {
        var timer: Scheduled<Void>?
    }

    let limits: () -> LockdConfiguration.Limits
    private var scanned = 0
    private let partial = PartialLine()

    init(limits: @escaping () -> LockdConfiguration.Limits) { self.limits = limits }

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        let view = buffer.readableBytesView
        let maximumLength = limits().maxLineBytes
        guard let newline = view.dropFirst(scanned).firstIndex(of: UInt8(ascii: "\n")) else {
            scanned = view.count
            if scanned > maximumLength { throw LineTooLong() }
            if scanned > 0, partial.timer == nil { startTimer(context: context) }
            return .needMoreData
        }
        scanned = 0
        var length = newline - view.startIndex
        if length > maximumLength { throw LineTooLong() }
        if length > 0, view[newline - 1] == UInt8(ascii: "\r") { length -= 1 }
        let line = buffer.getSlice(at: buffer.readerIndex, length: length)!
        buffer.moveReaderIndex(forwardBy: newline - view.startIndex + 1)
        // A whole line is progress: the clock restarts for whatever follows it.
        partial.timer?.cancel()
        partial.timer = nil
        context.fireChannelRead(wrapInboundOut(line))
        return .continue
    }

    mutating func decodeLast(
        context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool
    ) throws -> DecodingState {
        let state = try decode(context: context, buffer: &buffer)
        if state == .needMoreData, buffer.readableBytes > 0 {
            // A last line without its newline still counts: `printf '{...}' | socat` sends one.
            let line = buffer.readSlice(length: buffer.readableBytes)!
            scanned = 0
            context.fireChannelRead(wrapInboundOut(line))
        }
        partial.timer?.cancel()
        partial.timer = nil
        return .needMoreData
    }

    private func startTimer(context: ChannelHandlerContext) {
        let partial = self.partial
        let seconds = limits().lineTimeout
        partial.timer = context.eventLoop.assumeIsolated().scheduleTask(
            in: .nanoseconds(Seconds.signedNanoseconds(seconds))
        ) {
            partial.timer = nil
            context.fireErrorCaught(LineTimedOut())
        }
    }
}
