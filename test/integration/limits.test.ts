/**
 * The responder's resource limits (issue 6, items 1 and 5), on loopback:
 *
 *   - load: 1,000 connections that each send one frame plus 500 slow ones held open (half a
 *     frame, or nothing), from a child process, while a well-behaved peer (a whole node in
 *     this process, through its Initiator) chats over a secure session: every message acked,
 *     p99 ack latency under 50 ms (or, on a busy machine, a quarter of the load's), the responder still serves, the heap bounded; then the
 *     same load under the default connection cap (1,024), where the cap holds and a peer
 *     that connects in the middle of it still gets in;
 *   - each limit with short values: the connection cap (10), the first-frame timeout
 *     (200 ms: a silent connection, a slow-loris, a handshake never finished), the idle
 *     timeout (300 ms), and the 64 KiB input cap (refused at 64 KiB + 1);
 *   - each limit logged once when it first bites.
 *
 * The load's sockets live in a child process (test/support/load-clients.mjs) started under
 * `ulimit -n 4096` where the hard limit allows: they must not share the responder's event
 * loop (a real flood comes from other hosts) nor this process's descriptors. This process
 * holds the responder's side of every connection; if its own limit (read from
 * /proc/self/limits) is too low for 1,500 of them, the load is scaled down to fit and the
 * test says so. Every wait is bounded; every socket and the child are closed at the end.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { spawn } from "node:child_process"
import * as fs from "node:fs"
import * as net from "node:net"
import { fileURLToPath } from "node:url"
import * as v8 from "node:v8"
import * as vm from "node:vm"
import { MAX_FRAME_BYTES } from "../../src/domain/Framing.ts"
import { type NodeConfig, resolveConfig, testConfig, UsageError } from "../../src/services/Config.ts"
import type { ResponderStats } from "../../src/chat/Responder.ts"
import { captureLog, LOOPBACK, meet, polls, sleep, startNode as startTestNode, type TestNode } from "../support/node.ts"

const TUNING = { ackTimeoutMs: 2000, connectTimeoutMs: 2000, classicPauseMs: 100, handshakeTimeoutMs: 2000 }
const LOAD_CLIENTS = fileURLToPath(new URL("../support/load-clients.mjs", import.meta.url))

v8.setFlagsFromString("--expose-gc")
const gc = vm.runInNewContext("gc") as () => void
const heapMb = () => {
  gc()
  gc()
  return process.memoryUsage().heapUsed / 1048576
}

const { waitUntil, waitUntilEffect } = polls(5000)

/** Open-files soft limit of this process (Linux), or undefined when unknown. */
const openFilesLimit = (): number | undefined => {
  try {
    const line = fs.readFileSync("/proc/self/limits", "utf8").split("\n").find((l) => l.startsWith("Max open files"))
    const soft = line?.split(/\s{2,}/)[1]
    return soft === undefined || soft === "unlimited" ? undefined : Number(soft)
  } catch {
    return undefined
  }
}

/** The load, scaled down only if this process cannot hold that many descriptors. */
const loadSize = () => {
  const want = { frames: 1000, slow: 500 }
  const limit = openFilesLimit()
  const spare = 300 // nodes, database, vitest
  if (limit === undefined || limit >= want.frames + want.slow + spare) return { ...want, scaled: false }
  const f = Math.max(0, limit - spare) / (want.frames + want.slow)
  const scaled = { frames: Math.floor(want.frames * f), slow: Math.floor(want.slow * f), scaled: true }
  console.warn(`limits.test: open files limit ${limit}: load scaled down to ${scaled.frames} + ${scaled.slow} connections`)
  return scaled
}

/** A whole node on a fresh temp data dir. */
const startNode = (name: string, config: Partial<NodeConfig> = {}) => startTestNode(name, { config, tuning: TUNING })

const stats = (node: TestNode) => node.responder.stats

const percentile = (xs: ReadonlyArray<number>, p: number) => {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!
}

// ---------------------------------------------------------------------------------------------
// Raw TCP clients in this process (for the short-limit tests)

interface RawClient {
  readonly socket: net.Socket
  readonly received: () => string
  readonly closed: () => boolean
  /** ms from the connection opening to its close; undefined while open. */
  readonly closedAfter: () => number | undefined
  readonly write: (data: string | Uint8Array) => Effect.Effect<void>
}

/** A raw TCP client of the responder; `localAddress` binds its end (another loopback address: another host). */
const rawClient = (port: number, localAddress?: string) =>
  Effect.acquireRelease(
    Effect.callback<RawClient>((resume) => {
      const socket = net.createConnection({ host: LOOPBACK, port, ...(localAddress === undefined ? {} : { localAddress }) })
      let got = ""
      let closedAt: number | undefined
      const openedAt = performance.now()
      socket.on("data", (d) => void (got += d.toString("utf8")))
      socket.on("error", () => {})
      socket.on("close", () => void (closedAt = performance.now()))
      socket.once("connect", () =>
        resume(Effect.succeed({
          socket,
          received: () => got,
          closed: () => closedAt !== undefined,
          closedAfter: () => (closedAt === undefined ? undefined : closedAt - openedAt),
          write: (data) =>
            Effect.callback<void>((done) => {
              if (socket.destroyed) return done(Effect.void)
              socket.write(data, () => done(Effect.void))
            })
        })))
    }),
    (c) => Effect.sync(() => c.socket.destroy())
  )

const b64 = (t: string) => Buffer.from(t, "utf8").toString("base64")
const plainFrame = (id: string, text = "hi") => JSON.stringify({ unencrypted_message: b64(text), id, from: "zed" }) + "\n"

/** A raw client that has sent one frame and got its ack: an established session. */
const establishedClient = (port: number, id: string) =>
  Effect.gen(function*() {
    const c = yield* rawClient(port)
    yield* c.write(plainFrame(id))
    yield* waitUntil(`ack ${id}`, () => c.received().includes(`{"ack":"${id}"}`))
    return c
  })

// ---------------------------------------------------------------------------------------------
// The load child

interface LoadChild {
  readonly lines: Array<Record<string, unknown>>
  readonly find: (event: string) => Record<string, unknown> | undefined
  readonly exited: () => boolean
  /** Closes its stdin: it closes every connection and exits. */
  readonly finish: Effect.Effect<void>
}

const loadChild = (spec: { readonly port: number; readonly slow: number; readonly frames: number }) =>
  Effect.acquireRelease(
    Effect.sync((): LoadChild & { readonly kill: () => void } => {
      const child = spawn(
        "bash",
        [
          "-c",
          // raise the child's descriptor limit where the hard limit allows; exec keeps one process
          `ulimit -n 4096 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null; exec "${process.execPath}" "$0" "$1"`,
          LOAD_CLIENTS,
          JSON.stringify({ ...spec, holdMs: 60_000 })
        ],
        { stdio: ["pipe", "pipe", "pipe"] }
      )
      const lines: Array<Record<string, unknown>> = []
      let exited = false
      let buf = ""
      child.stdout.setEncoding("utf8")
      child.stdout.on("data", (d: string) => {
        buf += d
        let i
        while ((i = buf.indexOf("\n")) >= 0) {
          const line = buf.slice(0, i)
          buf = buf.slice(i + 1)
          try {
            lines.push(JSON.parse(line) as Record<string, unknown>)
          } catch {
            lines.push({ event: "garbage", line })
          }
        }
      })
      child.stderr.on("data", (d) => process.stderr.write(`load-clients: ${d}`))
      child.on("exit", () => void (exited = true))
      return {
        lines,
        find: (event) => lines.find((l) => l["event"] === event),
        exited: () => exited,
        finish: Effect.gen(function*() {
          child.stdin.end()
          yield* waitUntil("the load child to exit", () => exited, 10_000)
        }),
        kill: () => {
          if (!exited) child.kill("SIGKILL")
        }
      }
    }),
    (c) => Effect.sync(() => c.kill())
  )

/** Sends `count` secure messages paced every `everyMs`; the ms from each call to its ack (delivered). */
const chat = (from: TestNode, to: string, count: number, everyMs: number, label: string) =>
  Effect.gen(function*() {
    const latencies: Array<number> = []
    const t0 = performance.now()
    for (let i = 0; i < count; i++) {
      const due = t0 + i * everyMs
      const wait = due - performance.now()
      if (wait > 0) yield* sleep(wait)
      const start = performance.now()
      const r = yield* from.initiator.send(to, `${label} ${i}`, "noise")
      assert.strictEqual(r.state, "delivered")
      latencies.push(performance.now() - start)
    }
    return latencies
  })

const noLimitBit = (s: ResponderStats) => Object.values(s.limits).every((n) => n === 0)

// ---------------------------------------------------------------------------------------------

describe("load: 1,000 connections with one frame each plus 500 slow ones, while a peer chats", () => {
  it.live("every message acked, p99 ack latency under 50 ms or a small part of the load's, the responder still serves, the heap stays bounded", () =>
    Effect.gen(function*() {
      const size = loadSize()
      // room for all of them at once: this test is about serving under that load (which comes
      // from one loopback address here, where a real one comes from many hosts)
      const bob = yield* startNode("bob", { maxConnections: 2048, maxConnectionsPerAddress: 2048 })
      const alice = yield* startNode("alice")
      yield* meet(alice, bob)
      yield* meet(bob, alice)
      // the secure session is open, and the code warm, before the load starts
      yield* chat(alice, "bob", 50, 0, "warm-up")
      const heapBefore = heapMb()
      const t0 = performance.now()

      const load = yield* loadChild({ port: bob.port, ...size })
      yield* waitUntil("the slow connections", () => load.find("slow-open") !== undefined, 15_000)
      // the 1,000 frames go now, while alice chats: 200 messages, one every 10 ms
      const latencies = yield* chat(alice, "bob", 200, 10, "under load")
      yield* waitUntil("the load's acks", () => load.find("acked") !== undefined, 20_000)
      const acked = load.find("acked")!
      const s = yield* stats(bob)
      const heapUnderLoad = heapMb()
      const loadMs = performance.now() - t0

      const p99 = percentile(latencies, 99)
      const p50 = percentile(latencies, 50)
      console.log(
        `load: ${size.frames} + ${size.slow} connections in ${Math.round(loadMs)} ms; alice 200 messages: ` +
          `p50 ${p50.toFixed(1)} ms, p99 ${p99.toFixed(1)} ms, max ${Math.max(...latencies).toFixed(1)} ms; ` +
          `load frames: p99 ${Number(acked["p99"]).toFixed(1)} ms; heap ${heapBefore.toFixed(1)} MB before, ` +
          `${heapUnderLoad.toFixed(1)} MB under load; peak ${s.peakActive} connections`
      )
      assert.strictEqual(load.find("slow-open")!["n"], size.slow, "every slow connection opened")
      assert.deepStrictEqual([acked["n"], acked["lost"]], [size.frames, 0], "every load frame acked")
      assert.isAtLeast(s.peakActive, size.frames + size.slow + 1, "all of them open at once, with alice's")
      assert.isTrue(noLimitBit(s), `no limit bit: ${JSON.stringify(s.limits)}`)
      assert.strictEqual(s.rejected, 0)
      // Served beside the burst, not behind it. The absolute bar (50 ms) holds on a quiet
      // machine; on a shared one (other test files in parallel workers, other jobs, one disk)
      // fsync and the event loop stall for tens of ms for minutes at a time, so there the
      // test asks what the responder controls: alice's p99 is a small part of the load's own
      // (queued behind the 1,000 frames, it would be about the same). A responder that queues
      // her behind them fails both.
      const loadP99 = Number(acked["p99"])
      assert.isTrue(
        p99 < 50 || p99 < loadP99 / 4,
        `p99 ack latency of the well-behaved peer: ${p99.toFixed(1)} ms, not under 50 ms nor under a quarter of the load's ${loadP99.toFixed(1)} ms`
      )
      // ~1,500 open connections: each a fiber, a socket and its buffers; generous
      assert.isBelow(heapUnderLoad - heapBefore, 150, "heap growth under load (MB)")

      // the responder still serves: a new connection is acked, and alice goes on
      const fresh = yield* establishedClient(bob.port, "after-load")
      assert.include(fresh.received(), `{"ack":"after-load"}`)
      yield* chat(alice, "bob", 5, 0, "still")

      // the load leaves: the connections close and the heap comes back
      yield* load.finish
      yield* waitUntilEffect("the load's connections closed", Effect.map(stats(bob), (s) => s.active <= 2), 10_000)
      const heapAfter = heapMb()
      console.log(`load: heap ${heapAfter.toFixed(1)} MB after the load left`)
      assert.isBelow(heapAfter - heapBefore, 30, "heap growth once the load left (MB)")
      const received = (yield* stats(bob)).received
      assert.strictEqual(received, 50 + 200 + 5 + size.frames + 1)
    }), 60_000)

  it.live("under the default cap (1,024) the cap holds, the oldest silent connections make room, and a new peer still gets in", () =>
    Effect.gen(function*() {
      const size = loadSize()
      // the load comes from one loopback address: the per-address limit is tested on its own
      const bob = yield* startNode("bob", { logLevel: "warning", maxConnectionsPerAddress: 2048 })
      const logged = yield* captureLog
      assert.strictEqual(testConfig({ dataDir: "/x" }).maxConnections, 1024)
      const load = yield* loadChild({ port: bob.port, ...size })
      yield* waitUntil("the load's acks", () => load.find("acked") !== undefined, 20_000)
      const acked = load.find("acked")!
      assert.deepStrictEqual([acked["n"], acked["lost"]], [size.frames, 0], "every load frame acked")

      // alice connects only now, in the middle of it
      const alice = yield* startNode("alice")
      yield* meet(alice, bob)
      yield* meet(bob, alice)
      const latencies = yield* chat(alice, "bob", 50, 10, "newcomer")
      const s = yield* stats(bob)
      console.log(
        `default cap: peak ${s.peakActive}, evicted ${s.limits.evictedAtCap}, refused ${s.limits.refusedAtCap}; ` +
          `alice p99 ${percentile(latencies, 99).toFixed(1)} ms`
      )
      if (size.frames + size.slow + 1 > 1024) {
        assert.strictEqual(s.peakActive, 1024, "never more than the cap")
        assert.strictEqual(s.limits.evictedAtCap, size.frames + size.slow + 1 - 1024, "the oldest silent ones made room")
        assert.strictEqual(s.limits.refusedAtCap, 0)
        assert.lengthOf(logged.filter((l) => l.includes("limit reached") && l.includes("connection cap")), 1, "logged once")
      }
      yield* load.finish
    }), 60_000)
})

describe("each limit, with short values", () => {
  it.live("connection cap 10: the oldest silent connection makes room; with ten sessions open the 11th is closed at once", () =>
    Effect.gen(function*() {
      const logged = yield* captureLog
      const bob = yield* startNode("bob", { maxConnections: 10, logLevel: "warning" })

      // ten silent connections; an 11th that sends a frame is served, the oldest silent one closed
      const silent: Array<RawClient> = []
      for (let i = 0; i < 10; i++) silent.push(yield* rawClient(bob.port))
      yield* waitUntilEffect("ten open", Effect.map(stats(bob), (s) => s.active === 10))
      const eleventh = yield* establishedClient(bob.port, "eleventh")
      yield* waitUntil("the oldest silent one closed", () => silent[0]!.closed())
      assert.deepStrictEqual(silent.slice(1).map((c) => c.closed()), Array(9).fill(false))
      assert.include(eleventh.received(), "eleventh")
      let s = yield* stats(bob)
      assert.strictEqual(s.limits.evictedAtCap, 1)
      assert.strictEqual(s.peakActive, 10)
      assert.strictEqual(s.rejected, 0, "closing to make room is not a rejection")

      // now ten established sessions: the newcomer is the one closed, at once, unread
      for (const c of silent) c.socket.destroy()
      yield* waitUntilEffect("only the 11th left", Effect.map(stats(bob), (s) => s.active === 1))
      const sessions = [eleventh]
      for (let i = 1; i < 10; i++) sessions.push(yield* establishedClient(bob.port, `session-${i}`))
      const refused = [yield* rawClient(bob.port), yield* rawClient(bob.port)]
      yield* refused[1]!.write(plainFrame("too-late"))
      yield* waitUntil("both newcomers closed", () => refused.every((c) => c.closed()), 2000)
      assert.isBelow(refused[0]!.closedAfter()!, 500, "closed at once")
      assert.strictEqual(refused[1]!.received(), "", "nothing read, nothing acked")
      s = yield* stats(bob)
      assert.strictEqual(s.limits.refusedAtCap, 2)
      assert.strictEqual(s.peakActive, 10)
      assert.strictEqual(s.active, 10)
      // the sessions still work
      yield* sessions[3]!.write(plainFrame("still-served"))
      yield* waitUntil("still served", () => sessions[3]!.received().includes("still-served"))

      // each limit logged once, however often it bit
      const warnings = logged.filter((l) => l.includes("limit reached"))
      assert.lengthOf(warnings.filter((l) => l.includes("oldest connection without a first frame")), 1)
      assert.lengthOf(warnings.filter((l) => l.includes("new connections closed at once")), 1)
      assert.include(warnings.join(""), "1 time so far")
    }))

  it.live("first-frame timeout 200 ms: a silent connection, a slow-loris and an unfinished handshake are closed; a prompt one is not", () =>
    Effect.gen(function*() {
      const logged = yield* captureLog
      const bob = yield* startNode("bob", { firstFrameTimeoutMs: 200, logLevel: "warning" })
      const silent = yield* rawClient(bob.port)
      const loris = yield* rawClient(bob.port)
      const handshake = yield* rawClient(bob.port)
      const prompt = yield* rawClient(bob.port)
      yield* prompt.write(plainFrame("prompt"))
      // a valid handshake message 1 (32 bytes: an ephemeral key), then never message 3
      yield* handshake.write(JSON.stringify({ proto: "p2pchat/1", hs: Buffer.alloc(32, 9).toString("base64") }) + "\n")
      // the slow-loris: one byte every 20 ms, a frame that never ends
      const frame = `{"unencrypted_message":"${b64("x".repeat(300))}","id":"loris"`
      let i = 0
      while (!loris.closed() && i < frame.length && i < 100) {
        yield* loris.write(frame[i++]!)
        yield* sleep(20)
      }
      yield* waitUntil("all three closed", () => silent.closed() && loris.closed() && handshake.closed(), 2000)
      for (const c of [silent, loris, handshake]) {
        assert.isAtLeast(c.closedAfter()!, 180)
        assert.isBelow(c.closedAfter()!, 1000)
      }
      assert.isBelow(i, 30, "the trickle did not keep the slow-loris alive")
      assert.include(handshake.received(), `"hs"`, "message 2 was answered, message 3 never came")
      yield* sleep(300)
      assert.isFalse(prompt.closed(), "a connection that sent its frame in time stays")
      assert.include(prompt.received(), "prompt")
      const s = yield* stats(bob)
      assert.strictEqual(s.limits.firstFrameTimeout, 3)
      assert.strictEqual(s.rejected, 0, "silence is not bad input")
      assert.lengthOf(logged.filter((l) => l.includes("limit reached") && l.includes("no frame or handshake")), 1)
    }))

  it.live("idle timeout 300 ms: an idle session is closed (a trickle of bytes does not count); a chatting one is not; a secure sender reconnects", () =>
    Effect.gen(function*() {
      const bob = yield* startNode("bob", { idleTimeoutMs: 300 })
      const alice = yield* startNode("alice")
      yield* meet(alice, bob)
      yield* meet(bob, alice)

      const idle = yield* establishedClient(bob.port, "idle-1")
      const trickle = yield* establishedClient(bob.port, "trickle-1")
      const chatty = yield* establishedClient(bob.port, "chatty-0")
      assert.strictEqual((yield* alice.initiator.send("bob", "before idle", "noise")).state, "delivered")
      let n = 0
      const t0 = performance.now()
      while (performance.now() - t0 < 700) {
        yield* chatty.write(plainFrame(`chatty-${++n}`))
        if (!trickle.closed()) yield* trickle.write(" {\"a\":")
        yield* sleep(100)
      }
      yield* waitUntil("the idle ones closed", () => idle.closed() && trickle.closed(), 1000)
      assert.isAtLeast(idle.closedAfter()!, 280)
      assert.isFalse(chatty.closed(), "a session with a frame every 100 ms stays")
      const s = yield* stats(bob)
      // idle, trickle and alice's secure session
      yield* waitUntilEffect("three idle closes", Effect.map(stats(bob), (s) => s.limits.idleTimeout === 3), 1000)
      assert.strictEqual(s.rejected, 0)
      // alice's link was closed under her: the next message opens a new session and is delivered once
      assert.strictEqual((yield* alice.initiator.send("bob", "after idle", "noise")).state, "delivered")
      const texts = (yield* bob.history.conversation("alice").pipe(Effect.orDie)).map((e) => e.text)
      assert.deepStrictEqual(texts, ["before idle", "after idle"])
    }))

  it.live("input cap: 64 KiB of an unfinished frame is held, one byte more ends the connection; a whole 64 KiB frame is accepted", () =>
    Effect.gen(function*() {
      const bob = yield* startNode("bob")
      assert.strictEqual(MAX_FRAME_BYTES, 65536)
      // exactly 65,536 bytes from `{` on, never closed
      const head = `{"unencrypted_message":"`
      const partial = head + "A".repeat(MAX_FRAME_BYTES - head.length)
      assert.strictEqual(Buffer.byteLength(partial), MAX_FRAME_BYTES)
      const big = yield* rawClient(bob.port)
      yield* big.write(partial)
      yield* sleep(300)
      assert.isFalse(big.closed(), "64 KiB of a frame is within the cap")
      yield* big.write("A")
      yield* waitUntil("closed at 64 KiB + 1", () => big.closed(), 2000)
      let s = yield* stats(bob)
      assert.strictEqual(s.rejectedByReason["FrameTooLarge"], 1)
      assert.strictEqual(s.limits.frameTooLarge, 1)

      // more bytes behind the limit are not read into memory: a megabyte after it changes nothing
      const flood = yield* rawClient(bob.port)
      const heapBefore = heapMb()
      flood.socket.write(Buffer.concat([Buffer.from(head), Buffer.alloc(1024 * 1024, 0x41)]))
      yield* waitUntil("the flood closed", () => flood.closed(), 2000)
      assert.isBelow(heapMb() - heapBefore, 8)
      s = yield* stats(bob)
      assert.strictEqual(s.limits.frameTooLarge, 2)

      // a complete frame of exactly 64 KiB is a frame like any other
      const idPart = `","id":"big-one"`
      const text = "B".repeat(Math.floor((MAX_FRAME_BYTES - head.length - idPart.length - 1) / 4) * 3)
      const body = head + b64(text) + idPart
      // blanks before the closing brace make it exactly 65,536 bytes from `{` to `}`
      const whole = body + " ".repeat(MAX_FRAME_BYTES - 1 - body.length) + "}"
      assert.strictEqual(Buffer.byteLength(whole), MAX_FRAME_BYTES)
      const ok = yield* rawClient(bob.port)
      yield* ok.write(whole + "\n")
      yield* waitUntil("the 64 KiB frame acked", () => ok.received().includes(`{"ack":"big-one"}`), 3000)
    }))
})

// ---------------------------------------------------------------------------------------------
// A hostile LAN (issue 6, part 6): one host holding the cap, idle plain sessions holding it

const KEY_FRAME = `{"key":1}\n`
/** How many classic key answers a raw client got. */
const keyAnswers = (c: RawClient) => c.received().split(`{"key":`).length - 1

/** A raw client whose session completed one classic key exchange: an established session that is not secure. */
const keyedClient = (port: number, label: string) =>
  Effect.gen(function*() {
    const c = yield* rawClient(port)
    yield* c.write(KEY_FRAME)
    yield* waitUntil(`the key answer of ${label}`, () => keyAnswers(c) === 1, 2000)
    return c
  })

/** One more key exchange on `c`: a frame completed, so `c` is active again. */
const rekey = (c: RawClient, label: string) =>
  Effect.gen(function*() {
    const before = keyAnswers(c)
    yield* c.write(KEY_FRAME)
    yield* waitUntil(`another key answer of ${label}`, () => keyAnswers(c) === before + 1, 2000)
  })

describe("a hostile LAN: connections per address, idle plain sessions at the cap, their shorter idle timeout", () => {
  it("--max-connections-per-address and --idle-timeout-plain are parsed like the other limits", () => {
    const c = resolveConfig({ maxConnectionsPerAddress: "8", idleTimeoutPlain: "10s" }, {})
    assert.deepStrictEqual(
      c instanceof UsageError ? c.message : [c.maxConnectionsPerAddress, c.idleTimeoutPlainMs],
      [8, 10_000]
    )
    const d = resolveConfig({}, {})
    assert.deepStrictEqual(d instanceof UsageError ? d.message : [d.maxConnectionsPerAddress, d.idleTimeoutPlainMs], [64, 30_000])
    const bad = resolveConfig({ maxConnectionsPerAddress: "0" }, {})
    assert.include(bad instanceof UsageError ? bad.message : "", "--max-connections-per-address: expected a whole number")
    const badIdle = resolveConfig({ idleTimeoutPlain: "soon" }, {})
    assert.include(badIdle instanceof UsageError ? badIdle.message : "", "--idle-timeout-plain: expected a duration")
  })

  it.live("64 connections per address: the 65th to 70th from 127.0.0.1 are closed at once, one from 127.0.0.2 still gets in and is served", () =>
    Effect.gen(function*() {
      const logged = yield* captureLog
      const bob = yield* startNode("bob", { logLevel: "warning" })
      const crowd: Array<RawClient> = []
      for (let i = 0; i < 70; i++) crowd.push(yield* rawClient(bob.port))
      yield* waitUntil("six of them closed", () => crowd.filter((c) => c.closed()).length === 6, 2000)
      yield* sleep(100)
      assert.deepStrictEqual(crowd.map((c) => c.closed()), [...Array(64).fill(false), ...Array(6).fill(true)])
      for (const c of crowd.slice(64)) assert.isBelow(c.closedAfter()!, 500, "closed at once")

      // another address is another host: it still gets in, and is served
      const other = yield* rawClient(bob.port, "127.0.0.2")
      yield* other.write(plainFrame("other-host"))
      yield* waitUntil("the other host's ack", () => other.received().includes(`{"ack":"other-host"}`), 2000)
      let s = yield* stats(bob)
      assert.strictEqual(s.limits.refusedPerAddress, 6)
      assert.strictEqual(s.active, 65)
      assert.deepStrictEqual([s.limits.refusedAtCap, s.limits.evictedAtCap, s.rejected], [0, 0, 0])

      // a connection that closes gives its address's place back
      crowd[0]!.socket.destroy()
      yield* waitUntilEffect("its place given back", Effect.map(stats(bob), (s) => s.active === 64))
      const again = yield* establishedClient(bob.port, "room-again")
      assert.include(again.received(), "room-again")
      s = yield* stats(bob)
      assert.strictEqual(s.limits.refusedPerAddress, 6)
      assert.lengthOf(logged.filter((l) => l.includes("limit reached") && l.includes("connections from one address")), 1)
      assert.strictEqual(testConfig({ dataDir: "/x" }).maxConnectionsPerAddress, 64, "the default, used here")
    }))

  it.live("at the cap (20) full of idle plain sessions ({\"key\":1} each), a secure peer gets in: the least recently active plain session makes room, never a secure one", () =>
    Effect.gen(function*() {
      const logged = yield* captureLog
      // a plain session is idle enough to close once it has had no frame for the first-frame timeout
      const bob = yield* startNode("bob", { maxConnections: 20, firstFrameTimeoutMs: 1000, logLevel: "warning" })
      const alice = yield* startNode("alice")
      yield* meet(alice, bob)
      yield* meet(bob, alice)
      const keyed = yield* Effect.all(
        Array.from({ length: 20 }, (_, i) => keyedClient(bob.port, `keyed-${i}`)),
        { concurrency: "unbounded" }
      )

      // sessions that just completed a frame are not idle: a newcomer now is refused
      const early = yield* rawClient(bob.port)
      yield* waitUntil("the early newcomer closed", () => early.closed(), 2000)
      assert.strictEqual((yield* stats(bob)).limits.refusedAtCap, 1)

      // all idle now; every one but keyed-1 completes another frame: keyed-1 is the least recently active
      yield* sleep(1100)
      for (const [i, c] of keyed.entries()) if (i !== 1) yield* rekey(c, `keyed-${i}`)
      assert.strictEqual((yield* alice.initiator.send("bob", "through the crowd", "noise")).state, "delivered")
      yield* waitUntil("keyed-1 closed to make room", () => keyed[1]!.closed(), 2000)
      assert.deepStrictEqual(keyed.filter((c) => c.closed()).length, 1)
      let s = yield* stats(bob)
      assert.deepStrictEqual([s.limits.evictedAtCap, s.limits.refusedAtCap, s.sessionsIn, s.active], [1, 1, 1, 20])

      // now alice's secure session is the least recently active of all: a newcomer still takes a plain one's place
      const open = keyed.filter((c) => !c.closed())
      for (const [i, c] of open.entries()) yield* rekey(c, `open-${i}`)
      yield* sleep(1100)
      const newcomer = yield* establishedClient(bob.port, "newcomer")
      assert.include(newcomer.received(), "newcomer")
      yield* waitUntil("the least recently active plain session closed", () => open[0]!.closed(), 2000)
      assert.strictEqual(keyed.filter((c) => c.closed()).length, 2)
      assert.strictEqual((yield* alice.initiator.send("bob", "same session", "noise")).state, "delivered")
      s = yield* stats(bob)
      assert.deepStrictEqual([s.limits.evictedAtCap, s.sessionsIn, s.rejected], [2, 1, 0], "alice's session stayed")
      const texts = (yield* bob.history.conversation("alice").pipe(Effect.orDie)).map((e) => e.text)
      assert.deepStrictEqual(texts, ["through the crowd", "same session"])
      assert.lengthOf(logged.filter((l) => l.includes("limit reached") && l.includes("closed to make room")), 1, "logged once")
    }))

  it.live("plain idle timeout 300 ms: a plain session idle that long is closed, a secure one idle as long is not", () =>
    Effect.gen(function*() {
      const logged = yield* captureLog
      const bob = yield* startNode("bob", { idleTimeoutPlainMs: 300, logLevel: "warning" })
      const alice = yield* startNode("alice")
      yield* meet(alice, bob)
      yield* meet(bob, alice)
      const plain = yield* establishedClient(bob.port, "plain-idle")
      const keyed = yield* keyedClient(bob.port, "keyed-idle")
      assert.strictEqual((yield* alice.initiator.send("bob", "before idle", "noise")).state, "delivered")
      yield* sleep(800)
      assert.isTrue(plain.closed() && keyed.closed(), "both sessions that are not secure closed")
      assert.isAtLeast(plain.closedAfter()!, 280)
      let s = yield* stats(bob)
      assert.deepStrictEqual([s.limits.idleTimeout, s.active, s.rejected], [2, 1, 0], "alice's secure session still open")
      // the same secure session carries the next message: no new handshake
      assert.strictEqual((yield* alice.initiator.send("bob", "after idle", "noise")).state, "delivered")
      s = yield* stats(bob)
      assert.deepStrictEqual([s.sessionsIn, s.limits.idleTimeout], [1, 2])
      const idleLog = logged.filter((l) => l.includes("limit reached") && l.includes("idle session closed"))
      assert.lengthOf(idleLog, 1)
      assert.include(idleLog[0]!, "0.3 s (a session that is not secure) or 300 s (a secure one)")
      assert.strictEqual(testConfig({ dataDir: "/x" }).idleTimeoutPlainMs, 30_000, "the default")
    }))
})
