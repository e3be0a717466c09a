/**
 * The sending side of file-throughput: a whole node (nodeRole, as `p2pchat start` builds it,
 * with its Transfers engine) in this process, so that its RSS is a node's. It finds the
 * receiver (a `p2pchat start` process, which accepts the offer) by presence, sends it one
 * secure text message first (each side pins the other's key: the receiver accepts files
 * from pinned peers only), then calls `Initiator.sendFile`, what `send-file` does: the file
 * is read and hashed (the offer), the offer goes in a `msg`, and the receiver pulls the file
 * over a file session of its own. It prints {"start": true} just before that call (the
 * harness starts its clock when it reads that line) and waits until its side of the
 * transfer is done (the receiver said it has it all).
 *
 *   node dist/bench/file-sender.js --data-dir DIR --name alice --bind 127.0.0.A
 *        --peer bob --peer-udp HOST:PORT --file PATH [--timeout-s 600]
 * Prints {"start": true, "chunk": CHUNK_BYTES}, then {"done": true, "state": ..., "hwmMB": N} or {"error": "..."}.
 */
import { Effect, Option } from "effect"
import * as fs from "node:fs"
import { parseArgs } from "node:util"
import { Initiator } from "../../src/chat/Initiator.ts"
import { CHUNK_BYTES } from "../../src/domain/FileWire.ts"
import { modeOfWord } from "../../src/domain/Mode.ts"
import { testConfig } from "../../src/services/Config.ts"
import { runInNode } from "./runNode.ts"
import { PeerRegistry } from "../../src/services/PeerRegistry.ts"
import { Transfers } from "../../src/transfer/Transfers.ts"

const { values: opt } = parseArgs({
  options: {
    "data-dir": { type: "string" },
    name: { type: "string", default: "alice" },
    bind: { type: "string", default: "127.0.0.1" },
    peer: { type: "string", default: "bob" },
    "peer-udp": { type: "string" },
    file: { type: "string" },
    "timeout-s": { type: "string", default: "600" }
  }
})
const target = /^([\d.]+):(\d+)$/.exec(opt["peer-udp"] ?? "")
if (target === null || opt.file === undefined || opt["data-dir"] === undefined) {
  throw new Error("--data-dir DIR --peer-udp HOST:PORT --file PATH are required")
}

const hwmMB = () => Number(/VmHWM:\s+(\d+) kB/.exec(fs.readFileSync("/proc/self/status", "utf8"))?.[1] ?? NaN) / 1024
type Failure = { readonly _tag: string; readonly message: string }
const words = (e: string | Failure) => typeof e === "string" ? e : `${e._tag}: ${e.message}`

const program = Effect.gen(function*() {
  const registry = yield* PeerRegistry
  const initiator = yield* Initiator
  const transfers = yield* Transfers
  const deadline = Date.now() + 20_000
  for (;;) {
    const peer = yield* registry.lookup(opt.peer)
    if (Option.isSome(peer) && peer.value.status === "online") break
    if (Date.now() > deadline) return yield* Effect.fail(`${opt.peer} was not discovered within 20 s`)
    yield* Effect.sleep("10 millis")
  }
  const hello = yield* initiator.send(opt.peer, "files follow", modeOfWord("secure")).pipe(Effect.mapError(words))
  if (hello.state !== "delivered") return yield* Effect.fail(`the first message to ${opt.peer} ended ${hello.state}`)

  console.log(JSON.stringify({ start: true, chunk: CHUNK_BYTES }))
  const sent = yield* initiator.sendFile(opt.peer, [opt.file!]).pipe(Effect.mapError(words))
  const offer = sent.offers[0]
  if (offer === undefined) return yield* Effect.fail("sendFile made no offer")
  const notDelivered = sent.recipients.filter((r) => r.state !== "delivered")
  if (notDelivered.length > 0) return yield* Effect.fail(`the offer was not delivered: ${JSON.stringify(notDelivered)}`)
  const until = Date.now() + Number(opt["timeout-s"]) * 1000
  for (;;) {
    const mine = (yield* transfers.list.pipe(Effect.mapError(words))).find((t) => t.id === offer.id && t.direction === "out")
    if (mine !== undefined && (mine.state === "done" || mine.state === "failed" || mine.state === "declined")) {
      return { done: mine.state === "done", state: mine.state, reason: mine.reason, bytes: mine.bytes, hwmMB: hwmMB() }
    }
    if (Date.now() > until) return yield* Effect.fail(`the transfer did not end within ${opt["timeout-s"]} s (${mine?.state}, ${mine?.bytes} bytes)`)
    yield* Effect.sleep("50 millis")
  }
})

const config = testConfig({
  dataDir: opt["data-dir"],
  name: opt.name,
  bind: opt.bind,
  targets: [{ host: target[1]!, port: Number(target[2]) }],
  logLevel: "warning"
})
runInNode(program, config)
