/**
 * Broadcast (`send --all`, the console's `all`), end to end: in-process nodes on loopback
 * (real TCP, real SQLite in temp data dirs), a classic peer simulated with node:net, and
 * the built CLI for `send --all` and `history '*all*'`. Every wait is bounded.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as net from "node:net"
import { expect } from "vitest"
import { ALL } from "../../src/services/History.ts"
import { decodeInner } from "../../src/domain/Frames.ts"
import * as Result from "effect/Result"
import { meet, messageEvents, polls, startNode, tcpServer, tempDir, type TestNode } from "../support/node.ts"
import { runCli, spawnCli, useBuiltCli } from "../support/cli.ts"

// acks wait 5 s: a down peer is refused at once anyway, and a loaded machine (other suites
// writing large files) can hold an ack past 1 s
const TUNING = { ackTimeoutMs: 5000, connectTimeoutMs: 1000, classicPauseMs: 100 }
const { waitUntil, waitUntilEffect } = polls(5000)

const received = (node: TestNode) =>
  Effect.map(node.history.conversation(), (all) => all.filter((h) => h.direction === "received"))

const states = (node: TestNode) =>
  Effect.map(node.history.inConversation(ALL), (rows) =>
    rows.map((r) => r.direction === "sent" ? Object.fromEntries(r.recipients.map((c) => [c.peer, c.state])) : {}))

describe("broadcast to every peer online", () => {
  it.live("three p2pchat peers each get it once, secure, marked to everyone; history '*all*' shows it once with each state", () =>
    Effect.gen(function*() {
      const alice = yield* startNode("alice", { tuning: TUNING })
      const others = [yield* startNode("bob", { tuning: TUNING }), yield* startNode("carol", { tuning: TUNING }), yield* startNode("dave", { tuning: TUNING })]
      for (const peer of others) yield* meet(alice, peer)
      const result = yield* alice.initiator.broadcast("hello everyone")
      assert.strictEqual(result.conversation, ALL)
      assert.deepStrictEqual(
        [...result.recipients].sort((a, b) => a.peer.localeCompare(b.peer)),
        ["bob", "carol", "dave"].map((peer) => ({ peer, mode: "noise", state: "delivered" }))
      )
      for (const peer of others) {
        const got = yield* received(peer)
        assert.strictEqual(got.length, 1, peer.name)
        assert.deepInclude(got[0]!, { id: result.id, peer: "alice", text: "hello everyone", mode: "noise", conversation: ALL })
        yield* waitUntil(`${peer.name}'s message event`, () => messageEvents(peer.events).length === 1)
        assert.strictEqual(peer.events.flatMap((e) => e.event === "message" ? [e.to] : [])[0], ALL)
      }
      // one row per recipient, one line in '*all*'
      const rows = yield* alice.history.inConversation(ALL)
      assert.strictEqual(rows.length, 1)
      assert.deepStrictEqual(yield* states(alice), [{ bob: "delivered", carol: "delivered", dave: "delivered" }])
      const bobs = yield* alice.history.conversation("bob")
      assert.deepInclude(bobs[0]!, { id: result.id, direction: "sent", state: "delivered", conversation: ALL })
    }))

  it.live("a recipient that is down is pending; it gets the copy exactly once, still to everyone, when it is heard again", () =>
    Effect.gen(function*() {
      const alice = yield* startNode("alice", { tuning: TUNING })
      const bob = yield* startNode("bob", { tuning: TUNING })
      const daveDir = yield* tempDir("dave")
      const dave = yield* startNode("dave", { tuning: TUNING, dataDir: daveDir })
      yield* meet(alice, bob)
      yield* meet(alice, dave)
      yield* dave.close
      const result = yield* alice.initiator.broadcast("are you there")
      const byPeer = Object.fromEntries(result.recipients.map((r) => [r.peer, r.state]))
      assert.deepStrictEqual(byPeer, { bob: "delivered", dave: "pending" })
      assert.isString(result.recipients.find((r) => r.peer === "dave")!.reason)
      assert.deepStrictEqual(yield* states(alice), [{ bob: "delivered", dave: "pending" }])
      // dave comes back (same data dir, so the same key, on a new port) and is heard
      const back = yield* startNode("dave", { tuning: TUNING, dataDir: daveDir })
      yield* meet(alice, back)
      yield* waitUntilEffect("dave's copy delivered", Effect.map(states(alice), (s) => s[0]?.["dave"] === "delivered"))
      yield* meet(alice, back) // heard again: nothing more goes
      yield* Effect.sleep("300 millis")
      const got = yield* received(back)
      assert.strictEqual(got.length, 1)
      assert.deepInclude(got[0]!, { id: result.id, text: "are you there", conversation: ALL })
      assert.strictEqual((yield* received(bob)).length, 1)
    }))

  it.live("a classic peer is skipped (nothing stored, no connection) unless --plain is given; the secure peers still get noise", () =>
    Effect.gen(function*() {
      const alice = yield* startNode("alice", { tuning: TUNING })
      const bob = yield* startNode("bob", { tuning: TUNING })
      const frames: Array<string> = []
      let connections = 0
      const classic = yield* tcpServer((socket: net.Socket) => {
        connections++
        socket.on("data", (d) => void frames.push(d.toString("utf8")))
      })
      yield* meet(alice, bob)
      yield* alice.registry.heard({ username: "oldie", port: classic.port }, "127.0.0.1", 0)
      const first = yield* alice.initiator.broadcast("secure only")
      const skipped = first.recipients.find((r) => r.peer === "oldie")!
      assert.deepInclude(skipped, { mode: null, state: "skipped" })
      assert.match(skipped.reason!, /classic peer/)
      assert.strictEqual(connections, 0)
      assert.strictEqual((yield* alice.history.conversation("oldie")).length, 0)
      assert.deepStrictEqual(yield* states(alice), [{ bob: "delivered" }])

      const second = yield* alice.initiator.broadcast("to all, even you", "plain")
      assert.deepStrictEqual(
        Object.fromEntries(second.recipients.map((r) => [r.peer, [r.mode, r.state]])),
        { bob: ["noise", "delivered"], oldie: ["plain", "sent"] }
      )
      yield* waitUntil("the classic peer's frame", () => frames.join("").includes("unencrypted_message"))
      assert.include(Buffer.from(JSON.parse(frames.join("")).unencrypted_message, "base64").toString("utf8"), "to all, even you")
      assert.deepStrictEqual((yield* states(alice))[1], { bob: "delivered", oldie: "sent" })
    }))

  it.live("nobody online: an empty result", () =>
    Effect.gen(function*() {
      const alice = yield* startNode("alice", { tuning: TUNING })
      const result = yield* alice.initiator.broadcast("anyone?")
      assert.deepStrictEqual(result.recipients, [])
      assert.deepStrictEqual(yield* alice.history.inConversation(ALL), [])
    }))
})

describe("the inner msg's `to`", () => {
  it("decodes with and without it, and with a value this version does not know", () => {
    for (const to of [undefined, ALL, "#later"]) {
      const r = decodeInner(JSON.stringify({ type: "msg", id: "x1", text: "t", sentAt: "", ...(to === undefined ? {} : { to }) }))
      assert.isTrue(Result.isSuccess(r))
    }
  })
})

describe("p2pchat send --all (the built CLI beside a node)", () => {
  useBuiltCli({ cleanupAfterEach: true })

  it.live("usage errors exit 2; a broadcast through the CLI reaches the peer; history '*all*' shows it with its recipients", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir("alice-cli")
      const alice = yield* startNode("alice", { tuning: TUNING, dataDir: dir })
      const bob = yield* startNode("bob", { tuning: TUNING })
      yield* meet(alice, bob)
      const cli = (...args: Array<string>) =>
        Effect.promise(() => runCli([...args, "--data-dir", dir, "--name", "alice", "--bind", "127.0.0.1"]))
      for (const [args, message] of [
        [["send", "--all"], /the message is empty/],
        [["send", "--all", "  "], /the message is empty/],
        [["send", "--all", "--secure", "--plain", "hi"], /choose one of --secure, --plain, --classic/]
      ] as const) {
        const r = yield* cli(...args)
        expect(r.code, `${args.join(" ")}: ${r.stderr}`).toBe(2)
        expect(r.stderr).toMatch(message)
        expect(r.stdout).toBe("")
      }
      // the node saves the peers it hears; then a USER given with --all is a usage error
      yield* waitUntilEffect("bob saved", Effect.map(cli("peers", "--json"), (r) => r.stdout.includes("\"bob\"")), 8000)
      const withUser = yield* cli("send", "--all", "bob", "hi", "--wait", "0")
      expect(withUser.code, withUser.stderr).toBe(2)
      expect(withUser.stderr).toMatch(/--all sends to everyone and takes no USER/)

      const sent = yield* cli("send", "--all", "bob, hi from the CLI", "--json", "--wait", "0")
      expect(sent.code, sent.stderr).toBe(0)
      const result = JSON.parse(sent.stdout)
      expect(result).toMatchObject({ conversation: ALL, recipients: [{ peer: "bob", mode: "noise", state: "delivered" }] })
      yield* waitUntilEffect("bob got it", Effect.map(received(bob), (r) => r.length === 1))

      const text = yield* cli("history", ALL)
      expect(text.code, text.stderr).toBe(0)
      expect(text.stdout).toMatch(/\] me -> \*all\*: bob, hi from the CLI \(delivered to bob\)$/)
      const json = yield* cli("history", ALL, "--json")
      expect(JSON.parse(json.stdout)).toEqual([{
        id: result.id,
        conversation: ALL,
        direction: "sent",
        text: "bob, hi from the CLI",
        at: expect.any(String),
        recipients: [{ peer: "bob", mode: "noise", state: "delivered" }]
      }])

      // the console's `all`, read from a script, then `history *all*`
      const chat = spawnCli(["chat", "--json", "--data-dir", dir, "--name", "alice", "--bind", "127.0.0.1"], { stdin: "pipe" })
      chat.input("all from the console", "history *all*")
      chat.child.stdin!.end()
      const { code } = yield* Effect.promise(() => chat.exited)
      expect(code, chat.stderr.join("\n")).toBe(0)
      const lines = chat.json()
      expect(lines).toContainEqual({ event: "delivered", id: expect.any(String), to: "bob" })
      expect(lines).toContainEqual(expect.objectContaining({ event: "broadcast", conversation: ALL, recipients: [{ peer: "bob", mode: "noise", state: "delivered" }] }))
      const shown = lines.find(Array.isArray) as Array<{ text: string }>
      expect(shown.map((r) => r.text)).toEqual(["bob, hi from the CLI", "from the console"])
      yield* waitUntilEffect("bob got both", Effect.map(received(bob), (r) => r.length === 2))
    }), 60_000)
})
