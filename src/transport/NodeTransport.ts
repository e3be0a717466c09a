/**
 * The Transport of a running node: TCP through @effect/platform-node's sockets.
 */
import * as NodeSocket from "@effect/platform-node/NodeSocket"
import * as NodeSocketServer from "@effect/platform-node/NodeSocketServer"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import { NetAddress } from "effect/net"
import type { Socket } from "effect/socket"
import { channelOf, normalizeAddress } from "./Channel.ts"
import { type Accepted, type DialOptions, Transport, TransportError } from "./Transport.ts"

const causeText = (cause: unknown): string =>
  cause instanceof Error ? cause.message : cause === undefined ? "unknown" : String(cause)

const causeOf = (e: Socket.SocketError): unknown => "cause" in e.reason ? (e.reason as { readonly cause?: unknown }).cause : undefined

const socketProblem = (e: Socket.SocketError): string => {
  const r = e.reason
  switch (r._tag) {
    case "SocketCloseError":
      return r.code === 1000 ? "closed" : `closed abnormally (${r.code})`
    case "SocketOpenError":
      return r.kind === "Timeout" ? "timed out" : causeText(r.cause)
    default:
      return causeText(causeOf(e))
  }
}

const errnoOf = (cause: unknown): string =>
  typeof cause === "object" && cause !== null && "code" in cause ? String(cause.code) : ""

const ERRNO_WORDS: Record<string, string> = {
  ECONNREFUSED: "connection refused: nothing listens on that port",
  EHOSTUNREACH: "host unreachable",
  ENETUNREACH: "network unreachable",
  ETIMEDOUT: "timed out",
  ECONNRESET: "connection reset",
  EADDRNOTAVAIL: "address not available"
}

/** A read or write that failed: a clean close is "Closed", anything else "Io". */
const streamError = (what: string) => (e: Socket.SocketError): TransportError =>
  e.reason._tag === "SocketCloseError" && e.reason.code === 1000
    ? new TransportError({ reason: "Closed", message: "connection closed", cause: e })
    : new TransportError({ reason: "Io", message: `${what}: ${socketProblem(e)}`, cause: e })

/**
 * A write on a socket already closed: the writer would wait for a drain (or a close) that
 * never comes, so a sender streaming a file to a peer that died would wait forever.
 */
const unlessClosed = <A>(socket: { readonly destroyed: boolean } | undefined, write: () => Effect.Effect<A, TransportError>) =>
  Effect.suspend(() =>
    socket?.destroyed === true ? Effect.fail(new TransportError({ reason: "Io", message: "write failed: the connection is closed" })) : write()
  )

const bytesOf = (reader: Socket.Reader, writer: Socket.Writer, socket?: { readonly destroyed: boolean }) => ({
  pull: Effect.mapError(reader.pull, streamError("connection failed")),
  write: (text: string) => unlessClosed(socket, () => Effect.mapError(writer.write(text), streamError("write failed"))),
  // corked: a length and its message leave in one segment where they fit
  writeBytes: (chunks: ReadonlyArray<Uint8Array>) =>
    chunks.length === 0
      ? Effect.void
      : unlessClosed(socket, () => Effect.mapError(writer.writeAll(chunks as [Uint8Array, ...Array<Uint8Array>]), streamError("write failed")))
})

const dial = (host: string, port: number, timeoutMs: number, options?: DialOptions) =>
  Effect.gen(function*() {
    // Each write leaves at once (no Nagle), so a classic peer gets one frame per read.
    // readableHighWaterMark: what Node reads ahead of the reader (net.Socket passes it to its stream).
    const readAhead = options?.readAheadBytes === undefined ? {} : { readableHighWaterMark: options.readAheadBytes }
    const socket = yield* NodeSocket.makeNet({ host, port, noDelay: true, openTimeout: timeoutMs, ...readAhead })
    const reader = yield* socket.reader.pipe(
      Effect.mapError((e) => {
        const timeout = e.reason._tag === "SocketOpenError" && e.reason.kind === "Timeout"
        return new TransportError({
          reason: timeout ? "DialTimeout" : "Refused",
          cause: e,
          message: timeout
            ? `no answer from ${host}:${port} within ${timeoutMs / 1000} s`
            : `cannot connect to ${host}:${port} (${ERRNO_WORDS[errnoOf(causeOf(e))] ?? socketProblem(e)})`
        })
      })
    )
    const writer = yield* socket.writer
    return channelOf(bytesOf(reader, writer), { address: host, port })
  })

const listenProblem = (cause: unknown, host: string, port: number): string => {
  const where = `TCP port ${port}${host !== "0.0.0.0" ? ` on ${host}` : ""}`
  switch (errnoOf(cause)) {
    case "EADDRINUSE":
      return `cannot listen on ${where}: the port is already in use (another p2pchat or chat responder?); ` +
        `choose another with --tcp-port`
    case "EACCES":
    case "EPERM":
      return `cannot listen on ${where}: permission denied (ports below 1024 need privileges); choose another with --tcp-port`
    case "EADDRNOTAVAIL":
      return `cannot listen on ${where}: ${host} is not an address of this host; fix --bind`
    default:
      return `cannot listen on ${where} (${causeText(cause)}); choose another with --tcp-port or --bind`
  }
}

/** A connection the server accepted, seen through the transport seam. */
const accepted = (socket: Socket.Socket) =>
  Effect.map(Effect.serviceOption(NodeSocket.NetSocket), (net): Accepted => {
    const address = normalizeAddress(Option.match(net, { onNone: () => undefined, onSome: (s) => s.remoteAddress }))
    const port = Option.match(net, { onNone: () => 0, onSome: (s) => s.remotePort ?? 0 })
    return {
      address,
      port,
      label: `${address}:${port}`,
      open: (maxFrameBytes) =>
        Effect.gen(function*() {
          // Acks and key answers are small and awaited: do not let Nagle hold them back.
          if (Option.isSome(net)) net.value.setNoDelay(true)
          const reader = yield* socket.reader.pipe(
            Effect.mapError((e) =>
              new TransportError({ reason: "Io", cause: e, message: `connection lost before it was served: ${socketProblem(e)}` })
            )
          )
          const writer = yield* socket.writer
          return channelOf(bytesOf(reader, writer, Option.getOrUndefined(net)), { address, port }, maxFrameBytes)
        }),
      destroy: Effect.sync(() => {
        if (Option.isSome(net)) net.value.destroy()
      }),
      // An orderly close (FIN) of a socket never read: it is still paused.
      refuse: Effect.sync(() => {
        if (Option.isSome(net)) net.value.destroySoon()
      })
    }
  })

export const make = Transport.of({
  dial,
  serve: (options, handle) =>
    Effect.gen(function*() {
      // highWaterMark: what Node reads ahead per connection before TCP backpressure applies
      // (16 KiB, Node 20's default, stated so that a newer Node's larger default does not apply).
      // allowHalfOpen: a peer's FIN does not close our side at once; the connection closes
      // when its handler is done, so whatever it says about the end (a refusal logged and
      // counted, an ack) comes before the peer sees the connection close.
      const server = yield* NodeSocketServer.make({
        host: options.host,
        port: options.port,
        highWaterMark: 16 * 1024,
        allowHalfOpen: true
      }).pipe(
        Effect.mapError((e) =>
          new TransportError({ reason: "Listen", cause: e, message: listenProblem(e.reason.cause, options.host, options.port) })
        )
      )
      yield* Effect.forkScoped(server.run((socket) => Effect.flatMap(accepted(socket), (c) => Effect.scoped(handle(c)))))
      return NetAddress.isInetAddress(server.address) ? server.address.port : options.port
    })
})

export const layer = Layer.succeed(Transport, make)
